//! Failover as the app sees it: the preview a responder confirms, the steps
//! as they run, the outcome; and the branches and operations of the log.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::control;
use crate::control::event::{OperationRecord, Step};
use crate::control::state::{BranchRecord, ControlState};
use crate::error::{Error, Result};
use crate::orchestrator::failover::Preview;
use crate::region::Region;
use crate::workload::acks::AckLog;

use super::command::{Scope, Serving};
use super::group::{self, GroupConfig};
use super::operation::{Lifecycle, Op, record_outcome};
use super::{Core, Internal, RequestId};

/// Where the app's failover stands.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct FailoverView {
    /// Set while a preview is being taken.
    pub previewing: bool,
    /// The newest preview, to confirm.
    pub preview: Option<Preview>,
    /// Why the preview could not be taken.
    pub preview_error: Option<String>,
    /// Set while a failover runs.
    pub running: bool,
    /// The steps of the running (or last) failover, as they ended.
    pub steps: Vec<Step>,
    /// The last failover run by this engine.
    pub last: Option<OperationRecord>,
    /// Why it failed before anything changed.
    pub error: Option<String>,
    /// The drill endpoints this engine serves now (a drill's report offers
    /// to copy only these).
    pub serving: Vec<String>,
}

/// Pre-provisioned workspaces standing in the secondary.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct StandbyView {
    pub workspaces: Vec<crate::workspace::WorkspaceStatus>,
    /// Names being started.
    pub starting: Vec<String>,
    /// Why the last start failed, or where one stands instead of its port.
    pub note: Option<String>,
}

/// The branch table and the measured operations, from the log.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BranchesView {
    /// Forked branches, oldest first.
    pub branches: Vec<BranchRecord>,
    /// Each database's live branch where a failover moved it: (db, branch, region).
    pub live: Vec<(String, String, String)>,
    pub epoch: u64,
    /// Failovers and drills, oldest first.
    pub operations: Vec<OperationRecord>,
    /// Recovered branches: what was stranded and what is merged.
    pub recovered: Vec<crate::control::state::RecoveredRecord>,
}

impl BranchesView {
    pub fn of(state: &ControlState) -> BranchesView {
        BranchesView {
            branches: state.all_branches().into_iter().cloned().collect(),
            live: state
                .live
                .values()
                .map(|l| (l.db.clone(), l.branch.clone(), l.region.clone()))
                .collect(),
            epoch: state.epoch,
            operations: state.operations.clone(),
            recovered: state
                .recovered
                .values()
                .flat_map(|r| r.values().cloned())
                .collect(),
        }
    }

    /// The live branch of `db` and where it is written, when a failover
    /// or switchover set it.
    pub fn live_of(&self, db: &str) -> Option<(&str, &str)> {
        self.live
            .iter()
            .find(|(d, _, _)| d == db)
            .map(|(_, b, r)| (b.as_str(), r.as_str()))
    }

    /// The forked branch `db`/`branch`, if the log knows it.
    pub fn branch(&self, db: &str, branch: &str) -> Option<&BranchRecord> {
        self.branches
            .iter()
            .find(|b| b.fork.db == db && b.fork.branch == branch)
    }

    /// Databases whose live branch a failover made and whose writes after
    /// its fork point no recovery has looked at yet.
    pub fn unrecovered(&self) -> Vec<(String, String)> {
        self.live
            .iter()
            .filter(|(db, branch, _)| {
                self.branch(db, branch)
                    .is_some_and(|b| b.fork.reason == crate::control::event::BranchReason::Failover)
            })
            .filter(|(db, branch, _)| {
                !self
                    .recovered
                    .iter()
                    .any(|r| r.recovered.fork.db == *db && r.recovered.live == *branch)
                    && !self.operations.iter().any(|o| {
                        crate::orchestrator::recover::recovers(o, db)
                            && o.to
                                == self
                                    .branch(db, branch)
                                    .map_or("", |b| b.fork.region.as_str())
                            && o.started_ms
                                >= self.branch(db, branch).map_or(u64::MAX, |b| b.created.ms)
                    })
            })
            .map(|(db, branch, _)| (db.clone(), branch.clone()))
            .collect()
    }

    /// Whether `db`/`branch` is live.
    pub fn is_live(&self, db: &str, branch: &str) -> bool {
        match self.live.iter().find(|(d, _, _)| d == db) {
            Some((_, b, _)) => b == branch,
            None => branch == crate::storage::MAIN_BRANCH,
        }
    }
}

