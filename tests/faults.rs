//! The fault injector: calls fail while a fault is on and work again once
//! it is off, on every kind of region (S3 regions meet their faults at the
//! HTTP layer, under the client's own retries).

mod common;

use std::time::{Duration, Instant};

use common::region;
use futures::TryStreamExt;
use lifeboat::region::faults::FaultPlan;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_every_call_fast_and_then_recovers() {
    for kind in common::kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let region = region(kind, "us-east-1", dir.path());
        let store = region.store();
        let path = Path::from("a/b");
        store.put(&path, "hello".into()).await.expect("put before");

        region.faults().set(&"outage".parse().expect("plan"));
        let started = Instant::now();
        let get = store.get(&path).await.expect_err("get during outage");
        assert!(
            get.to_string()
                .contains("region `us-east-1` is unreachable"),
            "{get}"
        );
        let put = store
            .put(&path, "x".into())
            .await
            .expect_err("put during outage");
        assert!(put.to_string().contains("us-east-1"), "{put}");
        let list: Result<Vec<_>, _> = store.list(None).try_collect().await;
        assert!(list.is_err(), "list during outage");
        assert!(store.list_with_delimiter(None).await.is_err());
        assert!(store.delete(&path).await.is_err(), "delete during outage");
        if kind.is_cloud() {
            // Each call is retried by the client (3 retries, backing off)
            // before it gives up; still well inside the request timeout.
            assert!(started.elapsed() < Duration::from_secs(10), "fails fast");
            assert!(region.faults().injected_total() >= 5 * 4);
        } else {
            assert!(started.elapsed() < Duration::from_secs(1), "fails fast");
            assert_eq!(region.faults().injected_total(), 5);
        }

        region.faults().clear();
        let body = store
            .get(&path)
            .await
            .expect("get after")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&body[..], b"hello", "the outage lost nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cannot_open_during_an_outage_and_opens_after() {
    for kind in common::kinds() {
        let fx = common::orders_fixture(kind, "eu-west-1").await;
        let (region, orders) = (&fx.region, &fx.orders);

        region.faults().set_outage(true);
        let Err(err) = orders.open_writer(false).await else {
            panic!("a database must not open during an outage");
        };
        assert!(err.to_string().contains("eu-west-1"), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");

        region.faults().set_outage(false);
        let db = orders
            .open_writer(false)
            .await
            .expect("open after the outage");
        db.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rate_of_one_fails_every_call_and_zero_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in common::kinds() {
        let region = region(kind, "r", dir.path());
        let store = region.store();
        region.faults().set(&"errors=1".parse().expect("plan"));
        for i in 0..5 {
            let err = store.put(&Path::from(format!("k{i}")), "v".into()).await;
            let err = err.expect_err("injected").to_string();
            assert!(err.contains("injected error"), "{kind:?}: {err}");
        }
        region.faults().set(&FaultPlan::default());
        for i in 0..20 {
            store
                .put(&Path::from(format!("k{i}")), "v".into())
                .await
                .expect("no fault");
        }
    }
}

/// On S3 an injected error is a `503 SlowDown` reply, which the client
/// retries: a moderate error rate costs time, not calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_clients_retry_injected_server_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in common::kinds().into_iter().filter(|k| k.is_cloud()) {
        let region = region(kind, "r", dir.path());
        let store = region.store();
        region.faults().set(&"errors=0.15".parse().expect("plan"));
        let mut failed = Vec::new();
        for i in 0..40 {
            let put = store.put(&Path::from(format!("k{i}")), "v".into()).await;
            if let Err(e) = put {
                failed.push(format!("put {i}: {e}"));
            }
        }
        // About 6 of the 40 first attempts meet a 503; a call fails only if
        // all four of its attempts do (0.15^4), so one failure is already rare.
        assert!(failed.len() <= 1, "{kind:?}: {failed:#?}");
        assert!(region.faults().injected_total() > 0, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_bandwidth_slow_calls_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in common::kinds() {
        let region = region(kind, "slow", dir.path());
        let store = region.store();
        let path = Path::from("blob");
        store
            .put(&path, vec![7u8; 200_000].into())
            .await
            .expect("put");

        region.faults().set(&"latency=150ms".parse().expect("plan"));
        let started = Instant::now();
        store.head(&path).await.expect("head");
        assert!(started.elapsed() >= Duration::from_millis(150));

        // 200 kB over a 1 MB/s link takes at least 0.2 s.
        region.faults().set(&"bandwidth=1MB".parse().expect("plan"));
        let started = Instant::now();
        let body = store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(body.len(), 200_000);
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
        region.faults().clear();
    }
}
