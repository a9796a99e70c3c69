//! The engine's state in the Prometheus text format: every figure is read
//! from one published [`Snapshot`] when Prometheus scrapes, so a scrape
//! never reaches a store and shows what the app shows.
//!
//! Names and labels follow Prometheus's conventions: a `lifeboat_` prefix,
//! base units in the name (`_seconds`, `_bytes`), `_total` on counters, a
//! state as one series per state valued 1 or 0. A replica's series carry
//! `db`, `branch`, `home` and `replica`. [`CATALOGUE`] lists them all; the
//! README's table and `packaging/prometheus/` follow it.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::control::event::OperationKind;
use crate::control::lease::LeaseState;
use crate::engine::snapshot::Snapshot;
use crate::replication::{FlowState, FlowStatus};

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One metric: its full name as scraped, its type, its labels, and what it
/// means (the HELP line).
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricType,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const REPLICA: &[&str] = &["db", "branch", "home", "replica"];
const REPLICA_STATE: &[&str] = &["db", "branch", "home", "replica", "state"];
const REPLICA_CLASS: &[&str] = &["db", "branch", "home", "replica", "class"];
const WORKSPACE: &[&str] = &["workspace", "region"];
const OPERATION: &[&str] = &["kind"];

macro_rules! metric {
    ($name:literal, $kind:ident, $labels:expr, $help:literal) => {
        Metric {
            name: $name,
            kind: MetricType::$kind,
            labels: $labels,
            help: $help,
        }
    };
}

/// Every metric Lifeboat exports, in the order a scrape shows them.
/// Counters are named here with their `_total`.
pub const CATALOGUE: &[Metric] = &[
    metric!(
        "lifeboat_build_info",
        Gauge,
        &["version", "commit"],
        "The running Lifeboat's version, always 1."
    ),
    metric!(
        "lifeboat_rpo_target_seconds",
        Gauge,
        &[],
        "The group's RPO target: a replica's lag above it is a breach."
    ),
    metric!(
        "lifeboat_replica_lag_seconds",
        Gauge,
        REPLICA,
        "How far the replica is behind its home: the age of the oldest write it lacks (0 when it holds everything)."
    ),
    metric!(
        "lifeboat_replica_state",
        Gauge,
        REPLICA_STATE,
        "The replica's state: 1 for the state it is in, 0 for the others (starting, seeding, in_sync, lagging, paused, damaged, held)."
    ),
    metric!(
        "lifeboat_replica_copied_bytes_total",
        Counter,
        REPLICA,
        "Bytes copied from the home to the replica since the engine started."
    ),
    metric!(
        "lifeboat_replica_copied_objects_total",
        Counter,
        REPLICA,
        "Objects copied from the home to the replica since the engine started."
    ),
    metric!(
        "lifeboat_replica_pending_bytes",
        Gauge,
        REPLICA,
        "Bytes the home holds that the replica still wants."
    ),
    metric!(
        "lifeboat_replica_pending_objects",
        Gauge,
        REPLICA,
        "Objects the home holds that the replica still wants."
    ),
    metric!(
        "lifeboat_replica_repairs_total",
        Counter,
        REPLICA,
        "Replica files found missing or altered after their copy, and copied again."
    ),
    metric!(
        "lifeboat_replica_requests_total",
        Counter,
        REPLICA_CLASS,
        "Requests the replica's copier made to both regions, by price class (list, put, get, delete)."
    ),
    metric!(
        "lifeboat_replica_last_sync_timestamp_seconds",
        Gauge,
        REPLICA,
        "When the replica last held everything its home had (Unix time)."
    ),
    metric!(
        "lifeboat_rpo_breaches_total",
        Counter,
        &["db"],
        "Times a database's lag went above the RPO target."
    ),
    metric!(
        "lifeboat_rpo_breach_seconds_total",
        Counter,
        &["db"],
        "Seconds a database's lag spent above the RPO target."
    ),
    metric!(
        "lifeboat_region_up",
        Gauge,
        &["region"],
        "Whether the region answered its last health check (1) or not (0)."
    ),
    metric!(
        "lifeboat_region_requests_total",
        Counter,
        &["region", "class"],
        "Requests this engine made to the region, by price class (list, put, get, delete)."
    ),
    metric!(
        "lifeboat_lease_held",
        Gauge,
        &["region"],
        "Whether this engine holds the region's lease (1) or not (0)."
    ),
    metric!(
        "lifeboat_lease_holder_info",
        Gauge,
        &["region", "engine", "host"],
        "Who holds the region's lease, always 1; absent while nobody does."
    ),
    metric!(
        "lifeboat_lease_age_seconds",
        Gauge,
        &["region"],
        "How long the region's lease holder has held it."
    ),
    metric!(
        "lifeboat_operation_rto_seconds",
        Gauge,
        OPERATION,
        "The newest operation of the kind: from the ask to the first write acknowledged (failover, drill, switchover, failback)."
    ),
    metric!(
        "lifeboat_operation_rpo_seconds",
        Gauge,
        OPERATION,
        "The newest operation of the kind: the worst replica lag it took its databases at."
    ),
    metric!(
        "lifeboat_operation_timestamp_seconds",
        Gauge,
        OPERATION,
        "When the newest operation of the kind was asked for (Unix time)."
    ),
    metric!(
        "lifeboat_operation_success",
        Gauge,
        OPERATION,
        "Whether the newest operation of the kind succeeded (1) or failed (0)."
    ),
    metric!(
        "lifeboat_operations_total",
        Counter,
        &["kind", "outcome"],
        "Operations in the control log, by kind and outcome (ok, failed)."
    ),
    metric!(
        "lifeboat_workspace_connections",
        Gauge,
        WORKSPACE,
        "Clients connected to the workspace now."
    ),
    metric!(
        "lifeboat_workspace_connections_accepted_total",
        Counter,
        WORKSPACE,
        "Connections the workspace accepted."
    ),
    metric!(
        "lifeboat_workspace_commands_total",
        Counter,
        WORKSPACE,
        "Commands the workspace ran."
    ),
    metric!(
        "lifeboat_workspace_errors_total",
        Counter,
        WORKSPACE,
        "Commands the workspace answered with an error."
    ),
    metric!(
        "lifeboat_workspace_firewall_refusals_total",
        Counter,
        WORKSPACE,
        "Connections the workspace's firewall refused."
    ),
    metric!(
        "lifeboat_workspace_auth_failures_total",
        Counter,
        WORKSPACE,
        "AUTH attempts that failed."
    ),
];

