//! Forks: copy-on-write branches of a branch, at its home or at a replica.
//!
//! A fork is a SlateDB clone: its manifest reads the source's SSTs where
//! they lie, so no data is copied but the WAL tail. At a replica the clone's
//! parent is a shadow (see [`crate::region::shadow`]), so nothing is written
//! into the replica (invariant 1). At a home the parent is the branch itself
//! and SlateDB's own checkpoint in it keeps the SSTs alive.
//!
//! The fork holds the source's newest consistent state: the newest manifest
//! and then every WAL file after it up to the first gap, which is what a
//! reader of the source sees. SlateDB's clone copies only the WAL its
//! parent's manifest records; the fork copies the rest of the run itself,
//! before anything opens the fork, and a writer or reader of the fork
//! replays it as it would its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use slatedb::CloneSourceSpec;

use super::pitr::PointInTime;
use super::{ADMIN_TIMEOUT, DbLocation, branch_path};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::region::retry::retrying;
use crate::region::shadow::shadow_path;
use crate::storage::cursor;
use crate::storage::cut::{ManifestView, contiguous_wal_end};
use crate::storage::files::{BranchFiles, Dir, FileRef, RequestCounter, Side};

/// WAL files of a fork's tail copied at once.
const TAIL_COPIES_IN_FLIGHT: usize = 64;

/// What a fork holds and what it took.
#[derive(Debug, Clone, Serialize)]
pub struct Forked {
    pub region: String,
    pub db: String,
    /// The branch forked from.
    pub source: String,
    /// The new branch.
    pub branch: String,
    /// Whether the source is a replica in this region (the fork then has a
    /// shadow parent).
    pub at_replica: bool,
    /// The shadow parent's path, for a fork at a replica.
    pub shadow: Option<String>,
    /// The source manifest the fork starts from.
    pub manifest_id: u64,
    /// The first WAL file of the source past that manifest's replay point:
    /// the fork point is the manifest and the source's WAL files
    /// `wal_from..=wal_end`.
    pub wal_from: u64,
    /// The newest WAL file of the source the fork holds: it is the source's
    /// state as of this WAL file.
    pub wal_end: u64,
    /// WAL files the fork copied past its parent's manifest.
    pub wal_copied: u64,
    /// Rows of the WAL file after `wal_end` the fork wrote itself: a point
    /// in time inside that file holds its rows up to then.
    pub rows_written: u64,
    /// Compacted SSTs the fork reads in place, by the branch they belong
    /// to (the source, and the sources of a forked source): they must
    /// outlive the fork in every region (invariant 3).
    pub pinned: BTreeMap<String, Vec<String>>,
    /// How long the fork took, in milliseconds.
    pub took_ms: u64,
}

/// Forks `branch` off `source` of database `db` in `region`, at the
/// source's newest consistent state. Fails if `branch` exists. On failure
/// nothing of the fork is left behind.
pub async fn fork(region: &Region, db: &str, source: &str, branch: &str) -> Result<Forked> {
    fork_from(region, db, source, branch, None, None).await
}

/// As [`fork`], where a look just before (a failover's preview) saw
/// manifest `seen` as the source's newest: it is read while a listing past
/// it checks that nothing newer came, one round trip on the path of RTO
/// instead of a listing and then a read.
pub async fn fork_seen(
    region: &Region,
    db: &str,
    source: &str,
    branch: &str,
    seen: u64,
) -> Result<Forked> {
    fork_from(region, db, source, branch, None, Some(seen)).await
}

/// Forks `branch` off `source` as of `point` (a point-in-time restore), or
/// at its newest consistent state when `point` is `None`.
pub async fn fork_at(
    region: &Region,
    db: &str,
    source: &str,
    branch: &str,
    point: Option<&PointInTime>,
) -> Result<Forked> {
    fork_from(region, db, source, branch, point, None).await
}

