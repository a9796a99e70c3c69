//! Planned switchover and failback (RPO zero): the live branches keep their
//! names and move their home.
//!
//! [`plan`] shows what will move and what the target still lacks. Then
//! [`switchover`]: stop writes at the current home (the workspaces serving
//! there refuse writes with a clear error, then stop; every other writer is
//! fenced), copy the home's last files to the target so its replica holds
//! the home's last WAL file, check that the target holds every SST the
//! branches read in place, record the move with a new epoch, swap the
//! replication cursors (the target is the home now, the old home a replica
//! of it), open the writers at the target by starting the workspaces there
//! from the log's users, roles, firewall rules and pipelines, and measure
//! RTO to the first write acknowledged through the new endpoint.
//!
//! A failback is a switchover back to the region a failover left: the live
//! branch has flowed back there since the failover, so only the files made
//! since then cross, never the whole database.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStoreExt;
use serde::Serialize;

use super::failover::{fence_writer, first_write};
use super::{OnStep, Steps, find_region, now_ms};
use crate::control::event::{
    BranchReason, DbRpo, Event, LiveBranch, OperationKind, OperationRecord,
};
use crate::control::state::ControlState;
use crate::control::{self};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::replication::pins::{BranchPins, NoPins, Pins};
use crate::replication::status::human_bytes;
use crate::replication::{Flow, ReplicationOptions, replicator};
use crate::storage::DbLocation;
use crate::storage::cursor::{self, ReplicaCursor};
use crate::storage::files::{Dir, FileRef};
use crate::storage::fork::side;
use crate::workload::acks::AckLog;
use crate::workload::verify::verify;
use crate::workspace::{StartOptions, Workspace};

/// One branch as a switchover would find it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SwitchDb {
    pub db: String,
    pub branch: String,
    /// Files (and bytes) the home holds that the target lacks now.
    pub files_behind: u64,
    pub bytes_behind: u64,
    /// The branch's own files at the home (not counting what it reads of
    /// the branch it was forked from).
    pub branch_bytes: u64,
    /// The whole database as the branch reads it: its files and the SSTs
    /// it reads in place.
    pub database_bytes: u64,
}

/// What a switchover would do.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SwitchPlan {
    pub kind: OperationKind,
    pub from: String,
    pub to: String,
    pub epoch: u64,
    pub dbs: Vec<SwitchDb>,
    /// Workspaces that will serve these databases from `to`.
    pub workspaces: Vec<String>,
}

impl SwitchPlan {
    /// What a DBA reads before confirming.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "{} {} → {} (epoch {}): writes stop in {} until {} holds its last WAL file; nothing acknowledged is lost.",
            capital(self.kind.name()),
            self.from,
            self.to,
            self.epoch,
            self.from,
            self.to
        )];
        for db in &self.dbs {
            lines.push(format!(
                "  {}/{}: {} file(s), {} still to copy; the database is {}",
                db.db,
                db.branch,
                db.files_behind,
                human_bytes(db.bytes_behind),
                human_bytes(db.database_bytes)
            ));
        }
        if self.workspaces.is_empty() {
            lines.push("  no workspace serves these databases".into());
        } else {
            lines.push(format!(
                "  workspaces moved to {}: {}",
                self.to,
                self.workspaces.join(", ")
            ));
        }
        lines.join("\n")
    }
}

