//! Frame time and memory of the desktop app with 50 databases replicating.
//!
//! The real app (`LifeboatApp`) over a real engine on two temporary local
//! regions: 50 databases homed in us-east-1, replicated to eu-west-1, ten of
//! them taking writes while frames are measured. Frames are stepped through
//! egui_kittest (layout, widgets and the accessibility tree; no GPU raster),
//! a few hundred per tab, with real time passing between them so that
//! snapshots keep arriving. Prints one JSON object.
//!
//! `cargo bench --bench gui` (targets: frame time p99 under 16 ms, resident
//! memory under 300 MB). `LIFEBOAT_BENCH_DATABASES=1000 cargo bench --bench
//! gui` measures the tables with a thousand rows (issue 19).

use std::time::{Duration, Instant};

use egui_kittest::Harness;

use lifeboat::config::Home;
use lifeboat::engine::group::{ReplicationKind, Selection};
use lifeboat::engine::{Command, Engine, EngineOptions};
use lifeboat::gui::{LifeboatApp, StartOptions, Tab};
use lifeboat::storage::DbLocation;
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{BackgroundRun, Rate, WorkloadSpec};

const DATABASES: usize = 50;

/// The databases replicated: `LIFEBOAT_BENCH_DATABASES`, or 50.
fn databases() -> usize {
    std::env::var("LIFEBOAT_BENCH_DATABASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DATABASES)
}
const WRITING: usize = 10;
const FRAMES_PER_TAB: usize = 300;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let home = Home::resolve(
        Some(dir.path().join("data")),
        Some(dir.path().join("config")),
    )?;
    let regions = home.load_regions()?;
    let us = regions.open("us-east-1")?;
    let count = databases();
    let names: Vec<String> = (0..count).map(|i| format!("db-{i:04}")).collect();
    let setup = Instant::now();
    runtime.block_on(async {
        for name in &names {
            DbLocation::in_region(&us, name)?.create().await?;
        }
        Ok::<_, lifeboat::Error>(())
    })?;
    let engine = Engine::start(
        runtime.handle(),
        home.clone(),
        regions,
        EngineOptions::default(),
    );
    engine.send(Command::ConfigureReplication {
        secondary: "eu-west-1".into(),
        databases: Selection::All,
        kind: ReplicationKind::StorageOnly,
        rpo_target_s: 1.0,
        data: Default::default(),
        writes: Default::default(),
    });
    let (_, seeded) = runtime.block_on(engine.wait_for(Duration::from_secs(300), |s| {
        s.flows.len() == count && s.flows.iter().all(|f| f.state_label() == "In sync")
    }));
    if !seeded {
        return Err(format!("the {count} databases did not reach In sync within 5 minutes").into());
    }
    let setup_s = setup.elapsed().as_secs_f64();
    // Writers on ten databases keep the lag, history and activity moving.
    let mut writers = Vec::new();
    for name in names.iter().take(WRITING) {
        let spec = WorkloadSpec {
            rate: Rate::PerSecond(50),
            duration: None,
            records: None,
            value_bytes: 512,
            churn: false,
        };
        let location = DbLocation::in_region(&us, name)?;
        let log = AckLog::for_db(&home.acks_dir(), name);
        let _entered = runtime.enter();
        writers.push(BackgroundRun::start(location, spec, log));
    }
    let mut results = serde_json::Map::new();
    let mut all = Vec::new();
    for tab in Tab::ALL {
        let engine = engine.clone();
        let start = StartOptions {
            tab: Some(tab),
            ..StartOptions::default()
        };
        let mut harness = Harness::builder()
            .with_size([1280.0, 800.0])
            .with_max_steps(10)
            .build_eframe(move |cc| LifeboatApp::new(cc, engine, start));
        for _ in 0..20 {
            harness.step(); // warm up: fonts, first layouts
        }
        let mut times_ms = Vec::with_capacity(FRAMES_PER_TAB);
        for _ in 0..FRAMES_PER_TAB {
            let t = Instant::now();
            harness.step();
            times_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_millis(10));
        }
        times_ms.sort_by(f64::total_cmp);
        results.insert(
            tab.label().to_lowercase(),
            serde_json::json!({
                "frames": times_ms.len(),
                "p50_ms": percentile(&times_ms, 0.50),
                "p99_ms": percentile(&times_ms, 0.99),
                "max_ms": times_ms.last().copied().unwrap_or(0.0),
            }),
        );
        all.extend(times_ms);
    }
    all.sort_by(f64::total_cmp);
    let snapshot = engine.snapshot();
    let in_sync = snapshot
        .flows
        .iter()
        .filter(|f| f.state_label() == "In sync" || f.state_label() == "Lagging")
        .count();
    for writer in writers {
        let _ = runtime.block_on(writer.stop());
    }
    let rss_mib = rss_kib("VmRSS:") as f64 / 1024.0;
    let peak_mib = rss_kib("VmHWM:") as f64 / 1024.0;
    let p99 = percentile(&all, 0.99);
    let report = serde_json::json!({
        "bench": "gui",
        "databases": count,
        "writing": WRITING,
        "flows_replicating": in_sync,
        "setup_s": setup_s,
        "frame_ms": {
            "p50": percentile(&all, 0.50),
            "p99": p99,
            "max": all.last().copied().unwrap_or(0.0),
            "by_tab": results,
        },
        "rss_mib": rss_mib,
        "peak_rss_mib": peak_mib,
        "targets": { "frame_p99_ms": 16.0, "rss_mib": 300.0 },
        "met": p99 < 16.0 && peak_mib < 300.0,
        "how": format!("egui_kittest steps of the real app (layout, widgets, accessibility tree; no GPU raster), engine and {count} flows in the same process"),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    runtime.block_on(engine.shutdown());
    Ok(())
}
