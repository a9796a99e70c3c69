//! Failover as the app sees it: the preview a responder confirms, the steps
//! as they run, the outcome; and the branches and operations of the log.

use serde::Serialize;

use crate::control::event::{OperationRecord, Step};
use crate::control::state::{BranchRecord, ControlState};
use crate::orchestrator::failover::Preview;

/// Where the app's failover stands.
#[derive(Debug, Clone, Default, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct StandbyView {
    pub workspaces: Vec<crate::workspace::WorkspaceStatus>,
    /// Names being started.
    pub starting: Vec<String>,
    /// Why the last start failed, or where one stands instead of its port.
    pub note: Option<String>,
}

/// The branch table and the measured operations, from the log.
#[derive(Debug, Clone, Default, Serialize)]
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
