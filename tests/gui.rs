//! The desktop app, driven headless through egui_kittest by its accessible
//! labels, over a real engine on temporary local regions (the embedded
//! default of a fresh data folder). Nothing is mocked: the clicks go
//! through the engine to the stores, and the assertions read the stores.

mod common;

use std::time::{Duration, Instant};

use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable as _};

use lifeboat::config::Home;
use lifeboat::engine::{Engine, EngineOptions};
use lifeboat::gui::{LifeboatApp, StartOptions};
use lifeboat::storage::DbLocation;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{self, Rate, WorkloadSpec};

/// A window over a fresh engine, with its runtime and folders.
struct App {
    harness: Harness<'static, LifeboatApp>,
    runtime: tokio::runtime::Runtime,
    home: Home,
    _dir: tempfile::TempDir,
}

fn quick_engine() -> EngineOptions {
    EngineOptions {
        list_every: Duration::from_millis(500),
        describe_every: Duration::from_secs(2),
        health_every: Duration::from_secs(2),
        discover_every: Duration::from_millis(500),
        ..EngineOptions::default()
    }
}

impl App {
    /// Opens the app; `before` runs first on the runtime against the home
    /// region (us-east-1), to put databases there.
    fn open(dbs: &[(&str, u64)]) -> App {
        App::open_with(dbs, StartOptions::default())
    }

    /// Opens the app as on a first run: the embedded default, no prefs.
    fn first_run() -> App {
        App::open_with(
            &[],
            StartOptions {
                first_run: true,
                ..StartOptions::default()
            },
        )
    }

    fn open_with(dbs: &[(&str, u64)], start: StartOptions) -> App {
        App::open_in(tempfile::tempdir().expect("temp dir"), dbs, start)
    }

    /// Opens the app again on the folders a closed one left.
    fn reopen(dir: tempfile::TempDir) -> App {
        App::open_in(dir, &[], StartOptions::default())
    }

    fn open_in(dir: tempfile::TempDir, dbs: &[(&str, u64)], start: StartOptions) -> App {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let home = Home::resolve(
            Some(dir.path().join("data")),
            Some(dir.path().join("config")),
        )
        .expect("home");
        let regions = home.load_regions().expect("regions");
        assert!(
            regions.embedded_default,
            "a fresh folder uses the embedded default"
        );
        let us = regions.open("us-east-1").expect("open us-east-1");
        for (db, records) in dbs {
            runtime.block_on(write(&home, &us, db, *records));
        }
        let engine = Engine::start(runtime.handle(), home.clone(), regions, quick_engine());
        let harness = Harness::builder()
            .with_size([1200.0, 800.0])
            .with_max_steps(10)
            .build_eframe(move |cc| LifeboatApp::new(cc, engine, start));
        App {
            harness,
            runtime,
            home,
            _dir: dir,
        }
    }

    /// Closes the window as a user does (the app and its engine end), and
    /// hands back the folder, which stays.
    fn close(self) -> tempfile::TempDir {
        let App {
            harness,
            runtime,
            _dir,
            ..
        } = self;
        drop(harness);
        drop(runtime);
        _dir
    }

    /// Fails over to eu-west-1 from the Replication tab (the name typed to
    /// confirm) and waits for the record, which must be ok.
    fn fail_over_to_eu(&mut self) -> lifeboat::control::event::OperationRecord {
        self.click_role(Role::Button, "Failover");
        self.until("the preview", Duration::from_secs(30), |h| {
            h.query_by_label("Fail over now").is_some()
        });
        self.type_into("Type to confirm", "eu-west-1");
        self.click("Fail over now");
        self.until("the record", Duration::from_secs(60), |h| {
            h.state().snapshot().failover.last.is_some()
        });
        let record = self
            .harness
            .state()
            .snapshot()
            .failover
            .last
            .clone()
            .expect("a record");
        assert!(record.ok, "{record:#?}");
        record
    }

    /// Configures replication from the Replication tab as the wizard
    /// offers it (once the engine has listed the databases).
    fn configure_replication(&mut self) {
        self.until("the unconfigured tab", Duration::from_secs(20), |h| {
            h.query_by_label("Configure replication")
                .is_some_and(|b| !b.accesskit_node().is_disabled())
        });
        self.click("Configure replication");
        self.click("Submit");
    }

