//! The soak: everything at once, for a long time, with faults, checked
//! after every step.
//!
//! A database is homed in each of two regions and written continuously;
//! replication runs both ways. On a schedule, a step disturbs the system
//! (an outage of one region, then its recovery; a drill in the replica's
//! region; a failover of one database to its replica's region, after which
//! it is written there and replicated back). After every
//! step each replica must be a gap-free prefix of its home and every
//! acknowledged write must still be at its home. At the end the writers
//! stop and every replica must catch up to hold every acknowledged write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::region::Region;
use crate::replication::check::CheckReport;
use crate::replication::pins::{BranchPins, Pins};
use crate::replication::{self, Flow, FlowState, ReplicationOptions, Replicator};
use crate::storage::DbLocation;
use crate::workload::acks::AckLog;
use crate::workload::{BackgroundRun, Rate, WorkloadReport, WorkloadSpec};

/// How long a soak runs and how hard it pushes.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub duration: Duration,
    /// Steady running between two steps.
    pub step_every: Duration,
    /// How long each outage lasts.
    pub outage_for: Duration,
    /// Records per second written to each database.
    pub rate: u64,
    /// Flush, compact and collect garbage hard (see `storage::churn_settings`).
    pub churn: bool,
    /// How long replicas may take to catch up after a step, or at the end.
    pub settle_timeout: Duration,
    /// Leave the soak's databases in place afterwards.
    pub keep: bool,
    /// Steps taken even past `duration`, on a machine too busy to fit them.
    pub min_steps: usize,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            duration: Duration::from_secs(600),
            step_every: Duration::from_secs(120),
            outage_for: Duration::from_secs(15),
            rate: 200,
            churn: true,
            settle_timeout: Duration::from_secs(120),
            keep: false,
            min_steps: 0,
        }
    }
}

/// One database of the soak: its home, its writer and its replica.
pub struct SoakDb {
    pub flow: Flow,
    pub home: DbLocation,
    pub acks: AckLog,
    writer: Option<BackgroundRun>,
    /// Writer runs that ended, with why.
    pub runs: Vec<WorkloadReport>,
}

/// What one check found for one database.
#[derive(Debug, Clone, Serialize)]
pub struct DbCheck {
    pub db: String,
    pub home: String,
    pub replica: String,
    /// The replica is a gap-free prefix of the home.
    pub prefix: bool,
    /// Acknowledged records (as of just before the check) the home lacks.
    pub lost_at_home: u64,
    /// Records the replica lacks behind its home.
    pub lag_records: u64,
    pub problems: Vec<String>,
}

impl DbCheck {
    /// The check of `flow` from its consistency report, with what the soak
    /// found beyond it.
    fn of(flow: &Flow, report: CheckReport, lost_at_home: u64, problem: Option<String>) -> DbCheck {
        let mut problems = report.problems;
        problems.extend(problem);
        DbCheck {
            db: flow.db.clone(),
            home: flow.home.name().to_string(),
            replica: flow.replica.name().to_string(),
            prefix: report.prefix,
            lost_at_home,
            lag_records: report.lag_records,
            problems,
        }
    }

    pub fn ok(&self) -> bool {
        self.prefix && self.lost_at_home == 0
    }
}

/// What one step did and what the checks after it found.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Seconds since the soak started, when the step began.
    pub at_s: f64,
    pub step: String,
    /// What happened, in a few words.
    pub detail: String,
    pub checks: Vec<DbCheck>,
    pub ok: bool,
}

impl StepReport {
    pub fn line(&self) -> String {
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                let verdict = if c.ok() { "ok" } else { "FAILED" };
                format!(
                    "{} {verdict} (lag {} records, {} acknowledged lost)",
                    c.db, c.lag_records, c.lost_at_home
                )
            })
            .collect();
        format!(
            "[{:>6.1} s] {}: {}; {}",
            self.at_s,
            self.step,
            self.detail,
            checks.join("; ")
        )
    }
}

/// The whole soak's result.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub regions: Vec<String>,
    pub duration_s: f64,
    pub steps: Vec<StepReport>,
    pub records_acked: u64,
    pub writer_restarts: u64,
    pub ok: bool,
}

