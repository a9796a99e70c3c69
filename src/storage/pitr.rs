//! Point-in-time recovery: checkpoints on a schedule at the home, and the
//! state of a branch as of a time T, to the row.
//!
//! The home keeps a SlateDB checkpoint every few minutes with a lifetime of
//! the retention window, and Lifeboat's writers keep their WAL files as
//! long (`storage::retention()`, 24 h unless `LIFEBOAT_RETENTION` says
//! otherwise), so every state inside the window can be rebuilt.
//!
//! T is the home's commit time, wherever the branch is read: SlateDB stamps
//! every row with its writer's clock when it commits (`create_ts`, Unix
//! milliseconds, never going backwards along the WAL), and every manifest
//! with the newest stamp its SSTs hold. The state as of T is the newest
//! consistent manifest whose SSTs hold nothing after T (a checkpoint, or a
//! replica's newest), then the WAL after it, row by row, up to the last row
//! stamped at or before T. Whole WAL files up to there are the fork's; the
//! one file that straddles T is written into the fork row by row, with the
//! rows' own stamps (see `storage::fork`).
//!
//! A file's store stamp (when it was put there: at a replica, when it was
//! copied) is never earlier than its rows', so a file stamped by T is
//! whole without being read; only the files stamped after T are read, to
//! find the last row by T. The same rows give how much a replica holds: the
//! stamp of the newest row it holds with nothing missing before it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use slatedb::config::CheckpointOptions;

use super::{ADMIN_TIMEOUT, DbLocation};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::storage::files::{Dir, FileRef, Side};

/// The name Lifeboat's scheduled checkpoints carry.
pub const CHECKPOINT_NAME: &str = "lifeboat-pitr";

/// Writes a scheduled checkpoint at the home `location`, living `retention`.
pub async fn checkpoint(location: &DbLocation, retention: Duration) -> Result<u64> {
    location.require_home().await?;
    let admin =
        slatedb::admin::AdminBuilder::new(location.path.clone(), Arc::clone(&location.store))
            .build();
    let options = CheckpointOptions {
        lifetime: Some(retention),
        source: None,
        name: Some(CHECKPOINT_NAME.into()),
    };
    let made = location
        .bounded(
            "checkpoint",
            ADMIN_TIMEOUT,
            admin.create_detached_checkpoint(&options),
        )
        .await?;
    Ok(made.manifest_id)
}

/// Manifests of a replica, newest first, that may be the base of a point
/// in time without a checkpoint (when it still holds their SSTs).
const RECENT_BASES: usize = 32;

/// A branch's state as of a time: a manifest, the WAL files after it, and
/// the rows by then of the file that straddles the time.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct PointInTime {
    /// The time asked for (Unix milliseconds).
    pub at_ms: u64,
    pub manifest_id: u64,
    /// The last WAL file whose rows are all by `at_ms`.
    pub wal_end: u64,
    /// The WAL file after `wal_end` that holds rows by `at_ms` and after:
    /// its rows by then are written into the fork one by one.
    #[serde(default)]
    pub partial_wal: Option<u64>,
    /// The stamp of the newest row the state holds (Unix milliseconds).
    pub state_ms: u64,
    /// The checkpoint the manifest belongs to, when it has one.
    #[serde(skip)]
    pub checkpoint: Option<slatedb::Checkpoint>,
}

impl PointInTime {
    /// The WAL file that straddles the time, and the time: its rows by
    /// then are part of the state.
    pub fn straddling(&self) -> Option<(u64, u64)> {
        self.partial_wal.map(|id| (id, self.at_ms))
    }
}

