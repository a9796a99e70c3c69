//! Switchover, failback, stranded-write recovery and merge as the app sees
//! them: the plan a DBA confirms, the steps as they run, the comparison of
//! a recovered branch with the live one, and the outcomes.

use std::sync::Arc;

use serde::Serialize;

use crate::control;
use crate::control::event::{OperationKind, OperationRecord, Step};
use crate::error::{Error, Result};
use crate::orchestrator::merge::Pick;
use crate::orchestrator::recover::{ChangeRow, Recovered};
use crate::orchestrator::switchover::SwitchPlan;
use crate::region::Region;

use super::activity::Outcome;
use super::command::{Scope, Serving};
use super::group::GroupConfig;
use super::operation::{Lifecycle, Op, record_outcome};
use super::{Core, Internal, RequestId, failover, recovery};

/// Rows of a comparison the app is sent (the CLI's `--json` has them all).
pub const SHOWN_ROWS: usize = 500;

/// Where the app's switchover or failback stands.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct MoveView {
    /// What is being planned or run.
    pub kind: Option<OperationKind>,
    pub planning: bool,
    /// The newest plan, to confirm.
    pub plan: Option<SwitchPlan>,
    pub plan_error: Option<String>,
    pub running: bool,
    pub steps: Vec<Step>,
    pub last: Option<OperationRecord>,
    pub error: Option<String>,
}

/// A recovered branch compared with the live one.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ComparisonView {
    pub db: String,
    pub branch: String,
    pub live: String,
    pub changed: usize,
    pub conflicts: usize,
    pub pending: usize,
    /// The fixed states compared (see [`Recovered`]).
    pub fork_point: String,
    pub recovered_at: String,
    /// Why this is not the comparison the recovery recorded, if it is not:
    /// no merge writes it.
    pub unlike_recorded: Option<String>,
    /// Conflicts first, then the keys still to merge; at most [`SHOWN_ROWS`].
    pub rows: Vec<ChangeRow>,
}

impl ComparisonView {
    pub fn of(r: &Recovered) -> ComparisonView {
        let mut rows = r.rows();
        rows.sort_by_key(|row| (!row.conflict, row.merged));
        rows.truncate(SHOWN_ROWS);
        ComparisonView {
            db: r.db.clone(),
            branch: r.branch.clone(),
            live: r.live.clone(),
            changed: r.changes.len(),
            conflicts: r.conflicts(),
            pending: r.pending(),
            fork_point: r.fork_point.clone(),
            recovered_at: r.recovered_at.clone(),
            unlike_recorded: r.unlike_recorded.clone(),
            rows,
        }
    }
}

/// Where the app's recovery and merges stand.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct RecoveryView {
    /// Set while a recovery or a merge runs.
    pub running: bool,
    pub steps: Vec<Step>,
    pub comparing: bool,
    /// The newest comparison (after a recovery, a merge, or on request).
    pub comparison: Option<ComparisonView>,
    pub last: Option<OperationRecord>,
    pub error: Option<String>,
}

