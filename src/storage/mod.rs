//! SlateDB knowledge: where a database's branches live in a region, the
//! settings that work on every kind of store, and how to open, describe and
//! delete them.
//!
//! A database `orders` is a tree of branches; each branch is one SlateDB
//! database at `dbs/orders/<branch>/` in a region's store. A new database
//! has one branch, `main`.
//!
//! Invariant kept here: every SlateDB client this crate opens has bounded
//! object-store retries, so an unreachable region fails an operation
//! instead of hanging it (SlateDB retries forever by default).

pub mod compactor;
pub mod cursor;
pub mod cut;
pub mod delete;
pub mod files;
pub mod fork;
pub mod gc_hold;
pub mod pitr;
pub mod view;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use serde::Serialize;
use slatedb::config::{
    CompactorOptions, DbReaderOptions, GarbageCollectorDirectoryOptions, GarbageCollectorOptions,
    Settings,
};
use slatedb::{Db, DbReader, DbReaderMode};

use crate::error::{Error, Result};
use crate::region::meter::{Notices, WriterMark};
use crate::region::retry::retrying;
use crate::region::{Region, RegionUrl, validate_name};

/// The branch a new database starts with.
pub const MAIN_BRANCH: &str = "main";

pub use crate::region::objects::DBS_PREFIX;

/// Retries SlateDB makes on one object-store call before it gives up.
pub const SLATEDB_MAX_RETRIES: u32 = 3;

/// Bound on a SlateDB admin call, which has no retry limit of its own.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The default point-in-time window.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The environment variable that sets the point-in-time window (`48h`).
pub const RETENTION_ENV: &str = "LIFEBOAT_RETENTION";

/// The point-in-time window: Lifeboat's writers keep WAL files this long
/// and the home's scheduled checkpoints live this long (storage::pitr).
/// `LIFEBOAT_RETENTION` sets it (at least a minute); a value that does
/// not parse is reported once and the default holds.
pub fn retention() -> Duration {
    static RETENTION: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *RETENTION.get_or_init(|| match std::env::var(RETENTION_ENV) {
        Err(_) => DEFAULT_RETENTION,
        Ok(text) => match humantime::parse_duration(text.trim()) {
            Ok(d) if d >= Duration::from_secs(60) => d,
            _ => {
                tracing::warn!(
                    "{RETENTION_ENV}={text} is not a duration of a minute or more (write it like 48h); keeping {} h",
                    DEFAULT_RETENTION.as_secs() / 3600
                );
                DEFAULT_RETENTION
            }
        },
    })
}

/// Bound on opening a database (a writer or a reader).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Looks `describe` takes at most before it reports a WAL gap that keeps
/// moving (a replicator in full flow).
const DESCRIBE_LOOKS: usize = 5;

/// The longest a Lifeboat writer leaves acknowledged writes in the WAL
/// alone before it flushes its memtable to an L0 SST. SlateDB flushes a
/// memtable only when it is full (64 MiB), so a steady writer's WAL tail
/// past its manifest grew with time (892 files after 90 s at 3,000
/// writes/s), and a failover forks that whole tail and replays it. Ten
/// seconds keep the tail to a few hundred files at most, at the cost of an
/// SST and a manifest written every ten seconds while writes come.
pub const MEMTABLE_AGE_BOUND: Duration = Duration::from_secs(10);

/// Flushes `db`'s memtable every `every` while writes came since the last
/// flush, so that the WAL tail past its newest manifest stays short (see
/// [`MEMTABLE_AGE_BOUND`]). Returns when the database closes; the caller
/// aborts it when it closes the database itself.
pub async fn bound_memtable_age(db: Db, every: Duration) {
    let options = slatedb::config::FlushOptions {
        flush_type: slatedb::config::FlushType::MemTable,
    };
    let mut flushed_to = db.status().durable_seq;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let durable = db.status().durable_seq;
        if durable <= flushed_to {
            continue;
        }
        match db.flush_with_options(options.clone()).await {
            Ok(()) => flushed_to = durable,
            Err(e) if matches!(e.kind(), slatedb::ErrorKind::Closed(_)) => return,
            // The next tick tries again; the writes stay in the WAL, durable.
            Err(e) => tracing::warn!("memtable flush failed (tried again in {every:?}): {e}"),
        }
    }
}

