//! Workspaces: compute in a region that serves database branches from that
//! region's store over the Redis protocol (RESP2 and RESP3), with users,
//! roles, a firewall and pipelines, all configured from the control log.
//!
//! Invariants kept here: a write is acknowledged only once SlateDB reports
//! it durable (`session.rs`); a workspace opens a writer only on a branch
//! whose home is its region, and follows replicas read-only (`keyspace.rs`);
//! a client the firewall does not admit is disconnected before it can send
//! a byte that is read.

pub mod auth;
pub mod clients;
pub mod commands;
pub mod firewall;
pub mod glob;
pub mod keyspace;
pub mod pipeline;
pub mod protocol;
pub mod security;
pub mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::event::Hlc;
use crate::control::state::{ControlState, User, WorkspaceConfig};
use crate::error::{Error, Result};
use crate::region::Region;
use firewall::Firewall;
use keyspace::{AttachedDb, Seen};
use pipeline::{PipelineStatus, Pipelines};
use session::Session;

/// The Redis version a workspace reports (the commands it answers behave
/// as in this version).
pub const REDIS_VERSION: &str = "7.2.0";

/// The port a new workspace listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 16379;

/// How often a running workspace reads its configuration again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// A hash nobody's password matches, checked when AUTH names an unknown
/// user so that the answer takes as long as for a known one.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| auth::hash_password("lifeboat-no-such-user").unwrap_or_default())
}

/// Who may connect and what they may do: the part of the configuration a
/// running workspace picks up without a restart.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub open: bool,
    pub users: BTreeMap<String, User>,
    pub firewall: Firewall,
}

impl Access {
    fn of(config: &WorkspaceConfig) -> Result<Access> {
        Ok(Access {
            open: config.open,
            users: config.users.clone(),
            firewall: Firewall::new(&config.firewall)?,
        })
    }
}

/// Counters a workspace reports.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    /// Connections refused: by the firewall or a connection limit.
    pub denied: AtomicU64,
    /// Of those, refused by the firewall's allow-list.
    pub firewall_refused: AtomicU64,
    pub commands: AtomicU64,
    /// Commands answered with an error.
    pub errors: AtomicU64,
    pub auth_failures: AtomicU64,
}

