//! `lifeboat replicate`, `status` and `check`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use lifeboat::control::event::BranchReason;
use lifeboat::cost::{self, CostView, dollars};
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::region::Region;
use lifeboat::replication::copier::BranchCopier;
use lifeboat::replication::pins::{BranchPins, NoPins, Pins};
use lifeboat::replication::{
    self, Flow, FlowStatus, ReplicationOptions, Replicator, check, replicator,
};
use lifeboat::workload::acks::AckLog;
use lifeboat::workload::verify::format_us;

use crate::{Ctx, emit, parse_duration};

#[derive(Args, Debug)]
pub struct ReplicateArgs {
    /// Copy only branches whose home is this region (default: every region).
    #[arg(long, value_name = "REGION")]
    from: Option<String>,
    /// Copy only into this region (default: every other region).
    #[arg(long, value_name = "REGION")]
    to: Option<String>,
    /// Copy only this database.
    #[arg(long)]
    db: Option<String>,
    /// Copy until every replica holds its home's state as of now, then exit.
    #[arg(long, conflicts_with = "follow")]
    once: bool,
    /// Keep copying as the homes change, until Ctrl-C (the default).
    #[arg(long)]
    follow: bool,
    /// Copies in flight at once, across all branches.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    /// The longest wait between two looks at an idle branch.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    max_poll: Duration,
    /// While following, print every replica's status this often.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    report_every: Duration,
    /// Stop following after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this database.
    #[arg(long)]
    db: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The database to check.
    #[arg(long)]
    db: String,
    /// Only the replica in this region (default: every replica).
    #[arg(long, value_name = "REGION")]
    replica: Option<String>,
    /// The acknowledgement log to count acknowledged writes the replica
    /// lacks (default: <data-dir>/acks/<db>.jsonl when it exists).
    #[arg(long, value_name = "FILE")]
    acks: Option<PathBuf>,
}

/// Every configured region, opened with this run's faults.
fn open_all(ctx: &Ctx) -> Result<Vec<Region>> {
    ctx.regions
        .specs()
        .iter()
        .map(|spec| ctx.open_spec(spec))
        .collect()
}

fn check_region_arg(ctx: &Ctx, name: &Option<String>) -> Result<()> {
    if let Some(name) = name {
        ctx.regions.get(name)?;
    }
    Ok(())
}

fn nothing_to_replicate(db: &Option<String>) -> Error {
    match db {
        Some(db) => Error::Failed(format!("database `{db}` has no home among the regions chosen")),
        None => Error::Failed(
            "nothing to replicate: no database has its home in the regions chosen; create one with `lifeboat db create NAME`"
                .into(),
        ),
    }
}

pub async fn replicate(ctx: &Ctx, json: bool, args: ReplicateArgs) -> Result<i32> {
    check_region_arg(ctx, &args.from)?;
    check_region_arg(ctx, &args.to)?;
    if args.from.is_some() && args.from == args.to {
        return Err(Error::invalid(
            "--from and --to name the same region; a replica lives in another region",
        ));
    }
    let regions = open_all(ctx)?;
    if regions.len() < 2 {
        return Err(Error::invalid(
            "replication needs two regions; add another with `lifeboat region add NAME URL`",
        ));
    }
    // Forked branches: what they read stays pinned; drills stay home.
    let state = lifeboat::control::load_all(&regions).await?;
    let pins = BranchPins::of(&state);
    let flows: Vec<Flow> = replication::discover(
        &regions,
        args.from.as_deref(),
        args.to.as_deref(),
        args.db.as_deref(),
    )
    .await?
    .into_iter()
    .filter(|f| {
        state
            .branch(&f.db, &f.branch)
            .is_none_or(|b| b.fork.reason != BranchReason::Drill)
    })
    .collect();
    if flows.is_empty() {
        return Err(nothing_to_replicate(&args.db));
    }
    let involved: Vec<Region> = regions
        .iter()
        .filter(|r| {
            flows
                .iter()
                .any(|f| f.home.name() == r.name() || f.replica.name() == r.name())
        })
        .cloned()
        .collect();
    for warning in lifeboat::region::preflight(&involved).await? {
        eprintln!("warning: {warning}");
    }
    let opts = ReplicationOptions {
        copies_in_flight: usize::from(args.parallel),
        max_poll: args.max_poll,
        ..ReplicationOptions::default()
    };
    if args.once {
        return replicate_once(json, flows, opts, pins).await;
    }
    let replicator = Replicator::start(flows, opts, Arc::clone(&pins) as Arc<dyn Pins>);
    // Forks made meanwhile (by the app or another command) pin too.
    let refresh = {
        let (pins, regions) = (Arc::clone(&pins), regions.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PINS_EVERY).await;
                if let Ok(state) = lifeboat::control::load_all(&regions).await {
                    pins.update(&state);
                }
            }
        })
    };
    super::report_until_stopped(args.duration, args.report_every, || {
        print_statuses(json, &replicator.statuses())
    })
    .await?;
    refresh.abort();
    let statuses = replicator.stop().await;
    print_statuses(json, &statuses)?;
    Ok(exit_code::OK)
}

