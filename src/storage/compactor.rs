//! A compactor that runs beside a writer instead of inside its opening.
//!
//! SlateDB's embedded compactor claims its epoch while the writer opens,
//! before the WAL is replayed: a listing of `compactions/` and three writes
//! there, each followed by a read of the GC boundary, one after another.
//! At 20 ms a request (a store in another region) that is 150 ms of a
//! failover's RTO. Started beside the writer once it is open, the same
//! compactor claims its epoch while the first writes are served.

use std::sync::Mutex;
use std::time::Duration;

use slatedb::config::CompactorOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::DbLocation;

/// How often a stop asks again while the compactor is still starting (a
/// stop that comes before its task runs is not heard).
const STOP_AGAIN: Duration = Duration::from_millis(100);

/// Asks at most this often before leaving a compactor that never stops.
const STOP_TRIES: u32 = 100;

/// The compactor of one writer, stopped when the writer closes (or when
/// this is dropped).
pub struct BesideCompactor {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl BesideCompactor {
    /// Starts the compactor of the branch at `location` with `options` (the
    /// writer's `compactor_options`, which it opened without).
    pub fn start(location: &DbLocation, options: CompactorOptions) -> BesideCompactor {
        let compactor =
            slatedb::CompactorBuilder::new(location.path.clone(), location.store.clone())
                .with_options(options)
                .build();
        let (stop, mut stopping) = watch::channel(false);
        let branch = format!("{}/{} in {}", location.db, location.branch, location.label);
        let task = tokio::spawn(async move {
            let run = compactor.run();
            tokio::pin!(run);
            let ended = tokio::select! {
                ended = &mut run => Some(ended),
                _ = stopping.wait_for(|s| *s) => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    let mut ended = None;
                    for _ in 0..STOP_TRIES {
                        if let Err(e) = compactor.stop().await {
                            tracing::debug!(%branch, "stopping the compactor: {e}");
                        }
                        if let Ok(done) = tokio::time::timeout(STOP_AGAIN, &mut run).await {
                            ended = Some(done);
                            break;
                        }
                    }
                    match ended {
                        Some(ended) => ended,
                        None => {
                            tracing::warn!(%branch, "the compactor did not stop; left behind");
                            return;
                        }
                    }
                }
            };
            // A newer writer's compactor fences this one: expected after a
            // failover back, so not a warning.
            if let Err(e) = ended {
                tracing::info!(%branch, "the compactor ended: {e}");
            }
        });
        BesideCompactor {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Stops the compactor and waits until it has.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!("the compactor's task failed: {e}");
        }
    }
}

impl Drop for BesideCompactor {
    fn drop(&mut self) {
        // The task stops the compactor by itself.
        self.stop.send_replace(true);
    }
}
