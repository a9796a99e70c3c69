//! Operations that span regions: failover, drills, switchover and
//! failback, stranded-write recovery and merge. Each runs as timed steps and
//! ends as an [`OperationRecord`](crate::control::event::OperationRecord)
//! in the control log, with its measured RPO and RTO.

pub mod drill;
pub mod failover;
pub mod merge;
pub mod recover;
pub mod report;
pub mod switchover;

use std::time::Instant;

use crate::control::event::{Event, OperationRecord, Step};
use crate::error::{Error, Result};
use crate::region::Region;

/// Called with each step as it ends (progress for the app and the CLI).
pub type OnStep = Box<dyn Fn(&Step) + Send + Sync>;

/// The steps of an operation as they run, each with its duration.
pub struct Steps {
    started: Instant,
    pub steps: Vec<Step>,
    /// Called with each step as it ends (progress for the app and the CLI).
    on_step: Option<OnStep>,
}

impl Steps {
    pub fn new(on_step: Option<OnStep>) -> Steps {
        Steps::asked_at(on_step, None)
    }

    /// Steps of an operation asked for at `asked` (default: now): its RTO
    /// counts from there, the asker's preview and hand-over included.
    pub fn asked_at(on_step: Option<OnStep>, asked: Option<Instant>) -> Steps {
        Steps {
            started: asked.unwrap_or_else(Instant::now),
            steps: Vec::new(),
            on_step,
        }
    }

    /// When the operation was asked for, in ms since the Unix epoch.
    pub fn asked_ms(&self) -> u64 {
        now_ms().saturating_sub(self.elapsed_ms())
    }

    /// Since the operation was asked for.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records a step that took `since.elapsed()`.
    pub fn done(&mut self, name: impl Into<String>, since: Instant, ok: bool, detail: String) {
        self.took(name, since.elapsed().as_millis() as u64, ok, detail);
    }

    /// Records a step that took `ms` (one that ran beside others).
    pub fn took(&mut self, name: impl Into<String>, ms: u64, ok: bool, detail: String) {
        let step = Step {
            name: name.into(),
            ms,
            ok,
            detail,
        };
        if let Some(on_step) = &self.on_step {
            on_step(&step);
        }
        self.steps.push(step);
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    crate::workload::now_us() / 1000
}

/// The configured region named `name`.
pub fn find_region(regions: &[Region], name: &str) -> Result<Region> {
    regions
        .iter()
        .find(|r| r.name() == name)
        .cloned()
        .ok_or_else(|| Error::invalid(format!("region `{name}` is not configured")))
}

/// Stores an operation's record in `regions`' logs. The record is not part
/// of the operation: a failure to store it is logged, and the operation
/// stands.
pub async fn record(regions: &[Region], engine: &str, who: &str, record: &OperationRecord) {
    let event = Event::OperationRecorded(Box::new(record.clone()));
    if let Err(e) = crate::control::append(regions, engine, who, event).await {
        tracing::warn!("the record of {} was not stored: {e}", record.id);
    }
}
