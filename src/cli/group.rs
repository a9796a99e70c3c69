//! `lifeboat group ...` and `lifeboat serve`: the replication group and the
//! engine, headless, through the same facade as the desktop app.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::{Args, Subcommand};

use lifeboat::engine::activity::Outcome;
use lifeboat::engine::group::{self, DataCopy, ReplicationKind, Selection};
use lifeboat::engine::{Command, Engine, Snapshot};
use lifeboat::error::{Error, Result, exit_code};

use crate::{Ctx, emit, parse_duration};

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Show the replication group saved on this machine.
    Show,
    /// Replicate from the primary (the first configured region) to
    /// SECONDARY: every current and future database, or those named.
    Configure {
        /// The region that holds the replicas.
        #[arg(long)]
        secondary: String,
        /// Only this database (repeatable; default: all current and future).
        #[arg(long = "db", value_name = "NAME")]
        dbs: Vec<String>,
        /// Lag above this counts as an RPO breach.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        rpo_target: Duration,
        /// Also stand the group's workspaces up in the secondary, following
        /// the replicas read-only, so a failover only forks and opens
        /// writers (the app's "storage + pre-provisioned"; `serve` runs them).
        #[arg(long, conflicts_with_all = ["storage_only", "kind"])]
        pre_provisioned: bool,
        /// Copy the files only; compute is made at failover. Without either
        /// flag (or --type) a saved group keeps its type, and a new one is
        /// storage only.
        #[arg(long, conflicts_with = "kind")]
        storage_only: bool,
        /// The replication type: `storage-only`, `pre-provisioned`, or
        /// `zero-loss` (a workspace acknowledges a write only once the
        /// secondary holds it; each write waits for one more copy across
        /// regions).
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        kind: Option<KindArg>,
        /// With `--type zero-loss`: how long a write waits for the
        /// secondary before the group runs asynchronously, with an alert,
        /// until the secondary holds every write again (default 5s; a saved
        /// group keeps its own).
        #[arg(long, value_parser = parse_duration)]
        zero_loss_timeout: Option<Duration>,
        /// The RPO guard, `on` or `off`: slow, then refuse, writes while a
        /// replica would fall behind the RPO target, so the target holds by
        /// construction (clients see errors while the link is too slow).
        /// Off by default; a saved group keeps its setting.
        #[arg(long, value_enum, value_name = "on|off")]
        rpo_guard: Option<Switch>,
        /// The GC hold: how long a home keeps a file a replica still needs
        /// (a replica paused or slow then lands every state in turn instead
        /// of reseeding), e.g. 6h, up to 720h; 0s turns it off. Default 6h;
        /// a saved group keeps its own.
        #[arg(long, value_parser = parse_duration)]
        gc_hold: Option<Duration>,
        /// Who copies the SSTs (the bulk of the bytes): `lifeboat`, or
        /// `store` for a region pair that replicates each database's
        /// `compacted/` folder itself, without deletes (S3 Cross-Region
        /// Replication, GCS dual-region, Azure object replication,
        /// SeaweedFS filer.sync); Lifeboat then copies each manifest once the
        /// store has every SST it names. Without it a saved group keeps its
        /// setting, and a new one is `lifeboat`.
        #[arg(long, value_enum)]
        data: Option<DataArg>,
    },
    /// Drill by itself on a schedule, with the smoke commands of the last
    /// drill: `weekly`, `daily`, a period (`3d`, `12h`), a cron expression
    /// (`"0 3 * * 1"`: Mondays at 03:00 local time), or `off`.
    Drills {
        #[arg(long, value_name = "SCHEDULE")]
        schedule: String,
        /// A command each drill runs through the drill's workspace (as
        /// `drill --smoke`; repeatable; default: those of the last drill).
        #[arg(long = "smoke", value_name = "COMMAND")]
        smoke: Vec<String>,
    },
    /// Stop copying a database until resumed.
    Pause {
        /// The database.
        db: String,
    },
    /// Copy a paused database again.
    Resume {
        /// The database.
        db: String,
    },
    /// Stop replicating and forget the group (the replicas stay).
    Stop,
}

