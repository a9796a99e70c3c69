//! Forks and failover against real regions (every kind `common::kinds()`
//! gives): a fork at a replica never writes into it and holds the
//! replica's newest state; a failover under a running workload makes a
//! gap-free prefix of the acknowledged records live, measures RPO exactly,
//! fences the old writer when its region answers, and goes ahead when it
//! does not.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use lifeboat::control::{self};
use lifeboat::orchestrator::failover::{self, FailoverOptions};
use lifeboat::region::Region;
use lifeboat::region::faults::FaultPlan;
use lifeboat::replication::pins::{BranchPins, NoPins};
use lifeboat::replication::{Flow, ReplicationOptions, Replicator};
use lifeboat::storage::DbLocation;
use lifeboat::storage::fork::{delete_branch, fork};
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::verify::verify;
use lifeboat::workload::{self, Rate, WorkloadSpec};

use common::flows::{acked_by, caught_up, fast, in_sync, settled, shop, snapshot, writing};

/// `orders` homed in a fresh `us-east-1` of `kind`, written for `secs` at
/// 400 records/s and replicated to `eu-west-1` until in sync; the
/// replicator has stopped.
async fn written_and_replicated(
    kind: common::Kind,
    secs: u64,
) -> (tempfile::TempDir, Region, Region, AckLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = common::region(kind, "us-east-1", dir.path());
    let b = common::region(kind, "eu-west-1", dir.path());
    let home = DbLocation::in_region(&a, "orders").expect("names");
    home.create().await.expect("create");
    let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
    let replicator = Replicator::start(
        vec![Flow::new("orders", "main", &a, &b)],
        fast(),
        Arc::new(NoPins),
    );
    let report = writing(&home, &acks, 400, secs).await.expect("writer");
    assert!(report.error.is_none(), "{kind:?}: {:?}", report.error);
    in_sync(&replicator).await;
    replicator.stop().await;
    (dir, a, b, acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_at_a_replica_never_writes_into_it_and_holds_its_newest_state() {
    for kind in common::kinds() {
        let (_dir, _a, b, acks) = written_and_replicated(kind, 3).await;

        let replica = DbLocation::in_region(&b, "orders").expect("names");
        let before = settled(&b, "dbs/orders/main").await;
        let cursor_before = snapshot(&b, "_lifeboat/replication").await;
        let replica_view = verify(&replica, None).await.expect("verify replica");
        assert!(
            replica_view.consistent,
            "{kind:?}: {}",
            replica_view.summary()
        );

        let forked = fork(&b, "orders", "main", "drill-1").await.expect("fork");
        assert!(forked.at_replica, "{kind:?}: {forked:?}");
        assert!(forked.shadow.is_some());
        assert_eq!(
            snapshot(&b, "dbs/orders/main").await,
            before,
            "{kind:?}: the fork wrote into the replica"
        );
        // The fork holds exactly the replica's newest state.
        let branch = DbLocation::branch_in_region(&b, "orders", "drill-1").expect("names");
        let view = verify(&branch, Some(&acks)).await.expect("verify fork");
        assert!(view.consistent, "{kind:?}: {}", view.summary());
        assert_eq!(
            view.highest_gap_free_seq, replica_view.highest_gap_free_seq,
            "{kind:?}: the fork is not at the replica's newest state"
        );
        assert!(
            view.highest_gap_free_seq > 0,
            "{kind:?}: the fork holds nothing"
        );

        // The fork is its own branch: a writer opens on it and writes,
        // and the replica still is what it was.
        let writer = branch.open_writer(false).await.expect("writer on the fork");
        writer.put(b"after-fork", b"yes").await.expect("put");
        writer.flush().await.expect("flush");
        assert_eq!(
            writer.get(b"after-fork").await.expect("get").as_deref(),
            Some(&b"yes"[..])
        );
        writer.close().await.expect("close");
        assert_eq!(
            snapshot(&b, "dbs/orders/main").await,
            before,
            "{kind:?}: writing the fork wrote into the replica"
        );
        assert_eq!(snapshot(&b, "_lifeboat/replication").await, cursor_before);
        let reader = replica.open_reader().await.expect("replica reader");
        assert_eq!(reader.get(b"after-fork").await.expect("get"), None);

        // A fork of the fork reads through two shadows.
        let nested = fork(&b, "orders", "drill-1", "drill-2")
            .await
            .expect("fork of a fork");
        assert!(!nested.at_replica, "drill-1 is homed here");
        let nested_loc = DbLocation::branch_in_region(&b, "orders", "drill-2").expect("names");
        let reader = nested_loc.open_reader().await.expect("reader");
        assert_eq!(
            reader.get(b"after-fork").await.expect("get").as_deref(),
            Some(&b"yes"[..])
        );

        // Deleting the branches leaves the replica as it was.
        delete_branch(&b, "orders", "drill-2", Some("drill-1"))
            .await
            .expect("delete");
        delete_branch(&b, "orders", "drill-1", Some("main"))
            .await
            .expect("delete");
        assert!(!branch.exists().await.expect("list"));
        assert!(
            snapshot(&b, "_lifeboat/shadow").await.is_empty(),
            "{kind:?}: a shadow was left behind"
        );
        assert_eq!(snapshot(&b, "dbs/orders/main").await, before);
        // A name that exists is refused before anything is written.
        let again = fork(&b, "orders", "main", "main").await;
        assert!(again.is_err());
    }
}

/// A copier puts a manifest before the WAL tail it names; a home lost in
/// between leaves a replica whose manifest names WAL files it does not
/// hold (a reader replays up to the first missing one). A fork there
/// holds what a reader sees, and its writer's WAL follows on from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_at_a_replica_short_of_the_wal_its_manifest_names_holds_what_a_reader_sees() {
    for kind in common::kinds() {
        // The writer's close writes a manifest naming its WAL.
        let (_dir, _a, b, _acks) = written_and_replicated(kind, 2).await;

        let replica = DbLocation::in_region(&b, "orders").expect("names");
        let info = replica.describe().await.expect("describe");
        let named_end = info.next_wal_id.saturating_sub(1);
        assert!(
            named_end > info.replay_after_wal_id,
            "{kind:?}: the manifest should name a WAL file past its replay point: {info:?}"
        );
        // The copier got the tail across only up to `held` (one file short
        // of what the manifest names, or more) before the home went.
        let held = named_end - 1;
        for id in held + 1..=info.newest_wal_id.expect("WAL files") {
            let path = object_store::path::Path::from(format!("dbs/orders/main/wal/{id:020}.sst"));
            object_store::ObjectStoreExt::delete(&b.store(), &path)
                .await
                .expect("delete");
        }
        let seen = verify(&replica, None).await.expect("verify replica");
        assert!(
            seen.highest_gap_free_seq > 0,
            "{kind:?}: {}",
            seen.summary()
        );
        let before = settled(&b, "dbs/orders/main").await;

        let forked = fork(&b, "orders", "main", "drill-1")
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: fork: {e}"));
        assert_eq!(forked.wal_end, held, "{kind:?}: {forked:?}");
        assert_eq!(
            snapshot(&b, "dbs/orders/main").await,
            before,
            "{kind:?}: the fork wrote into the replica"
        );
        let branch = DbLocation::branch_in_region(&b, "orders", "drill-1").expect("names");
        let view = verify(&branch, None).await.expect("verify fork");
        assert!(view.consistent, "{kind:?}: {}", view.summary());
        assert_eq!(
            view.highest_gap_free_seq, seen.highest_gap_free_seq,
            "{kind:?}: the fork is not what a reader of the replica sees"
        );
        // A writer on the fork writes past it, and a reader opened after
        // finds what it wrote.
        let writer = branch.open_writer(false).await.expect("writer on the fork");
        writer.put(b"after-fork", b"yes").await.expect("put");
        writer.close().await.expect("close");
        let reader = branch.open_reader().await.expect("reader");
        assert_eq!(
            reader.get(b"after-fork").await.expect("get").as_deref(),
            Some(&b"yes"[..]),
            "{kind:?}"
        );
    }
}

/// `us-east-1` and `eu-west-1` of `kind` (folders under `dir`), workspace
/// `shop` in both logs, and `orders` created in us-east-1, its home.
async fn shop_pair(kind: common::Kind, dir: &std::path::Path) -> (Region, Region, DbLocation) {
    let a = common::region(kind, "us-east-1", dir);
    let b = common::region(kind, "eu-west-1", dir);
    shop(&[a.clone(), b.clone()]).await;
    let home = DbLocation::in_region(&a, "orders").expect("names");
    home.create().await.expect("create");
    (a, b, home)
}

/// Workspace `shop` served from `region` as its log defines it, on any
/// free port.
async fn serve_shop(region: &Region) -> lifeboat::workspace::Workspace {
    use lifeboat::workspace::{StartOptions, Workspace};
    let state = control::load(region).await.expect("log");
    let options = StartOptions {
        port: Some(0),
        ..StartOptions::default()
    };
    Workspace::start(region.clone(), &state, "shop", options)
        .await
        .expect("the workspace starts")
}

/// Defines workspace `shop` (open, serving orders at index 0) in both regions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_load_makes_an_acknowledged_prefix_live_and_fences_the_old_writer() {
    for kind in common::kinds() {
        for primary_down in [false, true] {
            let what = format!(
                "{kind:?}, primary {}",
                if primary_down { "down" } else { "up" }
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let (a, b, home) = shop_pair(kind, dir.path()).await;
            let regions = vec![a.clone(), b.clone()];
            let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
            let pins = Arc::new(BranchPins::default());
            let replicator = Replicator::start(
                vec![Flow::new("orders", "main", &a, &b)],
                fast(),
                Arc::clone(&pins) as Arc<_>,
            );
            let writer = writing(&home, &acks, 300, 60);
            // Let the seed finish and the replica follow the live writer
            // until it holds some of its records (a slow server, moto on a
            // busy machine, may be in sync with an empty seed at first).
            in_sync(&replicator).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let replica = DbLocation::in_region(&b, "orders").expect("names");
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while verify(&replica, None)
                .await
                .map_or(0, |v| v.highest_gap_free_seq)
                == 0
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: the replica never held a record"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if primary_down {
                a.faults()
                    .set(&"outage".parse::<FaultPlan>().expect("plan"));
            }
            let state = control::load(&b).await.expect("log");
            let preview = failover::preview(
                &a,
                &b,
                &state,
                &["orders".to_string()],
                failover::Cut::Newest,
            )
            .await
            .expect("preview");
            assert_eq!(preview.primary_reachable, !primary_down, "{what}");
            assert_eq!(preview.workspaces, vec!["shop".to_string()], "{what}");
            let replica_before = snapshot(&b, "dbs/orders/main").await;
            let mut acks_by_db = BTreeMap::new();
            acks_by_db.insert("orders".to_string(), acks.clone());
            let outcome = failover::failover(
                &regions,
                &preview,
                "00000000000000bb",
                "test",
                FailoverOptions {
                    port: Some(0),
                    serve: true,
                    acks: acks_by_db,
                    pins: Some(Arc::clone(&pins)),
                    ..FailoverOptions::default()
                },
            )
            .await
            .expect("failover");
            let record = &outcome.record;
            assert!(record.ok, "{what}: {record:#?}");
            assert!(record.rto_ms.is_some(), "{what}: {record:#?}");
            assert!(
                record.rto_to.contains("first write"),
                "{what}: {}",
                record.rto_to
            );
            assert_eq!(record.endpoints.len(), 1, "{what}");
            let fenced = record.steps.iter().any(|s| s.name.starts_with("fence"));
            assert_eq!(fenced, !primary_down, "{what}: {:#?}", record.steps);

            // The replica itself was not written by the fork (the replicator
            // may still add to it, never change what is there).
            replicator.stop().await;
            let replica_after = snapshot(&b, "dbs/orders/main").await;
            for (name, before) in &replica_before {
                if let Some(after) = replica_after.get(name) {
                    assert_eq!(after, before, "{what}: {name} changed");
                }
            }

            // The new live branch: a gap-free prefix of what was acknowledged.
            let live = &outcome.live[0];
            assert_eq!(live.branch, "failover-1", "{what}");
            let new = DbLocation::branch_in_region(&b, "orders", &live.branch).expect("names");
            let view = verify(&new, None).await.expect("verify the new branch");
            assert!(view.consistent, "{what}: {}", view.summary());
            // RPO, counted here from the log: acknowledged by the time of the
            // fork and absent from the new branch.
            let rpo = &record.rpo[0];
            let acked = acked_by(&acks, rpo.measured_at_ms * 1000);
            let held = view.highest_gap_free_seq;
            let missing = acked.iter().filter(|s| **s > held).count() as u64;
            assert_eq!(rpo.missing_records, Some(missing), "{what}: RPO");
            assert_eq!(rpo.acknowledged, Some(acked.len() as u64), "{what}");
            assert!(held > 0, "{what}: the new branch holds nothing");

            // The old writer: fenced when its region answered.
            if primary_down {
                a.faults().set(&FaultPlan::default());
            }
            let report = tokio::time::timeout(Duration::from_secs(90), writer)
                .await
                .expect("the workload ends")
                .expect("writer task");
            if !primary_down {
                // SlateDB's words for a fenced writer.
                let error = report.error.clone().unwrap_or_default();
                assert!(
                    error.contains("newer DB client") || error.to_lowercase().contains("fenced"),
                    "{what}: the old writer was not fenced: {report:?}"
                );
            }

            // It may hold more than was acknowledged: records made durable
            // just before the fork whose acknowledgement came later, or
            // never (a writer fenced between its WAL write and its answer).
            // It is a gap-free prefix (above) and lacks exactly the RPO.

            // The control log says so, in the new primary.
            let state = control::load(&b).await.expect("log");
            assert_eq!(state.epoch, 1, "{what}");
            assert_eq!(state.live_branch("orders"), "failover-1", "{what}");
            assert!(state.branch("orders", "failover-1").is_some(), "{what}");
            assert_eq!(state.operations.len(), 1, "{what}");
            // Every SST the new branch reads in place is pinned.
            let read_in_place: usize = outcome.forks[0].pinned.values().map(Vec::len).sum();
            assert!(
                pins.count() >= read_in_place,
                "{what}: {} pins for {read_in_place} SSTs read in place",
                pins.count()
            );
            for ws in outcome.workspaces {
                ws.stop().await.expect("stop");
            }
        }
    }
}

