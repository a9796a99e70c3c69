//! Deleting a database in one region, as a plan first: what goes (every
//! branch, with its files and bytes), what stays (its copies elsewhere),
//! and what argues against it (a writer at work, a replication group that
//! copies it). The deletion fences every writer before a file goes, removes
//! the manifests first (so nothing can open half a database) and sweeps
//! until the folder is empty; an interrupted deletion is finished by
//! running it again.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use serde::Serialize;

use super::human_bytes;
use super::{ADMIN_TIMEOUT, DBS_PREFIX, DbLocation};
use crate::engine::group::GroupConfig;
use crate::error::{Error, Result};
use crate::region::Region;
use crate::region::retry::retrying;
use crate::storage::cursor::{self, REPLICATION_PREFIX};

/// How long the plan watches for new WAL files: a writer at work flushes
/// its WAL every 100 ms while it takes writes.
pub const WRITER_WATCH: Duration = Duration::from_millis(1500);

/// One branch of the database in the region.
#[derive(Debug, Clone, Serialize)]
pub struct BranchPlan {
    pub branch: String,
    pub objects: u64,
    pub bytes: u64,
    /// Whether the branch holds a manifest (else: remains of a deletion).
    pub has_manifest: bool,
    /// The home of the branch when it is a replica here.
    pub replica_of: Option<String>,
    /// When the branch's newest file was written (µs since epoch).
    pub newest_us: Option<u64>,
    /// WAL files that appeared while the plan watched ([`WRITER_WATCH`]):
    /// any means a writer at work.
    pub new_wal_files: u64,
}

/// What deleting a database in one region would do.
#[derive(Debug, Clone, Serialize)]
pub struct DeletePlan {
    pub db: String,
    pub region: String,
    pub branches: Vec<BranchPlan>,
    /// Lifeboat's own objects of the database here (replica cursors, the
    /// shadow parents of forks), deleted too.
    pub bookkeeping: u64,
    /// Other regions that hold a copy of it; those copies stay.
    pub kept_in: Vec<String>,
    /// Why the deletion should not go ahead without `--force`.
    pub refusals: Vec<String>,
}

impl DeletePlan {
    /// `orders in us-east-1: branch main (1,234 files, 12.3 MiB), ...; its copy in eu-west-1 stays`.
    pub fn describe(&self) -> String {
        let branches: Vec<String> = self
            .branches
            .iter()
            .map(|b| {
                let mut text = format!(
                    "branch {} ({} files, {})",
                    b.branch,
                    b.objects,
                    human_bytes(b.bytes)
                );
                if let Some(home) = &b.replica_of {
                    text.push_str(&format!(", a replica of {home}"));
                }
                if !b.has_manifest {
                    text.push_str(", remains of a deletion");
                }
                text
            })
            .collect();
        let mut text = format!(
            "{} in {}: {}",
            self.db,
            self.region,
            if branches.is_empty() {
                "nothing".to_string()
            } else {
                branches.join(", ")
            }
        );
        if !self.kept_in.is_empty() {
            text.push_str(&format!("; its copy in {} stays", self.kept_in.join(", ")));
        }
        text
    }
}

/// The plan for deleting `db` in `region`; `others` are the other regions
/// (where copies may stay), `group` the saved replication group. `Err`
/// when the region holds nothing of it.
pub async fn plan(
    region: &Region,
    others: &[Region],
    db: &str,
    group: Option<&GroupConfig>,
) -> Result<DeletePlan> {
    crate::region::validate_name("database", db)?;
    let store = region.store();
    let prefix = Path::from(DBS_PREFIX).join(db);
    let listed: Vec<object_store::ObjectMeta> = list_under(region, &prefix).await?;
    let mut branches: BTreeMap<String, BranchPlan> = BTreeMap::new();
    for meta in &listed {
        let Some(branch) = meta
            .location
            .prefix_match(&prefix)
            .and_then(|mut p| p.next())
        else {
            continue;
        };
        let branch = branch.as_ref().to_string();
        let plan = branches
            .entry(branch.clone())
            .or_insert_with(|| BranchPlan {
                branch,
                objects: 0,
                bytes: 0,
                has_manifest: false,
                replica_of: None,
                newest_us: None,
                new_wal_files: 0,
            });
        plan.objects += 1;
        plan.bytes += meta.size;
        plan.has_manifest |= meta.location.as_ref().contains("/manifest/");
        let modified = meta.last_modified.timestamp_micros().max(0) as u64;
        plan.newest_us = Some(plan.newest_us.map_or(modified, |n| n.max(modified)));
    }
    // A second look: new WAL files mean a writer at work.
    if branches
        .values()
        .any(|b| b.replica_of.is_none() && b.has_manifest)
    {
        tokio::time::sleep(WRITER_WATCH).await;
        let again: Vec<object_store::ObjectMeta> = list_under(region, &prefix).await?;
        let before: std::collections::BTreeSet<&Path> =
            listed.iter().map(|m| &m.location).collect();
        for meta in again
            .iter()
            .filter(|m| m.location.as_ref().contains("/wal/"))
        {
            if before.contains(&meta.location) {
                continue;
            }
            let branch = meta
                .location
                .prefix_match(&prefix)
                .and_then(|mut p| p.next());
            if let Some(plan) = branch.and_then(|b| branches.get_mut(b.as_ref())) {
                plan.new_wal_files += 1;
            }
        }
    }
    for plan in branches.values_mut() {
        plan.replica_of = cursor::load(&store, region.name(), db, &plan.branch)
            .await?
            .map(|c| c.home);
    }
    let bookkeeping = bookkeeping(region, db).await?.len() as u64;
    if branches.is_empty() && bookkeeping == 0 {
        return Err(Error::DatabaseNotFound {
            db: db.to_string(),
            region: region.name().to_string(),
        });
    }
    let mut kept_in = Vec::new();
    for other in others.iter().filter(|o| o.name() != region.name()) {
        let found = crate::storage::list_databases(other).await;
        if found.is_ok_and(|dbs| dbs.iter().any(|(name, _)| name == db)) {
            kept_in.push(other.name().to_string());
        }
    }
    let mut refusals = Vec::new();
    for (name, b) in &branches {
        if b.replica_of.is_some() || !b.has_manifest || b.new_wal_files == 0 {
            continue;
        }
        refusals.push(format!(
            "a writer is at work on branch {name} ({} new WAL files in {:.1} s; stop it first, or --force fences it)",
            b.new_wal_files,
            WRITER_WATCH.as_secs_f64()
        ));
    }
    if let Some(group) = group
        && group.databases.includes(db)
        && !group.held.contains(db)
        && (group.primary == region.name() || group.secondary == region.name())
    {
        let why = if group.primary == region.name() {
            format!(
                "replication copies it to {} and would delete that copy too",
                group.secondary
            )
        } else {
            format!(
                "replication copies it here from {} and would copy it again",
                group.primary
            )
        };
        refusals.push(format!(
            "it is in the replication group {} → {}: {why} (pause it first with `lifeboat group pause {db}`)",
            group.primary, group.secondary
        ));
    }
    Ok(DeletePlan {
        db: db.to_string(),
        region: region.name().to_string(),
        branches: branches.into_values().collect(),
        bookkeeping,
        kept_in,
        refusals,
    })
}

