//! `lifeboat failover` and `lifeboat branch ...`: fail the group's databases
//! over to the secondary, and list, fork and delete branches.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use lifeboat::control::event::{Event, OperationRecord};
use lifeboat::control::{self};
use lifeboat::engine::activity::local_user;
use lifeboat::engine::{Command, Scope, Serving, group};
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::orchestrator::failover;
use lifeboat::orchestrator::{now_ms, report};
use lifeboat::region::Region;

use super::route::{Client, StepsOf};
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
    /// Which state of each replica to take: `newest` (each its own) or
    /// `common` (all as of the newest instant every replica holds).
    #[arg(long, value_enum, default_value = "newest", conflicts_with = "at")]
    cut: CutArg,
    /// Take every database as of this time instead (RFC 3339, UTC when no
    /// offset is given): undo a bad deploy while failing over.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Fail over. Without it, only show what a failover would do and lose.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CutArg {
    Newest,
    Common,
}

impl FailoverArgs {
    /// The cut the flags ask for.
    fn cut(&self) -> Result<failover::Cut> {
        Ok(match (&self.at, self.cut) {
            (Some(at), _) => failover::Cut::At(past_time_ms("--at", at)?),
            (None, CutArg::Newest) => failover::Cut::Newest,
            (None, CutArg::Common) => failover::Cut::Common,
        })
    }
}

/// A time typed as flag `flag`, in Unix milliseconds: RFC 3339, and past.
fn past_time_ms(flag: &str, text: &str) -> Result<u64> {
    let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        Error::invalid(format!(
            "{flag} `{text}` is not a time ({e}); write it like 2026-11-26T14:05:00Z"
        ))
    })?;
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Error::invalid(format!("{flag} lies before 1970")))?
        .as_millis() as u64;
    if at_ms > now_ms() {
        return Err(Error::invalid(format!(
            "{flag} {text} lies in the future; give a time that has passed"
        )));
    }
    Ok(at_ms)
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
    let asked_ms = now_ms();
    let regions = super::workspace::regions(ctx)?;
    // What was typed first: a time that is not one says so before anything
    // is looked up.
    let cut = args.cut()?;
    let (from, to, dbs) = scope(ctx, &regions, &args)?;
    if !args.yes {
        // The log as the new primary holds it (the old one may be gone).
        let state = control::load(&to).await?;
        let dbs = failover::to_fail_over(&from, &to, &state, &dbs).await?;
        let preview = failover::preview(&from, &to, &state, &dbs, cut).await?;
        emit(json, &preview, || {
            format!(
                "{}\nNothing was changed; run again with --yes to fail over.",
                preview.summary()
            )
        })?;
        return Ok(exit_code::OK);
    }
    let client = super::route::client(
        ctx,
        std::slice::from_ref(&to),
        "fail over",
        super::route::Needs::Leases,
    )
    .await?;
    let scope = Scope {
        from: from.name().to_string(),
        to: to.name().to_string(),
        dbs,
    };
    let ran = fail_over_at(json, &client, &args.serve, (scope, cut), asked_ms).await;
    serve_on(client, &args.serve, ran).await
}

/// A failover at `client`'s engine: its preview, then the failover of that
/// preview's epoch; the engine serves the workspaces it starts.
async fn fail_over_at(
    json: bool,
    client: &Client,
    serve: &ServeArgs,
    (scope, cut): (Scope, failover::Cut),
    asked_ms: u64,
) -> Result<i32> {
    let preview: failover::Preview = client
        .look(Command::PreviewFailover {
            scope: Some(scope),
            cut,
        })
        .await?;
    if !json {
        println!("{}", preview.summary());
    }
    let command = Command::Failover {
        epoch: preview.epoch,
        asked_ms: Some(asked_ms),
        serving: serving(serve),
    };
    let steps: StepsOf = |s| &s.failover.steps;
    let record = client.record(command, (!json).then_some(steps)).await?;
    report_record(json, serve.report.as_deref(), &record)
}

/// How the CLI's flags ask an operation to serve.
pub(crate) fn serving(args: &ServeArgs) -> Serving {
    Serving {
        serve: !args.no_serve,
        bind: args.bind.clone(),
        port: args.port,
    }
}

/// Writes the report (`--report`), prints the record; the exit code of
/// the operation it records.
pub(crate) fn report_record(
    json: bool,
    report: Option<&std::path::Path>,
    record: &OperationRecord,
) -> Result<i32> {
    if let Some(path) = report {
        report::write(path, record)?;
    }
    print_record(json, record)?;
    // Served or not, a failed step is a failed operation.
    Ok(if record.ok {
        exit_code::OK
    } else {
        exit_code::FAILED
    })
}