impl Core {
    /// The databases whose live branch this engine copies from `from` to
    /// `to` (pre-provisioning stands their workspaces up; a move of the
    /// group takes them).
    pub(super) fn live_flowing(&self, from: &str, to: &str) -> BTreeSet<String> {
        let Some(replicator) = self.replicator.as_ref() else {
            return BTreeSet::new();
        };
        replicator
            .flows()
            .filter(|f| {
                f.home.name() == from
                    && f.replica.name() == to
                    && f.branch == self.control_state.live_branch(&f.db)
            })
            .map(|f| f.db.clone())
            .collect()
    }

    /// Which regions an operation of `scope` (else of the group) runs
    /// between, and the databases it was asked for (empty: those
    /// replicated), the group's selection applying when no scope is given.
    fn scope_of(
        &self,
        scope: Option<Scope>,
        what: &str,
    ) -> std::result::Result<(Region, Region, Scope, Option<GroupConfig>), String> {
        let group = self.group.clone();
        let scope = match (scope, &group) {
            (Some(scope), _) => scope,
            (None, Some(g)) => Scope {
                from: g.primary.clone(),
                to: g.secondary.clone(),
                dbs: Vec::new(),
            },
            (None, None) => return Err(format!("configure replication first: {what}")),
        };
        let from = self.region(&scope.from).map_err(|e| e.to_string())?;
        let to = self.region(&scope.to).map_err(|e| e.to_string())?;
        let selection = group.filter(|g| g.primary == scope.from && g.secondary == scope.to);
        Ok((from, to, scope, selection))
    }

    pub(super) fn preview_failover(
        &mut self,
        request: RequestId,
        scope: Option<Scope>,
        cut: crate::orchestrator::failover::Cut,
    ) {
        if self.failover.running {
            return self.fail(request, "a failover is running; wait for it to finish");
        }
        let (from, to, scope, group) = match self.scope_of(
            scope,
            "a failover moves the group's databases to its secondary",
        ) {
            Ok(found) => found,
            Err(e) => return self.fail(request, e),
        };
        self.failover.previewing = true;
        self.failover.preview_error = None;
        self.spawn(async move {
            let result = async {
                // The log as the secondary holds it: the primary may be gone.
                let state = control::load(&to).await?;
                // The databases the replicas say are copied there (the same
                // choice as the CLI's).
                let dbs =
                    crate::orchestrator::failover::to_fail_over(&from, &to, &state, &scope.dbs)
                        .await?;
                let dbs = within(group.as_ref(), dbs).ok_or_else(|| {
                    Error::Failed(format!(
                        "no database is live in {} and replicated to {}; nothing to fail over",
                        scope.from, scope.to
                    ))
                })?;
                crate::orchestrator::failover::preview(&from, &to, &state, &dbs, cut).await
            }
            .await;
            Internal::FailoverPreviewed { request, result }
        });
    }

