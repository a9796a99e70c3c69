//! Drills on a schedule: the group's engine drills by itself, with the
//! group's saved smoke commands, every N (after the last drill, scheduled
//! or not) or at the times of a cron expression (this machine's time
//! zone). A failed drill raises the `operation_failed` alert, a late one
//! `drill_overdue` (the schedule's period and a day).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Core;

/// The shortest period a schedule may have (tests drill every few seconds).
pub const MIN_EVERY: Duration = Duration::from_secs(5);
/// How long after a drill that could not start the next is tried.
const RETRY_AFTER: Duration = Duration::from_secs(300);
/// Scheduled drills' reports kept (a year of weekly drills).
pub const REPORTS_KEPT: usize = 52;

/// When the group drills by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrillSchedule {
    /// This long after the last drill.
    Every { every_s: u64 },
    /// At the times of a cron expression (minute hour day month weekday,
    /// or with seconds first), in this machine's time zone.
    Cron { expression: String },
}

impl DrillSchedule {
    /// Reads `weekly`, `daily`, a duration (`7d`, `12h`, `30s`) or a cron
    /// expression; `fix` says how to write it where it was typed.
    pub fn parse(text: &str, fix: &str) -> Result<DrillSchedule, String> {
        let text = text.trim();
        let every = match text {
            "weekly" => Some(Duration::from_secs(7 * 86_400)),
            "daily" => Some(Duration::from_secs(86_400)),
            _ => humantime::parse_duration(text.trim_start_matches("every ")).ok(),
        };
        if let Some(every) = every {
            if every < MIN_EVERY {
                return Err(format!(
                    "a drill every {} is too often; {fix}",
                    humantime::format_duration(every)
                ));
            }
            return Ok(DrillSchedule::Every {
                every_s: every.as_secs(),
            });
        }
        let parsed = croner::Cron::new(text).with_seconds_optional().parse();
        match parsed {
            Ok(_) => Ok(DrillSchedule::Cron {
                expression: text.to_string(),
            }),
            Err(e) => Err(format!(
                "`{text}` is neither a period nor a cron expression ({e}); {fix}"
            )),
        }
    }

    /// When the next drill is due, given the last one's start (Unix ms).
    pub fn next_after(&self, last_ms: u64) -> Option<u64> {
        match self {
            DrillSchedule::Every { every_s } => Some(last_ms + every_s * 1000),
            DrillSchedule::Cron { expression } => {
                let cron = croner::Cron::new(expression)
                    .with_seconds_optional()
                    .parse()
                    .ok()?;
                let last = chrono::DateTime::from_timestamp_millis(i64::try_from(last_ms).ok()?)?
                    .with_timezone(&chrono::Local);
                let next = cron.find_next_occurrence(&last, false).ok()?;
                u64::try_from(next.timestamp_millis()).ok()
            }
        }
    }

    /// The time between two drills (for a cron expression, between its
    /// next two times from now).
    pub fn period(&self, now_ms: u64) -> Option<Duration> {
        let first = self.next_after(now_ms)?;
        let second = self.next_after(first)?;
        Some(Duration::from_millis(second.saturating_sub(first)))
    }

    pub fn describe(&self) -> String {
        match self {
            DrillSchedule::Every { every_s } => format!(
                "every {}",
                humantime::format_duration(Duration::from_secs(*every_s))
            ),
            DrillSchedule::Cron { expression } => format!("at `{expression}` (cron, local time)"),
        }
    }
}

/// What the engine remembers of its schedule.
#[derive(Debug, Default)]
pub(super) struct Scheduling {
    /// When a scheduled drill was last started here.
    started: Option<Instant>,
    /// The request of the scheduled drill running, if one is.
    request: Option<super::RequestId>,
}

impl Core {
    /// Starts the group's scheduled drill when it is due (the engine that
    /// runs the group, holding the secondary's lease, no drill running).
    pub(super) fn drill_by_schedule(&mut self) {
        let Some(group) = self.group.as_ref() else {
            return;
        };
        let Some(schedule) = group.drill_schedule.clone() else {
            return;
        };
        if self.remote.is_some() || self.drill.running || !self.holds_lease(&group.secondary) {
            return;
        }
        if self
            .scheduling
            .started
            .is_some_and(|at| at.elapsed() < RETRY_AFTER.min(self.schedule_floor(&schedule)))
        {
            return;
        }
        let last_ms = self
            .control_state
            .operations
            .iter()
            .filter(|op| op.kind == crate::control::event::OperationKind::Drill)
            .map(|op| op.started_ms)
            .max()
            .unwrap_or(self.started_ms);
        let now_ms = crate::orchestrator::now_ms();
        if schedule.next_after(last_ms).is_none_or(|due| now_ms < due) {
            return;
        }
        let smoke = group.smoke.clone();
        let ttl = self
            .schedule_floor(&schedule)
            .clamp(Duration::from_secs(60), Duration::from_secs(3600));
        self.scheduling.started = Some(Instant::now());
        let request = crate::workload::now_us();
        self.scheduling.request = Some(request);
        self.activity.begin(
            request,
            "engine",
            format!("scheduled drill ({})", schedule.describe()),
        );
        self.activity_changed();
        self.run_drill(
            request,
            ttl.as_secs(),
            smoke,
            (None, crate::orchestrator::failover::Cut::Newest),
            None,
        );
    }

