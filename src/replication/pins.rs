//! Pins: files in a region that something other than the replica's newest
//! manifest still needs (a branch forked from the replica, a checkpoint, a
//! point-in-time retention window). A file deleted at home is deleted at a
//! replica only when no pin holds it (invariant 3).
//!
//! [`BranchPins`] holds what forked branches read; checkpoints of the
//! point-in-time window are SlateDB's own and kept by its manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, RwLock};

use crate::control::event::BranchForked;
use crate::control::state::ControlState;
use crate::storage::files::FileRef;

/// Says whether a file of a branch replica must be kept.
pub trait Pins: Send + Sync {
    /// True when `file` of `db`/`branch` in `region` must not be deleted.
    fn holds(&self, region: &str, db: &str, branch: &str, file: &FileRef) -> bool;

    /// True when the control log moved the home of `db`/`branch` away from
    /// `home` (a switchover or failback): a flow from there must stop
    /// before it copies into, deletes from, or saves a cursor at what is
    /// now the home.
    fn moved(&self, _db: &str, _branch: &str, _home: &str) -> bool {
        false
    }

    /// Held while a flow of `db`/`branch` saves its cursor, and by a move
    /// of its home while it rewrites the cursors: a save that looked at
    /// `moved` before the move cannot land after it (`None`: nothing moves
    /// homes here).
    fn cursor_lock(&self, _db: &str, _branch: &str) -> Option<CursorLock> {
        None
    }
}

/// Held across a cursor save, or a move's cursor swap.
pub type CursorLock = Arc<tokio::sync::Mutex<()>>;

/// No pins: only the replica's own manifests keep files.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPins;

impl Pins for NoPins {
    fn holds(&self, _: &str, _: &str, _: &str, _: &FileRef) -> bool {
        false
    }
}

/// (db, branch).
type BranchKey = (String, String);
/// SSTs held, by the branch they belong to.
type HeldSsts = BTreeMap<BranchKey, BTreeSet<String>>;
/// WAL files held (ranges of ids), by the branch they belong to.
type HeldWal = BTreeMap<BranchKey, Vec<RangeInclusive<u64>>>;

/// The pins of forked branches, from the control log: the compacted SSTs
/// each fork reads in place, and for a fork made at a replica the WAL
/// files of its fork point (the shadow's manifest replays them from the
/// replica; recovered writes are compared with that state, so it must read
/// the same for as long as the fork exists), held in every region (a fork
/// may be read, and replicated, anywhere its source is). While a fork is
/// being made, its source holds every SST and WAL file
/// ([`BranchPins::forking`]).
#[derive(Debug, Default)]
pub struct BranchPins {
    /// (db, branch) → SSTs that forks of it read.
    held: RwLock<HeldSsts>,
    /// (db, branch) → WAL files that fork points of it read.
    wal: RwLock<HeldWal>,
    /// (db, branch) → forks under way.
    forking: Mutex<BTreeMap<(String, String), usize>>,
    /// (db, branch) → the region a failover or switchover made its home.
    homes: RwLock<BTreeMap<(String, String), String>>,
    /// (db, branch) → held across a cursor save, or a move's cursor swap.
    cursors: Mutex<BTreeMap<(String, String), CursorLock>>,
}

impl BranchPins {
    /// Pins from every branch the control state knows.
    pub fn of(state: &ControlState) -> Arc<BranchPins> {
        let pins = Arc::new(BranchPins::default());
        pins.update(state);
        pins
    }

    /// Replaces the held files with what `state`'s branches read.
    pub fn update(&self, state: &ControlState) {
        let mut held = BTreeMap::new();
        let mut wal = BTreeMap::new();
        for record in state.all_branches() {
            hold(&mut held, &mut wal, &record.fork);
        }
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = held;
        *self.wal.write().unwrap_or_else(|p| p.into_inner()) = wal;
        let homes = state
            .live
            .values()
            .map(|l| ((l.db.clone(), l.branch.clone()), l.region.clone()))
            .collect();
        *self.homes.write().unwrap_or_else(|p| p.into_inner()) = homes;
    }

    /// Records at once (before the log is read again) that `db`/`branch`
    /// is now written in `region`.
    pub fn home_moved(&self, db: &str, branch: &str, region: &str) {
        self.homes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((db.to_string(), branch.to_string()), region.to_string());
    }

