//! Several engines sharing the group's flows (control/share.rs,
//! docs/sharing.md), for engines started with `lifeboat serve --share`:
//! while this engine holds the lease of the group's secondary it
//! coordinates (reads the helpers' beats, places every flow, publishes the
//! shares); while another engine holds it, this one helps (copies the
//! flows the shares give it, beating in the secondary).
//!
//! Double copying is never a consistency risk (a replica stays readable
//! with two copiers on one flow: every copy keeps DESIGN.md invariant 2);
//! the protocol keeps one engine per flow so the bill and the work are
//! not doubled.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use crate::control::lease::Holder;
use crate::control::share::{self, Beat, Coordinator, FlowKey, Helper, Shares};
use crate::error::Result;
use crate::replication::{Flow, FlowStatus};

use super::{Core, Internal};

/// The coordinator's side, while this engine holds the secondary's lease.
pub(super) struct Coordinating {
    coordinator: Coordinator,
    /// This turn at coordinating (reports of an earlier turn are dropped).
    turn: u64,
    /// A read of the beats is under way.
    busy: bool,
    /// When the beats were last listed (new helpers found), and last read.
    listed_at: Option<Instant>,
    read_at: Option<Instant>,
}

/// The helper's side, while another engine holds the secondary's lease.
pub(super) struct Helping {
    helper: Helper,
    /// This turn at helping (reports of an earlier turn are dropped).
    turn: u64,
    /// The secondary its beats are written to.
    region: String,
    /// Flows given to it that start once a beat listing them is written.
    to_start: Vec<Flow>,
    /// A beat is being written.
    busy: bool,
}

/// A beat written, and whether the engine that gave the flows starting
/// still holds their replica regions.
pub(super) struct BeatOutcome {
    pub(super) turn: u64,
    pub(super) began: Instant,
    pub(super) starting: Vec<FlowKey>,
    pub(super) written: Result<()>,
    pub(super) holds: Result<BTreeMap<String, bool>>,
}

/// Placing is put off once the beats were last read this long ago: an
/// unread helper is not a dead one.
const READ_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(5);

impl Core {
    /// Every [`share::BEAT_EVERY`], and at once when a lease changes
    /// hands: coordinate or help, for an engine that shares flows.
    pub(super) fn share_tick(&mut self) {
        if !self.opts.share_flows {
            return;
        }
        let Some(secondary) = self.group.as_ref().map(|g| g.secondary.clone()) else {
            return;
        };
        let Some(me) = self.holder.clone() else {
            return;
        };
        if self.holds_lease(&secondary) {
            self.stop_helping();
            self.coordinate(&secondary, &me);
        } else {
            self.stop_coordinating();
            self.help(&secondary, me);
        }
    }

    /// Whether this engine places the group's flows (rather than starting
    /// each where it is found).
    pub(super) fn places_flows(&self) -> bool {
        self.opts.share_flows
            && self
                .group
                .as_ref()
                .is_some_and(|g| self.holds_lease(&g.secondary))
    }

    fn next_share_turn(&mut self) -> u64 {
        self.share_turns += 1;
        self.share_turns
    }

    fn coordinate(&mut self, secondary: &str, me: &Holder) {
        let Ok(region) = self.region(secondary) else {
            return;
        };
        if self.coordinating.is_none() {
            let turn = self.next_share_turn();
            self.coordinating = Some(Coordinating {
                // Later turns of this run have larger terms: a helper
                // never takes a new turn's versions for old ones.
                coordinator: Coordinator::new(&me.instance, turn),
                turn,
                busy: false,
                listed_at: None,
                read_at: None,
            });
        }
        let Some(coordinating) = self.coordinating.as_mut() else {
            return;
        };
        if coordinating.busy {
            return;
        }
        let list = coordinating
            .listed_at
            .is_none_or(|at| at.elapsed() >= share::LIST_EVERY);
        let known = (!list).then(|| coordinating.coordinator.known());
        coordinating.busy = true;
        let turn = coordinating.turn;
        self.spawn(async move {
            Internal::BeatsRead {
                turn,
                result: share::read_beats(&region, known).await,
                listed: list,
            }
        });
    }

