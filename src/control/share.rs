//! Several engines sharing one group's flows (docs/sharing.md): the
//! engine that holds the group's leases (the coordinator) hands flows to
//! helper engines (`lifeboat serve --share`), each flow copied by exactly
//! one engine at a time, and takes a helper's flows back when it dies.
//!
//! The protocol, in objects:
//! - each helper writes its **beat**, `_lifeboat/share/<instance>.json`
//!   in the group's secondary, every [`BEAT_EVERY`]: a sequence number,
//!   the newest assignment it acted on, the flows it runs (or is about to
//!   start, or is still stopping) and their statuses;
//! - the coordinator publishes its **shares** (which helper copies which
//!   flows, under a version that only grows) in its published status.
//!
//! What keeps one engine per flow, with no clock compared across machines:
//! - a helper stops every flow once [`VALID_FOR`] has passed since its last
//!   beat *began* to be written (a lease holder's rule, `lease::VALID_FOR`);
//!   the coordinator counts a helper dead, and its flows free, only once its
//!   beat has not changed for [`DEAD_AFTER`] (the lease's term) on the
//!   coordinator's own clock: the helper stopped first;
//! - a helper starts a flow only after a beat that lists it is written and
//!   only while the engine that assigned it still holds the lease of the
//!   flow's replica region (read afresh after that beat): a coordinator
//!   that takes a lease over reads the beats before it starts or hands out
//!   any flow, so it sees every flow a helper of the old one runs;
//! - the coordinator runs or hands out a flow only when no live helper's
//!   beat lists it and no helper could still act on an assignment of it:
//!   a flow taken from a helper is free once that helper's beat says it
//!   acted on the version that took it and no longer lists it;
//! - a flow the coordinator gives away stops here before it is assigned.
//!
//! Cost: a helper's beat is one PUT per [`BEAT_EVERY`] (30 a minute); the
//! coordinator lists the beats every [`LIST_EVERY`] (2 LISTs a minute,
//! about $0.43 a month at S3's list prices, whether or not any helper
//! runs) and reads each known helper's beat every [`BEAT_EVERY`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::control::lease::{self, Holder};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::region::objects::{delete_if_present, get_if_present};
pub use crate::replication::FlowKey;
use crate::replication::FlowStatus;

/// Where the helpers' beats live (in the group's secondary).
pub const SHARE_PREFIX: &str = "_lifeboat/share";

/// How often a helper writes its beat, and the coordinator reads the beats
/// it knows.
pub const BEAT_EVERY: Duration = Duration::from_secs(2);

/// How often the coordinator lists the beats to find new helpers.
pub const LIST_EVERY: Duration = Duration::from_secs(30);

/// A helper whose beat has not changed for this long (the coordinator's
/// clock) is dead: its flows are free.
pub const DEAD_AFTER: Duration = lease::TERM;

/// How long after a beat began a helper may copy: its flows stop before
/// the coordinator may count it dead.
pub const VALID_FOR: Duration = lease::VALID_FOR;

/// A helper dead this long has its beat taken away by the coordinator (a
/// killed helper leaves its beat behind).
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

/// How long one beat write, read or listing may take.
pub const CALL_TIME: Duration = Duration::from_secs(2);

/// Statuses a beat carries at most (the rest show as starting at the
/// coordinator): bounds a beat to a few hundred KiB.
pub const STATUSES_PER_BEAT: usize = 2_000;

/// A beat larger than this is refused as not a beat (a hostile or broken
/// writer cannot make the coordinator hold more).
pub const MAX_BEAT_BYTES: usize = 4 * 1024 * 1024;

/// Helpers the coordinator follows at most; beats past it are ignored.
pub const MAX_HELPERS: usize = 64;

/// Which assignment a helper acted on: a coordinator's run and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub coordinator: String,
    /// Which of the coordinator's turns (an engine may coordinate, lose
    /// the lease and coordinate again, its versions starting afresh).
    #[serde(default)]
    pub term: u64,
    pub version: u64,
}

