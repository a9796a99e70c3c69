//! Pins: files in a region that something other than the replica's newest
//! manifest still needs (a branch forked from the replica, a checkpoint, a
//! point-in-time retention window). A file deleted at home is deleted at a
//! replica only when no pin holds it (invariant 3).
//!
//! [`BranchPins`] holds what forked branches read; checkpoints of the
//! point-in-time window are SlateDB's own and kept by its manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use super::files::FileRef;
use crate::control::state::ControlState;

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
}

/// No pins: only the replica's own manifests keep files.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPins;

impl Pins for NoPins {
    fn holds(&self, _: &str, _: &str, _: &str, _: &FileRef) -> bool {
        false
    }
}

/// The pins of forked branches, from the control log: the compacted SSTs
/// each fork reads in place, held in every region (a fork may be read, and
/// replicated, anywhere its source is). While a fork is being made, its
/// source holds every SST ([`BranchPins::forking`]).
#[derive(Debug, Default)]
pub struct BranchPins {
    /// (db, branch) → SSTs that forks of it read.
    held: RwLock<BTreeMap<(String, String), BTreeSet<String>>>,
    /// (db, branch) → forks under way.
    forking: Mutex<BTreeMap<(String, String), usize>>,
    /// (db, branch) → the region a failover or switchover made its home.
    homes: RwLock<BTreeMap<(String, String), String>>,
}

impl BranchPins {
    /// Pins from every branch the control state knows.
    pub fn of(state: &ControlState) -> Arc<BranchPins> {
        let pins = Arc::new(BranchPins::default());
        pins.update(state);
        pins
    }

    /// Replaces the held SSTs with what `state`'s branches read.
    pub fn update(&self, state: &ControlState) {
        let mut held: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for record in state.all_branches() {
            for (branch, ssts) in &record.fork.pinned {
                held.entry((record.fork.db.clone(), branch.clone()))
                    .or_default()
                    .extend(ssts.iter().cloned());
            }
        }
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = held;
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
    pub fn add(&self, db: &str, pinned: &BTreeMap<String, Vec<String>>) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        for (branch, ssts) in pinned {
            held.entry((db.to_string(), branch.clone()))
                .or_default()
                .extend(ssts.iter().cloned());
        }
    }

    /// Holds every SST of `db`/`branch` until the guard drops: a fork of it
    /// is being made and its pins are not known yet.
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
        let FileRef::Sst(ulid) = file else {
            return false;
        };
        let key = (db.to_string(), branch.to_string());
        if self
            .forking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
        {
            return true;
        }
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|ssts| ssts.contains(ulid))
    }

    fn moved(&self, db: &str, branch: &str, home: &str) -> bool {
        self.homes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(db.to_string(), branch.to_string()))
            .is_some_and(|region| region != home)
    }
}
