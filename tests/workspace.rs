//! Workspaces through the real binary and the real Redis clients
//! (`redis-cli` from Debian's redis-tools, installed by the test command):
//! AUTH, roles, the firewall, pipelines across a restart, and a workspace
//! started in the other region from the replicated control log alone.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{lifeboat, run, stderr, stdout};

const PASSWORD: &str = "correct horse battery";

/// Whether the Redis clients are here (the test command installs them; a
/// bare `cargo test` without them skips these tests, loudly under CI).
fn clients_available() -> bool {
    let found = Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var("CI").is_err(),
        "redis-cli is missing under CI: the test command must install redis-tools"
    );
    found
}

/// A data dir with `orders` in us-east-1, a workspace `shop` serving it,
/// and users `app` (readwrite) and `viewer` (readonly).
fn shop() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(run(lifeboat(dir.path()), &["db", "create", "orders"]));
    ok(run(
        lifeboat(dir.path()),
        &["workspace", "create", "shop", "--db", "orders"],
    ));
    add_user(dir.path(), "app", "readwrite", &[]);
    add_user(dir.path(), "viewer", "readonly", &[]);
    dir
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn add_user(dir: &Path, user: &str, role: &str, extra: &[&str]) -> Output {
    let mut cmd = lifeboat(dir);
    cmd.args(["workspace", "user", "add", "shop", user, "--role", role])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("lifeboat runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password on stdin");
    ok(child.wait_with_output().expect("user add"))
}

