//! The control log's events: one RON object each (docs/control-log.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The format this build writes and reads.
pub const EVENT_FORMAT: u32 = 1;

/// A hybrid logical clock reading: wall-clock milliseconds, never behind
/// what the writer has seen, and a counter within one millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    pub ms: u64,
    pub n: u32,
}

impl Hlc {
    /// The reading after `seen` at wall-clock time `now_ms`.
    pub fn after(seen: Option<Hlc>, now_ms: u64) -> Hlc {
        match seen {
            Some(seen) if seen.ms >= now_ms => Hlc {
                ms: seen.ms,
                n: seen.n.saturating_add(1),
            },
            _ => Hlc { ms: now_ms, n: 0 },
        }
    }
}

/// One event as stored: who wrote it, where it sorts, what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub format: u32,
    pub engine: String,
    pub seq: u64,
    pub hlc: Hlc,
    pub who: String,
    pub event: Event,
}

impl Envelope {
    /// The fold order: clock, then engine, then sequence.
    pub fn order(&self) -> (Hlc, &str, u64) {
        (self.hlc, &self.engine, self.seq)
    }
}

/// What a user may do in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Everything, on every database.
    Admin,
    /// Reads and writes on the databases granted.
    ReadWrite,
    /// Reads on the databases granted.
    ReadOnly,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text.to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "readwrite" | "read-write" | "rw" => Some(Role::ReadWrite),
            "readonly" | "read-only" | "ro" => Some(Role::ReadOnly),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadWrite => "readwrite",
            Role::ReadOnly => "readonly",
        }
    }
}

/// Which databases a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Databases {
    All,
    Only(Vec<String>),
}

impl Databases {
    pub fn covers(&self, db: &str) -> bool {
        match self {
            Databases::All => true,
            Databases::Only(dbs) => dbs.iter().any(|d| d == db),
        }
    }
}

/// A database served by a workspace at a fixed index (`SELECT n`): the
/// index stays the same across failovers, so clients keep their URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub index: u32,
    pub db: String,
}

/// Why a branch exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BranchReason {
    /// The live branch a failover made.
    Failover,
    /// A test failover's branch, torn down at its time to live.
    Drill,
    /// A point-in-time restore, or writes recovered from a returning region.
    Recovery,
    /// Made by hand.
    Manual,
}

impl BranchReason {
    pub fn name(self) -> &'static str {
        match self {
            BranchReason::Failover => "failover",
            BranchReason::Drill => "drill",
            BranchReason::Recovery => "recovery",
            BranchReason::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<BranchReason> {
        match text.to_ascii_lowercase().as_str() {
            "failover" => Some(BranchReason::Failover),
            "drill" => Some(BranchReason::Drill),
            "recovery" => Some(BranchReason::Recovery),
            "manual" => Some(BranchReason::Manual),
            _ => None,
        }
    }
}

/// A branch made by forking another (docs/control-log.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchForked {
    pub db: String,
    pub branch: String,
    /// The branch it was forked from.
    pub source: String,
    /// Where it was made: its home, the one region its writer may run in.
    pub region: String,
    pub reason: BranchReason,
    /// The source's manifest the fork starts from.
    pub manifest_id: u64,
    /// The first of the source's WAL files the fork point reads
    /// (`wal_from..=wal_end`): a fork at a replica keeps them there, so its
    /// fork point stays readable (recovered writes are compared with it).
    /// Absent in events written before it was recorded.
    #[serde(default)]
    pub wal_from: Option<u64>,
    /// The source's newest WAL file the fork holds.
    pub wal_end: u64,
    /// The shadow parent's path, for a fork made at a replica.
    pub shadow: Option<String>,
    /// Compacted SSTs the fork reads in place, by the branch they belong
    /// to: kept in every region while the fork exists (invariant 3).
    pub pinned: BTreeMap<String, Vec<String>>,
    /// When the branch is to be deleted (Unix milliseconds), if ever.
    pub expires_ms: Option<u64>,
}

/// A database's live branch after a failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveBranch {
    pub db: String,
    pub branch: String,
    /// The branch's home.
    pub region: String,
}

/// What kind of operation a record measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationKind {
    Failover,
    Drill,
    /// A planned move of the live branches' home (RPO zero).
    Switchover,
    /// A planned switchover back to the region a failover left.
    Failback,
    /// Writes stranded in a returning region, forked as a recovered branch.
    Recovery,
    /// Recovered writes merged into the live branch.
    Merge,
}

