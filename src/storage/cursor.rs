//! The replica cursor: how far one branch's replica has been brought, kept
//! in the replica's own region so that a restarted replicator (on any
//! machine) resumes with a few short listings instead of a full diff.
//!
//! Its presence also marks the branch as a replica in that region: the
//! replicator writes it before the first file, so a half-seeded replica is
//! never mistaken for a home, and writers refuse to open where it exists.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::region::objects::{delete_if_present, get_if_present};
use crate::region::retry::retrying;

/// The cursor format this build reads and writes.
pub const CURSOR_FORMAT: u32 = 1;

/// Where replication state lives in a region's store.
pub const REPLICATION_PREFIX: &str = "_lifeboat/replication";

/// One branch's replica in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCursor {
    pub format: u32,
    /// The region the branch is written in; the replica only follows it.
    pub home: String,
    pub db: String,
    pub branch: String,
    /// The newest manifest copied.
    pub manifest_id: u64,
    /// Every WAL file the home still had up to this id has been copied.
    pub wal_id: u64,
    /// The newest compactions file copied.
    pub compactions_id: u64,
    /// When the replica last held everything the home had (microseconds).
    pub synced_us: Option<u64>,
    /// Requests per minute the replicator made for this branch when it saved.
    pub requests_per_min: u64,
    pub saved_us: u64,
}

impl ReplicaCursor {
    pub fn new(home: &str, db: &str, branch: &str) -> ReplicaCursor {
        ReplicaCursor {
            format: CURSOR_FORMAT,
            home: home.to_string(),
            db: db.to_string(),
            branch: branch.to_string(),
            manifest_id: 0,
            wal_id: 0,
            compactions_id: 0,
            synced_us: None,
            requests_per_min: 0,
            saved_us: 0,
        }
    }
}

/// `_lifeboat/replication/<db>/<branch>.json`.
pub fn cursor_path(db: &str, branch: &str) -> Path {
    Path::from(REPLICATION_PREFIX)
        .join(db)
        .join(format!("{branch}.json"))
}

/// The cursor of `db`/`branch` in the region `region` whose store is `store`.
pub async fn load(
    store: &Arc<dyn ObjectStore>,
    region: &str,
    db: &str,
    branch: &str,
) -> Result<Option<ReplicaCursor>> {
    let path = cursor_path(db, branch);
    let got = retrying(|| get_if_present(store.as_ref(), &path))
        .await
        .map_err(|e| Error::store(region, &format!("reading {path}"), &e))?;
    let Some(bytes) = got else {
        return Ok(None);
    };
    let cursor: ReplicaCursor = serde_json::from_slice(&bytes).map_err(|e| Error::Failed(format!(
        "the replica cursor {path} in region `{region}` is damaged ({e}); delete it and the replicator will re-check every file"
    )))?;
    if cursor.format != CURSOR_FORMAT {
        return Err(Error::Failed(format!(
            "the replica cursor {path} in region `{region}` has format {}, this build reads {CURSOR_FORMAT}; upgrade lifeboat",
            cursor.format
        )));
    }
    Ok(Some(cursor))
}

/// Deletes the cursor of `db`/`branch` from `region`, once its replica is
/// gone (the cursor also marks the branch there as a replica).
pub async fn forget(region: &crate::region::Region, db: &str, branch: &str) -> Result<()> {
    let path = cursor_path(db, branch);
    let store = region.store();
    retrying(|| delete_if_present(store.as_ref(), &path))
        .await
        .map_err(|e| Error::store(region.name(), &format!("deleting {path}"), &e))
}

/// Saves `cursor` (one put).
pub async fn save(
    store: &Arc<dyn ObjectStore>,
    region: &str,
    cursor: &ReplicaCursor,
) -> Result<()> {
    let path = cursor_path(&cursor.db, &cursor.branch);
    let json = serde_json::to_vec_pretty(cursor)
        .map_err(|e| Error::Failed(format!("encoding the replica cursor: {e}")))?;
    let bytes = Bytes::from(json);
    retrying(|| store.put(&path, PutPayload::from(bytes.clone())))
        .await
        .map(|_| ())
        .map_err(|e| Error::store(region, &format!("writing {path}"), &e))
}