/// What every connection of one workspace shares.
pub struct Shared {
    pub name: String,
    pub region: Region,
    pub addr: SocketAddr,
    /// The attached databases by index; replaced whole when a standing
    /// follower is promoted (failover onto a pre-provisioned workspace).
    attached: RwLock<Arc<BTreeMap<u32, Arc<AttachedDb>>>>,
    access: RwLock<Arc<Access>>,
    pub brake: auth::Brake,
    pub verified: auth::Verified,
    pub clients: Arc<clients::Clients>,
    pub security: security::SecurityLog,
    pub stats: Stats,
    pub started: Instant,
    pub stop: watch::Sender<bool>,
    /// The token of the RTO probe (see `commands::PROBE_COMMAND`).
    pub probe_token: Option<String>,
    /// Whether this workspace runs its pipelines.
    pub pipelines_enabled: bool,
    /// Whether it moves to new live branches homed here (a drill's does not).
    pub follows_live: bool,
    /// Held while databases are swapped for new branches.
    promoting: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The attached databases, by index.
    pub fn dbs(&self) -> Arc<BTreeMap<u32, Arc<AttachedDb>>> {
        Arc::clone(&self.attached.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn access(&self) -> Arc<Access> {
        Arc::clone(&self.access.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_access(&self, access: Access) {
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(access);
    }

    /// Whether every database is a read-only follower.
    pub fn all_followers(&self) -> bool {
        self.dbs().values().all(|d| d.is_follower())
    }
}

/// Where a started workspace listens, overriding its configuration.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub bind: Option<String>,
    pub port: Option<u16>,
    /// A one-time token that lets the starting process write the probe key
    /// (a failover's RTO is measured to that write).
    pub probe_token: Option<String>,
    /// Attach these branches (by database) instead of the live ones: a
    /// drill serves its drill branches with production's users and rules.
    pub branches: BTreeMap<String, String>,
    /// Leave the pipelines alone (a drill must not load data).
    pub no_pipelines: bool,
    /// The configuration is not in the control log (a drill's scratch
    /// workspace): serve it as started until stopped, without reading it
    /// again (else the refresh would stop it as "removed from the log").
    pub detached: bool,
    /// Branches (db → branch) the caller has just forked in this region (a
    /// failover, a drill): when one is what a database attaches, it is
    /// attached without looking whether it exists and is a replica.
    pub just_forked: BTreeMap<String, String>,
    /// Serve only once the operation that made these branches live has
    /// recorded it (a failover opens the writers while it records).
    pub serve_after: Option<Recorded>,
}

/// Whether the operation that made a workspace's branches live recorded
/// it in the control log. A failover opens the new writers while it
/// records the new epoch: no client writes through them before the record
/// stands, and none ever does when it could not be written.
#[derive(Debug, Clone)]
pub struct Recorded(watch::Receiver<Option<bool>>);

impl Recorded {
    /// The gate, and its sender: `Some(true)` once recorded, `Some(false)`
    /// (or dropped) when it could not be.
    pub fn gate() -> (watch::Sender<Option<bool>>, Recorded) {
        let (tx, rx) = watch::channel(None);
        (tx, Recorded(rx))
    }

    /// Waits for the record; `workspace` does not serve when it could not
    /// be written.
    async fn stands(mut self, workspace: &str) -> Result<()> {
        match self.0.wait_for(Option::is_some).await.as_deref() {
            Ok(Some(true)) => Ok(()),
            _ => Err(Error::Failed(format!(
                "workspace `{workspace}` does not serve: the failover that made its branches live could not record it"
            ))),
        }
    }
}

/// One database's endpoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Endpoint {
    pub index: u32,
    pub db: String,
    /// The branch attached (the live one when the workspace started).
    pub branch: String,
    /// `writer` or `follower`.
    pub mode: String,
    /// `redis://<user>@host:port/index`.
    pub url: String,
    pub lag_s: Option<f64>,
}

/// A running workspace's state, for the CLI and the GUI.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct WorkspaceStatus {
    pub name: String,
    pub region: String,
    pub addr: String,
    pub endpoints: Vec<Endpoint>,
    pub users: Vec<String>,
    pub firewall: Vec<String>,
    pub open: bool,
    pub connected: u64,
    pub accepted: u64,
    pub denied: u64,
    #[serde(default)]
    pub firewall_refused: u64,
    pub commands: u64,
    #[serde(default)]
    pub errors: u64,
    pub auth_failures: u64,
    pub pipelines: Vec<PipelineStatus>,
    pub uptime_s: u64,
}

/// A workspace serving clients.
pub struct Workspace {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    refresh: JoinHandle<()>,
    pipelines: Arc<Pipelines>,
}

impl Workspace {
    /// Attaches the databases of workspace `name`, as `state` (the log of
    /// `region`) defines it, from `region` and starts listening. Stop
    /// requests older than `state`'s newest event are history, not for it.
    pub async fn start(
        region: Region,
        state: &ControlState,
        name: &str,
        options: StartOptions,
    ) -> Result<Workspace> {
        let config = state.require(name)?;
        if config.databases.is_empty() {
            return Err(Error::invalid(format!(
                "workspace `{}` serves no database; add one with `lifeboat workspace create {} --db NAME`",
                config.name, config.name
            )));
        }
        let access = Access::of(config)?;
        let bind = options.bind.unwrap_or_else(|| config.bind.clone());
        let port = options.port.unwrap_or(config.port);
        let listener = TcpListener::bind((bind.as_str(), port)).await.map_err(|e| {
            Error::Failed(format!(
                "workspace `{}` cannot listen on {bind}:{port} ({e}); pick another with --port or --bind",
                config.name
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Failed(format!("no local address: {e}")))?;
        // All at once: each opens a writer or a reader, many calls to the
        // store, and a failover's workspace starts on the path of its RTO.
        let attached = futures::future::join_all(config.databases.iter().map(|attachment| {
            let branch = options
                .branches
                .get(&attachment.db)
                .map_or_else(|| state.live_branch(&attachment.db), String::as_str);
            let seen =
                if options.just_forked.get(&attachment.db).map(String::as_str) == Some(branch) {
                    Seen::JustForked
                } else {
                    Seen::Nothing
                };
            let region = &region;
            async move {
                AttachedDb::attach_as(region, attachment.index, &attachment.db, branch, seen)
                    .await
                    .map(|db| (attachment.index, Arc::new(db)))
            }
        }))
        .await;
        let mut dbs = BTreeMap::new();
        let mut failed = None;
        for result in attached {
            match result {
                Ok((index, db)) => {
                    dbs.insert(index, db);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        let held = match (&failed, &options.serve_after) {
            (None, Some(recorded)) => recorded.clone().stands(&config.name).await.err(),
            _ => None,
        };
        if let Some(e) = failed.or(held) {
            for db in dbs.values() {
                let _ = AttachedDb::close(db).await;
            }
            return Err(e);
        }
        let started_at = state.newest;
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            region: region.clone(),
            addr,
            attached: RwLock::new(Arc::new(dbs)),
            access: RwLock::new(Arc::new(access)),
            brake: auth::Brake::default(),
            verified: auth::Verified::default(),
            clients: Arc::default(),
            security: security::SecurityLog::new(&config.name),
            stats: Stats::default(),
            started: Instant::now(),
            stop,
            probe_token: options.probe_token.clone(),
            pipelines_enabled: !options.no_pipelines,
            follows_live: options.branches.is_empty(),
            promoting: tokio::sync::Mutex::new(()),
        });
        let pipelines = Arc::new(Pipelines::default());
        if shared.pipelines_enabled {
            pipelines.reconcile(&shared, config);
        }
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        let refresh = if options.detached {
            tokio::spawn(lag_loop(Arc::clone(&shared)))
        } else {
            tokio::spawn(refresh_loop(
                Arc::clone(&shared),
                Arc::clone(&pipelines),
                started_at,
            ))
        };
        tracing::info!(workspace = %config.name, region = %region.name(), %addr, "workspace started");
        Ok(Workspace {
            shared,
            accept,
            refresh,
            pipelines,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Resolves when the workspace was asked to stop (through the control
    /// log, or because it was removed there).
    pub async fn stopped(&self) {
        let mut stop = self.shared.stop.subscribe();
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether the workspace was asked to stop (it serves no one now).
    pub fn is_stopped(&self) -> bool {
        *self.shared.stop.borrow()
    }

    pub fn status(&self) -> WorkspaceStatus {
        let shared = &self.shared;
        let access = shared.access();
        let relaxed = Ordering::Relaxed;
        let user = if access.open { "default" } else { "USER" };
        WorkspaceStatus {
            name: shared.name.clone(),
            region: shared.region.name().to_string(),
            addr: shared.addr.to_string(),
            endpoints: shared
                .dbs()
                .values()
                .map(|db| Endpoint {
                    index: db.index,
                    db: db.name.clone(),
                    branch: db.location.branch.clone(),
                    mode: if db.is_follower() {
                        "follower"
                    } else {
                        "writer"
                    }
                    .into(),
                    url: connection_string(user, shared.addr, db.index),
                    lag_s: db.lag_s(),
                })
                .collect(),
            users: access.users.keys().cloned().collect(),
            firewall: access.firewall.rules(),
            open: access.open,
            connected: shared.clients.connected() as u64,
            accepted: shared.stats.accepted.load(relaxed),
            denied: shared.stats.denied.load(relaxed),
            firewall_refused: shared.stats.firewall_refused.load(relaxed),
            commands: shared.stats.commands.load(relaxed),
            errors: shared.stats.errors.load(relaxed),
            auth_failures: shared.stats.auth_failures.load(relaxed),
            pipelines: self.pipelines.statuses(),
            uptime_s: shared.started.elapsed().as_secs(),
        }
    }

    /// Takes over `branches` (db → branch, which the caller, a failover,
    /// has just forked in this workspace's region) in place of what serves
    /// those databases now: a standing follower becomes the writer of a
    /// failover's new live branches.
    pub async fn promote(&self, branches: &BTreeMap<String, String>) -> Result<()> {
        promote(&self.shared, branches, Seen::JustForked, None).await
    }

    /// As [`Self::promote`], writing through the new branches only once
    /// `recorded` says their failover stands; the writers open meanwhile.
    pub async fn promote_after(
        &self,
        branches: &BTreeMap<String, String>,
        recorded: Recorded,
    ) -> Result<()> {
        promote(&self.shared, branches, Seen::JustForked, Some(recorded)).await
    }

    /// Refuses writes to `dbs` from now on, with a message that says
    /// where they are going (a planned switchover); reads go on.
    pub fn freeze(&self, dbs: &[String], to: &str) {
        for db in self.shared.dbs().values().filter(|d| dbs.contains(&d.name)) {
            db.freeze(format!(
                "database `{}` is moving to region `{to}` (planned switchover); write again at its new endpoint in a few seconds",
                db.name
            ));
        }
    }

    /// The attached database serving `db`, when this workspace writes it.
    pub fn writer_of(&self, db: &str) -> Option<Arc<AttachedDb>> {
        self.shared
            .dbs()
            .values()
            .find(|d| d.name == db && !d.is_follower())
            .cloned()
    }

    /// Stops listening, disconnects every client, stops the pipelines and
    /// closes the databases (flushing the writers).
    pub async fn stop(self) -> Result<()> {
        self.shared.stop.send_replace(true);
        self.accept.abort();
        self.refresh.abort();
        self.pipelines.stop_all().await;
        let mut first_error = None;
        for db in self.shared.dbs().values() {
            if let Err(e) = db.close().await {
                first_error.get_or_insert(e);
            }
        }
        tracing::info!(workspace = %self.shared.name, "workspace stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// `redis://<user>@<host>:<port>/<index>`.
pub fn connection_string(user: &str, addr: SocketAddr, index: u32) -> String {
    format!("redis://{user}@{addr}/{index}")
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.stop.subscribe();
    let mut next_id = 1u64;
    let mut summaries = tokio::time::interval(security::WINDOW / 4);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = summaries.tick() => {
                shared.security.flush();
                continue;
            }
            _ = stop.changed() => {
                shared.security.flush();
                return;
            }
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(workspace = %shared.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let access = shared.access();
        if !access.firewall.admits(peer.ip()) {
            shared.stats.denied.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .firewall_refused
                .fetch_add(1, Ordering::Relaxed);
            shared
                .security
                .note(security::Security::FirewallRefused, peer.ip());
            tokio::spawn(refuse(
                stream,
                format!(
                    "-ERR connection refused: {} is not in workspace `{}`'s firewall allow-list\r\n",
                    peer.ip(),
                    shared.name
                ),
            ));
            continue;
        }
        let admitted = match shared.clients.admit(peer.ip(), access.open) {
            Ok(admitted) => admitted,
            Err(why) => {
                shared.stats.denied.fetch_add(1, Ordering::Relaxed);
                shared
                    .security
                    .note(security::Security::TooManyConnections, peer.ip());
                tokio::spawn(refuse(stream, format!("-{why}\r\n")));
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(workspace = %shared.name, client = %peer, "no TCP_NODELAY: {e}");
        }
        let default_db = shared.dbs().keys().next().copied().unwrap_or(0);
        let session = Session::new(next_id, peer, default_db);
        next_id += 1;
        let shared = Arc::clone(&shared);
        tokio::spawn(session::serve(shared, stream, session, admitted));
    }
}

/// Tells a refused client why, then hangs up.
async fn refuse(mut stream: TcpStream, line: String) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Refreshes the followers' lag on a schedule (a detached workspace's only
/// periodic work).
async fn lag_loop(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    loop {
        ticks.tick().await;
        refresh_lags(&shared).await;
    }
}

/// Reads every follower's lag again.
async fn refresh_lags(shared: &Shared) {
    for db in shared.dbs().values() {
        if let Err(e) = db.refresh_lag(&shared.region).await {
            tracing::debug!(workspace = %shared.name, "follower lag: {e}");
        }
    }
}

/// Reads the configuration again on a schedule: users, rules and pipelines
/// change without a restart; a stop request or the workspace's removal
/// stops it; followers' lag is refreshed.
async fn refresh_loop(shared: Arc<Shared>, pipelines: Arc<Pipelines>, started_at: Option<Hlc>) {
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    ticks.tick().await;
    let mut log = crate::control::LogCache::default();
    loop {
        ticks.tick().await;
        refresh_lags(&shared).await;
        let state = match log.load(&shared.region).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(workspace = %shared.name, "cannot read the control log: {e}");
                continue;
            }
        };
        let Some(config) = state.workspaces.get(&shared.name) else {
            tracing::warn!(workspace = %shared.name, "the workspace was removed from the control log; stopping");
            shared.stop.send_replace(true);
            return;
        };
        if config
            .stop_requested
            .is_some_and(|at| Some(at) > started_at)
        {
            tracing::info!(workspace = %shared.name, "stop requested through the control log");
            shared.stop.send_replace(true);
            return;
        }
        match Access::of(config) {
            Ok(access) => shared.set_access(access),
            Err(e) => tracing::warn!(workspace = %shared.name, "ignoring a bad rule: {e}"),
        }
        // A failover made new live branches homed here: a standing
        // follower (pre-provisioned) becomes their writer.
        if shared.follows_live {
            let moved = moved_here(&shared, &state);
            if !moved.is_empty() {
                match promote(&shared, &moved, Seen::Nothing, None).await {
                    Ok(()) => {
                        tracing::info!(workspace = %shared.name, "now writing the live branches {moved:?}")
                    }
                    Err(e) => {
                        tracing::warn!(workspace = %shared.name, "cannot take over the live branches: {e}")
                    }
                }
            }
        }
        if shared.pipelines_enabled {
            pipelines.reconcile(&shared, config);
        }
    }
}

/// The attached databases whose live branch is now another one, homed in
/// this workspace's region: db → live branch.
fn moved_here(shared: &Shared, state: &ControlState) -> BTreeMap<String, String> {
    shared
        .dbs()
        .values()
        .filter_map(|db| {
            let live = state.live.get(&db.name)?;
            (live.branch != db.location.branch && live.region == shared.region.name())
                .then(|| (db.name.clone(), live.branch.clone()))
        })
        .collect()
}

/// Attaches `branches` (db → branch, homed here) in place of what serves
/// those databases now, then closes what they replace. Clients keep their
/// connections; their next command goes to the new branch.
async fn promote(
    shared: &Shared,
    branches: &BTreeMap<String, String>,
    seen: Seen,
    recorded: Option<Recorded>,
) -> Result<()> {
    // One promotion at a time: the failover's and the refresh loop's would
    // otherwise open two writers, and the second fences the first.
    let _one = shared.promoting.lock().await;
    let current = shared.dbs();
    let attached = futures::future::join_all(current.values().filter_map(|db| {
        let branch = branches
            .get(&db.name)
            .filter(|b| **b != db.location.branch)?;
        let region = shared.region.clone();
        Some(async move {
            AttachedDb::attach_as(&region, db.index, &db.name, branch, seen)
                .await
                .map(|fresh| (db.index, Arc::new(fresh)))
        })
    }))
    .await;
    let mut fresh = Vec::new();
    let mut failed = None;
    for result in attached {
        match result {
            Ok(opened) => fresh.push(opened),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    let held = match (&failed, recorded) {
        (None, Some(recorded)) => recorded.stands(&shared.name).await.err(),
        _ => None,
    };
    if let Some(e) = failed.or(held) {
        // What opened is closed: the workspace goes on as it was.
        for (_, db) in &fresh {
            if let Err(close) = db.close().await {
                tracing::debug!(workspace = %shared.name, "closing an unused writer: {close}");
            }
        }
        return Err(e);
    }
    let mut next = (*current).clone();
    let mut replaced = Vec::new();
    for (index, db) in fresh {
        if let Some(old) = next.insert(index, db) {
            replaced.push(old);
        }
    }
    *shared.attached.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    for old in replaced {
        if let Err(e) = old.close().await {
            tracing::debug!(workspace = %shared.name, "closing a replaced database: {e}");
        }
    }
    Ok(())
}
