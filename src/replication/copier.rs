//! The per-branch ordered copier: brings one branch's replica forward from
//! its home, one pass at a time.
//!
//! New files at the home are found without listing: SlateDB numbers WAL
//! files, manifests and compactions files consecutively, so a pass reads
//! the next name of each (a GET, whose bytes the copy then puts) until
//! one is not there, and learns the SSTs from the manifests that name
//! them. A branch whose writer runs in this process is not even looked
//! at: the region's notices say which files it wrote, as they land.
//! Listings are for the start, the list-diff heal, the look at the
//! replica's cut, and any folder not looked at for `probe_gap` (a file
//! collected since could hide newer ones behind its name).
//!
//! Invariant kept here (DESIGN.md, invariant 2): at every instant, even if
//! a pass is cut off between any two requests, the replica opens and reads
//! as a state its home had. A pass therefore
//! 1. notes the home's manifests before it looks for the data they need;
//! 2. copies SSTs, compactions files and the WAL files no reader of the
//!    replica can reach (at or below its manifest's replay point; none
//!    before it has a manifest, since a crashed predecessor's last manifest
//!    put may still land) in parallel;
//! 3. copies the WAL files readers do reach one at a time, in ascending id,
//!    never past a missing one, so a reader never meets a gap;
//! 4. copies manifests in ascending id, each only once every SST it lists
//!    is at the replica with the home's size, and skips one whose SSTs the
//!    home has already garbage-collected (it is not a state worth keeping);
//! 5. never copies `gc/` boundary files;
//! 6. deletes a replica file only after a full listing shows the home
//!    deleted it, and only when neither the replica's newest manifest, a
//!    checkpoint in it, nor a pin needs it (invariant 3), and it has not
//!    been needed for a grace period (a reader of an older manifest may
//!    still be reading it).
//!
//! What the replica wants is what the home's GC keeps: the files of the
//! replica's newest state and of the checkpoints in it ([`Keep`]), and
//! whatever is newer. The rest is history: SSTs compacted away and WAL
//! already in SSTs before the replica's state reached them. It is never
//! copied and never counted as pending. A seed (a replica with no manifest)
//! therefore lands the home's newest manifest and the ones its checkpoints
//! keep, not every manifest the home still holds, and copies the SSTs they
//! name by name: a database written for an hour seeds its data once, not
//! its WAL and every SST compaction has since replaced.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Semaphore, broadcast, watch};

use super::pins::Pins;
use super::status::{FlowState, FlowStatus};
use super::{Flow, Pace, ReplicationOptions, promised};
use crate::error::{Error, Result};
use crate::region::meter::{RequestClass, Written};
use crate::region::sync::{PromiseMark, Rule};
use crate::storage::branch_path;
use crate::storage::cursor::{self, ReplicaCursor};
use crate::storage::cut::{CutReport, ManifestView, compaction_outputs, contiguous_wal_end};
use crate::storage::files::{
    BranchFiles, CopyError, Dir, Fetched, FileMeta, FileRef, RequestCounter, Side, copy_file,
};
use crate::workload::now_us;

/// Most manifests a replica behind its home lands in one pass (the next
/// pass goes on): each is read and held until its SSTs are copied.
const MANIFESTS_A_PASS: usize = 64;

/// Copies of fewer bytes than this say nothing of the link's rate.
const RATE_SAMPLE_MIN_BYTES: u64 = 256 * 1024;

/// Most new files one look at a folder reads before the pass copies them
/// (the next pass goes on at once).
const LOOK_MAX_FILES: usize = 1000;

/// Most bytes of home files held between the look that read them and
/// their copy; past it a look stops early, and a copy reads again.
const FETCHED_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Most per-WAL delay samples kept between two drains.
const MAX_DELAY_SAMPLES: usize = 20_000;

/// WAL delays kept for the status's last-minute p99.
const RECENT_DELAYS_KEPT: usize = 2_000;

/// How often a pass that copies for long publishes how far it got: over a
/// slow link one pass can take many seconds, and the status it began with
/// (in sync) would stand meanwhile.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Manifests landed that a copier keeps decoded, for the checkpoints of
/// later ones.
const LANDED_VIEWS_KEPT: usize = 16;

/// Per-WAL replication delays (home write to replica write), in milliseconds.
pub type DelaySamples = Arc<Mutex<Vec<u32>>>;

/// One branch, one replica: the state a pass works from.
pub struct BranchCopier {
    flow: Flow,
    opts: ReplicationOptions,
    pins: Arc<dyn Pins>,
    permits: Arc<Semaphore>,
    home: Side,
    replica: Side,
    /// What the home holds, as far as the listings so far show.
    home_files: BranchFiles,
    /// What the replica holds, as far as listings and copies show.
    replica_files: BranchFiles,
    /// The replica's newest manifest, decoded.
    replica_manifest: Option<ManifestView>,
    cursor: ReplicaCursor,
    cursor_dirty: bool,
    cursor_saved: Instant,
    loaded: bool,
    /// When the last full list-diff ran.
    healed: Option<Instant>,
    /// When the replica's cut was last looked at (`check_cut`).
    cut_checked: Option<Instant>,
    /// When each folder of the home was last looked at, by name or by a
    /// listing (index: the `Dir`).
    looked: [Option<Instant>; 4],
    /// When the home was last looked at on the schedule.
    last_look: Option<Instant>,
    /// When the replica's newest manifest was last read by name.
    replica_looked: Option<Instant>,
    /// Whether the last scheduled look found new files.
    busy: bool,
    /// The bytes a second the copies moved lately (`None`: not measured
    /// yet): what landing every manifest would cost in link time.
    copy_rate: Option<f64>,
    /// Home files read by a look, held until their copy.
    fetched: HashMap<FileRef, Fetched>,
    fetched_bytes: u64,
    /// The replay point of the newest home manifest decoded: WAL at or
    /// below it is in SSTs, so a look for new WAL starts past it.
    home_replay_after: u64,
    /// Files this process wrote at the home, as they land (unless the
    /// options say not to listen).
    heard: Option<broadcast::Receiver<Written>>,
    /// Files heard of and not yet read, each with when it was heard.
    heard_files: Vec<(FileRef, u64)>,
    /// A look stopped early (or notices were missed): the next pass comes
    /// at once.
    more: bool,
    /// A look of `wal/` stopped at its limit: the home holds WAL past what
    /// was read, so the replica lags even once all of that is copied.
    wal_beyond: bool,
    /// The WAL name the last look asked for and did not find, and when
    /// that look began (see [`Self::wal_written_us`]).
    wal_missed: Option<(u64, u64)>,
    /// The miss before, once its file was found.
    wal_written_after: Option<(u64, u64)>,
    /// Look at every folder on every pass (`run_once`).
    eager: bool,
    pace: Arc<Pace>,
    scrubbed: Option<Instant>,
    /// Where the next scrub starts in the rotation of needed files.
    scrub_after: Option<FileRef>,
    damaged: Option<String>,
    /// Names copied by this copier, to catch a second copy of one.
    copied: HashSet<FileRef>,
    /// Replica files a scrub found different from the home's: copied again
    /// whatever a listing says.
    suspect: HashSet<FileRef>,
    /// Replica files nothing needs any more, and since when.
    unneeded_since: HashMap<FileRef, Instant>,
    status: FlowStatus,
    publish: watch::Sender<FlowStatus>,
    delays_ms: DelaySamples,
    /// The last minute's WAL delays (at most [`RECENT_DELAYS_KEPT`]), for
    /// the status's p99.
    recent_delays: std::collections::VecDeque<(Instant, u32)>,
    /// Stop after this many successful copies (tests cut passes anywhere).
    copy_budget: Option<u64>,
    /// With the store copying SSTs: the home manifest waiting for it, and
    /// how many of its SSTs the replica lacks.
    waiting_for_store: Option<(u64, usize)>,
    /// What the replica's newest state and its checkpoints need, worked out
    /// for the manifest it names ([`BranchCopier::keep`]).
    keep: Option<Keep>,
    /// The newest home manifest decoded (what a seed copies toward).
    home_newest: Option<ManifestView>,
    /// Checkpoints' manifests read at the replica, by id (immutable).
    kept_views: HashMap<u64, ManifestView>,
    /// The manifests this copier landed last, by id (at most
    /// [`LANDED_VIEWS_KEPT`]): the ones checkpoints keep are most often
    /// among them.
    landed_views: std::collections::BTreeMap<u64, ManifestView>,
    /// The newest home compactions file decoded, and the SSTs its
    /// compactions in flight wrote (not in a manifest yet).
    compaction_outputs: Option<(u64, BTreeSet<String>)>,
    /// Zero loss or the RPO guard, while the group asks for either: the
    /// home's writers in this process hear what the replica holds.
    promise: Option<Promised>,
}

/// A copier's promise to its home's writers, and zero loss's own copier
/// of the WAL they hand over (`promised.rs`).
struct Promised {
    rule: Rule,
    mark: Arc<PromiseMark>,
    handed_over: Option<(tokio_util::task::AbortOnDropHandle<()>, promised::Copied)>,
}

impl Promised {
    fn new(flow: &Flow, replica: &Side, rule: Rule) -> Promised {
        let sync = Arc::clone(&flow.home.notices().sync);
        let mark = Arc::new(sync.promise(replica.base.as_ref(), flow.replica.name(), rule));
        let mut promised = Promised {
            rule,
            mark,
            handed_over: None,
        };
        promised.follow(flow, replica);
        promised
    }

    /// Starts or stops the copier of handed-over WAL as the rule says.
    fn follow(&mut self, flow: &Flow, replica: &Side) {
        match (self.rule.zero_loss, &self.handed_over) {
            (Some(_), None) => {
                let copied = promised::Copied::default();
                let task = tokio::spawn(promised::copy_handed_over(
                    Arc::clone(&flow.home.notices().sync),
                    Arc::clone(&self.mark),
                    replica.clone(),
                    Arc::clone(&copied),
                ));
                self.handed_over = Some((tokio_util::task::AbortOnDropHandle::new(task), copied));
            }
            (None, Some(_)) => self.handed_over = None,
            _ => {}
        }
    }
}

/// A home manifest read for its copy.
struct HomeManifest {
    view: ManifestView,
    bytes: bytes::Bytes,
    meta: FileMeta,
}

