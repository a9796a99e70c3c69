//! The library's errors: each one names what failed (region, database, path)
//! and, where a user can act, how to fix it, on one line.

use std::path::PathBuf;

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library, by what a user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input (an argument, a URL, a configuration value) is wrong; the
    /// message says what was wrong and how to write it.
    #[error("{0}")]
    Invalid(String),

    /// An operation failed for a reason outside the input; the message says why.
    #[error("{0}")]
    Failed(String),

    /// A region name that is not configured.
    #[error(
        "region `{name}` is not configured (known: {known}); add it with `lifeboat region add {name} URL`"
    )]
    RegionNotFound { name: String, known: String },

    /// A database that does not exist in a region.
    #[error(
        "database `{db}` does not exist in region `{region}`; create it with `lifeboat db create {db} --region {region}`"
    )]
    DatabaseNotFound { db: String, region: String },

    /// A database that already exists where a new one was asked for.
    #[error(
        "database `{db}` already exists in region `{region}`; pick another name or delete it first"
    )]
    DatabaseExists { db: String, region: String },

    /// An object-store call failed; `detail` is already phrased for a user.
    #[error("region `{region}`: {op} failed: {detail}")]
    Store {
        region: String,
        op: String,
        detail: String,
    },

    /// SlateDB refused or failed an operation on a database.
    #[error("database `{db}` in region `{region}`: {op} failed: {detail}")]
    Database {
        region: String,
        db: String,
        op: String,
        detail: String,
    },

    /// A local file (configuration, acknowledgement log) could not be used.
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
}

impl Error {
    /// An input error with its explanation.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// A local file error with the path it concerns.
    pub fn file(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            detail: err.to_string(),
        }
    }

    /// Wraps an object-store error of `region`, explained for a user.
    pub fn store(region: &str, op: &str, err: &object_store::Error) -> Self {
        Error::Store {
            region: region.to_string(),
            op: op.to_string(),
            detail: explain_store_error(err),
        }
    }

    /// Wraps a SlateDB error on database `db` in `region`.
    pub fn database(region: &str, db: &str, op: &str, err: &slatedb::Error) -> Self {
        Error::Database {
            region: region.to_string(),
            db: db.to_string(),
            op: op.to_string(),
            detail: one_line(&err.to_string()),
        }
    }

    /// The process exit code for this error (documented in the README).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) => exit_code::USAGE,
            Error::RegionNotFound { .. } | Error::DatabaseNotFound { .. } => exit_code::NOT_FOUND,
            Error::Failed(_)
            | Error::DatabaseExists { .. }
            | Error::Store { .. }
            | Error::Database { .. }
            | Error::File { .. } => exit_code::FAILED,
        }
    }
}

/// The exit codes of the `lifeboat` binary.
pub mod exit_code {
    /// The command did what was asked.
    pub const OK: i32 = 0;
    /// An operation failed (a region unreachable, a store or database error).
    pub const FAILED: i32 = 1;
    /// The command line or the configuration is wrong.
    pub const USAGE: i32 = 2;
    /// A region or database named on the command line does not exist.
    pub const NOT_FOUND: i32 = 3;
    /// `verify` found a hole: the copy is not a gap-free prefix.
    pub const HOLE: i32 = 4;
}

/// The text of the first `<tag>...</tag>` in `text`.
fn xml_field<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + len].trim())
}

/// Turns an object-store error into one line a user can act on, without
/// credentials (object_store never puts secrets in its messages; we also
/// drop the debug chains that carry request headers).
pub fn explain_store_error(err: &object_store::Error) -> String {
    // A generic error's own text only repeats the store's name before its
    // source; the source says what happened.
    let text = match err {
        object_store::Error::Generic { source, .. } => one_line(&error_chain(source.as_ref())),
        other => one_line(&error_chain(other)),
    };
    // An S3-style reply says what went wrong in its <Code> and <Message>;
    // the request line around it only adds noise.
    let text = match (xml_field(&text, "Code"), xml_field(&text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => text,
    };
    let lower = text.to_lowercase();
    if lower.contains("169.254.169.254") {
        return "no credentials found: the region names no key env vars, AWS_ACCESS_KEY_ID is not set and no cloud instance metadata answers; give --access-key-env and --secret-key-env".into();
    }
    if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        return format!("the bucket does not exist; create it or fix the URL ({text})");
    }
    if lower.contains("containernotfound") || lower.contains("container does not exist") {
        return format!("the container does not exist; create it or fix the URL ({text})");
    }
    if lower.contains("501 not implemented") {
        return format!(
            "the server does not implement a request SlateDB makes; it is not a complete server of its kind ({text})"
        );
    }
    if lower.contains("connection refused")
        || lower.contains("dns error")
        || lower.contains("error sending request")
        || lower.contains("timed out")
        || lower.contains("tcp connect")
    {
        return format!("unreachable: {text}; check the endpoint and that the server is running");
    }
    if lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("accessdenied")
        // Azure's words for a wrong account key or SAS token.
        || lower.contains("authorizationfailure")
        || lower.contains("authenticationfailed")
        || lower.contains("authorizationpermissionmismatch")
        // A status, not "403" alone: object names and ports hold it too.
        || lower.contains("403 forbidden")
    {
        return format!("access denied; check the credentials the region's env vars hold ({text})");
    }
    text
}

/// The error and its sources, joined with `: `, skipping repeats.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Collapses whitespace and newlines so an error prints as one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
