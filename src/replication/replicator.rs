//! The replicator: one follow loop per flow on the tokio runtime, sharing
//! one bound on copies in flight, each publishing its status on a watch
//! channel so a GUI or CLI reads the latest without waiting on I/O.
//!
//! A loop polls fast while its branch is busy and backs off to
//! `max_poll` when idle; when a region is unreachable it shows Paused and
//! retries with exponential back-off, resuming where it stopped (every
//! successful copy is recorded as it lands, so none is repeated).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::copier::{BranchCopier, DelaySamples, Tick};
use super::pins::Pins;
use super::status::FlowStatus;
use super::{Flow, ReplicationOptions, permits};
use crate::error::Result;

/// One running flow.
struct Running {
    status: watch::Receiver<FlowStatus>,
    delays_ms: DelaySamples,
    task: JoinHandle<()>,
}

/// Many flows replicating at once until stopped.
pub struct Replicator {
    opts: ReplicationOptions,
    running: Vec<Running>,
    stop: watch::Sender<bool>,
}

impl Replicator {
    /// Starts a follow loop for every flow.
    pub fn start(flows: Vec<Flow>, opts: ReplicationOptions, pins: Arc<dyn Pins>) -> Replicator {
        let (stop, stop_rx) = watch::channel(false);
        let permits = permits(&opts);
        let running = flows
            .into_iter()
            .map(|flow| {
                let (tx, rx) = watch::channel(FlowStatus::of(&flow));
                let delays_ms = DelaySamples::default();
                let copier = BranchCopier::new(
                    flow,
                    opts.clone(),
                    Arc::clone(&pins),
                    Arc::clone(&permits),
                    tx,
                    Arc::clone(&delays_ms),
                );
                let task = tokio::spawn(follow(copier, stop_rx.clone()));
                Running {
                    status: rx,
                    delays_ms,
                    task,
                }
            })
            .collect();
        Replicator {
            opts,
            running,
            stop,
        }
    }

    /// The latest status of every flow, with lags as of now.
    pub fn statuses(&self) -> Vec<FlowStatus> {
        let in_sync = self.opts.in_sync_lag.as_secs_f64();
        self.running
            .iter()
            .map(|r| r.status.borrow().refreshed(in_sync))
            .collect()
    }

    /// Waits until every flow's status satisfies `ready`, or `timeout`.
    /// Returns whether they all did.
    pub async fn wait_until(&self, timeout: Duration, ready: impl Fn(&FlowStatus) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.statuses().iter().all(&ready) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes the per-WAL replication delays recorded since the last call.
    pub fn drain_wal_delays_ms(&self) -> Vec<u32> {
        self.running
            .iter()
            .flat_map(|r| {
                std::mem::take(&mut *r.delays_ms.lock().unwrap_or_else(|p| p.into_inner()))
            })
            .collect()
    }

    /// Stops every loop after its current copy and saves the cursors.
    pub async fn stop(self) -> Vec<FlowStatus> {
        self.stop.send_replace(true);
        let statuses = self.statuses();
        for running in self.running {
            let _ = running.task.await;
        }
        statuses
    }

    /// Kills every loop where it stands, as a crash would (tests).
    pub fn abort(self) {
        for running in self.running {
            running.task.abort();
        }
    }
}

/// One flow's loop: tick, wait (shorter when busy, longer when idle, with
/// back-off while a region is down), until stopped.
async fn follow(mut copier: BranchCopier, mut stop: watch::Receiver<bool>) {
    let mut wait = Duration::ZERO;
    let mut backoff = Duration::from_millis(250);
    loop {
        let ticked = tokio::select! {
            ticked = copier.tick() => ticked,
            _ = stop.changed() => break,
        };
        match ticked {
            Ok(tick) => {
                wait = copier.next_wait(tick, wait);
                backoff = Duration::from_millis(250);
                if tick == Tick::Active {
                    tracing::debug!(flow = %copier.flow().label(), "{}", copier.status().line());
                }
            }
            Err(err) => {
                tracing::warn!(flow = %copier.flow().label(), "paused: {err}");
                copier.paused(&err);
                wait = backoff;
                backoff = (backoff * 2).min(copier.max_backoff());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
    }
    if let Err(err) = copier.save_cursor().await {
        tracing::warn!(flow = %copier.flow().label(), "could not save the cursor on stop: {err}");
    }
}

/// Copies every flow until its replica holds the home's state as of the
/// start (`replicate --once`), all flows at once.
pub async fn once(
    flows: Vec<Flow>,
    opts: ReplicationOptions,
    pins: Arc<dyn Pins>,
) -> Vec<(Flow, Result<FlowStatus>)> {
    let permits = permits(&opts);
    let runs = flows.into_iter().map(|flow| {
        let mut copier = BranchCopier::sharing(
            flow.clone(),
            opts.clone(),
            Arc::clone(&pins),
            Arc::clone(&permits),
        );
        async move {
            let result = copier.run_once().await;
            (flow, result)
        }
    });
    futures::future::join_all(runs).await
}
