//! The engine facade without a window: commands in, snapshots out, against
//! real local regions.

mod common;

use std::time::Duration;

use lifeboat::config::Home;
use lifeboat::engine::activity::Outcome;
use lifeboat::engine::group::{ReplicationKind, Selection};
use lifeboat::engine::{Command, Engine, EngineOptions, RequestId, Snapshot};

fn quick() -> EngineOptions {
    EngineOptions {
        list_every: Duration::from_millis(500),
        describe_every: Duration::from_secs(2),
        discover_every: Duration::from_millis(300),
        ..EngineOptions::default()
    }
}

/// The embedded default of a fresh data folder in `dir`, and an engine
/// over it.
fn engine_in(dir: &std::path::Path) -> (Home, lifeboat::config::Regions, Engine) {
    let home = Home::resolve(Some(dir.to_path_buf()), None).expect("home");
    let regions = home.load_regions().expect("regions");
    let engine = Engine::start(
        &tokio::runtime::Handle::current(),
        home.clone(),
        regions.clone(),
        quick(),
    );
    (home, regions, engine)
}

fn outcome(snapshot: &Snapshot, id: RequestId) -> Option<Outcome> {
    snapshot
        .activity
        .iter()
        .find(|e| e.request == id && e.outcome != Outcome::Running)
        .map(|e| e.outcome.clone())
}

async fn done(engine: &Engine, id: RequestId) -> Outcome {
    let (snapshot, ok) = engine
        .wait_for(Duration::from_secs(30), |s| outcome(s, id).is_some())
        .await;
    assert!(ok, "request {id} never finished: {:#?}", snapshot.activity);
    outcome(&snapshot, id).expect("an outcome")
}

fn in_sync(snapshot: &Snapshot, dbs: &[&str]) -> bool {
    dbs.iter().all(|db| {
        snapshot
            .flows
            .iter()
            .any(|f| f.status.db == *db && f.state_label() == "In sync")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_current_and_future_databases_includes_one_created_later_and_the_group_resumes_after_a_restart()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let (home, regions, engine) = engine_in(dir.path());
    let id = engine.send(Command::CreateDatabase {
        region: "us-east-1".into(),
        name: "orders".into(),
    });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    let id = engine.send(Command::ConfigureReplication {
        secondary: "eu-west-1".into(),
        databases: Selection::All,
        kind: ReplicationKind::StorageOnly,
        rpo_target_s: 2.0,
        data: Default::default(),
        writes: Default::default(),
    });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    let (snapshot, ok) = engine
        .wait_for(Duration::from_secs(30), |s| in_sync(s, &["orders"]))
        .await;
    assert!(ok, "{:#?}", snapshot.flows);

    // Created after the group: picked up without another command.
    let id = engine.send(Command::CreateDatabase {
        region: "us-east-1".into(),
        name: "carts".into(),
    });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    let (snapshot, ok) = engine
        .wait_for(Duration::from_secs(30), |s| {
            in_sync(s, &["orders", "carts"])
        })
        .await;
    assert!(ok, "{:#?}", snapshot.flows);
    assert_eq!(snapshot.group.as_ref().map(|g| g.rpo_target_s), Some(2.0));

    // Paused, then the engine stops; a new one resumes the group, still paused.
    let id = engine.send(Command::Pause { db: "carts".into() });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    engine.shutdown().await;
    let engine = Engine::start(&tokio::runtime::Handle::current(), home, regions, quick());
    let (snapshot, ok) = engine
        .wait_for(Duration::from_secs(30), |s| {
            in_sync(s, &["orders"])
                && s.flows
                    .iter()
                    .any(|f| f.status.db == "carts" && f.state_label() == "Paused")
        })
        .await;
    assert!(ok, "{:#?} {:#?}", snapshot.flows, snapshot.activity);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_fail_with_one_line_that_says_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, _, engine) = engine_in(dir.path());
    let cases = [
        (
            Command::ConfigureReplication {
                secondary: "us-east-1".into(),
                databases: Selection::All,
                kind: ReplicationKind::StorageOnly,
                rpo_target_s: 1.0,
                data: Default::default(),
                writes: Default::default(),
            },
            "is the primary; choose another region",
        ),
        (
            Command::Failover {
                epoch: 1,
                asked_ms: None,
                serving: Default::default(),
            },
            "look at what a failover would lose first",
        ),
        (
            Command::Drill {
                ttl_s: 60,
                smoke: vec![],
                scope: None,
                port: None,
                cut: Default::default(),
            },
            "configure replication first",
        ),
        (
            Command::Restore {
                db: "orders".into(),
                region: "us-east-1".into(),
                at_ms: u64::MAX / 2,
                name: "later".into(),
                from: None,
            },
            "lies in the future",
        ),
        (
            Command::DeleteBranch {
                db: "orders".into(),
                branch: "nope".into(),
            },
            "is not a forked branch",
        ),
        (
            Command::ConfigureReplication {
                secondary: "eu-west-1".into(),
                databases: Selection::Only(["nope".to_string()].into()),
                kind: ReplicationKind::StorageOnly,
                rpo_target_s: 1.0,
                data: Default::default(),
                writes: Default::default(),
            },
            "database `nope` has no home in us-east-1",
        ),
        (
            Command::CreateDatabase {
                region: "us-east-1".into(),
                name: "Bad Name!".into(),
            },
            "database",
        ),
        (
            Command::DeleteDatabase {
                region: "us-east-1".into(),
                name: "orders".into(),
                typed_name: "order".into(),
            },
            "type the database's name, `orders`, to confirm",
        ),
        (
            Command::Pause {
                db: "orders".into(),
            },
            "replication is not configured",
        ),
        (
            Command::RemoveRegion {
                name: "mars".into(),
            },
            "mars",
        ),
    ];
    for (command, expected) in cases {
        let what = command.describe();
        let id = engine.send(command);
        match done(&engine, id).await {
            Outcome::Failed(message) => {
                assert!(message.contains(expected), "{what}: {message}");
                assert!(!message.contains('\n'), "{what}: one line: {message}");
            }
            other => panic!("{what} should fail, got {other:?}"),
        }
    }
    // The activity log, as CSV: a header, then one row per action.
    let csv = dir.path().join("activity.csv");
    let id = engine.send(Command::ExportActivity { path: csv.clone() });
    let Outcome::Done(message) = done(&engine, id).await else {
        panic!("the export failed");
    };
    assert!(message.contains("entries written"), "{message}");
    let text = std::fs::read_to_string(&csv).expect("the CSV");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("when,who,what,outcome,message,duration_ms")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 7, "{text}");
    assert!(
        rows.iter()
            .any(|r| r.contains("delete database orders in us-east-1,failed")),
        "{text}"
    );
    engine.shutdown().await;
}

