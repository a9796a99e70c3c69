//! A database a workspace serves: the home's writer, or a read-only
//! follower of a replica. Keys and values are the client's bytes; the keys
//! under [`RESERVED_PREFIX`] belong to Lifeboat (pipeline offsets) and are
//! hidden from clients.
//!
//! Writes that read first (INCR, SET NX, DEL's count) hold the database's
//! write lock only while they read and submit; durability is awaited after
//! the lock is released (its handle goes back to the connection), so a
//! slow WAL flush never serialises clients.
//!
//! Group commit: every write wakes the database's flusher, which makes the
//! WAL durable at once, or as soon as the flush under way ends (at most one
//! every [`MIN_FLUSH_GAP`]). A lone write waits for one object-store put;
//! many at once share each put, and the number of WAL files (which the
//! replicator copies one by one) stays bounded.

use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use slatedb::config::{FlushOptions, FlushType, PutOptions, Ttl};
use slatedb::{Db, DbReader, WriteBatch, WriteHandle};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::region::Region;
use crate::region::meter::WriterMark;
use crate::region::sync::{GUARD_WAIT, Verdict};
use crate::storage::DbLocation;
use crate::storage::compactor::BesideCompactor;
use crate::storage::cursor;
use crate::workload::now_us;

/// Keys that start with these bytes are Lifeboat's, not the client's.
pub const RESERVED_PREFIX: &[u8] = b"\xff\xfelifeboat/";

/// The shortest time between two WAL flushes the flusher asks for: bounds
/// the WAL files a busy workspace writes (and the replicator copies) to
/// 200 a second.
pub const MIN_FLUSH_GAP: Duration = Duration::from_millis(5);

/// SlateDB's own flush timer, a backstop behind the flusher.
pub const WAL_FLUSH: Duration = Duration::from_millis(100);

/// Most keys one SCAN call looks at.
pub const MAX_SCAN_COUNT: usize = 10_000;

/// The two ways a workspace serves a database.
pub enum Handle {
    Writer(Db),
    Follower(Box<DbReader>),
}

/// One database served at one index.
pub struct AttachedDb {
    pub index: u32,
    pub name: String,
    pub location: DbLocation,
    pub region: String,
    handle: Handle,
    write_lock: tokio::sync::Mutex<()>,
    /// Wakes the flusher (writers only).
    flush_wanted: Arc<Notify>,
    flusher: Option<JoinHandle<()>>,
    /// A writer's compactor, started once the writer is open.
    compactor: Option<BesideCompactor>,
    /// When a follower's replica last held everything its home had (µs).
    synced_us: Mutex<Option<u64>>,
    /// Why writes are refused now (a planned switchover under way).
    frozen: Mutex<Option<String>>,
    /// Held while this writer is open: the replicator copies what it
    /// writes as it lands instead of polling for it.
    writing_here: Mutex<Option<WriterMark>>,
}

/// A condition on SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetIf {
    Always,
    /// NX: only when the key is absent.
    Absent,
    /// XX: only when the key exists.
    Present,
}

/// A failure a client sees as one error line.
pub type OpResult<T> = std::result::Result<T, String>;

/// What the caller of [`AttachedDb::attach_as`] already knows of the
/// branch it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Nothing: attaching looks whether it exists and is a replica here.
    Nothing,
    /// The caller has just forked it here: it exists, and a fork is a
    /// home, never a replica (a failover's workspaces, on its RTO path).
    JustForked,
}

impl AttachedDb {
    /// Attaches branch `branch` (the live one) of database `name` of
    /// `region` at `index`: as its writer when the region is its home, as a
    /// read-only follower when it holds a replica (a writer never opens on a
    /// replica: DESIGN.md invariant 4).
    pub async fn attach(
        region: &Region,
        index: u32,
        name: &str,
        branch: &str,
    ) -> Result<AttachedDb> {
        Self::attach_as(region, index, name, branch, Seen::Nothing).await
    }

