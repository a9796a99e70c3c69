//! How many clients a workspace lets in, and how much of their unfinished
//! requests it holds. The limits are what keeps a workspace's memory bounded
//! whatever strangers send: a client that has not authenticated holds at
//! most a few KiB (`protocol::Limits::BEFORE_AUTH`) for at most
//! [`LOGIN_TIME`], and there are at most [`MAX_UNAUTHENTICATED`] of them;
//! past its first [`FREE_BUFFER`], a request waits for a share of one
//! budget of [`MAX_BUFFERED`] for all connections together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clients connected at once, at most (Redis's default `maxclients`).
pub const MAX_CONNECTIONS: usize = 10_000;
/// Clients connected at once from one address.
pub const MAX_PER_ADDRESS: usize = 1_000;
/// Clients connected but not yet authenticated, at once.
pub const MAX_UNAUTHENTICATED: usize = 512;
/// Of those, from one address (a pool of 50 logging in at once fits).
pub const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 64;
/// How long a client may take to authenticate once connected; a real one
/// sends AUTH in its first packet (PostgreSQL allows a minute).
pub const LOGIN_TIME: Duration = Duration::from_secs(10);
/// Bytes of unfinished requests all connections hold together, past each
/// one's [`FREE_BUFFER`].
pub const MAX_BUFFERED: usize = 256 * 1024 * 1024;
/// What every connection may hold whatever the others hold.
pub const FREE_BUFFER: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Counts {
    all: usize,
    unauthenticated: usize,
    /// (all, unauthenticated) per address.
    by_address: HashMap<IpAddr, (usize, usize)>,
}

/// The connections of one workspace.
#[derive(Debug, Default)]
pub struct Clients {
    counts: Mutex<Counts>,
    buffered: AtomicUsize,
}

impl Clients {
    /// Lets a client from `ip` in, or says why not (the line it is sent).
    /// A client of an open workspace needs no AUTH and counts as
    /// authenticated from the start.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, authenticated: bool) -> Result<Admitted, String> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (from_ip, unauthenticated_from_ip) =
            counts.by_address.get(&ip).copied().unwrap_or_default();
        if counts.all >= MAX_CONNECTIONS {
            return Err(format!(
                "ERR max number of clients reached ({MAX_CONNECTIONS}); retry later"
            ));
        }
        if from_ip >= MAX_PER_ADDRESS {
            return Err(format!(
                "ERR too many connections from {ip} ({MAX_PER_ADDRESS}); close some and retry"
            ));
        }
        if !authenticated {
            if counts.unauthenticated >= MAX_UNAUTHENTICATED {
                return Err(format!(
                    "ERR too many clients waiting to AUTH ({MAX_UNAUTHENTICATED}); retry in a second"
                ));
            }
            if unauthenticated_from_ip >= MAX_UNAUTHENTICATED_PER_ADDRESS {
                return Err(format!(
                    "ERR too many clients from {ip} waiting to AUTH ({MAX_UNAUTHENTICATED_PER_ADDRESS}); retry in a second"
                ));
            }
            counts.unauthenticated += 1;
        }
        counts.all += 1;
        let entry = counts.by_address.entry(ip).or_default();
        entry.0 += 1;
        entry.1 += usize::from(!authenticated);
        Ok(Admitted {
            clients: Arc::clone(self),
            ip,
            authenticated,
            held: 0,
        })
    }

    /// Clients connected now.
    pub fn connected(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).all
    }

    /// Bytes of unfinished requests held by all connections now.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
}

/// One admitted connection; dropping it lets the next one in.
#[derive(Debug)]
pub struct Admitted {
    clients: Arc<Clients>,
    ip: IpAddr,
    authenticated: bool,
    held: usize,
}

impl Admitted {
    /// The client authenticated: it no longer counts as waiting to.
    pub fn authenticated(&mut self) {
        if self.authenticated {
            return;
        }
        self.authenticated = true;
        let mut counts = self
            .clients
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.unauthenticated = counts.unauthenticated.saturating_sub(1);
        if let Some(entry) = counts.by_address.get_mut(&self.ip) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Says that the connection holds `bytes` of unfinished requests now;
    /// `false` when that is more than [`FREE_BUFFER`] and the connections
    /// together hold more than [`MAX_BUFFERED`] (the request must be
    /// refused).
    pub fn hold(&mut self, bytes: usize) -> bool {
        let buffered = &self.clients.buffered;
        let total = if bytes >= self.held {
            buffered.fetch_add(bytes - self.held, Ordering::Relaxed) + (bytes - self.held)
        } else {
            buffered.fetch_sub(self.held - bytes, Ordering::Relaxed) - (self.held - bytes)
        };
        self.held = bytes;
        bytes <= FREE_BUFFER || total <= MAX_BUFFERED
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.hold(0);
        let mut counts = self
            .clients
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.all = counts.all.saturating_sub(1);
        if !self.authenticated {
            counts.unauthenticated = counts.unauthenticated.saturating_sub(1);
        }
        if let Some(entry) = counts.by_address.get_mut(&self.ip) {
            entry.0 = entry.0.saturating_sub(1);
            if !self.authenticated {
                entry.1 = entry.1.saturating_sub(1);
            }
            if entry.0 == 0 {
                counts.by_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_from_one_address_are_few_and_leave_room_when_gone() {
        let clients = Arc::new(Clients::default());
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut waiting: Vec<Admitted> = (0..MAX_UNAUTHENTICATED_PER_ADDRESS)
            .map(|_| clients.admit(ip, false).expect("admitted"))
            .collect();
        let refused = clients.admit(ip, false).expect_err("refused");
        assert!(refused.contains("waiting to AUTH (64)"), "{refused}");
        // An authenticated client does not count as waiting; nor does an
        // open workspace's.
        waiting[0].authenticated();
        clients.admit(ip, false).expect("room again");
        clients.admit(ip, true).expect("an open workspace's client");
        waiting.pop();
        clients
            .admit(ip, false)
            .expect("a closed connection leaves room");
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        clients.admit(other, false).expect("another address");
    }

    #[test]
    fn big_requests_share_one_budget() {
        let clients = Arc::new(Clients::default());
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut first = clients.admit(ip, true).expect("admitted");
        let mut second = clients.admit(ip, true).expect("admitted");
        assert!(first.hold(MAX_BUFFERED - 1024));
        assert!(second.hold(FREE_BUFFER), "the free share is always there");
        assert!(!second.hold(FREE_BUFFER + 2048), "over the budget");
        assert!(first.hold(0));
        assert!(second.hold(FREE_BUFFER + 2048));
        drop(second);
        assert_eq!(clients.buffered(), 0);
    }
}
