//! The engine's side of workspaces and the control log: the commands that
//! change the control plane, the workspaces this engine serves, and what
//! the snapshot shows of both.

use std::fmt;

use serde::Serialize;

use crate::control::event::{Databases, Event, Role};
use crate::control::state::{ControlState, WorkspaceConfig};
use crate::workspace::WorkspaceStatus;

/// A password on its way to being hashed: never printed, not even in a
/// debug log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A change to the control plane, as the app asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlChange {
    /// Any event that carries no secret (workspaces, removals, rules,
    /// pipelines).
    Event(Event),
    /// A new user, or a replaced one: the engine hashes the password.
    AddUser {
        workspace: String,
        user: String,
        role: Role,
        databases: Databases,
        password: Secret,
    },
    ChangePassword {
        workspace: String,
        user: String,
        password: Secret,
    },
}

impl ControlChange {
    pub fn describe(&self) -> String {
        match self {
            ControlChange::Event(event) => event.describe(),
            ControlChange::AddUser {
                workspace,
                user,
                role,
                ..
            } => format!("user {user} ({}) in workspace {workspace}", role.name()),
            ControlChange::ChangePassword {
                workspace, user, ..
            } => format!("new password for {user} in workspace {workspace}"),
        }
    }

    /// The event to record (hashing a password is slow: call off the
    /// engine's loop).
    pub fn into_event(self) -> crate::Result<Event> {
        use crate::workspace::auth::hash_password;
        Ok(match self {
            ControlChange::Event(event) => event,
            ControlChange::AddUser {
                workspace,
                user,
                role,
                databases,
                password,
            } => Event::UserSet {
                workspace,
                user,
                role,
                databases,
                password: hash_password(&password.0)?,
            },
            ControlChange::ChangePassword {
                workspace,
                user,
                password,
            } => Event::PasswordChanged {
                workspace,
                user,
                password: hash_password(&password.0)?,
            },
        })
    }
}

/// One workspace as the app shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceView {
    pub config: WorkspaceConfig,
    /// Set while this engine serves it.
    pub running: Option<WorkspaceStatus>,
    /// Set while it starts or stops here.
    pub busy: Option<String>,
}

/// The control plane as the snapshot carries it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlView {
    pub workspaces: Vec<WorkspaceView>,
    /// Events in the log (the union of the reachable regions).
    pub events: usize,
    /// When the log was last read (µs since epoch).
    pub read_us: Option<u64>,
    /// Why the last read or sync failed, if it did.
    pub error: Option<String>,
}

impl ControlView {
    pub fn workspace(&self, name: &str) -> Option<&WorkspaceView> {
        self.workspaces.iter().find(|w| w.config.name == name)
    }
}

/// Builds the view from the folded log and what runs here.
pub fn view(
    state: &ControlState,
    running: impl Fn(&str) -> Option<WorkspaceStatus>,
    busy: impl Fn(&str) -> Option<String>,
) -> Vec<WorkspaceView> {
    state
        .workspaces
        .values()
        .map(|config| WorkspaceView {
            running: running(&config.name),
            busy: busy(&config.name),
            config: config.clone(),
        })
        .collect()
}
