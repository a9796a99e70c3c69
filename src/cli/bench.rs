//! `lifeboat bench replicate`: the replication figures, measured on two
//! fresh local-folder regions in a scratch folder, next to `rclone` in the
//! same run. Prints JSON.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use lifeboat::config::file_url;
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::region::{Region, RegionSpec};
use lifeboat::replication::files::{Dir, FileRef, Side};
use lifeboat::replication::pins::NoPins;
use lifeboat::replication::{Flow, ReplicationOptions, Replicator, replicator};
use lifeboat::storage::{DbLocation, branch_path};
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{self, Rate, WorkloadSpec};

use crate::{Ctx, parse_duration};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Seed speed against rclone, lag under a steady workload, idle requests.
    Replicate(ReplicateBench),
}

#[derive(Args, Debug)]
pub struct ReplicateBench {
    /// How much data to seed (1GiB, 200MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// How long the steady workload runs while lag is sampled.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    lag_for: Duration,
    /// Writes per second during the lag measurement.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long requests are counted on an idle branch.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_for: Duration,
    /// Copies in flight (Lifeboat) and transfers (rclone).
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// Also write the JSON here.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Keep the scratch folder (under <data-dir>/bench) afterwards.
    #[arg(long)]
    keep: bool,
}

fn parse_size(text: &str) -> std::result::Result<u64, String> {
    lifeboat::region::faults::parse_bytes(text)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a size; write it like 1GiB or 200MiB"))
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    os: String,
    build: &'static str,
}

#[derive(Serialize)]
struct SeedFigures {
    bytes: u64,
    objects: u64,
    lifeboat_s: f64,
    lifeboat_mb_s: f64,
    rclone_s: Option<f64>,
    rclone_mb_s: Option<f64>,
    rclone_version: Option<String>,
    /// Lifeboat's speed over rclone's (above 1: faster).
    ratio_vs_rclone: Option<f64>,
    replica_check: String,
}

#[derive(Serialize)]
struct LagFigures {
    writes_per_s: u64,
    seconds: f64,
    records_acked: u64,
    /// Per WAL file: replica write time minus home write time.
    wal_files: usize,
    wal_delay_p50_ms: f64,
    wal_delay_p99_ms: f64,
    wal_delay_max_ms: f64,
    /// The true RPO seen from outside the replicator, every 100 ms: now
    /// minus the write time of the oldest home WAL file the replica lacks
    /// (0 when it lacks none), from listings of both regions.
    rpo_samples: usize,
    rpo_p50_ms: f64,
    rpo_p99_ms: f64,
    rpo_max_ms: f64,
}

#[derive(Serialize)]
struct IdleFigures {
    seconds: f64,
    requests: u64,
    requests_per_min: f64,
    max_poll_ms: u64,
}

#[derive(Serialize)]
struct ReplicateFigures {
    bench: &'static str,
    machine: Machine,
    regions: &'static str,
    parallel: usize,
    seed: SeedFigures,
    lag: LagFigures,
    idle: IdleFigures,
}

pub async fn run(ctx: &Ctx, command: BenchCommand) -> Result<i32> {
    match command {
        BenchCommand::Replicate(args) => replicate(ctx, args).await,
    }
}

fn quantile_ms(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn region_at(dir: &Path, name: &str) -> Result<Region> {
    Region::open(&RegionSpec::new(name, &file_url(&dir.join(name))))
}

async fn replicate(ctx: &Ctx, args: ReplicateBench) -> Result<i32> {
    let scratch = ctx
        .home
        .data_dir
        .join("bench")
        .join(format!("replicate-{}", workload::now_us()));
    std::fs::create_dir_all(&scratch).map_err(|e| Error::file(&scratch, e))?;
    let result = replicate_in(&scratch, &args).await;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let figures = result?;
    let json = serde_json::to_string_pretty(&figures)
        .map_err(|e| Error::Failed(format!("cannot encode the figures: {e}")))?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json).map_err(|e| Error::file(path, e))?;
    }
    println!("{json}");
    Ok(exit_code::OK)
}

async fn replicate_in(scratch: &Path, args: &ReplicateBench) -> Result<ReplicateFigures> {
    let a = region_at(scratch, "bench-a")?;
    let b = region_at(scratch, "bench-b")?;
    let opts = ReplicationOptions {
        copies_in_flight: args.parallel,
        ..ReplicationOptions::default()
    };
    let seed = seed(scratch, &a, &b, args, &opts).await?;
    let lag = lag(scratch, &a, &b, args, &opts).await?;
    let idle = idle(&a, &b, args, &opts).await?;
    Ok(ReplicateFigures {
        bench: "replicate",
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.to_string(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        },
        regions: "two local folders on one disk",
        parallel: args.parallel,
        seed,
        lag,
        idle,
    })
}

