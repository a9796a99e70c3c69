//! Zero loss and the RPO guard, inside one process: what a branch's writer
//! and the copiers of its flows tell each other through the home region's
//! [`super::meter::Notices`].
//!
//! The store tells [`Sync`] of every WAL file this process writes at the
//! home (its id, size and time). The copier of a flow whose group asks for
//! zero loss or an RPO guard holds a [`PromiseMark`] and reports the
//! newest WAL id its replica holds with no gap before it: what a reader of
//! the replica, and a failover's fork of it, reach.
//!
//! - **Zero loss**: a write made durable at the home is in a WAL file at or
//!   below the newest one this process had written when `await_durable`
//!   returned (the store reports a file before SlateDB counts it durable).
//!   The workspace acknowledges once the replica holds that one
//!   ([`Sync::wait_replicated`]); past the group's timeout it acknowledges
//!   anyway and the link to that replica is **suspended**: writes stop
//!   waiting for it until every promised branch's replica holds all the
//!   WAL written here again, when it resumes by itself. Both are
//!   [`SyncEvent`]s the engine records.
//! - **RPO guard**: before a write, [`Sync::guard`] projects the lag the
//!   replica would reach: the age of the oldest WAL it lacks plus the time
//!   the bytes still to cross take at the rate its copier has moved bytes
//!   lately (while it had any to move). The bytes still to cross are what
//!   the copier knows the replica lacks (WAL and SSTs), and the WAL bytes
//!   of the last [`MEMTABLE_WINDOW`]: they cross a second time, in the L0
//!   SST the writer's next memtable flush makes. Past 30% of the target
//!   writes are slowed, past 60% refused: the writes in flight, and the
//!   L0 SST that crosses in one piece, still add to the lag after that.
//!
//! The bytes of each WAL file a zero-loss replica lacks stay here too
//! (within [`KEPT_BYTES_MAX`] a branch), so its copier puts them into the
//! replica without reading the home: a home store that stops answering
//! right after a put still has its acknowledged writes reach the replica.
//!
//! Everything here is memory: a few numbers per branch and a bounded list
//! of the WAL files a replica still lacks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::workload::now_us;

/// What a group asks of its branches' writes beyond their home.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rule {
    /// Acknowledge a write only once the replica holds it, waiting at most
    /// this long before the link is suspended.
    pub zero_loss: Option<Duration>,
    /// Slow, then refuse, writes while the replica would fall this far
    /// behind (the RPO target).
    pub guard: Option<Duration>,
}

impl Rule {
    pub fn is_empty(&self) -> bool {
        self.zero_loss.is_none() && self.guard.is_none()
    }
}

/// WAL files a replica lacks that one branch keeps in memory, at most: the
/// list of a writer far ahead of a stopped link. Past it the newest entry
/// stands for several files with the oldest one's time (the guard then
/// errs on the safe side). 16,384 × 24 bytes: under 400 KiB a branch.
const UNHELD_KEPT: usize = 16_384;

/// The most bytes of WAL files a branch keeps for its zero-loss copier;
/// past it the copier reads them from the home.
pub const KEPT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Sync events kept for the engine to read (it reads every second).
const EVENTS_KEPT: usize = 256;

/// How fast a link's recent copy rate forgets: half of it is the last
/// this many seconds.
const RATE_HALF_LIFE_S: f64 = 2.0;

/// A link's rate counts at least this much busy time (µs): until its copier
/// has moved anything, a link is taken to move nothing (the guard holds
/// writes until the first copy lands, instead of letting a burst through
/// at an unknown rate).
const RATE_MIN_BUSY_US: f64 = 50_000.0;

/// The writes of this long ago and since are counted again, as the L0 SST
/// they become: Lifeboat's writers ask for a memtable flush once it is
/// 10 s old (`storage::MEMTABLE_AGE_BOUND`), and the flush holds what was
/// written until it runs; half as much again covers that, and the SST's
/// own index and filters.
pub const MEMTABLE_WINDOW: Duration = Duration::from_secs(15);

/// Entries of the recent-writes window a branch keeps at most (older ones
/// merge into the newest).
const RECENT_KEPT: usize = 1024;

