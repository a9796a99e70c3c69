//! `lifeboat bench replicate`: the replication figures, measured on two
//! fresh local-folder regions in a scratch folder, next to `rclone` in the
//! same run. Prints JSON.
//!
//! `lifeboat bench all`: every benchmark, on local folders and on S3 (the
//! two SeaweedFS servers of `scripts/s3-servers`), as one table and one
//! JSON file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use lifeboat::config::file_url;
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::region::{Region, RegionSpec};
use lifeboat::replication::pins::NoPins;
use lifeboat::replication::{Flow, ReplicationOptions, Replicator, replicator};
use lifeboat::storage::files::{Dir, FileRef, Side};
use lifeboat::storage::{DbLocation, branch_path};
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{self, Rate, WorkloadSpec};

use super::bench_cost::{self, CostFigures, CostKnobs};
use super::bench_engine;
use super::bench_failover;
use super::bench_recovery;
use super::bench_scale;
use super::bench_workspace::{self, WorkspaceFigures, WorkspaceKnobs};
use crate::{Ctx, parse_duration};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Seed speed against rclone, lag under a steady workload, idle requests.
    Replicate(ReplicateBench),
    /// Every benchmark on local folders and on S3 regions; prints a table.
    /// `lifeboat bench all --json FILE` also writes the figures to FILE.
    All(Box<AllBench>),
    /// `redis-benchmark -t set,get` against a workspace and against
    /// redis-server on this machine, with the ratio.
    Workspace(WorkspaceBench),
    /// Failovers under a running workload, on demand, pre-provisioned and
    /// as `lifeboat failover --yes` in a process of its own:
    /// RTO and RPO p50/p99 against the targets.
    Failover(FailoverBench),
    /// (For `bench failover`: a client that writes at ADDR until a write
    /// is acknowledged, and prints when.)
    #[command(hide = true)]
    FirstWrite {
        #[arg(long)]
        addr: String,
    },
    /// Two `serve` engines on one group: standby takeover after SIGKILL,
    /// staleness of the published status, the requests both cost.
    Engine(EngineBench),
    /// Requests by class per object copied under a steady writer and per
    /// quiet minute at RPO targets 1 s and 10 s, in dollars a
    /// database-month at S3, GCS, Azure and R2 list prices.
    Cost(CostBench),
    /// One engine replicating a thousand databases, some written: CPU,
    /// resident memory, requests a minute, the writers' lag, `status` time.
    Scale(ScaleBench),
    /// Switchovers under a running workload (RTO p50/p99), a failback's
    /// bytes copied against the database's size, and records stranded by a
    /// failover against records recovered.
    Recovery(RecoveryBench),
}

#[derive(Args, Debug)]
pub struct EngineBench {
    #[command(flatten)]
    knobs: bench_engine::EngineKnobs,
}

#[derive(Args, Debug)]
pub struct CostBench {
    #[command(flatten)]
    knobs: CostKnobs,
}

#[derive(Args, Debug)]
pub struct ScaleBench {
    #[command(flatten)]
    knobs: bench_scale::ScaleKnobs,
}

#[derive(Args, Debug)]
pub struct RecoveryBench {
    #[command(flatten)]
    knobs: bench_recovery::RecoveryKnobs,
}

#[derive(Args, Debug)]
pub struct FailoverBench {
    #[command(flatten)]
    knobs: bench_failover::FailoverKnobs,
}

#[derive(Args, Debug)]
pub struct WorkspaceBench {
    #[command(flatten)]
    knobs: WorkspaceKnobs,
}

#[derive(Args, Debug)]
pub struct AllBench {
    /// Where to write the JSON figures (with the global --json).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    knobs: ReplicateKnobs,
    #[command(flatten)]
    workspace: WorkspaceKnobs,
    #[command(flatten)]
    failover: bench_failover::FailoverKnobs,
    #[command(flatten)]
    recovery: bench_recovery::RecoveryKnobs,
    #[command(flatten)]
    engine: bench_engine::EngineKnobs,
    #[command(flatten)]
    cost: CostKnobs,
    #[command(flatten)]
    scale: bench_scale::ScaleKnobs,
}

/// What the replication benchmark measures, and how hard.
#[derive(Args, Debug)]
pub struct ReplicateKnobs {
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
}

