//! Replication fixtures the failover and recovery tests share: fast flow
//! options, a workload in the background, waits on sync and catch-up, and
//! byte-for-byte snapshots of a region's objects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::TryStreamExt;
use lifeboat::control::event::{Attachment, Event};
use lifeboat::control::{self};
use lifeboat::region::Region;
use lifeboat::replication::{FlowState, ReplicationOptions, Replicator};
use lifeboat::storage::DbLocation;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::verify::verify;
use lifeboat::workload::{self, Rate, WorkloadReport, WorkloadSpec};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tokio::task::JoinHandle;

pub fn fast() -> ReplicationOptions {
    ReplicationOptions {
        copies_in_flight: 8,
        min_poll: Duration::from_millis(5),
        max_poll: Duration::from_millis(50),
        manifest_look_every: Duration::from_millis(100),
        busy_manifest_look_every: Duration::from_millis(100),
        probe_gap: Duration::from_millis(500),
        cut_check_every: Duration::from_secs(2),
        heal_every: Duration::from_millis(700),
        scrub_every: Duration::from_millis(900),
        cursor_save_every: Duration::from_millis(200),
        max_backoff: Duration::from_millis(300),
        ..ReplicationOptions::default()
    }
}

/// `snapshot` once it stops changing: a stopped replicator's last requests
/// to a networked store may still land after it stopped.
pub async fn settled(region: &Region, prefix: &str) -> BTreeMap<String, (u64, u64)> {
    let mut last = snapshot(region, prefix).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = snapshot(region, prefix).await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Every object under `prefix` with a digest of its bytes: what "byte for
/// byte untouched" is checked against.
pub async fn snapshot(region: &Region, prefix: &str) -> BTreeMap<String, (u64, u64)> {
    let store = region.store();
    let listed: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .expect("list");
    let mut out = BTreeMap::new();
    for meta in listed {
        let bytes = store
            .get(&meta.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("read");
        let digest = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        out.insert(meta.location.to_string(), (meta.size, digest));
    }
    out
}

pub fn writing(
    loc: &DbLocation,
    acks: &AckLog,
    rate: u64,
    secs: u64,
) -> JoinHandle<WorkloadReport> {
    let (loc, acks) = (loc.clone(), acks.clone());
    tokio::spawn(async move {
        let spec = WorkloadSpec {
            rate: Rate::PerSecond(rate),
            duration: Some(Duration::from_secs(secs)),
            records: None,
            value_bytes: 200,
            churn: true,
        };
        workload::run(&loc, &spec, &acks, std::future::pending())
            .await
            .expect("workload runs")
    })
}

pub async fn in_sync(replicator: &Replicator) {
    let ok = replicator
        .wait_until(Duration::from_secs(90), |s| {
            s.state == FlowState::InSync && s.objects_pending == 0
        })
        .await;
    assert!(ok, "no sync: {:#?}", replicator.statuses());
}

/// Waits until `replica` holds every acknowledged record.
pub async fn caught_up(replica: &DbLocation, acks: &AckLog) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(report) = verify(replica, Some(acks)).await
            && report.acks.as_ref().is_some_and(|a| a.missing_acked == 0)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Seqs acknowledged by `until_us`, from the log.
pub fn acked_by(acks: &AckLog, until_us: u64) -> BTreeSet<u64> {
    acks.read()
        .expect("read acks")
        .unwrap_or_default()
        .iter()
        .filter(|b| b.acked_us <= until_us)
        .flat_map(|b| b.first..=b.last)
        .collect()
}

/// Defines workspace `shop` serving `orders` at index 0, open, on any free
/// port, in the logs of `regions`.
pub async fn shop(regions: &[Region]) {
    control::append(regions, "00000000000000aa", "test", shop_event())
        .await
        .expect("append");
}

/// Workspace `shop`: open, on 127.0.0.1 and any free port, serving
/// `orders` at index 0.
pub fn shop_event() -> Event {
    Event::WorkspaceSet {
        name: "shop".into(),
        databases: vec![Attachment {
            index: 0,
            db: "orders".into(),
        }],
        bind: "127.0.0.1".into(),
        port: 0,
        open: true,
    }
}
