//! The engine's local socket: how the app and the CLI on the same machine
//! reach the engine that holds the group's leases (DESIGN.md "One engine,
//! many clients"). It lives in the engine's data folder,
//! mode 0600 (only its user may connect), and its path is written in every
//! lease the engine holds, so a client finds it from the stores.
//!
//! Its name is `engine-<pid>.sock`: two engines may run on one data folder
//! (the app beside a service), and each is reached by the path its lease
//! names; a socket whose process is gone is removed by the next engine.
//!
//! One request per connection, one JSON line each way: `Run` sends a
//! command (it runs as if typed in the engine's own window, under the
//! client's user name) and answers once it ended, with the operation's
//! preview, plan or record when it has one; `Status` answers the engine's
//! published view at once. A client on another machine cannot reach it;
//! it reads the published status from the stores and is told where the
//! engine runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::error::{Error, Result};

use super::activity::Outcome;
use super::published::Published;
use super::{Command, Engine, RequestId};

/// The sockets' names in the data folder: `engine-<pid>.sock`.
const SOCKET_PREFIX: &str = "engine-";
const SOCKET_SUFFIX: &str = ".sock";

/// A request line's bound (a command with its arguments; a password).
const MAX_REQUEST: u64 = 1 << 20;

/// A reply line's bound (a published view with an hour of history).
const MAX_REPLY: u64 = 64 << 20;

/// Connections served at once; more wait for a free one.
const MAX_CONNECTIONS: usize = 32;

/// How long a client waits to connect and for a status.
const CONNECT_TIME: Duration = Duration::from_secs(2);

/// How long a command may run before the client stops waiting (a failover
/// under load, a merge of a large branch).
pub const COMMAND_TIME: Duration = Duration::from_secs(30 * 60);

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Run { command: Box<Command>, who: String },
    Status,
}

/// What the engine answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The command ended: its outcome, and the preview, plan or record of
    /// the operation it ran (JSON, as the engine's snapshot holds it).
    Ended {
        request: RequestId,
        outcome: Outcome,
        data: Option<serde_json::Value>,
    },
    Status(Box<Published>),
    /// The request could not be read or served.
    Refused(String),
}

/// Binds this process's socket in `data_dir`, first removing those of
/// engines that are gone.
pub fn bind(data_dir: &Path) -> Result<Option<(std::os::unix::net::UnixListener, PathBuf)>> {
    std::fs::create_dir_all(data_dir).map_err(|e| Error::file(data_dir, e))?;
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_socket = name.starts_with(SOCKET_PREFIX) && name.ends_with(SOCKET_SUFFIX);
            if is_socket
                && std::os::unix::net::UnixStream::connect(entry.path()).is_err()
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::debug!("removing {}: {e}", entry.path().display());
            }
        }
    }
    let path = data_dir.join(format!(
        "{SOCKET_PREFIX}{}{SOCKET_SUFFIX}",
        std::process::id()
    ));
    if path.exists() {
        // Another engine of this process listens (tests run several).
        return Ok(None);
    }
    let listener =
        std::os::unix::net::UnixListener::bind(&path).map_err(|e| Error::file(&path, e))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::file(&path, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::file(&path, e))?;
    Ok(Some((listener, path)))
}

/// Serves `listener` for `engine` until the engine stops.
pub async fn serve(listener: std::os::unix::net::UnixListener, path: PathBuf, engine: Engine) {
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::warn!("the engine's socket {}: {e}", path.display()),
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut snapshots = engine.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = snapshots.changed() => {
                if changed.is_err() || snapshots.borrow().engine == super::EngineState::Stopping {
                    break;
                }
                continue;
            }
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("the engine's socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &engine).await {
                tracing::debug!("a client of the engine's socket: {e}");
            }
            drop(permit);
        });
    }
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::debug!("removing {}: {e}", path.display());
    }
}

