//! Fault injection for a region's store, switchable at run time.
//!
//! Every region's store is wrapped by a [`FaultyStore`]; drills, tests and the
//! soak turn its [`Faults`] on and off while everything above keeps running:
//! an outage (every call fails fast with an error naming the region), added
//! latency per call, a bandwidth limit shared by all calls (a slow
//! cross-region link), and a random error rate. With no fault set, a call
//! costs a few atomic loads.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    UploadPart,
};
use serde::{Deserialize, Serialize};

/// Upper bound on one injected latency, so a typo cannot hang a drill for hours.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// A set of faults to apply to one region, as plain data (parsed from the
/// command line, shown in the GUI, stored in drill plans).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Every call fails at once with an error naming the region.
    pub outage: bool,
    /// Added to every call before it reaches the store.
    pub latency_ms: u64,
    /// Bytes per second shared by all transfers; `None` is unlimited.
    pub bandwidth_bytes_per_s: Option<u64>,
    /// Fraction of calls, from 0 to 1, that fail with an injected error.
    pub error_rate: f64,
}

impl FaultPlan {
    /// True when the plan changes nothing.
    pub fn is_clear(&self) -> bool {
        *self == FaultPlan::default()
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.outage {
            parts.push("outage".to_string());
        }
        if self.latency_ms > 0 {
            parts.push(format!("latency={}ms", self.latency_ms));
        }
        if let Some(bw) = self.bandwidth_bytes_per_s {
            parts.push(format!("bandwidth={bw}"));
        }
        if self.error_rate > 0.0 {
            parts.push(format!("errors={}", self.error_rate));
        }
        if parts.is_empty() {
            parts.push("none".to_string());
        }
        f.write_str(&parts.join(","))
    }
}

impl FromStr for FaultPlan {
    type Err = String;

    /// Parses `outage`, `latency=200ms`, `bandwidth=1MiB` (per second),
    /// `errors=0.1` or `none`, comma-separated.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut plan = FaultPlan::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            match (key, value) {
                ("outage", None) => plan.outage = true,
                ("none", None) => plan = FaultPlan::default(),
                ("latency", Some(v)) => {
                    let d = humantime::parse_duration(v)
                        .map_err(|e| format!("latency `{v}`: {e}; write it like 200ms or 1s"))?;
                    if d > MAX_LATENCY {
                        return Err(format!("latency `{v}` is over the limit of 60s"));
                    }
                    plan.latency_ms = d.as_millis() as u64;
                }
                ("bandwidth", Some(v)) => {
                    let bw = parse_bytes(v).ok_or_else(|| {
                        format!("bandwidth `{v}`: write bytes per second like 500KiB or 10MiB")
                    })?;
                    if bw == 0 {
                        return Err(
                            "bandwidth must be above 0; use `outage` to cut a region off".into(),
                        );
                    }
                    plan.bandwidth_bytes_per_s = Some(bw);
                }
                ("errors", Some(v)) => {
                    let rate: f64 = v.parse().map_err(|_| {
                        format!("errors `{v}`: write a fraction from 0 to 1, like 0.1")
                    })?;
                    if !(0.0..=1.0).contains(&rate) {
                        return Err(format!("errors `{v}`: the rate must be from 0 to 1"));
                    }
                    plan.error_rate = rate;
                }
                _ => {
                    return Err(format!(
                        "unknown fault `{part}`; use outage, latency=200ms, bandwidth=1MiB, errors=0.1 or none"
                    ));
                }
            }
        }
        Ok(plan)
    }
}

/// Parses a byte count with an optional binary or decimal suffix (`10MiB`, `500K`, `1234`).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches("/s");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The live fault switch of one region, shared by its store wrapper and by
/// whoever drives the faults.
#[derive(Debug)]
pub struct Faults {
    region: Arc<str>,
    outage: AtomicBool,
    latency_ms: AtomicU64,
    /// 0 means unlimited.
    bandwidth_bytes_per_s: AtomicU64,
    /// Failing calls per million.
    errors_per_million: AtomicU32,
    /// When the simulated link is next free; transfers queue behind each other.
    link_free_at: Mutex<Instant>,
    injected_total: AtomicU64,
}

