//! The replication group and its flows: configure, resume, pause,
//! discover new databases, the Dashboard's samples, point-in-time
//! checkpoints of the live branches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::state::ControlState;
use crate::error::{Error, Result};
use crate::region::{self, Region};
use crate::replication::pins::Pins;
use crate::replication::{self, Flow, Replicator};
use crate::storage::{self, DbLocation};
use crate::workload::now_us;

use super::activity::Outcome;
use super::group::{self, DataCopy, GroupConfig, ReplicationKind, Selection};
use super::{Core, Internal, RequestId};

/// How often the published bill is figured again.
const COST_EVERY: Duration = Duration::from_secs(10);

impl Core {
    /// Starts the group saved by an earlier run.
    pub(super) fn resume_group(&mut self) {
        match group::load(&self.home.config_dir) {
            Ok(Some(group)) => {
                let what = format!(
                    "resume replication from {} to {}",
                    group.primary, group.secondary
                );
                self.activity.begin(0, "engine", what);
                self.activity_changed();
                self.spawn_configure(0, group);
            }
            Ok(None) => {}
            Err(e) => {
                self.activity
                    .note("resume replication".into(), Outcome::Failed(e.to_string()));
                self.activity_changed();
            }
        }
    }

    pub(super) fn configure(
        &mut self,
        request: RequestId,
        secondary: String,
        databases: Selection,
        kind: ReplicationKind,
        (rpo_target_s, writes): (f64, group::WriteRules),
        data: DataCopy,
    ) {
        let Some(primary) = self.primary() else {
            return self.fail(request, "no region is configured; add two in Settings");
        };
        if let Err(e) = group::check(&primary, &secondary, rpo_target_s, group::IN_THE_APP)
            .and_then(|()| group::check_writes(&writes, group::IN_THE_APP))
        {
            return self.fail(request, e);
        }
        if let Err(e) = self.regions.get(&secondary) {
            return self.fail(request, e);
        }
        if matches!(&databases, Selection::Only(dbs) if dbs.is_empty()) {
            return self.fail(
                request,
                "choose at least one database, or all current and future databases",
            );
        }
        let held = self
            .group
            .as_ref()
            .map(|g| g.held.clone())
            .unwrap_or_default();
        let smoke = self
            .group
            .as_ref()
            .map(|g| g.smoke.clone())
            .unwrap_or_default();
        let drill_schedule = self.group.as_ref().and_then(|g| g.drill_schedule.clone());
        let group = GroupConfig {
            primary,
            secondary,
            databases,
            kind,
            rpo_target_s,
            held,
            smoke,
            data,
            writes,
            drill_schedule,
        };
        self.spawn_configure(request, group);
    }

    /// Probes the group's regions and finds its flows, in a task.
    pub(super) fn spawn_configure(&mut self, request: RequestId, group: GroupConfig) {
        let regions = (self.region(&group.primary), self.region(&group.secondary));
        let failed_over = failed_over(&self.control_state, &group);
        self.spawn(async move {
            let result = async {
                let (primary, secondary) = (regions.0?, regions.1?);
                let pair = [primary.clone(), secondary.clone()];
                let warnings = region::preflight(&pair).await?;
                let flows = discover_flows(&pair, &group, &failed_over, None).await?;
                if let Selection::Only(dbs) = &group.databases {
                    for db in dbs {
                        if !flows.iter().any(|f| &f.db == db) {
                            return Err(Error::Failed(format!(
                                "database `{db}` has no home in {}; create it there or leave it out",
                                primary.name()
                            )));
                        }
                    }
                }
                Ok((flows, warnings))
            }
            .await;
            Internal::Configured {
                request,
                group,
                result,
            }
        });
    }