    /// As [`Self::attach`], with what the caller has `seen` of the branch.
    pub async fn attach_as(
        region: &Region,
        index: u32,
        name: &str,
        branch: &str,
        seen: Seen,
    ) -> Result<AttachedDb> {
        let location = DbLocation::branch_in_region(region, name, branch)?;
        let replica_of = match seen {
            Seen::JustForked => None,
            Seen::Nothing => {
                // Both looks at once.
                let store = region.store();
                let (_, replica_of) = tokio::try_join!(
                    location.require(),
                    cursor::load(&store, region.name(), name, &location.branch)
                )?;
                replica_of
            }
        };
        let flush_wanted = Arc::new(Notify::new());
        let writing_here = replica_of
            .is_none()
            .then(|| location.mark_writer())
            .flatten();
        let mut compactor = None;
        let (handle, flusher) = match &replica_of {
            Some(_) => (
                Handle::Follower(Box::new(location.open_reader().await?)),
                None,
            ),
            None => {
                let mut settings = location.settings();
                settings.flush_interval = Some(WAL_FLUSH);
                let compactor_options = settings.compactor_options.take();
                let db = location.open_checked_writer(settings).await?;
                compactor = compactor_options.map(|o| BesideCompactor::start(&location, o));
                // Group commit, and a WAL tail that stays short for a
                // failover's fork to copy and replay.
                let flusher = tokio::spawn({
                    let (db, wanted) = (db.clone(), Arc::clone(&flush_wanted));
                    async move {
                        tokio::join!(
                            flush_on_demand(db.clone(), wanted),
                            crate::storage::bound_memtable_age(
                                db,
                                crate::storage::MEMTABLE_AGE_BOUND
                            )
                        );
                    }
                });
                (Handle::Writer(db), Some(flusher))
            }
        };
        Ok(AttachedDb {
            index,
            name: name.to_string(),
            region: region.name().to_string(),
            synced_us: Mutex::new(replica_of.and_then(|c| c.synced_us)),
            frozen: Mutex::new(None),
            location,
            handle,
            write_lock: tokio::sync::Mutex::new(()),
            flush_wanted,
            flusher,
            compactor,
            writing_here: Mutex::new(writing_here),
        })
    }

    pub fn is_follower(&self) -> bool {
        matches!(self.handle, Handle::Follower(_))
    }

