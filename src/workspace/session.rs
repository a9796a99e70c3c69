//! One client connection: reads requests, runs them in order, waits for
//! the writes among them to be durable, then answers them all at once (so
//! a pipeline of writes shares WAL flushes instead of queuing behind each).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use super::clients::{self, Admitted, LOGIN_TIME};
use super::commands;
use super::keyspace::AttachedDb;
use super::protocol::{Decoder, Limits, Reply};
use super::security::Security;
use crate::control::event::Role;

/// Requests answered in one go at most (a longer pipeline is answered in
/// parts).
const MAX_BATCH: usize = 1024;

/// SCAN positions kept per connection at most.
const MAX_SCANS: usize = 1024;

/// What a connection knows about its client.
pub struct Session {
    pub id: u64,
    pub peer: SocketAddr,
    /// The authenticated user (`None` before AUTH on a closed workspace).
    pub user: Option<String>,
    pub resp3: bool,
    /// The selected database's index.
    pub db: u32,
    pub name: Option<String>,
    pub quit: bool,
    /// The starting process's own session (see `commands::PROBE_LOGIN`).
    pub internal: bool,
    scans: HashMap<u64, (u32, Bytes)>,
    next_scan: u64,
}

impl Session {
    pub fn new(id: u64, peer: SocketAddr, db: u32) -> Session {
        Session {
            id,
            peer,
            user: None,
            resp3: false,
            db,
            name: None,
            quit: false,
            internal: false,
            scans: HashMap::new(),
            next_scan: 1,
        }
    }

    /// Whether the client may send more than AUTH, HELLO and QUIT.
    pub fn is_authenticated(&self, shared: &Shared) -> bool {
        self.user.is_some() || self.internal || shared.access().open
    }

    /// `Err` with the reply when the client must AUTH first (or its user
    /// was removed since).
    pub fn check_auth(&mut self, shared: &Shared) -> Result<(), Reply> {
        let access = shared.access();
        if access.open || self.internal {
            return Ok(());
        }
        match &self.user {
            Some(user) if access.users.contains_key(user) => Ok(()),
            _ => {
                self.user = None;
                Err(Reply::err("NOAUTH Authentication required."))
            }
        }
    }

    /// The user's role (admin on an open workspace).
    fn role(&self, shared: &Shared) -> Option<Role> {
        let access = shared.access();
        if access.open || self.internal {
            return Some(Role::Admin);
        }
        let user = self.user.as_ref()?;
        access.users.get(user).map(|u| u.role)
    }

    pub fn check_grant(&self, shared: &Shared, db: &AttachedDb) -> Result<(), Reply> {
        let access = shared.access();
        if access.open || self.internal {
            return Ok(());
        }
        let user = self.user.as_deref().unwrap_or("default");
        match access.users.get(user) {
            // The databases a user was given bound every role, admin too.
            Some(u) if u.databases.covers(&db.name) => Ok(()),
            _ => Err(Reply::err(format!(
                "NOPERM user '{user}' has no access to database '{}'",
                db.name
            ))),
        }
    }

    pub fn check_write(
        &self,
        shared: &Shared,
        command: &str,
        db: &AttachedDb,
    ) -> Result<(), Reply> {
        if self.role(shared) == Some(Role::ReadOnly) {
            let user = self.user.as_deref().unwrap_or("default");
            return Err(Reply::err(format!(
                "NOPERM user '{user}' has the readonly role and cannot run '{}'",
                command.to_ascii_lowercase()
            )));
        }
        db.writer().map(|_| ()).map_err(Reply::Error)
    }

    /// The selected database, if the user may use it.
    pub fn database(&self, shared: &Shared) -> Result<Arc<AttachedDb>, Reply> {
        let db = shared
            .dbs()
            .get(&self.db)
            .cloned()
            .ok_or_else(|| Reply::err("ERR no database selected; use SELECT"))?;
        self.check_grant(shared, &db)?;
        Ok(db)
    }

    /// Remembers where a SCAN stopped; returns its cursor.
    pub fn save_scan(&mut self, db: u32, after: Bytes) -> u64 {
        if self.scans.len() >= MAX_SCANS {
            self.scans.clear();
        }
        let cursor = self.next_scan;
        self.next_scan += 1;
        self.scans.insert(cursor, (db, after));
        cursor
    }

    pub fn scan_position(&mut self, db: u32, cursor: u64) -> Option<Bytes> {
        match self.scans.remove(&cursor) {
            Some((d, key)) if d == db => Some(key),
            _ => None,
        }
    }
}

