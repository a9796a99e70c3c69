//! One client connection: reads requests, runs them in order, waits for
//! the writes among them to be durable, then answers them all at once (so
//! a pipeline of writes shares WAL flushes instead of queuing behind each).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use super::commands;
use super::keyspace::AttachedDb;
use super::protocol::{Reply, decode_request};
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
            Some(u) if u.role == Role::Admin || u.databases.covers(&db.name) => Ok(()),
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

/// Serves one client until it quits, disconnects or the workspace stops.
pub async fn serve(shared: Arc<Shared>, mut stream: TcpStream, mut session: Session) {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut stop = shared.stop.subscribe();
    // Set when the last batch stopped at its limit with requests left over.
    let mut backlog = false;
    loop {
        if !backlog {
            let read = tokio::select! {
                read = stream.read_buf(&mut input) => read,
                _ = stop.changed() => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut replies = Vec::new();
        let mut pending = Vec::new();
        let mut broken = None;
        while replies.len() < MAX_BATCH && !session.quit {
            match decode_request(&mut input) {
                Ok(Some(words)) => {
                    if words.is_empty() {
                        continue;
                    }
                    shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                    let (reply, handle) = commands::run(&shared, &mut session, words).await;
                    if let Some(handle) = handle {
                        pending.push((replies.len(), handle));
                    }
                    replies.push(reply);
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        // Acknowledge only what is durable.
        for (at, handle) in pending {
            if let Err(e) = handle.await_durable().await {
                replies[at] = Reply::err(format!(
                    "ERR the write was not made durable: {}",
                    crate::error::one_line(&e.to_string())
                ));
            }
        }
        if let Some(e) = &broken {
            replies.push(Reply::err(format!("ERR {e}")));
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
        output.clear();
        if session.quit || broken.is_some() {
            break;
        }
        backlog = replies.len() >= MAX_BATCH;
    }
    let _ = stream.shutdown().await;
}