async fn fork_from(
    region: &Region,
    db: &str,
    source: &str,
    branch: &str,
    point: Option<&PointInTime>,
    seen: Option<u64>,
) -> Result<Forked> {
    let started = Instant::now();
    let target = DbLocation::branch_in_region(region, db, branch)?;
    let from = DbLocation::branch_in_region(region, db, source)?;
    if source == branch {
        return Err(Error::Invalid(format!(
            "a branch cannot be forked into itself; name the new branch something other than `{source}`"
        )));
    }
    let store = region.store();
    // The state the fork starts from: the source's newest manifest, or
    // the one the point in time names.
    let parent = async {
        let source = side(region, &from.path);
        let read = match (point, seen) {
            (None, Some(seen)) => newest_if_still(&source, seen).await,
            (None, None) => newest_manifest(&source).await,
            (Some(p), _) => match source.read(&FileRef::Manifest(p.manifest_id)).await {
                Ok(Some(bytes)) => Ok((p.manifest_id, bytes)),
                Ok(None) => Err(Error::Failed(format!(
                    "manifest {} of {} vanished before the restore read it; try again",
                    p.manifest_id, source.base
                ))),
                Err(e) => Err(e),
            },
        };
        if read.is_err() {
            // A source that is not there says so.
            from.require().await?;
        }
        read
    };
    // The three looks at once: a failover forks on the path of its RTO.
    let (parent, taken, cursor) = tokio::try_join!(
        parent,
        target.exists(),
        cursor::load(&store, region.name(), db, source)
    )?;
    if taken {
        return Err(Error::Invalid(format!(
            "branch `{branch}` of `{db}` already exists in region `{}`; pick another name or delete it first",
            region.name()
        )));
    }
    let at_replica = cursor.is_some();
    let shadow = at_replica.then(|| shadow_path(db, source, branch));
    let made = async {
        let made = make(region, &target, &from, shadow.as_ref(), point, parent).await?;
        // The file that straddles a point in time: its rows by then.
        let rows_written = match point.and_then(PointInTime::straddling) {
            Some((id, at_ms)) => {
                let rows = (id, made.l0_seq, at_ms);
                write_rows_by(region, &from, &target, rows).await?
            }
            None => 0,
        };
        Ok::<_, Error>((made, rows_written))
    }
    .await;
    match made {
        Ok((
            Made {
                manifest_id,
                l0_seq: _,
                pinned,
                wal_from,
                wal_end,
                wal_copied,
            },
            rows_written,
        )) => Ok(Forked {
            region: region.name().to_string(),
            db: db.to_string(),
            source: source.to_string(),
            branch: branch.to_string(),
            at_replica,
            shadow: shadow.map(|p| p.to_string()),
            manifest_id,
            wal_from,
            wal_end,
            wal_copied,
            rows_written,
            pinned,
            took_ms: started.elapsed().as_millis() as u64,
        }),
        Err(e) => {
            // Leave nothing half-made: the name stays free for a retry.
            let _ = remove_files(&store, &target.path).await;
            if let Some(shadow) = &shadow {
                let _ = remove_files(&store, shadow).await;
            }
            Err(e)
        }
    }
}

/// What [`make`] made: the fields of [`Forked`] it decides.
struct Made {
    manifest_id: u64,
    /// The newest sequence number in the parent manifest's SSTs.
    l0_seq: u64,
    pinned: BTreeMap<String, Vec<String>>,
    wal_from: u64,
    wal_end: u64,
    wal_copied: u64,
}

