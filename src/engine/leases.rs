//! The engine's leases (control/lease.rs): one task per region of the
//! group keeps this engine's view of that region's lease and reports every
//! change; flows into a region run only while its lease is held, and
//! operations that write into a region are refused without it.

use std::collections::BTreeSet;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::lease::{Holder, LeaseState, RegionLease};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::replication::Flow;

use super::{Command, Core, Internal};

/// One region's lease as the snapshot shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LeaseView {
    pub region: String,
    pub state: LeaseState,
}

impl LeaseView {
    /// In words, for the status bar and `lifeboat serve`.
    pub fn describe(&self) -> String {
        let region = &self.region;
        match &self.state {
            LeaseState::Unknown => format!("{region}: looking at the lease"),
            LeaseState::Held { .. } => format!("{region}: this engine holds the lease"),
            LeaseState::Standby { holder } => {
                format!(
                    "{region}: standing by; {} holds the lease",
                    holder.describe()
                )
            }
            LeaseState::Unreachable { error } => {
                format!("{region}: the lease cannot be read ({error})")
            }
        }
    }
}

/// A running lease task: told to stop (and release) through `stop`.
pub(super) struct LeaseTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LeaseTask {
    /// Tells the task to release the lease and end; waits for it.
    pub(super) async fn release(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::warn!("a lease task ended badly: {e}");
        }
    }
}

impl Core {
    /// Runs a lease task for each of the group's regions (and the
    /// `lease_regions` asked for) that has none, and releases those of
    /// regions no longer in it.
    pub(super) fn keep_leases(&mut self) {
        let mut wanted: Vec<String> = self
            .group
            .as_ref()
            .map(|g| vec![g.primary.clone(), g.secondary.clone()])
            .unwrap_or_default();
        for region in &self.opts.lease_regions {
            if !wanted.contains(region) {
                wanted.push(region.clone());
            }
        }
        let gone: Vec<String> = self
            .lease_tasks
            .keys()
            .filter(|r| !wanted.contains(r))
            .cloned()
            .collect();
        for region in gone {
            if let Some(task) = self.lease_tasks.remove(&region) {
                self.leases.remove(&region);
                self.stop_off_loop(format!("release the lease of {region}"), async move {
                    task.release().await;
                    Ok(())
                });
            }
        }
        let engine = match crate::control::engine_id(&self.home.data_dir) {
            Ok(id) => id,
            Err(e) => return tracing::warn!("no lease without an engine id: {e}"),
        };
        for name in wanted {
            if self.lease_tasks.contains_key(&name) {
                continue;
            }
            let Ok(region) = self.region(&name) else {
                continue;
            };
            let socket = self.socket.as_ref().map(|p| p.display().to_string());
            let me = self
                .holder
                .get_or_insert_with(|| Holder {
                    socket,
                    ..Holder::me(&engine)
                })
                .clone();
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(follow(
                RegionLease::new(region, me),
                stop_rx,
                self.internal_tx.clone(),
            ));
            self.lease_tasks.insert(name, LeaseTask { stop, task });
        }
    }