fn capital(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Looks at both regions: what moving the live branches of `dbs` from
/// `from` to `to` would do. Writes nothing.
pub async fn plan(
    from: &Region,
    to: &Region,
    state: &ControlState,
    dbs: &[String],
    kind: OperationKind,
) -> Result<SwitchPlan> {
    if from.name() == to.name() {
        return Err(Error::invalid(format!(
            "a {} moves to another region; `{}` is both",
            kind.name(),
            to.name()
        )));
    }
    if dbs.is_empty() {
        return Err(Error::invalid(format!(
            "no database to move; name one with --db (a {} moves live branches written in `{}`)",
            kind.name(),
            from.name()
        )));
    }
    let mut out = Vec::new();
    for db in dbs {
        let branch = state.live_branch(db).to_string();
        if kind == OperationKind::Failback
            && state
                .branch(db, &branch)
                .is_none_or(|b| b.fork.reason != BranchReason::Failover)
        {
            return Err(Error::invalid(format!(
                "the live branch of `{db}` ({branch}) was not made by a failover: there is nothing to fail back; use `lifeboat switchover` to move it"
            )));
        }
        let home_cursor = cursor::load(&from.store(), from.name(), db, &branch).await?;
        if let Some(c) = home_cursor {
            return Err(Error::invalid(format!(
                "{db}/{branch} is written in `{}`, not `{}`; move it from there",
                c.home,
                from.name()
            )));
        }
        let home = DbLocation::branch_in_region(from, db, &branch)?;
        home.require().await?;
        match cursor::load(&to.store(), to.name(), db, &branch).await? {
            Some(c) if c.home == from.name() => {}
            _ => {
                return Err(Error::invalid(format!(
                    "`{}` holds no replica of {db}/{branch}; replicate it there first (`lifeboat replicate --db {db}`), then {}",
                    to.name(),
                    kind.name()
                )));
            }
        }
        let (files_behind, bytes_behind) = behind(from, to, db, &branch).await?;
        let branch_bytes = home.describe().await?.size_bytes;
        let read_in_place = pinned_bytes(from, state, db, &branch).await?;
        out.push(SwitchDb {
            db: db.clone(),
            branch,
            files_behind,
            bytes_behind,
            branch_bytes,
            database_bytes: branch_bytes + read_in_place,
        });
    }
    let workspaces = state
        .workspaces
        .values()
        .filter(|ws| ws.databases.iter().any(|a| dbs.contains(&a.db)))
        .map(|ws| ws.name.clone())
        .collect();
    Ok(SwitchPlan {
        kind,
        from: from.name().to_string(),
        to: to.name().to_string(),
        epoch: state.epoch + 1,
        dbs: out,
        workspaces,
    })
}

/// Data files (and their bytes) of `db`/`branch` at `from` that `to`
/// lacks: what the last copy has to move. Manifests are left out: a
/// replica gets the newest ones, never those the home superseded. So is
/// the history a replica never copies: WAL at or below the home's newest
/// replay point, and SSTs its newest manifest does not name (an estimate:
/// what the home's checkpoints keep besides is left out).
async fn behind(from: &Region, to: &Region, db: &str, branch: &str) -> Result<(u64, u64)> {
    let path = crate::storage::branch_path(db, branch);
    let (home, replica) = (side(from, &path), side(to, &path));
    let newest = match home.list(Dir::Manifest, None).await?.last() {
        Some((file @ FileRef::Manifest(id), _)) => match home.read(file).await? {
            Some(bytes) => Some(
                crate::storage::cut::ManifestView::parse(*id, bytes)
                    .await
                    .map_err(Error::Failed)?,
            ),
            None => None,
        },
        _ => None,
    };
    let wanted = |file: &FileRef| match (file, &newest) {
        (FileRef::Wal(id), Some(m)) => *id > m.replay_after_wal_id,
        (FileRef::Sst(ulid), Some(m)) => m.ssts.contains(ulid),
        _ => true,
    };
    let (mut files, mut bytes) = (0, 0);
    for dir in [Dir::Wal, Dir::Compacted, Dir::Compactions] {
        let there: std::collections::BTreeSet<FileRef> = replica
            .list(dir, None)
            .await?
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        for (file, meta) in home.list(dir, None).await? {
            if !there.contains(&file) && wanted(&file) {
                files += 1;
                bytes += meta.size;
            }
        }
    }
    Ok((files, bytes))
}

/// What `to`'s copy of `db`/`branch` lacks of the home's last state, if
/// anything: the home's newest manifest, and every WAL file up to the
/// home's last, with no gap for a reader to stop at.
async fn holds_the_home(
    from: &Region,
    to: &Region,
    db: &str,
    branch: &str,
) -> Result<Option<String>> {
    let home = DbLocation::branch_in_region(from, db, branch)?
        .describe()
        .await?;
    let copy = DbLocation::branch_in_region(to, db, branch)?
        .describe()
        .await?;
    if copy.newest_manifest_id < home.newest_manifest_id {
        return Ok(Some(format!(
            "{} holds manifest {}, the home {}",
            to.name(),
            copy.newest_manifest_id,
            home.newest_manifest_id
        )));
    }
    let home_wal = home.newest_wal_id.unwrap_or(0);
    // A gap the home has too is the home's state; any other is a lack.
    let gap = copy.wal_gaps.iter().find(|g| !home.wal_gaps.contains(g));
    // WAL at or below the home's replay point is in its SSTs: history, which
    // a replica does not copy (the new writer never reads it).
    let wal_needed = home_wal > home.replay_after_wal_id;
    if wal_needed && copy.newest_wal_id.unwrap_or(0) < home_wal || gap.is_some() {
        return Ok(Some(format!(
            "{} does not hold every WAL file up to the home's last ({home_wal}){}",
            to.name(),
            gap.map_or(String::new(), |g| format!("; it lacks {g}"))
        )));
    }
    Ok(None)
}

/// The SSTs `db`/`branch` reads in place (its fork's pins): (branch, path).
fn pinned(state: &ControlState, db: &str, branch: &str) -> Vec<(String, object_store::path::Path)> {
    let Some(record) = state.branch(db, branch) else {
        return Vec::new();
    };
    record
        .fork
        .pinned
        .iter()
        .flat_map(|(source, ssts)| {
            let base = crate::storage::branch_path(db, source);
            ssts.iter()
                .map(move |ulid| (source.clone(), FileRef::Sst(ulid.clone()).path(&base)))
        })
        .collect()
}

async fn pinned_bytes(
    region: &Region,
    state: &ControlState,
    db: &str,
    branch: &str,
) -> Result<u64> {
    let store = region.store();
    let mut bytes = 0;
    for (_, path) in pinned(state, db, branch) {
        if let Ok(meta) = store.head(&path).await {
            bytes += meta.size;
        }
    }
    Ok(bytes)
}

/// Copies to `to` every SST `db`/`branch` reads in place that `to` lacks
/// (the home's garbage collector there may have taken one the fork still
/// reads). Returns (files, bytes) copied.
async fn repair_pinned(
    from: &Region,
    to: &Region,
    state: &ControlState,
    db: &str,
    branch: &str,
) -> Result<(u64, u64)> {
    let (source, target) = (from.store(), to.store());
    let (mut files, mut bytes) = (0, 0);
    for (_, path) in pinned(state, db, branch) {
        if target.head(&path).await.is_ok() {
            continue;
        }
        let data = source
            .get(&path)
            .await
            .map_err(|e| Error::store(from.name(), &format!("reading {path}"), &e))?
            .bytes()
            .await
            .map_err(|e| Error::store(from.name(), &format!("reading {path}"), &e))?;
        bytes += data.len() as u64;
        target
            .put(&path, data.into())
            .await
            .map_err(|e| Error::store(to.name(), &format!("writing {path}"), &e))?;
        files += 1;
    }
    Ok((files, bytes))
}

/// How a switchover runs.
#[derive(Default)]
pub struct SwitchOptions {
    /// Overrides of the workspaces' configured address (tests use port 0).
    pub bind: Option<String>,
    pub port: Option<u16>,
    /// Start the workspaces that serve the databases at the target.
    pub serve: bool,
    /// Workspaces of this process serving these databases at the current
    /// home: they refuse writes, then stop, before anything moves.
    pub serving: Vec<Workspace>,
    /// Per database, the workload's acknowledgement log (RPO checked to
    /// be zero).
    pub acks: BTreeMap<String, AckLog>,
    /// The replicator's pins: told at once that the homes moved.
    pub pins: Option<Arc<BranchPins>>,
    pub on_step: Option<OnStep>,
    pub replication: Option<ReplicationOptions>,
    /// When the move was asked for: RTO counts from there.
    pub asked: Option<std::time::Instant>,
}

/// What a switchover did.
pub struct SwitchOutcome {
    pub record: OperationRecord,
    pub live: Vec<LiveBranch>,
    /// The workspaces started at the target.
    pub workspaces: Vec<Workspace>,
    /// Bytes the switchover itself copied (the last files, and any SST
    /// read in place the target lacked).
    pub bytes_copied: u64,
    /// The branches' own bytes and the whole databases' (see [`SwitchDb`]).
    pub branch_bytes: u64,
    pub database_bytes: u64,
}

/// Moves the live branches of `plan` (see the module's doc).
pub async fn switchover(
    regions: &[Region],
    plan: &SwitchPlan,
    engine: &str,
    who: &str,
    options: SwitchOptions,
) -> Result<SwitchOutcome> {
    let (from, to) = (
        find_region(regions, &plan.from)?,
        find_region(regions, &plan.to)?,
    );
    let state = control::load_all(&[to.clone(), from.clone()]).await?;
    if state.epoch + 1 != plan.epoch {
        return Err(Error::invalid(format!(
            "another failover or switchover (epoch {}) happened since this one was planned; look again",
            state.epoch
        )));
    }
    let mut steps = Steps::asked_at(options.on_step, options.asked);
    let started_ms = steps.asked_ms();
    let dbs: Vec<String> = plan.dbs.iter().map(|d| d.db.clone()).collect();
    let name = format!("{}-{}", plan.kind.name(), plan.epoch);

    // 1. Writes stop at the current home: the workspaces here say why,
    //    and every other writer is fenced.
    let since = Instant::now();
    let stopped_ms = now_ms();
    for ws in &options.serving {
        ws.freeze(&dbs, to.name());
    }
    for ws in options.serving {
        let name = ws.name().to_string();
        if let Err(e) = ws.stop().await {
            tracing::debug!(workspace = %name, "stopping for the switchover: {e}");
        }
    }
    let mut fence_errors = Vec::new();
    for db in &plan.dbs {
        if let Err(e) = fence_writer(&from, &db.db, &db.branch).await {
            fence_errors.push(format!("{}/{}: {e}", db.db, db.branch));
        }
    }
    if !fence_errors.is_empty() {
        return Err(Error::Failed(format!(
            "could not stop the writers in {}: {}; nothing moved (start the workspaces there again)",
            from.name(),
            fence_errors.join("; ")
        )));
    }
    steps.done(
        format!("stop writes in {}", from.name()),
        since,
        true,
        format!("{} fenced", dbs.join(", ")),
    );

    // 2. The target holds the home's last files.
    let since = Instant::now();
    let pins: Arc<dyn Pins> = match &options.pins {
        Some(p) => Arc::clone(p) as Arc<dyn Pins>,
        None => Arc::new(NoPins),
    };
    let flows: Vec<Flow> = plan
        .dbs
        .iter()
        .map(|d| Flow::new(&d.db, &d.branch, &from, &to))
        .collect();
    let mut bytes_copied = 0;
    let mut copy_errors = Vec::new();
    for (flow, result) in
        replicator::once(flows, options.replication.clone().unwrap_or_default(), pins).await
    {
        match result {
            Ok(status) => bytes_copied += status.bytes_copied,
            Err(e) => copy_errors.push(format!("{}: {e}", flow.label())),
        }
    }
    for db in &plan.dbs {
        if copy_errors.is_empty()
            && let Some(lacking) = holds_the_home(&from, &to, &db.db, &db.branch).await?
        {
            copy_errors.push(format!("{}/{}: {lacking}", db.db, db.branch));
        }
    }
    if !copy_errors.is_empty() {
        return Err(Error::Failed(format!(
            "the last files did not reach {}: {}; nothing moved, writes are stopped in {} (start its workspaces again, or retry)",
            to.name(),
            copy_errors.join("; "),
            from.name()
        )));
    }
    let mut repaired = (0, 0);
    for db in &plan.dbs {
        let (files, bytes) = repair_pinned(&from, &to, &state, &db.db, &db.branch).await?;
        repaired.0 += files;
        repaired.1 += bytes;
    }
    bytes_copied += repaired.1;
    steps.done(
        format!("copy the last files to {}", to.name()),
        since,
        true,
        format!(
            "{} copied{}",
            human_bytes(bytes_copied),
            if repaired.0 > 0 {
                format!(
                    " ({} SST(s) read in place were missing and copied too)",
                    repaired.0
                )
            } else {
                String::new()
            }
        ),
    );

    // 3. The move: recorded, then the cursors swapped.
    let since = Instant::now();
    let live: Vec<LiveBranch> = plan
        .dbs
        .iter()
        .map(|d| LiveBranch {
            db: d.db.clone(),
            branch: d.branch.clone(),
            region: to.name().to_string(),
        })
        .collect();
    let log_regions = vec![to.clone(), from.clone()];
    let appended = control::append(
        &log_regions,
        engine,
        who,
        Event::HomeMoved {
            epoch: plan.epoch,
            from: from.name().to_string(),
            to: to.name().to_string(),
            live: live.clone(),
            kind: plan.kind,
        },
    )
    .await?;
    if let Some(pins) = &options.pins {
        for l in &live {
            pins.home_moved(&l.db, &l.branch, &l.region);
        }
    }
    for d in &plan.dbs {
        // A flow's cursor save in flight lands first (it saw no move), so
        // the forget below is the last word at the new home.
        let lock = options
            .pins
            .as_ref()
            .and_then(|p| crate::replication::pins::Pins::cursor_lock(&**p, &d.db, &d.branch));
        let _swapping = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        cursor::forget(&to, &d.db, &d.branch).await?;
        let mut replica = ReplicaCursor::new(to.name(), &d.db, &d.branch);
        replica.saved_us = crate::workload::now_us();
        cursor::save(&from.store(), from.name(), &replica).await?;
    }
    steps.done(
        format!("move the home to {} (epoch {})", to.name(), plan.epoch),
        since,
        true,
        appended.summary(),
    );

    // 4. Writers at the target, behind the workspaces' endpoints.
    let mut workspaces = Vec::new();
    let mut endpoints = Vec::new();
    let mut targets: Vec<(SocketAddr, Vec<u32>, String)> = Vec::new();
    let token = crate::workspace::commands::probe_token();
    if options.serve && !plan.workspaces.is_empty() {
        let state = control::load(&to).await?;
        for ws_name in &plan.workspaces {
            let since = Instant::now();
            let start = StartOptions {
                bind: options.bind.clone(),
                port: options.port,
                probe_token: Some(token.clone()),
                ..StartOptions::default()
            };
            match Workspace::start(to.clone(), &state, ws_name, start).await {
                Ok(ws) => {
                    let status = ws.status();
                    endpoints.extend(status.endpoints.iter().map(|e| e.url.clone()));
                    targets.push((
                        ws.addr(),
                        status.endpoints.iter().map(|e| e.index).collect(),
                        token.clone(),
                    ));
                    steps.done(
                        format!("start workspace {ws_name} in {}", to.name()),
                        since,
                        true,
                        format!(
                            "listening on {} with {} user(s), {} firewall rule(s), {} pipeline(s)",
                            ws.addr(),
                            status.users.len(),
                            status.firewall.len(),
                            status.pipelines.len()
                        ),
                    );
                    workspaces.push(ws);
                }
                Err(e) => steps.done(
                    format!("start workspace {ws_name} in {}", to.name()),
                    since,
                    false,
                    e.to_string(),
                ),
            }
        }
    } else {
        let since = Instant::now();
        let mut errors = Vec::new();
        for d in &plan.dbs {
            let location = DbLocation::branch_in_region(&to, &d.db, &d.branch)?;
            match location.open_writer(false).await {
                Ok(db) => {
                    if let Err(e) = db.close().await {
                        errors.push(format!("{}/{}: {e}", d.db, d.branch));
                    }
                }
                Err(e) => errors.push(format!("{}/{}: {e}", d.db, d.branch)),
            }
        }
        steps.done(
            format!("open the writers in {}", to.name()),
            since,
            errors.is_empty(),
            if errors.is_empty() {
                "no workspace serves these databases".into()
            } else {
                errors.join("; ")
            },
        );
    }
    let (rto, rto_to) = if targets.is_empty() {
        let opened = steps.steps.iter().all(|s| s.ok);
        (
            opened.then(|| steps.elapsed_ms()),
            format!("the writers' open in {}", to.name()),
        )
    } else {
        first_write(&targets, &mut steps).await
    };

    // RPO: zero by construction; checked against the acks where they exist.
    let mut rpo = Vec::new();
    for d in &plan.dbs {
        let mut one = DbRpo {
            db: d.db.clone(),
            branch: d.branch.clone(),
            lag_ms: Some(0),
            missing_records: None,
            acknowledged: None,
            missing_span_ms: None,
            measured_at_ms: stopped_ms,
        };
        if let Some(acks) = options.acks.get(&d.db)
            && let Ok(location) = DbLocation::branch_in_region(&to, &d.db, &d.branch)
            && let Ok(report) = verify(&location, Some(acks)).await
            && let Some(check) = report.acks
        {
            one.acknowledged = Some(check.acked_records);
            one.missing_records = Some(check.missing_acked);
            one.missing_span_ms = Some(0);
        }
        rpo.push(one);
    }
    let branch_bytes = plan.dbs.iter().map(|d| d.branch_bytes).sum();
    let database_bytes = plan.dbs.iter().map(|d| d.database_bytes).sum();
    let ok = steps.steps.iter().all(|s| s.ok);
    let record = OperationRecord {
        id: name.clone(),
        kind: plan.kind,
        from: from.name().to_string(),
        to: to.name().to_string(),
        started_ms,
        rto_ms: rto,
        rto_to,
        rpo,
        steps: steps.steps,
        endpoints,
        outcome: format!(
            "{} written in {}{}; copied {} of a {} database",
            dbs.join(", "),
            to.name(),
            if ok {
                ""
            } else {
                ", with failed steps (see them)"
            },
            human_bytes(bytes_copied),
            human_bytes(database_bytes)
        ),
        ok,
    };
    super::record(&log_regions, engine, who, &record).await;
    Ok(SwitchOutcome {
        record,
        live,
        workspaces,
        bytes_copied,
        branch_bytes,
        database_bytes,
    })
}