/// Makes the fork off the parent manifest `(parent_id, parent_bytes)`:
/// the shadow's manifest (at a replica), the clone, the WAL tail.
async fn make(
    region: &Region,
    target: &DbLocation,
    from: &DbLocation,
    shadow: Option<&Path>,
    point: Option<&PointInTime>,
    (parent_id, parent_bytes): (u64, bytes::Bytes),
) -> Result<Made> {
    let store = region.store();
    let source = side(region, &from.path);
    let parent_view = ManifestView::parse(parent_id, parent_bytes.clone())
        .await
        .map_err(Error::Failed)?;
    let parent = match shadow {
        Some(shadow) => shadow.clone(),
        None => from.path.clone(),
    };
    let admin = slatedb::admin::AdminBuilder::new(target.path.clone(), Arc::clone(&store)).build();
    // At a home, a point in time is a checkpoint of it; the clone keeps it.
    let spec = match (shadow, point.and_then(|p| p.checkpoint.as_ref())) {
        (None, Some(checkpoint)) => CloneSourceSpec::with_checkpoint(parent.clone(), checkpoint.id),
        (None, None) if point.is_some() => {
            return Err(Error::invalid(
                "a point in time at a home must be a checkpoint of it; this one is not",
            ));
        }
        _ => CloneSourceSpec::new(parent.clone()),
    };
    let clone = target.bounded(
        "fork",
        ADMIN_TIMEOUT,
        admin.create_clone_builder_from_source(spec).build(),
    );
    // SlateDB's clone copies every WAL file its parent's manifest names,
    // and no more; the fork copies the rest of the run itself (`files`,
    // from `clone_end` on).
    let named_end = parent_view.next_wal_id.saturating_sub(1);
    let (clone_end, files) = match shadow {
        Some(shadow) => {
            // A replica may hold less WAL than its newest manifest names:
            // the copier puts a manifest before the tail it names, and a
            // home lost in between leaves it so (a reader replays up to
            // the first missing file). Its WAL is listed from the replay
            // point while the shadow's manifest is written, and a shadow
            // whose manifest names more than the replica holds names only
            // what it holds.
            let after = FileRef::Wal(parent_view.replay_after_wal_id);
            let (listed, written) = tokio::join!(
                source.list(Dir::Wal, Some(&after)),
                put_manifest(region, shadow, parent_id, &parent_bytes, PutMode::Create)
            );
            written?;
            let mut files = BranchFiles::default();
            files.replace_dir(Dir::Wal, listed?);
            let held = contiguous_wal_end(&parent_view, &files, 0);
            // A point in time names no WAL past its cut either.
            let named = point.map_or(held, |p| held.min(p.wal_end));
            if named < named_end {
                if let Some(p) = point.filter(|p| held < p.wal_end) {
                    return Err(Error::Failed(format!(
                        "{} in region `{}` no longer holds WAL files {}..={} of this point in time; restore at another time",
                        from.path,
                        region.name(),
                        held + 1,
                        p.wal_end
                    )));
                }
                let bytes = naming_wal_up_to(parent_id, &parent_bytes, named).await?;
                put_manifest(region, shadow, parent_id, &bytes, PutMode::Overwrite).await?;
            }
            clone.await?;
            (named_end.min(named), files)
        }
        None => {
            let after = FileRef::Wal(named_end);
            let (cloned, listed) = tokio::join!(clone, source.list(Dir::Wal, Some(&after)));
            cloned?;
            let mut files = BranchFiles::default();
            files.replace_dir(Dir::Wal, listed?);
            (named_end, files)
        }
    };
    let start = ManifestView {
        replay_after_wal_id: clone_end,
        ..parent_view
    };
    let mut wal_end = contiguous_wal_end(&start, &files, 0);
    if let Some(p) = point {
        // The WAL of the point must all be there still: a file collected
        // since the point was found would leave a state that never was.
        if wal_end.max(clone_end) < p.wal_end {
            return Err(Error::Failed(format!(
                "{} in region `{}` no longer holds WAL files {}..={} of this point in time; look again, or take another time",
                from.path,
                region.name(),
                wal_end.max(clone_end) + 1,
                p.wal_end
            )));
        }
        wal_end = wal_end.min(p.wal_end).max(clone_end);
    }
    // The tail is copied while the fork's own manifest (the SSTs it reads
    // in place, where its WAL ends) is read: both are on the path of every
    // failover's RTO. Nothing opens the fork before they all land.
    let own = async {
        let (own_id, own_bytes) = newest_manifest(&side(region, &target.path)).await?;
        ManifestView::parse(own_id, own_bytes)
            .await
            .map_err(Error::Failed)
    };
    let (own, copied) = tokio::join!(own, copy_wal(region, from, target, clone_end + 1..=wal_end));
    let own = own?;
    copied?;
    let copied_to = own.next_wal_id.saturating_sub(1);
    if copied_to < clone_end {
        // The clone copied less than its parent names: the rest too.
        copy_wal(region, from, target, copied_to + 1..=clone_end).await?;
    }
    let wal_end = wal_end.max(copied_to);
    let mut pinned: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, ssts) in &own.external {
        if let Some(branch) = branch_of(&Path::from(path.as_str())) {
            pinned
                .entry(branch)
                .or_default()
                .extend(ssts.iter().cloned());
        }
    }
    Ok(Made {
        manifest_id: parent_id,
        l0_seq: parent_view.last_l0_seq,
        pinned,
        // The clone replays from its parent's replay point, as does a
        // reader of the fork point.
        wal_from: own.replay_after_wal_id + 1,
        wal_end,
        wal_copied: wal_end - copied_to,
    })
}

