//! Regions: a name plus a URL, turned into an object store.
//!
//! This is the one place that builds stores. A region's store is the backend
//! (local folder, memory, S3, GCS, Azure) under the region's prefix, with
//! the region's fault switch in the path of every call, so drills, tests and
//! the soak can cut a region off at run time: cloud clients meet their
//! faults at the HTTP layer ([`http_faults::FaultyConnector`], so their own
//! retries and timeouts take part), local stores through a
//! [`faults::FaultyStore`] wrapper.

mod cloud;
pub mod faults;
pub mod http_faults;
pub mod local;
pub mod meter;
pub mod objects;
pub mod retry;
pub mod shadow;
pub mod sync;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use faults::{Faults, FaultyStore};
use meter::{Meter, MeteredStore, Metering, Notices};

/// A configured region, as written in the regions file: plain data, no
/// secrets (credentials are named by environment variable, never stored).
/// Which options apply depends on the URL's scheme ([`RegionSpec::validate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSpec {
    /// The region's name (`us-east-1`), unique among configured regions.
    pub name: String,
    /// Where its objects live: `file:///dir`, `memory://name`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    pub url: String,
    /// The server to talk to instead of the cloud's own: an S3-compatible
    /// server (`http://127.0.0.1:8333`), an Azure account's blob endpoint
    /// (a sovereign cloud's, or Azurite's `http://127.0.0.1:10000/ACCOUNT`),
    /// a GCS-compatible server's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3: the signing region (default: `AWS_REGION`, the profile's, `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3: the name of the environment variable that holds the access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_env: Option<String>,
    /// S3: the name of the environment variable that holds the secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_env: Option<String>,
    /// S3: the name of the environment variable that holds a session token
    /// (temporary credentials, with the two above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_env: Option<String>,
    /// S3: a profile of `~/.aws/credentials` and `~/.aws/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Azure: the storage account (default: `AZURE_STORAGE_ACCOUNT_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Azure: the name of the environment variable that holds the account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_env: Option<String>,
    /// Azure: the name of the environment variable that holds a SAS token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token_env: Option<String>,
    /// GCS: the name of the environment variable that holds the path of a
    /// credentials file (a service-account key; default: the provider
    /// chain, `GOOGLE_APPLICATION_CREDENTIALS` first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_env: Option<String>,
}

/// The options of a region that belong to some kinds of store: the flag
/// that sets each (`region add --help`; a `-env` flag names a variable),
/// the URL schemes it applies to, and its value.
fn kind_options(spec: &RegionSpec) -> [(&'static str, &'static str, &Option<String>); 10] {
    [
        ("--endpoint", "s3 gs az", &spec.endpoint),
        ("--s3-region", "s3", &spec.s3_region),
        ("--access-key-env", "s3", &spec.access_key_env),
        ("--secret-key-env", "s3", &spec.secret_key_env),
        ("--session-token-env", "s3", &spec.session_token_env),
        ("--profile", "s3", &spec.profile),
        ("--account", "az", &spec.account),
        ("--account-key-env", "az", &spec.account_key_env),
        ("--sas-token-env", "az", &spec.sas_token_env),
        ("--credentials-env", "gs", &spec.credentials_env),
    ]
}

impl RegionSpec {
    /// A region with just a name and a URL.
    pub fn new(name: &str, url: &str) -> Self {
        RegionSpec {
            name: name.to_string(),
            url: url.to_string(),
            ..RegionSpec::default()
        }
    }