const PASSWORD: &str = "correct horse battery";

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        common::stdout(&out),
        common::stderr(&out)
    );
    out
}

/// `orders` in us-east-1, served by workspace `shop`, with user `app`
/// (readwrite, password `PASSWORD`, typed on stdin as a person would).
fn shop_with_a_user(data: &std::path::Path) {
    use common::{lifeboat, run};
    use std::io::Write;
    use std::process::Stdio;
    ok(run(lifeboat(data), &["db", "create", "orders"]));
    ok(run(
        lifeboat(data),
        &["workspace", "create", "shop", "--db", "orders"],
    ));
    let mut child = lifeboat(data)
        .args([
            "workspace",
            "user",
            "add",
            "shop",
            "app",
            "--role",
            "readwrite",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lifeboat runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password");
    ok(child.wait_with_output().expect("user add"));
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-e"])
        .args(["--user", "app", "--pass", PASSWORD, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli runs");
    format!("{}{}", common::stdout(&out), common::stderr(&out))
        .trim()
        .to_string()
}

/// `lifeboat workload` writes `records` records to `orders`, 1,000 a second.
fn write_orders(data: &std::path::Path, records: &str) {
    ok(common::run(
        common::lifeboat(data),
        &[
            "workload",
            "--db",
            "orders",
            "--records",
            records,
            "--rate",
            "1000",
        ],
    ));
}

/// The port of the first endpoint an operation's record names.
fn endpoint_port(record: &serde_json::Value) -> u16 {
    let url = record["endpoints"][0].as_str().expect("an endpoint");
    url.rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// Runs `during` (which returns what its last command printed) while a
/// client writes at `port` every 50 ms, and a second more; asserts that
/// production answered every write OK. How many it wrote, and what
/// `during` returned.
fn writing_throughout(port: u16, during: impl FnOnce() -> String) -> (usize, String) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                answers.push(redis_cli(port, &["set", &format!("client/{n}"), "v"]));
                std::thread::sleep(Duration::from_millis(50));
            }
            answers
        })
    };
    let said = during();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = client.join().expect("client");
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|a| a == "OK"),
        "production answered: {:?} (the last command said: {said})",
        answers
            .iter()
            .filter(|a| *a != "OK")
            .take(3)
            .collect::<Vec<_>>()
    );
    (answers.len(), said)
}

