//! Where a CLI command that changes the group runs: at the engine that
//! holds the leases of the regions it writes (through its local socket),
//! or, when no engine holds them, in this process, holding those leases
//! for the command's duration (DESIGN.md "One engine, many clients").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use lifeboat::control::lease::{self, Holder, LeaseState, RegionLease};
use lifeboat::engine::Command;
use lifeboat::engine::activity::{Outcome, local_user};
use lifeboat::error::{Error, Result};
use lifeboat::region::Region;

use crate::Ctx;

/// Where to run.
pub(crate) enum Route {
    /// No engine holds the leases: this process holds them until released.
    Here(Held),
    /// The engine listening on this socket holds them.
    Engine(PathBuf),
}

/// Leases this process holds, renewed by a task until released.
pub(crate) struct Held {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Held {
    /// Lets go of the leases (a standby takes over at once).
    pub(crate) async fn release(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::warn!("the lease task ended badly: {e}");
        }
    }
}

/// Finds where a command that writes into `regions` runs. A region that
/// does not answer is left out (a failover writes nothing there).
pub(crate) async fn route(ctx: &Ctx, regions: &[Region], what: &str) -> Result<Route> {
    let engine = lifeboat::control::engine_id(&ctx.home.data_dir)?;
    let me = Holder::me(&engine);
    let mut leases: Vec<RegionLease> = regions
        .iter()
        .map(|r| RegionLease::new(r.clone(), me.clone()))
        .collect();
    // A holder elsewhere is alive once its chain moves while we look; a
    // dead one's lease is taken after its term.
    let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + lease::TERM + lease::WATCH_EVERY * 2;
    loop {
        let mut settled = 0;
        for l in &mut leases {
            let region = l.region().name().to_string();
            match l.tick().await {
                LeaseState::Held { .. } | LeaseState::Unreachable { .. } => settled += 1,
                LeaseState::Standby { holder } => {
                    if let Some(socket) = holder.local_socket()
                        && lifeboat::engine::socket::status(&socket).await.is_ok()
                    {
                        release_all(&mut leases).await;
                        return Ok(Route::Engine(socket));
                    }
                    let renewed = *first_seen
                        .entry(region.clone())
                        .or_insert(holder.renewed_ms);
                    if renewed != holder.renewed_ms {
                        release_all(&mut leases).await;
                        return Err(Error::Failed(format!(
                            "{} holds the lease of region {region}, so it runs the group: {what} there",
                            holder.describe()
                        )));
                    }
                }
                LeaseState::Unknown => {}
            }
        }
        if settled == leases.len() {
            return Ok(Route::Here(keep(leases)));
        }
        if tokio::time::Instant::now() >= deadline {
            release_all(&mut leases).await;
            return Err(Error::Failed(format!(
                "the leases of {} did not come free within {} s; {what} once the engine holding them stops",
                regions
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                (lease::TERM + lease::WATCH_EVERY * 2).as_secs()
            )));
        }
        let wait = leases
            .iter()
            .map(|l| l.next_tick())
            .min()
            .unwrap_or(lease::WATCH_EVERY)
            .max(Duration::from_millis(100));
        tokio::time::sleep(wait).await;
    }
}

async fn release_all(leases: &mut [RegionLease]) {
    for l in leases {
        if let Err(e) = l.release().await {
            tracing::warn!("releasing the lease of {}: {e}", l.region().name());
        }
    }
}

/// Renews `leases` in a task until released.
fn keep(mut leases: Vec<RegionLease>) -> Held {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let wait = leases
                .iter()
                .map(|l| l.next_tick())
                .min()
                .unwrap_or(lease::RENEW_EVERY);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => break,
            }
            for l in &mut leases {
                let was = l.holds();
                if was && !l.tick().await.is_held() {
                    tracing::warn!(
                        "this command lost the lease of {} while it ran",
                        l.region().name()
                    );
                }
            }
        }
        release_all(&mut leases).await;
    });
    Held { stop, task }
}

/// Runs `command` at the engine on `socket` as this user; the outcome's
/// message, and the data of the operation it ran.
pub(crate) async fn at_engine(
    socket: &std::path::Path,
    command: Command,
) -> Result<(String, Option<serde_json::Value>)> {
    let (outcome, data) = lifeboat::engine::socket::run(socket, command, &local_user()).await?;
    match outcome {
        Outcome::Done(message) => {
            note_engine(socket);
            Ok((message, data))
        }
        Outcome::Failed(message) => Err(Error::Failed(message)),
        Outcome::Running => Err(Error::Failed("the engine did not finish".into())),
    }
}

/// Runs `command` at the engine on `socket` and prints its outcome: what a
/// CLI command that hands its work over prints.
pub(crate) async fn done_at_engine(
    json: bool,
    socket: &std::path::Path,
    command: Command,
) -> Result<i32> {
    let (message, _) = at_engine(socket, command).await?;
    crate::emit(json, &serde_json::json!({ "done": message }), || {
        message.clone()
    })?;
    Ok(lifeboat::error::exit_code::OK)
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
