//! The control plane's state: the log's events folded in their one order.
//! Pure: no I/O, so every region that holds the same events gets the same
//! state.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::event::{Attachment, Databases, Envelope, Event, Hlc, Role};

/// A user of a workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub role: Role,
    pub databases: Databases,
    /// argon2id PHC string.
    #[serde(skip)]
    pub password: String,
}

/// A pipeline's definition and whether it should run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineConfig {
    pub db: String,
    pub source: String,
    pub key_field: String,
    pub key_prefix: String,
    pub running: bool,
}

/// One workspace's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceConfig {
    pub name: String,
    pub databases: Vec<Attachment>,
    pub bind: String,
    pub port: u16,
    pub open: bool,
    pub users: BTreeMap<String, User>,
    /// CIDRs allowed to connect; empty allows whoever reaches the address.
    pub firewall: BTreeSet<String>,
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// The clock of the newest stop request.
    pub stop_requested: Option<Hlc>,
}

impl WorkspaceConfig {
    /// The database served at `index`.
    pub fn database_at(&self, index: u32) -> Option<&str> {
        self.databases
            .iter()
            .find(|a| a.index == index)
            .map(|a| a.db.as_str())
    }
}

/// Everything the log says, as of its newest event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ControlState {
    pub workspaces: BTreeMap<String, WorkspaceConfig>,
    /// The newest clock reading in the log.
    pub newest: Option<Hlc>,
    pub events: usize,
}

impl ControlState {
    /// Folds `events` in the log's order (they may come in any order).
    pub fn fold(mut events: Vec<Envelope>) -> ControlState {
        events.sort_by(|a, b| a.order().cmp(&b.order()));
        let mut state = ControlState::default();
        for envelope in &events {
            state.apply(envelope);
        }
        state
    }

    fn apply(&mut self, envelope: &Envelope) {
        self.events += 1;
        self.newest = self.newest.max(Some(envelope.hlc));
        let event = &envelope.event;
        if let Event::WorkspaceSet {
            name,
            databases,
            bind,
            port,
            open,
        } = event
        {
            let ws = self
                .workspaces
                .entry(name.clone())
                .or_insert_with(|| WorkspaceConfig {
                    name: name.clone(),
                    databases: Vec::new(),
                    bind: bind.clone(),
                    port: *port,
                    open: *open,
                    users: BTreeMap::new(),
                    firewall: BTreeSet::new(),
                    pipelines: BTreeMap::new(),
                    stop_requested: None,
                });
            ws.databases = databases.clone();
            ws.bind = bind.clone();
            ws.port = *port;
            ws.open = *open;
            return;
        }
        if let Event::WorkspaceRemoved { name } = event {
            self.workspaces.remove(name);
            return;
        }
        let Some(ws) = self.workspaces.get_mut(event.workspace()) else {
            return;
        };
        match event {
            Event::WorkspaceSet { .. } | Event::WorkspaceRemoved { .. } => {}
            Event::WorkspaceStop { .. } => ws.stop_requested = Some(envelope.hlc),
            Event::UserSet {
                user,
                role,
                databases,
                password,
                ..
            } => {
                ws.users.insert(
                    user.clone(),
                    User {
                        role: *role,
                        databases: databases.clone(),
                        password: password.clone(),
                    },
                );
            }
            Event::PasswordChanged { user, password, .. } => {
                if let Some(u) = ws.users.get_mut(user) {
                    u.password = password.clone();
                }
            }
            Event::UserRemoved { user, .. } => {
                ws.users.remove(user);
            }
            Event::FirewallAllowed { cidr, .. } => {
                ws.firewall.insert(cidr.clone());
            }
            Event::FirewallRevoked { cidr, .. } => {
                ws.firewall.remove(cidr);
            }
            Event::PipelineSet {
                pipeline,
                db,
                source,
                key_field,
                key_prefix,
                ..
            } => {
                let running = ws.pipelines.get(pipeline).is_none_or(|p| p.running);
                ws.pipelines.insert(
                    pipeline.clone(),
                    PipelineConfig {
                        db: db.clone(),
                        source: source.clone(),
                        key_field: key_field.clone(),
                        key_prefix: key_prefix.clone(),
                        running,
                    },
                );
            }
            Event::PipelineRunning {
                pipeline, running, ..
            } => {
                if let Some(p) = ws.pipelines.get_mut(pipeline) {
                    p.running = *running;
                }
            }
            Event::PipelineRemoved { pipeline, .. } => {
                ws.pipelines.remove(pipeline);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::event::EVENT_FORMAT;

    fn at(engine: &str, seq: u64, ms: u64, event: Event) -> Envelope {
        Envelope {
            format: EVENT_FORMAT,
            engine: engine.into(),
            seq,
            hlc: Hlc { ms, n: 0 },
            who: "test".into(),
            event,
        }
    }

    fn workspace() -> Event {
        Event::WorkspaceSet {
            name: "shop".into(),
            databases: vec![Attachment {
                index: 0,
                db: "orders".into(),
            }],
            bind: "127.0.0.1".into(),
            port: 16379,
            open: false,
        }
    }

    #[test]
    fn every_arrival_order_folds_to_the_same_state() {
        let allow = |cidr: &str| Event::FirewallAllowed {
            workspace: "shop".into(),
            cidr: cidr.into(),
        };
        let events = vec![
            at("a", 1, 10, workspace()),
            at("a", 2, 20, allow("10.0.0.0/8")),
            at(
                "b",
                1,
                20,
                Event::FirewallRevoked {
                    workspace: "shop".into(),
                    cidr: "10.0.0.0/8".into(),
                },
            ),
            at("b", 2, 30, allow("127.0.0.1/32")),
        ];
        let forward = ControlState::fold(events.clone());
        let mut reversed = events;
        reversed.reverse();
        assert_eq!(ControlState::fold(reversed), forward);
        // Same clock: engine `a` sorts first, so `b`'s revoke wins.
        let ws = &forward.workspaces["shop"];
        assert_eq!(ws.firewall.iter().collect::<Vec<_>>(), vec!["127.0.0.1/32"]);
    }

    #[test]
    fn a_removed_workspace_forgets_its_users() {
        let user = Event::UserSet {
            workspace: "shop".into(),
            user: "app".into(),
            role: Role::ReadWrite,
            databases: Databases::All,
            password: "h".into(),
        };
        let state = ControlState::fold(vec![
            at("a", 1, 1, workspace()),
            at("a", 2, 2, user.clone()),
            at(
                "a",
                3,
                3,
                Event::WorkspaceRemoved {
                    name: "shop".into(),
                },
            ),
            at("a", 4, 4, workspace()),
        ]);
        assert!(state.workspaces["shop"].users.is_empty());
        // An event for a workspace that does not exist changes nothing.
        let state = ControlState::fold(vec![at("a", 1, 1, user)]);
        assert!(state.workspaces.is_empty());
    }
}
