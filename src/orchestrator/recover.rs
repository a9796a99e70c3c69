//! Stranded writes (DESIGN.md invariant 5): after an unplanned failover the
//! old primary may hold writes the secondary never got. When that region
//! answers again, [`recover`] fences the old live branch's writer there (no
//! workspace keeps writing by luck), lets replication bring the rest of its
//! files to the new primary, and forks its final state as a *recovered*
//! branch next to the live one. [`inspect`] then compares three states of
//! every key: the live branch's fork point (what both sides started from),
//! the recovered branch (what the old primary ended with) and the live
//! branch now: the keys written after the fork point, and the conflicts
//! (keys the live branch changed since then too), with both values.
//! `merge` (in [`super::merge`]) applies what the user picks.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use super::failover::{branch_event, fence_writer};
use super::{OnStep, Steps, find_region, now_ms};
use crate::control::event::{
    BranchForked, BranchReason, Event, OperationKind, OperationRecord, WritesRecovered,
};
use crate::control::state::ControlState;
use crate::control::{self};
use crate::error::{Error, Result};
use crate::region::Region;
use crate::replication::pins::{BranchPins, NoPins, Pins};
use crate::replication::{Flow, ReplicationOptions, replicator};
use crate::storage::DbLocation;
use crate::storage::cursor;
use crate::storage::fork::{delete_branch, fork};
use crate::storage::view::FieldDigest;
use crate::workspace::keyspace::RESERVED_PREFIX;

/// Where a database's stranded writes would come from.
#[derive(Debug, Clone, Serialize)]
pub struct Stranded {
    pub db: String,
    /// The live branch, made by the failover, and its home.
    pub live: String,
    pub live_region: String,
    /// The branch that was live before the failover, and its home (the
    /// region that failed).
    pub source: String,
    pub source_region: String,
    /// The live branch's fork point.
    pub fork: BranchForked,
}

/// Finds where the live branch of `db` was failed over from: its source
/// and the region that is that source's home.
pub async fn stranded(regions: &[Region], state: &ControlState, db: &str) -> Result<Stranded> {
    let live = state.live_branch(db);
    let record = state
        .branch(db, live)
        .filter(|b| b.fork.reason == BranchReason::Failover);
    let Some(record) = record else {
        return Err(Error::invalid(format!(
            "the live branch of `{db}` ({live}) was not made by a failover: nothing can be stranded"
        )));
    };
    let fork = record.fork.clone();
    for region in regions.iter().filter(|r| r.name() != fork.region) {
        let home = DbLocation::branch_in_region(region, db, &fork.source)?;
        let store = region.store();
        let is_home = cursor::load(&store, region.name(), db, &fork.source)
            .await?
            .is_none();
        if is_home && home.exists().await? {
            return Ok(Stranded {
                db: db.to_string(),
                live: live.to_string(),
                live_region: fork.region.clone(),
                source: fork.source.clone(),
                source_region: region.name().to_string(),
                fork,
            });
        }
    }
    Err(Error::invalid(format!(
        "no configured region holds {db}/{} as its home: the region the failover left is not configured, or does not answer",
        fork.source
    )))
}

/// One key written in the stranded region after the fork point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Bytes,
    /// At the fork point (`None`: absent).
    pub base: Option<Bytes>,
    /// What the stranded region ended with (`None`: deleted).
    pub recovered: Option<Bytes>,
    /// What the live branch holds now.
    pub live: Option<Bytes>,
}

impl Change {
    /// The live branch already holds the recovered value (merged, or the
    /// same write made on both sides).
    pub fn merged(&self) -> bool {
        self.live == self.recovered
    }

    /// The live branch changed the key since the fork point, to something
    /// else than the recovered value.
    pub fn conflict(&self) -> bool {
        self.live != self.base && !self.merged()
    }
}

/// A recovered branch compared with the live one.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub db: String,
    pub branch: String,
    pub live: String,
    pub region: String,
    /// The two fixed states compared, as "manifest M, WAL W" of the
    /// stranded branch: the live branch's fork point and the recovered
    /// branch's.
    pub fork_point: String,
    pub recovered_at: String,
    /// Every key written after the fork point, in key order.
    pub changes: Vec<Change>,
    /// How this comparison differs from the one the recovery recorded, if
    /// it does: both compare fixed states, so it never should, and a merge
    /// refuses to write one the responder was not shown.
    pub unlike_recorded: Option<String>,
}