async fn fill(location: &DbLocation, scratch: &Path, bytes: u64, rate: Rate) -> Result<u64> {
    const VALUE_BYTES: usize = 4000;
    let spec = WorkloadSpec {
        rate,
        duration: None,
        records: Some((bytes / VALUE_BYTES as u64).max(1)),
        value_bytes: VALUE_BYTES,
        churn: false,
    };
    let acks = AckLog::for_db(&scratch.join("acks"), &location.db);
    let report = workload::run(location, &spec, &acks, std::future::pending()).await?;
    if let Some(err) = report.error {
        return Err(Error::Failed(format!("filling {}: {err}", location.db)));
    }
    Ok(report.records_acked)
}

async fn seed(
    scratch: &Path,
    a: &Region,
    b: &Region,
    args: &ReplicateBench,
    opts: &ReplicationOptions,
) -> Result<SeedFigures> {
    let home = DbLocation::in_region(a, "seed")?;
    home.create().await?;
    eprintln!("bench: writing {} MiB into bench-a/seed", args.size >> 20);
    fill(&home, scratch, args.size, Rate::Max).await?;
    let info = home.describe().await?;

    eprintln!("bench: seeding bench-b from bench-a");
    let started = Instant::now();
    let results = replicator::once(
        vec![Flow::new("seed", "main", a, b)],
        opts.clone(),
        Arc::new(NoPins),
    )
    .await;
    let lifeboat_s = started.elapsed().as_secs_f64();
    let mut copied = (0, 0);
    for (_, result) in results {
        let status = result?;
        copied = (status.bytes_copied, status.objects_copied);
    }
    let replica = DbLocation::in_region(b, "seed")?;
    let verified = workload::verify::verify(&replica, None).await?;
    let replica_check = format!(
        "{} records, gap-free up to {}, consistent {}",
        verified.records, verified.highest_gap_free_seq, verified.consistent
    );

    let rclone = rclone_copy(
        &scratch.join("bench-a").join("dbs").join("seed"),
        &scratch.join("rclone-copy"),
        args.parallel,
    );
    let (rclone_s, rclone_version) = match rclone {
        Ok((secs, version)) => (Some(secs), Some(version)),
        Err(err) => {
            eprintln!("bench: rclone left out: {err}");
            (None, None)
        }
    };
    let mb = copied.0 as f64 / 1e6;
    let lifeboat_mb_s = mb / lifeboat_s;
    let rclone_mb_s = rclone_s.map(|s| info.size_bytes as f64 / 1e6 / s);
    Ok(SeedFigures {
        bytes: copied.0,
        objects: copied.1,
        lifeboat_s,
        lifeboat_mb_s,
        rclone_s,
        rclone_mb_s,
        rclone_version,
        ratio_vs_rclone: rclone_mb_s.map(|r| lifeboat_mb_s / r),
        replica_check,
    })
}