/// The engine's socket is private (0600) and bounded: a line that is not a
/// request is refused in one line, a request larger than 1 MiB is not
/// read past its bound, a client that says nothing is let go, and a
/// command sent through it runs under the client's name.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_socket_is_private_bounded_and_runs_commands_as_the_client() {
    use std::os::unix::fs::PermissionsExt as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().expect("temp dir");
    let (home, _, engine) = engine_in(dir.path());
    let socket = home
        .data_dir
        .join(format!("engine-{}.sock", std::process::id()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no socket at {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the socket is private");

    let exchange = |bytes: Vec<u8>| {
        let socket = socket.clone();
        async move {
            let mut stream = tokio::net::UnixStream::connect(&socket)
                .await
                .expect("connect");
            // The engine may hang up before reading it all.
            let _ = stream.write_all(&bytes).await;
            let mut reply = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply));
            read.await.expect("an answer or a hang-up in time").ok();
            reply
        }
    };
    let reply = exchange(b"not json\n".to_vec()).await;
    assert!(
        reply.contains("Refused") && reply.contains("not a request"),
        "{reply}"
    );
    let reply = exchange(vec![b'x'; 3 << 20]).await;
    assert!(reply.is_empty() || reply.contains("Refused"), "{reply}");
    let started = std::time::Instant::now();
    let reply = exchange(Vec::new()).await;
    assert!(reply.is_empty(), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a silent client is let go"
    );
    // A request nested a million deep is refused (serde_json's depth
    // limit), not followed down.
    let mut nested = vec![b'['; 1 << 19];
    nested.push(b'\n');
    let reply = exchange(nested).await;
    assert!(reply.contains("Refused"), "{reply}");

    // Twice as many silent clients as the socket serves at once: they are
    // let go, a real request behind them is answered, memory stays bounded.
    let rss_before = rss_kib();
    let silent: Vec<_> = (0..64)
        .map(|_| {
            let socket = socket.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::UnixStream::connect(&socket).await.ok()?;
                let mut reply = Vec::new();
                stream.read_to_end(&mut reply).await.ok()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    let (outcome, _) = lifeboat::engine::socket::run(&socket, Command::CheckRegions, "behind")
        .await
        .expect("a request behind the silent clients");
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "answered in {:?}",
        asked.elapsed()
    );
    for client in silent {
        client.await.expect("client task");
    }
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 64,
        "the socket held {grown_mib} MiB for its clients"
    );

    let (outcome, _) = lifeboat::engine::socket::run(&socket, Command::RefreshDatabases, "someone")
        .await
        .expect("run");
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    let entry = engine
        .snapshot()
        .activity
        .iter()
        .rev()
        .find(|e| e.what == "list the databases")
        .cloned()
        .expect("an entry");
    assert_eq!(entry.who, "someone");
    engine.shutdown().await;
    assert!(!socket.exists(), "the socket goes with the engine");
}

/// This process's resident memory, from /proc (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `SET key 1` at `addr` on a new connection: the reply line, and how long
/// it took.
async fn set_once(addr: &str, key: &str) -> (String, Duration) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the workspace listens");
    let mut stream = BufReader::new(stream);
    let request = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\n1\r\n", key.len());
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .expect("send");
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_line(&mut line))
        .await
        .expect("a reply within 30 s")
        .expect("read");
    (line.trim().to_string(), started.elapsed())
}