    /// Adds the pins of one fork at once (before the log is read again).
    pub fn add(&self, fork: &BranchForked) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        let mut wal = self.wal.write().unwrap_or_else(|p| p.into_inner());
        hold(&mut held, &mut wal, fork);
    }

    /// Holds every SST and WAL file of `db`/`branch` until the guard
    /// drops: a fork of it is being made and its pins are not known yet.
    pub fn forking(self: &Arc<Self>, db: &str, branch: &str) -> ForkingGuard {
        let key = (db.to_string(), branch.to_string());
        *self
            .forking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        ForkingGuard {
            pins: Arc::clone(self),
            key,
        }
    }

    /// How many SSTs are held, over all branches.
    pub fn count(&self) -> usize {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(BTreeSet::len)
            .sum()
    }
}

/// Adds what `fork` reads in place to `held` (SSTs) and `wal` (its fork
/// point's WAL files, for a fork at a replica that recorded them).
fn hold(held: &mut HeldSsts, wal: &mut HeldWal, fork: &BranchForked) {
    for (branch, ssts) in &fork.pinned {
        held.entry((fork.db.clone(), branch.clone()))
            .or_default()
            .extend(ssts.iter().cloned());
    }
    if let (Some(_), Some(from)) = (&fork.shadow, fork.wal_from) {
        wal.entry((fork.db.clone(), fork.source.clone()))
            .or_default()
            .push(from..=fork.wal_end);
    }
}

/// See [`BranchPins::forking`].
pub struct ForkingGuard {
    pins: Arc<BranchPins>,
    key: (String, String),
}

impl Drop for ForkingGuard {
    fn drop(&mut self) {
        let mut forking = self.pins.forking.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = forking.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                forking.remove(&self.key);
            }
        }
    }
}

impl Pins for BranchPins {
    fn holds(&self, _region: &str, db: &str, branch: &str, file: &FileRef) -> bool {
        if !matches!(file, FileRef::Sst(_) | FileRef::Wal(_)) {
            return false;
        }
        let key = (db.to_string(), branch.to_string());
        if self
            .forking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
        {
            return true;
        }
        match file {
            FileRef::Sst(ulid) => self
                .held
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .is_some_and(|ssts| ssts.contains(ulid)),
            FileRef::Wal(id) => self
                .wal
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .is_some_and(|ranges| ranges.iter().any(|r| r.contains(id))),
            _ => false,
        }
    }

    fn moved(&self, db: &str, branch: &str, home: &str) -> bool {
        self.homes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(db.to_string(), branch.to_string()))
            .is_some_and(|region| region != home)
    }

    fn cursor_lock(&self, db: &str, branch: &str) -> Option<CursorLock> {
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        let lock = cursors
            .entry((db.to_string(), branch.to_string()))
            .or_default();
        Some(Arc::clone(lock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::event::BranchReason;

    fn fork(branch: &str, shadow: bool, wal_from: Option<u64>) -> BranchForked {
        BranchForked {
            db: "orders".into(),
            branch: branch.into(),
            source: "main".into(),
            region: "eu-west-1".into(),
            reason: BranchReason::Failover,
            manifest_id: 7,
            wal_from,
            wal_end: 12,
            shadow: shadow.then(|| format!("_lifeboat/shadow/orders/main/{branch}")),
            pinned: BTreeMap::from([("main".to_string(), vec!["01SST".to_string()])]),
            expires_ms: None,
        }
    }

    fn held_wal(pins: &BranchPins) -> Vec<u64> {
        (0..20)
            .filter(|id| pins.holds("eu-west-1", "orders", "main", &FileRef::Wal(*id)))
            .collect()
    }

    #[test]
    fn a_fork_at_a_replica_holds_its_fork_points_wal_and_ssts() {
        let pins = BranchPins::default();
        pins.add(&fork("failover-1", true, Some(9)));
        assert_eq!(held_wal(&pins), vec![9, 10, 11, 12]);
        let sst = FileRef::Sst("01SST".into());
        assert!(pins.holds("us-east-1", "orders", "main", &sst));
        assert!(!pins.holds("eu-west-1", "orders", "failover-1", &FileRef::Wal(10)));
        assert!(!pins.holds("eu-west-1", "orders", "main", &FileRef::Manifest(7)));
    }

    #[test]
    fn a_fork_at_home_or_from_an_old_event_holds_no_wal() {
        let pins = BranchPins::default();
        pins.add(&fork("at-home", false, Some(9)));
        pins.add(&fork("old", true, None));
        assert!(held_wal(&pins).is_empty());
    }

    #[test]
    fn a_fork_under_way_holds_every_wal_file_of_its_source() {
        let pins = Arc::new(BranchPins::default());
        let guard = pins.forking("orders", "main");
        assert_eq!(held_wal(&pins).len(), 20);
        drop(guard);
        assert!(held_wal(&pins).is_empty());
    }
}