/// `--type` of `group configure`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KindArg {
    StorageOnly,
    PreProvisioned,
    ZeroLoss,
}

/// An option turned `on` or `off`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Switch {
    On,
    Off,
}

/// `--data` of `group configure`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DataArg {
    Lifeboat,
    Store,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Print every replica's status this often.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    report_every: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Share the group's flows with the other engines started with
    /// `--share` (on other machines): the one holding the secondary's lease
    /// hands each a part and takes back a dead one's (docs/sharing.md).
    #[arg(long)]
    share: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (HOST:PORT, e.g.
    /// 127.0.0.1:9464; a bare port listens on loopback).
    #[arg(long, value_name = "ADDR", value_parser = crate::parse_metrics_listen)]
    metrics: Option<std::net::SocketAddr>,
}

/// How long a command may take before the CLI gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// An engine over this machine's configuration, with its saved group
/// loaded (or none saved).
async fn engine(ctx: &Ctx) -> Result<Engine> {
    engine_with(ctx, ctx.engine_options()).await
}

/// [`engine`] with these options.
async fn engine_with(ctx: &Ctx, options: lifeboat::engine::EngineOptions) -> Result<Engine> {
    let saved = group::load(&ctx.home.config_dir)?.is_some();
    // Only this engine's own attempt counts: the activity log keeps the
    // failures of earlier runs, long since fixed.
    let since_us = lifeboat::workload::now_us();
    let engine = Engine::start(
        &tokio::runtime::Handle::current(),
        ctx.home.clone(),
        ctx.regions.clone(),
        options,
    );
    let (snapshot, ready) = engine
        .wait_for(COMMAND_TIMEOUT, |s| {
            let settled = s.group.is_some() && leases_settled(s);
            s.seq > 0 && (!saved || settled || resume_failed(s, since_us).is_some())
        })
        .await;
    if let Some(message) = resume_failed(&snapshot, since_us) {
        engine.shutdown().await;
        return Err(Error::Failed(format!(
            "the saved replication group could not start: {message}"
        )));
    }
    if !ready {
        engine.shutdown().await;
        return Err(Error::Failed(
            "the engine did not load the saved replication group within 2 minutes".into(),
        ));
    }
    Ok(engine)
}

/// Whether the engine knows, for every region of its group, whether it
/// holds the lease (its flows then run) or who does.
fn leases_settled(snapshot: &Snapshot) -> bool {
    let Some(group) = &snapshot.group else {
        return false;
    };
    [&group.primary, &group.secondary].iter().all(|region| {
        snapshot.leases.iter().any(|l| {
            &l.region == *region && l.state != lifeboat::control::lease::LeaseState::Unknown
        })
    })
}

/// Why the engine started after `since_us` could not resume the saved group.
pub(crate) fn resume_failed(snapshot: &Snapshot, since_us: u64) -> Option<String> {
    snapshot
        .activity
        .iter()
        .rev()
        .filter(|e| e.at_us >= since_us)
        .find_map(|e| match &e.outcome {
            Outcome::Failed(m) if e.request == 0 && e.what.starts_with("resume replication") => {
                Some(m.clone())
            }
            _ => None,
        })
}

/// Sends `command` and waits for its outcome.
async fn ask(engine: &Engine, command: Command) -> Result<String> {
    engine
        .run(command, None, COMMAND_TIMEOUT)
        .await
        .1
        .into_result()
}