/// The files a replica state and the checkpoints in it need: what the
/// home's GC keeps of them. A file the replica lacks outside of it (and
/// older than the state) is history.
#[derive(Debug, Clone, Default)]
struct Keep {
    /// The replica manifest this was worked out for.
    manifest_id: u64,
    /// Every checkpoint's manifest was found (else it is worked out again).
    complete: bool,
    manifests: BTreeSet<u64>,
    ssts: BTreeSet<String>,
    /// WAL ids the states read, as half-open ranges: what is not deleted.
    wal: Vec<(u64, u64)>,
    /// The first WAL id past the oldest state's replay point: what is
    /// copied. A point-in-time restore at the replica replays from a
    /// checkpoint's manifest up to any time after it (`storage::pitr`), so
    /// the WAL between the checkpoints counts too.
    wal_from: u64,
}

impl Keep {
    fn wal(&self, id: u64) -> bool {
        self.wal.iter().any(|(lo, hi)| (*lo..*hi).contains(&id))
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Work is left (a look stopped early): go on at once.
    Active,
    /// Everything found was copied: wait for the next look or notice.
    Idle,
}

impl BranchCopier {
    /// A copier for `flow` whose look interval and in-sync threshold
    /// follow `pace`; nothing is read until the first tick.
    pub fn paced(
        flow: Flow,
        opts: ReplicationOptions,
        pins: Arc<dyn Pins>,
        permits: Arc<Semaphore>,
        publish: watch::Sender<FlowStatus>,
        delays_ms: DelaySamples,
        pace: Arc<Pace>,
    ) -> BranchCopier {
        let base = branch_path(&flow.db, &flow.branch);
        let home = Side {
            region: flow.home.name().to_string(),
            store: flow.home.store(),
            base: base.clone(),
            requests: Arc::new(RequestCounter::default()),
        };
        let replica = Side {
            region: flow.replica.name().to_string(),
            store: flow.replica.store(),
            base,
            requests: Arc::new(RequestCounter::default()),
        };
        let status = FlowStatus::of(&flow);
        let cursor = ReplicaCursor::new(&home.region, &flow.db, &flow.branch);
        let heard = opts
            .hear_writers
            .then(|| flow.home.notices().listen(&home.base));
        // Before the first pass: a write made meanwhile waits for it.
        let rule = pace.rule();
        let promise = (!rule.is_empty()).then(|| Promised::new(&flow, &replica, rule));
        BranchCopier {
            flow,
            opts,
            pins,
            permits,
            home,
            replica,
            home_files: BranchFiles::default(),
            replica_files: BranchFiles::default(),
            replica_manifest: None,
            cursor,
            cursor_dirty: false,
            cursor_saved: Instant::now(),
            loaded: false,
            healed: None,
            cut_checked: None,
            looked: [None; 4],
            last_look: None,
            replica_looked: None,
            busy: false,
            copy_rate: None,
            fetched: HashMap::new(),
            fetched_bytes: 0,
            home_replay_after: 0,
            heard,
            heard_files: Vec::new(),
            more: false,
            wal_beyond: false,
            wal_missed: None,
            wal_written_after: None,
            eager: false,
            pace,
            scrubbed: None,
            scrub_after: None,
            damaged: None,
            copied: HashSet::new(),
            unneeded_since: HashMap::new(),
            suspect: HashSet::new(),
            status,
            publish,
            delays_ms,
            recent_delays: std::collections::VecDeque::new(),
            copy_budget: None,
            waiting_for_store: None,
            keep: None,
            home_newest: None,
            kept_views: HashMap::new(),
            landed_views: std::collections::BTreeMap::new(),
            compaction_outputs: None,
            promise,
        }
    }

    /// A copier with its own copy limit and status channel (for one-off
    /// runs: `status`, tests).
    pub fn standalone(flow: Flow, opts: ReplicationOptions, pins: Arc<dyn Pins>) -> BranchCopier {
        let permits = super::permits(&opts);
        BranchCopier::sharing(flow, opts, pins, permits)
    }

    /// A copier that shares the copy limit `permits` and publishes its
    /// status nowhere (for runs that only want the result).
    pub fn sharing(
        flow: Flow,
        opts: ReplicationOptions,
        pins: Arc<dyn Pins>,
        permits: Arc<Semaphore>,
    ) -> BranchCopier {
        let (tx, _rx) = watch::channel(FlowStatus::of(&flow));
        let pace = Pace::new(&opts);
        BranchCopier::paced(flow, opts, pins, permits, tx, DelaySamples::default(), pace)
    }

