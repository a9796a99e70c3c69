//! The `lifeboat` binary: no subcommand opens the app; subcommands run
//! headless for scripts and for people at a terminal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod cli;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use lifeboat::config::{Home, Regions};
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::region::faults::FaultPlan;
use lifeboat::region::{Region, RegionSpec};
use lifeboat::replication::status::human_bytes;
use lifeboat::storage::{self, DbLocation};
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::{self, Rate, WorkloadSpec, verify};

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  an operation failed (a region unreachable, a store or database error)
  2  bad command line or configuration
  3  a region or database named does not exist
  4  verify or check found a hole: the copy is not a gap-free prefix";

/// Cross-region disaster recovery for databases in object storage.
///
/// With no command, opens the desktop app. With no configuration, Lifeboat
/// uses two local regions, us-east-1 and eu-west-1, under its data folder.
#[derive(Parser, Debug)]
#[command(name = "lifeboat", version = lifeboat::about::LONG_VERSION, after_help = EXIT_CODES)]
struct Cli {
    /// Where Lifeboat keeps its data (region folders of the default, logs,
    /// acknowledgement logs). Also holds the configuration unless
    /// --config-dir is given.
    #[arg(long, global = true, env = "LIFEBOAT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Where the regions file (regions.ron) lives.
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,

    /// Print results as JSON on stdout (errors too), for scripts.
    #[arg(long, global = true)]
    json: bool,

    /// Inject a fault into a region for this run, e.g. `us-east-1:outage`,
    /// `eu-west-1:latency=200ms,bandwidth=1MiB,errors=0.05`. Repeatable.
    #[arg(long, global = true, value_name = "REGION:FAULTS")]
    fault: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List, add, check and remove regions.
    #[command(subcommand)]
    Region(RegionCommand),
    /// Create, list, describe and delete databases in a region.
    #[command(subcommand)]
    Db(DbCommand),
    /// Write sequence-numbered records to a database at a steady rate,
    /// waiting for each to be durable, and log what was acknowledged.
    Workload(WorkloadArgs),
    /// Check that a database, or a copy of one at any URL, holds a gap-free
    /// prefix of the workload's records and which acknowledged ones it lacks.
    Verify(VerifyArgs),
    /// Copy every branch from its home region to the other regions, in an
    /// order that keeps each replica readable at every instant.
    Replicate(cli::replication::ReplicateArgs),
    /// Each replica's state, lag, pending copies and last sync.
    Status(cli::replication::StatusArgs),
    /// Prove a replica is a gap-free prefix of its home, and show its lag.
    Check(cli::replication::CheckArgs),
    /// The replication group the app and `serve` run: show, configure,
    /// pause, resume, stop.
    #[command(subcommand)]
    Group(cli::group::GroupCommand),
    /// Run the engine headless: replicate the saved group until Ctrl-C,
    /// printing every replica's status.
    Serve(cli::group::ServeArgs),
    /// Alerts: where they go (webhooks, commands, the desktop), when they
    /// fire, and a test of each sink.
    #[command(subcommand)]
    Alert(cli::alert::AlertCommand),
    /// Reports for people who do not open the app: the monthly DR report.
    #[command(subcommand)]
    Report(cli::report::ReportCommand),
    /// Run the engine as a systemd user service (install, uninstall, status).
    #[command(subcommand)]
    Service(cli::service::ServiceCommand),
    /// Write to a database homed in each of two regions, replicate both
    /// ways and take each region down in turn, checking after every step.
    Soak(cli::soak::SoakArgs),
    /// Workspaces: serve databases over the Redis protocol, with users,
    /// firewall rules and pipelines from the control log.
    #[command(subcommand)]
    Workspace(cli::workspace::WorkspaceCommand),
    /// Fail the group's databases over to the secondary: show first what
    /// would be lost; with --yes fork new live branches off the replicas,
    /// record the new epoch, serve them and measure RPO and RTO.
    Failover(cli::failover::FailoverArgs),
    /// Test failover: fork drill branches off the replicas in the
    /// secondary, serve them, verify them and report, never touching the
    /// primary; the branches expire at their time to live.
    Drill(cli::failover::DrillArgs),
    /// Point-in-time recovery: fork a branch as of a time (to the WAL file)
    /// in either region, from the home's scheduled checkpoints.
    Restore(cli::failover::RestoreArgs),
    /// Writes stranded by a failover: once the failed region answers, fence
    /// the old writer there, copy its last files, fork them as a recovered
    /// branch and compare it with the live one (keys, conflicts, values).
    Recover(cli::recovery::RecoverArgs),
    /// Merge a recovered branch into the live one: the clean keys, all, or
    /// a choice per conflicting key; durable batches, safe to run again.
    Merge(cli::recovery::MergeArgs),
    /// Planned switchover (RPO zero): stop writes where the live branches
    /// are written, copy the last files, move their home, serve them from
    /// the other region and measure RTO.
    Switchover(cli::recovery::SwitchArgs),
    /// Fail back after a failover: a switchover to the region the failover
    /// left, copying only the files made since.
    Failback(cli::recovery::SwitchArgs),
    /// Forked branches: list, fork (at a replica without writing into it,
    /// or at the home), delete.
    #[command(subcommand)]
    Branch(cli::failover::BranchCommand),
    /// The control log every region holds: sync it, read it.
    #[command(subcommand)]
    Control(cli::workspace::ControlCommand),
    /// What replication costs: the prices in use, what each RPO target
    /// costs a quiet database.
    #[command(subcommand)]
    Cost(cli::cost::CostCommand),
    /// Benchmarks that print JSON figures.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Open the desktop app (the same as giving no command).
    Gui(GuiArgs),
}