/// Writes into the fork at `target` the rows of WAL file `id` of `from`
/// committed by `at_ms` and not in its SSTs already (sequence numbers at or
/// below `l0_seq` are), each batch with the stamp it was committed with,
/// through a writer of the fork (a WAL file cannot be cut in two: SlateDB
/// keeps its SST encoder to itself). The fork then holds what its source
/// held at `at_ms`, row for row. Returns the rows written.
async fn write_rows_by(
    region: &Region,
    from: &DbLocation,
    target: &DbLocation,
    (id, l0_seq, at_ms): (u64, u64, u64),
) -> Result<u64> {
    use slatedb::config::{PutOptions, Ttl, WriteOptions};
    let mut rows = super::pitr::rows_by(&side(region, &from.path), id, at_ms).await?;
    rows.retain(|r| r.seq > l0_seq);
    if rows.is_empty() {
        return Ok(0);
    }
    // Pinned from the start: SlateDB's tickers fail on a clock that goes
    // back, and the rows' stamps only go forward from the first.
    let clock = Arc::new(StampClock::default());
    clock.pin(rows[0].create_ts.unwrap_or(0));
    let build = slatedb::Db::builder(target.path.clone(), region.store())
        .with_settings(target.settings())
        .with_system_clock(Arc::clone(&clock) as Arc<dyn slatedb_common::clock::SystemClock>)
        .build();
    let db = target
        .bounded("open the fork's writer", ADMIN_TIMEOUT, build)
        .await?;
    let written = async {
        // Rows of one commit share its sequence number.
        for commit in rows.chunk_by(|a, b| a.seq == b.seq) {
            let mut batch = slatedb::WriteBatch::new();
            for row in commit {
                match &row.value {
                    slatedb::ValueDeletable::Value(value) => {
                        let ttl = row.expire_ts.map_or(Ttl::NoExpiry, Ttl::ExpireAtMillis);
                        batch.put_with_options(&row.key, value, &PutOptions { ttl });
                    }
                    slatedb::ValueDeletable::Tombstone => batch.delete(&row.key),
                    slatedb::ValueDeletable::Merge(_) => {
                        return Err(Error::Failed(format!(
                            "WAL file {id} of {} holds a merge operand, which Lifeboat does not write; restore at a time outside that file",
                            from.path
                        )));
                    }
                }
            }
            clock.pin(commit[0].create_ts.unwrap_or(0));
            // The commit's own sequence number too: the rows are as they were.
            let options = WriteOptions {
                seqnum: commit[0].seq,
            };
            db.write_with_options(batch, &options)
                .await
                .map_err(|e| Error::Failed(format!("writing into the fork {}: {e}", target.path)))?;
        }
        clock.unpin();
        db.flush()
            .await
            .map_err(|e| Error::Failed(format!("flushing the fork {}: {e}", target.path)))
    }
    .await;
    let closed = db
        .close()
        .await
        .map_err(|e| Error::Failed(format!("closing the fork {}: {e}", target.path)));
    written?;
    closed?;
    Ok(rows.len() as u64)
}

/// The wall clock, or the stamp a row was committed with while one is
/// pinned: a writer stamps each row with its clock (`create_ts`), so rows
/// written again into a fork keep the stamps they were committed with.
#[derive(Debug, Default)]
struct StampClock {
    pinned_ms: std::sync::Mutex<Option<i64>>,
    /// The latest time it told: it never tells an earlier one (SlateDB's
    /// tickers panic on a clock that goes back, and a row stamped by a
    /// primary whose clock runs ahead of this machine's may lie ahead).
    told_ms: std::sync::atomic::AtomicI64,
}

impl StampClock {
    fn pin(&self, ms: i64) {
        *self.pinned_ms.lock().unwrap_or_else(|p| p.into_inner()) = Some(ms);
    }

    fn unpin(&self) {
        *self.pinned_ms.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl slatedb_common::clock::SystemClock for StampClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let pinned = *self.pinned_ms.lock().unwrap_or_else(|p| p.into_inner());
        let ms = pinned.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let told = self
            .told_ms
            .fetch_max(ms, std::sync::atomic::Ordering::SeqCst)
            .max(ms);
        chrono::DateTime::from_timestamp_millis(told).unwrap_or_else(chrono::Utc::now)
    }

    fn sleep<'a>(
        &'a self,
        duration: std::time::Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn ticker<'a>(
        &'a self,
        duration: std::time::Duration,
    ) -> slatedb_common::clock::SystemClockTicker<'a> {
        slatedb_common::clock::SystemClockTicker::new(self, duration)
    }
}

