//! `lifeboat bench workspace`: `redis-benchmark -t set,get` against a
//! workspace (on a local-folder region) and against Debian's `redis-server`
//! on this machine, in the same run, with the ratio. Redis is measured twice:
//! as it ships (no fsync before a reply) and with `appendfsync always`
//! (every write on disk before its reply, as a workspace acknowledges).
//!
//! Then the zero-loss type: SET through a workspace whose database
//! replicates to a second region, asynchronously and with zero loss, on
//! local folders and (when `scripts/s3-servers` runs) on S3 with 40 ms
//! added to every request at the secondary, a cross-region link. Target:
//! zero-loss SET p99 under 3× asynchronous.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use lifeboat::config::file_url;
use lifeboat::control;
use lifeboat::control::event::{Attachment, Databases, Event, Role};
use lifeboat::error::{Error, Result};
use lifeboat::region::{Region, RegionSpec};
use lifeboat::storage::DbLocation;
use lifeboat::workspace::{StartOptions, Workspace, auth};

/// The share of redis-server's GET throughput a workspace must reach.
pub const GET_TARGET_RATIO: f64 = 0.30;

/// Zero-loss SET p99 must stay under this many times asynchronous.
pub const ZERO_LOSS_P99_TARGET: f64 = 3.0;

#[derive(Args, Debug, Clone)]
pub struct WorkspaceKnobs {
    /// Requests per test (`redis-benchmark -n`).
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Parallel connections (`redis-benchmark -c`).
    #[arg(long, default_value_t = 50)]
    pub clients: u32,
    /// SETs per zero-loss comparison run (each SET waits for a put in the
    /// other region).
    #[arg(long, default_value_t = 20_000)]
    pub zero_loss_requests: u64,
}

/// Asynchronous and zero-loss SET through one pair of regions.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroLossRun {
    pub regions: String,
    /// Added to every request at the secondary (ms).
    pub secondary_latency_ms: u64,
    pub asynchronous: TestFigures,
    pub zero_loss: TestFigures,
    /// Zero-loss SET p99 ÷ asynchronous SET p99.
    pub p99_ratio: f64,
    pub p99_target_ratio: f64,
    pub p99_target_met: bool,
    /// Whether the link stayed in force through the run (no timeout).
    pub stayed_in_force: bool,
}

/// One `redis-benchmark` test's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TestFigures {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// SET and GET against one server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFigures {
    pub server: String,
    pub set: TestFigures,
    pub get: TestFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceFigures {
    pub command: String,
    pub workspace: ServerFigures,
    pub redis_server: ServerFigures,
    pub redis_server_fsync_always: ServerFigures,
    /// Workspace GET ÷ redis-server GET.
    pub get_ratio: f64,
    pub get_target_ratio: f64,
    pub get_target_met: bool,
    /// Workspace SET ÷ redis-server SET (no fsync), and ÷ with fsync always.
    pub set_ratio: f64,
    pub set_ratio_vs_fsync_always: f64,
    /// The zero-loss type against asynchronous, per kind of region.
    pub zero_loss: Vec<ZeroLossRun>,
}

/// Whether `redis-server` and `redis-benchmark` are installed.
pub fn tools_missing() -> Option<String> {
    for tool in ["redis-server", "redis-benchmark"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{tool} is not installed; install it with `apt-get install redis-server redis-tools`"
            ));
        }
    }
    None
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Failed(format!("no free port on 127.0.0.1: {e}")))
}