impl OperationKind {
    pub fn name(self) -> &'static str {
        match self {
            OperationKind::Failover => "failover",
            OperationKind::Drill => "drill",
            OperationKind::Switchover => "switchover",
            OperationKind::Failback => "failback",
            OperationKind::Recovery => "recovery",
            OperationKind::Merge => "merge",
        }
    }
}

/// Writes stranded in a returning region, forked as a branch next to the
/// live one (docs/control-log.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritesRecovered {
    /// The recovered branch: the stranded branch's final state.
    pub fork: BranchForked,
    /// The live branch the writes are to be merged into.
    pub live: String,
    /// The region the writes were stranded in.
    pub stranded_in: String,
    /// Keys written there after the live branch's fork point.
    pub changed: u64,
    /// Of those, keys the live branch changed too.
    pub conflicts: u64,
    /// A digest of the comparison the recovery showed (every changed key
    /// with its value at the fork point and in the recovered branch, see
    /// `orchestrator::recover::Recovered::digest`): a merge writes only a
    /// comparison that still has it. Absent in events written before it
    /// was recorded.
    #[serde(default)]
    pub digest: Option<String>,
}

/// One step of an operation and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub ms: u64,
    pub ok: bool,
    pub detail: String,
}

/// What one database lost in an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbRpo {
    pub db: String,
    /// The branch made from the replica.
    pub branch: String,
    /// The replica's lag at the fork (now minus its last full sync), when known.
    pub lag_ms: Option<u64>,
    /// Acknowledged records the new branch lacks, when the workload's
    /// acknowledgement log was available.
    pub missing_records: Option<u64>,
    /// Acknowledged records at the fork, from the same log.
    pub acknowledged: Option<u64>,
    /// How long before the fork the oldest missing record was acknowledged.
    pub missing_span_ms: Option<u64>,
    /// The instant the counts are taken at (Unix milliseconds): records
    /// acknowledged by then count.
    pub measured_at_ms: u64,
}

/// A failover or drill with its measured RPO and RTO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    /// `failover-<epoch>` or `drill-<ms>`.
    pub id: String,
    pub kind: OperationKind,
    pub from: String,
    pub to: String,
    /// When it was asked for (Unix milliseconds).
    pub started_ms: u64,
    /// From the ask to the first write acknowledged through the new
    /// connection string (or, with no workspace, to the writer's open).
    pub rto_ms: Option<u64>,
    /// What RTO was measured to.
    pub rto_to: String,
    pub rpo: Vec<DbRpo>,
    pub steps: Vec<Step>,
    /// The connection strings published.
    pub endpoints: Vec<String>,
    /// The verification's verdict (drills), or the failover's outcome.
    pub outcome: String,
    pub ok: bool,
}

impl OperationRecord {
    /// The operation's RPO: the worst database's oldest missing
    /// acknowledged write before the fork, else its replica's lag at the
    /// fork (milliseconds).
    pub fn rpo_ms(&self) -> Option<u64> {
        self.rpo
            .iter()
            .filter_map(|d| d.missing_span_ms.or(d.lag_ms))
            .max()
    }

    /// The steps that failed, each as `name: why`.
    pub fn failed_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| !s.ok)
            .map(|s| format!("{}: {}", s.name, s.detail))
            .collect()
    }
}

