//! Verification of a database or a copy of one: does it hold a gap-free
//! prefix of the workload's records, and which acknowledged records does it
//! lack?
//!
//! Two kinds of hole are looked for. A record hole is a sequence number
//! missing below the highest one present. A WAL hole is a WAL file missing
//! between the manifest's replay point and the newest WAL file: SlateDB
//! readers stop silently at such a gap, so the records after it vanish
//! without an error, and only the file listing shows why.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::storage::DbLocation;
use crate::workload::acks::AckLog;
use crate::workload::ranges::SeqRanges;
use crate::workload::record;

/// How many ranges a report lists before it only counts.
const PREVIEW_RANGES: usize = 10;

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The region name, or the URL of a copy.
    pub location: String,
    pub db: String,
    /// Workload records present.
    pub records: u64,
    /// Every record from 1 up to this one is present (0 if record 1 is missing).
    pub highest_gap_free_seq: u64,
    /// The highest sequence present.
    pub highest_seq: u64,
    /// Sequence numbers missing below the highest present.
    pub holes: SeqRanges,
    pub missing_records: u64,
    /// WAL file ids missing in the range readers replay.
    pub wal_gaps: Vec<u64>,
    /// Records whose key and value disagree or do not parse.
    pub corrupt_records: u64,
    /// The newest commit time among the records present (RFC 3339).
    pub newest_commit: Option<String>,
    pub newest_commit_us: Option<u64>,
    /// Against the acknowledgement log, when one exists.
    pub acks: Option<AckCheck>,
    /// True when there is no hole of either kind and no corrupt record.
    pub consistent: bool,
}

/// The copy against the acknowledgement log.
#[derive(Debug, Clone, Serialize)]
pub struct AckCheck {
    pub ack_log: String,
    pub acked_records: u64,
    pub highest_acked_seq: u64,
    /// Acknowledged records this copy lacks (lag, or loss).
    pub missing_acked: u64,
    pub missing_acked_ranges: SeqRanges,
}

impl VerifyReport {
    /// A one-paragraph summary for people.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "{} in {}: {} records, gap-free up to {}, highest {}, newest commit {}",
            self.db,
            self.location,
            self.records,
            self.highest_gap_free_seq,
            self.highest_seq,
            self.newest_commit.as_deref().unwrap_or("none")
        )];
        if !self.holes.is_empty() {
            lines.push(format!(
                "HOLE: {} records missing below the highest: {}",
                self.missing_records,
                self.holes.preview(PREVIEW_RANGES)
            ));
        }
        if !self.wal_gaps.is_empty() {
            let ids: Vec<String> = self
                .wal_gaps
                .iter()
                .take(PREVIEW_RANGES)
                .map(u64::to_string)
                .collect();
            lines.push(format!(
                "HOLE: {} WAL file(s) missing ({}); readers stop before them, so later records are invisible",
                self.wal_gaps.len(),
                ids.join(", ")
            ));
        }
        if self.corrupt_records > 0 {
            lines.push(format!(
                "CORRUPT: {} records do not parse",
                self.corrupt_records
            ));
        }
        if let Some(acks) = &self.acks {
            if acks.missing_acked == 0 {
                lines.push(format!(
                    "all {} acknowledged records are present (log {})",
                    acks.acked_records, acks.ack_log
                ));
            } else {
                lines.push(format!(
                    "lacks {} of {} acknowledged records: {} (log {})",
                    acks.missing_acked,
                    acks.acked_records,
                    acks.missing_acked_ranges.preview(PREVIEW_RANGES),
                    acks.ack_log
                ));
            }
        }
        lines.push(if self.consistent {
            "consistent: a gap-free prefix".to_string()
        } else {
            "NOT consistent".to_string()
        });
        lines.join("\n")
    }
}

/// Reads every workload record at `location` through a read-only reader
/// (it never writes, so it is safe on a replica) and checks it against
/// `ack_log` when that log exists.
pub async fn verify(location: &DbLocation, ack_log: Option<&AckLog>) -> Result<VerifyReport> {
    let wal_gaps = location.describe().await?.wal_gaps;
    let reader = location.open_reader().await?;
    let report = verify_with(location, &reader, wal_gaps, ack_log).await;
    if let Err(e) = reader.close().await {
        tracing::warn!(db = %location.db, "closing the verify reader: {e}");
    }
    report
}

/// Like [`verify`], for a live home: the reader is pinned to a checkpoint
/// at the home while it reads, so the home's garbage collector cannot
/// delete what it reads, however long the scan takes.
pub async fn verify_home(location: &DbLocation, ack_log: Option<&AckLog>) -> Result<VerifyReport> {
    let wal_gaps = location.describe().await?.wal_gaps;
    let pinned = location.open_home_reader().await?;
    let report = verify_with(location, &pinned.reader, wal_gaps, ack_log).await;
    pinned.release().await;
    report
}

async fn verify_with(
    location: &DbLocation,
    reader: &slatedb::DbReader,
    wal_gaps: Vec<u64>,
    ack_log: Option<&AckLog>,
) -> Result<VerifyReport> {
    let read_error = |e: slatedb::Error| Error::database(&location.label, &location.db, "read", &e);
    let mut iter = reader.scan(record::key_range()).await.map_err(read_error)?;
    let mut present = SeqRanges::default();
    let (mut records, mut corrupt, mut newest_us) = (0u64, 0u64, None::<u64>);
    while let Some(kv) = iter.next().await.map_err(read_error)? {
        match record::parse(&kv.key, &kv.value) {
            Some(rec) => {
                records += 1;
                present.push(rec.seq, rec.seq);
                newest_us = Some(newest_us.map_or(rec.commit_us, |n| n.max(rec.commit_us)));
            }
            None => corrupt += 1,
        }
    }
    drop(iter);

    let highest_seq = present.max().unwrap_or(0);
    let holes = if highest_seq == 0 {
        SeqRanges::default()
    } else {
        SeqRanges::from_unsorted(vec![(1, highest_seq)]).minus(&present)
    };
    let highest_gap_free_seq = match present.ranges().first() {
        Some(&(1, last)) => last,
        _ => 0,
    };
    let acks = match ack_log {
        Some(log) => check_acks(log, &present)?,
        None => None,
    };
    let consistent = holes.is_empty() && wal_gaps.is_empty() && corrupt == 0;
    Ok(VerifyReport {
        location: location.label.clone(),
        db: location.db.clone(),
        records,
        highest_gap_free_seq,
        highest_seq,
        missing_records: holes.count(),
        holes,
        wal_gaps,
        corrupt_records: corrupt,
        newest_commit: newest_us.map(format_us),
        newest_commit_us: newest_us,
        acks,
        consistent,
    })
}

fn check_acks(log: &AckLog, present: &SeqRanges) -> Result<Option<AckCheck>> {
    let Some(batches) = log.read()? else {
        return Ok(None);
    };
    let acked = SeqRanges::from_unsorted(batches.iter().map(|b| (b.first, b.last)).collect());
    let missing = acked.minus(present);
    Ok(Some(AckCheck {
        ack_log: log.path().display().to_string(),
        acked_records: acked.count(),
        highest_acked_seq: acked.max().unwrap_or(0),
        missing_acked: missing.count(),
        missing_acked_ranges: missing,
    }))
}

/// RFC 3339 with microseconds, UTC.
pub fn format_us(us: u64) -> String {
    // RFC 3339 ends at the year 9999.
    const LAST_US: u64 = 253_402_300_799_999_999;
    if us > LAST_US {
        return format!("{} s after 1970", us / 1_000_000);
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_micros(t).to_string()
}
