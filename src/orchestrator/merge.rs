//! Merging recovered writes into the live branch: all of them, only those
//! that conflict with nothing, or a choice per conflicting key (keep the
//! live value or take the recovered one).
//!
//! The plan is made from the three states again at every run (see
//! [`super::recover`]): a key the live branch already holds with the
//! recovered value is skipped. Each chunk is one SlateDB write batch,
//! awaited durable before the next, so a merge interrupted anywhere leaves
//! whole chunks behind, and running it again writes only what is missing:
//! the same end state, with no duplicate effect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use slatedb::WriteBatch;
use slatedb::config::{PutOptions, Ttl};

use super::recover::{Change, inspect, shown};
use super::{OnStep, Steps, now_ms};
use crate::control::event::{Event, OperationKind, OperationRecord};
use crate::control::state::ControlState;
use crate::control::{self};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::storage::DbLocation;
use crate::storage::fork::delete_branch;
use crate::workspace::keyspace::AttachedDb;

/// Keys per write batch unless told otherwise.
pub const CHUNK_KEYS: usize = 500;

/// Which value wins a conflicting key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Choice {
    /// The value the stranded region ended with.
    Recovered,
    /// The value the live branch holds.
    Live,
}

/// What to merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Pick {
    /// Every recovered key; conflicts take the recovered value.
    All,
    /// Only the keys that conflict with nothing.
    Clean,
    /// The clean keys, and each conflicting key as chosen (a conflict not
    /// named keeps the live value).
    Choose(BTreeMap<Bytes, Choice>),
}

impl Pick {
    /// What happens to a change that is not merged yet.
    fn takes(&self, change: &Change) -> bool {
        if !change.conflict() {
            return true;
        }
        match self {
            Pick::All => true,
            Pick::Clean => false,
            Pick::Choose(choices) => choices.get(&change.key) == Some(&Choice::Recovered),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Pick::All => "every key, conflicts taking the recovered value".into(),
            Pick::Clean => "the keys without conflict".into(),
            Pick::Choose(c) => format!(
                "the keys without conflict and {} chosen conflict(s)",
                c.len()
            ),
        }
    }
}

/// Which writer the merge writes through.
#[derive(Clone, Default)]
pub enum MergeTarget {
    /// Open the live branch's writer for the merge (this fences any other
    /// writer of the branch: use it when no workspace serves it).
    #[default]
    Open,
    /// The writer of a workspace serving the live branch in this process.
    Attached(Arc<AttachedDb>),
}

/// How a merge runs.
pub struct MergeOptions {
    pub pick: Pick,
    pub target: MergeTarget,
    /// Keys per write batch.
    pub chunk_keys: usize,
    /// Stop after this many batches (an interruption, for tests).
    pub stop_after_chunks: Option<usize>,
    /// Delete the recovered branch once everything picked is merged.
    pub discard: bool,
    pub on_step: Option<OnStep>,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            pick: Pick::Clean,
            target: MergeTarget::Open,
            chunk_keys: CHUNK_KEYS,
            stop_after_chunks: None,
            discard: false,
            on_step: None,
        }
    }
}

/// What a merge did.
#[derive(Debug, Clone, Serialize)]
pub struct MergeOutcome {
    pub record: OperationRecord,
    /// Keys written by this run.
    pub applied: u64,
    /// Keys the live branch already held with the recovered value.
    pub already: u64,
    /// Conflicts where the recovered value was written / the live kept.
    pub taken: u64,
    pub kept: u64,
    pub chunks: u64,
    /// Whether everything picked is in the live branch now.
    pub complete: bool,
    pub discarded: bool,
}

