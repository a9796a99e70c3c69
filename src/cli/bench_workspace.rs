//! `lifeboat bench workspace`: `redis-benchmark -t set,get` against a
//! workspace (on a local-folder region) and against Debian's `redis-server`
//! on this machine, in the same run, with the ratio. Redis is measured twice:
//! as it ships (no fsync before a reply) and with `appendfsync always`
//! (every write on disk before its reply, as a workspace acknowledges).

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

#[derive(Args, Debug, Clone)]
pub struct WorkspaceKnobs {
    /// Requests per test (`redis-benchmark -n`).
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Parallel connections (`redis-benchmark -c`).
    #[arg(long, default_value_t = 50)]
    pub clients: u32,
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
    let mut cmd = tokio::process::Command::new("redis-benchmark");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "set,get",
        "--csv",
    ])
    .args([
        "-n",
        &knobs.requests.to_string(),
        "-c",
        &knobs.clients.to_string(),
    ]);
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

/// Measures a workspace and redis-server, each in turn, in `scratch`.
pub async fn measure(scratch: &Path, knobs: &WorkspaceKnobs) -> Result<WorkspaceFigures> {
    if let Some(missing) = tools_missing() {
        return Err(Error::invalid(missing));
    }
    let region = Region::open(&RegionSpec::new(
        "bench-workspace",
        &file_url(&scratch.join("region")),
    ))?;
    DbLocation::in_region(&region, "bench")?.create().await?;
    // The workspace is configured as any other: through the region's
    // control log, which it then follows.
    let password = "bench-password";
    let events = [
        Event::WorkspaceSet {
            name: "bench".into(),
            databases: vec![Attachment {
                index: 0,
                db: "bench".into(),
            }],
            bind: "127.0.0.1".into(),
            port: 0,
            open: false,
        },
        Event::UserSet {
            workspace: "bench".into(),
            user: "bench".into(),
            role: Role::ReadWrite,
            databases: Databases::All,
            password: auth::hash_password(password)?,
        },
    ];
    let engine = format!("{:016x}", fastrand::u64(..));
    for event in events {
        control::append(std::slice::from_ref(&region), &engine, "bench", event).await?;
    }
    let state = control::load(&region).await?;
    let ws = Workspace::start(region.clone(), &state, "bench", StartOptions::default()).await?;
    let port = ws.addr().port();
    let measured = redis_benchmark(port, Some(("bench", password)), knobs).await;
    ws.stop().await?;
    let (ws_set, ws_get) = measured?;

    let plain = RedisServer::start(&scratch.join("redis"), false)?;
    let (r_set, r_get) = redis_benchmark(plain.port, None, knobs).await?;
    drop(plain);
    let durable = RedisServer::start(&scratch.join("redis-fsync"), true)?;
    let (f_set, f_get) = redis_benchmark(durable.port, None, knobs).await?;
    drop(durable);

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let get_ratio = ratio(ws_get.requests_per_s, r_get.requests_per_s);
    Ok(WorkspaceFigures {
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
    lines.join("\n")
}
