//! The `/metrics` endpoint: a small HTTP/1.1 server (hyper) that answers a
//! scrape from the newest published snapshot. It reads nothing else, so a
//! scrape costs no request to any store.
//!
//! Limits (it may face a network): at most [`MAX_CONNECTIONS`] connections
//! at once (more wait in the kernel's backlog), a request's head within
//! [`HEAD_TIMEOUT`] and [`MAX_HEAD_BYTES`], no body read, GET and HEAD only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::AbortOnDropHandle;

use crate::engine::snapshot::Snapshot;
use crate::{Error, Result};

/// Connections served at once; each holds a few KiB.
pub const MAX_CONNECTIONS: usize = 16;
/// Time for a client to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (a scrape's is a few hundred bytes).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A running endpoint; it stops when dropped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    _task: AbortOnDropHandle<()>,
}

/// Parses what `--metrics` or the Settings field was given: `HOST:PORT`
/// (`127.0.0.1:9464`), or a bare port on loopback.
pub fn parse_listen(text: &str) -> std::result::Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!("`{text}` is not an address to listen on; give HOST:PORT, e.g. 127.0.0.1:9464")
    })
}

/// Listens on `addr` and answers `/metrics` from the newest of `snapshots`.
pub async fn serve(
    addr: SocketAddr,
    snapshots: watch::Receiver<Arc<Snapshot>>,
) -> Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::Failed(format!(
            "cannot serve metrics on {addr}: {e}; pick another address or free the port"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Failed(format!("metrics listener on {addr}: {e}")))?;
    let task = tokio::spawn(accept(listener, snapshots));
    Ok(MetricsServer {
        addr,
        _task: AbortOnDropHandle::new(task),
    })
}

async fn accept(listener: TcpListener, snapshots: watch::Receiver<Arc<Snapshot>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let snapshot = snapshots.borrow().clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, snapshot)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("metrics: connection from {peer}: {e}");
            }
            drop(slot);
        });
    }
}

fn answer(request: &Request<Incoming>, snapshot: Arc<Snapshot>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET /metrics is served here\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => match super::prometheus::render(snapshot, crate::orchestrator::now_ms()) {
            Ok(text) => reply(StatusCode::OK, super::prometheus::CONTENT_TYPE, text),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                PLAIN,
                format!("cannot encode the metrics: {e}\n"),
            ),
        },
        "/" => reply(
            StatusCode::OK,
            PLAIN,
            "Lifeboat engine: metrics at /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: metrics are at /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_address_is_host_and_port_or_a_port() {
        assert_eq!(
            parse_listen("9464"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(parse_listen("[::1]:9464").map(|a| a.port()), Ok(9464));
        let bad = parse_listen("localhost:port").expect_err("refused");
        assert!(bad.contains("HOST:PORT"), "{bad}");
    }
}