/// One SlateDB database in one store: a branch of a database in a region,
/// or a copy at any URL. `label` names the place in messages.
#[derive(Debug, Clone)]
pub struct DbLocation {
    /// The region name, or the URL for a copy outside any region.
    pub label: String,
    /// The database name (for messages and for matching workload logs).
    pub db: String,
    /// The branch name.
    pub branch: String,
    /// The store that holds it.
    pub store: Arc<dyn ObjectStore>,
    /// The database's path in that store.
    pub path: Path,
    /// Whether the store supports If-Match updates (GC boundary files).
    pub if_match: bool,
    /// The notices of the region it lies in (where a writer says it holds
    /// the branch, so the replicator need not poll it).
    pub notices: Option<Arc<Notices>>,
}

impl DbLocation {
    /// The `main` branch of database `db` in `region`.
    pub fn in_region(region: &Region, db: &str) -> Result<DbLocation> {
        Self::branch_in_region(region, db, MAIN_BRANCH)
    }

    /// Branch `branch` of database `db` in `region`.
    pub fn branch_in_region(region: &Region, db: &str, branch: &str) -> Result<DbLocation> {
        validate_name("database", db)?;
        validate_name("branch", branch)?;
        Ok(DbLocation {
            label: region.name().to_string(),
            db: db.to_string(),
            branch: branch.to_string(),
            store: region.store(),
            path: branch_path(db, branch),
            if_match: region.location().supports_if_match(),
            notices: Some(Arc::clone(region.notices())),
        })
    }

    /// A database whose files (`manifest/`, `wal/`, ...) sit directly under
    /// the store of `region` (a copy opened by URL).
    pub fn at_root(region: &Region, db: &str) -> DbLocation {
        DbLocation {
            label: region.spec().url.clone(),
            db: db.to_string(),
            branch: MAIN_BRANCH.to_string(),
            store: region.store(),
            path: Path::from(""),
            if_match: region.location().supports_if_match(),
            notices: Some(Arc::clone(region.notices())),
        }
    }

    fn sub(&self, dir: &str) -> Path {
        if self.path.as_ref().is_empty() {
            Path::from(dir)
        } else {
            self.path.clone().join(dir)
        }
    }

    fn db_error(&self, op: &str, err: &slatedb::Error) -> Error {
        Error::database(&self.label, &self.db, op, err)
    }

    fn store_error(&self, op: &str, err: &object_store::Error) -> Error {
        Error::store(&self.label, op, err)
    }