#[derive(Args, Debug, Default)]
struct GuiArgs {
    /// Create demo databases in the primary, write to them and replicate
    /// them (kept for the next run; stop the writers in the status bar).
    #[arg(long)]
    demo: bool,
    /// Open on this tab: replication, databases, workspaces, dashboard,
    /// activity, settings.
    #[arg(long, value_parser = parse_tab)]
    tab: Option<lifeboat::gui::Tab>,
    /// Open a panel once the engine is ready: tour, wizard, drill, failover
    /// (its preview of what would be lost), switchover, failback (their
    /// plans), recover. Nothing runs until you confirm in the window.
    #[arg(long, value_parser = parse_panel)]
    open: Option<lifeboat::gui::Panel>,
    /// Serve Prometheus metrics from the app's engine at
    /// http://ADDR/metrics while the window is open (as `serve --metrics`).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_listen)]
    metrics: Option<std::net::SocketAddr>,
}

fn parse_metrics_listen(text: &str) -> std::result::Result<std::net::SocketAddr, String> {
    lifeboat::metrics::server::parse_listen(text)
        .map_err(|e| e.replace("give HOST:PORT", "give --metrics HOST:PORT"))
}

fn parse_tab(text: &str) -> std::result::Result<lifeboat::gui::Tab, String> {
    text.parse()
}

fn parse_panel(text: &str) -> std::result::Result<lifeboat::gui::Panel, String> {
    text.parse()
}

#[derive(Subcommand, Debug)]
enum RegionCommand {
    /// List the configured regions.
    List,
    /// Add a region; it is probed before it is saved.
    Add {
        /// The region's name, e.g. ap-south-1.
        name: String,
        /// file:///dir, memory://name, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix.
        url: String,
        #[command(flatten)]
        cloud: Box<CloudArgs>,
        /// Save without probing the region first.
        #[arg(long)]
        no_check: bool,
    },
    /// Remove a region from the configuration (its data is left alone).
    Remove {
        /// The region's name.
        name: String,
    },
    /// Probe regions: put, read back and delete a small object, and check
    /// that create-only puts are honoured.
    Check {
        /// The region to probe (all when omitted).
        name: Option<String>,
    },
}

