//! `replicate`, `status` and `check` through the real binary on the
//! embedded default (two local regions).

mod common;

use common::{assert_one_error_line, lifeboat, run, stderr, stdout};

/// A data dir with `orders` created in us-east-1 and 3000 records written.
fn written_orders() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(lifeboat(dir.path()), &["db", "create", "orders"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        lifeboat(dir.path()),
        &[
            "workload",
            "--db",
            "orders",
            "--records",
            "3000",
            "--rate",
            "max",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

#[test]
fn replicate_once_then_check_proves_a_complete_prefix() {
    let dir = written_orders();
    let out = run(lifeboat(dir.path()), &["replicate", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("orders/main us-east-1 → eu-west-1: in sync"),
        "{text}"
    );

    let out = run(lifeboat(dir.path()), &["check", "--db", "orders"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("replica holds records 1..=3000 of the home's 3000; lag 0 records"),
        "{text}"
    );
    assert!(
        text.contains("acknowledged records the replica lacks: 0"),
        "{text}"
    );
    assert!(
        text.contains("consistent: the replica is a gap-free prefix"),
        "{text}"
    );

    let out = run(lifeboat(dir.path()), &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let statuses: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let first = &statuses[0];
    assert_eq!(first["db"], "orders");
    assert_eq!(first["home"], "us-east-1");
    assert_eq!(first["replica"], "eu-west-1");
    assert_eq!(first["state"], "InSync");
    assert_eq!(first["lag_s"], 0.0);
    assert_eq!(first["objects_pending"], 0);
    assert!(first["last_sync_us"].as_u64().is_some(), "{first}");
}

#[test]
fn status_before_any_replication_says_how_to_start() {
    let dir = written_orders();
    let out = run(lifeboat(dir.path()), &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("seeding"), "{text}");
    assert!(text.contains("run `lifeboat replicate`"), "{text}");
}

#[test]
fn a_writer_is_refused_on_a_replica() {
    let dir = written_orders();
    let out = run(
        lifeboat(dir.path()),
        &["replicate", "--once", "--db", "orders"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        lifeboat(dir.path()),
        &[
            "workload",
            "--db",
            "orders",
            "--region",
            "eu-west-1",
            "--records",
            "10",
        ],
    );
    assert_one_error_line(
        &out,
        2,
        &[
            "orders/main in region `eu-west-1` is a replica of region `us-east-1`",
            "--region us-east-1",
        ],
    );
}

#[test]
fn follow_prints_statuses_until_its_duration_ends() {
    let dir = written_orders();
    let out = run(
        lifeboat(dir.path()),
        &[
            "--json",
            "replicate",
            "--follow",
            "--duration",
            "2s",
            "--report-every",
            "500ms",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().expect("a status line");
    let statuses: serde_json::Value = serde_json::from_str(last).expect("JSON line");
    assert_eq!(statuses[0]["state"], "InSync", "{text}");
    assert!(text.lines().count() >= 3, "{text}");
}

#[test]
fn bad_replication_arguments_get_one_line() {
    let dir = written_orders();
    let out = run(
        lifeboat(dir.path()),
        &[
            "replicate",
            "--from",
            "us-east-1",
            "--to",
            "us-east-1",
            "--once",
        ],
    );
    assert_one_error_line(&out, 2, &["--from and --to name the same region"]);
    let out = run(
        lifeboat(dir.path()),
        &["replicate", "--to", "mars-1", "--once"],
    );
    assert_one_error_line(&out, 3, &["region `mars-1` is not configured"]);
    let out = run(
        lifeboat(dir.path()),
        &["replicate", "--db", "nosuch", "--once"],
    );
    assert_one_error_line(&out, 3, &["database `nosuch` does not exist"]);
    let out = run(lifeboat(dir.path()), &["check", "--db", "orders"]);
    assert_one_error_line(
        &out,
        1,
        &[
            "no replica in region `eu-west-1` yet",
            "lifeboat replicate --db orders",
        ],
    );
    let out = run(
        lifeboat(dir.path()),
        &["replicate", "--once", "--parallel", "0"],
    );
    assert_one_error_line(&out, 2, &["--parallel"]);
}

#[test]
fn a_group_configured_from_the_cli_is_served_headless_by_the_same_engine() {
    let dir = written_orders();
    let out = run(lifeboat(dir.path()), &["group", "show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no replication group"),
        "{}",
        stdout(&out)
    );
    let out = run(lifeboat(dir.path()), &["serve", "--duration", "1s"]);
    assert_one_error_line(&out, 2, &["lifeboat group configure --secondary REGION"]);

    let out = run(
        lifeboat(dir.path()),
        &[
            "group",
            "configure",
            "--secondary",
            "eu-west-1",
            "--rpo-target",
            "2s",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("replicating 1 database(s) from us-east-1 to eu-west-1"),
        "{}",
        stdout(&out)
    );
    let out = run(
        lifeboat(dir.path()),
        &[
            "--json",
            "serve",
            "--duration",
            "4s",
            "--report-every",
            "1s",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().expect("a status line");
    let statuses: serde_json::Value = serde_json::from_str(last).expect("JSON line");
    assert_eq!(statuses[0]["db"], "orders", "{text}");
    assert_eq!(statuses[0]["state"], "InSync", "{text}");
    let out = run(lifeboat(dir.path()), &["check", "--db", "orders"]);
    assert!(out.status.success(), "{}", stdout(&out));

    let out = run(lifeboat(dir.path()), &["group", "pause", "orders"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(lifeboat(dir.path()), &["group", "show"]);
    let shown = stdout(&out);
    assert!(
        shown.contains("us-east-1 → eu-west-1")
            && shown.contains("RPO target 2 s")
            && shown.contains("paused: orders"),
        "{shown}"
    );
    let out = run(lifeboat(dir.path()), &["group", "pause", "nope"]);
    assert_one_error_line(&out, 1, &["database `nope` is not replicating"]);
    let out = run(lifeboat(dir.path()), &["group", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(lifeboat(dir.path()), &["group", "show"]);
    assert!(
        stdout(&out).contains("no replication group"),
        "{}",
        stdout(&out)
    );
}

/// `group configure` sets the group's type with --pre-provisioned or
/// --storage-only, keeps a saved group's type without either, and `group
/// show` says which.
#[test]
fn group_configure_keeps_or_sets_the_replication_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let show = |dir: &std::path::Path| {
        let out = run(lifeboat(dir), &["group", "show"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let configure = |dir: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["group", "configure", "--secondary", "eu-west-1"];
        args.extend_from_slice(extra);
        let out = run(lifeboat(dir), &args);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    configure(dir.path(), &[]);
    assert!(show(dir.path()).contains("; storage only;"));
    configure(dir.path(), &["--pre-provisioned"]);
    assert!(show(dir.path()).contains("; storage + pre-provisioned;"));
    configure(dir.path(), &["--rpo-target", "2s"]);
    let kept = show(dir.path());
    assert!(kept.contains("; storage + pre-provisioned;"), "{kept}");
    assert!(kept.contains("RPO target 2 s"), "{kept}");
    configure(dir.path(), &["--storage-only"]);
    assert!(show(dir.path()).contains("; storage only;"));
    let both = run(
        lifeboat(dir.path()),
        &[
            "group",
            "configure",
            "--secondary",
            "eu-west-1",
            "--pre-provisioned",
            "--storage-only",
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}