/// How often a running `replicate` reads the control log for new forks.
const PINS_EVERY: Duration = Duration::from_secs(5);

async fn replicate_once(
    json: bool,
    flows: Vec<Flow>,
    opts: ReplicationOptions,
    pins: Arc<BranchPins>,
) -> Result<i32> {
    let results = replicator::once(flows, opts, pins).await;
    let mut statuses = Vec::new();
    let mut first_error = None;
    for (flow, result) in results {
        match result {
            Ok(status) => statuses.push(status),
            Err(err) => {
                if !json {
                    eprintln!("error: {}: {err}", flow.label());
                }
                first_error.get_or_insert(err);
            }
        }
    }
    print_statuses(json, &statuses)?;
    match first_error {
        Some(err) => Err(err),
        None => Ok(exit_code::OK),
    }
}

fn print_statuses(json: bool, statuses: &[FlowStatus]) -> Result<()> {
    if json {
        let line = serde_json::to_string(statuses)
            .map_err(|e| Error::Failed(format!("cannot encode the status as JSON: {e}")))?;
        println!("{line}");
    } else {
        for status in statuses {
            println!("{}", status.line());
        }
    }
    Ok(())
}

pub async fn status(ctx: &Ctx, json: bool, args: StatusArgs) -> Result<i32> {
    let regions = open_all(ctx)?;
    // The running engine's view, as it published it in the regions; else
    // each replica's own cursor, looked at now.
    let published = match lifeboat::engine::published::read(&regions).await {
        Ok(view) => view,
        Err(e) => {
            tracing::debug!("reading the published status: {e}");
            None
        }
    };
    let zero_loss = published
        .as_ref()
        .and_then(|view| view.published.zero_loss.clone());
    let (engine, statuses, cost) = match published {
        Some(view) => {
            let statuses: Vec<_> = view
                .published
                .flows
                .iter()
                .map(|f| f.status.clone())
                .filter(|s| args.db.as_ref().is_none_or(|db| &s.db == db))
                .collect();
            let cost = view.published.cost.clone();
            (Some(view.describe()), statuses, cost)
        }
        None => {
            let flows = replication::discover(&regions, None, None, args.db.as_deref()).await?;
            let opts = ReplicationOptions::default();
            let mut statuses = Vec::new();
            for flow in flows {
                let mut copier = BranchCopier::standalone(flow, opts.clone(), Arc::new(NoPins));
                statuses.push(copier.inspect().await?);
            }
            (None, statuses, CostView::default())
        }
    };
    // An engine too old to publish its bill, or none running: figured here
    // from the statuses (requests only; storage needs the engine's listing).
    let cost = if cost.prices.is_empty() {
        local_cost(ctx, &statuses)
    } else {
        cost
    };
    if json && let Some(engine) = &engine {
        // stdout stays one JSON array of statuses.
        eprintln!("engine: {engine}");
        if let Some(view) = &zero_loss {
            eprintln!("{}", view.line());
        }
    }
    emit(json, &statuses, || {
        let mut engine = engine
            .as_ref()
            .map(|e| format!("engine: {e}\n"))
            .unwrap_or_default();
        if let Some(view) = &zero_loss {
            engine.push_str(&view.line());
            engine.push('\n');
        }
        if statuses.is_empty() {
            return format!("{engine}no databases yet; create one with `lifeboat db create NAME`");
        }
        let month_of = |s: &FlowStatus| {
            cost.bill
                .flows
                .iter()
                .find(|f| f.db == s.db && f.branch == s.branch && f.replica == s.replica)
                .map_or("-".to_string(), |f| dollars(f.month))
        };
        let mut lines = vec![format!(
            "{:<24} {:<24} {:<9} {:>9} {:>16} {:<26} {:>7} {:>9}",
            "DATABASE",
            "HOME → REPLICA",
            "STATE",
            "LAG",
            "PENDING",
            "LAST SYNC",
            "REQ/MIN",
            "$/MONTH"
        )];
        for s in &statuses {
            lines.push(format!(
                "{:<24} {:<24} {:<9} {:>9} {:>16} {:<26} {:>7} {:>9}",
                format!("{}/{}", s.db, s.branch),
                format!("{} → {}", s.home, s.replica),
                s.state.label(),
                s.lag_s.map_or("-".into(), |l| format!("{l:.2} s")),
                format!(
                    "{} ({})",
                    s.objects_pending,
                    replication::status::human_bytes(s.bytes_pending)
                ),
                s.last_sync_us.map_or("never".into(), format_us),
                s.requests_last_min.total(),
                month_of(s)
            ));
            if let Some(detail) = &s.detail {
                lines.push(format!("    {detail}"));
            }
            if let Some(by) = &s.copied_by {
                lines.push(format!("    copied by {by}"));
            }
        }
        lines.extend(cost_lines(&cost, &statuses, args.db.is_none()));
        format!("{engine}{}", lines.join("\n"))
    })?;
    Ok(exit_code::OK)
}

