//! Test failover (a drill): what a failover would do, on branches that are
//! thrown away, with production left alone.
//!
//! Drill branches are forked off the replicas in the secondary (never
//! writing into them), served by a drill workspace with production's users
//! and rules (pipelines off) on a port of its own, probed with one write
//! (RTO), then verified: each drill branch must hold exactly what its
//! replica held at the fork (key count and checksum, read through a view
//! of the replica as of the fork's manifest and WAL file), every
//! acknowledged workload record up to it, and the user's smoke commands
//! must answer without error. Nothing is written in the primary, not even
//! the control log: the drill is recorded in the secondary (a control-log
//! sync carries it over later). Drill branches expire at their time to
//! live ([`expire`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::failover::{branch_event, probe};
use super::{OnStep, Steps, now_ms};
use crate::control::event::{BranchReason, DbRpo, Event, OperationKind, OperationRecord};
use crate::control::state::ControlState;
use crate::control::{self};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::replication::pins::BranchPins;
use crate::storage::DbLocation;
use crate::storage::cursor;
use crate::storage::fork::{Forked, delete_branch, fork_at};
use crate::storage::pitr::PointInTime;
use crate::storage::view::{checksum, checksum_with};
use crate::workload::acks::AckLog;
use crate::workload::verify::verify;
use crate::workspace::{StartOptions, Workspace};

/// A drill's branches live this long unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// How a drill runs.
pub struct DrillOptions {
    /// When the drill branches are deleted.
    pub ttl: Duration,
    /// Where the drill workspace listens (default: any free port on loopback).
    pub bind: Option<String>,
    pub port: Option<u16>,
    /// Commands to run against the drill workspace, e.g. `GET greeting`.
    pub smoke: Vec<String>,
    /// Per database, the workload's acknowledgement log.
    pub acks: BTreeMap<String, AckLog>,
    pub pins: Option<std::sync::Arc<BranchPins>>,
    pub on_step: Option<OnStep>,
    /// Which state of each replica the drill takes (as a failover would).
    pub cut: super::failover::Cut,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            ttl: DEFAULT_TTL,
            bind: None,
            port: Some(0),
            smoke: Vec::new(),
            acks: BTreeMap::new(),
            pins: None,
            on_step: None,
            cut: super::failover::Cut::Newest,
        }
    }
}

/// The workspace a drill serves from when none is defined for its
/// databases: open, on loopback, the databases at 0, 1, 2…
pub const SCRATCH_WORKSPACE: &str = "drill";

fn scratch_workspace(dbs: &[String]) -> ControlState {
    use crate::control::event::{Attachment, EVENT_FORMAT, Envelope, Hlc};
    ControlState::fold(vec![Envelope {
        format: EVENT_FORMAT,
        engine: "drill".into(),
        seq: 1,
        hlc: Hlc { ms: now_ms(), n: 0 },
        who: "drill".into(),
        event: Event::WorkspaceSet {
            name: SCRATCH_WORKSPACE.into(),
            databases: dbs
                .iter()
                .enumerate()
                .map(|(i, db)| Attachment {
                    index: i as u32,
                    db: db.clone(),
                })
                .collect(),
            bind: "127.0.0.1".into(),
            port: 0,
            open: true,
        },
    }])
}

/// What a drill did.
pub struct DrillOutcome {
    pub record: OperationRecord,
    pub forks: Vec<Forked>,
    /// The drill workspace, serving the drill branches until stopped.
    pub workspace: Option<Workspace>,
}