/// Lifeboat's own objects of `db` in `region`: replica cursors and shadow
/// parents.
async fn bookkeeping(region: &Region, db: &str) -> Result<Vec<Path>> {
    let mut paths = Vec::new();
    for prefix in [
        Path::from(REPLICATION_PREFIX).join(db),
        Path::from(crate::region::shadow::SHADOW_PREFIX).join(db),
    ] {
        let listed: Vec<object_store::ObjectMeta> = list_under(region, &prefix).await?;
        paths.extend(listed.into_iter().map(|m| m.location));
    }
    Ok(paths)
}

/// Carries out `plan`: fences the writer of every branch homed here, then
/// deletes manifests first, then every other file, then Lifeboat's own
/// objects, and sweeps again until nothing is left (a writer that was not
/// fenced in time may still have put a file). The count of objects deleted.
pub async fn delete(region: &Region, plan: &DeletePlan) -> Result<u64> {
    for branch in plan
        .branches
        .iter()
        .filter(|b| b.replica_of.is_none() && b.has_manifest)
    {
        let location = DbLocation::branch_in_region(region, &plan.db, &branch.branch)?;
        // Opening a writer fences the one at work: from now on its writes
        // fail instead of being acknowledged.
        let fence = location.open_writer(false).await?;
        location
            .bounded("close", ADMIN_TIMEOUT, fence.close())
            .await?;
    }
    let prefix = Path::from(DBS_PREFIX).join(plan.db.as_str());
    let mut deleted = 0;
    let mut quiet_rounds = 0;
    for _ in 0..10 {
        let listed: Vec<object_store::ObjectMeta> = list_under(region, &prefix).await?;
        let mut paths: Vec<Path> = listed.into_iter().map(|m| m.location).collect();
        // The newest WAL file of each branch is the fence: a fenced writer
        // learns it is fenced when it tries to put that name. It goes last,
        // once a round found nothing else (no writer put a file since).
        let fences = newest_wal_files(&paths);
        let others: Vec<Path> = paths
            .iter()
            .filter(|p| !fences.contains(p))
            .cloned()
            .collect();
        if others.is_empty() {
            quiet_rounds += 1;
        } else {
            quiet_rounds = 0;
        }
        if quiet_rounds >= 2 || (quiet_rounds == 1 && fences.is_empty()) {
            paths.extend(bookkeeping(region, &plan.db).await?);
            deleted += delete_all(region, paths).await?;
            return Ok(deleted);
        }
        deleted += delete_all(region, others).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::Failed(format!(
        "files of {} keep appearing in {} after its deletion: a writer that cannot be fenced is at work; stop it and run the deletion again",
        plan.db,
        region.name()
    )))
}

/// Every object under `prefix` in `region`.
async fn list_under(region: &Region, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>> {
    let store = region.store();
    retrying(|| store.list(Some(prefix)).try_collect())
        .await
        .map_err(|e| Error::store(region.name(), &format!("listing {prefix}"), &e))
}

/// The newest WAL file of each branch among `paths`.
fn newest_wal_files(paths: &[Path]) -> Vec<Path> {
    let mut newest: BTreeMap<String, &Path> = BTreeMap::new();
    for path in paths.iter().filter(|p| p.as_ref().contains("/wal/")) {
        let branch = path
            .as_ref()
            .split("/wal/")
            .next()
            .unwrap_or_default()
            .to_string();
        let entry = newest.entry(branch).or_insert(path);
        if path.as_ref() > entry.as_ref() {
            *entry = path;
        }
    }
    newest.into_values().cloned().collect()
}

/// Deletes `paths`, manifests first (a reader or writer opening the
/// database meanwhile finds none, never a manifest without its files).
async fn delete_all(region: &Region, mut paths: Vec<Path>) -> Result<u64> {
    let store = region.store();
    paths.sort_by_key(|p| !p.as_ref().contains("/manifest/"));
    for path in &paths {
        crate::region::objects::delete_if_present(store.as_ref(), path)
            .await
            .map_err(|e| Error::store(region.name(), &format!("deleting {path}"), &e))?;
    }
    Ok(paths.len() as u64)
}
