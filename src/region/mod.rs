//! Regions: a name plus a URL, turned into an object store.
//!
//! This is the one place that builds stores. A region's store is a stack of
//! wrappers: the backend (local folder, memory, S3, GCS, Azure), then the
//! region's prefix, then the [`faults::FaultyStore`] every caller goes
//! through, so drills and tests can cut a region off at run time.

pub mod faults;
pub mod retry;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use faults::{Faults, FaultyStore};

/// How many times the S3/GCS/Azure clients retry one request, and for how long.
const CLOUD_MAX_RETRIES: usize = 3;
const CLOUD_RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const CLOUD_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CLOUD_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A configured region, as written in the regions file: plain data, no
/// secrets (credentials are named by environment variable, never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSpec {
    /// The region's name (`us-east-1`), unique among configured regions.
    pub name: String,
    /// Where its objects live: `file:///dir`, `memory://name`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    pub url: String,
    /// S3: the endpoint URL of an S3-compatible server (`http://127.0.0.1:8333`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3: the signing region (defaults to `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3: the name of the environment variable that holds the access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_env: Option<String>,
    /// S3: the name of the environment variable that holds the secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_env: Option<String>,
}

impl RegionSpec {
    /// A region with just a name and a URL.
    pub fn new(name: &str, url: &str) -> Self {
        RegionSpec {
            name: name.to_string(),
            url: url.to_string(),
            endpoint: None,
            s3_region: None,
            access_key_env: None,
            secret_key_env: None,
        }
    }

    /// Checks the spec without touching the network: the name, the URL and
    /// the options that belong to its scheme.
    pub fn validate(&self) -> Result<RegionUrl> {
        validate_name("region", &self.name)?;
        let location = RegionUrl::parse(&self.name, &self.url)?;
        let s3_only = self.endpoint.is_some()
            || self.s3_region.is_some()
            || self.access_key_env.is_some()
            || self.secret_key_env.is_some();
        if s3_only && !matches!(location, RegionUrl::S3 { .. }) {
            return Err(Error::invalid(format!(
                "region `{}`: endpoint, s3 region and key env vars apply to s3:// URLs only",
                self.name
            )));
        }
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(&self.name, endpoint)?;
        }
        for var in [&self.access_key_env, &self.secret_key_env]
            .into_iter()
            .flatten()
        {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::invalid(format!(
                    "region `{}`: `{var}` is not an environment variable name; give the NAME of the variable that holds the key, not the key",
                    self.name
                )));
            }
        }
        if self.access_key_env.is_some() != self.secret_key_env.is_some() {
            return Err(Error::invalid(format!(
                "region `{}`: give both --access-key-env and --secret-key-env, or neither (then the AWS_* environment is used)",
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

fn check_endpoint(region: &str, endpoint: &str) -> Result<()> {
    let url = url::Url::parse(endpoint).map_err(|e| {
        Error::invalid(format!(
            "region `{region}`: endpoint `{endpoint}` is not a URL ({e}); write it like http://127.0.0.1:8333"
        ))
    })?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(Error::invalid(format!(
            "region `{region}`: plain http is allowed only for loopback endpoints; use https for `{endpoint}`"
        ))),
        other => Err(Error::invalid(format!(
            "region `{region}`: endpoint scheme `{other}` is not http or https"
        ))),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
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

fn cloud_client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(CLOUD_CONNECT_TIMEOUT)
        .with_timeout(CLOUD_REQUEST_TIMEOUT)
}

fn cloud_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: CLOUD_MAX_RETRIES,
        retry_timeout: CLOUD_RETRY_TIMEOUT,
    }
}

fn env_var(region: &str, var: &str, what: &str) -> Result<String> {
    std::env::var(var).map_err(|_| {
        Error::invalid(format!(
            "region `{region}`: environment variable `{var}` ({what}) is not set; export it before starting lifeboat"
        ))
    })
}

/// Builds the backend store of a region, without its fault wrapper.
fn backend(spec: &RegionSpec, location: &RegionUrl) -> Result<Arc<dyn ObjectStore>> {
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
            Ok(Arc::new(store))
        }
        RegionUrl::Memory(id) => Ok(memory_store(id)),
        RegionUrl::S3 { bucket, prefix } => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .with_retry(cloud_retry());
            let mut allow_http = false;
            if let Some(endpoint) = &spec.endpoint {
                check_endpoint(name, endpoint)?;
                allow_http = endpoint.starts_with("http://");
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            builder = builder.with_client_options(cloud_client_options(allow_http));
            builder = builder.with_region(spec.s3_region.as_deref().unwrap_or("us-east-1"));
            if let (Some(key_var), Some(secret_var)) = (&spec.access_key_env, &spec.secret_key_env)
            {
                builder = builder
                    .with_access_key_id(env_var(name, key_var, "access key id")?)
                    .with_secret_access_key(env_var(name, secret_var, "secret key")?);
            }
            let store = builder.build().map_err(build_err)?;
            Ok(with_prefix(Arc::new(store), prefix))
        }
        RegionUrl::Gcs { bucket, prefix } => {
            let store = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(cloud_retry())
                .with_client_options(cloud_client_options(false))
                .build()
                .map_err(build_err)?;
            Ok(with_prefix(Arc::new(store), prefix))
        }
        RegionUrl::Azure { container, prefix } => {
            let store = MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .with_retry(cloud_retry())
                .with_client_options(cloud_client_options(false))
                .build()
                .map_err(build_err)?;
            Ok(with_prefix(Arc::new(store), prefix))
        }
    }
}

