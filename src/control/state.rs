//! The control plane's state: the log's events folded in their one order.
//! Pure: no I/O, so every region that holds the same events gets the same
//! state.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::event::{
    Attachment, BranchForked, BranchReason, Databases, Envelope, Event, Hlc, LiveBranch,
    OperationRecord, Role, WritesRecovered,
};
use crate::error::{Error, Result};
use crate::region::validate_name;
use crate::workspace::firewall::parse_rule;

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

/// A forked branch as the log knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BranchRecord {
    #[serde(flatten)]
    pub fork: BranchForked,
    /// When it was forked (the event's clock).
    pub created: Hlc,
}

/// A recovered branch as the log knows it, with what was merged of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveredRecord {
    #[serde(flatten)]
    pub recovered: WritesRecovered,
    /// Keys merged into the live branch so far (every merge summed).
    pub merged: u64,
    pub merges: u32,
}

/// Everything the log says, as of its newest event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ControlState {
    pub workspaces: BTreeMap<String, WorkspaceConfig>,
    /// Forked branches by database, then branch name.
    pub branches: BTreeMap<String, BTreeMap<String, BranchRecord>>,
    /// Each database's live branch where a failover moved it (elsewhere:
    /// `main`, at the group's primary).
    pub live: BTreeMap<String, LiveBranch>,
    /// The newest failover's or switchover's epoch (0: none yet).
    pub epoch: u64,
    /// Recovered branches by database, then branch name.
    pub recovered: BTreeMap<String, BTreeMap<String, RecoveredRecord>>,
    /// Failovers and drills with their measured RPO and RTO, oldest first.
    pub operations: Vec<OperationRecord>,
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
        match event {
            Event::BranchForked(fork) => {
                self.add_branch(fork, envelope.hlc);
                return;
            }
            Event::BranchDeleted { db, branch } => {
                if let Some(branches) = self.branches.get_mut(db) {
                    branches.remove(branch);
                    if branches.is_empty() {
                        self.branches.remove(db);
                    }
                }
                if let Some(recovered) = self.recovered.get_mut(db) {
                    recovered.remove(branch);
                    if recovered.is_empty() {
                        self.recovered.remove(db);
                    }
                }
                return;
            }
            Event::FailedOver {
                epoch, live, forks, ..
            } => {
                // The branches exist whatever the outcome (their files do).
                for fork in forks {
                    self.add_branch(fork, envelope.hlc);
                }
                // Two failovers at once: the first in the log's order wins.
                if *epoch == self.epoch + 1 {
                    self.epoch = *epoch;
                    for l in live {
                        self.live.insert(l.db.clone(), l.clone());
                    }
                }
                return;
            }
            Event::OperationRecorded(record) => {
                self.operations.push((**record).clone());
                return;
            }
            Event::HomeMoved { epoch, live, .. } => {
                if *epoch == self.epoch + 1 {
                    self.epoch = *epoch;
                    for l in live {
                        self.live.insert(l.db.clone(), l.clone());
                    }
                }
                return;
            }
            Event::WritesRecovered(r) => {
                self.add_branch(&r.fork, envelope.hlc);
                self.recovered.entry(r.fork.db.clone()).or_default().insert(
                    r.fork.branch.clone(),
                    RecoveredRecord {
                        recovered: (**r).clone(),
                        merged: 0,
                        merges: 0,
                    },
                );
                return;
            }
            Event::Merged {
                db,
                recovered,
                applied,
                ..
            } => {
                if let Some(r) = self
                    .recovered
                    .get_mut(db)
                    .and_then(|r| r.get_mut(recovered))
                {
                    r.merged += applied;
                    r.merges += 1;
                }
                return;
            }
            _ => {}
        }
        let Some(ws) = event.workspace().and_then(|w| self.workspaces.get_mut(w)) else {
            return;
        };
        match event {
            Event::WorkspaceSet { .. }
            | Event::WorkspaceRemoved { .. }
            | Event::BranchForked(_)
            | Event::BranchDeleted { .. }
            | Event::FailedOver { .. }
            | Event::OperationRecorded(_)
            | Event::HomeMoved { .. }
            | Event::WritesRecovered(_)
            | Event::Merged { .. } => {}
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

impl ControlState {
    /// Checks that `name` may name a new branch of `db`: a valid name no
    /// branch of it has.
    pub fn new_branch_name(&self, db: &str, name: &str) -> Result<()> {
        crate::region::validate_name("branch", name)?;
        match self.branch(db, name) {
            Some(_) => Err(Error::invalid(format!(
                "branch `{name}` of `{db}` exists; pick another name"
            ))),
            None => Ok(()),
        }
    }

    /// Workspace `name`, or an error that lists those defined.
    pub fn workspace(&self, name: &str) -> Result<&WorkspaceConfig> {
        self.workspaces.get(name).ok_or_else(|| {
            Error::invalid(format!(
                "workspace `{name}` is not defined (known: {}); create it with `lifeboat workspace create {name} --db NAME`",
                listed(self.workspaces.keys())
            ))
        })
    }

    fn add_branch(&mut self, fork: &BranchForked, created: Hlc) {
        self.branches.entry(fork.db.clone()).or_default().insert(
            fork.branch.clone(),
            BranchRecord {
                fork: fork.clone(),
                created,
            },
        );
    }

    /// Forked branch `branch` of `db`.
    pub fn branch(&self, db: &str, branch: &str) -> Option<&BranchRecord> {
        self.branches.get(db)?.get(branch)
    }

    /// The region where the live branch of `db` is written, when a
    /// failover or switchover set it (elsewhere: the group's primary).
    pub fn live_region(&self, db: &str) -> Option<&str> {
        self.live.get(db).map(|l| l.region.as_str())
    }

    /// The live branch of `db`: where the newest failover put it, else `main`.
    pub fn live_branch(&self, db: &str) -> &str {
        self.live
            .get(db)
            .map_or(crate::storage::MAIN_BRANCH, |l| l.branch.as_str())
    }

    /// Every forked branch, oldest first.
    pub fn all_branches(&self) -> Vec<&BranchRecord> {
        let mut all: Vec<&BranchRecord> = self.branches.values().flat_map(|b| b.values()).collect();
        all.sort_by_key(|b| b.created);
        all
    }

    /// Branches whose time to live ran out at `now_ms` (never a live one).
    pub fn expired(&self, now_ms: u64) -> Vec<&BranchRecord> {
        self.all_branches()
            .into_iter()
            .filter(|b| b.fork.expires_ms.is_some_and(|t| t <= now_ms))
            .filter(|b| self.live_branch(&b.fork.db) != b.fork.branch)
            .collect()
    }

    /// Drill branches (for the reports and the tear-down).
    pub fn drills(&self) -> impl Iterator<Item = &BranchRecord> {
        self.all_branches()
            .into_iter()
            .filter(|b| b.fork.reason == BranchReason::Drill)
    }

    /// The workspace named `name`, or an error that lists the known ones.
    pub fn require(&self, name: &str) -> Result<&WorkspaceConfig> {
        self.workspace(name)
    }

    /// Checks `event` against the state it would change and returns it
    /// normalised (a CIDR in its canonical form): the one place the CLI and
    /// the app validate control-plane changes.
    pub fn check(&self, event: Event) -> Result<Event> {
        match &event {
            Event::BranchForked(fork) => {
                validate_name("database", &fork.db)?;
                validate_name("branch", &fork.branch)?;
                if self.branch(&fork.db, &fork.branch).is_some() {
                    return Err(Error::invalid(format!(
                        "branch `{}` of `{}` already exists; pick another name",
                        fork.branch, fork.db
                    )));
                }
            }
            Event::BranchDeleted { db, branch } => {
                if self.live_branch(db) == branch.as_str() {
                    return Err(Error::invalid(format!(
                        "`{db}/{branch}` is the live branch of `{db}`; fail over or fail back first"
                    )));
                }
            }
            Event::FailedOver { epoch, .. } | Event::HomeMoved { epoch, .. } => {
                if *epoch != self.epoch + 1 {
                    return Err(Error::invalid(format!(
                        "another failover or switchover (epoch {}) happened meanwhile; look at the new state and try again",
                        self.epoch
                    )));
                }
            }
            Event::WritesRecovered(r) => {
                if self.branch(&r.fork.db, &r.fork.branch).is_some() {
                    return Err(Error::invalid(format!(
                        "branch `{}` of `{}` already exists; pick another name",
                        r.fork.branch, r.fork.db
                    )));
                }
            }
            Event::OperationRecorded(_) | Event::Merged { .. } => {}
            Event::WorkspaceSet {
                name,
                databases,
                bind,
                ..
            } => {
                validate_name("workspace", name)?;
                if databases.is_empty() {
                    return Err(Error::invalid(format!(
                        "workspace `{name}` must serve at least one database"
                    )));
                }
                let mut indexes = BTreeSet::new();
                for a in databases {
                    validate_name("database", &a.db)?;
                    if !indexes.insert(a.index) {
                        return Err(Error::invalid(format!(
                            "index {} is used twice; give each database its own",
                            a.index
                        )));
                    }
                }
                if bind.parse::<std::net::IpAddr>().is_err() {
                    return Err(Error::invalid(format!(
                        "bind address `{bind}` is not an IP address; use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
                    )));
                }
            }
            Event::WorkspaceRemoved { name } | Event::WorkspaceStop { name } => {
                self.workspace(name)?;
            }
            Event::UserSet {
                workspace,
                user,
                databases,
                ..
            } => {
                let ws = self.workspace(workspace)?;
                validate_name("user", user)?;
                if let Databases::Only(dbs) = databases {
                    let served: Vec<&String> = ws.databases.iter().map(|a| &a.db).collect();
                    if let Some(stray) = dbs.iter().find(|db| !served.contains(db)) {
                        return Err(Error::invalid(format!(
                            "workspace `{workspace}` does not serve database `{stray}` (it serves: {}); name one of those, or none for all",
                            listed(served.into_iter())
                        )));
                    }
                }
            }
            Event::PasswordChanged {
                workspace, user, ..
            }
            | Event::UserRemoved { workspace, user } => {
                let ws = self.workspace(workspace)?;
                if !ws.users.contains_key(user) {
                    return Err(Error::invalid(format!(
                        "workspace `{workspace}` has no user `{user}` (it has: {})",
                        listed(ws.users.keys())
                    )));
                }
            }
            Event::FirewallAllowed { workspace, cidr } => {
                self.workspace(workspace)?;
                let cidr = parse_rule(cidr)?.to_string();
                return Ok(Event::FirewallAllowed {
                    workspace: workspace.clone(),
                    cidr,
                });
            }
            Event::FirewallRevoked { workspace, cidr } => {
                let ws = self.workspace(workspace)?;
                let cidr = parse_rule(cidr)?.to_string();
                if !ws.firewall.contains(&cidr) {
                    return Err(Error::invalid(format!(
                        "{cidr} is not in workspace `{workspace}`'s allow-list (it has: {})",
                        listed(ws.firewall.iter())
                    )));
                }
                return Ok(Event::FirewallRevoked {
                    workspace: workspace.clone(),
                    cidr,
                });
            }
            Event::PipelineSet {
                workspace,
                pipeline,
                db,
                source,
                key_field,
                ..
            } => {
                let ws = self.workspace(workspace)?;
                validate_name("pipeline", pipeline)?;
                if !ws.databases.iter().any(|a| &a.db == db) {
                    return Err(Error::invalid(format!(
                        "workspace `{workspace}` does not serve database `{db}`; serve it first"
                    )));
                }
                if key_field.is_empty() {
                    return Err(Error::invalid(
                        "the key field is empty; name the JSON field that holds each record's key",
                    ));
                }
                crate::workspace::pipeline::open_source(source)?;
            }
            Event::PipelineRunning {
                workspace,
                pipeline,
                ..
            }
            | Event::PipelineRemoved {
                workspace,
                pipeline,
            } => {
                let ws = self.workspace(workspace)?;
                if !ws.pipelines.contains_key(pipeline) {
                    return Err(Error::invalid(format!(
                        "workspace `{workspace}` has no pipeline `{pipeline}` (it has: {})",
                        listed(ws.pipelines.keys())
                    )));
                }
            }
        }
        Ok(event)
    }
}

/// Names joined for a message, or `none`.
fn listed<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
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