/// The incident responder's path through the real binary: preview (nothing
/// changes), failover with --yes, and `redis-cli` writing at the new
/// connection string with the user the primary had. No engine ran the
/// group: the failover command's own engine serves the workspace, and the
/// `recover` and `merge` asked from other terminals go through it, so the
/// client writing meanwhile is never fenced and nothing acknowledged is lost.
#[test]
fn the_cli_fails_over_and_redis_cli_writes_at_the_new_connection_string() {
    use common::{lifeboat, run, stdout};
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    if !common::redis_cli_found() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    shop_with_a_user(data);
    let write = |records: &str| write_orders(data, records);
    write("300");
    ok(run(lifeboat(data), &["replicate", "--once"]));
    // Written after the last copy: stranded in us-east-1 by the failover.
    write("50");

    // Without --yes: what would be lost, and nothing changes.
    let args = ["failover", "--from", "us-east-1", "--to", "eu-west-1"];
    let out = ok(run(lifeboat(data), &args));
    let text = stdout(&out);
    assert!(text.contains("Nothing was changed"), "{text}");
    assert!(text.contains("orders: from eu-west-1/main"), "{text}");
    assert!(
        text.contains("workspaces started in eu-west-1: shop"),
        "{text}"
    );
    let out = ok(run(lifeboat(data), &["branch", "list"]));
    assert!(
        stdout(&out).contains("no forked branch"),
        "{}",
        stdout(&out)
    );

    // With --yes, in the foreground, serving.
    let report = data.join("failover.md");
    let log = std::fs::File::create(data.join("failover.log")).expect("log file");
    let mut child = lifeboat(data)
        .arg("--json")
        .args(args)
        .args(["--yes", "--port", "0", "--duration", "120s", "--report"])
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("lifeboat runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let record: serde_json::Value = match serde_json::from_str(&first) {
        Ok(v) => v,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no failover record: {first}\n{}",
                std::fs::read_to_string(data.join("failover.log")).unwrap_or_default()
            );
        }
    };
    assert_eq!(record["ok"], true, "{record:#}");
    assert!(record["rto_ms"].as_u64().is_some(), "{record:#}");
    assert_eq!(record["rpo"][0]["missing_records"], 50, "{record:#}");
    assert_eq!(record["rpo"][0]["acknowledged"], 350, "{record:#}");
    let port = endpoint_port(&record);

    // The user of the old primary writes at the new connection string.
    assert_eq!(redis_cli(port, &["set", "after", "failover"]), "OK");
    assert_eq!(redis_cli(port, &["get", "after"]), "failover");
    let size: u64 = redis_cli(port, &["dbsize"]).parse().expect("a number");
    assert_eq!(size, 301, "the 300 records replicated and the new key");

    // A client writes throughout the recovery and the merge, asked for
    // from other terminals: both go to the failover command's engine.
    let (written, merged) = writing_throughout(port, || {
        let out = ok(run(lifeboat(data), &["recover", "--db", "orders", "--yes"]));
        assert!(
            common::stderr(&out).contains("sent to the engine"),
            "{}",
            common::stderr(&out)
        );
        let out = ok(run(
            lifeboat(data),
            &["merge", "--db", "orders", "--all", "--yes"],
        ));
        assert!(
            common::stderr(&out).contains("sent to the engine"),
            "{}",
            common::stderr(&out)
        );
        stdout(&out)
    });
    // 350 workload records (300 replicated, 50 recovered), the first
    // write and the client's.
    let size: usize = redis_cli(port, &["dbsize"]).parse().expect("a number");
    assert_eq!(size, 350 + 1 + written, "merge said: {merged}");
    let _ = child.kill();
    let _ = child.wait();

    let text = std::fs::read_to_string(&report).expect("the report was written");
    assert!(text.contains("# Failover us-east-1 → eu-west-1"), "{text}");
    assert!(text.contains("RTO:"), "{text}");
    let out = ok(run(lifeboat(data), &["branch", "list"]));
    assert!(
        stdout(&out).contains("orders/failover-1 LIVE: off main"),
        "{}",
        stdout(&out)
    );
    // A second failover the same way is refused: main is no longer live.
    let out = run(lifeboat(data), &args);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        common::stderr(&out).contains("orders/failover-1 already live in `eu-west-1` (epoch 1)"),
        "{}",
        common::stderr(&out)
    );

    // Finding (issue 17): after a failover, `workload` wrote to the fenced
    // `main`, invisible at the live endpoint. It writes the live branch at
    // its home, and refuses another region with the one that is live.
    let workload = [
        "workload",
        "--db",
        "orders",
        "--records",
        "20",
        "--rate",
        "max",
    ];
    ok(run(lifeboat(data), &workload));
    let acks = std::fs::read_to_string(data.join("acks").join("orders.jsonl")).expect("acks");
    let last: serde_json::Value =
        serde_json::from_str(acks.lines().last().expect("a line")).expect("json");
    assert_eq!(last["branch"], "failover-1", "{last}");
    assert_eq!(last["region"], "eu-west-1", "{last}");
    let out = run(
        lifeboat(data),
        &[&workload[..], &["--region", "us-east-1"]].concat(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out)
            .contains("database `orders` is live on branch `failover-1` in region `eu-west-1`"),
        "{}",
        common::stderr(&out)
    );
}

