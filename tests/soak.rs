//! The soak across two clouds (an S3 region on SeaweedFS and an Azure
//! region on Azurite), for two minutes: writing to a database homed in
//! each, replicating both ways, an outage of each region in turn with a
//! drill, a failover, its failback and a switchover between; every step
//! checked. The same on the local default, with steps closer together.

mod common;

use common::{TEST_KEYS, add_s3_region, lifeboat, run, stderr, stdout};

/// One soak at a time: two at once on two cores starve each other's steps
/// (the S3 soak then fits one step in its two minutes). Under nextest, each
/// test is a process of its own, and the `soak` test group does this.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One soak on a mixed pair rather than one per cloud: every engine test
/// already runs on each kind alone, and two cloud soaks would cost two
/// more minutes of a CI run.
#[test]
fn a_two_minute_soak_across_s3_and_azure_passes() {
    if !common::s3_available() || !common::azure_available() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = std::env::var("LIFEBOAT_S3_A").expect("endpoint");
    let added = add_s3_region(
        lifeboat(dir.path()),
        "east",
        "lifeboat-test",
        &endpoint,
        TEST_KEYS,
        &[],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let west = common::azure_spec("west");
    let added = run(
        lifeboat(dir.path()),
        &[
            "region",
            "add",
            "west",
            &west.url,
            "--endpoint",
            west.endpoint.as_deref().expect("endpoint"),
            "--account",
            west.account.as_deref().expect("account"),
            "--account-key-env",
            "LIFEBOAT_AZURE_KEY",
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let out = run(
        lifeboat(dir.path()),
        &[
            "--json",
            "soak",
            "--minutes",
            "2",
            "--regions",
            "east,west",
            "--step-every",
            "15s",
            "--outage-for",
            "6s",
            // An outage of the S3 region, a failover between the clouds and
            // a drill, even when a loaded machine makes them outlast the
            // minutes.
            "--steps",
            "3",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("soak JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("name"))
        .collect();
    assert!(steps.contains(&"outage of east"), "{steps:?}");
    assert!(
        steps.iter().any(|s| s.starts_with("failover of")),
        "{steps:?}"
    );
    assert_eq!(steps.last(), Some(&"settle"), "{steps:?}");
    for step in report["steps"].as_array().expect("steps") {
        for check in step["checks"].as_array().expect("checks") {
            assert_eq!(check["prefix"], true, "{step:#}");
            assert_eq!(check["lost_at_home"], 0, "{step:#}");
        }
    }
    assert!(
        report["records_acked"].as_u64().expect("acked") > 10_000,
        "{report:#}"
    );
}

/// The same on the two local folders of the embedded default, with steps
/// closer together: an outage of each region, a failover, a drill, the
/// failback and a switchover, then the settle, in two minutes.
#[test]
fn a_two_minute_soak_on_local_regions_runs_every_operation() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        lifeboat(dir.path()),
        &[
            "--json",
            "soak",
            "--minutes",
            "2",
            "--step-every",
            "8s",
            "--outage-for",
            "3s",
            // Every step, even when a loaded machine makes them outlast
            // the minutes.
            "--steps",
            "6",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("soak JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("name"))
        .collect();
    for wanted in [
        "outage of us-east-1",
        "failover of",
        "drill of",
        "outage of eu-west-1",
        "failback of",
        "switchover of",
        "settle",
    ] {
        assert!(
            steps.iter().any(|s| s.starts_with(wanted)),
            "{wanted}: {steps:?}"
        );
    }
}
