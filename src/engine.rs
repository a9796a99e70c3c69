//! The engine facade: commands in, snapshots out, on a tokio runtime.
//!
//! The GUI (and later the CLI's long-running commands) sends a [`Command`]
//! through [`Engine::send`], which never blocks, and renders the newest
//! [`Snapshot`] from a watch channel. The engine task is the only owner of
//! regions, the replicator, workloads and the files it keeps; the caller
//! holds none of them (DESIGN.md invariant 6: the UI thread never waits on
//! I/O). Every command is an entry in the activity log, with its outcome.
//!
//! The loop itself never awaits a store: work that touches one runs as a
//! spawned task that reports back on an internal channel, so a slow region
//! delays only its own answer, never the snapshots.

pub mod activity;
pub mod failover;
pub mod group;
pub mod history;
pub mod recovery;
pub mod snapshot;
pub mod workspaces;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Home, Regions};
use crate::control::event::OperationKind;
use crate::control::{self, state::ControlState};
use crate::error::{Error, Result};
use crate::orchestrator::merge::Pick;
use crate::orchestrator::switchover::SwitchPlan;
use crate::region::{self, ProbeReport, Region, RegionSpec};
use crate::replication::pins::{BranchPins, Pins};
use crate::replication::{self, Flow, ReplicationOptions, Replicator, cursor};
use crate::storage::{self, DbLocation};
use crate::workload::acks::AckLog;
use crate::workload::{BackgroundRun, Rate, WorkloadSpec, now_us};

use activity::{ActivityLog, Outcome};
use group::{GroupConfig, ReplicationKind, Selection};
use history::History;
pub use snapshot::{
    BranchRow, EngineState, FlowView, RegionDatabases, RegionHealth, RegionView, Snapshot,
};
use workspaces::{ControlChange, ControlView};

/// Names a command, so its outcome can be found in the activity log.
pub type RequestId = u64;

/// What the GUI or CLI asks the engine to do. Each ends as an activity
/// entry (`Done` or `Failed` with one line that says why).
#[derive(Debug, Clone)]
pub enum Command {
    /// Replicate from the primary (the first configured region) to
    /// `secondary`; replaces any group configured before.
    ConfigureReplication {
        secondary: String,
        databases: Selection,
        kind: ReplicationKind,
        /// Lag above this counts as an RPO breach (seconds).
        rpo_target_s: f64,
    },
    /// Stop every flow and forget the group (replicas stay where they are).
    StopReplication,
    /// Stop copying database `db` until resumed.
    Pause { db: String },
    /// Copy database `db` again.
    Resume { db: String },
    /// Lag above `seconds` counts as an RPO breach.
    SetRpoTarget { seconds: f64 },
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
    StartWorkspace { name: String, region: String },
    /// Stop serving workspace `name` here.
    StopWorkspace { name: String },
    /// Looks at both regions and shows what a failover of the group would
    /// do and lose (the snapshot's `failover.preview`); changes nothing.
    PreviewFailover,
    /// Fails the group over as the preview of epoch `epoch` said: fences,
    /// forks, records, serves, measures. Refused if the preview is stale.
    Failover { epoch: u64 },
    /// Test failover: forks drill branches in the secondary, serves them
    /// from a drill workspace, verifies them and reports; they expire
    /// after `ttl_s`.
    Drill { ttl_s: u64, smoke: Vec<String> },
    /// Forks `db` as of `at_ms` (point-in-time recovery) in `region`, off
    /// its live branch, as branch `name`.
    Restore {
        db: String,
        region: String,
        at_ms: u64,
        name: String,
    },
    /// Stands the group's workspaces up in the secondary, following the
    /// replicas read-only, so that a failover only forks and opens writers
    /// (the group becomes "storage + pre-provisioned").
    StartPreprovisioning,
    /// Stops the standing workspaces (the group becomes "storage only").
    StopPreprovisioning,
    /// Deletes a forked branch everywhere (never the live one).
    DeleteBranch { db: String, branch: String },
    /// Writes the report of operation `id` (Markdown, or JSON for `.json`).
    ExportReport { id: String, path: PathBuf },
    /// Looks at both regions: what a switchover (or failback) of the
    /// group's live branches would move (the snapshot's `moving.plan`).
    PlanMove { kind: OperationKind },
    /// Moves the live branches as the plan of epoch `epoch` said.
    Move { kind: OperationKind, epoch: u64 },
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
    },
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
            Command::PreviewFailover => "look at what a failover would lose".into(),
            Command::Restore {
                db,
                region,
                at_ms,
                name,
            } => format!(
                "restore {db} in {region} as of {} as {name}",
                crate::workload::verify::format_us(at_ms.saturating_mul(1000))
            ),
            Command::DeleteBranch { db, branch } => format!("delete branch {db}/{branch}"),
            Command::StartPreprovisioning => "start pre-provisioning".into(),
            Command::StopPreprovisioning => "stop pre-provisioning".into(),
            Command::Drill { ttl_s, .. } => format!("test failover (branches kept {ttl_s} s)"),
            Command::Failover { epoch } => format!("fail over (epoch {epoch})"),
            Command::PlanMove { kind } => format!("plan a {}", kind.name()),
            Command::Move { kind, epoch } => format!("{} (epoch {epoch})", kind.name()),
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
            Command::StartWorkspace { name, region } => {
                format!("start workspace {name} in {region}")
            }
            Command::StopWorkspace { name } => format!("stop workspace {name} here"),
            Command::Shutdown => "stop the engine".into(),
        }
    }
}

/// The demo's databases.
pub const DEMO_DATABASES: [&str; 3] = ["demo-orders", "demo-carts", "demo-events"];
/// Records per second each demo writer (and each `StartWorkload`) takes.
pub const DEMO_RATE: u64 = 20;

/// What the demo's writers and `StartWorkload` write.
fn demo_spec() -> WorkloadSpec {
    WorkloadSpec {
        rate: Rate::PerSecond(DEMO_RATE),
        duration: None,
        records: None,
        value_bytes: 512,
        churn: false,
    }
}

/// How often the engine does each of its chores.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub replication: ReplicationOptions,
    /// How often a snapshot is published (and the GUI repainted).
    pub publish_every: Duration,
    /// How often the Dashboard's history takes a sample.
    pub sample_every: Duration,
    /// How often every region's databases are listed.
    pub list_every: Duration,
    /// How often every region is health-checked.
    pub health_every: Duration,
    /// How often new databases in the primary are looked for.
    pub discover_every: Duration,
    /// How often the control log is synced between regions and read.
    pub control_every: Duration,
    /// How often each live branch gets a point-in-time checkpoint at its
    /// home (living `storage::retention()`).
    pub checkpoint_every: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            replication: ReplicationOptions::default(),
            publish_every: Duration::from_millis(250),
            sample_every: Duration::from_secs(1),
            list_every: Duration::from_secs(10),
            health_every: Duration::from_secs(15),
            discover_every: Duration::from_secs(5),
            control_every: Duration::from_secs(5),
            checkpoint_every: Duration::from_secs(600),
        }
    }
}

type Repaint = Arc<dyn Fn() + Send + Sync>;

/// The handle the GUI holds: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::UnboundedSender<(RequestId, Command)>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    next_request: Arc<AtomicU64>,
    repaint: Arc<Mutex<Option<Repaint>>>,
    runtime: Handle,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Engine {
    /// Starts the engine on `runtime` with the configured `regions`.
    pub fn start(runtime: &Handle, home: Home, regions: Regions, opts: EngineOptions) -> Engine {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (snapshot_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let repaint: Arc<Mutex<Option<Repaint>>> = Arc::default();
        let core = Core::new(home, regions, opts, snapshot_tx, Arc::clone(&repaint));
        let task = runtime.spawn(core.run(commands_rx));
        Engine {
            commands,
            snapshots,
            // Ids stay unique across runs: the activity log outlives the engine.
            next_request: Arc::new(AtomicU64::new(now_us().max(1))),
            repaint,
            runtime: runtime.clone(),
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Sends `command`; its outcome appears in the activity log under the
    /// returned id. Never blocks.
    pub fn send(&self, command: Command) -> RequestId {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        if self.commands.send((id, command)).is_err() {
            tracing::warn!("the engine has stopped; command {id} dropped");
        }
        id
    }

    /// The newest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshots.borrow())
    }

    /// A receiver that wakes on every published snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// Calls `repaint` after every published snapshot (the GUI passes
    /// `ctx.request_repaint`).
    pub fn on_publish(&self, repaint: impl Fn() + Send + Sync + 'static) {
        *self.repaint.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(repaint));
    }

    /// The runtime the engine runs on (for the GUI's file dialogs).
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// Waits until a snapshot satisfies `ready`, or `timeout`; returns the
    /// last snapshot seen and whether it did.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&Snapshot) -> bool,
    ) -> (Arc<Snapshot>, bool) {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snapshot = Arc::clone(&rx.borrow_and_update());
            if ready(&snapshot) {
                return (snapshot, true);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return (self.snapshot(), false),
            }
        }
    }

    /// Stops the engine (flows stop after their current copy, cursors are
    /// saved) and waits for it.
    pub async fn shutdown(&self) {
        self.send(Command::Shutdown);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!("the engine ended badly: {e}");
        }
    }
}

