//! `lifeboat bench cost`: what replication asks of the stores, by price
//! class, per object copied under a steady writer and per minute on a
//! quiet branch at RPO targets of 1 s and 10 s, and what that comes to a
//! database-month at the published prices of `lifeboat::cost`.
//!
//! The peer is the copier this one replaced, which found new files by
//! listing: 6.8 requests per object copied at 2,000 writes/s, and 72 LISTs
//! a minute on a quiet branch (issue 19). Targets: at most 2.2 requests
//! per object, 65 and 8 a quiet minute at 1 s and 10 s, none of them LIST.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use lifeboat::cost::{self, Rates, dollars};
use lifeboat::error::Result;
use lifeboat::region::Region;
use lifeboat::region::meter::ClassCounts;
use lifeboat::replication::pins::NoPins;
use lifeboat::replication::{Flow, FlowStatus, ReplicationOptions, Replicator};
use lifeboat::storage::DbLocation;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{self, Rate, WorkloadSpec};

use super::bench::quantile_ms;
use crate::parse_duration;

/// The listing copier's figures, measured before this one (issue 19).
const LISTING_REQUESTS_PER_OBJECT: f64 = 6.8;
const LISTING_IDLE_LISTS_PER_MIN: f64 = 72.0;

const TARGET_PER_OBJECT: f64 = 2.2;

#[derive(Args, Debug)]
pub struct CostKnobs {
    /// How long the steady writer runs for each busy figure.
    #[arg(long = "cost-busy-for", default_value = "40s", value_parser = parse_duration)]
    cost_busy_for: Duration,
    /// Writes per second of the steady writer.
    #[arg(long = "cost-rate", default_value_t = 2000)]
    cost_rate: u64,
    /// How long requests are counted on a quiet branch, per RPO target.
    #[arg(long = "cost-idle-for", default_value = "60s", value_parser = parse_duration)]
    cost_idle_for: Duration,
}

/// Dollars a database-month at one store's prices.
#[derive(Debug, Serialize)]
pub struct StoreDollars {
    pub store: String,
    pub dollars_per_month: f64,
}

#[derive(Debug, Serialize)]
pub struct BusyFigures {
    /// `elsewhere`: the copier finds the writer's files by reading their
    /// next names; `here`: the writer runs in the engine's process and
    /// the copier hears of each file as it lands.
    pub writer: &'static str,
    pub writes_per_s: u64,
    pub seconds: f64,
    pub objects_copied: u64,
    /// Replication's requests, both regions.
    pub requests: ClassCounts,
    pub requests_per_object: f64,
    pub target_per_object: f64,
    pub meets_target: bool,
    /// The listing copier's figure, over this one's.
    pub ratio_vs_listing: f64,
    /// Everything both stores were asked meanwhile (the writer's own
    /// requests too).
    pub store_requests: ClassCounts,
    pub wal_delay_p99_ms: f64,
    pub per_month: Vec<StoreDollars>,
}

#[derive(Debug, Serialize)]
pub struct IdleCost {
    pub rpo_target_s: f64,
    pub seconds: f64,
    pub requests: ClassCounts,
    pub per_min: Rates,
    pub target_per_min: f64,
    /// At most the target, and no LIST.
    pub meets_target: bool,
    /// LISTs a minute on average from the list-diff heal and the look at
    /// the replica's cut, which come minutes apart (none fell in the
    /// window unless `requests.list` says so).
    pub amortized_list_per_min: f64,
    pub listing_list_per_min: f64,
    pub per_month: Vec<StoreDollars>,
}

#[derive(Debug, Serialize)]
pub struct CostRun {
    pub regions: &'static str,
    pub busy: Vec<BusyFigures>,
    pub idle: Vec<IdleCost>,
}

#[derive(Debug, Serialize)]
pub struct CostFigures {
    pub bench: &'static str,
    pub prices_as_of: &'static str,
    pub runs: Vec<CostRun>,
}