    pub(super) fn run_failover(
        &mut self,
        request: RequestId,
        epoch: u64,
        asked: Option<std::time::Instant>,
        serving: Serving,
    ) {
        if self.failover.running {
            return self.fail(request, "a failover is running already");
        }
        let Some(preview) = self.failover.preview.clone() else {
            return self.fail(
                request,
                "look at what a failover would lose first (preview)",
            );
        };
        if preview.epoch != epoch {
            return self.fail(
                request,
                "the preview confirmed is not the newest; look again and confirm that one",
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        // Workspaces this engine serves from the old primary under the names
        // the failover starts: they stop first (same names, same ports).
        let stopping: Vec<_> = preview
            .workspaces
            .iter()
            .filter_map(|name| self.workspaces.remove(name))
            .collect();
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let acks = self.acks_for(preview.dbs.iter().map(|d| &d.db));
        let options = crate::orchestrator::failover::FailoverOptions {
            serve: serving.serve,
            bind: serving.bind,
            port: serving.port,
            acks,
            standby: self.standby.clone(),
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_of(Op::Failover)),
            asked: asked.or_else(|| Some(std::time::Instant::now())),
        };
        self.failover.begin();
        let who = self.who.clone();
        self.spawn(async move {
            let result = async {
                for ws in stopping {
                    let name = ws.name().to_string();
                    ws.stop().await.map_err(|e| {
                        Error::Failed(format!("stopping workspace {name} here: {e}"))
                    })?;
                }
                crate::orchestrator::failover::failover(&regions, &preview, &engine, &who, options)
                    .await
            }
            .await;
            Internal::FailedOver { request, result }
        });
    }

    pub(super) fn failed_over(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::failover::FailoverOutcome>,
    ) {
        self.failover.preview = None;
        if let Some(failed) = self.failover.ended(&result) {
            return self.finish(request, failed);
        }
        if let Ok(outcome) = result {
            {
                let record = outcome.record;
                for ws in outcome.workspaces {
                    self.workspaces.insert(ws.name().to_string(), ws);
                }
                // Promoted standing workspaces now serve the live branches.
                for name in outcome.promoted {
                    if let Some((ws, _)) = self.standby.remove(&name) {
                        match Arc::try_unwrap(ws) {
                            Ok(ws) => {
                                self.workspaces.insert(name, ws);
                            }
                            Err(ws) => {
                                self.standby.insert(name, (ws, String::new()));
                            }
                        }
                    }
                }
                let outcome = record_outcome(&record);
                self.failover.last = Some(record);
                self.finish(request, outcome);
                self.read_control();
                // The new live branches start flowing back to the old primary.
                self.discover();
            }
        }
    }

    pub(super) fn run_drill(
        &mut self,
        request: RequestId,
        ttl_s: u64,
        smoke: Vec<String>,
        (scope, cut): (Option<Scope>, crate::orchestrator::failover::Cut),
        port: Option<u16>,
    ) {
        if self.drill.running {
            return self.fail(request, "a drill is running; wait for it to finish");
        }
        if ttl_s == 0 {
            return self.fail(
                request,
                "a time to live of 0 s would delete the drill at once; give at least a minute",
            );
        }
        let asked_scope = scope.is_some();
        let (from, to, scope, group) =
            match self.scope_of(scope, "a drill forks the secondary's replicas") {
                Ok(found) => found,
                Err(e) => return self.fail(request, e),
            };
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        let mut options = crate::orchestrator::drill::DrillOptions {
            ttl: Duration::from_secs(ttl_s),
            port,
            smoke,
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_of(Op::Drill)),
            cut,
            ..Default::default()
        };
        // The smoke commands are the group's: the next drill starts from them.
        if !asked_scope
            && let Some(group) = self.group.as_mut()
            && group.smoke != options.smoke
        {
            group.smoke = options.smoke.clone();
            if let Err(e) = group::save(&self.home.config_dir, Some(group)) {
                tracing::warn!("saving the drill's smoke commands: {e}");
            }
        }
        let acks_dir = self.home.acks_dir();
        self.drill.begin();
        let who = self.who.clone();
        self.spawn(async move {
            let result = async {
                // The databases the replicas' cursors say are copied there,
                // as a failover would take them.
                let dbs = if scope.dbs.is_empty() {
                    let state = control::load(&to).await?;
                    crate::orchestrator::failover::replicated(&from, &to, &state).await?
                } else {
                    scope.dbs.clone()
                };
                let dbs = within(group.as_ref(), dbs).ok_or_else(|| {
                    Error::Failed(format!(
                        "no database replicates from {} to {} yet",
                        scope.from, scope.to
                    ))
                })?;
                options.acks = dbs
                    .iter()
                    .map(|db| (db.clone(), AckLog::for_db(&acks_dir, db)))
                    .collect();
                crate::orchestrator::drill::drill(from.name(), &to, &dbs, &engine, &who, options)
                    .await
            }
            .await;
            Internal::Drilled { request, result }
        });
    }

    pub(super) fn drilled(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::drill::DrillOutcome>,
    ) {
        if let Some(failed) = self.drill.ended(&result) {
            return self.finish(request, failed);
        }
        if let Ok(outcome) = result {
            let record = outcome.record;
            if let Some(ws) = outcome.workspace {
                self.drill_workspaces.insert(record.id.clone(), ws);
            }
            let outcome = record_outcome(&record);
            self.keep_scheduled_report(request, &record);
            self.drill.last = Some(record);
            self.finish(request, outcome);
            self.read_control();
        }
    }

    pub(super) fn export_report(&mut self, request: RequestId, id: String, path: PathBuf) {
        let record = self
            .control_state
            .operations
            .iter()
            .rev()
            .find(|r| r.id == id)
            .or(self.failover.last.as_ref().filter(|r| r.id == id))
            .or(self.drill.last.as_ref().filter(|r| r.id == id))
            .cloned();
        let Some(record) = record else {
            return self.fail(request, format!("no operation `{id}` in the control log"));
        };
        self.export(request, move || {
            crate::orchestrator::report::write(&path, &record)
                .map(|()| format!("report of {} written to {}", record.id, path.display()))
        });
    }
}

/// `dbs` within the group's selection (all of them without a group);
/// `None` when that leaves none.
fn within(group: Option<&GroupConfig>, mut dbs: Vec<String>) -> Option<Vec<String>> {
    if let Some(group) = group {
        dbs.retain(|db| group.databases.includes(db));
    }
    (!dbs.is_empty()).then_some(dbs)
}
