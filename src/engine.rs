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
pub mod alerting;
mod command;
mod databases;
mod demo;
pub mod failover;
mod flows;
pub mod group;
pub mod history;
pub mod leases;
mod operation;
mod publish;
pub mod published;
pub mod recovery;
mod regions;
mod run;
pub mod schedule;
mod service;
mod share;
pub mod snapshot;
#[cfg(unix)]
pub mod socket;
pub mod sync;
pub mod workspaces;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Home, Regions};
use crate::control::{self, state::ControlState};
use crate::error::Result;
use crate::orchestrator::switchover::SwitchPlan;
use crate::region::{ProbeReport, Region, RegionSpec};
use crate::replication::pins::BranchPins;
use crate::replication::{Flow, ReplicationOptions, Replicator};
use crate::workload::{BackgroundRun, now_us};

use activity::{ActivityLog, Outcome};
pub use command::{Command, RequestId, Scope, Serving};
pub use demo::{DEMO_DATABASES, DEMO_RATE};
use group::GroupConfig;
use history::History;
pub use snapshot::{
    BranchRow, EngineState, FlowView, RegionDatabases, RegionHealth, RegionView, Snapshot,
};

/// How often the engine does each of its chores.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub replication: ReplicationOptions,
    /// How often a snapshot is published (and the GUI repainted).
    pub publish_every: Duration,
    /// How often the Dashboard's history takes a sample.
    pub sample_every: Duration,
    /// How often each region's database names are looked at (one LIST
    /// each): a change describes every branch again and looks for flows.
    pub list_every: Duration,
    /// How often every branch is described even when no name changed: one
    /// recursive listing of each branch (a request per 1,000 files).
    pub describe_every: Duration,
    /// How often, at most, a replicated branch whose home's manifest moved
    /// is described again on its own (a busy branch holds many files).
    pub describe_moved_every: Duration,
    /// How often every region is health-checked.
    pub health_every: Duration,
    /// How often the group's flows are looked for in full even when no
    /// database name changed (a branch forked elsewhere shows in the
    /// control log, which looks at once).
    pub discover_every: Duration,
    /// How often the control log is synced between regions and read.
    pub control_every: Duration,
    /// How often the lease holder publishes its view in the regions (and
    /// an engine without a lease reads it).
    pub status_every: Duration,
    /// How often each live branch gets a point-in-time checkpoint at its
    /// home (living `storage::retention()`).
    pub checkpoint_every: Duration,
    /// Regions whose lease this engine takes whether or not its group names
    /// them: an engine a CLI command runs holds those the command writes.
    pub lease_regions: Vec<String>,
    /// Recover the stranded writes of a failed region once it answers,
    /// without being asked (the service does; a command's engine does only
    /// what it was asked).
    pub recover_by_itself: bool,
    /// Faults injected into regions, by name (the CLI's `--fault`).
    pub faults: BTreeMap<String, crate::region::faults::FaultPlan>,
    /// Share the group's flows with the other engines started so
    /// (`serve --share`, docs/sharing.md): coordinate them while holding
    /// the secondary's lease, copy those given while another does.
    pub share_flows: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            replication: ReplicationOptions::default(),
            publish_every: Duration::from_millis(250),
            sample_every: Duration::from_secs(1),
            list_every: Duration::from_secs(15),
            describe_every: Duration::from_secs(1800),
            describe_moved_every: Duration::from_secs(300),
            health_every: Duration::from_secs(15),
            discover_every: Duration::from_secs(900),
            control_every: Duration::from_secs(5),
            checkpoint_every: Duration::from_secs(600),
            status_every: published::PUBLISH_EVERY,
            lease_regions: Vec::new(),
            recover_by_itself: true,
            faults: BTreeMap::new(),
            share_flows: false,
        }
    }
}

type Repaint = Arc<dyn Fn(snapshot::Change) + Send + Sync>;