/// Every figure on the region pair `a`, `b` (`kind` names it).
pub async fn measure(
    kind: &'static str,
    a: &Region,
    b: &Region,
    scratch: &std::path::Path,
    knobs: &CostKnobs,
) -> Result<CostRun> {
    let mut busy = Vec::new();
    for (writer, hear) in [("elsewhere", false), ("here", true)] {
        eprintln!(
            "bench: cost on {kind}, {} writes/s, writer {writer}",
            knobs.cost_rate
        );
        busy.push(busy_run(a, b, scratch, knobs, writer, hear).await?);
    }
    let mut idle = Vec::new();
    for (target_s, target_per_min) in [(1.0, 65.0), (10.0, 8.0)] {
        eprintln!("bench: cost on {kind}, quiet branch at RPO target {target_s} s");
        idle.push(idle_run(a, b, scratch, knobs, target_s, target_per_min).await?);
    }
    Ok(CostRun {
        regions: kind,
        busy,
        idle,
    })
}

fn per_month(rates: &Rates) -> Vec<StoreDollars> {
    cost::published()
        .iter()
        .map(|p| StoreDollars {
            store: p.store.clone(),
            dollars_per_month: p.requests_per_month(rates),
        })
        .collect()
}

/// The status of the one flow of `replicator` once its replica holds
/// everything its home had at the look (or after `within`).
async fn caught_up(replicator: &Replicator, within: Duration) -> FlowStatus {
    replicator
        .wait_until(within, |s| {
            s.passes > 0
                && s.replica_manifest_id.is_some()
                && s.objects_pending == 0
                && s.uncovered_since_us.is_none()
        })
        .await;
    replicator.statuses().remove(0)
}

fn meters(a: &Region, b: &Region) -> ClassCounts {
    a.meter().total().plus(&b.meter().total())
}

async fn busy_run(
    a: &Region,
    b: &Region,
    scratch: &std::path::Path,
    knobs: &CostKnobs,
    writer: &'static str,
    hear: bool,
) -> Result<BusyFigures> {
    let db = format!("busy-{writer}");
    let home = DbLocation::in_region(a, &db)?;
    home.create().await?;
    let opts = ReplicationOptions {
        hear_writers: hear,
        ..ReplicationOptions::for_rpo_target(Duration::from_secs(1))
    };
    let replicator = Replicator::start(vec![Flow::new(&db, "main", a, b)], opts, Arc::new(NoPins));
    let before = caught_up(&replicator, Duration::from_secs(30)).await;
    let stores_before = meters(a, b);
    replicator.drain_wal_delays_ms();
    let started = Instant::now();
    let spec = WorkloadSpec {
        rate: Rate::PerSecond(knobs.cost_rate),
        duration: Some(knobs.cost_busy_for),
        records: None,
        value_bytes: 100,
        churn: false,
    };
    let acks = AckLog::for_db(&scratch.join("acks"), &db);
    let report = workload::run(&home, &spec, &acks, std::future::pending()).await?;
    // What the writer made, copied: the last look included.
    let after = caught_up(&replicator, Duration::from_secs(30)).await;
    let seconds = started.elapsed().as_secs_f64();
    let store_requests = meters(a, b).since(&stores_before);
    let delays = replicator.drain_sorted_wal_delays_ms();
    replicator.stop().await;
    if let Some(err) = report.error {
        return Err(lifeboat::Error::Failed(format!(
            "the bench's writer: {err}"
        )));
    }
    let requests = after.requests.since(&before.requests);
    let objects = after.objects_copied - before.objects_copied;
    let per_object = requests.total() as f64 / objects.max(1) as f64;
    Ok(BusyFigures {
        writer,
        writes_per_s: knobs.cost_rate,
        seconds,
        objects_copied: objects,
        requests,
        requests_per_object: per_object,
        target_per_object: TARGET_PER_OBJECT,
        meets_target: objects > 0 && per_object <= TARGET_PER_OBJECT,
        ratio_vs_listing: LISTING_REQUESTS_PER_OBJECT / per_object.max(1e-9),
        store_requests,
        wal_delay_p99_ms: quantile_ms(&delays, 0.99),
        per_month: per_month(&Rates::over(&requests, seconds / 60.0)),
    })
}

