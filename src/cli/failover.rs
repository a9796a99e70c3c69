//! `lifeboat failover` and `lifeboat branch ...`: fail the group's databases
//! over to the secondary, and list, fork and delete branches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use lifeboat::control::event::{BranchReason, Event, OperationRecord};
use lifeboat::control::{self};
use lifeboat::engine::activity::local_user;
use lifeboat::engine::group;
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::orchestrator::failover::{self, FailoverOptions, branch_event, replicated};
use lifeboat::orchestrator::{now_ms, report};
use lifeboat::region::Region;
use lifeboat::storage::fork;
use lifeboat::workload::acks::AckLog;

use crate::{Ctx, emit, parse_duration};

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// The region failing (default: the group's primary).
    #[arg(long)]
    from: Option<String>,
    /// The region taking over (default: the group's secondary).
    #[arg(long)]
    to: Option<String>,
    /// A database to fail over; repeatable (default: the group's).
    #[arg(long = "db", value_name = "NAME")]
    dbs: Vec<String>,
    /// Fail over. Without it, only show what a failover would do and lose.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

/// How an operation that starts workspaces serves them and reports.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Write the report here (.json for JSON, else Markdown).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Listen on this port instead of each workspace's own (0: any free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Listen on this address instead of each workspace's own.
    #[arg(long)]
    pub bind: Option<String>,
    /// Change and record only; start no workspace.
    #[arg(long)]
    pub no_serve: bool,
    /// Serve this long, then stop (default: until Ctrl-C or `workspace stop`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// Writes the report, prints the record, and serves the workspaces the
/// operation started until `duration`, Ctrl-C or a stop request.
pub(crate) async fn report_and_serve(
    json: bool,
    args: &ServeArgs,
    record: &OperationRecord,
    workspaces: Vec<lifeboat::workspace::Workspace>,
) -> Result<i32> {
    if let Some(path) = &args.report {
        report::write(path, record)?;
    }
    print_record(json, record)?;
    // Served or not, a failed step is a failed operation.
    let code = if record.ok {
        exit_code::OK
    } else {
        exit_code::FAILED
    };
    if workspaces.is_empty() {
        return Ok(code);
    }
    let stopped = futures::future::select_all(workspaces.iter().map(|w| Box::pin(w.stopped())));
    tokio::select! {
        _ = super::report_until_stopped(args.duration, Duration::from_secs(3600), || Ok(())) => {}
        _ = stopped => {}
    }
    for ws in workspaces {
        ws.stop().await?;
    }
    Ok(code)
}

/// Which regions and databases a failover concerns: the flags, else the
/// saved replication group.
fn scope(
    ctx: &Ctx,
    regions: &[Region],
    args: &FailoverArgs,
) -> Result<(Region, Region, Vec<String>)> {
    let group = group::load(&ctx.home.config_dir)?;
    let from = args
        .from
        .clone()
        .or_else(|| group.as_ref().map(|g| g.primary.clone()))
        .ok_or_else(|| {
            Error::invalid(
                "no replication group is configured; name the regions with --from and --to",
            )
        })?;
    let to = args
        .to
        .clone()
        .or_else(|| group.as_ref().map(|g| g.secondary.clone()))
        .ok_or_else(|| Error::invalid("name the region taking over with --to"))?;
    let find = |name: &str| {
        regions
            .iter()
            .find(|r| r.name() == name)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("region `{name}` is not configured")))
    };
    let dbs = if args.dbs.is_empty() {
        match group.as_ref().map(|g| &g.databases) {
            Some(group::Selection::Only(dbs)) => dbs.iter().cloned().collect(),
            _ => Vec::new(),
        }
    } else {
        args.dbs.clone()
    };
    Ok((find(&from)?, find(&to)?, dbs))
}

