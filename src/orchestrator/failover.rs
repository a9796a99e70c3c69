//! Unplanned failover: the secondary takes over from the replicas it holds.
//!
//! First [`preview`] shows what will be lost (each replica's newest state,
//! its lag, and how far behind the home it is when the home still answers).
//! Then [`failover`]: fence the old writers when their region answers
//! (invariant 4), fork a new live branch off each replica at its newest
//! consistent state (never writing into the replica: invariant 1), record
//! the failover with a new epoch in the control log, start the workspaces
//! that serve those databases in the secondary from the replicated
//! configuration, and measure RTO to the first write acknowledged through a
//! new connection string. RPO is measured exactly against the workload's
//! acknowledgement log when there is one, else as the replica's lag.
//!
//! A failover may instead take every database as of one instant ([`Cut`]):
//! the newest time every replica holds (a common cut, so no database is
//! ahead of another), or a time the responder names (to undo a bad deploy
//! while failing over). Each is then forked as of that time with the
//! point-in-time machinery (`storage::pitr`), to the row; the preview says
//! what the cut costs each database against its replica's newest state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{OnStep, Steps, find_region, now_ms};
use crate::control::event::{
    BranchForked, BranchReason, DbRpo, Event, LiveBranch, OperationKind, OperationRecord,
};
use crate::control::state::ControlState;
use crate::control::{self};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::replication::pins::BranchPins;
use crate::storage::DbLocation;
use crate::storage::cursor;
use crate::storage::fork::{Forked, fork_at, fork_seen};
use crate::storage::pitr::{self, PointInTime};
use crate::workload::acks::AckLog;
use crate::workload::verify::verify;
use crate::workspace::{Recorded, StartOptions, Workspace, connection_string};

/// How long the old primary gets to answer before it counts as down.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long fencing an old writer may take: a writer open probes the WAL
/// files past the manifest one by one, which a slow server under load
/// (moto on two busy cores) took more than 10 s to answer.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// When a replica counts as holding everything up to its last full sync
/// (its cursor's): that sync, less this. A write reaches the home's store a
/// flush interval and a put after it commits, and a sync covers what the
/// pass listed when it began: an idle database holds through its last sync
/// less the time those take.
const IDLE_SYNC_SLACK_MS: u64 = 2_000;

/// WAL files read to count the rows a cut drops; past this only files
/// and time are counted.
const DROPPED_ROWS_READ: u64 = 64;

/// Which state of each replica a failover takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// Each database at its replica's newest consistent state.
    #[default]
    Newest,
    /// Every database as of one instant: the newest every replica holds.
    Common,
    /// Every database as of this time (Unix milliseconds, the home's
    /// commit time), inside the retention window.
    At(u64),
}

impl Cut {
    /// How the preview and the report name it.
    pub fn describe(&self) -> String {
        match self {
            Cut::Newest => "each database at its replica's newest state".into(),
            Cut::Common => "every database at the newest instant all replicas hold".into(),
            Cut::At(ms) => format!(
                "every database as of {}",
                crate::workload::verify::format_us(ms.saturating_mul(1000))
            ),
        }
    }
}

/// What a cut at one instant drops of a database, against its replica's
/// newest state.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CutCost {
    /// Writes of this span (ms) before the replica's newest are left out.
    pub span_ms: u64,
    /// WAL files past the cut, the one it splits included.
    pub wal_files: u64,
    /// Rows left out, when they were few enough to count.
    pub rows: Option<u64>,
}

/// One database as a failover would find it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DbPreview {
    pub db: String,
    /// The live branch now (at the old primary).
    pub branch: String,
    /// The replica's newest manifest and the last WAL file a reader of it
    /// reaches: the newest consistent state, which the new branch will hold.
    pub replica_manifest: u64,
    pub replica_wal_end: u64,
    /// The replica's lag: the running replicator's figure (the one the
    /// app's table shows) when `lag_live`, else now minus the last full
    /// sync the replica's cursor recorded (saved every few seconds).
    pub lag_ms: Option<u64>,
    #[serde(default)]
    pub lag_live: bool,
    /// The home's newest WAL file, when the home answers.
    pub home_wal_end: Option<u64>,
    /// The commit time (the home's clock, Unix ms) through which the
    /// replica holds every write: its newest row with nothing missing
    /// before it, or for an idle database its last full sync (less
    /// [`IDLE_SYNC_SLACK_MS`]). `None`: its rows could not be read (why is
    /// in `held_error`).
    #[serde(default)]
    pub held_through_ms: Option<u64>,
    #[serde(default)]
    pub held_error: Option<String>,
    /// What a common cut would drop of it, against its newest.
    #[serde(default)]
    pub common_cost: Option<CutCost>,
    /// The state the failover takes under a cut at one instant, and what
    /// that drops; `None`: its newest.
    #[serde(default)]
    pub point: Option<PointInTime>,
    #[serde(default)]
    pub cut_cost: Option<CutCost>,
}