async fn idle_run(
    a: &Region,
    b: &Region,
    scratch: &std::path::Path,
    knobs: &CostKnobs,
    target_s: f64,
    target_per_min: f64,
) -> Result<IdleCost> {
    let db = format!("quiet-{}", target_s as u64);
    let home = DbLocation::in_region(a, &db)?;
    home.create().await?;
    let spec = WorkloadSpec {
        rate: Rate::Max,
        duration: None,
        records: Some(1000),
        value_bytes: 100,
        churn: false,
    };
    let acks = AckLog::for_db(&scratch.join("acks"), &db);
    workload::run(&home, &spec, &acks, std::future::pending()).await?;
    let opts = ReplicationOptions::for_rpo_target(Duration::from_secs_f64(target_s));
    let amortized_list_per_min = opts.idle_lists_per_min();
    let replicator = Replicator::start(vec![Flow::new(&db, "main", a, b)], opts, Arc::new(NoPins));
    caught_up(&replicator, Duration::from_secs(60)).await;
    // Settled: past the first looks after the seed.
    tokio::time::sleep(Duration::from_secs_f64(target_s.min(5.0))).await;
    let before = replicator.statuses().remove(0).requests;
    let started = Instant::now();
    tokio::time::sleep(knobs.cost_idle_for).await;
    let seconds = started.elapsed().as_secs_f64();
    let requests = replicator.statuses().remove(0).requests.since(&before);
    replicator.stop().await;
    let rates = Rates::over(&requests, seconds / 60.0);
    Ok(IdleCost {
        rpo_target_s: target_s,
        seconds,
        requests,
        per_min: rates,
        target_per_min,
        meets_target: requests.list == 0 && rates.total() <= target_per_min,
        amortized_list_per_min,
        listing_list_per_min: LISTING_IDLE_LISTS_PER_MIN,
        per_month: per_month(&rates),
    })
}

/// The figures as Markdown.
pub fn table(figures: &CostFigures) -> String {
    let mut lines = vec![
        String::new(),
        format!(
            "Requests by class (LIST/PUT/GET/DELETE), dollars per database-month at list prices of {}",
            figures.prices_as_of
        ),
        String::new(),
        "| regions | case | requests | per object or per minute | target | S3 $/month | GCS | Azure | R2 |".into(),
        "|---|---|---|---|---|---|---|---|---|".into(),
    ];
    let money = |rows: &[StoreDollars]| -> String {
        rows.iter()
            .map(|r| dollars(r.dollars_per_month))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for run in &figures.runs {
        for busy in &run.busy {
            lines.push(format!(
                "| {} | {} writes/s, writer {} | {} | {:.2} per object ({} copied; listing: {LISTING_REQUESTS_PER_OBJECT}) | ≤ {} {} | {} |",
                run.regions,
                busy.writes_per_s,
                busy.writer,
                busy.requests.line(),
                busy.requests_per_object,
                busy.objects_copied,
                busy.target_per_object,
                verdict(busy.meets_target),
                money(&busy.per_month)
            ));
        }
        for idle in &run.idle {
            lines.push(format!(
                "| {} | quiet, RPO target {} s | {} | {:.1} a minute (+{:.2} LIST amortized; listing: {LISTING_IDLE_LISTS_PER_MIN} LIST) | ≤ {}, no LIST {} | {} |",
                run.regions,
                idle.rpo_target_s,
                idle.requests.line(),
                idle.per_min.total(),
                idle.amortized_list_per_min,
                idle.target_per_min,
                verdict(idle.meets_target),
                money(&idle.per_month)
            ));
        }
    }
    lines.join("\n")
}