/// Writes manifest `id` (`bytes`) of the shadow parent at `shadow`.
async fn put_manifest(
    region: &Region,
    shadow: &Path,
    id: u64,
    bytes: &bytes::Bytes,
    mode: PutMode,
) -> Result<()> {
    let store = region.store();
    let path = FileRef::Manifest(id).path(shadow);
    let opts = PutOptions {
        mode,
        ..PutOptions::default()
    };
    retrying(|| store.put_opts(&path, PutPayload::from(bytes.clone()), opts.clone()))
        .await
        .map_err(|e| Error::store(region.name(), &format!("writing {path}"), &e))?;
    Ok(())
}

/// Manifest `id` (`bytes`) with its last WAL id (`wal_id_last_seen`, one
/// below what SlateDB calls `next_wal_sst_id`) set to `last`: the same
/// state, naming less WAL. SlateDB keeps its encoder to itself, so the
/// field is rewritten in place in the flatbuffer (version 2, the one 0.18
/// writes), and the result is decoded again with SlateDB's own decoder to
/// check that it changed that field and nothing else.
async fn naming_wal_up_to(id: u64, bytes: &bytes::Bytes, last: u64) -> Result<bytes::Bytes> {
    /// Where `wal_id_last_seen` sits in `ManifestV2`'s vtable (SlateDB
    /// 0.18's `ManifestV2::VT_WAL_ID_LAST_SEEN`).
    const VT_WAL_ID_LAST_SEEN: usize = 16;
    let unsupported = || {
        Error::Failed(format!(
            "manifest {id} is in a format this Lifeboat cannot shorten; the replica names WAL files it does not hold, so wait for its copier to catch up and fork again"
        ))
    };
    let u16_at = |b: &[u8], at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    if bytes.get(..2) != Some(&[0, 2][..]) {
        return Err(unsupported());
    }
    let fb = &bytes[2..];
    // The root table, its vtable (the table's first word, a signed offset
    // back to it), and the field's offset in the table (0: not written).
    let field = (|| {
        let table = u32_at(fb, 0)? as usize;
        let back = u32_at(fb, table)? as i32 as i64;
        let vtable = usize::try_from(table as i64 - back).ok()?;
        let (vtable_len, table_len) = (u16_at(fb, vtable)?, u16_at(fb, vtable + 2)?);
        if vtable_len < VT_WAL_ID_LAST_SEEN + 2 {
            return None;
        }
        let offset = u16_at(fb, vtable + VT_WAL_ID_LAST_SEEN)?;
        (offset != 0 && offset + 8 <= table_len && fb.len() >= table + offset + 8)
            .then_some(2 + table + offset)
    })()
    .ok_or_else(unsupported)?;
    let mut out = bytes.to_vec();
    out[field..field + 8].copy_from_slice(&last.to_le_bytes());
    let out = bytes::Bytes::from(out);
    let (was, now) = tokio::try_join!(
        ManifestView::parse(id, bytes.clone()),
        ManifestView::parse(id, out.clone())
    )
    .map_err(Error::Failed)?;
    if now
        != (ManifestView {
            next_wal_id: last + 1,
            ..was
        })
    {
        return Err(unsupported());
    }
    Ok(out)
}

