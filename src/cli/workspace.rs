//! `lifeboat workspace ...` and `lifeboat control ...`: workspaces, their
//! users, firewall rules and pipelines, recorded in the control log of every
//! region; and a workspace served in the foreground.

use std::io::BufRead;
use std::time::Duration;

use clap::{Args, Subcommand};

use lifeboat::control::event::{Attachment, Databases, Event, Role};
use lifeboat::control::state::{ControlState, WorkspaceConfig};
use lifeboat::control::{self, Appended};
use lifeboat::engine::activity::local_user;
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::region::Region;
use lifeboat::workspace::{self, WorkspaceStatus, auth, pipeline};

use super::route::Client;
use crate::{Ctx, emit, parse_duration};

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Define a workspace (or change its databases and endpoint).
    Create(CreateArgs),
    /// List the workspaces the control log defines.
    List,
    /// Serve a workspace from a region until Ctrl-C or `workspace stop`:
    /// databases homed there are written, replicas are followed read-only.
    Start(StartArgs),
    /// Ask the process serving a workspace to stop.
    Stop {
        /// The workspace.
        name: String,
    },
    /// A workspace's configuration, whether it answers, and its pipelines.
    Status {
        /// The workspace.
        name: String,
        /// The region whose copy of the log and databases to read.
        #[arg(long)]
        region: Option<String>,
    },
    /// Forget a workspace (its databases stay).
    Remove {
        /// The workspace.
        name: String,
    },
    /// Add, remove users or change a password.
    #[command(subcommand)]
    User(UserCommand),
    /// Allow or stop allowing client addresses (CIDR).
    #[command(subcommand)]
    Firewall(FirewallCommand),
    /// Load NDJSON files from an object-store folder into a database.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The workspace's name.
    name: String,
    /// A database to serve, as NAME or NAME=INDEX (`SELECT INDEX`);
    /// repeatable. Indexes default to 0, 1, 2… in order.
    #[arg(long = "db", value_name = "NAME[=INDEX]", required = true)]
    dbs: Vec<String>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// The port to listen on.
    #[arg(long, default_value_t = workspace::DEFAULT_PORT)]
    port: u16,
    /// Serve without AUTH (only on a trusted network).
    #[arg(long)]
    open: bool,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The workspace.
    name: String,
    /// The region to serve from (default: the first configured).
    #[arg(long)]
    region: Option<String>,
    /// Listen on this address instead of the configured one.
    #[arg(long)]
    bind: Option<String>,
    /// Listen on this port instead of the configured one.
    #[arg(long)]
    port: Option<u16>,
    /// Stop after this long (default: until Ctrl-C or `workspace stop`).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Print the status this often.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    report_every: Duration,
}

