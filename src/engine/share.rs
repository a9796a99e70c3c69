//! Several engines sharing the group's flows (control/share.rs,
//! docs/sharing.md), for engines started with `lifeboat serve --share`:
//! while this engine holds the lease of the group's secondary it
//! coordinates (reads the helpers' beats, places every flow, publishes the
//! shares); while another engine holds it, this one helps (copies the
//! flows the shares give it, beating in the secondary).
//!
//! Double copying is never a consistency risk (a replica stays readable
//! with two copiers on one flow: DESIGN.md invariant 2 holds per copy);
//! the protocol keeps one engine per flow so the bill and the work are
//! not doubled.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use crate::control::lease::Holder;
use crate::control::share::{self, Beat, Coordinator, FlowKey, Helper};
use crate::error::Result;
use crate::replication::{Flow, FlowStatus};

use super::{Core, Internal};

/// The coordinator's side, while this engine holds the secondary's lease.
pub(super) struct Coordinating {
    coordinator: Coordinator,
    /// A read of the beats is under way.
    busy: bool,
    /// When the beats were last listed (new helpers found).
    listed_at: Option<Instant>,
}

/// The helper's side, while another engine holds the secondary's lease.
pub(super) struct Helping {
    helper: Helper,
    /// The secondary its beats are written to.
    region: String,
    /// Flows given to it that start once a beat listing them is written.
    to_start: Vec<Flow>,
    /// A beat is being written.
    busy: bool,
}

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
            if self.coordinating.take().is_some() {
                self.shares = None;
            }
            self.help(&secondary, me);
        }
    }

    fn coordinate(&mut self, secondary: &str, me: &Holder) {
        let Ok(region) = self.region(secondary) else {
            return;
        };
        let coordinating = self.coordinating.get_or_insert_with(|| Coordinating {
            coordinator: Coordinator::new(&me.instance),
            busy: false,
            listed_at: None,
        });
        if coordinating.busy {
            return;
        }
        let list = coordinating
            .listed_at
            .is_none_or(|at| at.elapsed() >= share::LIST_EVERY);
        let known = (!list).then(|| coordinating.coordinator.known());
        coordinating.busy = true;
        self.spawn(async move {
            Internal::BeatsRead {
                result: share::read_beats(&region, known).await,
                listed: list,
            }
        });
    }

    /// The helpers' beats, read: the flows are placed again.
    pub(super) fn beats_read(&mut self, result: Result<Vec<Beat>>, listed: bool) {
        let Some(coordinating) = self.coordinating.as_mut() else {
            return;
        };
        coordinating.busy = false;
        match result {
            Ok(beats) => {
                let now = Instant::now();
                coordinating.coordinator.beats_read(beats, listed, now);
                if listed {
                    coordinating.listed_at = Some(now);
                }
                self.place_flows();
            }
            // Unread beats say nothing of the helpers: nothing moves.
            Err(e) => tracing::warn!("reading the helpers' beats: {e}"),
        }
    }

    /// Places the flows this engine knows: starts its part here, stops
    /// what a helper is to take, shows where the rest are copied.
    pub(super) fn place_flows(&mut self) {
        let leased: BTreeSet<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.is_held())
            .map(|(r, _)| r.clone())
            .collect();
        let held = self
            .group
            .as_ref()
            .map(|g| g.held.clone())
            .unwrap_or_default();
        // An operation under way runs with every flow here.
        let busy = self.moving.running || self.failover.running || self.drill.running;
        let (Some(coordinating), Some(replicator)) =
            (self.coordinating.as_mut(), self.replicator.as_mut())
        else {
            return;
        };
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

    fn help(&mut self, secondary: &str, me: Holder) {
        let Ok(region) = self.region(secondary) else {
            return;
        };
        self.helping.get_or_insert_with(|| Helping {
            helper: Helper::new(me),
            region: secondary.to_string(),
            to_start: Vec::new(),
            busy: false,
        });
        if self.fence_helper() {
            return;
        }
        let (Some(helping), Some(replicator)) = (self.helping.as_mut(), self.replicator.as_mut())
        else {
            return;
        };
        let copying = replicator.here();
        let shares = self
            .remote
            .as_ref()
            .filter(|o| !o.view.is_stale())
            .and_then(|o| o.view.published.shares.clone());
        let mut unknown = false;
        let mut stopping = Vec::new();
        if let Some(shares) = shares
            && let Some(changes) = helping.helper.assigned(&shares)
        {
            for key in changes.stop {
                helping.to_start.retain(|f| f.key() != key);
                if copying.contains(&key) {
                    stopping.push((key.clone(), replicator.remove_flow(&key)));
                } else {
                    helping.helper.stopped(&key);
                }
            }
            for key in changes.start {
                match self.unleased.iter().find(|f| f.key() == key) {
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
        let Some(helping) = self.helping.as_mut() else {
            return;
        };
        if helping.busy {
            return;
        }
        let Some(replicator) = self.replicator.as_ref() else {
            return;
        };
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
        let began = Instant::now();
        self.spawn(async move {
            let result = async {
                share::write_beat(&region, &beat).await?;
                // Started only while the engine that gave them still holds
                // their replica regions, read after the beat that lists them.
                let mut holds = BTreeMap::new();
                if let Some(coordinator) = coordinator.filter(|_| !starting.is_empty()) {
                    for replica in &replicas {
                        let held = share::still_holds(replica, &coordinator).await?;
                        holds.insert(replica.name().to_string(), held);
                    }
                }
                Ok(holds)
            }
            .await;
            Internal::BeatWritten {
                began,
                starting,
                result,
            }
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
    pub(super) fn beat_written(
        &mut self,
        began: Instant,
        starting: Vec<FlowKey>,
        result: Result<BTreeMap<String, bool>>,
    ) {
        let (Some(helping), Some(replicator)) = (self.helping.as_mut(), self.replicator.as_mut())
        else {
            return;
        };
        helping.busy = false;
        let holds = match result {
            Ok(holds) => holds,
            Err(e) => return tracing::warn!("writing this engine's share beat: {e}"),
        };
        helping.helper.beat_written(began);
        let (ready, waiting): (Vec<Flow>, Vec<Flow>) = std::mem::take(&mut helping.to_start)
            .into_iter()
            .partition(|f| starting.contains(&f.key()));
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
        if let Some(helping) = self.helping.as_mut() {
            for key in &keys {
                helping.helper.stopped(key);
            }
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
