//! Point-in-time recovery: checkpoints on a schedule at the home, and the
//! state of a branch as of a time T, to the WAL file.
//!
//! The home keeps a SlateDB checkpoint every few minutes with a lifetime of
//! the retention window, and Lifeboat's writers keep their WAL files as
//! long (`storage::retention()`, 24 h unless `LIFEBOAT_RETENTION` says otherwise), so every state inside the window can be
//! rebuilt: the newest checkpointed manifest written at or before T, then
//! the WAL files after it stamped at or before T. Stamps are the times the
//! region's store put on the files: at the home, when they were written
//! (committed); at a replica, when they were copied there, so a restore at
//! a replica gives what the replica held at T. Stores that stamp whole
//! seconds (S3 and the like) count a file only once its whole second is
//! at or before T.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use slatedb::config::CheckpointOptions;

use super::{ADMIN_TIMEOUT, DbLocation};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::storage::files::{Dir, FileRef, RequestCounter, Side};

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

/// A branch's state as of a time: a manifest and the WAL files after it.
#[derive(Debug, Clone, Serialize)]
pub struct PointInTime {
    /// The time asked for (Unix milliseconds).
    pub at_ms: u64,
    pub manifest_id: u64,
    pub wal_end: u64,
    /// The stamp of the newest file the state holds (Unix milliseconds).
    pub state_ms: u64,
    /// The checkpoint the manifest belongs to, when it has one.
    #[serde(skip)]
    pub checkpoint: Option<slatedb::Checkpoint>,
}

/// Where branch `source` of `db` in `region` stood at `at_ms`.
pub async fn locate(region: &Region, db: &str, source: &str, at_ms: u64) -> Result<PointInTime> {
    let location = DbLocation::branch_in_region(region, db, source)?;
    location.require().await?;
    // A stamp counts when the whole interval it stands for is at or before T.
    let grain_ms = if region.location().is_cloud() {
        1000
    } else {
        0
    };
    let counts = |stamp_us: u64| stamp_us / 1000 + grain_ms <= at_ms;
    let side = Side {
        region: region.name().to_string(),
        store: region.store(),
        base: location.path.clone(),
        requests: Arc::new(RequestCounter::default()),
    };
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
    // newest one too (at a home it moves on, and only a checkpoint keeps
    // a fork's files from the home's garbage collector).
    let at_replica = crate::storage::cursor::load(&region.store(), region.name(), db, source)
        .await?
        .is_some();
    let newest = manifests
        .last()
        .map(|(f, _)| f.clone())
        .filter(|_| at_replica);
    let mut best: Option<(u64, u64, Option<slatedb::Checkpoint>)> = None;
    for (file, meta) in &manifests {
        let FileRef::Manifest(id) = file else {
            continue;
        };
        let checkpoint = checkpoints.iter().find(|c| c.manifest_id == *id).cloned();
        let base = checkpoint.is_some() || Some(file) == newest.as_ref();
        if base && counts(meta.modified_us) && best.as_ref().is_none_or(|(b, _, _)| id > b) {
            best = Some((*id, meta.modified_us / 1000, checkpoint));
        }
    }
    let Some((manifest_id, manifest_ms, checkpoint)) = best else {
        let oldest = manifests
            .iter()
            .filter(|(f, _)| {
                checkpoints
                    .iter()
                    .any(|c| FileRef::Manifest(c.manifest_id) == *f)
            })
            .map(|(_, m)| m.modified_us)
            .min();
        return Err(Error::invalid(format!(
            "{db}/{source} in `{}` holds no state from {} or before; the oldest it can restore is {}",
            region.name(),
            crate::workload::verify::format_us(at_ms.saturating_mul(1000)),
            oldest.map_or(
                "its newest state".to_string(),
                crate::workload::verify::format_us
            )
        )));
    };
    let bytes = side
        .read(&FileRef::Manifest(manifest_id))
        .await?
        .ok_or_else(|| Error::Failed(format!("manifest {manifest_id} vanished; try again")))?;
    let view = crate::storage::cut::ManifestView::parse(manifest_id, bytes)
        .await
        .map_err(Error::Failed)?;
    let after = FileRef::Wal(view.replay_after_wal_id);
    // The run of WAL after the replay point: up to T, and as far as the
    // branch holds it.
    let mut wal_end = view.replay_after_wal_id;
    let mut held_to = view.replay_after_wal_id;
    let mut by_then = true;
    let mut state_ms = manifest_ms;
    for (file, meta) in side.list(Dir::Wal, Some(&after)).await? {
        let FileRef::Wal(id) = file else {
            continue;
        };
        if id != held_to + 1 {
            break;
        }
        held_to = id;
        by_then &= counts(meta.modified_us);
        if by_then {
            wal_end = id;
            state_ms = state_ms.max(meta.modified_us / 1000);
        }
    }
    // WAL the manifest itself records is part of its state, as far as the
    // branch holds it: a replica may hold less than its manifest names (the
    // copier puts a manifest before its tail).
    wal_end = wal_end.max(view.next_wal_id.saturating_sub(1).min(held_to));
    Ok(PointInTime {
        at_ms,
        manifest_id,
        wal_end,
        state_ms,
        checkpoint,
    })
}