/// Something the soak does to the system between checks.
#[async_trait]
pub trait Step: Send + Sync {
    /// A short name (`outage of us-east-1`).
    fn name(&self, soak: &Soak) -> String;
    /// Disturbs the system and returns it to service; returns what happened.
    async fn run(&self, soak: &mut Soak) -> Result<String>;
}

/// An outage of one region for a while, then its recovery: writers homed
/// there fail and are restarted, replication to and from it pauses and
/// resumes.
pub struct RegionOutage {
    pub region: usize,
    pub length: Duration,
}

#[async_trait]
impl Step for RegionOutage {
    fn name(&self, soak: &Soak) -> String {
        format!("outage of {}", soak.regions[self.region].name())
    }

    async fn run(&self, soak: &mut Soak) -> Result<String> {
        let region = soak.regions[self.region].clone();
        region.faults().set_outage(true);
        tokio::time::sleep(self.length).await;
        let paused = soak
            .replicator
            .statuses()
            .iter()
            .filter(|s| s.state == FlowState::Paused)
            .count();
        region.faults().set_outage(false);
        let recovered_at = Instant::now();
        let restarted = soak.writers_back().await?;
        let writing_after = recovered_at.elapsed();
        let resumed = soak
            .replicator
            .wait_until(soak.opts.settle_timeout, |s| s.state != FlowState::Paused)
            .await;
        if !resumed {
            return Err(Error::Failed(format!(
                "replication did not resume within {} s of {} coming back",
                soak.opts.settle_timeout.as_secs(),
                region.name()
            )));
        }
        Ok(format!(
            "{} s down, {paused} flow(s) paused, {restarted} writer(s) restarted, writing again after {:.1} s, replication resumed after {:.1} s",
            self.length.as_secs(),
            writing_after.as_secs_f64(),
            recovered_at.elapsed().as_secs_f64()
        ))
    }
}

/// The control-log engine id the soak records its drills and failovers as.
const SOAK_ENGINE: &str = "00000000000050a4";

/// A drill of database `db` in its replica's region: forked, served,
/// verified against the replica as of the fork, then torn down at once.
pub struct Drill {
    pub db: usize,
}

#[async_trait]
impl Step for Drill {
    fn name(&self, soak: &Soak) -> String {
        format!("drill of {}", soak.dbs[self.db].flow.db)
    }

    async fn run(&self, soak: &mut Soak) -> Result<String> {
        use crate::orchestrator::drill;
        let flow = soak.dbs[self.db].flow.clone();
        let options = drill::DrillOptions {
            ttl: Duration::from_secs(600),
            acks: [(flow.db.clone(), soak.dbs[self.db].acks.clone())].into(),
            pins: Some(Arc::clone(&soak.pins)),
            ..Default::default()
        };
        let outcome = drill::drill(
            flow.home.name(),
            &flow.replica,
            std::slice::from_ref(&flow.db),
            SOAK_ENGINE,
            "soak",
            options,
        )
        .await?;
        if let Some(ws) = outcome.workspace {
            ws.stop().await?;
        }
        let record = outcome.record;
        drill::tear_down(&soak.regions, &outcome.forks, SOAK_ENGINE, "soak").await?;
        soak.pins
            .update(&crate::control::load_all(&soak.regions).await?);
        if !record.ok {
            return Err(Error::Failed(format!(
                "the drill failed: {}",
                record.failed_steps().join("; ")
            )));
        }
        Ok(format!(
            "{} in {}: RTO {} ms; {}",
            record.id,
            flow.replica.name(),
            record.rto_ms.unwrap_or(0),
            record.outcome
        ))
    }
}

/// A failover of database `db` to its replica's region, with nothing to
/// lose: the writer stops, the replica catches up, the failover forks the
/// new live branch there; then the writer goes on at the new home and the
/// new branch replicates back.
pub struct Failover {
    pub db: usize,
}

#[async_trait]
impl Step for Failover {
    fn name(&self, soak: &Soak) -> String {
        let flow = &soak.dbs[self.db].flow;
        format!("failover of {} to {}", flow.db, flow.replica.name())
    }