impl DbPreview {
    /// WAL files the home holds that the replica lacks (about one flush
    /// interval of writes each), when the home answers.
    pub fn wal_files_behind(&self) -> Option<u64> {
        self.home_wal_end
            .map(|home| home.saturating_sub(self.replica_wal_end))
    }
}

/// The databases whose live branch is replicated from `from` to `to`, as
/// the replicas' own cursors say (not what a copier last did): what a
/// failover takes unless told otherwise, in the app and the CLI alike.
pub async fn replicated(from: &Region, to: &Region, state: &ControlState) -> Result<Vec<String>> {
    let mut dbs = Vec::new();
    for (db, _) in crate::storage::list_databases(to).await? {
        let branch = state.live_branch(&db);
        let cursor = crate::storage::cursor::load(&to.store(), to.name(), &db, branch).await?;
        if cursor.is_some_and(|c| c.home == from.name()) {
            dbs.push(db);
        }
    }
    Ok(dbs)
}

/// The databases a failover from `from` to `to` takes: those `asked` for,
/// else the replicated ones. None left because every one is live in `to`
/// already is an error that says so.
pub async fn to_fail_over(
    from: &Region,
    to: &Region,
    state: &ControlState,
    asked: &[String],
) -> Result<Vec<String>> {
    if !asked.is_empty() {
        return Ok(asked.to_vec());
    }
    let dbs = replicated(from, to, state).await?;
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
    Ok(dbs)
}

/// What a failover would do and lose.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Preview {
    pub from: String,
    pub to: String,
    /// The epoch the failover will start.
    pub epoch: u64,
    pub primary_reachable: bool,
    /// Why the old primary counts as down.
    pub primary_error: Option<String>,
    pub dbs: Vec<DbPreview>,
    /// Workspaces that will be started in the secondary.
    pub workspaces: Vec<String>,
    /// Which state of each replica the failover takes.
    #[serde(default)]
    pub cut: Cut,
    /// The newest instant every replica holds (Unix ms), when each said.
    #[serde(default)]
    pub common_ms: Option<u64>,
    /// The instant the databases are taken at, under a cut at one instant.
    #[serde(default)]
    pub cut_ms: Option<u64>,
}

impl Preview {
    /// What a responder reads before confirming.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "Failover {} → {} (epoch {}). {}",
            self.from,
            self.to,
            self.epoch,
            if self.primary_reachable {
                format!(
                    "{} still answers: its writers will be fenced, and writes the replicas lack stay there for recovery.",
                    self.from
                )
            } else {
                format!(
                    "{} does not answer ({}): writes the replicas lack stay there until it returns.",
                    self.from,
                    self.primary_error.as_deref().unwrap_or("no answer")
                )
            }
        )];
        for db in &self.dbs {
            let lag = match (db.lag_ms, db.lag_live) {
                (None, _) => "lag unknown".to_string(),
                (Some(ms), true) => format!("lag {ms} ms"),
                (Some(ms), false) => format!("last in sync {ms} ms ago, by its cursor"),
            };
            // The home answers: how far behind it the replica was at the
            // look, in files (the replicator may have copied them since).
            let state = match db.wal_files_behind() {
                Some(0) => format!("nothing behind the home, {lag}"),
                Some(n) => format!("{n} WAL file(s) behind the home at the look, {lag}"),
                None => lag,
            };
            let taken = match &db.point {
                Some(p) => format!(
                    "as of {}: manifest {}, WAL {}{}",
                    at_ms(p.at_ms),
                    p.manifest_id,
                    p.wal_end,
                    p.partial_wal.map_or(String::new(), |w| format!(
                        " and the rows by then of WAL {w}"
                    ))
                ),
                None => format!(
                    "at manifest {}, WAL {}",
                    db.replica_manifest, db.replica_wal_end
                ),
            };
            lines.push(format!(
                "  {}: from {}/{} {taken} ({state})",
                db.db, self.to, db.branch
            ));
            let held = match (db.held_through_ms, &db.held_error) {
                // A time past what it holds: it is taken at its newest.
                (Some(ms), _) if self.cut_ms.is_some_and(|cut| cut > ms) => format!(
                    "holds every write only through {}: what came after, up to the cut, is not in it",
                    at_ms(ms)
                ),
                (Some(ms), _) => format!("holds every write through {}", at_ms(ms)),
                (None, Some(e)) => format!("what it holds is unknown: {e}"),
                (None, None) => "what it holds is unknown".into(),
            };
            let cost = |label: &str, cost: &CutCost| {
                format!(
                    "; {label} drops {} of its writes ({} WAL file(s){})",
                    span(cost.span_ms),
                    cost.wal_files,
                    cost.rows.map_or(String::new(), |r| format!(", {r} row(s)"))
                )
            };
            let costs = match (&db.cut_cost, &db.common_cost) {
                (Some(c), _) => cost("this cut", c),
                (None, Some(c)) if self.cut == Cut::Newest => cost("a common cut", c),
                _ => String::new(),
            };
            lines.push(format!("      {held}{costs}"));
        }
        lines.push(match (self.cut, self.cut_ms, self.common_ms) {
            (Cut::Newest, _, Some(common)) => format!(
                "  cut: {}; a common cut would take them all as of {} (--cut common)",
                self.cut.describe(),
                at_ms(common)
            ),
            (_, Some(cut), _) => format!("  cut: every database as of {}", at_ms(cut)),
            _ => format!("  cut: {}", self.cut.describe()),
        });
        if self.workspaces.is_empty() {
            lines.push(
                "  no workspace serves these databases: the branches are forked, nothing is served"
                    .into(),
            );
        } else {
            lines.push(format!(
                "  workspaces started in {}: {}",
                self.to,
                self.workspaces.join(", ")
            ));
        }
        lines.join("\n")
    }
}