#[derive(Args, Debug)]
pub struct ReplicateBench {
    #[command(flatten)]
    knobs: ReplicateKnobs,
    /// Also write the JSON here.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Keep the scratch folder (under <data-dir>/bench) afterwards.
    #[arg(long)]
    keep: bool,
    /// Where the two regions are: two fresh local folders, or one on each
    /// S3 server of `scripts/s3-servers` (its environment sourced).
    #[arg(long, value_enum, default_value = "local")]
    on: BenchRegions,
}

/// Where `bench replicate` puts its two regions.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum BenchRegions {
    Local,
    S3,
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
    /// Every file of the database at the home (what rclone copies).
    database_bytes: u64,
    database_objects: u64,
    /// What Lifeboat copied: the newest state, not the history.
    bytes: u64,
    objects: u64,
    /// From the start to a replica that opens at the home's newest state.
    lifeboat_s: f64,
    /// Bytes Lifeboat moved a second.
    lifeboat_mb_s: f64,
    rclone_s: Option<f64>,
    /// Bytes rclone moved a second.
    rclone_mb_s: Option<f64>,
    rclone_version: Option<String>,
    /// rclone's time over Lifeboat's, for the same database (above 1:
    /// Lifeboat had a replica sooner).
    ratio_vs_rclone: Option<f64>,
    /// Lifeboat's bytes a second over rclone's.
    throughput_ratio_vs_rclone: Option<f64>,
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
    /// The same, counted from when the observer first listed that file
    /// rather than from the time the store stamped on it: immune to stamps
    /// in whole seconds (S3 truncates Last-Modified), low by up to one
    /// sampling interval.
    rpo_seen_p50_ms: f64,
    rpo_seen_p99_ms: f64,
    rpo_seen_max_ms: f64,
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

pub async fn run(ctx: &Ctx, json: bool, command: BenchCommand) -> Result<i32> {
    match command {
        BenchCommand::Replicate(args) => replicate(ctx, args).await,
        BenchCommand::All(args) => all(ctx, json, *args).await,
        BenchCommand::Workspace(args) => {
            let scratch = ctx
                .home
                .data_dir
                .join("bench")
                .join(format!("workspace-{}", workload::now_us()));
            let s3 = S3Servers::from_env().map(|s3| s3.pair(&format!("ws-{}", workload::now_us())));
            let result = bench_workspace::measure(&scratch, &args.knobs, s3.clone()).await;
            wipe_specs(s3).await;
            let _ = std::fs::remove_dir_all(&scratch);
            let figures = result?;
            crate::emit(json, &figures, || bench_workspace::table(&figures))?;
            Ok(exit_code::OK)
        }
        BenchCommand::Failover(args) => {
            let scratch = ctx
                .home
                .data_dir
                .join("bench")
                .join(format!("failover-{}", workload::now_us()));
            let result = bench_failover::measure(&scratch, &args.knobs).await;
            let _ = std::fs::remove_dir_all(&scratch);
            let figures = result?;
            crate::emit(json, &figures, || bench_failover::table(&figures))?;
            Ok(exit_code::OK)
        }
        BenchCommand::FirstWrite { addr } => {
            let at = bench_failover::first_write(&addr, Duration::from_secs(60)).await?;
            println!("{at}");
            Ok(exit_code::OK)
        }
        BenchCommand::Engine(args) => {
            let scratch = ctx
                .home
                .data_dir
                .join("bench")
                .join(format!("engine-{}", workload::now_us()));
            let result = bench_engine::measure(&scratch, &args.knobs).await;
            if let Err(e) = std::fs::remove_dir_all(&scratch) {
                tracing::debug!("removing {}: {e}", scratch.display());
            }
            let figures = result?;
            crate::emit(json, &figures, || bench_engine::table(&figures))?;
            Ok(exit_code::OK)
        }
        BenchCommand::Cost(args) => {
            let run = format!("cost-{}", workload::now_us());
            let scratch = ctx.home.data_dir.join("bench").join(&run);
            let result = cost(&scratch, &run, &args.knobs).await;
            if let Err(e) = std::fs::remove_dir_all(&scratch) {
                tracing::debug!("removing {}: {e}", scratch.display());
            }
            let figures = result?;
            crate::emit(json, &figures, || bench_cost::table(&figures))?;
            Ok(exit_code::OK)
        }
        BenchCommand::Scale(args) => {
            let run = format!("scale-{}", workload::now_us());
            let scratch = ctx.home.data_dir.join("bench").join(&run);
            let result = scale(&scratch, &run, &args.knobs).await;
            if let Err(e) = std::fs::remove_dir_all(&scratch) {
                tracing::debug!("removing {}: {e}", scratch.display());
            }
            let figures = result?;
            crate::emit(json, &figures, || figures.table())?;
            Ok(exit_code::OK)
        }
        BenchCommand::Recovery(args) => {
            let scratch = ctx
                .home
                .data_dir
                .join("bench")
                .join(format!("recovery-{}", workload::now_us()));
            let result = bench_recovery::measure(&scratch, &args.knobs).await;
            let _ = std::fs::remove_dir_all(&scratch);
            let figures = result?;
            crate::emit(json, &figures, || bench_recovery::table(&figures))?;
            Ok(exit_code::OK)
        }
    }
}

