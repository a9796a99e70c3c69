//! Shared test fixtures: regions of every local kind, the real binary.
#![allow(dead_code)]

pub mod flows;
pub mod netns;

use std::path::Path;
use std::process::{Command, Output};

use lifeboat::config::file_url;
use lifeboat::region::{Region, RegionSpec};

/// The kinds of region every engine test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A local folder.
    File,
    /// The in-memory store.
    Memory,
    /// SeaweedFS, one instance per region (`eu-west-1` on the second).
    S3,
    /// moto, a second S3 implementation.
    Moto,
    /// Azurite, Azure Blob Storage's emulator (`scripts/emulators`).
    Azure,
}

impl Kind {
    /// Whether regions of this kind are reached over HTTP (faults are then
    /// injected at the HTTP layer, under the client's own retries).
    pub fn is_cloud(self) -> bool {
        matches!(self, Kind::S3 | Kind::Moto | Kind::Azure)
    }
}

/// The kinds that need no server.
pub const LOCAL_KINDS: [Kind; 2] = [Kind::File, Kind::Memory];

/// Every kind this run can use: the local ones, and the S3 servers when
/// `scripts/test` started them (it exports their endpoints). Under CI the
/// S3 servers are required, so a broken start cannot pass silently.
pub fn kinds() -> Vec<Kind> {
    let mut kinds = LOCAL_KINDS.to_vec();
    if s3_available() {
        kinds.extend([Kind::S3, Kind::Moto]);
    }
    if azure_available() {
        kinds.push(Kind::Azure);
    }
    // LIFEBOAT_TEST_KINDS=moto,s3 narrows a run down while chasing a failure.
    if let Ok(only) = std::env::var("LIFEBOAT_TEST_KINDS") {
        let only = only.to_lowercase();
        kinds.retain(|k| {
            only.split(',')
                .any(|o| o.trim() == format!("{k:?}").to_lowercase())
        });
    }
    kinds
}

/// The pairs of kinds (primary, secondary) a failover and failback run
/// on: each kind with itself, and a mixed pair, S3 primary and Azure
/// secondary, as a customer moving from one cloud to another has.
pub fn pairs() -> Vec<(Kind, Kind)> {
    let kinds = kinds();
    let mut pairs: Vec<(Kind, Kind)> = kinds.iter().map(|&k| (k, k)).collect();
    if kinds.contains(&Kind::S3) && kinds.contains(&Kind::Azure) {
        pairs.push((Kind::S3, Kind::Azure));
    }
    pairs
}

/// Whether the S3 servers of `scripts/s3-servers` are up for this run.
pub fn s3_available() -> bool {
    servers_up("LIFEBOAT_S3_A", "S3", "the S3 servers")
}

/// Whether Azurite of `scripts/emulators` is up for this run (required
/// under CI, as the S3 servers are).
pub fn azure_available() -> bool {
    servers_up("LIFEBOAT_AZURITE", "Azure", "the emulators")
}

/// Whether the GCS emulator of `scripts/emulators` is up for this run.
pub fn gcs_available() -> bool {
    servers_up("LIFEBOAT_GCS", "GCS", "the emulators")
}

/// Whether `servers` of the test command are up (they export `var`):
/// required under CI, so a broken start cannot pass silently.
fn servers_up(var: &str, kind: &str, servers: &str) -> bool {
    let up = std::env::var_os(var).is_some();
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs need {servers}: run the tests through ./scripts/test"
        );
        eprintln!("note: {kind} regions skipped; ./scripts/test starts {servers}");
    }
    up
}