impl Recovered {
    /// A digest of the comparison: every changed key with its value at the
    /// fork point and in the recovered branch, in key order (BLAKE2b-128,
    /// hex). The live values are left out: the live branch moves on, and
    /// a merge reads them again.
    pub fn digest(&self) -> String {
        let mut digest = FieldDigest::new();
        for c in &self.changes {
            digest.optional(Some(&c.key));
            digest.optional(c.base.as_deref());
            digest.optional(c.recovered.as_deref());
        }
        digest.hex()
    }

    /// The states compared, as a step or a report names them.
    pub fn states(&self) -> String {
        format!(
            "{db}/{} ({}) with the fork point ({}) and {db}/{}",
            self.branch,
            self.recovered_at,
            self.fork_point,
            self.live,
            db = self.db
        )
    }

    pub fn conflicts(&self) -> usize {
        self.changes.iter().filter(|c| c.conflict()).count()
    }

    /// Keys the live branch does not hold yet.
    pub fn pending(&self) -> usize {
        self.changes.iter().filter(|c| !c.merged()).count()
    }

    /// Pending keys that conflict with nothing.
    pub fn clean(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| !c.merged() && !c.conflict())
            .count()
    }

    /// The comparison as JSON-friendly rows (keys and values shown as text,
    /// other bytes escaped).
    pub fn rows(&self) -> Vec<ChangeRow> {
        self.changes
            .iter()
            .map(|c| ChangeRow {
                key: shown(&c.key),
                base: c.base.as_deref().map(shown),
                recovered: c.recovered.as_deref().map(shown),
                live: c.live.as_deref().map(shown),
                conflict: c.conflict(),
                merged: c.merged(),
            })
            .collect()
    }

    /// What a responder reads first.
    pub fn summary(&self) -> String {
        let summary = format!(
            "{}/{}: {} key(s) written in the stranded region after the fork point; {} already in {}, {} conflict(s), {} to merge cleanly",
            self.db,
            self.branch,
            self.changes.len(),
            self.changes.len() - self.pending(),
            self.live,
            self.conflicts(),
            self.clean()
        );
        match &self.unlike_recorded {
            Some(why) => format!("{summary}; warning: {why}"),
            None => summary,
        }
    }
}

/// One change as text.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ChangeRow {
    pub key: String,
    pub base: Option<String>,
    pub recovered: Option<String>,
    pub live: Option<String>,
    pub conflict: bool,
    pub merged: bool,
}

/// Bytes as text: printable ASCII as is, the rest as `\xNN`.
pub fn shown(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Parses what [`shown`] prints back into bytes.
pub fn unshown(text: &str) -> Result<Bytes> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = text
                .get(i + 2..i + 4)
                .filter(|_| bytes.get(i + 1) == Some(&b'x'));
            let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Err(Error::invalid(format!(
                    "`{text}`: a backslash must start \\xNN (two hex digits)"
                )));
            };
            out.push(b);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Bytes::from(out))
}

/// How a recovery runs.
#[derive(Default)]
pub struct RecoverOptions {
    /// The replicator's pins, told at once about the fork.
    pub pins: Option<Arc<BranchPins>>,
    pub on_step: Option<OnStep>,
    /// How the last files are copied (defaults otherwise).
    pub replication: Option<ReplicationOptions>,
}

/// What a recovery did.
pub struct RecoverOutcome {
    pub record: OperationRecord,
    /// The comparison, when anything was stranded (the branch then exists).
    pub recovered: Option<Recovered>,
}

