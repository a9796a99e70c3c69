//! `lifeboat recover`, `lifeboat merge`, `lifeboat switchover` and
//! `lifeboat failback`: bring back writes stranded by a failover, merge
//! them, and move live branches between regions with nothing lost.

use std::collections::BTreeMap;

use clap::Args;
use serde::Serialize;

use lifeboat::control::event::{BranchReason, OperationKind};
use lifeboat::control::state::ControlState;
use lifeboat::control::{self};
use lifeboat::engine::group;
use lifeboat::engine::recovery::RecoveryView;
use lifeboat::engine::{Command, Scope};
use lifeboat::error::{Error, Result, exit_code};
use lifeboat::orchestrator::find_region;
use lifeboat::orchestrator::merge::{self, Choice, Pick};
use lifeboat::orchestrator::recover::{self, ChangeRow, Recovered, unshown};
use lifeboat::orchestrator::switchover;
use lifeboat::region::Region;

use super::failover::{ServeArgs, report_record, serve_on, serving};
use super::route::{Client, StepsOf};
use crate::{Ctx, emit};
use lifeboat::orchestrator::failover::replicated;

/// Rows of a comparison printed unless told otherwise.
const SHOWN_ROWS: usize = 20;

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The database whose stranded writes to recover.
    #[arg(long)]
    db: String,
    /// Recover. Without it, only show where the writes would come from.
    #[arg(long)]
    yes: bool,
    /// Compare an existing recovered branch with the live one again.
    #[arg(long, value_name = "BRANCH", num_args = 0..=1, default_missing_value = "")]
    show: Option<String>,
    /// Print at most this many keys (JSON prints them all).
    #[arg(long, default_value_t = SHOWN_ROWS)]
    rows: usize,
}

/// Where the stranded writes of a database would come from.
#[derive(Serialize)]
struct RecoverPreview {
    stranded: recover::Stranded,
    reachable: bool,
    error: Option<String>,
}

/// A comparison as printed in JSON.
#[derive(Serialize)]
struct Comparison {
    db: String,
    branch: String,
    live: String,
    region: String,
    changed: usize,
    conflicts: usize,
    pending: usize,
    /// The fixed states compared, and the comparison's digest.
    fork_point: String,
    recovered_at: String,
    digest: String,
    /// Why this is not the comparison the recovery recorded (no merge
    /// writes it), if it is not.
    unlike_recorded: Option<String>,
    changes: Vec<ChangeRow>,
}

fn comparison(r: &Recovered) -> Comparison {
    Comparison {
        db: r.db.clone(),
        branch: r.branch.clone(),
        live: r.live.clone(),
        region: r.region.clone(),
        changed: r.changes.len(),
        conflicts: r.conflicts(),
        pending: r.pending(),
        fork_point: r.fork_point.clone(),
        recovered_at: r.recovered_at.clone(),
        digest: r.digest(),
        unlike_recorded: r.unlike_recorded.clone(),
        changes: r.rows(),
    }
}

/// The comparison as text: the summary, then the first `rows` keys
/// (conflicts first).
fn comparison_text(r: &Recovered, rows: usize) -> String {
    let mut lines = vec![r.summary(), format!("compared {}", r.states())];
    let mut shown = r.rows();
    shown.sort_by_key(|row| (!row.conflict, row.merged));
    let cut = |v: &Option<String>| match v {
        None => "(absent)".to_string(),
        Some(v) if v.chars().count() > 40 => format!("{}…", v.chars().take(40).collect::<String>()),
        Some(v) => v.clone(),
    };
    for row in shown.iter().take(rows) {
        let state = if row.conflict {
            "CONFLICT"
        } else if row.merged {
            "merged  "
        } else {
            "clean   "
        };
        lines.push(format!(
            "  {state} {}: recovered {} | live {} | at the fork {}",
            row.key,
            cut(&row.recovered),
            cut(&row.live),
            cut(&row.base)
        ));
    }
    if shown.len() > rows {
        lines.push(format!(
            "  … and {} more (--rows N, or --json for all)",
            shown.len() - rows
        ));
    }
    lines.join("\n")
}

