//! `lifeboat bench engine`: the engine as one service (issue 18). Two
//! `lifeboat serve` processes on one group, on local folders: how long a
//! standby takes to hold the lease after the holder is killed with
//! SIGKILL (p50/p99 over `--kills`), how stale the published status is as
//! a client on another machine reads it from the stores (p99), and the
//! requests the lease and the status cost per region and minute, with
//! what they cost at S3's published prices.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use lifeboat::config::{Home, file_url};
use lifeboat::control::lease;
use lifeboat::engine::published;
use lifeboat::error::{Error, Result};
use lifeboat::region::{Region, RegionSpec};

use super::bench::{quantile_ms, sorted};

/// S3 Standard request prices (us-east-1, per 1,000 requests).
const PUT_PER_1000_USD: f64 = 0.005;
const GET_PER_1000_USD: f64 = 0.0004;

#[derive(Args, Debug, Clone)]
pub struct EngineKnobs {
    /// Holders killed with SIGKILL, one after the other.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// How long a remote client reads the published status.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub watch_for: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineFigures {
    pub kills: usize,
    pub takeover_p50_ms: f64,
    pub takeover_p99_ms: f64,
    pub takeover_target_p99_ms: f64,
    /// Age of the published status each time a remote client read it.
    pub staleness_p50_ms: f64,
    pub staleness_p99_ms: f64,
    pub staleness_target_p99_ms: f64,
    /// Per region and minute, measured in the stores: the holder's lease
    /// renewals (each also deletes the name two back) and status writes.
    pub lease_puts_per_min: f64,
    pub status_puts_per_min: f64,
    /// Per region and minute, by design: a standby's reads of the lease and
    /// a remote client's reads of the status.
    pub standby_gets_per_min: f64,
    pub watcher_gets_per_min: f64,
    /// The holder's requests per region and 30-day month, in US dollars.
    pub holder_usd_per_month: f64,
    /// A standby's or watching client's, per region and month.
    pub watcher_usd_per_month: f64,
}

pub fn table(f: &EngineFigures) -> String {
    format!(
        "\n| engine as a service | p50 | p99 | target p99 |\n|---|---|---|---|\n| standby takeover after SIGKILL ({} kills) | {:.1} s | {:.1} s | {:.0} s |\n| published status as a remote client reads it | {:.1} s old | {:.1} s old | {:.0} s |\n\nPer region and minute: the holder writes {:.1} lease renewals (and deletes as many) and {:.1} status objects, ${:.2} a month at S3 prices; a standby reads the lease {:.0} times, a remote client the status {:.0} times (${:.3} a month).",
        f.kills,
        f.takeover_p50_ms / 1000.0,
        f.takeover_p99_ms / 1000.0,
        f.takeover_target_p99_ms / 1000.0,
        f.staleness_p50_ms / 1000.0,
        f.staleness_p99_ms / 1000.0,
        f.staleness_target_p99_ms / 1000.0,
        f.lease_puts_per_min,
        f.status_puts_per_min,
        f.holder_usd_per_month,
        f.standby_gets_per_min,
        f.watcher_gets_per_min,
        f.watcher_usd_per_month,
    )
}

/// A `serve` child, killed when dropped.
pub(super) struct Serve(pub(super) Child);

impl Drop for Serve {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            tracing::debug!("stopping a bench engine: {e}");
        }
        if let Err(e) = self.0.wait() {
            tracing::debug!("waiting for a bench engine: {e}");
        }
    }
}

/// This program on the data folder `data`, quiet.
pub(super) fn lifeboat(data: &Path) -> Result<Command> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find this program: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir").arg(data);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(cmd)
}

/// Runs this program with `args` to success.
pub(super) fn run(data: &Path, args: &[&str]) -> Result<()> {
    let status = lifeboat(data)?
        .args(args)
        .status()
        .map_err(|e| Error::Failed(format!("running lifeboat {}: {e}", args.join(" "))))?;
    if !status.success() {
        return Err(Error::Failed(format!("lifeboat {} failed", args.join(" "))));
    }
    Ok(())
}

fn serve(data: &Path) -> Result<Serve> {
    lifeboat(data)?
        .args(["serve", "--report-every", "60s"])
        .spawn()
        .map(Serve)
        .map_err(|e| Error::Failed(format!("starting lifeboat serve: {e}")))
}

