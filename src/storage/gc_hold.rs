//! The GC hold: a home never deletes what a replica still needs.
//!
//! SlateDB's garbage collector deletes a home's old manifests, WAL files,
//! compactions files and compacted-away SSTs once they are old enough.
//! A replica copying slowly, or paused, may still need them: the manifests
//! past the one it holds (it lands each in turn), the SSTs those manifests
//! name, the WAL past what it copied. Deleted under it, it would have to
//! skip states or reseed.
//!
//! So Lifeboat's writers run the collector with a [`HoldFilter`]: of the
//! files it would delete, it keeps each one a replica still needs, as the
//! copiers of this process last reported in the home region's notices
//! ([`GcHolds`]). A replica needs manifest N while it holds an older one;
//! WAL file N while it has not copied it; an SST while a manifest newer
//! than the one it holds names it (read from the home: the hold keeps
//! those manifests too). Each file is kept up to a bound the group sets
//! (`gc_hold`): past it, a replica that still lacks it reseeds instead,
//! and the home's storage stays bounded.
//!
//! Only this process's copiers are known: a writer in a process that
//! copies nothing (or whose copiers stopped longer ago than the bound)
//! holds nothing back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path;
use slatedb::ObjectMetadata;

use crate::storage::cut::ManifestView;
use crate::storage::files::{Dir, FileRef, RequestCounter, Side};

/// How long files are kept for a replica unless the group says otherwise.
pub const DEFAULT_GC_HOLD: Duration = Duration::from_secs(6 * 3600);

/// Manifest views the filter keeps decoded (manifests never change).
const VIEWS_KEPT: usize = 512;

/// What one replica holds of a home branch, as its copier last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The newest manifest landed at the replica.
    pub manifest_id: u64,
    /// Every WAL file up to this one is copied.
    pub wal_id: u64,
    /// The newest compactions file copied.
    pub compactions_id: u64,
    /// Files older than this are not kept for it (0: nothing is), nor
    /// anything for a report older than this (its copier stopped).
    pub bound: Duration,
}

/// A report, and when it came.
#[derive(Debug, Clone)]
struct Reported {
    held: Held,
    at: std::time::Instant,
}

/// What the replicas of this process's copiers hold, per home branch
/// (its folder), per replica region.
#[derive(Debug, Default)]
pub struct GcHolds {
    branches: Mutex<HashMap<String, BTreeMap<String, Reported>>>,
}

impl GcHolds {
    /// The copier of `replica` says what it holds of the branch at `base`.
    pub fn report(&self, base: &str, replica: &str, held: Held) {
        let reported = Reported {
            held,
            at: std::time::Instant::now(),
        };
        self.lock()
            .entry(base.to_string())
            .or_default()
            .insert(replica.to_string(), reported);
    }

    /// The copier of `replica` for the branch at `base` is gone for good
    /// (its flow was removed): nothing is kept for it any more.
    pub fn forget(&self, base: &str, replica: &str) {
        let mut branches = self.lock();
        if let Some(replicas) = branches.get_mut(base) {
            replicas.remove(replica);
            if replicas.is_empty() {
                branches.remove(base);
            }
        }
    }