    pub(super) fn configured(
        &mut self,
        request: RequestId,
        group: GroupConfig,
        result: Result<(Vec<Flow>, Vec<String>)>,
    ) {
        let (flows, warnings) = match result {
            Ok(found) => found,
            Err(e) => return self.fail(request, e),
        };
        let same_pair = self
            .group
            .as_ref()
            .is_some_and(|g| g.primary == group.primary && g.secondary == group.secondary);
        if !same_pair && let Some(old) = self.replicator.take() {
            self.stop_off_loop("stop the old group's flows".into(), async move {
                old.stop().await;
                Ok(())
            });
        }
        let replicator = self.replicator.get_or_insert_with(|| {
            Replicator::start(
                Vec::new(),
                self.opts.replication.clone(),
                Arc::clone(&self.pins) as Arc<dyn Pins>,
            )
        });
        // Quiet homes are looked at once per RPO target, no more often.
        replicator.set_rpo_target(Duration::from_secs_f64(group.rpo_target_s));
        replicator.set_data_by_store(group.data == DataCopy::Store);
        replicator.set_promise(group.zero_loss_timeout(), group.writes.rpo_guard);
        replicator.set_gc_hold(Duration::from_secs(group.writes.gc_hold_s));
        // Flows of databases no longer selected stop.
        let dropped: BTreeSet<String> = replicator
            .flows()
            .filter(|f| !group.databases.includes(&f.db))
            .map(|f| f.db.clone())
            .collect();
        let stopping: Vec<_> = dropped.iter().map(|db| replicator.remove(db)).collect();
        let count = flows.len();
        // Copies into a region run only while this engine holds its lease.
        let waiting: BTreeSet<String> = flows
            .iter()
            .filter(|f| !self.holds_lease(f.replica.name()))
            .map(|f| f.replica.name().to_string())
            .collect();
        self.stop_off_loop("stop the flows left out".into(), async move {
            for flows in stopping {
                flows.wait().await;
            }
            Ok(())
        });
        let mut message = format!(
            "replicating {count} database(s) from {} to {}",
            group.primary, group.secondary
        );
        for warning in warnings {
            message.push_str(&format!("; warning: {warning}"));
        }
        for region in waiting {
            let state = self.leases.get(&region).map(|state| {
                super::leases::LeaseView {
                    region: region.clone(),
                    state: state.clone(),
                }
                .describe()
            });
            match state {
                Some(state) => message.push_str(&format!("; {state}")),
                None => message.push_str(&format!(
                    "; copies into {region} start once this engine holds its lease"
                )),
            }
        }
        self.group = Some(group);
        self.add_flows(flows);
        self.keep_leases();
        self.save_group(request, message);
        self.sync_standby();
    }

    /// Stops every flow and forgets the group; the replicas stay.
    pub(super) fn stop_replication(&mut self, request: RequestId) {
        let Some(replicator) = self.replicator.take() else {
            return self.fail(request, "replication is not configured");
        };
        self.group = None;
        self.keep_leases();
        if let Err(e) = group::save(&self.home.config_dir, None) {
            self.fail(request, e);
        }
        self.spawn(async move {
            replicator.stop().await;
            Internal::Finished {
                request,
                outcome: Outcome::Done("replication stopped; the replicas stay readable".into()),
                relist: false,
            }
        });
    }

    pub(super) fn save_group(&mut self, request: RequestId, message: String) {
        match group::save(&self.home.config_dir, self.group.as_ref()) {
            Ok(()) => self.finish(request, Outcome::Done(message)),
            Err(e) => self.fail(request, e),
        }
    }

    pub(super) fn hold(&mut self, request: RequestId, db: &str, held: bool) {
        let (Some(group), Some(replicator)) = (self.group.as_mut(), self.replicator.as_mut())
        else {
            return self.fail(request, "replication is not configured");
        };
        if replicator.hold(db, held) == 0 {
            return self.fail(request, format!("database `{db}` is not replicating"));
        }
        if held {
            group.held.insert(db.to_string());
        } else {
            group.held.remove(db);
        }
        // A paused database's flows are copied here (a helper's are taken
        // back at the next look).
        self.place_flows();
        let verb = if held { "paused" } else { "resumed" };
        self.save_group(request, format!("{db} {verb}"));
    }

