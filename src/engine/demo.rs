//! The demo (three databases written continuously and replicated) and
//! test-record writers started from the app.

/// The demo's databases.
pub const DEMO_DATABASES: [&str; 3] = ["demo-orders", "demo-carts", "demo-events"];
/// Records per second each demo writer (and each `StartWorkload`) takes.
pub const DEMO_RATE: u64 = 20;

/// What the demo's writers and `StartWorkload` write.
pub(super) fn demo_spec() -> WorkloadSpec {
    WorkloadSpec {
        rate: Rate::PerSecond(DEMO_RATE),
        duration: None,
        records: None,
        value_bytes: 512,
        churn: false,
    }
}

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::storage::DbLocation;
use crate::workload::acks::AckLog;
use crate::workload::{BackgroundRun, Rate, WorkloadSpec};

use super::activity::Outcome;
use super::group::{self, DataCopy, GroupConfig, ReplicationKind, Selection};
use super::run::outcome;
use super::{Command, Core, Internal, RequestId};

impl Core {
    pub(super) fn start_demo(&mut self, request: RequestId) {
        let Some(primary) = self.primary() else {
            return self.fail(request, "no region is configured; add two in Settings");
        };
        let region = match self.region(&primary) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        self.spawn(async move {
            let result = async {
                let mut created = Vec::new();
                for db in DEMO_DATABASES {
                    let location = DbLocation::in_region(&region, db)?;
                    if !location.exists().await? {
                        location.create().await?;
                        created.push(db.to_string());
                    }
                }
                Ok(created)
            }
            .await;
            Internal::DemoReady { request, result }
        });
    }

    pub(super) fn demo_ready(&mut self, request: RequestId, result: Result<Vec<String>>) {
        let created = match result {
            Ok(created) => created,
            Err(e) => return self.fail(request, e),
        };
        let Some(primary) = self.primary() else {
            return self.fail(request, "no region is configured");
        };
        let region = match self.region(&primary) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        for db in DEMO_DATABASES {
            if self.demo.contains_key(db) {
                continue;
            }
            // The live branch at its home, once a failover moved it.
            let location = match self.control_state.live.get(db) {
                Some(live) => self
                    .region(&live.region)
                    .and_then(|home| DbLocation::branch_in_region(&home, db, &live.branch)),
                None => DbLocation::in_region(&region, db),
            };
            let location = match location {
                Ok(l) => l,
                Err(e) => return self.fail(request, e),
            };
            let log = AckLog::for_db(&self.home.acks_dir(), db);
            self.demo.insert(
                db.to_string(),
                BackgroundRun::start(location, demo_spec(), log),
            );
        }
        let mut message = format!(
            "demo databases {} written at {DEMO_RATE} records/s each",
            DEMO_DATABASES.join(", ")
        );
        if !created.is_empty() {
            message.push_str(&format!(" ({} created)", created.join(", ")));
        }
        self.finish(request, Outcome::Done(message));
        self.list_databases();
        if self.group.is_none() {
            let secondary = self.regions.names().into_iter().nth(1);
            if let Some(secondary) = secondary {
                let group = GroupConfig {
                    primary,
                    secondary,
                    databases: Selection::All,
                    kind: ReplicationKind::StorageOnly,
                    rpo_target_s: group::DEFAULT_RPO_TARGET_S,
                    held: BTreeSet::new(),
                    smoke: Vec::new(),
                    data: DataCopy::default(),
                    writes: Default::default(),
                    drill_schedule: None,
                };
                let describe = Command::ConfigureReplication {
                    secondary: group.secondary.clone(),
                    databases: Selection::All,
                    kind: group.kind,
                    rpo_target_s: group.rpo_target_s,
                    data: group.data,
                    writes: group.writes,
                }
                .describe();
                self.activity.begin(0, "engine", describe);
                self.spawn_configure(0, group);
            }
        } else {
            self.discover();
        }
    }

    /// Writes test records to the live branch of `db` where the listing
    /// shows it homed, at the demo's rate (the demo's writers and these are
    /// one set: the status bar counts them, Stop the demo stops them all).
    pub(super) fn start_workload(&mut self, request: RequestId, db: String) {
        if self.demo.contains_key(&db) {
            return self.finish(
                request,
                Outcome::Done(format!("{db} is being written already")),
            );
        }
        let branch = self.control_state.live_branch(&db).to_string();
        let home = self.databases.iter().find(|region| {
            region
                .branches
                .iter()
                .any(|b| b.db == db && b.branch == branch && b.replica_of.is_none())
        });
        let Some(home) = home.map(|r| r.region.clone()) else {
            return self.fail(
                request,
                format!("no region holds database `{db}` (branch {branch}) as its home; create it in the Databases tab first"),
            );
        };
        let location = match self
            .region(&home)
            .and_then(|region| DbLocation::branch_in_region(&region, &db, &branch))
        {
            Ok(location) => location,
            Err(e) => return self.fail(request, e),
        };
        let log = AckLog::for_db(&self.home.acks_dir(), &db);
        self.demo
            .insert(db.clone(), BackgroundRun::start(location, demo_spec(), log));
        self.finish(
            request,
            Outcome::Done(format!(
                "writing {DEMO_RATE} test records/s to {db}/{branch} in {home}"
            )),
        );
    }

    /// Takes the test-record writers of `only`, or every one, away from
    /// the engine, to be stopped off the loop (`stop_runs`).
    pub(super) fn stop_demo(&mut self, only: Option<&str>) -> Vec<(String, BackgroundRun)> {
        let stopping: Vec<String> = self
            .demo
            .keys()
            .filter(|db| only.is_none_or(|o| o == db.as_str()))
            .cloned()
            .collect();
        stopping
            .into_iter()
            .filter_map(|db| self.demo.remove(&db).map(|run| (db, run)))
            .collect()
    }

    /// Stops the test-record writer of `only`, or every one (the demo's).
    pub(super) fn stop_workload(&mut self, request: RequestId, only: Option<String>) {
        let runs = self.stop_demo(only.as_deref());
        let message = match &only {
            Some(db) if runs.is_empty() => {
                return self.fail(request, format!("nothing is writing test records to {db}"));
            }
            Some(db) => format!("stopped writing test records to {db}"),
            None => format!("{} demo writer(s) stopped", runs.len()),
        };
        self.spawn(async move {
            let result = stop_runs(runs).await.map(|()| message);
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: false,
            }
        });
    }

    /// Forgets demo writers that ended by themselves, noting why in the
    /// activity log when it was a failure.
    pub(super) fn reap_demo(&mut self) {
        let ended: Vec<String> = self
            .demo
            .iter()
            .filter(|(_, run)| run.is_finished())
            .map(|(db, _)| db.clone())
            .collect();
        for db in ended {
            let Some(run) = self.demo.remove(&db) else {
                continue;
            };
            self.stop_off_loop(format!("demo writer of {db}"), async move {
                stop_runs(vec![(db, run)]).await
            });
        }
    }
}

/// Stops each writer once its last write is acknowledged; the first
/// failure, in words that name the database.
pub(super) async fn stop_runs(runs: Vec<(String, BackgroundRun)>) -> Result<()> {
    let mut first = Ok(());
    for (db, run) in runs {
        let failure = match run.stop().await {
            Ok(Ok(report)) => report
                .error
                .map(|e| format!("after {} records: {e}", report.records_acked)),
            Ok(Err(e)) | Err(e) => Some(e.to_string()),
        };
        if let Some(message) = failure
            && first.is_ok()
        {
            first = Err(Error::Failed(format!(
                "the test-record writer of {db} failed {message}"
            )));
        }
    }
    first
}