    /// Checks the spec without touching the network: the name, the URL and
    /// the options that belong to its scheme.
    pub fn validate(&self) -> Result<RegionUrl> {
        validate_name("region", &self.name)?;
        let location = RegionUrl::parse(&self.name, &self.url)?;
        let kind = location.kind();
        if let Some((flag, kinds, _)) = kind_options(self)
            .into_iter()
            .find(|(_, kinds, value)| value.is_some() && !kinds.split(' ').any(|k| k == kind))
        {
            let urls = kinds
                .split(' ')
                .map(|k| format!("{k}://"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::invalid(format!(
                "region `{}`: {flag} applies to {urls} regions only, not to {kind}",
                self.name,
                kind = location.describe()
            )));
        }
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(&self.name, endpoint, &location)?;
        }
        if let Some(region) = &self.s3_region {
            check_signing_region(&self.name, region, "--s3-region")?;
        }
        for (flag, _, var) in kind_options(self) {
            if let Some(var) = var
                && flag.ends_with("-env")
            {
                check_var_name(&self.name, flag, var)?;
            }
        }
        if self.access_key_env.is_some() != self.secret_key_env.is_some() {
            return Err(Error::invalid(format!(
                "region `{}`: give both --access-key-env and --secret-key-env, or neither (then the AWS_* environment or a profile is used)",
                self.name
            )));
        }
        if self.session_token_env.is_some() && self.access_key_env.is_none() {
            return Err(Error::invalid(format!(
                "region `{}`: --session-token-env goes with --access-key-env and --secret-key-env (a session token belongs to a temporary key pair)",
                self.name
            )));
        }
        if self.profile.is_some() && self.access_key_env.is_some() {
            return Err(Error::invalid(format!(
                "region `{}`: give --profile or the key env vars, not both",
                self.name
            )));
        }
        if let Some(profile) = &self.profile
            && (profile.is_empty() || profile.chars().any(|c| c.is_control() || "[]".contains(c)))
        {
            return Err(Error::invalid(format!(
                "region `{}`: `{profile}` is not a profile name; give a name from ~/.aws/credentials, e.g. default",
                self.name
            )));
        }
        if self.account_key_env.is_some() && self.sas_token_env.is_some() {
            return Err(Error::invalid(format!(
                "region `{}`: give --account-key-env or --sas-token-env, not both",
                self.name
            )));
        }
        if let Some(account) = &self.account
            && (!(3..=24).contains(&account.len())
                || !account
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        {
            return Err(Error::invalid(format!(
                "region `{}`: `{account}` is not an Azure storage account name; it has 3 to 24 lowercase letters and digits",
                self.name
            )));
        }
        Ok(location)
    }
}

/// Checks a name used in paths and on the command line.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} name `{name}` is not valid; use 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
        )))
    }
}

/// Checks the NAME of an environment variable given for `flag`. The value
/// is never repeated: a value that is no name is most likely the secret
/// itself, pasted where its variable's name belongs.
fn check_var_name(region: &str, flag: &str, var: &str) -> Result<()> {
    let name_like = !var.is_empty()
        && var.len() <= 128
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    // Variables are named in capitals by habit; a long mix of cases and
    // digits is how keys look.
    let key_like = var.len() >= 16
        && var.chars().any(|c| c.is_ascii_lowercase())
        && var.chars().any(|c| c.is_ascii_uppercase())
        && var.chars().any(|c| c.is_ascii_digit());
    if name_like && !key_like {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "region `{region}`: the value given for {flag} is not the name of an environment variable (not repeated here, in case it is the secret); give the NAME of the variable that holds it, e.g. MY_KEY"
    )))
}

/// Checks a signing region: it becomes part of a host name.
pub(crate) fn check_signing_region(region: &str, value: &str, from: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "region `{region}`: `{value}` ({from}) is not an S3 signing region; write it like eu-west-1"
        )))
    }
}