impl Faults {
    /// The switch of the region named `name` at `url`, shared by every
    /// opening of it in this process (as its meter is): a fault set on one
    /// opening, by a test or a bench, reaches an engine's opening too.
    pub fn of(name: &str, url: &str) -> Arc<Faults> {
        type BySpec = std::collections::HashMap<(String, String), Arc<Faults>>;
        static ALL: std::sync::OnceLock<Mutex<BySpec>> = std::sync::OnceLock::new();
        let mut all = ALL
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            all.entry((name.to_string(), url.to_string()))
                .or_insert_with(|| Arc::new(Faults::new(name))),
        )
    }

    /// A switch with no fault set, for the region named `region`.
    pub fn new(region: &str) -> Self {
        Faults {
            region: Arc::from(region),
            outage: AtomicBool::new(false),
            latency_ms: AtomicU64::new(0),
            bandwidth_bytes_per_s: AtomicU64::new(0),
            errors_per_million: AtomicU32::new(0),
            link_free_at: Mutex::new(Instant::now()),
            injected_total: AtomicU64::new(0),
        }
    }

    /// Replaces the current faults with `plan`.
    pub fn set(&self, plan: &FaultPlan) {
        self.outage.store(plan.outage, Ordering::SeqCst);
        self.latency_ms.store(
            plan.latency_ms.min(MAX_LATENCY.as_millis() as u64),
            Ordering::SeqCst,
        );
        self.bandwidth_bytes_per_s
            .store(plan.bandwidth_bytes_per_s.unwrap_or(0), Ordering::SeqCst);
        let per_million = (plan.error_rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
        self.errors_per_million.store(per_million, Ordering::SeqCst);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.set(&FaultPlan::default());
    }

    /// Turns the outage on or off, leaving the other faults as they are.
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    /// The faults now in force.
    pub fn plan(&self) -> FaultPlan {
        let bw = self.bandwidth_bytes_per_s.load(Ordering::SeqCst);
        FaultPlan {
            outage: self.outage.load(Ordering::SeqCst),
            latency_ms: self.latency_ms.load(Ordering::SeqCst),
            bandwidth_bytes_per_s: (bw > 0).then_some(bw),
            error_rate: f64::from(self.errors_per_million.load(Ordering::SeqCst)) / 1_000_000.0,
        }
    }

    /// How many calls have failed because of an injected fault.
    pub fn injected_total(&self) -> u64 {
        self.injected_total.load(Ordering::Relaxed)
    }

    /// Runs before every call: fails on an outage or a drawn error, then waits
    /// out the added latency.
    async fn before(&self, op: &'static str) -> object_store::Result<()> {
        self.admit(op)
            .await
            .map_err(|fault| object_store::Error::Generic {
                store: "lifeboat-fault-injector",
                source: Box::new(fault),
            })
    }

    /// Decides the fate of one call: the fault it meets, if any (counted),
    /// after waiting out the added latency.
    pub(crate) async fn admit(&self, op: &'static str) -> Result<(), InjectedFault> {
        if self.outage.load(Ordering::SeqCst) {
            return Err(self.injected(op, FaultKind::Outage));
        }
        let per_million = self.errors_per_million.load(Ordering::SeqCst);
        if per_million > 0 && fastrand::u32(0..1_000_000) < per_million {
            return Err(self.injected(op, FaultKind::Error));
        }
        let latency_ms = self.latency_ms.load(Ordering::SeqCst);
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
            // An outage that began while we waited cuts this call off too.
            if self.outage.load(Ordering::SeqCst) {
                return Err(self.injected(op, FaultKind::Outage));
            }
        }
        Ok(())
    }

    /// Holds `bytes` on the simulated link: transfers share the bandwidth and
    /// queue behind each other, as on a real slow link.
    pub(crate) async fn transfer(&self, bytes: u64) {
        let bw = self.bandwidth_bytes_per_s.load(Ordering::SeqCst);
        if bw == 0 || bytes == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / bw as f64);
        let done_at = {
            let mut free_at = match self.link_free_at.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let start = (*free_at).max(Instant::now());
            *free_at = start + cost;
            *free_at
        };
        tokio::time::sleep_until(done_at.into()).await;
    }

    fn limited(&self) -> bool {
        self.bandwidth_bytes_per_s.load(Ordering::SeqCst) > 0
    }

    fn injected(&self, op: &'static str, kind: FaultKind) -> InjectedFault {
        self.injected_total.fetch_add(1, Ordering::Relaxed);
        InjectedFault {
            region: self.region.to_string(),
            op,
            kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Outage,
    Error,
}

/// The error an injected fault produces; its text names the region.
#[derive(Debug)]
pub struct InjectedFault {
    region: String,
    op: &'static str,
    pub(crate) kind: FaultKind,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Outage => write!(
                f,
                "region `{}` is unreachable (injected outage) during {}",
                self.region, self.op
            ),
            FaultKind::Error => write!(
                f,
                "region `{}` failed {} (injected error)",
                self.region, self.op
            ),
        }
    }
}

impl std::error::Error for InjectedFault {}

/// An [`ObjectStore`] that applies a region's [`Faults`] to every call of
/// the store it wraps.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
    /// Whether `inner` refuses a put with attributes (a local folder).
    /// SlateDB tags each conditional put with an id attribute and, refused,
    /// puts again without it: every manifest write cost two calls, one of
    /// them refused (and counted by the meter below). Such a store gets
    /// the put without its attributes at once.
    attributes_refused: bool,
}