pub async fn group(ctx: &Ctx, json: bool, command: GroupCommand) -> Result<i32> {
    let command = match command {
        GroupCommand::Show => {
            let saved = group::load(&ctx.home.config_dir)?;
            emit(json, &saved, || {
                match &saved {
                None => "no replication group; configure one with `lifeboat group configure --secondary REGION`".into(),
                Some(g) => {
                    let dbs = match &g.databases {
                        Selection::All => "all current and future databases".to_string(),
                        Selection::Only(dbs) => dbs.iter().cloned().collect::<Vec<_>>().join(", "),
                    };
                    let mut text = format!(
                        "{} → {}: {dbs}; {}; {}; RPO target {} s",
                        g.primary,
                        g.secondary,
                        g.kind.label(),
                        g.data.label(),
                        g.rpo_target_s
                    );
                    if let Some(timeout) = g.zero_loss_timeout() {
                        text.push_str(&format!(
                            "; a write waits up to {} s for the secondary",
                            timeout.as_secs_f64()
                        ));
                    }
                    if g.writes.rpo_guard {
                        text.push_str(
                            "; RPO guard on (writes slow, then are refused, as a replica nears the target)",
                        );
                    }
                    text.push_str(&match g.writes.gc_hold_s {
                        0 => "; GC hold off (a replica that falls behind may have to reseed)"
                            .to_string(),
                        s => format!(
                            "; the homes keep what a replica still needs for up to {}",
                            humantime::format_duration(Duration::from_secs(s))
                        ),
                    });
                    text.push_str(&match &g.drill_schedule {
                        Some(s) => format!("; drills by itself {}", s.describe()),
                        None => "; drills only when asked".to_string(),
                    });
                    if !g.held.is_empty() {
                        let held: Vec<_> = g.held.iter().cloned().collect();
                        text.push_str(&format!("; paused: {}", held.join(", ")));
                    }
                    let target = Duration::from_secs_f64(g.rpo_target_s.max(0.001));
                    if let Some(cost) = rpo_target_cost(ctx, target) {
                        text.push_str(&format!("\nthe RPO target costs {cost}"));
                    }
                    text
                }
            }
            })?;
            return Ok(exit_code::OK);
        }
        GroupCommand::Configure {
            secondary,
            dbs,
            rpo_target,
            pre_provisioned,
            storage_only,
            kind,
            zero_loss_timeout,
            rpo_guard,
            gc_hold,
            data,
        } => {
            ctx.regions.get(&secondary)?;
            let saved = group::load(&ctx.home.config_dir)?;
            let kind = match kind {
                Some(KindArg::StorageOnly) => ReplicationKind::StorageOnly,
                Some(KindArg::PreProvisioned) => ReplicationKind::PreProvisioned,
                Some(KindArg::ZeroLoss) => ReplicationKind::ZeroLoss,
                None if pre_provisioned => ReplicationKind::PreProvisioned,
                None if storage_only => ReplicationKind::StorageOnly,
                None => saved
                    .as_ref()
                    .map_or(ReplicationKind::StorageOnly, |g| g.kind),
            };
            let mut writes = saved.as_ref().map(|g| g.writes).unwrap_or_default();
            if let Some(timeout) = zero_loss_timeout {
                writes.zero_loss_timeout_s = timeout.as_secs_f64();
            }
            if let Some(guard) = rpo_guard {
                writes.rpo_guard = matches!(guard, Switch::On);
            }
            if let Some(hold) = gc_hold {
                // Less than a second is not off: it is refused as too short.
                writes.gc_hold_s = hold.as_secs().max(u64::from(!hold.is_zero()));
            }
            if let Some(primary) = ctx.regions.names().first() {
                // In the words of the command line.
                let fixes = group::Fixes {
                    secondary: "give another region as --secondary",
                    rpo_target: "give --rpo-target above 0s, e.g. 1s",
                    zero_loss_timeout: "give --zero-loss-timeout between 100ms and 600s, e.g. 5s",
                    gc_hold: "give --gc-hold from 1m to 720h, e.g. 6h (0s: off)",
                };
                group::check(primary, &secondary, rpo_target.as_secs_f64(), fixes)?;
                group::check_writes(&writes, fixes)?;
            }
            let data = match data {
                Some(DataArg::Lifeboat) => DataCopy::Lifeboat,
                Some(DataArg::Store) => DataCopy::Store,
                None => saved.as_ref().map_or(DataCopy::Lifeboat, |g| g.data),
            };
            let databases = if dbs.is_empty() {
                Selection::All
            } else {
                Selection::Only(dbs.into_iter().collect::<BTreeSet<_>>())
            };
            Command::ConfigureReplication {
                secondary,
                databases,
                kind,
                rpo_target_s: rpo_target.as_secs_f64(),
                data,
                writes,
            }
        }
        GroupCommand::Drills { schedule, smoke } => {
            let schedule = match schedule.trim() {
                "off" => None,
                text => Some(
                    lifeboat::engine::schedule::DrillSchedule::parse(
                        text,
                        "give --schedule as weekly, daily, a period like 3d, a cron expression like \"0 3 * * 1\", or off",
                    )
                    .map_err(Error::invalid)?,
                ),
            };
            Command::SetDrillSchedule {
                schedule,
                smoke: (!smoke.is_empty()).then_some(smoke),
            }
        }
        GroupCommand::Pause { db } => Command::Pause { db },
        GroupCommand::Resume { db } => Command::Resume { db },
        GroupCommand::Stop => Command::StopReplication,
    };
    // What the target costs, where it is set.
    let target_cost = match &command {
        Command::ConfigureReplication { rpo_target_s, .. } => {
            rpo_target_cost(ctx, Duration::from_secs_f64(*rpo_target_s))
        }
        _ => None,
    };
    let engine = engine(ctx).await?;
    let result = ask(&engine, command).await;
    engine.shutdown().await;
    let message = result?;
    let out = serde_json::json!({ "done": message, "rpo_target_cost": target_cost });
    emit(json, &out, || match &target_cost {
        Some(cost) => format!("{message}\nthe RPO target costs {cost}"),
        None => message.clone(),
    })?;
    Ok(exit_code::OK)
}

