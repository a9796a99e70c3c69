//! `lifeboat bench failover`: failovers on two local-folder regions, each
//! under a running workload, on demand (the workspace is started at
//! failover), pre-provisioned (a standing follower is promoted), and as
//! the command a responder types (`lifeboat failover --yes` in its own
//! process, which starts an engine of its own when none runs): RTO
//! from the ask to the first write acknowledged through the new connection
//! string, RPO as the age of the oldest acknowledged write the new live
//! branch lacks (0 when it lacks none), p50 and p99 against the targets.
//! There is no peer to run here: the figures are set against the targets
//! and against what Aurora Global Database publishes (RTO under a minute).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use lifeboat::config::file_url;
use lifeboat::control::event::{Attachment, Event};
use lifeboat::control::{self};
use lifeboat::error::{Error, Result};
use lifeboat::orchestrator::failover::{self, FailoverOptions};
use lifeboat::region::{Region, RegionSpec};
use lifeboat::replication::pins::NoPins;
use lifeboat::replication::{Flow, ReplicationOptions, Replicator};
use lifeboat::storage::DbLocation;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{self, Rate, WorkloadSpec};
use lifeboat::workspace::{StartOptions, Workspace};

/// RTO p99 targets, milliseconds.
pub const RTO_ON_DEMAND_TARGET_MS: f64 = 1000.0;
pub const RTO_PRE_PROVISIONED_TARGET_MS: f64 = 250.0;
/// RPO p99 target, milliseconds.
pub const RPO_TARGET_MS: f64 = 1000.0;

#[derive(Args, Debug, Clone)]
pub struct FailoverKnobs {
    /// Failovers of each kind.
    #[arg(long, default_value_t = 20)]
    pub failovers: usize,
    /// Writes per second of the workload running through each failover.
    #[arg(long, default_value_t = 500)]
    pub failover_rate: u64,
    /// Failovers of each kind after a long WAL tail (0: none).
    #[arg(long, default_value_t = 3)]
    pub tail_failovers: usize,
    /// How long the workload writes before each long-tail failover.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub tail_for: Duration,
    /// Writes per second of the long-tail workload.
    #[arg(long, default_value_t = 3000)]
    pub tail_rate: u64,
    /// Added latency of every request at the secondary in the long-tail
    /// runs (a store across regions).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20ms")]
    pub tail_latency: Duration,
}

/// How the primary is written before a failover, and how far the
/// secondary is.
#[derive(Debug, Clone, Copy)]
struct Case {
    rate: u64,
    /// Writing after the replica first caught up, before the failover.
    writes_for: Duration,
    /// Added to every request at the secondary.
    latency: Option<Duration>,
}

/// One kind of failover's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModeFigures {
    pub failovers: usize,
    pub all_ok: bool,
    /// As a client in another process sees it: from the request to its
    /// first SET acknowledged at the workspace's address, the primary
    /// unreachable.
    pub rto_p50_ms: f64,
    pub rto_p99_ms: f64,
    /// What the failover records reported, for comparison.
    pub reported_rto_p99_ms: f64,
    pub rto_target_p99_ms: f64,
    pub rpo_p50_ms: f64,
    pub rpo_p99_ms: f64,
    pub rpo_target_p99_ms: f64,
    /// Acknowledged records the new branch lacked, p50 and p99.
    pub lost_records_p50: f64,
    pub lost_records_p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverFigures {
    pub bench: &'static str,
    pub regions: &'static str,
    pub workload_rate: u64,
    pub on_demand: ModeFigures,
    pub pre_provisioned: ModeFigures,
    /// `lifeboat failover --yes` in a process of its own, no engine
    /// running: process start, its engine's lease, preview, failover.
    pub command: ModeFigures,
    /// After a long WAL tail, with the secondary far away.
    pub long_tail: Option<LongTailFigures>,
    /// Aurora Global Database's published RTO, for scale.
    pub aurora_published_rto_ms: f64,
}

/// Failovers after the workload wrote for minutes, the secondary answering
/// each request `latency_ms` later: the fork copies the WAL tail past the
/// replica's newest manifest and the new writer replays it.
#[derive(Debug, Clone, Serialize)]
pub struct LongTailFigures {
    pub written_for_s: f64,
    pub workload_rate: u64,
    pub secondary_latency_ms: f64,
    /// WAL files the fork copied past the replica's manifest, p50 and p99.
    pub tail_files_p50: f64,
    pub tail_files_p99: f64,
    /// What the long tail's RPO figures are.
    pub rpo_from: &'static str,
    pub on_demand: ModeFigures,
    pub pre_provisioned: ModeFigures,
}