    pub(super) fn add_flows(&mut self, flows: Vec<Flow>) {
        let places = self.places_flows();
        let (Some(group), Some(replicator)) = (self.group.as_ref(), self.replicator.as_mut())
        else {
            return;
        };
        for flow in flows {
            if !group.databases.includes(&flow.db) || self.deleting.values().any(|d| *d == flow.db)
            {
                continue;
            }
            if !self
                .leases
                .get(flow.replica.name())
                .is_some_and(|l| l.is_held())
            {
                // Started once this engine holds the replica region's lease.
                if !self.unleased.iter().any(|u| u.label() == flow.label()) {
                    self.unleased.push(flow);
                }
                continue;
            }
            let db = flow.db.clone();
            // Sharing, the coordinator places each flow (here or at a helper).
            let added = if places {
                replicator.know(flow)
            } else {
                replicator.add(flow)
            };
            if added {
                tracing::info!("replicating new database {db}");
                if group.held.contains(&db) {
                    replicator.hold(&db, true);
                }
            }
        }
        if places {
            self.place_flows();
        }
    }

    /// Looks for databases created in the primary since the group started.
    pub(super) fn discover(&mut self) {
        self.look_for_flows(None);
    }

    /// Looks for the flows of the databases `names` only (new since the
    /// last look at the names).
    pub(super) fn discover_only(&mut self, names: BTreeSet<String>) {
        self.look_for_flows(Some(names));
    }

    /// Looks for the group's flows, of every database or of `only`; while
    /// a look is under way, named databases wait for the next (a full look
    /// then covers them).
    fn look_for_flows(&mut self, only: Option<BTreeSet<String>>) {
        let Some(group) = self.group.clone() else {
            return;
        };
        if self.replicator.is_none() {
            return;
        }
        if self.discovering {
            self.discover_pending.extend(only.into_iter().flatten());
            return;
        }
        let (Ok(primary), Ok(secondary)) =
            (self.region(&group.primary), self.region(&group.secondary))
        else {
            return;
        };
        self.discovering = true;
        if only.is_none() {
            self.discover_pending.clear();
        }
        tracing::debug!(
            databases = only.as_ref().map(BTreeSet::len),
            "looking for the group's flows"
        );
        let failed_over = failed_over(&self.control_state, &group);
        self.spawn(async move {
            Internal::Discovered(
                discover_flows(&[primary, secondary], &group, &failed_over, only.as_ref()).await,
            )
        });
    }

    /// One sample a second for the Dashboard; returns the statuses it
    /// sampled (the alerts look at the same).
    pub(super) fn sample(&mut self) -> Vec<crate::replication::FlowStatus> {
        self.sample_region_requests();
        if self.replicator.is_none() {
            self.refigure_cost(&[]);
            return Vec::new();
        }
        let statuses = self.statuses();
        let lags = worst_lags(&statuses);
        let copied: u64 = statuses.iter().map(|s| s.bytes_copied).sum();
        let requests: u64 = statuses.iter().map(|s| s.requests_per_min).sum();
        let now = Instant::now();
        let rate = match self.last_copied {
            Some((at, before)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                copied.saturating_sub(before) as f64 / secs
            }
            None => 0.0,
        };
        self.last_copied = Some((now, copied));
        let t_s = now_us() as f64 / 1e6;
        let target = self.group.as_ref().map(|g| g.rpo_target_s);
        Arc::make_mut(&mut self.history).record(t_s, &lags, rate, requests as f64, target);
        self.refigure_cost(&statuses);
        self.keep_sample(t_s, lags, rate, requests as f64, &statuses);
        statuses
    }

    /// Figures the bill again when its flows changed or every
    /// [`COST_EVERY`]: its rates move each second, and a bill that changes
    /// each second would repaint the app each second for nothing a person
    /// reads at that pace.
    fn refigure_cost(&mut self, statuses: &[crate::replication::FlowStatus]) {
        let now = Instant::now();
        let due = self.cost_figured.is_none_or(|(at, flows)| {
            flows != statuses.len() || now.duration_since(at) >= COST_EVERY
        });
        if due {
            self.cost = Arc::new(self.figure_cost(statuses));
            self.cost_figured = Some((now, statuses.len()));
        }
    }

