//! The engine's view, published where a client on any machine can read it:
//! `_lifeboat/status/engine.json` in a region whose lease this engine
//! holds (the first that takes it), rewritten every [`PUBLISH_EVERY`]. An engine that holds no lease
//! (a standby, or the app on a machine that runs no engine of the group)
//! reads it instead and shows it, marked stale once it stops changing.
//!
//! Only a region's lease holder writes its status object, so two engines
//! never overwrite each other's; a reader keeps the newest it finds.
//! Cost: one PUT per `PUBLISH_EVERY` for the holder (15 a minute, however
//! many regions it holds); one GET per region per `PUBLISH_EVERY` for each
//! engine that watches.

use std::time::Duration;

use object_store::path::Path;
use std::sync::Arc;

use object_store::{PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::control::lease::Holder;
use crate::error::{Error, Result};
use crate::region::Region;
use crate::region::objects::get_if_present;

use super::activity::ActivityEntry;
use super::failover::{FailoverView, StandbyView};
use super::group::GroupConfig;
use super::history::History;
use super::leases::LeaseView;
use super::recovery::{MoveView, RecoveryView};
use super::snapshot::{EngineState, FlowView, Snapshot};
use super::{Core, Internal};

/// Where every region keeps its lease holder's published view.
pub const STATUS_PATH: &str = "_lifeboat/status/engine.json";

/// How often the holder publishes, and a watcher reads.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(4);

/// A published view older than this is shown as stale: its engine stopped
/// publishing (its machine is gone, or it lost the region).
pub const STALE_AFTER: Duration = Duration::from_secs(15);

/// Where a view read through the holder's socket was read from.
const VIA_SOCKET: &str = "its local socket";

/// The per-database lag published: the last 15 minutes of the 50
/// databases that lagged most in them (the totals keep their hour).
pub const PUBLISHED_LAG_WINDOW_S: f64 = 900.0;
pub const PUBLISHED_LAG_SERIES: usize = 50;

/// Activity entries published (the newest).
pub const ACTIVITY_PUBLISHED: usize = 200;

/// The format of the object; a reader refuses a newer one.
pub const STATUS_FORMAT: u32 = 1;

/// What the holder publishes: what the app shows of a running engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub format: u32,
    pub holder: Holder,
    /// When it was written (the holder's clock, ms since the epoch).
    pub published_ms: u64,
    pub engine: EngineState,
    pub group: Option<GroupConfig>,
    pub flows: Vec<FlowView>,
    pub leases: Vec<LeaseView>,
    pub history: History,
    /// What replication costs (absent from an older engine's view).
    #[serde(default)]
    pub cost: crate::cost::CostView,
    pub activity: Vec<ActivityEntry>,
    pub failover: FailoverView,
    pub moving: MoveView,
    pub recovery: RecoveryView,
    pub drill: FailoverView,
    pub standby: StandbyView,
    /// Which helper engine copies which flows (absent when no engine
    /// shares the group's flows).
    #[serde(default)]
    pub shares: Option<crate::control::share::Shares>,
    /// Whether it shares the flows (`serve --share`): the helpers of an
    /// engine that does not stop copying.
    #[serde(default)]
    pub sharing: bool,
    /// Whether a zero-loss group's writes wait for the other region now.
    #[serde(default)]
    pub zero_loss: Option<super::sync::ZeroLossView>,
    /// Alerts firing and sent lately (its settings are its machine's).
    #[serde(default)]
    pub alerts: super::alerting::AlertsView,
}

impl Published {
    /// The holder's view as of `snapshot`.
    pub fn of(snapshot: &Snapshot, holder: Holder) -> Published {
        let skip = snapshot.activity.len().saturating_sub(ACTIVITY_PUBLISHED);
        Published {
            format: STATUS_FORMAT,
            holder,
            published_ms: crate::orchestrator::now_ms(),
            engine: snapshot.engine,
            group: snapshot.group.clone(),
            flows: (*snapshot.flows).clone(),
            leases: snapshot.leases.clone(),
            history: snapshot
                .history
                .published(PUBLISHED_LAG_WINDOW_S, PUBLISHED_LAG_SERIES),
            cost: (*snapshot.cost).clone(),
            activity: snapshot.activity.iter().skip(skip).cloned().collect(),
            failover: (*snapshot.failover).clone(),
            moving: (*snapshot.moving).clone(),
            recovery: (*snapshot.recovery).clone(),
            drill: (*snapshot.drill).clone(),
            standby: (*snapshot.standby).clone(),
            shares: snapshot.shares.clone(),
            sharing: snapshot.sharing,
            zero_loss: snapshot.zero_loss.clone(),
            alerts: (*snapshot.alerts).clone(),
        }
    }
}

/// Another engine's published view, as this one read it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteView {
    pub published: Published,
    /// The region it was read from.
    pub region: String,
}