/// How a failover is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In this process; the workspace started at failover.
    OnDemand,
    /// In this process; a standing follower promoted.
    PreProvisioned,
    /// `lifeboat failover --yes` in a process of its own.
    Command,
}

/// One failover's measurements.
struct Run {
    ok: bool,
    /// From the request (preview included) to the first SET a client in
    /// another process got acknowledged at the workspace's address.
    rto_ms: f64,
    /// What the failover's record says.
    reported_rto_ms: f64,
    rpo_ms: f64,
    lost: f64,
    /// WAL files the fork copied past the replica's manifest.
    tail_files: f64,
}

pub async fn measure(scratch: &Path, knobs: &FailoverKnobs) -> Result<FailoverFigures> {
    if knobs.failovers == 0 {
        return Err(Error::invalid("--failovers must be at least 1"));
    }
    let short = Case {
        rate: knobs.failover_rate,
        writes_for: Duration::from_millis(1500),
        latency: None,
    };
    let on_demand = runs(scratch, "short", short, Mode::OnDemand, knobs.failovers).await?;
    let pre_provisioned = runs(
        scratch,
        "short",
        short,
        Mode::PreProvisioned,
        knobs.failovers,
    )
    .await?;
    let command = runs(scratch, "short", short, Mode::Command, knobs.failovers).await?;
    let long_tail = if knobs.tail_failovers == 0 {
        None
    } else {
        let long = Case {
            rate: knobs.tail_rate,
            writes_for: knobs.tail_for,
            latency: Some(knobs.tail_latency).filter(|l| !l.is_zero()),
        };
        let n = knobs.tail_failovers;
        let on_demand = runs(scratch, "long", long, Mode::OnDemand, n).await?;
        let pre_provisioned = runs(scratch, "long", long, Mode::PreProvisioned, n).await?;
        let tails = super::bench::sorted(
            on_demand
                .iter()
                .chain(&pre_provisioned)
                .map(|r| r.tail_files)
                .collect(),
        );
        Some(LongTailFigures {
            written_for_s: long.writes_for.as_secs_f64(),
            workload_rate: long.rate,
            secondary_latency_ms: long.latency.unwrap_or_default().as_secs_f64() * 1000.0,
            tail_files_p50: super::bench::quantile_ms(&tails, 0.5),
            tail_files_p99: super::bench::quantile_ms(&tails, 0.99),
            rpo_from: "the replica's lag at the preview; the acknowledged records are not read back after a long tail",
            on_demand: figures(&on_demand, false),
            pre_provisioned: figures(&pre_provisioned, true),
        })
    };
    Ok(FailoverFigures {
        bench: "failover",
        regions: "local folders",
        workload_rate: knobs.failover_rate,
        on_demand: figures(&on_demand, false),
        pre_provisioned: figures(&pre_provisioned, true),
        command: figures(&command, false),
        long_tail,
        aurora_published_rto_ms: 60_000.0,
    })
}

/// `n` failovers of `mode` in `case`, each on fresh regions.
async fn runs(scratch: &Path, name: &str, case: Case, mode: Mode, n: usize) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for i in 0..n {
        let dir = scratch.join(format!("{name}-{mode:?}-{i}"));
        let run = one(&dir, case, mode).await;
        let _ = std::fs::remove_dir_all(&dir);
        runs.push(run?);
    }
    Ok(runs)
}

fn figures(runs: &[Run], pre_provisioned: bool) -> ModeFigures {
    let q = |f: &dyn Fn(&Run) -> f64, p: f64| {
        super::bench::quantile_ms(&super::bench::sorted(runs.iter().map(f).collect()), p)
    };
    ModeFigures {
        failovers: runs.len(),
        all_ok: runs.iter().all(|r| r.ok),
        rto_p50_ms: q(&|r| r.rto_ms, 0.5),
        rto_p99_ms: q(&|r| r.rto_ms, 0.99),
        reported_rto_p99_ms: q(&|r| r.reported_rto_ms, 0.99),
        rto_target_p99_ms: if pre_provisioned {
            RTO_PRE_PROVISIONED_TARGET_MS
        } else {
            RTO_ON_DEMAND_TARGET_MS
        },
        rpo_p50_ms: q(&|r| r.rpo_ms, 0.5),
        rpo_p99_ms: q(&|r| r.rpo_ms, 0.99),
        rpo_target_p99_ms: RPO_TARGET_MS,
        lost_records_p50: q(&|r| r.lost, 0.5),
        lost_records_p99: q(&|r| r.lost, 0.99),
    }
}