/// The states a replica can be in, as its `state` label says them.
const STATES: [(FlowState, &str); 7] = [
    (FlowState::Starting, "starting"),
    (FlowState::Seeding, "seeding"),
    (FlowState::InSync, "in_sync"),
    (FlowState::Lagging, "lagging"),
    (FlowState::Paused, "paused"),
    (FlowState::Damaged, "damaged"),
    (FlowState::Held, "held"),
];

/// The operations whose newest RTO and RPO are exported.
const TIMED: [OperationKind; 4] = [
    OperationKind::Failover,
    OperationKind::Drill,
    OperationKind::Switchover,
    OperationKind::Failback,
];

/// One series: its label values (in the metric's label order) and value.
type Sample = (Vec<String>, f64);

/// The scrape of `snapshot` at `now_ms`, in the Prometheus text format.
pub fn render(snapshot: Arc<Snapshot>, now_ms: u64) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { snapshot, now_ms }));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct Scrape {
    snapshot: Arc<Snapshot>,
    now_ms: u64,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for metric in CATALOGUE {
            let samples = self.samples(metric.name);
            // A metric with no series is left out (Prometheus's habit).
            if samples.is_empty() && !metric.labels.is_empty() {
                continue;
            }
            // The encoder adds `_total` to a counter's name itself.
            let name = metric.name.trim_start_matches("lifeboat_");
            let name = format!("lifeboat_{}", name.trim_end_matches("_total"));
            let mut family = encoder.encode_descriptor(&name, metric.help, None, metric.kind)?;
            for (values, value) in samples {
                let labels: Vec<(&str, String)> =
                    metric.labels.iter().copied().zip(values).collect();
                let series = family.encode_family(&labels)?;
                match metric.kind {
                    MetricType::Counter => ConstCounter::new(value).encode(series)?,
                    _ => ConstGauge::new(value).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

impl Scrape {
    /// The series of metric `name` (an unknown name has none).
    fn samples(&self, name: &str) -> Vec<Sample> {
        let s = &*self.snapshot;
        let now_us = self.now_ms * 1000;
        let flows = || own_flows(s);
        let replica = |f: &FlowStatus| -> Vec<String> {
            vec![
                f.db.clone(),
                f.branch.clone(),
                f.home.clone(),
                f.replica.clone(),
            ]
        };
        let per_flow = |value: &dyn Fn(&FlowStatus) -> Option<f64>| -> Vec<Sample> {
            flows()
                .filter_map(|f| value(f).map(|v| (replica(f), v)))
                .collect()
        };
        match name {
            "lifeboat_build_info" => vec![(
                vec![
                    crate::about::VERSION.to_string(),
                    crate::about::COMMIT.to_string(),
                ],
                1.0,
            )],
            "lifeboat_rpo_target_seconds" => {
                s.group.iter().map(|g| (vec![], g.rpo_target_s)).collect()
            }
            "lifeboat_replica_lag_seconds" => per_flow(&|f| f.lag_s_at(now_us)),
            "lifeboat_replica_state" => flows()
                .flat_map(|f| {
                    STATES.iter().map(move |(state, label)| {
                        let mut values = replica(f);
                        values.push((*label).to_string());
                        (values, f64::from(u8::from(f.state == *state)))
                    })
                })
                .collect(),
            "lifeboat_replica_copied_bytes_total" => per_flow(&|f| Some(f.bytes_copied as f64)),
            "lifeboat_replica_copied_objects_total" => per_flow(&|f| Some(f.objects_copied as f64)),
            "lifeboat_replica_pending_bytes" => per_flow(&|f| Some(f.bytes_pending as f64)),
            "lifeboat_replica_pending_objects" => per_flow(&|f| Some(f.objects_pending as f64)),
            "lifeboat_replica_repairs_total" => per_flow(&|f| Some(f.repairs as f64)),
            "lifeboat_replica_requests_total" => flows()
                .flat_map(|f| {
                    classes(&f.requests).map(move |(class, n)| {
                        let mut values = replica(f);
                        values.push(class.to_string());
                        (values, n)
                    })
                })
                .collect(),
            "lifeboat_replica_last_sync_timestamp_seconds" => {
                per_flow(&|f| f.last_sync_us.map(|us| us as f64 / 1e6))
            }
            "lifeboat_rpo_breaches_total" => breaches(s, |b| b.episodes as f64),
            "lifeboat_rpo_breach_seconds_total" => breaches(s, |b| b.seconds),
            "lifeboat_region_up" => s
                .regions
                .iter()
                .filter_map(|r| {
                    let health = r.health.as_ref()?;
                    Some((
                        vec![r.spec.name.clone()],
                        f64::from(u8::from(health.reachable)),
                    ))
                })
                .collect(),
            "lifeboat_region_requests_total" => s
                .cost
                .regions
                .iter()
                .flat_map(|r| {
                    classes(&r.total).map(|(class, n)| (vec![r.region.clone(), class.into()], n))
                })
                .collect(),
            "lifeboat_lease_held" => s
                .leases
                .iter()
                .map(|l| {
                    (
                        vec![l.region.clone()],
                        f64::from(u8::from(l.state.is_held())),
                    )
                })
                .collect(),
            "lifeboat_lease_holder_info" => s
                .leases
                .iter()
                .filter_map(|l| {
                    let (engine, host) = self.holder_of(&l.state)?;
                    Some((vec![l.region.clone(), engine, host], 1.0))
                })
                .collect(),
            "lifeboat_lease_age_seconds" => s
                .leases
                .iter()
                .filter_map(|l| {
                    let since = match &l.state {
                        LeaseState::Held { since_ms } => *since_ms,
                        LeaseState::Standby { holder } => holder.since_ms,
                        _ => return None,
                    };
                    let age = self.now_ms.saturating_sub(since) as f64 / 1e3;
                    Some((vec![l.region.clone()], age))
                })
                .collect(),
            "lifeboat_operation_rto_seconds" => self.newest(|op| Some(op.rto_ms? as f64 / 1e3)),
            "lifeboat_operation_rpo_seconds" => self.newest(|op| {
                let worst = op.rpo.iter().filter_map(|r| r.lag_ms).max()?;
                Some(worst as f64 / 1e3)
            }),
            "lifeboat_operation_timestamp_seconds" => {
                self.newest(|op| Some(op.started_ms as f64 / 1e3))
            }
            "lifeboat_operation_success" => self.newest(|op| Some(f64::from(u8::from(op.ok)))),
            "lifeboat_operations_total" => {
                let mut counts = std::collections::BTreeMap::<(&str, &str), f64>::new();
                for op in &s.branches.operations {
                    let outcome = if op.ok { "ok" } else { "failed" };
                    *counts.entry((op.kind.name(), outcome)).or_default() += 1.0;
                }
                counts
                    .into_iter()
                    .map(|((kind, outcome), n)| (vec![kind.into(), outcome.into()], n))
                    .collect()
            }
            "lifeboat_workspace_connections" => self.workspaces(|w| w.connected),
            "lifeboat_workspace_connections_accepted_total" => self.workspaces(|w| w.accepted),
            "lifeboat_workspace_commands_total" => self.workspaces(|w| w.commands),
            "lifeboat_workspace_errors_total" => self.workspaces(|w| w.errors),
            "lifeboat_workspace_firewall_refusals_total" => self.workspaces(|w| w.firewall_refused),
            "lifeboat_workspace_auth_failures_total" => self.workspaces(|w| w.auth_failures),
            _ => Vec::new(),
        }
    }

    /// The engine and host that hold a lease, when one does.
    fn holder_of(&self, state: &LeaseState) -> Option<(String, String)> {
        match state {
            LeaseState::Held { .. } => {
                let me = self.snapshot.holder.as_ref()?;
                Some((me.engine.clone(), me.host.clone()))
            }
            LeaseState::Standby { holder } => Some((holder.engine.clone(), holder.host.clone())),
            _ => None,
        }
    }

    /// `value` of the newest operation of each timed kind.
    fn newest(
        &self,
        value: impl Fn(&crate::control::event::OperationRecord) -> Option<f64>,
    ) -> Vec<Sample> {
        TIMED
            .iter()
            .filter_map(|kind| {
                let op = self
                    .snapshot
                    .branches
                    .operations
                    .iter()
                    .filter(|op| op.kind == *kind)
                    .max_by_key(|op| op.started_ms)?;
                Some((vec![kind.name().to_string()], value(op)?))
            })
            .collect()
    }

    /// `value` of each workspace this engine serves.
    fn workspaces(&self, value: impl Fn(&crate::workspace::WorkspaceStatus) -> u64) -> Vec<Sample> {
        self.snapshot
            .control
            .workspaces
            .iter()
            .filter_map(|w| {
                let running = w.running.as_ref()?;
                Some((
                    vec![running.name.clone(), running.region.clone()],
                    value(running) as f64,
                ))
            })
            .collect()
    }
}

/// The flows this engine copies: none while another engine runs the group
/// (its view is the other's, exported there), and not those a helper
/// copies for it (the helper's are in `helping`).
fn own_flows(s: &Snapshot) -> impl Iterator<Item = &FlowStatus> {
    let flows: Box<dyn Iterator<Item = &FlowStatus>> = if s.remote.is_some() {
        Box::new(s.helping.iter())
    } else {
        Box::new(
            s.flows
                .iter()
                .map(|f| &f.status)
                .filter(|f| f.copied_by.is_none()),
        )
    };
    flows
}

fn breaches(s: &Snapshot, value: impl Fn(&crate::engine::history::Breaches) -> f64) -> Vec<Sample> {
    if s.remote.is_some() {
        return Vec::new();
    }
    s.history
        .breaches
        .iter()
        .map(|(db, b)| (vec![db.clone()], value(b)))
        .collect()
}

fn classes(c: &crate::region::meter::ClassCounts) -> impl Iterator<Item = (&'static str, f64)> {
    [
        ("list", c.list),
        ("put", c.put),
        ("get", c.get),
        ("delete", c.delete),
    ]
    .into_iter()
    .map(|(class, n)| (class, n as f64))
}

/// The catalogue as a Markdown table (the README's and the closing note's).
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in CATALOGUE {
        let kind = match m.kind {
            MetricType::Counter => "counter",
            _ => "gauge",
        };
        let _ = writeln!(
            out,
            "| `{}` | {kind} | {} | {} |",
            m.name,
            m.labels.join(", "),
            m.help
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::FlowView;

    fn flow(db: &str, state: FlowState, lag_s: f64, now_us: u64) -> FlowView {
        let mut status = FlowStatus::new(db, "main", "us-east-1", "eu-west-1");
        status.state = state;
        status.replica_manifest_id = Some(3);
        status.uncovered_since_us = Some(now_us - (lag_s * 1e6) as u64);
        status.next_look_us = Some(now_us + 1_000_000);
        status.observed_us = now_us;
        status.bytes_copied = 4096;
        status.requests.get = 7;
        FlowView::of(status)
    }

    #[test]
    fn a_scrape_names_every_replica_with_its_lag_state_and_counters() {
        let now_ms = 1_800_000_000_000;
        let snapshot = Snapshot {
            flows: Arc::new(vec![
                flow("orders", FlowState::Lagging, 12.5, now_ms * 1000),
                flow("users", FlowState::InSync, 0.0, now_ms * 1000),
            ]),
            ..Snapshot::default()
        };
        let text = render(Arc::new(snapshot), now_ms).expect("encodes");
        assert!(
            text.contains("# TYPE lifeboat_replica_lag_seconds gauge"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"lifeboat_replica_lag_seconds{db="orders",branch="main",home="us-east-1",replica="eu-west-1"} 12.5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"lifeboat_replica_state{db="orders",branch="main",home="us-east-1",replica="eu-west-1",state="lagging"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lifeboat_replica_state{db="users",branch="main",home="us-east-1",replica="eu-west-1",state="lagging"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE lifeboat_replica_copied_bytes_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"lifeboat_replica_requests_total{db="orders",branch="main",home="us-east-1",replica="eu-west-1",class="get"} 7"#),
            "{text}"
        );
        // Every name scraped is in the catalogue, and the other way round
        // for the metrics a snapshot with flows has.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).expect("name");
            assert!(
                CATALOGUE.iter().any(|m| m.name == name),
                "{name} not catalogued"
            );
        }
    }

    #[test]
    fn the_shipped_dashboard_and_alert_rules_name_only_metrics_that_exist() {
        let shipped = [
            include_str!("../../packaging/grafana/lifeboat-dashboard.json"),
            include_str!("../../packaging/prometheus/lifeboat-alerts.yml"),
        ];
        let mut named = 0;
        for text in shipped {
            for (at, _) in text.match_indices("lifeboat_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                // `lifeboat_` also starts words that are not metrics
                // (`lifeboat-alerts.yml`, a uid).
                if name.len() > "lifeboat_".len() {
                    assert!(
                        CATALOGUE.iter().any(|m| m.name == name),
                        "{name} is not a metric"
                    );
                    named += 1;
                }
            }
        }
        assert!(named > 20, "{named}");
    }

    #[test]
    fn label_values_are_escaped() {
        let now_ms = 1_800_000_000_000;
        let snapshot = Snapshot {
            flows: Arc::new(vec![flow(
                "we\"ird\\db",
                FlowState::InSync,
                0.0,
                now_ms * 1000,
            )]),
            ..Snapshot::default()
        };
        let text = render(Arc::new(snapshot), now_ms).expect("encodes");
        assert!(text.contains(r#"db="we\"ird\\db""#), "{text}");
    }
}