/// Serves one client until it quits, disconnects, breaks the protocol or
/// its limits, takes longer than [`LOGIN_TIME`] to authenticate, or the
/// workspace stops.
pub async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    mut session: Session,
    mut admitted: Admitted,
) {
    let mut input = BytesMut::with_capacity(4 * 1024);
    let mut output = BytesMut::new();
    let mut decoder = Decoder::default();
    let mut stop = shared.stop.subscribe();
    let login_by = tokio::time::Instant::now() + LOGIN_TIME;
    // Set when the last batch stopped at its limit with requests left over.
    let mut backlog = false;
    loop {
        if !backlog {
            let authenticated = session.is_authenticated(&shared);
            // Room for the rest of a big argument in one step; the budget
            // below counts it from now on.
            let wants = decoder.wants(&input);
            if wants > input.capacity() - input.len() {
                input.reserve(wants);
            }
            let read = tokio::select! {
                read = stream.read_buf(&mut input) => read,
                _ = tokio::time::sleep_until(login_by), if !authenticated => {
                    shared.security.note(Security::LoginTimeout, session.peer.ip());
                    let line = format!(
                        "-ERR no AUTH within {} s of connecting; closing the connection\r\n",
                        LOGIN_TIME.as_secs()
                    );
                    hang_up(stream, &line).await;
                    return;
                }
                _ = stop.changed() => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !admitted.hold(input.capacity() + decoder.held()) {
                shared
                    .security
                    .note(Security::BadRequest, session.peer.ip());
                let line = format!(
                    "-ERR the workspace holds {} MiB of unfinished requests already; send smaller requests or retry later\r\n",
                    clients::MAX_BUFFERED / (1024 * 1024)
                );
                hang_up(stream, &line).await;
                return;
            }
        }
        let mut replies = Vec::new();
        let mut pending = Vec::new();
        let mut broken = None;
        while replies.len() < MAX_BATCH && !session.quit {
            let limits = if session.is_authenticated(&shared) {
                admitted.authenticated();
                Limits::AUTHENTICATED
            } else {
                Limits::BEFORE_AUTH
            };
            match decoder.decode(&mut input, limits) {
                Ok(Some(words)) => {
                    if words.is_empty() {
                        continue;
                    }
                    shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                    let (reply, write) = commands::run(&shared, &mut session, words).await;
                    if let Some(write) = write {
                        pending.push((replies.len(), write));
                    }
                    replies.push(reply);
                }
                Ok(None) => break,
                Err(e) => {
                    shared
                        .security
                        .note(Security::BadRequest, session.peer.ip());
                    broken = Some(e);
                    break;
                }
            }
        }
        // Acknowledge only what is durable (and, in a zero-loss group,
        // held by the secondary).
        for (at, write) in pending {
            if let Err(e) = write.db.settle(write.handle).await {
                replies[at] = Reply::err(e);
            }
        }
        if let Some(e) = &broken {
            replies.push(Reply::err(format!("ERR {e}")));
        }
        let errors = replies.iter().filter(|r| r.is_error()).count();
        if errors > 0 {
            shared
                .stats
                .errors
                .fetch_add(errors as u64, Ordering::Relaxed);
        }
        for reply in &replies {
            if let Err(e) = reply.encode(session.resp3, &mut output) {
                tracing::warn!(workspace = %shared.name, "cannot encode a reply: {e}");
                return;
            }
        }
        if stream.write_all(&output).await.is_err() {
            break;
        }
        // A big reply's buffer is not kept for the life of the connection.
        if output.capacity() > clients::FREE_BUFFER {
            output = BytesMut::new();
        } else {
            output.clear();
        }
        if broken.is_some() {
            hang_up(stream, "").await;
            return;
        }
        if session.quit {
            break;
        }
        backlog = replies.len() >= MAX_BATCH;
        if input.is_empty() && input.capacity() > clients::FREE_BUFFER {
            input = BytesMut::with_capacity(4 * 1024);
        }
        // Less than before the batch (nothing was read): within budget.
        admitted.hold(input.capacity() + decoder.held());
    }
    // The client may be gone already.
    stream.shutdown().await.ok();
}

/// Sends `line` (if any) and closes the connection so that the client
/// reads it: the rest of what it sends is read and dropped for a moment
/// (closing with unread input would reset the connection, and the client
/// could lose the line that says why).
async fn hang_up(mut stream: TcpStream, line: &str) {
    const DRAIN: Duration = Duration::from_millis(500);
    const DRAIN_BYTES: usize = 1024 * 1024;
    let gently = async {
        stream.write_all(line.as_bytes()).await?;
        stream.shutdown().await?;
        let mut scratch = [0u8; 8 * 1024];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match stream.read(&mut scratch).await? {
                0 => break,
                n => drained += n,
            }
        }
        std::io::Result::Ok(())
    };
    // The client may be gone or may never stop sending: either way the
    // connection closes now.
    tokio::time::timeout(DRAIN, gently).await.ok();
}
