//! Workspaces through the real binary and the real Redis clients
//! (`redis-cli` from Debian's redis-tools, installed by the test command):
//! AUTH, roles, the firewall, pipelines across a restart, and a workspace
//! started in the other region from the replicated control log alone.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{lifeboat, run, stderr, stdout};

const PASSWORD: &str = "correct horse battery";

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
    /// What the workspace logged to stderr so far (read all along, so a
    /// chatty server never blocks on a full pipe).
    log: Arc<Mutex<Vec<String>>>,
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
        let err = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    log.lock().expect("log").push(line);
                }
            }
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    match serde_json::from_str::<serde_json::Value>(&line) {
                        Ok(value) => {
                            if tx.send(value).is_err() {
                                return;
                            }
                        }
                        Err(_) => log.lock().expect("log").push(format!("stdout: {line}")),
                    }
                }
            }
        });
        let first = match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(first) => first,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                let log = log.lock().expect("log").join("\n");
                panic!("the workspace did not start ({status:?}): {log}");
            }
        };
        let addr = first["addr"]
            .as_str()
            .expect("addr")
            .parse()
            .expect("an address");
        Served {
            child,
            addr,
            lines,
            log,
        }
    }

    /// `(resident now, resident at most so far, threads)` of the server
    /// process, in MiB and threads.
    fn memory(&self) -> (u64, u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the workspace's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in {status}"))
        };
        (
            field("VmRSS:") / 1024,
            field("VmHWM:") / 1024,
            field("Threads:"),
        )
    }

    fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().expect("log");
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
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
    if !common::redis_cli_found() {
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

/// Finding (issue 17): an admin given `--db` could use every database.
#[test]
fn the_databases_a_user_is_given_bound_every_role() {
    if !common::redis_cli_found() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for db in ["orders", "carts"] {
        ok(run(lifeboat(dir.path()), &["db", "create", db]));
    }
    ok(run(
        lifeboat(dir.path()),
        &[
            "workspace",
            "create",
            "shop",
            "--db",
            "orders",
            "--db",
            "carts",
        ],
    ));
    add_user(dir.path(), "boss", "admin", &["--db", "orders"]);
    let ws = Served::start(dir.path(), "shop", "us-east-1");
    let out = redis(ws.addr, Some("boss"), &["-n", "0", "set", "k", "v"]);
    assert_eq!(stdout(&out).trim(), "OK", "{}", text(&out));
    let out = redis(ws.addr, Some("boss"), &["-n", "1", "get", "k"]);
    assert!(
        text(&out).contains("NOPERM user 'boss' has no access to database 'carts'"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_client_outside_the_allow_list_is_refused_and_logged() {
    if !common::redis_cli_found() {
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
    if !common::redis_cli_found() {
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
    if !common::redis_cli_found() {
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

    // Data written at home, replicated; the log copied to eu-west-1 (by the
    // engine that served the workspace, which syncs it; the sync finds
    // both regions alike).
    let ws = Served::start(dir.path(), "shop", "us-east-1");
    ok(redis(
        ws.addr,
        Some("app"),
        &["set", "greeting", "hello from us-east-1"],
    ));
    drop(ws);
    ok(run(lifeboat(dir.path()), &["replicate", "--once"]));
    let out = ok(run(lifeboat(dir.path()), &["control", "sync"]));
    assert_eq!(
        stdout(&out).trim(),
        "2 events in the log",
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
    // Databases that do not exist, or that the workspace does not serve.
    let out = run(
        lifeboat(dir.path()),
        &["workspace", "create", "w", "--db", "nosuchdb"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("database `nosuchdb` is in no region"),
        "{}",
        stderr(&out)
    );
    ok(run(lifeboat(dir.path()), &["db", "create", "a"]));
    ok(run(
        lifeboat(dir.path()),
        &["workspace", "create", "w", "--db", "a"],
    ));
    let out = lifeboat(dir.path())
        .args(["workspace", "user", "add", "w", "u", "--role", "readonly"])
        .args(["--db", "nosuchdb", "--password-env", "LIFEBOAT_TEST_PW"])
        .env("LIFEBOAT_TEST_PW", PASSWORD)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("workspace `w` does not serve database `nosuchdb` (it serves: a)"),
        "{}",
        stderr(&out)
    );
    // A short password is refused, and nothing secret is printed.
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

/// The most the workspace process may hold resident under every attack of
/// `hostile_clients_cannot_take_a_workspace_down`, in MiB: its own working
/// set, the requests budget (`clients::MAX_BUFFERED`, 256 MiB) and the
/// password-checking threads (at most 4 × 19 MiB).
const RSS_BOUND_MIB: u64 = 512;

/// A raw connection from `source` (a loopback address) to `addr`.
async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("a loopback address"))?;
    socket.connect(addr).await
}

/// Sends `bytes` from `source` while reading what the server answers,
/// until it hangs up (it must, within `within`): the answer.
async fn attack(source: &str, addr: SocketAddr, bytes: Vec<u8>, within: Duration) -> String {
    let (answer, hung_up) = attempt(source, addr, bytes, within).await;
    assert!(
        hung_up,
        "the server did not hang up within {within:?}: {answer}"
    );
    answer
}

/// [`attack`], but the server may keep the connection: the answer, and
/// whether it hung up.
async fn attempt(
    source: &str,
    addr: SocketAddr,
    bytes: Vec<u8>,
    within: Duration,
) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = connect_from(source, addr).await.expect("connect");
    let (mut rx, mut tx) = stream.into_split();
    let writer = tokio::spawn(async move {
        for chunk in bytes.chunks(64 * 1024) {
            if tx.write_all(chunk).await.is_err() {
                return;
            }
        }
        // Keep the connection open: the server must be the one to close.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(tx);
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, rx.read_to_end(&mut answer)).await;
    writer.abort();
    (String::from_utf8_lossy(&answer).into_owned(), read.is_ok())
}

/// One line from the server, or `None` if none comes within `within`.
async fn line_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(within, async {
        while stream.read(&mut byte).await.ok()? == 1 {
            answer.push(byte[0]);
            if byte[0] == b'\n' {
                return Some(());
            }
        }
        None
    })
    .await;
    read.ok()
        .flatten()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

fn auth_request(user: &str, password: &str) -> Vec<u8> {
    format!(
        "*3\r\n$4\r\nAUTH\r\n${}\r\n{user}\r\n${}\r\n{password}\r\n",
        user.len(),
        password.len()
    )
    .into_bytes()
}

#[test]
fn hostile_clients_cannot_take_a_workspace_down() {
    if !common::redis_cli_found() {
        return;
    }
    let dir = shop();
    let ws = Served::start(dir.path(), "shop", "us-east-1");
    let addr = ws.addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (baseline, _, threads) = ws.memory();
    eprintln!("at start: {baseline} MiB resident, {threads} threads");
    let still_serves = |after: &str| {
        let out = redis(addr, Some("app"), &["ping"]);
        assert_eq!(stdout(&out).trim(), "PONG", "after {after}: {}", text(&out));
        let (now, peak, threads) = ws.memory();
        eprintln!("after {after}: {now} MiB resident, {peak} MiB at most, {threads} threads");
        assert!(
            peak <= RSS_BOUND_MIB,
            "after {after} the workspace held {peak} MiB (bound {RSS_BOUND_MIB} MiB)"
        );
    };

    // 160 KB of nested arrays before AUTH: refused at the second level,
    // with no recursion to overflow.
    let answer = runtime.block_on(attack(
        "127.0.0.1",
        addr,
        b"*1\r\n".repeat(40_000),
        Duration::from_secs(10),
    ));
    assert!(
        answer.contains("Protocol error: expected '$', got '*'"),
        "{answer}"
    );
    still_serves("nested arrays");

    // An unknown command before AUTH learns nothing of the commands.
    let answer = runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut stream = connect_from("127.0.0.1", addr).await.expect("connect");
        stream
            .write_all(b"*1\r\n$5\r\nLPUSH\r\n")
            .await
            .expect("send");
        line_within(&mut stream, Duration::from_secs(10)).await
    });
    let answer = answer.expect("an answer");
    assert!(answer.starts_with("-NOAUTH"), "{answer}");
    assert!(!answer.contains("GET"), "{answer}");

    // A line that never ends, before AUTH and after.
    let answer = runtime.block_on(attack(
        "127.0.0.1",
        addr,
        vec![b'a'; 64 * 1024 * 1024],
        Duration::from_secs(30),
    ));
    assert!(
        answer.contains("an inline request is longer than the 16 KiB allowed before AUTH"),
        "{answer}"
    );
    let mut endless = auth_request("app", PASSWORD);
    endless.extend(vec![b'a'; 64 * 1024 * 1024]);
    let answer = runtime.block_on(attack("127.0.0.1", addr, endless, Duration::from_secs(30)));
    assert!(
        answer.starts_with("+OK") && answer.contains("longer than the 64 KiB allowed"),
        "{answer}"
    );
    still_serves("endless lines");

    // A 600 MB argument is refused from its header; sixteen clients each
    // sending 60 MiB share one budget: some are told to retry.
    let mut huge = auth_request("app", PASSWORD);
    huge.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n");
    let answer = runtime.block_on(attack("127.0.0.1", addr, huge, Duration::from_secs(10)));
    assert!(
        answer.contains("larger than the 64 MiB allowed"),
        "{answer}"
    );
    let answers = runtime.block_on(async {
        let big = (0..16).map(|_| {
            let mut request = auth_request("app", PASSWORD);
            request.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$62914560\r\n");
            request.extend(vec![b'v'; 62_914_560 - 4096]);
            tokio::spawn(attempt("127.0.0.1", addr, request, Duration::from_secs(10)))
        });
        futures_join(big).await
    });
    let retry = answers
        .iter()
        .filter(|(a, hung_up)| *hung_up && a.contains("MiB of unfinished requests already"))
        .count();
    eprintln!("{retry} of 16 clients sending 60 MiB each were told to retry");
    assert!(retry >= 8, "{answers:?}");
    still_serves("sixteen 60 MiB requests");

    // 128 wrong passwords at once from 16 addresses: the checks queue for
    // a few threads, and past 64 waiting the rest are told to retry.
    let answers = runtime.block_on(async {
        let guesses = (0..128).map(|n| {
            let source = format!("127.0.0.{}", 10 + n % 16);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = connect_from(&source, addr).await.expect("connect");
                stream
                    .write_all(&auth_request("app", &format!("guess number {n}")))
                    .await
                    .expect("send");
                line_within(&mut stream, Duration::from_secs(60))
                    .await
                    .unwrap_or_default()
            })
        });
        futures_join(guesses).await
    });
    let wrong = answers
        .iter()
        .filter(|a| a.starts_with("-WRONGPASS"))
        .count();
    let busy = answers.iter().filter(|a| a.contains("retry in")).count();
    eprintln!("128 guesses at once: {wrong} checked and refused, {busy} told to retry");
    assert_eq!(wrong + busy, 128, "{answers:?}");
    still_serves("128 concurrent wrong passwords");

    // A client that hangs up 60 ms after each guess: the brake holds its
    // address whatever it does, and the right password waits its turn too.
    // The count once it stopped moving (status lines can lag a busy server).
    let failures = || {
        let mut last = None;
        loop {
            let now = ws.status()["auth_failures"]
                .as_u64()
                .expect("auth_failures");
            if last == Some(now) {
                return now;
            }
            last = Some(now);
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    let before = failures();
    let answered_fast = runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut fast = 0;
        let until = Instant::now() + Duration::from_secs(6);
        let mut n = 0;
        while Instant::now() < until {
            n += 1;
            let Ok(mut stream) = connect_from("127.0.0.50", addr).await else {
                continue;
            };
            if stream
                .write_all(&auth_request("app", &format!("hasty guess {n}")))
                .await
                .is_ok()
                && line_within(&mut stream, Duration::from_millis(60))
                    .await
                    .is_some()
            {
                fast += 1;
            }
        }
        fast
    });
    let checked = failures() - before;
    eprintln!(
        "hanging up after 60 ms for 6 s: {checked} passwords checked, {answered_fast} answered in time"
    );
    assert!(checked <= 15, "{checked} guesses were checked in 6 s");
    let first = runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut stream = connect_from("127.0.0.50", addr).await.expect("connect");
        stream
            .write_all(&auth_request("app", PASSWORD))
            .await
            .expect("send");
        line_within(&mut stream, Duration::from_millis(60)).await
    });
    assert!(
        first.as_deref().is_none_or(|a| !a.starts_with("+OK")),
        "the right password was answered at once: {first:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            let mut stream = connect_from("127.0.0.50", addr).await.expect("connect");
            stream
                .write_all(&auth_request("app", PASSWORD))
                .await
                .expect("send");
            line_within(&mut stream, Duration::from_secs(20)).await
        });
        if answer.as_deref().is_some_and(|a| a.starts_with("+OK")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the right password never got in: {answer:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    still_serves("guesses that hang up");

    // Connections that never AUTH: 64 per address, 512 in all, for 10 s.
    let (held, refused) = runtime.block_on(async {
        let mut streams = Vec::new();
        for n in 0..(64 * 9) {
            let source = format!("127.0.0.{}", 60 + n % 9);
            streams.push(connect_from(&source, addr).await.expect("connect"));
        }
        let answers = futures_join(streams.into_iter().map(|mut stream| {
            tokio::spawn(async move {
                let line = line_within(&mut stream, Duration::from_secs(3)).await;
                (stream, line)
            })
        }))
        .await;
        let mut held = Vec::new();
        let mut refused = Vec::new();
        for (stream, line) in answers {
            match line {
                Some(line) => refused.push(line),
                None => held.push(stream),
            }
        }
        (held, refused)
    });
    eprintln!(
        "576 idle connections: {} held, {} refused",
        held.len(),
        refused.len()
    );
    assert!(held.len() <= 512, "{} strangers held", held.len());
    assert!(
        refused
            .iter()
            .any(|l| l.contains("too many clients waiting to AUTH (512)")),
        "{refused:?}"
    );
    let timed_out = runtime.block_on(async {
        let mut held = held;
        let mut timed_out = 0;
        for stream in held.iter_mut().take(8) {
            if line_within(stream, Duration::from_secs(15))
                .await
                .is_some_and(|l| l.contains("no AUTH within 10 s"))
            {
                timed_out += 1;
            }
        }
        timed_out
    });
    assert_eq!(timed_out, 8, "idle strangers were not closed after 10 s");
    still_serves("idle connections");

    // Hundreds of refusals cost a few log lines, summed up.
    let summary = Instant::now() + Duration::from_secs(20);
    while ws.log_lines(" in the last ").is_empty() {
        assert!(
            Instant::now() < summary,
            "no summary line: {:?}",
            ws.log_lines("WARN")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let warnings = ws.log_lines("WARN");
    eprintln!(
        "{} warning lines, e.g. {:?}",
        warnings.len(),
        ws.log_lines(" in the last ")
    );
    assert!(warnings.len() <= 40, "{warnings:#?}");
}

/// The results of `tasks`, in order.
async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    // Every task is started before the first is awaited.
    let tasks: Vec<_> = tasks.collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a client task"));
    }
    results
}