#[derive(Args, Debug)]
pub struct PasswordArg {
    /// Read the password from this environment variable (default: the
    /// first line of standard input). Never on the command line.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user, or replace one.
    Add {
        workspace: String,
        user: String,
        /// admin, readwrite or readonly.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A database the user may use (repeatable; default: all).
        #[arg(long = "db", value_name = "NAME")]
        dbs: Vec<String>,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// Remove a user.
    Remove { workspace: String, user: String },
    /// Change a user's password.
    Password {
        workspace: String,
        user: String,
        #[command(flatten)]
        password: PasswordArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum FirewallCommand {
    /// Allow clients from CIDR (the list is empty: everyone who can reach
    /// the address may connect).
    Allow { workspace: String, cidr: String },
    /// Stop allowing CIDR.
    Revoke { workspace: String, cidr: String },
}

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Define a pipeline (it starts at once where its database is served).
    Create {
        workspace: String,
        pipeline: String,
        /// The database to load into.
        #[arg(long)]
        db: String,
        /// The folder of NDJSON files: file:///dir, s3://bucket/prefix, ...
        #[arg(long)]
        source: String,
        /// The JSON field that names each record's key.
        #[arg(long, default_value = "id")]
        key_field: String,
        /// Put before every key (default: PIPELINE:).
        #[arg(long)]
        key_prefix: Option<String>,
    },
    /// Stop loading until resumed.
    Pause { workspace: String, pipeline: String },
    /// Load again from where the pipeline stopped.
    Resume { workspace: String, pipeline: String },
    /// Forget a pipeline (what it loaded stays).
    Remove { workspace: String, pipeline: String },
    /// Each pipeline's position as its database holds it.
    Status {
        workspace: String,
        /// The region whose databases to read.
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ControlCommand {
    /// Copy every control-log event a region lacks from the regions that
    /// have it.
    Sync,
    /// Every event, oldest first: when, who, what.
    Log,
}

fn parse_role(text: &str) -> std::result::Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("`{text}`: use admin, readwrite or readonly"))
}

/// Every configured region, with this run's faults.
pub(crate) fn regions(ctx: &Ctx) -> Result<Vec<Region>> {
    ctx.regions
        .specs()
        .iter()
        .map(|spec| ctx.open_spec(spec))
        .collect()
}

/// Refuses databases that are in no region: a workspace of a misspelt name
/// would start and serve nothing.
async fn require_databases(regions: &[Region], attachments: &[Attachment]) -> Result<()> {
    let mut known = std::collections::BTreeSet::new();
    let mut unlisted = Vec::new();
    for region in regions {
        match lifeboat::storage::list_databases(region).await {
            Ok(dbs) => known.extend(dbs.into_iter().map(|(db, _)| db)),
            Err(e) => unlisted.push(format!(
                "{} ({})",
                region.name(),
                lifeboat::error::one_line(&e.to_string())
            )),
        }
    }
    let Some(missing) = attachments.iter().find(|a| !known.contains(&a.db)) else {
        return Ok(());
    };
    if !unlisted.is_empty() {
        return Err(Error::Failed(format!(
            "cannot tell whether database `{}` exists: cannot list {}; try again when the region answers",
            missing.db,
            unlisted.join(", ")
        )));
    }
    let known: Vec<String> = known.into_iter().collect();
    Err(Error::invalid(format!(
        "database `{}` is in no region (there are: {}); create it with `lifeboat db create {}` or name another",
        missing.db,
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        },
        missing.db
    )))
}

async fn state(regions: &[Region]) -> Result<ControlState> {
    control::load_all(regions).await
}

async fn record(ctx: &Ctx, json: bool, regions: &[Region], event: Event) -> Result<i32> {
    let event = state(regions).await?.check(event)?;
    let what = event.describe();
    let engine = control::engine_id(&ctx.home.data_dir)?;
    let appended: Appended = control::append(regions, &engine, &local_user(), event).await?;
    let summary = appended.summary();
    emit(
        json,
        &serde_json::json!({
            "done": what,
            "written": appended.written,
            "missed": appended.missed,
        }),
        || format!("{what}: {summary}"),
    )?;
    Ok(exit_code::OK)
}

fn read_password(arg: &PasswordArg) -> Result<String> {
    let password = match &arg.password_env {
        Some(var) => std::env::var(var).map_err(|_| {
            Error::invalid(format!(
                "--password-env {var}: the variable is not set; export it first"
            ))
        })?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Error::invalid(format!("cannot read the password from stdin: {e}")))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        return Err(Error::invalid(
            "no password given; pipe it on stdin or name a variable with --password-env",
        ));
    }
    Ok(password)
}

fn attachments(dbs: &[String]) -> Result<Vec<Attachment>> {
    let mut out: Vec<Attachment> = Vec::new();
    for (i, text) in dbs.iter().enumerate() {
        let (db, index) = match text.split_once('=') {
            Some((db, index)) => {
                let index = index.parse::<u32>().map_err(|_| {
                    Error::invalid(format!(
                        "--db {text}: the index must be a number, like orders=0"
                    ))
                })?;
                (db, index)
            }
            None => (text.as_str(), i as u32),
        };
        out.push(Attachment {
            index,
            db: db.to_string(),
        });
    }
    Ok(out)
}

