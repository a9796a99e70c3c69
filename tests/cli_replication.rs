//! `replicate`, `status` and `check` through the real binary on the
//! embedded default (two local regions).

mod common;

use common::{Served, assert_one_error_line, lifeboat, run, stderr, stdout};

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
    // What the target costs, where it is set.
    assert!(
        stdout(&out).contains("the RPO target costs about 32 GET")
            && stdout(&out).contains("a database-month at S3 Standard list prices"),
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
    // The bill, per database and for the group.
    let out = run(lifeboat(dir.path()), &["status"]);
    let shown = stdout(&out);
    assert!(
        shown.contains("$/MONTH")
            && shown.contains("replication requests, last minute:")
            && shown.contains("S3 Standard $")
            && shown.contains("Cloudflare R2 $"),
        "{shown}"
    );

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

/// Findings (issue 17): after WAL files of a replica were deleted by hand,
/// `replicate --once` printed `in sync` and left them missing; after the
/// whole replica was deleted under a running replicator it went on saying
/// `in sync` for minutes. A state comes from what the replica holds.
#[test]
fn a_replica_damaged_by_hand_is_seen_and_copied_again() {
    // A writer killed mid-run leaves WAL files past its manifest's replay
    // point: the replica's newest state needs them.
    let (dir, mut writer) = orders_being_written(2000);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = writer.kill();
    let _ = writer.wait();
    let out = run(lifeboat(dir.path()), &["replicate", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replica = dir.path().join("regions/eu-west-1/dbs/orders/main");
    let mut wal: Vec<_> = std::fs::read_dir(replica.join("wal"))
        .expect("the replica's WAL folder")
        .map(|e| e.expect("entry").path())
        .collect();
    wal.sort();
    assert!(wal.len() > 2, "{wal:?}");
    for file in &wal[wal.len() - 2..] {
        std::fs::remove_file(file).expect("delete a WAL file");
    }
    let whole = "acknowledged records the replica lacks: 0";
    let out = run(lifeboat(dir.path()), &["check", "--db", "orders"]);
    assert!(
        !stdout(&out).contains(whole),
        "nothing was lost: {}",
        stdout(&out)
    );
    let out = run(lifeboat(dir.path()), &["replicate", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(lifeboat(dir.path()), &["check", "--db", "orders"]);
    assert!(
        out.status.success() && stdout(&out).contains(whole),
        "`replicate --once` left the deleted WAL files missing: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // The whole replica, deleted under a running replicator: seen within
    // the cut check's 30 s, and copied again.
    let mut follow = lifeboat(dir.path())
        .args(["--json", "replicate", "--follow", "--report-every", "500ms"])
        .args(["--duration", "120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lifeboat runs");
    let lines = std::io::BufRead::lines(std::io::BufReader::new(
        follow.stdout.take().expect("stdout"),
    ));
    let mut deleted = None;
    let mut seen = None;
    for line in lines.map_while(Result::ok) {
        let Ok(statuses) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let state = statuses[0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let repairs = statuses[0]["repairs"].as_u64().unwrap_or_default();
        match (deleted, &seen) {
            (None, _) if state == "InSync" => {
                std::fs::remove_dir_all(&replica).expect("delete the replica");
                deleted = Some((std::time::Instant::now(), repairs));
            }
            (Some((at, before)), None)
                if repairs > before || state == "Damaged" || state == "Seeding" =>
            {
                seen = Some((state, at.elapsed()));
            }
            // Copied again (nothing was left to copy before the delete).
            (Some(_), Some(_))
                if state == "InSync"
                    && statuses[0]["objects_copied"].as_u64() > Some(0)
                    && statuses[0]["objects_pending"] == 0 =>
            {
                break;
            }
            _ => {}
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(deleted.is_some(), "the replica was never in sync");
    let (state, after) = seen.expect("the deleted replica was never seen");
    eprintln!("the deleted replica was seen ({state}) {after:?} after");
    let out = run(lifeboat(dir.path()), &["check", "--db", "orders"]);
    assert!(
        out.status.success() && stdout(&out).contains(whole),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Findings (issue 17): `db delete --yes` while a writer ran left it
/// acknowledging writes that were lost, left a half-deleted database that
/// `db create` refused, and deleted the copies of a replicated database
/// with no warning. It now says what goes where, refuses while a writer
/// is at work or replication copies the database, fences the writer when
/// told to go ahead, and leaves nothing behind.
#[test]
fn deleting_a_database_refuses_while_it_is_written_or_replicated() {
    let (dir, mut writer) = orders_being_written(500);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = run(lifeboat(dir.path()), &["db", "delete", "orders", "--yes"]);
    assert_one_error_line(
        &out,
        2,
        &[
            "not deleting orders in us-east-1: branch main",
            "a writer is at work",
            "--force",
        ],
    );
    let out = run(
        lifeboat(dir.path()),
        &["db", "delete", "orders", "--yes", "--force"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deleted orders in us-east-1: branch main"),
        "{}",
        stdout(&out)
    );
    // The fenced writer stops acknowledging and says so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = writer.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer kept writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(!status.success(), "the fenced writer exited 0");
    let out = run(lifeboat(dir.path()), &["db", "list"]);
    assert!(!stdout(&out).contains("orders"), "{}", stdout(&out));
    let left = dir.path().join("regions/us-east-1/dbs/orders");
    let files = walk(&left);
    assert!(files.is_empty(), "left behind: {files:?}");
    let out = run(lifeboat(dir.path()), &["db", "create", "orders"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Replicated: the home and the replica are refused while the group
    // copies the database.
    let out = run(lifeboat(dir.path()), &["replicate", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        lifeboat(dir.path()),
        &["group", "configure", "--secondary", "eu-west-1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for (region, why) in [
        ("us-east-1", "would delete that copy too"),
        ("eu-west-1", "would copy it again"),
    ] {
        let out = run(
            lifeboat(dir.path()),
            &["db", "delete", "orders", "--region", region, "--yes"],
        );
        assert_one_error_line(&out, 2, &["replication group us-east-1 → eu-west-1", why]);
    }
    let out = run(
        lifeboat(dir.path()),
        &["db", "delete", "orders", "--region", "eu-west-1"],
    );
    assert_one_error_line(&out, 2, &["a replica of us-east-1"]);
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        match std::fs::read_dir(&path) {
            Ok(entries) => stack.extend(entries.map(|e| e.expect("entry").path())),
            Err(_) if path.is_file() => files.push(path),
            Err(_) => {}
        }
    }
    files
}

/// A data dir with `orders` created and a `workload` writing it at `rate`
/// records/s in the background (for two minutes at most).
fn orders_being_written(rate: u32) -> (tempfile::TempDir, std::process::Child) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(lifeboat(dir.path()), &["db", "create", "orders"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let writer = lifeboat(dir.path())
        .args(["workload", "--db", "orders", "--rate", &rate.to_string()])
        .args(["--duration", "120s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lifeboat runs");
    (dir, writer)
}

/// Two engines (two data folders, as two machines would have) serve one
/// group: exactly one replicates and the other says which holds the lease;
/// killed with SIGKILL, the holder is replaced by the standby within 15 s,
/// and the replica stays a readable, complete prefix.
#[test]
fn of_two_engines_on_one_group_one_replicates_and_the_standby_takes_over_a_killed_holder() {
    for kind in common::kinds() {
        if kind == common::Kind::Memory {
            continue; // an in-memory store is not shared between processes
        }
        let shared = tempfile::tempdir().expect("tempdir");
        let specs: Vec<_> = ["us-east-1", "eu-west-1"]
            .iter()
            .map(|name| match kind {
                common::Kind::File => lifeboat::region::RegionSpec::new(
                    name,
                    &lifeboat::config::file_url(&shared.path().join(name)),
                ),
                _ => common::cloud_spec(kind, name),
            })
            .collect();
        // c runs no engine: it only reads what the group's engine publishes.
        let (a, b, c) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        for dir in [&a, &b, &c] {
            let home = lifeboat::config::Home::resolve(Some(dir.path().to_path_buf()), None)
                .expect("home");
            let mut regions = home.load_regions().expect("regions");
            for spec in &specs {
                regions.replace(&spec.name, spec.clone()).expect("replace");
            }
            home.save_regions(&regions).expect("save");
        }
        let out = run(lifeboat(a.path()), &["db", "create", "orders"]);
        assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        for dir in [&a, &b] {
            let out = run(
                lifeboat(dir.path()),
                &["group", "configure", "--secondary", "eu-west-1"],
            );
            assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
        }
        let mut writer = lifeboat(a.path())
            .args([
                "workload",
                "--db",
                "orders",
                "--rate",
                "50",
                "--duration",
                "60s",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("lifeboat runs");

        let mut first = Served::start(a.path());
        first.until(std::time::Duration::from_secs(30), |l| {
            l.contains("eu-west-1: this engine holds the lease")
        });
        let mut second = Served::start(b.path());
        let pid = first.child.id().to_string();
        second.until(std::time::Duration::from_secs(30), |l| {
            l.contains("eu-west-1: standing by") && l.contains(&format!("pid {pid}"))
        });
        first.until(std::time::Duration::from_secs(30), |l| {
            l.contains("\"db\":\"orders\"")
        });
        std::thread::sleep(std::time::Duration::from_secs(3));
        assert!(
            second.flows_now().is_empty(),
            "{kind:?}: the standby copies nothing: {:?}",
            second.seen
        );

        // Another machine's status shows the running engine's flows.
        let shown = std::time::Instant::now();
        let status = loop {
            let out = run(lifeboat(c.path()), &["status"]);
            assert!(out.status.success(), "{kind:?}: {}", stderr(&out));
            let text = stdout(&out);
            if text.contains(&format!("pid {pid}")) && text.contains("orders/main") {
                break text;
            }
            assert!(
                shown.elapsed() < std::time::Duration::from_secs(10),
                "{kind:?}: status never showed the engine: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        assert!(
            status.contains("engine: the engine on"),
            "{kind:?}: {status}"
        );
        assert!(!status.contains("stale"), "{kind:?}: {status}");

        let killed = std::time::Instant::now();
        first.child.kill().expect("SIGKILL");
        let took = second.until(std::time::Duration::from_secs(30), |l| {
            l.contains("eu-west-1: this engine holds the lease")
        });
        let takeover = took.duration_since(killed);
        eprintln!("{kind:?}: the standby took over {takeover:?} after the holder was killed");
        assert!(
            takeover < std::time::Duration::from_secs(15),
            "{kind:?}: took {takeover:?}"
        );
        second.until(std::time::Duration::from_secs(30), |l| {
            l.contains("\"db\":\"orders\"")
        });
        let _ = writer.kill();
        let _ = writer.wait();
        if kind == common::Kind::File {
            // Once the new holder's machine is gone too, its last view is
            // shown marked stale, with its age.
            second.child.kill().expect("SIGKILL");
            std::thread::sleep(std::time::Duration::from_secs(16));
            let out = run(lifeboat(c.path()), &["status"]);
            let text = stdout(&out);
            assert!(
                text.contains("stale:")
                    && text.contains("last published")
                    && text.contains("orders/main"),
                "{text}"
            );
        }
        let out = run(lifeboat(b.path()), &["check", "--db", "orders"]);
        assert!(
            out.status.success(),
            "{kind:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// The databases each engine reports it copies, once every flow of `dbs`
/// is copied by exactly one of `engines`, each copies a part, and that
/// held for three looks a second apart.
fn shared_out(
    engines: &mut [Served],
    dbs: &[String],
    within: std::time::Duration,
) -> Vec<std::collections::BTreeSet<String>> {
    let deadline = std::time::Instant::now() + within;
    let mut last: Option<Vec<std::collections::BTreeSet<String>>> = None;
    let mut steady = 0;
    loop {
        let parts: Vec<std::collections::BTreeSet<String>> = engines
            .iter_mut()
            .map(|e| {
                e.flows_now()
                    .iter()
                    .filter_map(|f| f["db"].as_str().map(String::from))
                    .collect()
            })
            .collect();
        let copies: usize = parts.iter().map(|p| p.len()).sum();
        let covered: std::collections::BTreeSet<&String> = parts.iter().flatten().collect();
        let shared = copies == dbs.len()
            && covered.len() == dbs.len()
            && parts.iter().all(|p| !p.is_empty());
        steady = if shared && last.as_ref() == Some(&parts) {
            steady + 1
        } else {
            0
        };
        if steady >= 2 {
            return parts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flows were not shared out within {within:?}: {parts:?}"
        );
        last = Some(parts);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Four engines (four data folders, as four machines) started with
/// `serve --share` share one group's eight flows: each flow is copied by
/// exactly one engine, each engine copies a part, and writes reach the
/// replicas; a helper killed with SIGKILL has its flows copied by the
/// other three within a minute, still each by one, and every replica
/// checks out as a gap-free prefix.
#[test]
fn four_engines_share_a_groups_flows_and_a_killed_ones_flows_move() {
    let shared = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<tempfile::TempDir> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    for dir in &dirs {
        let home =
            lifeboat::config::Home::resolve(Some(dir.path().to_path_buf()), None).expect("home");
        let mut regions = home.load_regions().expect("regions");
        for name in ["us-east-1", "eu-west-1"] {
            let url = lifeboat::config::file_url(&shared.path().join(name));
            let spec = lifeboat::region::RegionSpec::new(name, &url);
            regions.replace(name, spec).expect("replace");
        }
        home.save_regions(&regions).expect("save");
    }
    let dbs: Vec<String> = (0..8).map(|i| format!("db{i}")).collect();
    for db in &dbs {
        let out = run(lifeboat(dirs[0].path()), &["db", "create", db]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for dir in &dirs {
        let out = run(
            lifeboat(dir.path()),
            &["group", "configure", "--secondary", "eu-west-1"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut engines = vec![Served::start_sharing(dirs[0].path())];
    engines[0].until(std::time::Duration::from_secs(30), |l| {
        l.contains("eu-west-1: this engine holds the lease")
    });
    engines.extend(dirs[1..].iter().map(|d| Served::start_sharing(d.path())));
    let started = std::time::Instant::now();
    let parts = shared_out(&mut engines, &dbs, std::time::Duration::from_secs(90));
    eprintln!("shared out {:?} after {:?}", parts, started.elapsed());
    // `status` says which engine copies each flow the coordinator lent.
    let lent: usize = parts[1..].iter().map(|p| p.len()).sum();
    let shown = std::time::Instant::now();
    loop {
        let out = run(lifeboat(dirs[0].path()), &["status"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        if text.matches("copied by").count() == lent {
            break;
        }
        assert!(
            shown.elapsed() < std::time::Duration::from_secs(15),
            "status never named the {lent} flows' engines: {text}"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }

    // Writes to every database reach its replica, whoever copies it.
    let writers: Vec<std::process::Child> = dbs
        .iter()
        .map(|db| {
            lifeboat(dirs[0].path())
                .args(["workload", "--db", db, "--rate", "100", "--duration", "3s"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("lifeboat runs")
        })
        .collect();
    for mut writer in writers {
        assert!(writer.wait().expect("wait").success(), "a writer failed");
    }
    let written = std::time::Instant::now();
    loop {
        let statuses: Vec<serde_json::Value> =
            engines.iter_mut().flat_map(|e| e.flows_now()).collect();
        let caught_up = dbs.iter().all(|db| {
            statuses.iter().any(|s| {
                s["db"] == db.as_str()
                    && s["state"] == "InSync"
                    && s["home_wal_id"].as_u64().is_some_and(|w| w > 1)
                    && s["replica_wal_id"] == s["home_wal_id"]
            })
        });
        if caught_up {
            break;
        }
        assert!(
            written.elapsed() < std::time::Duration::from_secs(30),
            "not every replica caught up: {statuses:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // A helper that dies: its flows move to the others.
    let victim = (1..engines.len())
        .find(|i| !parts[*i].is_empty())
        .expect("a helper copies a part");
    let mut gone = engines.remove(victim);
    gone.child.kill().expect("SIGKILL");
    let killed = std::time::Instant::now();
    let after = shared_out(&mut engines, &dbs, std::time::Duration::from_secs(60));
    eprintln!(
        "{:?} moved to the others {:?} after the helper was killed: {after:?}",
        parts[victim],
        killed.elapsed()
    );
    drop(engines);
    for db in &dbs {
        let out = run(lifeboat(dirs[0].path()), &["check", "--db", db]);
        assert!(
            out.status.success(),
            "{db}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// The prices the bill is figured at are shown with the file that
/// replaces them; each RPO target's cost is what the issue promised (a
/// quiet database at 1 s: about a GET a second; at 10 s: under 8 a
/// minute; no LIST but the heals); a bad prices file is named in one line
/// and the published prices are used.
#[test]
fn the_prices_and_the_cost_of_each_rpo_target_are_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(lifeboat(dir.path()), &["--json", "cost", "prices"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let prices: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let stores: Vec<&str> = prices["prices"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|p| p["store"].as_str())
        .collect();
    assert_eq!(
        stores,
        [
            "S3 Standard",
            "GCS Standard",
            "Azure Blob Hot",
            "Cloudflare R2"
        ]
    );
    let file = std::path::PathBuf::from(prices["file"].as_str().expect("file"));

    let out = run(
        lifeboat(dir.path()),
        &[
            "--json",
            "cost",
            "targets",
            "--rpo-target",
            "1s",
            "--rpo-target",
            "10s",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let targets: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let per_min = |i: usize, class: &str| targets[i]["per_min"][class].as_f64().expect("rate");
    assert!(
        per_min(0, "get") <= 65.0 && per_min(0, "get") >= 55.0,
        "{targets}"
    );
    assert!(per_min(1, "get") <= 8.0, "{targets}");
    assert!(per_min(1, "list") < 1.0, "{targets}");
    let s3_month = targets[1]["month"][0][1].as_f64().expect("dollars");
    assert!(s3_month > 0.0 && s3_month < 0.5, "{targets}");

    std::fs::create_dir_all(file.parent().expect("config dir")).expect("mkdir");
    std::fs::write(&file, "[(store: 1)]").expect("write");
    let out = run(lifeboat(dir.path()), &["cost", "targets"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("prices.ron") && warnings[0].contains("published prices"),
        "{}",
        warnings[0]
    );
}
