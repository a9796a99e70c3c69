//! Logging: tracing to stderr and to a daily rolling file in the data dir.
//! `RUST_LOG` sets both filters; without it stderr shows Lifeboat's warnings
//! only (so command output stays readable; SlateDB's own reports of a failed
//! background task go to the file, since the error that reaches the user
//! already carries them) and the file keeps `info`.

use std::path::Path;

use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Keeps the file writer flushing until dropped (at the end of `main`).
pub struct LogGuard {
    _file_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Starts logging. A log folder that cannot be created costs the file log
/// only, with a warning, never the command.
pub fn init(log_dir: &Path) -> LogGuard {
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter("warn,winit=error,slatedb=off"));
    let (file_layer, guard) = match std::fs::create_dir_all(log_dir) {
        Ok(()) => {
            let appender = tracing_appender::rolling::daily(log_dir, "lifeboat.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(filter("info"));
            (Some(layer), Some(guard))
        }
        Err(_) => (None, None),
    };
    let started = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
    if started.is_ok() && guard.is_none() {
        tracing::warn!(
            "cannot create the log folder {}; logging to stderr only",
            log_dir.display()
        );
    }
    LogGuard {
        _file_writer: guard,
    }
}
