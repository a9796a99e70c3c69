//! Shared test fixtures: regions of every local kind, the real binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use lifeboat::config::file_url;
use lifeboat::region::{Region, RegionSpec};

/// The kinds of region every storage test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    File,
    Memory,
}

pub const LOCAL_KINDS: [Kind; 2] = [Kind::File, Kind::Memory];

/// A fresh region of `kind`; a file region lives under `dir`.
pub fn region(kind: Kind, name: &str, dir: &Path) -> Region {
    let url = match kind {
        Kind::File => file_url(&dir.join(name)),
        Kind::Memory => format!("memory://{name}-{:016x}", fastrand::u64(..)),
    };
    Region::open(&RegionSpec::new(name, &url)).expect("region opens")
}

/// The `lifeboat` binary with its own data dir.
pub fn lifeboat(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    cmd.arg("--data-dir").arg(data_dir);
    cmd.env_remove("LIFEBOAT_CONFIG_DIR");
    cmd.env_remove("RUST_LOG");
    cmd
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