    /// Keeps the report of the scheduled drill `request` (when it is one)
    /// as Markdown and JSON in the data folder's `drills/`, and the last
    /// [`REPORTS_KEPT`] of them only.
    pub(super) fn keep_scheduled_report(
        &mut self,
        request: super::RequestId,
        record: &crate::control::event::OperationRecord,
    ) {
        if self.scheduling.request != Some(request) {
            return;
        }
        self.scheduling.request = None;
        let dir = reports_dir(&self.home);
        let record = record.clone();
        self.spawn(async move {
            let kept = tokio::task::spawn_blocking(move || keep_report(&dir, &record)).await;
            let outcome = match kept {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(super::Outcome::Failed(e.to_string())),
                Err(e) => Some(super::Outcome::Failed(format!(
                    "keeping the report stopped: {e}"
                ))),
            };
            super::Internal::Noted {
                what: "keep the scheduled drill's report".into(),
                outcome,
            }
        });
    }

    /// The schedule's period, never under [`MIN_EVERY`].
    fn schedule_floor(&self, schedule: &DrillSchedule) -> Duration {
        schedule
            .period(crate::orchestrator::now_ms())
            .unwrap_or(MIN_EVERY)
            .max(MIN_EVERY)
    }
}

/// Where the monthly DR reports the app asks for are written.
pub fn month_reports_dir(home: &crate::config::Home) -> std::path::PathBuf {
    home.data_dir.join("reports")
}

impl Core {
    /// Writes the monthly DR report of `month` (this month when `None`)
    /// into [`month_reports_dir`], off the loop: the month's samples from
    /// the data folder and the operations of the control log as read.
    pub(super) fn report_month(&mut self, request: super::RequestId, month: Option<String>) {
        use crate::metrics::month;
        let now_ms = crate::orchestrator::now_ms();
        let first = match month
            .as_deref()
            .map(|m| month::parse_month(m, "give it as YYYY-MM, like 2026-12"))
        {
            None => month::this_month(now_ms),
            Some(Ok(first)) => first,
            Some(Err(e)) => return self.fail(request, &e),
        };
        let data_dir = self.home.data_dir.clone();
        let out = month_reports_dir(&self.home);
        let operations = self.control_state.operations.clone();
        self.export(request, move || {
            let report = month::build(
                first,
                &month::Inputs {
                    data_dir: &data_dir,
                    operations: &operations,
                    now_ms,
                },
            )?;
            let written = report.write(&out)?;
            let html = written
                .iter()
                .find(|p| p.extension().is_some_and(|e| e == "html"))
                .map_or_else(|| out.display().to_string(), |p| p.display().to_string());
            Ok(format!("wrote the {} report: {html}", report.title()))
        });
    }
}

/// Where scheduled drills' reports are kept.
pub fn reports_dir(home: &crate::config::Home) -> std::path::PathBuf {
    home.data_dir.join("drills")
}

/// Writes `record` as `<id>.md` and `<id>.json` in `dir`, then removes the
/// oldest past [`REPORTS_KEPT`] (ids of drills sort by time).
fn keep_report(
    dir: &std::path::Path,
    record: &crate::control::event::OperationRecord,
) -> crate::Result<()> {
    use crate::Error;
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    for ext in ["md", "json"] {
        crate::orchestrator::report::write(&dir.join(format!("{}.{ext}", record.id)), record)?;
    }
    let mut reports: Vec<(u64, String)> = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot list: {e}")))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?;
            let ms = id.strip_prefix("drill-")?.parse().ok()?;
            Some((ms, id.to_string()))
        })
        .collect();
    reports.sort();
    let surplus = reports.len().saturating_sub(REPORTS_KEPT);
    for (_, id) in reports.into_iter().take(surplus) {
        for ext in ["md", "json"] {
            let path = dir.join(format!("{id}.{ext}"));
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::file(&path, format!("cannot remove: {e}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = "give --drill-schedule as weekly, 7d or a cron expression";

    #[test]
    fn a_schedule_is_a_period_or_a_cron_expression() {
        assert_eq!(
            DrillSchedule::parse("weekly", FIX),
            Ok(DrillSchedule::Every {
                every_s: 7 * 86_400
            })
        );
        assert_eq!(
            DrillSchedule::parse("every 3d", FIX),
            Ok(DrillSchedule::Every {
                every_s: 3 * 86_400
            })
        );
        let cron = DrillSchedule::parse("0 3 * * 1", FIX).expect("cron");
        // Mondays at 03:00: a week apart.
        let period = cron.period(1_800_000_000_000).expect("period");
        assert_eq!(period, Duration::from_secs(7 * 86_400));
        let next = cron.next_after(1_800_000_000_000).expect("next");
        assert!(next > 1_800_000_000_000);
        let bad = DrillSchedule::parse("sometimes", FIX).expect_err("refused");
        assert!(bad.contains("--drill-schedule"), "{bad}");
        let often = DrillSchedule::parse("1s", FIX).expect_err("refused");
        assert!(often.contains("too often"), "{often}");
    }
}
