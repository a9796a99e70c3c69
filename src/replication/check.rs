//! The consistency check: open a replica read-only and prove it holds a
//! gap-free prefix of its home's workload records, and by how much it lags.
//!
//! The replica is read first and the home second, so a home that moves on
//! while the check runs can only widen the measured lag, never fake a
//! prefix.

use serde::Serialize;

use super::Flow;
use crate::error::{Error, Result};
use crate::storage::DbLocation;
use crate::workload::acks::AckLog;
use crate::workload::verify::{VerifyReport, verify, verify_home};

/// What `check` found for one replica.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub db: String,
    pub branch: String,
    pub home: String,
    pub replica: String,
    /// The replica holds records 1..=n with no hole, no WAL gap and nothing
    /// corrupt, and the home holds at least as many.
    pub prefix: bool,
    /// Records the home has beyond the replica's prefix.
    pub lag_records: u64,
    /// Home commit time of its newest record minus the replica's.
    pub lag_s: Option<f64>,
    pub replica_report: VerifyReport,
    pub home_report: VerifyReport,
    /// Why `prefix` is false, one line each.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn summary(&self) -> String {
        let lag_s = self.lag_s.map_or("unknown".into(), |s| format!("{s:.3} s"));
        let mut lines = vec![format!(
            "{}/{} {} → {}: replica holds records 1..={} of the home's {}; lag {} records, {lag_s}",
            self.db,
            self.branch,
            self.home,
            self.replica,
            self.replica_report.highest_gap_free_seq,
            self.home_report.highest_gap_free_seq,
            self.lag_records
        )];
        if let Some(acks) = &self.replica_report.acks {
            lines.push(format!(
                "  acknowledged records the replica lacks: {}",
                acks.missing_acked
            ));
        }
        for problem in &self.problems {
            lines.push(format!("  PROBLEM: {problem}"));
        }
        lines.push(if self.prefix {
            "  consistent: the replica is a gap-free prefix of the home".into()
        } else {
            "  NOT a gap-free prefix of the home".into()
        });
        lines.join("\n")
    }
}

/// Verifies a home that may be live. A plain reader never writes, and
/// SlateDB's default garbage collection leaves files a day before deleting
/// them; under an aggressive collector (a churning home) a long scan can
/// lose an SST under it, and is then done again by a reader that holds a
/// checkpoint at the home while it reads.
async fn verify_live(home: &DbLocation) -> Result<VerifyReport> {
    match verify(home, None).await {
        Err(Error::Database { detail, .. }) if detail.contains("not found") => {
            tracing::info!(db = %home.db, "the home's GC deleted a file under the check's reader; reading again under a checkpoint");
            // Boxed: SlateDB's checkpoint and reader futures are large, and
            // a caller's own future (a test's body) sits on a thread's stack.
            Box::pin(verify_home(home, None)).await
        }
        other => other,
    }
}

/// Checks the replica of `flow` against its home (and the acknowledgement
/// log, when given: it shows how many acknowledged writes the replica lacks).
pub async fn check(flow: &Flow, acks: Option<&AckLog>) -> Result<CheckReport> {
    let replica = DbLocation::branch_in_region(&flow.replica, &flow.db, &flow.branch)?;
    let home = DbLocation::branch_in_region(&flow.home, &flow.db, &flow.branch)?;
    let replica_report = verify(&replica, acks).await?;
    let home_report = verify_live(&home).await?;
    let mut problems = Vec::new();
    if !replica_report.consistent {
        problems.extend(
            replica_report
                .summary()
                .lines()
                .filter(|l| l.starts_with("HOLE") || l.starts_with("CORRUPT"))
                .map(str::to_string),
        );
    }
    if replica_report.highest_seq > home_report.highest_seq {
        problems.push(format!(
            "the replica holds record {} that the home does not (highest {}): it is not a copy of this home",
            replica_report.highest_seq, home_report.highest_seq
        ));
    }
    let lag_records = home_report
        .highest_gap_free_seq
        .saturating_sub(replica_report.highest_gap_free_seq);
    let lag_s = match (
        home_report.newest_commit_us,
        replica_report.newest_commit_us,
    ) {
        (Some(h), Some(r)) => Some(h.saturating_sub(r) as f64 / 1e6),
        (Some(_), None) => None,
        (None, _) => Some(0.0),
    };
    Ok(CheckReport {
        db: flow.db.clone(),
        branch: flow.branch.clone(),
        home: flow.home.name().to_string(),
        replica: flow.replica.name().to_string(),
        prefix: problems.is_empty(),
        lag_records,
        lag_s,
        replica_report,
        home_report,
        problems,
    })
}
