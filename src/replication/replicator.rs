//! The replicator: one follow loop per flow on the tokio runtime, sharing
//! one bound on copies in flight, each publishing its status on a watch
//! channel so a GUI or CLI reads the latest without waiting on I/O.
//!
//! A loop looks at its home once per look interval (set from the RPO
//! target), at once when a writer of this process writes a file there, and
//! when a region is unreachable it shows Paused and
//! retries with exponential back-off, resuming where it stopped (every
//! successful copy is recorded as it lands, so none is repeated).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::copier::{BranchCopier, DelaySamples, Tick};
use super::pins::Pins;
use super::status::FlowStatus;
use super::{Flow, FlowKey, Pace, ReplicationOptions, permits};
use crate::error::Result;

/// One running flow.
struct Running {
    flow: Flow,
    status: watch::Receiver<FlowStatus>,
    delays_ms: DelaySamples,
    /// Set to stop this flow's loop (after its current copy).
    stop: watch::Sender<bool>,
    /// Set while a person has paused this flow.
    hold: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A flow this replicator knows and does not copy: another engine sharing
/// the group copies it, or none does yet (docs/sharing.md).
struct Away {
    flow: Flow,
    /// What the engine copying it last reported, with `copied_by` set.
    status: FlowStatus,
}

/// Flows told to stop; `wait` returns once each has saved its cursor.
pub struct Stopping(Vec<JoinHandle<()>>);

impl Stopping {
    pub async fn wait(self) {
        for task in self.0 {
            if let Err(e) = task.await {
                tracing::warn!("a flow ended badly: {e}");
            }
        }
    }
}

/// Many flows replicating at once until stopped; flows can be added,
/// paused, resumed and removed while the others run.
pub struct Replicator {
    opts: ReplicationOptions,
    pins: Arc<dyn Pins>,
    permits: Arc<tokio::sync::Semaphore>,
    pace: Arc<Pace>,
    running: Vec<Running>,
    away: Vec<Away>,
    /// Flows handed away that are still stopping here.
    parting: Vec<(FlowKey, JoinHandle<()>)>,
    /// Databases a person paused: their flows start paused here.
    held: BTreeSet<String>,
}

impl Replicator {
    /// Starts a follow loop for every flow.
    pub fn start(flows: Vec<Flow>, opts: ReplicationOptions, pins: Arc<dyn Pins>) -> Replicator {
        let permits = permits(&opts);
        let pace = Pace::new(&opts);
        let mut replicator = Replicator {
            opts,
            pins,
            permits,
            pace,
            running: Vec::new(),
            away: Vec::new(),
            parting: Vec::new(),
            held: BTreeSet::new(),
        };
        for flow in flows {
            replicator.add(flow);
        }
        replicator
    }

    /// Starts a follow loop for `flow`, unless one runs already; returns
    /// whether it was added.
    pub fn add(&mut self, flow: Flow) -> bool {
        if self.position(&flow).is_some() {
            return false;
        }
        let key = flow.key();
        self.away.retain(|a| !a.flow.is(&key));
        let (tx, rx) = watch::channel(FlowStatus::of(&flow));
        let (stop, stop_rx) = watch::channel(false);
        let (hold, hold_rx) = watch::channel(false);
        let delays_ms = DelaySamples::default();
        let copier = BranchCopier::paced(
            flow.clone(),
            self.opts.clone(),
            Arc::clone(&self.pins),
            Arc::clone(&self.permits),
            tx,
            Arc::clone(&delays_ms),
            Arc::clone(&self.pace),
        );
        hold.send_replace(self.held.contains(&flow.db));
        let task = tokio::spawn(follow(copier, stop_rx, hold_rx));
        self.running.push(Running {
            flow,
            status: rx,
            delays_ms,
            stop,
            hold,
            task,
        });
        true
    }

    /// Knows `flow` without copying it (an engine sharing the group's
    /// flows places it: here with [`Replicator::add`], or at a helper);
    /// returns whether it was new.
    pub fn know(&mut self, flow: Flow) -> bool {
        let key = flow.key();
        if self.position(&flow).is_some() || self.away.iter().any(|a| a.flow.is(&key)) {
            return false;
        }
        let status = FlowStatus::of(&flow);
        self.away.push(Away { flow, status });
        true
    }

    /// Stops copying the flow `key` here and keeps knowing it (another
    /// engine is to copy it once it stopped: see [`Replicator::here`]).
    pub fn hand_away(&mut self, key: &FlowKey) {
        let Some(at) = self.running.iter().position(|r| r.flow.is(key)) else {
            return;
        };
        let running = self.running.remove(at);
        running.stop.send_replace(true);
        forget_hold(&running.flow);
        let status = running.status.borrow().clone();
        self.parting.push((key.clone(), running.task));
        self.away.push(Away {
            flow: running.flow,
            status,
        });
    }