pub async fn failover_command(ctx: &Ctx, json: bool, args: FailoverArgs) -> Result<i32> {
    // RTO counts from here: the preview and the hand-over are part of it.
    let asked = (std::time::Instant::now(), now_ms());
    let regions = super::workspace::regions(ctx)?;
    let (from, to, mut dbs) = scope(ctx, &regions, &args)?;
    // The log as the new primary holds it (the old one may be gone).
    let state = control::load(&to).await?;
    if dbs.is_empty() {
        dbs = replicated(&from, &to, &state).await?;
    }
    if dbs.is_empty() {
        let moved: Vec<String> = state
            .live
            .values()
            .filter(|l| l.region == to.name())
            .map(|l| format!("{}/{}", l.db, l.branch))
            .collect();
        if !moved.is_empty() {
            return Err(Error::invalid(format!(
                "{} already live in `{}` (epoch {}); there is nothing to fail over from `{}`",
                moved.join(", "),
                to.name(),
                state.epoch,
                from.name()
            )));
        }
    }
    let preview = failover::preview(&from, &to, &state, &dbs).await?;
    if !args.yes {
        emit(json, &preview, || {
            format!(
                "{}\nNothing was changed; run again with --yes to fail over.",
                preview.summary()
            )
        })?;
        return Ok(exit_code::OK);
    }
    let held = match super::route::route(ctx, std::slice::from_ref(&to), "fail over").await? {
        super::route::Route::Engine(socket) => {
            return failover_at_engine(json, &args, &preview, &socket, asked.1).await;
        }
        super::route::Route::Here(held) => held,
    };
    if !json {
        println!("{}", preview.summary());
    }
    let engine = control::engine_id(&ctx.home.data_dir)?;
    let acks: BTreeMap<String, AckLog> = dbs
        .iter()
        .map(|db| (db.clone(), AckLog::for_db(&ctx.home.acks_dir(), db)))
        .collect();
    let options = FailoverOptions {
        bind: args.serve.bind.clone(),
        port: args.serve.port,
        serve: !args.serve.no_serve,
        acks,
        pins: None,
        on_step: (!json).then(step_printer),
        // A workspace standing in the new primary in another process takes
        // the new branches over on its own once the failover is logged.
        standby: BTreeMap::new(),
        asked: Some(asked.0),
    };
    let outcome = failover::failover(&regions, &preview, &engine, &local_user(), options).await;
    // The failover is done; serving needs no lease (replication may go on
    // in an engine started meanwhile).
    held.release().await;
    let outcome = outcome?;
    report_and_serve(json, &args.serve, &outcome.record, outcome.workspaces).await
}