/// What a helper writes every [`BEAT_EVERY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Beat {
    pub helper: Holder,
    pub seq: u64,
    pub applied: Option<Applied>,
    /// Flows it copies, is about to start or is still stopping.
    pub running: BTreeSet<FlowKey>,
    /// Flows it was given and cannot copy, with why (a region it does not
    /// know, say).
    #[serde(default)]
    pub cannot: Vec<(FlowKey, String)>,
    /// The statuses of the flows it copies.
    #[serde(default)]
    pub statuses: Vec<FlowStatus>,
}

/// One helper's part of the shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HelperShare {
    /// Who, in words (host, pid).
    pub who: String,
    pub flows: BTreeSet<FlowKey>,
}

/// What the coordinator publishes: which helper copies which flows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shares {
    /// The coordinator's run (`Holder::instance`).
    pub coordinator: String,
    /// Its turn at coordinating (when it began, ms since the epoch).
    #[serde(default)]
    pub term: u64,
    pub version: u64,
    /// By helper run.
    pub helpers: BTreeMap<String, HelperShare>,
}

/// A helper as the coordinator follows it.
#[derive(Debug, Clone)]
struct Seen {
    beat: Beat,
    /// When its sequence number last changed (the coordinator's clock).
    changed_at: Instant,
}

/// What the coordinator does with its own flows after a look at the beats.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Flows to start here (free, and this engine's part).
    pub start_here: Vec<FlowKey>,
    /// Flows running here to stop: a helper takes them once stopped.
    pub stop_here: Vec<FlowKey>,
    /// Flows a helper copies, is given or still holds, by helper run.
    pub elsewhere: BTreeMap<FlowKey, String>,
}

/// The coordinator's side: the beats it follows, the shares it publishes.
#[derive(Debug)]
pub struct Coordinator {
    me: String,
    term: u64,
    version: u64,
    assigned: BTreeMap<String, BTreeSet<FlowKey>>,
    /// Flows taken from a helper, by the version that took them: held for
    /// it until it acted on that version without them, or died.
    revoked: BTreeMap<FlowKey, (String, u64)>,
    helpers: BTreeMap<String, Seen>,
    /// Whether the beats were listed since this engine took the leases.
    listed: bool,
}

impl Coordinator {
    /// A coordinator for this engine's run `me`, in its turn `term` (a
    /// number larger than any of its earlier turns); it starts or hands
    /// out nothing until its first listing of the beats.
    pub fn new(me: &str, term: u64) -> Coordinator {
        Coordinator {
            me: me.to_string(),
            term,
            version: 0,
            assigned: BTreeMap::new(),
            revoked: BTreeMap::new(),
            helpers: BTreeMap::new(),
            listed: false,
        }
    }

    /// Whether it has looked at the beats yet.
    pub fn ready(&self) -> bool {
        self.listed
    }

    /// The helpers it knows, to read their beats by name.
    pub fn known(&self) -> Vec<String> {
        self.helpers.keys().cloned().collect()
    }

    /// Beats read at `now`: every beat there is (`listed`), or those of
    /// the helpers it knows (a missing one: that helper left after
    /// stopping its flows).
    pub fn beats_read(&mut self, beats: Vec<Beat>, listed: bool, now: Instant) {
        let present: BTreeSet<String> = beats.iter().map(|b| b.helper.instance.clone()).collect();
        for beat in beats {
            let instance = beat.helper.instance.clone();
            if instance == self.me {
                continue;
            }
            let room = self.helpers.len() < MAX_HELPERS;
            match self.helpers.get_mut(&instance) {
                Some(seen) => {
                    if seen.beat.seq != beat.seq {
                        seen.changed_at = now;
                    }
                    seen.beat = beat;
                }
                None if room => {
                    self.helpers.insert(
                        instance,
                        Seen {
                            beat,
                            changed_at: now,
                        },
                    );
                }
                None => {}
            }
        }
        if listed {
            self.listed = true;
        }
        // A beat taken away: its helper stopped every flow and left.
        self.helpers
            .retain(|instance, _| present.contains(instance));
    }

