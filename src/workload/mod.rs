//! The workload: writes sequence-numbered records at a steady rate, waits
//! for each to be durable, and logs what was acknowledged, so that a later
//! step can say exactly which acknowledged writes a copy lacks.
//!
//! Puts are issued at the target rate without waiting on each one; a second
//! task waits for durability. SlateDB makes writes durable in order, so
//! waiting on the newest outstanding write acknowledges every write before
//! it: one wait per WAL flush, not per record.

pub mod acks;
pub mod ranges;
pub mod record;
pub mod verify;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use slatedb::config::{CloseOptions, FlushType, ScanOptions};
use slatedb::{Db, IterationOrder, WriteHandle};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::storage::{ADMIN_TIMEOUT, DbLocation};
use acks::{AckBatch, AckLog};

/// Writes outstanding (issued, not yet durable) before the writer waits.
pub const MAX_UNACKED: usize = 100_000;

/// Puts issued per pacing step at most, so an unlimited rate still yields.
const BURST: u64 = 1_000;

/// How often the pacer wakes up to issue the puts that are due.
const PACE_TICK: Duration = Duration::from_millis(5);

/// How fast to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Rate {
    /// Records per second.
    PerSecond(u64),
    /// As fast as the database takes them.
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        match text.parse::<u64>() {
            Ok(0) => {
                Err("--rate 0 writes nothing; give records per second (at least 1) or `max`".into())
            }
            Ok(n) if n > 10_000_000 => Err(format!(
                "--rate {n} is over the limit of 10000000 records/s; use `max` for as fast as possible"
            )),
            Ok(n) => Ok(Rate::PerSecond(n)),
            Err(_) => Err(format!(
                "--rate `{text}` is not a number; give records per second, like 2000, or `max`"
            )),
        }
    }
}

/// What to write and when to stop.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub rate: Rate,
    /// Stop after this long (`None`: no time limit).
    pub duration: Option<Duration>,
    /// Stop after this many records (`None`: no count limit).
    pub records: Option<u64>,
    /// Bytes per value, padding included.
    pub value_bytes: usize,
    /// Flush, compact and collect garbage far more often than SlateDB's
    /// defaults (see `storage::churn_settings`): the hardest case for a
    /// replicator, used by tests, soaks and benchmarks.
    pub churn: bool,
}

impl WorkloadSpec {
    /// Checks the spec; every problem is one line with the fix.
    pub fn validate(&self) -> Result<()> {
        if self.records == Some(0) {
            return Err(Error::invalid(
                "--records 0 writes nothing; give at least 1",
            ));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid(
                "--duration 0 writes nothing; give a length like 30s",
            ));
        }
        if !(record::MIN_VALUE_BYTES..=record::MAX_VALUE_BYTES).contains(&self.value_bytes) {
            return Err(Error::invalid(format!(
                "--value-size {} is out of range; give {} to {} bytes",
                self.value_bytes,
                record::MIN_VALUE_BYTES,
                record::MAX_VALUE_BYTES
            )));
        }
        Ok(())
    }
}

/// What a workload run did.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    pub region: String,
    pub db: String,
    pub branch: String,
    pub run: String,
    /// The first sequence number this run wrote.
    pub first_seq: u64,
    /// The highest sequence number acknowledged as durable (`first_seq - 1` if none).
    pub last_acked_seq: u64,
    pub records_issued: u64,
    pub records_acked: u64,
    pub elapsed_s: f64,
    pub acked_per_s: f64,
    /// Put-to-durable latency, over every acknowledged record.
    pub ack_latency_p50_ms: f64,
    pub ack_latency_p99_ms: f64,
    pub ack_log: String,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A fresh run id: time-ordered and unique enough to tell runs apart.
fn new_run_id() -> String {
    format!("{:x}-{:04x}", now_us(), fastrand::u16(..))
}

