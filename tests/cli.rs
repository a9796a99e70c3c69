//! The real binary: each bad input gives one clear error line and its exit
//! code; the workload and verify work end to end on the embedded default.

mod common;

use common::{assert_one_error_line, lifeboat, run, stderr, stdout};
use lifeboat::config::file_url;

#[test]
fn an_unknown_url_scheme_is_refused_with_the_schemes_that_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        lifeboat(dir.path()),
        &["region", "add", "ap-south-1", "ftp://host/x"],
    );
    assert_one_error_line(
        &out,
        2,
        &[
            "region `ap-south-1`",
            "unsupported URL scheme `ftp`",
            "s3://bucket/prefix",
        ],
    );
    assert!(!dir.path().join("regions.ron").exists(), "nothing saved");
}

#[test]
fn a_missing_bucket_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(lifeboat(dir.path()), &["region", "add", "west", "s3://"]);
    assert_one_error_line(
        &out,
        2,
        &["region `west`", "names no bucket", "s3://BUCKET"],
    );
}

#[test]
fn an_unreachable_endpoint_fails_without_printing_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = lifeboat(dir.path());
    cmd.env("LB_TEST_KEY", "AKIDSHOULDNOTPRINT")
        .env("LB_TEST_SECRET", "verysecretvaluethatmustnotprint");
    let out = run(
        cmd,
        &[
            "region",
            "add",
            "west",
            "s3://bucket/prefix",
            "--endpoint",
            "http://127.0.0.1:9",
            "--access-key-env",
            "LB_TEST_KEY",
            "--secret-key-env",
            "LB_TEST_SECRET",
        ],
    );
    assert_one_error_line(&out, 1, &["region `west`", "unreachable"]);
    let all = format!("{}{}", stdout(&out), common::stderr(&out));
    assert!(
        !all.contains("verysecretvalue") && !all.contains("AKIDSHOULD"),
        "{all}"
    );
    assert!(
        !dir.path().join("regions.ron").exists(),
        "a failed probe saves nothing"
    );
}

#[test]
fn a_missing_database_says_how_to_create_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        lifeboat(dir.path()),
        &["db", "describe", "nope", "--region", "eu-west-1"],
    );
    assert_one_error_line(
        &out,
        3,
        &[
            "database `nope` does not exist in region `eu-west-1`",
            "lifeboat db create nope",
        ],
    );
    let out = run(
        lifeboat(dir.path()),
        &["workload", "--db", "nope", "--records", "10"],
    );
    assert_one_error_line(
        &out,
        3,
        &["database `nope` does not exist in region `us-east-1`"],
    );
}

#[test]
fn a_rate_of_zero_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        lifeboat(dir.path()),
        &["workload", "--db", "orders", "--rate", "0"],
    );
    assert_one_error_line(&out, 2, &["--rate 0", "at least 1"]);
}

#[test]
fn an_unknown_region_lists_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(lifeboat(dir.path()), &["db", "list", "--region", "mars-1"]);
    assert_one_error_line(
        &out,
        3,
        &["region `mars-1` is not configured", "us-east-1, eu-west-1"],
    );
}

#[test]
fn an_outage_injected_from_the_command_line_names_the_region() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        lifeboat(dir.path()),
        &[
            "--fault",
            "eu-west-1:outage",
            "db",
            "create",
            "orders",
            "--region",
            "eu-west-1",
        ],
    );
    assert_one_error_line(
        &out,
        1,
        &["region `eu-west-1` is unreachable (injected outage)"],
    );
}

