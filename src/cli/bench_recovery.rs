//! `lifeboat bench recovery`: planned switchovers back and forth under a
//! running workload (RTO p50/p99 to the first write acknowledged through
//! the new endpoint, acknowledged records lost), one failback after writes
//! in the secondary (bytes copied back against the database's size), and
//! one unplanned failover whose old primary keeps writing while the engine
//! cannot reach it (records stranded there against records recovered, and
//! records lost after a full merge). Two local-folder regions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use slatedb::config::{FlushOptions, FlushType};

use lifeboat::config::file_url;
use lifeboat::control::event::OperationKind;
use lifeboat::control::{self};
use lifeboat::error::{Error, Result};
use lifeboat::orchestrator::failover::{self, FailoverOptions};
use lifeboat::orchestrator::merge::{self, MergeOptions, Pick};
use lifeboat::orchestrator::recover::{self, RecoverOptions};
use lifeboat::orchestrator::switchover::{self, SwitchOptions};
use lifeboat::region::faults::FaultPlan;
use lifeboat::region::{Region, RegionSpec};
use lifeboat::replication::pins::BranchPins;
use lifeboat::replication::{Flow, ReplicationOptions, Replicator};
use lifeboat::storage::DbLocation;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::verify::verify;
use lifeboat::workload::{self, Rate, WorkloadReport, WorkloadSpec};

/// Switchover RTO p99 target, milliseconds.
pub const SWITCHOVER_RTO_TARGET_MS: f64 = 5000.0;

const ENGINE: &str = "00000000000000bc";

