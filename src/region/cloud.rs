//! The cloud backends (S3, GCS, Azure), each built with its cloud's own
//! credential habits: keys named by environment variable in the region's
//! spec, else the cloud's usual chain (environment, profile or credentials
//! file, instance identity). A secret is read from the environment or a
//! file the user named, and never written anywhere.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsCredential, S3ConditionalPut};
use object_store::azure::{
    AzureAccessKey, AzureConfigKey, AzureCredential, MicrosoftAzureBuilder, split_sas,
};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, RetryConfig, StaticCredentialProvider,
};

use super::RegionSpec;
use super::faults::Faults;
use super::http_faults::FaultyConnector;
use crate::error::{Error, Result};

/// How many times the S3/GCS/Azure clients retry one request, and for how long.
const CLOUD_MAX_RETRIES: usize = 3;
const CLOUD_RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const CLOUD_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CLOUD_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(CLOUD_CONNECT_TIMEOUT)
        .with_timeout(CLOUD_REQUEST_TIMEOUT)
}

fn retry() -> RetryConfig {
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

/// The value of the environment variable `var`, which the region names as
/// holding `what`.
fn env_var(region: &str, var: &str, what: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(Error::invalid(format!(
            "region `{region}`: environment variable `{var}` ({what}) is not set; export it before starting lifeboat"
        ))),
    }
}

fn build_error(spec: &RegionSpec, e: object_store::Error) -> Error {
    Error::invalid(format!(
        "region `{}`: cannot set up `{}`: {}",
        spec.name,
        spec.url,
        crate::error::one_line(&crate::error::explain_store_error(&e))
    ))
}

/// Whether plain http is to be allowed: only for an endpoint that is
/// written with it (and [`super::check_endpoint`] allows only local ones).
fn allow_http(spec: &RegionSpec) -> bool {
    spec.endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
}

/// An S3 bucket. Credentials, first found wins: the key env vars the region
/// names (with a session token); a profile the region names; the AWS_*
/// variables; `AWS_PROFILE` or the `default` profile of the shared files;
/// the instance's identity (web identity, container, instance metadata).
pub(super) fn s3(
    spec: &RegionSpec,
    bucket: &str,
    faults: &Arc<Faults>,
) -> Result<Arc<dyn ObjectStore>> {
    let name = spec.name.as_str();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_http_connector(FaultyConnector::new(Arc::clone(faults)))
        .with_retry(retry())
        .with_client_options(client_options(allow_http(spec)));
    if let Some(endpoint) = &spec.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    let mut profile_region = None;
    // Keys found here are given as the client's credentials, which take
    // the place of whatever the AWS_* environment holds (a session token
    // there belongs to other keys).
    let static_keys = |key_id, secret_key, token| {
        Arc::new(StaticCredentialProvider::new(AwsCredential {
            key_id,
            secret_key,
            token,
        }))
    };
    if let (Some(key_var), Some(secret_var)) = (&spec.access_key_env, &spec.secret_key_env) {
        let token = match &spec.session_token_env {
            Some(var) => Some(env_var(name, var, "session token")?),
            None => None,
        };
        builder = builder.with_credentials(static_keys(
            env_var(name, key_var, "access key id")?,
            env_var(name, secret_var, "secret key")?,
            token,
        ));
    } else {
        let named = spec.profile.clone().map(|p| (p, "the region's profile"));
        let from_env = std::env::var("AWS_PROFILE")
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| (p, "AWS_PROFILE"));
        let env_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
        let chosen = match (named, env_keys, from_env) {
            (Some(named), _, _) => Some((named, true)),
            (None, true, _) => None,
            (None, false, Some(env)) => Some((env, true)),
            (None, false, None) => Some((("default".to_string(), "default"), false)),
        };
        if let Some(((profile, source), required)) = chosen
            && let Some(found) = aws_profile::load(name, &profile, source, required)?
        {
            builder = builder.with_credentials(static_keys(
                found.access_key_id,
                found.secret_access_key,
                found.session_token,
            ));
            profile_region = found.region;
        }
    }
    let region = spec
        .s3_region
        .clone()
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Region))
        .or(profile_region)
        .unwrap_or_else(|| "us-east-1".to_string());
    let store = builder
        .with_region(region)
        .build()
        .map_err(|e| build_error(spec, e))?;
    Ok(Arc::new(store))
}