/// The highest workload sequence number present in `db`, if any.
async fn highest_seq(db: &Db) -> std::result::Result<Option<u64>, slatedb::Error> {
    let options = ScanOptions::default().with_order(IterationOrder::Descending);
    let mut iter = db.scan_with_options(record::key_range(), &options).await?;
    while let Some(kv) = iter.next().await? {
        if let Some(seq) = record::parse_key(&kv.key) {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// A put that has been issued and awaits durability.
struct Pending {
    seq: u64,
    issued: Instant,
    handle: WriteHandle,
}

/// Put-to-durable latencies in 100 µs buckets up to 60 s: exact enough for
/// p50/p99, bounded in memory however long the run.
struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
}

impl LatencyHistogram {
    const BUCKET_US: u64 = 100;
    const BUCKETS: usize = 600_000;

    fn new() -> Self {
        LatencyHistogram {
            buckets: vec![0; Self::BUCKETS],
            count: 0,
        }
    }

    fn record(&mut self, latency: Duration) {
        let index = (latency.as_micros() as u64 / Self::BUCKET_US) as usize;
        self.buckets[index.min(Self::BUCKETS - 1)] += 1;
        self.count += 1;
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let target = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return ((i as u64 + 1) * Self::BUCKET_US) as f64 / 1000.0;
            }
        }
        60_000.0
    }
}

/// What the acknowledging task found.
struct AckOutcome {
    last_acked: Option<u64>,
    acked: u64,
    histogram: LatencyHistogram,
    error: Option<Error>,
}

/// Waits for durability in order, logging each durable batch.
async fn acknowledge(
    mut pending: mpsc::Receiver<Pending>,
    mut log: acks::AckWriter,
    location: DbLocation,
    run: String,
) -> AckOutcome {
    let mut outcome = AckOutcome {
        last_acked: None,
        acked: 0,
        histogram: LatencyHistogram::new(),
        error: None,
    };
    let mut batch: Vec<Pending> = Vec::new();
    loop {
        batch.clear();
        match pending.recv().await {
            Some(p) => batch.push(p),
            None => break,
        }
        while let Ok(p) = pending.try_recv() {
            batch.push(p);
        }
        let Some(newest) = batch.last() else { continue };
        if let Err(err) = newest.handle.await_durable().await {
            outcome.error = Some(Error::database(
                &location.label,
                &location.db,
                "await durable",
                &err,
            ));
            break;
        }
        let acked_at = Instant::now();
        for p in &batch {
            outcome.histogram.record(acked_at.duration_since(p.issued));
        }
        let (first, last) = (batch[0].seq, newest.seq);
        let line = AckBatch {
            region: location.label.clone(),
            branch: location.branch.clone(),
            run: run.clone(),
            first,
            last,
            acked_us: now_us(),
        };
        if let Err(err) = log.append(&line) {
            outcome.error = Some(err);
            break;
        }
        outcome.last_acked = Some(last);
        outcome.acked += last - first + 1;
    }
    if let Err(err) = log.sync()
        && outcome.error.is_none()
    {
        outcome.error = Some(err);
    }
    outcome
}

/// A workload running on the runtime until it is stopped or ends by itself
/// (a fault, or its duration or count reached).
pub struct BackgroundRun {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<WorkloadReport>>,
}

impl BackgroundRun {
    /// Starts [`run`] on `location` in a task of its own.
    pub fn start(location: DbLocation, spec: WorkloadSpec, ack_log: AckLog) -> BackgroundRun {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            run(&location, &spec, &ack_log, async {
                let _ = stopped.await;
            })
            .await
        });
        BackgroundRun { stop, task }
    }

    /// Whether the run has ended by itself.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the run (the writer closes, flushing what it holds). The outer
    /// error is a task that panicked; the inner result is the run's own.
    pub async fn stop(self) -> Result<Result<WorkloadReport>> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| Error::Failed(format!("a workload task panicked: {e}")))
    }
}

