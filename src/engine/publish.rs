//! The snapshot the app and the CLI render, built from the engine's state.

use std::sync::Arc;

use crate::control::event::OperationKind;

use super::snapshot::{Change, EngineState, FlowView, RegionView, Snapshot};
use super::workspaces::{self, ControlView};
use super::{Core, failover};

/// How long the rows of the flows are reused between snapshots: a
/// thousand statuses are read once, not four times, a second.
const FLOWS_FRESH_FOR: std::time::Duration = std::time::Duration::from_millis(900);

impl Core {
    /// Every flow's row, read from the copiers at most once per
    /// [`FLOWS_FRESH_FOR`] (sooner when a flow came or went).
    fn flow_views(&mut self) -> Arc<Vec<FlowView>> {
        let count = self.replicator.as_ref().map_or(0, |r| r.flows().count()) + self.lapsed.len();
        if let Some((at, flows)) = &self.flows_cache
            && at.elapsed() < FLOWS_FRESH_FOR
            && flows.len() == count
        {
            return Arc::clone(flows);
        }
        let flows: Arc<Vec<FlowView>> =
            Arc::new(self.statuses().into_iter().map(FlowView::of).collect());
        self.flows_cache = Some((std::time::Instant::now(), Arc::clone(&flows)));
        flows
    }

    /// Every flow's status: those running, then those whose replica
    /// region's lease lapsed (shown until they run again).
    pub(super) fn statuses(&self) -> Vec<crate::replication::FlowStatus> {
        let mut statuses = self
            .replicator
            .as_ref()
            .map(|r| r.statuses())
            .unwrap_or_default();
        let now = crate::workload::now_us();
        let group = self.group.as_ref();
        let lapsed: Vec<_> = self
            .lapsed
            .iter()
            .filter(|l| {
                group.is_some_and(|g| g.databases.includes(&l.db))
                    && !statuses
                        .iter()
                        .any(|r| r.db == l.db && r.branch == l.branch && r.replica == l.replica)
            })
            .map(|l| {
                let mut status = l.clone();
                status.lag_s = status.lag_s_at(now);
                status
            })
            .collect();
        statuses.extend(lapsed);
        statuses
    }

    pub(super) fn publish(&mut self) {
        self.seq += 1;
        let flows = self.flow_views();
        let state = match self.state {
            EngineState::Idle | EngineState::Replicating if !flows.is_empty() => {
                EngineState::Replicating
            }
            EngineState::Replicating => EngineState::Idle,
            other => other,
        };
        self.state = state;
        let regions = self
            .regions
            .specs()
            .iter()
            .map(|spec| RegionView {
                spec: spec.clone(),
                kind: spec.validate().map(|l| l.kind()).unwrap_or("invalid"),
                health: self.health.get(&spec.name).cloned(),
            })
            .collect();
        let mut snapshot = Snapshot {
            seq: self.seq,
            engine: state,
            regions,
            embedded_default: self.regions.embedded_default,
            clock_warnings: self.clock_warnings.clone(),
            group: self.group.clone(),
            flows,
            databases: Arc::clone(&self.databases),
            databases_listed_us: self.listed_us,
            history: Arc::clone(&self.history),
            cost: Arc::clone(&self.cost),
            activity: Arc::clone(&self.activity_view),
            demo_workloads: self.demo.keys().cloned().collect(),
            failover: Arc::new(self.failover.clone()),
            moving: Arc::new(self.moving.clone()),
            recovery: Arc::new(self.recovery.clone()),
            // The last drill: run here, else the newest in the log (the CLI's).
            drill: Arc::new(failover::FailoverView {
                last: self.drill.last.clone().or_else(|| {
                    self.control_state
                        .operations
                        .iter()
                        .rev()
                        .find(|r| r.kind == OperationKind::Drill)
                        .cloned()
                }),
                serving: self
                    .drill_workspaces
                    .values()
                    .filter(|ws| !ws.is_stopped())
                    .flat_map(|ws| ws.status().endpoints.into_iter().map(|e| e.url))
                    .collect(),
                ..self.drill.clone()
            }),
            standby: Arc::new(failover::StandbyView {
                workspaces: self.standby.values().map(|(ws, _)| ws.status()).collect(),
                starting: self.standby_starting.iter().cloned().collect(),
                note: self.standby_error.clone(),
            }),
            leases: self.lease_views(),
            remote: None,
            holder: self.holder.clone(),
            shares: self.shares.clone(),
            helping: self.helping_statuses(),
            sharing: self.opts.share_flows,
            zero_loss: self.zero_loss.clone(),
            alerts: Arc::new(self.alerts_view()),
            branches: Arc::new(failover::BranchesView::of(&self.control_state)),
            control: Arc::new(ControlView {
                workspaces: workspaces::view(
                    &self.control_state,
                    |name| self.workspaces.get(name).map(|w| w.status()),
                    |name| self.workspace_busy.get(name).cloned(),
                ),
                events: self.control_state.events,
                read_us: self.control_read_us,
                error: self.control_error.clone(),
            }),
        };
        if let Some(overlay) = &self.remote
            && !self.leases.values().any(|l| l.is_held())
        {
            overlay.apply(&mut snapshot);
        }
        let snapshot = Arc::new(snapshot);
        let change = snapshot.change_since(&self.snapshot_tx.borrow());
        self.snapshot_tx.send_replace(snapshot);
        let repaint = self
            .repaint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(repaint) = repaint
            && change != Change::None
        {
            repaint(change);
        }
    }
}