/// Invariant 3: the home collects the SSTs a fork at the replica reads; the
/// replicator's list-diff deletes at the replica what the home deleted, but
/// never what a fork's pins hold, so the fork reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_keeps_what_it_reads_when_the_home_collects_it() {
    use lifeboat::replication::copier::BranchCopier;
    for kind in common::kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind, "us-east-1", dir.path());
        let b = common::region(kind, "eu-west-1", dir.path());
        let home = DbLocation::in_region(&a, "orders").expect("names");
        home.create().await.expect("create");
        let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
        let flow = Flow::new("orders", "main", &a, &b);
        // The home's writers keep nothing back for the replica: what is
        // tested is a fork at a replica whose home collected what it reads.
        let no_hold = || ReplicationOptions {
            gc_hold: Duration::ZERO,
            ..fast()
        };
        let replicator = Replicator::start(vec![flow.clone()], no_hold(), Arc::new(NoPins));
        writing(&home, &acks, 2000, 3).await.expect("writer");
        in_sync(&replicator).await;
        replicator.stop().await;

        // A slow server may not have compacted yet: write on until the
        // replica's newest manifest lists SSTs for the fork to read.
        let mut attempt = 0;
        // (A fork also fails when the replica's newest manifest names a WAL
        // file the home never wrote: SlateDB's clone copies every id up to
        // the manifest's next one. A newer manifest mends it.)
        let (forked, pinned) = loop {
            let made = fork(&b, "orders", "main", "keep-1").await;
            if let Ok(forked) = &made {
                let pinned: BTreeSet<String> = forked
                    .pinned
                    .get("main")
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                if !pinned.is_empty() {
                    break (forked.clone(), pinned);
                }
            }
            attempt += 1;
            assert!(
                attempt < 8,
                "{kind:?}: the fork never read an SST: {made:?}"
            );
            delete_branch(&b, "orders", "keep-1", Some("main"))
                .await
                .expect("delete");
            let replicator = Replicator::start(vec![flow.clone()], no_hold(), Arc::new(NoPins));
            writing(&home, &acks, 2000, 3).await.expect("writer");
            let replica = DbLocation::in_region(&b, "orders").expect("names");
            caught_up(&replica, &acks).await;
            in_sync(&replicator).await;
            // The newest manifest too (it follows the WAL).
            tokio::time::sleep(Duration::from_secs(2)).await;
            replicator.stop().await;
        };
        let branch = DbLocation::branch_in_region(&b, "orders", "keep-1").expect("names");
        let before = verify(&branch, None).await.expect("verify");
        assert!(before.consistent, "{kind:?}: {}", before.summary());

        // The home writes on and collects, until it deleted a pinned SST.
        let ssts_at = |region: Region| async move {
            snapshot(&region, "dbs/orders/main/compacted")
                .await
                .into_keys()
                .filter_map(|p| {
                    p.rsplit('/')
                        .next()
                        .and_then(|n| n.strip_suffix(".sst"))
                        .map(str::to_string)
                })
                .collect::<BTreeSet<String>>()
        };
        let mut collected = 0;
        for _ in 0..8 {
            writing(&home, &acks, 2000, 3).await.expect("writer");
            collected = pinned.difference(&ssts_at(a.clone()).await).count();
            if collected > 0 {
                break;
            }
        }
        assert!(
            collected > 0,
            "{kind:?}: the home kept every pinned SST; the test proves nothing"
        );

        // The list-diff runs with no grace: it deletes what the home
        // deleted, except what the fork holds.
        let pins = Arc::new(BranchPins::default());
        pins.add(&lifeboat::orchestrator::failover::branch_event(
            &forked,
            lifeboat::control::event::BranchReason::Manual,
            None,
        ));
        let mut copier = BranchCopier::standalone(
            flow,
            ReplicationOptions {
                delete_grace: Duration::ZERO,
                ..no_hold()
            },
            Arc::clone(&pins) as Arc<_>,
        );
        copier.run_once().await.expect("copy");
        let deleted = copier.prune().await.expect("prune");
        assert!(deleted > 0, "{kind:?}: the list-diff deleted nothing");
        let at_replica = ssts_at(b.clone()).await;
        let lost: Vec<_> = pinned.difference(&at_replica).collect();
        assert!(lost.is_empty(), "{kind:?}: pinned SSTs deleted: {lost:?}");
        let after = verify(&branch, None).await.expect("verify the fork again");
        assert!(after.consistent, "{kind:?}: {}", after.summary());
        assert_eq!(after.records, before.records, "{kind:?}");
    }
}

/// A drill forks, serves, probes and verifies in the secondary while the
/// primary's files and the replica stay exactly as they were; its branch
/// goes at its time to live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_never_touches_production_and_expires() {
    use lifeboat::orchestrator::drill::{self, DrillOptions};
    for kind in common::kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind, "us-east-1", dir.path());
        let b = common::region(kind, "eu-west-1", dir.path());
        let regions = vec![a.clone(), b.clone()];
        shop(&regions).await;
        let home = DbLocation::in_region(&a, "orders").expect("names");
        home.create().await.expect("create");
        let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
        let replicator = Replicator::start(
            vec![Flow::new("orders", "main", &a, &b)],
            fast(),
            Arc::new(NoPins),
        );
        writing(&home, &acks, 500, 2).await.expect("writer");
        in_sync(&replicator).await;
        let replica = DbLocation::in_region(&b, "orders").expect("names");
        caught_up(&replica, &acks).await;
        in_sync(&replicator).await;
        // Replication stops, so that anything that changes in either
        // region during the drill is the drill's doing.
        replicator.stop().await;

        let primary_before = settled(&a, "").await;
        let replica_before = settled(&b, "dbs/orders/main").await;
        let cursor_before = snapshot(&b, "_lifeboat/replication").await;
        let mut acks_by_db = BTreeMap::new();
        acks_by_db.insert("orders".to_string(), acks.clone());
        let outcome = drill::drill(
            "us-east-1",
            &b,
            &["orders".to_string()],
            "00000000000000cc",
            "test",
            DrillOptions {
                ttl: Duration::from_secs(20),
                smoke: vec!["DBSIZE".into(), "SET drill-key x".into()],
                acks: acks_by_db,
                ..DrillOptions::default()
            },
        )
        .await
        .expect("drill");
        let record = &outcome.record;
        assert!(record.ok, "{kind:?}: {record:#?}");
        assert!(record.rto_ms.is_some(), "{kind:?}");
        let verify_step = record
            .steps
            .iter()
            .find(|s| s.name.starts_with("verify"))
            .expect("a verification");
        assert!(
            verify_step
                .detail
                .contains("matches the replica's at the fork"),
            "{}",
            verify_step.detail
        );
        assert_eq!(record.rpo[0].missing_records, Some(0), "{kind:?}");
        let ws = outcome.workspace.expect("a drill workspace");
        ws.stop().await.expect("stop");

        // Production: not one object of the primary changed or appeared
        // (its replicator-side cursor lives in the secondary), and the
        // replica is as it was.
        let replica_after = snapshot(&b, "dbs/orders/main").await;
        assert_eq!(
            replica_after, replica_before,
            "{kind:?}: the replica changed"
        );
        let primary_after = snapshot(&a, "").await;
        let changed: Vec<_> = primary_after
            .iter()
            .filter(|(k, v)| primary_before.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        assert!(
            changed.is_empty(),
            "{kind:?}: the drill wrote into the primary: {changed:?}"
        );
        // The replica's cursor (its lag) is as it was.
        assert_eq!(
            snapshot(&b, "_lifeboat/replication").await,
            cursor_before,
            "{kind:?}"
        );

        // At its time to live the drill branch goes, shadow and all.
        let state = control::load(&b).await.expect("log");
        assert_eq!(state.drills().count(), 1, "{kind:?}");
        assert!(
            drill::expire(&regions, &state, "00000000000000cc", "test")
                .await
                .expect("expire")
                .is_empty(),
            "{kind:?}: expired before its time"
        );
        let expires_ms = state
            .drills()
            .next()
            .and_then(|d| d.fork.expires_ms)
            .expect("a time to live");
        let wait = expires_ms.saturating_sub(workload::now_us() / 1000) + 100;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let gone = drill::expire(&regions, &state, "00000000000000cc", "test")
            .await
            .expect("expire");
        assert_eq!(gone.len(), 1, "{kind:?}");
        let fork = &outcome.forks[0];
        let branch = DbLocation::branch_in_region(&b, "orders", &fork.branch).expect("names");
        assert!(!branch.exists().await.expect("list"), "{kind:?}");
        assert!(
            snapshot(&b, "_lifeboat/shadow").await.is_empty(),
            "{kind:?}"
        );
        let state = control::load(&b).await.expect("log");
        assert_eq!(state.drills().count(), 0, "{kind:?}");
    }
}