/// Recovers the writes of `db` stranded where its live branch was failed
/// over from (see the module's doc). Both regions must answer.
pub async fn recover(
    regions: &[Region],
    state: &ControlState,
    db: &str,
    engine: &str,
    who: &str,
    options: RecoverOptions,
) -> Result<RecoverOutcome> {
    let found = stranded(regions, state, db).await?;
    let (old, new) = (
        find_region(regions, &found.source_region)?,
        find_region(regions, &found.live_region)?,
    );
    let mut steps = Steps::new(options.on_step);
    let started_ms = now_ms();

    // 1. Nothing writes there any more (invariant 4).
    let since = Instant::now();
    fence_writer(&old, db, &found.source).await.map_err(|e| {
        Error::Failed(format!(
            "could not fence {db}/{} in {}: {e}; is the region back?",
            found.source,
            old.name()
        ))
    })?;
    steps.done(
        format!("fence {db}/{} in {}", found.source, old.name()),
        since,
        true,
        "its writer, wherever it runs, can no longer write".into(),
    );

    // 2. Its last files reach the live branch's region.
    let since = Instant::now();
    let pins: Arc<dyn Pins> = match &options.pins {
        Some(p) => Arc::clone(p) as Arc<dyn Pins>,
        None => Arc::new(NoPins),
    };
    let flow = Flow::new(db, &found.source, &old, &new);
    let copied = replicator::once(
        vec![flow],
        options.replication.clone().unwrap_or_default(),
        pins,
    )
    .await;
    let status = copied
        .into_iter()
        .next()
        .map(|(_, r)| r)
        .ok_or_else(|| Error::Failed("the copy did not run".into()))?
        .map_err(|e| {
            Error::Failed(format!(
                "could not copy the last files of {db}/{} to {}: {e}",
                found.source,
                new.name()
            ))
        })?;
    steps.done(
        format!(
            "copy the last files of {db}/{} to {}",
            found.source,
            new.name()
        ),
        since,
        true,
        format!(
            "{} file(s), {}",
            status.objects_copied,
            crate::replication::status::human_bytes(status.bytes_copied)
        ),
    );

    // 3. Its final state, as a branch next to the live one.
    let since = Instant::now();
    let name = free_name(state, db, &format!("recovered-{}", state.epoch.max(1)));
    let guard = options.pins.as_ref().map(|p| p.forking(db, &found.source));
    let forked = fork(&new, db, &found.source, &name).await;
    drop(guard);
    let forked = forked?;
    if let Some(pins) = &options.pins {
        pins.add(&branch_event(&forked, BranchReason::Recovery, None));
    }
    steps.done(
        format!("fork {db}/{name} in {}", new.name()),
        since,
        true,
        format!(
            "off {} at manifest {}, WAL {}",
            found.source, forked.manifest_id, forked.wal_end
        ),
    );

    // 4. What was written after the fork point, and what conflicts.
    let since = Instant::now();
    let compared = compare(
        &new,
        &found,
        &name,
        state_of(forked.manifest_id, forked.wal_end),
    )
    .await;
    let recovered = match compared {
        Ok(r) => r,
        Err(e) => {
            let _ = delete_branch(&new, db, &name, Some(&found.source)).await;
            return Err(e);
        }
    };
    steps.done(
        format!("compare {}", recovered.states()),
        since,
        true,
        recovered.summary(),
    );

    let log_regions = vec![new.clone(), old.clone()];
    let nothing = recovered.changes.is_empty();
    if nothing {
        // Nothing was stranded: no branch to keep.
        delete_branch(&new, db, &name, Some(&found.source)).await?;
    } else {
        let event = Event::WritesRecovered(Box::new(WritesRecovered {
            fork: branch_event(&forked, BranchReason::Recovery, None),
            live: found.live.clone(),
            stranded_in: old.name().to_string(),
            changed: recovered.changes.len() as u64,
            conflicts: recovered.conflicts() as u64,
            digest: Some(recovered.digest()),
        }));
        let since = Instant::now();
        let appended = control::append(&log_regions, engine, who, event).await?;
        steps.done(
            "record the recovered branch",
            since,
            true,
            appended.summary(),
        );
    }
    let record = OperationRecord {
        // The database is in the id: a failover of several databases has a
        // recovery each, and each one's outcome is its own.
        id: recovery_id(db, started_ms),
        kind: OperationKind::Recovery,
        from: old.name().to_string(),
        to: new.name().to_string(),
        started_ms,
        rto_ms: None,
        rto_to: "not measured: nothing stops serving".into(),
        rpo: Vec::new(),
        steps: steps.steps,
        endpoints: Vec::new(),
        outcome: if nothing {
            format!("nothing of {db} was stranded in {}", old.name())
        } else {
            recovered.summary()
        },
        ok: true,
    };
    super::record(&log_regions, engine, who, &record).await;
    Ok(RecoverOutcome {
        record,
        recovered: (!nothing).then_some(recovered),
    })
}

