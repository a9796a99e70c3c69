//! Replication: every branch flows from its home region to every other
//! region, continuously, incrementally and in an order that keeps each
//! replica readable at a state its home had (DESIGN.md, invariants 1 to 3).
//!
//! - [`files`]: a branch's files on one side, and the counted calls on them.
//! - [`cut`]: what a manifest needs; whether a replica's cut is complete.
//! - [`copier`]: the per-branch ordered copier (one pass at a time).
//! - [`cursor`]: the per-replica cursor kept in the replica's region.
//! - [`replicator`]: runs many copiers at once, both directions, with
//!   adaptive polling, back-off through outages and published statuses.
//! - [`check`]: proves a replica is a gap-free prefix of its home.
//! - [`pins`]: what else in a region keeps a replica file from deletion.
//!
//! Invariant kept here: a replica is written by the replicator alone. The
//! cursor marks a branch as a replica before the first file lands, and
//! `DbLocation::open_writer` refuses to open where a cursor exists.

pub mod check;
pub mod copier;
pub mod pins;
pub mod promised;
pub mod replicator;
pub mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::region::Region;
use crate::storage::{cursor, list_databases};

pub use replicator::Replicator;
pub use status::{FlowState, FlowStatus};

/// How the replicator behaves; every limit has a default that suits a
/// laptop and a small server alike.
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    /// Copies in flight at once, across every branch of one replicator.
    pub copies_in_flight: usize,
    /// The wait before the next pass when a pass left work undone.
    pub min_poll: Duration,
    /// How often a home no writer of this process writes is looked at for
    /// new WAL files (one GET of the next name each time): the RPO a quiet
    /// branch keeps. [`ReplicationOptions::for_rpo_target`] sets it; a busy
    /// branch is looked at a fifth sooner, so the lag stays under it.
    pub max_poll: Duration,
    /// How often a quiet home's manifests are looked at (the WAL carries
    /// the data; a manifest moves the replay point and names new SSTs).
    pub manifest_look_every: Duration,
    /// How often a busy home's are: each new manifest shortens the WAL
    /// tail a failover replays at the replica.
    pub busy_manifest_look_every: Duration,
    /// The longest a folder of the home may go unlooked-at before a
    /// listing replaces the read of its next name: a home that collects
    /// files sooner than this after writing them could otherwise hide
    /// newer ones behind a collected name. SlateDB collects nothing
    /// younger than its `min_age` (300 s by default, and Lifeboat's
    /// writers keep WAL files for the point-in-time window); a writer set
    /// to collect sooner costs lag until the next heal, never order.
    pub probe_gap: Duration,
    /// How often a branch whose writer runs in this process (every file
    /// it writes is heard of) is looked at anyway, in case a writer
    /// elsewhere took it over.
    pub notified_look_every: Duration,
    /// Whether files written through this process's stores are copied as
    /// they land, and branches its writers hold are not polled (off: every
    /// branch is looked at as if written elsewhere).
    pub hear_writers: bool,
    /// How often a full list-diff of both sides runs (heals what a cursor
    /// missed; deletes what the home deleted).
    pub heal_every: Duration,
    /// How often the replica's own listing of its newest state's files is
    /// compared with what the copier believes it holds (three LISTs; a
    /// state shown is never older than this look at the replica). The
    /// first pass of a copier always looks.
    pub cut_check_every: Duration,
    /// How often the replica's newest manifest is read by name (one GET):
    /// a replica deleted under the copier is seen within this, and its cut
    /// looked at and copied again, without waiting for `cut_check_every`.
    pub replica_look_every: Duration,
    /// How often a scrub re-reads the replica's needed files.
    pub scrub_every: Duration,
    /// Bytes a scrub reads at most (it resumes where the last one stopped).
    pub scrub_bytes: u64,
    /// The longest a changed cursor waits before it is saved.
    pub cursor_save_every: Duration,
    /// A replica whose lag is at most this is In sync; above it, Lagging.
    pub in_sync_lag: Duration,
    /// The longest wait between attempts while a region is unreachable.
    pub max_backoff: Duration,
    /// How long a replica file stays after it stopped being needed: a
    /// reader that opened an older manifest may still be reading it.
    pub delete_grace: Duration,
    /// The region pair copies the branches' compacted SSTs by itself (S3
    /// Cross-Region Replication, GCS dual-region, Azure object
    /// replication, SeaweedFS `filer.sync`, set to replicate `compacted/`
    /// only and never deletes): the copier copies no SST and waits until
    /// each one a manifest needs is at the replica at the home's size; it
    /// still copies the manifests, the WAL and the compactions files, in
    /// order. Changed at run time through [`Pace`].
    pub data_by_store: bool,
    /// How long the homes' writers of this process keep a file a replica
    /// still needs (`storage::gc_hold`; zero: nothing is kept). Changed at
    /// run time through [`Pace`].
    pub gc_hold: Duration,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions {
            copies_in_flight: 16,
            min_poll: Duration::from_millis(20),
            max_poll: Duration::from_secs(1),
            manifest_look_every: Duration::from_secs(120),
            busy_manifest_look_every: Duration::from_secs(10),
            probe_gap: Duration::from_secs(150),
            notified_look_every: Duration::from_secs(60),
            hear_writers: true,
            heal_every: Duration::from_secs(900),
            cut_check_every: Duration::from_secs(900),
            replica_look_every: Duration::from_secs(60),
            scrub_every: Duration::from_secs(600),
            scrub_bytes: 256 * 1024 * 1024,
            cursor_save_every: Duration::from_secs(5),
            in_sync_lag: Duration::from_secs(1),
            max_backoff: Duration::from_secs(15),
            delete_grace: Duration::from_secs(60),
            data_by_store: false,
            gc_hold: crate::storage::gc_hold::DEFAULT_GC_HOLD,
        }
    }
}