/// The newest recovered branch of `db`, when the user named none.
fn newest_recovered(state: &ControlState, db: &str) -> Result<String> {
    state
        .all_branches()
        .into_iter()
        .rev()
        .find(|b| {
            b.fork.db == db
                && state
                    .recovered
                    .get(db)
                    .is_some_and(|r| r.contains_key(&b.fork.branch))
        })
        .map(|b| b.fork.branch.clone())
        .ok_or_else(|| {
            Error::invalid(format!(
                "`{db}` has no recovered branch; run `lifeboat recover --db {db} --yes` once the failed region is back"
            ))
        })
}

/// The region holding `db`'s live branch, as the log says (else the
/// group's primary), and the log as the regions that answer hold it.
async fn live_state(regions: &[Region]) -> Result<ControlState> {
    let _ = control::sync(regions).await;
    control::load_all(regions).await
}

pub async fn recover_command(ctx: &Ctx, json: bool, args: RecoverArgs) -> Result<i32> {
    let regions = super::workspace::regions(ctx)?;
    let state = live_state(&regions).await?;
    if let Some(branch) = &args.show {
        let branch = if branch.is_empty() {
            newest_recovered(&state, &args.db)?
        } else {
            branch.clone()
        };
        let home = state
            .branch(&args.db, &branch)
            .map(|b| b.fork.region.clone())
            .ok_or_else(|| Error::invalid(format!("`{}` has no branch `{branch}`", args.db)))?;
        let recovered =
            recover::inspect(&find_region(&regions, &home)?, &state, &args.db, &branch).await?;
        emit(json, &comparison(&recovered), || {
            comparison_text(&recovered, args.rows)
        })?;
        return Ok(exit_code::OK);
    }
    let found = recover::stranded(&regions, &state, &args.db).await?;
    if !args.yes {
        let old = find_region(&regions, &found.source_region)?;
        let (reachable, error) = match tokio::time::timeout(
            lifeboat::orchestrator::failover::REACH_TIMEOUT,
            old.probe(),
        )
        .await
        {
            Ok(Ok(_)) => (true, None),
            Ok(Err(e)) => (false, Some(lifeboat::error::one_line(&e.to_string()))),
            Err(_) => (false, Some("no answer".to_string())),
        };
        let preview = RecoverPreview {
            stranded: found.clone(),
            reachable,
            error,
        };
        emit(json, &preview, || {
            format!(
                "{db}/{live} in {to} was forked off {db}/{src} at manifest {m}, WAL {w}.\n{}\nNothing was changed; run again with --yes to recover.",
                if reachable {
                    format!(
                        "{} answers: recovery fences {}/{} there, copies its last files to {}, forks its final state as a recovered branch and compares it with {}.",
                        found.source_region, found.db, found.source, found.live_region, found.live
                    )
                } else {
                    format!(
                        "{} does not answer ({}): its writes stay there until it is back.",
                        found.source_region,
                        preview.error.as_deref().unwrap_or("no answer")
                    )
                },
                db = found.db,
                live = found.live,
                to = found.live_region,
                src = found.source,
                m = found.fork.manifest_id,
                w = found.fork.wal_end
            )
        })?;
        return Ok(exit_code::OK);
    }
    let written = [
        find_region(&regions, &found.source_region)?,
        find_region(&regions, &found.live_region)?,
    ];
    let client = super::route::client(ctx, &written, "recover", super::route::Needs::Log).await?;
    let steps: StepsOf = |s| &s.recovery.steps;
    let command = Command::Recover {
        db: args.db.clone(),
    };
    let ran = client.ask(command, (!json).then_some(steps)).await;
    client.close().await;
    let (outcome, data) = ran?;
    let message = outcome.into_result()?;
    let recovery: Option<RecoveryView> = data.and_then(|d| serde_json::from_value(d).ok());
    let Some(c) = recovery.as_ref().and_then(|r| r.comparison.as_ref()) else {
        emit(json, &recovery.and_then(|r| r.last), || message.clone())?;
        return Ok(exit_code::OK);
    };
    // The whole comparison, read again from the branch the engine made.
    let state = live_state(&regions).await?;
    let home = state
        .branch(&c.db, &c.branch)
        .map(|b| b.fork.region.clone())
        .ok_or_else(|| Error::Failed(format!("the log has no branch `{}`", c.branch)))?;
    let r = recover::inspect(&find_region(&regions, &home)?, &state, &c.db, &c.branch).await?;
    emit(json, &comparison(&r), || {
        format!(
            "{message}\n{}\nMerge with `lifeboat merge --db {} --branch {}` (--clean, --all, or --take/--keep KEY).",
            comparison_text(&r, args.rows),
            r.db,
            r.branch
        )
    })?;
    Ok(exit_code::OK)
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The database.
    #[arg(long)]
    db: String,
    /// The recovered branch (default: the newest).
    #[arg(long)]
    branch: Option<String>,
    /// Merge every recovered key; conflicts take the recovered value.
    #[arg(long, conflicts_with_all = ["clean", "take", "keep"])]
    all: bool,
    /// Merge only the keys that conflict with nothing (the default).
    #[arg(long)]
    clean: bool,
    /// A conflicting key that takes the recovered value (the clean keys are
    /// merged too; a conflict not named keeps the live value); repeatable.
    /// Bytes other than printable ASCII as \xNN.
    #[arg(long, value_name = "KEY", conflicts_with = "clean")]
    take: Vec<String>,
    /// A conflicting key that keeps the live value; repeatable.
    #[arg(long, value_name = "KEY", conflicts_with = "clean")]
    keep: Vec<String>,
    /// Merge. Without it, only show what would be written.
    #[arg(long)]
    yes: bool,
    /// Delete the recovered branch once everything picked is merged.
    #[arg(long)]
    discard: bool,
    /// Keys per durable write batch.
    #[arg(long, default_value_t = merge::CHUNK_KEYS)]
    chunk: usize,
}