/// `recovery-<db>-<ms>`.
pub fn recovery_id(db: &str, started_ms: u64) -> String {
    format!("recovery-{db}-{started_ms}")
}

/// Whether `record` is a recovery of `db` (older records, `recovery-<ms>`,
/// name it only in their outcome).
pub fn recovers(record: &OperationRecord, db: &str) -> bool {
    record.kind == OperationKind::Recovery
        && (record.id.starts_with(&format!("recovery-{db}-"))
            || record.outcome.contains(&format!("of {db} was stranded")))
}

/// `wanted`, or `wanted-2`, `wanted-3`, ... when the log knows it.
fn free_name(state: &ControlState, db: &str, wanted: &str) -> String {
    let mut name = wanted.to_string();
    let mut n = 2;
    while state.branch(db, &name).is_some() {
        name = format!("{wanted}-{n}");
        n += 1;
    }
    name
}

/// Compares recovered branch `branch` of `db` with the live branch, as the
/// log in `region` (the live branch's home) describes them.
pub async fn inspect(
    region: &Region,
    state: &ControlState,
    db: &str,
    branch: &str,
) -> Result<Recovered> {
    let Some(record) = state.recovered.get(db).and_then(|r| r.get(branch)) else {
        let known: Vec<&String> = state
            .recovered
            .get(db)
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        return Err(Error::invalid(format!(
            "`{db}` has no recovered branch `{branch}` (it has: {}); run `lifeboat recover --db {db}` first",
            if known.is_empty() {
                "none".to_string()
            } else {
                known
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    let live = &record.recovered.live;
    let fork = state
        .branch(db, live)
        .map(|b| b.fork.clone())
        .ok_or_else(|| {
            Error::invalid(format!("the log does not know how {db}/{live} was forked"))
        })?;
    let found = Stranded {
        db: db.to_string(),
        live: live.clone(),
        live_region: fork.region.clone(),
        source: fork.source.clone(),
        source_region: record.recovered.stranded_in.clone(),
        fork,
    };
    let at = &record.recovered.fork;
    let mut recovered =
        compare(region, &found, branch, state_of(at.manifest_id, at.wal_end)).await?;
    if let Some(digest) = &record.recovered.digest
        && *digest != recovered.digest()
    {
        recovered.unlike_recorded = Some(format!(
            "this is not the comparison recorded when the writes were recovered ({} changed key(s) then, {} now): the fork point ({}) or {db}/{branch} ({}) no longer reads as it did; nothing is merged from it; run `lifeboat recover --db {db}` again to compare afresh",
            record.recovered.changed,
            recovered.changes.len(),
            recovered.fork_point,
            recovered.recovered_at,
        ));
    }
    Ok(recovered)
}

/// A fixed state of the stranded branch, as a responder reads it.
fn state_of(manifest_id: u64, wal_end: u64) -> String {
    format!("manifest {manifest_id}, WAL {wal_end}")
}

/// The fork point of the live branch: its shadow parent as of the fork
/// (the shadow keeps a copy of the manifest it started from; every other
/// read goes to the source's replica, which pins keep).
fn fork_point(region: &Region, found: &Stranded) -> Result<DbLocation> {
    let Some(shadow) = &found.fork.shadow else {
        return Err(Error::invalid(format!(
            "{}/{} was not forked at a replica: its fork point cannot be read",
            found.db, found.live
        )));
    };
    let mut location = DbLocation::branch_in_region(region, &found.db, &found.source)?;
    location.path = object_store::path::Path::from(shadow.as_str());
    location.label = format!("{} (fork point of {})", region.name(), found.live);
    Ok(location.as_of(found.fork.manifest_id, found.fork.wal_end))
}

/// Every key that differs between the fork point and recovered branch
/// `branch` (which holds the stranded branch's state `recovered_at`), with
/// the live branch's value of each.
async fn compare(
    region: &Region,
    found: &Stranded,
    branch: &str,
    recovered_at: String,
) -> Result<Recovered> {
    let base = fork_point(region, found)?;
    let recovered = DbLocation::branch_in_region(region, &found.db, branch)?;
    let live = DbLocation::branch_in_region(region, &found.db, &found.live)?;
    let mut changes = diff(&base, &recovered).await?;
    let reader = live.open_reader().await?;
    for change in &mut changes {
        change.live = reader
            .get(&change.key)
            .await
            .map_err(|e| Error::database(&live.label, &live.db, "read", &e))?;
    }
    if let Err(e) = reader.close().await {
        tracing::debug!("closing the live branch's reader: {e}");
    }
    Ok(Recovered {
        db: found.db.clone(),
        branch: branch.to_string(),
        live: found.live.clone(),
        region: region.name().to_string(),
        fork_point: state_of(found.fork.manifest_id, found.fork.wal_end),
        recovered_at,
        changes,
        unlike_recorded: None,
    })
}

/// Keys whose values differ between `before` and `after` (Lifeboat's
/// reserved keys left out), read in one ordered pass over each.
pub async fn diff(before: &DbLocation, after: &DbLocation) -> Result<Vec<Change>> {
    let open = |l: &DbLocation| {
        let l = l.clone();
        async move {
            let reader = l.open_reader().await?;
            let iter = reader
                .scan(..)
                .await
                .map_err(|e| Error::database(&l.label, &l.db, "read", &e))?;
            Ok::<_, Error>((reader, iter, l))
        }
    };
    let (a_reader, mut a, a_loc) = open(before).await?;
    let (b_reader, mut b, b_loc) = open(after).await?;
    let mut changes = Vec::new();
    let mut x = next_kv(&mut a, &a_loc).await?;
    let mut y = next_kv(&mut b, &b_loc).await?;
    loop {
        let order = match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            Ordering::Less => {
                if let Some((key, value)) = x.take() {
                    changes.push(Change {
                        key,
                        base: Some(value),
                        recovered: None,
                        live: None,
                    });
                }
                x = next_kv(&mut a, &a_loc).await?;
            }
            Ordering::Greater => {
                if let Some((key, value)) = y.take() {
                    changes.push(Change {
                        key,
                        base: None,
                        recovered: Some(value),
                        live: None,
                    });
                }
                y = next_kv(&mut b, &b_loc).await?;
            }
            Ordering::Equal => {
                if let (Some((key, va)), Some((_, vb))) = (x.take(), y.take())
                    && va != vb
                {
                    changes.push(Change {
                        key,
                        base: Some(va),
                        recovered: Some(vb),
                        live: None,
                    });
                }
                x = next_kv(&mut a, &a_loc).await?;
                y = next_kv(&mut b, &b_loc).await?;
            }
        }
    }
    drop((a, b));
    for reader in [a_reader, b_reader] {
        if let Err(e) = reader.close().await {
            tracing::debug!("closing a diff reader: {e}");
        }
    }
    Ok(changes)
}

/// The next key and value that is not Lifeboat's own.
async fn next_kv(
    iter: &mut slatedb::DbIterator,
    loc: &DbLocation,
) -> Result<Option<(Bytes, Bytes)>> {
    loop {
        let kv = iter
            .next()
            .await
            .map_err(|e| Error::database(&loc.label, &loc.db, "read", &e))?;
        match kv {
            Some(kv) if kv.key.starts_with(RESERVED_PREFIX) => continue,
            other => return Ok(other.map(|kv| (kv.key, kv.value))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovery_record_names_its_database() {
        let record = |id: &str, outcome: &str| OperationRecord {
            id: id.into(),
            kind: OperationKind::Recovery,
            from: "us-east-1".into(),
            to: "eu-west-1".into(),
            started_ms: 1,
            rto_ms: None,
            rto_to: String::new(),
            rpo: Vec::new(),
            steps: Vec::new(),
            endpoints: Vec::new(),
            outcome: outcome.into(),
            ok: true,
        };
        // A failover of two databases: the recovery of one is not the other's.
        let orders = record(
            &recovery_id("orders", 5),
            "nothing of orders was stranded in us-east-1",
        );
        assert!(recovers(&orders, "orders"));
        assert!(!recovers(&orders, "carts"));
        let older = record("recovery-5", "nothing of carts was stranded in us-east-1");
        assert!(recovers(&older, "carts") && !recovers(&older, "orders"));
    }
}