/// What spawned work reports back to the loop.
enum Internal {
    Listed(Vec<RegionDatabases>),
    Health(Vec<(String, RegionHealth)>, Vec<String>),
    Configured {
        request: RequestId,
        group: GroupConfig,
        result: Result<(Vec<Flow>, Vec<String>)>,
    },
    Discovered(Result<Vec<Flow>>),
    RegionProbed {
        request: RequestId,
        replacing: Option<String>,
        spec: RegionSpec,
        result: Result<ProbeReport>,
    },
    DemoReady {
        request: RequestId,
        result: Result<Vec<String>>,
    },
    Finished {
        request: RequestId,
        outcome: Outcome,
        relist: bool,
    },
    ControlRead(Result<ControlState>),
    ControlRecorded {
        request: RequestId,
        result: Result<String>,
    },
    WorkspaceStarted {
        request: RequestId,
        name: String,
        result: Result<crate::workspace::Workspace>,
    },
    FailoverPreviewed {
        request: RequestId,
        result: Result<crate::orchestrator::failover::Preview>,
    },
    FailoverStep(crate::control::event::Step),
    FailedOver {
        request: RequestId,
        result: Result<crate::orchestrator::failover::FailoverOutcome>,
    },
    DrillStep(crate::control::event::Step),
    Drilled {
        request: RequestId,
        result: Result<crate::orchestrator::drill::DrillOutcome>,
    },
    Expired(Result<Vec<String>>),
    StandbyStarted {
        name: String,
        result: Result<(crate::workspace::Workspace, String, Option<String>)>,
    },
    MovePlanned {
        request: RequestId,
        result: Result<SwitchPlan>,
    },
    MoveStep(crate::control::event::Step),
    Moved {
        request: RequestId,
        result: Result<crate::orchestrator::switchover::SwitchOutcome>,
    },
    RecoveryStep(crate::control::event::Step),
    Recovered {
        request: RequestId,
        result: Result<crate::orchestrator::recover::RecoverOutcome>,
    },
    Compared {
        request: RequestId,
        result: Result<crate::orchestrator::recover::Recovered>,
    },
    Merged {
        request: RequestId,
        result: Result<crate::orchestrator::merge::MergeOutcome>,
    },
}

/// The engine's state; owned by its task alone.
struct Core {
    home: Home,
    regions: Regions,
    opened: BTreeMap<String, Region>,
    opts: EngineOptions,
    group: Option<GroupConfig>,
    replicator: Option<Replicator>,
    health: BTreeMap<String, RegionHealth>,
    clock_warnings: Vec<String>,
    databases: Vec<RegionDatabases>,
    listed_us: Option<u64>,
    history: Arc<History>,
    activity: ActivityLog,
    activity_view: Arc<Vec<activity::ActivityEntry>>,
    demo: BTreeMap<String, BackgroundRun>,
    /// Databases whose delete is under way: no flow may start for them.
    deleting: BTreeMap<RequestId, String>,
    state: EngineState,
    seq: u64,
    last_copied: Option<(Instant, u64)>,
    listing: bool,
    checking: bool,
    discovering: bool,
    control_state: ControlState,
    control_read_us: Option<u64>,
    control_error: Option<String>,
    control_reading: bool,
    /// Events already read (one listing per region and look, then only
    /// new events are read).
    control_cache: Arc<tokio::sync::Mutex<control::LogCache>>,
    /// Workspaces this engine serves, by name.
    workspaces: BTreeMap<String, crate::workspace::Workspace>,
    /// Workspaces starting or stopping here, with what is happening.
    workspace_busy: BTreeMap<String, String>,
    /// What forked branches read, kept by every flow's deletes.
    pins: Arc<BranchPins>,
    failover: failover::FailoverView,
    /// The switchover or failback planned or run here, and the last one.
    moving: recovery::MoveView,
    /// The recovery or merge run here, and the newest comparison.
    recovery: recovery::RecoveryView,
    /// The running or last drill (its preview fields stay empty).
    drill: failover::FailoverView,
    /// Drill workspaces, by drill id: stopped when their branches expire.
    drill_workspaces: BTreeMap<String, crate::workspace::Workspace>,
    expiring: bool,
    /// Pre-provisioned workspaces standing in the secondary, by name, with
    /// their probe tokens.
    standby: BTreeMap<String, (Arc<crate::workspace::Workspace>, String)>,
    /// Standing workspaces being started, and why the last start failed.
    standby_starting: BTreeSet<String>,
    standby_error: Option<String>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    repaint: Arc<Mutex<Option<Repaint>>>,
    who: String,
}

