//! Subcommands that live in their own files (one per area).

pub mod alert;
pub mod bench;
pub mod bench_cost;
pub mod bench_engine;
pub mod bench_failover;
pub mod bench_recovery;
pub mod bench_scale;
pub mod bench_workspace;
pub mod cost;
pub mod failover;
pub mod group;
pub mod recovery;
pub mod replication;
pub mod report;
pub mod route;
pub mod service;
pub mod soak;
pub mod workspace;

use std::time::Duration;

use lifeboat::error::Result;

/// Calls `report` every `every` until Ctrl-C or until `duration` has passed
/// (when given): the loop of every command that follows something.
pub async fn report_until_stopped(
    duration: Option<Duration>,
    every: Duration,
    mut report: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // systemd stops a service with SIGTERM: the same clean stop as Ctrl-C.
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| lifeboat::error::Error::Failed(format!("cannot watch for SIGTERM: {e}")))?;
    #[cfg(not(unix))]
    let mut term = ();
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        let until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = term_signal(&mut term) => return Ok(()),
            _ = until_deadline => return Ok(()),
            _ = ticks.tick() => report()?,
        }
    }
}

#[cfg(unix)]
async fn term_signal(term: &mut tokio::signal::unix::Signal) {
    term.recv().await;
}

#[cfg(not(unix))]
async fn term_signal(_: &mut ()) {
    std::future::pending::<()>().await;
}