/// A spec for region `name` in Azurite (`eu-west-1` on the second
/// instance), under a fresh prefix of the test container, with the account
/// key named by variable as a user would.
pub fn azure_spec(name: &str) -> RegionSpec {
    let url = format!(
        "az://{}/{name}-{:016x}",
        env("LIFEBOAT_AZURE_CONTAINER"),
        fastrand::u64(..)
    );
    let mut spec = RegionSpec::new(name, &url);
    spec.endpoint = Some(match name {
        "eu-west-1" => env("LIFEBOAT_AZURITE_B"),
        _ => env("LIFEBOAT_AZURITE"),
    });
    spec.account = Some(env("LIFEBOAT_AZURE_ACCOUNT"));
    spec.account_key_env = Some("LIFEBOAT_AZURE_KEY".into());
    spec
}

/// A spec for a region of a cloud `kind` (S3 servers or Azurite).
pub fn cloud_spec(kind: Kind, name: &str) -> RegionSpec {
    match kind {
        Kind::Azure => azure_spec(name),
        _ => s3_spec(kind, name),
    }
}

/// A variable the test command's servers export.
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is set by the test command"))
}

/// A spec for region `name` on an S3 server of `kind`, under a fresh prefix
/// of the shared test bucket.
pub fn s3_spec(kind: Kind, name: &str) -> RegionSpec {
    let endpoint = match kind {
        Kind::S3 if name == "eu-west-1" => env("LIFEBOAT_S3_B"),
        Kind::S3 => env("LIFEBOAT_S3_A"),
        Kind::Moto => env("LIFEBOAT_S3_MOTO"),
        Kind::File | Kind::Memory | Kind::Azure => panic!("{kind:?} is not an S3 kind"),
    };
    let url = format!(
        "s3://{}/{name}-{:016x}",
        env("LIFEBOAT_S3_BUCKET"),
        fastrand::u64(..)
    );
    let mut spec = RegionSpec::new(name, &url);
    spec.endpoint = Some(endpoint);
    spec.access_key_env = Some("LIFEBOAT_S3_KEY".into());
    spec.secret_key_env = Some("LIFEBOAT_S3_SECRET".into());
    spec
}

/// A fresh region of `kind`; a file region lives under `dir`.
pub fn region(kind: Kind, name: &str, dir: &Path) -> Region {
    let spec = match kind {
        Kind::File => RegionSpec::new(name, &file_url(&dir.join(name))),
        Kind::Memory => {
            RegionSpec::new(name, &format!("memory://{name}-{:016x}", fastrand::u64(..)))
        }
        Kind::S3 | Kind::Moto | Kind::Azure => cloud_spec(kind, name),
    };
    Region::open(&spec).expect("region opens")
}

/// The `lifeboat` binary with its own data dir.
pub fn lifeboat(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    cmd.arg("--data-dir").arg(data_dir);
    cmd.env_remove("LIFEBOAT_CONFIG_DIR");
    cmd.env_remove("RUST_LOG");
    cmd
}

/// The test servers' key env vars, as `region add` names them.
pub const TEST_KEYS: [&str; 2] = ["LIFEBOAT_S3_KEY", "LIFEBOAT_S3_SECRET"];

/// `lifeboat region add NAME s3://BUCKET/PREFIX --endpoint ENDPOINT` with
/// the key env vars `keys` named, and any `extra` flags.
pub fn add_s3_region(
    cmd: Command,
    name: &str,
    bucket: &str,
    endpoint: &str,
    keys: [&str; 2],
    extra: &[&str],
) -> Output {
    let url = format!("s3://{bucket}/{name}-{:08x}", fastrand::u32(..));
    let mut args = vec![
        "region",
        "add",
        name,
        &url,
        "--endpoint",
        endpoint,
        "--access-key-env",
        keys[0],
        "--secret-key-env",
        keys[1],
    ];
    args.extend_from_slice(extra);
    run(cmd, &args)
}