impl RemoteView {
    /// Seconds since it was published, by this machine's clock.
    pub fn age_s(&self) -> f64 {
        let now = crate::orchestrator::now_ms();
        now.saturating_sub(self.published.published_ms) as f64 / 1000.0
    }

    pub fn is_stale(&self) -> bool {
        self.age_s() > STALE_AFTER.as_secs_f64()
    }

    /// `the engine on host (pid …) · published 2 s ago`, or stale.
    pub fn describe(&self) -> String {
        let who = self.published.holder.describe();
        let age = self.age_s();
        if self.is_stale() {
            format!(
                "stale: {who} last published {} ago (read in {}); it may be gone",
                human_age(age),
                self.region
            )
        } else {
            format!("{who}; published {} ago", human_age(age))
        }
    }
}

fn human_age(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A remote view ready to lay over this engine's snapshot: its parts
/// shared, so that publishing four times a second copies no history.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub view: Arc<RemoteView>,
    history: Arc<History>,
    flows: Arc<Vec<FlowView>>,
    cost: Arc<crate::cost::CostView>,
    failover: Arc<FailoverView>,
    moving: Arc<MoveView>,
    recovery: Arc<RecoveryView>,
    drill: Arc<FailoverView>,
    standby: Arc<StandbyView>,
}

impl Overlay {
    pub fn of(view: RemoteView) -> Overlay {
        let p = &view.published;
        Overlay {
            history: Arc::new(p.history.clone()),
            flows: Arc::new(p.flows.clone()),
            cost: Arc::new(p.cost.clone()),
            failover: Arc::new(p.failover.clone()),
            moving: Arc::new(p.moving.clone()),
            recovery: Arc::new(p.recovery.clone()),
            drill: Arc::new(p.drill.clone()),
            standby: Arc::new(p.standby.clone()),
            view: Arc::new(view),
        }
    }

    /// Shows the remote engine's flows, history, operations and activity in
    /// `snapshot` (this engine's own activity stays, merged in time order).
    pub fn apply(&self, snapshot: &mut Snapshot) {
        let p = &self.view.published;
        snapshot.engine = p.engine;
        if snapshot.group.is_none() {
            snapshot.group = p.group.clone();
        }
        snapshot.flows = Arc::clone(&self.flows);
        snapshot.history = Arc::clone(&self.history);
        snapshot.cost = Arc::clone(&self.cost);
        snapshot.failover = Arc::clone(&self.failover);
        snapshot.moving = Arc::clone(&self.moving);
        snapshot.recovery = Arc::clone(&self.recovery);
        snapshot.drill = Arc::clone(&self.drill);
        snapshot.standby = Arc::clone(&self.standby);
        snapshot.shares = p.shares.clone();
        snapshot.zero_loss = p.zero_loss.clone();
        // What fired is the group engine's; where it goes on this desktop
        // is this machine's settings.
        let local = Arc::clone(&snapshot.alerts);
        snapshot.alerts = Arc::new(super::alerting::AlertsView {
            settings: local.settings.clone(),
            settings_error: local.settings_error.clone(),
            ..p.alerts.clone()
        });
        let mut activity: Vec<ActivityEntry> = p.activity.clone();
        for entry in snapshot.activity.iter() {
            if !activity
                .iter()
                .any(|e| e.request == entry.request && e.at_us == entry.at_us)
            {
                activity.push(entry.clone());
            }
        }
        activity.sort_by_key(|e| e.at_us);
        snapshot.activity = Arc::new(activity);
        snapshot.remote = Some(Arc::clone(&self.view));
    }
}