impl ReplicationOptions {
    /// The defaults, with quiet homes looked at often enough to keep
    /// `target` (and no more often), and a replica counted in sync while
    /// its lag is within it.
    pub fn for_rpo_target(target: Duration) -> ReplicationOptions {
        let defaults = ReplicationOptions::default();
        ReplicationOptions {
            max_poll: look_every_for(target, &defaults),
            in_sync_lag: target,
            ..defaults
        }
    }

    /// GET-class requests a quiet branch costs a minute at these options
    /// (its WAL and manifest looks); no LIST between heals.
    pub fn idle_gets_per_min(&self) -> f64 {
        let per_min = |every: Duration| 60.0 / every.as_secs_f64().max(0.001);
        per_min(self.max_poll)
            + per_min(self.manifest_look_every.max(self.max_poll))
            + per_min(self.replica_look_every)
    }

    /// LIST requests a quiet branch costs a minute on average: the
    /// list-diff heal (four folders on both sides) and the look at the
    /// replica's cut (three folders).
    pub fn idle_lists_per_min(&self) -> f64 {
        let per_min = |every: Duration, n: f64| n * 60.0 / every.as_secs_f64().max(0.001);
        per_min(self.heal_every, 8.0) + per_min(self.cut_check_every, 3.0)
    }
}

/// How often to look at a quiet home to keep an RPO of `target`: once per
/// target, within what a look by name allows (`probe_gap`).
pub fn look_every_for(target: Duration, opts: &ReplicationOptions) -> Duration {
    target.clamp(opts.min_poll, opts.probe_gap * 9 / 10)
}

/// The look interval, the in-sync threshold and who copies the SSTs, which
/// every flow of a replicator shares, changed at run time when the group's
/// settings change.
#[derive(Debug)]
pub struct Pace {
    look_ms: AtomicU64,
    in_sync_ms: AtomicU64,
    data_by_store: AtomicBool,
    /// Zero loss's timeout (0: off).
    zero_loss_ms: AtomicU64,
    /// Whether the RPO guard holds writes to the RPO target.
    guard: AtomicBool,
    /// How long a home keeps a file a replica still needs (0: nothing).
    gc_hold_ms: AtomicU64,
}

