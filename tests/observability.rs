//! What people who are not looking at the app use: a real Prometheus
//! scraping the engine's `/metrics` with the alert rules Lifeboat ships.

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

/// A real Prometheus scrapes `serve --metrics` while the replica's region
/// (an S3 server in a network namespace) is cut off under a writer:
/// Prometheus's own view of `lifeboat_replica_lag_seconds` rises past 10 s
/// during the partition (the engine loses the region's lease, and the
/// replica stays in view, paused) and falls back under 5 s once it heals;
/// the breach of the 2 s RPO target is counted.
#[test]
fn prometheus_sees_the_replica_lag_rise_in_an_outage_and_fall_after() {
    if !common::s3_available() {
        return;
    }
    let Some(server) = common::netns::IsolatedS3::start() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Waits until the namespaced server answers.
    drop(runtime.block_on(server.region("probe")));

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
    ] {
        let out = run(lifeboat(data), args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let mut writer = lifeboat(data)
        .args([
            "workload",
            "--db",
            "orders",
            "--rate",
            "200",
            "--duration",
            "150s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lifeboat runs");
    let mut engine = common::Served::serving(
        lifeboat(data),
        &["--metrics", "127.0.0.1:0", "--duration", "150s"],
    );
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
    let Some(prometheus) = Prometheus::start(metrics) else {
        let _ = writer.kill();
        let _ = writer.wait();
        return;
    };

    let lag = r#"max(lifeboat_replica_lag_seconds{db="orders",branch="main",home="us-east-1",replica="west"})"#;
    let before = prometheus.until(Duration::from_secs(90), lag, |v| v < 5.0);
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
    server.heal();
    let after = prometheus.until(Duration::from_secs(90), lag, |v| v < 5.0);
    let peak = prometheus
        .value(&format!(
            "max_over_time({}[5m])",
            lag.trim_start_matches("max(").trim_end_matches(')')
        ))
        .expect("the peak");
    eprintln!(
        "lag seen by Prometheus: {before:.1} s before, {during:.1} s in the partition (peak {peak:.1} s), {after:.1} s after"
    );
    assert!(peak >= during, "{peak} < {during}");
    assert_eq!(
        paused,
        Some(1.0),
        "the replica was neither paused nor lagging in the partition"
    );
    // The breach of the 2 s target was counted once the lag went above it.
    let breaches = prometheus
        .value(r#"max(lifeboat_rpo_breaches_total{db="orders"})"#)
        .expect("breaches");
    assert!(breaches >= 1.0, "{breaches}");
    let _ = writer.kill();
    let _ = writer.wait();
}
