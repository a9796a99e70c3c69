//! `lifeboat bench scale`: one engine (`lifeboat serve`, a process of its
//! own) replicating a thousand databases, a few of them written steadily
//! by writers in this process, the rest quiet (issue 19). Measured: the
//! seed of them all, the engine's CPU and resident memory while they are
//! written and once they are all quiet, the requests a minute it asks of
//! each region, the lag of the written ones as the engine publishes it,
//! and how long `lifeboat status` takes to answer.
//!
//! Targets: idle CPU under 10% of a core, under 1 MiB resident per
//! database, the writers' lag p99 under 1 s, `status` under a second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde::Serialize;

use lifeboat::cost::RegionCost;
use lifeboat::engine::published;
use lifeboat::error::{Error, Result};
use lifeboat::region::{Region, RegionSpec};
use lifeboat::replication::FlowState;
use lifeboat::storage::DbLocation;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{self, Rate, WorkloadSpec};

use super::bench::{quantile_ms, sorted};
use super::bench_engine::{Serve, lifeboat, run, use_regions};
use crate::parse_duration;

const TARGET_IDLE_CPU_PCT: f64 = 10.0;
const TARGET_RSS_PER_DB_KIB: f64 = 1024.0;
const TARGET_LAG_P99_S: f64 = 1.0;
const TARGET_STATUS_MS: f64 = 1000.0;

/// How long the engine settles after the seed before anything is measured
/// (past its next look at the database names).
const SETTLE: Duration = Duration::from_secs(20);

/// Databases made at once while setting up.
const CREATES_IN_FLIGHT: usize = 16;

#[derive(Args, Debug, Clone)]
pub struct ScaleKnobs {
    /// Databases in the group.
    #[arg(long = "scale-dbs", default_value_t = 1000)]
    pub scale_dbs: usize,
    /// How many of them are written.
    #[arg(long = "scale-writers", default_value_t = 50)]
    pub scale_writers: usize,
    /// Records a second each writer writes.
    #[arg(long = "scale-rate", default_value_t = 200)]
    pub scale_rate: u64,
    /// How long the writers write while the engine is measured.
    #[arg(long = "scale-busy-for", default_value = "60s", value_parser = parse_duration)]
    pub scale_busy_for: Duration,
    /// How long the engine is measured once every database is quiet.
    #[arg(long = "scale-idle-for", default_value = "30s", value_parser = parse_duration)]
    pub scale_idle_for: Duration,
}

#[derive(Debug, Serialize)]
pub struct ScaleFigures {
    pub bench: &'static str,
    pub regions: &'static str,
    pub dbs: usize,
    pub writers: usize,
    pub records_per_s_each: u64,
    /// From `group configure` until every replica was in sync.
    pub seed_s: f64,
    pub busy_cpu_pct: f64,
    pub idle_cpu_pct: f64,
    pub idle_cpu_target_pct: f64,
    pub rss_mib: f64,
    pub rss_per_db_kib: f64,
    pub rss_per_db_target_kib: f64,
    /// The written databases' WAL delay p99 over the last minute, as the
    /// engine published it: the median database's, and the worst's.
    pub writer_lag_p50_s: f64,
    pub writer_lag_p99_s: f64,
    pub writer_lag_target_p99_s: f64,
    pub records_acked: u64,
    /// What the engine asked of each region a minute, busy and quiet.
    pub busy_requests: Vec<RegionCost>,
    pub idle_requests: Vec<RegionCost>,
    /// The slowest of three `lifeboat status` runs.
    pub status_ms: f64,
    pub status_target_ms: f64,
    pub meets_targets: bool,
}

