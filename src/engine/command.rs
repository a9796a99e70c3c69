//! What the app and the CLI ask the engine to do.

use std::path::PathBuf;

use crate::control::event::OperationKind;
use crate::orchestrator::merge::Pick;
use crate::region::RegionSpec;

use super::group::{DataCopy, ReplicationKind, Selection, WriteRules};
use super::workspaces::ControlChange;

/// Names a command, so its outcome can be found in the activity log.
pub type RequestId = u64;

/// The regions and databases an operation concerns when they are not the
/// group's (the CLI's `--from`, `--to` and `--db`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    pub from: String,
    pub to: String,
    /// Empty: the live branches written in `from` and replicated to `to`.
    pub dbs: Vec<String>,
}

/// How an operation that starts workspaces serves them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Serving {
    /// Start the workspaces (else change and record only).
    pub serve: bool,
    /// Listen on this address instead of each workspace's own.
    pub bind: Option<String>,
    /// Listen on this port instead of each workspace's own (0: any free one).
    pub port: Option<u16>,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            serve: true,
            bind: None,
            port: None,
        }
    }
}

/// What the GUI or CLI asks the engine to do. Each ends as an activity
/// entry (`Done` or `Failed` with one line that says why).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Replicate from the primary (the first configured region) to
    /// `secondary`; replaces any group configured before.
    ConfigureReplication {
        secondary: String,
        databases: Selection,
        kind: ReplicationKind,
        /// Lag above this counts as an RPO breach (seconds).
        rpo_target_s: f64,
        /// Who moves the SSTs (absent: Lifeboat).
        #[serde(default)]
        data: DataCopy,
        /// Zero loss's timeout and the RPO guard.
        #[serde(default)]
        writes: WriteRules,
    },
    /// Stop every flow and forget the group (replicas stay where they are).
    StopReplication,
    /// Stop copying database `db` until resumed.
    Pause { db: String },
    /// Copy database `db` again.
    Resume { db: String },
    /// Lag above `seconds` counts as an RPO breach.
    SetRpoTarget { seconds: f64 },
    /// The group drills by itself on `schedule` (`None`: only when asked).
    SetDrillSchedule {
        schedule: Option<super::schedule::DrillSchedule>,
        /// The smoke commands the drills run (`None`: those saved).
        #[serde(default)]
        smoke: Option<Vec<String>>,
    },
    /// Save the alert settings (sinks and rules) the app's form made
    /// whole; the engine uses them within seconds.
    SetAlerts {
        settings: crate::metrics::alerts::AlertSettings,
    },
    /// Send a sample event through each sink (or the one named).
    TestAlerts { sink: Option<String> },
    /// Write the monthly DR report of `month` (`YYYY-MM`; this month
    /// when `None`) into the data folder's `reports/`.
    ReportMonth { month: Option<String> },
    /// Create an empty database at `region` (its home).
    CreateDatabase { region: String, name: String },
    /// Delete a database's files in `region`; `typed_name` must equal
    /// `name`, which is what the user typed to confirm.
    DeleteDatabase {
        region: String,
        name: String,
        typed_name: String,
    },
    /// Add a region (`replacing: None`) or change one; it is probed before
    /// it is saved.
    SaveRegion {
        replacing: Option<String>,
        spec: RegionSpec,
    },
    /// Forget a region (its data is left alone).
    RemoveRegion { name: String },
    /// Health-check every region now.
    CheckRegions,
    /// List the databases of every region now.
    RefreshDatabases,
    /// Create demo databases in the primary, write to them continuously and
    /// replicate them (a first look at the product).
    StartDemo,
    /// Stop the demo's writers (the databases stay).
    StopDemo,
    /// Write test records to the live branch of `db` continuously (as the
    /// demo does), logging what was acknowledged, until stopped.
    StartWorkload { db: String },
    /// Stop writing test records to `db`.
    StopWorkload { db: String },
    /// Write the activity log as CSV to `path`.
    ExportActivity { path: PathBuf },
    /// Record a change to workspaces, users, firewall rules or pipelines in
    /// every region's control log.
    Control { change: ControlChange },
    /// Serve workspace `name` from `region` in this engine.
    StartWorkspace {
        name: String,
        region: String,
        /// Its address, when not its own.
        #[serde(default)]
        bind: Option<String>,
        #[serde(default)]
        port: Option<u16>,
    },
    /// Stop serving workspace `name` here.
    StopWorkspace { name: String },
    /// Looks at both regions and shows what a failover of the group would
    /// do and lose (the snapshot's `failover.preview`); changes nothing.
    /// `scope`: other regions or databases than the group's.
    PreviewFailover {
        #[serde(default)]
        scope: Option<Scope>,
        /// Which state of each replica to take: each one's newest, or all
        /// as of one instant (the newest every replica holds, or a time).
        #[serde(default)]
        cut: crate::orchestrator::failover::Cut,
    },
    /// Fails the group over as the preview of epoch `epoch` said: fences,
    /// forks, records, serves, measures. Refused if the preview is stale.
    Failover {
        epoch: u64,
        /// When the asker asked (ms since the epoch, this machine's clock):
        /// RTO counts from there. `None`: when the engine got it.
        #[serde(default)]
        asked_ms: Option<u64>,
        #[serde(default)]
        serving: Serving,
    },
    /// Test failover: forks drill branches in the secondary, serves them
    /// from a drill workspace, verifies them and reports; they expire
    /// after `ttl_s`.
    Drill {
        ttl_s: u64,
        smoke: Vec<String>,
        #[serde(default)]
        scope: Option<Scope>,
        /// The drill workspace's port (default: its own).
        #[serde(default)]
        port: Option<u16>,
        /// Which state of each replica to take (as for `PreviewFailover`).
        #[serde(default)]
        cut: crate::orchestrator::failover::Cut,
    },
    /// Forks `db` as of `at_ms` (point-in-time recovery) in `region`, off
    /// its live branch (or branch `from`), as branch `name`.
    Restore {
        db: String,
        region: String,
        at_ms: u64,
        name: String,
        #[serde(default)]
        from: Option<String>,
    },
    /// Stands the group's workspaces up in the secondary, following the
    /// replicas read-only, so that a failover only forks and opens writers
    /// (the group becomes "storage + pre-provisioned").
    StartPreprovisioning,
    /// Stops the standing workspaces (the group becomes "storage only").
    StopPreprovisioning,
    /// Forks branch `name` of `db` off `from` (default: the live branch)
    /// at its newest consistent state in `region`, which becomes its home;
    /// deleted after `ttl_s` when given.
    ForkBranch {
        db: String,
        from: Option<String>,
        name: String,
        region: String,
        ttl_s: Option<u64>,
    },
    /// Deletes a forked branch everywhere (never the live one).
    DeleteBranch { db: String, branch: String },
    /// Writes the report of operation `id` (Markdown, or JSON for `.json`).
    ExportReport { id: String, path: PathBuf },
    /// Looks at both regions: what a switchover (or failback) of the
    /// group's live branches would move (the snapshot's `moving.plan`).
    PlanMove {
        kind: OperationKind,
        #[serde(default)]
        scope: Option<Scope>,
    },
    /// Moves the live branches as the plan of epoch `epoch` said.
    Move {
        kind: OperationKind,
        epoch: u64,
        /// As for `Failover`.
        #[serde(default)]
        asked_ms: Option<u64>,
        #[serde(default)]
        serving: Serving,
    },
    /// Recovers the writes of `db` stranded where its live branch was
    /// failed over from (the region must answer again).
    Recover { db: String },
    /// Compares recovered branch `branch` of `db` with the live one.
    CompareRecovered { db: String, branch: String },
    /// Merges recovered branch `branch` into the live one.
    Merge {
        db: String,
        branch: String,
        pick: Pick,
        discard: bool,
        /// Keys per durable write batch (default: `merge::CHUNK_KEYS`).
        #[serde(default)]
        chunk: Option<usize>,
    },
    /// Installs and starts `lifeboat serve` on this data folder as a
    /// systemd user service (`lifeboat service install`), which takes over
    /// once this engine lets go of the leases.
    InstallService,
    /// Stop everything (cursors saved) and end the engine.
    Shutdown,
}

