//! What the engine publishes: plain data, cloned cheaply (`Arc`), never a
//! handle to a store or a lock. The GUI renders this and nothing else.

use std::sync::Arc;

use serde::Serialize;

use super::activity::ActivityEntry;
use super::group::GroupConfig;
use super::history::History;
use crate::region::RegionSpec;
use crate::replication::{FlowState, FlowStatus};
use crate::storage::BranchInfo;

/// The engine's state as of one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Grows by one per published snapshot.
    pub seq: u64,
    pub engine: EngineState,
    /// Configured regions with their last health check.
    pub regions: Vec<RegionView>,
    /// True while no regions file exists (the two local default regions).
    pub embedded_default: bool,
    /// Clocks that disagree (from the last health check).
    pub clock_warnings: Vec<String>,
    /// The replication group, once configured.
    pub group: Option<GroupConfig>,
    /// One row per replicated branch and replica (shared: a thousand rows
    /// are not copied per frame).
    pub flows: Arc<Vec<FlowView>>,
    /// Per region, its databases and branches, as last listed.
    pub databases: Arc<Vec<RegionDatabases>>,
    /// When the database listing was taken (µs since epoch).
    pub databases_listed_us: Option<u64>,
    /// Lag, throughput and request samples over time.
    pub history: Arc<History>,
    /// What replication costs at the prices in use, as of the last sample.
    pub cost: Arc<crate::cost::CostView>,
    /// Every action, oldest first (capped).
    pub activity: Arc<Vec<ActivityEntry>>,
    /// Demo workloads running, by database.
    pub demo_workloads: Vec<String>,
    /// Workspaces from the control log, and those this engine serves.
    pub control: Arc<super::workspaces::ControlView>,
    /// The failover being previewed or run here, and the last one.
    pub failover: Arc<super::failover::FailoverView>,
    /// The switchover or failback planned or run here, and the last one.
    pub moving: Arc<super::recovery::MoveView>,
    /// Stranded-write recovery and merges run here, and the newest comparison.
    pub recovery: Arc<super::recovery::RecoveryView>,
    /// The drill running here, or the last one.
    pub drill: Arc<super::failover::FailoverView>,
    /// Workspaces standing in the secondary (pre-provisioning).
    pub standby: Arc<super::failover::StandbyView>,
    /// Forked branches, live branches and measured operations, from the log.
    pub branches: Arc<super::failover::BranchesView>,
    /// The group regions' leases: which this engine holds, who holds the rest.
    pub leases: Vec<super::leases::LeaseView>,
    /// The view the group's engine published, when it runs elsewhere: the
    /// flows, history, operations and activity above are its.
    pub remote: Option<Arc<super::published::RemoteView>>,
    /// Who this engine is in the leases it takes (once it took part).
    pub holder: Option<crate::control::lease::Holder>,
    /// Which helper engine copies which flows, while this engine
    /// coordinates engines sharing the group (docs/sharing.md).
    pub shares: Option<crate::control::share::Shares>,
    /// The flows this engine copies as a helper of the group's engine.
    pub helping: Vec<FlowStatus>,
    /// Whether this engine shares the flows with others (`serve --share`).
    pub sharing: bool,
    /// Whether a zero-loss group's writes wait for the other region now.
    pub zero_loss: Option<super::sync::ZeroLossView>,
    /// Alerts firing, sent lately, and their settings.
    pub alerts: Arc<super::alerting::AlertsView>,
}

/// How a published snapshot differs from the one before, for whoever
/// shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing but its number.
    None,
    /// Figures that move by themselves (lags, counters, samples, health):
    /// showing them within a second is soon enough.
    Passive,
    /// What a person waits on: the engine's state, an action begun or
    /// ended, an operation's progress, an alert.
    Urgent,
}

impl Snapshot {
    /// How `self` differs from `before`.
    pub fn change_since(&self, before: &Snapshot) -> Change {
        let urgent = self.engine != before.engine
            || self.activity != before.activity
            || self.failover != before.failover
            || self.drill != before.drill
            || self.moving != before.moving
            || self.recovery != before.recovery
            || self.alerts != before.alerts
            || self.group != before.group;
        if urgent {
            return Change::Urgent;
        }
        let mut same = before.clone();
        same.seq = self.seq;
        if same == *self {
            Change::None
        } else {
            Change::Passive
        }
    }
}