/// Where branch `source` of `db` in `region` stood at `at_ms` (the home's
/// commit time), to the row.
pub async fn locate(region: &Region, db: &str, source: &str, at_ms: u64) -> Result<PointInTime> {
    let location = DbLocation::branch_in_region(region, db, source)?;
    location.require().await?;
    let side = crate::storage::fork::side(region, &location.path);
    let manifests = side.list(Dir::Manifest, None).await?;
    let admin =
        slatedb::admin::AdminBuilder::new(location.path.clone(), Arc::clone(&location.store))
            .build();
    let checkpoints = location
        .bounded(
            "list checkpoints",
            ADMIN_TIMEOUT,
            admin.list_checkpoints(None),
        )
        .await?;
    // Consistent bases: the checkpointed manifests, and at a replica the
    // recent ones whose SSTs it still holds (at a home the state moves on,
    // and only a checkpoint keeps a fork's files from the home's garbage
    // collector; at a replica the fork's pins keep them once it is made).
    let at_replica = crate::storage::cursor::load(&region.store(), region.name(), db, source)
        .await?
        .is_some();
    let held_ssts: std::collections::BTreeSet<String> = if at_replica {
        side.list(Dir::Compacted, None)
            .await?
            .into_iter()
            .filter_map(|(file, _)| match file {
                FileRef::Sst(ulid) => Some(ulid),
                _ => None,
            })
            .collect()
    } else {
        Default::default()
    };
    let mut recent = 0;
    let bases = manifests.iter().rev().filter_map(|(file, _)| {
        let FileRef::Manifest(id) = file else {
            return None;
        };
        let checkpoint = checkpoints.iter().find(|c| c.manifest_id == *id).cloned();
        recent += 1;
        (checkpoint.is_some() || (at_replica && recent <= RECENT_BASES))
            .then_some((*id, checkpoint))
    });
    let grain_ms = stamp_grain_ms(region);
    // At a home, nothing from before the oldest state it keeps a record of
    // (stamped when written there). A replica's stamps are copy times: a
    // state there counts by its rows alone.
    let oldest_us = manifests
        .first()
        .map(|(_, m)| m.modified_us)
        .filter(|_| !at_replica);
    let too_early =
        oldest_us.is_some_and(|oldest| at_ms.saturating_mul(1000) < oldest) || manifests.is_empty();
    for (manifest_id, checkpoint) in bases.filter(|_| !too_early) {
        let Some(bytes) = side.read(&FileRef::Manifest(manifest_id)).await? else {
            continue; // collected since the listing
        };
        let view = crate::storage::cut::ManifestView::parse(manifest_id, bytes)
            .await
            .map_err(Error::Failed)?;
        if view.last_l0_tick_ms > at_ms as i64 {
            continue; // its SSTs hold rows committed after T
        }
        if checkpoint.is_none() && !view.ssts.is_subset(&held_ssts) {
            continue; // compacted away since
        }
        let after = FileRef::Wal(view.replay_after_wal_id);
        let listed = side.list(Dir::Wal, Some(&after)).await?;
        let cut = cut_wal(&side, &listed, view.replay_after_wal_id, at_ms, grain_ms).await?;
        // A clone at a home copies every WAL file its manifest names: one
        // that names files past T cannot be the base there.
        let named_end = view.next_wal_id.saturating_sub(1);
        if !at_replica && named_end > cut.whole_end {
            continue;
        }
        return Ok(PointInTime {
            at_ms,
            manifest_id,
            wal_end: cut.whole_end,
            partial_wal: cut.partial,
            state_ms: cut.state_ms.max(view.last_l0_tick_ms).max(0) as u64,
            checkpoint,
        });
    }
    let oldest = manifests
        .iter()
        .filter(|(f, _)| {
            checkpoints
                .iter()
                .any(|c| FileRef::Manifest(c.manifest_id) == *f)
        })
        .map(|(_, m)| m.modified_us)
        .min()
        .max(oldest_us);
    Err(Error::invalid(format!(
        "{db}/{source} in `{}` holds no state from {} or before; the oldest it can restore is {}",
        region.name(),
        crate::workload::verify::format_us(at_ms.saturating_mul(1000)),
        oldest.map_or(
            "its newest state".to_string(),
            crate::workload::verify::format_us
        )
    )))
}

/// How much a replica holds: the stamp of the newest row of branch
/// `branch` in `region` with nothing missing before it, where `wal_end`
/// ends its run of WAL past manifest `manifest_id` (Unix milliseconds).
pub async fn held_through_ms(
    region: &Region,
    db: &str,
    branch: &str,
    manifest_id: u64,
    wal_end: u64,
) -> Result<i64> {
    let location = DbLocation::branch_in_region(region, db, branch)?;
    let side = crate::storage::fork::side(region, &location.path);
    let bytes = side
        .read(&FileRef::Manifest(manifest_id))
        .await?
        .ok_or_else(|| Error::Failed(format!("manifest {manifest_id} vanished; look again")))?;
    let view = crate::storage::cut::ManifestView::parse(manifest_id, bytes)
        .await
        .map_err(Error::Failed)?;
    // The newest file with a row in it (a writer's fence leaves one empty).
    for id in (view.replay_after_wal_id + 1..=wal_end).rev().take(8) {
        if let Some(last) = wal_rows(&side, id).await?.last() {
            return Ok(last.create_ts.unwrap_or(0).max(view.last_l0_tick_ms));
        }
    }
    Ok(view.last_l0_tick_ms)
}