/// Point-in-time recovery, at the home and at the replica: a restore at T
/// holds exactly the records acknowledged before T and none written after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_at_a_time_holds_exactly_what_was_committed_by_then() {
    use lifeboat::storage::fork::fork_at;
    use lifeboat::storage::pitr;
    for kind in common::kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind, "us-east-1", dir.path());
        let b = common::region(kind, "eu-west-1", dir.path());
        let home = DbLocation::in_region(&a, "orders").expect("names");
        home.create().await.expect("create");
        let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
        let replicator = Replicator::start(
            vec![Flow::new("orders", "main", &a, &b)],
            fast(),
            Arc::new(NoPins),
        );
        pitr::checkpoint(&home, Duration::from_secs(3600))
            .await
            .expect("a scheduled checkpoint");
        let plain = |rate, secs| {
            let (loc, acks) = (home.clone(), acks.clone());
            tokio::spawn(async move {
                let spec = WorkloadSpec {
                    rate: Rate::PerSecond(rate),
                    duration: Some(Duration::from_secs(secs)),
                    records: None,
                    value_bytes: 200,
                    churn: false,
                };
                workload::run(&loc, &spec, &acks, std::future::pending())
                    .await
                    .expect("workload")
            })
        };
        let before = plain(300, 2).await.expect("writer");
        // The replica holds all of it before T (a slow server copies late).
        let replica = DbLocation::in_region(&b, "orders").expect("names");
        caught_up(&replica, &acks).await;
        // Whole-second stamps (S3) need a clear second on each side of T.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let t_ms = workload::now_us() / 1000;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let after = plain(300, 2).await.expect("writer");
        assert!(after.first_seq > before.last_acked_seq);
        caught_up(&replica, &acks).await;
        replicator.stop().await;

        for (region, name) in [(&a, "restore-home"), (&b, "restore-replica")] {
            let point = pitr::locate(region, "orders", "main", t_ms)
                .await
                .expect("a point in time");
            let forked = fork_at(region, "orders", "main", name, Some(&point))
                .await
                .expect("restore");
            let restored = DbLocation::branch_in_region(region, "orders", name).expect("names");
            let view = verify(&restored, None).await.expect("verify");
            let what = format!("{kind:?} {name}");
            assert!(view.consistent, "{what}: {}", view.summary());
            assert_eq!(
                view.highest_gap_free_seq, before.last_acked_seq,
                "{what}: {point:?} {forked:?}"
            );
            assert_eq!(
                view.records, before.last_acked_seq,
                "{what}: records after T"
            );
        }
        // Before the first checkpoint there is nothing to restore to.
        let too_early = pitr::locate(&a, "orders", "main", t_ms - 3_600_000).await;
        assert!(too_early.is_err(), "{kind:?}");
    }
}

/// A common cut: three databases written at different rates, their home
/// cut off at a random instant, failed over at one instant T, the newest
/// every replica holds. Every record of each new branch was committed at or
/// before T (by SlateDB's own stamps), and each holds every record the
/// home committed by T (read back at the home once it answers again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_common_cut_fails_databases_over_at_one_instant_every_replica_holds() {
    const DBS: [(&str, u64); 3] = [("orders", 300), ("carts", 200), ("users", 120)];
    // Clocks: the acknowledgement log's and SlateDB's are this machine's,
    // read a moment apart.
    const SKEW_MS: u64 = 20;
    let kinds: Vec<_> = common::kinds()
        .into_iter()
        .filter(|k| matches!(k, common::Kind::File | common::Kind::S3))
        .collect();
    let mut rows_written = 0;
    for kind in kinds {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind, "us-east-1", dir.path());
        let b = common::region(kind, "eu-west-1", dir.path());
        let regions = vec![a.clone(), b.clone()];
        let mut writers = Vec::new();
        let mut flows = Vec::new();
        let mut acks = BTreeMap::new();
        for (db, rate) in DBS {
            let home = DbLocation::in_region(&a, db).expect("names");
            home.create().await.expect("create");
            let log = AckLog::for_db(&dir.path().join("acks"), db);
            writers.push(writing(&home, &log, rate, 60));
            acks.insert(db.to_string(), log);
            flows.push(Flow::new(db, "main", &a, &b));
        }
        let pins = Arc::new(BranchPins::default());
        let replicator = Replicator::start(flows, fast(), Arc::clone(&pins) as Arc<_>);
        in_sync(&replicator).await;
        let dbs: Vec<String> = DBS.iter().map(|(db, _)| db.to_string()).collect();
        // A drill at one instant first, while they write: each drill branch
        // matches its replica as of that instant (with the rows by then of
        // the WAL file that straddles it).
        let drilled = lifeboat::orchestrator::drill::drill(
            a.name(),
            &b,
            &dbs,
            "00000000000000bb",
            "test",
            lifeboat::orchestrator::drill::DrillOptions {
                cut: failover::Cut::Common,
                pins: Some(Arc::clone(&pins)),
                ..Default::default()
            },
        )
        .await
        .expect("drill");
        assert!(drilled.record.ok, "{kind:?}: {:#?}", drilled.record);
        if let Some(ws) = drilled.workspace {
            ws.stop().await.expect("stop the drill workspace");
        }
        let drill_rows: u64 = drilled.forks.iter().map(|f| f.rows_written).sum();
        eprintln!("{kind:?}: rows written into drill branches as of their instant: {drill_rows}");
        rows_written += drill_rows;
        tokio::time::sleep(Duration::from_millis(1000 + fastrand::u64(..1500))).await;
        a.faults()
            .set(&"outage".parse::<FaultPlan>().expect("plan"));
        let state = control::load(&b).await.expect("log");
        let preview = failover::preview(&a, &b, &state, &dbs, failover::Cut::Common)
            .await
            .expect("preview");
        let what = format!("{kind:?}\n{}", preview.summary());
        let t_ms = preview.cut_ms.expect("the common instant");
        assert_eq!(preview.common_ms, Some(t_ms), "{what}");
        let held: Vec<u64> = preview
            .dbs
            .iter()
            .map(|db| db.held_through_ms.expect("held through"))
            .collect();
        assert_eq!(held.iter().min(), Some(&t_ms), "{what}");
        let outcome =
            common::fail_over_as_previewed(&regions, &preview, "00000000000000bb", &pins, &what)
                .await;
        eprintln!(
            "{what}\nforks made in {} ms",
            outcome.record.rto_ms.unwrap_or_default()
        );
        replicator.stop().await;
        for writer in writers {
            writer.abort();
        }
        a.faults().set(&FaultPlan::default());
        // Every row as its reader sees it: key to (value, commit stamp).
        async fn rows(loc: &DbLocation) -> BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
            let reader = loc.open_reader().await.expect("reader");
            let mut rows = reader.scan(..).await.expect("scan");
            let mut out = BTreeMap::new();
            while let Some(row) = rows.next().await.expect("row") {
                out.insert(row.key.to_vec(), (row.value.to_vec(), row.create_ts));
            }
            reader.close().await.expect("close");
            out
        }
        for fork in &outcome.forks {
            let what = format!("{what}\n{}: {fork:?}", fork.db);
            rows_written += fork.rows_written;
            let new = DbLocation::branch_in_region(&b, &fork.db, &fork.branch).expect("names");
            // Nothing committed after T.
            let forked = rows(&new).await;
            let newest = forked.values().map(|(_, ts)| *ts).max().unwrap_or(0);
            assert!(newest > 0, "{what}: the new branch holds nothing");
            assert!(
                newest <= t_ms as i64,
                "{what}: a record committed at {newest}, {} ms after T",
                newest - t_ms as i64
            );
            // Everything acknowledged before T.
            let view = verify(&new, None).await.expect("verify");
            assert!(view.consistent, "{what}: {}", view.summary());
            let acked = acked_by(&acks[&fork.db], (t_ms - SKEW_MS) * 1000);
            let lacking = acked
                .iter()
                .filter(|s| **s > view.highest_gap_free_seq)
                .count();
            assert_eq!(
                lacking,
                0,
                "{what}: {lacking} records acknowledged before T are missing ({})",
                view.summary()
            );
            assert!(
                !acked.is_empty(),
                "{what}: nothing was acknowledged before T"
            );
            // Everything the home committed by T and did not change since.
            let home = DbLocation::in_region(&a, &fork.db).expect("names");
            let by_t: Vec<_> = rows(&home)
                .await
                .into_iter()
                .filter(|(_, (_, ts))| *ts <= t_ms as i64)
                .collect();
            let lacking = by_t
                .iter()
                .filter(|(key, row)| forked.get(key) != Some(row))
                .count();
            assert_eq!(
                lacking,
                0,
                "{what}: {lacking} of the {} rows the home committed by T are not in the fork as committed",
                by_t.len()
            );
        }
    }
    // T falls inside some database's WAL file (the others' are not cut
    // at file ends): the rows by T of that file were written into its fork.
    eprintln!("rows written into forks as of T: {rows_written}");
}