/// Writes `bytes` as the published view in the first of `regions` that
/// takes it (readers read every region and keep the newest, so one copy
/// serves; the next region takes over while one does not answer): one PUT
/// per publish, however many regions this engine holds.
async fn write(regions: &[Region], bytes: Vec<u8>) -> Result<usize> {
    let path = Path::from(STATUS_PATH);
    let payload = PutPayload::from(bytes);
    let mut first_error = None;
    for region in regions {
        let store = region.store();
        let put = tokio::time::timeout(
            PUBLISH_EVERY,
            store.put_opts(&path, payload.clone(), PutOptions::default()),
        )
        .await;
        match put {
            Ok(Ok(_)) => return Ok(1),
            Ok(Err(e)) => {
                first_error.get_or_insert(Error::store(region.name(), "writing the status", &e));
            }
            Err(_) => {
                first_error.get_or_insert(Error::Failed(format!(
                    "region {} did not take the status within {} s",
                    region.name(),
                    PUBLISH_EVERY.as_secs()
                )));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// Takes the published view away from `regions` (an engine stopping on
/// purpose: a reader then looks at the replicas themselves).
pub async fn withdraw(regions: &[Region]) {
    let path = Path::from(STATUS_PATH);
    for region in regions {
        let store = region.store();
        let deleted = tokio::time::timeout(
            PUBLISH_EVERY,
            crate::region::objects::delete_if_present(store.as_ref(), &path),
        )
        .await;
        if !matches!(deleted, Ok(Ok(()))) {
            tracing::warn!(region = %region.name(), "the published status could not be taken away; it goes stale");
        }
    }
}

/// The newest published view among `regions` (one GET each); `None` when
/// no engine ever published there.
pub async fn read(regions: &[Region]) -> Result<Option<RemoteView>> {
    let path = Path::from(STATUS_PATH);
    let reads = futures::future::join_all(regions.iter().map(|region| {
        let path = path.clone();
        async move {
            let store = region.store();
            let bytes = tokio::time::timeout(PUBLISH_EVERY, get_if_present(store.as_ref(), &path))
                .await
                .map_err(|_| Error::Failed(format!("region {} did not answer", region.name())))?
                .map_err(|e| Error::store(region.name(), "reading the status", &e))?;
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            let published: Published = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Failed(format!(
                    "{STATUS_PATH} in region {} is not a status this version reads: {e}",
                    region.name()
                ))
            })?;
            Ok::<_, Error>(Some(RemoteView {
                published,
                region: region.name().to_string(),
            }))
        }
    }))
    .await;
    let mut newest: Option<RemoteView> = None;
    let mut error = None;
    for read in reads {
        match read {
            Ok(Some(view)) => {
                if newest
                    .as_ref()
                    .is_none_or(|n| n.published.published_ms < view.published.published_ms)
                {
                    newest = Some(view);
                }
            }
            Ok(None) => {}
            Err(e) => error = Some(e),
        }
    }
    match (newest, error) {
        (None, Some(e)) => Err(e),
        (newest, _) => Ok(newest),
    }
}

impl Core {
    /// Every `PUBLISH_EVERY`: the holder of a lease publishes there; an
    /// engine that holds none reads what the holder published.
    pub(super) fn exchange_status(&mut self) {
        if self.status_busy {
            return;
        }
        let leased = self.held_opened();
        if leased.is_empty() {
            // A fresh view through the holder's socket needs no store read.
            let nearby = self
                .remote
                .as_ref()
                .is_some_and(|o| o.view.region == VIA_SOCKET && !o.view.is_stale());
            if nearby {
                return;
            }
            self.status_busy = true;
            let regions: Vec<Region> = self.opened.values().cloned().collect();
            return self.spawn(async move {
                Internal::StatusRead(read(&regions).await.map(|v| v.map(Box::new)))
            });
        }
        let Some(mut holder) = self.holder.clone() else {
            return;
        };
        // Since when it holds: its oldest held lease's claim.
        holder.since_ms = self
            .leases
            .values()
            .filter_map(|l| match l {
                crate::control::lease::LeaseState::Held { since_ms } => Some(*since_ms),
                _ => None,
            })
            .min()
            .unwrap_or(0);
        self.status_busy = true;
        self.remote = None;
        let snapshot = self.snapshot_tx.borrow().clone();
        self.spawn(async move {
            let result = async {
                let published = Published::of(&snapshot, holder);
                let bytes = serde_json::to_vec(&published)
                    .map_err(|e| Error::Failed(format!("cannot encode the status: {e}")))?;
                write(&leased, bytes).await
            }
            .await;
            Internal::StatusWritten(result)
        });
    }

    /// Every second, while another engine on this machine runs the group:
    /// its view through its socket (no store request, and fresh).
    pub(super) fn read_status_nearby(&mut self) {
        #[cfg(unix)]
        {
            if self.status_busy || self.leases.values().any(|l| l.is_held()) {
                return;
            }
            let Some(socket) = self.other_holder(false).and_then(|h| h.local_socket()) else {
                return;
            };
            self.status_busy = true;
            self.spawn(async move {
                let read = super::socket::status(&socket).await.map(|published| {
                    Some(Box::new(RemoteView {
                        published,
                        region: VIA_SOCKET.into(),
                    }))
                });
                Internal::StatusRead(read)
            });
        }
    }

    pub(super) fn status_read(&mut self, result: Result<Option<Box<RemoteView>>>) {
        self.status_busy = false;
        match result {
            // Ours, read back after we let go of the lease: not another engine.
            Ok(Some(view))
                if self
                    .holder
                    .as_ref()
                    .is_some_and(|h| h.instance == view.published.holder.instance) => {}
            Ok(view) => self.remote = view.map(|v| Overlay::of(*v)),
            Err(e) => tracing::debug!("reading the published status: {e}"),
        }
    }

    pub(super) fn status_written(&mut self, result: Result<usize>) {
        self.status_busy = false;
        if let Err(e) = result {
            tracing::warn!("publishing the status: {e}");
        }
    }
}