/// Waits until the newest renewal in `region` is by process `pid`.
async fn until_held_by(region: &Region, pid: u32, within: Duration) -> Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        if let Some((_, holder)) = lease::newest(region).await?
            && holder.pid == pid
            && !holder.released
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(Error::Failed(format!(
                "engine {pid} did not take the lease of {} within {} s",
                region.name(),
                within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The embedded default's two regions as local folders under
/// `scratch/regions`, which several data folders can share.
pub(super) fn shared_regions(scratch: &Path) -> Vec<RegionSpec> {
    let shared = scratch.join("regions");
    ["us-east-1", "eu-west-1"]
        .iter()
        .map(|name| RegionSpec::new(name, &file_url(&shared.join(name))))
        .collect()
}

/// Points the data folder `dir` at `specs`.
pub(super) fn use_regions(dir: &Path, specs: &[RegionSpec]) -> Result<()> {
    let home = Home::resolve(Some(dir.to_path_buf()), None)?;
    let mut regions = home.load_regions()?;
    for spec in specs {
        regions.replace(&spec.name, spec.clone())?;
    }
    home.save_regions(&regions)
}

pub async fn measure(scratch: &Path, knobs: &EngineKnobs) -> Result<EngineFigures> {
    let specs = shared_regions(scratch);
    let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|d| scratch.join(d)).collect();
    for dir in &dirs {
        use_regions(dir, &specs)?;
    }
    run(&dirs[0], &["db", "create", "orders"])?;
    for dir in &dirs {
        run(dir, &["group", "configure", "--secondary", "eu-west-1"])?;
    }
    let replica = Region::open(&specs[1])?;
    let mut engines = vec![serve(&dirs[0])?];
    until_held_by(&replica, engines[0].0.id(), Duration::from_secs(60)).await?;
    engines.push(serve(&dirs[1])?);

    // The holder's first publication, then a client elsewhere reads the
    // status from the stores, as the app does.
    let first = Instant::now();
    while published::read(std::slice::from_ref(&replica))
        .await?
        .is_none()
    {
        if first.elapsed() > published::PUBLISH_EVERY * 5 {
            return Err(Error::Failed(
                "the holder never published its status".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start_seq = lease::newest(&replica).await?.map_or(0, |(seq, _)| seq);
    let watched = Instant::now();
    let mut ages = Vec::new();
    let mut published_at = std::collections::BTreeSet::new();
    while watched.elapsed() < knobs.watch_for {
        if let Some(view) = published::read(std::slice::from_ref(&replica)).await? {
            ages.push(view.age_s() * 1000.0);
            published_at.insert(view.published.published_ms);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let minutes = watched.elapsed().as_secs_f64() / 60.0;
    let end_seq = lease::newest(&replica).await?.map_or(0, |(seq, _)| seq);
    let lease_puts_per_min = end_seq.saturating_sub(start_seq) as f64 / minutes;
    // The first publication seen may predate the window.
    let status_puts_per_min = published_at.len().saturating_sub(1) as f64 / minutes;

    let mut takeovers = Vec::new();
    for _ in 0..knobs.kills {
        let (_, holder) = lease::newest(&replica)
            .await?
            .ok_or_else(|| Error::Failed("nobody holds the lease".into()))?;
        let killed = engines
            .iter()
            .position(|e| e.0.id() == holder.pid)
            .ok_or_else(|| {
                Error::Failed(format!(
                    "the lease is held by pid {}, not a bench engine",
                    holder.pid
                ))
            })?;
        let standby = engines[1 - killed].0.id();
        let dir = dirs[killed].clone();
        let at = Instant::now();
        engines[killed]
            .0
            .kill()
            .map_err(|e| Error::Failed(format!("killing the holder: {e}")))?;
        let taken = until_held_by(&replica, standby, Duration::from_secs(60)).await?;
        takeovers.push(taken.duration_since(at).as_secs_f64() * 1000.0);
        // The killed one comes back, as a standby.
        engines[killed] = serve(&dir)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(engines);
    let takeovers = sorted(takeovers);
    let ages = sorted(ages);
    let puts = lease_puts_per_min + status_puts_per_min;
    Ok(EngineFigures {
        kills: knobs.kills,
        takeover_p50_ms: quantile_ms(&takeovers, 0.5),
        takeover_p99_ms: quantile_ms(&takeovers, 0.99),
        takeover_target_p99_ms: 15_000.0,
        staleness_p50_ms: quantile_ms(&ages, 0.5),
        staleness_p99_ms: quantile_ms(&ages, 0.99),
        staleness_target_p99_ms: 5_000.0,
        lease_puts_per_min,
        status_puts_per_min,
        standby_gets_per_min: 60.0 / lease::WATCH_EVERY.as_secs_f64(),
        watcher_gets_per_min: 60.0 / published::PUBLISH_EVERY.as_secs_f64(),
        holder_usd_per_month: puts * 60.0 * 24.0 * 30.0 / 1000.0 * PUT_PER_1000_USD,
        watcher_usd_per_month: (60.0 / lease::WATCH_EVERY.as_secs_f64()
            + 60.0 / published::PUBLISH_EVERY.as_secs_f64())
            * 60.0
            * 24.0
            * 30.0
            / 1000.0
            * GET_PER_1000_USD,
    })
}