/// A time as the preview shows it.
fn at_ms(ms: u64) -> String {
    crate::workload::verify::format_us(ms.saturating_mul(1000))
}

/// A span of milliseconds as the preview shows it.
fn span(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
    }
}

/// Looks at both regions: what a failover of `dbs` from `from` to `to`
/// would do, taking each replica's state as `cut` says. Writes nothing
/// but the reachability probe's small object.
pub async fn preview(
    from: &Region,
    to: &Region,
    state: &ControlState,
    dbs: &[String],
    cut: Cut,
) -> Result<Preview> {
    if from.name() == to.name() {
        return Err(Error::invalid(format!(
            "a failover moves to another region; `{}` is both",
            to.name()
        )));
    }
    if dbs.is_empty() {
        return Err(Error::invalid(
            "no database to fail over; name one with --db or configure replication first",
        ));
    }
    // One look, not retried: a primary that is down is the expected case,
    // and every retry would be RTO. It runs while the replicas are looked
    // at (a region that is gone answers only at the timeout).
    let reach = async {
        match from.answers(REACH_TIMEOUT).await {
            Ok(()) => (true, None),
            Err(e) => (false, Some(crate::error::one_line(&e.to_string()))),
        }
    };
    let replicas = futures::future::try_join_all(
        dbs.iter()
            .map(|db| look_at_replica(from, to, db, state.live_branch(db))),
    );
    let ((primary_reachable, primary_error), looked) = tokio::join!(reach, replicas);
    let mut out = looked?;
    if primary_reachable {
        let homes = futures::future::join_all(out.iter().map(|db| async move {
            DbLocation::branch_in_region(from, &db.db, &db.branch)
                .ok()?
                .list_ids("wal", "sst")
                .await
                .ok()
                .and_then(|ids| ids.last().map(|(id, _)| *id))
        }))
        .await;
        for (db, home_wal_end) in out.iter_mut().zip(homes) {
            db.home_wal_end = home_wal_end;
        }
    }
    let workspaces = state
        .workspaces
        .values()
        .filter(|ws| ws.databases.iter().any(|a| dbs.contains(&a.db)))
        .map(|ws| ws.name.clone())
        .collect();
    let common_ms = out
        .iter()
        .map(|db| db.held_through_ms)
        .collect::<Option<Vec<u64>>>()
        .and_then(|held| held.into_iter().min());
    for db in &mut out {
        db.common_cost = common_ms
            .zip(db.held_through_ms)
            .map(|(common, held)| CutCost {
                span_ms: held.saturating_sub(common),
                wal_files: 0,
                rows: None,
            });
    }
    let held: Vec<Option<u64>> = out.iter().map(|db| db.held_through_ms).collect();
    let cut_ms = cut_instant(cut, &held).map_err(|e| {
        let why: Vec<String> = out
            .iter()
            .filter_map(|db| db.held_error.as_ref().map(|e| format!("{}: {e}", db.db)))
            .collect();
        if why.is_empty() {
            e
        } else {
            Error::Failed(format!("{e} ({})", why.join("; ")))
        }
    })?;
    if let Some(cut_ms) = cut_ms {
        let points =
            futures::future::try_join_all(out.iter().map(|db| cut_at(to, db, cut_ms))).await?;
        for (db, (point, cost)) in out.iter_mut().zip(points) {
            db.point = Some(point);
            db.cut_cost = Some(cost);
        }
    }
    Ok(Preview {
        from: from.name().to_string(),
        to: to.name().to_string(),
        epoch: state.epoch + 1,
        primary_reachable,
        primary_error,
        dbs: out,
        workspaces,
        cut,
        common_ms,
        cut_ms,
    })
}