/// Failover to a chosen time: a destructive migration deletes every
/// record at the home and reaches the replica; a failover as of a time
/// before it makes the records live again, exactly as they were then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_time_before_a_destructive_migration_undoes_it() {
    let kinds: Vec<_> = common::kinds()
        .into_iter()
        .filter(|k| matches!(k, common::Kind::File | common::Kind::S3))
        .collect();
    for kind in kinds {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind, "us-east-1", dir.path());
        let b = common::region(kind, "eu-west-1", dir.path());
        let home = DbLocation::in_region(&a, "orders").expect("names");
        home.create().await.expect("create");
        let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
        let pins = Arc::new(BranchPins::default());
        let replicator = Replicator::start(
            vec![Flow::new("orders", "main", &a, &b)],
            fast(),
            Arc::clone(&pins) as Arc<_>,
        );
        let before = writing(&home, &acks, 300, 2).await.expect("writer");
        let replica = DbLocation::in_region(&b, "orders").expect("names");
        caught_up(&replica, &acks).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t_ms = workload::now_us() / 1000;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The migration: every record deleted, and the replica follows.
        let writer = home.open_writer(false).await.expect("writer");
        let reader = home.open_reader().await.expect("reader");
        let mut rows = reader
            .scan(lifeboat::workload::record::key_range())
            .await
            .expect("scan");
        let mut keys = Vec::new();
        while let Some(row) = rows.next().await.expect("row") {
            keys.push(row.key);
        }
        reader.close().await.expect("close");
        for key in &keys {
            writer.delete(key).await.expect("delete");
        }
        writer.flush().await.expect("flush");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while verify(&replica, None).await.map_or(1, |v| v.records) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{kind:?}: the deletes never crossed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        writer.close().await.expect("close");

        let state = control::load(&b).await.expect("log");
        let dbs = ["orders".to_string()];
        let future = failover::preview(&a, &b, &state, &dbs, failover::Cut::At(t_ms + 3_600_000))
            .await
            .expect_err("a time to come is refused");
        assert!(
            future.to_string().contains("lies in the future"),
            "{future}"
        );
        let preview = failover::preview(&a, &b, &state, &dbs, failover::Cut::At(t_ms))
            .await
            .expect("preview");
        let what = format!("{kind:?}\n{}", preview.summary());
        let cost = preview.dbs[0].cut_cost.clone().expect("what the cut drops");
        assert_eq!(
            cost.rows,
            Some(keys.len() as u64),
            "{what}: the deletes are what it drops"
        );
        let outcome = common::fail_over_as_previewed(
            &[a.clone(), b.clone()],
            &preview,
            "00000000000000bb",
            &pins,
            &what,
        )
        .await;
        replicator.stop().await;
        let live =
            DbLocation::branch_in_region(&b, "orders", &outcome.live[0].branch).expect("names");
        let view = verify(&live, Some(&acks)).await.expect("verify");
        assert!(view.consistent, "{what}: {}", view.summary());
        assert_eq!(
            view.records,
            before.last_acked_seq,
            "{what}: {}",
            view.summary()
        );
        assert_eq!(
            view.highest_gap_free_seq,
            before.last_acked_seq,
            "{what}: {}",
            view.summary()
        );
    }
}

/// A failover opens the new writers while it records the epoch: a
/// workspace held by that record serves nothing when it could not be
/// written, and starts serving only once it stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_writers_serve_only_once_the_failover_is_recorded() {
    use lifeboat::workspace::{Recorded, StartOptions, Workspace};
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::region(common::Kind::File, "eu-west-1", dir.path());
    shop(std::slice::from_ref(&b)).await;
    DbLocation::in_region(&b, "orders")
        .expect("names")
        .create()
        .await
        .expect("create");
    let state = control::load(&b).await.expect("log");
    let held = |recorded| StartOptions {
        port: Some(0),
        serve_after: Some(recorded),
        ..StartOptions::default()
    };

    let (not_recorded, gate) = Recorded::gate();
    not_recorded.send_replace(Some(false));
    let refused = Workspace::start(b.clone(), &state, "shop", held(gate))
        .await
        .err()
        .expect("a workspace whose failover was not recorded does not serve");
    assert!(
        refused.to_string().contains("could not record"),
        "{refused}"
    );

    let (recorded, gate) = Recorded::gate();
    let start = Workspace::start(b.clone(), &state, "shop", held(gate));
    tokio::pin!(start);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), &mut start)
            .await
            .is_err(),
        "served before the record stood"
    );
    recorded.send_replace(Some(true));
    let ws = start.await.expect("serves once recorded");
    assert_eq!(ws.status().endpoints[0].mode, "writer");
    ws.stop().await.expect("stop");
}