/// The handle the GUI holds: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::UnboundedSender<(RequestId, Command, Option<String>)>,
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
        // The local socket clients on this machine reach this engine by.
        #[cfg(unix)]
        let socket = match socket::bind(&home.data_dir) {
            Ok(bound) => bound,
            Err(e) => {
                tracing::warn!("no local socket for this engine: {e}");
                None
            }
        };
        #[cfg(unix)]
        let socket_path = socket.as_ref().map(|(_, path)| path.clone());
        #[cfg(not(unix))]
        let socket_path = None;
        let mut core = Core::new(home, regions, opts, snapshot_tx, Arc::clone(&repaint));
        core.socket = socket_path;
        let task = runtime.spawn(core.run(commands_rx));
        let engine = Engine {
            commands,
            snapshots,
            // Ids stay unique across runs: the activity log outlives the engine.
            next_request: Arc::new(AtomicU64::new(now_us().max(1))),
            repaint,
            runtime: runtime.clone(),
            task: Arc::new(Mutex::new(Some(task))),
        };
        #[cfg(unix)]
        if let Some((listener, path)) = socket {
            runtime.spawn(socket::serve(listener, path, engine.clone()));
        }
        engine
    }

    /// Sends `command`; its outcome appears in the activity log under the
    /// returned id. Never blocks.
    pub fn send(&self, command: Command) -> RequestId {
        self.send_as(command, None)
    }

    /// Sends `command` on behalf of `who` (a client of the engine's socket;
    /// `None`: this process's user).
    pub fn send_as(&self, command: Command, who: Option<String>) -> RequestId {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        if self.commands.send((id, command, who)).is_err() {
            tracing::warn!("the engine has stopped; command {id} dropped");
        }
        id
    }

    /// Sends `command` on behalf of `who` and waits, at most `within`, for
    /// its outcome; with the data its asker reads besides (the preview,
    /// plan or record of the operation it ran).
    pub async fn run(
        &self,
        command: Command,
        who: Option<String>,
        within: Duration,
    ) -> (RequestId, Outcome, Option<serde_json::Value>) {
        let data_of = command.data_of();
        let request = self.send_as(command, who);
        let (snapshot, ended) = self
            .wait_for(within, |s| {
                s.activity
                    .iter()
                    .any(|e| e.request == request && e.outcome != Outcome::Running)
            })
            .await;
        let outcome = snapshot
            .activity
            .iter()
            .find(|e| e.request == request)
            .map(|e| e.outcome.clone())
            .filter(|_| ended)
            .unwrap_or(Outcome::Failed(format!(
                "the engine did not finish within {} min",
                within.as_secs() / 60
            )));
        (request, outcome, data_of(&snapshot))
    }

    /// The newest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshots.borrow())
    }

    /// A receiver that wakes on every published snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// Calls `repaint` after a published snapshot that differs from the
    /// one before, saying how (the GUI repaints at once for an urgent
    /// change, within a second for a passive one, and not at all for
    /// none: an app left open costs nothing).
    pub fn on_publish(&self, repaint: impl Fn(snapshot::Change) + Send + Sync + 'static) {
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
    /// A step of an operation ended.
    Step(operation::Op, crate::control::event::Step),
    /// What the lease holder published, read (an engine that holds none).
    StatusRead(Result<Option<Box<published::RemoteView>>>),
    /// This engine's view written in that many regions.
    StatusWritten(Result<usize>),
    /// A region's lease changed hands (or could not be read).
    Lease {
        region: String,
        state: crate::control::lease::LeaseState,
    },
    /// Something the engine did by itself ended; a failure (`outcome`) is
    /// noted in the activity log as `what`.
    Noted {
        what: String,
        outcome: Option<Outcome>,
    },
    Listed(Vec<RegionDatabases>),
    /// Branches described again: `(region, db, branch, row)`, no row for
    /// one that is gone.
    Described(Vec<(String, String, String, Option<BranchRow>)>),
    /// Each region's database names (`None`: it did not answer).
    Named(BTreeMap<String, Option<BTreeSet<String>>>),
    Health(Vec<(String, RegionHealth)>, Vec<String>),
    Configured {
        request: RequestId,
        group: GroupConfig,
        result: Result<(Vec<Flow>, Vec<String>)>,
    },
    Discovered(Result<Vec<Flow>>),
    /// The helpers' beats, read (all of them when `listed`).
    BeatsRead {
        turn: u64,
        result: Result<Vec<control::share::Beat>>,
        listed: bool,
    },
    /// This helper's beat written (or not).
    BeatWritten(Box<share::BeatOutcome>),
    /// Flows this helper was told to stop have stopped.
    HelperStopped(Vec<crate::replication::FlowKey>),
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
    FailedOver {
        request: RequestId,
        result: Result<crate::orchestrator::failover::FailoverOutcome>,
    },
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
    Moved {
        request: RequestId,
        result: Result<crate::orchestrator::switchover::SwitchOutcome>,
    },
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
    /// When each region was last probed in full.
    probed_at: BTreeMap<String, Instant>,
    clock_warnings: Vec<String>,
    databases: Arc<Vec<RegionDatabases>>,
    /// The flows' rows as last read, and when.
    flows_cache: Option<(Instant, Arc<Vec<FlowView>>)>,
    listed_us: Option<u64>,
    history: Arc<History>,
    /// Every sample, kept on disk (none when the writer could not start).
    samples: Option<crate::metrics::samples::SampleLog>,
    /// The bill as of the last sample, with the prices it is figured at.
    cost: Arc<crate::cost::CostView>,
    /// Each opened region's request counts over the last minute.
    region_samples:
        BTreeMap<String, std::collections::VecDeque<(Instant, crate::region::meter::ClassCounts)>>,
    activity: ActivityLog,
    activity_view: Arc<Vec<activity::ActivityEntry>>,
    demo: BTreeMap<String, BackgroundRun>,
    /// Databases whose delete is under way: no flow may start for them.
    deleting: BTreeMap<RequestId, String>,
    state: EngineState,
    seq: u64,
    last_copied: Option<(Instant, u64)>,
    /// When the bill was last figured, and over how many flows.
    cost_figured: Option<(Instant, usize)>,
    listing: bool,
    /// Each region's database names at the last look, and whether one is
    /// under way.
    names: BTreeMap<String, Option<BTreeSet<String>>>,
    naming: bool,
    /// Branches whose manifest moved are being described again.
    describing: bool,
    /// New databases whose flows are looked for once the look under way ends.
    discover_pending: BTreeSet<String>,
    /// When every branch was last described, and each replicated home's
    /// newest manifest then (one that moved describes them again).
    described_at: Option<Instant>,
    described_manifests: BTreeMap<(String, String), (Option<u64>, Instant)>,
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
    /// The last zero-loss event reported, by region (`sync.rs`).
    sync_seen: BTreeMap<String, u64>,
    /// Whether zero loss holds, as of the last look (`sync.rs`).
    zero_loss: Option<sync::ZeroLossView>,
    /// Each group region's lease as its task last reported it.
    leases: BTreeMap<String, crate::control::lease::LeaseState>,
    lease_tasks: BTreeMap<String, leases::LeaseTask>,
    /// Flows found while this engine did not hold their replica region's
    /// lease: they start as soon as it does.
    unleased: Vec<Flow>,
    /// The last statuses of the flows stopped when this engine lost their
    /// replica region's lease because the region stopped answering: shown
    /// Paused, their lag growing, until they run again.
    lapsed: Vec<crate::replication::FlowStatus>,
    /// The alert rules' memory, their settings and what was sent.
    alerting: alerting::Alerting,
    /// When this engine started (Unix ms).
    started_ms: u64,
    /// When a scheduled drill last started here.
    scheduling: schedule::Scheduling,
    /// Stranded writes this engine tried to recover by itself, and when.
    auto_recovery: BTreeMap<(String, String), Instant>,
    /// This engine's local socket, named in the leases it takes.
    socket: Option<std::path::PathBuf>,
    /// The lease holder's published view, while this engine holds no lease.
    remote: Option<published::Overlay>,
    status_busy: bool,
    /// Who this engine is in every lease it takes.
    holder: Option<crate::control::lease::Holder>,
    /// Sharing the flows (`share_flows`): the coordinator's side while
    /// this engine holds the secondary's lease, the helper's otherwise,
    /// and the shares it publishes.
    coordinating: Option<share::Coordinating>,
    helping: Option<share::Helping>,
    shares: Option<control::share::Shares>,
    /// Turns at coordinating or helping so far (a report of an old turn is
    /// dropped).
    share_turns: u64,
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
        let samples_dir = crate::metrics::samples::dir(&home.data_dir);
        let activity_view = Arc::new(activity.entries());
        let (prices, prices_from, prices_error) = crate::cost::load_or_published(&home.config_dir);
        // The prices show before the first sample figures a bill (the
        // wizard prices each RPO target).
        let cost = Arc::new(crate::cost::CostView {
            prices,
            prices_from,
            prices_error,
            ..Default::default()
        });
        Core {
            home,
            regions,
            opened: BTreeMap::new(),
            opts,
            group: None,
            replicator: None,
            health: BTreeMap::new(),
            probed_at: BTreeMap::new(),
            clock_warnings: Vec::new(),
            databases: Arc::default(),
            flows_cache: None,
            listed_us: None,
            history: Arc::default(),
            samples: crate::metrics::samples::SampleLog::start(samples_dir)
                .map_err(|e| tracing::warn!("the Dashboard's samples will not be kept: {e}"))
                .ok(),
            cost,
            region_samples: BTreeMap::new(),
            activity,
            activity_view,
            demo: BTreeMap::new(),
            deleting: BTreeMap::new(),
            state: EngineState::Starting,
            seq: 0,
            last_copied: None,
            cost_figured: None,
            listing: false,
            names: BTreeMap::new(),
            naming: false,
            describing: false,
            discover_pending: BTreeSet::new(),
            described_at: None,
            described_manifests: BTreeMap::new(),
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
            sync_seen: BTreeMap::new(),
            zero_loss: None,
            leases: BTreeMap::new(),
            lease_tasks: BTreeMap::new(),
            unleased: Vec::new(),
            lapsed: Vec::new(),
            alerting: alerting::Alerting::default(),
            started_ms: crate::orchestrator::now_ms(),
            scheduling: schedule::Scheduling::default(),
            socket: None,
            auto_recovery: BTreeMap::new(),
            remote: None,
            status_busy: false,
            holder: None,
            coordinating: None,
            helping: None,
            shares: None,
            share_turns: 0,
            internal_tx,
            internal_rx,
            snapshot_tx,
            repaint,
            who: activity::local_user(),
        }
    }
}
