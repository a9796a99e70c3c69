//! What the replicator reports per branch and replica: state, progress,
//! the replica's newest consistent state, and the true RPO lag.

use serde::Serialize;

use super::Flow;
use crate::region::meter::ClassCounts;
use crate::workload::now_us;

/// Sizes in words; at home in storage, named here for the callers of statuses.
pub use crate::storage::human_bytes;

/// The state a user sees for one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum FlowState {
    /// Not looked at yet.
    Starting,
    /// The replica has no manifest yet: the first copy is under way.
    Seeding,
    /// The replica's consistent cut is complete and its lag is under the
    /// in-sync threshold.
    InSync,
    /// The cut is readable but behind the home by more than the threshold.
    Lagging,
    /// A region is unreachable; the replicator retries by itself.
    Paused,
    /// A file the replica's newest manifest needs is missing or the wrong
    /// size (found by a scrub or a list-diff); it is being copied again.
    Damaged,
    /// A person paused it; nothing is copied until they resume it.
    Held,
}

impl FlowState {
    pub fn label(self) -> &'static str {
        match self {
            FlowState::Starting => "starting",
            FlowState::Seeding => "seeding",
            FlowState::InSync => "in sync",
            FlowState::Lagging => "lagging",
            FlowState::Paused => "paused",
            FlowState::Damaged => "damaged",
            FlowState::Held => "held",
        }
    }
}

/// How long a flow may go without a fresh status before its lag counts from
/// the last sync: well above the longest idle poll, well below a request
/// timeout.
pub const STALE_STATUS: std::time::Duration = std::time::Duration::from_secs(5);

/// One branch flowing from its home to one replica region.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FlowStatus {
    pub db: String,
    pub branch: String,
    pub home: String,
    pub replica: String,
    pub state: FlowState,
    /// Why the state is what it is, when that is not obvious (an error, a gap).
    pub detail: Option<String>,
    /// The region that could not be reached, while Paused.
    pub unreachable: Option<String>,
    pub home_manifest_id: Option<u64>,
    pub home_wal_id: Option<u64>,
    /// The replica's newest consistent state: its newest manifest...
    pub replica_manifest_id: Option<u64>,
    /// ...and the newest WAL file a reader of it reaches.
    pub replica_wal_id: Option<u64>,
    /// When the home committed the replica's newest state (µs since epoch).
    pub consistent_commit_us: Option<u64>,
    /// When the home committed the oldest write the replica lacks; `None`
    /// when the replica holds everything the home had at the last look.
    pub uncovered_since_us: Option<u64>,
    /// The true RPO: seconds since `uncovered_since_us`, 0 when caught up.
    pub lag_s: Option<f64>,
    pub bytes_copied: u64,
    pub objects_copied: u64,
    pub bytes_pending: u64,
    pub objects_pending: u64,
    pub objects_deleted: u64,
    /// Copies of a name the replica already held (should stay 0).
    pub duplicate_copies: u64,
    /// Replica files found missing or altered after they were copied (by a
    /// list-diff or a scrub), and so copied again.
    pub repairs: u64,
    /// When the replica last held everything the home had (µs since epoch).
    pub last_sync_us: Option<u64>,
    pub requests_total: u64,
    /// Entries all listings returned (what a restart from the cursor saves).
    pub objects_listed: u64,
    pub requests_per_min: u64,
    /// Requests by class, both sides, in all...
    #[serde(default)]
    pub requests: ClassCounts,
    /// ...and over the last minute.
    #[serde(default)]
    pub requests_last_min: ClassCounts,
    /// When the copier means to look at the home again (µs since epoch);
    /// the status is stale only once that is well past.
    #[serde(default)]
    pub next_look_us: Option<u64>,
    /// The p99, over the last minute, of how long a WAL file took from its
    /// home write to its copy (the lag a writer's records see).
    #[serde(default)]
    pub wal_delay_p99_ms: Option<u32>,
    /// The engine that copies this flow, when another than the one showing
    /// it (several engines sharing a group's flows, docs/sharing.md).
    #[serde(default)]
    pub copied_by: Option<String>,
    pub passes: u64,
    pub scrubs: u64,
    /// When this status was taken (µs since epoch).
    pub observed_us: u64,
}