impl Pace {
    pub fn new(opts: &ReplicationOptions) -> Arc<Pace> {
        Arc::new(Pace {
            look_ms: AtomicU64::new(opts.max_poll.as_millis() as u64),
            in_sync_ms: AtomicU64::new(opts.in_sync_lag.as_millis() as u64),
            data_by_store: AtomicBool::new(opts.data_by_store),
            zero_loss_ms: AtomicU64::new(0),
            guard: AtomicBool::new(false),
            gc_hold_ms: AtomicU64::new(opts.gc_hold.as_millis() as u64),
        })
    }

    /// See [`crate::storage::gc_hold`].
    pub fn set_gc_hold(&self, bound: Duration) {
        self.gc_hold_ms
            .store(bound.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn gc_hold(&self) -> Duration {
        Duration::from_millis(self.gc_hold_ms.load(Ordering::Relaxed))
    }

    /// Asks every flow's home writers of this process to wait for the
    /// replica (zero loss, up to `timeout`) or to keep within the RPO
    /// target (the guard); see [`crate::region::sync`].
    pub fn set_promise(&self, zero_loss: Option<Duration>, guard: bool) {
        let ms = zero_loss.map_or(0, |t| (t.as_millis() as u64).max(1));
        self.zero_loss_ms.store(ms, Ordering::Relaxed);
        self.guard.store(guard, Ordering::Relaxed);
    }

    /// What the flows promise their homes' writers now.
    pub fn rule(&self) -> crate::region::sync::Rule {
        let ms = self.zero_loss_ms.load(Ordering::Relaxed);
        crate::region::sync::Rule {
            zero_loss: (ms > 0).then(|| Duration::from_millis(ms)),
            guard: self
                .guard
                .load(Ordering::Relaxed)
                .then(|| self.in_sync_lag()),
        }
    }

    /// See [`ReplicationOptions::data_by_store`].
    pub fn set_data_by_store(&self, by_store: bool) {
        self.data_by_store.store(by_store, Ordering::Relaxed);
    }

    /// Whether the region pair copies the SSTs by itself.
    pub fn data_by_store(&self) -> bool {
        self.data_by_store.load(Ordering::Relaxed)
    }

    /// Keeps `target` from now on (see [`ReplicationOptions::for_rpo_target`]).
    pub fn set_rpo_target(&self, target: Duration, opts: &ReplicationOptions) {
        let look = look_every_for(target, opts);
        self.look_ms
            .store(look.as_millis() as u64, Ordering::Relaxed);
        self.in_sync_ms
            .store(target.as_millis() as u64, Ordering::Relaxed);
    }

    /// How often a quiet home is looked at.
    pub fn look_every(&self) -> Duration {
        Duration::from_millis(self.look_ms.load(Ordering::Relaxed))
    }

    /// A replica within this lag is In sync.
    pub fn in_sync_lag(&self) -> Duration {
        Duration::from_millis(self.in_sync_ms.load(Ordering::Relaxed))
    }
}

/// One branch flowing from its home region to one replica region.
#[derive(Debug, Clone)]
pub struct Flow {
    pub db: String,
    pub branch: String,
    pub home: Region,
    pub replica: Region,
}

impl Flow {
    pub fn new(db: &str, branch: &str, home: &Region, replica: &Region) -> Flow {
        Flow {
            db: db.to_string(),
            branch: branch.to_string(),
            home: home.clone(),
            replica: replica.clone(),
        }
    }

    pub fn label(&self) -> String {
        format!(
            "{}/{} {} → {}",
            self.db,
            self.branch,
            self.home.name(),
            self.replica.name()
        )
    }

    /// Whether this is the flow named `key` (no copy made).
    pub fn is(&self, key: &FlowKey) -> bool {
        self.db == key.db
            && self.branch == key.branch
            && self.home.name() == key.home
            && self.replica.name() == key.replica
    }

    /// The flow by name, to compare and send across engines.
    pub fn key(&self) -> FlowKey {
        FlowKey {
            db: self.db.clone(),
            branch: self.branch.clone(),
            home: self.home.name().to_string(),
            replica: self.replica.name().to_string(),
        }
    }
}

/// One flow, by name: a branch and the two regions it flows between.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FlowKey {
    pub db: String,
    pub branch: String,
    pub home: String,
    pub replica: String,
}

impl FlowKey {
    pub fn of_status(status: &FlowStatus) -> FlowKey {
        FlowKey {
            db: status.db.clone(),
            branch: status.branch.clone(),
            home: status.home.clone(),
            replica: status.replica.clone(),
        }
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} {} → {}",
            self.db, self.branch, self.home, self.replica
        )
    }
}