fn check_endpoint(region: &str, endpoint: &str, location: &RegionUrl) -> Result<()> {
    let url = url::Url::parse(endpoint).map_err(|e| {
        Error::invalid(format!(
            "region `{region}`: the endpoint is not a URL ({e}); write it like http://127.0.0.1:8333"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(Error::invalid(format!(
            "region `{region}`: the endpoint carries credentials (user:password@ or a ?query; not repeated here); give the server's URL alone and name the variables that hold the keys"
        )));
    }
    // A SAS token rides in the URL and a bearer token in a header, both
    // readable by anyone on the network: plain http for those only on
    // this machine. (An S3 signature never carries the secret.)
    let tokens_in_clear = matches!(location, RegionUrl::Azure { .. } | RegionUrl::Gcs { .. });
    match url.scheme() {
        "https" => Ok(()),
        "http" if tokens_in_clear && is_loopback(&url) => Ok(()),
        "http" if tokens_in_clear => Err(Error::invalid(format!(
            "region `{region}`: plain http in --endpoint to {} is allowed only on loopback (its tokens would cross the network in clear); use https for `{endpoint}`",
            location.describe()
        ))),
        "http" if is_local(&url) => Ok(()),
        "http" => Err(Error::invalid(format!(
            "region `{region}`: plain http in --endpoint is allowed only for loopback and private-network addresses; use https for `{endpoint}`"
        ))),
        other => Err(Error::invalid(format!(
            "region `{region}`: endpoint scheme `{other}` is not http or https"
        ))),
    }
}

/// This machine only.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Loopback, or an address of a private network (an S3 server on the
/// same LAN or in a network namespace): plain http stays off the internet.
pub(crate) fn is_local(url: &url::Url) -> bool {
    is_loopback(url)
        || match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_private(),
            Some(url::Host::Ipv6(ip)) => ip.is_unique_local(),
            _ => false,
        }
}

/// A region URL, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionUrl {
    /// A local folder (created if missing).
    File(PathBuf),
    /// A named in-memory store, shared within this process.
    Memory(String),
    /// An S3 bucket and a prefix inside it.
    S3 { bucket: String, prefix: String },
    /// A Google Cloud Storage bucket and prefix.
    Gcs { bucket: String, prefix: String },
    /// An Azure Blob Storage container and prefix.
    Azure { container: String, prefix: String },
}

impl RegionUrl {
    /// Parses a region URL; `region` names the region in errors.
    pub fn parse(region: &str, text: &str) -> Result<Self> {
        const SCHEMES: &str = "file:///dir, memory://, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix";
        // The URL parser resolves `.` and `..` without a word: a region
        // would silently live somewhere else than the text says.
        let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
        if after_scheme.split(['/', '\\']).any(|segment| {
            segment == ".." || segment == "." || segment.eq_ignore_ascii_case("%2e%2e")
        }) {
            return Err(Error::invalid(format!(
                "region `{region}`: `{text}` has `.` or `..` in its path; write the folder or prefix itself, e.g. file:///srv/lifeboat/us-east-1"
            )));
        }
        // Credentials in the URL would be saved and shown with it: refused
        // before the text is repeated anywhere.
        let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') || text.contains('?') || text.contains('#') {
            return Err(Error::invalid(format!(
                "region `{region}`: the URL carries credentials or options (user:password@, a ?query or a #fragment; not repeated here); write only the scheme, bucket and prefix, and name the variables that hold the keys"
            )));
        }
        let url = url::Url::parse(text).map_err(|e| {
            let hint = if text.starts_with('/') {
                format!("; for a local folder write file://{text}")
            } else {
                String::new()
            };
            Error::invalid(format!(
                "region `{region}`: `{text}` is not a URL ({e}){hint}; use {SCHEMES}"
            ))
        })?;
        let bucket_and_prefix = |kind: &str| -> Result<(String, String)> {
            let bucket = url.host_str().unwrap_or("").to_string();
            if bucket.is_empty() {
                return Err(Error::invalid(format!(
                    "region `{region}`: `{text}` names no {kind}; write {}://{}[/PREFIX]",
                    url.scheme(),
                    kind.to_uppercase()
                )));
            }
            let prefix = url.path().trim_matches('/').to_string();
            Ok((bucket, prefix))
        };
        match url.scheme() {
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(Error::invalid(format!(
                        "region `{region}`: `{text}` has a host; a local folder is written file:///absolute/path"
                    )));
                }
                let path = url.to_file_path().map_err(|()| {
                    Error::invalid(format!(
                        "region `{region}`: `{text}` is not an absolute folder path; write file:///absolute/path"
                    ))
                })?;
                Ok(RegionUrl::File(path))
            }
            "memory" => {
                let name = format!(
                    "{}{}",
                    url.host_str().unwrap_or(""),
                    url.path().trim_end_matches('/')
                );
                Ok(RegionUrl::Memory(name))
            }
            "s3" => {
                let (bucket, prefix) = bucket_and_prefix("bucket")?;
                Ok(RegionUrl::S3 { bucket, prefix })
            }
            "gs" => {
                let (bucket, prefix) = bucket_and_prefix("bucket")?;
                Ok(RegionUrl::Gcs { bucket, prefix })
            }
            "az" => {
                let (container, prefix) = bucket_and_prefix("container")?;
                let ok = (3..=63).contains(&container.len())
                    && container
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !container.starts_with('-')
                    && !container.ends_with('-')
                    && !container.contains("--");
                if !ok {
                    return Err(Error::invalid(format!(
                        "region `{region}`: `{container}` is not an Azure container name; use 3 to 63 lowercase letters, digits and single hyphens, e.g. az://lifeboat/us-east-1"
                    )));
                }
                Ok(RegionUrl::Azure { container, prefix })
            }
            other => Err(Error::invalid(format!(
                "region `{region}`: unsupported URL scheme `{other}` in `{text}`; use {SCHEMES}"
            ))),
        }
    }

    /// A short word for the kind of store (`file`, `memory`, `s3`, `gs`, `az`).
    pub fn kind(&self) -> &'static str {
        match self {
            RegionUrl::File(_) => "file",
            RegionUrl::Memory(_) => "memory",
            RegionUrl::S3 { .. } => "s3",
            RegionUrl::Gcs { .. } => "gs",
            RegionUrl::Azure { .. } => "az",
        }
    }

    /// The kind of store in words, for messages (`an Azure container`).
    pub fn describe(&self) -> &'static str {
        match self {
            RegionUrl::File(_) => "a local folder",
            RegionUrl::Memory(_) => "an in-memory store",
            RegionUrl::S3 { .. } => "an S3 bucket",
            RegionUrl::Gcs { .. } => "a GCS bucket",
            RegionUrl::Azure { .. } => "an Azure container",
        }
    }

    /// Whether the region lives in a cloud object store reached over HTTP
    /// (its faults are injected at the HTTP layer).
    pub fn is_cloud(&self) -> bool {
        !matches!(self, RegionUrl::File(_) | RegionUrl::Memory(_))
    }

    /// Whether the store supports conditional overwrites (If-Match), which
    /// SlateDB's GC boundary files need. A local folder does not.
    pub fn supports_if_match(&self) -> bool {
        !matches!(self, RegionUrl::File(_))
    }
}