    /// Starts copying here the flow `key` it knows; returns whether it did.
    pub fn bring_here(&mut self, key: &FlowKey) -> bool {
        match self.away.iter().position(|a| a.flow.is(key)) {
            Some(at) => {
                let away = self.away.remove(at);
                self.add(away.flow)
            }
            None => false,
        }
    }

    /// The flows it knows and does not copy.
    pub fn away_keys(&self) -> Vec<FlowKey> {
        self.away.iter().map(|a| a.flow.key()).collect()
    }

    /// The flows copied here, or still stopping here.
    pub fn here(&mut self) -> BTreeSet<FlowKey> {
        self.parting.retain(|(_, task)| !task.is_finished());
        self.running
            .iter()
            .map(|r| r.flow.key())
            .chain(self.parting.iter().map(|(key, _)| key.clone()))
            .collect()
    }

    /// What another engine reports of a flow this one knows and does not
    /// copy (`by`: who copies it, `None` while nobody does).
    pub fn set_away(&mut self, key: &FlowKey, status: Option<FlowStatus>, by: Option<String>) {
        if let Some(away) = self.away.iter_mut().find(|a| a.flow.is(key)) {
            if let Some(status) = status {
                away.status = status;
            }
            away.status.copied_by = by;
        }
    }

    fn position(&self, flow: &Flow) -> Option<usize> {
        let key = flow.key();
        self.running.iter().position(|r| r.flow.is(&key))
    }

    /// Looks at quiet homes often enough to keep `target`, and counts a
    /// replica in sync within it, from now on (every flow, at its next wait).
    pub fn set_rpo_target(&self, target: Duration) {
        self.pace.set_rpo_target(target, &self.opts);
    }

    /// What the homes' writers in this process wait for from now on (see
    /// [`super::Pace::set_promise`]); each flow takes it up at its next pass.
    pub fn set_promise(&self, zero_loss: Option<Duration>, guard: bool) {
        self.pace.set_promise(zero_loss, guard);
    }

    /// How long a home keeps a file a replica still needs, from now on
    /// (see `storage::gc_hold`; zero: nothing is kept).
    pub fn set_gc_hold(&self, bound: Duration) {
        self.pace.set_gc_hold(bound);
    }

    /// Whether the region pair copies the SSTs by itself from now on (see
    /// [`ReplicationOptions::data_by_store`]).
    pub fn set_data_by_store(&self, by_store: bool) {
        self.pace.set_data_by_store(by_store);
    }

    /// The flows it knows: those running, in the order they were added,
    /// then those copied elsewhere.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.running
            .iter()
            .map(|r| &r.flow)
            .chain(self.away.iter().map(|a| &a.flow))
    }

    /// Pauses (`held`) or resumes every flow of database `db`; returns how
    /// many flows it touched.
    pub fn hold(&mut self, db: &str, held: bool) -> usize {
        let mut touched = 0;
        for running in self.running.iter().filter(|r| r.flow.db == db) {
            running.hold.send_replace(held);
            touched += 1;
        }
        touched += self.away.iter().filter(|a| a.flow.db == db).count();
        if touched > 0 && held {
            self.held.insert(db.to_string());
        } else {
            self.held.remove(db);
        }
        touched
    }

    /// Whether database `db` has a flow that a person paused.
    pub fn is_held(&self, db: &str) -> bool {
        self.held.contains(db)
    }

    /// Stops and forgets the flows of `db`/`branch` (their cursors are
    /// saved unless the branch's home moved); they end after their current
    /// copy, which the returned handle waits for.
    #[must_use = "the flows stop after their current copy: wait for it or spawn the wait"]
    pub fn remove_branch(&mut self, db: &str, branch: &str) -> Stopping {
        self.take(|f| f.db == db && f.branch == branch)
    }

    /// Stops and forgets every flow of database `db` (its cursor is saved).
    #[must_use = "the flows stop after their current copy: wait for it or spawn the wait"]
    pub fn remove(&mut self, db: &str) -> Stopping {
        self.take(|f| f.db == db)
    }

    /// Stops and forgets the flow `key`.
    #[must_use = "the flow stops after its current copy: wait for it or spawn the wait"]
    pub fn remove_flow(&mut self, key: &FlowKey) -> Stopping {
        self.take(|f| f.is(key))
    }