/// Where the replica of `db` in `to` stands as of `cut_ms`, and what that
/// drops against its newest state.
async fn cut_at(to: &Region, db: &DbPreview, cut_ms: u64) -> Result<(PointInTime, CutCost)> {
    let point = pitr::locate(to, &db.db, &db.branch, cut_ms).await?;
    let first_dropped = point.partial_wal.unwrap_or(point.wal_end + 1);
    let wal_files = (db.replica_wal_end + 1).saturating_sub(first_dropped);
    let rows = if wal_files <= DROPPED_ROWS_READ {
        let location = DbLocation::branch_in_region(to, &db.db, &db.branch)?;
        let side = crate::storage::fork::side(to, &location.path);
        let mut rows = 0;
        for id in first_dropped..=db.replica_wal_end {
            rows += pitr::rows_after(&side, id, cut_ms).await?;
        }
        Some(rows)
    } else {
        None
    };
    let cost = CutCost {
        span_ms: db.held_through_ms.unwrap_or(cut_ms).saturating_sub(cut_ms),
        wal_files,
        rows,
    };
    Ok((point, cost))
}

/// What the preview needs of one database's replica in `to`: its cursor
/// (which must name `from` as home) and its newest consistent state.
async fn look_at_replica(from: &Region, to: &Region, db: &str, branch: &str) -> Result<DbPreview> {
    let replica = DbLocation::branch_in_region(to, db, branch)?;
    // Both at once; the cursor speaks first (a missing replica then says
    // how to make one, not that a database is missing).
    let store = to.store();
    let (cursor, info) = tokio::join!(
        cursor::load(&store, to.name(), db, branch),
        replica.describe()
    );
    let cursor = cursor?;
    match &cursor {
        Some(c) if c.home == from.name() => {}
        Some(c) => {
            return Err(Error::invalid(format!(
                "{db}/{branch} in `{}` replicates from `{}`, not `{}`; fail over from its home",
                to.name(),
                c.home,
                from.name()
            )));
        }
        None => {
            return Err(Error::invalid(format!(
                "`{}` holds no replica of {db}/{branch}; configure replication to it and wait for the seed, then fail over",
                to.name()
            )));
        }
    }
    let info = info?;
    let replica_wal_end = info.reachable_wal_end();
    let synced_us = cursor.and_then(|c| c.synced_us);
    let lag_ms = synced_us.map(|synced| crate::workload::now_us().saturating_sub(synced) / 1000);
    let held = (info.newest_manifest_id, replica_wal_end, synced_us);
    let (held_through_ms, held_error) = match held_through(to, db, branch, held).await {
        Ok(ms) => (Some(ms), None),
        Err(e) => (None, Some(crate::error::one_line(&e.to_string()))),
    };
    Ok(DbPreview {
        db: db.to_string(),
        branch: branch.to_string(),
        replica_manifest: info.newest_manifest_id,
        replica_wal_end,
        lag_ms,
        lag_live: false,
        home_wal_end: None,
        held_through_ms,
        held_error,
        common_cost: None,
        point: None,
        cut_cost: None,
    })
}

/// Through when the replica `db`/`branch` in `to` holds every write (the
/// home's clock, Unix ms), where it holds manifest and WAL run `(manifest,
/// wal_end)` and its cursor last saw it in full sync at `synced_us`: its
/// newest row, or its last full sync when that came later (an idle
/// database), less [`IDLE_SYNC_SLACK_MS`].
pub async fn held_through(
    to: &Region,
    db: &str,
    branch: &str,
    (manifest, wal_end, synced_us): (u64, u64, Option<u64>),
) -> Result<u64> {
    let row_ms = pitr::held_through_ms(to, db, branch, manifest, wal_end).await?;
    let synced_ms = synced_us.map_or(0, |s| (s / 1000).saturating_sub(IDLE_SYNC_SLACK_MS));
    Ok((row_ms.max(0) as u64).max(synced_ms))
}