/// The guard slows writes once the projected lag passes this share of the
/// target, more the closer it comes to [`GUARD_REFUSE_AT`]...
pub const GUARD_SLOW_FROM: f64 = 0.3;

/// ...and refuses them from this share on: the writes in flight, and an
/// SST the writer flushes meanwhile, still add to the lag after it.
pub const GUARD_REFUSE_AT: f64 = 0.6;

/// The longest a write is slowed by the guard.
pub const GUARD_MAX_SLOW: Duration = Duration::from_millis(200);

/// How long a write waits for the projected lag to fall under the target
/// before the guard refuses it.
pub const GUARD_WAIT: Duration = Duration::from_secs(1);

/// Zero loss was suspended or resumed for the link from this region to
/// `replica`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncEvent {
    /// Grows by one per event of this region's notices.
    pub seq: u64,
    pub at_us: u64,
    pub replica: String,
    pub change: SyncChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SyncChange {
    /// Writes acknowledge without waiting for the replica, for this reason.
    Suspended { why: String },
    /// The replica holds every write again; writes wait for it once more.
    Resumed { suspended_for_ms: u64 },
}

/// Why a link is suspended, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspension {
    pub since_us: u64,
    pub why: String,
}

/// How a write ended after its home made it durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// No replica was promised it (an asynchronous group, or the link is
    /// suspended).
    HomeOnly,
    /// Every replica promised zero loss holds it.
    Replicated,
    /// A replica did not hold it in time: the link is suspended now.
    TimedOut { replica: String },
}

/// What the RPO guard says of a write about to be made.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Go,
    /// Make it after this pause.
    Slow(Duration),
    /// The projected lag is at or past the target: this many seconds now,
    /// with this many bytes the replica lacks.
    Over {
        replica: String,
        lag_s: f64,
        projected_s: f64,
        pending_bytes: u64,
        target: Duration,
    },
}

/// One flow's promise, as the branch keeps it.
#[derive(Debug)]
struct Promise {
    token: u64,
    rule: Rule,
    /// What the copier knows the replica lacks (bytes), as it last said.
    pending_bytes: u64,
    /// The newest WAL id the replica holds with no gap before it.
    held: watch::Sender<u64>,
    /// Whether the copier has seen the replica's state (it has a manifest):
    /// before, `held` means nothing and WAL past it is not copied.
    ready: bool,
    rate: Rate,
}

impl Promise {
    /// Whether its copier has anything to move from now on (the rate
    /// counts busy time only): bytes it knows of, or WAL written here
    /// past what the replica holds. Call after `rate.decay`.
    fn note_busy(&mut self, newest_wal: u64) {
        self.rate.busy = self.pending_bytes > 0 || *self.held.borrow() < newest_wal;
    }
}

/// The recent copy rate of a link, in bytes per second of busy time (time
/// with WAL waiting): an idle link is not a slow one.
#[derive(Debug, Default, Clone)]
struct Rate {
    bytes: f64,
    busy_us: f64,
    /// When the sums were last brought up to date, and whether the replica
    /// lacked anything since.
    at_us: u64,
    busy: bool,
}

impl Rate {
    fn decay(&mut self, now: u64) {
        let dt_us = now.saturating_sub(self.at_us) as f64;
        if self.at_us != 0 {
            let keep = 0.5f64.powf(dt_us / 1e6 / RATE_HALF_LIFE_S);
            self.bytes *= keep;
            self.busy_us *= keep;
            if self.busy {
                self.busy_us += dt_us;
            }
        }
        self.at_us = now;
    }

    /// Bytes a second.
    fn per_s(&self) -> f64 {
        self.bytes / (self.busy_us.max(RATE_MIN_BUSY_US) / 1e6)
    }
}

/// A WAL file written here: id, when, size, and its bytes while a
/// zero-loss copier may want them.
#[derive(Debug, Clone)]
struct Wal {
    id: u64,
    at_us: u64,
    bytes: u64,
    payload: Option<Bytes>,
}