    fn alive(&self, now: Instant) -> BTreeSet<String> {
        self.helpers
            .iter()
            .filter(|(_, seen)| now.duration_since(seen.changed_at) < DEAD_AFTER)
            .map(|(instance, _)| instance.clone())
            .collect()
    }

    /// Helpers dead for [`FORGET_AFTER`]: forgotten here, their beats to
    /// be taken away (a killed helper's stays behind).
    pub fn forget_long_dead(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .helpers
            .iter()
            .filter(|(_, seen)| now.duration_since(seen.changed_at) >= FORGET_AFTER)
            .map(|(instance, _)| instance.clone())
            .collect();
        for instance in &gone {
            self.helpers.remove(instance);
            self.assigned.remove(instance);
            self.revoked.retain(|_, (h, _)| h != instance);
        }
        gone
    }

    /// The statuses live helpers report of the flows they copy.
    pub fn statuses(&self, now: Instant) -> Vec<(String, FlowStatus)> {
        let alive = self.alive(now);
        self.helpers
            .iter()
            .filter(|(instance, _)| alive.contains(*instance))
            .flat_map(|(_, seen)| {
                let who = seen.beat.helper.describe();
                seen.beat
                    .statuses
                    .iter()
                    .map(move |s| (who.clone(), s.clone()))
            })
            .collect()
    }

    /// Decides who copies each of `flows` (those this engine may share):
    /// `here` runs here now (or is stopping), `keep_here` must run here
    /// (a paused database, a move under way). Balances the flows over this
    /// engine and the live helpers, moving a flow only while no engine
    /// copies it.
    pub fn plan(
        &mut self,
        flows: &BTreeSet<FlowKey>,
        here: &BTreeSet<FlowKey>,
        keep_here: impl Fn(&FlowKey) -> bool,
        now: Instant,
    ) -> Plan {
        if !self.listed {
            // Anything may be at a helper of the engine that held the
            // leases before: start nothing, hand out nothing.
            return Plan::default();
        }
        let alive = self.alive(now);
        let before = (self.assigned.clone(), self.revoked.clone());
        let next = self.version + 1;
        // A dead helper stopped its flows: what it held is free.
        self.assigned.retain(|h, _| alive.contains(h));
        self.revoked.retain(|_, (h, _)| alive.contains(h));
        // Taken flows it acted on and let go of are free.
        let (me, term) = (self.me.clone(), self.term);
        let helpers = &self.helpers;
        self.revoked.retain(|flow, (h, version)| {
            let beat = &helpers[h.as_str()].beat;
            let acted = beat
                .applied
                .as_ref()
                .is_some_and(|a| a.coordinator == me && a.term == term && a.version >= *version);
            !acted || beat.running.contains(flow)
        });
        // Flows a helper cannot copy, gone, or wanted here go back.
        for h in &alive {
            let beat = &self.helpers[h.as_str()].beat;
            let cannot: BTreeSet<&FlowKey> = beat.cannot.iter().map(|(f, _)| f).collect();
            let share = self.assigned.entry(h.clone()).or_default();
            let back: Vec<FlowKey> = share
                .iter()
                .filter(|f| !flows.contains(*f) || keep_here(f) || cannot.contains(f))
                .cloned()
                .collect();
            for flow in back {
                share.remove(&flow);
                self.revoked.insert(flow, (h.clone(), next));
            }
        }
        // Where each flow is: at a helper that runs it, was given it, or
        // may still act on it.
        let mut elsewhere: BTreeMap<FlowKey, String> = BTreeMap::new();
        for h in &alive {
            let beat = &self.helpers[h.as_str()].beat;
            for flow in beat
                .running
                .iter()
                .chain(self.assigned.get(h).into_iter().flatten())
            {
                elsewhere.insert(flow.clone(), h.clone());
            }
        }
        for (flow, (h, _)) in &self.revoked {
            elsewhere.entry(flow.clone()).or_insert_with(|| h.clone());
        }
        // A flow a helper runs without being given it (given by the engine
        // that coordinated before): it stays there, as its share.
        for h in &alive {
            let running = self.helpers[h.as_str()].beat.running.clone();
            for flow in running {
                let adopt = flows.contains(&flow)
                    && !keep_here(&flow)
                    && !self.revoked.contains_key(&flow)
                    && !self.assigned.values().any(|s| s.contains(&flow));
                if adopt {
                    self.assigned.entry(h.clone()).or_default().insert(flow);
                }
            }
        }
        // Balance: each engine's part is at most its fair share.
        let engines = alive.len() + 1;
        let quota = flows.len().div_ceil(engines);
        for h in &alive {
            let share = self.assigned.entry(h.clone()).or_default();
            while share.len() > quota {
                let Some(flow) = share.pop_last() else { break };
                self.revoked.insert(flow, (h.clone(), next));
            }
        }
        let mut plan = Plan::default();
        let free: Vec<&FlowKey> = flows
            .iter()
            .filter(|f| !elsewhere.contains_key(*f))
            .collect();
        let mut here_count = 0;
        let mut to_give: Vec<FlowKey> = Vec::new();
        for flow in free {
            let must = keep_here(flow);
            if here.contains(flow) {
                if must || here_count < quota {
                    here_count += 1;
                } else {
                    plan.stop_here.push(flow.clone());
                }
            } else if must {
                here_count += 1;
                plan.start_here.push(flow.clone());
            } else {
                to_give.push(flow.clone());
            }
        }
        for flow in to_give {
            let refused = |h: &String| {
                self.helpers[h.as_str()]
                    .beat
                    .cannot
                    .iter()
                    .any(|(f, _)| f == &flow)
            };
            let least = alive
                .iter()
                .filter(|h| !refused(h))
                .map(|h| (self.assigned.get(h).map_or(0, BTreeSet::len), h))
                .filter(|(count, _)| *count < quota)
                .min();
            match least {
                Some((_, h)) if here_count >= quota => {
                    let h = h.clone();
                    self.assigned.entry(h).or_default().insert(flow);
                }
                _ => {
                    here_count += 1;
                    plan.start_here.push(flow);
                }
            }
        }
        self.assigned.retain(|_, share| !share.is_empty());
        if (&self.assigned, &self.revoked) != (&before.0, &before.1) {
            self.version = next;
        }
        for (h, share) in &self.assigned {
            for flow in share {
                elsewhere.insert(flow.clone(), h.clone());
            }
        }
        plan.elsewhere = elsewhere;
        plan
    }