/// The instant a cut takes every database at, from through when each
/// replica holds every write (`held`): the earliest of them for a common
/// cut, the time asked for otherwise (refused when it lies ahead).
pub fn cut_instant(cut: Cut, held: &[Option<u64>]) -> Result<Option<u64>> {
    match cut {
        Cut::Newest => Ok(None),
        Cut::Common => held
            .iter()
            .copied()
            .collect::<Option<Vec<u64>>>()
            .and_then(|h| h.into_iter().min())
            .map(Some)
            .ok_or_else(|| {
                Error::Failed(
                    "no common instant: what a replica holds could not be read; take each at its newest instead"
                        .into(),
                )
            }),
        Cut::At(ms) if ms > now_ms() => Err(Error::invalid(format!(
            "{} lies in the future; take a time that has passed",
            at_ms(ms)
        ))),
        Cut::At(ms) => Ok(Some(ms)),
    }
}

/// How a failover runs.
#[derive(Default)]
pub struct FailoverOptions {
    /// Overrides of the workspaces' configured address (tests use port 0).
    pub bind: Option<String>,
    pub port: Option<u16>,
    /// Start the workspaces that serve the databases (the CLI and the
    /// engine do; a bench that only forks does not).
    pub serve: bool,
    /// Per database, the workload's acknowledgement log, for an exact RPO.
    pub acks: BTreeMap<String, AckLog>,
    /// The replicator's pins, told at once about every fork.
    pub pins: Option<Arc<BranchPins>>,
    /// Called as each step ends.
    pub on_step: Option<OnStep>,
    /// Pre-provisioned workspaces standing in the new primary (by name,
    /// with their probe tokens): promoted instead of started.
    pub standby: BTreeMap<String, (Arc<Workspace>, String)>,
    /// When the failover was asked for (the command started, the button was
    /// pressed): RTO counts from there to the first write a client gets
    /// acknowledged. Default: when this call began.
    pub asked: Option<Instant>,
}

/// What a failover did.
pub struct FailoverOutcome {
    pub record: OperationRecord,
    pub live: Vec<LiveBranch>,
    pub forks: Vec<Forked>,
    /// The workspaces started in the new primary.
    pub workspaces: Vec<Workspace>,
    /// The pre-provisioned workspaces promoted to writers, by name.
    pub promoted: Vec<String>,
}