/// A Google Cloud Storage bucket. Credentials: the credentials file whose
/// path the variable the region names holds; else the provider chain
/// (`GOOGLE_SERVICE_ACCOUNT*`, `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
/// application-default file, the instance's service account).
pub(super) fn gcs(
    spec: &RegionSpec,
    bucket: &str,
    faults: &Arc<Faults>,
) -> Result<Arc<dyn ObjectStore>> {
    let name = spec.name.as_str();
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_http_connector(FaultyConnector::new(Arc::clone(faults)))
        .with_retry(retry())
        .with_client_options(client_options(allow_http(spec)));
    if let Some(endpoint) = &spec.endpoint {
        builder = builder.with_base_url(endpoint.trim_end_matches('/'));
    }
    let file = match &spec.credentials_env {
        Some(var) => Some((
            env_var(name, var, "the path of a credentials file")?,
            var.clone(),
        )),
        None => [
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_PATH",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ]
        .into_iter()
        .find_map(|var| {
            let path = std::env::var(var).ok().filter(|p| !p.is_empty())?;
            Some((path, var.to_string()))
        }),
    };
    if let Some((path, var)) = &file {
        let kind = gcp_credentials::check(name, path, var)?;
        builder = match kind {
            // A key with the emulators' `disable_oauth` is read as a
            // service account: the application-default reader ignores it.
            gcp_credentials::Kind::Emulator => builder.with_service_account_path(path),
            gcp_credentials::Kind::Other => builder.with_application_credentials(path),
        };
    }
    let store = builder.build().map_err(|e| build_error(spec, e))?;
    Ok(Arc::new(store))
}

/// An Azure Blob Storage container. The account: the region's, else
/// `AZURE_STORAGE_ACCOUNT_NAME`. Credentials: the account key or SAS token
/// the variable the region names holds; else the `AZURE_*` chain (account
/// key, SAS, client secret, workload identity, managed identity).
pub(super) fn azure(
    spec: &RegionSpec,
    container: &str,
    faults: &Arc<Faults>,
) -> Result<Arc<dyn ObjectStore>> {
    let name = spec.name.as_str();
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_http_connector(FaultyConnector::new(Arc::clone(faults)))
        .with_retry(retry())
        .with_client_options(client_options(allow_http(spec)));
    if let Some(account) = &spec.account {
        builder = builder.with_account(account);
    }
    if builder
        .get_config_value(&AzureConfigKey::AccountName)
        .is_none_or(|a| a.is_empty())
    {
        return Err(Error::invalid(format!(
            "region `{name}`: no Azure storage account is named; give --account NAME, or set AZURE_STORAGE_ACCOUNT_NAME"
        )));
    }
    if let Some(endpoint) = &spec.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    // A key or token named here is given as the client's credentials,
    // which take the place of whatever the AZURE_* environment holds.
    let credential = if let Some(var) = &spec.account_key_env {
        let key = env_var(name, var, "the account key")?;
        let key = AzureAccessKey::try_new(&key).map_err(|_| {
            Error::invalid(format!(
                "region `{name}`: `{var}` does not hold an account key (it is not base64); copy key1 or key2 from the storage account's Access keys"
            ))
        })?;
        Some(AzureCredential::AccessKey(key))
    } else if let Some(var) = &spec.sas_token_env {
        let token = env_var(name, var, "a SAS token")?;
        let pairs = split_sas(&token)
            .ok()
            .filter(|pairs| pairs.iter().any(|(k, _)| k == "sig"));
        let Some(pairs) = pairs else {
            return Err(Error::invalid(format!(
                "region `{name}`: `{var}` does not hold a SAS token (no `sig=`); copy the token from the container's Shared access tokens, without the URL before `?`"
            )));
        };
        Some(AzureCredential::SASToken(pairs))
    } else {
        None
    };
    if let Some(credential) = credential {
        builder = builder.with_credentials(Arc::new(StaticCredentialProvider::new(credential)));
    }
    let store = builder.build().map_err(|e| build_error(spec, e))?;
    Ok(Arc::new(store))
}

/// The shared AWS files (`~/.aws/credentials`, `~/.aws/config`, or where
/// `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` say) and the static
/// keys of one profile in them.
pub(crate) mod aws_profile {
    use super::*;

    /// The keys (and region) a profile holds.
    #[derive(Debug)]
    pub struct Found {
        pub access_key_id: String,
        pub secret_access_key: String,
        pub session_token: Option<String>,
        pub region: Option<String>,
    }

    fn home_file(var: &str, under_home: &str) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(under_home))
    }

    fn read(path: &std::path::Path) -> Result<Option<ini::Ini>> {
        match std::fs::read_to_string(path) {
            Ok(text) => ini::Ini::load_from_str(&text)
                .map(Some)
                .map_err(|e| Error::file(path, format!("cannot read the AWS profiles: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::file(
                path,
                format!("cannot read the AWS profiles: {e}"),
            )),
        }
    }

    /// Settings that name a way of getting keys Lifeboat does not take.
    const UNSUPPORTED: [&str; 6] = [
        "role_arn",
        "credential_process",
        "sso_session",
        "sso_start_url",
        "web_identity_token_file",
        "credential_source",
    ];

    /// The keys of `profile` (named by `source`, in words). `None` when the
    /// profile is absent and not `required` (the `default` profile of a
    /// machine that has none).
    pub fn load(
        region: &str,
        profile: &str,
        source: &str,
        required: bool,
    ) -> Result<Option<Found>> {
        let credentials_path = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        let config_path = home_file("AWS_CONFIG_FILE", ".aws/config");
        let credentials = match &credentials_path {
            Some(path) => read(path)?,
            None => None,
        };
        let config = match &config_path {
            Some(path) => read(path)?,
            None => None,
        };
        // The credentials file names a profile plainly; the config file
        // as `profile NAME`, but for `default`.
        let in_config = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let keys = credentials.as_ref().and_then(|c| c.section(Some(profile)));
        let settings = config
            .as_ref()
            .and_then(|c| c.section(Some(in_config.as_str())));
        if keys.is_none() && settings.is_none() {
            if !required {
                return Ok(None);
            }
            let files = [&credentials_path, &config_path]
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(Error::invalid(format!(
                "region `{region}`: AWS profile `{profile}` ({source}) is not in {files}; run `aws configure --profile {profile}` or name another profile"
            )));
        }
        let get = |key: &str| {
            keys.and_then(|k| k.get(key))
                .or_else(|| settings.and_then(|s| s.get(key)))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        if let Some(how) = UNSUPPORTED.iter().find(|key| get(key).is_some()) {
            return Err(Error::invalid(format!(
                "region `{region}`: AWS profile `{profile}` gets its keys through `{how}`, which lifeboat does not follow; export the keys it gives (`aws configure export-credentials --profile {profile} --format env`) and name them with --access-key-env, --secret-key-env and --session-token-env"
            )));
        }
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Found {
                access_key_id,
                secret_access_key,
                session_token: get("aws_session_token"),
                region: get("region"),
            })),
            _ if !required => Ok(None),
            _ => Err(Error::invalid(format!(
                "region `{region}`: AWS profile `{profile}` ({source}) has no aws_access_key_id and aws_secret_access_key; run `aws configure --profile {profile}`"
            ))),
        }
    }
}