pub async fn workspace(ctx: &Ctx, json: bool, command: WorkspaceCommand) -> Result<i32> {
    let regions = regions(ctx)?;
    match command {
        WorkspaceCommand::Create(args) => {
            let databases = attachments(&args.dbs)?;
            let event = Event::WorkspaceSet {
                name: args.name,
                databases: databases.clone(),
                bind: args.bind,
                port: args.port,
                open: args.open,
            };
            // What the log would refuse first, then what the stores hold.
            state(&regions).await?.check(event.clone())?;
            require_databases(&regions, &databases).await?;
            record(ctx, json, &regions, event).await
        }
        WorkspaceCommand::List => {
            let state = state(&regions).await?;
            let rows: Vec<&WorkspaceConfig> = state.workspaces.values().collect();
            emit(json, &rows, || {
                if rows.is_empty() {
                    return "no workspace; define one with `lifeboat workspace create NAME --db DB`".into();
                }
                rows.iter()
                    .map(|w| describe(w))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            Ok(exit_code::OK)
        }
        WorkspaceCommand::Start(args) => start(ctx, json, &regions, args).await,
        WorkspaceCommand::Stop { name } => {
            record(ctx, json, &regions, Event::WorkspaceStop { name }).await
        }
        WorkspaceCommand::Remove { name } => {
            record(ctx, json, &regions, Event::WorkspaceRemoved { name }).await
        }
        WorkspaceCommand::Status { name, region } => status(ctx, json, &name, &region).await,
        WorkspaceCommand::User(command) => user(ctx, json, &regions, command).await,
        WorkspaceCommand::Firewall(command) => {
            let event = match command {
                FirewallCommand::Allow { workspace, cidr } => {
                    Event::FirewallAllowed { workspace, cidr }
                }
                FirewallCommand::Revoke { workspace, cidr } => {
                    Event::FirewallRevoked { workspace, cidr }
                }
            };
            record(ctx, json, &regions, event).await
        }
        WorkspaceCommand::Pipeline(command) => pipeline_command(ctx, json, &regions, command).await,
    }
}

fn describe(w: &WorkspaceConfig) -> String {
    let dbs: Vec<String> = w
        .databases
        .iter()
        .map(|a| format!("{}={}", a.db, a.index))
        .collect();
    let firewall = if w.firewall.is_empty() {
        "anyone who reaches the address".to_string()
    } else {
        w.firewall.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    format!(
        "{}: {}:{} serving {}; {}; users: {}; allowed: {firewall}; pipelines: {}",
        w.name,
        w.bind,
        w.port,
        dbs.join(", "),
        if w.open {
            "open (no AUTH)"
        } else {
            "AUTH required"
        },
        if w.users.is_empty() {
            "none".to_string()
        } else {
            w.users
                .iter()
                .map(|(n, u)| format!("{n} ({})", u.role.name()))
                .collect::<Vec<_>>()
                .join(", ")
        },
        if w.pipelines.is_empty() {
            "none".to_string()
        } else {
            w.pipelines.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    )
}

async fn start(ctx: &Ctx, json: bool, regions: &[Region], args: StartArgs) -> Result<i32> {
    let region_name = ctx.region_name(&args.region)?;
    let region = regions
        .iter()
        .find(|r| r.name() == region_name)
        .cloned()
        .ok_or_else(|| Error::invalid(format!("region `{region_name}` is not configured")))?;
    // A name not in the region's log is refused before anything starts.
    control::load(&region).await?.workspace(&args.name)?;
    // The engine that runs the group serves it, if one does (a writer
    // here would fence the workspace it may serve already); else an engine
    // of this process does, which later commands reach.
    let client = super::route::client(
        ctx,
        std::slice::from_ref(&region),
        "start the workspace",
        super::route::Needs::Leases,
    )
    .await?;
    let command = lifeboat::engine::Command::StartWorkspace {
        name: args.name.clone(),
        region: region_name,
        bind: args.bind.clone(),
        port: args.port,
    };
    let Client::Local(engine) = &client else {
        if args.duration.is_some() {
            client.close().await;
            return Err(Error::invalid(
                "the engine that runs the group serves the workspace until it is stopped; leave out --duration",
            ));
        }
        return client.done(json, command).await;
    };
    let status = |s: &lifeboat::engine::Snapshot| {
        s.control
            .workspace(&args.name)
            .and_then(|w| w.running.clone())
    };
    if let Err(e) = client.run(command).await {
        client.close().await;
        return Err(e);
    }
    // The outcome can come before the snapshot that shows the workspace
    // running: without this wait, a loaded machine saw the command end at
    // once, silently, as if the workspace had stopped.
    let (shown, running) = engine
        .wait_for(Duration::from_secs(30), |s| status(s).is_some())
        .await;
    if !running {
        client.close().await;
        return Err(Error::Failed(format!(
            "workspace `{}` started but its engine never showed it running; see the log",
            args.name
        )));
    }
    let mut last = status(&shown);
    if let Some(first) = &last {
        print_status(json, first)?;
    }
    let served = super::route::until(engine, |s| status(s).is_none());
    let result = tokio::select! {
        result = super::report_until_stopped(args.duration, args.report_every, || {
            last = status(&engine.snapshot()).or(last.take());
            last.as_ref().map_or(Ok(()), |s| print_status(json, s))
        }) => result,
        _ = served => Ok(()),
    };
    let last = status(&engine.snapshot()).or(last);
    client.close().await;
    result?;
    if !json && let Some(last) = last {
        println!(
            "workspace {} stopped after {} s, {} commands",
            last.name, last.uptime_s, last.commands
        );
    }
    Ok(exit_code::OK)
}

fn print_status(json: bool, status: &WorkspaceStatus) -> Result<()> {
    if json {
        let line = serde_json::to_string(status)
            .map_err(|e| Error::Failed(format!("cannot encode the status as JSON: {e}")))?;
        println!("{line}");
        return Ok(());
    }
    println!(
        "workspace {} in {} at {}: {} clients, {} commands, {} refused by the firewall, {} failed AUTH",
        status.name,
        status.region,
        status.addr,
        status.connected,
        status.commands,
        status.denied,
        status.auth_failures
    );
    for e in &status.endpoints {
        let lag = e.lag_s.map_or(String::new(), |l| format!(", lag {l:.1} s"));
        println!("  {} ({}, {}{lag})", e.url, e.db, e.mode);
    }
    for p in &status.pipelines {
        println!(
            "  pipeline {} → {}: {}; {} lines, {} files done, {} pending, {} bad lines",
            p.name,
            p.db,
            p.state,
            p.position.lines_loaded,
            p.position.files_done,
            p.files_pending,
            p.position.bad_lines
        );
    }
    Ok(())
}

/// What `workspace status` reports for a workspace that may run elsewhere.
#[derive(serde::Serialize)]
struct StatusReport {
    config: WorkspaceConfig,
    endpoints: Vec<String>,
    answering: bool,
    pipelines: Vec<(String, std::result::Result<pipeline::Position, String>)>,
}

async fn status(ctx: &Ctx, json: bool, name: &str, region: &Option<String>) -> Result<i32> {
    let region = ctx.open(region)?;
    let state = control::load(&region).await?;
    let config = state.require(name)?.clone();
    let answering = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect((config.bind.as_str(), config.port)),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    let mut pipelines = Vec::new();
    for (p, cfg) in &config.pipelines {
        let position = pipeline::stored_position(&region, &cfg.db, p)
            .await
            .map_err(|e| e.to_string());
        pipelines.push((p.clone(), position));
    }
    let user = if config.open { "default" } else { "USER" };
    let endpoints: Vec<String> = config
        .databases
        .iter()
        .map(|a| format!("redis://{user}@{}:{}/{}", config.bind, config.port, a.index))
        .collect();
    let report = StatusReport {
        config,
        endpoints,
        answering,
        pipelines,
    };
    emit(json, &report, || {
        let mut lines = vec![describe(&report.config)];
        lines.push(format!(
            "  {}",
            if report.answering {
                "answering at its address"
            } else {
                "not answering (start it with `lifeboat workspace start NAME --region REGION`)"
            }
        ));
        for url in &report.endpoints {
            lines.push(format!("  {url}"));
        }
        for (p, position) in &report.pipelines {
            lines.push(match position {
                Ok(at) => format!(
                    "  pipeline {p}: {} lines, {} files done, at {}:{}{}",
                    at.lines_loaded,
                    at.files_done,
                    if at.file.is_empty() { "-" } else { &at.file },
                    at.offset,
                    if at.bad_lines > 0 {
                        format!(", {} bad lines skipped", at.bad_lines)
                    } else {
                        String::new()
                    }
                ),
                Err(e) => format!("  pipeline {p}: position unknown ({e})"),
            });
        }
        lines.join("\n")
    })?;
    Ok(exit_code::OK)
}

async fn user(ctx: &Ctx, json: bool, regions: &[Region], command: UserCommand) -> Result<i32> {
    let state = state(regions).await?;
    let event = match command {
        UserCommand::Add {
            workspace,
            user,
            role,
            dbs,
            password,
        } => {
            state.require(&workspace)?;
            let password = auth::hash_password(&read_password(&password)?)?;
            let databases = if dbs.is_empty() {
                Databases::All
            } else {
                Databases::Only(dbs)
            };
            Event::UserSet {
                workspace,
                user,
                role,
                databases,
                password,
            }
        }
        UserCommand::Remove { workspace, user } => Event::UserRemoved { workspace, user },
        UserCommand::Password {
            workspace,
            user,
            password,
        } => {
            // Checked before the password is asked for.
            state.check(Event::UserRemoved {
                workspace: workspace.clone(),
                user: user.clone(),
            })?;
            let password = auth::hash_password(&read_password(&password)?)?;
            Event::PasswordChanged {
                workspace,
                user,
                password,
            }
        }
    };
    record(ctx, json, regions, event).await
}

async fn pipeline_command(
    ctx: &Ctx,
    json: bool,
    regions: &[Region],
    command: PipelineCommand,
) -> Result<i32> {
    let event = match command {
        PipelineCommand::Create {
            workspace,
            pipeline,
            db,
            source,
            key_field,
            key_prefix,
        } => {
            let key_prefix = key_prefix.unwrap_or_else(|| format!("{pipeline}:"));
            Event::PipelineSet {
                workspace,
                pipeline,
                db,
                source,
                key_field,
                key_prefix,
            }
        }
        PipelineCommand::Pause {
            workspace,
            pipeline,
        } => Event::PipelineRunning {
            workspace,
            pipeline,
            running: false,
        },
        PipelineCommand::Resume {
            workspace,
            pipeline,
        } => Event::PipelineRunning {
            workspace,
            pipeline,
            running: true,
        },
        PipelineCommand::Remove {
            workspace,
            pipeline,
        } => Event::PipelineRemoved {
            workspace,
            pipeline,
        },
        PipelineCommand::Status { workspace, region } => {
            return status(ctx, json, &workspace, &region).await;
        }
    };
    record(ctx, json, regions, event).await
}

pub async fn control_command(ctx: &Ctx, json: bool, command: ControlCommand) -> Result<i32> {
    let regions = regions(ctx)?;
    match command {
        ControlCommand::Sync => {
            let report = control::sync(&regions).await?;
            emit(json, &report, || {
                let mut line = format!("{} events in the log", report.events);
                for (region, n) in &report.copied {
                    line.push_str(&format!("; copied {n} to {region}"));
                }
                for (region, e) in &report.unreachable {
                    line.push_str(&format!("; {region} unreachable ({e})"));
                }
                line
            })?;
            Ok(if report.unreachable.is_empty() {
                exit_code::OK
            } else {
                exit_code::FAILED
            })
        }
        ControlCommand::Log => {
            let (events, _) = control::read_all(&regions).await?;
            let mut events: Vec<_> = events.into_values().collect();
            events.sort_by(|a, b| a.order().cmp(&b.order()));
            #[derive(serde::Serialize)]
            struct Row {
                at_ms: u64,
                engine: String,
                seq: u64,
                who: String,
                what: String,
            }
            let rows: Vec<Row> = events
                .iter()
                .map(|e| Row {
                    at_ms: e.hlc.ms,
                    engine: e.engine.clone(),
                    seq: e.seq,
                    who: e.who.clone(),
                    what: e.event.describe(),
                })
                .collect();
            emit(json, &rows, || {
                rows.iter()
                    .map(|r| {
                        let at = std::time::UNIX_EPOCH + Duration::from_millis(r.at_ms);
                        format!(
                            "{} {} {}#{}: {}",
                            humantime::format_rfc3339_millis(at),
                            r.who,
                            r.engine,
                            r.seq,
                            r.what
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            Ok(exit_code::OK)
        }
    }
}