    /// Hands the sample just taken to the writer that keeps it on disk,
    /// with the regions down and what this engine's requests cost.
    fn keep_sample(
        &mut self,
        t_s: f64,
        lag: BTreeMap<String, f64>,
        bytes_per_s: f64,
        requests_per_min: f64,
        statuses: &[crate::replication::FlowStatus],
    ) {
        let Some(group) = self.group.as_ref() else {
            return;
        };
        // The engine that runs the group keeps the samples: a standby (the
        // app beside `serve`) shows the holder's, and two writers of one
        // file would interleave their changes.
        if self.remote.is_some() || !self.leases.values().any(|l| l.is_held()) {
            return;
        }
        let down = [&group.primary, &group.secondary]
            .into_iter()
            .filter(|region| self.region_down(region, statuses))
            .cloned()
            .collect();
        // What each region was asked since the sample before (its two
        // newest request counts), at its prices.
        let specs = self.regions.specs();
        let mut requests = crate::region::meter::ClassCounts::default();
        let mut dollars = 0.0;
        for (name, counts) in &self.region_samples {
            let mut newest = counts.iter().rev().map(|(_, c)| *c);
            let (Some(now), before) = (newest.next(), newest.next()) else {
                continue;
            };
            let asked = now.since(&before.unwrap_or_default());
            let (row, _) = crate::cost::row_for_region(&self.cost.prices, specs, name);
            dollars += row.requests(&asked);
            requests = requests.plus(&asked);
        }
        let sample = crate::metrics::samples::Sample {
            t: t_s,
            lag,
            target: Some(group.rpo_target_s),
            down,
            bytes_per_s,
            requests_per_min,
            requests,
            dollars,
        };
        if let Some(samples) = self.samples.as_mut() {
            samples.record(sample);
        }
    }

    /// Each opened region's request counts now, kept for a minute, so that
    /// the bill shows everything this process asked of each region in the
    /// last minute (replication, listings, leases, the published status).
    fn sample_region_requests(&mut self) {
        let now = Instant::now();
        for (name, region) in &self.opened {
            let samples = self.region_samples.entry(name.clone()).or_default();
            samples.push_back((now, region.meter().total()));
            while samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(60))
            {
                samples.pop_front();
            }
        }
        self.region_samples
            .retain(|name, _| self.opened.contains_key(name));
    }

    /// The group's bill at the prices in use: each branch at its last
    /// minute's rate, and a month of the group as configured (its primary's
    /// bytes in both regions, the last hour's copying crossing all month).
    fn figure_cost(&self, statuses: &[crate::replication::FlowStatus]) -> crate::cost::CostView {
        use crate::cost::{CostView, GroupCost, GroupUse};
        let rows = &self.cost.prices;
        let specs = self.regions.specs();
        let primary = self.group.as_ref().map(|g| g.primary.as_str());
        let stored_bytes: u64 = self
            .databases
            .iter()
            .filter(|r| Some(r.region.as_str()) == primary)
            .flat_map(|r| &r.branches)
            .filter(|b| b.replica_of.is_none())
            .filter_map(|b| b.info.as_ref().map(|i| i.size_bytes))
            .sum();
        let copied = &self.history.copied_bytes_per_s;
        let copied_bytes_per_s =
            copied.iter().map(|p| p[1]).sum::<f64>() / copied.len().max(1) as f64;
        let rpo_target = self
            .group
            .as_ref()
            .map_or(1.0, |g| g.rpo_target_s)
            .max(0.001);
        let bill = GroupCost::of(
            rows,
            &GroupUse {
                flows: statuses,
                regions: specs,
                rpo_target: Duration::from_secs_f64(rpo_target),
                stored_bytes: stored_bytes as f64,
                copied_bytes_per_s,
            },
        );
        let regions = self
            .region_samples
            .iter()
            .filter_map(|(name, samples)| {
                let ((first_at, first), (last_at, last)) = (samples.front()?, samples.back()?);
                let minutes = last_at.duration_since(*first_at).as_secs_f64() / 60.0;
                let last_min = last.since(first);
                let (row, what_if) = crate::cost::row_for_region(rows, specs, name);
                let per_min = crate::cost::Rates::over(&last_min, minutes.max(1.0 / 60.0));
                Some(crate::cost::RegionCost {
                    region: name.clone(),
                    total: *last,
                    per_min,
                    store: row.store.clone(),
                    what_if,
                    month: row.requests_per_month(&per_min),
                })
            })
            .collect();
        CostView {
            bill,
            regions,
            prices: rows.clone(),
            prices_from: self.cost.prices_from.clone(),
            prices_error: self.cost.prices_error.clone(),
        }
    }

    /// A point-in-time checkpoint of every live branch of the group, at
    /// its home (the primary, or the secondary after a failover).
    pub(super) fn checkpoint_live_branches(&mut self) {
        let Some(replicator) = self.replicator.as_ref() else {
            return;
        };
        let mut homes = BTreeMap::new();
        for flow in replicator.flows() {
            if flow.branch == self.control_state.live_branch(&flow.db) {
                let key = (
                    flow.home.name().to_string(),
                    flow.db.clone(),
                    flow.branch.clone(),
                );
                homes.insert(key, flow.home.clone());
            }
        }
        for ((_, db, branch), home) in homes {
            tokio::spawn(async move {
                let result = async {
                    let location = DbLocation::branch_in_region(&home, &db, &branch)?;
                    storage::pitr::checkpoint(&location, storage::retention()).await
                }
                .await;
                match result {
                    Ok(manifest) => {
                        tracing::debug!(
                            "point-in-time checkpoint of {db}/{branch} at manifest {manifest}"
                        )
                    }
                    Err(e) => tracing::warn!("point-in-time checkpoint of {db}/{branch}: {e}"),
                }
            });
        }
    }
}