/// A workspace served by the real binary in the background, killed on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Served {
    fn start(dir: &Path, name: &str, region: &str) -> Served {
        let mut child = lifeboat(dir)
            .args([
                "--json",
                "workspace",
                "start",
                name,
                "--region",
                region,
                "--port",
                "0",
                "--report-every",
                "200ms",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lifeboat runs");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        let first = match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(first) => first,
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!("the workspace did not start: {}", stderr(&out));
            }
        };
        let addr = first["addr"]
            .as_str()
            .expect("addr")
            .parse()
            .expect("an address");
        Served { child, addr, lines }
    }

    /// The newest status line, after waiting for one to arrive.
    fn status(&self) -> serde_json::Value {
        let mut newest = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a status line");
        while let Ok(next) = self.lines.try_recv() {
            newest = next;
        }
        newest
    }

    /// The first status line (within 10 s) that satisfies `ready`.
    fn wait_for(&self, ready: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let status = self.status();
            if ready(&status) {
                return Some(status);
            }
        }
        None
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-cli` against `addr` as `user` (none: no AUTH), `-e` so that an
/// error reply fails the command.
fn redis(addr: SocketAddr, user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("redis-cli");
    cmd.args([
        "-h",
        &addr.ip().to_string(),
        "-p",
        &addr.port().to_string(),
        "-e",
    ]);
    if let Some(user) = user {
        cmd.args(["--user", user, "--pass", PASSWORD, "--no-auth-warning"]);
    }
    cmd.args(args).output().expect("redis-cli runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out)).trim().to_string()
}

#[test]
fn auth_roles_and_commands_through_redis_cli() {
    if !clients_available() {
        return;
    }
    let dir = shop();
    let ws = Served::start(dir.path(), "shop", "us-east-1");
    let addr = ws.addr;

    // No AUTH, a wrong password, the right one.
    let out = redis(addr, None, &["get", "k"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("NOAUTH"), "{}", text(&out));
    let mut wrong = Command::new("redis-cli");
    wrong.args(["-p", &addr.port().to_string(), "-e", "--user", "app"]);
    wrong.args(["--pass", "not the password", "--no-auth-warning", "ping"]);
    let out = wrong.output().expect("redis-cli");
    assert!(text(&out).contains("WRONGPASS"), "{}", text(&out));
    let out = redis(addr, Some("app"), &["ping"]);
    assert_eq!(stdout(&out).trim(), "PONG", "{}", text(&out));

    // Reads and writes, each acknowledged once durable.
    assert_eq!(
        stdout(&ok(redis(addr, Some("app"), &["set", "user:1", "ada"]))).trim(),
        "OK"
    );
    ok(redis(
        addr,
        Some("app"),
        &["mset", "user:2", "bob", "count", "41"],
    ));
    assert_eq!(
        stdout(&ok(redis(addr, Some("app"), &["incr", "count"]))).trim(),
        "42"
    );
    assert_eq!(
        stdout(&ok(redis(
            addr,
            Some("app"),
            &["mget", "user:1", "user:2", "nope"]
        ))),
        "ada\nbob\n\n"
    );
    assert_eq!(
        stdout(&ok(redis(addr, Some("app"), &["exists", "user:1", "nope"]))).trim(),
        "1"
    );
    assert_eq!(
        stdout(&ok(redis(addr, Some("app"), &["set", "user:1", "x", "nx"]))).trim(),
        ""
    );
    assert_eq!(
        stdout(&ok(redis(addr, Some("app"), &["dbsize"]))).trim(),
        "3"
    );
    let keys = stdout(&ok(redis(
        addr,
        Some("app"),
        &["--scan", "--pattern", "user:*"],
    )));
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["user:1", "user:2"]);
    assert_eq!(
        stdout(&ok(redis(addr, Some("app"), &["del", "user:2", "nope"]))).trim(),
        "1"
    );

    // The readonly user reads and is refused writes.
    assert_eq!(
        stdout(&ok(redis(addr, Some("viewer"), &["get", "user:1"]))).trim(),
        "ada"
    );
    let out = redis(addr, Some("viewer"), &["set", "user:1", "eve"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("NOPERM"), "{}", text(&out));
    assert!(text(&out).contains("readonly"), "{}", text(&out));

    // RESP3, INFO's replication section, and what is not supported.
    let hello = stdout(&ok(redis(addr, Some("app"), &["-3", "hello", "3"])));
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    let info = stdout(&ok(redis(addr, Some("app"), &["info", "replication"])));
    assert!(info.contains("role:master"), "{info}");
    assert!(info.contains("lifeboat_region:us-east-1"), "{info}");
    assert!(info.contains("lifeboat_database:orders"), "{info}");
    let out = redis(addr, Some("app"), &["lpush", "l", "x"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown command 'lpush'") && text(&out).contains("GET"),
        "{}",
        text(&out)
    );
    let out = redis(addr, Some("app"), &["-n", "7", "get", "k"]);
    assert!(text(&out).contains("out of range"), "{}", text(&out));

    // A user removed while connected clients run is refused from then on.
    ok(run(
        lifeboat(dir.path()),
        &["workspace", "user", "remove", "shop", "viewer"],
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = redis(addr, Some("viewer"), &["get", "user:1"]);
        if text(&out).contains("WRONGPASS") {
            break;
        }
        assert!(Instant::now() < deadline, "the removed user still works");
        std::thread::sleep(Duration::from_millis(200));
    }
    let failures = ws.wait_for(|s| s["auth_failures"].as_u64() >= Some(2));
    assert!(failures.is_some(), "the failed AUTHs were not counted");
}

#[test]
fn a_client_outside_the_allow_list_is_refused_and_logged() {
    if !clients_available() {
        return;
    }
    let dir = shop();
    ok(run(
        lifeboat(dir.path()),
        &["workspace", "firewall", "allow", "shop", "127.0.0.1/32"],
    ));
    let out = run(
        lifeboat(dir.path()),
        &["workspace", "firewall", "allow", "shop", "10.0.0.300/8"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a CIDR"), "{}", stderr(&out));

    let ws = Served::start(dir.path(), "shop", "us-east-1");
    assert_eq!(
        stdout(&ok(redis(ws.addr, Some("app"), &["ping"]))).trim(),
        "PONG"
    );

    // A client whose address is 127.0.0.2: refused before anything is read.
    let refused = std::thread::spawn({
        let addr = ws.addr;
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket
                    .bind("127.0.0.2:0".parse().expect("addr"))
                    .expect("bind a second loopback address");
                let mut stream = socket.connect(addr).await.expect("connect");
                let _ = stream.write_all(b"*1\r\n$4\r\nPING\r\n").await;
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply).await;
                reply
            })
        }
    })
    .join()
    .expect("client thread");
    assert!(
        refused.starts_with(
            "-ERR connection refused: 127.0.0.2 is not in workspace `shop`'s firewall allow-list"
        ),
        "{refused}"
    );
    let status = ws
        .wait_for(|s| s["denied"] == 1)
        .expect("the refusal is counted");
    assert_eq!(status["firewall"][0], "127.0.0.1/32", "{status}");
}

/// Writes `files` NDJSON files of `lines` records each into `source`.
fn ndjson(source: &Path, files: usize, lines: usize) {
    std::fs::create_dir_all(source).expect("source folder");
    for f in 0..files {
        let mut body = String::new();
        for l in 0..lines {
            let id = f * lines + l;
            body.push_str(&format!("{{\"id\": {id}, \"total\": {}}}\n", id * 3));
        }
        std::fs::write(source.join(format!("batch-{f:03}.ndjson")), body).expect("write");
    }
}

#[test]
fn a_pipeline_survives_a_killed_workspace_with_no_duplicate_and_no_gap() {
    if !clients_available() {
        return;
    }
    let dir = shop();
    let source = dir.path().join("incoming");
    let (files, lines) = (4, 5000);
    ndjson(&source, files, lines);
    let url = lifeboat::config::file_url(&source);
    ok(run(
        lifeboat(dir.path()),
        &[
            "workspace",
            "pipeline",
            "create",
            "shop",
            "orders-in",
            "--db",
            "orders",
            "--source",
            &url,
            "--key-prefix",
            "order:",
        ],
    ));
    let total = (files * lines) as u64;
    let ws = Served::start(dir.path(), "shop", "us-east-1");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while seen == 0 || seen == total {
        let status = ws.status();
        seen = status["pipelines"][0]["position"]["lines_loaded"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            Instant::now() < deadline,
            "the pipeline never started: {status}"
        );
        if seen == total {
            panic!("the pipeline finished before it could be cut: {status}");
        }
    }
    // Cut it mid-load, the hard way.
    ws.kill();

    let ws = Served::start(dir.path(), "shop", "us-east-1");
    let deadline = Instant::now() + Duration::from_secs(120);
    let position = loop {
        let status = ws.status();
        let p = &status["pipelines"][0]["position"];
        if p["files_done"].as_u64() == Some(files as u64) {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not finish: {status}"
        );
    };
    // Every line counted once: a replayed batch would count twice.
    assert_eq!(position["lines_loaded"].as_u64(), Some(total), "{position}");
    assert_eq!(position["bad_lines"].as_u64(), Some(0), "{position}");
    assert_eq!(
        stdout(&ok(redis(ws.addr, Some("app"), &["dbsize"]))).trim(),
        total.to_string()
    );
    let last = total - 1;
    assert_eq!(
        stdout(&ok(redis(
            ws.addr,
            Some("app"),
            &["get", &format!("order:{last}")]
        )))
        .trim(),
        format!("{{\"id\": {last}, \"total\": {}}}", last * 3)
    );

    // Pause, a new file, resume: only the new lines load.
    ok(run(
        lifeboat(dir.path()),
        &["workspace", "pipeline", "pause", "shop", "orders-in"],
    ));
    std::fs::write(
        source.join("batch-999.ndjson"),
        "{\"id\": \"late\"}\nnot json\n",
    )
    .expect("write");
    ok(run(
        lifeboat(dir.path()),
        &["workspace", "pipeline", "resume", "shop", "orders-in"],
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = ws.status();
        let p = &status["pipelines"][0]["position"];
        if p["files_done"].as_u64() == Some(files as u64 + 1) {
            assert_eq!(p["lines_loaded"].as_u64(), Some(total + 1), "{p}");
            assert_eq!(p["bad_lines"].as_u64(), Some(1), "{p}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed pipeline stalled: {status}"
        );
    }
    assert_eq!(
        stdout(&ok(redis(ws.addr, Some("app"), &["get", "order:late"]))).trim(),
        "{\"id\": \"late\"}"
    );
}

#[test]
fn configuration_written_in_one_region_starts_a_workspace_in_the_other() {
    if !clients_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    ok(run(lifeboat(dir.path()), &["db", "create", "orders"]));
    // eu-west-1 is down while the workspace is configured: the events land
    // in us-east-1 only.
    let down = ["--fault", "eu-west-1:outage"];
    let out = ok(run(
        lifeboat(dir.path()),
        &[
            &down[..],
            &["workspace", "create", "shop", "--db", "orders"],
        ]
        .concat(),
    ));
    assert!(
        stdout(&out).contains("eu-west-1 unreachable"),
        "{}",
        stdout(&out)
    );
    add_user(dir.path(), "app", "readwrite", &down);
    let out = run(
        lifeboat(dir.path()),
        &[
            "workspace",
            "start",
            "shop",
            "--region",
            "eu-west-1",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("workspace `shop` is not defined"),
        "{}",
        stderr(&out)
    );

    // Data written at home, replicated; the log copied by a sync.
    let ws = Served::start(dir.path(), "shop", "us-east-1");
    ok(redis(
        ws.addr,
        Some("app"),
        &["set", "greeting", "hello from us-east-1"],
    ));
    drop(ws);
    ok(run(lifeboat(dir.path()), &["replicate", "--once"]));
    let out = ok(run(lifeboat(dir.path()), &["control", "sync"]));
    assert!(
        stdout(&out).contains("copied 2 to eu-west-1"),
        "{}",
        stdout(&out)
    );

    // The secondary serves the replica read-only, from its own log alone.
    let ws = Served::start(dir.path(), "shop", "eu-west-1");
    assert_eq!(ws.status()["endpoints"][0]["mode"], "follower");
    assert_eq!(
        stdout(&ok(redis(ws.addr, Some("app"), &["get", "greeting"]))).trim(),
        "hello from us-east-1"
    );
    let out = redis(ws.addr, Some("app"), &["set", "greeting", "x"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("READONLY"), "{}", text(&out));
    let info = stdout(&ok(redis(ws.addr, Some("app"), &["info", "replication"])));
    assert!(info.contains("role:slave"), "{info}");
    assert!(info.contains("lifeboat_region:eu-west-1"), "{info}");
    assert!(info.contains("lifeboat_lag_seconds:"), "{info}");
}

#[test]
fn bad_workspace_input_gets_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (
            &["workspace", "start", "nope"],
            "workspace `nope` is not defined",
        ),
        (
            &["workspace", "create", "w", "--db", "a=x"],
            "the index must be a number",
        ),
        (
            &["workspace", "create", "w", "--db", "a=1", "--db", "b=1"],
            "index 1 is used twice",
        ),
        (
            &[
                "workspace",
                "create",
                "w",
                "--db",
                "a",
                "--bind",
                "localhost",
            ],
            "not an IP address",
        ),
        (
            &[
                "workspace",
                "user",
                "add",
                "w",
                "u",
                "--role",
                "boss",
                "--password-env",
                "X",
            ],
            "use admin, readwrite or readonly",
        ),
    ];
    for (args, needle) in cases {
        let out = run(lifeboat(dir.path()), args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // A short password is refused, and nothing secret is printed.
    ok(run(
        lifeboat(dir.path()),
        &["workspace", "create", "w", "--db", "a"],
    ));
    let out = lifeboat(dir.path())
        .args(["workspace", "user", "add", "w", "u", "--role", "readonly"])
        .args(["--password-env", "LIFEBOAT_TEST_PW"])
        .env("LIFEBOAT_TEST_PW", "short")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("short\n") && !stdout(&out).contains("short"));
}