/// The options of a cloud region; each applies to the URL schemes it names.
/// Secrets are never given here: only the names of the environment
/// variables that hold them.
#[derive(Args, Debug, Default)]
struct CloudArgs {
    /// s3, gs, az: the server to talk to instead of the cloud's own (an
    /// S3-compatible server, a sovereign cloud's or Azurite's account URL,
    /// a GCS-compatible server); plain http only on loopback (S3: and
    /// private networks).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// s3: the signing region (default: us-east-1 with --endpoint, else
    /// AWS_REGION, the profile's, us-east-1).
    #[arg(long, value_name = "NAME")]
    s3_region: Option<String>,
    /// s3: NAME of the environment variable holding the access key id
    /// (default: AWS_ACCESS_KEY_ID, then AWS_PROFILE or the default profile).
    #[arg(long, value_name = "VAR")]
    access_key_env: Option<String>,
    /// s3: NAME of the environment variable holding the secret key.
    #[arg(long, value_name = "VAR")]
    secret_key_env: Option<String>,
    /// s3: NAME of the environment variable holding a session token
    /// (temporary keys).
    #[arg(long, value_name = "VAR")]
    session_token_env: Option<String>,
    /// s3: a profile of ~/.aws/credentials and ~/.aws/config.
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// az: the storage account (default: AZURE_STORAGE_ACCOUNT_NAME).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// az: NAME of the environment variable holding the account key
    /// (default: the AZURE_* environment).
    #[arg(long, value_name = "VAR")]
    account_key_env: Option<String>,
    /// az: NAME of the environment variable holding a SAS token.
    #[arg(long, value_name = "VAR")]
    sas_token_env: Option<String>,
    /// gs: NAME of the environment variable holding the path of a
    /// credentials file (default: GOOGLE_SERVICE_ACCOUNT,
    /// GOOGLE_APPLICATION_CREDENTIALS, gcloud's login).
    #[arg(long, value_name = "VAR")]
    credentials_env: Option<String>,
}

impl CloudArgs {
    fn spec(self, name: &str, url: &str) -> RegionSpec {
        RegionSpec {
            endpoint: self.endpoint,
            s3_region: self.s3_region,
            access_key_env: self.access_key_env,
            secret_key_env: self.secret_key_env,
            session_token_env: self.session_token_env,
            profile: self.profile,
            account: self.account,
            account_key_env: self.account_key_env,
            sas_token_env: self.sas_token_env,
            credentials_env: self.credentials_env,
            ..RegionSpec::new(name, url)
        }
    }
}