/// Installs rclone when it is missing and this user may (root), then times
/// `rclone copy` of `from` into `to`.
fn rclone_copy(from: &Path, to: &Path, transfers: usize) -> Result<(f64, String)> {
    let version = || {
        Command::new("rclone")
            .arg("version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
    };
    if version().is_none() {
        eprintln!("bench: installing rclone (apt-get install rclone)");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        // A fresh machine may have no package lists yet.
        if !apt(&["install", "-y", "-q", "rclone"]) {
            apt(&["update", "-q"]);
            apt(&["install", "-y", "-q", "rclone"]);
        }
    }
    let version = version().ok_or_else(|| {
        Error::Failed(
            "rclone is not installed and could not be installed; `apt-get install rclone`".into(),
        )
    })?;
    let started = Instant::now();
    let status = Command::new("rclone")
        .arg("copy")
        .arg(from)
        .arg(to)
        .args([
            "--transfers",
            &transfers.to_string(),
            "--checkers",
            &transfers.to_string(),
        ])
        .status()
        .map_err(|e| Error::Failed(format!("running rclone: {e}")))?;
    if !status.success() {
        return Err(Error::Failed(format!("rclone copy failed ({status})")));
    }
    Ok((started.elapsed().as_secs_f64(), version))
}

async fn lag(
    scratch: &Path,
    a: &Region,
    b: &Region,
    args: &ReplicateBench,
    opts: &ReplicationOptions,
) -> Result<LagFigures> {
    let home = DbLocation::in_region(a, "lag")?;
    home.create().await?;
    let replicator = Replicator::start(
        vec![Flow::new("lag", "main", a, b)],
        opts.clone(),
        Arc::new(NoPins),
    );
    eprintln!(
        "bench: {} writes/s for {}s while bench-b follows",
        args.rate,
        args.lag_for.as_secs()
    );
    let spec = WorkloadSpec {
        rate: Rate::PerSecond(args.rate),
        duration: Some(args.lag_for),
        records: None,
        value_bytes: 100,
        churn: false,
    };
    let acks = AckLog::for_db(&scratch.join("acks"), "lag");
    let run = workload::run(&home, &spec, &acks, std::future::pending());
    tokio::pin!(run);
    // The first seconds seed an empty database: they are not steady state.
    let warm_until = Instant::now() + Duration::from_secs(2);
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let observer = RpoObserver::new(a, b, "lag");
    let mut rpo = Vec::new();
    let report = loop {
        tokio::select! {
            report = &mut run => break report?,
            _ = every.tick() => {
                if Instant::now() < warm_until {
                    replicator.drain_wal_delays_ms();
                    continue;
                }
                rpo.push(observer.rpo_ms().await?);
            }
        }
    };
    let delays = sorted(
        replicator
            .drain_wal_delays_ms()
            .into_iter()
            .map(f64::from)
            .collect(),
    );
    replicator.stop().await;
    let rpo = sorted(rpo);
    Ok(LagFigures {
        writes_per_s: args.rate,
        seconds: report.elapsed_s,
        records_acked: report.records_acked,
        wal_files: delays.len(),
        wal_delay_p50_ms: quantile_ms(&delays, 0.50),
        wal_delay_p99_ms: quantile_ms(&delays, 0.99),
        wal_delay_max_ms: delays.last().copied().unwrap_or(0.0),
        rpo_samples: rpo.len(),
        rpo_p50_ms: quantile_ms(&rpo, 0.50),
        rpo_p99_ms: quantile_ms(&rpo, 0.99),
        rpo_max_ms: rpo.last().copied().unwrap_or(0.0),
    })
}

/// Lists both regions' WAL folders of one branch to measure the RPO from
/// outside the replicator (which cannot see writes it has not listed yet).
struct RpoObserver {
    home: Side,
    replica: Side,
}

impl RpoObserver {
    fn new(home: &Region, replica: &Region, db: &str) -> RpoObserver {
        let side = |region: &Region| Side {
            region: region.name().to_string(),
            store: region.store(),
            base: branch_path(db, "main"),
            requests: Default::default(),
        };
        RpoObserver {
            home: side(home),
            replica: side(replica),
        }
    }

    async fn rpo_ms(&self) -> Result<f64> {
        let now = workload::now_us();
        // The replica first: a file it gets after this listing only makes
        // the measured RPO larger, never smaller.
        let replica: HashSet<FileRef> = self
            .replica
            .list(Dir::Wal, None)
            .await?
            .into_iter()
            .map(|(file, _)| file)
            .collect();
        let home = self.home.list(Dir::Wal, None).await?;
        let oldest_missing = home
            .iter()
            .filter(|(file, _)| !replica.contains(file))
            .map(|(_, meta)| meta.modified_us)
            .min();
        Ok(oldest_missing.map_or(0.0, |since| now.saturating_sub(since) as f64 / 1000.0))
    }
}

async fn idle(
    a: &Region,
    b: &Region,
    args: &ReplicateBench,
    opts: &ReplicationOptions,
) -> Result<IdleFigures> {
    let replicator = Replicator::start(
        vec![Flow::new("lag", "main", a, b)],
        opts.clone(),
        Arc::new(NoPins),
    );
    // Let it load, catch up and settle into its longest poll.
    replicator
        .wait_until(Duration::from_secs(60), |s| {
            s.objects_pending == 0 && s.passes > 0
        })
        .await;
    tokio::time::sleep(opts.max_poll * 4).await;
    let before: u64 = replicator.statuses().iter().map(|s| s.requests_total).sum();
    eprintln!(
        "bench: counting requests on an idle branch for {}s",
        args.idle_for.as_secs()
    );
    let started = Instant::now();
    tokio::time::sleep(args.idle_for).await;
    let seconds = started.elapsed().as_secs_f64();
    let after: u64 = replicator.statuses().iter().map(|s| s.requests_total).sum();
    replicator.stop().await;
    let requests = after - before;
    Ok(IdleFigures {
        seconds,
        requests,
        requests_per_min: requests as f64 * 60.0 / seconds,
        max_poll_ms: opts.max_poll.as_millis() as u64,
    })
}