/// Which flows exist among `regions`: every branch goes from the region
/// that is its home (it holds the branch and no cursor for it) to every
/// other region (or only to `to`), optionally only from `from` and only
/// for database `db`.
pub async fn discover(
    regions: &[Region],
    from: Option<&str>,
    to: Option<&str>,
    db: Option<&str>,
) -> Result<Vec<Flow>> {
    let mut held = Vec::with_capacity(regions.len());
    for region in regions {
        held.push(list_databases(region).await?);
    }
    let mut flows = Vec::new();
    for (home_index, home) in regions.iter().enumerate() {
        if from.is_some_and(|f| f != home.name()) {
            continue;
        }
        for (name, branches) in &held[home_index] {
            if db.is_some_and(|d| d != name) {
                continue;
            }
            for branch in branches {
                let store = home.store();
                if cursor::load(&store, home.name(), name, branch)
                    .await?
                    .is_some()
                {
                    continue; // a replica here, not a home
                }
                for (replica_index, replica) in regions.iter().enumerate() {
                    if replica_index == home_index || to.is_some_and(|t| t != replica.name()) {
                        continue;
                    }
                    check_not_two_homes(home, replica, name, branch, &held[replica_index]).await?;
                    flows.push(Flow::new(name, branch, home, replica));
                }
            }
        }
    }
    if let Some(db) = db
        && flows.is_empty()
    {
        let from = from.or(regions.first().map(Region::name)).unwrap_or("?");
        return Err(Error::DatabaseNotFound {
            db: db.to_string(),
            region: from.to_string(),
        });
    }
    Ok(flows)
}

/// Refuses a flow into a region that holds the same branch as a home of its
/// own: copying would mix two histories.
async fn check_not_two_homes(
    home: &Region,
    replica: &Region,
    db: &str,
    branch: &str,
    replica_dbs: &[(String, Vec<String>)],
) -> Result<()> {
    let store = replica.store();
    match cursor::load(&store, replica.name(), db, branch).await? {
        Some(found) if found.home == home.name() => Ok(()),
        Some(found) => Err(Error::Failed(format!(
            "{db}/{branch} in region `{}` follows region `{}`, yet region `{}` also holds it as a home; delete one of them before replicating",
            replica.name(),
            found.home,
            home.name()
        ))),
        None => {
            let present = replica_dbs
                .iter()
                .any(|(d, branches)| d == db && branches.iter().any(|b| b == branch));
            if present {
                Err(Error::Failed(format!(
                    "{db}/{branch} exists in both `{}` and `{}` and neither is a replica; delete one copy (`lifeboat db delete {db} --region ...`) before replicating",
                    home.name(),
                    replica.name()
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// The replicator's shared copy limit.
pub(crate) fn permits(opts: &ReplicationOptions) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(opts.copies_in_flight.max(1)))
}
