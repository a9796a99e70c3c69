//! Where a CLI command that changes the group runs: at the engine that
//! holds the leases of the regions it writes (through its local socket),
//! or, when no engine holds them, at an engine this process starts for the
//! command's duration, which takes those leases (DESIGN.md "One engine,
//! many clients"). Either way the command goes through the engine's facade
//! and ends as the engine's outcome.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lifeboat::control::event::Step;
use lifeboat::control::lease::{self, LeaseState};
use lifeboat::engine::activity::{Outcome, local_user};
use lifeboat::engine::{Command, Engine, EngineOptions, Snapshot};
use lifeboat::error::{Error, Result};
use lifeboat::region::Region;

use crate::Ctx;

/// How long a command may run at an engine.
const COMMAND_TIME: Duration = Duration::from_secs(30 * 60);

/// The engine a command runs at.
pub(crate) enum Client {
    /// The engine that runs the group, on this machine, through its socket.
    Socket(PathBuf),
    /// An engine of this process, started for the command (no engine ran
    /// the group); it holds the leases of the regions the command writes.
    Local(Engine),
}

/// What an engine started here must have before it takes the command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// The leases, and the control log read (the command acts on what the
    /// log says: recover, merge, restore, branch delete).
    Log,
    /// Only the leases: the command reads what it needs itself (a failover
    /// must not wait on the failed region's log).
    Leases,
}

/// Finds the engine a command that writes into `regions` runs at: the one
/// holding their leases, else one started here, once it holds them. A
/// region that does not answer is left out (a failover writes nothing
/// there).
pub(crate) async fn client(
    ctx: &Ctx,
    regions: &[Region],
    what: &str,
    needs: Needs,
) -> Result<Client> {
    // The holder on this machine, reached without starting anything.
    for region in regions {
        if let Ok(Some((_, holder))) = lease::newest(region).await
            && !holder.released
            && let Some(socket) = answering(&holder).await
        {
            return Ok(Client::Socket(socket));
        }
    }
    let names: Vec<String> = regions.iter().map(|r| r.name().to_string()).collect();
    let group_saved = lifeboat::engine::group::load(&ctx.home.config_dir)?.is_some();
    let since_us = lifeboat::workload::now_us();
    let engine = Engine::start(
        &tokio::runtime::Handle::current(),
        ctx.home.clone(),
        ctx.regions.clone(),
        EngineOptions {
            lease_regions: names.clone(),
            recover_by_itself: false,
            ..ctx.engine_options()
        },
    );
    let wait = Wait {
        names: &names,
        what,
        needs,
        group_since_us: group_saved.then_some(since_us),
    };
    match settle(&engine, wait).await {
        Ok(None) => Ok(Client::Local(engine)),
        Ok(Some(socket)) => {
            engine.shutdown().await;
            Ok(Client::Socket(socket))
        }
        Err(e) => {
            engine.shutdown().await;
            Err(e)
        }
    }
}

/// What `settle` waits for.
struct Wait<'a> {
    /// The regions whose leases the engine must hold.
    names: &'a [String],
    what: &'a str,
    needs: Needs,
    /// Set when a group is saved: the engine loads it first (it routes the
    /// group's commands by it); since when its failure to would count.
    group_since_us: Option<u64>,
}