#[derive(Debug)]
struct Branch {
    newest_wal: u64,
    /// The newest WAL id written here, for zero loss's copiers to wake on.
    written: watch::Sender<u64>,
    /// WAL files written here that some promised replica lacks, oldest
    /// first (kept only while a promise exists).
    unheld: VecDeque<Wal>,
    /// The bytes of the payloads in `unheld`.
    kept_bytes: u64,
    /// WAL bytes written in the last [`MEMTABLE_WINDOW`], by when.
    recent: VecDeque<(u64, u64)>,
    promises: BTreeMap<String, Promise>,
}

impl Default for Branch {
    fn default() -> Self {
        Branch {
            newest_wal: 0,
            written: watch::channel(0).0,
            unheld: VecDeque::new(),
            kept_bytes: 0,
            recent: VecDeque::new(),
            promises: BTreeMap::new(),
        }
    }
}

impl Branch {
    /// Drops what every promised replica holds.
    fn trim(&mut self) {
        let floor = self.promises.values().map(|p| *p.held.borrow()).min();
        let floor = floor.unwrap_or(u64::MAX);
        while self.unheld.front().is_some_and(|w| w.id <= floor) {
            if let Some(wal) = self.unheld.pop_front()
                && let Some(payload) = wal.payload
            {
                self.kept_bytes -= payload.len() as u64;
            }
        }
    }

    /// WAL bytes written within [`MEMTABLE_WINDOW`] of `now`.
    fn recent_bytes(&mut self, now: u64) -> u64 {
        let since = now.saturating_sub(MEMTABLE_WINDOW.as_micros() as u64);
        while self.recent.front().is_some_and(|(at, _)| *at < since) {
            self.recent.pop_front();
        }
        self.recent.iter().map(|(_, b)| b).sum()
    }

    fn zero_loss(&self) -> bool {
        self.promises.values().any(|p| p.rule.zero_loss.is_some())
    }

    /// The lag and bytes pending of the replica holding up to `held`.
    fn behind(&self, held: u64, now: u64) -> (f64, u64) {
        let mut lag_us = 0;
        let mut bytes = 0;
        for wal in self.unheld.iter().filter(|w| w.id > held) {
            if lag_us == 0 {
                lag_us = now.saturating_sub(wal.at_us);
            }
            bytes += wal.bytes;
        }
        (lag_us as f64 / 1e6, bytes)
    }
}

#[derive(Debug, Default)]
struct State {
    branches: HashMap<String, Branch>,
    /// Links to replica regions whose zero loss is suspended.
    suspended: BTreeMap<String, Suspension>,
    events: VecDeque<SyncEvent>,
    next_seq: u64,
    next_token: u64,
}

impl State {
    fn event(&mut self, replica: &str, change: SyncChange) {
        self.next_seq += 1;
        let event = SyncEvent {
            seq: self.next_seq,
            at_us: now_us(),
            replica: replica.to_string(),
            change,
        };
        match &event.change {
            SyncChange::Suspended { why } => {
                tracing::warn!(replica, "zero loss suspended: {why}")
            }
            SyncChange::Resumed { suspended_for_ms } => {
                tracing::info!(replica, suspended_for_ms, "zero loss resumed")
            }
        }
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn suspend(&mut self, replica: &str, why: String) {
        if self.suspended.contains_key(replica) {
            return;
        }
        self.suspended.insert(
            replica.to_string(),
            Suspension {
                since_us: now_us(),
                why: why.clone(),
            },
        );
        self.event(replica, SyncChange::Suspended { why });
    }

    /// Resumes the link to `replica` when every branch promised zero loss
    /// to it has its replica hold all the WAL written here.
    fn maybe_resume(&mut self, replica: &str) {
        if !self.suspended.contains_key(replica) {
            return;
        }
        let caught_up = self.branches.values().all(|b| {
            b.promises
                .get(replica)
                .is_none_or(|p| p.rule.zero_loss.is_none() || *p.held.borrow() >= b.newest_wal)
        });
        let promised = self.branches.values().any(|b| {
            b.promises
                .get(replica)
                .is_some_and(|p| p.rule.zero_loss.is_some())
        });
        if caught_up
            && promised
            && let Some(s) = self.suspended.remove(replica)
        {
            let suspended_for_ms = now_us().saturating_sub(s.since_us) / 1000;
            self.event(replica, SyncChange::Resumed { suspended_for_ms });
        }
    }
}

/// The zero-loss and guard bookkeeping of one region's notices.
#[derive(Debug, Default)]
pub struct Sync {
    state: Mutex<State>,
}

/// The WAL id of a path under a branch's `wal/` folder.
pub fn wal_id(path: &str) -> Option<u64> {
    let name = path.rsplit_once("/wal/")?.1;
    name.strip_suffix(".sst")?.parse().ok()
}

/// A timeout as people write it: `2 s`, `1.5 s`, `250 ms`.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

impl Sync {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the store should hand over the bytes of the WAL files it
    /// writes for the branch at `base` (a zero-loss copier wants them).
    pub fn wants_wal_bytes(&self, base: &str) -> bool {
        self.state()
            .branches
            .get(base)
            .is_some_and(|b| b.zero_loss() && b.kept_bytes < KEPT_BYTES_MAX)
    }