impl Command {
    /// The command in words, for the activity log.
    pub fn describe(&self) -> String {
        match self {
            Command::ConfigureReplication {
                secondary,
                databases,
                ..
            } => match databases {
                Selection::All => format!("configure replication of all databases to {secondary}"),
                Selection::Only(dbs) => format!(
                    "configure replication of {} to {secondary}",
                    dbs.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            },
            Command::StopReplication => "stop replication".into(),
            Command::Pause { db } => format!("pause replication of {db}"),
            Command::Resume { db } => format!("resume replication of {db}"),
            Command::SetRpoTarget { seconds } => format!("set the RPO target to {seconds} s"),
            Command::SetDrillSchedule { schedule, .. } => match schedule {
                Some(s) => format!("drill {}", s.describe()),
                None => "stop the scheduled drills".into(),
            },
            Command::SetAlerts { settings } => {
                format!("save the alert settings ({} sinks)", settings.sinks.len())
            }
            Command::TestAlerts { sink } => match sink {
                Some(name) => format!("send a test alert through {name}"),
                None => "send a test alert through every sink".into(),
            },
            Command::ReportMonth { month } => format!(
                "write the DR report of {}",
                month.as_deref().unwrap_or("this month")
            ),
            Command::CreateDatabase { region, name } => {
                format!("create database {name} in {region}")
            }
            Command::DeleteDatabase { region, name, .. } => {
                format!("delete database {name} in {region}")
            }
            Command::SaveRegion {
                replacing: None,
                spec,
            } => format!("add region {} ({})", spec.name, spec.url),
            Command::SaveRegion {
                replacing: Some(old),
                spec,
            } => format!("change region {old} to {} ({})", spec.name, spec.url),
            Command::RemoveRegion { name } => format!("remove region {name}"),
            Command::CheckRegions => "check every region".into(),
            Command::RefreshDatabases => "list the databases".into(),
            Command::StartDemo => "start the demo".into(),
            Command::StopDemo => "stop the demo writers".into(),
            Command::StartWorkload { db } => format!("write test records to {db}"),
            Command::StopWorkload { db } => format!("stop writing test records to {db}"),
            Command::ExportActivity { path } => {
                format!("export the activity log to {}", path.display())
            }
            Command::Control { change } => change.describe(),
            Command::PreviewFailover { .. } => "look at what a failover would lose".into(),
            Command::Restore {
                db,
                region,
                at_ms,
                name,
                ..
            } => format!(
                "restore {db} in {region} as of {} as {name}",
                crate::workload::verify::format_us(at_ms.saturating_mul(1000))
            ),
            Command::DeleteBranch { db, branch } => format!("delete branch {db}/{branch}"),
            Command::ForkBranch {
                db, name, region, ..
            } => format!("fork {db}/{name} in {region}"),
            Command::StartPreprovisioning => "start pre-provisioning".into(),
            Command::StopPreprovisioning => "stop pre-provisioning".into(),
            Command::Drill { ttl_s, .. } => format!("test failover (branches kept {ttl_s} s)"),
            Command::Failover { epoch, .. } => format!("fail over (epoch {epoch})"),
            Command::PlanMove { kind, .. } => format!("plan a {}", kind.name()),
            Command::Move { kind, epoch, .. } => format!("{} (epoch {epoch})", kind.name()),
            Command::Recover { db } => format!("recover the stranded writes of {db}"),
            Command::CompareRecovered { db, branch } => {
                format!("compare {db}/{branch} with the live branch")
            }
            Command::Merge {
                db, branch, pick, ..
            } => {
                format!("merge {db}/{branch}: {}", pick.describe())
            }
            Command::ExportReport { id, path } => {
                format!("export the report of {id} to {}", path.display())
            }
            Command::StartWorkspace { name, region, .. } => {
                format!("start workspace {name} in {region}")
            }
            Command::StopWorkspace { name } => format!("stop workspace {name} here"),
            Command::InstallService => "install the engine as a service".into(),
            Command::Shutdown => "stop the engine".into(),
        }
    }
}

/// What a client reads of a snapshot besides a command's outcome.
pub(super) type DataOf = fn(&super::Snapshot) -> Option<serde_json::Value>;

impl Command {
    /// What the asker of this command reads once it ended: the preview,
    /// plan or record of the operation it ran.
    pub(super) fn data_of(&self) -> DataOf {
        fn json<T: serde::Serialize>(value: &T) -> Option<serde_json::Value> {
            serde_json::to_value(value).ok()
        }
        match self {
            Command::PreviewFailover { .. } => |s| s.failover.preview.as_ref().and_then(json),
            Command::Failover { .. } => |s| s.failover.last.as_ref().and_then(json),
            Command::Drill { .. } => |s| s.drill.last.as_ref().and_then(json),
            Command::PlanMove { .. } => |s| s.moving.plan.as_ref().and_then(json),
            Command::Move { .. } => |s| s.moving.last.as_ref().and_then(json),
            Command::Recover { .. } | Command::Merge { .. } | Command::CompareRecovered { .. } => {
                |s| json(&*s.recovery)
            }
            _ => |_| None,
        }
    }
}