    /// Stops and forgets every flow that copies into region `replica`.
    #[must_use = "the flows stop after their current copy: wait for it or spawn the wait"]
    pub fn remove_into(&mut self, replica: &str) -> Stopping {
        self.take(|f| f.replica.name() == replica)
    }

    fn take(&mut self, gone: impl Fn(&Flow) -> bool) -> Stopping {
        self.away.retain(|a| !gone(&a.flow));
        let (gone, kept): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| gone(&r.flow));
        self.running = kept;
        for running in &gone {
            running.stop.send_replace(true);
            forget_hold(&running.flow);
        }
        Stopping(gone.into_iter().map(|r| r.task).collect())
    }

    /// The latest status of every flow, with lags as of now.
    pub fn statuses(&self) -> Vec<FlowStatus> {
        let in_sync = self.pace.in_sync_lag().as_secs_f64();
        self.running
            .iter()
            .map(|r| r.status.borrow().refreshed(in_sync))
            .chain(self.away.iter().map(|a| a.status.refreshed(in_sync)))
            .collect()
    }

    /// Waits until every flow's status satisfies `ready`, or `timeout`.
    /// Returns whether they all did.
    pub async fn wait_until(&self, timeout: Duration, ready: impl Fn(&FlowStatus) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.statuses().iter().all(&ready) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The per-WAL replication delays recorded since the last call, in
    /// milliseconds, ascending.
    pub fn drain_sorted_wal_delays_ms(&self) -> Vec<f64> {
        let mut delays: Vec<f64> = self
            .drain_wal_delays_ms()
            .into_iter()
            .map(f64::from)
            .collect();
        delays.sort_by(f64::total_cmp);
        delays
    }

    /// Takes the per-WAL replication delays recorded since the last call.
    pub fn drain_wal_delays_ms(&self) -> Vec<u32> {
        self.running
            .iter()
            .flat_map(|r| {
                std::mem::take(&mut *r.delays_ms.lock().unwrap_or_else(|p| p.into_inner()))
            })
            .collect()
    }

    /// Stops every loop after its current copy and saves the cursors.
    pub async fn stop(self) -> Vec<FlowStatus> {
        for running in &self.running {
            running.stop.send_replace(true);
        }
        let statuses = self.statuses();
        let tasks = self.running.into_iter().map(|r| r.task);
        for task in tasks.chain(self.parting.into_iter().map(|(_, task)| task)) {
            if let Err(e) = task.await {
                tracing::warn!("a flow ended badly: {e}");
            }
        }
        statuses
    }

    /// Kills every loop where it stands, as a crash would (tests).
    pub fn abort(self) {
        for running in self.running {
            running.task.abort();
        }
        for (_, task) in self.parting {
            task.abort();
        }
    }
}

/// The beat quiet loops wake on (see [`on_the_beat`]).
const BEAT: Duration = Duration::from_millis(25);

/// When a loop that waits `wait` wakes: a short wait (copying goes on) at
/// once, a quiet one at the next beat after it. A thousand quiet loops
/// each looking once a second then wake together forty times a second,
/// not a thousand times spread over it: each wake of the runtime's
/// workers is a futex and an epoll round trip, a tenth of a quiet
/// engine's time on S3. A look comes at most a beat late.
fn on_the_beat(wait: Duration) -> tokio::time::Instant {
    static START: OnceLock<tokio::time::Instant> = OnceLock::new();
    let now = tokio::time::Instant::now();
    let due = now + wait;
    if wait < BEAT * 4 {
        return due;
    }
    let start = *START.get_or_init(|| now);
    // The grid is process-wide but a runtime's clock is its own (a paused
    // test clock may run ahead): a grid that starts after `due` would
    // hold this loop until then, so such a wait ends when it is due.
    let Some(since) = due.checked_duration_since(start) else {
        return due;
    };
    let beat = BEAT.as_nanos();
    let beats = since.as_nanos().div_ceil(beat);
    start + Duration::from_nanos((beats * beat).min(u64::MAX as u128) as u64)
}