/// After an operation that started workspaces: an engine of this process
/// serves them until `--duration`, Ctrl-C or `workspace stop`, then stops;
/// the engine that runs the group serves on by itself.
pub(crate) async fn serve_on(client: Client, args: &ServeArgs, ran: Result<i32>) -> Result<i32> {
    if !client.is_local() && args.duration.is_some() {
        eprintln!(
            "the engine that runs the group serves the workspaces until they are stopped; --duration does not apply"
        );
    }
    match ran {
        Ok(code) => {
            client.serve_until_stopped(args.duration).await?;
            Ok(code)
        }
        Err(e) => {
            client.close().await;
            Err(e)
        }
    }
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
    /// Which state of each replica to take, as for `failover`: `newest`
    /// or `common` (all as of the newest instant every replica holds).
    #[arg(long, value_enum, default_value = "newest", conflicts_with = "at")]
    cut: CutArg,
    /// Take every database as of this time instead (RFC 3339).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

pub async fn drill_command(ctx: &Ctx, json: bool, args: DrillArgs) -> Result<i32> {
    let regions = super::workspace::regions(ctx)?;
    let scope_args = FailoverArgs {
        from: args.from.clone(),
        to: args.to.clone(),
        dbs: args.dbs.clone(),
        cut: args.cut,
        at: args.at.clone(),
        yes: false,
        serve: ServeArgs::default(),
    };
    let cut = scope_args.cut()?;
    let (from, to, dbs) = scope(ctx, &regions, &scope_args)?;
    let client = super::route::client(
        ctx,
        std::slice::from_ref(&to),
        "run the drill",
        super::route::Needs::Leases,
    )
    .await?;
    if !client.is_local() && args.serve_for.is_some() {
        client.close().await;
        return Err(Error::invalid(
            "the engine that runs the group serves the drill workspace until its branches expire; leave out --serve-for",
        ));
    }
    let command = Command::Drill {
        ttl_s: args.ttl.as_secs(),
        smoke: args.smoke.clone(),
        scope: Some(Scope {
            from: from.name().to_string(),
            to: to.name().to_string(),
            dbs,
        }),
        port: Some(args.port.unwrap_or(0)),
        cut,
    };
    let steps: StepsOf = |s| &s.drill.steps;
    let ran = client
        .record(command, (!json).then_some(steps))
        .await
        .and_then(|record| report_record(json, args.report.as_deref(), &record));
    // This process's engine serves the drill workspace as long as asked.
    if let (Ok(_), Some(serve_for), true) = (&ran, args.serve_for, client.is_local()) {
        super::report_until_stopped(Some(serve_for), Duration::from_secs(3600), || Ok(())).await?;
    }
    client.close().await;
    ran
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
    let at_ms = past_time_ms("--at", &args.at)?;
    let region = ctx.open(&args.region)?;
    let client = super::route::client(
        ctx,
        std::slice::from_ref(&region),
        "restore",
        super::route::Needs::Log,
    )
    .await?;
    let command = Command::Restore {
        db: args.db.clone(),
        region: region.name().to_string(),
        at_ms,
        name: args
            .name
            .clone()
            .unwrap_or_else(|| format!("restore-{}", at_ms / 1000)),
        from: args.from.clone(),
    };
    client.done(json, command).await
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
            // Checked before an engine starts, so a bad name costs nothing.
            state.new_branch_name(&args.db, &args.name)?;
            let client = super::route::client(
                ctx,
                std::slice::from_ref(&region),
                "fork the branch",
                super::route::Needs::Log,
            )
            .await?;
            let command = Command::ForkBranch {
                db: args.db.clone(),
                from: Some(source),
                name: args.name.clone(),
                region: region.name().to_string(),
                ttl_s: args.ttl.map(|t| t.as_secs()),
            };
            client.done(json, command).await
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
            // Known to the log, and not live: checked before an engine starts.
            state.branch(&db, &name).ok_or_else(|| {
                Error::invalid(format!(
                    "`{db}/{name}` is not a forked branch the control log knows; see `lifeboat branch list`"
                ))
            })?;
            state.check(Event::BranchDeleted {
                db: db.clone(),
                branch: name.clone(),
            })?;
            let client =
                super::route::client(ctx, &regions, "delete the branch", super::route::Needs::Log)
                    .await?;
            client
                .done(
                    json,
                    Command::DeleteBranch {
                        db: db.clone(),
                        branch: name.clone(),
                    },
                )
                .await
        }
    }
}