    /// The secondary's lease is gone: flows into regions this engine still
    /// holds run here again; the others stopped with the lease.
    fn stop_coordinating(&mut self) {
        if self.coordinating.take().is_none() {
            return;
        }
        self.shares = None;
        let leased = self.held_regions();
        if let Some(replicator) = self.replicator.as_mut() {
            for key in replicator.away_keys() {
                if leased.contains(&key.replica) {
                    replicator.bring_here(&key);
                }
            }
        }
    }

    /// The helpers' beats, read: the flows are placed again.
    pub(super) fn beats_read(&mut self, turn: u64, result: Result<Vec<Beat>>, listed: bool) {
        let Some(coordinating) = self.coordinating.as_mut().filter(|c| c.turn == turn) else {
            return;
        };
        coordinating.busy = false;
        let beats = match result {
            Ok(beats) => beats,
            // Unread beats say nothing of the helpers: nothing moves.
            Err(e) => return tracing::warn!("reading the helpers' beats: {e}"),
        };
        let now = Instant::now();
        coordinating.coordinator.beats_read(beats, listed, now);
        coordinating.read_at = Some(now);
        if listed {
            coordinating.listed_at = Some(now);
        }
        let forgotten = coordinating.coordinator.forget_long_dead(now);
        if !forgotten.is_empty()
            && let Some(secondary) = self.group.as_ref().map(|g| g.secondary.clone())
            && let Ok(region) = self.region(&secondary)
        {
            self.stop_off_loop("take dead helpers' share beats away".into(), async move {
                for instance in forgotten {
                    share::remove_beat(&region, &instance).await?;
                }
                Ok(())
            });
        }
        self.place_flows();
    }

    /// Places the flows this engine knows: starts its part here, stops
    /// what a helper is to take, shows where the rest are copied.
    pub(super) fn place_flows(&mut self) {
        let leased = self.held_regions();
        let held = self
            .group
            .as_ref()
            .map(|g| g.held.clone())
            .unwrap_or_default();
        // An operation under way runs with every flow here; so does a group
        // whose workspaces' writes wait on their flows' copiers (zero loss,
        // the RPO guard: `region::sync` is this process's).
        let promised = self
            .group
            .as_ref()
            .is_some_and(|g| g.zero_loss_timeout().is_some() || g.writes.rpo_guard);
        let busy = promised || self.moving.running || self.failover.running || self.drill.running;
        let (Some(coordinating), Some(replicator)) =
            (self.coordinating.as_mut(), self.replicator.as_mut())
        else {
            return;
        };
        if coordinating
            .read_at
            .is_none_or(|at| at.elapsed() > READ_FRESH_FOR)
        {
            return;
        }
        let flows: BTreeSet<FlowKey> = replicator
            .flows()
            .filter(|f| leased.contains(f.replica.name()))
            .map(Flow::key)
            .collect();
        let here = replicator.here();
        let now = Instant::now();
        let coordinator = &mut coordinating.coordinator;
        let plan = coordinator.plan(&flows, &here, |f| busy || held.contains(&f.db), now);
        for key in &plan.stop_here {
            tracing::info!("handing {key} to a helper");
            replicator.hand_away(key);
        }
        for key in &plan.start_here {
            replicator.bring_here(key);
        }
        let mut reported: BTreeMap<FlowKey, FlowStatus> = coordinator
            .statuses(now)
            .into_iter()
            .map(|(_, s)| (FlowKey::of_status(&s), s))
            .collect();
        let here = replicator.here();
        for key in flows.difference(&here) {
            let by = plan.elsewhere.get(key).map(|h| coordinator.who(h));
            replicator.set_away(key, reported.remove(key), by);
        }
        self.shares = Some(coordinator.shares());
    }