    /// A lease task's report: flows into a region start when its lease is
    /// taken and stop when it is lost.
    pub(super) fn lease_changed(&mut self, region: String, state: LeaseState) {
        let was = self.holds_lease(&region);
        let now = state.is_held();
        let unreachable = match &state {
            LeaseState::Unreachable { error } => Some(error.clone()),
            _ => None,
        };
        self.leases.insert(region.clone(), state);
        if was && !now {
            tracing::warn!(region = %region, "the lease is lost: copies into {region} stop");
            if let Some(replicator) = self.replicator.as_mut() {
                // A region that stopped answering: its replicas stay in
                // view, Paused with their lag growing, and their flows
                // start again once the lease is back (another engine's
                // lease: that engine shows them).
                if let Some(error) = &unreachable {
                    for mut status in replicator.statuses() {
                        if status.replica == region {
                            status.state = crate::replication::FlowState::Paused;
                            status.unreachable = Some(region.clone());
                            // Stopped, it asks nothing of the stores.
                            status.requests_last_min = Default::default();
                            status.requests_per_min = 0;
                            status.detail = Some(format!(
                                "the lease of {region} lapsed: the region does not answer ({error}); copies resume once it does"
                            ));
                            self.lapsed.push(status);
                        }
                    }
                    let stopped: Vec<Flow> = replicator
                        .flows()
                        .filter(|f| f.replica.name() == region)
                        .cloned()
                        .collect();
                    for flow in stopped {
                        if !self.unleased.iter().any(|u| u.label() == flow.label()) {
                            self.unleased.push(flow);
                        }
                    }
                }
                let stopping = replicator.remove_into(&region);
                self.stop_off_loop(format!("stop the copies into {region}"), async move {
                    stopping.wait().await;
                    Ok(())
                });
            }
        } else if now && !was {
            self.lapsed.retain(|s| s.replica != region);
            let (ready, waiting) = std::mem::take(&mut self.unleased)
                .into_iter()
                .partition(|f| f.replica.name() == region);
            self.unleased = waiting;
            self.add_flows(ready);
            self.discover();
        }
        if was != now {
            self.share_tick();
        }
    }