    /// Runs a SlateDB call with a time bound, naming the operation on failure.
    pub(crate) async fn bounded<T>(
        &self,
        op: &str,
        limit: Duration,
        call: impl Future<Output = std::result::Result<T, slatedb::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.db_error(op, &err)),
            Err(_) => Err(Error::Database {
                region: self.label.clone(),
                db: self.db.clone(),
                op: op.to_string(),
                detail: format!(
                    "no answer within {}s; check that the region is reachable",
                    limit.as_secs()
                ),
            }),
        }
    }

    /// Every object under the database's path, or under its folder `dir`.
    async fn list(&self, dir: Option<&str>) -> Result<Vec<ObjectMeta>> {
        let prefix = match dir {
            Some(dir) => Some(self.sub(dir)),
            None => (!self.path.as_ref().is_empty()).then(|| self.path.clone()),
        };
        retrying(|| self.store.list(prefix.as_ref()).try_collect::<Vec<_>>())
            .await
            .map_err(|e| {
                let what = prefix
                    .as_ref()
                    .map_or("the store root".into(), Path::to_string);
                self.store_error(&format!("listing {what}"), &e)
            })
    }

    /// `(id, size)` of the objects in `listing` named `{id:020}.{ext}`
    /// directly in the folder `dir`, ascending by id.
    fn numbered(&self, listing: &[ObjectMeta], dir: &str, ext: &str) -> Vec<(u64, u64)> {
        let folder = self.sub(dir);
        let mut ids: Vec<(u64, u64)> = listing
            .iter()
            .filter_map(|m| {
                let name = name_in(&folder, &m.location)?;
                let id = name.strip_suffix(ext)?.strip_suffix('.')?;
                Some((id.parse::<u64>().ok()?, m.size))
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Ids and sizes of the objects in `dir` named `{id:020}.{ext}`, ascending.
    pub async fn list_ids(&self, dir: &str, ext: &str) -> Result<Vec<(u64, u64)>> {
        Ok(self.numbered(&self.list(Some(dir)).await?, dir, ext))
    }

    /// Whether a database exists here (it has at least one manifest).
    pub async fn exists(&self) -> Result<bool> {
        Ok(!self.list_ids("manifest", "manifest").await?.is_empty())
    }

    /// Fails with a "does not exist" error unless the database exists.
    pub async fn require(&self) -> Result<()> {
        if self.exists().await? {
            Ok(())
        } else {
            Err(Error::DatabaseNotFound {
                db: self.db.clone(),
                region: self.label.clone(),
            })
        }
    }

    /// SlateDB settings for a writer here.
    pub fn settings(&self) -> Settings {
        db_settings(self.if_match)
    }

    /// Opens the one writer of this database (creating it when `create`).
    /// Opening fences any earlier writer of the same branch.
    /// Refuses a branch that is a replica here (invariants 1 and 4): a
    /// replica is written by the replicator alone.
    pub async fn open_writer(&self, create: bool) -> Result<Db> {
        self.open_writer_with(create, self.settings()).await
    }

    /// Opens the writer with `settings` (which should come from
    /// [`db_settings`] or [`churn_settings`]: both bound retries).
    pub async fn open_writer_with(&self, create: bool, settings: Settings) -> Result<Db> {
        // Both looks at once: each is a round trip to the store, and a
        // failover's writer opens on the path of its RTO.
        let exists = async { if create { Ok(()) } else { self.require().await } };
        tokio::try_join!(exists, self.require_home())?;
        self.open_checked_writer(settings).await
    }

    /// Opens the writer of a branch the caller has just seen here and seen
    /// not to be a replica (what [`Self::open_writer_with`] checks first):
    /// no second look on a failover's path.
    pub async fn open_checked_writer(&self, mut settings: Settings) -> Result<Db> {
        let mut builder = Db::builder(self.path.clone(), Arc::clone(&self.store));
        // The collector keeps what this process's replicas still need.
        if let (Some(notices), Some(options)) =
            (&self.notices, settings.garbage_collector_options.take())
        {
            let filter = gc_hold::HoldFilter::new(
                &self.label,
                self.path.clone(),
                Arc::clone(&self.store),
                Arc::clone(&notices.holds),
            );
            builder = builder.with_gc_builder(
                slatedb::GarbageCollectorBuilder::new(self.path.clone(), Arc::clone(&self.store))
                    .with_options(options)
                    .with_gc_filter(Arc::new(filter)),
            );
        }
        // Boxed: SlateDB's open is a large future.
        let build = Box::pin(builder.with_settings(settings).build());
        self.bounded("open writer", OPEN_TIMEOUT, build).await
    }

    /// Says that a writer of this process holds this branch open until the
    /// mark is dropped: the replicator then copies each file it writes as
    /// it lands, and does not poll the branch (long-lived writers:
    /// workspaces, workloads).
    pub fn mark_writer(&self) -> Option<WriterMark> {
        self.notices.as_ref().map(|n| n.writer(&self.path))
    }

    /// Opens a read-only reader that follows the newest manifest and WAL and
    /// never writes (safe on a replica).
    pub async fn open_reader(&self) -> Result<DbReader> {
        self.require().await?;
        self.open_reader_as(DbReaderMode::FollowLatest, reader_options())
            .await
    }

    /// Opens a reader of a live home for one long read (a verification),
    /// pinned to a checkpoint it makes first: a pinned reader never polls,
    /// so it never moves off that state, and the home's garbage collector
    /// cannot delete an SST under a scan however long it takes. (SlateDB's
    /// managed-checkpoint reader polls once at open and may replace its
    /// checkpoint with a newer state while a scan still reads the old one;
    /// a soak under load lost a compacted L0 that way.) It writes the
    /// home's manifest: never use it on a replica or a copy. Release it
    /// with [`PinnedReader::release`]; its checkpoint expires by itself if
    /// the process dies.
    pub async fn open_home_reader(&self) -> Result<PinnedReader> {
        self.require().await?;
        self.require_home().await?;
        let admin =
            slatedb::admin::AdminBuilder::new(self.path.clone(), Arc::clone(&self.store)).build();
        let options = slatedb::config::CheckpointOptions {
            lifetime: Some(HOME_READ_HOLD * 5 / 2),
            source: None,
            name: Some("lifeboat-read".into()),
        };
        let made = self
            .bounded(
                "pin the home for a read",
                ADMIN_TIMEOUT,
                admin.create_detached_checkpoint(&options),
            )
            .await?;
        match self
            .open_reader_as(DbReaderMode::Checkpoint(made.id), reader_options())
            .await
        {
            Ok(reader) => Ok(PinnedReader {
                reader,
                checkpoint: made.id,
                admin,
                label: self.label.clone(),
            }),
            Err(e) => {
                unpin(&admin, made.id, &self.label).await;
                Err(e)
            }
        }
    }

    async fn open_reader_as(
        &self,
        mode: DbReaderMode,
        options: DbReaderOptions,
    ) -> Result<DbReader> {
        let build = DbReader::builder(self.path.clone(), Arc::clone(&self.store))
            .with_reader_mode(mode)
            .with_options(options)
            .build();
        self.bounded("open reader", OPEN_TIMEOUT, build).await
    }

    /// Fails when a replication cursor marks this branch as a replica here.
    pub async fn require_home(&self) -> Result<()> {
        let found =
            crate::storage::cursor::load(&self.store, &self.label, &self.db, &self.branch).await?;
        match found {
            Some(cursor) => Err(Error::Invalid(format!(
                "{}/{} in region `{}` is a replica of region `{}`; write at its home (--region {})",
                self.db, self.branch, self.label, cursor.home, cursor.home
            ))),
            None => Ok(()),
        }
    }

    /// Creates the database: fails if one is already here.
    pub async fn create(&self) -> Result<BranchInfo> {
        if self.exists().await? {
            return Err(Error::DatabaseExists {
                db: self.db.clone(),
                region: self.label.clone(),
            });
        }
        let remains: Vec<ObjectMeta> = retrying(|| self.store.list(Some(&self.path)).try_collect())
            .await
            .map_err(|e| Error::store(&self.label, &format!("listing {}", self.path), &e))?;
        if !remains.is_empty() {
            return Err(Error::invalid(format!(
                "region `{}` holds the remains of a deleted database `{}` ({} files, no manifest); clear them with `lifeboat db delete {} --region {} --yes`",
                self.label,
                self.db,
                remains.len(),
                self.db,
                self.label
            )));
        }
        let db = self.open_writer(true).await?;
        self.bounded("close", ADMIN_TIMEOUT, db.close()).await?;
        self.describe().await
    }

    /// Size, newest manifest, WAL range and writer epoch.
    ///
    /// A WAL gap is reported only when two looks in a row agree on it. One
    /// listing is not a snapshot: it reads `manifest/` before `wal/`, so a
    /// replicator that meanwhile copies a newer manifest and then the WAL
    /// past it (skipping WAL the home already collected, which the new
    /// manifest covers) shows an old manifest with a gap above it. A reader
    /// caught the same way stops at the gap and sees an older state, never
    /// a wrong one; a real hole stays put and is seen twice.
    pub async fn describe(&self) -> Result<BranchInfo> {
        let mut previous: Option<BranchInfo> = None;
        for _ in 0..DESCRIBE_LOOKS {
            let info = self.describe_once().await?;
            let settled = previous.as_ref().is_some_and(|p| {
                p.newest_manifest_id == info.newest_manifest_id && p.wal_gaps == info.wal_gaps
            });
            if info.wal_gaps.is_empty() || settled {
                return Ok(info);
            }
            previous = Some(info);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        previous.ok_or_else(|| Error::Failed("describe made no look".into()))
    }

    async fn describe_once(&self) -> Result<BranchInfo> {
        // One listing gives the size, the manifests and the WAL files.
        let listing = self.list(None).await?;
        let manifests = self.numbered(&listing, "manifest", "manifest");
        let Some(&(newest_manifest_id, _)) = manifests.last() else {
            return Err(Error::DatabaseNotFound {
                db: self.db.clone(),
                region: self.label.clone(),
            });
        };
        let wals = self.numbered(&listing, "wal", "sst");
        let size_bytes = listing.iter().map(|m| m.size).sum();
        let object_count = listing.len() as u64;
        let admin =
            slatedb::admin::AdminBuilder::new(self.path.clone(), Arc::clone(&self.store)).build();
        let manifest = self
            .bounded(
                "read manifest",
                ADMIN_TIMEOUT,
                admin.read_manifest(Some(newest_manifest_id)),
            )
            .await?
            .ok_or_else(|| Error::Database {
                region: self.label.clone(),
                db: self.db.clone(),
                op: "read manifest".into(),
                detail: format!("manifest {newest_manifest_id} vanished while being read; retry"),
            })?;
        Ok(BranchInfo {
            region: self.label.clone(),
            db: self.db.clone(),
            branch: self.branch.clone(),
            size_bytes,
            object_count,
            newest_manifest_id,
            manifest_count: manifests.len() as u64,
            oldest_wal_id: wals.first().map(|w| w.0),
            newest_wal_id: wals.last().map(|w| w.0),
            wal_gaps: wal_gaps(&wals, manifest.replay_after_wal_id()),
            replay_after_wal_id: manifest.replay_after_wal_id(),
            next_wal_id: manifest.next_wal_sst_id(),
            writer_epoch: manifest.writer_epoch(),
            checkpoints: manifest.checkpoints().len() as u64,
        })
    }

    /// Deletes every object of the database. Returns how many were deleted.
    pub async fn delete(&self) -> Result<u64> {
        self.require().await?;
        let admin =
            slatedb::admin::AdminBuilder::new(self.path.clone(), Arc::clone(&self.store)).build();
        let deleted = self
            .bounded("delete", ADMIN_TIMEOUT * 4, admin.delete_db(true))
            .await?;
        Ok(deleted.len() as u64)
    }
}

/// The name of `location` when it lies directly in `folder`.
pub(crate) fn name_in(folder: &Path, location: &Path) -> Option<String> {
    let mut parts = location.prefix_match(folder)?;
    let name = parts.next()?;
    parts.next().is_none().then(|| name.as_ref().to_string())
}

/// `dbs/<db>/<branch>`.
pub fn branch_path(db: &str, branch: &str) -> Path {
    Path::from(DBS_PREFIX).join(db).join(branch)
}

/// A reader pinned to a checkpoint it made at a live home
/// ([`DbLocation::open_home_reader`]).
pub struct PinnedReader {
    pub reader: DbReader,
    checkpoint: uuid::Uuid,
    admin: slatedb::admin::Admin,
    label: String,
}

impl PinnedReader {
    /// Closes the reader and deletes its checkpoint (the home's collector
    /// may then take what only it kept).
    pub async fn release(self) {
        if let Err(e) = self.reader.close().await {
            tracing::debug!(region = %self.label, "closing a pinned reader: {e}");
        }
        unpin(&self.admin, self.checkpoint, &self.label).await;
    }
}

/// Deletes a pinned reader's checkpoint; one that cannot be deleted now
/// expires by itself.
async fn unpin(admin: &slatedb::admin::Admin, id: uuid::Uuid, label: &str) {
    match tokio::time::timeout(ADMIN_TIMEOUT, admin.delete_checkpoint(id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(region = %label, "a read's checkpoint stays until it expires: {e}")
        }
        Err(_) => tracing::warn!(
            region = %label,
            "a read's checkpoint stays until it expires: its deletion took over {} s",
            ADMIN_TIMEOUT.as_secs()
        ),
    }
}

/// SlateDB settings that work on local folders and on object stores:
/// bounded retries everywhere, and GC boundary files only where the store
/// has If-Match updates.
pub fn db_settings(if_match: bool) -> Settings {
    let defaults = GarbageCollectorOptions::default();
    // WAL files stay for the point-in-time window (storage::pitr).
    let wal = defaults
        .wal_options
        .map(|o| GarbageCollectorDirectoryOptions {
            min_age: o.min_age.max(retention()),
            ..o
        });
    let gc = GarbageCollectorOptions {
        boundary_files_enabled: if_match,
        object_store_max_retries: Some(SLATEDB_MAX_RETRIES),
        wal_options: wal,
        ..defaults
    };
    let compactor = CompactorOptions {
        object_store_max_retries: Some(SLATEDB_MAX_RETRIES),
        ..CompactorOptions::default()
    };
    Settings {
        object_store_max_retries: Some(SLATEDB_MAX_RETRIES),
        garbage_collector_options: Some(gc),
        compactor_options: Some(compactor),
        ..Settings::default()
    }
}

/// Settings that make a writer churn its files: small L0 SSTs, a compactor
/// polling every 100 ms, garbage collection every 200 ms of anything a
/// second old, short-lived compactor checkpoints. Every kind of file is
/// created and deleted within seconds, as a replicator must survive.
pub fn churn_settings(if_match: bool) -> Settings {
    let mut settings = db_settings(if_match);
    settings.l0_sst_size_bytes = 64 * 1024;
    let often = GarbageCollectorDirectoryOptions {
        interval: Some(Duration::from_millis(200)),
        min_age: Duration::from_secs(1),
        dry_run: false,
    };
    if let Some(gc) = settings.garbage_collector_options.as_mut() {
        gc.manifest_options = Some(often);
        gc.wal_options = Some(often);
        gc.wal_fence_options = Some(often);
        gc.compacted_options = Some(often);
        gc.compactions_options = Some(often);
    }
    if let Some(compactor) = settings.compactor_options.as_mut() {
        compactor.poll_interval = Duration::from_millis(100);
        compactor.checkpoint_lifetime = Duration::from_secs(2);
        if let Some(worker) = compactor.worker.as_mut() {
            worker.compactions_poll_interval = Duration::from_millis(100);
            worker.max_sst_size = 1024 * 1024;
            worker.object_store_max_retries = Some(SLATEDB_MAX_RETRIES);
        }
    }
    settings
}

/// How long a home reader of [`DbLocation::open_home_reader`] stays on the
/// manifest it opened; its checkpoint outlives it by a margin, and expires
/// on its own if the process dies.
const HOME_READ_HOLD: Duration = Duration::from_secs(600);

/// Reader options with bounded retries and a short poll interval.
pub fn reader_options() -> DbReaderOptions {
    DbReaderOptions {
        manifest_poll_interval: Duration::from_millis(500),
        object_store_max_retries: Some(SLATEDB_MAX_RETRIES),
        ..DbReaderOptions::default()
    }
}

/// What `describe` reports about one branch.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BranchInfo {
    pub region: String,
    pub db: String,
    pub branch: String,
    pub size_bytes: u64,
    pub object_count: u64,
    pub newest_manifest_id: u64,
    pub manifest_count: u64,
    pub oldest_wal_id: Option<u64>,
    pub newest_wal_id: Option<u64>,
    /// WAL files at or below this id are already in L0/compacted SSTs.
    pub replay_after_wal_id: u64,
    /// WAL ids missing between the replay point and the newest WAL file:
    /// readers stop silently at the first, so what follows is invisible.
    pub wal_gaps: Vec<u64>,
    pub next_wal_id: u64,
    pub writer_epoch: u64,
    pub checkpoints: u64,
}

impl BranchInfo {
    /// The last WAL file a reader of the newest manifest reaches: the
    /// newest consistent state is that manifest and the WAL up to here.
    pub fn reachable_wal_end(&self) -> u64 {
        self.wal_gaps
            .first()
            .map_or(self.newest_wal_id.unwrap_or(0), |gap| gap - 1)
            .max(self.replay_after_wal_id)
    }
}

/// The ids missing from `wals` (ascending `(id, size)`) after `replay_after`.
fn wal_gaps(wals: &[(u64, u64)], replay_after: u64) -> Vec<u64> {
    let mut gaps = Vec::new();
    let mut expected = replay_after + 1;
    for &(id, _) in wals.iter().filter(|(id, _)| *id > replay_after) {
        gaps.extend(expected..id);
        expected = id + 1;
    }
    gaps
}

/// The databases in a region, by name, with their branches.
pub async fn list_databases(region: &Region) -> Result<Vec<(String, Vec<String>)>> {
    let store = region.store();
    let mut out = Vec::new();
    for name in database_names(region).await? {
        let branches = branch_names(&store, region.name(), &name).await?;
        if !branches.is_empty() {
            out.push((name, branches));
        }
    }
    Ok(out)
}

/// The branches of `db` in a region (one listing).
pub async fn branch_names(
    store: &Arc<dyn ObjectStore>,
    region: &str,
    db: &str,
) -> Result<Vec<String>> {
    let db_path = Path::from(DBS_PREFIX).join(db);
    let listed = retrying(|| store.list_with_delimiter(Some(&db_path)))
        .await
        .map_err(|e| Error::store(region, "listing branches", &e))?;
    Ok(listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}

/// The names under `dbs/` in `region`: one listing (of up to 1,000 names
/// a page), however many databases and files they hold.
pub async fn database_names(region: &Region) -> Result<BTreeSet<String>> {
    let store = region.store();
    let dbs = Path::from(DBS_PREFIX);
    let top = retrying(|| store.list_with_delimiter(Some(&dbs)))
        .await
        .map_err(|e| Error::store(region.name(), "listing databases", &e))?;
    Ok(top
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}

/// Where a region keeps its files, for messages (`/path` or `s3://b/p`).
pub fn describe_location(location: &RegionUrl) -> String {
    match location {
        RegionUrl::File(p) => p.display().to_string(),
        RegionUrl::Memory(n) => format!("memory://{n}"),
        RegionUrl::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        RegionUrl::Gcs { bucket, prefix } => format!("gs://{bucket}/{prefix}"),
        RegionUrl::Azure { container, prefix } => format!("az://{container}/{prefix}"),
    }
}

/// `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
