//! Alerts as the engine raises them (`metrics::alerts` has the rules'
//! memory and the sinks): once a second, the engine that runs the group
//! looks at what it publishes (replicas, regions, leases, the control
//! log's operations) and sends what fired or resolved to every sink, on
//! tasks of their own, never on the loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::event::OperationKind;
use crate::control::lease::LeaseState;
use crate::metrics::alerts::{
    AlertEvent, AlertSettings, Alerter, Condition, FiringAlert, MAX_PENDING_DELIVERIES,
    RECENT_EVENTS, Rule, SinkTarget,
};
use crate::replication::FlowState;

use super::Core;

/// How often the settings file is looked at for changes.
const SETTINGS_LOOK_EVERY: Duration = Duration::from_secs(5);

/// What the engine keeps of alerts.
pub(super) struct Alerting {
    settings: AlertSettings,
    settings_error: Option<String>,
    modified: Option<std::time::SystemTime>,
    looked: Option<Instant>,
    alerter: Alerter,
    recent: std::collections::VecDeque<AlertEvent>,
    /// The last failed delivery of each sink (cleared by a good one).
    failures: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
    deliveries: Arc<tokio::sync::Semaphore>,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            settings: AlertSettings::default(),
            settings_error: None,
            modified: None,
            looked: None,
            alerter: Alerter::default(),
            recent: Default::default(),
            failures: Default::default(),
            deliveries: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_DELIVERIES)),
        }
    }
}

/// Alerts as the snapshot carries them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct AlertsView {
    pub firing: Vec<FiringAlert>,
    /// Events sent, newest last.
    pub recent: Vec<AlertEvent>,
    pub settings: AlertSettings,
    /// Why the settings file could not be read, when it could not.
    pub settings_error: Option<String>,
    /// Sinks whose last delivery failed, with why.
    pub failures: Vec<(String, String)>,
}

impl Core {
    /// Whether `region` does not answer: its health check failed, or a
    /// flow waits on it.
    pub(super) fn region_down(
        &self,
        region: &str,
        statuses: &[crate::replication::FlowStatus],
    ) -> bool {
        let unhealthy = self.health.get(region).is_some_and(|h| !h.reachable);
        unhealthy
            || statuses
                .iter()
                .any(|s| s.state == FlowState::Paused && s.unreachable.as_deref() == Some(region))
    }

    /// Evaluates the rules on this second's `statuses` (the sample's) and
    /// sends what fired or resolved.
    pub(super) fn alert_tick(&mut self, statuses: &[crate::replication::FlowStatus]) {
        self.reload_alert_settings();
        // The engine that runs the group alerts; a standby would say it twice.
        let Some(group) = self.group.clone() else {
            return;
        };
        if self.remote.is_some() {
            return;
        }
        let holding = self.conditions(&group, statuses);
        let now_ms = crate::orchestrator::now_ms();
        let label = format!("{} → {}", group.primary, group.secondary);
        let host = crate::control::lease::host_name();
        let events =
            self.alerting
                .alerter
                .evaluate(&self.alerting.settings, holding, now_ms, &label, &host);
        for event in events {
            self.send_alert(event);
        }
    }

