//! Switchover, failback, stranded-write recovery and merge as the app sees
//! them: the plan a DBA confirms, the steps as they run, the comparison of
//! a recovered branch with the live one, and the outcomes.

use serde::Serialize;

use crate::control::event::{OperationKind, OperationRecord, Step};
use crate::orchestrator::recover::{ChangeRow, Recovered};
use crate::orchestrator::switchover::SwitchPlan;

/// Rows of a comparison the app is sent (the CLI's `--json` has them all).
pub const SHOWN_ROWS: usize = 500;

/// Where the app's switchover or failback stands.
#[derive(Debug, Clone, Default, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
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
