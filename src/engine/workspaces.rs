//! The engine's side of workspaces and the control log: the commands that
//! change the control plane, the workspaces this engine serves, and what
//! the snapshot shows of both.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::control;
use crate::control::event::{Databases, Event, Role};
use crate::control::state::{ControlState, WorkspaceConfig};
use crate::error::Error;
use crate::region::Region;
use crate::workspace::WorkspaceStatus;

use super::activity::Outcome;
use super::group::ReplicationKind;
use super::run::outcome;
use super::{Core, Internal, RequestId};

/// A password on its way to being hashed: never printed, not even in a
/// debug log.
/// It crosses the engine's local socket (mode 0600) as plain text, as it
/// was typed; it is never logged.
#[derive(Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A change to the control plane, as the app asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkspaceView {
    pub config: WorkspaceConfig,
    /// Set while this engine serves it.
    pub running: Option<WorkspaceStatus>,
    /// Set while it starts or stops here.
    pub busy: Option<String>,
}

/// The control plane as the snapshot carries it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
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

impl Core {
    /// Syncs the control log between the regions and reads it, unless a
    /// read is under way.
    pub(super) fn read_control(&mut self) {
        if self.control_reading {
            return;
        }
        self.control_reading = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let cache = Arc::clone(&self.control_cache);
        self.spawn(async move {
            let result = async {
                let (state, report) = cache.lock().await.sync_and_load(&regions).await?;
                for (region, e) in &report.unreachable {
                    tracing::debug!(region = %region, "control log sync: {e}");
                }
                Ok(state)
            }
            .await;
            Internal::ControlRead(result)
        });
    }

    /// Checks a control-plane change against the log's state, hashes any
    /// password off the loop, and records it in every region.
    pub(super) fn record_control(&mut self, request: RequestId, change: ControlChange) {
        let state = self.control_state.clone();
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let who = self.who.clone();
        let data_dir = self.home.data_dir.clone();
        self.spawn(async move {
            let result = async {
                let event = tokio::task::spawn_blocking(move || change.into_event())
                    .await
                    .map_err(|e| Error::Failed(format!("hashing stopped: {e}")))??;
                let event = state.check(event)?;
                let what = event.describe();
                let engine = control::engine_id(&data_dir)?;
                let appended = control::append(&regions, &engine, &who, event).await?;
                Ok(format!("{what}: {}", appended.summary()))
            }
            .await;
            Internal::ControlRecorded { request, result }
        });
    }

    pub(super) fn start_workspace(
        &mut self,
        request: RequestId,
        name: String,
        region_name: String,
        bind: Option<String>,
        port: Option<u16>,
    ) {
        if self.workspaces.contains_key(&name) || self.workspace_busy.contains_key(&name) {
            return self.fail(
                request,
                format!("workspace {name} already runs here; stop it first"),
            );
        }
        let region = match self.region(&region_name) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        self.workspace_busy
            .insert(name.clone(), format!("starting in {region_name}"));
        self.spawn(async move {
            let result = async {
                // The region's own copy of the log, as anywhere else.
                let state = control::load(&region).await?;
                crate::workspace::Workspace::start(
                    region.clone(),
                    &state,
                    &name,
                    crate::workspace::StartOptions {
                        bind,
                        port,
                        ..Default::default()
                    },
                )
                .await
            }
            .await;
            Internal::WorkspaceStarted {
                request,
                name,
                result,
            }
        });
    }

