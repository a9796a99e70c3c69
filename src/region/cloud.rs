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
        // AWS_ENDPOINT_URL_S3 would take the region's place.
        builder = builder
            .with_endpoint(endpoint)
            .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint)
            .with_virtual_hosted_style_request(false);
    }
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
    // One profile serves both the keys and the signing region, as in
    // AWS's own tools: the region's, else AWS_PROFILE, else `default`.
    let env_profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|p| !p.trim().is_empty());
    let (profile_name, source) = match (&spec.profile, &env_profile) {
        (Some(named), _) => (named.as_str(), "the region's profile"),
        (None, Some(env)) => (env.as_str(), "AWS_PROFILE"),
        (None, None) => ("default", "default"),
    };
    // Only a profile someone named must be there.
    let required = spec.profile.is_some() || env_profile.is_some();
    let named_keys = spec.access_key_env.is_some();
    let keys_from_profile =
        !named_keys && (spec.profile.is_some() || std::env::var_os("AWS_ACCESS_KEY_ID").is_none());
    let env_region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|r| !r.trim().is_empty()));
    let region_from_profile =
        spec.s3_region.is_none() && spec.endpoint.is_none() && env_region.is_none();
    let profile = if keys_from_profile || region_from_profile {
        Some(aws_profile::Profile::load(profile_name)?)
    } else {
        None
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
    } else if let Some(profile) = profile.as_ref().filter(|_| keys_from_profile)
        && let Some(found) = profile.keys(name, source, required)?
    {
        builder = builder.with_credentials(static_keys(
            found.access_key_id,
            found.secret_access_key,
            found.session_token,
        ));
    }
    // The signing region, as AWS's own tools choose it; an S3-compatible
    // server signs with us-east-1 unless the region says otherwise (the
    // machine's AWS setup is not the server's).
    let region = match (&spec.s3_region, &spec.endpoint) {
        (Some(region), _) => region.clone(),
        (None, Some(_)) => "us-east-1".to_string(),
        (None, None) => {
            let found = match env_region {
                Some(region) => Some((region, "AWS_REGION")),
                None => profile
                    .as_ref()
                    .and_then(aws_profile::Profile::region)
                    .map(|region| (region, "the profile's region")),
            };
            match found {
                Some((region, from)) => {
                    super::check_signing_region(name, region.trim(), from)?;
                    region.trim().to_string()
                }
                None => "us-east-1".to_string(),
            }
        }
    };
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
    // A credentials file the region names wins: the GOOGLE_* variables
    // (service accounts, bearer tokens) are then not read at all.
    let builder = match &spec.credentials_env {
        Some(_) => GoogleCloudStorageBuilder::new(),
        None => GoogleCloudStorageBuilder::from_env(),
    };
    let mut builder = builder
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
            "SERVICE_ACCOUNT",
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
        // A whole SAS URL, pasted: its token is what follows `?`.
        let token = token.split_once('?').map_or(token.as_str(), |(_, t)| t);
        let pairs = split_sas(token)
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
    // AZURE_STORAGE_USE_EMULATOR would drop the region's endpoint and
    // credentials for Azurite's defaults.
    if spec.endpoint.is_some() || credential.is_some() {
        builder = builder.with_use_emulator(false);
    }
    if let Some(credential) = credential {
        builder = builder.with_credentials(Arc::new(StaticCredentialProvider::new(credential)));
    }
    let store = builder.build().map_err(|e| build_error(spec, e))?;
    Ok(Arc::new(store))
}

/// At most this much of a credentials file is read.
const MAX_CREDENTIALS_FILE: u64 = 1 << 20;

/// The text of a credentials file, at most [`MAX_CREDENTIALS_FILE`] of it;
/// a FIFO or a device (which would block or never end) is refused.
fn read_credentials_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    let mut text = String::new();
    file.take(MAX_CREDENTIALS_FILE).read_to_string(&mut text)?;
    Ok(text)
}

/// The shared AWS files (`~/.aws/credentials`, `~/.aws/config`, or where
/// `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` say) and what one
/// profile in them holds.
pub(crate) mod aws_profile {
    use std::collections::HashMap;

    use super::*;

    /// The keys a profile holds.
    #[derive(Debug)]
    pub struct Keys {
        pub access_key_id: String,
        pub secret_access_key: String,
        pub session_token: Option<String>,
    }

