//! Stranded writes, merge, switchover and failback against real regions
//! (every kind `common::kinds()` gives): writes a failed region kept taking
//! come back as a recovered branch, the comparison a responder reads is
//! the one every merge writes, every acknowledged record survives a full
//! merge, an interrupted merge run again ends the same with nothing written
//! twice, a switchover under load loses nothing, and a failback copies only
//! what was made since the failover.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lifeboat::control::event::OperationKind;
use lifeboat::control::{self};
use lifeboat::orchestrator::failover;
use lifeboat::orchestrator::merge::{self, MergeOptions, Pick};
use lifeboat::orchestrator::recover::{self, RecoverOptions};
use lifeboat::orchestrator::switchover::{self, SwitchOptions};
use lifeboat::region::Region;
use lifeboat::region::faults::FaultPlan;
use lifeboat::replication::pins::BranchPins;
use lifeboat::replication::{Flow, ReplicationOptions, Replicator};
use lifeboat::storage::DbLocation;
use lifeboat::storage::cursor;
use lifeboat::storage::view::checksum;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::record;
use lifeboat::workload::verify::verify;
use lifeboat::workload::{self, Rate, WorkloadSpec};
use slatedb::config::{FlushOptions, FlushType};

use common::flows::{caught_up, fast, in_sync, shop, writing};

const ENGINE: &str = "00000000000000bb";

/// Waits until `replica` holds at least one workload record (a slow
/// server may be "in sync" with an empty seed at first).
async fn holds_records(replica: &DbLocation) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while verify(replica, None)
        .await
        .map_or(0, |v| v.highest_gap_free_seq)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never held a record"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Fails `orders` over from `a` to `b` without serving it.
