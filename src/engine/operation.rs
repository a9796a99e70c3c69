//! The lifecycle every operation the engine runs shares (failover, drill,
//! switchover and failback, recovery and merge): it begins (running, no
//! steps, no error), reports each step as it ends, and ends with a record
//! or an error, which is also the outcome of the request that asked.

use crate::control::event::{OperationRecord, Step};
use crate::error::Result;

use super::activity::Outcome;
use super::failover::FailoverView;
use super::recovery::{MoveView, RecoveryView};
use super::{Core, Internal};

/// Which operation's view a step or an outcome belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Failover,
    Drill,
    Move,
    Recovery,
}

/// What a lifecycle moves: running, the steps, the error, the record.
pub type Parts<'a> = (
    &'a mut bool,
    &'a mut Vec<Step>,
    &'a mut Option<String>,
    &'a mut Option<OperationRecord>,
);

/// The part of an operation's view its lifecycle moves.
pub trait Lifecycle {
    fn parts(&mut self) -> Parts<'_>;

    /// A run begins: running, no steps yet, no error, and no record until
    /// this run leaves one (an asker never reads an earlier run's).
    fn begin(&mut self) {
        let (running, steps, error, last) = self.parts();
        *running = true;
        steps.clear();
        *error = None;
        *last = None;
    }

    fn step(&mut self, step: Step) {
        self.parts().1.push(step);
    }

    /// The run ended: the error is kept for the panel; the outcome of the
    /// request that asked is returned.
    fn ended<T>(&mut self, result: &Result<T>) -> Option<Outcome>
    where
        Self: Sized,
    {
        let (running, _, error, _) = self.parts();
        *running = false;
        match result {
            Ok(_) => None,
            Err(e) => {
                let line = crate::error::one_line(&e.to_string());
                *error = Some(line.clone());
                Some(Outcome::Failed(line))
            }
        }
    }
}

macro_rules! lifecycle {
    ($view:ty) => {
        impl Lifecycle for $view {
            fn parts(&mut self) -> Parts<'_> {
                (
                    &mut self.running,
                    &mut self.steps,
                    &mut self.error,
                    &mut self.last,
                )
            }
        }
    };
}
lifecycle!(FailoverView);
lifecycle!(MoveView);
lifecycle!(RecoveryView);

/// The outcome of an operation that left `record`: its outcome and the RTO
/// it measured; a record that is not ok is a failed request.
pub fn record_outcome(record: &OperationRecord) -> Outcome {
    let rto = record
        .rto_ms
        .map_or("not measured".to_string(), |ms| format!("{ms} ms"));
    let message = format!("{}; RTO {rto}", record.outcome);
    if record.ok {
        Outcome::Done(message)
    } else {
        Outcome::Failed(message)
    }
}

impl Core {
    pub(super) fn view_of(&mut self, op: Op) -> &mut dyn Lifecycle {
        match op {
            Op::Failover => &mut self.failover,
            Op::Drill => &mut self.drill,
            Op::Move => &mut self.moving,
            Op::Recovery => &mut self.recovery,
        }
    }

    /// Each step of operation `op`, as it ends, back to the engine.
    pub(super) fn steps_of(&self, op: Op) -> crate::orchestrator::OnStep {
        let tx = self.internal_tx.clone();
        Box::new(move |step| {
            // The engine gone, nobody follows the steps any more.
            let _ = tx.send(Internal::Step(op, step.clone()));
        })
    }
}