/// An opened region: its spec, its store (already wrapped by its fault
/// injector) and the fault switch.
#[derive(Debug, Clone)]
pub struct Region {
    spec: RegionSpec,
    location: RegionUrl,
    store: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
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
}

impl Region {
    /// Builds the region's store. Touches no network; a local folder is
    /// created if missing.
    pub fn open(spec: &RegionSpec) -> Result<Region> {
        let location = spec.validate()?;
        let faults = Arc::new(Faults::new(&spec.name));
        let store = Arc::new(FaultyStore::new(
            backend(spec, &location)?,
            Arc::clone(&faults),
        ));
        Ok(Region {
            spec: spec.clone(),
            location,
            store,
            faults,
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

    /// Checks that the region answers and honours create-only puts: puts,
    /// reads back and deletes a small object under `_lifeboat/probe/`.
    pub async fn probe(&self) -> Result<ProbeReport> {
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
        retry::retrying(|| self.store.put_opts(&path, "probe".into(), create.clone()))
            .await
            .map_err(|e| Error::store(name, "probe put", &e))?;
        let again = self.store.put_opts(&path, "probe".into(), create).await;
        let conditional_put = matches!(again, Err(object_store::Error::AlreadyExists { .. }));
        let read = retry::retrying(|| async { self.store.get(&path).await?.bytes().await }).await;
        let deleted = retry::retrying(|| self.store.delete(&path)).await;
        let body = read.map_err(|e| Error::store(name, "probe get", &e))?;
        deleted.map_err(|e| Error::store(name, "probe delete", &e))?;
        if body.as_ref() != b"probe" {
            return Err(Error::Store {
                region: name.to_string(),
                op: "probe get".into(),
                detail: "read back different bytes than were written".into(),
            });
        }
        if !conditional_put {
            return Err(Error::Store {
                region: name.to_string(),
                op: "probe".into(),
                detail: "the store ignores create-only puts, which SlateDB needs for safety; use a server that honours If-None-Match (SeaweedFS, moto, AWS S3)".into(),
            });
        }
        Ok(ProbeReport {
            region: name.to_string(),
            latency_ms: started.elapsed().as_millis() as u64,
            conditional_put,
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
    fn plain_http_only_to_loopback() {
        let mut spec = RegionSpec::new("r", "s3://b");
        spec.endpoint = Some("http://127.0.0.1:9000".into());
        assert!(spec.validate().is_ok());
        spec.endpoint = Some("http://10.1.2.3:9000".into());
        assert!(spec.validate().is_err());
    }
}