/// One flow's loop: tick, wait until the next look is due or a writer of
/// this process writes a file at the home (with back-off while a region
/// is down), until stopped. While held, it only waits to be resumed or
/// stopped.
async fn follow(
    mut copier: BranchCopier,
    mut stop: watch::Receiver<bool>,
    mut hold: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        if copier.moved() {
            // A switchover moved the home: what was the replica is written
            // now. Copy nothing, and leave no cursor there.
            copier.moved_away();
            let _ = stop.changed().await;
            return;
        }
        if *hold.borrow_and_update() {
            copier.held();
            tokio::select! {
                changed = hold.changed() => if changed.is_err() { break },
                _ = stop.changed() => break,
            }
            continue;
        }
        let ticked = tokio::select! {
            ticked = copier.tick() => ticked,
            _ = stop.changed() => break,
        };
        // While a region is down, notices do not cut the back-off short.
        let (wait, paused) = match ticked {
            Ok(tick) => {
                backoff = Duration::from_millis(250);
                if tick == Tick::Active {
                    tracing::debug!(flow = %copier.flow().label(), "{}", copier.status().line());
                }
                (copier.next_wait(tick), false)
            }
            Err(err) => {
                tracing::warn!(flow = %copier.flow().label(), "paused: {err}");
                copier.paused(&err);
                let wait = backoff;
                backoff = (backoff * 2).min(copier.max_backoff());
                (wait, true)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(on_the_beat(wait)) => {}
            _ = stop.changed() => break,
            _ = hold.changed() => {}
            _ = copier.wait_heard(), if !paused => {}
        }
    }
    if let Err(err) = copier.save_cursor().await {
        tracing::warn!(flow = %copier.flow().label(), "could not save the cursor on stop: {err}");
    }
}

/// Copies every flow until its replica holds the home's state as of the
/// start (`replicate --once`), all flows at once.
pub async fn once(
    flows: Vec<Flow>,
    opts: ReplicationOptions,
    pins: Arc<dyn Pins>,
) -> Vec<(Flow, Result<FlowStatus>)> {
    let permits = permits(&opts);
    let runs = flows.into_iter().map(|flow| {
        let mut copier = BranchCopier::sharing(
            flow.clone(),
            opts.clone(),
            Arc::clone(&pins),
            Arc::clone(&permits),
        );
        async move {
            let result = copier.run_once().await;
            (flow, result)
        }
    });
    futures::future::join_all(runs).await
}

/// A flow no longer copied here keeps nothing at its home through this
/// process's writers (see `storage::gc_hold`).
fn forget_hold(flow: &Flow) {
    flow.home.notices().holds.forget(
        crate::storage::branch_path(&flow.db, &flow.branch).as_ref(),
        flow.replica.name(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{Region, RegionSpec};
    use crate::replication::pins::NoPins;

    fn flow(db: &str) -> Flow {
        let open = |name: &str| {
            Region::open(&RegionSpec::new(
                name,
                &format!("memory://replicator-{db}-{name}"),
            ))
            .expect("region")
        };
        Flow::new(db, "main", &open("a"), &open("b"))
    }

    /// A flow it knows and does not copy is listed and shown, but copied
    /// only once brought here; handed away, it counts as here until its
    /// loop has stopped; a pause set while it was away holds it here.
    #[tokio::test]
    async fn known_flows_run_only_here_and_stop_before_they_leave() {
        let mut replicator =
            Replicator::start(Vec::new(), ReplicationOptions::default(), Arc::new(NoPins));
        let (one, two) = (flow("one"), flow("two"));
        assert!(replicator.know(one.clone()));
        assert!(!replicator.know(one.clone()), "known once");
        assert!(replicator.add(two.clone()));
        assert_eq!(replicator.flows().count(), 2);
        assert_eq!(replicator.here(), [two.key()].into());
        assert_eq!(replicator.away_keys(), vec![one.key()]);

        replicator.set_away(&one.key(), None, Some("host (pid 7)".into()));
        let shown = replicator.statuses();
        let by = |db: &str| {
            shown
                .iter()
                .find(|s| s.db == db)
                .and_then(|s| s.copied_by.clone())
        };
        assert_eq!(by("one").as_deref(), Some("host (pid 7)"));
        assert_eq!(by("two"), None);

        assert_eq!(replicator.hold("one", true), 1);
        assert!(replicator.is_held("one"));
        assert!(replicator.bring_here(&one.key()));
        assert!(!replicator.bring_here(&one.key()), "already here");
        assert_eq!(replicator.here().len(), 2);
        let held = replicator
            .wait_until(Duration::from_secs(10), |s| {
                s.db != "one" || s.state == crate::replication::FlowState::Held
            })
            .await;
        assert!(held, "brought here paused: {:?}", replicator.statuses());

        replicator.hand_away(&two.key());
        assert_eq!(replicator.away_keys(), vec![two.key()]);
        assert!(
            replicator.here().contains(&two.key()),
            "here until its loop has stopped"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while replicator.here().contains(&two.key()) {
            assert!(tokio::time::Instant::now() < deadline, "never stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replicator.remove_flow(&two.key()).wait().await;
        assert_eq!(replicator.flows().count(), 1, "removed while away");
        replicator.stop().await;
    }
}
