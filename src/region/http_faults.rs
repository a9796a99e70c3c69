//! Fault injection at the HTTP layer, for regions on S3, GCS and Azure.
//!
//! A cloud region's client sends every request through a [`FaultyConnector`]
//! instead of wrapping the store: the faults then meet the client's real
//! machinery (its retries, timeouts, multipart uploads, signed requests) as
//! a broken network would. An outage is a connection that cannot be made,
//! an injected error is a `503 SlowDown` reply from the server, latency is
//! added before each request, and a bandwidth limit holds request and reply
//! bodies on the simulated link.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector,
};

use super::faults::{FaultKind, Faults};

/// Builds HTTP clients whose requests pass through a region's [`Faults`].
#[derive(Debug)]
pub struct FaultyConnector {
    faults: Arc<Faults>,
}

impl FaultyConnector {
    /// A connector for the region whose switch is `faults`.
    pub fn new(faults: Arc<Faults>) -> Self {
        FaultyConnector { faults }
    }
}

impl HttpConnector for FaultyConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(FaultyHttp {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }
}

#[derive(Debug)]
struct FaultyHttp {
    inner: HttpClient,
    faults: Arc<Faults>,
}

#[async_trait]
impl HttpService for FaultyHttp {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let op = method_name(req.method());
        if let Err(fault) = self.faults.admit(op).await {
            return match fault.kind {
                FaultKind::Outage => Err(HttpError::new(HttpErrorKind::Connect, fault)),
                FaultKind::Error => Ok(slow_down(&fault.to_string())),
            };
        }
        self.faults
            .transfer(req.body().content_length() as u64)
            .await;
        let response = self.inner.execute(req).await?;
        let reply_bytes = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        self.faults.transfer(reply_bytes).await;
        Ok(response)
    }
}

/// What an overloaded S3 server answers; clients retry it.
fn slow_down(message: &str) -> HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>{message}</Message></Error>"
    );
    let mut response = HttpResponse::new(HttpResponseBody::from(body));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response
}

fn method_name(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::PUT => "PUT",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        _ => "request",
    }
}