/// Runs the workload against the existing database at `location` until the
/// spec's limits or `stop` resolves, whichever comes first.
pub async fn run(
    location: &DbLocation,
    spec: &WorkloadSpec,
    ack_log: &AckLog,
    stop: impl std::future::Future<Output = ()>,
) -> Result<WorkloadReport> {
    spec.validate()?;
    let settings = if spec.churn {
        crate::storage::churn_settings(location.if_match)
    } else {
        location.settings()
    };
    // Every file this writer makes durable reaches the replicator at once,
    // from the manifest its opening writes on (marked after the open, a
    // look in between finds that manifest and lists `compactions/`).
    let _writing_here = location.mark_writer();
    let db = location.open_writer_with(false, settings).await?;
    let flusher = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        crate::storage::bound_memtable_age(db.clone(), crate::storage::MEMTABLE_AGE_BOUND),
    ));
    let start_seq = highest_seq(&db)
        .await
        .map_err(|e| Error::database(&location.label, &location.db, "find the highest record", &e))?
        .map_or(1, |s| s + 1);
    let run_id = new_run_id();
    let (tx, rx) = mpsc::channel::<Pending>(MAX_UNACKED);
    let acker = tokio::spawn(acknowledge(
        rx,
        ack_log.writer()?,
        location.clone(),
        run_id.clone(),
    ));

    let started = Instant::now();
    let deadline = spec.duration.map(|d| started + d);
    let mut next_seq = start_seq;
    let mut write_error: Option<Error> = None;
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(PACE_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    'pace: loop {
        let issued = next_seq - start_seq;
        if spec.records.is_some_and(|n| issued >= n) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let due = match spec.rate {
            Rate::Max => issued + BURST,
            Rate::PerSecond(rate) => (started.elapsed().as_secs_f64() * rate as f64) as u64,
        };
        let due = spec.records.map_or(due, |n| due.min(n));
        let mut burst = 0;
        while next_seq - start_seq < due && burst < BURST {
            let seq = next_seq;
            let value = record::value(seq, now_us(), &run_id, spec.value_bytes);
            let handle = match db.put(record::key(seq), value).await {
                Ok(handle) => handle,
                Err(err) => {
                    write_error = Some(Error::database(&location.label, &location.db, "put", &err));
                    break 'pace;
                }
            };
            let pending = Pending {
                seq,
                issued: Instant::now(),
                handle,
            };
            // A full channel is back-pressure: the database is behind.
            if tx.send(pending).await.is_err() {
                break 'pace; // the acknowledging task stopped on an error
            }
            next_seq += 1;
            burst += 1;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick(), if spec.rate != Rate::Max => {}
            _ = tokio::task::yield_now(), if spec.rate == Rate::Max => {}
        }
    }
    drop(tx);
    let outcome = acker.await.map_err(|e| Error::Database {
        region: location.label.clone(),
        db: location.db.clone(),
        op: "acknowledge".into(),
        detail: e.to_string(),
    })?;
    let elapsed = started.elapsed();
    // The WAL flush on close keeps unflushed records in WAL files, as a
    // running application leaves them; nothing acknowledged depends on it.
    drop(flusher);
    let close =
        db.close_with_options(CloseOptions::default().with_flush_type(Some(FlushType::Wal)));
    let close_error = location.bounded("close", ADMIN_TIMEOUT, close).await.err();
    let error = write_error.or(outcome.error).or(close_error);
    let records_acked = outcome.acked;
    Ok(WorkloadReport {
        region: location.label.clone(),
        db: location.db.clone(),
        branch: location.branch.clone(),
        run: run_id,
        first_seq: start_seq,
        last_acked_seq: outcome.last_acked.unwrap_or(start_seq - 1),
        records_issued: next_seq - start_seq,
        records_acked,
        elapsed_s: elapsed.as_secs_f64(),
        acked_per_s: records_acked as f64 / elapsed.as_secs_f64().max(1e-9),
        ack_latency_p50_ms: outcome.histogram.quantile_ms(0.50),
        ack_latency_p99_ms: outcome.histogram.quantile_ms(0.99),
        ack_log: ack_log.path().display().to_string(),
        error: error.map(|e| e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_parses_numbers_and_max_and_rejects_zero() {
        assert_eq!("2000".parse::<Rate>(), Ok(Rate::PerSecond(2000)));
        assert_eq!("MAX".parse::<Rate>(), Ok(Rate::Max));
        assert!("0".parse::<Rate>().unwrap_err().contains("at least 1"));
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        assert!(
            (h.quantile_ms(0.5) - 50.1).abs() < 0.2,
            "{}",
            h.quantile_ms(0.5)
        );
        assert!((h.quantile_ms(0.99) - 99.1).abs() < 0.2);
    }
}