impl FaultyStore {
    /// Wraps `inner` with the switch `faults`.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Arc<Faults>) -> Self {
        FaultyStore {
            inner,
            faults,
            attributes_refused: false,
        }
    }

    /// Wraps `inner`, a store that refuses attributes on a put (see
    /// `attributes_refused`).
    pub fn refusing_attributes(inner: Arc<dyn ObjectStore>, faults: Arc<Faults>) -> Self {
        FaultyStore {
            attributes_refused: true,
            ..FaultyStore::new(inner, faults)
        }
    }

    /// The attributes of a put that `inner` is given.
    fn passed(&self, attributes: Attributes) -> Attributes {
        if self.attributes_refused {
            Attributes::default()
        } else {
            attributes
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({}, {})", self.faults.region, self.inner)
    }
}

/// Wraps a stream so that each item is held on the simulated link.
fn throttle_bytes(
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    faults: Arc<Faults>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    stream
        .then(move |item| {
            let faults = Arc::clone(&faults);
            async move {
                if let Ok(bytes) = &item {
                    faults.transfer(bytes.len() as u64).await;
                }
                item
            }
        })
        .boxed()
}

/// Gates a listing: the fault check runs when the listing starts.
fn gate_list(
    faults: Arc<Faults>,
    op: &'static str,
    inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    futures::stream::once(async move {
        match faults.before(op).await {
            Ok(()) => inner,
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    })
    .flatten()
    .boxed()
}

/// Every request a region is asked, at trace level under the target
/// `lifeboat::requests`: what an operation waits on, request by request
/// (`RUST_LOG=lifeboat::requests=trace`).
fn trace_request(faults: &Faults, op: &str, path: &Path) {
    tracing::trace!(target: "lifeboat::requests", "{} {op} {path}", faults.region);
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        trace_request(&self.faults, "put", location);
        self.faults.before("put").await?;
        self.faults.transfer(payload.content_length() as u64).await;
        let opts = PutOptions {
            attributes: self.passed(opts.attributes),
            ..opts
        };
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        trace_request(&self.faults, "put_multipart", location);
        self.faults.before("put_multipart").await?;
        let opts = PutMultipartOptions {
            attributes: self.passed(opts.attributes),
            ..opts
        };
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            upload,
            faults: Arc::clone(&self.faults),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        trace_request(&self.faults, "get", location);
        self.faults.before("get").await?;
        let result = self.inner.get_opts(location, options).await?;
        if !self.faults.limited() {
            return Ok(result);
        }
        let meta = result.meta.clone();
        let range = result.range.clone();
        let attributes = result.attributes.clone();
        let extensions = result.extensions.clone();
        let stream = throttle_bytes(result.into_stream(), Arc::clone(&self.faults));
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        trace_request(&self.faults, "get_ranges", location);
        self.faults.before("get_ranges").await?;
        let parts = self.inner.get_ranges(location, ranges).await?;
        let total: u64 = parts.iter().map(|b| b.len() as u64).sum();
        self.faults.transfer(total).await;
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let faults = Arc::clone(&self.faults);
        let gated = locations
            .then(move |location| {
                let faults = Arc::clone(&faults);
                async move {
                    if let Ok(location) = &location {
                        trace_request(&faults, "delete", location);
                    }
                    faults.before("delete").await?;
                    location
                }
            })
            .boxed();
        self.inner.delete_stream(gated)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        trace_request(&self.faults, "list", prefix.unwrap_or(&Path::default()));
        gate_list(Arc::clone(&self.faults), "list", self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        trace_request(&self.faults, "list", prefix.unwrap_or(&Path::default()));
        gate_list(
            Arc::clone(&self.faults),
            "list",
            self.inner.list_with_offset(prefix, offset),
        )
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        trace_request(&self.faults, "list", prefix.unwrap_or(&Path::default()));
        self.faults.before("list").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        trace_request(&self.faults, "copy", from);
        self.faults.before("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        trace_request(&self.faults, "rename", from);
        self.faults.before("rename").await?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose parts pass through the region's faults.
#[derive(Debug)]
struct FaultyUpload {
    upload: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let faults = Arc::clone(&self.faults);
        let bytes = data.content_length() as u64;
        let part = self.upload.put_part(data);
        Box::pin(async move {
            faults.before("put_part").await?;
            faults.transfer(bytes).await;
            part.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.faults.before("complete_multipart").await?;
        self.upload.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.faults.before("abort_multipart").await?;
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_print() {
        let plan: FaultPlan = "outage,latency=250ms,bandwidth=2MiB,errors=0.25"
            .parse()
            .expect("valid plan");
        assert!(plan.outage);
        assert_eq!(plan.latency_ms, 250);
        assert_eq!(plan.bandwidth_bytes_per_s, Some(2 << 20));
        assert_eq!(plan.error_rate, 0.25);
        assert_eq!(plan.to_string().parse::<FaultPlan>(), Ok(plan));
        assert!("none".parse::<FaultPlan>().expect("none").is_clear());
    }

    #[test]
    fn bad_plans_say_how_to_write_them() {
        for bad in [
            "outrage",
            "latency=fast",
            "bandwidth=0",
            "errors=2",
            "latency=2h",
        ] {
            let err = bad.parse::<FaultPlan>().expect_err(bad);
            assert!(!err.is_empty() && !err.contains('\n'), "{bad}: {err}");
        }
    }
}