/// Two fresh local regions, `orders` written at `rate`, replicated, a
/// workspace `shop` defined; one failover.
async fn one(dir: &Path, case: Case, mode: Mode) -> Result<Run> {
    let pre_provisioned = mode == Mode::PreProvisioned;
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    // Where the embedded default of data folder `dir` keeps its regions,
    // so that the command finds them.
    let open = |name: &str| {
        Region::open(&RegionSpec::new(
            name,
            &file_url(&dir.join("regions").join(name)),
        ))
    };
    let (a, b) = (open("us-east-1")?, open("eu-west-1")?);
    if let Some(latency) = case.latency {
        b.faults()
            .set(&fault_plan(&format!("latency={}ms", latency.as_millis()))?);
    }
    let regions = vec![a.clone(), b.clone()];
    // The address clients use, known before the failover.
    let port = free_port()?;
    define_shop_at(&regions, port).await?;
    // The writer's own handle on the primary: the outage below is the
    // engine's view of it.
    let home = DbLocation::in_region(&Region::open_apart(a.spec())?, "orders")?;
    home.create().await?;
    let acks = AckLog::for_db(&dir.join("acks"), "orders");
    let replicator = Replicator::start(
        vec![Flow::new("orders", "main", &a, &b)],
        ReplicationOptions::default(),
        Arc::new(NoPins),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let (home, acks) = (home.clone(), acks.clone());
        tokio::spawn(async move {
            let spec = WorkloadSpec {
                rate: Rate::PerSecond(case.rate),
                duration: Some(case.writes_for + Duration::from_secs(120)),
                records: None,
                value_bytes: 200,
                churn: false,
            };
            workload::run(&home, &spec, &acks, async {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    // The seed lands and the replica follows the running writer.
    let seeded = replicator
        .wait_until(Duration::from_secs(60), |s| {
            s.bytes_copied > 0 && s.objects_pending == 0
        })
        .await;
    if !seeded {
        return Err(Error::Failed(
            "the replica never caught up before the failover".into(),
        ));
    }
    tokio::time::sleep(case.writes_for).await;

    let mut standby = BTreeMap::new();
    let mut standing = None;
    if pre_provisioned {
        let state = control::load(&b).await?;
        let token = format!("{:016x}", fastrand::u64(..));
        let ws = Arc::new(
            Workspace::start(
                b.clone(),
                &state,
                "shop",
                StartOptions {
                    port: Some(port),
                    probe_token: Some(token.clone()),
                    ..StartOptions::default()
                },
            )
            .await?,
        );
        standby.insert("shop".to_string(), (Arc::clone(&ws), token));
        standing = Some(ws);
    }
    // The primary goes away; a client in another process writes at the
    // address until a write is acknowledged; the failover is asked for.
    a.faults().set(&fault_plan("outage")?);
    let client = first_write_client(port)?;
    let asked = (std::time::Instant::now(), lifeboat::orchestrator::now_ms());
    // The record, and the WAL files the forks copied (the command's
    // process does not say: 0).
    let (failed_over, first_ok_ms) = if mode == Mode::Command {
        // The command serves one second after the failover: the client
        // is done by then.
        let record = fail_over_by_command(dir, case.latency).await;
        (record.map(|r| (r, 0)), client.await)
    } else {
        // After a long tail the loss is not read back: reading minutes of
        // writes through a store 20 ms away takes longer than the run (a
        // quarter of an hour for five minutes at 3,000 writes/s); the RPO
        // shown is then the replica's lag at the preview.
        let acks = case.latency.is_none().then_some(&acks);
        let outcome = fail_over_here(&regions, acks, standby, asked.0).await;
        let first_ok_ms = client.await;
        let record = match outcome {
            Ok(outcome) => {
                for ws in outcome.workspaces {
                    let _ = ws.stop().await;
                }
                let copied = outcome.forks.iter().map(|f| f.wal_copied).sum();
                Ok((outcome.record, copied))
            }
            Err(e) => Err(e),
        };
        (record, first_ok_ms)
    };
    let _ = stop_tx.send(());
    let _ = writer.await;
    replicator.stop().await;
    if let Some(ws) = standing.and_then(|ws| Arc::try_unwrap(ws).ok()) {
        let _ = ws.stop().await;
    }
    let (record, tail_files) = failed_over?;
    let first_ok_ms = first_ok_ms?;
    if std::env::var_os("LIFEBOAT_BENCH_STEPS").is_some() {
        for step in &record.steps {
            eprintln!("step {} {} ms {}", step.name, step.ms, step.detail);
        }
        eprintln!(
            "asked at {} ms since the epoch, first ok {} ms later",
            asked.1,
            first_ok_ms.saturating_sub(asked.1)
        );
    }
    let rpo = record.rpo.first();
    Ok(Run {
        tail_files: tail_files as f64,
        ok: record.ok && record.rto_ms.is_some(),
        rto_ms: first_ok_ms.saturating_sub(asked.1) as f64,
        reported_rto_ms: record.rto_ms.unwrap_or(u64::MAX) as f64,
        rpo_ms: rpo
            .and_then(|r| r.missing_span_ms.or(r.lag_ms))
            .unwrap_or(0) as f64,
        lost: rpo.and_then(|r| r.missing_records).unwrap_or(0) as f64,
    })
}

/// The failover in this process (the orchestrator, as an engine runs it).
async fn fail_over_here(
    regions: &[Region],
    acks: Option<&AckLog>,
    standby: BTreeMap<String, (Arc<Workspace>, String)>,
    asked: std::time::Instant,
) -> Result<failover::FailoverOutcome> {
    let (a, b) = (&regions[0], &regions[1]);
    let state = control::load(b).await?;
    let preview =
        failover::preview(a, b, &state, &["orders".to_string()], failover::Cut::Newest).await?;
    let mut acks_by_db = BTreeMap::new();
    if let Some(acks) = acks {
        acks_by_db.insert("orders".to_string(), acks.clone());
    }
    failover::failover(
        regions,
        &preview,
        "00000000000000bf",
        "bench",
        FailoverOptions {
            serve: true,
            acks: acks_by_db,
            standby,
            asked: Some(asked),
            ..FailoverOptions::default()
        },
    )
    .await
}

/// `lifeboat failover --yes` on data folder `dir` in a process of its own,
/// the primary in outage there too; its record (it serves one second more).
async fn fail_over_by_command(
    dir: &Path,
    latency: Option<Duration>,
) -> Result<lifeboat::control::event::OperationRecord> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find this program: {e}")))?;
    let mut command = tokio::process::Command::new(exe);
    if let Some(latency) = latency {
        command.args([
            "--fault",
            &format!("eu-west-1:latency={}ms", latency.as_millis()),
        ]);
    }
    let out = command
        .arg("--data-dir")
        .arg(dir)
        .arg("--config-dir")
        .arg(dir)
        .args(["--fault", "us-east-1:outage", "--json", "failover"])
        .args(["--from", "us-east-1", "--to", "eu-west-1", "--db", "orders"])
        .args(["--yes", "--duration", "1s"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Failed(format!("running `lifeboat failover`: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap_or_default()).map_err(|e| {
        Error::Failed(format!(
            "`lifeboat failover` printed no record ({e}): {}",
            lifeboat::error::one_line(&String::from_utf8_lossy(&out.stderr))
        ))
    })
}

/// The figures as a Markdown table.
pub fn table(f: &FailoverFigures) -> String {
    let mut lines = vec![
        format!(
            "\nFailover on {}, the primary unreachable, under {} writes/s; RTO from the request to the first write a client in another process got acknowledged (Aurora Global Database publishes RTO under {} s):",
            f.regions,
            f.workload_rate,
            f.aurora_published_rto_ms / 1000.0
        ),
        String::new(),
        "| failover | runs | all ok | RTO a client saw p50 / p99 (ms) | RTO target p99 | RTO reported p99 (ms) | RPO p50 / p99 (ms) | RPO target p99 | records lost p50 / p99 |".into(),
        "|---|---|---|---|---|---|---|---|---|".into(),
    ];
    let mut rows = vec![
        ("on demand".to_string(), &f.on_demand),
        ("pre-provisioned".to_string(), &f.pre_provisioned),
        ("`lifeboat failover --yes`".to_string(), &f.command),
    ];
    if let Some(t) = &f.long_tail {
        let after = format!(
            "after {:.0} s at {} writes/s, +{:.0} ms a request at the secondary",
            t.written_for_s, t.workload_rate, t.secondary_latency_ms
        );
        rows.push((format!("on demand, {after}"), &t.on_demand));
        rows.push((format!("pre-provisioned, {after}"), &t.pre_provisioned));
    }
    for (name, m) in rows {
        lines.push(format!(
            "| {name} | {} | {} | {:.0} / {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.0} | {:.0} / {:.0} |",
            m.failovers,
            if m.all_ok { "yes" } else { "NO" },
            m.rto_p50_ms,
            m.rto_p99_ms,
            m.rto_target_p99_ms,
            m.reported_rto_p99_ms,
            m.rpo_p50_ms,
            m.rpo_p99_ms,
            m.rpo_target_p99_ms,
            m.lost_records_p50,
            m.lost_records_p99
        ));
    }
    if let Some(t) = &f.long_tail {
        lines.push(format!(
            "\nThe long-tail forks copied {:.0} WAL files past the replica's manifest (p50; p99 {:.0}): Lifeboat's writers flush their memtable every {} s while writes come, so the tail stays short however long they write.",
            t.tail_files_p50,
            t.tail_files_p99,
            lifeboat::storage::MEMTABLE_AGE_BOUND.as_secs()
        ));
    }
    lines.join("\n")
}

fn fault_plan(plan: &str) -> Result<lifeboat::region::faults::FaultPlan> {
    plan.parse()
        .map_err(|e| Error::Failed(format!("the fault plan `{plan}`: {e}")))
}

/// A port free on loopback now.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Failed(format!("no free port: {e}")))
}

/// `lifeboat bench first-write` in a child process against `port`: when
/// (ms since the epoch) it got its first SET acknowledged.
fn first_write_client(port: u16) -> Result<impl std::future::Future<Output = Result<u64>>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find this program: {e}")))?;
    let child = tokio::process::Command::new(exe)
        .args([
            "bench",
            "first-write",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Failed(format!("starting the client: {e}")))?;
    Ok(async move {
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Error::Failed(format!("the client: {e}")))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| Error::Failed("the client got no write acknowledged within 60 s".into()))
    })
}

/// What `lifeboat bench first-write` does: SET every 2 ms at `addr` (a new
/// connection when one fails) until one answers `+OK`; prints when, in ms
/// since the epoch.
pub async fn first_write(addr: &str, within: Duration) -> Result<u64> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + within;
    let request = b"*3\r\n$3\r\nSET\r\n$12\r\nrto-measured\r\n$1\r\n1\r\n";
    while tokio::time::Instant::now() < deadline {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            // One whole reply line per SET: a READONLY line is longer than
            // any fixed read, and a client that reads less than each reply
            // falls behind and sees its `+OK` late.
            let mut stream = tokio::io::BufReader::new(stream);
            let mut reply = Vec::new();
            while stream.get_mut().write_all(request).await.is_ok() {
                reply.clear();
                match (&mut stream).take(4096).read_until(b'\n', &mut reply).await {
                    Ok(_) if reply.starts_with(b"+OK") => {
                        return Ok(lifeboat::orchestrator::now_ms());
                    }
                    Ok(0) | Err(_) => break,
                    // READONLY (a standing follower) or an error: again.
                    Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(Error::Failed(format!("no write acknowledged at {addr}")))
}

/// Defines workspace `shop` serving `orders` at index 0, open, on any free
/// port, in the logs of `regions`.
pub(super) async fn define_shop(regions: &[Region]) -> Result<()> {
    define_shop_at(regions, 0).await
}

/// As `define_shop`, on `port`.
async fn define_shop_at(regions: &[Region], port: u16) -> Result<()> {
    control::append(
        regions,
        "00000000000000be",
        "bench",
        Event::WorkspaceSet {
            name: "shop".into(),
            databases: vec![Attachment {
                index: 0,
                db: "orders".into(),
            }],
            bind: "127.0.0.1".into(),
            port,
            open: true,
        },
    )
    .await
    .map(|_| ())
}