    fn home_file(var: &str, under_home: &str) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(under_home))
    }

    /// One file's text, bounded; `None` when it is not there.
    fn read(path: &std::path::Path) -> Result<Option<String>> {
        match read_credentials_file(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::file(
                path,
                format!("cannot read the AWS profiles: {e}"),
            )),
        }
    }

    /// The settings of `section` in `text`, read as the AWS tools read
    /// them: names in any case, no quotes or escapes, comment lines
    /// (indented or not) skipped.
    fn section(path: &std::path::Path, text: &str, section: &str) -> Result<Option<Settings>> {
        let text: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with(['#', ';']))
            .map(|line| format!("{line}\n"))
            .collect();
        let options = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ini::ParseOption::default()
        };
        let parsed = ini::Ini::load_from_str_opt(&text, options)
            .map_err(|e| Error::file(path, format!("cannot read the AWS profiles: {e}")))?;
        Ok(parsed
            .iter()
            .find(|(name, _)| name.is_some_and(|n| n.trim() == section))
            .map(|(_, props)| {
                props
                    .iter()
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .filter(|(_, v)| !v.is_empty())
                    .collect()
            }))
    }

    /// A profile's settings, by lowercased name.
    type Settings = HashMap<String, String>;

    /// One profile of the shared files: what it holds, the credentials
    /// file's settings over the config file's (`None` when neither has
    /// it), and the files looked in, for messages.
    pub struct Profile {
        name: String,
        settings: Option<Settings>,
        paths: Vec<PathBuf>,
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

    impl Profile {
        /// Reads profile `name` from the shared files.
        pub fn load(name: &str) -> Result<Profile> {
            let mut settings: Option<Settings> = None;
            let mut paths = Vec::new();
            // The config file names a profile `profile NAME`, but for `default`.
            let in_config = if name == "default" {
                "default".to_string()
            } else {
                format!("profile {name}")
            };
            for (var, under_home, section_name) in [
                ("AWS_CONFIG_FILE", ".aws/config", in_config.as_str()),
                ("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", name),
            ] {
                let Some(path) = home_file(var, under_home) else {
                    continue;
                };
                if let Some(text) = read(&path)?
                    && let Some(found) = section(&path, &text, section_name)?
                {
                    settings.get_or_insert_with(HashMap::new).extend(found);
                }
                paths.push(path);
            }
            Ok(Profile {
                name: name.to_string(),
                settings,
                paths,
            })
        }

        /// The profile's keys (the profile named by `source`, in words).
        /// `None` when it has no keys and is not `required` (the `default`
        /// profile of a machine that has none, or only a region).
        pub fn keys(&self, region: &str, source: &str, required: bool) -> Result<Option<Keys>> {
            let profile = &self.name;
            let Some(settings) = &self.settings else {
                if !required {
                    return Ok(None);
                }
                let files = self
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ");
                return Err(Error::invalid(format!(
                    "region `{region}`: AWS profile `{profile}` ({source}) is not in {files}; run `aws configure --profile '{profile}'` or name another profile"
                )));
            };
            // A profile that would switch identity another way is refused,
            // even the default one: falling back to other keys would be a
            // surprise.
            if let Some(how) = UNSUPPORTED.iter().find(|key| settings.contains_key(**key)) {
                return Err(Error::invalid(format!(
                    "region `{region}`: AWS profile `{profile}` gets its keys through `{how}`, which lifeboat does not follow; export the keys it gives (`aws configure export-credentials --profile '{profile}' --format env`) and name them with --access-key-env, --secret-key-env and --session-token-env"
                )));
            }
            match (
                settings.get("aws_access_key_id"),
                settings.get("aws_secret_access_key"),
            ) {
                (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Keys {
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret_access_key.clone(),
                    session_token: settings.get("aws_session_token").cloned(),
                })),
                _ if !required => Ok(None),
                _ => Err(Error::invalid(format!(
                    "region `{region}`: AWS profile `{profile}` ({source}) has no aws_access_key_id and aws_secret_access_key; run `aws configure --profile '{profile}'`"
                ))),
            }
        }

        /// The signing region the profile names, if any.
        pub fn region(&self) -> Option<String> {
            self.settings.as_ref()?.get("region").cloned()
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

    pub fn check(region: &str, path: &str, var: &str) -> Result<Kind> {
        // A variable that holds the key itself, not its path: said
        // without repeating it.
        if path.trim_start().starts_with('{') || path.contains('\n') || path.len() > 4096 {
            return Err(Error::invalid(format!(
                "region `{region}`: {var} holds a key (JSON, not repeated here), not a file's path; save the key in a file readable only by you and put its path in {var}"
            )));
        }
        let fail = |why: String| {
            Error::invalid(format!(
                "region `{region}`: the credentials file `{path}` (named by {var}) {why}"
            ))
        };
        let text = read_credentials_file(std::path::Path::new(path))
            .map_err(|e| fail(format!("cannot be opened: {e}")))?;
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
