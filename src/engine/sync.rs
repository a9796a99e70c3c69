//! Zero loss and the RPO guard as the engine shows them: each suspension
//! and resumption of a link (`region::sync`) becomes an activity entry,
//! and the snapshot says whether a zero-loss group's writes wait for the
//! other region now.

use serde::{Deserialize, Serialize};

use super::Core;
use super::activity::Outcome;
use crate::region::sync::SyncChange;
use crate::storage::branch_path;

/// Whether a zero-loss group's promise holds now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZeroLossView {
    /// How long a write waits for the other region (seconds).
    pub timeout_s: f64,
    /// Links whose writes do not wait for their replica now.
    pub suspended: Vec<SuspendedLink>,
    /// Flows whose home writers in this engine wait for their replica.
    pub promised: usize,
    /// Flows of the group running in this engine.
    pub flows: usize,
}

impl ZeroLossView {
    /// Zero loss holds for every write this engine acknowledges.
    pub fn in_force(&self) -> bool {
        self.suspended.is_empty()
    }

    /// One line for the status bar, the Replication tab and `status`.
    pub fn line(&self) -> String {
        match self.suspended.first() {
            None => format!(
                "zero loss in force: a write is acknowledged once the other region holds it (timeout {} s)",
                self.timeout_s
            ),
            Some(link) => format!(
                "zero loss SUSPENDED since {} for {} → {}: {}; writes are acknowledged without waiting until {} holds every write again",
                crate::workload::verify::format_us(link.since_us),
                link.home,
                link.replica,
                link.why,
                link.replica
            ),
        }
    }
}

/// A link (home region → replica region) whose zero loss is suspended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspendedLink {
    pub home: String,
    pub replica: String,
    pub since_us: u64,
    pub why: String,
}

impl Core {
    /// The group regions whose writers' links this engine reports on.
    fn sync_regions(&self) -> Vec<crate::region::Region> {
        let Some(group) = &self.group else {
            return Vec::new();
        };
        [&group.primary, &group.secondary]
            .into_iter()
            .filter_map(|name| self.region(name).ok())
            .collect()
    }

    /// Once a second (the sample tick): records the links' suspensions and
    /// resumptions since the last look as activity entries, and keeps the
    /// view the snapshots publish (not worked out per publish: it asks
    /// every flow).
    pub(super) fn look_at_sync(&mut self) {
        self.read_sync_events();
        self.zero_loss = self.zero_loss_view();
    }

    fn read_sync_events(&mut self) {
        let mut noted = false;
        for region in self.sync_regions() {
            let sync = &region.notices().sync;
            // Events before this engine first looked are an earlier
            // engine's (of this process) to report.
            let seen = *self
                .sync_seen
                .entry(region.name().to_string())
                .or_insert_with(|| sync.last_seq());
            for event in sync.events_after(seen) {
                let link = format!("{} → {}", region.name(), event.replica);
                let (what, outcome) = match event.change {
                    SyncChange::Suspended { why } => (
                        format!("zero loss suspended for writes {link}"),
                        Outcome::Failed(format!(
                            "{why}; writes are acknowledged without waiting for {} until it holds every write again",
                            event.replica
                        )),
                    ),
                    SyncChange::Resumed { suspended_for_ms } => (
                        format!("zero loss resumed for writes {link}"),
                        Outcome::Done(format!(
                            "{} holds every write again; it was suspended for {:.1} s",
                            event.replica,
                            suspended_for_ms as f64 / 1000.0
                        )),
                    ),
                };
                self.activity.note(what, outcome);
                self.sync_seen.insert(region.name().to_string(), event.seq);
                noted = true;
            }
        }
        if noted {
            self.activity_changed();
        }
    }

    /// The view of a zero-loss group's promise (`None` for another type).
    fn zero_loss_view(&self) -> Option<ZeroLossView> {
        let group = self.group.as_ref()?;
        let timeout = group.zero_loss_timeout()?;
        let mut view = ZeroLossView {
            timeout_s: timeout.as_secs_f64(),
            ..ZeroLossView::default()
        };
        for region in self.sync_regions() {
            for (replica, s) in region.notices().sync.suspended() {
                view.suspended.push(SuspendedLink {
                    home: region.name().to_string(),
                    replica,
                    since_us: s.since_us,
                    why: s.why,
                });
            }
        }
        if let Some(replicator) = &self.replicator {
            for flow in replicator.flows() {
                view.flows += 1;
                let base = branch_path(&flow.db, &flow.branch);
                if flow
                    .home
                    .notices()
                    .sync
                    .promised(base.as_ref(), flow.replica.name())
                {
                    view.promised += 1;
                }
            }
        }
        Some(view)
    }
}