    pub(super) fn stop_workspace(&mut self, request: RequestId, name: &str) {
        let Some(ws) = self.workspaces.remove(name) else {
            return self.fail(request, format!("workspace {name} does not run here"));
        };
        let name = name.to_string();
        self.spawn(async move {
            let result = ws
                .stop()
                .await
                .map(|()| format!("workspace {name} stopped"));
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: false,
            }
        });
    }

    /// Stops workspaces that were asked to stop through the control log.
    pub(super) fn reap_workspaces(&mut self) {
        let stopped: Vec<String> = self
            .workspaces
            .iter()
            .filter(|(_, ws)| ws.is_stopped())
            .map(|(name, _)| name.clone())
            .collect();
        for name in stopped {
            if let Some(ws) = self.workspaces.remove(&name) {
                let what = format!("workspace {name} stopped (asked through the control log)");
                self.spawn(async move {
                    let outcome = match ws.stop().await {
                        Ok(()) => Outcome::Done(what),
                        Err(e) => Outcome::Failed(format!("{what}: {e}")),
                    };
                    Internal::Noted {
                        what: format!("stop workspace {name}"),
                        outcome: Some(outcome),
                    }
                });
            }
        }
    }

    pub(super) fn set_preprovisioning(&mut self, request: RequestId, on: bool) {
        let Some(group) = self.group.as_mut() else {
            return self.fail(request, "configure replication first: pre-provisioning stands workspaces up in its secondary");
        };
        if on && group.kind == ReplicationKind::ZeroLoss {
            // Not a silent switch to asynchronous.
            return self.fail(
                request,
                "this group is zero loss, which stands no workspace in the secondary; choose Storage + pre-provisioned in Edit replication (or `group configure --type pre-provisioned`) to trade zero loss for it",
            );
        }
        group.kind = if on {
            ReplicationKind::PreProvisioned
        } else {
            ReplicationKind::StorageOnly
        };
        if !on {
            for (name, (ws, _)) in std::mem::take(&mut self.standby) {
                match Arc::try_unwrap(ws) {
                    Ok(ws) => {
                        self.stop_off_loop(format!("stop standing workspace {name}"), ws.stop())
                    }
                    Err(ws) => {
                        self.standby.insert(name, (ws, String::new()));
                    }
                }
            }
            self.standby_error = None;
        }
        let message = if on {
            let names = self.standby_names();
            if names.is_empty() {
                "pre-provisioning on; no workspace serves the group's databases yet (define one in Workspaces)".to_string()
            } else {
                format!("standing up {} in the secondary", names.join(", "))
            }
        } else {
            "pre-provisioning off; failover will start workspaces on demand".to_string()
        };
        self.save_group(request, message);
        self.sync_standby();
    }

    /// Workspaces that serve a database of the group whose live branch is
    /// still homed in the primary: what pre-provisioning stands up.
    pub(super) fn standby_names(&self) -> Vec<String> {
        let Some(group) = self.group.as_ref() else {
            return Vec::new();
        };
        let dbs = self.live_flowing(&group.primary, &group.secondary);
        self.control_state
            .workspaces
            .values()
            .filter(|ws| ws.databases.iter().any(|a| dbs.contains(&a.db)))
            .map(|ws| ws.name.clone())
            .collect()
    }

    /// Starts the standing workspaces pre-provisioning wants and does not
    /// have yet (it never stops one here: a promoted one serves).
    pub(super) fn sync_standby(&mut self) {
        let Some(group) = self.group.clone() else {
            return;
        };
        if group.kind != ReplicationKind::PreProvisioned || self.failover.running {
            return;
        }
        let Ok(secondary) = self.region(&group.secondary) else {
            return;
        };
        for name in self.standby_names() {
            if self.standby.contains_key(&name) || self.standby_starting.contains(&name) {
                continue;
            }
            self.standby_starting.insert(name.clone());
            let (region, state) = (secondary.clone(), self.control_state.clone());
            self.spawn(async move {
                let token = crate::workspace::commands::probe_token();
                let options = |port| crate::workspace::StartOptions {
                    port,
                    probe_token: Some(token.clone()),
                    ..Default::default()
                };
                // Its own port where free; any free one where production
                // holds it on this machine.
                let result = match crate::workspace::Workspace::start(
                    region.clone(),
                    &state,
                    &name,
                    options(None),
                )
                .await
                {
                    Ok(ws) => Ok((ws, token.clone(), None)),
                    Err(first) => {
                        crate::workspace::Workspace::start(region, &state, &name, options(Some(0)))
                            .await
                            .map(|ws| {
                                let note = format!(
                                    "{name} stands at {} instead ({})",
                                    ws.addr(),
                                    crate::error::one_line(&first.to_string())
                                );
                                (ws, token.clone(), Some(note))
                            })
                    }
                };
                Internal::StandbyStarted { name, result }
            });
        }
    }
}