pub async fn merge_command(ctx: &Ctx, json: bool, args: MergeArgs) -> Result<i32> {
    let regions = super::workspace::regions(ctx)?;
    let state = live_state(&regions).await?;
    let branch = match &args.branch {
        Some(b) => b.clone(),
        None => newest_recovered(&state, &args.db)?,
    };
    let pick = if args.all {
        Pick::All
    } else if !args.take.is_empty() || !args.keep.is_empty() {
        let mut choices = BTreeMap::new();
        for key in &args.take {
            choices.insert(unshown(key)?, Choice::Recovered);
        }
        for key in &args.keep {
            if choices.insert(unshown(key)?, Choice::Live).is_some() {
                return Err(Error::invalid(format!(
                    "key `{key}` is both taken and kept; pick one"
                )));
            }
        }
        Pick::Choose(choices)
    } else {
        Pick::Clean
    };
    if !args.yes {
        let home = state
            .branch(&args.db, &branch)
            .map(|b| b.fork.region.clone())
            .ok_or_else(|| Error::invalid(format!("`{}` has no branch `{branch}`", args.db)))?;
        let recovered =
            recover::inspect(&find_region(&regions, &home)?, &state, &args.db, &branch).await?;
        emit(json, &comparison(&recovered), || {
            let would = match recovered.unlike_recorded {
                Some(_) => "A merge would refuse it (see the warning above).".to_string(),
                None => format!("Would merge {}.", pick.describe()),
            };
            format!(
                "{}\n{would}\nNothing was changed; run again with --yes to merge.",
                comparison_text(&recovered, SHOWN_ROWS),
            )
        })?;
        return Ok(exit_code::OK);
    }
    // The live branch is written where the log says it lives; the engine
    // serving it merges through its own writer (nothing here fences it).
    let live_region = state
        .live
        .get(&args.db)
        .map(|l| l.region.clone())
        .or_else(|| regions.first().map(|r| r.name().to_string()))
        .ok_or_else(|| Error::invalid("no region is configured"))?;
    let written = [find_region(&regions, &live_region)?];
    let client = super::route::client(ctx, &written, "merge", super::route::Needs::Log).await?;
    let steps: StepsOf = |s| &s.recovery.steps;
    let command = Command::Merge {
        db: args.db.clone(),
        branch,
        pick,
        discard: args.discard,
        chunk: Some(args.chunk),
    };
    let ran = client.ask(command, (!json).then_some(steps)).await;
    client.close().await;
    let (outcome, data) = ran?;
    let message = outcome.into_result()?;
    let record = data
        .and_then(|d| serde_json::from_value::<RecoveryView>(d).ok())
        .and_then(|r| r.last);
    emit(json, &record, || message.clone())?;
    Ok(exit_code::OK)
}