    /// The store wrote WAL file `id` (of `bytes`, with its `payload` when
    /// [`Self::wants_wal_bytes`] said so) of the branch at `base`.
    pub fn wal_written(&self, base: &str, id: u64, bytes: u64, payload: Option<Bytes>) {
        let now = now_us();
        let mut state = self.state();
        let branch = state.branches.entry(base.to_string()).or_default();
        branch.newest_wal = branch.newest_wal.max(id);
        branch.written.send_if_modified(|w| {
            let newer = id > *w;
            *w = (*w).max(id);
            newer
        });
        if branch.promises.is_empty() {
            return;
        }
        let newest = branch.newest_wal;
        for promise in branch.promises.values_mut() {
            promise.rate.decay(now);
            promise.note_busy(newest);
        }
        if branch.recent.len() >= RECENT_KEPT
            && let Some(last) = branch.recent.back_mut()
        {
            last.1 += bytes;
        } else {
            branch.recent.push_back((now, bytes));
        }
        let payload = payload
            .filter(|p| branch.zero_loss() && branch.kept_bytes + p.len() as u64 <= KEPT_BYTES_MAX);
        let full = branch.unheld.len() >= UNHELD_KEPT;
        match branch.unheld.back_mut() {
            Some(last) if full => {
                last.id = last.id.max(id);
                last.bytes += bytes;
                // It stands for several files now: no one payload.
                if let Some(dropped) = last.payload.take() {
                    branch.kept_bytes -= dropped.len() as u64;
                }
            }
            _ => {
                branch.kept_bytes += payload.as_ref().map_or(0, |p| p.len() as u64);
                branch.unheld.push_back(Wal {
                    id,
                    at_us: now,
                    bytes,
                    payload,
                });
            }
        }
    }

    /// Changes whenever this process writes a newer WAL file of the branch
    /// at `base`.
    pub fn watch_written(&self, base: &str) -> watch::Receiver<u64> {
        let mut state = self.state();
        state
            .branches
            .entry(base.to_string())
            .or_default()
            .written
            .subscribe()
    }

    /// The bytes of WAL file `id` of the branch at `base` as this process
    /// wrote it, and when, while a zero-loss replica lacks it.
    pub fn wal_bytes(&self, base: &str, id: u64) -> Option<(Bytes, u64)> {
        let state = self.state();
        let branch = state.branches.get(base)?;
        let at = branch.unheld.binary_search_by_key(&id, |w| w.id).ok()?;
        let wal = &branch.unheld[at];
        Some((wal.payload.clone()?, wal.at_us))
    }

    /// Promises `rule` for the branch at `base` to `replica` until the
    /// mark is dropped; the copier reports through the mark.
    pub fn promise(self: &Arc<Self>, base: &str, replica: &str, rule: Rule) -> PromiseMark {
        let mut state = self.state();
        state.next_token += 1;
        let token = state.next_token;
        let branch = state.branches.entry(base.to_string()).or_default();
        // A copier that replaces another keeps what the first had seen held.
        let held = branch.promises.get(replica).map_or(0, |p| *p.held.borrow());
        branch.promises.insert(
            replica.to_string(),
            Promise {
                token,
                rule,
                held: watch::channel(held).0,
                ready: false,
                pending_bytes: 0,
                rate: Rate::default(),
            },
        );
        PromiseMark {
            sync: Arc::clone(self),
            base: base.to_string(),
            replica: replica.to_string(),
            token,
        }
    }