/// A redis-server for the run, stopped on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(dir: &Path, fsync_always: bool) -> Result<RedisServer> {
        let port = free_port()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir);
        if fsync_always {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Failed(format!("cannot start redis-server: {e}")))?;
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::Failed(
                    "redis-server did not start within 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `redis-benchmark -t set,get` against `port` and parses its CSV.
async fn redis_benchmark(
    port: u16,
    auth: Option<(&str, &str)>,
    knobs: &WorkspaceKnobs,
) -> Result<(TestFigures, TestFigures)> {
    run_benchmark(port, auth, "set,get", knobs.requests, knobs.clients).await
}

/// `redis-benchmark -t tests -n requests -c clients` against `port`: the
/// SET and GET figures (a test not run reads as zeros).
async fn run_benchmark(
    port: u16,
    auth: Option<(&str, &str)>,
    tests: &str,
    requests: u64,
    clients: u32,
) -> Result<(TestFigures, TestFigures)> {
    let mut cmd = tokio::process::Command::new("redis-benchmark");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        tests,
        "--csv",
    ])
    .args(["-n", &requests.to_string(), "-c", &clients.to_string()]);
    if let Some((user, password)) = auth {
        cmd.args(["--user", user, "-a", password]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Failed(format!("cannot run redis-benchmark: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let test = |name: &str| -> Result<TestFigures> {
        if !tests.contains(&name.to_lowercase()) {
            return Ok(TestFigures {
                requests_per_s: 0.0,
                p50_ms: 0.0,
                p99_ms: 0.0,
            });
        }
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("\"{name}\"")))
            .ok_or_else(|| {
                Error::Failed(format!(
                    "redis-benchmark printed no {name} line: {} {}",
                    text.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            })?;
        let fields: Vec<f64> = line
            .split(',')
            .skip(1)
            .filter_map(|f| f.trim_matches('"').parse().ok())
            .collect();
        // "test","rps","avg","min","p50","p95","p99","max"
        match fields.as_slice() {
            [rps, _avg, _min, p50, _p95, p99, ..] => Ok(TestFigures {
                requests_per_s: *rps,
                p50_ms: *p50,
                p99_ms: *p99,
            }),
            _ => Err(Error::Failed(format!(
                "cannot read redis-benchmark's line `{line}`"
            ))),
        }
    };
    Ok((test("SET")?, test("GET")?))
}

const PASSWORD: &str = "bench-password";

/// Measures a workspace and redis-server, each in turn, in `scratch`;
/// then the zero-loss type on local folders, and on `s3` (two regions on
/// the S3 servers) when given.
pub async fn measure(
    scratch: &Path,
    knobs: &WorkspaceKnobs,
    s3: Option<(RegionSpec, RegionSpec)>,
) -> Result<WorkspaceFigures> {
    if let Some(missing) = tools_missing() {
        return Err(Error::invalid(missing));
    }
    let region = Region::open(&RegionSpec::new(
        "bench-workspace",
        &file_url(&scratch.join("region")),
    ))?;
    DbLocation::in_region(&region, "bench")?.create().await?;
    let ws = serve_db(&region, "bench", "bench").await?;
    let port = ws.addr().port();
    let measured = redis_benchmark(port, Some(("bench", PASSWORD)), knobs).await;
    ws.stop().await?;
    let (ws_set, ws_get) = measured?;

    let plain = RedisServer::start(&scratch.join("redis"), false)?;
    let (r_set, r_get) = redis_benchmark(plain.port, None, knobs).await?;
    drop(plain);
    let durable = RedisServer::start(&scratch.join("redis-fsync"), true)?;
    let (f_set, f_get) = redis_benchmark(durable.port, None, knobs).await?;
    drop(durable);

    let mut zero_loss = vec![
        zero_loss_run(
            "local folders",
            RegionSpec::new("us-east-1", &file_url(&scratch.join("zl-a"))),
            RegionSpec::new("eu-west-1", &file_url(&scratch.join("zl-b"))),
            0,
            knobs,
        )
        .await?,
    ];
    if let Some((a, b)) = s3 {
        zero_loss.push(zero_loss_run("S3 (two SeaweedFS servers)", a, b, 40, knobs).await?);
    }

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let get_ratio = ratio(ws_get.requests_per_s, r_get.requests_per_s);
    Ok(WorkspaceFigures {
        zero_loss,
        command: format!(
            "redis-benchmark -t set,get -n {} -c {}",
            knobs.requests, knobs.clients
        ),
        get_ratio,
        get_target_ratio: GET_TARGET_RATIO,
        get_target_met: get_ratio >= GET_TARGET_RATIO,
        set_ratio: ratio(ws_set.requests_per_s, r_set.requests_per_s),
        set_ratio_vs_fsync_always: ratio(ws_set.requests_per_s, f_set.requests_per_s),
        workspace: ServerFigures {
            server: "Lifeboat workspace (local folder, each SET acknowledged once durable)".into(),
            set: ws_set,
            get: ws_get,
        },
        redis_server: ServerFigures {
            server: "redis-server (appendonly no, save \"\")".into(),
            set: r_set,
            get: r_get,
        },
        redis_server_fsync_always: ServerFigures {
            server: "redis-server (appendonly yes, appendfsync always)".into(),
            set: f_set,
            get: f_get,
        },
    })
}

/// SET through a workspace in `a` whose database replicates to `b` (each
/// request at `b` delayed by `latency_ms`), asynchronously, then with zero
/// loss, each with a fresh database and replicator.
async fn zero_loss_run(
    label: &str,
    a: RegionSpec,
    b: RegionSpec,
    latency_ms: u64,
    knobs: &WorkspaceKnobs,
) -> Result<ZeroLossRun> {
    use lifeboat::replication::pins::NoPins;
    use lifeboat::replication::{Flow, ReplicationOptions, Replicator};
    let (a, b) = (Region::open(&a)?, Region::open(&b)?);
    if latency_ms > 0 {
        let plan = format!("latency={latency_ms}ms")
            .parse()
            .map_err(Error::invalid)?;
        b.faults().set(&plan);
    }
    let mut figures = Vec::new();
    let mut stayed_in_force = true;
    for (db, zero_loss) in [("async", false), ("zero-loss", true)] {
        DbLocation::in_region(&a, db)?.create().await?;
        let replicator = Replicator::start(
            vec![Flow::new(db, "main", &a, &b)],
            ReplicationOptions::default(),
            std::sync::Arc::new(NoPins),
        );
        replicator.set_promise(zero_loss.then_some(Duration::from_secs(5)), false);
        let seeded = replicator
            .wait_until(Duration::from_secs(120), |s| {
                s.state == lifeboat::replication::FlowState::InSync && s.objects_pending == 0
            })
            .await;
        if !seeded {
            replicator.stop().await;
            return Err(Error::Failed(format!(
                "{label}: the replica of `{db}` did not sync within 2 minutes"
            )));
        }
        // The workspace serves this run's database at index 0.
        let events_before = a.notices().sync.last_seq();
        let ws = serve_db(&a, &format!("bench-{db}"), db).await?;
        let measured = run_benchmark(
            ws.addr().port(),
            Some(("bench", PASSWORD)),
            "set",
            knobs.zero_loss_requests,
            knobs.clients,
        )
        .await;
        if zero_loss && a.notices().sync.last_seq() > events_before {
            stayed_in_force = false;
        }
        if let Err(e) = ws.stop().await {
            eprintln!("bench: stopping the workspace: {e}");
        }
        replicator.stop().await;
        figures.push(measured?.0);
    }
    b.faults().set(&Default::default());
    let (asynchronous, zero_loss) = (figures[0].clone(), figures[1].clone());
    let p99_ratio = if asynchronous.p99_ms > 0.0 {
        zero_loss.p99_ms / asynchronous.p99_ms
    } else {
        0.0
    };
    Ok(ZeroLossRun {
        regions: label.to_string(),
        secondary_latency_ms: latency_ms,
        asynchronous,
        zero_loss,
        p99_ratio,
        p99_target_ratio: ZERO_LOSS_P99_TARGET,
        p99_target_met: p99_ratio > 0.0 && p99_ratio < ZERO_LOSS_P99_TARGET,
        stayed_in_force,
    })
}

/// Workspace `name` serving database `db` of `region` at index 0, with
/// user `bench`, configured as any other (through the region's control
/// log, which it then follows) and started.
async fn serve_db(region: &Region, name: &str, db: &str) -> Result<Workspace> {
    let name = name.to_string();
    let events = [
        Event::WorkspaceSet {
            name: name.clone(),
            databases: vec![Attachment {
                index: 0,
                db: db.into(),
            }],
            bind: "127.0.0.1".into(),
            port: 0,
            open: false,
        },
        Event::UserSet {
            workspace: name.clone(),
            user: "bench".into(),
            role: Role::ReadWrite,
            databases: Databases::All,
            password: auth::hash_password(PASSWORD)?,
        },
    ];
    let engine = format!("{:016x}", fastrand::u64(..));
    for event in events {
        control::append(std::slice::from_ref(region), &engine, "bench", event).await?;
    }
    let state = control::load(region).await?;
    Workspace::start(region.clone(), &state, &name, StartOptions::default()).await
}

/// The figures as table rows.
pub fn table(figures: &WorkspaceFigures) -> String {
    let mut lines = vec![
        format!("\n{}", figures.command),
        String::new(),
        "| server | SET req/s | SET p50 / p99 (ms) | GET req/s | GET p50 / p99 (ms) |".into(),
        "|---|---|---|---|---|".into(),
    ];
    for s in [
        &figures.workspace,
        &figures.redis_server,
        &figures.redis_server_fsync_always,
    ] {
        lines.push(format!(
            "| {} | {:.0} | {:.2} / {:.2} | {:.0} | {:.2} / {:.2} |",
            s.server,
            s.set.requests_per_s,
            s.set.p50_ms,
            s.set.p99_ms,
            s.get.requests_per_s,
            s.get.p50_ms,
            s.get.p99_ms
        ));
    }
    lines.push(format!(
        "\nGET: workspace / redis-server = {:.2} (target ≥ {:.2}: {}); SET: {:.2} of redis-server, {:.2} of redis-server with fsync always",
        figures.get_ratio,
        figures.get_target_ratio,
        if figures.get_target_met { "met" } else { "NOT met" },
        figures.set_ratio,
        figures.set_ratio_vs_fsync_always
    ));
    if !figures.zero_loss.is_empty() {
        lines.push(String::new());
        lines.push("| regions | secondary + | async SET req/s | async p50 / p99 (ms) | zero-loss SET req/s | zero-loss p50 / p99 (ms) | p99 ratio (target < 3) |".into());
        lines.push("|---|---|---|---|---|---|---|".into());
        for run in &figures.zero_loss {
            lines.push(format!(
                "| {} | {} ms | {:.0} | {:.2} / {:.2} | {:.0} | {:.2} / {:.2} | {:.2} {}{} |",
                run.regions,
                run.secondary_latency_ms,
                run.asynchronous.requests_per_s,
                run.asynchronous.p50_ms,
                run.asynchronous.p99_ms,
                run.zero_loss.requests_per_s,
                run.zero_loss.p50_ms,
                run.zero_loss.p99_ms,
                run.p99_ratio,
                if run.p99_target_met { "met" } else { "NOT met" },
                if run.stayed_in_force {
                    ""
                } else {
                    " (the link was suspended)"
                }
            ));
        }
    }
    lines.join("\n")
}
