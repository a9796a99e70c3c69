//! Pipelines: newline-delimited JSON files in an object-store folder,
//! loaded into a database continuously.
//!
//! Invariant kept here: a pipeline's position (file and byte offset) is
//! written in the same SlateDB write batch as the records it covers, so
//! wherever the database's state is (after a restart, or at a replica after
//! a failover) the position matches the data exactly: a resumed pipeline
//! loads no line twice and skips none.
//!
//! Files are taken in name order; a file is read from the position to its
//! end, so files must be complete when they appear (as object-store puts
//! are) and named so that newer ones sort later (a timestamp or a counter).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use slatedb::WriteBatch;
use slatedb::config::{PutOptions, Ttl};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use super::keyspace::{AttachedDb, RESERVED_PREFIX};
use crate::control::state::{PipelineConfig, WorkspaceConfig};
use crate::error::{Error, Result};
use crate::region::retry::retrying;
use crate::region::{Region, RegionSpec};

/// Lines loaded in one write batch at most.
const LINES_PER_BATCH: usize = 500;
/// How often a caught-up pipeline looks for new files.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// The longest wait after a failure before trying again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The biggest source file read (whole) at once.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Where a pipeline stands, as stored next to its data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The file being read, or the last one finished (path under the source).
    pub file: String,
    /// Bytes of `file` already loaded.
    pub offset: u64,
    /// Whether `file` is finished.
    pub done: bool,
    pub lines_loaded: u64,
    pub files_done: u64,
    /// Lines that were not a JSON object with the key field (skipped).
    pub bad_lines: u64,
}

/// A pipeline's progress, for the CLI and the GUI.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct PipelineStatus {
    pub name: String,
    pub db: String,
    pub source: String,
    /// `running`, `caught up`, `paused`, `waiting: ...` (an error, retried).
    pub state: String,
    pub position: Position,
    /// Files in the source not loaded yet, as of the last look.
    pub files_pending: u64,
}

/// The key holding pipeline `name`'s position.
pub fn position_key(name: &str) -> Vec<u8> {
    let mut key = RESERVED_PREFIX.to_vec();
    key.extend_from_slice(b"pipeline/");
    key.extend_from_slice(name.as_bytes());
    key
}

/// Opens a pipeline's source folder as a store.
pub fn open_source(url: &str) -> Result<(Region, Path)> {
    let spec = RegionSpec::new("pipeline-source", url);
    let region = Region::open(&spec).map_err(|e| {
        Error::invalid(format!(
            "pipeline source `{url}`: {e}; use a folder URL such as file:///data/in or s3://bucket/prefix"
        ))
    })?;
    Ok((region, Path::default()))
}

struct Running {
    config: PipelineConfig,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The pipelines one workspace runs.
#[derive(Default)]
pub struct Pipelines {
    running: Mutex<BTreeMap<String, Running>>,
    statuses: Arc<Mutex<BTreeMap<String, PipelineStatus>>>,
}

impl Pipelines {
    /// Starts, restarts, pauses and forgets pipelines so that they match
    /// `config`. A pipeline runs only where its database has a writer.
    pub fn reconcile(&self, shared: &Arc<Shared>, config: &WorkspaceConfig) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| {
                config
                    .pipelines
                    .get(*name)
                    .is_none_or(|c| !c.running || *c != r.config)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                r.stop.send_replace(true);
            }
        }
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        statuses.retain(|name, _| config.pipelines.contains_key(name));
        for (name, pipeline) in &config.pipelines {
            let status = statuses
                .entry(name.clone())
                .or_insert_with(|| PipelineStatus {
                    name: name.clone(),
                    db: pipeline.db.clone(),
                    source: pipeline.source.clone(),
                    ..PipelineStatus::default()
                });
            if !pipeline.running {
                status.state = "paused".into();
                continue;
            }
            if running.contains_key(name) {
                continue;
            }
            let Some(db) = shared
                .dbs()
                .values()
                .find(|d| d.name == pipeline.db)
                .cloned()
            else {
                status.state = format!(
                    "waiting: database `{}` is not attached to this workspace",
                    pipeline.db
                );
                continue;
            };
            if db.is_follower() {
                status.state = format!(
                    "waiting: database `{}` is a read-only replica here; the pipeline runs where it is written",
                    pipeline.db
                );
                continue;
            }
            status.state = "running".into();
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(run(
                name.clone(),
                pipeline.clone(),
                db,
                Arc::clone(&self.statuses),
                stopped,
            ));
            running.insert(
                name.clone(),
                Running {
                    config: pipeline.clone(),
                    stop,
                    task,
                },
            );
        }
    }

    pub fn statuses(&self) -> Vec<PipelineStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Stops every pipeline after its current batch.
    pub async fn stop_all(&self) {
        let running: Vec<Running> =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .collect();
        for r in &running {
            r.stop.send_replace(true);
        }
        for r in running {
            let _ = r.task.await;
        }
    }
}