impl Core {
    fn new(
        home: Home,
        regions: Regions,
        opts: EngineOptions,
        snapshot_tx: watch::Sender<Arc<Snapshot>>,
        repaint: Arc<Mutex<Option<Repaint>>>,
    ) -> Core {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let activity = ActivityLog::load(home.data_dir.join("activity.jsonl"));
        let activity_view = Arc::new(activity.entries());
        Core {
            home,
            regions,
            opened: BTreeMap::new(),
            opts,
            group: None,
            replicator: None,
            health: BTreeMap::new(),
            clock_warnings: Vec::new(),
            databases: Vec::new(),
            listed_us: None,
            history: Arc::default(),
            activity,
            activity_view,
            demo: BTreeMap::new(),
            deleting: BTreeMap::new(),
            state: EngineState::Starting,
            seq: 0,
            last_copied: None,
            listing: false,
            checking: false,
            discovering: false,
            control_state: ControlState::default(),
            control_read_us: None,
            control_error: None,
            control_reading: false,
            control_cache: Arc::default(),
            workspaces: BTreeMap::new(),
            workspace_busy: BTreeMap::new(),
            pins: Arc::default(),
            failover: failover::FailoverView::default(),
            moving: recovery::MoveView::default(),
            recovery: recovery::RecoveryView::default(),
            drill: failover::FailoverView::default(),
            drill_workspaces: BTreeMap::new(),
            expiring: false,
            standby: BTreeMap::new(),
            standby_starting: BTreeSet::new(),
            standby_error: None,
            internal_tx,
            internal_rx,
            snapshot_tx,
            repaint,
            who: activity::local_user(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<(RequestId, Command)>) {
        self.open_regions();
        self.resume_group();
        self.state = EngineState::Idle;
        self.publish();
        let mut publish = tokio::time::interval(self.opts.publish_every);
        let mut sample = tokio::time::interval(self.opts.sample_every);
        let mut list = tokio::time::interval(self.opts.list_every);
        let mut health = tokio::time::interval(self.opts.health_every);
        let mut discover = tokio::time::interval(self.opts.discover_every);
        let mut control = tokio::time::interval(self.opts.control_every);
        let mut checkpoint = tokio::time::interval(self.opts.checkpoint_every);
        for timer in [
            &mut checkpoint,
            &mut publish,
            &mut sample,
            &mut list,
            &mut health,
            &mut discover,
            &mut control,
        ] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some((_, Command::Shutdown)) | None => break,
                    Some((request, command)) => {
                        self.activity.begin(request, &self.who, command.describe());
                        self.activity_changed();
                        self.handle(request, command).await;
                        self.publish();
                    }
                },
                Some(internal) = self.internal_rx.recv() => {
                    self.absorb(internal).await;
                    self.publish();
                }
                _ = publish.tick() => self.publish(),
                _ = sample.tick() => {
                    self.sample();
                    self.reap_demo().await;
                    self.reap_workspaces().await;
                }
                _ = control.tick() => self.read_control(),
                _ = checkpoint.tick() => self.checkpoint_live_branches(),
                _ = list.tick() => self.list_databases(),
                _ = health.tick() => self.check_regions(),
                _ = discover.tick() => self.discover(),
            }
        }
        self.state = EngineState::Stopping;
        self.publish();
        self.stop_demo(None).await;
        let drills = std::mem::take(&mut self.drill_workspaces);
        for (name, (ws, _)) in std::mem::take(&mut self.standby) {
            if let Ok(ws) = Arc::try_unwrap(ws)
                && let Err(e) = ws.stop().await
            {
                tracing::warn!(workspace = %name, "stopping: {e}");
            }
        }
        for (name, ws) in std::mem::take(&mut self.workspaces)
            .into_iter()
            .chain(drills)
        {
            if let Err(e) = ws.stop().await {
                tracing::warn!(workspace = %name, "stopping: {e}");
            }
        }
        if let Some(replicator) = self.replicator.take() {
            replicator.stop().await;
        }
        self.publish();
    }

    /// Opens every configured region (no I/O but a local folder's mkdir).
    fn open_regions(&mut self) {
        self.opened.clear();
        for spec in self.regions.specs().to_vec() {
            match Region::open(&spec) {
                Ok(region) => {
                    self.opened.insert(spec.name.clone(), region);
                }
                Err(e) => {
                    self.health
                        .insert(spec.name.clone(), unreachable(e.to_string()));
                }
            }
        }
    }

    /// Starts the group saved by an earlier run.
    fn resume_group(&mut self) {
        match group::load(&self.home.config_dir) {
            Ok(Some(group)) => {
                let what = format!(
                    "resume replication from {} to {}",
                    group.primary, group.secondary
                );
                self.activity.begin(0, "engine", what);
                self.activity_changed();
                self.spawn_configure(0, group);
            }
            Ok(None) => {}
            Err(e) => {
                self.activity
                    .note("resume replication".into(), Outcome::Failed(e.to_string()));
                self.activity_changed();
            }
        }
    }

    fn primary(&self) -> Option<String> {
        self.regions.names().into_iter().next()
    }

    fn region(&self, name: &str) -> Result<Region> {
        self.regions.get(name)?;
        self.opened.get(name).cloned().ok_or_else(|| {
            Error::invalid(format!(
                "region `{name}` could not be opened; fix it in Settings"
            ))
        })
    }

    fn finish(&mut self, request: RequestId, outcome: Outcome) {
        if let Outcome::Failed(message) = &outcome {
            // The caller shows it; the log file keeps it.
            tracing::info!("request {request} failed: {message}");
        }
        self.activity.finish(request, outcome);
        self.activity_changed();
    }

    fn fail(&mut self, request: RequestId, err: impl std::fmt::Display) {
        self.finish(
            request,
            Outcome::Failed(crate::error::one_line(&err.to_string())),
        );
    }

    fn activity_changed(&mut self) {
        self.activity_view = Arc::new(self.activity.entries());
    }

    /// Spawns work that reports back with an `Internal`.
    fn spawn(&self, work: impl std::future::Future<Output = Internal> + Send + 'static) {
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(work.await);
        });
    }

    async fn handle(&mut self, request: RequestId, command: Command) {
        match command {
            Command::ConfigureReplication {
                secondary,
                databases,
                kind,
                rpo_target_s,
            } => self.configure(request, secondary, databases, kind, rpo_target_s),
            Command::StopReplication => {
                let Some(replicator) = self.replicator.take() else {
                    return self.fail(request, "replication is not configured");
                };
                replicator.stop().await;
                self.group = None;
                match group::save(&self.home.config_dir, None) {
                    Ok(()) => self.finish(
                        request,
                        Outcome::Done("replication stopped; the replicas stay readable".into()),
                    ),
                    Err(e) => self.fail(request, e),
                }
            }
            Command::Pause { db } => self.hold(request, &db, true),
            Command::Resume { db } => self.hold(request, &db, false),
            Command::SetRpoTarget { seconds } => {
                if !(seconds.is_finite() && seconds > 0.0) {
                    return self.fail(
                        request,
                        format!("an RPO target of {seconds} s makes no sense; give a number of seconds above 0"),
                    );
                }
                let Some(group) = self.group.as_mut() else {
                    return self.fail(request, "configure replication first");
                };
                group.rpo_target_s = seconds;
                self.save_group(request, format!("RPO target is {seconds} s"));
            }
            Command::CreateDatabase { region, name } => {
                if let Err(e) = region::validate_name("database", &name) {
                    return self.fail(request, e);
                }
                let region = match self.region(&region) {
                    Ok(r) => r,
                    Err(e) => return self.fail(request, e),
                };
                self.spawn(async move {
                    let result = async {
                        let info = DbLocation::in_region(&region, &name)?.create().await?;
                        Ok::<_, Error>(format!(
                            "created {name} in {} (writer epoch {})",
                            region.name(),
                            info.writer_epoch
                        ))
                    }
                    .await;
                    Internal::Finished {
                        request,
                        outcome: outcome(result),
                        relist: true,
                    }
                });
            }
            Command::DeleteDatabase {
                region,
                name,
                typed_name,
            } => {
                self.delete_database(request, region, name, typed_name)
                    .await
            }
            Command::SaveRegion { replacing, spec } => self.save_region(request, replacing, spec),
            Command::RemoveRegion { name } => self.remove_region(request, &name),
            Command::CheckRegions => {
                self.check_regions();
                self.finish(request, Outcome::Done("health check started".into()));
            }
            Command::RefreshDatabases => {
                self.list_databases();
                self.finish(request, Outcome::Done("listing started".into()));
            }
            Command::StartDemo => self.start_demo(request),
            Command::StartWorkload { db } => self.start_workload(request, db),
            Command::StopWorkload { db } => {
                let outcome = if self.stop_demo(Some(&db)).await == 0 {
                    Outcome::Failed(format!("nothing is writing test records to {db}"))
                } else {
                    Outcome::Done(format!("stopped writing test records to {db}"))
                };
                self.finish(request, outcome);
            }
            Command::StopDemo => {
                let count = self.stop_demo(None).await;
                self.finish(
                    request,
                    Outcome::Done(format!("{count} demo writer(s) stopped")),
                );
            }
            Command::ExportActivity { path } => {
                let entries = self.activity.entries();
                self.spawn(async move {
                    let result = tokio::task::spawn_blocking(move || {
                        activity::export_csv(&entries, &path)
                            .map(|n| format!("{n} entries written to {}", path.display()))
                    })
                    .await
                    .unwrap_or_else(|e| Err(Error::Failed(format!("the export stopped: {e}"))));
                    Internal::Finished {
                        request,
                        outcome: outcome(result),
                        relist: false,
                    }
                });
            }
            Command::Control { change } => self.record_control(request, change),
            Command::StartWorkspace { name, region } => self.start_workspace(request, name, region),
            Command::StopWorkspace { name } => self.stop_workspace(request, &name),
            Command::PreviewFailover => self.preview_failover(request),
            Command::Drill { ttl_s, smoke } => self.run_drill(request, ttl_s, smoke),
            Command::Restore {
                db,
                region,
                at_ms,
                name,
            } => self.restore(request, db, region, at_ms, name),
            Command::DeleteBranch { db, branch } => self.delete_branch(request, db, branch),
            Command::StartPreprovisioning => self.set_preprovisioning(request, true).await,
            Command::StopPreprovisioning => self.set_preprovisioning(request, false).await,
            Command::Failover { epoch } => self.run_failover(request, epoch).await,
            Command::ExportReport { id, path } => self.export_report(request, id, path),
            Command::PlanMove { kind } => self.plan_move(request, kind),
            Command::Move { kind, epoch } => self.run_move(request, kind, epoch).await,
            Command::Recover { db } => self.recover(request, db),
            Command::CompareRecovered { db, branch } => self.compare(request, db, branch),
            Command::Merge {
                db,
                branch,
                pick,
                discard,
            } => self.merge(request, db, branch, pick, discard),
            Command::Shutdown => {}
        }
    }

    fn configure(
        &mut self,
        request: RequestId,
        secondary: String,
        databases: Selection,
        kind: ReplicationKind,
        rpo_target_s: f64,
    ) {
        let Some(primary) = self.primary() else {
            return self.fail(request, "no region is configured; add two in Settings");
        };
        if let Err(e) = group::check(&primary, &secondary, rpo_target_s, group::IN_THE_APP) {
            return self.fail(request, e);
        }
        if let Err(e) = self.regions.get(&secondary) {
            return self.fail(request, e);
        }
        if matches!(&databases, Selection::Only(dbs) if dbs.is_empty()) {
            return self.fail(
                request,
                "choose at least one database, or all current and future databases",
            );
        }
        let held = self
            .group
            .as_ref()
            .map(|g| g.held.clone())
            .unwrap_or_default();
        let smoke = self
            .group
            .as_ref()
            .map(|g| g.smoke.clone())
            .unwrap_or_default();
        let group = GroupConfig {
            primary,
            secondary,
            databases,
            kind,
            rpo_target_s,
            held,
            smoke,
        };
        self.spawn_configure(request, group);
    }

    /// Probes the group's regions and finds its flows, in a task.
    fn spawn_configure(&mut self, request: RequestId, group: GroupConfig) {
        let regions = (self.region(&group.primary), self.region(&group.secondary));
        let failed_over = failed_over(&self.control_state, &group);
        self.spawn(async move {
            let result = async {
                let (primary, secondary) = (regions.0?, regions.1?);
                let pair = [primary.clone(), secondary.clone()];
                let warnings = region::preflight(&pair).await?;
                let flows = discover_flows(&pair, &group, &failed_over).await?;
                if let Selection::Only(dbs) = &group.databases {
                    for db in dbs {
                        if !flows.iter().any(|f| &f.db == db) {
                            return Err(Error::Failed(format!(
                                "database `{db}` has no home in {}; create it there or leave it out",
                                primary.name()
                            )));
                        }
                    }
                }
                Ok((flows, warnings))
            }
            .await;
            Internal::Configured {
                request,
                group,
                result,
            }
        });
    }

    async fn configured(
        &mut self,
        request: RequestId,
        group: GroupConfig,
        result: Result<(Vec<Flow>, Vec<String>)>,
    ) {
        let (flows, warnings) = match result {
            Ok(found) => found,
            Err(e) => return self.fail(request, e),
        };
        let same_pair = self
            .group
            .as_ref()
            .is_some_and(|g| g.primary == group.primary && g.secondary == group.secondary);
        if !same_pair && let Some(old) = self.replicator.take() {
            old.stop().await;
        }
        let replicator = self.replicator.get_or_insert_with(|| {
            Replicator::start(
                Vec::new(),
                self.opts.replication.clone(),
                Arc::clone(&self.pins) as Arc<dyn Pins>,
            )
        });
        // Flows of databases no longer selected stop.
        let dropped: BTreeSet<String> = replicator
            .flows()
            .filter(|f| !group.databases.includes(&f.db))
            .map(|f| f.db.clone())
            .collect();
        for db in &dropped {
            replicator.remove(db).await;
        }
        let count = flows.len();
        for flow in flows {
            let db = flow.db.clone();
            replicator.add(flow);
            if group.held.contains(&db) {
                replicator.hold(&db, true);
            }
        }
        let mut message = format!(
            "replicating {count} database(s) from {} to {}",
            group.primary, group.secondary
        );
        for warning in warnings {
            message.push_str(&format!("; warning: {warning}"));
        }
        self.group = Some(group);
        self.save_group(request, message);
        self.sync_standby();
    }

    fn save_group(&mut self, request: RequestId, message: String) {
        match group::save(&self.home.config_dir, self.group.as_ref()) {
            Ok(()) => self.finish(request, Outcome::Done(message)),
            Err(e) => self.fail(request, e),
        }
    }

    fn hold(&mut self, request: RequestId, db: &str, held: bool) {
        let (Some(group), Some(replicator)) = (self.group.as_mut(), self.replicator.as_ref())
        else {
            return self.fail(request, "replication is not configured");
        };
        if replicator.hold(db, held) == 0 {
            return self.fail(request, format!("database `{db}` is not replicating"));
        }
        if held {
            group.held.insert(db.to_string());
        } else {
            group.held.remove(db);
        }
        let verb = if held { "paused" } else { "resumed" };
        self.save_group(request, format!("{db} {verb}"));
    }

    async fn delete_database(
        &mut self,
        request: RequestId,
        region: String,
        name: String,
        typed_name: String,
    ) {
        if typed_name != name {
            return self.fail(
                request,
                format!("type the database's name, `{name}`, to confirm the delete"),
            );
        }
        let region = match self.region(&region) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        let Some(group) = self.group.as_ref() else {
            return self.spawn_delete(request, region, name).await;
        };
        if group.secondary == region.name() && group.databases.includes(&name) {
            return self.fail(
                request,
                format!(
                    "{name} in {} is the replica that replication keeps up to date; take {name} out of the replication group first (Edit replication)",
                    region.name()
                ),
            );
        }
        self.spawn_delete(request, region, name).await;
    }

    /// Stops what writes or copies `name`, then deletes it in `region`.
    async fn spawn_delete(&mut self, request: RequestId, region: Region, name: String) {
        self.stop_demo(Some(&name)).await;
        if let Some(replicator) = self.replicator.as_mut() {
            replicator.remove(&name).await;
        }
        self.deleting.insert(request, name.clone());
        Arc::make_mut(&mut self.history).forget(&name);
        let others: Vec<Region> = self.opened.values().cloned().collect();
        self.spawn(async move {
            let result = async {
                // The name was typed to confirm, and this engine's writers
                // and copies of it are stopped: the deletion fences any
                // other writer before a file goes.
                let plan = crate::storage::delete::plan(&region, &others, &name, None).await?;
                let objects = crate::storage::delete::delete(&region, &plan).await?;
                Ok::<_, Error>(format!("deleted {} ({objects} objects)", plan.describe()))
            }
            .await;
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: true,
            }
        });
    }

    fn in_group(&self, name: &str) -> bool {
        self.group
            .as_ref()
            .is_some_and(|g| g.primary == name || g.secondary == name)
    }

    fn save_region(&mut self, request: RequestId, replacing: Option<String>, spec: RegionSpec) {
        if let Err(e) = spec.validate() {
            return self.fail(request, e);
        }
        match &replacing {
            None if self.regions.get(&spec.name).is_ok() => {
                return self.fail(
                    request,
                    format!(
                        "region `{}` already exists; pick another name or edit it",
                        spec.name
                    ),
                );
            }
            Some(old) if self.in_group(old) => {
                return self.fail(
                    request,
                    format!("region `{old}` is in the replication group; stop replication before changing it"),
                );
            }
            _ => {}
        }
        self.spawn(async move {
            let result = async { Region::open(&spec)?.probe().await }.await;
            Internal::RegionProbed {
                request,
                replacing,
                spec,
                result,
            }
        });
    }

    fn region_probed(
        &mut self,
        request: RequestId,
        replacing: Option<String>,
        spec: RegionSpec,
        result: Result<ProbeReport>,
    ) {
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                return self.fail(
                    request,
                    format!("not saved: {}", crate::error::one_line(&e.to_string())),
                );
            }
        };
        let mut regions = self.regions.clone();
        let changed = match &replacing {
            Some(old) => regions.replace(old, spec.clone()),
            None => regions.add(spec.clone()),
        };
        if let Err(e) = changed.and_then(|()| self.home.save_regions(&regions)) {
            return self.fail(request, e);
        }
        self.regions = regions;
        if let Some(old) = &replacing {
            self.health.remove(old);
        }
        self.open_regions();
        self.health
            .insert(spec.name.clone(), health_of(&Ok(report.clone())));
        let mut message = format!(
            "saved region {}: reachable in {} ms, conditional puts honoured",
            spec.name, report.latency_ms
        );
        if let Some(warning) = report.clock_warning() {
            message.push_str(&format!("; warning: {warning}"));
        }
        self.finish(request, Outcome::Done(message));
        self.list_databases();
    }

    fn remove_region(&mut self, request: RequestId, name: &str) {
        if self.in_group(name) {
            return self.fail(
                request,
                format!("region `{name}` is in the replication group; stop replication before removing it"),
            );
        }
        let mut regions = self.regions.clone();
        if let Err(e) = regions
            .remove(name)
            .and_then(|_| self.home.save_regions(&regions))
        {
            return self.fail(request, e);
        }
        self.regions = regions;
        self.health.remove(name);
        self.databases.retain(|d| d.region != name);
        self.open_regions();
        self.finish(
            request,
            Outcome::Done(format!(
                "region {name} removed from the configuration; its data is left alone"
            )),
        );
    }

    fn start_demo(&mut self, request: RequestId) {
        let Some(primary) = self.primary() else {
            return self.fail(request, "no region is configured; add two in Settings");
        };
        let region = match self.region(&primary) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        self.spawn(async move {
            let result = async {
                let mut created = Vec::new();
                for db in DEMO_DATABASES {
                    let location = DbLocation::in_region(&region, db)?;
                    if !location.exists().await? {
                        location.create().await?;
                        created.push(db.to_string());
                    }
                }
                Ok(created)
            }
            .await;
            Internal::DemoReady { request, result }
        });
    }

    fn demo_ready(&mut self, request: RequestId, result: Result<Vec<String>>) {
        let created = match result {
            Ok(created) => created,
            Err(e) => return self.fail(request, e),
        };
        let Some(primary) = self.primary() else {
            return self.fail(request, "no region is configured");
        };
        let region = match self.region(&primary) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        for db in DEMO_DATABASES {
            if self.demo.contains_key(db) {
                continue;
            }
            // The live branch at its home, once a failover moved it.
            let location = match self.control_state.live.get(db) {
                Some(live) => self
                    .region(&live.region)
                    .and_then(|home| DbLocation::branch_in_region(&home, db, &live.branch)),
                None => DbLocation::in_region(&region, db),
            };
            let location = match location {
                Ok(l) => l,
                Err(e) => return self.fail(request, e),
            };
            let log = AckLog::for_db(&self.home.acks_dir(), db);
            self.demo.insert(
                db.to_string(),
                BackgroundRun::start(location, demo_spec(), log),
            );
        }
        let mut message = format!(
            "demo databases {} written at {DEMO_RATE} records/s each",
            DEMO_DATABASES.join(", ")
        );
        if !created.is_empty() {
            message.push_str(&format!(" ({} created)", created.join(", ")));
        }
        self.finish(request, Outcome::Done(message));
        self.list_databases();
        if self.group.is_none() {
            let secondary = self.regions.names().into_iter().nth(1);
            if let Some(secondary) = secondary {
                let group = GroupConfig {
                    primary,
                    secondary,
                    databases: Selection::All,
                    kind: ReplicationKind::StorageOnly,
                    rpo_target_s: group::DEFAULT_RPO_TARGET_S,
                    held: BTreeSet::new(),
                    smoke: Vec::new(),
                };
                let describe = Command::ConfigureReplication {
                    secondary: group.secondary.clone(),
                    databases: Selection::All,
                    kind: group.kind,
                    rpo_target_s: group.rpo_target_s,
                }
                .describe();
                self.activity.begin(0, "engine", describe);
                self.spawn_configure(0, group);
            }
        } else {
            self.discover();
        }
    }

    async fn absorb(&mut self, internal: Internal) {
        match internal {
            Internal::Listed(databases) => {
                self.listing = false;
                self.databases = databases;
                self.listed_us = Some(now_us());
            }
            Internal::Health(health, warnings) => {
                self.checking = false;
                for (name, h) in health {
                    self.health.insert(name, h);
                }
                self.clock_warnings = warnings;
            }
            Internal::Configured {
                request,
                group,
                result,
            } => {
                // Awaiting a stop of the old flows is short (each stops after
                // its current copy), and only on a change of regions.
                self.configured(request, group, result).await;
            }
            Internal::Discovered(result) => {
                self.discovering = false;
                match result {
                    Ok(flows) => self.add_flows(flows),
                    Err(e) => tracing::warn!("looking for new databases failed: {e}"),
                }
            }
            Internal::RegionProbed {
                request,
                replacing,
                spec,
                result,
            } => self.region_probed(request, replacing, spec, result),
            Internal::DemoReady { request, result } => self.demo_ready(request, result),
            Internal::Finished {
                request,
                outcome,
                relist,
            } => {
                self.deleting.remove(&request);
                self.finish(request, outcome);
                if relist {
                    // A database created or deleted: the listing changed, and
                    // under "all databases" a new one starts replicating.
                    self.list_databases();
                    self.discover();
                    self.read_control();
                }
            }
            Internal::ControlRead(result) => {
                self.control_reading = false;
                match result {
                    Ok(state) => {
                        self.pins.update(&state);
                        self.control_state = state;
                        self.expire_branches();
                        self.sync_standby();
                        self.control_read_us = Some(now_us());
                        self.control_error = None;
                    }
                    Err(e) => self.control_error = Some(e.to_string()),
                }
            }
            Internal::ControlRecorded { request, result } => {
                self.finish(request, outcome(result));
                self.read_control();
            }
            Internal::FailoverPreviewed { request, result } => {
                self.failover.previewing = false;
                match result {
                    Ok(mut preview) => {
                        // The lag the table shows, from the running copier,
                        // rather than the cursor's last saved sync.
                        let statuses = self
                            .replicator
                            .as_ref()
                            .map(|r| r.statuses())
                            .unwrap_or_default();
                        let now = crate::workload::now_us();
                        for db in &mut preview.dbs {
                            let live = statuses.iter().find(|s| {
                                s.db == db.db
                                    && s.branch == db.branch
                                    && s.replica == preview.to
                                    && !s.is_stale(now)
                            });
                            if let Some(lag_s) = live.and_then(|s| s.lag_s_at(now)) {
                                db.lag_ms = Some((lag_s * 1000.0) as u64);
                                db.lag_live = true;
                            }
                        }
                        let summary = preview.summary();
                        self.failover.preview = Some(preview);
                        self.finish(request, Outcome::Done(summary));
                    }
                    Err(e) => {
                        self.failover.preview = None;
                        self.failover.preview_error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::FailoverStep(step) => self.failover.steps.push(step),
            Internal::MoveStep(step) => self.moving.steps.push(step),
            Internal::RecoveryStep(step) => self.recovery.steps.push(step),
            Internal::MovePlanned { request, result } => {
                self.moving.planning = false;
                match result {
                    Ok(plan) => {
                        let summary = plan.summary();
                        self.moving.plan = Some(plan);
                        self.finish(request, Outcome::Done(summary));
                    }
                    Err(e) => {
                        self.moving.plan = None;
                        self.moving.plan_error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::Moved { request, result } => self.moved(request, result).await,
            Internal::Recovered { request, result } => {
                self.recovery.running = false;
                match result {
                    Ok(outcome) => {
                        self.recovery.comparison =
                            outcome.recovered.as_ref().map(recovery::ComparisonView::of);
                        let message = outcome.record.outcome.clone();
                        self.recovery.last = Some(outcome.record);
                        self.finish(request, Outcome::Done(message));
                        self.read_control();
                    }
                    Err(e) => {
                        self.recovery.error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::Compared { request, result } => {
                self.recovery.comparing = false;
                match result {
                    Ok(r) => {
                        let message = r.summary();
                        self.recovery.comparison = Some(recovery::ComparisonView::of(&r));
                        if request != INTERNAL_REQUEST {
                            self.finish(request, Outcome::Done(message));
                        }
                    }
                    Err(e) => {
                        self.recovery.error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::Merged { request, result } => {
                self.recovery.running = false;
                match result {
                    Ok(outcome) => {
                        let message = outcome.record.outcome.clone();
                        let compared = self.recovery.comparison.take();
                        self.recovery.last = Some(outcome.record);
                        self.finish(request, Outcome::Done(message));
                        self.read_control();
                        // What is left to merge, unless the branch is gone.
                        if let Some(c) = compared
                            && !outcome.discarded
                        {
                            self.compare(INTERNAL_REQUEST, c.db, c.branch);
                        }
                    }
                    Err(e) => {
                        self.recovery.error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::DrillStep(step) => self.drill.steps.push(step),
            Internal::StandbyStarted { name, result } => {
                self.standby_starting.remove(&name);
                match result {
                    Ok((ws, token, note)) => {
                        let wanted = self
                            .group
                            .as_ref()
                            .is_some_and(|g| g.kind == ReplicationKind::PreProvisioned);
                        if wanted {
                            self.standby_error = note;
                            self.standby.insert(name, (Arc::new(ws), token));
                        } else {
                            tokio::spawn(async move {
                                let _ = ws.stop().await;
                            });
                        }
                    }
                    Err(e) => self.standby_error = Some(crate::error::one_line(&e.to_string())),
                }
            }
            Internal::Drilled { request, result } => self.drilled(request, result),
            Internal::Expired(result) => {
                self.expiring = false;
                match result {
                    Ok(gone) if !gone.is_empty() => {
                        tracing::info!("expired branches deleted: {}", gone.join(", "));
                        self.read_control();
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("deleting expired branches: {e}"),
                }
            }
            Internal::FailedOver { request, result } => self.failed_over(request, result),
            Internal::WorkspaceStarted {
                request,
                name,
                result,
            } => {
                self.workspace_busy.remove(&name);
                match result {
                    Ok(ws) => {
                        let addr = ws.addr();
                        self.workspaces.insert(name.clone(), ws);
                        self.finish(
                            request,
                            Outcome::Done(format!("workspace {name} serves at {addr}")),
                        );
                    }
                    Err(e) => self.fail(request, e),
                }
            }
        }
    }

    /// Writes test records to the live branch of `db` where the listing
    /// shows it homed, at the demo's rate (the demo's writers and these are
    /// one set: the status bar counts them, Stop the demo stops them all).
    fn start_workload(&mut self, request: RequestId, db: String) {
        if self.demo.contains_key(&db) {
            return self.finish(
                request,
                Outcome::Done(format!("{db} is being written already")),
            );
        }
        let branch = self.control_state.live_branch(&db).to_string();
        let home = self.databases.iter().find(|region| {
            region
                .branches
                .iter()
                .any(|b| b.db == db && b.branch == branch && b.replica_of.is_none())
        });
        let Some(home) = home.map(|r| r.region.clone()) else {
            return self.fail(
                request,
                format!("no region holds database `{db}` (branch {branch}) as its home; create it in the Databases tab first"),
            );
        };
        let location = match self
            .region(&home)
            .and_then(|region| DbLocation::branch_in_region(&region, &db, &branch))
        {
            Ok(location) => location,
            Err(e) => return self.fail(request, e),
        };
        let log = AckLog::for_db(&self.home.acks_dir(), &db);
        self.demo
            .insert(db.clone(), BackgroundRun::start(location, demo_spec(), log));
        self.finish(
            request,
            Outcome::Done(format!(
                "writing {DEMO_RATE} test records/s to {db}/{branch} in {home}"
            )),
        );
    }

    /// Stops the demo writer of `only`, or every one; returns how many.
    async fn stop_demo(&mut self, only: Option<&str>) -> usize {
        let stopping: Vec<String> = self
            .demo
            .keys()
            .filter(|db| only.is_none_or(|o| o == db.as_str()))
            .cloned()
            .collect();
        for db in &stopping {
            if let Some(run) = self.demo.remove(db) {
                let _ = run.stop().await;
            }
        }
        stopping.len()
    }

    /// Forgets demo writers that ended by themselves, noting why in the
    /// activity log when it was a failure.
    async fn reap_demo(&mut self) {
        let ended: Vec<String> = self
            .demo
            .iter()
            .filter(|(_, run)| run.is_finished())
            .map(|(db, _)| db.clone())
            .collect();
        for db in ended {
            let Some(run) = self.demo.remove(&db) else {
                continue;
            };
            let failure = match run.stop().await {
                Ok(Ok(report)) => report
                    .error
                    .map(|e| format!("after {} records: {e}", report.records_acked)),
                Ok(Err(e)) | Err(e) => Some(e.to_string()),
            };
            if let Some(message) = failure {
                self.activity
                    .note(format!("demo writer of {db}"), Outcome::Failed(message));
                self.activity_changed();
            }
        }
    }

    fn add_flows(&mut self, flows: Vec<Flow>) {
        let (Some(group), Some(replicator)) = (self.group.as_ref(), self.replicator.as_mut())
        else {
            return;
        };
        for flow in flows {
            if !group.databases.includes(&flow.db) || self.deleting.values().any(|d| *d == flow.db)
            {
                continue;
            }
            let db = flow.db.clone();
            if replicator.add(flow) {
                tracing::info!("replicating new database {db}");
                if group.held.contains(&db) {
                    replicator.hold(&db, true);
                }
            }
        }
    }

    /// Looks for databases created in the primary since the group started.
    fn discover(&mut self) {
        let Some(group) = self.group.clone() else {
            return;
        };
        if self.discovering || self.replicator.is_none() {
            return;
        }
        let (Ok(primary), Ok(secondary)) =
            (self.region(&group.primary), self.region(&group.secondary))
        else {
            return;
        };
        self.discovering = true;
        let failed_over = failed_over(&self.control_state, &group);
        self.spawn(async move {
            Internal::Discovered(discover_flows(&[primary, secondary], &group, &failed_over).await)
        });
    }

    fn list_databases(&mut self) {
        if self.listing {
            return;
        }
        self.listing = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let order = self.regions.names();
        self.spawn(async move {
            let mut listed = futures::future::join_all(regions.iter().map(list_region)).await;
            listed.sort_by_key(|l| order.iter().position(|n| n == &l.region));
            Internal::Listed(listed)
        });
    }

    fn check_regions(&mut self) {
        if self.checking {
            return;
        }
        self.checking = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        self.spawn(async move {
            let probes = futures::future::join_all(regions.iter().map(|r| async move {
                let probe = tokio::time::timeout(Duration::from_secs(20), r.measure())
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Failed(format!(
                            "region `{}` did not answer within 20 s",
                            r.name()
                        )))
                    });
                (r.name().to_string(), probe)
            }))
            .await;
            let reports: Vec<ProbeReport> = probes
                .iter()
                .filter_map(|(_, p)| p.as_ref().ok().cloned())
                .collect();
            let warnings = region::clock_warnings(&reports);
            let health = probes
                .into_iter()
                .map(|(name, probe)| (name, health_of(&probe)))
                .collect();
            Internal::Health(health, warnings)
        });
    }

    /// One sample a second for the Dashboard.
    fn sample(&mut self) {
        let Some(replicator) = &self.replicator else {
            return;
        };
        let statuses = replicator.statuses();
        let mut lags: BTreeMap<String, f64> = BTreeMap::new();
        for status in &statuses {
            if let Some(lag) = status.lag_s {
                let worst = lags.entry(status.db.clone()).or_insert(0.0);
                *worst = worst.max(lag);
            }
        }
        let copied: u64 = statuses.iter().map(|s| s.bytes_copied).sum();
        let requests: u64 = statuses.iter().map(|s| s.requests_per_min).sum();
        let now = Instant::now();
        let rate = match self.last_copied {
            Some((at, before)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                copied.saturating_sub(before) as f64 / secs
            }
            None => 0.0,
        };
        self.last_copied = Some((now, copied));
        let t_s = now_us() as f64 / 1e6;
        Arc::make_mut(&mut self.history).record(t_s, &lags, rate, requests as f64);
    }

    /// Syncs the control log between the regions and reads it, unless a
    /// read is under way.
    fn read_control(&mut self) {
        if self.control_reading {
            return;
        }
        self.control_reading = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let cache = Arc::clone(&self.control_cache);
        self.spawn(async move {
            let result = async {
                let report = control::sync(&regions).await?;
                for (region, e) in &report.unreachable {
                    tracing::debug!(region = %region, "control log sync: {e}");
                }
                cache.lock().await.load_all(&regions).await
            }
            .await;
            Internal::ControlRead(result)
        });
    }

    /// Checks a control-plane change against the log's state, hashes any
    /// password off the loop, and records it in every region.
    fn record_control(&mut self, request: RequestId, change: ControlChange) {
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

    fn start_workspace(&mut self, request: RequestId, name: String, region_name: String) {
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
                    Default::default(),
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

    fn stop_workspace(&mut self, request: RequestId, name: &str) {
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
    async fn reap_workspaces(&mut self) {
        let stopped: Vec<String> = self
            .workspaces
            .iter()
            .filter(|(_, ws)| ws.is_stopped())
            .map(|(name, _)| name.clone())
            .collect();
        for name in stopped {
            if let Some(ws) = self.workspaces.remove(&name) {
                let result = ws.stop().await;
                let what = format!("workspace {name} stopped (asked through the control log)");
                let outcome = match result {
                    Ok(()) => Outcome::Done(what),
                    Err(e) => Outcome::Failed(format!("{what}: {e}")),
                };
                self.activity
                    .note(format!("stop workspace {name}"), outcome);
                self.activity_changed();
            }
        }
    }

    /// The group's databases whose live branch is homed in the primary and
    /// replicated to the secondary: what a failover moves.
    fn failover_dbs(&self, group: &GroupConfig) -> Vec<String> {
        let Some(replicator) = self.replicator.as_ref() else {
            return Vec::new();
        };
        let dbs: BTreeSet<String> = replicator
            .flows()
            .filter(|f| {
                f.home.name() == group.primary
                    && f.replica.name() == group.secondary
                    && f.branch == self.control_state.live_branch(&f.db)
            })
            .map(|f| f.db.clone())
            .collect();
        dbs.into_iter().collect()
    }

    fn preview_failover(&mut self, request: RequestId) {
        let Some(group) = self.group.clone() else {
            return self.fail(request, "configure replication first: a failover moves the group's databases to its secondary");
        };
        if self.failover.running {
            return self.fail(request, "a failover is running; wait for it to finish");
        }
        let dbs = self.failover_dbs(&group);
        if dbs.is_empty() {
            return self.fail(
                request,
                format!(
                    "no database of the group is live in {} and replicated to {}; nothing to fail over",
                    group.primary, group.secondary
                ),
            );
        }
        let (from, to) = match (self.region(&group.primary), self.region(&group.secondary)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return self.fail(request, e),
        };
        self.failover.previewing = true;
        self.failover.preview_error = None;
        self.spawn(async move {
            let result = async {
                // The log as the secondary holds it: the primary may be gone.
                let state = control::load(&to).await?;
                crate::orchestrator::failover::preview(&from, &to, &state, &dbs).await
            }
            .await;
            Internal::FailoverPreviewed { request, result }
        });
    }

    async fn run_failover(&mut self, request: RequestId, epoch: u64) {
        if self.failover.running {
            return self.fail(request, "a failover is running already");
        }
        let Some(preview) = self.failover.preview.clone() else {
            return self.fail(
                request,
                "look at what a failover would lose first (preview)",
            );
        };
        if preview.epoch != epoch {
            return self.fail(
                request,
                "the preview confirmed is not the newest; look again and confirm that one",
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        // Workspaces this engine serves from the old primary under the names
        // the failover starts: they stop first (same names, same ports).
        for name in &preview.workspaces {
            if let Some(ws) = self.workspaces.remove(name) {
                let _ = ws.stop().await;
            }
        }
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let acks = self.acks_for(preview.dbs.iter().map(|d| &d.db));
        let options = crate::orchestrator::failover::FailoverOptions {
            serve: true,
            acks,
            standby: self.standby.clone(),
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_to(Internal::FailoverStep)),
            ..Default::default()
        };
        self.failover.running = true;
        self.failover.steps.clear();
        self.failover.error = None;
        let who = self.who.clone();
        self.spawn(async move {
            let result =
                crate::orchestrator::failover::failover(&regions, &preview, &engine, &who, options)
                    .await;
            Internal::FailedOver { request, result }
        });
    }

    fn failed_over(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::failover::FailoverOutcome>,
    ) {
        self.failover.running = false;
        self.failover.preview = None;
        match result {
            Ok(outcome) => {
                let record = outcome.record;
                for ws in outcome.workspaces {
                    self.workspaces.insert(ws.name().to_string(), ws);
                }
                // Promoted standing workspaces now serve the live branches.
                for name in outcome.promoted {
                    if let Some((ws, _)) = self.standby.remove(&name) {
                        match Arc::try_unwrap(ws) {
                            Ok(ws) => {
                                self.workspaces.insert(name, ws);
                            }
                            Err(ws) => {
                                self.standby.insert(name, (ws, String::new()));
                            }
                        }
                    }
                }
                let rto = record
                    .rto_ms
                    .map_or("not measured".to_string(), |ms| format!("{ms} ms"));
                let message = format!("{}; RTO {rto}", record.outcome);
                self.failover.last = Some(record);
                self.finish(request, Outcome::Done(message));
                self.read_control();
                // The new live branches start flowing back to the old primary.
                self.discover();
            }
            Err(e) => {
                self.failover.error = Some(crate::error::one_line(&e.to_string()));
                self.fail(request, e);
            }
        }
    }

    fn run_drill(&mut self, request: RequestId, ttl_s: u64, smoke: Vec<String>) {
        let Some(group) = self.group.clone() else {
            return self.fail(
                request,
                "configure replication first: a drill forks the secondary's replicas",
            );
        };
        if self.drill.running {
            return self.fail(request, "a drill is running; wait for it to finish");
        }
        if ttl_s == 0 {
            return self.fail(
                request,
                "a time to live of 0 s would delete the drill at once; give at least a minute",
            );
        }
        let dbs = self.failover_dbs(&group);
        if dbs.is_empty() {
            return self.fail(
                request,
                format!(
                    "no database replicates from {} to {} yet",
                    group.primary, group.secondary
                ),
            );
        }
        let to = match self.region(&group.secondary) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        let options = crate::orchestrator::drill::DrillOptions {
            ttl: Duration::from_secs(ttl_s),
            smoke,
            acks: self.acks_for(&dbs),
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_to(Internal::DrillStep)),
            ..Default::default()
        };
        // The smoke commands are the group's: the next drill starts from them.
        if let Some(group) = self.group.as_mut()
            && group.smoke != options.smoke
        {
            group.smoke = options.smoke.clone();
            if let Err(e) = group::save(&self.home.config_dir, Some(group)) {
                tracing::warn!("saving the drill's smoke commands: {e}");
            }
        }
        self.drill.running = true;
        self.drill.steps.clear();
        self.drill.error = None;
        let who = self.who.clone();
        let from = group.primary.clone();
        self.spawn(async move {
            let result =
                crate::orchestrator::drill::drill(&from, &to, &dbs, &engine, &who, options).await;
            Internal::Drilled { request, result }
        });
    }

    fn drilled(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::drill::DrillOutcome>,
    ) {
        self.drill.running = false;
        match result {
            Ok(outcome) => {
                let record = outcome.record;
                if let Some(ws) = outcome.workspace {
                    self.drill_workspaces.insert(record.id.clone(), ws);
                }
                let rto = record
                    .rto_ms
                    .map_or("not measured".to_string(), |ms| format!("{ms} ms"));
                let message = format!("{}; RTO {rto}", record.outcome);
                let ok = record.ok;
                self.drill.last = Some(record);
                self.finish(
                    request,
                    if ok {
                        Outcome::Done(message)
                    } else {
                        Outcome::Failed(message)
                    },
                );
                self.read_control();
            }
            Err(e) => {
                self.drill.error = Some(crate::error::one_line(&e.to_string()));
                self.fail(request, e);
            }
        }
    }

    /// A point-in-time checkpoint of every live branch of the group, at
    /// its home (the primary, or the secondary after a failover).
    fn checkpoint_live_branches(&mut self) {
        let Some(replicator) = self.replicator.as_ref() else {
            return;
        };
        let mut homes = BTreeMap::new();
        for flow in replicator.flows() {
            if flow.branch == self.control_state.live_branch(&flow.db) {
                let key = (
                    flow.home.name().to_string(),
                    flow.db.clone(),
                    flow.branch.clone(),
                );
                homes.insert(key, flow.home.clone());
            }
        }
        for ((_, db, branch), home) in homes {
            tokio::spawn(async move {
                let result = async {
                    let location = DbLocation::branch_in_region(&home, &db, &branch)?;
                    storage::pitr::checkpoint(&location, storage::retention()).await
                }
                .await;
                match result {
                    Ok(manifest) => {
                        tracing::debug!(
                            "point-in-time checkpoint of {db}/{branch} at manifest {manifest}"
                        )
                    }
                    Err(e) => tracing::warn!("point-in-time checkpoint of {db}/{branch}: {e}"),
                }
            });
        }
    }

    /// This data folder's engine id for the control log; on failure the
    /// request fails with why.
    fn engine_id(&mut self, request: RequestId) -> Option<String> {
        match control::engine_id(&self.home.data_dir) {
            Ok(id) => Some(id),
            Err(e) => {
                self.fail(request, e);
                None
            }
        }
    }

    fn restore(
        &mut self,
        request: RequestId,
        db: String,
        region: String,
        at_ms: u64,
        name: String,
    ) {
        if at_ms > crate::orchestrator::now_ms() {
            return self.fail(
                request,
                "that time lies in the future; restore to a time that has passed",
            );
        }
        let state = self.control_state.clone();
        let source = state.live_branch(&db).to_string();
        let event_check =
            region::validate_name("branch", &name).and_then(|()| match state.branch(&db, &name) {
                Some(_) => Err(Error::invalid(format!(
                    "branch `{name}` of `{db}` exists; pick another name"
                ))),
                None => Ok(()),
            });
        if let Err(e) = event_check {
            return self.fail(request, e);
        }
        let region = match self.region(&region) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let pins = Arc::clone(&self.pins);
        let who = self.who.clone();
        self.spawn(async move {
            let result = async {
                let point = storage::pitr::locate(&region, &db, &source, at_ms).await?;
                let guard = pins.forking(&db, &source);
                let forked =
                    storage::fork::fork_at(&region, &db, &source, &name, Some(&point)).await?;
                drop(guard);
                let fork = crate::orchestrator::failover::branch_event(
                    &forked,
                    control::event::BranchReason::Recovery,
                    None,
                );
                pins.add(&fork);
                let event = control::event::Event::BranchForked(fork);
                control::append(&regions, &engine, &who, event).await?;
                Ok::<_, Error>(format!(
                    "restored {db} as {name} in {} as of {}: manifest {}, WAL {}",
                    region.name(),
                    crate::workload::verify::format_us(at_ms.saturating_mul(1000)),
                    point.manifest_id,
                    forked.wal_end
                ))
            }
            .await;
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: true,
            }
        });
    }

    fn delete_branch(&mut self, request: RequestId, db: String, branch: String) {
        let state = self.control_state.clone();
        let Some(record) = state.branch(&db, &branch).cloned() else {
            return self.fail(
                request,
                format!("`{db}/{branch}` is not a forked branch the control log knows"),
            );
        };
        let event = match state.check(control::event::Event::BranchDeleted {
            db: db.clone(),
            branch: branch.clone(),
        }) {
            Ok(e) => e,
            Err(e) => return self.fail(request, e),
        };
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        // A drill branch's workspace goes with it.
        if let Some(ws) = self.drill_workspaces.remove(&branch) {
            tokio::spawn(async move {
                let _ = ws.stop().await;
            });
        }
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let who = self.who.clone();
        self.spawn(async move {
            let result = async {
                control::append(&regions, &engine, &who, event).await?;
                let mut deleted = 0;
                for region in &regions {
                    deleted += storage::fork::delete_branch(
                        region,
                        &db,
                        &branch,
                        Some(&record.fork.source),
                    )
                    .await?;
                }
                Ok::<_, Error>(format!("deleted {db}/{branch} ({deleted} objects)"))
            }
            .await;
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: true,
            }
        });
    }

    /// Deletes branches whose time to live ran out (and stops the drill
    /// workspaces serving them).
    fn expire_branches(&mut self) {
        let expired = self.control_state.expired(crate::orchestrator::now_ms());
        if expired.is_empty() || self.expiring {
            return;
        }
        let names: BTreeSet<String> = expired.iter().map(|b| b.fork.branch.clone()).collect();
        let done: Vec<String> = self
            .drill_workspaces
            .keys()
            .filter(|id| names.contains(*id))
            .cloned()
            .collect();
        for id in done {
            if let Some(ws) = self.drill_workspaces.remove(&id) {
                tokio::spawn(async move {
                    let _ = ws.stop().await;
                });
            }
        }
        let engine = match control::engine_id(&self.home.data_dir) {
            Ok(id) => id,
            Err(e) => return tracing::warn!("expiring branches: {e}"),
        };
        self.expiring = true;
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let state = self.control_state.clone();
        let who = self.who.clone();
        self.spawn(async move {
            Internal::Expired(
                crate::orchestrator::drill::expire(&regions, &state, &engine, &who).await,
            )
        });
    }

    async fn set_preprovisioning(&mut self, request: RequestId, on: bool) {
        let Some(group) = self.group.as_mut() else {
            return self.fail(request, "configure replication first: pre-provisioning stands workspaces up in its secondary");
        };
        group.kind = if on {
            ReplicationKind::PreProvisioned
        } else {
            ReplicationKind::StorageOnly
        };
        if !on {
            for (name, (ws, _)) in std::mem::take(&mut self.standby) {
                match Arc::try_unwrap(ws) {
                    Ok(ws) => {
                        if let Err(e) = ws.stop().await {
                            tracing::warn!(workspace = %name, "stopping the standing workspace: {e}");
                        }
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
    fn standby_names(&self) -> Vec<String> {
        let Some(group) = self.group.as_ref() else {
            return Vec::new();
        };
        let dbs = self.failover_dbs(group);
        self.control_state
            .workspaces
            .values()
            .filter(|ws| ws.databases.iter().any(|a| dbs.contains(&a.db)))
            .map(|ws| ws.name.clone())
            .collect()
    }

    /// Starts the standing workspaces pre-provisioning wants and does not
    /// have yet (it never stops one here: a promoted one serves).
    fn sync_standby(&mut self) {
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

    /// Each step of an operation, as it ends, back to the engine as `wrap(step)`.
    fn steps_to(
        &self,
        wrap: fn(crate::control::event::Step) -> Internal,
    ) -> crate::orchestrator::OnStep {
        let tx = self.internal_tx.clone();
        Box::new(move |step| {
            let _ = tx.send(wrap(step.clone()));
        })
    }

    /// The acknowledgement logs of `dbs`, which RPO is measured against.
    fn acks_for<'a>(&self, dbs: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, AckLog> {
        dbs.into_iter()
            .map(|db| (db.clone(), AckLog::for_db(&self.home.acks_dir(), db)))
            .collect()
    }

    /// Where the group's live branches are written, and the other region:
    /// a switchover moves them from the first to the second; a failback
    /// from the secondary back to the primary.
    fn move_regions(&self, group: &GroupConfig, kind: OperationKind) -> (String, String) {
        let moved = self
            .control_state
            .live
            .values()
            .any(|l| l.region == group.secondary);
        if kind == OperationKind::Failback || moved {
            (group.secondary.clone(), group.primary.clone())
        } else {
            (group.primary.clone(), group.secondary.clone())
        }
    }

    fn plan_move(&mut self, request: RequestId, kind: OperationKind) {
        let Some(group) = self.group.clone() else {
            return self.fail(
                request,
                format!(
                    "configure replication first: a {} moves the group's databases",
                    kind.name()
                ),
            );
        };
        if self.moving.running {
            return self.fail(
                request,
                format!("a {} is running; wait for it to finish", kind.name()),
            );
        }
        let (from, to) = self.move_regions(&group, kind);
        // The live branches written in `from` and replicated to `to`.
        let dbs: BTreeSet<String> = self
            .replicator
            .as_ref()
            .map(|r| {
                r.flows()
                    .filter(|f| {
                        f.home.name() == from
                            && f.replica.name() == to
                            && f.branch == self.control_state.live_branch(&f.db)
                    })
                    .map(|f| f.db.clone())
                    .collect()
            })
            .unwrap_or_default();
        if dbs.is_empty() {
            return self.fail(
                request,
                format!(
                    "no live branch is written in {from} and replicated to {to}; nothing to move"
                ),
            );
        }
        let (from, to) = match (self.region(&from), self.region(&to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return self.fail(request, e),
        };
        self.moving = recovery::MoveView {
            kind: Some(kind),
            planning: true,
            ..recovery::MoveView::default()
        };
        let dbs: Vec<String> = dbs.into_iter().collect();
        self.spawn(async move {
            let result = async {
                let state = control::load_all(&[to.clone(), from.clone()]).await?;
                crate::orchestrator::switchover::plan(&from, &to, &state, &dbs, kind).await
            }
            .await;
            Internal::MovePlanned { request, result }
        });
    }

    async fn run_move(&mut self, request: RequestId, kind: OperationKind, epoch: u64) {
        if self.moving.running {
            return self.fail(request, format!("a {} is running already", kind.name()));
        }
        let Some(plan) = self.moving.plan.clone().filter(|p| p.kind == kind) else {
            return self.fail(
                request,
                format!("look at what a {} would move first", kind.name()),
            );
        };
        if plan.epoch != epoch {
            return self.fail(
                request,
                "the plan confirmed is not the newest; look again and confirm that one",
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        // The workspaces serving these databases here stop writing first;
        // standing ones in the target give way to the writers.
        let mut serving = Vec::new();
        for name in &plan.workspaces {
            if let Some(ws) = self.workspaces.remove(name) {
                serving.push(ws);
            }
            if let Some((ws, _)) = self.standby.remove(name)
                && let Ok(ws) = Arc::try_unwrap(ws)
            {
                let _ = ws.stop().await;
            }
        }
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let acks = self.acks_for(plan.dbs.iter().map(|d| &d.db));
        let options = crate::orchestrator::switchover::SwitchOptions {
            serve: true,
            serving,
            acks,
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_to(Internal::MoveStep)),
            ..Default::default()
        };
        self.moving.running = true;
        self.moving.steps.clear();
        self.moving.error = None;
        let who = self.who.clone();
        self.spawn(async move {
            let result = crate::orchestrator::switchover::switchover(
                &regions, &plan, &engine, &who, options,
            )
            .await;
            Internal::Moved { request, result }
        });
    }

    async fn moved(
        &mut self,
        request: RequestId,
        result: Result<crate::orchestrator::switchover::SwitchOutcome>,
    ) {
        self.moving.running = false;
        self.moving.plan = None;
        match result {
            Ok(outcome) => {
                for ws in outcome.workspaces {
                    self.workspaces.insert(ws.name().to_string(), ws);
                }
                // The old direction is over; discovery adds the new one.
                if let Some(replicator) = self.replicator.as_mut() {
                    for l in &outcome.live {
                        replicator.remove_branch(&l.db, &l.branch).await;
                    }
                }
                let record = outcome.record;
                let rto = record
                    .rto_ms
                    .map_or("not measured".to_string(), |ms| format!("{ms} ms"));
                let message = format!("{}; RTO {rto}", record.outcome);
                self.moving.last = Some(record);
                self.finish(request, Outcome::Done(message));
                self.read_control();
                self.discover();
            }
            Err(e) => {
                self.moving.error = Some(crate::error::one_line(&e.to_string()));
                self.fail(request, e);
            }
        }
    }

    fn recover(&mut self, request: RequestId, db: String) {
        if self.recovery.running {
            return self.fail(
                request,
                "a recovery or merge is running; wait for it to finish",
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let state = self.control_state.clone();
        let options = crate::orchestrator::recover::RecoverOptions {
            pins: Some(Arc::clone(&self.pins)),
            on_step: Some(self.steps_to(Internal::RecoveryStep)),
            ..Default::default()
        };
        self.recovery.running = true;
        self.recovery.steps.clear();
        self.recovery.error = None;
        self.recovery.comparison = None;
        let who = self.who.clone();
        self.spawn(async move {
            let result = crate::orchestrator::recover::recover(
                &regions, &state, &db, &engine, &who, options,
            )
            .await;
            Internal::Recovered { request, result }
        });
    }

    fn compare(&mut self, request: RequestId, db: String, branch: String) {
        let Some(home) = self
            .control_state
            .branch(&db, &branch)
            .map(|b| b.fork.region.clone())
        else {
            return self.fail(request, format!("`{db}` has no branch `{branch}`"));
        };
        let region = match self.region(&home) {
            Ok(r) => r,
            Err(e) => return self.fail(request, e),
        };
        let state = self.control_state.clone();
        self.recovery.comparing = true;
        self.recovery.error = None;
        self.spawn(async move {
            let result = crate::orchestrator::recover::inspect(&region, &state, &db, &branch).await;
            Internal::Compared { request, result }
        });
    }

    fn merge(&mut self, request: RequestId, db: String, branch: String, pick: Pick, discard: bool) {
        if self.recovery.running {
            return self.fail(
                request,
                "a recovery or merge is running; wait for it to finish",
            );
        }
        let Some(engine) = self.engine_id(request) else {
            return;
        };
        // A workspace here writes the live branch: merge through its writer
        // (opening another would fence it).
        let target = self
            .workspaces
            .values()
            .find_map(|ws| ws.writer_of(&db))
            .map_or(
                crate::orchestrator::merge::MergeTarget::Open,
                crate::orchestrator::merge::MergeTarget::Attached,
            );
        let regions: Vec<Region> = self.opened.values().cloned().collect();
        let state = self.control_state.clone();
        let options = crate::orchestrator::merge::MergeOptions {
            pick,
            target,
            discard,
            on_step: Some(self.steps_to(Internal::RecoveryStep)),
            ..Default::default()
        };
        self.recovery.running = true;
        self.recovery.steps.clear();
        self.recovery.error = None;
        let who = self.who.clone();
        self.spawn(async move {
            let result = crate::orchestrator::merge::merge(
                &regions, &state, &db, &branch, &engine, &who, options,
            )
            .await;
            Internal::Merged { request, result }
        });
    }

    fn export_report(&mut self, request: RequestId, id: String, path: PathBuf) {
        let record = self
            .control_state
            .operations
            .iter()
            .rev()
            .find(|r| r.id == id)
            .or(self.failover.last.as_ref().filter(|r| r.id == id))
            .or(self.drill.last.as_ref().filter(|r| r.id == id))
            .cloned();
        let Some(record) = record else {
            return self.fail(request, format!("no operation `{id}` in the control log"));
        };
        self.spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                crate::orchestrator::report::write(&path, &record)
                    .map(|()| format!("report of {} written to {}", record.id, path.display()))
            })
            .await
            .unwrap_or_else(|e| Err(Error::Failed(format!("the export stopped: {e}"))));
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: false,
            }
        });
    }

    fn publish(&mut self) {
        self.seq += 1;
        let flows: Vec<FlowView> = self
            .replicator
            .as_ref()
            .map(|r| r.statuses().into_iter().map(FlowView::of).collect())
            .unwrap_or_default();
        let state = match self.state {
            EngineState::Idle | EngineState::Replicating if !flows.is_empty() => {
                EngineState::Replicating
            }
            EngineState::Replicating => EngineState::Idle,
            other => other,
        };
        self.state = state;
        let regions = self
            .regions
            .specs()
            .iter()
            .map(|spec| RegionView {
                spec: spec.clone(),
                kind: spec.validate().map(|l| l.kind()).unwrap_or("invalid"),
                health: self.health.get(&spec.name).cloned(),
            })
            .collect();
        let snapshot = Snapshot {
            seq: self.seq,
            engine: state,
            regions,
            embedded_default: self.regions.embedded_default,
            clock_warnings: self.clock_warnings.clone(),
            group: self.group.clone(),
            flows,
            databases: self.databases.clone(),
            databases_listed_us: self.listed_us,
            history: Arc::clone(&self.history),
            activity: Arc::clone(&self.activity_view),
            demo_workloads: self.demo.keys().cloned().collect(),
            failover: Arc::new(self.failover.clone()),
            moving: Arc::new(self.moving.clone()),
            recovery: Arc::new(self.recovery.clone()),
            // The last drill: run here, else the newest in the log (the CLI's).
            drill: Arc::new(failover::FailoverView {
                last: self.drill.last.clone().or_else(|| {
                    self.control_state
                        .operations
                        .iter()
                        .rev()
                        .find(|r| r.kind == OperationKind::Drill)
                        .cloned()
                }),
                serving: self
                    .drill_workspaces
                    .values()
                    .filter(|ws| !ws.is_stopped())
                    .flat_map(|ws| ws.status().endpoints.into_iter().map(|e| e.url))
                    .collect(),
                ..self.drill.clone()
            }),
            standby: Arc::new(failover::StandbyView {
                workspaces: self.standby.values().map(|(ws, _)| ws.status()).collect(),
                starting: self.standby_starting.iter().cloned().collect(),
                note: self.standby_error.clone(),
            }),
            branches: Arc::new(failover::BranchesView::of(&self.control_state)),
            control: Arc::new(ControlView {
                workspaces: workspaces::view(
                    &self.control_state,
                    |name| self.workspaces.get(name).map(|w| w.status()),
                    |name| self.workspace_busy.get(name).cloned(),
                ),
                events: self.control_state.events,
                read_us: self.control_read_us,
                error: self.control_error.clone(),
            }),
        };
        self.snapshot_tx.send_replace(Arc::new(snapshot));
        let repaint = self
            .repaint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(repaint) = repaint {
            repaint();
        }
    }
}

/// The request id of work the engine starts by itself (no activity entry).
const INTERNAL_REQUEST: RequestId = 0;

fn outcome(result: Result<String>) -> Outcome {
    match result {
        Ok(message) => Outcome::Done(message),
        Err(e) => Outcome::Failed(crate::error::one_line(&e.to_string())),
    }
}

fn unreachable(error: String) -> RegionHealth {
    RegionHealth {
        checked_us: now_us(),
        reachable: false,
        latency_ms: None,
        conditional_put: None,
        clock_skew_ms: None,
        last_error: Some(error),
    }
}

fn health_of(probe: &Result<ProbeReport>) -> RegionHealth {
    match probe {
        Ok(report) => RegionHealth {
            checked_us: now_us(),
            reachable: true,
            latency_ms: Some(report.latency_ms),
            conditional_put: Some(report.conditional_put),
            clock_skew_ms: Some(report.clock_skew_ms),
            last_error: if report.conditional_put {
                report.clock_warning()
            } else {
                Some("ignores conditional puts; SlateDB needs them".into())
            },
        },
        Err(e) => unreachable(crate::error::one_line(&e.to_string())),
    }
}

/// The group's flows: branches homed in its primary, to its secondary.
/// The group's flows: every branch homed in the primary to the secondary,
/// and back to the primary the live branches a failover made in the
/// secondary (`failed_over`: db, branch), which is what makes failback
/// incremental. Drill branches never leave their region.
async fn discover_flows(
    pair: &[Region; 2],
    group: &GroupConfig,
    failed_over: &BTreeSet<(String, String)>,
) -> Result<Vec<Flow>> {
    let mut flows =
        replication::discover(pair, Some(&group.primary), Some(&group.secondary), None).await?;
    if !failed_over.is_empty() {
        let back =
            replication::discover(pair, Some(&group.secondary), Some(&group.primary), None).await?;
        flows.extend(
            back.into_iter()
                .filter(|f| failed_over.contains(&(f.db.clone(), f.branch.clone()))),
        );
    }
    Ok(flows
        .into_iter()
        .filter(|f| group.databases.includes(&f.db))
        .collect())
}

/// Live branches a failover made in the group's secondary.
fn failed_over(state: &ControlState, group: &GroupConfig) -> BTreeSet<(String, String)> {
    state
        .live
        .values()
        .filter(|l| l.region == group.secondary)
        .map(|l| (l.db.clone(), l.branch.clone()))
        .collect()
}

/// A region's databases and branches, each described.
async fn list_region(region: &Region) -> RegionDatabases {
    let mut out = RegionDatabases {
        region: region.name().to_string(),
        error: None,
        branches: Vec::new(),
    };
    let listed = match storage::list_databases(region).await {
        Ok(listed) => listed,
        Err(e) => {
            out.error = Some(crate::error::one_line(&e.to_string()));
            return out;
        }
    };
    let store = region.store();
    for (db, branches) in listed {
        for branch in branches {
            let Ok(location) = DbLocation::branch_in_region(region, &db, &branch) else {
                continue;
            };
            let replica_of = match cursor::load(&store, region.name(), &db, &branch).await {
                Ok(found) => found.map(|c| c.home),
                Err(_) => None,
            };
            let (info, error) = match location.describe().await {
                Ok(info) => (Some(info), None),
                // A deleted branch's empty folder, or a replica whose first
                // manifest has not landed yet.
                Err(Error::DatabaseNotFound { .. }) if replica_of.is_none() => continue,
                Err(Error::DatabaseNotFound { .. }) => (None, Some("seeding".into())),
                Err(e) => (None, Some(crate::error::one_line(&e.to_string()))),
            };
            out.branches.push(BranchRow {
                db: db.clone(),
                branch,
                info,
                replica_of,
                error,
            });
        }
    }
    out
}