async fn answer(stream: UnixStream, engine: &Engine) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut read = BufReader::new(read).take(MAX_REQUEST);
    // A client that sends nothing gives its connection back.
    tokio::time::timeout(CONNECT_TIME, read.read_until(b'\n', &mut line))
        .await
        .map_err(|_| Error::Failed("no request within 2 s".into()))?
        .map_err(|e| Error::Failed(format!("reading a request: {e}")))?;
    let reply = match serde_json::from_slice::<Request>(&line) {
        Err(e) => Reply::Refused(format!("not a request this engine reads: {e}")),
        // Its commands would be dropped: the asker finds the next engine.
        Ok(_) if engine.snapshot().engine == super::EngineState::Stopping => {
            Reply::Refused("this engine is stopping; ask again in a few seconds".into())
        }
        Ok(Request::Status) => {
            let snapshot = engine.snapshot();
            match &snapshot.holder {
                Some(holder) => Reply::Status(Box::new(Published::of(&snapshot, holder.clone()))),
                None => Reply::Refused("this engine holds no lease yet".into()),
            }
        }
        Ok(Request::Run { command, who }) => {
            let (request, outcome, data) = engine.run(*command, Some(who), COMMAND_TIME).await;
            Reply::Ended {
                request,
                outcome,
                data,
            }
        }
    };
    let mut bytes = serde_json::to_vec(&reply)
        .map_err(|e| Error::Failed(format!("cannot encode the reply: {e}")))?;
    bytes.push(b'\n');
    write
        .write_all(&bytes)
        .await
        .map_err(|e| Error::Failed(format!("writing the reply: {e}")))
}

async fn exchange(socket: &Path, request: &Request, wait: Duration) -> Result<Reply> {
    let name = socket.display().to_string();
    let mut stream = tokio::time::timeout(CONNECT_TIME, UnixStream::connect(socket))
        .await
        .map_err(|_| Error::Failed(format!("the engine at {name} did not answer")))?
        .map_err(|e| Error::Failed(format!("cannot reach the engine at {name}: {e}")))?;
    let mut line = serde_json::to_vec(request)
        .map_err(|e| Error::Failed(format!("cannot encode the request: {e}")))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .await
        .map_err(|e| Error::Failed(format!("sending to the engine at {name}: {e}")))?;
    let mut reply = Vec::new();
    let mut stream = BufReader::new(stream).take(MAX_REPLY);
    let read = stream.read_until(b'\n', &mut reply);
    tokio::time::timeout(wait, read)
        .await
        .map_err(|_| {
            Error::Failed(format!(
                "the engine at {name} did not answer within {} s",
                wait.as_secs()
            ))
        })?
        .map_err(|e| Error::Failed(format!("reading the engine's answer: {e}")))?;
    serde_json::from_slice(&reply).map_err(|e| {
        Error::Failed(format!(
            "the engine at {name} answered what this version does not read ({e}); run the same version of lifeboat"
        ))
    })
}

/// Runs `command` on the engine at `socket` as `who`; its outcome and data.
pub async fn run(
    socket: &Path,
    command: Command,
    who: &str,
) -> Result<(Outcome, Option<serde_json::Value>)> {
    let request = Request::Run {
        command: Box::new(command),
        who: who.to_string(),
    };
    match exchange(socket, &request, COMMAND_TIME).await? {
        Reply::Ended { outcome, data, .. } => Ok((outcome, data)),
        Reply::Refused(why) => Err(Error::Failed(why)),
        Reply::Status(_) => Err(Error::Failed("the engine answered out of turn".into())),
    }
}

/// The engine's view at `socket`, now.
pub async fn status(socket: &Path) -> Result<Published> {
    match exchange(socket, &Request::Status, CONNECT_TIME).await? {
        Reply::Status(published) => Ok(*published),
        Reply::Refused(why) => Err(Error::Failed(why)),
        Reply::Ended { .. } => Err(Error::Failed("the engine answered out of turn".into())),
    }
}