    /// The regions whose leases this engine holds.
    pub(super) fn held_regions(&self) -> BTreeSet<String> {
        self.leases
            .iter()
            .filter(|(_, l)| l.is_held())
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// The opened regions whose lease this engine holds.
    pub(super) fn held_opened(&self) -> Vec<Region> {
        self.held_regions()
            .iter()
            .filter_map(|name| self.opened.get(name).cloned())
            .collect()
    }

    /// Whether this engine holds `region`'s lease.
    pub(super) fn holds_lease(&self, region: &str) -> bool {
        self.leases.get(region).is_some_and(LeaseState::is_held)
    }

    /// The group regions `command` writes into: it runs only where this
    /// engine holds their leases (regions outside the group have none).
    pub(super) fn writes_into(&self, command: &Command) -> Vec<String> {
        let Some(group) = self.group.as_ref() else {
            return Vec::new();
        };
        let both = vec![group.primary.clone(), group.secondary.clone()];
        let written = match command {
            Command::StopWorkspace { name } if self.workspaces.contains_key(name) => Vec::new(),
            Command::ConfigureReplication { .. }
            | Command::StopReplication
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::SetRpoTarget { .. }
            | Command::SetDrillSchedule { .. }
            | Command::CompareRecovered { .. }
            | Command::StopWorkspace { .. } => both.clone(),
            Command::PreviewFailover { .. }
            | Command::Failover { .. }
            | Command::Drill { .. }
            | Command::StartPreprovisioning
            | Command::StopPreprovisioning => vec![group.secondary.clone()],
            Command::PlanMove { .. }
            | Command::Move { .. }
            | Command::Recover { .. }
            | Command::Merge { .. }
            | Command::DeleteBranch { .. } => both,
            Command::Restore { region, .. }
            | Command::ForkBranch { region, .. }
            | Command::StartWorkspace { region, .. }
            | Command::CreateDatabase { region, .. }
            | Command::DeleteDatabase { region, .. } => vec![region.clone()],
            _ => Vec::new(),
        };
        written
            .into_iter()
            .filter(|r| self.lease_tasks.contains_key(r))
            .collect()
    }

    /// Where `command` runs: here when this engine runs the group (or no
    /// engine does), else at the engine that does, through its socket when
    /// it runs on this machine.
    pub(super) fn route_of(&self, command: &Command) -> Route {
        let regions = self.writes_into(command);
        let group_level = !regions.is_empty() || (self.group.is_none() && is_group_level(command));
        if !group_level {
            return Route::Here;
        }
        let held = self.must_hold(&regions, &command.describe());
        // Another engine runs the group: one whose lease this engine stands
        // by for, or whose published view it shows.
        // A command's engine that holds what it was started to hold runs
        // what it is asked: its asker chose it already.
        let asked_here = !self.opts.lease_regions.is_empty()
            && self.opts.lease_regions.iter().all(|r| self.holds_lease(r));
        match (held, self.other_holder(true).cloned()) {
            (Ok(()), _) if self.group.is_some() || asked_here => Route::Here,
            (_, Some(holder)) => match holder.local_socket() {
                Some(socket) => Route::Forward(socket),
                None => Route::Refuse(Error::Failed(format!(
                    "{} runs the group; {} there (its socket is not reachable from this machine)",
                    holder.describe(),
                    command.describe()
                ))),
            },
            (Ok(()), None) => Route::Here,
            (Err(e), None) => Route::Refuse(e),
        }
    }

    /// The engine that runs the group when it is not this one: the holder
    /// this engine stands by for, else the one whose published view it
    /// shows (with `fresh`, only while that view is not stale).
    pub(super) fn other_holder(&self, fresh: bool) -> Option<&Holder> {
        self.leases
            .values()
            .find_map(|l| match l {
                LeaseState::Standby { holder } => Some(holder),
                _ => None,
            })
            .or_else(|| {
                self.remote
                    .as_ref()
                    .filter(|o| !fresh || !o.view.is_stale())
                    .map(|o| &o.view.published.holder)
            })
    }

    /// Refuses an operation that writes into `regions` unless this engine
    /// holds each one's lease, saying who does.
    pub(super) fn must_hold(&self, regions: &[String], what: &str) -> Result<()> {
        for region in regions {
            match self.leases.get(region) {
                Some(LeaseState::Held { .. }) => {}
                Some(LeaseState::Standby { holder }) => {
                    return Err(Error::Failed(format!(
                        "{} holds the lease of region {region}, so it runs the group: {what} there, or stop it first",
                        holder.describe()
                    )));
                }
                Some(LeaseState::Unreachable { error }) => {
                    return Err(Error::Failed(format!(
                        "the lease of region {region} cannot be read ({error}); {what} once it answers"
                    )));
                }
                Some(LeaseState::Unknown) | None => {
                    return Err(Error::Failed(format!(
                        "this engine is still looking at the lease of region {region}; {what} in a few seconds"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The leases, for the snapshot.
    pub(super) fn lease_views(&self) -> Vec<LeaseView> {
        self.leases
            .iter()
            .map(|(region, state)| LeaseView {
                region: region.clone(),
                state: state.clone(),
            })
            .collect()
    }
}

/// Where a command runs.
pub(super) enum Route {
    Here,
    /// At the engine listening on this socket.
    Forward(std::path::PathBuf),
    Refuse(Error),
}

/// Commands that act on the replication group, wherever its engine runs.
fn is_group_level(command: &Command) -> bool {
    matches!(
        command,
        Command::ConfigureReplication { .. }
            | Command::StopReplication
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::SetRpoTarget { .. }
            | Command::SetDrillSchedule { .. }
            | Command::PreviewFailover { .. }
            | Command::Failover { .. }
            | Command::Drill { .. }
            | Command::StartPreprovisioning
            | Command::StopPreprovisioning
            | Command::DeleteBranch { .. }
            | Command::PlanMove { .. }
            | Command::Move { .. }
            | Command::Recover { .. }
            | Command::CompareRecovered { .. }
            | Command::Merge { .. }
    )
}

/// One region's lease task: ticks when due, reports each change, releases
/// the lease when told to stop.
async fn follow(
    mut lease: RegionLease,
    mut stop: watch::Receiver<bool>,
    report: tokio::sync::mpsc::UnboundedSender<Internal>,
) {
    let region = lease.region().name().to_string();
    let mut last = None;
    loop {
        let state = lease.tick().await;
        if last.as_ref() != Some(&state) {
            last = Some(state.clone());
            if report
                .send(Internal::Lease {
                    region: region.clone(),
                    state,
                })
                .is_err()
            {
                break;
            }
        }
        // A held lease lapses on time even while the region does not answer.
        let wait = lease.next_tick();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
    }
    if let Err(e) = lease.release().await {
        tracing::warn!(region = %region, "releasing the lease: {e}");
    }
}