#[derive(Args, Debug)]
struct RegionArg {
    /// The region (default: the first configured, us-east-1 on the embedded default).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Create a database (its `main` branch).
    Create {
        /// The database's name, e.g. orders.
        name: String,
        #[command(flatten)]
        region: RegionArg,
    },
    /// List the databases and their branches (every region when --region is omitted).
    List {
        /// Only this region.
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
    },
    /// Size, newest manifest, WAL ids and writer epoch of a database.
    Describe {
        /// The database's name.
        name: String,
        #[command(flatten)]
        region: RegionArg,
    },
    /// Delete a database and all its files in one region.
    Delete {
        /// The database's name.
        name: String,
        #[command(flatten)]
        region: RegionArg,
        /// Confirm the deletion (required: nothing is asked interactively).
        #[arg(long)]
        yes: bool,
        /// Delete even while a writer is at work (it is fenced first) or a
        /// replication group copies the database.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
struct WorkloadArgs {
    #[command(flatten)]
    region: RegionArg,
    /// The database to write to (it must exist; see `lifeboat db create`).
    #[arg(long)]
    db: String,
    /// Records per second, or `max`.
    #[arg(long, default_value = "2000")]
    rate: Rate,
    /// Stop after this long (30s, 5m). Without it and --records, runs until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many records.
    #[arg(long)]
    records: Option<u64>,
    /// Bytes per value, padding included.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Append acknowledgements here instead of <data-dir>/acks/<db>.jsonl.
    #[arg(long, value_name = "FILE")]
    acks: Option<PathBuf>,
    /// Compact and collect garbage every fraction of a second, so files
    /// appear and vanish fast (to test a replicator, not for real data).
    #[arg(long)]
    churn: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// A region holding the database (default: the first configured).
    #[arg(long, value_name = "REGION", conflicts_with = "url")]
    region: Option<String>,
    /// The database to verify; with --url, names the acknowledgement log to check against.
    #[arg(long)]
    db: Option<String>,
    /// Verify a copy at any URL: the folder or prefix that holds its
    /// manifest/ and wal/ (e.g. file:///backups/orders).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    cloud: CloudArgs,
    /// The acknowledgement log to check against (default: <data-dir>/acks/<db>.jsonl).
    #[arg(long, value_name = "FILE")]
    acks: Option<PathBuf>,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like 30s, 5m or 1h"))
}

/// What a command needs: the folders, the regions and the injected faults.
struct Ctx {
    home: Home,
    regions: Regions,
    faults: BTreeMap<String, FaultPlan>,
}

impl Ctx {
    fn load(cli: &Cli, home: Home) -> Result<Ctx> {
        let regions = home.load_regions()?;
        let mut faults = BTreeMap::new();
        for text in &cli.fault {
            let (region, plan) = text.split_once(':').ok_or_else(|| {
                Error::invalid(format!(
                    "--fault `{text}` names no region; write REGION:FAULTS, like us-east-1:outage"
                ))
            })?;
            regions.get(region)?;
            let plan: FaultPlan = plan
                .parse()
                .map_err(|e| Error::invalid(format!("--fault {region}: {e}")))?;
            faults.insert(region.to_string(), plan);
        }
        Ok(Ctx {
            home,
            regions,
            faults,
        })
    }

    fn region_name(&self, arg: &Option<String>) -> Result<String> {
        match arg {
            Some(name) => Ok(name.clone()),
            None => self.regions.names().into_iter().next().ok_or_else(|| {
                Error::invalid(
                    "no region is configured; add one with `lifeboat region add NAME URL`",
                )
            }),
        }
    }

    /// An engine's options for this run: the defaults, with the faults it
    /// injects.
    fn engine_options(&self) -> lifeboat::engine::EngineOptions {
        lifeboat::engine::EngineOptions {
            faults: self.faults.clone(),
            ..Default::default()
        }
    }

    /// Opens a region with the faults this run injects into it.
    fn open_spec(&self, spec: &RegionSpec) -> Result<Region> {
        let region = Region::open(spec)?;
        if let Some(plan) = self.faults.get(&spec.name) {
            region.faults().set(plan);
        }
        Ok(region)
    }

    fn open(&self, arg: &Option<String>) -> Result<Region> {
        let name = self.region_name(arg)?;
        self.open_spec(self.regions.get(&name)?)
    }
}

/// Prints a result: JSON when asked, text otherwise.
fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        let out = serde_json::to_string_pretty(value)
            .map_err(|e| Error::Failed(format!("cannot encode the result as JSON: {e}")))?;
        println!("{out}");
    } else {
        println!("{}", text());
    }
    Ok(())
}

#[derive(Serialize)]
struct RegionRow {
    name: String,
    url: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    embedded_default: bool,
}