#[derive(Args, Debug, Clone)]
pub struct RecoveryKnobs {
    /// Planned switchovers (alternating direction).
    #[arg(long, default_value_t = 10)]
    pub switchovers: usize,
    /// Writes per second of the workload running through each switchover
    /// and stranded by the failover.
    #[arg(long, default_value_t = 500)]
    pub recovery_rate: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwitchoverFigures {
    pub switchovers: usize,
    pub all_ok: bool,
    pub rto_p50_ms: f64,
    pub rto_p99_ms: f64,
    pub rto_target_p99_ms: f64,
    /// Acknowledged records missing after a switchover, over all of them.
    pub records_lost: u64,
    /// The slowest switchover's steps and their durations.
    pub slowest_steps: Vec<lifeboat::control::event::Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailbackFigures {
    /// The database as the live branch reads it.
    pub database_bytes: u64,
    /// The live branch's own files when it failed back (made since the
    /// failover).
    pub made_since_failover_bytes: u64,
    /// Copied back: by replication since the failover, and by the failback.
    pub copied_back_bytes: u64,
    /// Copied back over made since the failover, and over the database.
    pub copied_vs_made: f64,
    pub copied_vs_database: f64,
    pub records_lost: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrandedFigures {
    /// Acknowledged in the old primary and absent from the new live branch.
    pub records_stranded: u64,
    /// Of those, held by the recovered branch.
    pub records_recovered: u64,
    /// Acknowledged records missing from the live branch after a full merge.
    pub records_lost_after_merge: u64,
    pub merge_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryFigures {
    pub bench: &'static str,
    pub regions: &'static str,
    pub workload_rate: u64,
    pub switchover: SwitchoverFigures,
    pub failback: FailbackFigures,
    pub stranded: StrandedFigures,
}

pub async fn measure(scratch: &Path, knobs: &RecoveryKnobs) -> Result<RecoveryFigures> {
    if knobs.switchovers == 0 {
        return Err(Error::invalid("--switchovers must be at least 1"));
    }
    let switchover = switchovers(&scratch.join("switchover"), knobs).await?;
    let failback = failback(&scratch.join("failback")).await?;
    let stranded = stranded(&scratch.join("stranded"), knobs.recovery_rate).await?;
    Ok(RecoveryFigures {
        bench: "recovery",
        regions: "local folders",
        workload_rate: knobs.recovery_rate,
        switchover,
        failback,
        stranded,
    })
}

/// Two fresh local regions under `dir`.
fn pair(dir: &Path) -> Result<(Region, Region)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    let open = |name: &str| Region::open(&RegionSpec::new(name, &file_url(&dir.join(name))));
    Ok((open("us-east-1")?, open("eu-west-1")?))
}

fn quick() -> ReplicationOptions {
    ReplicationOptions {
        min_poll: Duration::from_millis(5),
        max_poll: Duration::from_millis(50),
        ..ReplicationOptions::default()
    }
}

/// A workload on `home` until told to stop (or fenced).
fn writing(
    home: &DbLocation,
    acks: &AckLog,
    rate: u64,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<WorkloadReport>>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (home, acks) = (home.clone(), acks.clone());
    let task = tokio::spawn(async move {
        let spec = WorkloadSpec {
            rate: Rate::PerSecond(rate),
            duration: Some(Duration::from_secs(300)),
            records: None,
            value_bytes: 200,
            churn: false,
        };
        workload::run(&home, &spec, &acks, async {
            let _ = stop_rx.await;
        })
        .await
    });
    (stop_tx, task)
}

/// Waits until `replica` holds a workload record.
async fn holds_records(replica: &DbLocation) -> Result<()> {
    for _ in 0..200 {
        if verify(replica, None)
            .await
            .is_ok_and(|v| v.highest_gap_free_seq > 0)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Failed("the replica never held a record".into()))
}

/// Acknowledged records missing from `location`.
async fn missing(location: &DbLocation, acks: &AckLog) -> Result<u64> {
    let report = verify(location, Some(acks)).await?;
    Ok(report.acks.map_or(0, |a| a.missing_acked))
}

async fn switchovers(dir: &Path, knobs: &RecoveryKnobs) -> Result<SwitchoverFigures> {
    let (a, b) = pair(dir)?;
    let regions = vec![a.clone(), b.clone()];
    super::bench_failover::define_shop(&regions).await?;
    DbLocation::in_region(&a, "orders")?.create().await?;
    let acks = AckLog::for_db(&dir.join("acks"), "orders");
    let pins = Arc::new(BranchPins::default());
    let mut rtos = Vec::new();
    let mut all_ok = true;
    let mut lost = 0;
    let mut slowest: (u64, Vec<lifeboat::control::event::Step>) = (0, Vec::new());
    for i in 0..knobs.switchovers {
        let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let home = DbLocation::in_region(from, "orders")?;
        let replicator = Replicator::start(
            vec![Flow::new("orders", "main", from, to)],
            quick(),
            Arc::clone(&pins) as Arc<_>,
        );
        let (stop, writer) = writing(&home, &acks, knobs.recovery_rate);
        holds_records(&DbLocation::in_region(to, "orders")?).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let state = control::load_all(&regions).await?;
        let plan = switchover::plan(
            from,
            to,
            &state,
            &["orders".to_string()],
            OperationKind::Switchover,
        )
        .await?;
        let mut acks_by_db = BTreeMap::new();
        acks_by_db.insert("orders".to_string(), acks.clone());
        let outcome = switchover::switchover(
            &regions,
            &plan,
            ENGINE,
            "bench",
            SwitchOptions {
                port: Some(0),
                serve: true,
                acks: acks_by_db,
                pins: Some(Arc::clone(&pins)),
                replication: Some(quick()),
                ..SwitchOptions::default()
            },
        )
        .await;
        let _ = stop.send(());
        let _ = writer.await;
        replicator.stop().await;
        let outcome = outcome?;
        for ws in outcome.workspaces {
            let _ = ws.stop().await;
        }
        let record = outcome.record;
        all_ok &= record.ok && record.rto_ms.is_some();
        let rto = record.rto_ms.unwrap_or(u64::MAX);
        if rto >= slowest.0 {
            slowest = (rto, record.steps.clone());
        }
        rtos.push(rto as f64);
        lost += missing(&DbLocation::in_region(to, "orders")?, &acks).await?;
    }
    let rtos = super::bench::sorted(rtos);
    Ok(SwitchoverFigures {
        switchovers: knobs.switchovers,
        all_ok,
        rto_p50_ms: super::bench::quantile_ms(&rtos, 0.5),
        rto_p99_ms: super::bench::quantile_ms(&rtos, 0.99),
        rto_target_p99_ms: SWITCHOVER_RTO_TARGET_MS,
        records_lost: lost,
        slowest_steps: slowest.1,
    })
}

/// Fails `orders` over from `a` to `b` without serving it; the new live
/// branch's name.
async fn fail_over(
    regions: &[Region],
    a: &Region,
    b: &Region,
    pins: &Arc<BranchPins>,
) -> Result<String> {
    let state = control::load(b).await?;
    let preview =
        failover::preview(a, b, &state, &["orders".to_string()], failover::Cut::Newest).await?;
    let outcome = failover::failover(
        regions,
        &preview,
        ENGINE,
        "bench",
        FailoverOptions {
            pins: Some(Arc::clone(pins)),
            ..FailoverOptions::default()
        },
    )
    .await?;
    outcome
        .live
        .first()
        .map(|l| l.branch.clone())
        .ok_or_else(|| Error::Failed("the failover made no live branch".into()))
}

async fn failback(dir: &Path) -> Result<FailbackFigures> {
    let (a, b) = pair(dir)?;
    let regions = vec![a.clone(), b.clone()];
    let home = DbLocation::in_region(&a, "orders")?;
    home.create().await?;
    let acks = AckLog::for_db(&dir.join("acks"), "orders");
    // A database that has run a while: 20 000 records of 1 KiB, in SSTs.
    let seed = WorkloadSpec {
        rate: Rate::Max,
        duration: None,
        records: Some(20_000),
        value_bytes: 1024,
        churn: false,
    };
    workload::run(&home, &seed, &acks, std::future::pending()).await?;
    let db = home.open_writer(false).await?;
    let flushed = db
        .flush_with_options(FlushOptions {
            flush_type: FlushType::MemTable,
        })
        .await;
    let closed = db.close().await;
    flushed
        .and(closed)
        .map_err(|e| Error::database(&home.label, &home.db, "flush", &e))?;
    let pins = Arc::new(BranchPins::default());
    let replicator = Replicator::start(
        vec![Flow::new("orders", "main", &a, &b)],
        quick(),
        Arc::clone(&pins) as Arc<_>,
    );
    let synced = replicator
        .wait_until(Duration::from_secs(120), |s| {
            s.state == lifeboat::replication::FlowState::InSync && s.objects_pending == 0
        })
        .await;
    replicator.stop().await;
    if !synced {
        return Err(Error::Failed("the seed never reached the replica".into()));
    }
    let live = fail_over(&regions, &a, &b, &pins).await?;
    // Writes in the secondary, flowing back as they are made.
    let back = Replicator::start(
        vec![Flow::new("orders", &live, &b, &a)],
        quick(),
        Arc::clone(&pins) as Arc<_>,
    );
    let live_loc = DbLocation::branch_in_region(&b, "orders", &live)?;
    let writes = WorkloadSpec {
        rate: Rate::PerSecond(500),
        duration: None,
        records: Some(1000),
        value_bytes: 1024,
        churn: false,
    };
    workload::run(&live_loc, &writes, &acks, std::future::pending()).await?;
    let at_a = DbLocation::branch_in_region(&a, "orders", &live)?;
    for _ in 0..600 {
        if missing(&at_a, &acks).await.is_ok_and(|m| m == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flowed: u64 = back.statuses().iter().map(|s| s.bytes_copied).sum();
    back.stop().await;
    let state = control::load_all(&regions).await?;
    let plan = switchover::plan(
        &b,
        &a,
        &state,
        &["orders".to_string()],
        OperationKind::Failback,
    )
    .await?;
    let outcome = switchover::switchover(
        &regions,
        &plan,
        ENGINE,
        "bench",
        SwitchOptions {
            pins: Some(Arc::clone(&pins)),
            replication: Some(quick()),
            ..SwitchOptions::default()
        },
    )
    .await?;
    let made = live_loc.describe().await?.size_bytes;
    let copied = flowed + outcome.bytes_copied;
    let ratio = |x: u64, y: u64| if y == 0 { 0.0 } else { x as f64 / y as f64 };
    Ok(FailbackFigures {
        database_bytes: outcome.database_bytes,
        made_since_failover_bytes: made,
        copied_back_bytes: copied,
        copied_vs_made: ratio(copied, made),
        copied_vs_database: ratio(copied, outcome.database_bytes),
        records_lost: missing(&at_a, &acks).await?,
    })
}

async fn stranded(dir: &Path, rate: u64) -> Result<StrandedFigures> {
    let (a, b) = pair(dir)?;
    // The workload's own handle: it keeps writing while the engine's
    // handle on the region is cut off.
    let a_writer = Region::open_apart(a.spec())?;
    let regions = vec![a.clone(), b.clone()];
    let home = DbLocation::in_region(&a_writer, "orders")?;
    home.create().await?;
    let acks = AckLog::for_db(&dir.join("acks"), "orders");
    let pins = Arc::new(BranchPins::default());
    let replicator = Replicator::start(
        vec![Flow::new("orders", "main", &a, &b)],
        quick(),
        Arc::clone(&pins) as Arc<_>,
    );
    let (stop, writer) = writing(&home, &acks, rate);
    holds_records(&DbLocation::in_region(&b, "orders")?).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outage: FaultPlan = "outage"
        .parse()
        .map_err(|e| Error::Failed(format!("fault plan: {e}")))?;
    a.faults().set(&outage);
    let failed_over = fail_over(&regions, &a, &b, &pins).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.faults().set(&FaultPlan::default());
    let live = failed_over?;
    let state = control::load_all(&regions).await?;
    let recovered = recover::recover(
        &regions,
        &state,
        "orders",
        ENGINE,
        "bench",
        RecoverOptions {
            pins: Some(Arc::clone(&pins)),
            replication: Some(quick()),
            ..RecoverOptions::default()
        },
    )
    .await;
    let _ = stop.send(());
    let _ = writer.await;
    replicator.stop().await;
    let recovered = recovered?
        .recovered
        .ok_or_else(|| Error::Failed("nothing was stranded".into()))?;
    let live_loc = DbLocation::branch_in_region(&b, "orders", &live)?;
    let branch = DbLocation::branch_in_region(&b, "orders", &recovered.branch)?;
    let held = verify(&live_loc, None).await?.highest_gap_free_seq;
    let acked: Vec<u64> = acks
        .read()?
        .unwrap_or_default()
        .iter()
        .flat_map(|b| b.first..=b.last)
        .filter(|seq| *seq > held)
        .collect();
    let in_recovered = verify(&branch, Some(&acks)).await?;
    let missing_there = in_recovered
        .acks
        .map_or(0, |a| a.missing_acked_ranges.count());
    let started = std::time::Instant::now();
    let state = control::load_all(&regions).await?;
    merge::merge(
        &regions,
        &state,
        "orders",
        &recovered.branch,
        ENGINE,
        "bench",
        MergeOptions {
            pick: Pick::All,
            ..MergeOptions::default()
        },
    )
    .await?;
    let merge_ms = started.elapsed().as_millis() as u64;
    Ok(StrandedFigures {
        records_stranded: acked.len() as u64,
        records_recovered: (acked.len() as u64).saturating_sub(missing_there),
        records_lost_after_merge: missing(&live_loc, &acks).await?,
        merge_ms,
    })
}

/// The figures as Markdown tables.
pub fn table(f: &RecoveryFigures) -> String {
    let s = &f.switchover;
    let b = &f.failback;
    let r = &f.stranded;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    [
        format!(
            "\nSwitchover, failback and stranded writes on {}, under {} writes/s:",
            f.regions, f.workload_rate
        ),
        String::new(),
        "| switchovers | all ok | RTO p50 / p99 (ms) | RTO target p99 | acknowledged records lost |".into(),
        "|---|---|---|---|---|".into(),
        format!(
            "| {} | {} | {:.0} / {:.0} | {:.0} | {} |",
            s.switchovers,
            if s.all_ok { "yes" } else { "NO" },
            s.rto_p50_ms,
            s.rto_p99_ms,
            s.rto_target_p99_ms,
            s.records_lost
        ),
        String::new(),
        "| failback: database | made since failover | copied back | copied / made | copied / database | records lost |".into(),
        "|---|---|---|---|---|---|".into(),
        format!(
            "| {:.1} MiB | {:.2} MiB | {:.2} MiB | {:.2} | {:.3} | {} |",
            mib(b.database_bytes),
            mib(b.made_since_failover_bytes),
            mib(b.copied_back_bytes),
            b.copied_vs_made,
            b.copied_vs_database,
            b.records_lost
        ),
        String::new(),
        "| records stranded | records recovered | lost after a full merge | merge (ms) |".into(),
        "|---|---|---|---|".into(),
        format!(
            "| {} | {} | {} | {} |",
            r.records_stranded, r.records_recovered, r.records_lost_after_merge, r.merge_ms
        ),
    ]
    .join("\n")
}