/// Waits until `engine` read the control log (if `needs` it), loaded the
/// saved group, and holds the lease of each region in `names` (or found it
/// unreadable); the socket of an engine on this machine that holds one
/// instead. A holder elsewhere is alive once its chain moves while we
/// look; a dead one's lease is taken after its term.
async fn settle(engine: &Engine, wait: Wait<'_>) -> Result<Option<PathBuf>> {
    let Wait {
        names,
        what,
        needs,
        group_since_us,
    } = wait;
    let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
    let patience = lease::TERM + lease::WATCH_EVERY * 2;
    let deadline = tokio::time::Instant::now() + patience;
    let mut changes = engine.subscribe();
    loop {
        let snapshot = Arc::clone(&changes.borrow_and_update());
        let log_read = snapshot.control.read_us.is_some() || snapshot.control.error.is_some();
        let group_loaded = match group_since_us {
            None => true,
            Some(since_us) => {
                if let Some(message) = super::group::resume_failed(&snapshot, since_us) {
                    return Err(Error::Failed(format!(
                        "the saved replication group could not start: {message}"
                    )));
                }
                snapshot.group.is_some()
            }
        };
        let mut settled = snapshot.seq > 0 && group_loaded && (needs == Needs::Leases || log_read);
        for name in names {
            let state = snapshot.leases.iter().find(|l| &l.region == name);
            match state.map(|l| &l.state) {
                Some(LeaseState::Held { .. } | LeaseState::Unreachable { .. }) => {}
                Some(LeaseState::Standby { holder }) => {
                    settled = false;
                    if let Some(socket) = answering(holder).await {
                        return Ok(Some(socket));
                    }
                    // An engine of this machine that is stopping: it
                    // renews until it lets go, at the end.
                    if holder.local_socket().is_some_and(|s| s.exists()) {
                        continue;
                    }
                    let renewed = *first_seen.entry(name.clone()).or_insert(holder.renewed_ms);
                    if renewed != holder.renewed_ms {
                        return Err(Error::Failed(format!(
                            "{} holds the lease of region {name}, so it runs the group: {what} there",
                            holder.describe()
                        )));
                    }
                }
                Some(LeaseState::Unknown) | None => settled = false,
            }
        }
        if settled {
            return Ok(None);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "the leases of {} did not come free within {} s; {what} once the engine holding them stops",
                names.join(", "),
                patience.as_secs()
            )));
        }
        // A snapshot comes every 250 ms; a lease change at once.
        let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
    }
}

/// The socket of `holder` when it runs on this machine and answers there.
async fn answering(holder: &lifeboat::control::lease::Holder) -> Option<PathBuf> {
    let socket = holder.local_socket()?;
    lifeboat::engine::socket::status(&socket)
        .await
        .is_ok()
        .then_some(socket)
}

/// Until `ready` holds for a snapshot of `engine` (the engine serves until
/// stopped; a year stands for that).
pub(crate) async fn until(engine: &Engine, ready: impl Fn(&Snapshot) -> bool) {
    engine
        .wait_for(Duration::from_secs(365 * 86_400), ready)
        .await;
}

/// Reads the steps of one operation off a snapshot.
pub(crate) type StepsOf = fn(&Snapshot) -> &[Step];

impl Client {
    /// Runs `command` as this user: its outcome, and the data of the
    /// operation it ran. With `steps`, prints each step as it ends (an
    /// engine elsewhere reports them in its record only).
    pub(crate) async fn ask(
        &self,
        command: Command,
        steps: Option<StepsOf>,
    ) -> Result<(Outcome, Option<serde_json::Value>)> {
        match self {
            Client::Socket(socket) => {
                let ran = lifeboat::engine::socket::run(socket, command, &local_user()).await?;
                // A refusal is one error line, no more.
                if matches!(ran.0, Outcome::Done(_)) {
                    note_engine(socket);
                }
                Ok(ran)
            }
            Client::Local(engine) => {
                let ran = engine.run(command, None, COMMAND_TIME);
                let Some(steps) = steps else {
                    let (_, outcome, data) = ran.await;
                    return Ok((outcome, data));
                };
                let mut changes = engine.subscribe();
                // An operation's steps start empty when it begins.
                let mut printed = steps(&changes.borrow_and_update()).len();
                let mut print = |snapshot: &Snapshot| {
                    let now = steps(snapshot);
                    if now.len() < printed {
                        printed = 0;
                    }
                    for step in &now[printed..] {
                        print_step(step);
                    }
                    printed = now.len();
                };
                tokio::pin!(ran);
                loop {
                    tokio::select! {
                        (_, outcome, data) = &mut ran => {
                            print(&engine.snapshot());
                            return Ok((outcome, data));
                        }
                        Ok(()) = changes.changed() => {
                            let snapshot = Arc::clone(&changes.borrow_and_update());
                            print(&snapshot);
                        }
                    }
                }
            }
        }
    }