    /// Who helper run `instance` is, in words.
    pub fn who(&self, instance: &str) -> String {
        self.helpers
            .get(instance)
            .map_or_else(|| instance.to_string(), |s| s.beat.helper.describe())
    }

    /// The shares to publish.
    pub fn shares(&self) -> Shares {
        Shares {
            coordinator: self.me.clone(),
            term: self.term,
            version: self.version,
            helpers: self
                .assigned
                .iter()
                .map(|(h, flows)| {
                    let who = self
                        .helpers
                        .get(h)
                        .map(|s| s.beat.helper.describe())
                        .unwrap_or_default();
                    (
                        h.clone(),
                        HelperShare {
                            who,
                            flows: flows.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// What a helper does on a new assignment.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Flows to stop now.
    pub stop: Vec<FlowKey>,
    /// Flows to start once a beat that lists them is written and the
    /// coordinator still holds their replica regions' leases.
    pub start: Vec<FlowKey>,
}

/// The helper's side: what it was given, what it runs, its beats.
#[derive(Debug)]
pub struct Helper {
    me: Holder,
    seq: u64,
    applied: Option<Applied>,
    /// Flows it runs, is about to start, or is stopping.
    running: BTreeSet<FlowKey>,
    cannot: Vec<(FlowKey, String)>,
    /// When the last beat that was written began.
    beat_began: Option<Instant>,
}

impl Helper {
    pub fn new(me: Holder) -> Helper {
        Helper {
            me,
            seq: 0,
            applied: None,
            running: BTreeSet::new(),
            cannot: Vec::new(),
            beat_began: None,
        }
    }

    pub fn me(&self) -> &Holder {
        &self.me
    }

    /// What the newest `shares` ask of this helper, once (an older or the
    /// same version of the same coordinator's turn asks nothing; another
    /// coordinator's, or another turn's, replaces what it was given).
    pub fn assigned(&mut self, shares: &Shares) -> Option<Changes> {
        if let Some(applied) = &self.applied
            && applied.coordinator == shares.coordinator
            && applied.term == shares.term
            && applied.version >= shares.version
        {
            return None;
        }
        let mine: BTreeSet<FlowKey> = shares
            .helpers
            .get(&self.me.instance)
            .map(|s| s.flows.clone())
            .unwrap_or_default();
        let changes = Changes {
            stop: self.running.difference(&mine).cloned().collect(),
            start: mine.difference(&self.running).cloned().collect(),
        };
        self.applied = Some(Applied {
            coordinator: shares.coordinator.clone(),
            term: shares.term,
            version: shares.version,
        });
        self.cannot.retain(|(f, _)| mine.contains(f));
        // About to start: listed from the next beat on.
        self.running.extend(changes.start.iter().cloned());
        Some(changes)
    }

    /// A flow it was given and cannot copy (listed in its beats while it is
    /// given it).
    pub fn cannot(&mut self, flow: FlowKey, why: String) {
        self.running.remove(&flow);
        if !self.cannot.iter().any(|(f, _)| f == &flow) {
            self.cannot.push((flow, why));
        }
    }

    /// A flow whose start was called off (the coordinator lost the lease).
    pub fn not_started(&mut self, flow: &FlowKey) {
        self.running.remove(flow);
    }

    /// A flow that stopped.
    pub fn stopped(&mut self, flow: &FlowKey) {
        self.running.remove(flow);
    }

    /// It stopped copying for want of a written beat: the next shares are
    /// acted on afresh, whatever their version, so what it is still given
    /// starts again once it beats (its beats said nothing it acted on
    /// meanwhile, so the coordinator frees nothing it took back).
    pub fn fenced(&mut self) {
        self.running.clear();
        self.applied = None;
    }

    /// The flows it runs, starts or stops.
    pub fn running(&self) -> &BTreeSet<FlowKey> {
        &self.running
    }

    /// The next beat, begun at `now`.
    pub fn beat(&mut self, statuses: Vec<FlowStatus>) -> Beat {
        self.seq += 1;
        Beat {
            helper: self.me.clone(),
            seq: self.seq,
            applied: self.applied.clone(),
            running: self.running.clone(),
            cannot: self.cannot.clone(),
            statuses: statuses.into_iter().take(STATUSES_PER_BEAT).collect(),
        }
    }

    /// A beat begun at `began` was written.
    pub fn beat_written(&mut self, began: Instant) {
        self.beat_began = Some(self.beat_began.map_or(began, |b| b.max(began)));
    }

    /// Whether it may copy at `now`: its last written beat began within
    /// [`VALID_FOR`].
    pub fn valid(&self, now: Instant) -> bool {
        self.beat_began
            .is_some_and(|began| now.duration_since(began) < VALID_FOR)
    }
}

fn beat_path(instance: &str) -> Path {
    Path::from(SHARE_PREFIX).join(format!("{instance}.json"))
}

fn store_error(region: &Region, op: &str, e: &object_store::Error) -> Error {
    Error::store(region.name(), op, e)
}

async fn timed<T>(region: &Region, what: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_TIME, call).await.map_err(|_| {
        Error::Failed(format!(
            "region {} did not answer {what} within {} s",
            region.name(),
            CALL_TIME.as_secs()
        ))
    })?
}

/// Writes `beat` (one PUT).
pub async fn write_beat(region: &Region, beat: &Beat) -> Result<()> {
    let bytes = serde_json::to_vec(beat)
        .map_err(|e| Error::Failed(format!("cannot encode the beat: {e}")))?;
    let store = region.store();
    let path = beat_path(&beat.helper.instance);
    timed(region, "a beat", async {
        store
            .put_opts(&path, PutPayload::from(bytes), PutOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| store_error(region, "writing a share beat", &e))
    })
    .await
}

/// Takes this helper's beat away (it stopped every flow first).
pub async fn remove_beat(region: &Region, instance: &str) -> Result<()> {
    let store = region.store();
    let path = beat_path(instance);
    timed(region, "a beat's removal", async {
        delete_if_present(store.as_ref(), &path)
            .await
            .map_err(|e| store_error(region, "removing a share beat", &e))
    })
    .await
}

/// Reads the beats: every one (one LIST, then a GET each) when `known` is
/// `None`, else those of the helpers named (a GET each).
pub async fn read_beats(region: &Region, known: Option<Vec<String>>) -> Result<Vec<Beat>> {
    let store = region.store();
    let names: Vec<Path> = match known {
        Some(known) => known.iter().map(|i| beat_path(i)).collect(),
        None => {
            timed(region, "a listing of the beats", async {
                let listed: Vec<_> = store
                    .list(Some(&Path::from(SHARE_PREFIX)))
                    .try_collect()
                    .await
                    .map_err(|e| store_error(region, "listing the share beats", &e))?;
                Ok(listed
                    .into_iter()
                    .filter(|m| m.location.as_ref().ends_with(".json"))
                    .take(MAX_HELPERS)
                    .map(|m| m.location)
                    .collect())
            })
            .await?
        }
    };
    let reads = futures::future::join_all(names.iter().map(|path| {
        let store = store.clone();
        async move {
            let bytes = timed(region, "a beat read", async {
                get_if_present(store.as_ref(), path)
                    .await
                    .map_err(|e| store_error(region, "reading a share beat", &e))
            })
            .await?;
            let Some(bytes) = bytes else { return Ok(None) };
            if bytes.len() > MAX_BEAT_BYTES {
                return Ok(Some(Err(format!(
                    "{path} in region {} is {} bytes, over the {MAX_BEAT_BYTES} a beat may take",
                    region.name(),
                    bytes.len()
                ))));
            }
            Ok::<_, Error>(Some(serde_json::from_slice::<Beat>(&bytes).map_err(|e| {
                format!(
                    "{path} in region {} is not a beat this version reads: {e}",
                    region.name()
                )
            })))
        }
    }))
    .await;
    let mut beats = Vec::new();
    for read in reads {
        // A broken beat is no helper; a read that found no answer (an
        // error, a timeout) fails the whole look: a helper is never taken
        // for gone because its region was slow.
        match read? {
            Some(Ok(beat)) => beats.push(beat),
            Some(Err(broken)) => tracing::warn!("{broken}"),
            None => {}
        }
    }
    Ok(beats)
}

/// Whether the engine run `coordinator` holds `region`'s lease now (one
/// LIST and one GET of its chain).
pub async fn still_holds(region: &Region, coordinator: &str) -> Result<bool> {
    let newest = timed(region, "its lease", lease::newest(region)).await?;
    Ok(newest.is_some_and(|(_, h)| h.instance == coordinator && !h.released))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(db: &str) -> FlowKey {
        FlowKey {
            db: db.into(),
            branch: "main".into(),
            home: "a".into(),
            replica: "b".into(),
        }
    }

    fn keys(n: usize) -> BTreeSet<FlowKey> {
        (0..n).map(|i| key(&format!("db{i:02}"))).collect()
    }

    fn helper(instance: &str) -> Holder {
        Holder {
            instance: instance.into(),
            ..Holder::me("e")
        }
    }

    /// Reads each helper's beat into the coordinator, and gives each
    /// helper the coordinator's shares, starting what it was given.
    fn round(c: &mut Coordinator, helpers: &mut [Helper], now: Instant) {
        let beats = helpers.iter_mut().map(|h| h.beat(Vec::new())).collect();
        c.beats_read(beats, true, now);
    }

    fn apply(c: &Coordinator, helpers: &mut [Helper]) {
        let shares = c.shares();
        for h in helpers {
            if let Some(changes) = h.assigned(&shares) {
                for flow in changes.stop {
                    h.stopped(&flow);
                }
            }
        }
    }

    fn owners(plan: &Plan, here: &BTreeSet<FlowKey>, flows: &BTreeSet<FlowKey>) {
        for flow in flows {
            let at_helper = plan.elsewhere.contains_key(flow);
            let at_here = here.contains(flow);
            assert!(
                !(at_helper && at_here),
                "{flow} is both here and at a helper"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_starts_before_the_beats_are_listed() {
        let mut c = Coordinator::new("c", 1);
        let plan = c.plan(&keys(3), &BTreeSet::new(), |_| false, Instant::now());
        assert_eq!(plan, Plan::default());
        c.beats_read(Vec::new(), true, Instant::now());
        let plan = c.plan(&keys(3), &BTreeSet::new(), |_| false, Instant::now());
        assert_eq!(plan.start_here.len(), 3, "alone, the coordinator runs all");
    }

    #[tokio::test(start_paused = true)]
    async fn flows_spread_over_helpers_and_never_run_twice() {
        let flows = keys(8);
        let mut c = Coordinator::new("c", 1);
        c.beats_read(Vec::new(), true, Instant::now());
        let mut here: BTreeSet<FlowKey> = BTreeSet::new();
        let plan = c.plan(&flows, &here, |_| false, Instant::now());
        here.extend(plan.start_here);
        assert_eq!(here.len(), 8);
        let mut helpers = vec![Helper::new(helper("h1")), Helper::new(helper("h2"))];
        for _ in 0..6 {
            tokio::time::advance(BEAT_EVERY).await;
            round(&mut c, &mut helpers, Instant::now());
            let plan = c.plan(&flows, &here, |_| false, Instant::now());
            owners(&plan, &here, &flows);
            for flow in &plan.stop_here {
                here.remove(flow);
            }
            here.extend(plan.start_here.iter().cloned());
            apply(&c, &mut helpers);
            // What helpers are about to start is never here.
            for h in &helpers {
                for flow in h.running() {
                    assert!(!here.contains(flow), "{flow} here and at a helper");
                }
            }
        }
        let counts: Vec<usize> = helpers.iter().map(|h| h.running().len()).collect();
        assert_eq!(here.len() + counts.iter().sum::<usize>(), 8, "{counts:?}");
        assert!(counts.iter().all(|&n| n == 3 || n == 2), "{counts:?}");
        assert!(here.len() >= 2, "{here:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_helpers_flows_come_back_only_after_its_term() {
        let flows = keys(4);
        let mut c = Coordinator::new("c", 1);
        let mut helpers = vec![Helper::new(helper("h1"))];
        round(&mut c, &mut helpers, Instant::now());
        let here = BTreeSet::new();
        let plan = c.plan(&flows, &here, |_| false, Instant::now());
        let mut here: BTreeSet<FlowKey> = plan.start_here.into_iter().collect();
        apply(&c, &mut helpers);
        tokio::time::advance(BEAT_EVERY).await;
        round(&mut c, &mut helpers, Instant::now());
        let plan = c.plan(&flows, &here, |_| false, Instant::now());
        here.extend(plan.start_here);
        let theirs = helpers[0].running().clone();
        assert_eq!(theirs.len(), 2);
        // The helper dies: its beat stops changing.
        for _ in 0..3 {
            tokio::time::advance(BEAT_EVERY).await;
            let plan = c.plan(&flows, &here, |_| false, Instant::now());
            assert!(plan.start_here.is_empty(), "taken back within the term");
        }
        tokio::time::advance(DEAD_AFTER).await;
        let plan = c.plan(&flows, &here, |_| false, Instant::now());
        let back: BTreeSet<FlowKey> = plan.start_here.into_iter().collect();
        assert_eq!(back, theirs);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flow_wanted_here_waits_until_the_helper_let_go() {
        let flows = keys(2);
        let mut c = Coordinator::new("c", 1);
        let mut helpers = vec![Helper::new(helper("h1"))];
        round(&mut c, &mut helpers, Instant::now());
        let plan = c.plan(&flows, &BTreeSet::new(), |_| false, Instant::now());
        let mut here: BTreeSet<FlowKey> = plan.start_here.into_iter().collect();
        apply(&c, &mut helpers);
        let given = helpers[0].running().iter().next().cloned();
        let Some(given) = given else {
            panic!("the helper was given nothing")
        };
        // Wanted here (a move): not started while the helper may copy it.
        let wanted = |f: &FlowKey| f == &given;
        let plan = c.plan(&flows, &here, wanted, Instant::now());
        assert!(!plan.start_here.contains(&given));
        assert!(plan.elsewhere.contains_key(&given));
        // The helper has not seen the version that took it: still not.
        tokio::time::advance(BEAT_EVERY).await;
        c.beats_read(vec![helpers[0].beat(Vec::new())], true, Instant::now());
        let plan = c.plan(&flows, &here, wanted, Instant::now());
        assert!(!plan.start_here.contains(&given));
        // It acted on it and let go: now it starts here.
        apply(&c, &mut helpers);
        tokio::time::advance(BEAT_EVERY).await;
        c.beats_read(vec![helpers[0].beat(Vec::new())], true, Instant::now());
        let plan = c.plan(&flows, &here, wanted, Instant::now());
        assert!(plan.start_here.contains(&given), "{plan:?}");
        here.extend(plan.start_here);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_coordinator_adopts_what_helpers_run() {
        let flows = keys(4);
        let mut old = Coordinator::new("old", 1);
        let mut helpers = vec![Helper::new(helper("h1"))];
        round(&mut old, &mut helpers, Instant::now());
        let plan = old.plan(&flows, &BTreeSet::new(), |_| false, Instant::now());
        assert_eq!(plan.start_here.len(), 2);
        apply(&old, &mut helpers);
        let theirs = helpers[0].running().clone();
        let mut new = Coordinator::new("new", 1);
        round(&mut new, &mut helpers, Instant::now());
        let plan = new.plan(&flows, &BTreeSet::new(), |_| false, Instant::now());
        let started: BTreeSet<FlowKey> = plan.start_here.into_iter().collect();
        assert!(started.is_disjoint(&theirs), "{started:?} / {theirs:?}");
        assert_eq!(started.len(), 2);
        assert_eq!(new.shares().helpers["h1"].flows, theirs);
        // The helper keeps them under the new coordinator.
        let changes = helpers[0].assigned(&new.shares());
        assert!(changes.is_some_and(|c| c.stop.is_empty() && c.start.is_empty()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_helper_copies_only_within_its_last_beat() {
        let mut h = Helper::new(helper("h1"));
        assert!(!h.valid(Instant::now()));
        let began = Instant::now();
        h.beat(Vec::new());
        h.beat_written(began);
        assert!(h.valid(Instant::now()));
        tokio::time::advance(VALID_FOR).await;
        assert!(!h.valid(Instant::now()));
        assert!(VALID_FOR < DEAD_AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_assignment_is_not_acted_on_again() {
        let mut h = Helper::new(helper("h1"));
        let mut shares = Shares {
            coordinator: "c".into(),
            term: 1,
            version: 2,
            helpers: BTreeMap::from([(
                "h1".to_string(),
                HelperShare {
                    who: String::new(),
                    flows: keys(1),
                },
            )]),
        };
        assert_eq!(h.assigned(&shares).map(|c| c.start.len()), Some(1));
        assert_eq!(h.assigned(&shares), None);
        shares.version = 1;
        assert_eq!(h.assigned(&shares), None);
        // The same engine coordinating again counts its versions afresh.
        shares.term = 2;
        let again = h.assigned(&shares).expect("a new turn is acted on");
        assert!(again.start.is_empty() && again.stop.is_empty());
        // Fenced, it acts on the same shares again and starts its part.
        h.fenced();
        assert_eq!(h.assigned(&shares).map(|c| c.start.len()), Some(1));
    }
}