/// Runs a drill of `dbs` (replicated from `from` to `to`) in `to`.
pub async fn drill(
    from: &str,
    to: &Region,
    dbs: &[String],
    engine: &str,
    who: &str,
    options: DrillOptions,
) -> Result<DrillOutcome> {
    if dbs.is_empty() {
        return Err(Error::invalid(
            "no database to drill; name one with --db or configure replication first",
        ));
    }
    let mut steps = Steps::new(options.on_step);
    let started_ms = now_ms();
    let id = format!("drill-{started_ms}");
    let state = control::load(to).await?;

    // The replicas: each database's live branch, replicated from `from`.
    let mut sources = Vec::new();
    for db in dbs {
        let branch = state.live_branch(db).to_string();
        match cursor::load(&to.store(), to.name(), db, &branch).await? {
            Some(c) if c.home == from => {
                let lag_ms = c
                    .synced_us
                    .map(|s| crate::workload::now_us().saturating_sub(s) / 1000);
                sources.push((db.clone(), branch, lag_ms, c.synced_us));
            }
            _ => {
                return Err(Error::invalid(format!(
                    "`{}` holds no replica of {db}/{branch} from `{from}`; a drill forks off replicas",
                    to.name()
                )));
            }
        }
    }

    let since = Instant::now();
    // Under a cut at one instant, where each replica stood then.
    let points = points_of(to, &sources, options.cut).await?;
    let made = futures::future::join_all(sources.iter().zip(&points).map(
        |((db, branch, _, _), point)| {
            let guard = options.pins.as_ref().map(|p| p.forking(db, branch));
            let id = &id;
            async move {
                let forked = fork_at(to, db, branch, id, point.as_ref()).await;
                drop(guard);
                forked
            }
        },
    ))
    .await;
    let mut forks = Vec::new();
    let mut errors = Vec::new();
    for result in made {
        match result {
            Ok(f) => forks.push(f),
            Err(e) => errors.push(e.to_string()),
        }
    }
    steps.done(
        format!("fork drill branches in {}", to.name()),
        since,
        errors.is_empty(),
        if errors.is_empty() {
            forks
                .iter()
                .map(|f| {
                    format!(
                        "{}/{} at manifest {}, WAL {}",
                        f.db, f.branch, f.manifest_id, f.wal_end
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            errors.join("; ")
        },
    );
    if !errors.is_empty() {
        for f in &forks {
            let _ = delete_branch(to, &f.db, &f.branch, Some(&f.source)).await;
        }
        return Err(Error::Failed(format!(
            "the drill stopped before anything was made: {}",
            errors.join("; ")
        )));
    }
    if let Some(pins) = &options.pins {
        for f in &forks {
            pins.add(&branch_event(f, BranchReason::Drill, None));
        }
    }
    let expires_ms = now_ms() + options.ttl.as_millis() as u64;
    let since = Instant::now();
    for f in &forks {
        control::append(
            std::slice::from_ref(to),
            engine,
            who,
            Event::BranchForked(branch_event(f, BranchReason::Drill, Some(expires_ms))),
        )
        .await?;
    }
    steps.done(
        format!("record the drill branches in {}", to.name()),
        since,
        true,
        format!("they expire in {} s", options.ttl.as_secs()),
    );

    // Serve them with production's users and rules, on a port of its own;
    // with no workspace defined for them, from an open one on loopback.
    let state = control::load(to).await?;
    let (ws_state, ws_name, detached) = match state
        .workspaces
        .values()
        .find(|ws| ws.databases.iter().any(|a| dbs.contains(&a.db)))
    {
        Some(ws) => (state.clone(), ws.name.clone(), false),
        None => (scratch_workspace(dbs), SCRATCH_WORKSPACE.to_string(), true),
    };
    let mut workspace = None;
    let mut endpoints = Vec::new();
    let mut rto = None;
    let mut rto_to = "the first write acknowledged through the drill workspace".to_string();
    let token = crate::workspace::commands::probe_token();
    let since = Instant::now();
    let drill_branches: std::collections::BTreeMap<String, String> = forks
        .iter()
        .map(|f| (f.db.clone(), f.branch.clone()))
        .collect();
    let start = StartOptions {
        bind: options.bind.clone().or_else(|| Some("127.0.0.1".into())),
        port: options.port,
        probe_token: Some(token.clone()),
        branches: drill_branches.clone(),
        no_pipelines: true,
        detached,
        // The drill's forks, made just now.
        just_forked: drill_branches,
        serve_after: None,
    };
    match Workspace::start(to.clone(), &ws_state, &ws_name, start).await {
        Ok(ws) => {
            endpoints = ws
                .status()
                .endpoints
                .iter()
                .map(|e| e.url.clone())
                .collect();
            steps.done(
                format!("start drill workspace {ws_name}"),
                since,
                true,
                format!("listening on {}", ws.addr()),
            );
            let since = Instant::now();
            let index = ws.status().endpoints.first().map_or(0, |e| e.index);
            match probe(ws.addr(), &token, index).await {
                Ok(()) => {
                    rto = Some(steps.elapsed_ms());
                    steps.done(
                        "first write through the drill endpoint",
                        since,
                        true,
                        endpoints.first().cloned().unwrap_or_default(),
                    );
                }
                Err(e) => steps.done("first write through the drill endpoint", since, false, e),
            }
            workspace = Some(ws);
        }
        Err(e) => {
            rto_to = "not measured: the drill workspace did not start".into();
            steps.done(
                format!("start drill workspace {ws_name}"),
                since,
                false,
                e.to_string(),
            );
        }
    }

    // Verify: each drill branch against its replica as of the fork, and
    // against the acknowledgement log.
    let mut verdicts = Vec::new();
    let mut rpo = Vec::new();
    for ((f, (_, _, lag_ms, _)), point) in forks.iter().zip(&sources).zip(&points) {
        let since = Instant::now();
        let (ok, detail, count) = verify_fork(to, f, point.as_ref(), options.acks.get(&f.db)).await;
        steps.done(
            format!("verify {}/{}", f.db, f.branch),
            since,
            ok,
            detail.clone(),
        );
        verdicts.push((ok, detail));
        rpo.push(DbRpo {
            db: f.db.clone(),
            branch: f.branch.clone(),
            lag_ms: *lag_ms,
            missing_records: count.map(|(missing, _)| missing),
            acknowledged: count.map(|(_, acked)| acked),
            missing_span_ms: None,
            measured_at_ms: now_ms(),
        });
    }
    if let Some(ws) = &workspace {
        for command in &options.smoke {
            let since = Instant::now();
            let index = ws.status().endpoints.first().map_or(0, |e| e.index);
            let (ok, detail) = smoke(ws.addr(), &token, index, command).await;
            steps.done(format!("smoke: {command}"), since, ok, detail);
        }
    }
    let ok = steps.steps.iter().all(|s| s.ok);
    let record = OperationRecord {
        id: id.clone(),
        kind: OperationKind::Drill,
        from: from.to_string(),
        to: to.name().to_string(),
        started_ms,
        rto_ms: rto,
        rto_to,
        rpo,
        steps: steps.steps,
        endpoints,
        outcome: if ok {
            format!(
                "drill passed: {}",
                verdicts
                    .iter()
                    .map(|(_, d)| d.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        } else {
            "drill FAILED (see the steps)".to_string()
        },
        ok,
    };
    super::record(std::slice::from_ref(to), engine, who, &record).await;
    Ok(DrillOutcome {
        record,
        forks,
        workspace,
    })
}

/// Under `cut`, where each of `sources` stood at the cut's instant (`None`
/// each: at its newest).
async fn points_of(
    to: &Region,
    sources: &[(String, String, Option<u64>, Option<u64>)],
    cut: super::failover::Cut,
) -> Result<Vec<Option<PointInTime>>> {
    if cut == super::failover::Cut::Newest {
        return Ok(vec![None; sources.len()]);
    }
    let held =
        futures::future::join_all(sources.iter().map(|(db, branch, _, synced)| async move {
            let info = DbLocation::branch_in_region(to, db, branch)
                .ok()?
                .describe()
                .await
                .ok()?;
            let held = (info.newest_manifest_id, info.reachable_wal_end(), *synced);
            super::failover::held_through(to, db, branch, held)
                .await
                .ok()
        }))
        .await;
    let at_ms = super::failover::cut_instant(cut, &held)?.unwrap_or_else(now_ms);
    futures::future::try_join_all(sources.iter().map(|(db, branch, _, _)| async move {
        crate::storage::pitr::locate(to, db, branch, at_ms)
            .await
            .map(Some)
    }))
    .await
}

/// The drill branch against its replica as of the fork (under a cut, with
/// the rows by then of the WAL file that straddles it, read from the
/// replica), and against the acknowledgement log: (ok, what was found,
/// (missing, acknowledged)).
async fn verify_fork(
    to: &Region,
    f: &Forked,
    point: Option<&PointInTime>,
    acks: Option<&AckLog>,
) -> (bool, String, Option<(u64, u64)>) {
    let result = async {
        let branch = DbLocation::branch_in_region(to, &f.db, &f.branch)?;
        let replica = DbLocation::branch_in_region(to, &f.db, &f.source)?;
        let drill = checksum(&branch).await?;
        let mut overlay = std::collections::BTreeMap::new();
        if let Some((wal, at_ms)) = point.and_then(PointInTime::straddling) {
            let side = crate::storage::fork::side(to, &replica.path);
            let now = now_ms() as i64;
            for row in crate::storage::pitr::rows_by(&side, wal, at_ms).await? {
                let value = match row.value {
                    slatedb::ValueDeletable::Value(v) if row.expire_ts.is_none_or(|e| e > now) => {
                        Some(v)
                    }
                    _ => None,
                };
                overlay.insert(row.key, value);
            }
        }
        let then = checksum_with(&replica.as_of(f.manifest_id, f.wal_end), &overlay).await?;
        let report = verify(&branch, acks).await?;
        Ok::<_, Error>((drill, then, report))
    }
    .await;
    match result {
        Err(e) => (false, crate::error::one_line(&e.to_string()), None),
        Ok((drill, then, report)) => {
            let same = drill == then;
            let acked = report
                .acks
                .as_ref()
                .map(|a| (a.missing_acked, a.acked_records));
            let mut detail = format!(
                "{}: {} keys, checksum {} {} the replica's at the fork",
                f.db,
                drill.keys,
                &drill.digest[..12],
                if same { "matches" } else { "DIFFERS FROM" }
            );
            if !report.consistent {
                detail.push_str(&format!("; NOT a gap-free prefix: {}", report.summary()));
            }
            if let Some((missing, total)) = acked {
                detail.push_str(&format!(
                    "; {} of {total} acknowledged records up to seq {}",
                    total - missing.min(total),
                    report.highest_gap_free_seq
                ));
            }
            (same && report.consistent, detail, acked)
        }
    }
}

/// Runs one smoke command (words split on spaces) through the workspace.
async fn smoke(
    addr: std::net::SocketAddr,
    token: &str,
    index: u32,
    command: &str,
) -> (bool, String) {
    let words: Vec<&str> = command.split_whitespace().collect();
    if words.is_empty() {
        return (false, "an empty smoke command".into());
    }
    let target = super::failover::dial_address(addr);
    let run = async {
        let mut stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(|e| e.to_string())?;
        // The drill's own session: the probe token stands for a login.
        let index = index.to_string();
        let auth: [&[u8]; 3] = [
            crate::workspace::commands::PROBE_LOGIN.as_bytes(),
            token.as_bytes(),
            index.as_bytes(),
        ];
        crate::workspace::protocol::call(&mut stream, &auth).await?;
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        crate::workspace::protocol::call(&mut stream, &args).await
    };
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(reply)) => (true, reply.to_string()),
        Ok(Err(e)) => (false, e),
        Err(_) => (false, "no reply within 10 s".into()),
    }
}

/// Deletes a drill's branches now (before their time to live) and records it.
pub async fn tear_down(
    regions: &[Region],
    forks: &[Forked],
    engine: &str,
    who: &str,
) -> Result<()> {
    for f in forks {
        if let Some(region) = regions.iter().find(|r| r.name() == f.region) {
            delete_branch(region, &f.db, &f.branch, Some(&f.source)).await?;
        }
        control::append(
            regions,
            engine,
            who,
            Event::BranchDeleted {
                db: f.db.clone(),
                branch: f.branch.clone(),
            },
        )
        .await?;
    }
    Ok(())
}

/// Deletes every branch whose time to live ran out, in every region that
/// answers, and records it. Returns the branches deleted.
pub async fn expire(
    regions: &[Region],
    state: &ControlState,
    engine: &str,
    who: &str,
) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for record in state.expired(now_ms()) {
        let f = &record.fork;
        // A drill branch lives in its region alone; others are replicated.
        let holding = regions
            .iter()
            .filter(|r| f.reason != BranchReason::Drill || r.name() == f.region);
        for region in holding {
            if let Err(e) = delete_branch(region, &f.db, &f.branch, Some(&f.source)).await {
                tracing::warn!("expiring {}/{} in {}: {e}", f.db, f.branch, region.name());
            }
        }
        control::append(
            regions,
            engine,
            who,
            Event::BranchDeleted {
                db: f.db.clone(),
                branch: f.branch.clone(),
            },
        )
        .await?;
        deleted.push(format!("{}/{}", f.db, f.branch));
    }
    Ok(deleted)
}