/// What `target` costs a quiet database of the primary, at the prices in
/// use (`None` without a primary).
fn rpo_target_cost(ctx: &Ctx, target: Duration) -> Option<String> {
    let (rows, _, error) = lifeboat::cost::load_or_published(&ctx.home.config_dir);
    if let Some(error) = error {
        eprintln!("warning: {error}; using the published prices");
    }
    let primary = ctx.regions.specs().first()?;
    let (row, what_if) = lifeboat::cost::row_for_spec(&rows, primary);
    Some(lifeboat::cost::target_line(target, row, what_if))
}

pub async fn serve(ctx: &Ctx, json: bool, args: ServeArgs) -> Result<i32> {
    if group::load(&ctx.home.config_dir)?.is_none() {
        return Err(Error::invalid(
            "no replication group to serve; configure one with `lifeboat group configure --secondary REGION`",
        ));
    }
    let options = lifeboat::engine::EngineOptions {
        share_flows: args.share,
        ..ctx.engine_options()
    };
    let engine = engine_with(ctx, options).await?;
    let _metrics = match args.metrics {
        Some(addr) => {
            let server = lifeboat::metrics::server::serve(addr, engine.subscribe()).await?;
            eprintln!("metrics at http://{}/metrics", server.addr);
            Some(server)
        }
        None => None,
    };
    let mut leases = Vec::new();
    super::report_until_stopped(args.duration, args.report_every, || {
        let snapshot = engine.snapshot();
        if snapshot.leases != leases {
            leases = snapshot.leases.clone();
            for lease in &leases {
                // On stderr: stdout carries the flows (one JSON line each with --json).
                eprintln!("{}", lease.describe());
            }
        }
        print(json, &snapshot)
    })
    .await?;
    print(json, &engine.snapshot())?;
    engine.shutdown().await;
    Ok(exit_code::OK)
}

/// Prints what this engine copies: nothing while it stands by (its
/// snapshot then shows the flows of the engine that runs the group), only
/// its part while it shares them (docs/sharing.md).
fn print(json: bool, snapshot: &Snapshot) -> Result<()> {
    let own: Vec<&lifeboat::replication::FlowStatus> = if snapshot.remote.is_some() {
        snapshot.helping.iter().collect()
    } else {
        snapshot
            .flows
            .iter()
            .map(|f| &f.status)
            .filter(|s| s.copied_by.is_none())
            .collect()
    };
    if json {
        let statuses = &own;
        let line = serde_json::to_string(&statuses)
            .map_err(|e| Error::Failed(format!("cannot encode the status as JSON: {e}")))?;
        println!("{line}");
    } else {
        for status in own {
            println!("{}", status.line());
        }
    }
    Ok(())
}