/// Merges recovered branch `branch` of `db` into the live branch (see the
/// module's doc). `regions` are the configured ones; the live branch's
/// home must answer.
pub async fn merge(
    regions: &[Region],
    state: &ControlState,
    db: &str,
    branch: &str,
    engine: &str,
    who: &str,
    options: MergeOptions,
) -> Result<MergeOutcome> {
    let record = state
        .recovered
        .get(db)
        .and_then(|r| r.get(branch))
        .ok_or_else(|| {
            Error::invalid(format!(
                "`{db}` has no recovered branch `{branch}`; list them with `lifeboat recover --db {db} --show`"
            ))
        })?;
    let home_name = record.recovered.fork.region.clone();
    let home = super::find_region(regions, &home_name)?;
    if state.live_branch(db) != record.recovered.live {
        return Err(Error::invalid(format!(
            "{db}/{branch} was recovered for {db}/{}, but the live branch is {} now; compare them again with a new recovery",
            record.recovered.live,
            state.live_branch(db)
        )));
    }
    let mut steps = Steps::new(options.on_step);
    let started_ms = now_ms();

    let since = Instant::now();
    let recovered = inspect(&home, state, db, branch).await?;
    // Write only what the responder was shown (the comparison is of two
    // fixed states, named in the log): a comparison that reads otherwise
    // now is refused, with nothing written.
    if let Some(why) = &recovered.unlike_recorded {
        return Err(Error::Failed(format!("{db}/{branch}: {why}")));
    }
    if let Pick::Choose(choices) = &options.pick {
        let unknown: Vec<String> = choices
            .keys()
            .filter(|k| !recovered.changes.iter().any(|c| c.key == **k))
            .map(|k| shown(k))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::invalid(format!(
                "not recovered key(s): {}; pick among the keys `lifeboat recover --db {db} --show` lists",
                unknown.join(", ")
            )));
        }
    }
    let already = recovered.changes.iter().filter(|c| c.merged()).count() as u64;
    let todo: Vec<&Change> = recovered
        .changes
        .iter()
        .filter(|c| !c.merged() && options.pick.takes(c))
        .collect();
    let taken = todo.iter().filter(|c| c.conflict()).count() as u64;
    let kept = recovered
        .changes
        .iter()
        .filter(|c| c.conflict() && !options.pick.takes(c))
        .count() as u64;
    steps.done(
        format!("compare {}", recovered.states()),
        since,
        true,
        format!(
            "{} to write ({taken} conflict(s) taking the recovered value), {already} already there, {kept} conflict(s) keeping the live value",
            todo.len()
        ),
    );

    let since = Instant::now();
    let live = DbLocation::branch_in_region(&home, db, &recovered.live)?;
    let opened = match &options.target {
        MergeTarget::Open => Some(live.open_writer(false).await?),
        MergeTarget::Attached(_) => None,
    };
    let chunk_keys = options.chunk_keys.max(1);
    let mut applied = 0u64;
    let mut chunks = 0u64;
    let mut failure = None;
    for chunk in todo.chunks(chunk_keys) {
        if options
            .stop_after_chunks
            .is_some_and(|n| chunks as usize >= n)
        {
            break;
        }
        let mut batch = WriteBatch::new();
        for change in chunk {
            match &change.recovered {
                Some(value) => {
                    batch.put_with_options(&change.key, value, &PutOptions { ttl: Ttl::NoExpiry })
                }
                None => batch.delete(&change.key),
            }
        }
        let written = match (&options.target, &opened) {
            (_, Some(db)) => match db.write(batch).await {
                Ok(handle) => handle
                    .await_durable()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            (MergeTarget::Attached(attached), None) => match attached.apply(batch).await {
                Ok(handle) => handle
                    .await_durable()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            (MergeTarget::Open, None) => Err("no writer".to_string()),
        };
        if let Err(e) = written {
            failure = Some(crate::error::one_line(&e));
            break;
        }
        applied += chunk.len() as u64;
        chunks += 1;
    }
    if let Some(db) = opened
        && let Err(e) = db.close().await
    {
        tracing::warn!("closing the merge's writer: {e}");
    }
    let complete = failure.is_none() && applied == todo.len() as u64;
    steps.done(
        format!("write into {db}/{}", recovered.live),
        since,
        failure.is_none(),
        match &failure {
            Some(e) => format!("stopped after {applied} key(s) in {chunks} batch(es): {e}; run the merge again to finish"),
            None if complete => format!("{applied} key(s) in {chunks} durable batch(es)"),
            None => format!("interrupted after {applied} key(s) in {chunks} batch(es); run the merge again to finish"),
        },
    );

    let log_regions: Vec<Region> = regions.to_vec();
    let since = Instant::now();
    let appended = control::append(
        &log_regions,
        engine,
        who,
        Event::Merged {
            db: db.to_string(),
            recovered: branch.to_string(),
            live: recovered.live.clone(),
            applied,
            taken: if complete { taken } else { 0 },
            kept,
        },
    )
    .await?;
    steps.done("record the merge", since, true, appended.summary());

    let mut discarded = false;
    if options.discard && complete {
        let since = Instant::now();
        let source = record.recovered.fork.source.clone();
        let deleted = delete_branch(&home, db, branch, Some(&source)).await?;
        control::append(
            &log_regions,
            engine,
            who,
            Event::BranchDeleted {
                db: db.to_string(),
                branch: branch.to_string(),
            },
        )
        .await?;
        discarded = true;
        steps.done(
            format!("discard {db}/{branch}"),
            since,
            true,
            format!("{deleted} object(s) deleted"),
        );
    }

    let ok = failure.is_none();
    let record = OperationRecord {
        id: format!("merge-{started_ms}"),
        kind: OperationKind::Merge,
        from: branch.to_string(),
        to: recovered.live.clone(),
        started_ms,
        rto_ms: None,
        rto_to: "not measured: nothing stops serving".into(),
        rpo: Vec::new(),
        steps: steps.steps,
        endpoints: Vec::new(),
        outcome: if complete {
            format!(
                "merged {applied} key(s) of {db}/{branch} into {db}/{} ({})",
                recovered.live,
                options.pick.describe()
            )
        } else {
            format!(
                "merged {applied} of {} key(s); run it again to finish",
                todo.len()
            )
        },
        ok,
    };
    super::record(&log_regions, engine, who, &record).await;
    if let Some(e) = failure {
        return Err(Error::Failed(format!(
            "the merge stopped after {applied} key(s): {e}; run it again to finish (it skips what is there)"
        )));
    }
    Ok(MergeOutcome {
        record,
        applied,
        already,
        taken,
        kept,
        chunks,
        complete,
        discarded,
    })
}