/// A failover by the engine that runs the group: its preview, then the
/// failover of that preview's epoch; the engine serves the workspaces.
async fn failover_at_engine(
    json: bool,
    args: &FailoverArgs,
    here: &failover::Preview,
    socket: &std::path::Path,
    asked_ms: u64,
) -> Result<i32> {
    if args.serve.port.is_some() || args.serve.bind.is_some() || args.serve.duration.is_some() {
        return Err(Error::invalid(
            "the engine that runs the group serves the workspaces on their own addresses; leave out --port, --bind and --duration",
        ));
    }
    let (_, data) =
        super::route::at_engine(socket, lifeboat::engine::Command::PreviewFailover).await?;
    let preview: failover::Preview = data
        .and_then(|d| serde_json::from_value(d).ok())
        .ok_or_else(|| Error::Failed("the engine sent no preview".into()))?;
    let mut theirs: Vec<&str> = preview.dbs.iter().map(|d| d.db.as_str()).collect();
    let mut ours: Vec<&str> = here.dbs.iter().map(|d| d.db.as_str()).collect();
    theirs.sort();
    ours.sort();
    if (preview.from.as_str(), preview.to.as_str()) != (here.from.as_str(), here.to.as_str())
        || theirs != ours
    {
        return Err(Error::invalid(format!(
            "the engine that runs the group would fail over {} from {} to {}; run it without --from, --to and --db, or stop that engine",
            theirs.join(", "),
            preview.from,
            preview.to
        )));
    }
    if !json {
        println!("{}", preview.summary());
    }
    let (_, data) = super::route::at_engine(
        socket,
        lifeboat::engine::Command::Failover {
            epoch: preview.epoch,
            asked_ms: Some(asked_ms),
        },
    )
    .await?;
    let record: OperationRecord = data
        .and_then(|d| serde_json::from_value(d).ok())
        .ok_or_else(|| Error::Failed("the engine sent no record of the failover".into()))?;
    if let Some(path) = &args.serve.report {
        report::write(path, &record)?;
    }
    print_record(json, &record)?;
    Ok(if record.ok {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

pub(crate) fn print_record(json: bool, record: &OperationRecord) -> Result<()> {
    if json {
        let line = serde_json::to_string(record)
            .map_err(|e| Error::Failed(format!("cannot encode the record as JSON: {e}")))?;
        println!("{line}");
        return Ok(());
    }
    println!(
        "{}: RTO {} (to {})",
        record.outcome,
        record
            .rto_ms
            .map_or("not measured".to_string(), |ms| format!("{ms} ms")),
        record.rto_to
    );
    for d in &record.rpo {
        let missing = match (d.missing_records, d.acknowledged) {
            (Some(m), Some(a)) => match d.missing_span_ms {
                Some(ms) if m > 0 => format!(
                    "{m} of {a} acknowledged records missing (the oldest acknowledged {ms} ms before the fork)"
                ),
                _ => format!("{m} of {a} acknowledged records missing"),
            },
            _ => "no acknowledgement log to count against".to_string(),
        };
        let lag = d
            .lag_ms
            .map_or(String::new(), |ms| format!("; replica lag {ms} ms"));
        println!("  RPO {}/{}: {missing}{lag}", d.db, d.branch);
    }
    for e in &record.endpoints {
        println!("  serving {e}");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// The primary (default: the group's).
    #[arg(long)]
    from: Option<String>,
    /// The region the drill runs in (default: the group's secondary).
    #[arg(long)]
    to: Option<String>,
    /// A database to drill; repeatable (default: the group's).
    #[arg(long = "db", value_name = "NAME")]
    dbs: Vec<String>,
    /// Delete the drill branches after this long.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    ttl: Duration,
    /// A command to run against the drill workspace, e.g. "GET greeting";
    /// repeatable. A command that answers an error fails the drill.
    #[arg(long = "smoke", value_name = "COMMAND")]
    smoke: Vec<String>,
    /// Write the drill report here (.json for JSON, else Markdown).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Keep the drill workspace serving this long (default: stop at once;
    /// the branches stay until their time to live).
    #[arg(long, value_parser = parse_duration)]
    serve_for: Option<Duration>,
    /// The drill workspace's port (default: any free one).
    #[arg(long)]
    port: Option<u16>,
}

pub async fn drill_command(ctx: &Ctx, json: bool, args: DrillArgs) -> Result<i32> {
    let regions = super::workspace::regions(ctx)?;
    let scope_args = FailoverArgs {
        from: args.from.clone(),
        to: args.to.clone(),
        dbs: args.dbs.clone(),
        yes: false,
        serve: ServeArgs::default(),
    };
    let (from, to, mut dbs) = scope(ctx, &regions, &scope_args)?;
    if dbs.is_empty() {
        let state = control::load(&to).await?;
        dbs = replicated(&from, &to, &state).await?;
    }
    let held = match super::route::route(ctx, std::slice::from_ref(&to), "run the drill").await? {
        super::route::Route::Engine(socket) => {
            if args.port.is_some() || args.serve_for.is_some() || !args.dbs.is_empty() {
                return Err(Error::invalid(
                    "the engine that runs the group drills its own databases and serves the drill workspace itself; leave out --db, --port and --serve-for",
                ));
            }
            let command = lifeboat::engine::Command::Drill {
                ttl_s: args.ttl.as_secs(),
                smoke: args.smoke.clone(),
            };
            let (_, record) = super::route::at_engine(&socket, command).await?;
            let record: OperationRecord = record
                .and_then(|d| serde_json::from_value(d).ok())
                .ok_or_else(|| Error::Failed("the engine sent no record of the drill".into()))?;
            if let Some(path) = &args.report {
                report::write(path, &record)?;
            }
            print_record(json, &record)?;
            return Ok(if record.ok {
                exit_code::OK
            } else {
                exit_code::FAILED
            });
        }
        super::route::Route::Here(held) => held,
    };
    let engine = control::engine_id(&ctx.home.data_dir)?;
    let options = lifeboat::orchestrator::drill::DrillOptions {
        ttl: args.ttl,
        port: Some(args.port.unwrap_or(0)),
        smoke: args.smoke.clone(),
        acks: dbs
            .iter()
            .map(|db| (db.clone(), AckLog::for_db(&ctx.home.acks_dir(), db)))
            .collect(),
        on_step: (!json).then(step_printer),
        ..Default::default()
    };
    let outcome = lifeboat::orchestrator::drill::drill(
        from.name(),
        &to,
        &dbs,
        &engine,
        &local_user(),
        options,
    )
    .await;
    held.release().await;
    let outcome = outcome?;
    if let Some(path) = &args.report {
        report::write(path, &outcome.record)?;
    }
    print_record(json, &outcome.record)?;
    if let Some(ws) = outcome.workspace {
        if let Some(serve_for) = args.serve_for {
            super::report_until_stopped(Some(serve_for), Duration::from_secs(3600), || Ok(()))
                .await?;
        }
        ws.stop().await?;
    }
    Ok(if outcome.record.ok {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

pub(crate) fn step_printer() -> lifeboat::orchestrator::OnStep {
    Box::new(|s: &lifeboat::control::event::Step| {
        println!(
            "  {} {} ({} ms): {}",
            if s.ok { "ok  " } else { "FAIL" },
            s.name,
            s.ms,
            s.detail
        );
    })
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The database.
    #[arg(long)]
    db: String,
    /// The time to restore to, RFC 3339 (2026-11-26T14:05:00Z; UTC when
    /// no offset is given).
    #[arg(long, value_name = "TIME")]
    at: String,
    /// The region to restore in (its home or a replica; default: the first).
    #[arg(long)]
    region: Option<String>,
    /// The branch to restore from (default: the live one).
    #[arg(long)]
    from: Option<String>,
    /// The new branch's name (default: restore-<unix seconds of TIME>).
    #[arg(long)]
    name: Option<String>,
}

pub async fn restore_command(ctx: &Ctx, json: bool, args: RestoreArgs) -> Result<i32> {
    let at = humantime::parse_rfc3339_weak(args.at.trim()).map_err(|e| {
        Error::invalid(format!(
            "--at `{}` is not a time ({e}); write it like 2026-11-26T14:05:00Z",
            args.at
        ))
    })?;
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Error::invalid("--at lies before 1970"))?
        .as_millis() as u64;
    if at_ms > now_ms() {
        return Err(Error::invalid(format!(
            "--at {} lies in the future; restore to a time that has passed",
            args.at
        )));
    }
    let regions = super::workspace::regions(ctx)?;
    let region = ctx.open(&args.region)?;
    let held = match super::route::route(ctx, std::slice::from_ref(&region), "restore").await? {
        super::route::Route::Engine(socket) => {
            if args.from.is_some() {
                return Err(Error::invalid(
                    "the engine that runs the group restores off the live branch; leave out --from",
                ));
            }
            let command = lifeboat::engine::Command::Restore {
                db: args.db.clone(),
                region: region.name().to_string(),
                at_ms,
                name: args
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("restore-{}", at_ms / 1000)),
            };
            return super::route::done_at_engine(json, &socket, command).await;
        }
        super::route::Route::Here(held) => held,
    };
    let state = control::load_all(&regions).await?;
    let source = args
        .from
        .clone()
        .unwrap_or_else(|| state.live_branch(&args.db).to_string());
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("restore-{}", at_ms / 1000));
    let restored = async {
        let point = lifeboat::storage::pitr::locate(&region, &args.db, &source, at_ms).await?;
        let forked = fork::fork_at(&region, &args.db, &source, &name, Some(&point)).await?;
        let event = Event::BranchForked(branch_event(&forked, BranchReason::Recovery, None));
        let engine = control::engine_id(&ctx.home.data_dir)?;
        let appended = control::append(&regions, &engine, &local_user(), event).await?;
        Ok::<_, Error>((point, forked, appended))
    }
    .await;
    held.release().await;
    let (point, forked, appended) = restored?;
    emit(
        json,
        &serde_json::json!({"point": point, "fork": forked}),
        || {
            format!(
                "restored {}/{} in {} as of {}: manifest {}, WAL {} (its newest file is stamped {}), {} ms; {}",
                forked.db,
                forked.branch,
                forked.region,
                lifeboat::workload::verify::format_us(at_ms.saturating_mul(1000)),
                point.manifest_id,
                forked.wal_end,
                lifeboat::workload::verify::format_us(point.state_ms * 1000),
                forked.took_ms,
                appended.summary()
            )
        },
    )?;
    Ok(exit_code::OK)
}

#[derive(Subcommand, Debug)]
pub enum BranchCommand {
    /// Every forked branch the control log knows, with its parent, fork
    /// point, home, reason and time to live.
    List {
        /// Only this database's.
        #[arg(long)]
        db: Option<String>,
    },
    /// Fork a branch off another, at its newest consistent state: at a
    /// replica without writing into it, or at the home.
    Fork(ForkArgs),
    /// Delete every branch whose time to live ran out (the app does this
    /// on its own).
    Gc,
    /// Delete a forked branch (never the live one).
    Delete {
        /// The database.
        #[arg(long)]
        db: String,
        /// The branch.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct ForkArgs {
    /// The database.
    #[arg(long)]
    db: String,
    /// The branch to fork (default: the live one).
    #[arg(long)]
    from: Option<String>,
    /// The new branch's name.
    name: String,
    /// The region to fork in (it becomes the branch's home).
    #[arg(long)]
    region: Option<String>,
    /// Delete the branch after this long (e.g. 2h).
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
}

pub async fn branch_command(ctx: &Ctx, json: bool, command: BranchCommand) -> Result<i32> {
    let regions = super::workspace::regions(ctx)?;
    let state = control::load_all(&regions).await?;
    match command {
        BranchCommand::List { db } => {
            let branches: Vec<_> = state
                .all_branches()
                .into_iter()
                .filter(|b| db.as_ref().is_none_or(|d| *d == b.fork.db))
                .collect();
            emit(json, &branches, || {
                if branches.is_empty() {
                    return "no forked branch".to_string();
                }
                branches
                    .iter()
                    .map(|b| {
                        let f = &b.fork;
                        let ttl = f.expires_ms.map_or(String::new(), |t| {
                            format!(", expires in {} s", t.saturating_sub(now_ms()) / 1000)
                        });
                        let live = if state.live_branch(&f.db) == f.branch {
                            " LIVE"
                        } else {
                            ""
                        };
                        format!(
                            "{}/{}{live}: off {} at manifest {}, WAL {}, home {}, {}{ttl}",
                            f.db,
                            f.branch,
                            f.source,
                            f.manifest_id,
                            f.wal_end,
                            f.region,
                            f.reason.name()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            Ok(exit_code::OK)
        }
        BranchCommand::Fork(args) => {
            let region = ctx.open(&args.region)?;
            let source = args
                .from
                .clone()
                .unwrap_or_else(|| state.live_branch(&args.db).to_string());
            let expires_ms = args.ttl.map(|t| now_ms() + t.as_millis() as u64);
            // Checked before the fork, so a bad name costs nothing.
            let probe = fork::Forked {
                region: region.name().to_string(),
                db: args.db.clone(),
                source: source.clone(),
                branch: args.name.clone(),
                at_replica: false,
                shadow: None,
                manifest_id: 0,
                wal_from: 0,
                wal_end: 0,
                wal_copied: 0,
                pinned: BTreeMap::new(),
                took_ms: 0,
            };
            state.check(Event::BranchForked(branch_event(
                &probe,
                BranchReason::Manual,
                expires_ms,
            )))?;
            let forked = fork::fork(&region, &args.db, &source, &args.name).await?;
            let event =
                Event::BranchForked(branch_event(&forked, BranchReason::Manual, expires_ms));
            let engine = control::engine_id(&ctx.home.data_dir)?;
            let appended = control::append(&regions, &engine, &local_user(), event).await?;
            emit(json, &forked, || {
                format!(
                    "forked {}/{} off {} in {} at manifest {}, WAL {} ({} WAL files copied, {} ms, {}): {}",
                    forked.db,
                    forked.branch,
                    forked.source,
                    forked.region,
                    forked.manifest_id,
                    forked.wal_end,
                    forked.wal_copied,
                    forked.took_ms,
                    if forked.at_replica {
                        "at the replica, which was not written"
                    } else {
                        "at the home"
                    },
                    appended.summary()
                )
            })?;
            Ok(exit_code::OK)
        }
        BranchCommand::Gc => {
            let engine = control::engine_id(&ctx.home.data_dir)?;
            let deleted =
                lifeboat::orchestrator::drill::expire(&regions, &state, &engine, &local_user())
                    .await?;
            emit(json, &deleted, || {
                if deleted.is_empty() {
                    "no branch has expired".to_string()
                } else {
                    format!("deleted expired {}", deleted.join(", "))
                }
            })?;
            Ok(exit_code::OK)
        }
        BranchCommand::Delete { db, name } => {
            let held = match super::route::route(ctx, &regions, "delete the branch").await? {
                super::route::Route::Engine(socket) => {
                    let command = lifeboat::engine::Command::DeleteBranch {
                        db: db.clone(),
                        branch: name.clone(),
                    };
                    return super::route::done_at_engine(json, &socket, command).await;
                }
                super::route::Route::Here(held) => held,
            };
            // Taken for the check only: the deletion below writes nothing
            // an engine copies (a branch's files and its log event).
            held.release().await;
            let record = state.branch(&db, &name).ok_or_else(|| {
                Error::invalid(format!(
                    "`{db}/{name}` is not a forked branch the control log knows; see `lifeboat branch list`"
                ))
            })?;
            let event = state.check(Event::BranchDeleted {
                db: db.clone(),
                branch: name.clone(),
            })?;
            let engine = control::engine_id(&ctx.home.data_dir)?;
            let appended = control::append(&regions, &engine, &local_user(), event).await?;
            let mut deleted = 0;
            for region in &regions {
                deleted += fork::delete_branch(region, &db, &name, Some(&record.fork.source))
                    .await
                    .unwrap_or(0);
            }
            emit(
                json,
                &serde_json::json!({"deleted_objects": deleted}),
                || {
                    format!(
                        "deleted {db}/{name} ({deleted} objects): {}",
                        appended.summary()
                    )
                },
            )?;
            Ok(exit_code::OK)
        }
    }
}