/// How many rows of WAL file `id` of the branch `side` reads are stamped
/// after `after_ms`.
pub async fn rows_after(side: &Side, id: u64, after_ms: u64) -> Result<u64> {
    Ok(wal_rows(side, id)
        .await?
        .iter()
        .filter(|r| !committed_by(r, after_ms))
        .count() as u64)
}

/// The rows of WAL file `id` of the branch `side` reads committed by
/// `at_ms`, in commit order: the part of a file that straddles `at_ms`
/// that a state as of then holds.
pub async fn rows_by(side: &Side, id: u64, at_ms: u64) -> Result<Vec<slatedb::RowEntry>> {
    let mut rows = wal_rows(side, id).await?;
    let by_then = rows.iter().take_while(|r| committed_by(r, at_ms)).count();
    rows.truncate(by_then);
    Ok(rows)
}

/// Whether `row` was committed at or before `at_ms` (by its writer's clock).
fn committed_by(row: &slatedb::RowEntry, at_ms: u64) -> bool {
    row.create_ts.unwrap_or(0) <= at_ms as i64
}

/// The rows of WAL file `id` of the branch `side` reads, in commit order.
pub async fn wal_rows(side: &Side, id: u64) -> Result<Vec<slatedb::RowEntry>> {
    let failed = |e: slatedb::Error| {
        Error::Failed(format!(
            "reading the rows of WAL file {id} of {} in `{}`: {e}",
            side.base, side.region
        ))
    };
    let file = slatedb::WalReader::new(side.base.clone(), Arc::clone(&side.store)).get(id);
    let mut rows = file.iterator().await.map_err(failed)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.map_err(failed)? {
        out.push(row);
    }
    Ok(out)
}

/// Where a cut at a time falls in a run of WAL files.
struct WalCut {
    /// The last file whose rows are all by then.
    whole_end: u64,
    /// The file after it, when it holds rows by then and after.
    partial: Option<u64>,
    /// The newest row by then that was read (Unix milliseconds; -1: none).
    state_ms: i64,
}

/// Cuts the run of WAL files `listed` after `replay_after` at `at_ms`: the
/// files stamped by then are whole unread; the ones after are read until a
/// row after `at_ms` (rows of a writer's WAL never go back in time). A gap
/// ends the run.
async fn cut_wal(
    side: &Side,
    listed: &[(FileRef, crate::storage::files::FileMeta)],
    replay_after: u64,
    at_ms: u64,
    grain_ms: u64,
) -> Result<WalCut> {
    let mut cut = WalCut {
        whole_end: replay_after,
        partial: None,
        state_ms: -1,
    };
    let mut next = replay_after + 1;
    for (file, meta) in listed {
        let FileRef::Wal(id) = *file else {
            continue;
        };
        if id < next {
            continue;
        }
        if id != next {
            break;
        }
        next = id + 1;
        if meta.modified_us / 1000 + grain_ms <= at_ms {
            cut.whole_end = id;
            continue;
        }
        let rows = wal_rows(side, id).await?;
        let by_then = rows.iter().take_while(|r| committed_by(r, at_ms)).count();
        if let Some(last) = rows[..by_then].last() {
            cut.state_ms = last.create_ts.unwrap_or(0);
        }
        if by_then == rows.len() {
            cut.whole_end = id;
            continue;
        }
        cut.partial = (by_then > 0).then_some(id);
        break;
    }
    Ok(cut)
}

/// How far a store's stamp may lie from the writer's clock: a file counts
/// as whole by T unread only once its stamp is this far before T (the
/// region check warns of clocks more than 2 s apart).
const STAMP_MARGIN_MS: u64 = 2000;

/// How coarse a region's store stamps are (whole seconds on cloud stores,
/// so a stamp counts as "by T" only once its whole second is), with the
/// margin for clocks apart.
fn stamp_grain_ms(region: &Region) -> u64 {
    STAMP_MARGIN_MS
        + if region.location().is_cloud() {
            1000
        } else {
            0
        }
}