    /// Sends `event` to every sink but the desktop (the app shows those
    /// from the snapshot) and keeps it for the app.
    pub(super) fn send_alert(&mut self, event: AlertEvent) {
        tracing::info!(alert = %event.alert, subject = %event.subject, "alert {:?}: {}", event.status, event.summary);
        for sink in &self.alerting.settings.sinks {
            if sink.target == SinkTarget::Desktop {
                continue;
            }
            let Ok(slot) = Arc::clone(&self.alerting.deliveries).try_acquire_owned() else {
                tracing::warn!(sink = %sink.name, "alert dropped: {MAX_PENDING_DELIVERIES} deliveries already waiting");
                continue;
            };
            let (sink, event, failures) = (
                sink.clone(),
                event.clone(),
                Arc::clone(&self.alerting.failures),
            );
            tokio::spawn(async move {
                let outcome = crate::metrics::alerts::deliver(&sink, &event).await;
                let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(()) => {
                        failures.remove(&sink.name);
                    }
                    Err(why) => {
                        tracing::warn!(sink = %sink.name, "alert not delivered: {why}");
                        failures.insert(sink.name.clone(), why);
                    }
                }
                drop(slot);
            });
        }
        self.alerting.recent.push_back(event);
        while self.alerting.recent.len() > RECENT_EVENTS {
            self.alerting.recent.pop_front();
        }
    }

    /// Saves `settings` (checked again here) off the loop; they take
    /// effect at once, and `alerts.ron` holds them for the CLI and the
    /// next start.
    pub(super) fn set_alerts(&mut self, request: super::RequestId, settings: AlertSettings) {
        if let Err(e) = settings.check(&crate::metrics::alerts::FORM_WORDS) {
            return self.fail(request, e);
        }
        self.alerting.settings = settings.clone();
        self.alerting.settings_error = None;
        let dir = self.home.config_dir.clone();
        self.export(request, move || {
            settings
                .save(&dir)
                .map(|()| format!("alert settings saved ({} sinks)", settings.sinks.len()))
        });
    }

    /// Sends a sample event through each sink (or the one named), off the
    /// loop; the outcome says which arrived.
    pub(super) fn test_alerts(&mut self, request: super::RequestId, only: Option<String>) {
        let sinks: Vec<crate::metrics::alerts::Sink> = self
            .alerting
            .settings
            .sinks
            .iter()
            .filter(|s| only.as_ref().is_none_or(|n| &s.name == n))
            .cloned()
            .collect();
        if sinks.is_empty() {
            return self.fail(request, "no sinks to test; add one first");
        }
        let group = self.group.as_ref().map_or("no group".into(), |g| {
            format!("{} → {}", g.primary, g.secondary)
        });
        self.spawn(async move {
            let results = crate::metrics::alerts::send_test(&sinks, &group).await;
            let failed = results.iter().any(|(_, r)| r.is_err());
            let message = results
                .iter()
                .map(|(name, r)| match r {
                    Ok(()) => format!("{name}: sent"),
                    Err(why) => format!("{name}: NOT sent: {why}"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            super::Internal::Finished {
                request,
                outcome: if failed {
                    super::Outcome::Failed(message)
                } else {
                    super::Outcome::Done(message)
                },
                relist: false,
            }
        });
    }

    /// Reads `alerts.ron` again when it changed (looked at every 5 s).
    fn reload_alert_settings(&mut self) {
        if self
            .alerting
            .looked
            .is_some_and(|at| at.elapsed() < SETTINGS_LOOK_EVERY)
        {
            return;
        }
        self.alerting.looked = Some(Instant::now());
        let path = AlertSettings::path(&self.home.config_dir);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if modified == self.alerting.modified && self.alerting.modified.is_some() {
            return;
        }
        self.alerting.modified = modified;
        match AlertSettings::load(&self.home.config_dir) {
            Ok(settings) => {
                self.alerting.settings = settings;
                self.alerting.settings_error = None;
            }
            Err(e) => self.alerting.settings_error = Some(e.to_string()),
        }
    }

    /// What holds now.
    fn conditions(
        &self,
        group: &super::group::GroupConfig,
        statuses: &[crate::replication::FlowStatus],
    ) -> Vec<Condition> {
        let mut holding = Vec::new();
        let target = group.rpo_target_s;
        for status in statuses {
            if status.state == FlowState::Damaged {
                holding.push(Condition {
                    rule: Rule::ReplicaDamaged,
                    subject: format!("{}/{} in {}", status.db, status.branch, status.replica),
                    summary: format!(
                        "the replica of {}/{} in {} is damaged and being repaired: {}",
                        status.db,
                        status.branch,
                        status.replica,
                        status
                            .detail
                            .as_deref()
                            .unwrap_or("a file it needs is missing")
                    ),
                    value: None,
                });
            }
        }
        for (db, lag) in super::flows::worst_lags(statuses) {
            if lag > target {
                holding.push(Condition {
                    rule: Rule::RpoAboveTarget,
                    subject: db.to_string(),
                    summary: format!(
                        "{db}: replica lag {lag:.1} s is above the RPO target of {target} s; a failover now would lose that much"
                    ),
                    value: Some(lag),
                });
            }
        }
        for region in [&group.primary, &group.secondary] {
            if self.region_down(region, statuses) {
                holding.push(Condition {
                    rule: Rule::RegionUnreachable,
                    subject: region.clone(),
                    summary: format!(
                        "region {region} does not answer; replication into and out of it waits"
                    ),
                    value: None,
                });
            }
            match self.leases.get(region.as_str()) {
                Some(LeaseState::Held { .. } | LeaseState::Standby { .. }) => {}
                _ => holding.push(Condition {
                    rule: Rule::EngineLost,
                    subject: region.clone(),
                    summary: format!(
                        "no engine holds the lease of {region}: nothing replicates into it or runs its operations"
                    ),
                    value: None,
                }),
            }
        }
        let operations = &self.control_state.operations;
        for kind in [
            OperationKind::Failover,
            OperationKind::Drill,
            OperationKind::Switchover,
            OperationKind::Failback,
            OperationKind::Recovery,
            OperationKind::Merge,
        ] {
            let newest = operations
                .iter()
                .filter(|op| op.kind == kind)
                .max_by_key(|op| op.started_ms);
            if let Some(op) = newest.filter(|op| !op.ok) {
                let failed = op.failed_steps();
                let why = if failed.is_empty() {
                    op.outcome.clone()
                } else {
                    failed.join("; ")
                };
                holding.push(Condition {
                    rule: Rule::OperationFailed,
                    subject: kind.name().to_string(),
                    summary: format!("the last {} ({}) failed: {why}", kind.name(), op.id),
                    value: None,
                });
            }
        }
        if let Some(days) = self.drill_overdue_after_days() {
            let newest_passed = operations
                .iter()
                .filter(|op| op.kind == OperationKind::Drill && op.ok)
                .map(|op| op.started_ms)
                .max();
            let since_ms = newest_passed.unwrap_or(self.alerting_since_ms());
            let age_days =
                crate::orchestrator::now_ms().saturating_sub(since_ms) as f64 / 86_400_000.0;
            if age_days > days {
                holding.push(Condition {
                    rule: Rule::DrillOverdue,
                    subject: "drills".into(),
                    summary: match newest_passed {
                        Some(_) => format!(
                            "no drill has passed for {age_days:.1} days (due every {days:.1} days)"
                        ),
                        None => format!("no drill has passed yet; one is due every {days:.1} days"),
                    },
                    value: Some(age_days),
                });
            }
        }
        holding
    }

    /// After how many days without a passed drill it is overdue (`None`:
    /// never), from the settings.
    fn drill_overdue_after_days(&self) -> Option<f64> {
        if self.alerting.settings.drill_overdue_days == 0 {
            return None;
        }
        // A schedule: its period and a day.
        let scheduled = self.group.as_ref().and_then(|g| g.drill_schedule.as_ref());
        if let Some(period) = scheduled.and_then(|s| s.period(crate::orchestrator::now_ms())) {
            return Some(period.as_secs_f64() / 86_400.0 + 1.0);
        }
        Some(self.alerting.settings.drill_overdue_days as f64)
    }

    /// Since when this engine watches (a group never drilled counts from here).
    fn alerting_since_ms(&self) -> u64 {
        self.started_ms
    }

    pub(super) fn alerts_view(&self) -> AlertsView {
        let failures = self
            .alerting
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        AlertsView {
            firing: self.alerting.alerter.firing(),
            recent: self.alerting.recent.iter().cloned().collect(),
            settings: self.alerting.settings.clone(),
            settings_error: self.alerting.settings_error.clone(),
            failures,
        }
    }
}