pub(super) fn quantile_ms(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(super) fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// `bench cost` on local folders, and on S3 when its servers are given.
async fn cost(scratch: &Path, run: &str, knobs: &CostKnobs) -> Result<CostFigures> {
    let mut runs = Vec::new();
    let local = scratch.join("local");
    let pair = BenchPair::local(&local)?;
    runs.push(bench_cost::measure(pair.kind, &pair.a, &pair.b, &local, knobs).await?);
    if let Some(pair) = BenchPair::s3_from_env(&format!("{run}-cost")) {
        let pair = pair?;
        let s3 = scratch.join("s3");
        let measured = bench_cost::measure(pair.kind, &pair.a, &pair.b, &s3, knobs).await;
        for region in [&pair.a, &pair.b] {
            if let Err(e) = wipe(region).await {
                eprintln!("bench: could not clean up {}: {e}", region.name());
            }
        }
        runs.push(measured?);
    }
    Ok(CostFigures {
        bench: "cost",
        prices_as_of: lifeboat::cost::PRICES_AS_OF,
        runs,
    })
}

/// The two SeaweedFS servers of `scripts/s3-servers`, from the
/// environment it writes.
struct S3Servers {
    a: String,
    b: String,
    bucket: String,
    key: String,
    secret: String,
}

impl S3Servers {
    fn from_env() -> Option<S3Servers> {
        let var = |name: &str| std::env::var(name).ok();
        Some(S3Servers {
            a: var("LIFEBOAT_S3_A")?,
            b: var("LIFEBOAT_S3_B")?,
            bucket: var("LIFEBOAT_S3_BUCKET")?,
            key: var("LIFEBOAT_S3_KEY")?,
            secret: var("LIFEBOAT_S3_SECRET")?,
        })
    }
}

impl S3Servers {
    /// `us-east-1` on the first server and `eu-west-1` on the second,
    /// under prefixes named after `run`.
    fn pair(&self, run: &str) -> (RegionSpec, RegionSpec) {
        (
            s3_region_spec("us-east-1", &self.bucket, &format!("{run}-a"), &self.a),
            s3_region_spec("eu-west-1", &self.bucket, &format!("{run}-b"), &self.b),
        )
    }
}

/// Deletes what a bench left in the S3 regions of `pair`.
async fn wipe_specs(pair: Option<(RegionSpec, RegionSpec)>) {
    let Some((a, b)) = pair else {
        return;
    };
    for spec in [a, b] {
        let wiped = match Region::open(&spec) {
            Ok(region) => wipe(&region).await,
            Err(e) => Err(e),
        };
        if let Err(e) = wiped {
            eprintln!("bench: could not clean up {}: {e}", spec.name);
        }
    }
}

/// Region `name` on the S3 server at `endpoint`, under `prefix` of
/// `bucket` (credentials named by the servers' variables).
fn s3_region_spec(name: &str, bucket: &str, prefix: &str, endpoint: &str) -> RegionSpec {
    let mut spec = RegionSpec::new(name, &format!("s3://{bucket}/{prefix}"));
    spec.endpoint = Some(endpoint.to_string());
    spec.access_key_env = Some("LIFEBOAT_S3_KEY".into());
    spec.secret_key_env = Some("LIFEBOAT_S3_SECRET".into());
    spec
}

/// `bench scale` on local folders, and on S3 when its servers are given.
async fn scale(scratch: &Path, run: &str, knobs: &bench_scale::ScaleKnobs) -> Result<ScaleRuns> {
    let local = scratch.join("local");
    let mut runs = vec![
        bench_scale::measure(
            &local,
            knobs,
            bench_engine::shared_regions(&local),
            "local folders",
        )
        .await?,
    ];
    if let Some(s3) = S3Servers::from_env() {
        let (a, b) = s3.pair(&format!("{run}-scale"));
        let measured = bench_scale::measure(
            &scratch.join("s3"),
            knobs,
            vec![a.clone(), b.clone()],
            "S3 (two SeaweedFS servers)",
        )
        .await;
        wipe_specs(Some((a, b))).await;
        runs.push(measured?);
    }
    Ok(ScaleRuns {
        bench: "scale",
        runs,
    })
}

/// `bench scale`'s runs, one per kind of region.
#[derive(Debug, Serialize)]
pub struct ScaleRuns {
    pub bench: &'static str,
    pub runs: Vec<bench_scale::ScaleFigures>,
}

impl ScaleRuns {
    fn table(&self) -> String {
        self.runs
            .iter()
            .map(bench_scale::table)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Two fresh regions to measure on, and how rclone reaches the same files.
struct BenchPair {
    /// What the regions are, for the table (`local folders`, `S3 (SeaweedFS)`).
    kind: &'static str,
    a: Region,
    b: Region,
    /// rclone's names for the roots of `a` and `b`.
    rclone_a: String,
    rclone_b: String,
    /// rclone's remote definitions (credentials stay in the environment).
    rclone_env: Vec<(String, String)>,
    /// Read the whole seeded replica back. SeaweedFS answers SlateDB's many
    /// small range reads of a large multipart object slowly (tens of
    /// minutes for 1 GiB), so on S3 the bench checks the replica's cut
    /// instead; the tests read S3 replicas back at smaller sizes.
    read_back: bool,
}

impl BenchPair {
    /// Two local-folder regions under `scratch`.
    fn local(scratch: &Path) -> Result<BenchPair> {
        let region =
            |name: &str| Region::open(&RegionSpec::new(name, &file_url(&scratch.join(name))));
        Ok(BenchPair {
            kind: "local folders",
            a: region("bench-a")?,
            b: region("bench-b")?,
            rclone_a: scratch.join("bench-a").display().to_string(),
            rclone_b: scratch.join("bench-b").display().to_string(),
            rclone_env: Vec::new(),
            read_back: true,
        })
    }

    /// Two S3 regions, one on each SeaweedFS server of `scripts/s3-servers`
    /// (found through the environment it writes), under fresh prefixes.
    fn s3_from_env(run: &str) -> Option<Result<BenchPair>> {
        let S3Servers {
            a,
            b,
            bucket,
            key,
            secret,
        } = S3Servers::from_env()?;
        let open = |name: &str, endpoint: &str| -> Result<(Region, String)> {
            let prefix = format!("{run}-{name}");
            let spec = s3_region_spec(name, &bucket, &prefix, endpoint);
            Ok((Region::open(&spec)?, prefix))
        };
        let pair = (|| {
            let (region_a, prefix_a) = open("bench-a", &a)?;
            let (region_b, prefix_b) = open("bench-b", &b)?;
            let mut env = Vec::new();
            for (remote, endpoint) in [("LBA", &a), ("LBB", &b)] {
                for (field, value) in [
                    ("TYPE", "s3"),
                    ("PROVIDER", "SeaweedFS"),
                    ("ENDPOINT", endpoint.as_str()),
                    ("ACCESS_KEY_ID", key.as_str()),
                    ("SECRET_ACCESS_KEY", secret.as_str()),
                    ("REGION", "us-east-1"),
                ] {
                    env.push((format!("RCLONE_CONFIG_{remote}_{field}"), value.to_string()));
                }
            }
            Ok(BenchPair {
                kind: "S3 (two SeaweedFS servers)",
                a: region_a,
                b: region_b,
                rclone_a: format!("lba:{bucket}/{prefix_a}"),
                rclone_b: format!("lbb:{bucket}/{prefix_b}"),
                rclone_env: env,
                read_back: false,
            })
        })();
        Some(pair)
    }
}

async fn replicate(ctx: &Ctx, args: ReplicateBench) -> Result<i32> {
    let scratch = ctx
        .home
        .data_dir
        .join("bench")
        .join(format!("replicate-{}", workload::now_us()));
    std::fs::create_dir_all(&scratch).map_err(|e| Error::file(&scratch, e))?;
    let pair = match args.on {
        BenchRegions::Local => BenchPair::local(&scratch),
        BenchRegions::S3 => {
            let run = format!("bench-{}", workload::now_us());
            BenchPair::s3_from_env(&run).unwrap_or_else(|| {
                Err(Error::invalid(
                    "--on s3 needs the S3 servers' environment: run `scripts/s3-servers start` and source the file `scripts/s3-servers env` names",
                ))
            })
        }
    };
    let result = match &pair {
        Ok(pair) => replicate_on(pair, &scratch, &args.knobs).await,
        Err(e) => Err(Error::Failed(e.to_string())),
    };
    if let (Ok(pair), BenchRegions::S3) = (&pair, args.on) {
        for region in [&pair.a, &pair.b] {
            if let Err(e) = wipe(region).await {
                eprintln!("bench: could not clean up {}: {e}", region.name());
            }
        }
    }
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

#[derive(Serialize)]
struct AllFigures {
    bench: &'static str,
    machine: Machine,
    replicate: Vec<ReplicateFigures>,
    /// redis-benchmark against a workspace and redis-server.
    workspace: Option<WorkspaceFigures>,
    /// Failovers on demand and pre-provisioned.
    failover: Option<bench_failover::FailoverFigures>,
    /// Switchovers, a failback, stranded writes.
    recovery: Option<bench_recovery::RecoveryFigures>,
    /// Two engines on one group: takeover, status staleness, their cost.
    engine: Option<bench_engine::EngineFigures>,
    /// Requests by class and their dollars.
    cost: Option<CostFigures>,
    /// A thousand databases on one engine.
    scale: Option<ScaleRuns>,
    /// Kinds of region left out, with why.
    skipped: Vec<String>,
}

fn machine() -> Machine {
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: std::env::consts::OS.to_string(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    }
}

async fn all(ctx: &Ctx, json: bool, args: AllBench) -> Result<i32> {
    let run = format!("bench-{}", workload::now_us());
    let scratch = ctx.home.data_dir.join("bench").join(&run);
    std::fs::create_dir_all(&scratch).map_err(|e| Error::file(&scratch, e))?;
    let result = all_in(&scratch, &run, &args).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let figures = result?;
    let text = serde_json::to_string_pretty(&figures)
        .map_err(|e| Error::Failed(format!("cannot encode the figures: {e}")))?;
    if let Some(path) = &args.file {
        std::fs::write(path, &text).map_err(|e| Error::file(path, e))?;
    }
    if json && args.file.is_none() {
        println!("{text}");
    } else {
        println!("{}", table(&figures));
    }
    Ok(exit_code::OK)
}

async fn all_in(scratch: &Path, run: &str, all: &AllBench) -> Result<AllFigures> {
    let args = &all.knobs;
    let mut replicate = Vec::new();
    let mut skipped = Vec::new();
    let local = scratch.join("local");
    replicate.push(replicate_on(&BenchPair::local(&local)?, &local, args).await?);
    match BenchPair::s3_from_env(run) {
        None => skipped.push(
            "S3: no servers given; ./scripts/bench starts them (or source the file `scripts/s3-servers env` names)"
                .into(),
        ),
        Some(pair) => {
            let pair = pair?;
            let figures = replicate_on(&pair, &scratch.join("s3"), args).await;
            for region in [&pair.a, &pair.b] {
                if let Err(e) = wipe(region).await {
                    eprintln!("bench: could not clean up {}: {e}", region.name());
                }
            }
            replicate.push(figures?);
        }
    }
    let workspace = match bench_workspace::tools_missing() {
        Some(missing) => {
            skipped.push(format!("workspace: {missing}"));
            None
        }
        None => {
            let s3 = S3Servers::from_env().map(|s3| s3.pair(&format!("{run}-ws")));
            let measured =
                bench_workspace::measure(&scratch.join("workspace"), &all.workspace, s3.clone())
                    .await;
            wipe_specs(s3).await;
            Some(measured?)
        }
    };
    let failover = Some(bench_failover::measure(&scratch.join("failover"), &all.failover).await?);
    let recovery = Some(bench_recovery::measure(&scratch.join("recovery"), &all.recovery).await?);
    let engine = Some(bench_engine::measure(&scratch.join("engine"), &all.engine).await?);
    let cost = Some(cost(&scratch.join("cost"), run, &all.cost).await?);
    let scale = Some(scale(&scratch.join("scale"), run, &all.scale).await?);
    Ok(AllFigures {
        bench: "all",
        machine: machine(),
        replicate,
        workspace,
        failover,
        recovery,
        engine,
        cost,
        scale,
        skipped,
    })
}

/// Deletes everything under a scratch region's prefix.
async fn wipe(region: &Region) -> Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let store = region.store();
    let paths = store.list(None).map_ok(|meta| meta.location).boxed();
    store
        .delete_stream(paths)
        .try_collect::<Vec<_>>()
        .await
        .map(|_| ())
        .map_err(|e| Error::store(region.name(), "cleaning up", &e))
}

/// The figures as a Markdown table, one row per kind of region.
fn table(figures: &AllFigures) -> String {
    let m = &figures.machine;
    let mut lines = vec![
        format!(
            "Lifeboat bench all — {} cores, {}, {} build",
            m.cores, m.os, m.build
        ),
        String::new(),
        "| regions | seed: database, Lifeboat copied | Lifeboat s (MB/s) | rclone s (MB/s) | time ratio (MB/s ratio) | lag per WAL file p50 / p99 (ms) | RPO p99, stamped / first seen (ms) | idle requests/min |".into(),
        "|---|---|---|---|---|---|---|---|".into(),
    ];
    for r in &figures.replicate {
        let bytes = lifeboat::replication::status::human_bytes;
        let seed = &r.seed;
        let rclone = match (seed.rclone_s, seed.rclone_mb_s) {
            (Some(s), Some(mb_s)) => format!("{s:.1} ({mb_s:.0})"),
            _ => "—".to_string(),
        };
        let ratio = match (seed.ratio_vs_rclone, seed.throughput_ratio_vs_rclone) {
            (Some(time), Some(mb_s)) => format!("{time:.2}× ({mb_s:.2}×)"),
            _ => "—".to_string(),
        };
        lines.push(format!(
            "| {} | {} in {} objects; {} in {} | {:.1} ({:.0}) | {} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} |",
            r.regions,
            bytes(seed.database_bytes),
            seed.database_objects,
            bytes(seed.bytes),
            seed.objects,
            seed.lifeboat_s,
            seed.lifeboat_mb_s,
            rclone,
            ratio,
            r.lag.wal_delay_p50_ms,
            r.lag.wal_delay_p99_ms,
            r.lag.rpo_p99_ms,
            r.lag.rpo_seen_p99_ms,
            r.idle.requests_per_min
        ));
    }
    if let Some(workspace) = &figures.workspace {
        lines.push(bench_workspace::table(workspace));
    }
    if let Some(failover) = &figures.failover {
        lines.push(bench_failover::table(failover));
    }
    if let Some(recovery) = &figures.recovery {
        lines.push(bench_recovery::table(recovery));
    }
    if let Some(engine) = &figures.engine {
        lines.push(bench_engine::table(engine));
    }
    if let Some(cost) = &figures.cost {
        lines.push(bench_cost::table(cost));
    }
    if let Some(scale) = &figures.scale {
        lines.push(scale.table());
    }
    for skipped in &figures.skipped {
        lines.push(format!("\nnot run: {skipped}"));
    }
    lines.join("\n")
}

async fn replicate_on(
    pair: &BenchPair,
    scratch: &Path,
    args: &ReplicateKnobs,
) -> Result<ReplicateFigures> {
    let (a, b) = (&pair.a, &pair.b);
    let opts = ReplicationOptions {
        copies_in_flight: args.parallel,
        ..ReplicationOptions::default()
    };
    eprintln!("bench: replicate on {}", pair.kind);
    let seed = seed(scratch, pair, args, &opts).await?;
    let lag = lag(scratch, a, b, args, &opts).await?;
    let idle = idle(a, b, args, &opts).await?;
    Ok(ReplicateFigures {
        bench: "replicate",
        machine: machine(),
        regions: pair.kind,
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
    pair: &BenchPair,
    args: &ReplicateKnobs,
    opts: &ReplicationOptions,
) -> Result<SeedFigures> {
    let (a, b) = (&pair.a, &pair.b);
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
    let mut seeded = None;
    for (_, result) in results {
        let status = result?;
        copied = (status.bytes_copied, status.objects_copied);
        seeded = Some(status);
    }
    let replica_check = if pair.read_back {
        let replica = DbLocation::in_region(b, "seed")?;
        let verified = workload::verify::verify(&replica, None).await?;
        format!(
            "read back: {} records, gap-free up to {}, consistent {}",
            verified.records, verified.highest_gap_free_seq, verified.consistent
        )
    } else {
        let complete = seeded.as_ref().is_some_and(|s| {
            s.state == lifeboat::replication::FlowState::InSync && s.objects_pending == 0
        });
        format!(
            "cut complete (manifest {:?}, WAL up to {:?}, every file with the home's size), consistent {complete}",
            seeded.as_ref().and_then(|s| s.replica_manifest_id),
            seeded.as_ref().and_then(|s| s.replica_wal_id)
        )
    };

    let rclone = rclone_copy(
        &format!("{}/dbs/seed", pair.rclone_a),
        &format!("{}/rclone-copy", pair.rclone_b),
        &pair.rclone_env,
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
        database_bytes: info.size_bytes,
        database_objects: info.object_count,
        bytes: copied.0,
        objects: copied.1,
        lifeboat_s,
        lifeboat_mb_s,
        rclone_s,
        rclone_mb_s,
        rclone_version,
        ratio_vs_rclone: rclone_s.map(|r| r / lifeboat_s),
        throughput_ratio_vs_rclone: rclone_mb_s.map(|r| lifeboat_mb_s / r),
        replica_check,
    })
}

/// Installs rclone when it is missing and this user may (root), then times
/// `rclone copy` of `from` into `to`.
fn rclone_copy(
    from: &str,
    to: &str,
    env: &[(String, String)],
    transfers: usize,
) -> Result<(f64, String)> {
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
        .envs(env.iter().map(|(k, v)| (k, v)))
        // A CA bundle named for AWS breaks older rclone's S3 client even
        // for plain-http endpoints; the bench's servers need none.
        .env_remove("AWS_CA_BUNDLE")
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
    args: &ReplicateKnobs,
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
    let mut observer = RpoObserver::new(a, b, "lag");
    let mut rpo = Vec::new();
    let mut rpo_seen = Vec::new();
    let report = loop {
        tokio::select! {
            report = &mut run => break report?,
            _ = every.tick() => {
                if Instant::now() < warm_until {
                    replicator.drain_wal_delays_ms();
                    continue;
                }
                let (stamped, seen) = observer.rpo_ms().await?;
                rpo.push(stamped);
                rpo_seen.push(seen);
            }
        }
    };
    let delays = replicator.drain_sorted_wal_delays_ms();
    replicator.stop().await;
    let rpo = sorted(rpo);
    let rpo_seen = sorted(rpo_seen);
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
        rpo_seen_p50_ms: quantile_ms(&rpo_seen, 0.50),
        rpo_seen_p99_ms: quantile_ms(&rpo_seen, 0.99),
        rpo_seen_max_ms: rpo_seen.last().copied().unwrap_or(0.0),
    })
}

/// Lists both regions' WAL folders of one branch to measure the RPO from
/// outside the replicator (which cannot see writes it has not listed yet).
struct RpoObserver {
    home: Side,
    replica: Side,
    /// When this observer first listed each home WAL file (µs).
    first_seen: HashMap<FileRef, u64>,
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
            first_seen: HashMap::new(),
        }
    }

    /// The RPO now, in ms: from the store's stamps, and from first sight.
    async fn rpo_ms(&mut self) -> Result<(f64, f64)> {
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
        for (file, _) in &home {
            self.first_seen.entry(file.clone()).or_insert(now);
        }
        let missing: Vec<_> = home
            .iter()
            .filter(|(file, _)| !replica.contains(file))
            .collect();
        let stamped = missing.iter().map(|(_, meta)| meta.modified_us).min();
        let seen = missing
            .iter()
            .filter_map(|(file, _)| self.first_seen.get(file).copied())
            .min();
        let age_ms = |since: Option<u64>| {
            since.map_or(0.0, |since| now.saturating_sub(since) as f64 / 1000.0)
        };
        Ok((age_ms(stamped), age_ms(seen)))
    }
}

async fn idle(
    a: &Region,
    b: &Region,
    args: &ReplicateKnobs,
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
