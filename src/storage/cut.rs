//! Consistent cuts: what a manifest needs so that a reader of it sees a state
//! its home had, and whether a replica holds all of it.
//!
//! A reader of manifest k reads the SSTs k lists and replays WAL files from
//! `replay_after_wal_id + 1` upward, stopping silently at the first missing
//! id. So a replica is readable at a consistent state when every SST of its
//! newest manifest is present and its WAL above the replay point has no gap;
//! it is *complete* when that WAL also reaches the home's newest WAL file.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::files::{BranchFiles, FileRef};

/// What one manifest says about the files it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestView {
    pub id: u64,
    /// WAL files at or below this id are already in SSTs.
    pub replay_after_wal_id: u64,
    /// The WAL id the writer will use next, as of this manifest.
    pub next_wal_id: u64,
    pub writer_epoch: u64,
    /// The branch's own compacted SSTs this manifest reads, by ULID.
    pub ssts: BTreeSet<String>,
    /// SSTs read from other databases (a clone's parent); not this branch's files.
    pub external_ssts: usize,
    /// Those SSTs by the path of the database they lie in, by ULID.
    pub external: std::collections::BTreeMap<String, BTreeSet<String>>,
    /// Manifests that checkpoints in this one keep alive.
    pub checkpoint_manifest_ids: Vec<u64>,
    /// The newest commit stamp of a row in its SSTs (the writer's clock,
    /// Unix milliseconds): every row it holds was committed by then.
    pub last_l0_tick_ms: i64,
    /// The newest sequence number in its SSTs: a WAL row at or below it is
    /// in them already (a memtable flushed to L0 may hold rows of WAL files
    /// past its replay point).
    pub last_l0_seq: u64,
}

impl ManifestView {
    /// Decodes a manifest file with SlateDB's own decoder (through a
    /// throw-away in-memory store, so no network and no retries are involved).
    pub async fn parse(id: u64, bytes: Bytes) -> Result<ManifestView, String> {
        let manifest = admin_holding(FileRef::Manifest(id), bytes)
            .await?
            .read_manifest(Some(id))
            .await
            .map_err(|e| format!("manifest {id} does not decode: {e}"))?
            .ok_or_else(|| format!("manifest {id} vanished while decoding"))?;
        let external: BTreeSet<_> = manifest
            .external_dbs()
            .iter()
            .flat_map(|db| db.sst_ids.iter().copied())
            .collect();
        let mut by_path: std::collections::BTreeMap<String, BTreeSet<String>> =
            std::collections::BTreeMap::new();
        for db in manifest.external_dbs() {
            by_path
                .entry(db.path.clone())
                .or_default()
                .extend(db.sst_ids.iter().map(|id| id.value().to_string()));
        }
        let mut ssts = BTreeSet::new();
        let mut external_ssts = 0;
        for view in manifest.all_sst_views() {
            if external.contains(&view.sst.id) {
                external_ssts += 1;
            } else {
                ssts.insert(view.sst.id.value().to_string());
            }
        }
        let mut checkpoint_manifest_ids: Vec<u64> = manifest
            .checkpoints()
            .iter()
            .map(|c| c.manifest_id)
            .collect();
        checkpoint_manifest_ids.sort_unstable();
        checkpoint_manifest_ids.dedup();
        Ok(ManifestView {
            id,
            replay_after_wal_id: manifest.replay_after_wal_id(),
            next_wal_id: manifest.next_wal_sst_id(),
            writer_epoch: manifest.writer_epoch(),
            ssts,
            external_ssts,
            external: by_path,
            checkpoint_manifest_ids,
            last_l0_tick_ms: manifest.last_l0_clock_tick(),
            last_l0_seq: manifest.last_l0_seq(),
        })
    }

    /// The SSTs this manifest needs that `files` lacks, or holds at a size
    /// other than `expected` says (when `expected` knows the file).
    pub fn missing_ssts(&self, files: &BranchFiles, expected: &BranchFiles) -> Vec<String> {
        self.ssts
            .iter()
            .filter(|ulid| {
                let file = FileRef::Sst((*ulid).clone());
                match (files.get(&file), expected.get(&file)) {
                    (None, _) => true,
                    (Some(have), Some(want)) => have.size != want.size,
                    (Some(_), None) => false,
                }
            })
            .cloned()
            .collect()
    }
}

/// A SlateDB admin over a throw-away in-memory store holding `file` alone
/// (its `bytes`): SlateDB's own decoders, with no network and no retries.
async fn admin_holding(file: FileRef, bytes: Bytes) -> Result<slatedb::admin::Admin, String> {
    let store = Arc::new(InMemory::new());
    let root = Path::from("m");
    store
        .put(&file.path(&root), PutPayload::from(bytes))
        .await
        .map_err(|e| e.to_string())?;
    let store: Arc<dyn ObjectStore> = store;
    Ok(slatedb::admin::AdminBuilder::new(root, store).build())
}