/// Everything the control log records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Creates a workspace or replaces its endpoint and databases (users,
    /// rules and pipelines stay).
    WorkspaceSet {
        name: String,
        databases: Vec<Attachment>,
        bind: String,
        port: u16,
        /// Serve without AUTH (only for trusted networks).
        open: bool,
    },
    WorkspaceRemoved {
        name: String,
    },
    /// Asks whichever process serves the workspace to stop.
    WorkspaceStop {
        name: String,
    },
    /// Creates or replaces a user.
    UserSet {
        workspace: String,
        user: String,
        role: Role,
        databases: Databases,
        /// An argon2id PHC string; never the password.
        password: String,
    },
    PasswordChanged {
        workspace: String,
        user: String,
        password: String,
    },
    UserRemoved {
        workspace: String,
        user: String,
    },
    /// Adds a CIDR to the workspace's allow-list.
    FirewallAllowed {
        workspace: String,
        cidr: String,
    },
    FirewallRevoked {
        workspace: String,
        cidr: String,
    },
    /// Creates or replaces a pipeline (its progress lives in its database).
    PipelineSet {
        workspace: String,
        pipeline: String,
        db: String,
        /// A region-style URL of the folder holding the NDJSON files.
        source: String,
        /// The JSON field whose value names a record's key.
        key_field: String,
        /// Prepended to every key.
        key_prefix: String,
    },
    /// Pauses (`running: false`) or resumes a pipeline.
    PipelineRunning {
        workspace: String,
        pipeline: String,
        running: bool,
    },
    PipelineRemoved {
        workspace: String,
        pipeline: String,
    },
    /// A branch was forked.
    BranchForked(BranchForked),
    /// A branch was deleted (its files are gone or going).
    BranchDeleted {
        db: String,
        branch: String,
    },
    /// A failover: epoch `epoch` begins, and these branches are live. A
    /// failover whose epoch is not one above the log's is ignored (two
    /// failovers at once: the first in the log's order wins).
    FailedOver {
        epoch: u64,
        from: String,
        to: String,
        live: Vec<LiveBranch>,
        /// The branches the failover forked (recorded with it, in one put).
        forks: Vec<BranchForked>,
    },
    /// A failover or drill's measured RPO, RTO and steps.
    OperationRecorded(Box<OperationRecord>),
    /// A planned switchover or failback: the live branches keep their names
    /// and move their home to `to`. Like a failover it starts epoch
    /// `epoch`, and is ignored unless that is one above the log's.
    HomeMoved {
        epoch: u64,
        from: String,
        to: String,
        live: Vec<LiveBranch>,
        kind: OperationKind,
    },
    /// Writes stranded in a returning region were forked as a branch.
    WritesRecovered(Box<WritesRecovered>),
    /// Recovered writes were merged into the live branch.
    Merged {
        db: String,
        recovered: String,
        live: String,
        /// Keys written by this merge.
        applied: u64,
        /// Conflicting keys where the recovered value was taken.
        taken: u64,
        /// Conflicting keys where the live value was kept.
        kept: u64,
    },
}

impl Event {
    /// The workspace the event concerns, if it concerns one.
    pub fn workspace(&self) -> Option<&str> {
        Some(match self {
            Event::BranchForked(_)
            | Event::BranchDeleted { .. }
            | Event::FailedOver { .. }
            | Event::OperationRecorded(_)
            | Event::HomeMoved { .. }
            | Event::WritesRecovered(_)
            | Event::Merged { .. } => return None,
            Event::WorkspaceSet { name, .. }
            | Event::WorkspaceRemoved { name }
            | Event::WorkspaceStop { name } => name,
            Event::UserSet { workspace, .. }
            | Event::PasswordChanged { workspace, .. }
            | Event::UserRemoved { workspace, .. }
            | Event::FirewallAllowed { workspace, .. }
            | Event::FirewallRevoked { workspace, .. }
            | Event::PipelineSet { workspace, .. }
            | Event::PipelineRunning { workspace, .. }
            | Event::PipelineRemoved { workspace, .. } => workspace,
        })
    }