type Statuses = Arc<Mutex<BTreeMap<String, PipelineStatus>>>;

fn update(statuses: &Statuses, name: &str, f: impl FnOnce(&mut PipelineStatus)) {
    if let Some(status) = statuses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(name)
    {
        f(status);
    }
}

async fn run(
    name: String,
    config: PipelineConfig,
    db: Arc<AttachedDb>,
    statuses: Statuses,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match pass(&name, &config, &db, &statuses, &stop).await {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                update(&statuses, &name, |s| {
                    if s.files_pending == 0 {
                        s.state = "caught up".into();
                    }
                });
                POLL_EVERY
            }
            Err(e) => {
                tracing::warn!(pipeline = %name, "pipeline pass failed: {e}");
                update(&statuses, &name, |s| s.state = format!("waiting: {e}"));
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Reads the position the database holds.
async fn position(db: &AttachedDb, name: &str) -> Result<Position> {
    let Some(handle) = db.db() else {
        return Err(Error::Failed(format!(
            "database `{}` is read-only here",
            db.name
        )));
    };
    let found = handle
        .get(position_key(name))
        .await
        .map_err(|e| Error::database(&db.region, &db.name, "read the pipeline position", &e))?;
    decode_position(found.as_ref())
}

fn decode_position(bytes: Option<&Bytes>) -> Result<Position> {
    match bytes {
        None => Ok(Position::default()),
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| Error::Failed(format!("the pipeline position is damaged: {e}"))),
    }
}

/// The source's files not finished yet, in order, with their sizes.
async fn pending_files(store: &Arc<dyn ObjectStore>, at: &Position) -> Result<Vec<(Path, u64)>> {
    let listed = retrying(|| store.list(None).try_collect::<Vec<_>>())
        .await
        .map_err(|e| Error::Failed(format!("cannot list the pipeline source: {e}")))?;
    let mut files: Vec<(Path, u64)> = listed
        .into_iter()
        .filter(|m| {
            let name = m.location.as_ref();
            name > at.file.as_str() || (name == at.file && !at.done)
        })
        .map(|m| (m.location, m.size))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every pending file; returns when caught up.
async fn pass(
    name: &str,
    config: &PipelineConfig,
    db: &AttachedDb,
    statuses: &Statuses,
    stop: &watch::Receiver<bool>,
) -> Result<()> {
    let (source, _) = open_source(&config.source)?;
    let store = source.store();
    let mut at = position(db, name).await?;
    let files = pending_files(&store, &at).await?;
    update(statuses, name, |s| {
        s.position = at.clone();
        s.files_pending = files.len() as u64;
        if !files.is_empty() {
            s.state = "running".into();
        }
    });
    for (i, (file, size)) in files.iter().enumerate() {
        if *stop.borrow() {
            return Ok(());
        }
        if *size > MAX_FILE_BYTES {
            return Err(Error::Failed(format!(
                "{file} is {size} bytes, over the limit of {MAX_FILE_BYTES}; split it"
            )));
        }
        let from = if file.as_ref() == at.file {
            at.offset
        } else {
            0
        };
        if from == 0 || file.as_ref() != at.file {
            at = Position {
                file: file.to_string(),
                offset: 0,
                done: false,
                ..at
            };
        }
        let bytes = retrying(|| async { store.get(file).await?.bytes().await })
            .await
            .map_err(|e| Error::Failed(format!("cannot read {file}: {e}")))?;
        let body = bytes.get(from as usize..).unwrap_or_default();
        load_file(name, config, db, &mut at, body, from).await?;
        at.done = true;
        at.files_done += 1;
        commit(db, name, &mut WriteBatch::new(), &at).await?;
        update(statuses, name, |s| {
            s.position = at.clone();
            s.files_pending = (files.len() - i - 1) as u64;
        });
    }
    Ok(())
}

/// Loads `body` (the part of the file from byte `from`), a batch of lines
/// at a time, each batch with the position after its last line.
async fn load_file(
    name: &str,
    config: &PipelineConfig,
    db: &AttachedDb,
    at: &mut Position,
    body: &[u8],
    from: u64,
) -> Result<()> {
    let mut batch = WriteBatch::new();
    let mut in_batch = 0;
    let mut consumed = 0usize;
    for line in body.split_inclusive(|b| *b == b'\n') {
        consumed += line.len();
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match record_key(config, text) {
            Some(key) => {
                batch.put_with_options(key, text, &PutOptions { ttl: Ttl::NoExpiry });
                at.lines_loaded += 1;
            }
            None => at.bad_lines += 1,
        }
        in_batch += 1;
        if in_batch >= LINES_PER_BATCH {
            at.offset = from + consumed as u64;
            commit(db, name, &mut batch, at).await?;
            batch = WriteBatch::new();
            in_batch = 0;
        }
    }
    at.offset = from + consumed as u64;
    if in_batch > 0 {
        commit(db, name, &mut batch, at).await?;
    }
    Ok(())
}

/// `key_prefix` + the value of `key_field`, when the line is a JSON object
/// that has it as a string or a number.
fn record_key(config: &PipelineConfig, line: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let id = match value.as_object()?.get(&config.key_field)? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let mut key = config.key_prefix.as_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    (!key.starts_with(RESERVED_PREFIX)).then_some(key)
}

/// Writes `batch` with the position in it, and waits until it is durable.
async fn commit(db: &AttachedDb, name: &str, batch: &mut WriteBatch, at: &Position) -> Result<()> {
    let Some(handle) = db.db() else {
        return Err(Error::Failed(format!(
            "database `{}` is read-only here",
            db.name
        )));
    };
    let position = serde_json::to_vec(at)
        .map_err(|e| Error::Failed(format!("cannot encode the pipeline position: {e}")))?;
    let mut full = std::mem::take(batch);
    full.put_with_options(
        position_key(name),
        position,
        &PutOptions { ttl: Ttl::NoExpiry },
    );
    let fail =
        |e: slatedb::Error| Error::database(&db.region, &db.name, "load a pipeline batch", &e);
    let written = handle.write(full).await.map_err(fail)?;
    db.want_flush();
    written.await_durable().await.map_err(fail)
}

/// A pipeline's position as the database in `region` holds it (read with a
/// read-only reader, so it works on a home or a replica, served or not).
pub async fn stored_position(region: &Region, db: &str, pipeline: &str) -> Result<Position> {
    let location = crate::storage::DbLocation::in_region(region, db)?;
    let reader = location.open_reader().await?;
    let found = reader
        .get(position_key(pipeline))
        .await
        .map_err(|e| Error::database(region.name(), db, "read the pipeline position", &e));
    let _ = reader.close().await;
    decode_position(found?.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PipelineConfig {
        PipelineConfig {
            db: "orders".into(),
            source: "memory://x".into(),
            key_field: "id".into(),
            key_prefix: "order:".into(),
            running: true,
        }
    }

    #[test]
    fn keys_come_from_the_key_field() {
        let c = config();
        assert_eq!(
            record_key(&c, br#"{"id": 7, "total": 3}"#),
            Some(b"order:7".to_vec())
        );
        assert_eq!(
            record_key(&c, br#"{"id": "a-1"}"#),
            Some(b"order:a-1".to_vec())
        );
        assert_eq!(record_key(&c, br#"{"other": 1}"#), None);
        assert_eq!(record_key(&c, b"not json"), None);
        assert_eq!(record_key(&c, br#"[1, 2]"#), None);
    }
}