async fn fail_over(regions: &[Region], a: &Region, b: &Region, pins: &Arc<BranchPins>) -> String {
    let state = control::load(b).await.expect("log");
    let preview = failover::preview(a, b, &state, &["orders".to_string()], failover::Cut::Newest)
        .await
        .expect("preview");
    let outcome = common::fail_over_as_previewed(regions, &preview, ENGINE, pins, "orders").await;
    outcome.live[0].branch.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranded_writes_come_back_and_a_merge_loses_no_acknowledged_record() {
    for kind in common::kinds() {
        let what = format!("{kind:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind, "us-east-1", dir.path());
        let b = common::region(kind, "eu-west-1", dir.path());
        // The workload's own handle on the old primary: the engine's
        // handle loses the region, the writer keeps writing there.
        let a_writer = Region::open_apart(a.spec()).expect("second handle");
        let regions = vec![a.clone(), b.clone()];
        let home = DbLocation::in_region(&a_writer, "orders").expect("names");
        home.create().await.expect("create");
        let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
        let pins = Arc::new(BranchPins::default());
        // The replica deletes what its home collected without a grace
        // period: what the comparison reads there (the live branch's fork
        // point) must be kept by pins, however long the recovery takes.
        let replicator = Replicator::start(
            vec![Flow::new("orders", "main", &a, &b)],
            ReplicationOptions {
                delete_grace: Duration::ZERO,
                ..fast()
            },
            Arc::clone(&pins) as Arc<_>,
        );
        let writer = writing(&home, &acks, 300, 120);
        // The replica need not keep up with the writer (on a busy machine
        // it may not): the failover takes whatever it holds.
        holds_records(&DbLocation::in_region(&b, "orders").expect("names")).await;

        // The primary is lost to the engine; its writer goes on.
        a.faults()
            .set(&"outage".parse::<FaultPlan>().expect("plan"));
        let live = fail_over(&regions, &a, &b, &pins).await;
        let live_loc = DbLocation::branch_in_region(&b, "orders", &live).expect("names");
        let held = verify(&live_loc, None)
            .await
            .expect("verify the live branch")
            .highest_gap_free_seq;
        assert!(held > 0, "{what}: the live branch holds nothing");

        // The live branch takes writes of its own: two records the old
        // primary also wrote after the fork (conflicts), and one key only
        // it has.
        let ours = |seq: u64| record::value(seq, workload::now_us(), "live", 100);
        let db = live_loc.open_writer(false).await.expect("writer");
        for seq in [held + 1, held + 2] {
            db.put(&record::key(seq), &ours(seq)).await.expect("put");
        }
        db.put(b"live/only", b"kept").await.expect("put");
        db.flush().await.expect("flush");
        db.close().await.expect("close");
        // Let the stranded writer get well past the fork.
        tokio::time::sleep(Duration::from_secs(2)).await;

        // The region returns: recover.
        let deleted = |r: &Replicator| r.statuses().iter().map(|s| s.objects_deleted).sum::<u64>();
        let deleted_before = deleted(&replicator);
        a.faults()
            .set(&lifeboat::region::faults::FaultPlan::default());
        let state = control::load_all(&regions).await.expect("log");
        let outcome = recover::recover(
            &regions,
            &state,
            "orders",
            ENGINE,
            "test",
            RecoverOptions {
                pins: Some(Arc::clone(&pins)),
                replication: Some(fast()),
                ..RecoverOptions::default()
            },
        )
        .await
        .expect("recover");
        let recovered = outcome.recovered.expect("writes were stranded");
        assert!(outcome.record.ok, "{what}: {:#?}", outcome.record);

        // The fence stopped the old writer: its next write failed.
        let report = tokio::time::timeout(Duration::from_secs(90), writer)
            .await
            .expect("the workload ends")
            .expect("writer task");
        let error = report.error.clone().unwrap_or_default();
        assert!(
            error.contains("newer DB client") || error.to_lowercase().contains("fenced"),
            "{what}: the old writer was not fenced: {report:?}"
        );
        // The replica catches up with the home's last state and deletes
        // what the home collected while its writes were stranded.
        let ok = replicator
            .wait_until(Duration::from_secs(120), |s| {
                s.objects_deleted > deleted_before && s.objects_pending == 0
            })
            .await;
        assert!(
            ok,
            "{what}: the replica deleted nothing: {:#?}",
            replicator.statuses()
        );
        // Two more heals, each of which may delete.
        tokio::time::sleep(fast().heal_every * 3).await;
        replicator.stop().await;

        // The comparison reads as the recovery showed it.
        let state = control::load(&b).await.expect("log");
        let again = recover::inspect(&b, &state, "orders", &recovered.branch)
            .await
            .expect("inspect");
        assert!(
            again.unlike_recorded.is_none(),
            "{what}: {}",
            again.summary()
        );
        let fixed = |r: &recover::Recovered| -> Vec<(Bytes, Option<Bytes>, Option<Bytes>)> {
            r.changes
                .iter()
                .map(|c| (c.key.clone(), c.base.clone(), c.recovered.clone()))
                .collect()
        };
        assert!(
            fixed(&again) == fixed(&recovered),
            "{what}: the comparison moved under the responder: {} then, {} now",
            recovered.summary(),
            again.summary()
        );

        // Every acknowledged record is in the recovered branch (what the
        // old primary ended with), none lost.
        let branch = DbLocation::branch_in_region(&b, "orders", &recovered.branch).expect("names");
        let view = verify(&branch, Some(&acks))
            .await
            .expect("verify recovered");
        let check = view.acks.as_ref().expect("ack log");
        assert_eq!(check.missing_acked, 0, "{what}: {}", view.summary());
        assert!(
            view.highest_seq > held + 2,
            "{what}: nothing was stranded past the fork ({} ≤ {held} + 2)",
            view.highest_seq
        );

        // Exactly the records written after the fork point changed, and
        // exactly the two the live branch wrote too conflict.
        let expected: Vec<Bytes> = (held + 1..=view.highest_seq).map(record::key).collect();
        let changed: Vec<Bytes> = recovered.changes.iter().map(|c| c.key.clone()).collect();
        assert!(
            changed == expected,
            "{what}: the changed keys: {} from {:?} to {:?}, not {} from {} to {}",
            changed.len(),
            changed.first(),
            changed.last(),
            expected.len(),
            held + 1,
            view.highest_seq
        );
        assert!(recovered.changes.iter().all(|c| c.base.is_none()), "{what}");
        let conflicts: Vec<&recover::Change> =
            recovered.changes.iter().filter(|c| c.conflict()).collect();
        assert_eq!(conflicts.len(), 2, "{what}: {conflicts:#?}");
        for (c, seq) in conflicts.iter().zip([held + 1, held + 2]) {
            assert_eq!(c.key, record::key(seq), "{what}");
            let live_value = c.live.as_deref().expect("the live value");
            let parsed = record::parse(&c.key, live_value).expect("a record");
            assert_eq!(parsed.run, "live", "{what}: the live side's value");
            let stranded = c.recovered.as_deref().expect("the recovered value");
            let parsed = record::parse(&c.key, stranded).expect("a record");
            assert_eq!(parsed.run, report.run, "{what}: the stranded side's value");
        }
        // The log knows the recovered branch.
        let state = control::load(&b).await.expect("log");
        let logged = &state.recovered["orders"][&recovered.branch];
        assert_eq!(logged.recovered.changed, expected.len() as u64, "{what}");
        assert_eq!(logged.recovered.conflicts, 2, "{what}");

        // Merge everything, interrupted after two batches, then again.
        let pending = recovered.pending() as u64;
        let chunk = (pending as usize / 4).max(1);
        let merge_all = async |state: &control::state::ControlState, stop| {
            let options = MergeOptions {
                pick: Pick::All,
                chunk_keys: chunk,
                stop_after_chunks: stop,
                ..MergeOptions::default()
            };
            merge::merge(
                &regions,
                state,
                "orders",
                &recovered.branch,
                ENGINE,
                "test",
                options,
            )
            .await
        };
        let first = merge_all(&state, Some(2)).await.expect("first merge");
        assert!(!first.complete, "{what}: the interruption did not happen");
        assert_eq!(first.applied, 2 * chunk as u64, "{what}");
        let state = control::load(&b).await.expect("log");
        let second = merge_all(&state, None).await.expect("second merge");
        assert!(second.complete, "{what}");
        assert_eq!(
            first.applied + second.applied,
            pending,
            "{what}: a key was written twice, or one was left out"
        );
        assert_eq!(second.already, first.applied, "{what}");
        let third = merge_all(&state, None).await.expect("third merge");
        assert_eq!(third.applied, 0, "{what}: a finished merge wrote again");

        // The live branch now holds every acknowledged record, the
        // recovered values of the conflicts, and its own key.
        let view = verify(&live_loc, Some(&acks)).await.expect("verify live");
        assert!(view.consistent, "{what}: {}", view.summary());
        assert_eq!(
            view.acks.as_ref().expect("acks").missing_acked,
            0,
            "{what}: {}",
            view.summary()
        );
        let reader = live_loc.open_reader().await.expect("reader");
        for c in &conflicts {
            let now = reader.get(&c.key).await.expect("get");
            assert_eq!(
                now, c.recovered,
                "{what}: the conflict took the recovered value"
            );
        }
        assert_eq!(
            reader.get(b"live/only").await.expect("get").as_deref(),
            Some(&b"kept"[..]),
            "{what}: the merge lost a key only the live branch had"
        );
        reader.close().await.expect("close");
        let state = control::load(&b).await.expect("log");
        let logged = &state.recovered["orders"][&recovered.branch];
        assert_eq!(logged.merged, pending, "{what}");
        assert!(
            state
                .operations
                .iter()
                .any(|r| r.kind == OperationKind::Recovery),
            "{what}"
        );

        // A comparison that no longer reads as recorded (here: a stray
        // write into the recovered branch) is said so, and no merge
        // writes it.
        let stray = branch.open_writer(false).await.expect("writer");
        stray.put(b"stray", b"x").await.expect("put");
        stray.flush().await.expect("flush");
        stray.close().await.expect("close");
        let shown = recover::inspect(&b, &state, "orders", &recovered.branch)
            .await
            .expect("inspect");
        let why = shown.unlike_recorded.clone().unwrap_or_default();
        assert!(
            why.contains(&format!(
                "{} changed key(s) then, {} now",
                recovered.changes.len(),
                recovered.changes.len() + 1
            )),
            "{what}: {}",
            shown.summary()
        );
        let live_before = checksum(&live_loc).await.expect("checksum");
        let refused = merge_all(&state, None).await;
        let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("not the comparison recorded"),
            "{what}: {error}"
        );
        assert_eq!(
            checksum(&live_loc).await.expect("checksum"),
            live_before,
            "{what}: a refused merge wrote"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_load_loses_nothing_and_reverses_the_flow() {
    for kind in common::kinds() {
        let what = format!("{kind:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind, "us-east-1", dir.path());
        let b = common::region(kind, "eu-west-1", dir.path());
        let regions = vec![a.clone(), b.clone()];
        shop(&regions).await;
        let home = DbLocation::in_region(&a, "orders").expect("names");
        home.create().await.expect("create");
        let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
        let pins = Arc::new(BranchPins::default());
        let replicator = Replicator::start(
            vec![Flow::new("orders", "main", &a, &b)],
            fast(),
            Arc::clone(&pins) as Arc<_>,
        );
        let writer = writing(&home, &acks, 300, 120);
        in_sync(&replicator).await;
        holds_records(&DbLocation::in_region(&b, "orders").expect("names")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;

        let state = control::load(&b).await.expect("log");
        let plan = switchover::plan(
            &a,
            &b,
            &state,
            &["orders".to_string()],
            OperationKind::Switchover,
        )
        .await
        .expect("plan");
        assert_eq!(plan.workspaces, vec!["shop".to_string()], "{what}");
        let mut acks_by_db = BTreeMap::new();
        acks_by_db.insert("orders".to_string(), acks.clone());
        let outcome = switchover::switchover(
            &regions,
            &plan,
            ENGINE,
            "test",
            SwitchOptions {
                port: Some(0),
                serve: true,
                acks: acks_by_db,
                pins: Some(Arc::clone(&pins)),
                replication: Some(fast()),
                ..SwitchOptions::default()
            },
        )
        .await
        .expect("switchover");
        let record = &outcome.record;
        assert!(record.ok, "{what}: {record:#?}");
        assert!(
            record.rto_to.contains("first write"),
            "{what}: {}",
            record.rto_to
        );
        assert!(record.rto_ms.is_some(), "{what}");
        // RPO zero: every record acknowledged before the stop is there.
        assert_eq!(
            record.rpo[0].missing_records,
            Some(0),
            "{what}: {record:#?}"
        );
        assert!(record.rpo[0].acknowledged.unwrap_or(0) > 0, "{what}");

        // The old writer was stopped by the fence.
        let report = tokio::time::timeout(Duration::from_secs(90), writer)
            .await
            .expect("the workload ends")
            .expect("writer task");
        assert!(report.error.is_some(), "{what}: the old writer went on");
        // The flow from the old home stopped by itself.
        let stopped = replicator
            .wait_until(Duration::from_secs(10), |s| {
                s.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("moved away"))
            })
            .await;
        assert!(stopped, "{what}: {:#?}", replicator.statuses());
        replicator.stop().await;
        let new_home = DbLocation::in_region(&b, "orders").expect("names");
        let view = verify(&new_home, Some(&acks)).await.expect("verify");
        assert_eq!(
            view.acks.as_ref().expect("acks").missing_acked,
            0,
            "{what}: {}",
            view.summary()
        );
        assert!(view.consistent, "{what}: {}", view.summary());

        // The homes swapped: b writes, a follows.
        assert!(
            cursor::load(&b.store(), b.name(), "orders", "main")
                .await
                .expect("cursor")
                .is_none(),
            "{what}"
        );
        let replica_cursor = cursor::load(&a.store(), a.name(), "orders", "main")
            .await
            .expect("cursor")
            .expect("a follows b");
        assert_eq!(replica_cursor.home, b.name(), "{what}");
        let state = control::load(&a).await.expect("log");
        assert_eq!(state.live_region("orders"), Some(b.name()), "{what}");
        assert_eq!(state.epoch, 1, "{what}");

        // Writes at the new home reach the old one.
        for ws in outcome.workspaces {
            ws.stop().await.expect("stop");
        }
        let flows = lifeboat::replication::discover(&regions, None, None, Some("orders"))
            .await
            .expect("discover");
        assert_eq!(flows.len(), 1, "{what}");
        assert_eq!(flows[0].home.name(), b.name(), "{what}: {flows:?}");
        let back = Replicator::start(flows, fast(), Arc::clone(&pins) as Arc<_>);
        let spec = WorkloadSpec {
            rate: Rate::PerSecond(300),
            duration: None,
            records: Some(200),
            value_bytes: 200,
            churn: false,
        };
        let ran = workload::run(&new_home, &spec, &acks, std::future::pending())
            .await
            .expect("writes at the new home");
        assert!(ran.error.is_none(), "{what}: {ran:?}");
        let old_home = DbLocation::in_region(&a, "orders").expect("names");
        caught_up(&old_home, &acks).await;
        back.stop().await;
        let view = verify(&old_home, Some(&acks)).await.expect("verify");
        assert_eq!(
            view.acks.as_ref().expect("acks").missing_acked,
            0,
            "{what}: the old home does not follow: {}",
            view.summary()
        );
    }
}

/// Replicates, fails over, writes at the new live branch and fails back,
/// on each kind and on a mixed pair (an S3 primary, an Azure secondary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failback_copies_only_what_was_made_since_the_failover() {
    for (kind_a, kind_b) in common::pairs() {
        let what = format!("{kind_a:?} to {kind_b:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let a = common::region(kind_a, "us-east-1", dir.path());
        let b = common::region(kind_b, "eu-west-1", dir.path());
        let regions = vec![a.clone(), b.clone()];
        let home = DbLocation::in_region(&a, "orders").expect("names");
        home.create().await.expect("create");
        let acks = AckLog::for_db(&dir.path().join("acks"), "orders");
        // A database worth copying: 4000 records of 1 KiB.
        let seed = WorkloadSpec {
            rate: Rate::Max,
            duration: None,
            records: Some(4000),
            value_bytes: 1024,
            churn: false,
        };
        let ran = workload::run(&home, &seed, &acks, std::future::pending())
            .await
            .expect("seed");
        assert!(ran.error.is_none(), "{what}: {ran:?}");
        // As a database that has run a while: its data in SSTs, not
        // waiting in the WAL (a fork copies unflushed WAL).
        let db = home.open_writer(false).await.expect("writer");
        db.flush_with_options(FlushOptions {
            flush_type: FlushType::MemTable,
        })
        .await
        .expect("flush the memtable");
        db.close().await.expect("close");
        let pins = Arc::new(BranchPins::default());
        let replicator = Replicator::start(
            vec![Flow::new("orders", "main", &a, &b)],
            fast(),
            Arc::clone(&pins) as Arc<_>,
        );
        in_sync(&replicator).await;
        replicator.stop().await;
        let live = fail_over(&regions, &a, &b, &pins).await;

        // The new live branch flows back; N writes are made there.
        let back = Replicator::start(
            vec![Flow::new("orders", &live, &b, &a)],
            fast(),
            Arc::clone(&pins) as Arc<_>,
        );
        let live_loc = DbLocation::branch_in_region(&b, "orders", &live).expect("names");
        let writes = WorkloadSpec {
            rate: Rate::PerSecond(500),
            duration: None,
            records: Some(300),
            value_bytes: 1024,
            churn: false,
        };
        let ran = workload::run(&live_loc, &writes, &acks, std::future::pending())
            .await
            .expect("writes after the failover");
        assert!(ran.error.is_none(), "{what}: {ran:?}");
        in_sync(&back).await;
        let flowed_back: u64 = back.statuses().iter().map(|s| s.bytes_copied).sum();
        back.stop().await;

        let state = control::load_all(&regions).await.expect("log");
        let plan = switchover::plan(
            &b,
            &a,
            &state,
            &["orders".to_string()],
            OperationKind::Failback,
        )
        .await
        .expect("plan");
        let outcome = switchover::switchover(
            &regions,
            &plan,
            ENGINE,
            "test",
            SwitchOptions {
                pins: Some(Arc::clone(&pins)),
                replication: Some(fast()),
                ..SwitchOptions::default()
            },
        )
        .await
        .expect("failback");
        assert!(outcome.record.ok, "{what}: {:#?}", outcome.record);
        assert_eq!(outcome.record.kind, OperationKind::Failback, "{what}");

        // Bytes that crossed back: what flowed since the failover and what
        // the failback copied, against the files the live branch made.
        let made = live_loc.describe().await.expect("describe").size_bytes;
        if std::env::var_os("LIFEBOAT_DEBUG_FILES").is_some() {
            use futures::TryStreamExt;
            let listed: Vec<_> = b
                .store()
                .list(Some(&live_loc.path))
                .try_collect()
                .await
                .expect("list");
            for m in listed {
                println!("{} {}", m.location, m.size);
            }
        }
        let copied = flowed_back + outcome.bytes_copied;
        println!(
            "{what}: copied back {copied} bytes for {made} bytes made since the failover; database {} bytes",
            outcome.database_bytes
        );
        assert!(
            copied as f64 <= 1.2 * made as f64,
            "{what}: copied {copied} bytes back for {made} made since the failover"
        );
        assert!(
            copied * 3 < outcome.database_bytes,
            "{what}: copied {copied} of a {}-byte database: not incremental",
            outcome.database_bytes
        );

        // The live branch is written in the old primary again, whole.
        let state = control::load(&a).await.expect("log");
        assert_eq!(state.live_region("orders"), Some(a.name()), "{what}");
        assert_eq!(state.live_branch("orders"), live, "{what}");
        let at_home = DbLocation::branch_in_region(&a, "orders", &live).expect("names");
        let db = at_home
            .open_writer(false)
            .await
            .expect("writer at the old primary");
        db.put(b"after-failback", b"yes").await.expect("put");
        db.flush().await.expect("flush");
        db.close().await.expect("close");
        let view = verify(&at_home, Some(&acks)).await.expect("verify");
        assert!(view.consistent, "{what}: {}", view.summary());
        assert_eq!(
            view.acks.as_ref().expect("acks").missing_acked,
            0,
            "{what}: {}",
            view.summary()
        );
    }
}

/// Runs the binary and fails the test unless it succeeded.
fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}\n{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    out
}

/// The one JSON line a `--json` operation prints.
fn record_of(out: &std::process::Output) -> serde_json::Value {
    let text = common::stdout(out);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not a record ({e}): {text}"))
}

#[test]
fn the_cli_switches_over_fails_over_recovers_and_fails_back() {
    use common::{lifeboat, run, stderr, stdout};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    ok(run(lifeboat(data), &["db", "create", "orders"]));
    let write = |region: &str| {
        ok(run(
            lifeboat(data),
            &[
                "workload",
                "--db",
                "orders",
                "--region",
                region,
                "--records",
                "200",
                "--rate",
                "1000",
            ],
        ))
    };
    write("us-east-1");
    ok(run(lifeboat(data), &["replicate", "--once"]));

    // A switchover: first only what it would do.
    let out = ok(run(lifeboat(data), &["switchover"]));
    let text = stdout(&out);
    assert!(text.contains("Switchover us-east-1 → eu-west-1"), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");
    let out = ok(run(
        lifeboat(data),
        &["--json", "switchover", "--yes", "--no-serve"],
    ));
    let record = record_of(&out);
    assert_eq!(record["ok"], true, "{record:#}");
    assert_eq!(record["kind"], "Switchover", "{record:#}");
    assert_eq!(record["rpo"][0]["missing_records"], 0, "{record:#}");
    assert_eq!(record["rpo"][0]["acknowledged"], 200, "{record:#}");
    // main is written in eu-west-1 now, and flows back.
    write("eu-west-1");
    ok(run(lifeboat(data), &["replicate", "--once"]));

    // An unplanned failover back, with the old primary answering (fenced):
    // nothing is stranded there.
    ok(run(
        lifeboat(data),
        &[
            "failover",
            "--from",
            "eu-west-1",
            "--to",
            "us-east-1",
            "--yes",
            "--no-serve",
        ],
    ));
    let out = ok(run(lifeboat(data), &["recover", "--db", "orders"]));
    let text = stdout(&out);
    assert!(text.contains("eu-west-1 answers"), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");
    let out = ok(run(lifeboat(data), &["recover", "--db", "orders", "--yes"]));
    let text = stdout(&out);
    assert!(
        text.contains("nothing of orders was stranded in eu-west-1"),
        "{text}"
    );
    let out = run(lifeboat(data), &["merge", "--db", "orders", "--all"]);
    common::assert_one_error_line(&out, 2, &["has no recovered branch", "lifeboat recover"]);

    // The failback: the live branch has flowed to eu-west-1; only what was
    // made since the failover is copied.
    ok(run(lifeboat(data), &["replicate", "--once"]));
    let out = ok(run(
        lifeboat(data),
        &["--json", "failback", "--yes", "--no-serve"],
    ));
    let record = record_of(&out);
    assert_eq!(record["ok"], true, "{record:#}");
    assert_eq!(record["kind"], "Failback", "{record:#}");
    assert_eq!(
        (record["from"].as_str(), record["to"].as_str()),
        (Some("us-east-1"), Some("eu-west-1")),
        "{record:#}"
    );
    assert_eq!(record["rpo"][0]["missing_records"], 0, "{record:#}");
    assert_eq!(record["rpo"][0]["acknowledged"], 400, "{record:#}");
    let out = ok(run(lifeboat(data), &["branch", "list"]));
    assert!(
        stdout(&out).contains("orders/failover-2 LIVE"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}