    async fn run(&self, soak: &mut Soak) -> Result<String> {
        use crate::orchestrator::failover;
        soak.finish_writer(self.db).await?;
        let flow = soak.dbs[self.db].flow.clone();
        // Nothing acknowledged may be lost: the replica catches up first.
        let deadline = Instant::now() + soak.opts.settle_timeout;
        loop {
            let report = replication::check::check(&flow, Some(&soak.dbs[self.db].acks)).await?;
            let missing = report
                .replica_report
                .acks
                .as_ref()
                .map_or(0, |a| a.missing_acked);
            if missing == 0 && report.lag_records == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Failed(format!(
                    "the replica of {} did not catch up within {} s before the failover",
                    flow.db,
                    soak.opts.settle_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let state = crate::control::load(&flow.replica).await?;
        let preview = failover::preview(
            &flow.home,
            &flow.replica,
            &state,
            std::slice::from_ref(&flow.db),
            failover::Cut::Newest,
        )
        .await?;
        let outcome = failover::failover(
            &soak.regions,
            &preview,
            SOAK_ENGINE,
            "soak",
            failover::FailoverOptions {
                acks: [(flow.db.clone(), soak.dbs[self.db].acks.clone())].into(),
                pins: Some(Arc::clone(&soak.pins)),
                ..Default::default()
            },
        )
        .await?;
        let record = outcome.record;
        let live = outcome
            .live
            .first()
            .ok_or_else(|| Error::Failed("the failover made no live branch".into()))?;
        let lost = record
            .rpo
            .first()
            .and_then(|r| r.missing_records)
            .unwrap_or(0);
        if !record.ok || lost > 0 {
            return Err(went_wrong(
                &format!("failover of {}", flow.db),
                &record,
                lost,
            ));
        }
        // The database now lives in the other region and flows back.
        soak.rehome(self.db, &live.branch).await?;
        // The new branch's replica appears in the old home before the checks.
        let db = flow.db.clone();
        let copied = soak
            .replicator
            .wait_until(soak.opts.settle_timeout, |s| {
                s.db != db || (s.bytes_copied > 0 && s.objects_pending == 0)
            })
            .await;
        if !copied {
            return Err(Error::Failed(format!(
                "{} did not replicate back to {} within {} s",
                live.branch,
                flow.home.name(),
                soak.opts.settle_timeout.as_secs()
            )));
        }
        Ok(format!(
            "{} live in {} (RTO {} ms, nothing lost), writing there and replicating back",
            live.branch,
            flow.replica.name(),
            record.rto_ms.unwrap_or(0)
        ))
    }
}

/// An operation that failed a step or lost an acknowledged record, with
/// the steps that failed and why.
fn went_wrong(what: &str, record: &crate::control::event::OperationRecord, lost: u64) -> Error {
    let failed = record.failed_steps();
    Error::Failed(format!(
        "the {what} went wrong: {} ({lost} acknowledged records lost; failed steps: {})",
        record.outcome,
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join("; ")
        }
    ))
}

/// A planned switchover (or a failback) of database `db` to its replica's
/// region under its running writer: writes stop at the home (the writer is
/// fenced), the last files are copied, the home moves; nothing
/// acknowledged may be missing. The writer then goes on at the new home
/// and replication runs the other way.
pub struct Move {
    pub db: usize,
    pub kind: crate::control::event::OperationKind,
}

#[async_trait]
impl Step for Move {
    fn name(&self, soak: &Soak) -> String {
        let flow = &soak.dbs[self.db].flow;
        format!(
            "{} of {}/{} to {}",
            self.kind.name(),
            flow.db,
            flow.branch,
            flow.replica.name()
        )
    }

    async fn run(&self, soak: &mut Soak) -> Result<String> {
        use crate::orchestrator::switchover;
        let flow = soak.dbs[self.db].flow.clone();
        let state = crate::control::load_all(&soak.regions).await?;
        let plan = switchover::plan(
            &flow.home,
            &flow.replica,
            &state,
            std::slice::from_ref(&flow.db),
            self.kind,
        )
        .await?;
        let outcome = switchover::switchover(
            &soak.regions,
            &plan,
            SOAK_ENGINE,
            "soak",
            switchover::SwitchOptions {
                acks: [(flow.db.clone(), soak.dbs[self.db].acks.clone())].into(),
                pins: Some(Arc::clone(&soak.pins)),
                ..Default::default()
            },
        )
        .await?;
        let record = outcome.record;
        let lost = record
            .rpo
            .first()
            .and_then(|r| r.missing_records)
            .unwrap_or(0);
        if !record.ok || lost > 0 {
            let what = format!("{} of {}", self.kind.name(), flow.db);
            return Err(went_wrong(&what, &record, lost));
        }
        // The fenced writer's report is kept; a new one writes at the new home.
        soak.finish_writer(self.db).await?;
        soak.rehome(self.db, &flow.branch).await?;
        Ok(format!(
            "{}/{} written in {} (RTO {} ms, nothing lost, {} copied of a {} database), replicating to {}",
            flow.db,
            flow.branch,
            flow.replica.name(),
            record.rto_ms.unwrap_or(0),
            crate::replication::status::human_bytes(outcome.bytes_copied),
            crate::replication::status::human_bytes(outcome.database_bytes),
            flow.home.name()
        ))
    }
}

/// A running soak.
pub struct Soak {
    pub regions: Vec<Region>,
    pub dbs: Vec<SoakDb>,
    pub replicator: Replicator,
    /// What drills and failed-over branches read, kept by every flow.
    pub pins: Arc<BranchPins>,
    pub opts: SoakOptions,
    started: Instant,
    writer_restarts: u64,
}

impl Soak {
    /// Creates a database homed in each of `regions` (named
    /// `soak-<run>-<region index>`), starts writing to them and replicating
    /// each to the other region.
    pub async fn start(
        regions: Vec<Region>,
        opts: SoakOptions,
        acks_dir: &std::path::Path,
    ) -> Result<Soak> {
        if regions.len() != 2 {
            return Err(Error::invalid("a soak runs on exactly two regions"));
        }
        let run = format!("{:06x}", fastrand::u32(..0x100_0000));
        let mut dbs = Vec::new();
        for (i, home_region) in regions.iter().enumerate() {
            let replica_region = &regions[1 - i];
            let name = format!("soak-{run}-{i}");
            let home = DbLocation::in_region(home_region, &name)?;
            home.create().await?;
            dbs.push(SoakDb {
                flow: Flow::new(&name, "main", home_region, replica_region),
                home,
                acks: AckLog::for_db(acks_dir, &name),
                writer: None,
                runs: Vec::new(),
            });
        }
        let flows = dbs.iter().map(|d| d.flow.clone()).collect();
        let pins = Arc::new(BranchPins::default());
        let replicator = Replicator::start(
            flows,
            ReplicationOptions::default(),
            Arc::clone(&pins) as Arc<dyn Pins>,
        );
        let mut soak = Soak {
            regions,
            dbs,
            replicator,
            pins,
            opts,
            started: Instant::now(),
            writer_restarts: 0,
        };
        for i in 0..soak.dbs.len() {
            soak.start_writer(i);
        }
        Ok(soak)
    }

    fn spec(&self) -> WorkloadSpec {
        WorkloadSpec {
            rate: Rate::PerSecond(self.opts.rate),
            duration: None,
            records: None,
            value_bytes: 256,
            churn: self.opts.churn,
        }
    }

    fn start_writer(&mut self, i: usize) {
        let db = &self.dbs[i];
        let writer = BackgroundRun::start(db.home.clone(), self.spec(), db.acks.clone());
        self.dbs[i].writer = Some(writer);
    }

    /// Database `i` is written as `branch` in its replica's region now:
    /// its flow turns around, and its writer starts there.
    async fn rehome(&mut self, i: usize, branch: &str) -> Result<()> {
        let flow = self.dbs[i].flow.clone();
        self.replicator.remove(&flow.db).wait().await;
        let moved = Flow::new(&flow.db, branch, &flow.replica, &flow.home);
        self.replicator.add(moved.clone());
        self.dbs[i].home = DbLocation::branch_in_region(&flow.replica, &flow.db, branch)?;
        self.dbs[i].flow = moved;
        self.start_writer(i);
        self.writers_back().await.map(|_| ())
    }

    /// Waits until every database is acknowledging writes again,
    /// restarting writers whose run ended on a fault; returns how many
    /// were restarted.
    pub async fn writers_back(&mut self) -> Result<u64> {
        let before: Vec<u64> = self
            .dbs
            .iter()
            .map(|db| acked_max(&db.acks))
            .collect::<Result<_>>()?;
        let deadline = Instant::now() + self.opts.settle_timeout;
        let mut restarted = 0;
        loop {
            let mut all_writing = true;
            for (i, acked_before) in before.iter().enumerate() {
                let finished = self.dbs[i]
                    .writer
                    .as_ref()
                    .is_none_or(BackgroundRun::is_finished);
                if finished {
                    self.finish_writer(i).await?;
                    self.start_writer(i);
                    restarted += 1;
                }
                all_writing &= acked_max(&self.dbs[i].acks)? > *acked_before;
            }
            if all_writing {
                break;
            }
            if Instant::now() >= deadline {
                self.writer_restarts += restarted;
                return Err(Error::Failed(format!(
                    "the soak's writers did not acknowledge a write within {} s of the region coming back",
                    self.opts.settle_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.writer_restarts += restarted;
        Ok(restarted)
    }

    /// Stops writer `i` (if it runs) and keeps its report.
    async fn finish_writer(&mut self, i: usize) -> Result<()> {
        let Some(writer) = self.dbs[i].writer.take() else {
            return Ok(());
        };
        match writer.stop().await? {
            Ok(report) => self.dbs[i].runs.push(report),
            // It could not even open (the region was still down): nothing written.
            Err(e) => tracing::info!("soak writer of {} ended: {e}", self.dbs[i].flow.db),
        }
        Ok(())
    }

    /// Checks every database: its replica is a gap-free prefix of its home,
    /// and its home holds every write acknowledged before the check began.
    pub async fn check(&self) -> Result<Vec<DbCheck>> {
        let mut checks = Vec::new();
        for db in &self.dbs {
            // The acknowledgements first: all of them were durable before the
            // home is read.
            let acked_max = acked_max(&db.acks)?;
            let report = replication::check::check(&db.flow, None).await?;
            let home = &report.home_report;
            let lost_at_home = if home.consistent {
                acked_max.saturating_sub(home.highest_gap_free_seq)
            } else {
                acked_max
            };
            let problem = (lost_at_home > 0).then(|| {
                format!("the home lacks {lost_at_home} acknowledged record(s) up to {acked_max}")
            });
            checks.push(DbCheck::of(&db.flow, report, lost_at_home, problem));
        }
        Ok(checks)
    }

    /// Runs `step`, then the checks.
    pub async fn step(&mut self, step: &dyn Step) -> Result<StepReport> {
        let at_s = self.started.elapsed().as_secs_f64();
        let name = step.name(self);
        let detail = step.run(self).await?;
        let checks = self.check().await?;
        Ok(StepReport {
            at_s,
            ok: checks.iter().all(DbCheck::ok),
            step: name,
            detail,
            checks,
        })
    }

    /// Stops the writers and waits for every replica to hold every
    /// acknowledged write; the last step of every soak.
    pub async fn settle(&mut self) -> Result<StepReport> {
        let at_s = self.started.elapsed().as_secs_f64();
        for i in 0..self.dbs.len() {
            self.finish_writer(i).await?;
        }
        let deadline = Instant::now() + self.opts.settle_timeout;
        let caught_up = Instant::now();
        loop {
            let mut checks = Vec::new();
            let mut all_in = true;
            for db in &self.dbs {
                let report = replication::check::check(&db.flow, Some(&db.acks)).await?;
                let missing = report
                    .replica_report
                    .acks
                    .as_ref()
                    .map_or(0, |a| a.missing_acked);
                all_in &= missing == 0 && report.lag_records == 0;
                let problem = (missing > 0)
                    .then(|| format!("the replica lacks {missing} acknowledged record(s)"));
                checks.push(DbCheck::of(&db.flow, report, 0, problem));
            }
            let prefixes = checks.iter().all(|c| c.prefix);
            // Done when every replica holds everything, at the first broken
            // prefix (waiting cannot mend it), or at the deadline.
            if all_in || !prefixes || Instant::now() >= deadline {
                let ok = all_in && prefixes;
                let detail = if ok {
                    format!(
                        "writers stopped; every replica holds every acknowledged write after {:.1} s",
                        caught_up.elapsed().as_secs_f64()
                    )
                } else {
                    format!(
                        "writers stopped; replicas did not catch up within {} s",
                        self.opts.settle_timeout.as_secs()
                    )
                };
                return Ok(StepReport {
                    at_s,
                    step: "settle".into(),
                    detail,
                    checks,
                    ok,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops replication and, unless kept, deletes the soak's databases.
    pub async fn finish(self) -> Result<(u64, u64)> {
        let _ = self.replicator.stop().await;
        let acked: u64 = self
            .dbs
            .iter()
            .flat_map(|d| d.runs.iter())
            .map(|r| r.records_acked)
            .sum();
        if !self.opts.keep {
            // Every branch of the soak's databases, replicas, shadows and
            // cursors, in both regions.
            for db in &self.dbs {
                for region in &self.regions {
                    let store = region.store();
                    for prefix in [
                        format!("{}/{}", crate::storage::DBS_PREFIX, db.flow.db),
                        format!("{}/{}", crate::region::shadow::SHADOW_PREFIX, db.flow.db),
                        format!(
                            "{}/{}",
                            crate::storage::cursor::REPLICATION_PREFIX,
                            db.flow.db
                        ),
                    ] {
                        crate::storage::fork::remove_files(&store, &prefix.as_str().into()).await?;
                    }
                }
            }
        }
        Ok((acked, self.writer_restarts))
    }
}

/// The highest sequence number acknowledged in `acks` (0 when none).
fn acked_max(acks: &AckLog) -> Result<u64> {
    Ok(acks
        .read()?
        .unwrap_or_default()
        .iter()
        .map(|b| b.last)
        .max()
        .unwrap_or(0))
}

/// Runs a whole soak: steady writing with a step every `step_every`
/// (outages of each region in turn), checks after each, the settle at the
/// end. `progress` sees each step's report as it completes.
pub async fn run(
    regions: Vec<Region>,
    opts: SoakOptions,
    acks_dir: &std::path::Path,
    mut progress: impl FnMut(&StepReport),
) -> Result<SoakReport> {
    let names = regions.iter().map(|r| r.name().to_string()).collect();
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut soak = Soak::start(regions, opts.clone(), acks_dir).await?;
    // Outages of each region in turn, with a failover, a drill, a
    // switchover and the failback between.
    use crate::control::event::OperationKind;
    let steps: Vec<Box<dyn Step>> = vec![
        Box::new(RegionOutage {
            region: 0,
            length: opts.outage_for,
        }),
        Box::new(Failover { db: 1 }),
        Box::new(Drill { db: 0 }),
        Box::new(RegionOutage {
            region: 1,
            length: opts.outage_for,
        }),
        Box::new(Move {
            db: 1,
            kind: OperationKind::Failback,
        }),
        Box::new(Move {
            db: 0,
            kind: OperationKind::Switchover,
        }),
    ];
    let mut reports = Vec::new();
    let mut next = 0;
    loop {
        let wake = Instant::now() + opts.step_every;
        if next >= opts.min_steps && wake + opts.outage_for >= deadline {
            break;
        }
        tokio::time::sleep_until(wake.into()).await;
        let report = soak.step(steps[next % steps.len()].as_ref()).await?;
        next += 1;
        progress(&report);
        let ok = report.ok;
        reports.push(report);
        if !ok {
            break;
        }
    }
    if reports.iter().all(|r| r.ok) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(remaining).await;
    }
    let settle = soak.settle().await?;
    progress(&settle);
    reports.push(settle);
    let (records_acked, writer_restarts) = soak.finish().await?;
    Ok(SoakReport {
        regions: names,
        duration_s: started.elapsed().as_secs_f64(),
        ok: reports.iter().all(|r| r.ok),
        steps: reports,
        records_acked,
        writer_restarts,
    })
}