    /// The WAL delays recorded since the last drain, in milliseconds: for
    /// each WAL file copied, from when the home wrote it to its copy.
    pub fn drain_wal_delays_ms(&self) -> Vec<u32> {
        std::mem::take(&mut *self.delays_ms.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Makes every pass stop after `copies` successful copies in total (a
    /// test's way to cut the sequence at an exact point).
    pub fn stop_after_copies(&mut self, copies: u64) {
        self.copy_budget = Some(copies);
    }

    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The last status published.
    pub fn status(&self) -> &FlowStatus {
        &self.status
    }

    fn label(&self) -> String {
        format!(
            "{}/{} {} → {}",
            self.flow.db, self.flow.branch, self.home.region, self.replica.region
        )
    }

    /// One step of the follow loop: a pass (a full list-diff when one is
    /// due), then a scrub when one is due.
    pub async fn tick(&mut self) -> Result<Tick> {
        let tick = self.pass().await?;
        let scrub_due = self
            .scrubbed
            .is_none_or(|at| at.elapsed() >= self.opts.scrub_every);
        if scrub_due && self.replica_manifest.is_some() {
            self.scrub().await?;
            self.scrubbed = Some(Instant::now());
        }
        Ok(tick)
    }

    /// Records that a region could not be reached: the state shows it and
    /// the lag keeps growing until a pass succeeds again.
    pub fn paused(&mut self, err: &Error) {
        // What the home listing showed before the failure still counts:
        // writes the replica lacks keep the lag growing.
        self.refresh_status(false);
        self.status.state = FlowState::Paused;
        self.status.detail = Some(err.to_string());
        self.status.unreachable = match err {
            Error::Store { region, .. } | Error::Database { region, .. } => Some(region.clone()),
            _ => None,
        };
        self.status.observed_us = now_us();
        self.status.lag_s = self.status.lag_s_at(self.status.observed_us);
        self.publish.send_replace(self.status.clone());
    }

    /// Whether the branch's home moved away from this flow's home (a
    /// switchover): the flow must copy, delete and save nothing more.
    pub fn moved(&self) -> bool {
        self.pins
            .moved(&self.flow.db, &self.flow.branch, &self.home.region)
    }

    /// Records that the branch's home moved: this flow is over.
    pub fn moved_away(&mut self) {
        self.status.state = FlowState::Held;
        self.status.detail = Some(format!(
            "the home of {}/{} moved away from {}; this flow has stopped",
            self.flow.db, self.flow.branch, self.home.region
        ));
        self.status.observed_us = now_us();
        self.publish.send_replace(self.status.clone());
    }

    /// Records that a person paused this flow: nothing is copied, and the
    /// lag counts from the last sync while the home keeps writing.
    pub fn held(&mut self) {
        self.status.state = FlowState::Held;
        self.status.detail = Some("paused by the user; resume to copy again".into());
        self.status.observed_us = now_us();
        self.status.lag_s = self.status.lag_s_at(self.status.observed_us);
        self.publish.send_replace(self.status.clone());
    }

    /// Copies until the replica holds the home's newest manifest and WAL
    /// file as of the first listing (what `replicate --once` promises).
    pub async fn run_once(&mut self) -> Result<FlowStatus> {
        self.eager = true;
        self.pass().await?;
        let target_manifest = self.home_files.manifests.keys().next_back().copied();
        let target_wal = self.home_files.wals.keys().next_back().copied();
        for _ in 0..100 {
            // A cursor's listing shows only what is past it: after a heal
            // (the replica lost files below it) the whole home counts.
            let target_manifest =
                target_manifest.or(self.home_files.manifests.keys().next_back().copied());
            let target_wal = target_wal.or(self.home_files.wals.keys().next_back().copied());
            let heal_pending = self.healed.is_none();
            let manifest_done = match (target_manifest, &self.replica_manifest) {
                (None, _) => true,
                (Some(want), Some(have)) => have.id >= want,
                (Some(_), None) => false,
            };
            let wal_done = match (target_wal, &self.replica_manifest) {
                (None, _) => true,
                (Some(want), Some(m)) => self.wal_end(m) >= want,
                (Some(_), None) => false,
            };
            if manifest_done && wal_done && !heal_pending {
                self.save_cursor().await?;
                return Ok(self.status.clone());
            }
            if self.copy_budget == Some(0) {
                break;
            }
            self.pass().await?;
        }
        self.save_cursor().await?;
        Err(Error::Failed(format!(
            "{}: the replica did not catch up with the home's state as of the start; run again",
            self.label()
        )))
    }

    /// The status from a full listing of both sides, copying nothing and
    /// writing nothing (what `lifeboat status` shows when no replicator runs
    /// in this process). Requests per minute are the engine's last figure.
    pub async fn inspect(&mut self) -> Result<FlowStatus> {
        let found = self.load_cursor().await?;
        self.list_everything().await?;
        self.refresh_keep().await?;
        let replica_at = self.replica_manifest.as_ref().map_or(0, |m| m.id);
        if let Some(&newest) = self.home_files.manifests.keys().next_back()
            && newest > replica_at
            && let Some(manifest) = self.read_home_manifest(newest).await?
        {
            self.home_newest = Some(manifest.view);
        }
        self.refresh_status(true);
        let status = &mut self.status;
        match &found {
            Some(found) => {
                status.requests_per_min = found.requests_per_min;
                if status.last_sync_us.is_none() {
                    status.last_sync_us = found.synced_us;
                }
            }
            None => {
                status.detail = Some("not replicated yet; run `lifeboat replicate`".into());
                status.requests_per_min = 0;
            }
        }
        Ok(status.clone())
    }

    /// One pass: list what is new, copy it in order, publish the status.
    pub async fn pass(&mut self) -> Result<Tick> {
        if !self.loaded {
            self.load().await?;
        }
        // Before the copies: a seed's first pass over a slow link takes
        // long, and the home's collector must not take what it copies.
        self.report_hold();
        let heal_due = self
            .healed
            .is_none_or(|at| at.elapsed() >= self.opts.heal_every);
        if heal_due {
            self.list_everything().await?;
            self.healed = Some(Instant::now());
        } else {
            self.look_for_new().await?;
        }
        // Nothing new costs no request here.
        self.copy_in_order().await?;
        if heal_due {
            self.delete_unneeded().await?;
        }
        let cut_check_due = self
            .cut_checked
            .is_none_or(|at| at.elapsed() >= self.opts.cut_check_every)
            || self.replica_manifest_gone().await?;
        if cut_check_due && !heal_due {
            self.check_cut().await?;
        }
        self.status.passes += 1;
        self.keep_promise();
        self.refresh_status(true);
        self.maybe_save_cursor().await?;
        Ok(if self.more { Tick::Active } else { Tick::Idle })
    }

    /// Whether a read by name (due every `replica_look_every`) finds the
    /// replica's newest manifest gone: deleted under the copier.
    async fn replica_manifest_gone(&mut self) -> Result<bool> {
        let due = self
            .replica_looked
            .is_none_or(|at| at.elapsed() >= self.opts.replica_look_every);
        let Some(manifest) = self.replica_manifest.as_ref().filter(|_| due) else {
            return Ok(false);
        };
        let file = FileRef::Manifest(manifest.id);
        self.replica_looked = Some(Instant::now());
        Ok(self.replica.fetch(&file).await?.is_none())
    }

    async fn load_cursor(&self) -> Result<Option<ReplicaCursor>> {
        let (store, region) = (&self.replica.store, &self.replica.region);
        cursor::load(store, region, &self.flow.db, &self.flow.branch).await
    }

    /// Reads the cursor (writing a fresh one first, which marks the branch
    /// as a replica here before any file lands) and the replica's newest
    /// manifest, then lists only what lies past them.
    async fn load(&mut self) -> Result<()> {
        let found = self.load_cursor().await?;
        match found {
            Some(found) if found.home != self.home.region => {
                return Err(Error::Failed(format!(
                    "{}/{} in region `{}` is a replica of region `{}`, not of `{}`; replicate it from its home",
                    self.flow.db,
                    self.flow.branch,
                    self.replica.region,
                    found.home,
                    self.home.region
                )));
            }
            Some(found) => {
                self.cursor = found;
                if self.cursor.manifest_id > 0 {
                    self.replica_manifest =
                        self.read_replica_manifest(self.cursor.manifest_id).await?;
                }
                if self.cursor.manifest_id > 0 && self.replica_manifest.is_none() {
                    // The replica lost the manifest the cursor names (deleted
                    // by hand, or by `db delete`): the cursor vouches for
                    // nothing, and the first pass is a full list-diff.
                    self.cursor =
                        ReplicaCursor::new(&self.home.region, &self.flow.db, &self.flow.branch);
                    self.cursor_dirty = true;
                } else {
                    self.list_from_cursor().await?;
                }
            }
            None => {
                self.replica.requests.record(RequestClass::Put);
                cursor::save(&self.replica.store, &self.replica.region, &self.cursor).await?;
                self.cursor_saved = Instant::now();
            }
        }
        // Files are re-read on the schedule, not all at once on start.
        self.scrubbed = Some(Instant::now());
        self.replica_looked = Some(Instant::now());
        self.loaded = true;
        Ok(())
    }

    /// A cheap restart: the replica's SSTs, and the manifests, WAL and
    /// compactions from where the cursor vouches for, on both sides.
    async fn list_from_cursor(&mut self) -> Result<()> {
        let floor = self
            .replica_manifest
            .as_ref()
            .map_or(0, |m| m.replay_after_wal_id);
        // The replica's WAL is listed from the replay point of its newest
        // manifest, so every file a reader of it needs is looked at, none
        // taken on the cursor's word; the home's only past the cursor.
        let replica_wal_after = Some(floor).filter(|id| *id > 0).map(FileRef::Wal);
        let wal_after = Some(floor.max(self.cursor.wal_id))
            .filter(|id| *id > 0)
            .map(FileRef::Wal);
        let manifest_after = Some(self.cursor.manifest_id)
            .filter(|id| *id > 1)
            .map(|id| FileRef::Manifest(id - 1));
        let compactions_after = Some(self.cursor.compactions_id)
            .filter(|id| *id > 0)
            .map(FileRef::Compactions);
        let sides = [
            (self.replica.clone(), replica_wal_after),
            (self.home.clone(), wal_after),
        ];
        let mut listed = Vec::with_capacity(2);
        let mut home_wal_listed_us = 0;
        for (side, wal_after) in &sides {
            let mut files = BranchFiles::default();
            files.replace_dir(
                Dir::Manifest,
                side.list(Dir::Manifest, manifest_after.as_ref()).await?,
            );
            home_wal_listed_us = now_us();
            files.replace_dir(Dir::Wal, side.list(Dir::Wal, wal_after.as_ref()).await?);
            files.replace_dir(Dir::Compacted, side.list(Dir::Compacted, None).await?);
            files.replace_dir(
                Dir::Compactions,
                side.list(Dir::Compactions, compactions_after.as_ref())
                    .await?,
            );
            listed.push(files);
        }
        self.home_files = listed.pop().unwrap_or_default();
        self.replica_files = listed.pop().unwrap_or_default();
        self.missed_wal(self.next_id(Dir::Wal), home_wal_listed_us);
        if self.replica_manifest.is_none() {
            // Manifests can land after the cursor was last saved (a crash
            // between a copy and the save): readers open the newest, so
            // the copy order must start from it, not from "no manifest".
            self.replica_manifest = self.newest_replica_manifest().await?;
            if let Some(view) = &self.replica_manifest {
                self.cursor.manifest_id = view.id;
                self.cursor_dirty = true;
            }
        }
        // The cursor stands in for a list-diff until the next one is due,
        // and these listings for a look at the replica's cut: whatever the
        // cursor says was copied up to its WAL file must be there.
        self.healed = Some(Instant::now());
        self.cut_checked = Some(Instant::now());
        self.looked = [Some(Instant::now()); 4];
        if let Some(manifest) = &self.replica_manifest {
            let copied_to = self.cursor.wal_id.max(self.wal_end(manifest));
            let lost = self.lost_from_cut(manifest, &self.replica_files, copied_to);
            self.repair_cut(&lost);
        }
        Ok(())
    }

    async fn read_replica_manifest(&self, id: u64) -> Result<Option<ManifestView>> {
        let Some(bytes) = self.replica.read(&FileRef::Manifest(id)).await? else {
            return Ok(None);
        };
        ManifestView::parse(id, bytes).await.map(Some).map_err(|e| {
            Error::Failed(format!(
                "{}: the replica's manifest {id} is damaged ({e}); it will be copied again",
                self.label()
            ))
        })
    }

    /// The full list-diff: every folder on both sides.
    async fn list_everything(&mut self) -> Result<()> {
        self.looked = [Some(Instant::now()); 4];
        for dir in Dir::ALL {
            // Manifests are listed (noted) before the data they need.
            let listed_us = now_us();
            let home = self.home.list(dir, None).await?;
            self.home_files.replace_dir(dir, home);
            if dir == Dir::Wal {
                self.missed_wal(self.next_id(Dir::Wal), listed_us);
            }
        }
        let mut listed = BranchFiles::default();
        for dir in Dir::ALL {
            listed.replace_dir(dir, self.replica.list(dir, None).await?);
        }
        // Files copied earlier that are gone or changed size since: lost
        // at the replica after the fact. They are copied again below.
        let lost: Vec<FileRef> = self
            .replica_files
            .iter()
            .filter(|(file, meta)| listed.get(file).is_none_or(|now| now.size != meta.size))
            .map(|(file, _)| file)
            .collect();
        self.replica_files = listed;
        if !lost.is_empty() {
            let message = format!(
                "list-diff: {} replica file(s) missing or resized since copied ({}); copying them again",
                lost.len(),
                lost[0].rel()
            );
            self.forget_lost(&lost, message);
            self.refresh_status(false);
        }
        // The replica's newest manifest may have changed under us (a restart
        // from another machine, a scrub finding damage): decode it afresh.
        self.replica_manifest = self.newest_replica_manifest().await?;
        Ok(())
    }

    /// The newest manifest listed at the replica that decodes: what a
    /// reader there opens. A damaged one (it does not decode) is removed
    /// from what the replica holds, so it is copied again, and the one
    /// before it counts. `None` only when the replica holds no manifest:
    /// the copy order treats every WAL file as invisible then, so it must
    /// never be `None` while a reader can open one.
    async fn newest_replica_manifest(&mut self) -> Result<Option<ManifestView>> {
        let ids: Vec<u64> = self.replica_files.manifests.keys().rev().copied().collect();
        for id in ids {
            match self.read_replica_manifest(id).await {
                Ok(Some(view)) => return Ok(Some(view)),
                // Deleted since the listing.
                Ok(None) => {
                    self.replica_files.remove(&FileRef::Manifest(id));
                }
                Err(err @ Error::Failed(_)) => {
                    self.damaged = Some(err.to_string());
                    self.replica_files.remove(&FileRef::Manifest(id));
                }
                // A region that stopped answering between the listing and
                // the read is an outage, not damage: what the replica holds
                // is still known.
                Err(unreachable) => return Err(unreachable),
            }
        }
        Ok(None)
    }

    /// Finds what is new at the home: the files this process's writers
    /// wrote (heard of), and, when a look is due, the next names of the
    /// manifests (now and then), the WAL, and the compactions files after
    /// a new manifest.
    async fn look_for_new(&mut self) -> Result<()> {
        let due = self.look_due();
        self.more = false;
        self.wal_beyond = false;
        self.hear();
        self.absorb_handed_over();
        for (file, _) in std::mem::take(&mut self.heard_files) {
            if self.home_files.get(&file).is_some() {
                continue;
            }
            // A WAL file a zero-loss writer handed over is not read again.
            if let FileRef::Wal(id) = file
                && let Some(fetched) = self.handed_over(id)
            {
                self.keep_fetched(file, fetched);
                continue;
            }
            self.read_new(file).await?;
        }
        if !due {
            return Ok(());
        }
        let started = Instant::now();
        // Never later than the probe gap (the look stays a read by name):
        // now, when the next look would come too late.
        let manifest_every = if self.busy {
            self.opts.busy_manifest_look_every
        } else {
            self.opts.manifest_look_every
        }
        .min(self.opts.probe_gap * 9 / 10);
        let soon = self.look_interval();
        let manifests_due = self.eager
            || self.looked[Dir::Manifest as usize]
                .is_none_or(|at| at.elapsed() + soon >= manifest_every);
        let mut found = 0;
        if manifests_due {
            let manifests = self.look(Dir::Manifest).await?;
            if manifests > 0 {
                self.look(Dir::Compactions).await?;
            }
            found += manifests;
        }
        found += self.look(Dir::Wal).await?;
        self.last_look = Some(started);
        self.busy = found > 0;
        Ok(())
    }

    /// Whether a writer of this process holds the branch at the home: then
    /// every file it writes is heard of, and looks are only a safety net.
    fn writer_here(&self) -> bool {
        self.heard.is_some() && self.flow.home.notices().has_writer(&self.home.base)
    }

    /// How long after a look the next one is due.
    fn look_interval(&self) -> Duration {
        if self.writer_here() {
            return self.opts.notified_look_every;
        }
        let every = self.pace.look_every();
        // A busy branch a fifth sooner, so its lag stays under the target.
        if self.busy { every * 4 / 5 } else { every }
    }

    /// Time left until the next look.
    fn next_look_in(&self) -> Duration {
        if self.eager || self.more {
            return Duration::ZERO;
        }
        self.last_look.map_or(Duration::ZERO, |at| {
            self.look_interval().saturating_sub(at.elapsed())
        })
    }

    fn look_due(&self) -> bool {
        self.next_look_in().is_zero()
    }

    /// Looks for the home's new files in `dir`: by reading the next names
    /// while the folder was looked at within `probe_gap`, by a listing
    /// otherwise. Returns how many it found.
    async fn look(&mut self, dir: Dir) -> Result<usize> {
        let started = Instant::now();
        let started_us = now_us();
        let fresh = self.looked[dir as usize].is_some_and(|at| at.elapsed() < self.opts.probe_gap);
        let found = if fresh {
            self.read_next(dir).await?
        } else {
            let listed = self.home.list(dir, self.listed_after(dir).as_ref()).await?;
            let mut found = 0;
            for (file, meta) in listed {
                if self.home_files.get(&file).is_none() {
                    found += 1;
                }
                self.home_files.insert(file, meta);
            }
            if dir == Dir::Wal {
                // The listing showed every WAL file there was then.
                self.missed_wal(self.next_id(Dir::Wal), started_us);
            }
            found
        };
        self.looked[dir as usize] = Some(started);
        Ok(found)
    }

    /// Reads the next names of a numbered folder until one is not there.
    /// A WAL name missing at or below the newest home manifest's replay
    /// point was collected (its data is in SSTs): the look goes on past it.
    async fn read_next(&mut self, dir: Dir) -> Result<usize> {
        let mut next = self.next_id(dir);
        let mut found = 0;
        loop {
            if found >= LOOK_MAX_FILES || self.fetched_bytes >= FETCHED_MAX_BYTES {
                self.more = true;
                self.wal_beyond |= dir == Dir::Wal;
                break;
            }
            let file = match dir {
                Dir::Manifest => FileRef::Manifest(next),
                Dir::Wal => FileRef::Wal(next),
                Dir::Compactions => FileRef::Compactions(next),
                Dir::Compacted => break,
            };
            let asked_us = now_us();
            if self.read_new(file).await? {
                found += 1;
                next += 1;
            } else if dir == Dir::Wal && next <= self.home_replay_after {
                next = self.home_replay_after + 1;
            } else {
                if dir == Dir::Wal {
                    self.missed_wal(next, asked_us);
                }
                break;
            }
        }
        Ok(found)
    }

    /// The id after the newest the home is known to hold in a numbered
    /// folder (or the cursor vouches for).
    fn next_id(&self, dir: Dir) -> u64 {
        let newest = match self.home_files.newest(dir) {
            Some(FileRef::Manifest(id) | FileRef::Wal(id) | FileRef::Compactions(id)) => id,
            _ => 0,
        };
        let vouched = match dir {
            Dir::Manifest => self.cursor.manifest_id,
            Dir::Wal => self.cursor.wal_id,
            Dir::Compactions => self.cursor.compactions_id,
            Dir::Compacted => 0,
        };
        newest.max(vouched) + 1
    }

    /// Notes that WAL `id` was not at the home when a look began at
    /// `asked_us` (a read of its name, or a listing that ended before it).
    fn missed_wal(&mut self, id: u64, asked_us: u64) {
        if let Some((missed, _)) = self.wal_missed
            && self.home_files.wals.contains_key(&missed)
        {
            self.wal_written_after = self.wal_missed;
        }
        self.wal_missed = Some((id, asked_us));
    }

    /// When the writes in home WAL `id` were acknowledged, at the earliest,
    /// in microseconds since the epoch. S3 and most stores stamp a file in
    /// whole seconds, which alone would add up to a second to every delay
    /// and lag measured from it. A WAL file a look missed and a later one
    /// found was written after that look began; so were the writes in the
    /// files after it, which SlateDB acknowledges only once the ones
    /// before are durable. (A missed name never found, one the home
    /// collected, bounds nothing.)
    fn wal_written_us(&self, id: u64, meta: &FileMeta) -> u64 {
        [self.wal_missed, self.wal_written_after]
            .into_iter()
            .flatten()
            .find(|(missed, _)| id >= *missed && self.home_files.wals.contains_key(missed))
            .map_or(meta.modified_us, |(_, asked_us)| {
                meta.modified_us.max(asked_us)
            })
    }

    /// Reads a home file and keeps its bytes for the copy; whether it was
    /// there.
    async fn read_new(&mut self, file: FileRef) -> Result<bool> {
        let Some(fetched) = self.home.fetch(&file).await? else {
            return Ok(false);
        };
        self.keep_fetched(file, fetched);
        Ok(true)
    }

    /// Holds what was read of home file `file` until its copy.
    fn keep_fetched(&mut self, file: FileRef, fetched: Fetched) {
        self.home_files.insert(file.clone(), fetched.meta);
        self.fetched_bytes += fetched.bytes.as_ref().map_or(0, |b| b.len() as u64);
        if let Some(old) = self.fetched.insert(file, fetched) {
            self.fetched_bytes -= old.bytes.map_or(0, |b| b.len() as u64);
        }
    }

    /// WAL file `id` as this process's zero-loss writer handed it over,
    /// while the replica lacks it.
    fn handed_over(&self, id: u64) -> Option<Fetched> {
        self.promise.as_ref()?;
        let sync = &self.flow.home.notices().sync;
        let (bytes, at_us) = sync.wal_bytes(self.home.base.as_ref(), id)?;
        Some(Fetched {
            meta: FileMeta {
                size: bytes.len() as u64,
                modified_us: at_us,
            },
            bytes: Some(bytes),
        })
    }

    /// The bytes a look read of `file`, if any (for its copy).
    fn take_fetched(&mut self, file: &FileRef) -> Option<Fetched> {
        let fetched = self.fetched.remove(file)?;
        self.fetched_bytes -= fetched.bytes.as_ref().map_or(0, |b| b.len() as u64);
        Some(fetched)
    }

    /// Takes the notices of files written at the home since the last pass.
    fn hear(&mut self) {
        let Some(heard) = self.heard.as_mut() else {
            return;
        };
        let mut notices = Vec::new();
        let mut missed = false;
        loop {
            match heard.try_recv() {
                Ok(written) => notices.push(written),
                Err(TryRecvError::Lagged(_)) => missed = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        for written in notices {
            self.note_heard(written);
        }
        if missed {
            self.missed_notices();
        }
    }

    /// Waits until a writer of this process writes a file at the home (or
    /// one lets go of the branch), keeping what was heard for the next pass.
    pub async fn wait_heard(&mut self) {
        let Some(heard) = self.heard.as_mut() else {
            return std::future::pending().await;
        };
        match heard.recv().await {
            Ok(written) => self.note_heard(written),
            Err(RecvError::Lagged(_)) => self.missed_notices(),
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }

    fn note_heard(&mut self, written: Written) {
        if let Some(file) = FileRef::at(&self.home.base, &written.path) {
            self.heard_files.push((file, written.at_us));
        }
    }

    /// More was written than the notices kept: every folder is listed at
    /// the next look, which comes at once.
    fn missed_notices(&mut self) {
        self.looked = [None; 4];
        self.more = true;
    }

    /// Where a short listing of the home's `dir` starts: after the newest
    /// file known there, or after what the cursor vouches for when nothing
    /// past it has been listed yet (so an idle restart lists nothing old).
    fn listed_after(&self, dir: Dir) -> Option<FileRef> {
        let vouched = match dir {
            Dir::Manifest => Some(FileRef::Manifest(self.cursor.manifest_id)),
            Dir::Wal => Some(FileRef::Wal(self.cursor.wal_id)),
            Dir::Compactions => Some(FileRef::Compactions(self.cursor.compactions_id)),
            Dir::Compacted => None,
        };
        let vouched = vouched.filter(|f| {
            !matches!(
                f,
                FileRef::Manifest(0) | FileRef::Wal(0) | FileRef::Compactions(0)
            )
        });
        self.home_files.newest(dir).max(vouched)
    }

    /// Takes up the group's rule (zero loss, the RPO guard) and tells the
    /// home's writers what the replica holds now.
    fn keep_promise(&mut self) {
        let rule = self.pace.rule();
        if rule.is_empty() {
            self.promise = None;
            return;
        }
        self.absorb_handed_over();
        let held = self.replica_manifest.as_ref().map(|m| self.wal_end(m));
        let promised = match &mut self.promise {
            Some(promised) => {
                if promised.rule != rule {
                    promised.mark.set_rule(rule);
                    promised.rule = rule;
                    promised.follow(&self.flow, &self.replica);
                }
                promised
            }
            None => self
                .promise
                .insert(Promised::new(&self.flow, &self.replica, rule)),
        };
        // Nothing is held before the replica has a manifest.
        if let Some(held) = held {
            promised.mark.held(held);
        }
    }

    /// Counts the WAL files zero loss's own copier put into the replica
    /// as copied (a pass then neither reads nor puts them again).
    fn absorb_handed_over(&mut self) {
        let Some((_, copied)) = self.promise.as_ref().and_then(|p| p.handed_over.as_ref()) else {
            return;
        };
        let copied = std::mem::take(&mut *copied.lock().unwrap_or_else(|p| p.into_inner()));
        for (id, meta) in copied {
            let file = FileRef::Wal(id);
            if self.replica_files.get(&file).is_none() {
                self.record_copy(file, meta);
            }
        }
        if let Some(manifest) = &self.replica_manifest {
            let end = self.wal_end(manifest);
            self.cursor.wal_id = self.cursor.wal_id.max(end);
        }
    }

    /// The newest WAL id a reader of `manifest` at the replica reaches.
    fn wal_end(&self, manifest: &ManifestView) -> u64 {
        contiguous_wal_end(manifest, &self.replica_files, 0)
    }

    /// The WAL id at or below which no reader of the replica replays:
    /// `None` when the replica has no manifest yet (then no file is visible).
    fn visible_floor(&self) -> Option<u64> {
        self.replica_manifest
            .as_ref()
            .map(|m| m.replay_after_wal_id)
    }

    /// Whether the replica lacks `file` or holds it at another size.
    fn lacks(&self, file: &FileRef, meta: &FileMeta) -> bool {
        if self.suspect.contains(file) {
            return true;
        }
        match self.replica_files.get(file) {
            None => true,
            Some(have) => have.size != meta.size,
        }
    }

    /// Steps 2 to 4 of the module doc, then the WAL that became invisible
    /// and the tail past the new replay point.
    async fn copy_in_order(&mut self) -> Result<()> {
        self.copy_unseen_data().await?;
        self.copy_wal_tail().await?;
        self.copy_manifests().await?;
        self.copy_unseen_data().await?;
        self.copy_wal_tail().await
    }

    /// SSTs, compactions files and the WAL files no reader can reach, in
    /// parallel.
    async fn copy_unseen_data(&mut self) -> Result<()> {
        let floor = self.visible_floor();
        self.refresh_keep().await?;
        self.note_compaction_outputs().await?;
        let keep = self.keep.as_ref();
        let kept_wal = |id: u64| keep.is_none_or(|k| id >= k.wal_from);
        let jobs: Vec<FileRef> = self
            .home_files
            .iter()
            .filter(|(file, meta)| match file {
                FileRef::Manifest(_) => false,
                // A suspect WAL file is rewritten in place wherever it is.
                // With no manifest at the replica, no WAL file is copied out
                // of order: a manifest put by a crashed predecessor may still
                // land, and its readers would meet the gap. Below the
                // replica's replay point, only from the oldest checkpoint's.
                FileRef::Wal(id) => {
                    (floor.is_some_and(|f| *id <= f) && kept_wal(*id)
                        || self.suspect.contains(file))
                        && self.lacks(file, meta)
                }
                // SSTs come by name with the manifests that need them
                // (`copy_manifests`); here only those a kept state lost (a
                // repair), whoever copies the rest (Lifeboat or the store),
                // and those a compaction in flight wrote (`Compactions`).
                FileRef::Sst(ulid) => {
                    (keep.is_some_and(|k| k.ssts.contains(ulid))
                        || self.compaction_output(ulid)
                        || self.suspect.contains(file))
                        && self.lacks(file, meta)
                }
                FileRef::Compactions(_) => self.lacks(file, meta),
            })
            .map(|(file, _)| file)
            .collect();
        self.copy_parallel(jobs).await
    }

    /// Works out what the replica's newest state and the checkpoints in it
    /// need ([`Keep`]; `None` while it has no manifest), once per manifest:
    /// the checkpoints' manifests are read at the replica.
    async fn refresh_keep(&mut self) -> Result<()> {
        let Some(newest) = self.replica_manifest.as_ref() else {
            self.keep = None;
            return Ok(());
        };
        if self
            .keep
            .as_ref()
            .is_some_and(|k| k.manifest_id == newest.id && k.complete)
        {
            return Ok(());
        }
        let newest = newest.clone();
        let mut keep = Keep {
            manifest_id: newest.id,
            complete: true,
            manifests: BTreeSet::from([newest.id]),
            ssts: newest.ssts.clone(),
            wal: vec![(newest.replay_after_wal_id + 1, u64::MAX)],
            wal_from: newest.replay_after_wal_id + 1,
        };
        self.kept_views
            .retain(|id, _| newest.checkpoint_manifest_ids.contains(id));
        for &id in &newest.checkpoint_manifest_ids {
            keep.manifests.insert(id);
            if id == newest.id {
                continue;
            }
            let known = self
                .kept_views
                .get(&id)
                .or_else(|| self.landed_views.get(&id));
            let view = match known {
                Some(view) => Some(view.clone()),
                None => match self.read_replica_manifest(id).await {
                    Ok(view) => view,
                    // Damaged: copied again from the home (`copy_manifests`
                    // lands the kept manifests the replica lacks).
                    Err(err @ Error::Failed(_)) => {
                        tracing::warn!(flow = %self.label(), "{err}");
                        self.replica_files.remove(&FileRef::Manifest(id));
                        None
                    }
                    Err(unreachable) => return Err(unreachable),
                },
            };
            match view {
                Some(view) => {
                    self.kept_views.insert(id, view.clone());
                    keep.ssts.extend(view.ssts.iter().cloned());
                    keep.wal
                        .push((view.replay_after_wal_id + 1, view.next_wal_id));
                    keep.wal_from = keep.wal_from.min(view.replay_after_wal_id + 1);
                }
                // A checkpoint whose manifest never reached the replica:
                // every WAL file, since its range is unknown. Asked again
                // next time while the home holds it (`copy_manifests`
                // lands it); else not until the replica's state moves.
                None => {
                    keep.wal.push((0, u64::MAX));
                    keep.wal_from = 0;
                    keep.complete &= self.home_files.get(&FileRef::Manifest(id)).is_none();
                }
            }
        }
        self.keep = Some(keep);
        Ok(())
    }

    /// Whether the replica wants `file` (it is not history): the files of
    /// its newest state and its checkpoints, and whatever is newer; with no
    /// manifest yet, what the home's newest decoded state needs.
    fn wanted(&self, file: &FileRef) -> bool {
        if self.suspect.contains(file) {
            return true;
        }
        // Worked out for an older replica manifest (mid-pass), it keeps
        // more, never less.
        let keep = self.keep.as_ref();
        match (file, &self.replica_manifest) {
            (FileRef::Wal(id), Some(m)) => {
                *id > m.replay_after_wal_id || keep.is_none_or(|k| *id >= k.wal_from)
            }
            (FileRef::Wal(id), None) => self
                .home_newest
                .as_ref()
                .is_none_or(|h| *id > h.replay_after_wal_id),
            (FileRef::Sst(ulid), _) if self.compaction_output(ulid) => true,
            (FileRef::Sst(ulid), Some(m)) => {
                m.ssts.contains(ulid)
                    || keep.is_some_and(|k| k.ssts.contains(ulid))
                    || self
                        .home_newest
                        .as_ref()
                        .is_some_and(|h| h.id > m.id && h.ssts.contains(ulid))
            }
            (FileRef::Sst(ulid), None) => self
                .home_newest
                .as_ref()
                .is_none_or(|h| h.ssts.contains(ulid)),
            (FileRef::Manifest(_) | FileRef::Compactions(_), _) => true,
        }
    }

    /// Whether a compaction in flight at the home wrote SST `ulid`.
    fn compaction_output(&self, ulid: &str) -> bool {
        self.compaction_outputs
            .as_ref()
            .is_some_and(|(_, outputs)| outputs.contains(ulid))
    }

    /// Decodes the home's newest compactions file when it is new (with the
    /// bytes a look read, or one read): which SSTs its compactions in
    /// flight wrote. One that does not decode counts as naming none.
    async fn note_compaction_outputs(&mut self) -> Result<()> {
        let Some(FileRef::Compactions(id)) = self.home_files.newest(Dir::Compactions) else {
            return Ok(());
        };
        if self
            .compaction_outputs
            .as_ref()
            .is_some_and(|(at, _)| *at == id)
        {
            return Ok(());
        }
        let file = FileRef::Compactions(id);
        let held = self.fetched.get(&file).and_then(|f| f.bytes.clone());
        let bytes = match held {
            Some(bytes) => Some(bytes),
            None => self.home.read(&file).await?,
        };
        let outputs = match bytes {
            Some(bytes) => compaction_outputs(id, bytes).await.unwrap_or_else(|e| {
                tracing::warn!(flow = %self.label(), "the home's {e}");
                BTreeSet::new()
            }),
            None => BTreeSet::new(),
        };
        self.compaction_outputs = Some((id, outputs));
        Ok(())
    }

    /// Copies `jobs` with the configured number in flight, recording each
    /// success as it lands; stops at the first failure.
    async fn copy_parallel(&mut self, jobs: Vec<FileRef>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let limit = self.copy_budget.map_or(jobs.len(), |b| b as usize);
        let jobs: Vec<_> = jobs
            .into_iter()
            .take(limit)
            .map(|file| {
                let fetched = self.take_fetched(&file);
                (file, fetched)
            })
            .collect();
        let home = self.home.clone();
        let replica = self.replica.clone();
        let permits = Arc::clone(&self.permits);
        let started = Instant::now();
        let mut bytes = 0;
        let mut copies = futures::stream::iter(jobs)
            .map(move |(file, fetched)| {
                let home = home.clone();
                let replica = replica.clone();
                let permits = Arc::clone(&permits);
                async move {
                    let _permit = permits.acquire_owned().await;
                    let copied = copy_file(&home, &replica, &file, fetched).await;
                    (file, copied)
                }
            })
            .buffer_unordered(self.opts.copies_in_flight.max(1));
        loop {
            let landed = tokio::select! {
                landed = copies.next() => landed,
                () = tokio::time::sleep(PROGRESS_EVERY) => {
                    // Nothing landed for a second. Only what this process's
                    // writers announced is news: a status refreshed with
                    // nothing observed would look fresh, "in sync", while a
                    // request hangs (a partition), where a stale one shows
                    // the lag since the last sync.
                    self.hear();
                    if !self.heard_files.is_empty() {
                        self.progress();
                    }
                    continue;
                }
            };
            let Some((file, copied)) = landed else {
                break;
            };
            match copied {
                Ok(meta) => {
                    bytes += meta.size;
                    self.record_copy(file, meta);
                }
                Err(CopyError::Vanished) => self.home_files.remove(&file),
                Err(CopyError::Failed(err)) => return Err(err),
            }
            self.progress();
        }
        // Enough bytes to say something of the link.
        if bytes >= RATE_SAMPLE_MIN_BYTES {
            let sample = bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
            self.copy_rate = Some(self.copy_rate.map_or(sample, |r| (r + sample) / 2.0));
        }
        self.check_budget()
    }

    /// Publishes the status mid-pass, at most every [`PROGRESS_EVERY`].
    fn progress(&mut self) {
        let due = self.status.observed_us + PROGRESS_EVERY.as_micros() as u64;
        if now_us() >= due {
            self.refresh_status(false);
        }
    }

    fn check_budget(&self) -> Result<()> {
        match self.copy_budget {
            Some(0) => Err(Error::Failed("copy budget spent".into())),
            _ => Ok(()),
        }
    }

    /// The p99 of the WAL delays of the last minute (`None` without any).
    fn recent_wal_delay_p99_ms(&self) -> Option<u32> {
        let fresh = |t: &Instant| t.elapsed() <= Duration::from_secs(60);
        let mut delays: Vec<u32> = self
            .recent_delays
            .iter()
            .filter(|(t, _)| fresh(t))
            .map(|(_, d)| *d)
            .collect();
        if delays.is_empty() {
            return None;
        }
        delays.sort_unstable();
        let at = ((delays.len() - 1) as f64 * 0.99).round() as usize;
        delays.get(at).copied()
    }

    /// Records a copy of `file`, whose home metadata (and the size copied)
    /// is `meta`.
    fn record_copy(&mut self, file: FileRef, meta: FileMeta) {
        let now = now_us();
        let bytes = meta.size;
        if let FileRef::Wal(id) = file {
            let written_us = self.wal_written_us(id, &meta);
            let delay_ms = (now.saturating_sub(written_us) / 1000).min(u32::MAX as u64) as u32;
            let mut delays = self.delays_ms.lock().unwrap_or_else(|p| p.into_inner());
            if delays.len() < MAX_DELAY_SAMPLES {
                delays.push(delay_ms);
            }
            let at = Instant::now();
            self.recent_delays.push_back((at, delay_ms));
            while self.recent_delays.len() > RECENT_DELAYS_KEPT
                || self
                    .recent_delays
                    .front()
                    .is_some_and(|(t, _)| at.duration_since(*t) > Duration::from_secs(60))
            {
                self.recent_delays.pop_front();
            }
        }
        if let FileRef::Compactions(id) = file {
            self.cursor.compactions_id = self.cursor.compactions_id.max(id);
        }
        if !self.suspect.remove(&file) && !self.copied.insert(file.clone()) {
            self.status.duplicate_copies += 1;
        }
        self.status.bytes_copied += bytes;
        self.status.objects_copied += 1;
        if let Some(promised) = &self.promise {
            promised.mark.copied(bytes);
        }
        self.home_files.insert(file.clone(), meta);
        self.replica_files.insert(
            file,
            FileMeta {
                size: bytes,
                modified_us: now,
            },
        );
        self.cursor_dirty = true;
        if let Some(budget) = self.copy_budget.as_mut() {
            *budget = budget.saturating_sub(1);
        }
    }

    /// The WAL files readers of the replica reach, one at a time from the
    /// end of what they reach now, stopping at the first the home lacks.
    async fn copy_wal_tail(&mut self) -> Result<()> {
        self.absorb_handed_over();
        let Some(manifest) = &self.replica_manifest else {
            return Ok(());
        };
        let mut next = self.wal_end(manifest) + 1;
        while self.home_files.wals.contains_key(&next) {
            self.check_budget()?;
            let file = FileRef::Wal(next);
            let fetched = self.take_fetched(&file);
            let _permit = Arc::clone(&self.permits).acquire_owned().await;
            match copy_file(&self.home, &self.replica, &file, fetched).await {
                Ok(meta) => {
                    self.record_copy(file, meta);
                    // Readers of the replica reach it now: writes in it
                    // may be acknowledged.
                    if let Some(promised) = &self.promise {
                        promised.mark.held(next);
                    }
                }
                Err(CopyError::Vanished) => {
                    self.home_files.remove(&file);
                    break;
                }
                Err(CopyError::Failed(err)) => return Err(err),
            }
            self.progress();
            next += 1;
        }
        self.cursor.wal_id = self.cursor.wal_id.max(next - 1);
        Ok(())
    }

    /// Lands the manifests the replica lacks, ascending, each once its SSTs
    /// are all at the replica (copied by name, all at once): every one the
    /// home still holds past the replica's newest (the home's GC hold keeps
    /// them, `storage::gc_hold`), so a replica that fell behind passes
    /// through every state the home had, and a point in time there finds
    /// a base close to it; and the manifests the newest one's checkpoints
    /// keep. A seed lands the home's newest manifest and those its
    /// checkpoints keep: what came before is history no reader opens. It
    /// also copies the WAL past the newest's replay point with the SSTs, in
    /// parallel: with no manifest at the replica, no reader reaches it yet.
    ///
    /// With the store copying SSTs, every manifest lands in turn, each once
    /// the store has copied what it names: the newest alone may never be
    /// complete while the home keeps writing ahead of the store.
    async fn copy_manifests(&mut self) -> Result<()> {
        self.waiting_for_store = None;
        if self.pace.data_by_store() {
            return self.copy_manifests_as_the_store_copies().await;
        }
        let from = self.replica_manifest.as_ref().map_or(0, |m| m.id);
        let newest = self.home_files.manifests.keys().next_back().copied();
        // Behind its home: the manifests past its own, the oldest first and
        // a bounded number a pass, with the newest.
        let mut wanted: Vec<u64> = if self.replica_manifest.is_some() {
            self.home_files
                .manifests
                .range(from + 1..)
                .map(|(id, _)| *id)
                .take(MANIFESTS_A_PASS)
                .collect()
        } else {
            Vec::new()
        };
        // Every manifest up to here is landed in turn, if any is.
        let in_turn_to = wanted.last().copied().unwrap_or(from);
        wanted.extend(newest.filter(|id| *id > from && !wanted.contains(id)));
        let mut read = Vec::new();
        for id in wanted.into_iter().rev() {
            if let Some(manifest) = self.read_home_manifest(id).await? {
                read.push(manifest);
            }
        }
        if self.replica_manifest.is_some() {
            self.every_manifest_or_the_newest(&mut read, from, in_turn_to);
        }
        let kept = match (read.first(), &self.replica_manifest) {
            (Some(newest), _) => newest.view.checkpoint_manifest_ids.clone(),
            (None, Some(at)) => at.checkpoint_manifest_ids.clone(),
            (None, None) => Vec::new(),
        };
        for id in kept.into_iter().rev() {
            let file = FileRef::Manifest(id);
            let lacking = self.replica_files.get(&file).is_none()
                && self.home_files.get(&file).is_some()
                && read.iter().all(|m| m.view.id != id);
            if lacking && let Some(manifest) = self.read_home_manifest(id).await? {
                read.push(manifest);
            }
        }
        read.sort_by_key(|m| m.view.id);
        let Some(target) = read.last().map(|m| m.view.clone()) else {
            return Ok(());
        };
        if self.home_newest.as_ref().is_none_or(|h| h.id < target.id) {
            self.home_newest = Some(target.clone());
        }
        self.home_replay_after = self.home_replay_after.max(target.replay_after_wal_id);
        // By name: the manifests say which SSTs they read.
        let mut jobs: BTreeSet<FileRef> = read
            .iter()
            .flat_map(|m| m.view.missing_ssts(&self.replica_files, &self.home_files))
            .map(FileRef::Sst)
            .collect();
        if self.replica_manifest.is_none() {
            jobs.extend(
                self.home_files
                    .wals
                    .range(target.replay_after_wal_id + 1..)
                    .map(|(id, meta)| (FileRef::Wal(*id), *meta))
                    .filter(|(file, meta)| self.lacks(file, meta))
                    .map(|(file, _)| file),
            );
        }
        self.copy_parallel(jobs.into_iter().collect()).await?;
        for manifest in read {
            self.land(manifest).await?;
        }
        Ok(())
    }

    /// Of the manifests `read` past the replica's (`from`), newest first,
    /// keeps those to land this pass: every one the home holds in turn, up
    /// to `in_turn_to` (the next pass goes on from there), while the SSTs
    /// only they name cost the link less time than the RPO target with
    /// what else is pending; else (a saturated link) the newest alone, as
    /// a seed does: keeping the RPO comes before keeping every state.
    fn every_manifest_or_the_newest(
        &self,
        read: &mut Vec<HomeManifest>,
        from: u64,
        in_turn_to: u64,
    ) {
        let Some(newest) = read.first().map(|m| m.view.clone()) else {
            return;
        };
        let between: Vec<&HomeManifest> = read
            .iter()
            .filter(|m| m.view.id > from && m.view.id < newest.id)
            .collect();
        let size = |ulid: &String| {
            self.home_files
                .get(&FileRef::Sst(ulid.clone()))
                .map_or(0, |m| m.size)
        };
        let history: BTreeSet<String> = between
            .iter()
            .flat_map(|m| m.view.missing_ssts(&self.replica_files, &self.home_files))
            .filter(|ulid| !newest.ssts.contains(ulid))
            .collect();
        // A state between whose SSTs the home collected (past the hold's
        // bound, or a writer that holds nothing) can never land: going on
        // in turn would stop at it for good.
        let collected = history
            .iter()
            .any(|ulid| self.home_files.get(&FileRef::Sst(ulid.clone())).is_none());
        let history_bytes: u64 = history.iter().map(size).sum();
        let (_, pending_bytes) = self.pending();
        let affordable = !collected
            && self.copy_rate.is_none_or(|rate| {
                (history_bytes + pending_bytes) as f64 / rate
                    <= self.pace.in_sync_lag().as_secs_f64()
            });
        if affordable {
            // In turn: nothing past the run lands before the run does.
            read.retain(|m| m.view.id <= in_turn_to);
        } else {
            tracing::debug!(
                flow = %self.label(),
                history_bytes,
                pending_bytes,
                collected,
                "landing the newest manifest, not every one: the link is saturated or the home collected states between"
            );
            read.retain(|m| m.view.id == newest.id);
        }
    }

    /// Lands `manifest` at the replica when every SST it names is there;
    /// one whose SSTs the home garbage-collected is no longer a state
    /// anyone can read, and is skipped.
    async fn land(&mut self, manifest: HomeManifest) -> Result<()> {
        self.check_budget()?;
        let HomeManifest { view, bytes, meta } = manifest;
        let id = view.id;
        let missing = view.missing_ssts(&self.replica_files, &self.home_files);
        if !missing.is_empty() {
            tracing::debug!(
                flow = %self.label(),
                manifest = id,
                missing = missing.len(),
                "skipping a manifest whose SSTs the home deleted"
            );
            return Ok(());
        }
        let file = FileRef::Manifest(id);
        let _permit = Arc::clone(&self.permits).acquire_owned().await;
        self.replica.write(&file, bytes).await?;
        self.record_copy(file, meta);
        // A checkpoint in a later manifest may keep this one: its view is
        // then at hand, with no read at the replica.
        self.landed_views.insert(id, view.clone());
        while self.landed_views.len() > LANDED_VIEWS_KEPT {
            self.landed_views.pop_first();
        }
        if self.replica_manifest.as_ref().is_none_or(|m| m.id < id) {
            self.cursor.manifest_id = id;
            self.replica_manifest = Some(view);
            // A new replica manifest is worth saving at once: a restart
            // starts from it.
            self.cursor_saved = Instant::now() - self.opts.cursor_save_every;
        }
        Ok(())
    }

    /// `copy_manifests` with the store copying SSTs: manifests newer than
    /// the replica's, ascending, each once a HEAD at the replica finds
    /// every SST it names; the first the store has not caught up with
    /// waits, and every later one with it.
    async fn copy_manifests_as_the_store_copies(&mut self) -> Result<()> {
        let from = self.replica_manifest.as_ref().map_or(0, |m| m.id);
        let candidates: Vec<u64> = self
            .home_files
            .manifests
            .range(from + 1..)
            .map(|(id, _)| *id)
            .collect();
        for id in candidates {
            let Some(manifest) = self.read_home_manifest(id).await? else {
                continue;
            };
            let missing = manifest
                .view
                .missing_ssts(&self.replica_files, &self.home_files);
            if !missing.is_empty() && self.look_for_store_copies(&missing).await? {
                let missing = manifest
                    .view
                    .missing_ssts(&self.replica_files, &self.home_files);
                if !missing.is_empty() {
                    // The store has not copied them yet: neither this
                    // manifest nor any later one lands before it does, and
                    // the WAL up to its replay point is still the replica's
                    // to copy.
                    self.waiting_for_store = Some((id, missing.len()));
                    return Ok(());
                }
            }
            self.home_replay_after = self
                .home_replay_after
                .max(manifest.view.replay_after_wal_id);
            self.land(manifest).await?;
        }
        Ok(())
    }

    /// Reads and decodes home manifest `id` (the bytes a look read, when it
    /// did); `None`, and forgotten, when the home no longer holds it.
    async fn read_home_manifest(&mut self, id: u64) -> Result<Option<HomeManifest>> {
        let file = FileRef::Manifest(id);
        let fetched = match self.take_fetched(&file) {
            Some(fetched) => Some(fetched),
            None => self.home.fetch(&file).await?,
        };
        let bytes = match fetched {
            Some(Fetched {
                bytes: Some(bytes), ..
            }) => Some(bytes),
            Some(Fetched { bytes: None, .. }) => self.home.read(&file).await?,
            None => None,
        };
        let Some(bytes) = bytes else {
            self.home_files.remove(&file);
            return Ok(None);
        };
        let meta = FileMeta {
            size: bytes.len() as u64,
            ..self.home_files.get(&file).unwrap_or(FileMeta {
                size: 0,
                modified_us: now_us(),
            })
        };
        let view = ManifestView::parse(id, bytes.clone())
            .await
            .map_err(|e| Error::Failed(format!("{}: the home's {e}", self.label())))?;
        Ok(Some(HomeManifest { view, bytes, meta }))
    }

    /// With the store copying SSTs: looks (HEAD) at each of `missing` at
    /// the replica, and at the home when its size is not known yet; one at
    /// the replica at the home's size counts as held. Returns whether the
    /// home holds every one (the store is then behind, and the manifest
    /// waits for it; else the home collected one, and the manifest is no
    /// state anyone can read).
    async fn look_for_store_copies(&mut self, missing: &[String]) -> Result<bool> {
        let looks = missing.iter().map(|ulid| {
            let file = FileRef::Sst(ulid.clone());
            let known = self.home_files.get(&file);
            let (home, replica) = (&self.home, &self.replica);
            async move {
                let (at_home, at_replica) = tokio::try_join!(
                    async {
                        match known {
                            Some(meta) => Ok(Some(meta)),
                            None => home.head(&file).await,
                        }
                    },
                    replica.head(&file)
                )?;
                Ok::<_, Error>((file, at_home, at_replica))
            }
        });
        let looked = futures::future::try_join_all(looks).await?;
        let mut all_at_home = true;
        for (file, at_home, at_replica) in looked {
            let Some(at_home) = at_home else {
                all_at_home = false;
                continue;
            };
            self.home_files.insert(file.clone(), at_home);
            if let Some(there) = at_replica.filter(|there| there.size == at_home.size) {
                self.replica_files.insert(file, there);
            }
        }
        Ok(all_at_home)
    }

    /// The delete half of a list-diff alone: lists both sides in full and
    /// removes what the home deleted and nothing here needs, copying
    /// nothing. Returns how many files were deleted.
    pub async fn prune(&mut self) -> Result<u64> {
        if !self.loaded {
            self.load().await?;
        }
        let before = self.status.objects_deleted;
        self.list_everything().await?;
        self.delete_unneeded().await?;
        self.refresh_status(true);
        Ok(self.status.objects_deleted - before)
    }

    /// After a full listing: removes replica files the home deleted that
    /// nothing in the replica's region needs any more.
    async fn delete_unneeded(&mut self) -> Result<()> {
        if self.moved() {
            return Ok(());
        }
        self.refresh_keep().await?;
        let Some(keep) = self.keep.clone() else {
            return Ok(());
        };
        let doomed: Vec<FileRef> = self
            .replica_files
            .iter()
            .map(|(file, _)| file)
            .filter(|file| self.home_files.get(file).is_none())
            .filter(|file| match file {
                FileRef::Manifest(id) => !keep.manifests.contains(id),
                FileRef::Wal(id) => !keep.wal(*id),
                FileRef::Sst(ulid) => !keep.ssts.contains(ulid),
                FileRef::Compactions(_) => true,
            })
            .filter(|file| {
                !self
                    .pins
                    .holds(&self.replica.region, &self.flow.db, &self.flow.branch, file)
            })
            .collect();
        let now = Instant::now();
        let doomed: HashSet<FileRef> = doomed.into_iter().collect();
        self.unneeded_since.retain(|file, _| doomed.contains(file));
        let mut due = Vec::new();
        for file in doomed {
            let since = *self.unneeded_since.entry(file.clone()).or_insert(now);
            if now.duration_since(since) >= self.opts.delete_grace {
                due.push(file);
            }
        }
        due.sort();
        for file in due {
            self.unneeded_since.remove(&file);
            self.replica.delete(&file).await?;
            self.replica_files.remove(&file);
            self.copied.remove(&file);
            self.status.objects_deleted += 1;
        }
        Ok(())
    }

    /// Looks at what the replica itself holds of its newest state (the
    /// manifest, the WAL files a reader replays, the SSTs), in three
    /// listings, so that the state a replica shows comes from the replica,
    /// not from what this copier remembers copying (files deleted by hand,
    /// or the whole replica). Anything missing makes the state Damaged and
    /// the next pass a full list-diff, which copies it again.
    async fn check_cut(&mut self) -> Result<()> {
        self.cut_checked = Some(Instant::now());
        let Some(manifest) = self.replica_manifest.clone() else {
            return Ok(());
        };
        let after_manifest = (manifest.id > 1).then(|| FileRef::Manifest(manifest.id - 1));
        let after_wal = (manifest.replay_after_wal_id > 0)
            .then_some(FileRef::Wal(manifest.replay_after_wal_id));
        let mut held = BranchFiles::default();
        held.replace_dir(
            Dir::Manifest,
            self.replica
                .list(Dir::Manifest, after_manifest.as_ref())
                .await?,
        );
        held.replace_dir(
            Dir::Wal,
            self.replica.list(Dir::Wal, after_wal.as_ref()).await?,
        );
        held.replace_dir(
            Dir::Compacted,
            self.replica.list(Dir::Compacted, None).await?,
        );
        let lost = self.lost_from_cut(&manifest, &held, self.wal_end(&manifest));
        self.repair_cut(&lost);
        Ok(())
    }

    /// The files the replica's newest state (`manifest`, and the WAL up to
    /// `wal_end`) needs that it did not hold at a look (`held`), or held at
    /// another size than it was copied at.
    fn lost_from_cut(
        &self,
        manifest: &ManifestView,
        held: &BranchFiles,
        wal_end: u64,
    ) -> Vec<FileRef> {
        let mut needed = vec![FileRef::Manifest(manifest.id)];
        needed.extend(manifest.ssts.iter().cloned().map(FileRef::Sst));
        needed.extend((manifest.replay_after_wal_id + 1..=wal_end).map(FileRef::Wal));
        needed
            .into_iter()
            .filter(
                |file| match (held.get(file), self.replica_files.get(file)) {
                    (None, _) => true,
                    (Some(now), Some(copied)) => now.size != copied.size,
                    (Some(_), None) => false,
                },
            )
            .collect()
    }

    /// Files of the replica's newest state found `lost`: forgotten, and the
    /// next pass is a full list-diff, which copies them again.
    fn repair_cut(&mut self, lost: &[FileRef]) {
        let Some(first) = lost.first() else {
            return;
        };
        let message = format!(
            "the replica lacks {} file(s) of its newest state ({}); copying them again",
            lost.len(),
            first.rel()
        );
        for file in lost {
            self.replica_files.remove(file);
        }
        self.forget_lost(lost, message);
        self.healed = None;
    }

    /// Replica files found `lost` after they were copied (`message` says
    /// how): counted as repairs, copied again, and the state shows Damaged
    /// until they are.
    fn forget_lost(&mut self, lost: &[FileRef], message: String) {
        tracing::warn!(flow = %self.label(), "{message}");
        for file in lost {
            self.copied.remove(file);
        }
        self.status.repairs += lost.len() as u64;
        self.damaged = Some(message);
    }

    /// Re-reads the files the replica's newest state needs, up to the
    /// configured bytes per scrub, rotating through them, and compares each
    /// with the home's copy. Anything missing or different is forgotten, so
    /// the next pass copies it again, and the state shows Damaged until then.
    async fn scrub(&mut self) -> Result<()> {
        let Some(manifest) = self.replica_manifest.clone() else {
            return Ok(());
        };
        let wal_end = self.wal_end(&manifest);
        let mut needed: Vec<FileRef> = vec![FileRef::Manifest(manifest.id)];
        needed.extend(manifest.ssts.iter().cloned().map(FileRef::Sst));
        needed.extend((manifest.replay_after_wal_id + 1..=wal_end).map(FileRef::Wal));
        let start = self
            .scrub_after
            .as_ref()
            .and_then(|after| needed.iter().position(|f| f == after))
            .map_or(0, |i| i + 1);
        let mut budget = self.opts.scrub_bytes;
        let mut checked = 0;
        for file in needed.iter().cycle().skip(start).take(needed.len()) {
            if budget == 0 {
                break;
            }
            let replica = self.replica.read(file).await?;
            let home = match self.home_files.get(file) {
                Some(_) => self.home.read(file).await?,
                None => None,
            };
            let problem = match (&replica, &home) {
                (None, _) => Some("is missing"),
                (Some(r), Some(h)) if r != h => Some("differs from the home's copy"),
                (Some(r), None) => self
                    .replica_files
                    .get(file)
                    .filter(|m| m.size != 0 && m.size != r.len() as u64)
                    .map(|_| "has the wrong size"),
                _ => None,
            };
            budget = budget.saturating_sub(replica.as_ref().map_or(0, |b| b.len() as u64));
            checked += 1;
            self.scrub_after = Some(file.clone());
            if let Some(problem) = problem {
                let message = format!("scrub: {} {problem}; copying it again", file.rel());
                self.replica_files.remove(file);
                self.suspect.insert(file.clone());
                self.forget_lost(std::slice::from_ref(file), message);
                // What the cursor vouched for is in doubt: list everything.
                self.healed = None;
            }
        }
        tracing::debug!(flow = %self.label(), checked, "scrub done");
        self.status.scrubs += 1;
        self.refresh_status(true);
        Ok(())
    }

    /// When the oldest write past WAL `wal_end` was made durable at the
    /// home, for WAL known to be there but not read yet: heard of (its
    /// notice time), or past where a look stopped at its limit (then the
    /// next file began filling once WAL `wal_end` was written).
    fn unread_wal_since(&self, wal_end: u64) -> Option<u64> {
        let heard = self
            .heard_files
            .iter()
            .filter(|(file, _)| matches!(file, FileRef::Wal(id) if *id > wal_end))
            .map(|(_, at)| *at)
            .min();
        let beyond = self
            .wal_beyond
            .then(|| {
                self.home_files
                    .wals
                    .get(&wal_end)
                    .map(|m| self.wal_written_us(wal_end, m))
            })
            .flatten();
        heard.into_iter().chain(beyond).min()
    }

    /// Home files the replica lacks and wants: `(objects, bytes)`.
    /// Manifests older than the replica's newest are not wanted, nor is
    /// history.
    fn pending(&self) -> (u64, u64) {
        let newest = self.replica_manifest.as_ref().map_or(0, |m| m.id);
        self.home_files
            .iter()
            .filter(|(file, meta)| match file {
                FileRef::Manifest(id) => *id > newest,
                _ => self.lacks(file, meta) && self.wanted(file),
            })
            .fold((0, 0), |(n, b), (_, meta)| (n + 1, b + meta.size))
    }

    /// Tells the home's writers in this process what the replica holds, so
    /// their collector keeps what it still needs (`storage::gc_hold`).
    fn report_hold(&self) {
        self.flow.home.notices().holds.report(
            self.home.base.as_ref(),
            self.flow.replica.name(),
            crate::storage::gc_hold::Held {
                manifest_id: self.cursor.manifest_id,
                wal_id: self.cursor.wal_id,
                compactions_id: self.cursor.compactions_id,
                bound: self.pace.gc_hold(),
            },
        );
    }

    /// Recomputes the status from what is known and publishes it.
    /// `verified`: the pass behind it succeeded, so a replica that holds
    /// everything listed counts as synced now.
    fn refresh_status(&mut self, verified: bool) {
        // What the home's writer made durable while this pass copied is lag
        // too: a replica that copied all it had read is not in sync while
        // more waits (over a slow link, each pass would end "in sync"). It
        // is not counted as pending: its size is not known until it is read.
        self.hear();
        let now = now_us();
        let (objects_pending, bytes_pending) = self.pending();
        if let Some(promised) = &self.promise {
            promised.mark.pending(bytes_pending);
        }
        self.report_hold();
        let next_look_us = now + self.next_look_in().as_micros() as u64;
        let wal_delay_p99_ms = self.recent_wal_delay_p99_ms();
        let cut = self
            .replica_manifest
            .as_ref()
            .map(|m| CutReport::of(m, &self.replica_files, &self.home_files, 0));
        let unread_since = cut
            .as_ref()
            .and_then(|cut| self.unread_wal_since(cut.wal_end));
        // The home's commit time of the replica's newest state, and of the
        // oldest write beyond it.
        let cut_committed_us = cut.as_ref().and_then(|cut| {
            let wals = &self.home_files.wals;
            wals.get(&cut.wal_end)
                .map(|m| self.wal_written_us(cut.wal_end, m))
        });
        let uncovered_since_us = cut.as_ref().and_then(|cut| {
            let wals = &self.home_files.wals;
            wals.range(cut.wal_end + 1..)
                .next()
                .map(|(id, m)| self.wal_written_us(*id, m))
                .or(unread_since)
        });
        let status = &mut self.status;
        status.observed_us = now;
        status.home_manifest_id = self.home_files.manifests.keys().next_back().copied();
        status.home_wal_id = self.home_files.wals.keys().next_back().copied();
        status.objects_pending = objects_pending;
        status.bytes_pending = bytes_pending;
        status.requests_total = self.home.requests.total() + self.replica.requests.total();
        status.objects_listed = self.home.requests.listed() + self.replica.requests.listed();
        status.requests_per_min =
            self.home.requests.last_minute() + self.replica.requests.last_minute();
        status.requests = self
            .home
            .requests
            .counts()
            .plus(&self.replica.requests.counts());
        status.requests_last_min = self
            .home
            .requests
            .last_minute_counts()
            .plus(&self.replica.requests.last_minute_counts());
        status.next_look_us = Some(next_look_us);
        status.wal_delay_p99_ms = wal_delay_p99_ms;
        let (Some(manifest), Some(cut)) = (&self.replica_manifest, cut) else {
            status.state = FlowState::Seeding;
            status.detail = None;
            status.replica_manifest_id = None;
            status.replica_wal_id = None;
            status.lag_s = None;
            self.publish.send_replace(status.clone());
            return;
        };
        status.replica_manifest_id = Some(manifest.id);
        status.replica_wal_id = Some(cut.wal_end);
        status.consistent_commit_us = cut_committed_us.or(status.consistent_commit_us);
        status.uncovered_since_us = uncovered_since_us;
        if cut.readable() && self.damaged.is_some() {
            // Whatever the scrub or list-diff found has been copied again.
            self.damaged = None;
        }
        status.lag_s = status.lag_s_at(now);
        status.unreachable = None;
        if verified && status.uncovered_since_us.is_none() && objects_pending == 0 {
            status.last_sync_us = Some(now);
            self.cursor.synced_us = Some(now);
        }
        (status.state, status.detail) = if let Some(damage) = &self.damaged {
            (FlowState::Damaged, Some(damage.clone()))
        } else if !cut.readable() {
            let detail = if cut.missing_ssts.is_empty() {
                format!(
                    "{} WAL file(s) beyond a gap after WAL {}",
                    cut.wal_beyond_gap, cut.wal_end
                )
            } else {
                format!(
                    "{} SST(s) of manifest {} missing",
                    cut.missing_ssts.len(),
                    cut.manifest_id
                )
            };
            (FlowState::Damaged, Some(detail))
        } else {
            let waiting = self.waiting_for_store.map(|(manifest, ssts)| {
                format!("manifest {manifest} waits for the store to copy {ssts} SST(s)")
            });
            if status
                .lag_s
                .is_some_and(|l| l > self.pace.in_sync_lag().as_secs_f64())
            {
                (FlowState::Lagging, waiting)
            } else {
                (FlowState::InSync, waiting)
            }
        };
        self.publish.send_replace(status.clone());
    }

    async fn maybe_save_cursor(&mut self) -> Result<()> {
        if self.cursor_dirty && self.cursor_saved.elapsed() >= self.opts.cursor_save_every {
            self.save_cursor().await?;
        }
        Ok(())
    }

    /// Saves the cursor now (when stopping, and when a manifest lands).
    pub async fn save_cursor(&mut self) -> Result<()> {
        if !self.loaded || !self.cursor_dirty {
            return Ok(());
        }
        // A move of the home waits for this save, or this save sees it.
        let lock = self.pins.cursor_lock(&self.flow.db, &self.flow.branch);
        let _saving = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        if self.moved() {
            return Ok(());
        }
        self.cursor.requests_per_min = self.status.requests_per_min;
        self.cursor.saved_us = now_us();
        self.replica.requests.record(RequestClass::Put);
        cursor::save(&self.replica.store, &self.replica.region, &self.cursor).await?;
        self.cursor_dirty = false;
        self.cursor_saved = Instant::now();
        Ok(())
    }

    /// The longest wait between attempts while a region is unreachable.
    pub fn max_backoff(&self) -> Duration {
        self.opts.max_backoff
    }

    /// How long to wait before the next tick after `tick` (a notice of a
    /// file written here cuts the wait short).
    pub fn next_wait(&self, tick: Tick) -> Duration {
        // A file heard of while the pass ran (its status took the notice)
        // is not announced again: the next pass comes at once.
        if tick == Tick::Active || !self.heard_files.is_empty() {
            return self.opts.min_poll;
        }
        self.next_look_in().max(self.opts.min_poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{Region, RegionSpec};
    use crate::replication::pins::NoPins;
    use crate::storage::DbLocation;

    /// A pass copies what it read; what the home's writer made durable
    /// meanwhile is lag all the same. Over a slow link every pass used to
    /// end "in sync, lag 0" while the backlog grew.
    #[tokio::test]
    async fn what_was_heard_and_not_yet_copied_is_lag() {
        let open = |name: &str| {
            Region::open(&RegionSpec::new(
                name,
                &format!("memory://copier-heard-{name}"),
            ))
            .expect("region")
        };
        let (a, b) = (open("a"), open("b"));
        let home = DbLocation::in_region(&a, "orders").expect("names");
        home.create().await.expect("create");
        let opts = ReplicationOptions {
            hear_writers: true,
            ..ReplicationOptions::default()
        };
        let (publish, shown) = watch::channel(FlowStatus::of(&Flow::new("orders", "main", &a, &b)));
        let mut copier = BranchCopier::paced(
            Flow::new("orders", "main", &a, &b),
            opts.clone(),
            Arc::new(NoPins),
            Arc::new(Semaphore::new(4)),
            publish,
            DelaySamples::default(),
            Pace::new(&opts),
        );
        let _mark = home.mark_writer();
        let db = home.open_writer(false).await.expect("writer");
        db.put(b"k1", b"v1").await.expect("put");
        db.flush().await.expect("flush");
        copier.pass().await.expect("first pass");
        assert_eq!(shown.borrow().objects_pending, 0, "{:#?}", *shown.borrow());
        assert_eq!(shown.borrow().state, FlowState::InSync);

        // Durable at the home, heard, not read by any pass yet.
        db.put(b"k2", b"v2").await.expect("put");
        db.flush().await.expect("flush");
        let written_by = now_us();
        copier.refresh_status(false);
        let status = shown.borrow().clone();
        let since = status
            .uncovered_since_us
            .expect("the heard WAL is uncovered");
        assert!(since <= written_by, "{status:#?}");
        let later = status.lag_s_at(written_by + 2_000_000).expect("lag");
        assert!(later >= 2.0, "lag {later} s two seconds on: {status:#?}");

        copier.pass().await.expect("second pass");
        assert_eq!(shown.borrow().uncovered_since_us, None);
        db.close().await.expect("close");
    }
}