/// The group's flows: branches homed in its primary, to its secondary.
/// The group's flows: every branch homed in the primary to the secondary,
/// and back to the primary the live branches a failover made in the
/// secondary (`failed_over`: db, branch), which is what makes failback
/// incremental. Drill branches never leave their region.
pub(super) async fn discover_flows(
    pair: &[Region; 2],
    group: &GroupConfig,
    failed_over: &BTreeSet<(String, String)>,
    only: Option<&BTreeSet<String>>,
) -> Result<Vec<Flow>> {
    // Every database, or only those named (one at a time: a name with no
    // branch to copy yet, or none homed here, finds none).
    let find = |from: &str, to: &str| {
        let (from, to) = (from.to_string(), to.to_string());
        async move {
            let Some(names) = only else {
                return replication::discover(pair, Some(&from), Some(&to), None).await;
            };
            let mut flows = Vec::new();
            for db in names {
                match replication::discover(pair, Some(&from), Some(&to), Some(db)).await {
                    Ok(found) => flows.extend(found),
                    Err(Error::DatabaseNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(flows)
        }
    };
    let mut flows = find(&group.primary, &group.secondary).await?;
    if !failed_over.is_empty() {
        let back = find(&group.secondary, &group.primary).await?;
        flows.extend(
            back.into_iter()
                .filter(|f| failed_over.contains(&(f.db.clone(), f.branch.clone()))),
        );
    }
    Ok(flows
        .into_iter()
        .filter(|f| group.databases.includes(&f.db))
        .collect())
}

/// Live branches a failover made in the group's secondary.
pub(super) fn failed_over(state: &ControlState, group: &GroupConfig) -> BTreeSet<(String, String)> {
    state
        .live
        .values()
        .filter(|l| l.region == group.secondary)
        .map(|l| (l.db.clone(), l.branch.clone()))
        .collect()
}
/// Each database's lag: the worst of its replicas' (those with a lag known).
pub(super) fn worst_lags(statuses: &[crate::replication::FlowStatus]) -> BTreeMap<String, f64> {
    let mut lags: BTreeMap<String, f64> = BTreeMap::new();
    for status in statuses {
        if let Some(lag) = status.lag_s {
            let worst = lags.entry(status.db.clone()).or_insert(0.0);
            *worst = worst.max(lag);
        }
    }
    lags
}