#[derive(Args, Debug)]
pub struct SwitchArgs {
    /// The region writing now (default: where the live branches are).
    #[arg(long)]
    from: Option<String>,
    /// The region to write in (default: the group's other region).
    #[arg(long)]
    to: Option<String>,
    /// A database to move; repeatable (default: every one written in
    /// --from and replicated to --to).
    #[arg(long = "db", value_name = "NAME")]
    dbs: Vec<String>,
    /// Move. Without it, only show what would move.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

pub async fn switchover_command(ctx: &Ctx, json: bool, args: SwitchArgs) -> Result<i32> {
    move_command(ctx, json, args, OperationKind::Switchover).await
}

pub async fn failback_command(ctx: &Ctx, json: bool, args: SwitchArgs) -> Result<i32> {
    move_command(ctx, json, args, OperationKind::Failback).await
}

async fn move_command(ctx: &Ctx, json: bool, args: SwitchArgs, kind: OperationKind) -> Result<i32> {
    let asked_ms = lifeboat::orchestrator::now_ms();
    let regions = super::workspace::regions(ctx)?;
    let state = live_state(&regions).await?;
    let group = group::load(&ctx.home.config_dir)?;
    // From: where the live branches are written (as the newest failover or
    // switchover left them), else the primary: the group's, or the first
    // configured region.
    let from = match &args.from {
        Some(f) => f.clone(),
        None => {
            let moved = state.live.values().map(|l| l.region.clone()).next();
            let primary = group
                .as_ref()
                .map(|g| g.primary.clone())
                .or_else(|| regions.first().map(|r| r.name().to_string()));
            match (kind, moved) {
                (_, Some(region)) => region,
                (OperationKind::Failback, None) => {
                    return Err(Error::invalid(
                        "nothing was failed over: the live branches are where they started; use `lifeboat switchover` to move them",
                    ));
                }
                (_, None) => primary.ok_or_else(|| {
                    Error::invalid("no region is configured; add two with `lifeboat region add`")
                })?,
            }
        }
    };
    let to = match &args.to {
        Some(t) => t.clone(),
        None => regions
            .iter()
            .map(|r| r.name().to_string())
            .filter(|r| *r != from)
            .find(|r| {
                group
                    .as_ref()
                    .is_none_or(|g| *r == g.primary || *r == g.secondary)
            })
            .ok_or_else(|| Error::invalid("name the region to move to with --to"))?,
    };
    let (from, to) = (find_region(&regions, &from)?, find_region(&regions, &to)?);
    let dbs = if args.dbs.is_empty() {
        // The live branches written in `from` and replicated to `to`; a
        // failback moves only those a failover made.
        let mut dbs = replicated(&from, &to, &state).await?;
        if kind == OperationKind::Failback {
            dbs.retain(|db| {
                state
                    .branch(db, state.live_branch(db))
                    .is_some_and(|b| b.fork.reason == BranchReason::Failover)
            });
        }
        dbs
    } else {
        args.dbs.clone()
    };
    let plan = switchover::plan(&from, &to, &state, &dbs, kind).await?;
    if !args.yes {
        emit(json, &plan, || {
            format!(
                "{}\nNothing was changed; run again with --yes to {}.",
                plan.summary(),
                kind.name()
            )
        })?;
        return Ok(exit_code::OK);
    }
    let written = [from.clone(), to.clone()];
    let client =
        super::route::client(ctx, &written, kind.name(), super::route::Needs::Leases).await?;
    let scope = Scope {
        from: from.name().to_string(),
        to: to.name().to_string(),
        dbs,
    };
    let ran = move_at(json, &client, &args.serve, scope, kind, asked_ms).await;
    serve_on(client, &args.serve, ran).await
}

/// A switchover or failback at `client`'s engine: its plan, then the move
/// of that plan's epoch; the engine serves the workspaces it starts.
async fn move_at(
    json: bool,
    client: &Client,
    serve: &ServeArgs,
    scope: Scope,
    kind: OperationKind,
    asked_ms: u64,
) -> Result<i32> {
    let plan: switchover::SwitchPlan = client
        .look(Command::PlanMove {
            kind,
            scope: Some(scope),
        })
        .await?;
    if !json {
        println!("{}", plan.summary());
    }
    let command = Command::Move {
        kind,
        epoch: plan.epoch,
        asked_ms: Some(asked_ms),
        serving: serving(serve),
    };
    let steps: StepsOf = |s| &s.moving.steps;
    let record = client.record(command, (!json).then_some(steps)).await?;
    report_record(json, serve.report.as_deref(), &record)
}