/// Pre-provisioning: a workspace standing in the secondary follows the
/// replicas read-only; a failover promotes it to the new branches' writer
/// (in-process), and one served by another process takes them over on its
/// own once the failover is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_provisioned_workspace_becomes_the_writer_at_failover() {
    use lifeboat::workspace::{StartOptions, Workspace};
    for kind in common::kinds() {
        for in_process in [true, false] {
            let what = format!("{kind:?}, in process {in_process}");
            let dir = tempfile::tempdir().expect("tempdir");
            let (a, b, home) = shop_pair(kind, dir.path()).await;
            let regions = vec![a.clone(), b.clone()];
            let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
            let replicator = Replicator::start(
                vec![Flow::new("orders", "main", &a, &b)],
                fast(),
                Arc::new(NoPins),
            );
            writing(&home, &acks, 300, 1).await.expect("writer");
            let replica = DbLocation::in_region(&b, "orders").expect("names");
            caught_up(&replica, &acks).await;

            let state = control::load(&b).await.expect("log");
            let token = "0123456789abcdef".to_string();
            let standing = Workspace::start(
                b.clone(),
                &state,
                "shop",
                StartOptions {
                    port: Some(0),
                    probe_token: Some(token.clone()),
                    ..StartOptions::default()
                },
            )
            .await
            .expect("a standing follower");
            assert_eq!(standing.status().endpoints[0].mode, "follower", "{what}");
            let standing = Arc::new(standing);
            let preview = failover::preview(
                &a,
                &b,
                &state,
                &["orders".to_string()],
                failover::Cut::Newest,
            )
            .await
            .expect("preview");
            let mut standby = BTreeMap::new();
            if in_process {
                standby.insert("shop".to_string(), (Arc::clone(&standing), token.clone()));
            }
            let outcome = failover::failover(
                &regions,
                &preview,
                "00000000000000dd",
                "test",
                FailoverOptions {
                    port: Some(0),
                    serve: in_process,
                    standby,
                    ..FailoverOptions::default()
                },
            )
            .await
            .expect("failover");
            replicator.stop().await;
            if in_process {
                let record = &outcome.record;
                assert!(record.ok, "{what}: {record:#?}");
                assert_eq!(outcome.promoted, vec!["shop".to_string()], "{what}");
                assert!(outcome.workspaces.is_empty(), "{what}: started another");
                assert!(
                    record.steps.iter().any(|s| s.name.starts_with("promote")),
                    "{what}: {record:#?}"
                );
            } else {
                // The standing workspace reads the log every 2 s.
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while standing.status().endpoints[0].mode != "writer" {
                    assert!(std::time::Instant::now() < deadline, "{what}: not promoted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let endpoint = &standing.status().endpoints[0];
            assert_eq!(endpoint.mode, "writer", "{what}");
            assert_eq!(endpoint.branch, "failover-1", "{what}");
            for ws in outcome.workspaces {
                ws.stop().await.expect("stop");
            }
            if let Ok(ws) = Arc::try_unwrap(standing) {
                ws.stop().await.expect("stop");
            }
        }
    }
}

/// A failover run by the engine a `serve` holds the group's leases in,
/// asked for from the command line; the engine recovers the stranded
/// writes by itself; then `merge --yes` from another process, while a client keeps writing at the new connection
/// string: the serving workspace is never fenced (every write answered
/// OK), and after the merge every acknowledged record is there.
#[test]
fn a_failover_and_merge_from_other_terminals_go_through_the_engine_which_recovers_by_itself_and_never_fences_production()
 {
    use common::{lifeboat, run, stdout};

    if !common::redis_cli_found() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    shop_with_a_user(data);
    ok(run(
        lifeboat(data),
        &["group", "configure", "--secondary", "eu-west-1"],
    ));
    let write = |records: &str| write_orders(data, records);
    write("300");
    let mut engine = common::Served::start(data);
    engine.until(Duration::from_secs(60), |l| {
        l.contains("\"db\":\"orders\"") && l.contains("\"InSync\"")
    });
    // Replication paused (by the engine, asked from here): the next
    // records stay in us-east-1 only, and are stranded by the failover.
    let out = ok(run(lifeboat(data), &["group", "pause", "orders"]));
    assert!(stdout(&out).contains("orders paused"), "{}", stdout(&out));
    write("100");

    let out = ok(run(lifeboat(data), &["--json", "failover", "--yes"]));
    let text = stdout(&out);
    let record: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no record ({e}): {text}\n{}", common::stderr(&out)));
    assert_eq!(record["ok"], true, "{record:#}");
    assert!(
        common::stderr(&out).contains("sent to the engine"),
        "{}",
        common::stderr(&out)
    );
    let port = endpoint_port(&record);
    assert_eq!(redis_cli(port, &["set", "first", "write"]), "OK");

    // A client writes throughout the recovery and the merge.
    let (written, merged) = writing_throughout(port, || {
        // us-east-1 answers: the engine recovers what was stranded there by
        // itself; a person asking again is told where it is.
        let asked = std::time::Instant::now();
        loop {
            let out = run(lifeboat(data), &["recover", "--db", "orders", "--show"]);
            if out.status.success() {
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(60),
                "the engine never recovered the stranded writes: {}",
                common::stderr(&out)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = run(lifeboat(data), &["recover", "--db", "orders", "--yes"]);
        common::assert_one_error_line(
            &out,
            1,
            &["were recovered already", "lifeboat merge --db orders"],
        );
        let out = ok(run(
            lifeboat(data),
            &["merge", "--db", "orders", "--all", "--yes"],
        ));
        stdout(&out)
    });
    // 400 workload records (300 replicated, 100 recovered), the first
    // write and the client's.
    let size: usize = redis_cli(port, &["dbsize"]).parse().expect("a number");
    assert_eq!(size, 400 + 1 + written, "merge said: {merged}");
    assert_eq!(redis_cli(port, &["get", "first"]), "write");
    // The recovered branch goes, deleted by the engine too.
    let out = ok(run(
        lifeboat(data),
        &["branch", "delete", "--db", "orders", "recovered-1"],
    ));
    assert!(
        stdout(&out).contains("deleted orders/recovered-1")
            && common::stderr(&out).contains("sent to the engine"),
        "{}{}",
        stdout(&out),
        common::stderr(&out)
    );
}

// Zero loss ---------------------------------------------------------------

/// SETs `zl/<client>/<n>` at `addr`, one after another, until `stop`; the
/// keys the workspace answered `+OK`. A write asked for before `stop` is
/// waited for (up to 5 s): one acknowledged late counts too.
async fn set_until(
    addr: std::net::SocketAddr,
    client: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut acked = Vec::new();
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return acked;
    };
    let mut stream = BufReader::new(stream);
    for n in 0u64.. {
        if *stop.borrow() {
            break;
        }
        let key = format!("zl/{client}/{n}");
        let value = n.to_string();
        let request = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        );
        if stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut line)).await {
            Ok(Ok(read)) if read > 0 => {}
            _ => break,
        }
        if line.starts_with("+OK") {
            acked.push(key);
        } else {
            // The home's store is gone: the write failed, and says so.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    acked
}

/// Every key in `keys` read back through `redis-cli` at `port`: the ones
/// whose value is not the number the key ends with.
fn missing_through_redis_cli(port: u16, keys: &[String]) -> Vec<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    let mut input = String::new();
    for key in keys {
        input.push_str(&format!("GET {key}\n"));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("redis-cli");
    writer.join().expect("writer").expect("stdin written");
    let text = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = text.lines().collect();
    assert_eq!(
        answers.len(),
        keys.len(),
        "redis-cli answered {} lines for {} keys; stderr: {}",
        answers.len(),
        keys.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    keys.iter()
        .zip(answers)
        .filter(|(key, answer)| key.rsplit('/').next() != Some(answer.trim()))
        .map(|(key, _)| key.clone())
        .collect()
}

/// A zero-loss group, four clients writing through the workspace in the
/// primary; the primary's store is cut off for good at a random instant;
/// failover. Every write a client saw acknowledged is in the new live
/// branch, read back with `redis-cli` at the new connection string. Twenty
/// times on local folders and on S3 (`LIFEBOAT_ZERO_LOSS_RUNS` to change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_loss_failover_loses_no_acknowledged_write_when_the_primary_is_gone_for_good() {
    if !common::redis_cli_found() {
        return;
    }
    let runs: usize = std::env::var("LIFEBOAT_ZERO_LOSS_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let kinds: Vec<_> = common::kinds()
        .into_iter()
        .filter(|k| matches!(k, common::Kind::File | common::Kind::S3))
        .collect();
    for kind in kinds {
        let mut acked_total = 0;
        for run in 0..runs {
            let what = format!("{kind:?}, run {run}");
            let dir = tempfile::tempdir().expect("tempdir");
            let (a, b, _) = shop_pair(kind, dir.path()).await;
            let regions = vec![a.clone(), b.clone()];
            let pins = Arc::new(BranchPins::default());
            let replicator = Replicator::start(
                vec![Flow::new("orders", "main", &a, &b)],
                fast(),
                Arc::clone(&pins) as Arc<_>,
            );
            // A write the replica does not hold is acknowledged after 2 s
            // (and the link suspended): a client waiting 5 s sees it, and
            // the read-back finds it lost. One whose WAL never reached the
            // home's store is never acknowledged (the clients give up).
            replicator.set_promise(Some(Duration::from_secs(2)), false);
            in_sync(&replicator).await;
            let served = serve_shop(&a).await;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let clients: Vec<_> = (0..4)
                .map(|c| tokio::spawn(set_until(served.addr(), c, stop_rx.clone())))
                .collect();
            tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1500))).await;
            a.faults()
                .set(&"outage".parse::<FaultPlan>().expect("plan"));
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop_tx.send(true).expect("clients listen");
            let mut acked = Vec::new();
            for client in clients {
                acked.extend(client.await.expect("client"));
            }
            assert!(!acked.is_empty(), "{what}: no write was acknowledged");
            acked_total += acked.len();

            let state = control::load(&b).await.expect("log");
            let preview = failover::preview(
                &a,
                &b,
                &state,
                &["orders".to_string()],
                failover::Cut::Newest,
            )
            .await
            .expect("preview");
            assert!(!preview.primary_reachable, "{what}");
            let outcome = failover::failover(
                &regions,
                &preview,
                "00000000000000ee",
                "test",
                FailoverOptions {
                    port: Some(0),
                    serve: true,
                    pins: Some(Arc::clone(&pins)),
                    ..FailoverOptions::default()
                },
            )
            .await
            .expect("failover");
            assert!(outcome.record.ok, "{what}: {:#?}", outcome.record);
            let port = outcome.workspaces[0].addr().port();
            let missing = tokio::task::spawn_blocking({
                let acked = acked.clone();
                move || missing_through_redis_cli(port, &acked)
            })
            .await
            .expect("read back");
            if !missing.is_empty() {
                let tail: Vec<_> = snapshot(&b, "dbs/orders/main")
                    .await
                    .into_keys()
                    .filter(|k| k.contains("/wal/"))
                    .rev()
                    .take(4)
                    .collect();
                eprintln!(
                    "{what}: the replica's newest WAL files {tail:?}; the fork {:#?}",
                    outcome.forks[0]
                );
            }
            assert!(
                missing.is_empty(),
                "{what}: {} of {} acknowledged writes lost, e.g. {:?}",
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(5)]
            );
            replicator.stop().await;
            for ws in outcome.workspaces {
                ws.stop().await.expect("stop");
            }
            // The old writer cannot reach its store: its close fails.
            if let Err(e) = served.stop().await {
                eprintln!("{what}: the old workspace stopped with: {e}");
            }
        }
        eprintln!("{kind:?}: {runs} runs, {acked_total} acknowledged writes, none lost");
    }
}

