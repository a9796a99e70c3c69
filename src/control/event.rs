//! The control log's events: one RON object each (docs/control-log.md).

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
}

impl Event {
    /// The workspace the event concerns.
    pub fn workspace(&self) -> &str {
        match self {
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
        }
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
}