/// Copies WAL files `ids` of `from` to `target`, in parallel: a store far
/// away answers each copy in tens of milliseconds.
async fn copy_wal(
    region: &Region,
    from: &DbLocation,
    target: &DbLocation,
    ids: std::ops::RangeInclusive<u64>,
) -> Result<()> {
    let store = region.store();
    futures::stream::iter(ids)
        .map(|id| {
            let from_path = FileRef::Wal(id).path(&from.path);
            let to_path = FileRef::Wal(id).path(&target.path);
            let store = &store;
            async move {
                retrying(|| store.copy(&from_path, &to_path))
                    .await
                    .map_err(|e| Error::store(region.name(), &format!("copying {from_path}"), &e))
            }
        })
        .buffer_unordered(TAIL_COPIES_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

/// The branch whose files lie at `path`: `dbs/<db>/<branch>`, or the
/// source of the shadow `_lifeboat/shadow/<db>/<source>/<fork>`.
pub fn branch_of(path: &Path) -> Option<String> {
    let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_string()).collect();
    let shadow: Vec<&str> = crate::region::shadow::SHADOW_PREFIX.split('/').collect();
    match parts.as_slice() {
        [dbs, _db, branch] if dbs == super::DBS_PREFIX => Some(branch.clone()),
        [a, b, _db, source, _fork] if *a == shadow[0] && *b == shadow[1] => Some(source.clone()),
        _ => None,
    }
}

/// The folder `base` in `region`, as one side of a copy (its calls
/// counted apart).
pub fn side(region: &Region, base: &Path) -> Side {
    Side {
        region: region.name().to_string(),
        store: region.store(),
        base: base.clone(),
        requests: Arc::new(RequestCounter::default()),
    }
}

/// Manifest `seen` when it is still the newest (nothing listed past it),
/// else the newest: the listing and the read at once.
async fn newest_if_still(side: &Side, seen: u64) -> Result<(u64, bytes::Bytes)> {
    let manifest = FileRef::Manifest(seen);
    let (newer, read) = tokio::join!(
        side.list(Dir::Manifest, Some(&manifest)),
        side.read(&manifest)
    );
    match (newer?.is_empty(), read?) {
        (true, Some(bytes)) => Ok((seen, bytes)),
        _ => newest_manifest(side).await,
    }
}

/// The newest manifest of a branch folder and its bytes; tries again when
/// the garbage collector deletes it between the listing and the read.
async fn newest_manifest(side: &Side) -> Result<(u64, bytes::Bytes)> {
    for _ in 0..5 {
        let listed = side.list(Dir::Manifest, None).await?;
        let Some((FileRef::Manifest(id), _)) = listed.last().cloned() else {
            return Err(Error::Failed(format!(
                "{} in region `{}` has no manifest",
                side.base, side.region
            )));
        };
        if let Some(bytes) = side.read(&FileRef::Manifest(id)).await? {
            return Ok((id, bytes));
        }
    }
    Err(Error::Failed(format!(
        "the newest manifest of {} in region `{}` kept vanishing while it was read; try again",
        side.base, side.region
    )))
}

/// Deletes every object under `prefix`. Returns how many were deleted.
pub(crate) async fn remove_files(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Result<u64> {
    let listed: Vec<_> = retrying(|| store.list(Some(prefix)).try_collect::<Vec<_>>())
        .await
        .map_err(|e| Error::Failed(format!("listing {prefix}: {e}")))?;
    for meta in &listed {
        crate::region::objects::delete_if_present(store.as_ref(), &meta.location)
            .await
            .map_err(|e| Error::Failed(format!("deleting {}: {e}", meta.location)))?;
    }
    Ok(listed.len() as u64)
}

/// Deletes branch `branch` of `db` in `region` (its home or a replica),
/// its shadow parent if it has one, and its replica cursor. Returns how
/// many objects were deleted.
pub async fn delete_branch(
    region: &Region,
    db: &str,
    branch: &str,
    source: Option<&str>,
) -> Result<u64> {
    let store = region.store();
    let mut deleted = remove_files(&store, &branch_path(db, branch)).await?;
    if let Some(source) = source {
        deleted += remove_files(&store, &shadow_path(db, source, branch)).await?;
    }
    cursor::forget(region, db, branch).await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field `naming_wal_up_to` rewrites is where this SlateDB keeps
    /// it: a manifest a real writer left names less WAL after it, and reads
    /// the same otherwise (a SlateDB upgrade that moves it fails here).
    #[tokio::test]
    async fn a_manifest_is_shortened_to_name_less_wal_and_nothing_else() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let root = Path::from("db");
        let db = slatedb::Db::builder(root.clone(), Arc::clone(&store))
            .build()
            .await
            .expect("open");
        for i in 0..3u8 {
            db.put(&[i], b"v").await.expect("put");
            db.flush().await.expect("flush the WAL");
        }
        db.flush_with_options(slatedb::config::FlushOptions {
            flush_type: slatedb::config::FlushType::MemTable,
        })
        .await
        .expect("flush the memtable");
        db.close().await.expect("close");
        let side = Side {
            region: "r".into(),
            store,
            base: root,
            requests: Arc::new(RequestCounter::default()),
        };
        let (id, bytes) = newest_manifest(&side).await.expect("manifest");
        let was = ManifestView::parse(id, bytes.clone())
            .await
            .expect("decode");
        // The field is written (not left out as 0) once a WAL file exists.
        assert!(was.next_wal_id >= 3, "{was:?}");
        let last = was.next_wal_id - 2;
        let shortened = naming_wal_up_to(id, &bytes, last).await.expect("shorten");
        let now = ManifestView::parse(id, shortened).await.expect("decode");
        assert_eq!(
            now,
            ManifestView {
                next_wal_id: last + 1,
                ..was
            }
        );
    }
}