async fn region_command(ctx: &mut Ctx, json: bool, command: RegionCommand) -> Result<i32> {
    match command {
        RegionCommand::List => {
            let rows: Vec<RegionRow> = ctx
                .regions
                .specs()
                .iter()
                .map(|spec| {
                    let kind = spec.validate().map(|l| l.kind()).unwrap_or("invalid");
                    RegionRow {
                        name: spec.name.clone(),
                        url: spec.url.clone(),
                        kind,
                        endpoint: spec.endpoint.clone(),
                        embedded_default: ctx.regions.embedded_default,
                    }
                })
                .collect();
            emit(json, &rows, || {
                let mut lines: Vec<String> = rows
                    .iter()
                    .map(|r| match &r.endpoint {
                        Some(e) => format!("{:<16} {:<7} {} (endpoint {e})", r.name, r.kind, r.url),
                        None => format!("{:<16} {:<7} {}", r.name, r.kind, r.url),
                    })
                    .collect();
                if ctx.regions.embedded_default {
                    lines.push("(the embedded default: no regions file yet)".into());
                }
                lines.join("\n")
            })?;
        }
        RegionCommand::Add {
            name,
            url,
            cloud,
            no_check,
        } => {
            let spec = cloud.spec(&name, &url);
            let mut regions = ctx.regions.clone();
            regions.add(spec.clone())?;
            let probe = if no_check {
                None
            } else {
                Some(ctx.open_spec(&spec)?.probe().await?)
            };
            ctx.home.save_regions(&regions)?;
            ctx.regions = regions;
            if let Some(warning) = probe.as_ref().and_then(|p| p.clock_warning()) {
                eprintln!("warning: {warning}");
            }
            #[derive(Serialize)]
            struct Added {
                added: RegionSpec,
                probe: Option<lifeboat::region::ProbeReport>,
                regions_file: String,
            }
            let file = ctx.home.regions_file().display().to_string();
            let out = Added {
                added: spec,
                probe,
                regions_file: file,
            };
            emit(json, &out, || match &out.probe {
                Some(p) => format!(
                    "added region {} ({}), reachable in {} ms; saved to {}",
                    name, url, p.latency_ms, out.regions_file
                ),
                None => format!(
                    "added region {name} ({url}) unchecked; saved to {}",
                    out.regions_file
                ),
            })?;
        }
        RegionCommand::Remove { name } => {
            let mut regions = ctx.regions.clone();
            let removed = regions.remove(&name)?;
            ctx.home.save_regions(&regions)?;
            ctx.regions = regions;
            emit(json, &removed, || {
                format!(
                    "removed region {name}; its data at {} is left as it was",
                    removed.url
                )
            })?;
        }
        RegionCommand::Check { name } => {
            let names = match name {
                Some(n) => vec![n],
                None => ctx.regions.names(),
            };
            #[derive(Serialize)]
            struct Checked {
                region: String,
                ok: bool,
                latency_ms: Option<u64>,
                clock_skew_ms: Option<i64>,
                error: Option<String>,
            }
            let mut rows = Vec::new();
            let mut reports = Vec::new();
            for name in names {
                let result = match ctx.open(&Some(name.clone())) {
                    Ok(region) => region.probe().await,
                    Err(e) => Err(e),
                };
                rows.push(match result {
                    Ok(p) => {
                        let row = Checked {
                            region: name,
                            ok: true,
                            latency_ms: Some(p.latency_ms),
                            clock_skew_ms: Some(p.clock_skew_ms),
                            error: None,
                        };
                        reports.push(p);
                        row
                    }
                    Err(e) => Checked {
                        region: name,
                        ok: false,
                        latency_ms: None,
                        clock_skew_ms: None,
                        error: Some(e.to_string()),
                    },
                });
            }
            for warning in lifeboat::region::clock_warnings(&reports) {
                eprintln!("warning: {warning}");
            }
            let failed = rows.iter().any(|r| !r.ok);
            emit(json, &rows, || {
                rows.iter()
                    .map(|r| match (&r.error, r.latency_ms) {
                        (Some(e), _) => format!("{:<16} FAILED  {e}", r.region),
                        (None, Some(ms)) => format!("{:<16} ok      {ms} ms", r.region),
                        (None, None) => format!("{:<16} ok", r.region),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            if failed {
                return Ok(exit_code::FAILED);
            }
        }
    }
    Ok(exit_code::OK)
}

fn branch_text(info: &storage::BranchInfo) -> String {
    let wal = match (info.oldest_wal_id, info.newest_wal_id) {
        (Some(a), Some(b)) => format!("{a}..={b}"),
        _ => "none".into(),
    };
    format!(
        "{}/{} in {}: {} in {} objects, newest manifest {} ({} kept), WAL {}, replay after WAL {}, writer epoch {}, {} checkpoint(s)",
        info.db,
        info.branch,
        info.region,
        human_bytes(info.size_bytes),
        info.object_count,
        info.newest_manifest_id,
        info.manifest_count,
        wal,
        info.replay_after_wal_id,
        info.writer_epoch,
        info.checkpoints
    )
}

async fn db_command(ctx: &Ctx, json: bool, command: DbCommand) -> Result<i32> {
    match command {
        DbCommand::Create { name, region } => {
            let region = ctx.open(&region.region)?;
            let info = DbLocation::in_region(&region, &name)?.create().await?;
            emit(json, &info, || format!("created {}", branch_text(&info)))?;
        }
        DbCommand::List { region } => {
            let names = match region {
                Some(r) => {
                    ctx.regions.get(&r)?;
                    vec![r]
                }
                None => ctx.regions.names(),
            };
            #[derive(Serialize)]
            struct Listed {
                region: String,
                db: String,
                branches: Vec<String>,
            }
            let mut rows = Vec::new();
            for name in names {
                let region = ctx.open(&Some(name.clone()))?;
                for (db, branches) in storage::list_databases(&region).await? {
                    let mut live = Vec::new();
                    for branch in branches {
                        // A folder that is not a branch name, or holds no
                        // manifest (a deleted branch's empty folder), is skipped.
                        let Ok(location) = DbLocation::branch_in_region(&region, &db, &branch)
                        else {
                            continue;
                        };
                        if location.exists().await? {
                            live.push(branch);
                        }
                    }
                    if !live.is_empty() {
                        rows.push(Listed {
                            region: name.clone(),
                            db,
                            branches: live,
                        });
                    }
                }
            }
            emit(json, &rows, || {
                if rows.is_empty() {
                    return "no databases yet; create one with `lifeboat db create NAME --region REGION`".into();
                }
                rows.iter()
                    .map(|r| {
                        format!(
                            "{:<16} {:<24} branches: {}",
                            r.region,
                            r.db,
                            r.branches.join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        DbCommand::Describe { name, region } => {
            let region = ctx.open(&region.region)?;
            let info = DbLocation::in_region(&region, &name)?.describe().await?;
            emit(json, &info, || branch_text(&info))?;
        }
        DbCommand::Delete {
            name,
            region,
            yes,
            force,
        } => {
            let region = ctx.open(&region.region)?;
            let others = cli::workspace::regions(ctx)?;
            let group = lifeboat::engine::group::load(&ctx.home.config_dir)?;
            let plan = storage::delete::plan(&region, &others, &name, group.as_ref()).await?;
            let what = plan.describe();
            if !plan.refusals.is_empty() && !force {
                return Err(Error::invalid(format!(
                    "not deleting {what}: {}; add --force to delete anyway",
                    plan.refusals.join("; ")
                )));
            }
            if !yes {
                return Err(Error::invalid(format!(
                    "deleting removes {what}, for good; add --yes to confirm"
                )));
            }
            let deleted = storage::delete::delete(&region, &plan).await?;
            #[derive(Serialize)]
            struct Deleted {
                region: String,
                db: String,
                objects_deleted: u64,
                plan: storage::delete::DeletePlan,
            }
            let out = Deleted {
                region: region.name().to_string(),
                db: name.clone(),
                objects_deleted: deleted,
                plan,
            };
            emit(json, &out, || format!("deleted {what} ({deleted} objects)"))?;
        }
    }
    Ok(exit_code::OK)
}

/// Where a writer of `db` writes: its live branch, at its home (from the
/// control log), or `main` in the region asked for (the first by default)
/// while no failover or switchover moved it. A region that is not the live
/// branch's home is refused with the one that is.
async fn live_location(ctx: &Ctx, asked: &Option<String>, db: &str) -> Result<DbLocation> {
    let regions = cli::workspace::regions(ctx)?;
    let state = lifeboat::control::load_all(&regions).await?;
    let Some(live) = state.live.get(db) else {
        return DbLocation::in_region(&ctx.open(asked)?, db);
    };
    if let Some(asked) = asked
        && *asked != live.region
    {
        return Err(Error::invalid(format!(
            "database `{db}` is live on branch `{}` in region `{}` (a failover or switchover moved it); write there: leave --region out or give --region {}",
            live.branch, live.region, live.region
        )));
    }
    let region = ctx.open(&Some(live.region.clone()))?;
    DbLocation::branch_in_region(&region, db, &live.branch)
}

async fn workload_command(ctx: &Ctx, json: bool, args: WorkloadArgs) -> Result<i32> {
    let location = live_location(ctx, &args.region.region, &args.db).await?;
    let spec = WorkloadSpec {
        rate: args.rate,
        duration: args.duration,
        records: args.records,
        value_bytes: args.value_size,
        churn: args.churn,
    };
    spec.validate()?;
    let log = match args.acks {
        Some(path) => AckLog::at(path),
        None => AckLog::for_db(&ctx.home.acks_dir(), &args.db),
    };
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = workload::run(&location, &spec, &log, stop).await?;
    emit(json, &report, || {
        let mut text = format!(
            "{} records acknowledged ({}..={}) in {:.1}s: {:.0} records/s; durable in p50 {:.1} ms, p99 {:.1} ms; log {}",
            report.records_acked,
            report.first_seq,
            report.last_acked_seq,
            report.elapsed_s,
            report.acked_per_s,
            report.ack_latency_p50_ms,
            report.ack_latency_p99_ms,
            report.ack_log
        );
        if let Some(e) = &report.error {
            text.push_str(&format!("\nstopped early: {e}"));
        }
        text
    })?;
    match &report.error {
        Some(e) => {
            eprintln!("error: {e}");
            Ok(exit_code::FAILED)
        }
        None => Ok(exit_code::OK),
    }
}

async fn verify_command(ctx: &Ctx, json: bool, args: VerifyArgs) -> Result<i32> {
    let location = match &args.url {
        Some(url) => {
            let spec = args.cloud.spec("copy", url);
            let region = ctx.open_spec(&spec)?;
            DbLocation::at_root(&region, args.db.as_deref().unwrap_or("copy"))
        }
        None => {
            let db = args.db.as_deref().ok_or_else(|| {
                Error::invalid("verify needs --db NAME (with --region), or --url URL of a copy")
            })?;
            let region = ctx.open(&args.region)?;
            DbLocation::in_region(&region, db)?
        }
    };
    let log = match (&args.acks, &args.db) {
        (Some(path), _) => {
            if !path.exists() {
                return Err(Error::file(path, "no such acknowledgement log"));
            }
            Some(AckLog::at(path.clone()))
        }
        (None, Some(db)) => Some(AckLog::for_db(&ctx.home.acks_dir(), db)),
        (None, None) => None,
    };
    let report = verify::verify(&location, log.as_ref()).await?;
    emit(json, &report, || report.summary())?;
    Ok(if report.consistent {
        exit_code::OK
    } else {
        exit_code::HOLE
    })
}

fn open_gui(ctx: &Ctx, args: GuiArgs) -> Result<i32> {
    let start = lifeboat::gui::StartOptions {
        tab: args.tab,
        folders: (
            ctx.home.data_dir.display().to_string(),
            ctx.home.config_dir.display().to_string(),
        ),
        export_path: ctx.home.data_dir.join("activity.csv"),
        first_run: ctx.regions.embedded_default,
        open: args.open,
        metrics: args.metrics,
    };
    lifeboat::gui::run(ctx.home.clone(), ctx.regions.clone(), start, args.demo).map_err(|e| {
        Error::Failed(format!(
            "cannot open the window ({e}); on a machine without a display use the subcommands (lifeboat --help)"
        ))
    })?;
    Ok(exit_code::OK)
}

fn run(cli: Cli, home: Result<Home>) -> Result<i32> {
    let mut ctx = Ctx::load(&cli, home?)?;
    let json = cli.json;
    let command = match cli.command {
        None => return open_gui(&ctx, GuiArgs::default()),
        Some(Command::Gui(args)) => return open_gui(&ctx, args),
        Some(command) => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        match command {
            Command::Region(c) => region_command(&mut ctx, json, c).await,
            Command::Db(c) => db_command(&ctx, json, c).await,
            Command::Workload(a) => workload_command(&ctx, json, a).await,
            Command::Verify(a) => verify_command(&ctx, json, a).await,
            Command::Replicate(a) => cli::replication::replicate(&ctx, json, a).await,
            Command::Status(a) => cli::replication::status(&ctx, json, a).await,
            Command::Cost(c) => cli::cost::cost(&ctx, json, c),
            Command::Check(a) => cli::replication::check(&ctx, json, a).await,
            Command::Soak(a) => cli::soak::soak(&ctx, json, a).await,
            Command::Group(c) => cli::group::group(&ctx, json, c).await,
            Command::Serve(a) => cli::group::serve(&ctx, json, a).await,
            Command::Alert(c) => cli::alert::alert(&ctx, json, c).await,
            Command::Report(c) => cli::report::report(&ctx, json, c).await,
            Command::Service(c) => cli::service::service(&ctx, json, c).await,
            Command::Workspace(c) => cli::workspace::workspace(&ctx, json, c).await,
            Command::Control(c) => cli::workspace::control_command(&ctx, json, c).await,
            Command::Failover(a) => cli::failover::failover_command(&ctx, json, a).await,
            Command::Branch(c) => cli::failover::branch_command(&ctx, json, c).await,
            Command::Drill(a) => cli::failover::drill_command(&ctx, json, a).await,
            Command::Restore(a) => cli::failover::restore_command(&ctx, json, a).await,
            Command::Recover(a) => cli::recovery::recover_command(&ctx, json, a).await,
            Command::Merge(a) => cli::recovery::merge_command(&ctx, json, a).await,
            Command::Switchover(a) => cli::recovery::switchover_command(&ctx, json, a).await,
            Command::Failback(a) => cli::recovery::failback_command(&ctx, json, a).await,
            Command::Bench(c) => cli::bench::run(&ctx, json, c).await,
            Command::Gui(args) => open_gui(&ctx, args),
        }
    })
}

/// Parses the command line; a usage error prints as one line (its first
/// paragraph, joined) with a pointer to `--help`, and exits 2.
fn parse_cli() -> std::result::Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let rendered = e.render().to_string();
                let first: Vec<&str> = rendered
                    .lines()
                    .map(str::trim)
                    .take_while(|l| !l.is_empty())
                    .collect();
                let line = first.join(" ");
                let line = line.strip_prefix("error: ").unwrap_or(&line);
                eprintln!("error: {line} (see `lifeboat --help`)");
                Err(ExitCode::from(exit_code::USAGE as u8))
            }
        },
    }
}

fn main() -> ExitCode {
    // Everything Lifeboat creates is its user's alone: region folders hold
    // the control log's password hashes, logs hold client addresses.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let json = cli.json;
    let home = Home::resolve(cli.data_dir.clone(), cli.config_dir.clone());
    let _log = home
        .as_ref()
        .ok()
        .map(|home| lifeboat::logging::init(&home.log_dir()));
    let code = match run(cli, home) {
        Ok(code) => code,
        Err(err) => {
            let line = lifeboat::error::one_line(&err.to_string());
            tracing::info!("command failed: {line}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": line, "exit_code": err.exit_code() })
                );
            }
            eprintln!("error: {line}");
            err.exit_code()
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