/// The SSTs the compactions in flight of a `compactions/` file have
/// written so far (by ULID): not in any manifest yet, but a compactor that
/// takes the job over (at a new home, after a switchover) resumes from
/// them. Decoded with SlateDB's own decoder, as [`ManifestView::parse`].
pub async fn compaction_outputs(id: u64, bytes: Bytes) -> Result<BTreeSet<String>, String> {
    let compactions = admin_holding(FileRef::Compactions(id), bytes)
        .await?
        .read_compactions(Some(id))
        .await
        .map_err(|e| format!("compactions file {id} does not decode: {e}"))?
        .ok_or_else(|| format!("compactions file {id} vanished while decoding"))?;
    Ok(compactions
        .recent_compactions()
        .filter(|c| c.active())
        .flat_map(|c| {
            let done = c.output_ssts().into_iter();
            let partial = c
                .subcompactions()
                .iter()
                .flat_map(|s| s.output_ssts().clone())
                .collect::<Vec<_>>();
            done.chain(partial)
        })
        .map(|sst| sst.id.value().to_string())
        .collect())
}

/// The newest WAL id a reader of `manifest` reaches in `files`: the end of
/// the run of consecutive ids after the replay point (the replay point
/// itself when the next id is absent). Ids up to `vouched` count as present
/// without being in `files` (a cursor vouches for them; 0 vouches for none).
pub fn contiguous_wal_end(manifest: &ManifestView, files: &BranchFiles, vouched: u64) -> u64 {
    let mut end = manifest.replay_after_wal_id.max(vouched);
    for &id in files.wals.range(end + 1..).map(|(id, _)| id) {
        if id != end + 1 {
            break;
        }
        end = id;
    }
    end
}

/// The replica's consistent cut, judged against what the home holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutReport {
    /// The replica's newest manifest.
    pub manifest_id: u64,
    /// The newest WAL id a reader reaches.
    pub wal_end: u64,
    /// SSTs the manifest needs that are absent or the wrong size.
    pub missing_ssts: Vec<String>,
    /// WAL files above the reader's end that exist at the replica: a gap
    /// hides them from readers until it is filled.
    pub wal_beyond_gap: usize,
}

impl CutReport {
    pub fn of(
        manifest: &ManifestView,
        replica: &BranchFiles,
        home: &BranchFiles,
        vouched: u64,
    ) -> CutReport {
        let wal_end = contiguous_wal_end(manifest, replica, vouched);
        CutReport {
            manifest_id: manifest.id,
            wal_end,
            missing_ssts: manifest.missing_ssts(replica, home),
            wal_beyond_gap: replica.wals.range(wal_end + 1..).count(),
        }
    }

    /// Every file the newest manifest and its WAL range need is present.
    pub fn readable(&self) -> bool {
        self.missing_ssts.is_empty() && self.wal_beyond_gap == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::files::FileMeta;

    fn view(replay_after: u64) -> ManifestView {
        ManifestView {
            id: 3,
            replay_after_wal_id: replay_after,
            next_wal_id: replay_after + 1,
            writer_epoch: 1,
            ssts: ["A".repeat(26)].into_iter().collect(),
            external_ssts: 0,
            external: Default::default(),
            checkpoint_manifest_ids: vec![],
            last_l0_tick_ms: 0,
            last_l0_seq: 0,
        }
    }

    fn files(wals: &[u64], sst_size: Option<u64>) -> BranchFiles {
        let mut f = BranchFiles::default();
        let meta = |size| FileMeta {
            size,
            modified_us: 0,
        };
        for id in wals {
            f.insert(FileRef::Wal(*id), meta(10));
        }
        if let Some(size) = sst_size {
            f.insert(FileRef::Sst("A".repeat(26)), meta(size));
        }
        f
    }

    #[test]
    fn a_wal_gap_ends_what_readers_see() {
        let replica = files(&[4, 5, 6, 8, 9], Some(100));
        let home = files(&[4, 5, 6, 7, 8, 9], Some(100));
        let cut = CutReport::of(&view(4), &replica, &home, 0);
        assert_eq!(cut.wal_end, 6);
        assert_eq!(cut.wal_beyond_gap, 2);
        assert!(!cut.readable());
        let cut = CutReport::of(&view(4), &home, &home, 0);
        assert_eq!(cut.wal_end, 9);
        assert!(cut.readable());
        // A cursor vouching for 7 bridges the unlisted id.
        let cut = CutReport::of(&view(4), &replica, &home, 7);
        assert_eq!(cut.wal_end, 9);
    }

    #[test]
    fn an_sst_of_the_wrong_size_is_missing() {
        let home = files(&[], Some(100));
        assert_eq!(view(0).missing_ssts(&files(&[], Some(99)), &home).len(), 1);
        assert_eq!(view(0).missing_ssts(&files(&[], None), &home).len(), 1);
        assert!(
            view(0)
                .missing_ssts(&files(&[], Some(100)), &home)
                .is_empty()
        );
    }
}
