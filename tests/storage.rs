//! Databases in regions: create, write, read, describe, delete, on local
//! folders and in memory; the workload and verify through the library.

mod common;

use std::time::Duration;

use common::{Kind, orders_fixture, region};
use lifeboat::storage::{self, DbLocation};
use lifeboat::workload::{self, Rate, WorkloadSpec, verify};

async fn create_write_read_delete(kind: Kind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(kind, "us-east-1", dir.path());
    let orders = DbLocation::in_region(&region, "orders").expect("valid names");

    let created = orders.create().await.expect("create");
    assert!(created.newest_manifest_id >= 1, "{created:?}");
    assert!(created.writer_epoch >= 1, "{created:?}");
    let again = orders.create().await.expect_err("a second create fails");
    assert!(again.to_string().contains("already exists"), "{again}");

    let db = orders.open_writer(false).await.expect("writer");
    for i in 0..50u32 {
        let handle = db
            .put(format!("k{i:03}"), format!("v{i}"))
            .await
            .expect("put");
        handle.await_durable().await.expect("durable");
    }
    db.close().await.expect("close");

    let reader = orders.open_reader().await.expect("reader");
    assert_eq!(
        reader.get("k007").await.expect("get").as_deref(),
        Some(&b"v7"[..])
    );
    assert_eq!(reader.get("k050").await.expect("get"), None);
    reader.close().await.expect("close reader");

    let info = orders.describe().await.expect("describe");
    assert!(info.size_bytes > 0 && info.object_count > 2, "{info:?}");
    assert!(
        info.newest_manifest_id > created.newest_manifest_id,
        "{info:?}"
    );
    assert!(
        info.writer_epoch > created.writer_epoch,
        "reopen bumps the epoch: {info:?}"
    );
    assert!(info.newest_wal_id.is_some(), "{info:?}");

    let listed = storage::list_databases(&region).await.expect("list");
    assert_eq!(
        listed,
        vec![("orders".to_string(), vec!["main".to_string()])]
    );

    let deleted = orders.delete().await.expect("delete");
    assert!(
        deleted >= info.object_count,
        "{deleted} < {}",
        info.object_count
    );
    assert!(!orders.exists().await.expect("exists"));
    let gone = orders.describe().await.expect_err("describe after delete");
    assert!(gone.to_string().contains("does not exist"), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_write_read_delete_on_every_local_kind() {
    for kind in common::kinds() {
        create_write_read_delete(kind).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_missing_database_says_how_to_create_it() {
    for kind in common::kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let region = region(kind, "eu-west-1", dir.path());
        let missing = DbLocation::in_region(&region, "nope").expect("names");
        let Err(err) = missing.open_writer(false).await else {
            panic!("a missing database must not open");
        };
        assert_eq!(
            err.to_string(),
            "database `nope` does not exist in region `eu-west-1`; create it with `lifeboat db create nope --region eu-west-1`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_records_are_all_acknowledged_and_verified() {
    for kind in common::kinds() {
        let fx = orders_fixture(kind, "us-east-1").await;
        let (orders, acks) = (&fx.orders, &fx.acks);
        let spec = WorkloadSpec {
            rate: Rate::Max,
            duration: None,
            records: Some(3_000),
            value_bytes: 100,
            churn: false,
        };
        let first = workload::run(orders, &spec, acks, std::future::pending())
            .await
            .expect("workload");
        assert_eq!(first.error, None);
        assert_eq!((first.first_seq, first.last_acked_seq), (1, 3_000));
        assert_eq!(first.records_acked, 3_000);

        // A second run continues the sequence where the first ended.
        let second = workload::run(orders, &spec, acks, std::future::pending())
            .await
            .expect("second workload");
        assert_eq!((second.first_seq, second.last_acked_seq), (3_001, 6_000));

        let report = verify::verify(orders, Some(acks)).await.expect("verify");
        assert!(report.consistent, "{}", report.summary());
        assert_eq!(report.records, 6_000);
        assert_eq!(report.highest_gap_free_seq, 6_000);
        let ack_check = report.acks.expect("an ack log exists");
        assert_eq!(
            (ack_check.acked_records, ack_check.missing_acked),
            (6_000, 0)
        );
        assert!(report.newest_commit.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_hole_after_a_wal_file_of_a_copy_is_deleted() {
    let fx = orders_fixture(Kind::File, "us-east-1").await;
    let (dir, orders, acks) = (&fx.dir, &fx.orders, &fx.acks);
    // A paced run spreads the records over many WAL flushes (100 ms each).
    let spec = WorkloadSpec {
        rate: Rate::PerSecond(1_000),
        duration: Some(Duration::from_millis(1_500)),
        records: None,
        value_bytes: 100,
        churn: false,
    };
    let run = workload::run(orders, &spec, acks, std::future::pending())
        .await
        .expect("workload");
    assert_eq!(run.error, None);

    let copy_dir = dir.path().join("copy");
    common::copy_tree(&dir.path().join("us-east-1/dbs/orders/main"), &copy_dir);
    let copy_region = lifeboat::region::Region::open(&lifeboat::region::RegionSpec::new(
        "copy",
        &lifeboat::config::file_url(&copy_dir),
    ))
    .expect("copy region");
    let copy = DbLocation::at_root(&copy_region, "orders");
    let whole = verify::verify(&copy, Some(acks))
        .await
        .expect("verify copy");
    assert!(whole.consistent, "{}", whole.summary());
    assert_eq!(whole.records, run.last_acked_seq);

    let info = copy.describe().await.expect("describe copy");
    let newest = info.newest_wal_id.expect("WAL files");
    assert!(
        newest >= info.replay_after_wal_id + 3,
        "the run should leave several WAL files to replay: {info:?}"
    );
    let victim = info.replay_after_wal_id + 2;
    std::fs::remove_file(copy_dir.join(format!("wal/{victim:020}.sst")))
        .expect("delete a WAL file");

    let holed = verify::verify(&copy, Some(acks))
        .await
        .expect("verify holed copy");
    assert!(!holed.consistent, "{}", holed.summary());
    assert_eq!(holed.wal_gaps, vec![victim]);
    let ack_check = holed.acks.as_ref().expect("acks");
    assert!(ack_check.missing_acked > 0, "{}", holed.summary());
    assert!(holed.records < whole.records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_stops_the_workload_and_loses_nothing_acknowledged() {
    for kind in common::kinds() {
        let fx = orders_fixture(kind, "us-east-1").await;
        let (region, orders, acks) = (&fx.region, &fx.orders, &fx.acks);
        let spec = WorkloadSpec {
            rate: Rate::PerSecond(2_000),
            duration: Some(Duration::from_secs(30)),
            records: None,
            value_bytes: 100,
            churn: false,
        };
        let faults = std::sync::Arc::clone(region.faults());
        // The outage comes once writes are acknowledged, not at a set time:
        // on a loaded machine opening the writer alone can take longer than
        // any fixed delay, and an outage during the open is another test.
        let ack_path = acks.path().to_path_buf();
        let cut = tokio::spawn(async move {
            let acked = || std::fs::metadata(&ack_path).is_ok_and(|m| m.len() > 0);
            while !acked() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            faults.set_outage(true);
        });
        let report = workload::run(orders, &spec, acks, std::future::pending())
            .await
            .expect("the run reports");
        cut.await.expect("cut");
        let error = report.error.clone().expect("the outage stops the run");
        assert!(error.contains("us-east-1"), "{error}");
        assert!(report.records_acked > 0, "{report:?}");
        assert!(
            report.elapsed_s < 20.0,
            "stops well before its 30 s: {report:?}"
        );

        region.faults().clear();
        let verified = verify::verify(orders, Some(acks)).await.expect("verify");
        assert!(verified.consistent, "{}", verified.summary());
        let ack_check = verified.acks.as_ref().expect("acks");
        assert_eq!(ack_check.acked_records, report.records_acked);
        assert_eq!(ack_check.missing_acked, 0, "{}", verified.summary());
    }
}

/// A checksum with an overlay (a drill's reference under a cut: the
/// replica as of its last whole WAL file, with the rows by then of the
/// next one written over it) equals the checksum of the state it makes.
#[tokio::test]
async fn a_checksum_with_an_overlay_is_the_checksum_of_the_state_it_makes() {
    use bytes::Bytes;
    use lifeboat::storage::view::{checksum, checksum_with};
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(Kind::Memory, "us-east-1", dir.path());
    let write = |name: &'static str, pairs: Vec<(&'static str, &'static str)>| {
        let region = region.clone();
        async move {
            let loc = DbLocation::in_region(&region, name).expect("names");
            loc.create().await.expect("create");
            let db = loc.open_writer(false).await.expect("writer");
            for (k, v) in pairs {
                db.put(k, v).await.expect("put");
            }
            db.flush().await.expect("flush");
            db.close().await.expect("close");
            loc
        }
    };
    let base = write("base", vec![("a", "1"), ("c", "3"), ("e", "5")]).await;
    let made = write(
        "made",
        vec![("a", "1"), ("b", "2"), ("d", "4"), ("e", "50"), ("f", "6")],
    )
    .await;
    let overlay: std::collections::BTreeMap<Bytes, Option<Bytes>> = [
        ("b", Some("2")),
        ("c", None),
        ("d", Some("4")),
        ("e", Some("50")),
        ("f", Some("6")),
        ("g", None),
    ]
    .into_iter()
    .map(|(k, v)| (Bytes::from(k), v.map(Bytes::from)))
    .collect();
    let over = checksum_with(&base, &overlay).await.expect("checksum");
    let expected = checksum(&made).await.expect("checksum");
    assert_eq!(over.keys, 5);
    assert_eq!(over.digest, expected.digest);
    assert_ne!(
        checksum(&base).await.expect("checksum").digest,
        expected.digest
    );
}