/// What the engine is doing, for the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub enum EngineState {
    /// Loading the configuration.
    #[default]
    Starting,
    /// Running, nothing replicating.
    Idle,
    /// Flows are running.
    Replicating,
    /// Stopping its flows before exit.
    Stopping,
}

impl EngineState {
    pub fn label(self) -> &'static str {
        match self {
            EngineState::Starting => "starting",
            EngineState::Idle => "idle",
            EngineState::Replicating => "replicating",
            EngineState::Stopping => "stopping",
        }
    }
}

/// A configured region and how it answered the last health check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionView {
    pub spec: RegionSpec,
    /// `local folder`, `S3`, ... (or `invalid`).
    pub kind: &'static str,
    pub health: Option<RegionHealth>,
}

/// One health check of a region: a small put, read and delete.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionHealth {
    /// When it was checked (µs since epoch).
    pub checked_us: u64,
    pub reachable: bool,
    pub latency_ms: Option<u64>,
    /// Whether create-only puts are honoured (SlateDB needs them).
    pub conditional_put: Option<bool>,
    pub clock_skew_ms: Option<i64>,
    /// What went wrong, when something did.
    pub last_error: Option<String>,
}

/// A replicated branch, with what the Replication tab shows.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FlowView {
    pub status: FlowStatus,
    /// Bytes of the first copy done, 0 to 1; 1 once the replica is readable
    /// and nothing is pending.
    pub seed_progress: f32,
    /// Bytes copied and the total they are part of, for the progress text.
    pub seed_bytes_done: u64,
    pub seed_bytes_total: u64,
}

impl FlowView {
    /// The view of a status.
    pub fn of(status: FlowStatus) -> FlowView {
        let total = status.bytes_copied + status.bytes_pending;
        let seeded = status.replica_manifest_id.is_some();
        let seed_progress = if seeded && status.bytes_pending == 0 {
            1.0
        } else if total == 0 {
            0.0
        } else {
            status.bytes_copied as f32 / total as f32
        };
        FlowView {
            seed_bytes_done: status.bytes_copied,
            seed_bytes_total: total,
            seed_progress,
            status,
        }
    }

    /// The state a user reads: Seeding, In sync, Lagging, Paused, Error.
    pub fn state_label(&self) -> &'static str {
        match self.status.state {
            FlowState::Starting => "Starting",
            FlowState::Seeding => "Seeding",
            FlowState::InSync => "In sync",
            FlowState::Lagging => "Lagging",
            FlowState::Held => "Paused",
            FlowState::Paused | FlowState::Damaged => "Error",
        }
    }

    /// The message behind an Error (a region unreachable, a damaged replica).
    pub fn error(&self) -> Option<String> {
        match self.status.state {
            FlowState::Paused => Some(match &self.status.unreachable {
                Some(region) => format!(
                    "region `{region}` unreachable; retrying by itself ({})",
                    self.status.detail.as_deref().unwrap_or("no detail")
                ),
                None => self
                    .status
                    .detail
                    .clone()
                    .unwrap_or_else(|| "stopped by an error; retrying".into()),
            }),
            FlowState::Damaged => Some(format!(
                "replica damaged, being repaired: {}",
                self.status.detail.as_deref().unwrap_or("no detail")
            )),
            _ => None,
        }
    }
}

/// The databases of one region.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionDatabases {
    pub region: String,
    /// Why the listing failed, when it did.
    pub error: Option<String>,
    pub branches: Vec<BranchRow>,
}

/// One branch in a region.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BranchRow {
    pub db: String,
    pub branch: String,
    /// Size, newest manifest, writer epoch... (`None` when it could not be read).
    pub info: Option<BranchInfo>,
    /// The home region when this is a replica; `None` at the home.
    pub replica_of: Option<String>,
    /// Why it could not be described.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_differing_only_in_its_number_repaints_nothing() {
        let before = Snapshot {
            seq: 1,
            ..Snapshot::default()
        };
        let same = Snapshot {
            seq: 2,
            ..before.clone()
        };
        assert_eq!(same.change_since(&before), Change::None);
        let mut history = History::default();
        history.record(1.0, &Default::default(), 10.0, 60.0, None);
        let moved = Snapshot {
            seq: 3,
            history: Arc::new(history),
            ..before.clone()
        };
        assert_eq!(moved.change_since(&before), Change::Passive);
        let working = Snapshot {
            seq: 4,
            engine: EngineState::Stopping,
            ..before.clone()
        };
        assert_eq!(working.change_since(&before), Change::Urgent);
    }
}