/// Runs `cmd` with `args` and returns its output.
pub fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args).output().expect("lifeboat runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failed run printed exactly one error line and exited `code`.
pub fn assert_one_error_line(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert_eq!(lines.len(), 1, "one error line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

/// Copies a folder tree (a database copy made by hand).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A region holding a freshly created database `orders`, with an
/// acknowledgement log beside it; the folder is deleted when the fixture drops.
pub struct OrdersFixture {
    pub dir: tempfile::TempDir,
    pub region: Region,
    pub orders: lifeboat::storage::DbLocation,
    pub acks: lifeboat::workload::acks::AckLog,
}

/// Creates `orders` in a new region `name` of `kind`.
pub async fn orders_fixture(kind: Kind, name: &str) -> OrdersFixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let region = region(kind, name, dir.path());
    let orders = lifeboat::storage::DbLocation::in_region(&region, "orders").expect("names");
    orders.create().await.expect("create");
    let acks = lifeboat::workload::acks::AckLog::for_db(&dir.path().join("acks"), "orders");
    OrdersFixture {
        dir,
        region,
        orders,
        acks,
    }
}

/// A `serve` whose stdout and stderr lines arrive on a channel as they are
/// printed, each with when it arrived.
pub struct Served {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(std::time::Instant, String)>,
    pub seen: Vec<String>,
}

impl Served {
    pub fn start(data: &std::path::Path) -> Served {
        Served::start_with(lifeboat(data))
    }

    /// `cmd` (a `lifeboat` with its folders) serving for two minutes.
    pub fn start_with(cmd: Command) -> Served {
        Served::serving(cmd, &["--duration", "120s"])
    }

    /// An engine of `data` sharing the group's flows (`serve --share`)
    /// for four minutes.
    pub fn start_sharing(data: &std::path::Path) -> Served {
        Served::serving(lifeboat(data), &["--share", "--duration", "240s"])
    }

    /// `cmd` running `serve --report-every 1s` with `extra` flags.
    pub fn serving(mut cmd: Command, extra: &[&str]) -> Served {
        use std::io::BufRead as _;
        let mut child = cmd
            .args(["--json", "serve", "--report-every", "1s"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("lifeboat serve runs");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as Box<dyn std::io::Read + Send>,
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send((std::time::Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
        }
        Served {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `within` for a line that `wanted` accepts; when it came.
    pub fn until(
        &mut self,
        within: std::time::Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> std::time::Instant {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    let hit = wanted(&line);
                    self.seen.push(line);
                    if hit {
                        return at;
                    }
                }
                Err(_) => panic!(
                    "no such line within {within:?}; the last seen:\n{}",
                    self.seen[self.seen.len().saturating_sub(12)..].join("\n")
                ),
            }
        }
    }

    /// The flows of the newest status line printed so far.
    pub fn flows_now(&mut self) -> Vec<serde_json::Value> {
        while let Ok((_, line)) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .rev()
            .find_map(|l| serde_json::from_str::<Vec<serde_json::Value>>(l).ok())
            .unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the Redis clients are here (the test command installs them; a
/// bare `cargo test` without them skips these tests, loudly under CI).
pub fn redis_cli_found() -> bool {
    let found = Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var("CI").is_err(),
        "redis-cli is missing under CI: the test command must install redis-tools"
    );
    found
}

/// Fails over as `preview` says as engine `engine`, serving nothing,
/// telling `pins` of the forks; the failover must succeed (`what` says
/// which run failed).
pub async fn fail_over_as_previewed(
    regions: &[Region],
    preview: &lifeboat::orchestrator::failover::Preview,
    engine: &str,
    pins: &std::sync::Arc<lifeboat::replication::pins::BranchPins>,
    what: &str,
) -> lifeboat::orchestrator::failover::FailoverOutcome {
    use lifeboat::orchestrator::failover::{self, FailoverOptions};
    let outcome = failover::failover(
        regions,
        preview,
        engine,
        "test",
        FailoverOptions {
            pins: Some(std::sync::Arc::clone(pins)),
            ..FailoverOptions::default()
        },
    )
    .await
    .expect("failover");
    assert!(outcome.record.ok, "{what}: {:#?}", outcome.record);
    outcome
}