/// Named in-memory stores live for the process, so that `memory://a`
/// opened twice is the same store.
fn memory_store(name: &str) -> Arc<InMemory> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = match stores.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    Arc::clone(
        stores
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(InMemory::new())),
    )
}

/// Builds the backend store of a region. Cloud clients send their requests
/// through `faults` at the HTTP layer; local stores are wrapped by the caller.
fn backend(
    spec: &RegionSpec,
    location: &RegionUrl,
    faults: &Arc<Faults>,
) -> Result<Arc<dyn ObjectStore>> {
    let name = spec.name.as_str();
    let build_err = |e: object_store::Error| {
        Error::invalid(format!(
            "region `{name}`: cannot set up `{}`: {}",
            spec.url,
            crate::error::one_line(&e.to_string())
        ))
    };
    let with_prefix = |store: Arc<dyn ObjectStore>, prefix: &str| -> Arc<dyn ObjectStore> {
        if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        }
    };
    match location {
        RegionUrl::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::file(
                    dir,
                    format!("region `{name}`: cannot create the folder: {e}"),
                )
            })?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(build_err)?;
            Ok(Arc::new(local::LocalStore::new(store)))
        }
        RegionUrl::Memory(id) => Ok(memory_store(id)),
        RegionUrl::S3 { bucket, prefix } => {
            let store = cloud::s3(spec, bucket, faults)?;
            Ok(with_prefix(store, prefix))
        }
        RegionUrl::Gcs { bucket, prefix } => {
            let store = cloud::gcs(spec, bucket, faults)?;
            Ok(with_prefix(store, prefix))
        }
        RegionUrl::Azure { container, prefix } => {
            let store = cloud::azure(spec, container, faults)?;
            Ok(with_prefix(store, prefix))
        }
    }
}

