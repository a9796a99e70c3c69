//! Samples over time for the Dashboard: each database's lag (its RPO),
//! bytes copied per second and requests per minute. Bounded: one sample
//! per second per series, the last hour. The engine keeps every sample on
//! disk too (`metrics::samples`), and starts from the last hour of them.

use std::collections::{BTreeMap, VecDeque};

/// Samples kept per series (an hour at one a second).
pub const HISTORY_SAMPLES: usize = 3600;

/// One series of `[unix seconds, value]` points, oldest first.
pub type Series = VecDeque<[f64; 2]>;

/// Every series the Dashboard plots.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct History {
    /// Lag in seconds per database (the worst of its replicas).
    pub lag_s: BTreeMap<String, Series>,
    /// Bytes copied per second, all flows together.
    pub copied_bytes_per_s: Series,
    /// Requests per minute to the regions, all flows together.
    pub requests_per_min: Series,
    /// Per database, its time above the RPO target since the engine started.
    #[serde(default)]
    pub breaches: BTreeMap<String, Breaches>,
}

/// A database's lag above the RPO target: how often it went above, and
/// for how long in all (counted between samples, so to about a second).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Breaches {
    /// Times the lag went from at or under the target to above it.
    pub episodes: u64,
    /// Seconds spent above it.
    pub seconds: f64,
    /// Whether the newest sample was above, and when it was taken.
    pub above: bool,
    pub sampled_s: f64,
}

impl Breaches {
    fn sample(&mut self, t_s: f64, above: bool) {
        // Across a gap (the engine stopped, the machine slept) nothing is
        // known, so nothing is counted.
        let continuous = t_s - self.sampled_s <= crate::metrics::samples::MAX_GAP_S;
        if above && self.above && continuous {
            self.seconds += (t_s - self.sampled_s).max(0.0);
        } else if above {
            self.episodes += 1;
        }
        self.above = above;
        self.sampled_s = t_s;
    }
}

/// The samples of `series` within `window_s` of its newest (samples come
/// in time order).
fn last_of(series: &Series, window_s: f64) -> impl Iterator<Item = &[f64; 2]> {
    let from = series.back().map_or(0.0, |p| p[0] - window_s);
    series.range(series.partition_point(|p| p[0] < from)..)
}

fn push(series: &mut Series, t_s: f64, value: f64) {
    series.push_back([t_s, value]);
    while series.len() > HISTORY_SAMPLES {
        series.pop_front();
    }
}

impl History {
    /// Adds one second's samples; a lag above `target_s` counts as a
    /// breach of the RPO target.
    pub fn record(
        &mut self,
        t_s: f64,
        lags: &BTreeMap<String, f64>,
        copied_bytes_per_s: f64,
        requests_per_min: f64,
        target_s: Option<f64>,
    ) {
        for (db, lag) in lags {
            push(self.lag_s.entry(db.clone()).or_default(), t_s, *lag);
            if let Some(target) = target_s {
                let above = *lag > target;
                self.breaches
                    .entry(db.clone())
                    .or_default()
                    .sample(t_s, above);
            }
        }
        push(&mut self.copied_bytes_per_s, t_s, copied_bytes_per_s);
        push(&mut self.requests_per_min, t_s, requests_per_min);
    }

    /// The last hour of the samples kept in `dir` before `now_s`: the
    /// Dashboard's history as it was when the engine last stopped.
    pub fn kept(dir: &std::path::Path, now_s: f64) -> History {
        let mut history = History::default();
        let window = HISTORY_SAMPLES as f64;
        let notes = crate::metrics::samples::for_each(dir, now_s - window, now_s, |s| {
            history.record(s.t, &s.lag, s.bytes_per_s, s.requests_per_min, s.target)
        });
        if notes.damaged_lines > 0 || !notes.unreadable.is_empty() {
            tracing::warn!(
                damaged_lines = notes.damaged_lines,
                unreadable = ?notes.unreadable,
                "some of the Dashboard's kept samples could not be read"
            );
        }
        history
    }

    /// Forgets a database's series (it was deleted).
    pub fn forget(&mut self, db: &str) {
        self.lag_s.remove(db);
        self.breaches.remove(db);
    }

    /// What is published for other machines: the totals' hour, and the
    /// lag of at most `most` databases (those that lagged most) over the
    /// last `window_s` seconds, so that a thousand quiet databases do not
    /// make every publication megabytes long.
    pub fn published(&self, window_s: f64, most: usize) -> History {
        let cut = |series: &Series| -> Series { last_of(series, window_s).copied().collect() };
        let mut worst: Vec<(&String, f64)> = self
            .lag_s
            .iter()
            .map(|(db, series)| {
                let max = last_of(series, window_s).map(|p| p[1]).fold(0.0, f64::max);
                (db, max)
            })
            .collect();
        worst.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        History {
            lag_s: worst
                .into_iter()
                .take(most)
                .map(|(db, _)| (db.clone(), cut(&self.lag_s[db])))
                .collect(),
            copied_bytes_per_s: self.copied_bytes_per_s.clone(),
            requests_per_min: self.requests_per_min.clone(),
            breaches: self.breaches.clone(),
        }
    }

    /// The samples of `db` above `target_s`: the RPO breaches.
    pub fn breaches(&self, db: &str, target_s: f64) -> Vec<[f64; 2]> {
        self.lag_s
            .get(db)
            .map(|s| s.iter().filter(|p| p[1] > target_s).copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_breaches_are_the_samples_above_the_target() {
        let mut history = History::default();
        for t in 0..(HISTORY_SAMPLES + 10) {
            let lag = if t % 100 == 0 { 5.0 } else { 0.1 };
            let lags = BTreeMap::from([("orders".to_string(), lag)]);
            history.record(t as f64, &lags, 10.0, 60.0, Some(1.0));
        }
        assert_eq!(history.lag_s["orders"].len(), HISTORY_SAMPLES);
        assert_eq!(history.requests_per_min.len(), HISTORY_SAMPLES);
        let breaches = history.breaches("orders", 1.0);
        assert_eq!(breaches.len(), 36);
        assert!(breaches.iter().all(|p| p[1] == 5.0));
        // Every breach was one sample long: 37 episodes in all, none lasting.
        let counted = &history.breaches["orders"];
        assert_eq!(counted.episodes, 37);
        assert_eq!(counted.seconds, 0.0);
    }

    #[test]
    fn what_is_published_keeps_the_databases_that_lagged_most_lately() {
        let mut history = History::default();
        for t in 0..2000 {
            let lags: BTreeMap<String, f64> = (0..100)
                .map(|i| {
                    (
                        format!("db-{i:03}"),
                        if i == 7 && t > 1900 {
                            9.0
                        } else {
                            0.01 * i as f64
                        },
                    )
                })
                .collect();
            history.record(t as f64, &lags, 1.0, 60.0, None);
        }
        let published = history.published(60.0, 3);
        let dbs: Vec<&str> = published.lag_s.keys().map(String::as_str).collect();
        assert_eq!(dbs, ["db-007", "db-098", "db-099"]);
        assert!(
            published.lag_s.values().all(|s| s.len() == 61),
            "{published:?}"
        );
        assert_eq!(published.requests_per_min.len(), 2000);
    }
}