    /// Waits, after a write to the branch at `base` was made durable, until
    /// every replica promised zero loss holds it, or a link's timeout
    /// passes (which suspends that link). `what` names the database in a
    /// suspension's reason.
    pub async fn wait_replicated(&self, base: &str, what: &str) -> Settled {
        let waits: Vec<(String, watch::Receiver<u64>, u64, Duration)> = {
            let state = self.state();
            let Some(branch) = state.branches.get(base) else {
                return Settled::HomeOnly;
            };
            branch
                .promises
                .iter()
                .filter(|(replica, _)| !state.suspended.contains_key(*replica))
                .filter_map(|(replica, p)| {
                    let timeout = p.rule.zero_loss?;
                    Some((
                        replica.clone(),
                        p.held.subscribe(),
                        branch.newest_wal,
                        timeout,
                    ))
                })
                .collect()
        };
        if waits.is_empty() {
            return Settled::HomeOnly;
        }
        for (replica, mut held, target, timeout) in waits {
            let waited = tokio::time::timeout(timeout, held.wait_for(|h| *h >= target)).await;
            match waited {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    // The copier stopped while the write waited: the write
                    // is acknowledged, and the promise no longer holds.
                    self.state().suspend(
                        &replica,
                        format!("the copy of {what} to {replica} stopped before it held every acknowledged write"),
                    );
                    return Settled::TimedOut { replica };
                }
                Err(_) => {
                    self.state().suspend(
                        &replica,
                        format!(
                            "{replica} did not hold a write to {what} within the zero-loss timeout of {}",
                            seconds(timeout)
                        ),
                    );
                    return Settled::TimedOut { replica };
                }
            }
        }
        Settled::Replicated
    }

    /// What the RPO guard says of a write to the branch at `base` now.
    pub fn guard(&self, base: &str) -> Verdict {
        let now = now_us();
        let mut state = self.state();
        let Some(branch) = state.branches.get_mut(base) else {
            return Verdict::Go;
        };
        let mut worst = Verdict::Go;
        let mut worst_share = 0.0;
        let looks: Vec<(String, u64, Duration, f64, u64)> = branch
            .promises
            .iter_mut()
            .filter_map(|(replica, p)| {
                let target = p.rule.guard?;
                p.rate.decay(now);
                Some((
                    replica.clone(),
                    *p.held.borrow(),
                    target,
                    p.rate.per_s(),
                    p.pending_bytes,
                ))
            })
            .collect();
        let again_bytes = branch.recent_bytes(now);
        for (replica, held, target, rate, known_bytes) in looks {
            let (lag_s, wal_bytes) = branch.behind(held, now);
            let pending_bytes = wal_bytes.max(known_bytes) + again_bytes;
            let projected_s = if pending_bytes == 0 {
                lag_s
            } else if rate > 0.0 {
                lag_s + pending_bytes as f64 / rate
            } else {
                f64::INFINITY
            };
            let target_s = target.as_secs_f64();
            let share = projected_s / target_s;
            if share <= worst_share {
                continue;
            }
            worst_share = share;
            worst = if share >= GUARD_REFUSE_AT {
                Verdict::Over {
                    replica,
                    lag_s,
                    projected_s,
                    pending_bytes,
                    target,
                }
            } else if share > GUARD_SLOW_FROM {
                let into = (share - GUARD_SLOW_FROM) / (GUARD_REFUSE_AT - GUARD_SLOW_FROM);
                Verdict::Slow(GUARD_MAX_SLOW.mul_f64(into))
            } else {
                Verdict::Go
            };
        }
        worst
    }

    /// Links whose zero loss is suspended now, by replica region.
    pub fn suspended(&self) -> BTreeMap<String, Suspension> {
        self.state().suspended.clone()
    }

    /// The newest event's number (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.state().next_seq
    }

    /// Events after `seq`, oldest first.
    pub fn events_after(&self, seq: u64) -> Vec<SyncEvent> {
        self.state()
            .events
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect()
    }

    /// Whether a copier promises zero loss for the branch at `base` to
    /// `replica` now.
    pub fn promised(&self, base: &str, replica: &str) -> bool {
        self.state()
            .branches
            .get(base)
            .and_then(|b| b.promises.get(replica))
            .is_some_and(|p| p.rule.zero_loss.is_some())
    }
}

