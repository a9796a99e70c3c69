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
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// One request on a connection of its own: the reply's status line.
    async fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("send");
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply));
        read.await.expect("an answer within 10 s").expect("read");
        String::from_utf8_lossy(&reply)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.0\r\n\r\n";

    /// A hostile client: an endless head, heads that never end, every
    /// connection slot held open, other methods and paths. Each is refused
    /// or dropped within its bound, and a scrape is still answered.
    #[tokio::test]
    async fn the_endpoint_bounds_what_a_hostile_client_sends_and_still_answers() {
        let (_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let server = serve(SocketAddr::from(([127, 0, 0, 1], 0)), snapshots)
            .await
            .expect("serve");
        let addr = server.addr;
        assert!(get(addr, SCRAPE).await.contains("200"));

        // A head far past the limit: refused, not buffered.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 4 * MAX_HEAD_BYTES));
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may hang up mid-send: what matters is its answer.
        let _sent = stream.write_all(&huge).await;
        let mut reply = Vec::new();
        let _read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
        let status = String::from_utf8_lossy(&reply);
        assert!(
            status.is_empty()
                || status.starts_with("HTTP/1.1 431")
                || status.starts_with("HTTP/1.1 400"),
            "{status}"
        );

        // Every slot held by a client that never finishes its head.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\n")
                .await
                .expect("send");
            idle.push(stream);
        }
        // One more waits its turn: the slowloris clients are cut off after
        // the head timeout, and it is answered.
        let started = std::time::Instant::now();
        assert!(get(addr, SCRAPE).await.contains("200"));
        assert!(started.elapsed() < HEAD_TIMEOUT + Duration::from_secs(5));
        for mut stream in idle {
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest)).await;
            assert!(
                closed.is_ok(),
                "a client that never sent its head is still connected"
            );
        }

        // Methods and paths other than GET /metrics.
        assert!(
            get(
                addr,
                b"POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"
            )
            .await
            .contains("405")
        );
        assert!(
            get(addr, b"GET /../../etc/passwd HTTP/1.0\r\n\r\n")
                .await
                .contains("404")
        );
        let garbage = get(addr, b"\x00\x01garbage\r\n\r\n").await;
        assert!(garbage.is_empty() || garbage.contains("400"), "{garbage}");
        assert!(get(addr, SCRAPE).await.contains("200"));
    }

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
