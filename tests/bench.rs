//! `lifeboat bench all`, small: every benchmark runs on local folders and on
//! S3, and the table and the JSON file agree.

mod common;

use common::{lifeboat, run, stderr, stdout};

#[test]
fn bench_all_runs_on_local_and_s3_regions() {
    let s3 = common::s3_available();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("figures.json");
    let out = run(
        lifeboat(dir.path()),
        &[
            "--json",
            "bench",
            "all",
            file.to_str().expect("utf-8 path"),
            "--size",
            "8MiB",
            "--lag-for",
            "3s",
            "--rate",
            "300",
            "--idle-for",
            "3s",
            "--failovers",
            "2",
            "--tail-failovers",
            "1",
            "--tail-for",
            "25s",
            "--tail-rate",
            "1000",
            "--switchovers",
            "2",
            "--kills",
            "2",
            "--watch-for",
            "5s",
            "--cost-busy-for",
            "4s",
            "--cost-rate",
            "500",
            "--cost-idle-for",
            "10s",
            "--scale-dbs",
            "40",
            "--scale-writers",
            "4",
            "--scale-busy-for",
            "8s",
            "--scale-idle-for",
            "8s",
            // Where redis-server is installed (the test command does not
            // install it: the workspace bench is then skipped).
            "--requests",
            "5000",
            "--zero-loss-requests",
            "1000",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("| local folders |"), "{table}");
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("figures file")).expect("json");
    let runs = figures["replicate"].as_array().expect("runs");
    assert_eq!(runs.len(), if s3 { 2 } else { 1 }, "{figures:#}");
    if s3 {
        assert!(table.contains("| S3 (two SeaweedFS servers) |"), "{table}");
    }
    for r in runs {
        // The database holds its WAL and its SSTs; a seed copies the
        // newest state: the SSTs and the WAL past their replay point.
        let database = r["seed"]["database_bytes"].as_u64().expect("bytes");
        let copied = r["seed"]["bytes"].as_u64().expect("bytes");
        assert!(
            database >= 8 << 20 && copied > 0 && copied < database,
            "{r:#}"
        );
        assert!(
            r["seed"]["replica_check"]
                .as_str()
                .is_some_and(|c| c.ends_with("consistent true")),
            "{r:#}"
        );
        assert!(
            r["lag"]["wal_files"].as_u64().expect("wal files") > 0,
            "{r:#}"
        );
        assert!(r["idle"]["requests_per_min"].as_f64().is_some(), "{r:#}");
    }
    // Failovers on demand, pre-provisioned and by the command in its own
    // process (its own engine), all of them good.
    for mode in ["on_demand", "pre_provisioned", "command"] {
        let m = &figures["failover"][mode];
        assert_eq!(m["failovers"], 2, "{figures:#}");
        assert_eq!(m["all_ok"], true, "{figures:#}");
        assert!(m["rto_p99_ms"].as_f64().is_some_and(|v| v > 0.0), "{m:#}");
    }
    assert!(table.contains("| pre-provisioned | 2 | yes |"), "{table}");
    // After 25 s of writes (about 260 WAL files), the fork copies only
    // what came since the writer's last memtable flush, at most 10 s ago.
    let t = &figures["failover"]["long_tail"];
    for mode in ["on_demand", "pre_provisioned"] {
        assert_eq!(t[mode]["all_ok"], true, "{t:#}");
    }
    assert!(
        t["tail_files_p99"].as_f64().is_some_and(|n| n < 150.0),
        "{t:#}"
    );
    // Switchovers lose nothing; a failback copies what was made since the
    // failover, not the database; every stranded record is recovered.
    let r = &figures["recovery"];
    assert_eq!(r["switchover"]["switchovers"], 2, "{r:#}");
    assert_eq!(r["switchover"]["all_ok"], true, "{r:#}");
    assert_eq!(r["switchover"]["records_lost"], 0, "{r:#}");
    let f = &r["failback"];
    assert!(
        f["copied_vs_made"]
            .as_f64()
            .is_some_and(|v| v > 0.0 && v <= 1.2),
        "{f:#}"
    );
    assert!(
        f["copied_vs_database"].as_f64().is_some_and(|v| v < 0.33),
        "{f:#}"
    );
    assert_eq!(f["records_lost"], 0, "{f:#}");
    let s = &r["stranded"];
    assert!(
        s["records_stranded"].as_u64().is_some_and(|n| n > 0),
        "{s:#}"
    );
    assert_eq!(s["records_recovered"], s["records_stranded"], "{s:#}");
    assert_eq!(s["records_lost_after_merge"], 0, "{s:#}");
    assert!(table.contains("| records stranded |"), "{table}");
    // Two engines on one group: a standby took over each killed holder,
    // and the status and the lease were read and counted.
    let e = &figures["engine"];
    assert_eq!(e["kills"], 2, "{e:#}");
    for figure in ["takeover_p99_ms", "staleness_p99_ms", "lease_puts_per_min"] {
        assert!(e[figure].as_f64().is_some_and(|v| v > 0.0), "{e:#}");
    }
    assert!(
        table.contains("| standby takeover after SIGKILL (2 kills) |"),
        "{table}"
    );
    // Requests by class: a quiet branch costs no LIST and a look a second
    // at an RPO target of 1 s; a busy one about a read and a write per
    // object copied, whether the writer is heard or looked for.
    let c = figures["cost"]["runs"].as_array().expect("cost runs");
    assert_eq!(c.len(), if s3 { 2 } else { 1 }, "{figures:#}");
    for run in c {
        for busy in run["busy"].as_array().expect("busy") {
            let per_object = busy["requests_per_object"].as_f64().expect("per object");
            assert!(per_object > 1.9 && per_object < 3.0, "{busy:#}");
        }
        for idle in run["idle"].as_array().expect("idle") {
            assert_eq!(idle["requests"]["list"], 0, "{idle:#}");
            assert!(
                idle["per_month"][0]["dollars_per_month"].as_f64().is_some(),
                "{idle:#}"
            );
        }
        let one_s = &run["idle"][0];
        let per_min = one_s["per_min"]["get"].as_f64().expect("gets a minute");
        assert!(per_min > 30.0 && per_min < 80.0, "{one_s:#}");
    }
    assert!(table.contains("quiet, RPO target 10 s"), "{table}");
    // One engine, many databases: every one seeded, the written ones'
    // lag measured, each region's requests counted, `status` timed; on
    // local folders, and on S3 when its servers run.
    let scale_runs = figures["scale"]["runs"].as_array().expect("scale runs");
    assert_eq!(scale_runs.len(), if s3 { 2 } else { 1 }, "{figures:#}");
    for sc in scale_runs {
        assert_eq!(sc["dbs"], 40, "{sc:#}");
        assert!(sc["seed_s"].as_f64().is_some_and(|s| s > 0.0), "{sc:#}");
        assert!(
            sc["rss_per_db_kib"].as_f64().is_some_and(|k| k > 0.0),
            "{sc:#}"
        );
        assert!(
            sc["writer_lag_p99_s"].as_f64().is_some_and(|l| l > 0.0),
            "{sc:#}"
        );
        assert!(
            sc["status_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{sc:#}"
        );
        let quiet = sc["idle_requests"].as_array().expect("regions");
        assert_eq!(quiet.len(), 2, "{sc:#}");
        // Forty quiet databases at RPO 1 s: about forty GETs a second at
        // their homes, and a few LISTs a minute in all.
        for region in quiet {
            assert!(
                region["per_min"]["list"].as_f64().is_some_and(|l| l < 20.0),
                "{sc:#}"
            );
        }
    }
    assert!(table.contains("One engine, 40 databases"), "{table}");
    // The workspace bench (the test command installs redis-server): the
    // zero-loss type against asynchronous, per kind of region, the link
    // never suspended.
    let ws = &figures["workspace"];
    let zero_loss = ws["zero_loss"].as_array().expect("zero-loss runs");
    assert_eq!(zero_loss.len(), if s3 { 2 } else { 1 }, "{ws:#}");
    for run in zero_loss {
        for mode in ["asynchronous", "zero_loss"] {
            assert!(
                run[mode]["requests_per_s"]
                    .as_f64()
                    .is_some_and(|r| r > 0.0),
                "{run:#}"
            );
        }
        assert_eq!(run["stayed_in_force"], true, "{run:#}");
    }
    assert!(table.contains("zero-loss SET req/s"), "{table}");
}
