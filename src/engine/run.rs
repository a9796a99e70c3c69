//! The engine's loop: commands and internal reports in, one at a time;
//! the dispatch of each to the file of its concern; how a request ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::control;
use crate::error::{Error, Result};
use crate::region;
use crate::storage::DbLocation;
use crate::workload::acks::AckLog;
use crate::workload::now_us;

use super::activity::{self, Outcome};
use super::group::ReplicationKind;
use super::leases::Route;
use super::snapshot::EngineState;
use super::{Command, Core, Internal, RequestId, recovery};

impl Core {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<(RequestId, Command, Option<String>)>,
    ) {
        self.open_regions();
        self.resume_group();
        self.keep_leases();
        self.load_kept_history().await;
        self.state = EngineState::Idle;
        self.publish();
        let mut publish = tokio::time::interval(self.opts.publish_every);
        let mut sample = tokio::time::interval(self.opts.sample_every);
        let mut list = tokio::time::interval(self.opts.list_every);
        let mut health = tokio::time::interval(self.opts.health_every);
        let mut discover = tokio::time::interval(self.opts.discover_every);
        let mut control = tokio::time::interval(self.opts.control_every);
        let mut checkpoint = tokio::time::interval(self.opts.checkpoint_every);
        let mut status = tokio::time::interval(self.opts.status_every);
        let mut share = tokio::time::interval(crate::control::share::BEAT_EVERY);
        for timer in [
            &mut share,
            &mut status,
            &mut checkpoint,
            &mut publish,
            &mut sample,
            &mut list,
            &mut health,
            &mut discover,
            &mut control,
        ] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some((_, Command::Shutdown, _)) | None => break,
                    Some((request, command, who)) => {
                        let who = who.unwrap_or_else(|| self.who.clone());
                        self.activity.begin(request, &who, command.describe());
                        self.activity_changed();
                        self.route(request, command, who);
                        self.publish();
                    }
                },
                Some(internal) = self.internal_rx.recv() => {
                    self.absorb(internal);
                    self.publish();
                }
                _ = publish.tick() => self.publish(),
                _ = sample.tick() => {
                    let statuses = self.sample();
                    self.alert_tick(&statuses);
                    self.drill_by_schedule();
                    self.look_at_sync();
                    self.fence_helper();
                    self.read_status_nearby();
                    self.reap_demo();
                    self.reap_workspaces();
                }
                _ = control.tick() => self.read_control(),
                _ = checkpoint.tick() => self.checkpoint_live_branches(),
                _ = status.tick() => self.exchange_status(),
                _ = list.tick() => self.look_at_names(),
                _ = health.tick() => self.check_regions(false),
                _ = discover.tick() => self.discover(),
                _ = share.tick(), if self.opts.share_flows => self.share_tick(),
            }
        }
        self.state = EngineState::Stopping;
        self.publish();
        if let Err(e) = super::demo::stop_runs(self.stop_demo(None)).await {
            tracing::warn!("stopping: {e}");
        }
        let drills = std::mem::take(&mut self.drill_workspaces);
        for (name, (ws, _)) in std::mem::take(&mut self.standby) {
            if let Ok(ws) = Arc::try_unwrap(ws)
                && let Err(e) = ws.stop().await
            {
                tracing::warn!(workspace = %name, "stopping: {e}");
            }
        }
        for (name, ws) in std::mem::take(&mut self.workspaces)
            .into_iter()
            .chain(drills)
        {
            if let Err(e) = ws.stop().await {
                tracing::warn!(workspace = %name, "stopping: {e}");
            }
        }
        if let Some(replicator) = self.replicator.take() {
            replicator.stop().await;
        }
        self.leave_share().await;
        let leased = self.held_opened();
        // A status write in flight lands first, then the status goes.
        let deadline = tokio::time::Instant::now() + super::published::PUBLISH_EVERY;
        while self.status_busy {
            match tokio::time::timeout_at(deadline, self.internal_rx.recv()).await {
                Ok(Some(Internal::StatusWritten(_) | Internal::StatusRead(_))) => {
                    self.status_busy = false
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        super::published::withdraw(&leased).await;
        // Last: nothing of this engine writes any more, so a standby may
        // take over at once.
        for (_, lease) in std::mem::take(&mut self.lease_tasks) {
            lease.release().await;
        }
        // Nobody reaches this engine any more.
        if let Some(socket) = &self.socket
            && let Err(e) = std::fs::remove_file(socket)
        {
            tracing::debug!("removing {}: {e}", socket.display());
        }
        self.publish();
    }

    pub(super) fn finish(&mut self, request: RequestId, outcome: Outcome) {
        if let Outcome::Failed(message) = &outcome {
            // The caller shows it; the log file keeps it.
            tracing::info!("request {request} failed: {message}");
        }
        self.activity.finish(request, outcome);
        self.activity_changed();
    }

    pub(super) fn fail(&mut self, request: RequestId, err: impl std::fmt::Display) {
        self.finish(
            request,
            Outcome::Failed(crate::error::one_line(&err.to_string())),
        );
    }

    pub(super) fn activity_changed(&mut self) {
        self.activity_view = Arc::new(self.activity.entries());
    }

    /// Runs `stop` off the loop; a failure is noted in the activity log as
    /// `what` (a stop waits on a store: a writer's last flush, a copier's
    /// cursor).
    pub(super) fn stop_off_loop(
        &self,
        what: String,
        stop: impl std::future::Future<Output = Result<()>> + Send + 'static,
    ) {
        self.spawn(async move {
            let outcome = match stop.await {
                Ok(()) => None,
                Err(e) => Some(Outcome::Failed(crate::error::one_line(&e.to_string()))),
            };
            Internal::Noted { what, outcome }
        });
    }

    /// The Dashboard's history as the samples kept on disk left it (the
    /// last hour), read on the blocking pool before the first sample: never
    /// on the thread that started the engine (the app's UI thread).
    async fn load_kept_history(&mut self) {
        let dir = crate::metrics::samples::dir(&self.home.data_dir);
        let now_s = now_us() as f64 / 1e6;
        match tokio::task::spawn_blocking(move || super::History::kept(&dir, now_s)).await {
            Ok(kept) => self.history = Arc::new(kept),
            Err(e) => tracing::warn!("reading the Dashboard's kept samples stopped: {e}"),
        }
    }

    /// Writes files (an export, a report, settings) off the loop; its
    /// message ends `request`.
    pub(super) fn export(
        &self,
        request: RequestId,
        write: impl FnOnce() -> Result<String> + Send + 'static,
    ) {
        self.spawn(async move {
            let result = tokio::task::spawn_blocking(write)
                .await
                .unwrap_or_else(|e| Err(Error::Failed(format!("the export stopped: {e}"))));
            Internal::Finished {
                request,
                outcome: outcome(result),
                relist: false,
            }
        });
    }

    /// Spawns work that reports back with an `Internal`.
    pub(super) fn spawn(&self, work: impl std::future::Future<Output = Internal> + Send + 'static) {
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(work.await);
        });
    }

    /// Runs `command` here, or sends it to the engine that runs the group.
    fn route(&mut self, request: RequestId, command: Command, who: String) {
        match self.route_of(&command) {
            Route::Here => self.handle(request, command),
            Route::Refuse(e) => self.fail(request, e),
            #[cfg(unix)]
            Route::Forward(socket) => self.spawn(async move {
                let outcome = match super::socket::run(&socket, command, &who).await {
                    Ok((outcome, _)) => outcome,
                    Err(e) => Outcome::Failed(crate::error::one_line(&e.to_string())),
                };
                Internal::Finished {
                    request,
                    outcome,
                    relist: true,
                }
            }),
            #[cfg(not(unix))]
            Route::Forward(_) => self.fail(request, "no local socket on this platform"),
        }
    }

    pub(super) fn handle(&mut self, request: RequestId, command: Command) {
        match command {
            Command::ConfigureReplication {
                secondary,
                databases,
                kind,
                rpo_target_s,
                data,
                writes,
            } => self.configure(
                request,
                secondary,
                databases,
                kind,
                (rpo_target_s, writes),
                data,
            ),
            Command::StopReplication => self.stop_replication(request),
            Command::Pause { db } => self.hold(request, &db, true),
            Command::Resume { db } => self.hold(request, &db, false),
            Command::SetRpoTarget { seconds } => {
                if !(seconds.is_finite() && seconds > 0.0) {
                    return self.fail(
                        request,
                        format!("an RPO target of {seconds} s makes no sense; give a number of seconds above 0"),
                    );
                }
                let Some(group) = self.group.as_mut() else {
                    return self.fail(request, "configure replication first");
                };
                group.rpo_target_s = seconds;
                self.save_group(request, format!("RPO target is {seconds} s"));
            }
            Command::ReportMonth { month } => self.report_month(request, month),
            Command::SetAlerts { settings } => self.set_alerts(request, settings),
            Command::TestAlerts { sink } => self.test_alerts(request, sink),
            Command::SetDrillSchedule { schedule, smoke } => {
                let Some(group) = self.group.as_mut() else {
                    return self.fail(request, "configure replication first");
                };
                let said = match &schedule {
                    Some(s) => format!("the group drills by itself {}", s.describe()),
                    None => "the group drills only when asked".to_string(),
                };
                group.drill_schedule = schedule;
                if let Some(smoke) = smoke {
                    group.smoke = smoke;
                }
                self.save_group(request, said);
            }
            Command::CreateDatabase { region, name } => {
                if let Err(e) = region::validate_name("database", &name) {
                    return self.fail(request, e);
                }
                let region = match self.region(&region) {
                    Ok(r) => r,
                    Err(e) => return self.fail(request, e),
                };
                self.spawn(async move {
                    let result = async {
                        let info = DbLocation::in_region(&region, &name)?.create().await?;
                        Ok::<_, Error>(format!(
                            "created {name} in {} (writer epoch {})",
                            region.name(),
                            info.writer_epoch
                        ))
                    }
                    .await;
                    Internal::Finished {
                        request,
                        outcome: outcome(result),
                        relist: true,
                    }
                });
            }
            Command::DeleteDatabase {
                region,
                name,
                typed_name,
            } => self.delete_database(request, region, name, typed_name),
            Command::SaveRegion { replacing, spec } => self.save_region(request, replacing, spec),
            Command::RemoveRegion { name } => self.remove_region(request, &name),
            Command::CheckRegions => {
                self.check_regions(true);
                self.finish(request, Outcome::Done("health check started".into()));
            }
            Command::RefreshDatabases => {
                self.list_databases();
                self.finish(request, Outcome::Done("listing started".into()));
            }
            Command::StartDemo => self.start_demo(request),
            Command::StartWorkload { db } => self.start_workload(request, db),
            Command::StopWorkload { db } => self.stop_workload(request, Some(db)),
            Command::StopDemo => self.stop_workload(request, None),
            Command::ExportActivity { path } => {
                let entries = self.activity.entries();
                self.export(request, move || {
                    activity::export_csv(&entries, &path)
                        .map(|n| format!("{n} entries written to {}", path.display()))
                });
            }
            Command::Control { change } => self.record_control(request, change),
            Command::StartWorkspace {
                name,
                region,
                bind,
                port,
            } => self.start_workspace(request, name, region, bind, port),
            Command::StopWorkspace { name } => self.stop_workspace(request, &name),
            Command::PreviewFailover { scope, cut } => self.preview_failover(request, scope, cut),
            Command::Drill {
                ttl_s,
                smoke,
                scope,
                port,
                cut,
            } => self.run_drill(request, ttl_s, smoke, (scope, cut), port),
            Command::Restore {
                db,
                region,
                at_ms,
                name,
                from,
            } => self.restore(request, db, region, at_ms, name, from),
            Command::DeleteBranch { db, branch } => self.delete_branch(request, db, branch),
            Command::ForkBranch {
                db,
                from,
                name,
                region,
                ttl_s,
            } => self.fork_branch(request, db, from, name, region, ttl_s),
            Command::StartPreprovisioning => self.set_preprovisioning(request, true),
            Command::StopPreprovisioning => self.set_preprovisioning(request, false),
            Command::Failover {
                epoch,
                asked_ms,
                serving,
            } => self.run_failover(request, epoch, asked_at(asked_ms), serving),
            Command::ExportReport { id, path } => self.export_report(request, id, path),
            Command::PlanMove { kind, scope } => self.plan_move(request, kind, scope),
            Command::Move {
                kind,
                epoch,
                asked_ms,
                serving,
            } => self.run_move(request, kind, epoch, asked_at(asked_ms), serving),
            Command::Recover { db } => self.recover(request, db),
            Command::CompareRecovered { db, branch } => self.compare(request, db, branch),
            Command::Merge {
                db,
                branch,
                pick,
                discard,
                chunk,
            } => self.merge(request, db, branch, pick, discard, chunk),
            Command::InstallService => self.install_service(request),
            Command::Shutdown => {}
        }
    }

    pub(super) fn absorb(&mut self, internal: Internal) {
        match internal {
            Internal::Listed(databases) => {
                self.listing = false;
                self.databases = Arc::new(databases);
                self.listed_us = Some(now_us());
            }
            Internal::Named(names) => self.named(names),
            Internal::Described(rows) => self.described(rows),
            Internal::Health(health, warnings) => {
                self.checking = false;
                for (name, h) in health {
                    self.health.insert(name, h);
                }
                self.clock_warnings = warnings;
                self.recover_by_itself();
            }
            Internal::Configured {
                request,
                group,
                result,
            } => {
                self.configured(request, group, result);
            }
            Internal::Discovered(result) => {
                self.discovering = false;
                match result {
                    Ok(flows) => self.add_flows(flows),
                    Err(e) => tracing::warn!("looking for new databases failed: {e}"),
                }
                let pending = std::mem::take(&mut self.discover_pending);
                if !pending.is_empty() {
                    self.discover_only(pending);
                }
            }
            Internal::BeatsRead {
                turn,
                result,
                listed,
            } => self.beats_read(turn, result, listed),
            Internal::BeatWritten(outcome) => self.beat_written(*outcome),
            Internal::HelperStopped(keys) => self.helper_stopped(keys),
            Internal::RegionProbed {
                request,
                replacing,
                spec,
                result,
            } => self.region_probed(request, replacing, spec, result),
            Internal::DemoReady { request, result } => self.demo_ready(request, result),
            Internal::Finished {
                request,
                outcome,
                relist,
            } => {
                self.deleting.remove(&request);
                self.finish(request, outcome);
                if relist {
                    // A database created or deleted: the listing changed, and
                    // under "all databases" a new one starts replicating.
                    self.list_databases();
                    self.discover();
                    self.read_control();
                    // A command another engine ran: its view, at once.
                    self.read_status_nearby();
                }
            }
            Internal::ControlRead(result) => {
                self.control_reading = false;
                match result {
                    Ok(state) => {
                        self.pins.update(&state);
                        // A branch forked, a database failed over or moved
                        // elsewhere: its flows, and its rows, at once.
                        let changed = state.events != self.control_state.events;
                        self.control_state = state;
                        if changed {
                            self.discover();
                            self.list_databases();
                        }
                        self.expire_branches();
                        self.sync_standby();
                        self.control_read_us = Some(now_us());
                        self.control_error = None;
                        self.recover_by_itself();
                    }
                    Err(e) => self.control_error = Some(e.to_string()),
                }
            }
            Internal::ControlRecorded { request, result } => {
                self.finish(request, outcome(result));
                self.read_control();
            }
            Internal::FailoverPreviewed { request, result } => {
                self.failover.previewing = false;
                match result {
                    Ok(mut preview) => {
                        // The lag the table shows, from the running copier,
                        // rather than the cursor's last saved sync.
                        let statuses = self
                            .replicator
                            .as_ref()
                            .map(|r| r.statuses())
                            .unwrap_or_default();
                        let now = crate::workload::now_us();
                        for db in &mut preview.dbs {
                            let live = statuses.iter().find(|s| {
                                s.db == db.db
                                    && s.branch == db.branch
                                    && s.replica == preview.to
                                    && !s.is_stale(now)
                            });
                            if let Some(lag_s) = live.and_then(|s| s.lag_s_at(now)) {
                                db.lag_ms = Some((lag_s * 1000.0) as u64);
                                db.lag_live = true;
                            }
                        }
                        let summary = preview.summary();
                        self.failover.preview = Some(preview);
                        self.finish(request, Outcome::Done(summary));
                    }
                    Err(e) => {
                        self.failover.preview = None;
                        self.failover.preview_error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::Step(op, step) => self.view_of(op).step(step),
            Internal::MovePlanned { request, result } => {
                self.moving.planning = false;
                match result {
                    Ok(plan) => {
                        let summary = plan.summary();
                        self.moving.plan = Some(plan);
                        self.finish(request, Outcome::Done(summary));
                    }
                    Err(e) => {
                        self.moving.plan = None;
                        self.moving.plan_error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::Moved { request, result } => self.moved(request, result),
            Internal::Recovered { request, result } => self.recovered(request, result),
            Internal::Compared { request, result } => {
                self.recovery.comparing = false;
                match result {
                    Ok(r) => {
                        let message = r.summary();
                        self.recovery.comparison = Some(recovery::ComparisonView::of(&r));
                        if request != INTERNAL_REQUEST {
                            self.finish(request, Outcome::Done(message));
                        }
                    }
                    Err(e) => {
                        self.recovery.error = Some(crate::error::one_line(&e.to_string()));
                        self.fail(request, e);
                    }
                }
            }
            Internal::Merged { request, result } => self.merged(request, result),
            Internal::StandbyStarted { name, result } => {
                self.standby_starting.remove(&name);
                match result {
                    Ok((ws, token, note)) => {
                        let wanted = self
                            .group
                            .as_ref()
                            .is_some_and(|g| g.kind == ReplicationKind::PreProvisioned);
                        if wanted {
                            self.standby_error = note;
                            self.standby.insert(name, (Arc::new(ws), token));
                        } else {
                            self.stop_off_loop(
                                format!("stop standing workspace {name}"),
                                ws.stop(),
                            );
                        }
                    }
                    Err(e) => self.standby_error = Some(crate::error::one_line(&e.to_string())),
                }
            }
            Internal::Drilled { request, result } => self.drilled(request, result),
            Internal::Lease { region, state } => self.lease_changed(region, state),
            Internal::StatusRead(result) => self.status_read(result),
            Internal::StatusWritten(result) => self.status_written(result),
            Internal::Noted { what, outcome } => {
                if let Some(outcome) = outcome {
                    self.activity.note(what, outcome);
                    self.activity_changed();
                }
            }
            Internal::Expired(result) => {
                self.expiring = false;
                match result {
                    Ok(gone) if !gone.is_empty() => {
                        tracing::info!("expired branches deleted: {}", gone.join(", "));
                        self.read_control();
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("deleting expired branches: {e}"),
                }
            }
            Internal::FailedOver { request, result } => self.failed_over(request, result),
            Internal::WorkspaceStarted {
                request,
                name,
                result,
            } => {
                self.workspace_busy.remove(&name);
                match result {
                    Ok(ws) => {
                        let addr = ws.addr();
                        self.workspaces.insert(name.clone(), ws);
                        self.finish(
                            request,
                            Outcome::Done(format!("workspace {name} serves at {addr}")),
                        );
                    }
                    Err(e) => self.fail(request, e),
                }
            }
        }
    }

    /// This data folder's engine id for the control log; on failure the
    /// request fails with why.
    pub(super) fn engine_id(&mut self, request: RequestId) -> Option<String> {
        match control::engine_id(&self.home.data_dir) {
            Ok(id) => Some(id),
            Err(e) => {
                self.fail(request, e);
                None
            }
        }
    }

    /// The acknowledgement logs of `dbs`, which RPO is measured against.
    pub(super) fn acks_for<'a>(
        &self,
        dbs: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, AckLog> {
        dbs.into_iter()
            .map(|db| (db.clone(), AckLog::for_db(&self.home.acks_dir(), db)))
            .collect()
    }
}

/// The request id of work the engine starts by itself (no activity entry).
pub(super) const INTERNAL_REQUEST: RequestId = 0;

pub(super) fn outcome(result: Result<String>) -> Outcome {
    match result {
        Ok(message) => Outcome::Done(message),
        Err(e) => Outcome::Failed(crate::error::one_line(&e.to_string())),
    }
}

/// The moment `asked_ms` (a client's clock on this machine) names, on this
/// process's clock: now when it is unset, in the future or over ten minutes
/// old (a clock that jumped).
fn asked_at(asked_ms: Option<u64>) -> Option<std::time::Instant> {
    let ago = crate::orchestrator::now_ms().checked_sub(asked_ms?)?;
    let ago = std::time::Duration::from_millis(ago);
    if ago > std::time::Duration::from_secs(600) {
        return None;
    }
    std::time::Instant::now().checked_sub(ago)
}