    fn stop_helping(&mut self) {
        let Some(helping) = self.helping.take() else {
            return;
        };
        // Its flows stay: the coordinator's first plan counts them here.
        let Ok(region) = self.region(&helping.region) else {
            return;
        };
        let instance = helping.helper.me().instance.clone();
        self.stop_off_loop("take this engine's share beat away".into(), async move {
            share::remove_beat(&region, &instance).await
        });
    }

    /// The shares the group's engine asks this helper to follow: its
    /// published shares; none at all (stop everything) from an engine that
    /// does not share; nothing yet while it has not looked at the beats.
    fn shares_to_follow(&self) -> Option<Shares> {
        let view = &self.remote.as_ref().filter(|o| !o.view.is_stale())?.view;
        let published = &view.published;
        if !published.sharing {
            return Some(Shares {
                coordinator: published.holder.instance.clone(),
                ..Shares::default()
            });
        }
        published.shares.clone()
    }

    fn help(&mut self, secondary: &str, me: Holder) {
        let Ok(region) = self.region(secondary) else {
            return;
        };
        if self.helping.is_none() {
            let turn = self.next_share_turn();
            self.helping = Some(Helping {
                helper: Helper::new(me),
                turn,
                region: secondary.to_string(),
                to_start: Vec::new(),
                busy: false,
            });
        }
        if self.fence_helper() {
            return;
        }
        let shares = self.shares_to_follow();
        let (Some(helping), Some(replicator)) = (self.helping.as_mut(), self.replicator.as_mut())
        else {
            return;
        };
        let copying = replicator.here();
        let mut unknown = false;
        let mut stopping = Vec::new();
        if let Some(shares) = shares
            && let Some(changes) = helping.helper.assigned(&shares)
        {
            for key in changes.stop {
                helping.to_start.retain(|f| !f.is(&key));
                if copying.contains(&key) {
                    stopping.push((key.clone(), replicator.remove_flow(&key)));
                } else {
                    helping.helper.stopped(&key);
                }
            }
            for key in changes.start {
                match self.unleased.iter().find(|f| f.is(&key)) {
                    Some(flow) => helping.to_start.push(flow.clone()),
                    None => {
                        unknown = true;
                        helping.helper.cannot(
                            key,
                            "this engine has not found the branch yet; it looks for it".into(),
                        );
                    }
                }
            }
        }
        if !stopping.is_empty() {
            self.spawn(async move {
                let mut keys = Vec::new();
                for (key, flows) in stopping {
                    flows.wait().await;
                    keys.push(key);
                }
                Internal::HelperStopped(keys)
            });
        }
        if unknown {
            self.discover();
        }
        self.beat(region);
    }

    /// Writes this helper's next beat (unless one is being written), then
    /// asks whether the engine that gave the flows about to start still
    /// holds their replica regions.
    fn beat(&mut self, region: crate::region::Region) {
        let (Some(helping), Some(replicator)) = (self.helping.as_mut(), self.replicator.as_ref())
        else {
            return;
        };
        if helping.busy {
            return;
        }
        let running = helping.helper.running().clone();
        let statuses = replicator
            .statuses()
            .into_iter()
            .filter(|s| running.contains(&FlowKey::of_status(s)))
            .collect();
        let beat = helping.helper.beat(statuses);
        let coordinator = beat.applied.as_ref().map(|a| a.coordinator.clone());
        let starting: Vec<FlowKey> = helping.to_start.iter().map(Flow::key).collect();
        let replicas: BTreeSet<String> = helping
            .to_start
            .iter()
            .map(|f| f.replica.name().to_string())
            .collect();
        let replicas: Vec<_> = replicas
            .into_iter()
            .filter_map(|name| self.opened.get(&name).cloned())
            .collect();
        helping.busy = true;
        let turn = helping.turn;
        let began = Instant::now();
        self.spawn(async move {
            let written = share::write_beat(&region, &beat).await;
            let holds = async {
                // Started only while the engine that gave them still holds
                // their replica regions, read after the beat that lists them.
                let mut holds = BTreeMap::new();
                if written.is_err() || starting.is_empty() {
                    return Ok(holds);
                }
                if let Some(coordinator) = coordinator {
                    for replica in &replicas {
                        let held = share::still_holds(replica, &coordinator).await?;
                        holds.insert(replica.name().to_string(), held);
                    }
                }
                Ok(holds)
            }
            .await;
            Internal::BeatWritten(Box::new(BeatOutcome {
                turn,
                began,
                starting,
                written,
                holds,
            }))
        });
    }