    /// Steps frames until `ready` holds, failing after `timeout`.
    fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Harness<'static, LifeboatApp>) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.harness.step();
            if ready(&self.harness) {
                return;
            }
            if Instant::now() > deadline {
                let snapshot = self.harness.state().snapshot();
                panic!(
                    "timed out waiting for {what}; flows: {:#?}; activity: {:#?}",
                    snapshot.flows, snapshot.activity
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Steps frames until a label containing `text` shows.
    fn until_shown(&mut self, text: &str, timeout: Duration) {
        self.until(&format!("`{text}` on screen"), timeout, |h| {
            h.query_all_by_label_contains(text).next().is_some()
        });
    }

    /// Clicks the widget labelled `label` as a screen reader does (by its
    /// id, not its place): a snapshot arriving between the frame that laid
    /// it out and the click moves it (the database list filling in under
    /// load), and a pointer click there hit nothing (CI, stop 33).
    fn click(&mut self, label: &str) {
        self.settle();
        self.harness.get_by_label(label).click_accesskit();
        self.settle();
    }

    fn click_role(&mut self, role: Role, label: &str) {
        self.settle();
        self.harness
            .get_by_role_and_label(role, label)
            .click_accesskit();
        self.settle();
    }

    /// A few frames, so that what appeared last frame has its final place.
    fn settle(&mut self) {
        for _ in 0..3 {
            self.harness.step();
        }
    }

    /// Types `text` into the text field named `label`.
    fn type_into(&mut self, label: &str, text: &str) {
        self.type_into_role(Role::TextInput, label, text);
    }

    fn type_into_role(&mut self, role: Role, label: &str, text: &str) {
        self.harness.get_by_role_and_label(role, label).click();
        self.harness.step();
        self.harness
            .get_by_role_and_label(role, label)
            .type_text(text);
        self.harness.step();
        self.harness.step();
    }

    fn region(&self, name: &str) -> lifeboat::region::Region {
        self.home
            .load_regions()
            .expect("regions")
            .open(name)
            .expect("open region")
    }
}

/// Writes `records` acknowledged records to `db` (created when missing).
async fn write(home: &Home, region: &lifeboat::region::Region, db: &str, records: u64) {
    let location = DbLocation::in_region(region, db).expect("location");
    if !location.exists().await.expect("exists") {
        location.create().await.expect("create");
    }
    if records == 0 {
        return;
    }
    let spec = WorkloadSpec {
        rate: Rate::Max,
        duration: None,
        records: Some(records),
        value_bytes: 1024,
        churn: false,
    };
    let log = AckLog::for_db(&home.acks_dir(), db);
    let report = workload::run(&location, &spec, &log, std::future::pending())
        .await
        .expect("workload");
    assert_eq!(report.records_acked, records, "{report:?}");
}

fn count_label(harness: &Harness<'static, LifeboatApp>, label: &str) -> usize {
    harness.query_all_by_label(label).count()
}

fn progress_labels(harness: &Harness<'static, LifeboatApp>) -> Vec<String> {
    harness
        .query_all_by_role(Role::ProgressIndicator)
        .filter_map(|n| n.accesskit_node().label())
        .collect()
}

#[test]
fn configuring_replication_in_the_wizard_seeds_every_database_to_in_sync() {
    let mut app = App::open(&[("orders", 2000), ("carts", 500)]);
    app.until("the unconfigured tab", Duration::from_secs(20), |h| {
        h.query_by_label("Configure replication")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click("Configure replication");
    // The primary is locked; the secondary is preselected; pick it anyway.
    let primary = app.harness.get_by_role_and_label(Role::Button, "us-east-1");
    assert!(
        primary.accesskit_node().is_disabled(),
        "the primary is locked"
    );
    app.click_role(Role::RadioButton, "eu-west-1");
    let pre = app
        .harness
        .get_by_role_and_label(Role::RadioButton, "Storage + pre-provisioned");
    assert!(
        !pre.accesskit_node().is_disabled(),
        "pre-provisioning is a choice"
    );
    // What the RPO target costs, where it is set (issue 19).
    app.until_shown(
        "Costs about 62 GET and 0.7 LIST a minute per quiet database",
        Duration::from_secs(5),
    );
    app.click("Submit");
    app.until(
        "two rows at 100% and In sync",
        Duration::from_secs(90),
        |h| {
            let bars = progress_labels(h);
            bars.len() == 2
                && bars.iter().all(|l| l.starts_with("100%"))
                && count_label(h, "In sync") == 2
        },
    );
    let snapshot = app.harness.state().snapshot();
    let group = snapshot.group.clone().expect("a group");
    assert_eq!(
        (group.primary.as_str(), group.secondary.as_str()),
        ("us-east-1", "eu-west-1")
    );
    assert!(
        snapshot
            .flows
            .iter()
            .all(|f| f.status.bytes_copied > 0 && f.status.objects_pending == 0),
        "{:#?}",
        snapshot.flows
    );
    // The engine runs in this window: the status bar says so and offers to
    // run it as a service instead (issue 18).
    app.until_shown("runs the group", Duration::from_secs(10));
    assert!(
        app.harness.query_by_label("Run as a service").is_some(),
        "the status bar offers the service"
    );
    // The replicas hold every acknowledged record, and the group was saved.
    let eu = app.region("eu-west-1");
    for db in ["orders", "carts"] {
        let replica = DbLocation::in_region(&eu, db).expect("replica");
        let log = AckLog::for_db(&app.home.acks_dir(), db);
        let report = app
            .runtime
            .block_on(lifeboat::workload::verify::verify(&replica, Some(&log)))
            .expect("verify");
        assert!(report.consistent, "{report:?}");
        let acks = report.acks.as_ref().expect("an acknowledgement check");
        assert!(acks.acked_records > 0, "{report:?}");
        assert_eq!(acks.missing_acked, 0, "{report:?}");
    }
    assert!(lifeboat::engine::group::group_file(&app.home.config_dir).exists());
    // The bill: a month of the group at each store, and each branch's
    // requests, from the engine's counts.
    app.click("Dashboard");
    app.until_shown("Forecast a month", Duration::from_secs(10));
    app.click("Cost and forecast");
    for text in [
        "S3 Standard",
        "Cloudflare R2",
        "Storage, both regions",
        "orders/main",
    ] {
        app.until_shown(text, Duration::from_secs(10));
    }
    let cost = app.harness.state().snapshot().cost.clone();
    assert_eq!(cost.bill.flows.len(), 2, "{cost:?}");
    assert!(
        cost.bill
            .bills
            .iter()
            .all(|b| b.total > 0.0 && b.storage > 0.0),
        "{cost:?}"
    );
    assert!(cost.regions.iter().all(|r| r.total.total() > 0), "{cost:?}");
}

/// What the Dashboard plotted is there again after the app restarts (the
/// engine's samples are kept on disk), and its Monthly DR report button
/// has the engine write the month's report, with a link to it.
#[test]
fn the_dashboard_keeps_its_history_over_a_restart_and_writes_the_monthly_report() {
    let mut app = App::open(&[("orders", 100)]);
    app.configure_replication();
    app.until("five samples of orders", Duration::from_secs(60), |h| {
        h.state()
            .snapshot()
            .history
            .lag_s
            .get("orders")
            .is_some_and(|s| s.len() >= 5)
    });
    let before: Vec<[f64; 2]> = app.harness.state().snapshot().history.lag_s["orders"]
        .iter()
        .copied()
        .collect();
    let closed_at = lifeboat::workload::now_us() as f64 / 1e6;
    let dir = app.close();

    let mut app = App::reopen(dir);
    app.until(
        "the history of before the restart",
        Duration::from_secs(20),
        |h| {
            h.state()
                .snapshot()
                .history
                .lag_s
                .get("orders")
                .is_some_and(|s| s.iter().filter(|p| p[0] <= closed_at).count() >= before.len())
        },
    );
    let kept = app.harness.state().snapshot().history.lag_s["orders"].clone();
    for point in &before {
        assert!(
            kept.iter().any(|p| (p[0] - point[0]).abs() < 0.002),
            "the sample at {} is gone after the restart",
            point[0]
        );
    }

    app.click("Dashboard");
    app.click("Monthly DR report");
    app.until_shown("Open it", Duration::from_secs(30));
    let reports = app.home.data_dir.join("reports");
    let names: Vec<String> = std::fs::read_dir(&reports)
        .expect("reports/")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    for ext in ["md", "json", "html"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("lifeboat-dr-") && n.ends_with(ext)),
            "no .{ext} report in {names:?}"
        );
    }
}

/// Settings, Alerts: a webhook typed with plain http to a public name is
/// refused in the form's words and nothing is saved; a command sink is
/// saved (alerts.ron, as the CLI reads it), and Send a test alert runs it
/// with the event on its stdin; a sink is removed again.
#[test]
fn alert_sinks_are_set_up_in_settings_and_tested() {
    let mut app = App::open(&[]);
    app.click("Settings");
    app.click("Add sink");
    app.type_into("Name", "oncall");
    app.type_into("Webhook URL", "http://hooks.example.com/x");
    app.click("Save sink");
    app.until_shown("give Webhook URL with https://", Duration::from_secs(5));
    assert!(
        !lifeboat::metrics::alerts::AlertSettings::path(&app.home.config_dir).exists(),
        "a refused sink saved nothing"
    );
    app.click("Cancel");

    let out = app.home.data_dir.join("alert.json");
    app.click("Add sink");
    app.type_into("Name", "log");
    app.click("Command");
    app.type_into("Command", &format!("cat > '{}'", out.display()));
    app.click("Save sink");
    app.until_shown("alert settings saved (1 sinks)", Duration::from_secs(10));
    let saved =
        lifeboat::metrics::alerts::AlertSettings::load(&app.home.config_dir).expect("alerts.ron");
    assert_eq!(saved.sinks.len(), 1, "{saved:?}");
    app.click("Send a test alert");
    app.until_shown("log: sent", Duration::from_secs(15));
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the command ran"))
            .expect("the event as JSON");
    assert_eq!(event["status"], "test", "{event}");

    app.click("Remove sink log");
    app.until("the sink gone", Duration::from_secs(10), |h| {
        h.state().snapshot().alerts.settings.sinks.is_empty()
    });
    // The settings take effect at once; the file is written off the
    // engine's loop, and the outcome says when.
    app.until_shown("alert settings saved (0 sinks)", Duration::from_secs(10));
    let saved =
        lifeboat::metrics::alerts::AlertSettings::load(&app.home.config_dir).expect("alerts.ron");
    assert!(saved.sinks.is_empty(), "{saved:?}");
}

#[test]
fn pause_stops_copying_and_resume_catches_up() {
    let mut app = App::open(&[("orders", 300)]);
    app.configure_replication();
    app.until("orders in sync", Duration::from_secs(60), |h| {
        count_label(h, "In sync") == 1
    });

    app.click("Pause orders");
    app.until("orders paused", Duration::from_secs(10), |h| {
        count_label(h, "Paused") == 1 && h.query_by_label("Resume orders").is_some()
    });
    let replica_wal = |app: &App| {
        app.harness.state().snapshot().flows[0]
            .status
            .replica_wal_id
    };
    let before = replica_wal(&app);
    let us = app.region("us-east-1");
    app.runtime.block_on(write(&app.home, &us, "orders", 300));
    for _ in 0..40 {
        app.harness.step();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(replica_wal(&app), before, "nothing is copied while paused");
    assert_eq!(count_label(&app.harness, "Paused"), 1);

    app.click("Resume orders");
    app.until(
        "orders in sync again, past the writes",
        Duration::from_secs(60),
        |h| {
            let snapshot = h.state().snapshot();
            count_label(h, "In sync") == 1 && snapshot.flows[0].status.replica_wal_id > before
        },
    );
    let activity: Vec<String> = app
        .harness
        .state()
        .snapshot()
        .activity
        .iter()
        .map(|e| format!("{} -> {:?}", e.what, e.outcome))
        .collect();
    assert!(
        activity
            .iter()
            .any(|a| a.starts_with("pause replication of orders -> Done")),
        "{activity:#?}"
    );
    assert!(
        activity
            .iter()
            .any(|a| a.starts_with("resume replication of orders -> Done")),
        "{activity:#?}"
    );
}

#[test]
fn settings_rejects_an_invalid_url_with_its_message_and_saves_a_probed_folder() {
    let mut app = App::open(&[]);
    app.click("Settings");
    app.click("Add region");
    app.type_into("Region name", "ap-south-1");
    app.click_role(Role::RadioButton, "Any URL");
    app.type_into("URL", "ftp://example.com/data");
    app.click("Save region");
    app.until("the URL refused", Duration::from_secs(10), |h| {
        h.query_by_label_contains("unsupported URL scheme `ftp`")
            .is_some()
    });
    let saved = std::fs::read_to_string(app.home.regions_file()).unwrap_or_default();
    assert!(!saved.contains("ap-south-1"), "nothing saved: {saved}");

    let folder = app.home.data_dir.join("far").join("ap-south-1");
    app.click_role(Role::RadioButton, "Local folder");
    app.type_into("Folder", &folder.display().to_string());
    app.click("Save region");
    app.until("the region listed", Duration::from_secs(20), |h| {
        h.query_by_label("Edit ap-south-1").is_some()
    });
    let saved = std::fs::read_to_string(app.home.regions_file()).expect("regions file");
    assert!(saved.contains("ap-south-1"), "{saved}");
    assert!(folder.is_dir(), "the probe made the folder");
}

#[test]
fn a_database_is_deleted_only_after_its_name_is_typed() {
    let mut app = App::open(&[("orders", 50)]);
    app.click("Databases");
    app.until("orders listed", Duration::from_secs(20), |h| {
        h.query_by_label("Delete orders in us-east-1").is_some()
    });
    app.click("Delete orders in us-east-1");
    let delete = |app: &App| {
        app.harness
            .get_by_role_and_label(Role::Button, "Delete forever")
            .accesskit_node()
            .is_disabled()
    };
    assert!(delete(&app), "disabled before the name is typed");
    app.type_into("Type the database name to confirm", "order");
    assert!(delete(&app), "disabled while the name is incomplete");
    app.type_into("Type the database name to confirm", "s");
    assert!(!delete(&app), "enabled once the name matches");
    let us = app.region("us-east-1");
    let location = DbLocation::in_region(&us, "orders").expect("location");
    assert!(app.runtime.block_on(location.exists()).expect("exists"));
    app.click("Delete forever");
    app.until("orders gone from the list", Duration::from_secs(20), |h| {
        h.query_by_label("Delete orders in us-east-1").is_none()
            && h.query_by_label_contains("deleted orders in us-east-1")
                .is_some()
    });
    assert!(!app.runtime.block_on(location.exists()).expect("exists"));
}

#[test]
fn the_databases_filter_shows_only_the_databases_it_names() {
    let mut app = App::open(&[("orders", 10), ("payments", 10)]);
    app.click("Databases");
    app.until("both listed", Duration::from_secs(20), |h| {
        h.query_by_label("Delete orders in us-east-1").is_some()
            && h.query_by_label("Delete payments in us-east-1").is_some()
    });
    app.type_into("Filter databases", "PAY");
    app.until("only payments", Duration::from_secs(5), |h| {
        h.query_by_label("Delete orders in us-east-1").is_none()
            && h.query_by_label("Delete payments in us-east-1").is_some()
    });
}

#[test]
fn every_tab_and_form_names_every_control() {
    let mut app = App::open(&[("orders", 100)]);
    app.until("the unconfigured tab", Duration::from_secs(20), |h| {
        h.query_by_label("Configure replication")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click("Configure replication");
    app.harness.check_accessibility();
    app.click("Submit");
    app.until("orders in sync", Duration::from_secs(60), |h| {
        count_label(h, "In sync") == 1
    });
    app.harness.check_accessibility();
    for tab in [
        "Databases",
        "Workspaces",
        "Dashboard",
        "Activity",
        "Settings",
    ] {
        app.click(tab);
        for _ in 0..10 {
            app.harness.step();
            std::thread::sleep(Duration::from_millis(20));
        }
        app.harness.check_accessibility();
    }
    // The forms, with every kind of region.
    app.click("Add region");
    for kind in [
        "S3-compatible",
        "Google Cloud Storage",
        "Azure Blob Storage",
        "Any URL",
        "Local folder",
    ] {
        app.click_role(Role::RadioButton, kind);
        app.harness.check_accessibility();
    }
    app.click("Databases");
    app.until("orders listed", Duration::from_secs(20), |h| {
        h.query_by_label("Delete orders in us-east-1").is_some()
    });
    app.click("Delete orders in us-east-1");
    app.harness.check_accessibility();
    // The theme switches and the tab is remembered by the app.
    app.click("Light theme");
    assert_eq!(
        app.harness.ctx.theme(),
        egui::Theme::Light,
        "light theme applied"
    );
    assert_eq!(app.harness.state().tab(), lifeboat::gui::Tab::Databases);
}

#[test]
fn settings_adds_an_s3_region_by_key_variable_names_and_refuses_unset_ones() {
    if !common::s3_available() {
        return;
    }
    let spec = common::s3_spec(common::Kind::S3, "ap-south-1");
    let (bucket, prefix) = spec
        .url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .expect("s3://bucket/prefix");
    let endpoint = spec.endpoint.clone().expect("an endpoint");
    let fill = |app: &mut App, access_key_env: &str| {
        app.click("Add region");
        app.type_into("Region name", "ap-south-1");
        app.click_role(Role::RadioButton, "S3-compatible");
        app.type_into("Bucket", bucket);
        app.type_into("Prefix", prefix);
        app.type_into("Endpoint", &endpoint);
        app.type_into("Access key variable", access_key_env);
        app.type_into("Secret key variable", "LIFEBOAT_S3_SECRET");
    };
    let mut app = App::open(&[]);
    app.click("Settings");
    fill(&mut app, "LIFEBOAT_NO_SUCH_KEY");
    app.click("Save region");
    app.until("the unset variable named", Duration::from_secs(20), |h| {
        h.query_by_label_contains("environment variable `LIFEBOAT_NO_SUCH_KEY`")
            .is_some()
    });
    let saved = std::fs::read_to_string(app.home.regions_file()).unwrap_or_default();
    assert!(!saved.contains("ap-south-1"), "nothing saved: {saved}");

    // The right variable: probed on the server, then saved without a secret.
    app.click("Cancel");
    fill(&mut app, "LIFEBOAT_S3_KEY");
    app.click("Save region");
    app.until("the S3 region listed", Duration::from_secs(30), |h| {
        h.query_by_label("Edit ap-south-1").is_some()
    });
    let saved = std::fs::read_to_string(app.home.regions_file()).expect("regions file");
    assert!(
        saved.contains(&endpoint) && saved.contains("LIFEBOAT_S3_KEY"),
        "{saved}"
    );
    let secret = std::env::var("LIFEBOAT_S3_SECRET").expect("the secret's variable");
    assert!(!saved.contains(&secret), "no secret in the regions file");
}

/// An Azure region from the form: the storage account, the container and
/// the account key's variable; a container that is not there is said
/// beside Container, in the form's words, and nothing is saved.
#[test]
fn settings_adds_an_azure_region_and_says_a_missing_container_beside_its_field() {
    if !common::azure_available() {
        return;
    }
    let spec = common::azure_spec("ap-south-1");
    let (container, prefix) = spec
        .url
        .strip_prefix("az://")
        .and_then(|rest| rest.split_once('/'))
        .expect("az://container/prefix");
    let endpoint = spec.endpoint.clone().expect("an endpoint");
    let account = spec.account.clone().expect("an account");
    let fill = |app: &mut App, container: &str| {
        app.click("Add region");
        app.type_into("Region name", "ap-south-1");
        app.click_role(Role::RadioButton, "Azure Blob Storage");
        app.type_into("Storage account", &account);
        app.type_into("Container", container);
        app.type_into("Prefix", prefix);
        app.type_into("Endpoint", &endpoint);
        app.type_into("Account key variable", "LIFEBOAT_AZURE_KEY");
    };
    let mut app = App::open(&[]);
    app.click("Settings");
    fill(&mut app, "no-such-container");
    app.click("Save region");
    // One Azurite serves many tests at once: its answers can take a while.
    app.until("the missing container said", Duration::from_secs(90), |h| {
        h.query_by_label_contains("No such container in this storage account")
            .is_some()
    });
    let saved = std::fs::read_to_string(app.home.regions_file()).unwrap_or_default();
    assert!(!saved.contains("ap-south-1"), "nothing saved: {saved}");

    app.click("Cancel");
    fill(&mut app, container);
    app.click("Save region");
    app.until("the Azure region listed", Duration::from_secs(90), |h| {
        h.query_by_label("Edit ap-south-1").is_some()
    });
    let saved = std::fs::read_to_string(app.home.regions_file()).expect("regions file");
    assert!(
        saved.contains(&format!("account: Some(\"{account}\")"))
            && saved.contains("account_key_env: Some(\"LIFEBOAT_AZURE_KEY\")"),
        "{saved}"
    );
    let key = std::env::var("LIFEBOAT_AZURE_KEY").expect("the key's variable");
    assert!(!saved.contains(&key), "no key in the regions file");
}

/// Finding (issue 17): an S3 region the probe could not reach showed the
/// HTTP client's raw report above the form. It shows one sentence in the
/// form's words beside the field to fix.
#[test]
fn settings_says_why_a_region_failed_beside_the_field_to_fix() {
    let mut app = App::open(&[]);
    app.click("Settings");
    app.click("Add region");
    app.type_into("Region name", "ap-south-1");
    app.click_role(Role::RadioButton, "S3-compatible");
    app.type_into("Bucket", "lifeboat");
    app.type_into("Endpoint", &format!("http://127.0.0.1:{}", free_port()));
    // Variables that are set (their values make no difference here).
    app.type_into("Access key variable", "PATH");
    app.type_into("Secret key variable", "HOME");
    app.click("Save region");
    app.until(
        "the failure beside Endpoint",
        Duration::from_secs(60),
        |h| {
            h.query_by_label_contains("Cannot reach the server: check Endpoint")
                .is_some()
        },
    );
    assert!(
        app.harness
            .query_by_label_contains("Error performing")
            .is_none()
            && app.harness.query_by_label_contains("retries").is_none()
            && app.harness.query_by_label_contains("Failed:").is_none(),
        "the raw client error is shown"
    );
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn a_workspace_configured_in_the_app_serves_real_clients() {
    let mut app = App::open(&[("orders", 10)]);
    app.click("Workspaces");
    app.until("orders offered", Duration::from_secs(20), |h| {
        h.query_by_role_and_label(Role::CheckBox, "orders")
            .is_some()
    });
    let port = free_port();
    app.type_into("Workspace name", "shop");
    app.type_into("Port", &port.to_string());
    app.click_role(Role::CheckBox, "orders");
    app.click("Create workspace");
    app.until("the workspace in the log", Duration::from_secs(30), |h| {
        h.query_by_label("Start workspace")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.type_into("User name", "app");
    app.type_into_role(
        Role::PasswordInput,
        "User password",
        "correct horse battery",
    );
    app.click("Add user");
    app.until("the user listed", Duration::from_secs(30), |h| {
        h.query_by_label("Remove user app").is_some()
    });
    app.type_into("Allowed CIDR", "127.0.0.1");
    app.click("Allow");
    app.until("the rule listed", Duration::from_secs(30), |h| {
        h.query_by_label("Revoke 127.0.0.1/32").is_some()
    });
    app.harness.check_accessibility();
    app.click("Start workspace");
    app.until("the workspace serving", Duration::from_secs(60), |h| {
        h.query_by_label("Stop workspace").is_some()
    });
    app.harness.check_accessibility();
    let snapshot = app.harness.state().snapshot().clone();
    let served = snapshot
        .control
        .workspace("shop")
        .and_then(|w| w.running.clone())
        .expect("served here");
    assert_eq!(served.addr, format!("127.0.0.1:{port}"));
    assert_eq!(
        served.endpoints[0].url,
        format!("redis://USER@127.0.0.1:{port}/0")
    );
    assert!(
        app.harness
            .query_by_label("Copy orders connection string")
            .is_some()
    );

    // A real client, through the workspace the clicks made.
    let redis = |args: &[&str]| {
        std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "-e", "--user", "app"])
            .args(["--pass", "correct horse battery", "--no-auth-warning"])
            .args(args)
            .output()
    };
    match redis(&["set", "greeting", "hello"]) {
        Ok(out) => {
            assert!(out.status.success(), "{out:?}");
            let got = redis(&["get", "greeting"]).expect("redis-cli");
            assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "hello");
        }
        Err(e) => assert!(std::env::var("CI").is_err(), "redis-cli under CI: {e}"),
    }

    app.click("Stop workspace");
    app.until("the workspace stopped", Duration::from_secs(30), |h| {
        h.query_by_label("Start workspace").is_some()
    });
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn failover_from_the_replication_tab_shows_the_loss_then_makes_the_replica_live() {
    // Two databases (finding, issue 17: a recovery covered one of them).
    let mut app = App::open(&[("orders", 400), ("carts", 200)]);
    app.until("the unconfigured tab", Duration::from_secs(20), |h| {
        h.query_by_label("Configure replication")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click("Configure replication");
    app.click_role(Role::RadioButton, "eu-west-1");
    app.click("Submit");
    app.until("In sync", Duration::from_secs(90), |h| {
        count_label(h, "In sync") == 2
    });
    app.until("Failover enabled", Duration::from_secs(20), |h| {
        h.query_by_role_and_label(Role::Button, "Failover")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click_role(Role::Button, "Failover");
    app.until("the preview", Duration::from_secs(30), |h| {
        h.query_by_label("Fail over now").is_some()
    });
    // Nothing changed yet: no epoch, no branch.
    let snapshot = app.harness.state().snapshot();
    assert_eq!(snapshot.branches.epoch, 0);
    assert!(snapshot.branches.branches.is_empty());
    let preview = snapshot.failover.preview.clone().expect("a preview");
    assert_eq!(preview.dbs.len(), 2);
    // Through when each replica holds every write, and so the instant a
    // common cut would take.
    assert!(
        preview.dbs.iter().all(|d| d.held_through_ms.is_some()),
        "{preview:#?}"
    );
    assert!(preview.common_ms.is_some(), "{preview:#?}");
    assert!(preview.primary_reachable);
    // The preview's lag is the table's (the running copier's), not the
    // replica cursor's last saved sync (finding, issue 17).
    assert!(preview.dbs.iter().all(|d| d.lag_live), "{preview:#?}");
    // The cut: all at one instant, looked at again; a time that is not
    // one is said so in the field's words, and nothing can be confirmed
    // until the preview is of the cut picked.
    app.click_role(Role::RadioButton, "all as of a time:");
    app.type_into("Time to fail over to", "yesterday");
    app.click("Look at that time");
    app.until_shown("The time `yesterday` is not one", Duration::from_secs(10));
    assert!(
        !enabled(&app.harness, "Fail over now"),
        "a cut not looked at"
    );
    app.click_role(
        Role::RadioButton,
        "all at one instant, the newest every replica holds",
    );
    app.until("the common cut's preview", Duration::from_secs(30), |h| {
        h.state()
            .snapshot()
            .failover
            .preview
            .as_ref()
            .is_some_and(|p| {
                p.cut == lifeboat::orchestrator::failover::Cut::Common && p.cut_ms.is_some()
            })
            && h.query_by_label("Fail over now").is_some()
    });
    app.until_shown("cut: every database as of", Duration::from_secs(10));
    // Back to each database's newest: what the rest of this test checks
    // (nothing lost, nothing stranded) is that cut's. A common cut drops
    // the writes of a database past the instant, for recovery.
    app.click_role(Role::RadioButton, "each at its replica's newest state");
    app.until("the newest cut's preview", Duration::from_secs(30), |h| {
        h.state()
            .snapshot()
            .failover
            .preview
            .as_ref()
            .is_some_and(|p| p.cut == lifeboat::orchestrator::failover::Cut::Newest)
            && h.query_by_label("Fail over now").is_some()
    });
    // Finding (issue 17): destructive actions started on one click. The
    // target region's name is typed first.
    assert!(
        !enabled(&app.harness, "Fail over now"),
        "one click fails over"
    );
    app.type_into("Type to confirm", "eu-west");
    assert!(
        !enabled(&app.harness, "Fail over now"),
        "a partial name fails over"
    );
    app.type_into("Type to confirm", "-1");
    app.click("Fail over now");
    app.until_shown("failover-1 is live in eu-west-1", Duration::from_secs(60));
    let snapshot = app.harness.state().snapshot();
    let record = snapshot.failover.last.clone().expect("a record");
    assert!(record.ok, "{record:#?}");
    let orders = record
        .rpo
        .iter()
        .find(|r| r.db == "orders")
        .expect("orders");
    assert_eq!(orders.missing_records, Some(0), "{record:#?}");
    assert_eq!(orders.acknowledged, Some(400), "{record:#?}");
    // The new live branch holds every acknowledged record, and flows back.
    let eu = app.region("eu-west-1");
    let live = DbLocation::branch_in_region(&eu, "orders", "failover-1").expect("names");
    let log = AckLog::for_db(&app.home.acks_dir(), "orders");
    let report = app
        .runtime
        .block_on(lifeboat::workload::verify::verify(&live, Some(&log)))
        .expect("verify");
    assert!(report.consistent, "{report:?}");
    assert_eq!(report.acks.expect("acks").missing_acked, 0);
    app.until(
        "the live branch flowing back",
        Duration::from_secs(30),
        |h| {
            h.state().snapshot().flows.iter().any(|f| {
                f.status.branch == "failover-1"
                    && f.status.home == "eu-west-1"
                    && f.status.replica == "us-east-1"
            })
        },
    );
    app.until("the log read again", Duration::from_secs(30), |h| {
        h.state().snapshot().branches.epoch == 1
    });
    // Finding (issue 17): after a failover the tab still read "us-east-1
    // to eu-west-1" and listed the fenced and the live branches alike.
    app.until_shown(
        "failed over: live in eu-west-1 (epoch 1), copied back to us-east-1",
        Duration::from_secs(10),
    );
    app.until_shown("orders/failover-1 · live", Duration::from_secs(30));
    app.until_shown("orders/main · old, fenced", Duration::from_secs(10));
    app.until_shown("eu-west-1 to us-east-1", Duration::from_secs(10));
    assert!(
        app.harness.query_by_label_contains(" 0 B of 0 B").is_none(),
        "an empty seed reads as a percentage of nothing"
    );
    let blocked = app.harness.get_by_role_and_label(Role::Button, "Failover");
    assert!(
        blocked.accesskit_node().is_disabled(),
        "a second failover waits for failback"
    );

    // The old primary answered at the failover (its writer was fenced):
    // the engine recovers by itself, one database at a time, finds nothing
    // stranded in either and says so in the activity log (issue 18).
    app.until("nothing left to recover", Duration::from_secs(60), |h| {
        h.state().snapshot().branches.unrecovered().is_empty()
    });
    for db in ["orders", "carts"] {
        app.until(
            &format!("{db} recovered by itself"),
            Duration::from_secs(60),
            |h| {
                h.state().snapshot().activity.iter().any(|e| {
                    e.what.starts_with(&format!("recover the writes of {db} stranded in us-east-1 (by itself"))
                        && matches!(&e.outcome, lifeboat::engine::activity::Outcome::Done(m) if m.contains(&format!("nothing of {db} was stranded")))
                })
            },
        );
    }

    // Failback, once the live branch is in sync in the old primary.
    app.until("Failback enabled", Duration::from_secs(60), |h| {
        h.query_by_role_and_label(Role::Button, "Failback")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click_role(Role::Button, "Failback");
    app.until("the plan", Duration::from_secs(30), |h| {
        h.query_by_label("Failback now").is_some()
    });
    let plan = app
        .harness
        .state()
        .snapshot()
        .moving
        .plan
        .clone()
        .expect("a plan");
    assert_eq!(
        (plan.from.as_str(), plan.to.as_str()),
        ("eu-west-1", "us-east-1")
    );
    assert!(
        !enabled(&app.harness, "Failback now"),
        "one click fails back"
    );
    app.type_into("Type to confirm", "us-east-1");
    app.click("Failback now");
    app.until("the failback", Duration::from_secs(60), |h| {
        h.state().snapshot().moving.last.is_some()
    });
    let record = app
        .harness
        .state()
        .snapshot()
        .moving
        .last
        .clone()
        .expect("a record");
    assert!(record.ok, "{record:#?}");
    assert!(
        record.rpo.iter().all(|r| r.missing_records == Some(0)),
        "{record:#?}"
    );
    // The live branch is written in the primary again, and flows out.
    app.until(
        "the branch flowing out again",
        Duration::from_secs(30),
        |h| {
            h.state().snapshot().flows.iter().any(|f| {
                f.status.branch == "failover-1"
                    && f.status.home == "us-east-1"
                    && f.status.replica == "eu-west-1"
            })
        },
    );
    let us = app.region("us-east-1");
    let back = DbLocation::branch_in_region(&us, "orders", "failover-1").expect("names");
    let report = app
        .runtime
        .block_on(lifeboat::workload::verify::verify(&back, Some(&log)))
        .expect("verify");
    assert!(report.consistent, "{report:?}");
    assert_eq!(report.acks.expect("acks").missing_acked, 0);
    app.until("Failover enabled again", Duration::from_secs(60), |h| {
        h.query_by_role_and_label(Role::Button, "Failover")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    // The Dashboard shows the failback's RTO with the failover's.
    app.until("the failback in the log", Duration::from_secs(30), |h| {
        h.state().snapshot().branches.operations.iter().any(|r| {
            r.kind == lifeboat::control::event::OperationKind::Failback && r.rto_ms.is_some()
        })
    });
    app.click("Dashboard");
    let rto_ms = record.rto_ms.expect("an RTO");
    let shown = format!("{:.2} s", rto_ms as f64 / 1000.0);
    app.until(
        "the failback's RTO on the Dashboard",
        Duration::from_secs(10),
        |h| {
            h.query_by_label("Last switchover or failback RTO")
                .is_some()
                // (another operation's RTO may show the same figure)
                && h.query_all_by_label(&shown).next().is_some()
        },
    );
}

#[test]
fn a_drill_from_the_replication_tab_passes_and_leaves_production_alone() {
    let mut app = App::open(&[("orders", 300)]);
    app.until("the unconfigured tab", Duration::from_secs(20), |h| {
        h.query_by_label("Configure replication")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click("Configure replication");
    app.click_role(Role::RadioButton, "eu-west-1");
    app.click("Submit");
    app.until("In sync", Duration::from_secs(90), |h| {
        count_label(h, "In sync") == 1
    });
    app.click_role(Role::Button, "Test failover");
    app.settle();
    app.harness
        .get_by_role_and_label(Role::MultilineTextInput, "Smoke commands")
        .click();
    app.harness.step();
    app.harness
        .get_by_role_and_label(Role::MultilineTextInput, "Smoke commands")
        .type_text("\nGET nothing");
    app.settle();
    app.click_role(Role::Button, "Run drill");
    app.until("the drill's verdict", Duration::from_secs(60), |h| {
        h.query_all_by_label_contains("drill passed")
            .next()
            .is_some()
            || h.query_all_by_label_contains("drill FAILED")
                .next()
                .is_some()
    });
    let snapshot = app.harness.state().snapshot();
    let record = snapshot.drill.last.clone().expect("a drill record");
    assert!(record.ok, "{record:#?}");
    assert!(
        record
            .steps
            .iter()
            .any(|s| s.name == "smoke: GET nothing" && s.ok && s.detail == "(nil)"),
        "smoke replies print as redis-cli prints them: {record:#?}"
    );
    let epoch = snapshot.branches.epoch;
    assert_eq!(epoch, 0);
    // Finding (issue 17): the drill endpoint stopped 2 s after the drill
    // while the report offered to copy it. It serves until the branches
    // expire (past the workspace's 2 s refresh here), and Copy is offered
    // only while it does.
    let url = record.endpoints.first().expect("a drill endpoint").clone();
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port");
    std::thread::sleep(Duration::from_secs(5));
    app.settle();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the drill endpoint stopped before its branches expired"
    );
    assert!(
        app.harness
            .query_by_label(&format!("Copy new connection string {url}"))
            .is_some(),
        "no Copy for the serving drill endpoint"
    );
    // The Dashboard's Drills lists it with its verdict and RTO, and its
    // report opens from there.
    app.click("Dashboard");
    app.click("Drills");
    app.until_shown("records verified", Duration::from_secs(20));
    app.click(&format!("Report of {}", record.id));
    app.until_shown(&format!("Report of {}", record.id), Duration::from_secs(5));
    app.until_shown("## RPO per database", Duration::from_secs(5));
    app.click("Replication");
    // Production is as it was: main is still live, nothing failed over.
    assert_eq!(app.harness.state().snapshot().branches.epoch, 0);
    app.until(
        "the drill branch in the log",
        Duration::from_secs(30),
        |h| {
            h.state()
                .snapshot()
                .branches
                .branches
                .iter()
                .any(|b| b.fork.branch == record.id)
        },
    );
    assert!(
        app.harness
            .query_by_role_and_label(Role::Button, "Failover")
            .is_some_and(|b| !b.accesskit_node().is_disabled()),
        "a drill does not block a failover"
    );
    // The Databases tab lists the drill branch under main and deletes it.
    app.click("Databases");
    let delete = format!("Delete branch orders/{}", record.id);
    app.until("the branch row", Duration::from_secs(20), |h| {
        h.query_by_label(&delete).is_some()
    });
    app.click(&delete);
    app.until(
        "the branch gone from the log",
        Duration::from_secs(30),
        |h| h.state().snapshot().branches.branches.is_empty(),
    );
    // Its workspace went with it: the report no longer offers the endpoint.
    app.until(
        "the endpoint no longer offered",
        Duration::from_secs(30),
        |h| h.state().snapshot().drill.serving.is_empty(),
    );
    app.click("Replication");
    app.click_role(Role::Button, "Test failover");
    app.until_shown("no longer served", Duration::from_secs(10));
}

#[test]
fn a_pre_provisioned_workspace_stands_in_the_secondary_and_takes_over_at_failover() {
    let mut app = App::open(&[("orders", 200)]);
    // A workspace serving orders, defined in the log of both regions.
    let regions = vec![app.region("us-east-1"), app.region("eu-west-1")];
    app.runtime
        .block_on(lifeboat::control::append(
            &regions,
            "00000000000000ee",
            "test",
            lifeboat::control::event::Event::WorkspaceSet {
                name: "shop".into(),
                databases: vec![lifeboat::control::event::Attachment {
                    index: 0,
                    db: "orders".into(),
                }],
                bind: "127.0.0.1".into(),
                port: free_port(),
                open: true,
            },
        ))
        .expect("append");
    app.until("the unconfigured tab", Duration::from_secs(20), |h| {
        h.query_by_label("Configure replication")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click("Configure replication");
    app.click_role(Role::RadioButton, "eu-west-1");
    app.click_role(Role::RadioButton, "Storage + pre-provisioned");
    app.click("Submit");
    app.until("the standing workspace", Duration::from_secs(60), |h| {
        let snapshot = h.state().snapshot();
        snapshot
            .standby
            .workspaces
            .iter()
            .any(|w| w.name == "shop" && w.endpoints.iter().all(|e| e.mode == "follower"))
    });
    app.until("In sync", Duration::from_secs(90), |h| {
        count_label(h, "In sync") == 1
    });
    let record = app.fail_over_to_eu();
    assert!(
        record
            .steps
            .iter()
            .any(|s| s.name == "promote pre-provisioned workspace shop"),
        "{record:#?}"
    );
    assert!(
        !record
            .steps
            .iter()
            .any(|s| s.name.starts_with("start workspace")),
        "a pre-provisioned failover starts nothing: {record:#?}"
    );
    let snapshot = app.harness.state().snapshot();
    let shop = snapshot.control.workspace("shop").expect("shop");
    let running = shop.running.as_ref().expect("served here");
    assert_eq!(running.endpoints[0].mode, "writer");
    assert_eq!(running.endpoints[0].branch, "failover-1");
}

fn enabled(harness: &Harness<'static, LifeboatApp>, label: &str) -> bool {
    harness
        .query_by_label(label)
        .is_some_and(|b| !b.accesskit_node().is_disabled())
}

#[test]
fn the_first_run_tour_leads_from_nothing_to_a_drill_report() {
    let mut app = App::first_run();
    assert!(app.harness.state().touring(), "a first run opens the tour");
    app.until("the tour's first step", Duration::from_secs(20), |h| {
        enabled(h, "Create tour-orders")
    });
    app.click("Create tour-orders");
    app.until("the tour's second step", Duration::from_secs(30), |h| {
        enabled(h, "Start writing")
    });
    app.click("Start writing");
    app.until("the tour's third step", Duration::from_secs(30), |h| {
        enabled(h, "Open the wizard")
    });
    app.click("Open the wizard");
    // The wizard opens with the defaults: the other region, all databases.
    app.click("Submit");
    app.until("the tour's fourth step", Duration::from_secs(120), |h| {
        enabled(h, "Open Test failover")
    });
    app.click("Open Test failover");
    app.click_role(Role::Button, "Run drill");
    app.until_shown("You ran a drill", Duration::from_secs(120));
    let snapshot = app.harness.state().snapshot();
    let record = snapshot.drill.last.clone().expect("a drill record");
    assert!(record.ok, "{record:#?}");
    assert!(
        record.rpo.iter().any(|d| d.db == "tour-orders"),
        "the drill covered the tour's database: {record:#?}"
    );
    assert!(
        app.harness
            .query_all_by_label_contains("drill passed")
            .next()
            .is_some(),
        "the report is on screen"
    );
    assert_eq!(snapshot.branches.epoch, 0, "production did not move");
    let acked = AckLog::for_db(&app.home.acks_dir(), "tour-orders")
        .read()
        .expect("the tour's acknowledgement log")
        .unwrap_or_default();
    assert!(!acked.is_empty(), "the tour's workload wrote records");
    app.click("Close the tour");
    assert!(!app.harness.state().touring());
}

#[test]
fn help_explains_the_terms_and_about_names_the_build() {
    let mut app = App::open(&[]);
    assert!(!app.harness.state().touring(), "no tour unless a first run");
    // A term's tooltip: hover the wizard's RPO target.
    app.until("the engine", Duration::from_secs(20), |h| {
        enabled(h, "Configure replication")
    });
    app.click("Configure replication");
    app.harness.get_by_label("RPO target").hover();
    let tip = lifeboat::gui::help::Term::Rpo.tip();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.harness.query_by_label(&tip).is_none() {
        assert!(
            Instant::now() < deadline,
            "hovering RPO target shows: {tip}"
        );
        app.harness.step();
        std::thread::sleep(Duration::from_millis(50));
    }
    app.click("Help");
    app.click("Take the tour");
    assert!(app.harness.state().touring());
    app.click("Help");
    app.click("Glossary");
    for term in lifeboat::gui::help::Term::ALL {
        assert!(
            app.harness.query_by_label(term.meaning()).is_some(),
            "the glossary explains {}",
            term.name()
        );
    }
    app.click("Help");
    app.click("About Lifeboat");
    assert!(
        app.harness
            .query_by_label(lifeboat::about::COMMIT)
            .is_some()
    );
    assert!(app.harness.query_by_label("Apache-2.0").is_some());
}

/// The app opened while a service engine (`lifeboat serve`) runs the group
/// is its client (issue 18): it shows that engine's flows and history, its
/// Failover button fails over through that engine, and closing the app
/// leaves replication running.
#[test]
fn the_app_beside_a_service_engine_shows_it_and_fails_over_through_it() {
    let mut app = App::open(&[("orders", 300)]);
    let lifeboat = || {
        let mut cmd = common::lifeboat(&app.home.data_dir);
        cmd.arg("--config-dir").arg(&app.home.config_dir);
        cmd
    };
    let out = common::run(
        lifeboat(),
        &["group", "configure", "--secondary", "eu-west-1"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mut service = common::Served::start_with(lifeboat());
    service.until(Duration::from_secs(60), |l| {
        l.contains("\"db\":\"orders\"") && l.contains("\"InSync\"")
    });
    let pid = service.child.id();

    // The app shows the service's view: its flows, its history, and where
    // it runs.
    app.until("the service's flows", Duration::from_secs(30), |h| {
        let s = h.state().snapshot();
        s.remote
            .as_ref()
            .is_some_and(|r| r.published.holder.pid == pid)
            && count_label(h, "In sync") == 1
            && s.history.lag_s.contains_key("orders")
    });
    app.until_shown("showing the engine on", Duration::from_secs(10));
    assert!(
        app.harness.state().snapshot().holder.is_none(),
        "the app's own engine took no lease"
    );

    // Failover, through the service.
    app.until("Failover enabled", Duration::from_secs(20), |h| {
        h.query_by_role_and_label(Role::Button, "Failover")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    // The record is the service's, as it publishes it.
    app.fail_over_to_eu();
    app.until_shown("failover-1 is live in eu-west-1", Duration::from_secs(30));
    let by = app.harness.state().snapshot().activity.iter().any(|e| {
        e.what.starts_with("fail over (epoch")
            && matches!(e.outcome, lifeboat::engine::activity::Outcome::Done(_))
    });
    assert!(by, "the app's activity says the failover was done");

    // The app closes; the service goes on replicating the new live branch
    // back to the old primary.
    let _dir = app.close();
    service.until(Duration::from_secs(60), |l| {
        l.contains("\"branch\":\"failover-1\"") && l.contains("\"home\":\"eu-west-1\"")
    });
    std::thread::sleep(Duration::from_secs(2));
    service.until(Duration::from_secs(10), |l| {
        l.contains("\"branch\":\"failover-1\"")
    });
    assert!(
        service.child.try_wait().expect("status").is_none(),
        "the service still runs"
    );
}

/// Zero loss from the wizard: the type is a choice with its timeout and
/// the RPO guard beside it; once configured the tab says zero loss holds;
/// a write the secondary cannot take in time (it is in outage) suspends
/// it, and the tab and the status bar turn red and say why.
#[test]
fn the_wizard_sets_up_zero_loss_and_a_suspension_shows_red() {
    let mut app = App::open(&[("orders", 200)]);
    app.until("the unconfigured tab", Duration::from_secs(20), |h| {
        h.query_by_label("Configure replication")
            .is_some_and(|b| !b.accesskit_node().is_disabled())
    });
    app.click("Configure replication");
    app.click_role(Role::RadioButton, "Storage, zero loss");
    app.until_shown(
        "A write waits this long for the secondary",
        Duration::from_secs(5),
    );
    assert!(
        app.harness
            .query_by_label("Zero-loss timeout in seconds")
            .is_some(),
        "the timeout is set where the type is chosen"
    );
    assert!(
        app.harness
            .query_by_label_contains("Slow, then refuse, writes")
            .is_some(),
        "the RPO guard is offered and explained"
    );
    app.click("Submit");
    app.until("zero loss in force", Duration::from_secs(60), |h| {
        h.state()
            .snapshot()
            .zero_loss
            .as_ref()
            .is_some_and(|z| z.in_force() && z.promised > 0)
            && h.query_by_label("ZERO LOSS").is_some()
    });
    let group = app.harness.state().snapshot().group.clone().expect("group");
    assert_eq!(
        group.kind,
        lifeboat::engine::group::ReplicationKind::ZeroLoss
    );
    assert_eq!(group.writes.zero_loss_timeout_s, 5.0);

    // Alerts fire at once here, so the status bar's badge shows within
    // the outage.
    std::fs::write(
        app.home.config_dir.join("alerts.ron"),
        "(unreachable_for_s: 0, rpo_for_s: 0, drill_overdue_days: 0)",
    )
    .expect("alerts.ron");
    // The secondary stops answering; a write made at the home waits for
    // it (as a workspace's does) and times out.
    let (us, eu) = (app.region("us-east-1"), app.region("eu-west-1"));
    eu.faults().set_outage(true);
    app.runtime.block_on(write(&app.home, &us, "orders", 10));
    let settled = app.runtime.block_on(
        us.notices()
            .sync
            .wait_replicated("dbs/orders/main", "database `orders`"),
    );
    assert!(
        matches!(settled, lifeboat::region::sync::Settled::TimedOut { .. }),
        "{settled:?}"
    );
    app.until("the red state", Duration::from_secs(10), |h| {
        h.query_by_label("ASYNCHRONOUS").is_some()
            && h.query_by_label("zero loss suspended").is_some()
    });
    app.until_shown("zero loss SUSPENDED since", Duration::from_secs(5));
    app.until("an alert in the status bar", Duration::from_secs(20), |h| {
        h.query_by_label_contains("firing").is_some()
    });
    eu.faults().set_outage(false);
    app.until("zero loss back", Duration::from_secs(60), |h| {
        h.query_by_label("ZERO LOSS").is_some() && h.query_by_label("ASYNCHRONOUS").is_none()
    });
}