/// A copier's promise for its flow (see [`Sync::promise`]); dropped with
/// the copier.
#[derive(Debug)]
pub struct PromiseMark {
    sync: Arc<Sync>,
    base: String,
    replica: String,
    token: u64,
}

impl PromiseMark {
    fn with_promise<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        let mut state = self.sync.state();
        let ours = state
            .branches
            .get(&self.base)
            .and_then(|b| b.promises.get(&self.replica))
            .is_some_and(|p| p.token == self.token);
        ours.then(|| f(&mut state))
    }

    /// The group's rule changed.
    pub fn set_rule(&self, rule: Rule) {
        self.with_promise(|state| {
            if let Some(p) = state
                .branches
                .get_mut(&self.base)
                .and_then(|b| b.promises.get_mut(&self.replica))
            {
                p.rule = rule;
            }
            state.maybe_resume(&self.replica);
        });
    }

    /// What the replica holds (see [`Self::held`]), once it has a state.
    pub fn held_now(&self) -> Option<u64> {
        let state = self.sync.state();
        let p = state
            .branches
            .get(&self.base)?
            .promises
            .get(&self.replica)?;
        (p.token == self.token && p.ready).then(|| *p.held.borrow())
    }

    /// The copier put `bytes` into the replica (any file): what the
    /// guard's rate is measured from.
    pub fn copied(&self, bytes: u64) {
        let now = now_us();
        self.with_promise(|state| {
            if let Some(p) = state
                .branches
                .get_mut(&self.base)
                .and_then(|b| b.promises.get_mut(&self.replica))
            {
                p.rate.decay(now);
                p.rate.bytes += bytes as f64;
            }
        });
    }

    /// The copier knows of `bytes` the replica lacks (WAL, SSTs, ...).
    pub fn pending(&self, bytes: u64) {
        let now = now_us();
        self.with_promise(|state| {
            if let Some(branch) = state.branches.get_mut(&self.base) {
                let newest = branch.newest_wal;
                if let Some(p) = branch.promises.get_mut(&self.replica) {
                    p.rate.decay(now);
                    p.pending_bytes = bytes;
                    p.note_busy(newest);
                }
            }
        });
    }

    /// The replica holds every WAL file up to `wal_id` with no gap before
    /// it (reported after each copy, and after each pass even when
    /// unchanged: a suspended link resumes on it). It only grows: two
    /// copiers report (a pass, and zero loss's own), each what it saw.
    pub fn held(&self, wal_id: u64) {
        let now = now_us();
        self.with_promise(|state| {
            if let Some(branch) = state.branches.get_mut(&self.base) {
                let newest = branch.newest_wal;
                if let Some(p) = branch.promises.get_mut(&self.replica) {
                    p.rate.decay(now);
                    p.ready = true;
                    p.held.send_if_modified(|h| {
                        let moved = wal_id > *h;
                        *h = (*h).max(wal_id);
                        moved
                    });
                    p.note_busy(newest);
                }
                branch.trim();
            }
            state.maybe_resume(&self.replica);
        });
    }
}

