//! What people who are not looking at the app use: a real Prometheus
//! scraping the engine's `/metrics` with the alert rules Lifeboat ships,
//! and the engine's own alerts through a signed webhook.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TEST_KEYS, lifeboat, run, stderr};

/// `GET path` from `addr` (HTTP/1.0, the body read to the end): the status
/// code and the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `cmd` running `serve --metrics 127.0.0.1:0` for `duration`, and the
/// address its metrics are served at (from the line it prints).
fn serving_metrics(cmd: Command, duration: &str) -> (common::Served, SocketAddr) {
    let mut engine =
        common::Served::serving(cmd, &["--metrics", "127.0.0.1:0", "--duration", duration]);
    let address = |line: &str| {
        line.strip_prefix("metrics at http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
    };
    engine.until(Duration::from_secs(60), |line| address(line).is_some());
    let metrics = engine
        .seen
        .iter()
        .find_map(|line| address(line))
        .expect("the metrics address");
    (engine, metrics)
}

/// A Prometheus server scraping `target` every second, from the Debian
/// package the test command installs; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one, or `None` where Prometheus is not installed (it must be
    /// under CI).
    fn start(target: SocketAddr) -> Option<Prometheus> {
        let found = Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is missing under CI: the test command must install it"
            );
            eprintln!("note: skipped: no `prometheus` here (./scripts/test installs it)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // The alert rules Lifeboat ships, checked by Prometheus's own tool.
        let rules = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/prometheus/lifeboat-alerts.yml"
        );
        let checked = Command::new("promtool")
            .args(["check", "rules", rules])
            .output()
            .expect("promtool runs");
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stdout)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: ['{rules}']\n\
                 scrape_configs:\n  - job_name: lifeboat\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("prometheus runs");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(addr, "/-/ready"), Ok((200, _))) {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(prometheus)
    }

    /// The value of PromQL `query` now, when it has one.
    fn value(&self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={encoded}")).ok()?;
        assert_eq!(status, 200, "{query}: {body}");
        let reply: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        reply["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }

    /// The names of the alerts pending or firing now.
    fn alerts(&self) -> Vec<String> {
        let Ok((200, body)) = http_get(self.addr, "/api/v1/alerts") else {
            return Vec::new();
        };
        let reply: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        reply["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits up to `within` for `query` to have a value `wanted` accepts.
    fn until(&self, within: Duration, query: &str, wanted: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            last = self.value(query).or(last);
            if let Some(v) = last.filter(|v| wanted(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "`{query}` was {last:?} for {within:?}; Prometheus's targets: {:?}",
                http_get(self.addr, "/api/v1/targets")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver on loopback: each POST's body, kept with whether its
/// `X-Lifeboat-Signature` is the HMAC-SHA256 of the body under `secret`
/// (computed here, independently of Lifeboat).
struct Receiver {
    addr: SocketAddr,
    got: std::sync::mpsc::Receiver<(serde_json::Value, bool)>,
}

impl Receiver {
    fn start(secret: &'static str) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Some(posted) = read_post(&mut stream, secret) {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    if tx.send(posted).is_err() {
                        return;
                    }
                }
            }
        });
        Receiver { addr, got }
    }

    /// Every event received within `within`.
    fn collect(&self, within: Duration) -> Vec<(serde_json::Value, bool)> {
        let deadline = Instant::now() + within;
        let mut events = Vec::new();
        while let Ok(event) = self
            .got
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            events.push(event);
        }
        events
    }
}

/// One HTTP request's JSON body and whether its signature checks out.
fn read_post(stream: &mut TcpStream, secret: &str) -> Option<(serde_json::Value, bool)> {
    use hmac::{KeyInit, Mac};
    use std::io::BufRead as _;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = std::io::BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    let mut signature = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "x-lifeboat-signature" => signature = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signed = signature == Some(format!("sha256={expected}"));
    Some((serde_json::from_slice(&body).ok()?, signed))
}

const HOOK_SECRET: &str = "a test secret for the webhook";

/// An outage of the replica's region (an S3 server in a network namespace,
/// cut off with nftables) under a writer, watched by a real Prometheus
/// scraping `serve --metrics` and by the engine's own alerts with a signed
/// webhook:
/// - Prometheus's view of `lifeboat_replica_lag_seconds` rises past 10 s in
///   the outage (the engine loses the region's lease; the replica stays in
///   view, paused) and falls under 5 s once it heals; the breach of the 2 s
///   target is counted, and the shipped rule `LifeboatRpoAboveTarget` is
///   pending;
/// - the webhook gets nothing for a 3 s outage (shorter than the rule's
///   20 s), exactly one firing and one resolved event for a longer one,
///   each signed; `alert test` reaches it too.
#[test]
fn an_outage_is_seen_by_prometheus_and_alerted_once_through_a_signed_webhook() {
    if !common::s3_available() {
        return;
    }
    let Some(server) = common::netns::IsolatedS3::start() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Waits until the namespaced server answers.
    drop(runtime.block_on(server.region("probe")));
    let hook = Receiver::start(HOOK_SECRET);
    let with_secret = |data: &std::path::Path| {
        let mut cmd = lifeboat(data);
        cmd.env("LIFEBOAT_TEST_HOOK_SECRET", HOOK_SECRET);
        cmd
    };

    // The embedded default's us-east-1 (a local folder) is the home.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let out = common::add_s3_region(
        lifeboat(data),
        "west",
        "lifeboat-test",
        &server.endpoint(),
        TEST_KEYS,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let url = format!("http://{}/hook", hook.addr);
    for args in [
        &["db", "create", "orders"][..],
        &[
            "group",
            "configure",
            "--secondary",
            "west",
            "--rpo-target",
            "2s",
        ],
        &[
            "alert",
            "add",
            "hook",
            "--webhook",
            &url,
            "--secret-env",
            "LIFEBOAT_TEST_HOOK_SECRET",
        ],
        // Only the RPO rule within the test's time.
        &[
            "alert",
            "rules",
            "--rpo-for",
            "20s",
            "--unreachable-for",
            "10m",
            "--engine-lost-for",
            "10m",
            "--damaged-for",
            "10m",
            "--drill-overdue-days",
            "0",
            "--repeat",
            "1h",
        ],
    ] {
        let out = run(with_secret(data), args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out = run(with_secret(data), &["alert", "test"]);
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        stderr(&out)
    );
    let tested = hook.collect(Duration::from_secs(2));
    assert_eq!(tested.len(), 1, "{tested:?}");
    assert_eq!(tested[0].0["status"], "test", "{tested:?}");
    assert!(tested[0].1, "the test event's signature is wrong");

    let mut writer = lifeboat(data)
        .args([
            "workload",
            "--db",
            "orders",
            "--rate",
            "200",
            "--duration",
            "240s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lifeboat runs");
    let (_engine, metrics) = serving_metrics(with_secret(data), "240s");
    let Some(prometheus) = Prometheus::start(metrics) else {
        let _ = writer.kill();
        let _ = writer.wait();
        return;
    };
    let lag = r#"max(lifeboat_replica_lag_seconds{db="orders",branch="main",home="us-east-1",replica="west"})"#;
    let before = prometheus.until(Duration::from_secs(90), lag, |v| v < 2.0);

    // A short outage: under the rule's 20 s, nothing is sent.
    server.partition();
    std::thread::sleep(Duration::from_secs(3));
    server.heal();
    prometheus.until(Duration::from_secs(60), lag, |v| v < 2.0);
    let short = hook.collect(Duration::from_secs(20));
    assert!(short.is_empty(), "a 3 s outage alerted: {short:?}");

    // A long one: one firing, then one resolved.
    server.partition();
    let during = prometheus.until(Duration::from_secs(60), lag, |v| v >= 10.0);
    let paused = prometheus.value(
        r#"max(lifeboat_replica_state{db="orders",state="paused"}) + max(lifeboat_replica_state{db="orders",state="lagging"})"#,
    );
    // The shipped rule sees the breach (it fires after a minute of it).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !prometheus
        .alerts()
        .iter()
        .any(|a| a == "LifeboatRpoAboveTarget")
    {
        assert!(
            Instant::now() < deadline,
            "no LifeboatRpoAboveTarget alert: {:?}",
            prometheus.alerts()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Held past the rule's 20 s.
    let firing = hook.collect(Duration::from_secs(30));
    server.heal();
    let after = prometheus.until(Duration::from_secs(90), lag, |v| v < 2.0);
    let resolved = hook.collect(Duration::from_secs(10));
    let peak = prometheus
        .value(&format!(
            "max_over_time({}[10m])",
            lag.trim_start_matches("max(").trim_end_matches(')')
        ))
        .expect("the peak");
    eprintln!(
        "lag seen by Prometheus: {before:.1} s before, {during:.1} s in the long outage (peak {peak:.1} s), {after:.1} s after"
    );
    assert!(peak >= during, "{peak} < {during}");
    assert_eq!(
        paused,
        Some(1.0),
        "the replica was neither paused nor lagging in the outage"
    );
    let breaches = prometheus
        .value(r#"max(lifeboat_rpo_breaches_total{db="orders"})"#)
        .expect("breaches");
    assert!(breaches >= 1.0, "{breaches}");

    let said = |events: &[(serde_json::Value, bool)]| -> Vec<(String, String, String, bool)> {
        events
            .iter()
            .map(|(e, signed)| {
                let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (text("alert"), text("status"), text("subject"), *signed)
            })
            .collect()
    };
    let alert = |status: &str| {
        (
            "rpo_above_target".to_string(),
            status.to_string(),
            "orders".to_string(),
            true,
        )
    };
    assert_eq!(said(&firing), [alert("firing")], "{firing:?}");
    assert_eq!(said(&resolved), [alert("resolved")], "{resolved:?}");

    // A drill after the outage; then the month's report holds both.
    let out = run(lifeboat(data), &["drill", "--smoke", "GET greeting"]);
    assert!(out.status.success(), "drill: {}", stderr(&out));
    let _ = writer.kill();
    let _ = writer.wait();
    drop(prometheus);
    drop(_engine);
    month_report_holds_the_outage_and_the_drill(data);
}

/// `lifeboat report month` after the outage test: the drill is there with
/// its RTO, the long outage of `west` is there, and each database's share
/// of time within the RPO target is the one this test computes itself
/// from the engine's kept samples (each interval between two samples at
/// most 10 s apart counts as the later sample saw it).
fn month_report_holds_the_outage_and_the_drill(data: &std::path::Path) {
    let out = run(
        lifeboat(data),
        &[
            "report",
            "month",
            "--json",
            "--out",
            &data.display().to_string(),
        ],
    );
    assert!(out.status.success(), "report: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the report's JSON");
    let month = report["month"].as_str().expect("month").to_string();
    for ext in ["md", "json", "html"] {
        let path = data.join(format!("lifeboat-dr-{month}.{ext}"));
        let text = std::fs::read_to_string(&path).expect("a report file");
        assert!(text.contains("orders"), "{}: no orders", path.display());
    }
    let html = std::fs::read_to_string(data.join(format!("lifeboat-dr-{month}.html")))
        .expect("the HTML report");
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "two plots in the HTML page"
    );

    let drills: Vec<&serde_json::Value> = report["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|o| o["kind"] == "drill")
        .collect();
    assert_eq!(drills.len(), 1, "{:?}", report["operations"]);
    assert_eq!(drills[0]["ok"], true);
    assert!(drills[0]["rto_ms"].as_u64().is_some(), "{:?}", drills[0]);
    let outages: Vec<f64> = report["outages"]
        .as_array()
        .expect("outages")
        .iter()
        .filter(|o| o["region"] == "west")
        .filter_map(|o| o["seconds"].as_f64())
        .collect();
    assert!(
        outages.iter().any(|s| *s >= 20.0),
        "the long outage of west is missing: {:?}",
        report["outages"]
    );

    // The share within target, from the samples as kept on disk.
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(data.join("samples"))
        .expect("samples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    if files
        .iter()
        .any(|f| f.extension().is_some_and(|x| x == "gz"))
    {
        eprintln!("the run crossed midnight UTC; the share is not recomputed");
        return;
    }
    let (mut sampled, mut within, mut worst) = (0.0_f64, 0.0_f64, 0.0_f64);
    let mut lag: Option<f64> = None;
    let mut previous: Option<f64> = None;
    for file in files {
        for line in std::fs::read_to_string(&file).expect("samples").lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let t = v["t"].as_f64().expect("t");
            if v["full"] == true {
                lag = None;
            }
            match v["lag"].get("orders") {
                Some(serde_json::Value::Null) => lag = None,
                Some(l) => lag = l.as_f64(),
                None => {}
            }
            if let (Some(p), Some(l), Some(target)) = (previous, lag, v["target"].as_f64()) {
                let dt = t - p;
                if dt > 0.0 && dt <= 10.0 {
                    sampled += dt;
                    if l <= target {
                        within += dt;
                    }
                }
            }
            worst = worst.max(lag.unwrap_or(0.0));
            previous = Some(t);
        }
    }
    let orders = report["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|d| d["db"] == "orders")
        .expect("orders in the report");
    let share = orders["within_share"].as_f64().expect("share");
    eprintln!(
        "report: {share:.4} of {sampled:.0} s within target (computed here: {:.4}); worst lag {}",
        within / sampled,
        orders["worst_lag_s"]
    );
    assert!(share < 0.95, "the outage was not counted: {share}");
    assert!(
        (share - within / sampled).abs() < 1e-6,
        "the report's share {share} is not the samples' {}",
        within / sampled
    );
    assert!(orders["worst_lag_s"].as_f64().expect("worst") >= 10.0);
    assert!((orders["worst_lag_s"].as_f64().expect("worst") - worst).abs() < 1e-9);
}

/// A schedule every 8 s: the engine drills by itself with the saved smoke
/// command, keeps each drill's report in the data folder (Markdown and
/// JSON), and once the smoke command fails, the failed drill raises the
/// `operation_failed` alert through a command sink (the event as JSON on
/// its stdin). Counted through the engine's `/metrics`.
#[test]
fn scheduled_drills_run_keep_their_reports_and_a_failed_one_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let events = data.join("alerts.jsonl");
    let sink = format!("cat >> '{0}' && echo >> '{0}'", events.display());
    for args in [
        &["db", "create", "orders"][..],
        &[
            "workload",
            "--db",
            "orders",
            "--rate",
            "100",
            "--duration",
            "2s",
        ],
        &["group", "configure", "--secondary", "eu-west-1"],
        &["alert", "add", "log", "--command", &sink],
        &[
            "group",
            "drills",
            "--schedule",
            "8s",
            "--smoke",
            "SET scheduled yes",
        ],
    ] {
        let out = run(lifeboat(data), args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let (_engine, metrics) = serving_metrics(lifeboat(data), "180s");
    let drills = |outcome: &str| -> u64 {
        let (_, body) = http_get(metrics, "/metrics").expect("scrape");
        let series = format!("lifeboat_operations_total{{kind=\"drill\",outcome=\"{outcome}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let until = |what: &str, within: Duration, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < deadline, "{what} within {within:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    until(
        "two scheduled drills passed",
        Duration::from_secs(120),
        &|| drills("ok") >= 2,
    );
    let reports = |ok: bool| -> usize {
        std::fs::read_dir(data.join("drills"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .filter(|r| r["ok"] == ok && r["kind"] == "Drill")
                    .count()
            })
            .unwrap_or(0)
    };
    until("two passed reports kept", Duration::from_secs(10), &|| {
        reports(true) >= 2
    });
    let markdown = std::fs::read_dir(data.join("drills"))
        .expect("drills/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .count();
    assert!(markdown >= 2, "{markdown} Markdown reports");

    // The smoke command fails from now on: the next scheduled drill fails
    // and the alert fires, once.
    let out = run(
        lifeboat(data),
        &[
            "group",
            "drills",
            "--schedule",
            "8s",
            "--smoke",
            "NOSUCHCOMMAND x",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let failed_alert = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["alert"] == "operation_failed" && e["subject"] == "drill")
            .collect()
    };
    until("the failed drill's alert", Duration::from_secs(90), &|| {
        !failed_alert().is_empty()
    });
    assert!(drills("failed") >= 1);
    assert!(reports(false) >= 1, "no failed drill's report kept");
    let alerted = failed_alert();
    assert_eq!(alerted[0]["status"], "firing", "{alerted:?}");
    assert!(
        alerted[0]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("NOSUCHCOMMAND")),
        "{alerted:?}"
    );
    // Later failed drills keep it firing: it is not sent again (the
    // repeat is an hour).
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(failed_alert().len(), 1, "{:?}", failed_alert());
}