impl FlowStatus {
    pub fn new(db: &str, branch: &str, home: &str, replica: &str) -> FlowStatus {
        FlowStatus {
            db: db.to_string(),
            branch: branch.to_string(),
            home: home.to_string(),
            replica: replica.to_string(),
            state: FlowState::Starting,
            detail: None,
            unreachable: None,
            home_manifest_id: None,
            home_wal_id: None,
            replica_manifest_id: None,
            replica_wal_id: None,
            consistent_commit_us: None,
            uncovered_since_us: None,
            lag_s: None,
            bytes_copied: 0,
            objects_copied: 0,
            bytes_pending: 0,
            objects_pending: 0,
            objects_deleted: 0,
            duplicate_copies: 0,
            repairs: 0,
            last_sync_us: None,
            requests_total: 0,
            objects_listed: 0,
            requests_per_min: 0,
            requests: ClassCounts::default(),
            requests_last_min: ClassCounts::default(),
            next_look_us: None,
            wal_delay_p99_ms: None,
            copied_by: None,
            passes: 0,
            scrubs: 0,
            observed_us: now_us(),
        }
    }

    /// The status of `flow` before anything is known.
    pub fn of(flow: &Flow) -> FlowStatus {
        FlowStatus::new(
            &flow.db,
            &flow.branch,
            flow.home.name(),
            flow.replica.name(),
        )
    }

    /// The lag as of `now_us`: it keeps growing while the replicator cannot
    /// copy, even when no new status has been published.
    ///
    /// While the replica's region is unreachable the home keeps taking
    /// writes nobody can see being shipped, so the lag counts from the last
    /// moment the replica was known to hold everything. (While the home's
    /// region is unreachable, it takes no writes either.)
    ///
    /// A status nobody has refreshed for [`STALE_STATUS`] means a look at
    /// the regions hangs (a partition drops packets: requests wait for their
    /// timeouts); then too nothing can be known past the last sync.
    pub fn lag_s_at(&self, now_us: u64) -> Option<f64> {
        self.replica_manifest_id?;
        let mut since = self.uncovered_since_us;
        let replica_unreachable =
            self.state == FlowState::Paused && self.unreachable.as_deref() == Some(&self.replica);
        if replica_unreachable || self.state == FlowState::Held || self.is_stale(now_us) {
            since = since.into_iter().chain(self.last_sync_us).min();
        }
        Some(since.map_or(0.0, |since| now_us.saturating_sub(since) as f64 / 1e6))
    }

    /// Whether this status is older than [`STALE_STATUS`] at `now_us`,
    /// counted from the next look it announced when that is later (a
    /// quiet branch is looked at once per RPO target, a branch whose
    /// writer runs here only when it writes).
    pub fn is_stale(&self, now_us: u64) -> bool {
        let due = self.next_look_us.unwrap_or(0).max(self.observed_us);
        now_us.saturating_sub(due) > STALE_STATUS.as_micros() as u64
    }

    /// The lag now, with the state recomputed from it.
    pub fn refreshed(&self, in_sync_lag_s: f64) -> FlowStatus {
        let mut status = self.clone();
        let now = now_us();
        status.lag_s = status.lag_s_at(now);
        if matches!(status.state, FlowState::InSync | FlowState::Lagging) {
            status.state = match status.lag_s {
                Some(lag) if lag > in_sync_lag_s => FlowState::Lagging,
                _ => FlowState::InSync,
            };
            if status.is_stale(now) {
                status.detail = Some(format!(
                    "no answer from the regions for {} s",
                    now.saturating_sub(status.observed_us) / 1_000_000
                ));
            }
        }
        status
    }

    /// One line for people: `orders/main us-east-1 → eu-west-1: in sync, lag 0.1 s, ...`.
    pub fn line(&self) -> String {
        let lag = self
            .lag_s
            .map_or("lag unknown".to_string(), |l| format!("lag {l:.2} s"));
        let mut line = format!(
            "{}/{} {} → {}: {}, {lag}, pending {} objects ({}), copied {} objects ({}), {} requests/min",
            self.db,
            self.branch,
            self.home,
            self.replica,
            self.state.label(),
            self.objects_pending,
            human_bytes(self.bytes_pending),
            self.objects_copied,
            human_bytes(self.bytes_copied),
            self.requests_per_min
        );
        if let Some(detail) = &self.detail {
            line.push_str(&format!(" ({detail})"));
        }
        if let Some(by) = &self.copied_by {
            line.push_str(&format!("; copied by {by}"));
        }
        line
    }
}