/// Fails the databases of `preview` over (see the module's doc). `regions`
/// are every configured region (the log is recorded in those that answer).
pub async fn failover(
    regions: &[Region],
    preview: &Preview,
    engine: &str,
    who: &str,
    mut options: FailoverOptions,
) -> Result<FailoverOutcome> {
    let (from, to) = (
        find_region(regions, &preview.from)?,
        find_region(regions, &preview.to)?,
    );
    // Two failovers at once: the second to look sees the first's epoch.
    // The log read here, with the failover's own event, is what the
    // workspaces start from and what the event is appended after: no
    // second read on the path of RTO.
    let checked = async {
        let log = control::read(&to).await?;
        let current = ControlState::fold(log.values().cloned().collect()).epoch;
        if current + 1 != preview.epoch {
            return Err(Error::invalid(format!(
                "another failover (epoch {current}) happened since this one was previewed; look again"
            )));
        }
        Ok(log)
    };
    let mut steps = Steps::asked_at(options.on_step.take(), options.asked);
    let started_ms = steps.asked_ms();
    let epoch = preview.epoch;
    let name = format!("failover-{epoch}");

    // Fence the old writers (when their region answers) while the forks
    // are made: neither waits for the other.
    let fence = async {
        if !preview.primary_reachable {
            return None;
        }
        let since = Instant::now();
        let mut fenced = Vec::new();
        let mut failed = Vec::new();
        for db in &preview.dbs {
            match fence_writer(&from, &db.db, &db.branch).await {
                Ok(()) => fenced.push(format!("{}/{}", db.db, db.branch)),
                Err(e) => failed.push(format!("{}/{}: {e}", db.db, db.branch)),
            }
        }
        Some((since, fenced, failed))
    };
    let forks = async {
        let since = Instant::now();
        let made = futures::future::join_all(preview.dbs.iter().map(|db| {
            let guard = options.pins.as_ref().map(|p| p.forking(&db.db, &db.branch));
            let to = &to;
            let name = &name;
            async move {
                // Boxed: a fork's futures (a SlateDB writer's open among
                // them) are large, and a debug build's caller holds them
                // on a thread's stack otherwise.
                let forked = match &db.point {
                    Some(point) => {
                        Box::pin(fork_at(to, &db.db, &db.branch, name, Some(point))).await
                    }
                    None => {
                        Box::pin(fork_seen(to, &db.db, &db.branch, name, db.replica_manifest)).await
                    }
                };
                drop(guard);
                forked
            }
        }))
        .await;
        (since, made)
    };
    // Nothing is fenced before the look at the epoch; the forks are made
    // meanwhile (those made are deleted if it finds another failover, and
    // a fork never takes a name already made: another failover's branch
    // is refused, not replaced).
    let checked_then_fenced = async {
        let log = checked.await?;
        Ok::<_, Error>((log, fence.await))
    };
    let (looked, (fork_since, made)) = tokio::join!(checked_then_fenced, forks);
    let (log, fenced) = match looked {
        Ok((log, fenced)) => (Ok(log), fenced),
        Err(e) => (Err(e), None),
    };
    let forked_ms = now_ms();
    if let Some((since, fenced, failed)) = fenced {
        let ok = failed.is_empty();
        let detail = if ok {
            format!("fenced {}", fenced.join(", "))
        } else {
            format!("could not fence {}", failed.join("; "))
        };
        steps.done(
            format!("fence old writers in {}", from.name()),
            since,
            ok,
            detail,
        );
    }
    let mut forked = Vec::new();
    let mut errors = Vec::new();
    for result in made {
        match result {
            Ok(f) => forked.push(f),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let fork_detail = forked
        .iter()
        .map(|f| {
            let rows = match f.rows_written {
                0 => String::new(),
                n => format!(", {n} rows of the next written as of the cut"),
            };
            format!(
                "{}/{} off {} (manifest {}, WAL {}, {} WAL files copied{rows}, {} ms)",
                f.db, f.branch, f.source, f.manifest_id, f.wal_end, f.wal_copied, f.took_ms
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    steps.done(
        format!("fork live branches in {}", to.name()),
        fork_since,
        errors.is_empty(),
        if errors.is_empty() {
            fork_detail
        } else {
            errors.join("; ")
        },
    );
    if !errors.is_empty() || log.is_err() {
        // Nothing is recorded as live: the forks that were made are deleted.
        for f in &forked {
            let _ =
                crate::storage::fork::delete_branch(&to, &f.db, &f.branch, Some(&f.source)).await;
        }
        log?;
        return Err(Error::Failed(format!(
            "the failover stopped before anything changed: {}",
            errors.join("; ")
        )));
    }
    let log = log?;
    if let Some(pins) = &options.pins {
        for f in &forked {
            pins.add(&branch_event(f, BranchReason::Failover, None));
        }
    }

    // Record it: from now on the new branches are live.
    let since = Instant::now();
    let live: Vec<LiveBranch> = forked
        .iter()
        .map(|f| LiveBranch {
            db: f.db.clone(),
            branch: f.branch.clone(),
            region: to.name().to_string(),
        })
        .collect();
    let event = Event::FailedOver {
        epoch,
        from: from.name().to_string(),
        to: to.name().to_string(),
        live: live.clone(),
        forks: forked
            .iter()
            .map(|f| branch_event(f, BranchReason::Failover, None))
            .collect(),
    };
    let log_regions = log_regions(&to, &from, preview.primary_reachable);
    let serving = options.serve && !preview.workspaces.is_empty();
    // The workspaces serve the state with this event in it (their refresh
    // reads the one recorded later and finds it served already).
    let state = serving.then(|| {
        ControlState::fold(
            log.values()
                .cloned()
                .chain([control::next_envelope(&log, engine, who, event.clone(), 0).1])
                .collect(),
        )
    });
    // The new writers open while the epoch is recorded; no client writes
    // through them before it stands (see `Recorded`).
    let (recorded_tx, recorded) = Recorded::gate();
    let record = async {
        // With the primary gone the log just read is all there is to see.
        let appended = if preview.primary_reachable {
            control::append(&log_regions, engine, who, event).await
        } else {
            control::append_after(&log_regions, &log, engine, who, event).await
        };
        recorded_tx.send_replace(Some(appended.is_ok()));
        (appended, since.elapsed())
    };
    let serve = async {
        match &state {
            Some(state) => serve(&to, state, preview, &live, &options, recorded).await,
            None => Served::default(),
        }
    };
    let ((appended, record_took), served) = tokio::join!(record, serve);
    let appended = appended?;
    steps.took(
        format!("record epoch {epoch}"),
        record_took.as_millis() as u64,
        true,
        appended.summary(),
    );
    let Served {
        workspaces,
        endpoints,
        targets,
        promoted,
        steps: serve_steps,
    } = served;
    for (name, ms, ok, detail) in serve_steps {
        steps.took(name, ms, ok, detail);
    }
    let (rto, rto_to) = if serving {
        // RTO ends at the first write acknowledged through a new endpoint.
        first_write(&targets, &mut steps).await
    } else {
        (
            Some(steps.elapsed_ms()),
            "the forks: no workspace serves these databases".to_string(),
        )
    };

    // RPO, after the fact (not part of RTO): exact where acks exist.
    let mut rpo = Vec::new();
    for (f, db) in forked.iter().zip(&preview.dbs) {
        rpo.push(measure_rpo(&to, f, db, options.acks.get(&f.db), forked_ms).await);
    }
    let ok = steps.steps.iter().all(|s| s.ok);
    let record = OperationRecord {
        id: name.clone(),
        kind: OperationKind::Failover,
        from: from.name().to_string(),
        to: to.name().to_string(),
        started_ms,
        rto_ms: rto,
        rto_to,
        rpo,
        steps: steps.steps,
        endpoints,
        outcome: if ok {
            format!("{} is live in {}", name, to.name())
        } else {
            format!(
                "{} is live in {}, with failed steps (see them)",
                name,
                to.name()
            )
        },
        ok,
    };
    // The record is not part of RTO.
    super::record(&log_regions, engine, who, &record).await;
    Ok(FailoverOutcome {
        record,
        live,
        forks: forked,
        workspaces,
        promoted,
    })
}

/// What the workspaces of a failover became.
#[derive(Default)]
struct Served {
    /// Started here (on demand).
    workspaces: Vec<Workspace>,
    endpoints: Vec<String>,
    /// Where to probe: (address, indexes, token) of every serving workspace.
    targets: Vec<(SocketAddr, Vec<u32>, String)>,
    /// Pre-provisioned ones that took the new branches.
    promoted: Vec<String>,
    /// (name, ms, ok, detail): they run beside the record of the epoch.
    steps: Vec<(String, u64, bool, String)>,
}

/// Serves the failed-over databases from `to`: each workspace of the
/// preview, promoted where one stands by, started otherwise; none writes
/// before `recorded` says the failover stands.
async fn serve(
    to: &Region,
    state: &ControlState,
    preview: &Preview,
    live: &[LiveBranch],
    options: &FailoverOptions,
    recorded: Recorded,
) -> Served {
    let mut served = Served::default();
    let token = crate::workspace::commands::probe_token();
    let branches: BTreeMap<String, String> = live
        .iter()
        .map(|l| (l.db.clone(), l.branch.clone()))
        .collect();
    for ws_name in &preview.workspaces {
        let since = Instant::now();
        // Pre-provisioned: the standing follower takes the new branches.
        if let Some((ws, standby_token)) = options.standby.get(ws_name) {
            let result = ws.promote_after(&branches, recorded.clone()).await;
            let ok = result.is_ok();
            served.steps.push((
                format!("promote pre-provisioned workspace {ws_name}"),
                since.elapsed().as_millis() as u64,
                ok,
                match result {
                    Ok(()) => format!("writing at {}", ws.addr()),
                    Err(e) => e.to_string(),
                },
            ));
            if ok {
                let status = ws.status();
                served
                    .endpoints
                    .extend(status.endpoints.iter().map(|e| e.url.clone()));
                let indexes = status.endpoints.iter().map(|e| e.index).collect();
                served
                    .targets
                    .push((ws.addr(), indexes, standby_token.clone()));
                served.promoted.push(ws_name.clone());
            }
            continue;
        }
        let start = StartOptions {
            bind: options.bind.clone(),
            port: options.port,
            probe_token: Some(token.clone()),
            just_forked: branches.clone(),
            serve_after: Some(recorded.clone()),
            ..StartOptions::default()
        };
        let step = format!("start workspace {ws_name} in {}", to.name());
        match Workspace::start(to.clone(), state, ws_name, start).await {
            Ok(ws) => {
                let status = ws.status();
                served
                    .endpoints
                    .extend(status.endpoints.iter().map(|e| e.url.clone()));
                served.steps.push((
                    step,
                    since.elapsed().as_millis() as u64,
                    true,
                    format!("listening on {}", ws.addr()),
                ));
                let indexes = status.endpoints.iter().map(|e| e.index).collect();
                served.targets.push((ws.addr(), indexes, token.clone()));
                served.workspaces.push(ws);
            }
            Err(e) => served.steps.push((
                step,
                since.elapsed().as_millis() as u64,
                false,
                e.to_string(),
            )),
        }
    }
    served
}

/// The regions a failover records in: the new primary, and the old one
/// when it answers (a sync carries the log there later otherwise).
fn log_regions(to: &Region, from: &Region, from_answers: bool) -> Vec<Region> {
    let mut regions = vec![to.clone()];
    if from_answers {
        regions.push(from.clone());
    }
    regions
}

/// The control-log event for a fork.
pub fn branch_event(f: &Forked, reason: BranchReason, expires_ms: Option<u64>) -> BranchForked {
    BranchForked {
        db: f.db.clone(),
        branch: f.branch.clone(),
        source: f.source.clone(),
        region: f.region.clone(),
        reason,
        manifest_id: f.manifest_id,
        wal_from: Some(f.wal_from),
        wal_end: f.wal_end,
        shadow: f.shadow.clone(),
        pinned: f.pinned.clone(),
        expires_ms,
    }
}

/// Opens (and closes) a writer of `db`/`branch` at its home: SlateDB bumps
/// the writer epoch, so the old writer's next write fails as fenced.
pub(crate) async fn fence_writer(home: &Region, db: &str, branch: &str) -> Result<()> {
    let location = DbLocation::branch_in_region(home, db, branch)?;
    let fenced = async {
        let writer = location.open_writer(false).await?;
        location
            .bounded("close", FENCE_TIMEOUT, writer.close())
            .await
    };
    tokio::time::timeout(FENCE_TIMEOUT, fenced)
        .await
        .map_err(|_| Error::Failed(format!("no answer within {} s", FENCE_TIMEOUT.as_secs())))?
}

/// Probes `targets` (address, indexes, probe token) one endpoint after the
/// other until one acknowledges a durable write: the end of RTO. Returns
/// RTO (since the operation began) and what it was measured to.
pub(crate) async fn first_write(
    targets: &[(SocketAddr, Vec<u32>, String)],
    steps: &mut Steps,
) -> (Option<u64>, String) {
    let since = Instant::now();
    let mut errors = Vec::new();
    for (addr, indexes, token) in targets {
        for &index in indexes {
            match probe(*addr, token, index).await {
                Ok(()) => {
                    let rto = steps.elapsed_ms();
                    let url = connection_string("…", *addr, index);
                    steps.done(
                        "first write through the new endpoint",
                        since,
                        true,
                        url.clone(),
                    );
                    return (
                        Some(rto),
                        format!("the first write acknowledged through {url}"),
                    );
                }
                Err(e) => errors.push(format!("{addr}/{index}: {e}")),
            }
        }
    }
    steps.done(
        "first write through the new endpoint",
        since,
        false,
        errors.join("; "),
    );
    (None, "no endpoint acknowledged a write".into())
}

/// Where a client on this machine reaches a workspace listening on `addr`
/// (loopback when it listens on every interface).
pub(crate) fn dial_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// One durable write through the workspace at `addr`, as a client makes it.
pub(crate) async fn probe(
    addr: SocketAddr,
    token: &str,
    index: u32,
) -> std::result::Result<(), String> {
    let target = dial_address(addr);
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(target),
    )
    .await
    .map_err(|_| "no connection within 5 s".to_string())?
    .map_err(|e| e.to_string())?;
    let index = index.to_string();
    let words: [&[u8]; 3] = [
        crate::workspace::commands::PROBE_COMMAND.as_bytes(),
        token.as_bytes(),
        index.as_bytes(),
    ];
    tokio::time::timeout(
        Duration::from_secs(10),
        crate::workspace::protocol::call(&mut stream, &words),
    )
    .await
    .map_err(|_| "no reply within 10 s".to_string())?
    .map(|_| ())
}

/// What `f` lacks: against the acknowledgement log when there is one
/// (records acknowledged by the time the fork was made), else the
/// replica's lag.
async fn measure_rpo(
    to: &Region,
    f: &Forked,
    db: &DbPreview,
    acks: Option<&AckLog>,
    forked_ms: u64,
) -> DbRpo {
    let mut rpo = DbRpo {
        db: f.db.clone(),
        branch: f.branch.clone(),
        lag_ms: db.lag_ms,
        missing_records: None,
        acknowledged: None,
        missing_span_ms: None,
        measured_at_ms: forked_ms,
    };
    let Some(acks) = acks else {
        return rpo;
    };
    let Ok(Some(batches)) = acks.read() else {
        return rpo;
    };
    let Ok(location) = DbLocation::branch_in_region(to, &f.db, &f.branch) else {
        return rpo;
    };
    let Ok(report) = verify(&location, None).await else {
        return rpo;
    };
    let cut_us = forked_ms * 1000;
    let held = report.highest_gap_free_seq;
    let mut acknowledged = 0;
    let mut missing = 0;
    let mut oldest_missing_us = None::<u64>;
    for b in batches.iter().filter(|b| b.acked_us <= cut_us) {
        acknowledged += b.last - b.first + 1;
        if b.last > held {
            missing += b.last - b.first.max(held + 1) + 1;
            oldest_missing_us = Some(oldest_missing_us.map_or(b.acked_us, |o| o.min(b.acked_us)));
        }
    }
    rpo.acknowledged = Some(acknowledged);
    rpo.missing_records = Some(missing);
    rpo.missing_span_ms = Some(oldest_missing_us.map_or(0, |o| cut_us.saturating_sub(o) / 1000));
    rpo
}