    /// What each replica of the branch at `base` holds, as its copier said
    /// within the bound.
    pub fn of(&self, base: &str) -> BTreeMap<String, Held> {
        self.lock()
            .get(base)
            .map(|replicas| {
                replicas
                    .iter()
                    .filter(|(_, r)| r.at.elapsed() <= r.held.bound)
                    .map(|(name, r)| (name.clone(), r.held.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, Reported>>> {
        self.branches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SlateDB's garbage collector asks it which candidates may go; see the
/// module's doc.
pub struct HoldFilter {
    base: Path,
    store: Arc<dyn ObjectStore>,
    region: String,
    holds: Arc<GcHolds>,
    views: Mutex<BTreeMap<u64, Arc<BTreeSet<String>>>>,
}

/// A GC candidate, by what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Candidate {
    Manifest(u64),
    Wal(u64),
    Compactions(u64),
    Sst(String),
    Other,
}

impl Candidate {
    /// From its path: `.../<folder>/<name>.<ext>`.
    fn of(path: &Path) -> Candidate {
        let parts: Vec<_> = path.parts().collect();
        let [.., folder, name] = parts.as_slice() else {
            return Candidate::Other;
        };
        let (stem, _) = name.as_ref().split_once('.').unwrap_or((name.as_ref(), ""));
        let number = || stem.parse::<u64>().ok();
        match folder.as_ref() {
            "manifest" => number().map_or(Candidate::Other, Candidate::Manifest),
            "wal" => number().map_or(Candidate::Other, Candidate::Wal),
            "compactions" => number().map_or(Candidate::Other, Candidate::Compactions),
            "compacted" => Candidate::Sst(stem.to_string()),
            _ => Candidate::Other,
        }
    }
}

impl HoldFilter {
    pub fn new(region: &str, base: Path, store: Arc<dyn ObjectStore>, holds: Arc<GcHolds>) -> Self {
        HoldFilter {
            base,
            store,
            region: region.to_string(),
            holds,
            views: Mutex::new(BTreeMap::new()),
        }
    }

    /// The SSTs named by the home's manifests newer than `after`; `None`
    /// when they could not be read (then every SST is kept).
    async fn named_after(&self, after: u64) -> Option<BTreeSet<String>> {
        let side = Side {
            region: self.region.clone(),
            store: Arc::clone(&self.store),
            base: self.base.clone(),
            requests: Arc::new(RequestCounter::default()),
        };
        let listed = side
            .list(Dir::Manifest, Some(&FileRef::Manifest(after)))
            .await
            .ok()?;
        // Views of manifests no replica lands any more go first.
        self.views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| *id > after);
        let mut named = BTreeSet::new();
        for (file, _) in listed {
            let FileRef::Manifest(id) = file else {
                continue;
            };
            let cached = self
                .views
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .cloned();
            let ssts = match cached {
                Some(ssts) => ssts,
                None => {
                    // Gone since the listing: no replica lands it now.
                    let Some(bytes) = side.read(&file).await.ok()? else {
                        continue;
                    };
                    let view = ManifestView::parse(id, bytes).await.ok()?;
                    let ssts = Arc::new(view.ssts);
                    let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
                    views.insert(id, Arc::clone(&ssts));
                    // Past the cap, the newest go (the oldest are read first
                    // on every run).
                    while views.len() > VIEWS_KEPT {
                        views.pop_last();
                    }
                    ssts
                }
            };
            named.extend(ssts.iter().cloned());
        }
        Some(named)
    }
}

#[async_trait::async_trait]
impl slatedb::GcFilter for HoldFilter {
    async fn filter(&self, candidates: HashSet<ObjectMetadata>) -> HashSet<ObjectMetadata> {
        let replicas: Vec<Held> = self
            .holds
            .of(self.base.as_ref())
            .into_values()
            .filter(|h| !h.bound.is_zero())
            .collect();
        if replicas.is_empty() {
            return candidates;
        }
        let now = chrono::Utc::now();
        let age = |meta: &ObjectMetadata| (now - meta.last_modified).to_std().unwrap_or_default();
        // The SSTs the manifests past the oldest held one name, read once.
        let wants_ssts = candidates
            .iter()
            .any(|c| matches!(Candidate::of(&c.location), Candidate::Sst(_)));
        let oldest_manifest = replicas.iter().map(|h| h.manifest_id).min().unwrap_or(0);
        let named = if wants_ssts {
            self.named_after(oldest_manifest).await
        } else {
            Some(BTreeSet::new())
        };
        let needs = |held: &Held, candidate: &Candidate| match candidate {
            Candidate::Manifest(id) => *id > held.manifest_id,
            Candidate::Wal(id) => *id > held.wal_id,
            Candidate::Compactions(id) => *id > held.compactions_id,
            Candidate::Sst(ulid) => named.as_ref().is_none_or(|n| n.contains(ulid)),
            Candidate::Other => false,
        };
        let asked = candidates.len();
        let allowed: HashSet<ObjectMetadata> = candidates
            .into_iter()
            .filter(|meta| {
                let candidate = Candidate::of(&meta.location);
                !replicas
                    .iter()
                    .any(|held| age(meta) <= held.bound && needs(held, &candidate))
            })
            .collect();
        if allowed.len() < asked {
            tracing::debug!(
                branch = %self.base,
                kept = asked - allowed.len(),
                released = allowed.len(),
                "the GC hold keeps files a replica still needs"
            );
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_told_apart_by_their_folder() {
        let of = |p: &str| Candidate::of(&Path::from(p));
        assert_eq!(
            of("dbs/o/main/manifest/00000000000000000012.manifest"),
            Candidate::Manifest(12)
        );
        assert_eq!(
            of("dbs/o/main/wal/00000000000000000007.sst"),
            Candidate::Wal(7)
        );
        assert_eq!(
            of("dbs/o/main/compactions/00000000000000000003.compactions"),
            Candidate::Compactions(3)
        );
        assert_eq!(
            of("dbs/o/main/compacted/01J0000000000000000000000A.sst"),
            Candidate::Sst("01J0000000000000000000000A".into())
        );
        assert_eq!(of("dbs/o/main/gc/boundary"), Candidate::Other);
    }

    #[tokio::test]
    async fn it_keeps_what_a_replica_lacks_up_to_the_bound_and_nothing_without_one() {
        use slatedb::GcFilter;
        let holds = Arc::new(GcHolds::default());
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let filter = HoldFilter::new("r", Path::from("dbs/o/main"), store, Arc::clone(&holds));
        let file = |p: &str, age_s: i64| ObjectMetadata {
            location: Path::from(format!("dbs/o/main/{p}")),
            last_modified: chrono::Utc::now() - chrono::Duration::seconds(age_s),
            size: 1,
            e_tag: None,
            version: None,
        };
        let candidates: HashSet<ObjectMetadata> = [
            file("manifest/00000000000000000004.manifest", 10),
            file("manifest/00000000000000000005.manifest", 10),
            file("wal/00000000000000000009.sst", 10),
            file("wal/00000000000000000010.sst", 10),
            file("compactions/00000000000000000002.compactions", 10),
            // Older than the bound: let go though the replica lacks it.
            file("manifest/00000000000000000006.manifest", 7200),
        ]
        .into_iter()
        .collect();
        let paths = |set: HashSet<ObjectMetadata>| {
            let mut names: Vec<String> = set
                .into_iter()
                .map(|m| m.location.filename().unwrap_or_default().to_string())
                .collect();
            names.sort();
            names
        };
        // No copier here: everything may go.
        assert_eq!(
            filter.filter(candidates.clone()).await.len(),
            candidates.len()
        );
        holds.report(
            "dbs/o/main",
            "eu-west-1",
            Held {
                manifest_id: 4,
                wal_id: 9,
                compactions_id: 2,
                bound: Duration::from_secs(3600),
            },
        );
        assert_eq!(
            paths(filter.filter(candidates.clone()).await),
            [
                "00000000000000000002.compactions",
                "00000000000000000004.manifest",
                "00000000000000000006.manifest",
                "00000000000000000009.sst",
            ]
        );
        // A flow removed keeps nothing.
        holds.forget("dbs/o/main", "eu-west-1");
        assert_eq!(
            filter.filter(candidates.clone()).await.len(),
            candidates.len()
        );
    }
}