/// How long after a failed recovery the engine tries again by itself.
const AUTO_RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl Core {
    /// Where the group's live branches are written, and the other region:
    /// a switchover moves them from the first to the second; a failback
    /// from the secondary back to the primary.
    pub(super) fn move_regions(
        &self,
        group: &GroupConfig,
        kind: OperationKind,
    ) -> (String, String) {
        let moved = self
            .control_state
            .live
            .values()
            .any(|l| l.region == group.secondary);
        if kind == OperationKind::Failback || moved {
            (group.secondary.clone(), group.primary.clone())
        } else {
            (group.primary.clone(), group.secondary.clone())
        }
    }

    pub(super) fn plan_move(
        &mut self,
        request: RequestId,
        kind: OperationKind,
        scope: Option<Scope>,
    ) {
        if self.moving.running {
            return self.fail(
                request,
                format!("a {} is running; wait for it to finish", kind.name()),
            );
        }
        let (from, to, dbs) = match scope {
            // Asked for by name (the CLI resolved them from the log).
            Some(scope) => (scope.from, scope.to, scope.dbs.into_iter().collect()),
            None => {
                let Some(group) = self.group.clone() else {
                    return self.fail(
                        request,
                        format!(
                            "configure replication first: a {} moves the group's databases",
                            kind.name()
                        ),
                    );
                };
                let (from, to) = self.move_regions(&group, kind);
                let dbs = self.live_flowing(&from, &to);
                (from, to, dbs)
            }
        };
        if dbs.is_empty() {
            return self.fail(
                request,
                format!(
                    "no live branch is written in {from} and replicated to {to}; nothing to move"
                ),
            );
        }
        let (from, to) = match (self.region(&from), self.region(&to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return self.fail(request, e),
        };
        self.moving = recovery::MoveView {
            kind: Some(kind),
            planning: true,
            ..recovery::MoveView::default()
        };
        let dbs: Vec<String> = dbs.into_iter().collect();
        self.spawn(async move {
            let result = async {
                let state = control::load_all(&[to.clone(), from.clone()]).await?;
                crate::orchestrator::switchover::plan(&from, &to, &state, &dbs, kind).await
            }
            .await;
            Internal::MovePlanned { request, result }
        });
    }

    pub(super) fn run_move(
        &mut self,
        request: RequestId,
        kind: OperationKind,
        epoch: u64,
        asked: Option<std::time::Instant>,
        serving: Serving,
    ) {
        if self.moving.running {
            return self.fail(request, format!("a {} is running already", kind.name()));
        }
        let Some(plan) = self.moving.plan.clone().filter(|p| p.kind == kind) else {
            return self.fail(
                request,
                format!("look at what a {} would move first", kind.name()),
            );
        };
        if plan.epoch != epoch {
            return self.fail(
                request,
                "the plan confirmed is not the newest; look again and confirm that one",
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        let asked_serving = serving;
        // The workspaces serving these databases here stop writing first;
        // standing ones in the target give way to the writers.
        let mut serving = Vec::new();
        let mut standing = Vec::new();
        for name in &plan.workspaces {
            if let Some(ws) = self.workspaces.remove(name) {
                serving.push(ws);
            }
            if let Some((ws, _)) = self.standby.remove(name)
                && let Ok(ws) = Arc::try_unwrap(ws)
            {
                standing.push(ws);
            }
        }
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let acks = self.acks_for(plan.dbs.iter().map(|d| &d.db));
        let options = crate::orchestrator::switchover::SwitchOptions {
            serve: asked_serving.serve,
            bind: asked_serving.bind,
            port: asked_serving.port,
            serving,
            acks,
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_of(Op::Move)),
            asked: asked.or_else(|| Some(std::time::Instant::now())),
            ..Default::default()
        };
        self.moving.begin();
        let who = self.who.clone();
        self.spawn(async move {
            let result = async {
                for ws in standing {
                    let name = ws.name().to_string();
                    ws.stop().await.map_err(|e| {
                        Error::Failed(format!("stopping standing workspace {name}: {e}"))
                    })?;
                }
                crate::orchestrator::switchover::switchover(&regions, &plan, &engine, &who, options)
                    .await
            }
            .await;
            Internal::Moved { request, result }
        });
    }

    pub(super) fn moved(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::switchover::SwitchOutcome>,
    ) {
        self.moving.plan = None;
        if let Some(failed) = self.moving.ended(&result) {
            return self.finish(request, failed);
        }
        if let Ok(outcome) = result {
            {
                for ws in outcome.workspaces {
                    self.workspaces.insert(ws.name().to_string(), ws);
                }
                // The old direction is over; discovery adds the new one.
                if let Some(replicator) = self.replicator.as_mut() {
                    let stopping: Vec<_> = outcome
                        .live
                        .iter()
                        .map(|l| replicator.remove_branch(&l.db, &l.branch))
                        .collect();
                    self.stop_off_loop("stop the old direction's flows".into(), async move {
                        for flows in stopping {
                            flows.wait().await;
                        }
                        Ok(())
                    });
                }
                let record = outcome.record;
                let outcome = record_outcome(&record);
                self.moving.last = Some(record);
                self.finish(request, outcome);
                self.read_control();
                self.discover();
            }
        }
    }

    /// Once a region a failover left answers again, recovers the writes
    /// each database left stranded there, one at a time, without being
    /// asked (merging them stays a person's choice). Runs after every
    /// health check and read of the control log; a failed try is tried
    /// again after `AUTO_RECOVERY_RETRY`.
    pub(super) fn recover_by_itself(&mut self) {
        if !self.opts.recover_by_itself || self.recovery.running {
            return;
        }
        let Some(group) = self.group.clone() else {
            return;
        };
        let now = std::time::Instant::now();
        for (db, branch) in failover::BranchesView::of(&self.control_state).unrecovered() {
            let Some(live_region) = self
                .control_state
                .branch(&db, &branch)
                .map(|b| b.fork.region.clone())
            else {
                continue;
            };
            let stranded_in = if live_region == group.primary {
                group.secondary.clone()
            } else {
                group.primary.clone()
            };
            let answers = self.health.get(&stranded_in).is_some_and(|h| h.reachable);
            if !answers || !self.holds_lease(&live_region) || !self.holds_lease(&stranded_in) {
                continue;
            }
            let key = (db.clone(), branch.clone());
            if self
                .auto_recovery
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < AUTO_RECOVERY_RETRY)
            {
                continue;
            }
            self.auto_recovery.insert(key, now);
            let request = crate::workload::now_us();
            self.activity.begin(
                request,
                "engine",
                format!(
                    "recover the writes of {db} stranded in {stranded_in} (by itself: {stranded_in} answers again)"
                ),
            );
            self.activity_changed();
            self.recover(request, db);
            return;
        }
    }

    pub(super) fn recover(&mut self, request: RequestId, db: String) {
        if self.recovery.running {
            return self.fail(
                request,
                "a recovery or merge is running; wait for it to finish",
            );
        }
        let unrecovered = failover::BranchesView::of(&self.control_state).unrecovered();
        if self.group.is_some() && !unrecovered.iter().any(|(d, _)| *d == db) {
            let done = self
                .control_state
                .recovered
                .get(&db)
                .and_then(|r| r.keys().next_back().cloned());
            return self.fail(
                request,
                match done {
                    Some(branch) => format!(
                        "the writes of {db} stranded by its failover were recovered already, as branch {branch}; compare them with `lifeboat recover --db {db} --show` and merge them with `lifeboat merge --db {db}`"
                    ),
                    None => format!(
                        "the live branch of {db} was not made by a failover, or its stranded writes were looked at already: nothing to recover"
                    ),
                },
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let state = self.control_state.clone();
        let options = crate::orchestrator::recover::RecoverOptions {
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_of(Op::Recovery)),
            ..Default::default()
        };
        self.recovery.begin();
        self.recovery.comparison = None;
        let who = self.who.clone();
        self.spawn(async move {
            let result = crate::orchestrator::recover::recover(
                &regions, &state, &db, &engine, &who, options,
            )
            .await;
            Internal::Recovered { request, result }
        });
    }

    pub(super) fn recovered(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::recover::RecoverOutcome>,
    ) {
        if let Some(failed) = self.recovery.ended(&result) {
            return self.finish(request, failed);
        }
        if let Ok(outcome) = result {
            self.recovery.comparison = outcome.recovered.as_ref().map(recovery::ComparisonView::of);
            let message = outcome.record.outcome.clone();
            self.recovery.last = Some(outcome.record);
            self.finish(request, Outcome::Done(message));
            self.read_control();
        }
    }

    pub(super) fn merged(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::merge::MergeOutcome>,
    ) {
        if let Some(failed) = self.recovery.ended(&result) {
            return self.finish(request, failed);
        }
        if let Ok(outcome) = result {
            let message = outcome.record.outcome.clone();
            let compared = self.recovery.comparison.take();
            self.recovery.last = Some(outcome.record);
            self.finish(request, Outcome::Done(message));
            self.read_control();
            // What is left to merge, unless the branch is gone.
            if let Some(c) = compared
                && !outcome.discarded
            {
                self.compare(super::run::INTERNAL_REQUEST, c.db, c.branch);
            }
        }
    }

    pub(super) fn compare(&mut self, request: RequestId, db: String, branch: String) {
        let Some(home) = self
            .control_state
            .branch(&db, &branch)
            .map(|b| b.fork.region.clone())
        else {
            return self.fail(request, format!("`{db}` has no branch `{branch}`"));
        };
        let region = match self.region(&home) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        let state = self.control_state.clone();
        self.recovery.comparing = true;
        self.recovery.error = None;
        self.spawn(async move {
            let result = crate::orchestrator::recover::inspect(&region, &state, &db, &branch).await;
            Internal::Compared { request, result }
        });
    }

    pub(super) fn merge(
        &mut self,
        request: RequestId,
        db: String,
        branch: String,
        pick: Pick,
        discard: bool,
        chunk: Option<usize>,
    ) {
        if self.recovery.running {
            return self.fail(
                request,
                "a recovery or merge is running; wait for it to finish",
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        // A workspace here writes the live branch: merge through its writer
        // (opening another would fence it).
        let target = self
            .workspaces
            .values()
            .find_map(|ws| ws.writer_of(&db))
            .map_or(
                crate::orchestrator::merge::MergeTarget::Open,
                crate::orchestrator::merge::MergeTarget::Attached,
            );
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let state = self.control_state.clone();
        let options = crate::orchestrator::merge::MergeOptions {
            pick,
            target,
            discard,
            chunk_keys: chunk.unwrap_or(crate::orchestrator::merge::CHUNK_KEYS),
            on_step: Some(self.steps_of(Op::Recovery)),
            ..Default::default()
        };
        self.recovery.begin();
        let who = self.who.clone();
        self.spawn(async move {
            let result = crate::orchestrator::merge::merge(
                &regions, &state, &db, &branch, &engine, &who, options,
            )
            .await;
            Internal::Merged { request, result }
        });
    }
}