/// An opened region: its spec, its store (already wrapped by its meter,
/// its fault injector and the redirects of shadow parents), the fault
/// switch and the metering.
#[derive(Debug, Clone)]
pub struct Region {
    spec: RegionSpec,
    location: RegionUrl,
    store: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
    metering: Metering,
}

/// What a connectivity probe found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The region probed.
    pub region: String,
    /// Round trip of a small put, get and delete, in milliseconds.
    pub latency_ms: u64,
    /// Whether a second create-only put of the same name was refused, as
    /// SlateDB needs.
    pub conditional_put: bool,
    /// How far the store's clock (the time it stamps on objects) is ahead
    /// of this machine's, in milliseconds; negative when behind. Stores
    /// stamp whole seconds, so anything within a second reads 0.
    pub clock_skew_ms: i64,
}

/// Clock skew beyond which Lifeboat warns: lag and RPO are measured from
/// the times the home region stamps on its files.
pub const CLOCK_SKEW_WARN: Duration = Duration::from_secs(2);

impl ProbeReport {
    /// A warning when the region's clock is too far from this machine's.
    pub fn clock_warning(&self) -> Option<String> {
        let skew = self.clock_skew_ms.unsigned_abs();
        (skew > CLOCK_SKEW_WARN.as_millis() as u64).then(|| {
            let side = if self.clock_skew_ms > 0 { "ahead of" } else { "behind" };
            format!(
                "region `{}`: its clock is {:.1} s {side} this machine's; lag and RPO are measured from the times the home region stamps on files, so they will be off by as much; fix the server's time (NTP)",
                self.region,
                skew as f64 / 1000.0
            )
        })
    }
}

/// Probes every region before replication starts: a region that ignores
/// conditional puts is refused; one that does not answer now only earns a
/// warning (replication waits for it); clocks that disagree earn warnings.
pub async fn preflight(regions: &[Region]) -> Result<Vec<String>> {
    let probes = futures::future::join_all(regions.iter().map(Region::measure)).await;
    let mut reports = Vec::new();
    let mut warnings = Vec::new();
    for probe in probes {
        match probe {
            Ok(report) if !report.conditional_put => {
                let kind = regions
                    .iter()
                    .find(|r| r.name() == report.region)
                    .map(|r| r.location());
                return Err(ignores_conditional_puts(&report.region, kind));
            }
            Ok(report) => reports.push(report),
            Err(e) => warnings.push(format!("{e}; replication will retry until it answers")),
        }
    }
    warnings.extend(clock_warnings(&reports));
    Ok(warnings)
}

fn ignores_conditional_puts(region: &str, location: Option<&RegionUrl>) -> Error {
    let servers = match location {
        Some(RegionUrl::Gcs { .. }) => "Google Cloud Storage itself",
        Some(RegionUrl::Azure { .. }) => "Azure Blob Storage, Azurite",
        _ => "AWS S3, SeaweedFS, moto",
    };
    Error::Store {
        region: region.to_string(),
        op: "probe".into(),
        detail: format!(
            "the server ignores conditional puts (it accepted a second create-only put of the same object, or gave a written object no version), which SlateDB needs (without them two writers corrupt a database silently); use a server that honours them ({servers})"
        ),
    }
}

/// Whether a put failed only because the server gave the written object no
/// version to make later puts conditional on.
fn gives_no_version(err: &object_store::Error) -> bool {
    crate::error::error_chain(err)
        .to_lowercase()
        .contains("etag header missing")
}

/// Warnings for clocks that disagree: each region against this machine, and
/// each pair of regions (neither already warned about) against each other.
pub fn clock_warnings(reports: &[ProbeReport]) -> Vec<String> {
    let mut warnings: Vec<String> = reports.iter().filter_map(|r| r.clock_warning()).collect();
    let fine: Vec<&ProbeReport> = reports
        .iter()
        .filter(|r| r.clock_warning().is_none())
        .collect();
    for (i, a) in fine.iter().enumerate() {
        for b in &fine[i + 1..] {
            let apart = a.clock_skew_ms.abs_diff(b.clock_skew_ms);
            if apart > CLOCK_SKEW_WARN.as_millis() as u64 {
                warnings.push(format!(
                    "regions `{}` and `{}`: their clocks are {:.1} s apart; replication lag between them will read off by as much; fix the servers' time (NTP)",
                    a.region,
                    b.region,
                    apart as f64 / 1000.0
                ));
            }
        }
    }
    warnings
}