fn activity_has(snapshot: &Snapshot, what: &str) -> bool {
    snapshot.activity.iter().any(|e| e.what.starts_with(what))
}

/// A zero-loss group whose secondary stops answering: a write waits for
/// the timeout and is acknowledged, the group says it runs asynchronously
/// (its state, and an activity entry), the next writes do not wait; once
/// the secondary answers and holds everything, zero loss is back by
/// itself, with an entry that says so, and writes wait for it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_loss_group_runs_asynchronously_past_its_timeout_and_returns_by_itself() {
    use lifeboat::engine::group::WriteRules;
    use lifeboat::engine::workspaces::ControlChange;
    let dir = tempfile::tempdir().expect("temp dir");
    let (_home, regions, engine) = engine_in(dir.path());
    let id = engine.send(Command::CreateDatabase {
        region: "us-east-1".into(),
        name: "orders".into(),
    });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    let id = engine.send(Command::ConfigureReplication {
        secondary: "eu-west-1".into(),
        databases: Selection::All,
        kind: ReplicationKind::ZeroLoss,
        rpo_target_s: 1.0,
        data: Default::default(),
        writes: WriteRules {
            zero_loss_timeout_s: 1.0,
            ..WriteRules::default()
        },
    });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    let id = engine.send(Command::Control {
        change: ControlChange::Event(common::flows::shop_event()),
    });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    let id = engine.send(Command::StartWorkspace {
        name: "shop".into(),
        region: "us-east-1".into(),
        bind: None,
        port: Some(0),
    });
    assert!(matches!(done(&engine, id).await, Outcome::Done(_)));
    let (snapshot, ok) = engine
        .wait_for(Duration::from_secs(60), |s| {
            in_sync(s, &["orders"])
                && s.zero_loss
                    .as_ref()
                    .is_some_and(|z| z.promised > 0 && z.in_force())
                && s.control
                    .workspace("shop")
                    .is_some_and(|w| w.running.is_some())
        })
        .await;
    assert!(ok, "{:#?} {:#?}", snapshot.zero_loss, snapshot.flows);
    // Pre-provisioning would make it asynchronous: refused, saying so.
    let id = engine.send(Command::StartPreprovisioning);
    match done(&engine, id).await {
        Outcome::Failed(why) => assert!(why.contains("this group is zero loss"), "{why}"),
        other => panic!("pre-provisioning a zero-loss group: {other:?}"),
    }
    let addr = snapshot
        .control
        .workspace("shop")
        .and_then(|w| w.running.as_ref())
        .map(|r| r.addr.clone())
        .expect("served");

    // In force: acknowledged once the secondary holds it.
    let (reply, _) = set_once(&addr, "before").await;
    assert_eq!(reply, "+OK");

    // The secondary stops answering: the write waits out the timeout.
    let secondary =
        lifeboat::region::Region::open(regions.get("eu-west-1").expect("spec")).expect("opens");
    secondary.faults().set_outage(true);
    let (reply, took) = set_once(&addr, "during").await;
    assert_eq!(reply, "+OK", "a write past the timeout is acknowledged");
    assert!(
        took >= Duration::from_millis(900),
        "it did not wait for the secondary: {took:?}"
    );
    let (snapshot, ok) = engine
        .wait_for(Duration::from_secs(10), |s| {
            s.zero_loss.as_ref().is_some_and(|z| !z.in_force())
                && activity_has(s, "zero loss suspended for writes us-east-1 → eu-west-1")
        })
        .await;
    assert!(ok, "{:#?} {:#?}", snapshot.zero_loss, snapshot.activity);
    let line = snapshot.zero_loss.as_ref().expect("a view").line();
    assert!(
        line.contains("SUSPENDED") && line.contains("eu-west-1"),
        "{line}"
    );
    // Asynchronous now: the next write does not wait.
    let (reply, took) = set_once(&addr, "async").await;
    assert_eq!(reply, "+OK");
    assert!(took < Duration::from_millis(900), "it waited: {took:?}");

    // The secondary answers again and catches up: zero loss by itself.
    secondary.faults().set_outage(false);
    let (snapshot, ok) = engine
        .wait_for(Duration::from_secs(60), |s| {
            s.zero_loss.as_ref().is_some_and(|z| z.in_force())
                && activity_has(s, "zero loss resumed for writes us-east-1 → eu-west-1")
        })
        .await;
    assert!(ok, "{:#?} {:#?}", snapshot.zero_loss, snapshot.activity);
    // And writes wait for it again: one made during an outage waits.
    secondary.faults().set_outage(true);
    let (reply, took) = set_once(&addr, "again").await;
    assert_eq!(reply, "+OK");
    assert!(
        took >= Duration::from_millis(900),
        "zero loss did not return: {took:?}"
    );
    secondary.faults().set_outage(false);
    engine.shutdown().await;
}
