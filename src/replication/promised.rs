//! Zero loss's own copy of the WAL a writer of this process hands over
//! (`region::sync`): a task beside a flow's passes puts each WAL file,
//! from memory, into the replica right after the end of what its readers
//! reach, and reports it held, so the writes in it are acknowledged.
//!
//! It runs apart from the passes because a pass may wait minutes on a
//! home that stopped answering (retries, back-off), while the writes
//! waiting on it must reach the replica before their timeout, and must
//! still reach it when the home's store is gone for good: their bytes
//! are in memory.
//!
//! Order (invariant 2): a file is put only once the replica holds every
//! WAL file before it (`held` is the end of the contiguous run readers
//! reach, reported by the pass once it saw the replica's state), the same
//! order as the pass's own `copy_wal_tail`. Both may put one file at
//! once: the bytes are the same, and the second put changes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::region::sync::{PromiseMark, Sync};
use crate::storage::files::{FileMeta, FileRef, Side};

/// WAL files the task put, for the pass to count as copied.
pub type Copied = Arc<Mutex<Vec<(u64, FileMeta)>>>;

/// How long the task waits before trying a failed put again.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// How often it looks even with no new WAL written (the pass may have
/// made the replica ready meanwhile).
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Runs until aborted: puts each handed-over WAL file into `replica` in
/// order and reports it through `mark`.
pub async fn copy_handed_over(
    sync: Arc<Sync>,
    mark: Arc<PromiseMark>,
    replica: Side,
    copied: Copied,
) {
    let base = replica.base.to_string();
    let mut written: watch::Receiver<u64> = sync.watch_written(&base);
    loop {
        let next = mark.held_now().map(|held| held + 1);
        let handed = next.and_then(|id| sync.wal_bytes(&base, id).map(|b| (id, b)));
        match handed {
            Some((id, (bytes, at_us))) => {
                let size = bytes.len() as u64;
                match replica.write(&FileRef::Wal(id), bytes).await {
                    Ok(()) => {
                        mark.held(id);
                        copied.lock().unwrap_or_else(|p| p.into_inner()).push((
                            id,
                            FileMeta {
                                size,
                                modified_us: at_us,
                            },
                        ));
                    }
                    Err(e) => {
                        tracing::debug!(replica = %replica.region, "zero-loss copy of WAL {id}: {e}");
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                }
            }
            None => {
                // A newer file, or a look now and then.
                if let Ok(Err(_)) = tokio::time::timeout(LOOK_EVERY, written.changed()).await {
                    tokio::time::sleep(LOOK_EVERY).await;
                }
            }
        }
    }
}
