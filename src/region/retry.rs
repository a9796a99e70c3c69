//! The one retry policy for Lifeboat's own object-store calls: a few tries
//! with jittered exponential back-off, for errors that may pass.
//!
//! It is not stacked under SlateDB: SlateDB retries its own calls (bounded by
//! `storage::SLATEDB_MAX_RETRIES`) and tells a retried create-only put that
//! won from one that lost by an attribute, which a lower retry would hide.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// Tries after the first one.
pub const MAX_RETRIES: usize = 3;

fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(MAX_RETRIES)
        .with_jitter()
}

/// Whether an error may pass on its own. Answers that are final (the object
/// is missing, exists, changed, or the call is not supported) are not retried.
pub fn is_transient(err: &object_store::Error) -> bool {
    matches!(
        err,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

/// Runs `call` until it succeeds, fails for good, or has been retried
/// [`MAX_RETRIES`] times.
pub async fn retrying<T, F, Fut>(call: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    call.retry(policy())
        .sleep(tokio::time::sleep)
        .when(is_transient)
        .notify(|err, after| tracing::debug!("retrying in {after:?}: {err}"))
        .await
}