    /// The writer, or the error a client gets for a write on a follower.
    pub fn writer(&self) -> OpResult<&Db> {
        if let Some(why) = self
            .frozen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Err(format!("READONLY {why}"));
        }
        match &self.handle {
            Handle::Writer(db) => Ok(db),
            Handle::Follower(_) => Err(format!(
                "READONLY database `{}` is a read-only replica in region `{}`; write through a workspace in its home region",
                self.name, self.region
            )),
        }
    }

    /// Refuses every write from now on with `why` (reads go on): the
    /// database's home is moving.
    pub fn freeze(&self, why: String) {
        *self.frozen.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// The writer's own handle, for the pipelines (`None` on a follower).
    pub fn db(&self) -> Option<&Db> {
        match &self.handle {
            Handle::Writer(db) => Some(db),
            Handle::Follower(_) => None,
        }
    }

    fn fail(&self, op: &str, err: slatedb::Error) -> String {
        format!(
            "ERR database `{}` in region `{}`: {op} failed: {}",
            self.name,
            self.region,
            crate::error::one_line(&err.to_string())
        )
    }

    pub async fn get(&self, key: &[u8]) -> OpResult<Option<Bytes>> {
        if key.starts_with(RESERVED_PREFIX) {
            return Ok(None);
        }
        match &self.handle {
            Handle::Writer(db) => db.get(key).await,
            Handle::Follower(reader) => reader.get(key).await,
        }
        .map_err(|e| self.fail("get", e))
    }

    /// SET with its options; returns whether it wrote, the old value when
    /// `want_old`, and the write to await.
    pub async fn set(
        &self,
        key: Bytes,
        value: Bytes,
        ttl_ms: Option<u64>,
        cond: SetIf,
        want_old: bool,
    ) -> OpResult<(bool, Option<Bytes>, Option<WriteHandle>)> {
        let db = self.writer()?;
        reserved(&key)?;
        let options = PutOptions {
            ttl: ttl_ms.map_or(Ttl::NoExpiry, Ttl::ExpireAfterMillis),
        };
        let _lock = self.write_lock.lock().await;
        let old = if cond != SetIf::Always || want_old {
            db.get(&key).await.map_err(|e| self.fail("get", e))?
        } else {
            None
        };
        let allowed = match cond {
            SetIf::Always => true,
            SetIf::Absent => old.is_none(),
            SetIf::Present => old.is_some(),
        };
        if !allowed {
            return Ok((false, old, None));
        }
        let handle = db
            .put_with_options(&key, &value, &options, &Default::default())
            .await
            .map_err(|e| self.fail("put", e))?;
        self.flush_wanted.notify_one();
        Ok((true, old, Some(handle)))
    }

    /// Waits until a write is acknowledgeable: durable at the home and, in
    /// a group that promises zero loss, held by the replica (see
    /// [`crate::region::sync`]; past the group's timeout the write is
    /// acknowledged and the link suspended).
    pub async fn settle(&self, handle: WriteHandle) -> OpResult<()> {
        handle.await_durable().await.map_err(|e| {
            format!(
                "ERR the write was not made durable: {}",
                crate::error::one_line(&e.to_string())
            )
        })?;
        if let Some(notices) = &self.location.notices {
            let what = format!("database `{}`", self.name);
            notices
                .sync
                .wait_replicated(self.location.path.as_ref(), &what)
                .await;
        }
        Ok(())
    }

    /// The RPO guard: slows a write, then refuses it, while the replica
    /// would fall further behind than the group's RPO target.
    pub async fn admit_write(&self) -> OpResult<()> {
        /// How often a write held by the guard looks again.
        const GUARD_POLL: Duration = Duration::from_millis(25);
        let Some(notices) = &self.location.notices else {
            return Ok(());
        };
        let base = self.location.path.as_ref();
        let started = std::time::Instant::now();
        loop {
            match notices.sync.guard(base) {
                Verdict::Go => return Ok(()),
                Verdict::Slow(pause) => {
                    tokio::time::sleep(pause).await;
                    return Ok(());
                }
                Verdict::Over { .. } if started.elapsed() < GUARD_WAIT => {
                    tokio::time::sleep(GUARD_POLL).await;
                }
                Verdict::Over {
                    replica,
                    lag_s,
                    projected_s,
                    pending_bytes,
                    target,
                } => {
                    let at_rate = if projected_s.is_finite() {
                        format!("{projected_s:.1} s at the link's recent rate")
                    } else {
                        "the link copies nothing now".to_string()
                    };
                    return Err(format!(
                        "NOREPLICAS RPO guard: the write to database `{}` was not made: its replica in {replica} is {lag_s:.1} s behind with {} to copy ({at_rate}), too close to the group's RPO target of {} s; retry once it catches up, or turn the guard off in the group's settings",
                        self.name,
                        crate::storage::human_bytes(pending_bytes),
                        target.as_secs_f64()
                    ));
                }
            }
        }
    }

    /// Writes the reserved probe key (the time, in Unix milliseconds): the
    /// write a failover's RTO is measured to.
    pub async fn probe(&self, now_ms: u64) -> OpResult<WriteHandle> {
        let db = self.writer()?;
        let mut key = RESERVED_PREFIX.to_vec();
        key.extend_from_slice(b"probe");
        let handle = db
            .put_with_options(
                &key,
                now_ms.to_string().as_bytes(),
                &PutOptions { ttl: Ttl::NoExpiry },
                &Default::default(),
            )
            .await
            .map_err(|e| self.fail("put", e))?;
        self.flush_wanted.notify_one();
        Ok(handle)
    }

    /// Writes every pair at once.
    pub async fn mset(&self, pairs: Vec<(Bytes, Bytes)>) -> OpResult<WriteHandle> {
        let db = self.writer()?;
        let mut batch = WriteBatch::new();
        for (key, value) in &pairs {
            reserved(key)?;
            batch.put_with_options(key, value, &PutOptions { ttl: Ttl::NoExpiry });
        }
        let _lock = self.write_lock.lock().await;
        let handle = db.write(batch).await.map_err(|e| self.fail("write", e))?;
        self.flush_wanted.notify_one();
        Ok(handle)
    }

    /// Writes `batch` as it is (a merge of recovered writes: it may hold
    /// deletes as well as puts, and no reserved key).
    pub async fn apply(&self, batch: WriteBatch) -> OpResult<WriteHandle> {
        let db = self.writer()?;
        let _lock = self.write_lock.lock().await;
        let handle = db.write(batch).await.map_err(|e| self.fail("write", e))?;
        self.flush_wanted.notify_one();
        Ok(handle)
    }

    /// Deletes the keys that exist; returns how many did.
    pub async fn del(&self, keys: &[Bytes]) -> OpResult<(i64, Option<WriteHandle>)> {
        let db = self.writer()?;
        let _lock = self.write_lock.lock().await;
        let mut batch = WriteBatch::new();
        let mut count = 0;
        for key in keys {
            if key.starts_with(RESERVED_PREFIX) {
                continue;
            }
            if db
                .get(key)
                .await
                .map_err(|e| self.fail("get", e))?
                .is_some()
            {
                batch.delete(key);
                count += 1;
            }
        }
        if count == 0 {
            return Ok((0, None));
        }
        let handle = db.write(batch).await.map_err(|e| self.fail("write", e))?;
        self.flush_wanted.notify_one();
        Ok((count, Some(handle)))
    }

    /// Adds `delta` to the integer at `key` (0 when absent).
    pub async fn incr_by(&self, key: Bytes, delta: i64) -> OpResult<(i64, WriteHandle)> {
        let db = self.writer()?;
        reserved(&key)?;
        let _lock = self.write_lock.lock().await;
        let old = db.get(&key).await.map_err(|e| self.fail("get", e))?;
        let current = match &old {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("ERR value is not an integer or out of range")?,
        };
        let next = current
            .checked_add(delta)
            .ok_or("ERR increment or decrement would overflow")?;
        let handle = db
            .put_with_options(
                &key,
                next.to_string().as_bytes(),
                &PutOptions { ttl: Ttl::NoExpiry },
                &Default::default(),
            )
            .await
            .map_err(|e| self.fail("put", e))?;
        self.flush_wanted.notify_one();
        Ok((next, handle))
    }

    /// Up to `count` keys after `after` (from the start when `None`) that
    /// match `pattern`, and the key to continue after (`None` at the end).
    pub async fn scan(
        &self,
        after: Option<Bytes>,
        count: usize,
        pattern: Option<&[u8]>,
    ) -> OpResult<(Vec<Bytes>, Option<Bytes>)> {
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let range = (start, Bound::<Bytes>::Unbounded);
        let mut iter = match &self.handle {
            Handle::Writer(db) => db.scan(range).await,
            Handle::Follower(reader) => reader.scan(range).await,
        }
        .map_err(|e| self.fail("scan", e))?;
        let mut keys = Vec::new();
        let mut looked = 0;
        let mut last = None;
        while looked < count.clamp(1, MAX_SCAN_COUNT) {
            let Some(kv) = iter.next().await.map_err(|e| self.fail("scan", e))? else {
                return Ok((keys, None));
            };
            looked += 1;
            last = Some(kv.key.clone());
            if kv.key.starts_with(RESERVED_PREFIX) {
                continue;
            }
            if pattern.is_none_or(|p| super::glob::matches(p, &kv.key)) {
                keys.push(kv.key);
            }
        }
        Ok((keys, last))
    }

    /// How many client keys the database holds (a full scan).
    pub async fn dbsize(&self) -> OpResult<i64> {
        let range = (Bound::<Bytes>::Unbounded, Bound::<Bytes>::Unbounded);
        let mut iter = match &self.handle {
            Handle::Writer(db) => db.scan(range).await,
            Handle::Follower(reader) => reader.scan(range).await,
        }
        .map_err(|e| self.fail("scan", e))?;
        let mut count = 0;
        while let Some(kv) = iter.next().await.map_err(|e| self.fail("scan", e))? {
            if !kv.key.starts_with(RESERVED_PREFIX) {
                count += 1;
            }
        }
        Ok(count)
    }

    /// A follower's lag: now minus when its replica last held everything
    /// its home had (`None` for a writer, or before the first sync).
    pub fn lag_s(&self) -> Option<f64> {
        if !self.is_follower() {
            return None;
        }
        let synced = *self.synced_us.lock().unwrap_or_else(|p| p.into_inner());
        synced.map(|s| now_us().saturating_sub(s) as f64 / 1e6)
    }

    /// Reads the replica's cursor again (a follower's lag source).
    pub async fn refresh_lag(&self, region: &Region) -> Result<()> {
        if !self.is_follower() {
            return Ok(());
        }
        let found = cursor::load(
            &region.store(),
            region.name(),
            &self.name,
            &self.location.branch,
        )
        .await?;
        *self.synced_us.lock().unwrap_or_else(|p| p.into_inner()) = found.and_then(|c| c.synced_us);
        Ok(())
    }

    /// Asks for the WAL to be made durable soon (after a write submitted
    /// outside the methods above, such as a pipeline's batch).
    pub fn want_flush(&self) {
        self.flush_wanted.notify_one();
    }

    /// Flushes and closes the writer or the reader.
    pub async fn close(&self) -> Result<()> {
        if let Some(flusher) = &self.flusher {
            flusher.abort();
        }
        if let Some(compactor) = &self.compactor {
            compactor.stop().await;
        }
        let closed = match &self.handle {
            Handle::Writer(db) => db.close().await,
            Handle::Follower(reader) => reader.close().await,
        };
        // Closed (or failing to): a writer elsewhere may take the branch
        // over, so the replicator looks at it again.
        self.writing_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        closed.map_err(|e| Error::database(&self.region, &self.name, "close", &e))
    }
}

/// The flusher: one WAL flush per wake-up, no two closer than
/// [`MIN_FLUSH_GAP`]; wake-ups during a flush fold into the next one.
async fn flush_on_demand(db: Db, wanted: Arc<Notify>) {
    let options = FlushOptions {
        flush_type: FlushType::Wal,
    };
    loop {
        wanted.notified().await;
        let started = tokio::time::Instant::now();
        if let Err(e) = db.flush_with_options(options.clone()).await {
            if matches!(e.kind(), slatedb::ErrorKind::Closed(_)) {
                return;
            }
            tracing::warn!("WAL flush failed: {e}");
        }
        tokio::time::sleep_until(started + MIN_FLUSH_GAP).await;
    }
}

fn reserved(key: &[u8]) -> OpResult<()> {
    if key.starts_with(RESERVED_PREFIX) {
        return Err("ERR keys that start with \\xff\\xfelifeboat/ are reserved".into());
    }
    Ok(())
}