/// What a GCS credentials file is, checked before the client reads it, so
/// that a missing or wrong file gets a line that names the variable.
mod gcp_credentials {
    use super::*;

    pub enum Kind {
        /// A service-account key with `disable_oauth` (for emulators).
        Emulator,
        /// A service-account key or a gcloud user's credentials.
        Other,
    }

    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        disable_oauth: bool,
    }

    /// At most this much of a credentials file is read.
    const MAX_FILE: u64 = 1 << 20;

    pub fn check(region: &str, path: &str, var: &str) -> Result<Kind> {
        use std::io::Read as _;
        let fail = |why: String| {
            Error::invalid(format!(
                "region `{region}`: the credentials file `{path}` (named by {var}) {why}"
            ))
        };
        let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot be opened: {e}")))?;
        let mut text = String::new();
        file.take(MAX_FILE)
            .read_to_string(&mut text)
            .map_err(|e| fail(format!("cannot be read: {e}")))?;
        let probe: Probe = serde_json::from_str(&text).map_err(|_| {
            fail("is not a JSON credentials file; download a service-account key, or run `gcloud auth application-default login`".into())
        })?;
        match probe.kind.as_deref() {
            _ if probe.disable_oauth => Ok(Kind::Emulator),
            Some("service_account" | "authorized_user") => Ok(Kind::Other),
            Some(other) => Err(fail(format!(
                "is of type `{other}`, which lifeboat does not take; use a service-account key or gcloud's application-default credentials"
            ))),
            None => Err(fail("has no `type`; use a service-account key or gcloud's application-default credentials".into())),
        }
    }
}