    /// Every second and at each beat, for a helper: once no beat was
    /// written within its validity, the coordinator may soon count this
    /// engine dead, so it stops copying. Returns whether it stopped any.
    pub(super) fn fence_helper(&mut self) -> bool {
        let (Some(helping), Some(replicator)) = (self.helping.as_mut(), self.replicator.as_mut())
        else {
            return false;
        };
        let copying = replicator.here();
        if copying.is_empty() || helping.helper.valid(Instant::now()) {
            return false;
        }
        tracing::warn!(
            "no share beat written for {} s: stopping this engine's {} flow(s)",
            share::VALID_FOR.as_secs(),
            copying.len()
        );
        helping.to_start.clear();
        helping.helper.fenced();
        let stopping: Vec<_> = copying
            .iter()
            .map(|key| replicator.remove_flow(key))
            .collect();
        let keys: Vec<FlowKey> = copying.into_iter().collect();
        self.spawn(async move {
            for flows in stopping {
                flows.wait().await;
            }
            Internal::HelperStopped(keys)
        });
        true
    }

    /// A beat written (or not): the flows it listed as starting start.
    pub(super) fn beat_written(&mut self, outcome: BeatOutcome) {
        let (Some(helping), Some(replicator)) = (
            self.helping.as_mut().filter(|h| h.turn == outcome.turn),
            self.replicator.as_mut(),
        ) else {
            return;
        };
        helping.busy = false;
        if let Err(e) = outcome.written {
            return tracing::warn!("writing this engine's share beat: {e}");
        }
        helping.helper.beat_written(outcome.began);
        let holds = match outcome.holds {
            Ok(holds) => holds,
            // Asked again after the next beat.
            Err(e) => return tracing::warn!("reading the coordinator's lease: {e}"),
        };
        let (ready, waiting): (Vec<Flow>, Vec<Flow>) = std::mem::take(&mut helping.to_start)
            .into_iter()
            .partition(|f| outcome.starting.contains(&f.key()));
        helping.to_start = waiting;
        for flow in ready {
            let key = flow.key();
            if !helping.helper.running().contains(&key) {
                continue;
            }
            if holds.get(flow.replica.name()) == Some(&true) {
                tracing::info!("copying {key} for the group's coordinator");
                replicator.add(flow);
            } else {
                helping.helper.not_started(&key);
            }
        }
    }

    /// Flows this helper stopped have saved their cursors.
    pub(super) fn helper_stopped(&mut self, keys: Vec<FlowKey>) {
        let (Some(helping), Some(replicator)) = (self.helping.as_mut(), self.replicator.as_mut())
        else {
            return;
        };
        let here = replicator.here();
        for key in keys.iter().filter(|k| !here.contains(k)) {
            // (One given again meanwhile runs, and stays listed.)
            helping.helper.stopped(key);
        }
    }

    /// The flows this engine copies as a helper, as its report shows them.
    pub(super) fn helping_statuses(&self) -> Vec<FlowStatus> {
        match (&self.helping, &self.replicator) {
            (Some(_), Some(replicator)) => replicator.statuses(),
            _ => Vec::new(),
        }
    }

    /// After this engine stopped its flows: its beat goes, so the
    /// coordinator frees them at its next look, not a term later.
    pub(super) async fn leave_share(&mut self) {
        let Some(helping) = self.helping.take() else {
            return;
        };
        let Ok(region) = self.region(&helping.region) else {
            return;
        };
        if let Err(e) = share::remove_beat(&region, &helping.helper.me().instance).await {
            tracing::warn!("taking this engine's share beat away: {e}");
        }
    }
}