/// How far a stamp taken by the store lies outside the local interval in
/// which the object was written, in milliseconds. Stamps are whole seconds
/// (truncated), so the interval opens a second early.
fn skew_ms(stamp_ms: i64, before_ms: i64, after_ms: i64) -> i64 {
    if stamp_ms > after_ms {
        stamp_ms - after_ms
    } else if stamp_ms < before_ms - 1000 {
        stamp_ms - (before_ms - 1000)
    } else {
        0
    }
}

fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Region {
    /// Builds the region's store. Touches no network; a local folder is
    /// created if missing.
    pub fn open(spec: &RegionSpec) -> Result<Region> {
        Region::open_with(spec, Faults::of(&spec.name, &spec.url))
    }

    /// As [`Region::open`], with a fault switch of its own that the other
    /// openings' faults do not reach: a bench's or a test's stand-in for
    /// a writer in a process of its own (a region lost to the engine, its
    /// writer still writing there).
    pub fn open_apart(spec: &RegionSpec) -> Result<Region> {
        Region::open_with(spec, Arc::new(Faults::new(&spec.name)))
    }

    fn open_with(spec: &RegionSpec, faults: Arc<Faults>) -> Result<Region> {
        let location = spec.validate()?;
        let metering = Metering::of(&spec.name, &spec.url);
        // The meter counts what reaches the store: a fault injected above
        // it costs nothing.
        let backend: Arc<dyn ObjectStore> = Arc::new(MeteredStore::new(
            backend(spec, &location, &faults)?,
            metering.clone(),
        ));
        let faulty: Arc<dyn ObjectStore> = match location {
            _ if location.is_cloud() => backend,
            RegionUrl::File(_) => Arc::new(FaultyStore::refusing_attributes(
                backend,
                Arc::clone(&faults),
            )),
            _ => Arc::new(FaultyStore::new(backend, Arc::clone(&faults))),
        };
        // Forks off replicas read their source through shadow parents.
        let store: Arc<dyn ObjectStore> = Arc::new(shadow::ShadowStore::new(faulty));
        Ok(Region {
            spec: spec.clone(),
            location,
            store,
            faults,
            metering,
        })
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The region's spec.
    pub fn spec(&self) -> &RegionSpec {
        &self.spec
    }

    /// The parsed location.
    pub fn location(&self) -> &RegionUrl {
        &self.location
    }

    /// The region's store, with its fault injector in front.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The region's fault switch.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Every request this process made to the region, by class.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.metering.meter
    }

    /// The files this process wrote to the region, as they land.
    pub fn notices(&self) -> &Arc<Notices> {
        &self.metering.notices
    }

    /// Checks that the region answers and honours create-only puts: puts,
    /// reads back and deletes a small object under `_lifeboat/probe/`. A
    /// region that ignores conditional puts is refused.
    pub async fn probe(&self) -> Result<ProbeReport> {
        let report = self.measure().await?;
        if !report.conditional_put {
            return Err(ignores_conditional_puts(self.name(), Some(&self.location)));
        }
        Ok(report)
    }

    /// Whether the region answers one read within `within` (not retried):
    /// an answer that the object is missing counts.
    pub async fn answers(&self, within: std::time::Duration) -> Result<()> {
        let path = Path::from("_lifeboat/reach");
        match tokio::time::timeout(within, self.store.head(&path)).await {
            Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(Error::store(self.name(), "reach", &e)),
            Err(_) => Err(Error::Failed(format!(
                "region `{}` did not answer within {} ms",
                self.name(),
                within.as_millis()
            ))),
        }
    }

    /// A failed probe step, in words that fit the region's kind of store.
    fn probe_error(&self, op: &str, err: &object_store::Error) -> Error {
        let (missing, creds) = match &self.location {
            RegionUrl::Azure { .. } => (
                "the container does not exist; create it or fix the URL",
                "no credentials found: the region names no key env var, AZURE_STORAGE_ACCOUNT_KEY and AZURE_STORAGE_SAS_KEY are not set and no managed identity answers; give --account-key-env or --sas-token-env",
            ),
            RegionUrl::Gcs { .. } => (
                "the bucket does not exist; create it or fix the URL",
                "no credentials found: the region names no credentials file, GOOGLE_APPLICATION_CREDENTIALS is not set and no instance service account answers; give --credentials-env",
            ),
            _ => (
                "the bucket does not exist; create it or fix the URL",
                "no credentials found: the region names no key env vars, AWS_ACCESS_KEY_ID is not set, no AWS profile has keys and no cloud instance metadata answers; give --access-key-env and --secret-key-env, or --profile",
            ),
        };
        let detail = match err {
            // A put answered "not found" has nowhere to go.
            object_store::Error::NotFound { .. } if op.ends_with("put") => missing.to_string(),
            _ => {
                let detail = crate::error::explain_store_error(err);
                if detail.starts_with("no credentials found") {
                    creds.to_string()
                } else {
                    detail
                }
            }
        };
        Error::Store {
            region: self.name().to_string(),
            op: op.to_string(),
            detail,
        }
    }

    /// What [`Region::probe`] measures, without refusing anything.
    pub async fn measure(&self) -> Result<ProbeReport> {
        let name = self.name();
        let path = Path::from(format!(
            "_lifeboat/probe/{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let started = Instant::now();
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let before_ms = unix_ms_now();
        let first =
            retry::retrying(|| self.store.put_opts(&path, "probe".into(), create.clone())).await;
        let after_ms = unix_ms_now();
        let conditional_put = match first {
            // A server that gives written objects no version (ETag) cannot
            // make a put conditional on one: it wrote the object all the same.
            Err(e) if gives_no_version(&e) => false,
            Err(e) => return Err(self.probe_error("probe put", &e)),
            Ok(_) => {
                let again = self.store.put_opts(&path, "probe".into(), create).await;
                matches!(again, Err(object_store::Error::AlreadyExists { .. }))
            }
        };
        if !conditional_put {
            // Refused whatever else it does; what it wrote is only cleared.
            if let Err(e) = self.store.delete(&path).await {
                tracing::debug!(region = %name, "probe object stays: {e}");
            }
            return Ok(ProbeReport {
                region: name.to_string(),
                latency_ms: started.elapsed().as_millis() as u64,
                conditional_put,
                clock_skew_ms: 0,
            });
        }
        let read = retry::retrying(|| async { self.store.get(&path).await }).await;
        let read = match read {
            Ok(got) => {
                let stamp_ms = got.meta.last_modified.timestamp_millis();
                got.bytes().await.map(|body| (body, stamp_ms))
            }
            Err(e) => Err(e),
        };
        let deleted = retry::retrying(|| self.store.delete(&path)).await;
        if let RegionUrl::File(dir) = &self.location {
            // A local store leaves the folders of a deleted object behind;
            // the probe leaves nothing (`remove_dir` keeps a folder that
            // holds anything, such as the control log).
            for folder in ["_lifeboat/probe", "_lifeboat"] {
                if let Err(e) = std::fs::remove_dir(dir.join(folder)) {
                    tracing::trace!(region = %name, "{folder} stays: {e}");
                }
            }
        }
        let (body, stamp_ms) = read.map_err(|e| self.probe_error("probe get", &e))?;
        deleted.map_err(|e| self.probe_error("probe delete", &e))?;
        if body.as_ref() != b"probe" {
            return Err(Error::Store {
                region: name.to_string(),
                op: "probe get".into(),
                detail: "read back different bytes than were written".into(),
            });
        }
        Ok(ProbeReport {
            region: name.to_string(),
            latency_ms: started.elapsed().as_millis() as u64,
            conditional_put,
            clock_skew_ms: skew_ms(stamp_ms, before_ms, after_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_by_scheme() {
        assert_eq!(
            RegionUrl::parse("r", "file:///tmp/x").ok(),
            Some(RegionUrl::File("/tmp/x".into()))
        );
        assert_eq!(
            RegionUrl::parse("r", "s3://bkt/a/b/").ok(),
            Some(RegionUrl::S3 {
                bucket: "bkt".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            RegionUrl::parse("r", "memory://t1").ok(),
            Some(RegionUrl::Memory("t1".into()))
        );
    }

    #[test]
    fn bad_urls_name_the_region_and_the_fix() {
        let cases = [
            ("ftp://host/x", "unsupported URL scheme `ftp`"),
            ("s3://", "names no bucket"),
            ("/tmp/x", "file:///tmp/x"),
            ("file://host/x", "file:///absolute/path"),
        ];
        for (url, expect) in cases {
            let err = RegionUrl::parse("west", url).expect_err(url).to_string();
            assert!(
                err.contains("region `west`") && err.contains(expect),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn skew_allows_for_whole_second_stamps() {
        assert_eq!(skew_ms(10_000, 10_500, 10_700), 0);
        assert_eq!(skew_ms(9_600, 10_500, 10_700), 0);
        assert_eq!(skew_ms(40_000, 10_500, 10_700), 29_300);
        assert_eq!(skew_ms(1_000, 10_500, 10_700), -8_500);
        let report = |region: &str, clock_skew_ms| ProbeReport {
            region: region.into(),
            latency_ms: 1,
            conditional_put: true,
            clock_skew_ms,
        };
        let warnings = clock_warnings(&[
            report("a", 0),
            report("b", 1500),
            report("c", 30_000),
            report("d", -1500),
        ]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("region `c`") && warnings[0].contains("30.0 s ahead"));
        assert!(warnings[1].contains("`b` and `d`") && warnings[1].contains("3.0 s apart"));
    }

    #[test]
    fn a_secret_where_a_name_belongs_is_refused_unrepeated() {
        for pasted in [
            "wJalrXUtnFEMI2K7MDENG2bPxRfiCYEXAMPLEKEY",
            "Zm9vYmFyYmF6cXV4MTIz+NDU2Nzg5MDEy/MzQ1Ng==",
            "sv=2024&sig=abc",
            "",
            "1PASSWORD",
        ] {
            let err = check_var_name("r", "--account-key-env", pasted)
                .expect_err(pasted)
                .to_string();
            assert!(pasted.is_empty() || !err.contains(pasted), "{err}");
            assert!(err.contains("--account-key-env"), "{err}");
        }
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "MY_KEY",
            "west_key",
            "AZURE_STORAGE_KEY_2",
        ] {
            assert!(check_var_name("r", "--x", name).is_ok(), "{name}");
        }
        for url in [
            "s3://AKID:SECRETSECRET@bucket/p",
            "az://c1/p?sig=SECRETSECRET",
            "gs://b/p#SECRETSECRET",
        ] {
            let err = RegionUrl::parse("r", url).expect_err(url).to_string();
            assert!(!err.contains("SECRETSECRET"), "{err}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback_and_private_networks() {
        let mut spec = RegionSpec::new("r", "s3://b");
        for ok in [
            "http://127.0.0.1:9000",
            "http://10.1.2.3:9000",
            "http://[fd00::1]:9000",
        ] {
            spec.endpoint = Some(ok.into());
            assert!(spec.validate().is_ok(), "{ok}");
        }
        for public in ["http://8.8.8.8:9000", "http://s3.example.com"] {
            spec.endpoint = Some(public.into());
            assert!(spec.validate().is_err(), "{public}");
        }
        // Azure and GCS tokens would cross the network in clear.
        for url in ["az://container/p", "gs://bucket/p"] {
            let mut spec = RegionSpec::new("r", url);
            spec.endpoint = Some("http://127.0.0.1:10000/acct".into());
            assert!(spec.validate().is_ok(), "{url} on loopback");
            spec.endpoint = Some("http://10.1.2.3:10000/acct".into());
            let err = spec.validate().expect_err(url).to_string();
            assert!(err.contains("only on loopback"), "{err}");
        }
    }
}