/// What the guard test's writers saw.
#[derive(Debug, Default)]
struct Writes {
    acked: usize,
    refused: usize,
    /// One refusal's line.
    refusal: Option<String>,
    /// Milliseconds each acknowledged write took.
    took_ms: Vec<u64>,
}

/// SETs 8 KiB values at `addr` as fast as the answers come, until `stop`.
async fn heavy_writer(
    addr: std::net::SocketAddr,
    client: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Writes {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut seen = Writes::default();
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return seen;
    };
    let mut stream = BufReader::new(stream);
    let value: String = (0..8192).map(|_| fastrand::alphanumeric()).collect();
    for n in 0u64.. {
        if *stop.borrow() {
            break;
        }
        let key = format!("heavy/{client}/{n}");
        let request = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        );
        let started = std::time::Instant::now();
        if stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(read) if read > 0 => {}
            _ => break,
        }
        if line.starts_with("+OK") {
            seen.acked += 1;
            seen.took_ms.push(started.elapsed().as_millis() as u64);
        } else {
            seen.refused += 1;
            seen.refusal.get_or_insert_with(|| line.trim().to_string());
        }
    }
    seen
}

/// Eight heavy writers through the workspace for `secs`, the secondary
/// behind a 1 MiB/s link, the RPO target 5 s, the guard `on` or off: what
/// the writers saw, and the largest lag the flow showed (sampled every
/// 100 ms).
async fn guarded_run(on: bool, secs: u64) -> (Writes, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _) = shop_pair(common::Kind::File, dir.path()).await;
    let target = Duration::from_secs(5);
    // The link is slow from the start: the guard learns its rate.
    b.faults()
        .set(&"bandwidth=1MiB".parse::<FaultPlan>().expect("plan"));
    let replicator = Replicator::start(
        vec![Flow::new("orders", "main", &a, &b)],
        ReplicationOptions::for_rpo_target(target),
        Arc::new(NoPins),
    );
    replicator.set_rpo_target(target);
    replicator.set_promise(None, on);
    in_sync(&replicator).await;
    let served = serve_shop(&a).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..8)
        .map(|c| tokio::spawn(heavy_writer(served.addr(), c, stop_rx.clone())))
        .collect();
    let mut worst_lag: f64 = 0.0;
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        for status in replicator.statuses() {
            worst_lag = worst_lag.max(status.lag_s.unwrap_or(0.0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).expect("writers listen");
    let mut seen = Writes::default();
    for writer in writers {
        let w = writer.await.expect("writer");
        seen.acked += w.acked;
        seen.refused += w.refused;
        seen.took_ms.extend(w.took_ms);
        if seen.refusal.is_none() {
            seen.refusal = w.refusal;
        }
    }
    b.faults().set(&FaultPlan::default());
    replicator.stop().await;
    served.stop().await.expect("stop");
    seen.took_ms.sort_unstable();
    (seen, worst_lag)
}

/// The RPO guard keeps a replica behind a 1 MiB/s link within its 5 s
/// target under eight heavy writers: writes are slowed, then refused with
/// one line that says why and what to do; without the guard the same
/// writers drive the lag past the target (the guard is what holds it).
/// On local folders: the link is the fault injector's, the same for
/// every kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpo_guard_slows_then_refuses_writes_and_keeps_the_lag_under_the_target() {
    let (off, off_lag) = guarded_run(false, 12).await;
    let (on, on_lag) = guarded_run(true, 20).await;
    let p90 = |w: &Writes| {
        w.took_ms
            .get(w.took_ms.len() * 9 / 10)
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "guard off: {} acknowledged, p90 {} ms, worst lag {off_lag:.1} s; guard on: {} acknowledged, {} refused, p90 {} ms, worst lag {on_lag:.1} s; {:?}",
        off.acked,
        p90(&off),
        on.acked,
        on.refused,
        p90(&on),
        on.refusal
    );
    assert!(
        off_lag > 5.0,
        "without the guard the lag stayed at {off_lag:.1} s"
    );
    assert_eq!(
        off.refused, 0,
        "refused with the guard off: {:?}",
        off.refusal
    );
    assert!(on_lag < 5.0, "with the guard the lag reached {on_lag:.1} s");
    let refusal = on.refusal.clone().unwrap_or_default();
    assert!(
        refusal.starts_with("-NOREPLICAS RPO guard")
            && refusal.contains("too close to the group's RPO target of 5 s")
            && refusal.contains("turn the guard off"),
        "{refusal}"
    );
    assert!(on.acked > 0, "the guard refused everything");
    assert!(
        p90(&on) >= 20,
        "writes were not slowed: p90 {} ms",
        p90(&on)
    );
}

/// Hostile clients against writes the RPO guard holds: the secondary is
/// out, so every write waits its second and is refused. Sixty-four
/// connections each pipeline 1,000 SETs of 4 KiB; meanwhile a fresh
/// client's PING and GET answer at once, and the process's memory stays
/// within what the workspace's bounds allow (the held writes keep no more
/// than their own requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_held_by_the_guard_cost_their_own_connections_only() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _) = shop_pair(common::Kind::File, dir.path()).await;
    let replicator = Replicator::start(
        vec![Flow::new("orders", "main", &a, &b)],
        fast(),
        Arc::new(NoPins),
    );
    replicator.set_promise(None, true);
    in_sync(&replicator).await;
    b.faults().set_outage(true);
    let served = serve_shop(&a).await;
    let addr = served.addr();
    let rss_before = rss_kib();
    // One batch all the clients send (the test's own memory stays 4 MiB).
    let value = "v".repeat(4096);
    let mut batch = String::new();
    for n in 0..1000 {
        let key = format!("flood/{n}");
        batch.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        ));
    }
    let batch = Arc::new(batch);
    let mut flood = Vec::new();
    for _ in 0..64 {
        let batch = Arc::clone(&batch);
        flood.push(tokio::spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            // The server may stop reading; that is its right.
            let _ =
                tokio::time::timeout(Duration::from_secs(20), stream.write_all(batch.as_bytes()))
                    .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A fresh client is answered at once.
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$6\r\nabsent\r\n")
        .await
        .expect("send");
    let mut pong = String::new();
    let mut nil = String::new();
    tokio::time::timeout(Duration::from_secs(2), async {
        stream.read_line(&mut pong).await.expect("pong");
        stream.read_line(&mut nil).await.expect("nil");
    })
    .await
    .expect("PING and GET answered within 2 s");
    assert_eq!((pong.trim(), nil.trim()), ("+PONG", "$-1"));
    assert!(started.elapsed() < Duration::from_secs(2));
    // 64 × 4 MiB offered; the workspace holds at most its budget.
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!("64 flooding connections: memory grew by {grown_mib} MiB");
    assert!(grown_mib < 200, "memory grew by {grown_mib} MiB");
    for task in flood {
        task.abort();
    }
    b.faults().set_outage(false);
    replicator.stop().await;
    served.stop().await.expect("stop");
}

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