    /// One line for an activity list (no secret: hashes are left out).
    pub fn describe(&self) -> String {
        match self {
            Event::WorkspaceSet {
                name,
                databases,
                bind,
                port,
                open,
            } => {
                let dbs: Vec<String> = databases
                    .iter()
                    .map(|a| format!("{}={}", a.index, a.db))
                    .collect();
                format!(
                    "workspace {name} at {bind}:{port} serving {}{}",
                    dbs.join(", "),
                    if *open { " (open, no AUTH)" } else { "" }
                )
            }
            Event::WorkspaceRemoved { name } => format!("remove workspace {name}"),
            Event::WorkspaceStop { name } => format!("stop workspace {name}"),
            Event::UserSet {
                workspace,
                user,
                role,
                ..
            } => format!("user {user} ({}) in workspace {workspace}", role.name()),
            Event::PasswordChanged {
                workspace, user, ..
            } => {
                format!("new password for {user} in workspace {workspace}")
            }
            Event::UserRemoved { workspace, user } => {
                format!("remove user {user} from workspace {workspace}")
            }
            Event::FirewallAllowed { workspace, cidr } => {
                format!("allow {cidr} into workspace {workspace}")
            }
            Event::FirewallRevoked { workspace, cidr } => {
                format!("stop allowing {cidr} into workspace {workspace}")
            }
            Event::PipelineSet {
                workspace,
                pipeline,
                db,
                source,
                ..
            } => format!("pipeline {pipeline} in workspace {workspace}: {source} → {db}"),
            Event::PipelineRunning {
                workspace,
                pipeline,
                running,
            } => format!(
                "{} pipeline {pipeline} in workspace {workspace}",
                if *running { "resume" } else { "pause" }
            ),
            Event::PipelineRemoved {
                workspace,
                pipeline,
            } => format!("remove pipeline {pipeline} from workspace {workspace}"),
            Event::BranchForked(f) => format!(
                "fork {}/{} off {} in {} ({}, manifest {}, WAL {})",
                f.db,
                f.branch,
                f.source,
                f.region,
                f.reason.name(),
                f.manifest_id,
                f.wal_end
            ),
            Event::BranchDeleted { db, branch } => format!("delete branch {db}/{branch}"),
            Event::FailedOver {
                epoch,
                from,
                to,
                live,
                ..
            } => {
                let live: Vec<String> = live
                    .iter()
                    .map(|l| format!("{}/{}", l.db, l.branch))
                    .collect();
                format!(
                    "failover {from} → {to} (epoch {epoch}): live {}",
                    live.join(", ")
                )
            }
            Event::OperationRecorded(r) => format!(
                "{} {} → {}: RTO {}, {}",
                r.kind.name(),
                r.from,
                r.to,
                r.rto_ms
                    .map_or("not measured".to_string(), |ms| format!("{ms} ms")),
                r.outcome
            ),
            Event::HomeMoved {
                epoch,
                from,
                to,
                live,
                kind,
            } => {
                let live: Vec<String> = live
                    .iter()
                    .map(|l| format!("{}/{}", l.db, l.branch))
                    .collect();
                format!(
                    "{} {from} → {to} (epoch {epoch}): {} now written in {to}",
                    kind.name(),
                    live.join(", ")
                )
            }
            Event::WritesRecovered(r) => format!(
                "recover {} key(s) stranded in {} as {}/{} ({} conflict(s) with {})",
                r.changed, r.stranded_in, r.fork.db, r.fork.branch, r.conflicts, r.live
            ),
            Event::Merged {
                db,
                recovered,
                live,
                applied,
                taken,
                kept,
            } => format!(
                "merge {db}/{recovered} into {db}/{live}: {applied} key(s) written, {taken} conflict(s) taken, {kept} kept"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_runs_behind_what_it_saw() {
        let seen = Hlc { ms: 2_000, n: 4 };
        assert_eq!(Hlc::after(Some(seen), 1_000), Hlc { ms: 2_000, n: 5 });
        assert_eq!(Hlc::after(Some(seen), 3_000), Hlc { ms: 3_000, n: 0 });
        assert_eq!(Hlc::after(None, 7), Hlc { ms: 7, n: 0 });
    }

    #[test]
    fn an_event_round_trips_through_ron() {
        let envelope = Envelope {
            format: EVENT_FORMAT,
            engine: "00aa".into(),
            seq: 3,
            hlc: Hlc { ms: 5, n: 1 },
            who: "alice".into(),
            event: Event::UserSet {
                workspace: "shop".into(),
                user: "app".into(),
                role: Role::ReadOnly,
                databases: Databases::Only(vec!["orders".into()]),
                password: "$argon2id$x".into(),
            },
        };
        let text = ron::to_string(&envelope).expect("encode");
        let back: Envelope = ron::from_str(&text).expect("decode");
        assert_eq!(back, envelope);
    }

    #[test]
    fn events_written_before_a_field_was_recorded_still_read() {
        let fork = BranchForked {
            db: "orders".into(),
            branch: "recovered-1".into(),
            source: "main".into(),
            region: "eu-west-1".into(),
            reason: BranchReason::Recovery,
            manifest_id: 9,
            wal_from: Some(31),
            wal_end: 40,
            shadow: Some("_lifeboat/shadow/orders/main/recovered-1".into()),
            pinned: BTreeMap::new(),
            expires_ms: None,
        };
        let event = Event::WritesRecovered(Box::new(WritesRecovered {
            fork,
            live: "failover-1".into(),
            stranded_in: "us-east-1".into(),
            changed: 12,
            conflicts: 1,
            digest: Some("00ff".into()),
        }));
        let text = ron::to_string(&event).expect("encode");
        let old = text
            .replace("wal_from:Some(31),", "")
            .replace(",digest:Some(\"00ff\")", "");
        assert!(
            !old.contains("wal_from") && !old.contains("digest"),
            "{old}"
        );
        let Event::WritesRecovered(back) = ron::from_str::<Event>(&old).expect("decode") else {
            panic!("not WritesRecovered: {old}");
        };
        assert_eq!((back.fork.wal_from, back.digest), (None, None));
        assert_eq!((back.fork.wal_end, back.changed), (40, 12));
    }
}