/// The bill of `statuses` figured here, at this machine's prices.
fn local_cost(ctx: &Ctx, statuses: &[FlowStatus]) -> CostView {
    let (rows, prices_from, prices_error) = cost::load_or_published(&ctx.home.config_dir);
    let rpo_target = lifeboat::engine::group::load(&ctx.home.config_dir)
        .ok()
        .flatten()
        .map_or(1.0, |g| g.rpo_target_s);
    let bill = cost::GroupCost::of(
        &rows,
        &cost::GroupUse {
            flows: statuses,
            regions: ctx.regions.specs(),
            rpo_target: Duration::from_secs_f64(rpo_target.max(0.001)),
            stored_bytes: 0.0,
            copied_bytes_per_s: 0.0,
        },
    );
    CostView {
        bill,
        regions: Vec::new(),
        prices: rows,
        prices_from,
        prices_error,
    }
}

/// The requests of `statuses` last minute by class, what a month of them
/// costs, and (for the whole group) the month forecast at every store.
fn cost_lines(cost: &CostView, statuses: &[FlowStatus], whole_group: bool) -> Vec<String> {
    let mut last_min = lifeboat::region::meter::ClassCounts::default();
    for s in statuses {
        last_min = last_min.plus(&s.requests_last_min);
    }
    let what_if = cost.bill.flows.iter().any(|f| f.what_if);
    let mut lines = vec![
        String::new(),
        format!(
            "replication requests, last minute: {} ({})",
            last_min.total(),
            last_min.line()
        ),
    ];
    if whole_group && !cost.bill.bills.is_empty() {
        let bills: Vec<String> = cost
            .bill
            .bills
            .iter()
            .map(|b| format!("{} {}", b.store, dollars(b.total)))
            .collect();
        lines.push(format!(
            "a month of the group as configured (requests, both regions' storage, transfer): {}",
            bills.join(" · ")
        ));
    }
    for r in &cost.regions {
        let p = &r.per_min;
        lines.push(format!(
            "{}: everything the engine asked of it, a minute lately: {:.0} LIST, {:.0} PUT, {:.0} GET, {:.0} DELETE; {} a month at {}",
            r.region,
            p.list,
            p.put,
            p.get,
            p.delete,
            dollars(r.month),
            r.store
        ));
    }
    if what_if {
        lines.push(
            "local folders bill nothing; their $/MONTH is what the same requests cost at the first store's prices".into(),
        );
    }
    lines.push(format!(
        "prices: {} (`lifeboat cost prices`)",
        cost.prices_from
    ));
    if let Some(error) = &cost.prices_error {
        lines.push(format!("warning: {error}; the published prices were used"));
    }
    lines
}

pub async fn check(ctx: &Ctx, json: bool, args: CheckArgs) -> Result<i32> {
    check_region_arg(ctx, &args.replica)?;
    let regions = open_all(ctx)?;
    let flows =
        replication::discover(&regions, None, args.replica.as_deref(), Some(&args.db)).await?;
    let acks = match &args.acks {
        Some(path) if !path.exists() => {
            return Err(Error::file(path, "no such acknowledgement log"));
        }
        Some(path) => Some(AckLog::at(path.clone())),
        None => Some(AckLog::for_db(&ctx.home.acks_dir(), &args.db)),
    };
    let mut reports = Vec::new();
    for flow in &flows {
        let replica =
            lifeboat::storage::DbLocation::branch_in_region(&flow.replica, &flow.db, &flow.branch)?;
        if !replica.exists().await? {
            return Err(Error::Failed(format!(
                "{} has no replica in region `{}` yet; run `lifeboat replicate --db {}`",
                flow.db,
                flow.replica.name(),
                flow.db
            )));
        }
        reports.push(check::check(flow, acks.as_ref()).await?);
    }
    emit(json, &reports, || {
        reports
            .iter()
            .map(check::CheckReport::summary)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(if reports.iter().all(|r| r.prefix) {
        exit_code::OK
    } else {
        exit_code::HOLE
    })
}