#[test]
fn regions_are_added_listed_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = file_url(&dir.path().join("extra"));
    let out = run(
        lifeboat(dir.path()),
        &["region", "add", "ap-south-1", &extra],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(lifeboat(dir.path()), &["--json", "region", "list"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = rows
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["us-east-1", "eu-west-1", "ap-south-1"]);
    let out = run(lifeboat(dir.path()), &["region", "check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = run(lifeboat(dir.path()), &["region", "remove", "ap-south-1"]);
    assert!(out.status.success());
    let out = run(lifeboat(dir.path()), &["region", "remove", "ap-south-1"]);
    assert_one_error_line(&out, 3, &["region `ap-south-1` is not configured"]);
}

#[test]
fn workload_then_verify_on_the_embedded_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(lifeboat(dir.path()), &["db", "create", "orders"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(
        lifeboat(dir.path()),
        &[
            "--json",
            "workload",
            "--db",
            "orders",
            "--records",
            "20000",
            "--rate",
            "max",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["records_acked"], 20_000);
    assert_eq!(report["last_acked_seq"], 20_000);

    let out = run(
        lifeboat(dir.path()),
        &["--json", "verify", "--db", "orders"],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(verified["records"], 20_000);
    assert_eq!(verified["highest_gap_free_seq"], 20_000);
    assert_eq!(verified["consistent"], true);
    assert_eq!(verified["acks"]["missing_acked"], 0);

    let out = run(lifeboat(dir.path()), &["--json", "db", "list"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed[0]["db"], "orders");
    assert_eq!(listed[0]["region"], "us-east-1");

    let out = run(lifeboat(dir.path()), &["db", "delete", "orders"]);
    assert_one_error_line(&out, 2, &["--yes"]);
    let out = run(lifeboat(dir.path()), &["db", "delete", "orders", "--yes"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(lifeboat(dir.path()), &["verify", "--db", "orders"]);
    assert_one_error_line(&out, 3, &["does not exist"]);
}

#[test]
fn verify_of_a_copy_with_a_missing_wal_file_exits_with_a_hole() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        run(lifeboat(dir.path()), &["db", "create", "orders"])
            .status
            .success()
    );
    let out = run(
        lifeboat(dir.path()),
        &[
            "workload",
            "--db",
            "orders",
            "--rate",
            "1000",
            "--duration",
            "1500ms",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));

    let copy = dir.path().join("copy");
    common::copy_tree(&dir.path().join("regions/us-east-1/dbs/orders/main"), &copy);
    let url = file_url(&copy);
    let out = run(
        lifeboat(dir.path()),
        &["verify", "--url", &url, "--db", "orders"],
    );
    assert!(out.status.success(), "{}", stdout(&out));

    let out = run(
        lifeboat(dir.path()),
        &["--json", "db", "describe", "orders"],
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let victim = info["replay_after_wal_id"].as_u64().expect("replay point") + 2;
    std::fs::remove_file(copy.join(format!("wal/{victim:020}.sst"))).expect("delete a WAL file");

    let out = run(
        lifeboat(dir.path()),
        &["verify", "--url", &url, "--db", "orders"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("HOLE") && text.contains(&victim.to_string()),
        "{text}"
    );
    assert!(text.contains("lacks"), "{text}");
}

/// The README's "Your first drill" commands, run as written on a fresh
/// embedded default, end in a passed drill whose report holds every record.
#[test]
fn the_readme_first_drill_reaches_a_passed_report() {
    let readme = include_str!("../README.md");
    let block = readme
        .split("<!-- first-drill")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /first-drill -->").next())
        .expect("the README marks its first-drill commands");
    let lines: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("lifeboat "))
        .collect();
    assert!(lines.len() >= 4, "{block}");
    let dir = tempfile::tempdir().expect("tempdir");
    for line in &lines {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let mut cmd = lifeboat(dir.path());
        cmd.current_dir(dir.path());
        let out = run(cmd, &args);
        assert!(
            out.status.success(),
            "`{line}` failed: {}{}",
            stdout(&out),
            common::stderr(&out)
        );
    }
    let report = std::fs::read_to_string(dir.path().join("drill.md")).expect("the drill report");
    assert!(report.contains("outcome: drill passed"), "{report}");
    assert!(report.contains("| tour-orders |"), "{report}");
    assert!(report.contains("200 of 200 acknowledged"), "{report}");
}

/// Finding (issue 17): a region URL with `..` was accepted (resolved to
/// another folder without a word), and every probe left `_lifeboat/probe/`
/// behind in the folder it probed.
#[test]
fn a_region_path_with_dots_is_refused_and_a_probe_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        lifeboat(dir.path()),
        &["region", "add", "system", "file:///../../etc"],
    );
    assert_one_error_line(&out, 2, &["region `system`", "has `.` or `..` in its path"]);
    let folder = dir.path().join("extra");
    let out = run(
        lifeboat(dir.path()),
        &["region", "add", "ap-south-1", &file_url(&folder)],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(lifeboat(dir.path()), &["region", "check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let left: Vec<_> = std::fs::read_dir(&folder)
        .expect("the region's folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "the probe left {left:?} behind");
}

/// Finding (issue 17): a data dir Lifeboat created was 0755 and its files
/// (regions, logs, the control log with argon2id hashes) 0644.
#[cfg(unix)]
#[test]
fn everything_lifeboat_creates_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let extra = file_url(&dir.path().join("extra"));
    for args in [
        &["region", "add", "ap-south-1", &extra][..],
        &["db", "create", "orders"],
        &["workspace", "create", "shop", "--db", "orders"],
    ] {
        let out = run(lifeboat(&home), args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
    }
    let out = lifeboat(&home)
        .args([
            "workspace",
            "user",
            "add",
            "shop",
            "app",
            "--role",
            "readwrite",
        ])
        .args(["--password-env", "LIFEBOAT_TEST_PW"])
        .env("LIFEBOAT_TEST_PW", "correct horse battery")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mut seen = 0;
    let mut open = Vec::new();
    let mut stack = vec![home.clone(), dir.path().join("extra")];
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).expect("metadata");
        seen += 1;
        if meta.permissions().mode() & 0o077 != 0 {
            open.push(format!(
                "{} {:o}",
                path.display(),
                meta.permissions().mode()
            ));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        }
    }
    assert!(seen > 10, "only {seen} paths");
    assert!(open.is_empty(), "readable by others: {open:#?}");
}

/// Findings (issue 17): bad configuration exited 1, not 2; a hand-edited
/// group with the primary as its secondary or a negative RPO target was
/// accepted; and one failed start of the saved group made every later
/// group command fail with the old error, even after the file was fixed.
#[test]
fn bad_configuration_exits_2_and_a_fixed_group_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let group_file = dir.path().join("replication.ron");
    let group = |secondary: &str, rpo: &str| {
        format!(
            "(primary: \"us-east-1\", secondary: \"{secondary}\", databases: All, kind: StorageOnly, rpo_target_s: {rpo})"
        )
    };
    let cases = [
        ("(primary: ".to_string(), "not a valid replication group"),
        (group("us-east-1", "1.0"), "us-east-1 is the primary"),
        (group("eu-west-1", "-1.0"), "an RPO target of -1 s"),
    ];
    for (text, needle) in &cases {
        std::fs::write(&group_file, text).expect("write");
        let out = run(lifeboat(dir.path()), &["group", "show"]);
        assert_one_error_line(&out, 2, &["replication.ron", needle]);
    }
    std::fs::remove_file(&group_file).expect("remove");
    let configure: [(&[&str], &[&str]); 4] = [
        (
            &["--secondary", "us-east-1"],
            &["us-east-1 is the primary", "--secondary"],
        ),
        (
            &["--secondary", "eu-west-1", "--rpo-target", "0s"],
            &["RPO target of 0 s", "--rpo-target"],
        ),
        (
            &["--secondary", "eu-west-1", "--gc-hold", "1000h"],
            &["GC hold of 1000 h", "--gc-hold"],
        ),
        (
            &["--secondary", "eu-west-1", "--gc-hold", "500ms"],
            &["too short", "--gc-hold from 1m"],
        ),
    ];
    for (flags, needles) in configure {
        let args: Vec<&str> = ["group", "configure"]
            .into_iter()
            .chain(flags.iter().copied())
            .collect();
        let out = run(lifeboat(dir.path()), &args);
        assert_one_error_line(&out, 2, needles);
    }
    // A failover to a time that is not one, or lies ahead.
    let out = run(lifeboat(dir.path()), &["failover", "--at", "yesterday"]);
    assert_one_error_line(
        &out,
        2,
        &["--at `yesterday` is not a time", "2026-11-26T14:05:00Z"],
    );
    let out = run(
        lifeboat(dir.path()),
        &[
            "failover",
            "--to",
            "eu-west-1",
            "--at",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert_one_error_line(&out, 2, &["lies in the future"]);
    std::fs::write(dir.path().join("regions.ron"), "(regions: [").expect("write");
    let out = run(lifeboat(dir.path()), &["region", "list"]);
    assert_one_error_line(&out, 2, &["regions.ron", "not a valid regions file"]);
    std::fs::remove_file(dir.path().join("regions.ron")).expect("remove");

    // A saved group that cannot start, then the same file fixed by hand.
    std::fs::write(&group_file, group("nowhere", "1.0")).expect("write");
    let out = run(lifeboat(dir.path()), &["group", "pause", "orders"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("could not start"),
        "{}",
        common::stderr(&out)
    );
    std::fs::write(&group_file, group("eu-west-1", "1.0")).expect("write");
    let out = run(
        lifeboat(dir.path()),
        &["group", "configure", "--secondary", "eu-west-1"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));

    // Who copies the data: set once, kept by a configure that does not say.
    let out = run(
        lifeboat(dir.path()),
        &[
            "group",
            "configure",
            "--secondary",
            "eu-west-1",
            "--data",
            "nobody",
        ],
    );
    assert_one_error_line(&out, 2, &["nobody", "lifeboat, store"]);
    for args in [
        &[
            "group",
            "configure",
            "--secondary",
            "eu-west-1",
            "--data",
            "store",
        ][..],
        &[
            "group",
            "configure",
            "--secondary",
            "eu-west-1",
            "--rpo-target",
            "2s",
        ],
    ] {
        let out = run(lifeboat(dir.path()), args);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let shown = common::stdout(&run(lifeboat(dir.path()), &["group", "show"]));
        assert!(
            shown.contains("the store replicates data files"),
            "{args:?}: {shown}"
        );
    }
}

/// Finding (issue 17): a torn last line in the acknowledgement log (a crash
/// mid-append) was never repaired: the next workload appended onto it and
/// `verify` failed until the file was edited by hand.
#[test]
fn a_torn_acknowledgement_line_is_cut_before_the_next_workload_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workload = [
        "workload",
        "--db",
        "orders",
        "--records",
        "200",
        "--rate",
        "max",
    ];
    for args in [&["db", "create", "orders"][..], &workload] {
        let out = run(lifeboat(dir.path()), args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
    }
    let acks = dir.path().join("acks").join("orders.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&acks)
        .expect("the acknowledgement log");
    std::io::Write::write_all(&mut file, b"{\"region\":\"us-ea").expect("a torn line");
    drop(file);
    let out = run(lifeboat(dir.path()), &workload);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(lifeboat(dir.path()), &["verify", "--db", "orders"]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        common::stderr(&out)
    );
    assert!(stdout(&out).contains("400"), "{}", stdout(&out));
}

/// Alert sinks and rules as a hurried operator types them: each mistake
/// gets one line in the flags' words, a secret typed where its variable's
/// name goes is never echoed, the settings file is left as it was, and a
/// broken settings file says how to fix it. `--metrics` is checked too.
#[test]
fn bad_alert_settings_get_one_line_each_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let out = run(lifeboat(data), &["alert", "add", "ops", "--desktop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let settings = data.join("alerts.ron");
    let saved = std::fs::read_to_string(&settings).expect("alerts.ron");
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &[
                "alert",
                "add",
                "hook",
                "--webhook",
                "http://hooks.example.com/x",
            ],
            &["plain http", "--webhook", "https://"],
        ),
        (
            &["alert", "add", "hook", "--webhook", "not a url"],
            &["`not a url` is not a URL", "--webhook"],
        ),
        (
            &[
                "alert",
                "add",
                "hook",
                "--webhook",
                "https://hooks.example.com/x",
                "--secret-env",
                "hunter2 my secret",
            ],
            &["--secret-env", "NAME of the variable"],
        ),
        (
            &["alert", "add", "bad name", "--desktop"],
            &["not a sink name"],
        ),
        (
            &["alert", "add", "x"],
            &["--webhook URL, --command COMMAND or --desktop"],
        ),
        (
            &["alert", "remove", "nope"],
            &["no sink named `nope`", "alert list"],
        ),
        (
            &["alert", "rules", "--repeat", "30d"],
            &["--repeat", "7 days"],
        ),
        (
            &["alert", "rules", "--drill-overdue-days", "1000"],
            &["--drill-overdue-days", "366"],
        ),
    ];
    for (args, needles) in cases {
        let out = run(lifeboat(data), args);
        assert_one_error_line(&out, 2, needles);
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&settings).expect("alerts.ron"),
            saved,
            "{args:?} changed the settings"
        );
    }
    // Clap's own refusals: two targets at once, a bad duration.
    let out = run(
        lifeboat(data),
        &["alert", "add", "x", "--desktop", "--command", "true"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(lifeboat(data), &["serve", "--metrics", "localhost:port"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--metrics HOST:PORT"),
        "{}",
        stderr(&out)
    );
    // A drill schedule that is not one, or too often.
    for (schedule, needle) in [
        ("sometimes", "neither a period nor a cron expression"),
        ("1s", "too often"),
    ] {
        let out = run(lifeboat(data), &["group", "drills", "--schedule", schedule]);
        assert_one_error_line(&out, 2, &[needle, "--schedule"]);
    }
    // A broken file: one line naming it and what to do.
    std::fs::write(&settings, "(sinks: [").expect("write");
    let out = run(lifeboat(data), &["alert", "list"]);
    assert_one_error_line(
        &out,
        2,
        &["alerts.ron", "not valid alert settings", "delete it"],
    );
}