pub fn table(f: &ScaleFigures) -> String {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let requests = |rows: &[RegionCost]| {
        rows.iter()
            .map(|r| {
                format!(
                    "{}: {:.0} LIST, {:.0} PUT, {:.0} GET, {:.0} DELETE ({} a month at {})",
                    r.region,
                    r.per_min.list,
                    r.per_min.put,
                    r.per_min.get,
                    r.per_min.delete,
                    lifeboat::cost::dollars(r.month),
                    r.store
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    [
        String::new(),
        format!(
            "One engine, {} databases on {} ({} written at {} records/s each); seeded in {:.0} s",
            f.dbs, f.regions, f.writers, f.records_per_s_each, f.seed_s
        ),
        String::new(),
        "| figure | measured | target |".into(),
        "|---|---|---|".into(),
        format!(
            "| engine CPU, all quiet | {:.1}% of a core | < {} % {} |",
            f.idle_cpu_pct,
            f.idle_cpu_target_pct,
            verdict(f.idle_cpu_pct < f.idle_cpu_target_pct)
        ),
        format!(
            "| engine CPU, {} written | {:.1}% of a core | |",
            f.writers, f.busy_cpu_pct
        ),
        format!(
            "| engine resident memory | {:.0} MiB, {:.0} KiB a database | < {} KiB {} |",
            f.rss_mib,
            f.rss_per_db_kib,
            f.rss_per_db_target_kib,
            verdict(f.rss_per_db_kib < f.rss_per_db_target_kib)
        ),
        format!(
            "| lag of the written ones (WAL delay p99: median database, worst) | {:.2} s, {:.2} s | p99 < {} s {} |",
            f.writer_lag_p50_s,
            f.writer_lag_p99_s,
            f.writer_lag_target_p99_s,
            verdict(f.writer_lag_p99_s < f.writer_lag_target_p99_s)
        ),
        format!(
            "| `lifeboat status` | {:.0} ms | < {} ms {} |",
            f.status_ms,
            f.status_target_ms,
            verdict(f.status_ms < f.status_target_ms)
        ),
        String::new(),
        format!("Requests a minute while written: {}", requests(&f.busy_requests)),
        format!("Requests a minute, all quiet: {}", requests(&f.idle_requests)),
    ]
    .join("\n")
}

/// CPU seconds a process used so far (`/proc/PID/stat`, in the kernel's
/// USER_HZ of 100 ticks a second).
fn cpu_s(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| Error::Failed(format!("reading the engine's CPU time: {e}")))?;
    // The command name may hold spaces: fields count from after its `)`.
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, the 12th and 13th after `)`.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// Resident memory of a process, bytes.
fn rss_bytes(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error::Failed(format!("reading the engine's memory: {e}")))?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(kib * 1024)
}

/// The engine's published view, read from the stores as a client would.
async fn view(regions: &[Region]) -> Result<Option<published::RemoteView>> {
    published::read(regions).await
}

/// One engine over `knobs.scale_dbs` databases in `specs` (named
/// us-east-1 and eu-west-1), `kind` saying what they are for the table.
pub async fn measure(
    scratch: &Path,
    knobs: &ScaleKnobs,
    specs: Vec<RegionSpec>,
    kind: &'static str,
) -> Result<ScaleFigures> {
    let data: PathBuf = scratch.join("engine");
    use_regions(&data, &specs)?;
    let regions: Vec<Region> = specs.iter().map(Region::open).collect::<Result<_>>()?;
    let names: Vec<String> = (0..knobs.scale_dbs).map(|i| format!("db-{i:04}")).collect();
    eprintln!("bench: scale, creating {} databases", knobs.scale_dbs);
    let primary = &regions[0];
    let created: Vec<Result<lifeboat::storage::BranchInfo>> = futures::stream::iter(
        names
            .iter()
            .map(|name| async move { DbLocation::in_region(primary, name)?.create().await }),
    )
    .buffer_unordered(CREATES_IN_FLIGHT)
    .collect()
    .await;
    created.into_iter().collect::<Result<Vec<_>>>()?;

    eprintln!("bench: scale, seeding them");
    let started = Instant::now();
    run(&data, &["group", "configure", "--secondary", "eu-west-1"])?;
    let engine = lifeboat(&data)?
        .args(["serve", "--report-every", "600s"])
        .spawn()
        .map(Serve)
        .map_err(|e| Error::Failed(format!("starting lifeboat serve: {e}")))?;
    let pid = engine.0.id();
    let seed_within = Duration::from_secs(60) + Duration::from_millis(300) * knobs.scale_dbs as u32;
    loop {
        if let Some(v) = view(&regions).await? {
            let flows = &v.published.flows;
            let synced = flows
                .iter()
                .filter(|f| f.status.state == FlowState::InSync)
                .count();
            if flows.len() == knobs.scale_dbs && synced == knobs.scale_dbs {
                break;
            }
        }
        if started.elapsed() > seed_within {
            return Err(Error::Failed(format!(
                "the engine did not seed {} databases within {} s",
                knobs.scale_dbs,
                seed_within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seed_s = started.elapsed().as_secs_f64();
    // The engine's one-off looks after a seed (the replicas' names appear
    // at the secondary and are described once) are a seed's cost, not a
    // steady one: they pass before anything is measured.
    tokio::time::sleep(SETTLE).await;

    eprintln!(
        "bench: scale, {} writers at {} records/s for {} s",
        knobs.scale_writers,
        knobs.scale_rate,
        knobs.scale_busy_for.as_secs()
    );
    let written: Vec<String> = names.iter().take(knobs.scale_writers).cloned().collect();
    let spec = WorkloadSpec {
        rate: Rate::PerSecond(knobs.scale_rate),
        duration: Some(knobs.scale_busy_for + Duration::from_secs(5)),
        records: None,
        value_bytes: 100,
        churn: false,
    };
    let writers: Vec<_> = written
        .iter()
        .map(|name| {
            let home = DbLocation::in_region(primary, name);
            let acks = AckLog::for_db(&scratch.join("acks"), name);
            let spec = spec.clone();
            tokio::spawn(async move {
                workload::run(&home?, &spec, &acks, std::future::pending()).await
            })
        })
        .collect();
    // The first seconds of writing are the writers opening.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let busy = measure_window(pid, &regions, knobs.scale_busy_for, &written).await?;
    let mut records_acked = 0;
    for writer in writers {
        let report = writer
            .await
            .map_err(|e| Error::Failed(format!("a bench writer stopped: {e}")))??;
        if let Some(err) = report.error {
            return Err(Error::Failed(format!("a bench writer: {err}")));
        }
        records_acked += report.records_acked;
    }

    eprintln!(
        "bench: scale, all quiet for {} s",
        knobs.scale_idle_for.as_secs()
    );
    // Past the writers' last files and their copier's busy pace.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = measure_window(pid, &regions, knobs.scale_idle_for, &[]).await?;

    let mut status_ms: f64 = 0.0;
    for _ in 0..3 {
        let at = Instant::now();
        run(&data, &["status"])?;
        status_ms = status_ms.max(at.elapsed().as_secs_f64() * 1000.0);
    }
    drop(engine);

    let lags = sorted(busy.lags);
    let rss_per_db_kib = idle.rss_max as f64 / 1024.0 / knobs.scale_dbs.max(1) as f64;
    // The worst database's p99 stands for the p99 of them all.
    let lag_p99 = lags.last().copied().unwrap_or(0.0);
    Ok(ScaleFigures {
        bench: "scale",
        regions: kind,
        dbs: knobs.scale_dbs,
        writers: knobs.scale_writers,
        records_per_s_each: knobs.scale_rate,
        seed_s,
        busy_cpu_pct: busy.cpu_pct,
        idle_cpu_pct: idle.cpu_pct,
        idle_cpu_target_pct: TARGET_IDLE_CPU_PCT,
        rss_mib: busy.rss_max.max(idle.rss_max) as f64 / 1024.0 / 1024.0,
        rss_per_db_kib,
        rss_per_db_target_kib: TARGET_RSS_PER_DB_KIB,
        writer_lag_p50_s: quantile_ms(&lags, 0.5),
        writer_lag_p99_s: lag_p99,
        writer_lag_target_p99_s: TARGET_LAG_P99_S,
        records_acked,
        busy_requests: busy.requests,
        idle_requests: idle.requests,
        status_ms,
        status_target_ms: TARGET_STATUS_MS,
        meets_targets: idle.cpu_pct < TARGET_IDLE_CPU_PCT
            && rss_per_db_kib < TARGET_RSS_PER_DB_KIB
            && (knobs.scale_writers == 0 || lag_p99 < TARGET_LAG_P99_S)
            && status_ms < TARGET_STATUS_MS,
    })
}

/// What one window of the engine looked like.
struct Window {
    cpu_pct: f64,
    rss_max: u64,
    /// Each watched database's last-minute WAL delay p99 as published
    /// last, seconds.
    lags: Vec<f64>,
    requests: Vec<RegionCost>,
}

/// The engine `pid` for `length`: its CPU, its largest resident size, the
/// WAL delay p99 of the databases `watched` as it last published them, and
/// the requests a minute it counted per region over the window (from its
/// published totals, first look to last).
async fn measure_window(
    pid: u32,
    regions: &[Region],
    length: Duration,
    watched: &[String],
) -> Result<Window> {
    let cpu_before = cpu_s(pid)?;
    let started = Instant::now();
    let mut rss_max = 0;
    let mut first: Option<published::RemoteView> = None;
    let mut last: Option<published::RemoteView> = None;
    while started.elapsed() < length {
        rss_max = rss_max.max(rss_bytes(pid)?);
        if let Some(v) = view(regions).await? {
            if first.is_none() {
                first = Some(v.clone());
            }
            last = Some(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = cpu_s(pid)? - cpu_before;
    let (Some(first), Some(last)) = (first, last) else {
        return Err(Error::Failed("the engine published nothing".into()));
    };
    let minutes = last
        .published
        .published_ms
        .saturating_sub(first.published.published_ms) as f64
        / 60_000.0;
    let requests = last
        .published
        .cost
        .regions
        .iter()
        .map(|r| {
            let before = first
                .published
                .cost
                .regions
                .iter()
                .find(|b| b.region == r.region)
                .map_or_else(Default::default, |b| b.total);
            let per_min = lifeboat::cost::Rates::over(&r.total.since(&before), minutes);
            let month = lifeboat::cost::published()
                .iter()
                .find(|p| p.store == r.store)
                .map_or(0.0, |p| p.requests_per_month(&per_min));
            RegionCost {
                per_min,
                month,
                ..r.clone()
            }
        })
        .collect();
    let lags = last
        .published
        .flows
        .iter()
        .filter(|f| watched.contains(&f.status.db))
        .map(|f| {
            f.status
                .wal_delay_p99_ms
                .map_or(0.0, |ms| ms as f64 / 1000.0)
        })
        .collect();
    Ok(Window {
        cpu_pct: cpu / started.elapsed().as_secs_f64() * 100.0,
        rss_max,
        lags,
        requests,
    })
}