impl Drop for PromiseMark {
    fn drop(&mut self) {
        self.with_promise(|state| {
            if let Some(branch) = state.branches.get_mut(&self.base) {
                branch.promises.remove(&self.replica);
                branch.trim();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "dbs/orders/main";

    fn zero_loss(timeout_ms: u64) -> Rule {
        Rule {
            zero_loss: Some(Duration::from_millis(timeout_ms)),
            guard: None,
        }
    }

    /// A write's wait for the replica, in a task of its own.
    fn wait_in_a_task(sync: &Arc<Sync>) -> tokio::task::JoinHandle<Settled> {
        let sync = Arc::clone(sync);
        tokio::spawn(async move { sync.wait_replicated(BASE, "orders").await })
    }

    #[test]
    fn a_wal_path_names_its_id() {
        assert_eq!(wal_id("dbs/a/b/wal/00000000000000000042.sst"), Some(42));
        assert_eq!(
            wal_id("dbs/a/b/manifest/00000000000000000042.manifest"),
            None
        );
    }

    #[tokio::test]
    async fn a_write_waits_until_the_replica_holds_its_wal() {
        let sync = Arc::new(Sync::default());
        let mark = sync.promise(BASE, "west", zero_loss(5_000));
        sync.wal_written(BASE, 7, 100, None);
        let waiting = wait_in_a_task(&sync);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "acknowledged before the replica held it"
        );
        mark.held(6);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "acknowledged with WAL 7 missing");
        mark.held(7);
        assert_eq!(waiting.await.ok(), Some(Settled::Replicated));
    }

    #[tokio::test]
    async fn a_timeout_suspends_the_link_until_the_replica_holds_everything() {
        let sync = Arc::new(Sync::default());
        let mark = sync.promise(BASE, "west", zero_loss(50));
        sync.wal_written(BASE, 3, 100, None);
        let settled = sync.wait_replicated(BASE, "orders").await;
        assert_eq!(
            settled,
            Settled::TimedOut {
                replica: "west".into()
            }
        );
        assert!(sync.suspended().contains_key("west"));
        // Suspended: the next write does not wait.
        sync.wal_written(BASE, 4, 100, None);
        assert_eq!(
            sync.wait_replicated(BASE, "orders").await,
            Settled::HomeOnly
        );
        mark.held(3);
        assert!(
            sync.suspended().contains_key("west"),
            "resumed with WAL 4 missing"
        );
        mark.held(4);
        assert!(sync.suspended().is_empty());
        let changes: Vec<_> = sync.events_after(0).into_iter().map(|e| e.change).collect();
        assert!(matches!(changes[0], SyncChange::Suspended { .. }));
        assert!(matches!(changes[1], SyncChange::Resumed { .. }));
    }

    #[tokio::test]
    async fn a_copier_that_stops_while_a_write_waits_suspends_the_link() {
        let sync = Arc::new(Sync::default());
        let mark = sync.promise(BASE, "west", zero_loss(5_000));
        sync.wal_written(BASE, 1, 10, None);
        let waiting = wait_in_a_task(&sync);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(mark);
        assert!(matches!(waiting.await, Ok(Settled::TimedOut { .. })));
        assert!(sync.suspended().contains_key("west"));
    }

    #[test]
    fn the_guard_refuses_once_the_pending_bytes_cannot_cross_within_the_target() {
        let sync = Arc::new(Sync::default());
        let mark = sync.promise(
            BASE,
            "west",
            Rule {
                zero_loss: None,
                guard: Some(Duration::from_secs(4)),
            },
        );
        assert_eq!(sync.guard(BASE), Verdict::Go);
        // A link that moved 1 MB in a second of busy time.
        sync.wal_written(BASE, 1, 1_000_000, None);
        mark.copied(1_000_000);
        {
            let mut state = sync.state();
            let p = state
                .branches
                .get_mut(BASE)
                .and_then(|b| b.promises.get_mut("west"))
                .expect("promised");
            p.rate.busy_us = 1e6;
        }
        mark.held(1);
        mark.pending(0);
        // The 1 MB crosses again as an L0 SST: 1 s, a quarter of the target.
        assert_eq!(sync.guard(BASE), Verdict::Go);
        // 0.5 MB of WAL waiting, and 1.5 MB again: 2 s, half the target.
        sync.wal_written(BASE, 2, 500_000, None);
        let verdict = sync.guard(BASE);
        assert!(matches!(verdict, Verdict::Slow(_)), "{verdict:?}");
        // 1.5 MB of WAL and 2.5 MB again: past the target's 60%.
        sync.wal_written(BASE, 3, 1_000_000, None);
        assert!(matches!(sync.guard(BASE), Verdict::Over { .. }));
        // Held: 2.5 s, still too close...
        mark.held(3);
        assert!(matches!(sync.guard(BASE), Verdict::Over { .. }));
        // ... and an SST the copier knows of counts too.
        mark.pending(5_000_000);
        let Verdict::Over { pending_bytes, .. } = sync.guard(BASE) else {
            panic!("{:?}", sync.guard(BASE));
        };
        assert_eq!(pending_bytes, 7_500_000);
    }
}
