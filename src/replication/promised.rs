//! Zero loss's own copy of the WAL a writer of this process hands over
//! (`region::sync`): a task beside a flow's passes puts each WAL file,
//! from memory, into the replica past the end of what its readers reach,
//! and reports the run held, so the writes in it are acknowledged.
//!
//! It runs apart from the passes because a pass may wait minutes on a
//! home that stopped answering (retries, back-off), while the writes
//! waiting on it must reach the replica before their timeout, and must
//! still reach it when the home's store is gone for good: their bytes
//! are in memory.
//!
//! Up to [`PUTS_IN_FLIGHT`] files are put at once: one after another, a
//! link 40 ms away carries 25 files a second, and a busy writer makes one
//! every 5 ms. A later file may land before an earlier one; readers of
//! the replica (SlateDB's, and a fork's listing) stop at the first missing
//! WAL id, so what they see is still a prefix of the home's history
//! (invariant 2), and what is reported held is only the run with no gap.
//! A crash between leaves a gap that the next pass fills from the home;
//! the files past it were never reported held, so no write in them was
//! acknowledged. Both this task and a pass may put one file: the bytes
//! are the same, and the second put changes nothing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::region::sync::{PromiseMark, Sync};
use crate::storage::files::{FileMeta, FileRef, Side};

/// WAL files the task put, for the pass to count as copied.
pub type Copied = Arc<Mutex<Vec<(u64, FileMeta)>>>;

/// WAL files put into the replica at once, at most.
pub const PUTS_IN_FLIGHT: usize = 16;

/// How long the task waits before trying a failed put again.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// How often it looks even with no new WAL written (the pass may have
/// made the replica ready meanwhile).
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// One put: the id, and its size and write time once it landed.
type Put = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Option<FileMeta>)> + Send>>;

/// Puts WAL file `id` (`bytes`, written at `at_us`) into `replica`, after
/// `delay` (a retry).
fn put(replica: Side, id: u64, bytes: bytes::Bytes, at_us: u64, delay: Duration) -> Put {
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        let size = bytes.len() as u64;
        match replica.write(&FileRef::Wal(id), bytes).await {
            Ok(()) => (
                id,
                Some(FileMeta {
                    size,
                    modified_us: at_us,
                }),
            ),
            Err(e) => {
                tracing::debug!(replica = %replica.region, "zero-loss copy of WAL {id}: {e}");
                (id, None)
            }
        }
    })
}

/// Runs until aborted: puts each handed-over WAL file into `replica` and
/// reports the run with no gap through `mark`.
pub async fn copy_handed_over(
    sync: Arc<Sync>,
    mark: Arc<PromiseMark>,
    replica: Side,
    copied: Copied,
) {
    let base = replica.base.to_string();
    let mut written: watch::Receiver<u64> = sync.watch_written(&base);
    let mut in_flight: FuturesUnordered<Put> = FuturesUnordered::new();
    // Put and landed past the held run; the next id to start.
    let mut landed = BTreeSet::new();
    let mut next = 0u64;
    loop {
        if let Some(held) = mark.held_now() {
            // The pass may have moved the run on by itself.
            landed.retain(|id| *id > held);
            next = next.max(held + 1);
            while in_flight.len() < PUTS_IN_FLIGHT {
                let Some((bytes, at_us)) = sync.wal_bytes(&base, next) else {
                    break;
                };
                in_flight.push(put(replica.clone(), next, bytes, at_us, Duration::ZERO));
                next += 1;
            }
        }
        if in_flight.is_empty() {
            // A newer file, or a look now and then.
            if let Ok(Err(_)) = tokio::time::timeout(LOOK_EVERY, written.changed()).await {
                tokio::time::sleep(LOOK_EVERY).await;
            }
            continue;
        }
        tokio::select! {
            Some((id, landed_meta)) = in_flight.next() => match landed_meta {
                Some(meta) => {
                    copied
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((id, meta));
                    landed.insert(id);
                    if let Some(held) = mark.held_now() {
                        let mut end = held;
                        while landed.remove(&(end + 1)) {
                            end += 1;
                        }
                        if end > held {
                            mark.held(end);
                        }
                    }
                }
                // Again, unless the pass copied it meanwhile (its bytes
                // are let go once the replica holds it).
                None => {
                    if let Some((bytes, at_us)) = sync.wal_bytes(&base, id) {
                        in_flight.push(put(replica.clone(), id, bytes, at_us, RETRY_AFTER));
                    }
                }
            },
            _ = written.changed() => {}
        }
    }
}