    /// Runs `command`; the outcome's message and the operation's data. A
    /// failed outcome is an error.
    pub(crate) async fn run(
        &self,
        command: Command,
    ) -> Result<(String, Option<serde_json::Value>)> {
        let (outcome, data) = self.ask(command, None).await?;
        Ok((outcome.into_result()?, data))
    }

    /// Runs an operation that leaves a record (failover, drill, move),
    /// printing its steps with `steps`; the record, ok or not, or why the
    /// operation left none.
    pub(crate) async fn record(
        &self,
        command: Command,
        steps: Option<StepsOf>,
    ) -> Result<lifeboat::control::event::OperationRecord> {
        let what = command.describe();
        let (outcome, data) = self.ask(command, steps).await?;
        match data.and_then(|d| serde_json::from_value(d).ok()) {
            Some(record) => Ok(record),
            None => Err(Error::Failed(match outcome {
                Outcome::Failed(message) => message,
                _ => format!("the engine left no record of `{what}`"),
            })),
        }
    }

    /// What the preview or plan command `command` found, decoded.
    pub(crate) async fn look<T: serde::de::DeserializeOwned>(&self, command: Command) -> Result<T> {
        let what = command.describe();
        let (_, data) = self.run(command).await?;
        data.and_then(|d| serde_json::from_value(d).ok())
            .ok_or_else(|| Error::Failed(format!("the engine answered nothing to `{what}`")))
    }

    /// Runs `command` and prints its outcome: what a CLI command that
    /// hands its work over prints. The engine stops after.
    pub(crate) async fn done(self, json: bool, command: Command) -> Result<i32> {
        let ran = self.run(command).await;
        self.close().await;
        let (message, _) = ran?;
        crate::emit(json, &serde_json::json!({ "done": message }), || {
            message.clone()
        })?;
        Ok(lifeboat::error::exit_code::OK)
    }

    /// Whether this process's engine runs the command.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, Client::Local(_))
    }

    /// Stops this process's engine (its flows save their cursors, its
    /// leases are released); nothing for an engine elsewhere.
    pub(crate) async fn close(self) {
        if let Client::Local(engine) = self {
            engine.shutdown().await;
        }
    }

    /// Serves what this process's engine serves until `duration`, Ctrl-C,
    /// SIGTERM, or until it serves nothing any more (`workspace stop`);
    /// then stops it. An engine elsewhere serves on by itself.
    pub(crate) async fn serve_until_stopped(self, duration: Option<Duration>) -> Result<()> {
        let Client::Local(engine) = &self else {
            return Ok(());
        };
        let serving = |s: &Snapshot| s.control.workspaces.iter().any(|w| w.running.is_some());
        if serving(&engine.snapshot()) {
            let idle = until(engine, |s| !serving(s));
            tokio::select! {
                result = super::report_until_stopped(duration, Duration::from_secs(3600), || Ok(())) => result?,
                _ = idle => {}
            }
        }
        self.close().await;
        Ok(())
    }
}

/// One step as the CLI prints it.
pub(crate) fn print_step(s: &Step) {
    println!(
        "  {} {} ({} ms): {}",
        if s.ok { "ok  " } else { "FAIL" },
        s.name,
        s.ms,
        s.detail
    );
}

/// Tells the user (once) that the command ran at the engine, not here.
fn note_engine(socket: &std::path::Path) {
    static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if TOLD.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    eprintln!(
        "sent to the engine that runs the group (its socket {})",
        socket.display()
    );
}
