//! The lease of a region: which engine may write replicas into it and
//! orchestrate operations that write there (DESIGN.md "One engine, many
//! clients").
//!
//! A lease is a chain of create-only objects, `_lifeboat/lease/<seq>.ron`,
//! in the region it governs. The holder renews by creating the next name;
//! whoever creates a name first wins it, so two engines can never both
//! extend the same chain. A standby that sees no new name for a whole
//! [`TERM`] of its own clock (from when it first saw the newest one) claims
//! the next name. The holder counts itself holder only for [`VALID_FOR`]
//! after the start of its last successful renewal, which is shorter than
//! the term by [`STOP_MARGIN`]: in that margin its copies in flight finish
//! and stop before any standby may start. Clocks are never compared across
//! machines; each side measures time on its own monotonic clock.
//!
//! Where it lives: each region holds its own lease, and a replica in a
//! region is written by that region's lease holder alone. So when the
//! primary region is gone, the secondary's lease is still there to be
//! taken, and the engine that takes it can fail over.
//!
//! Cost: the holder creates one object per [`RENEW_EVERY`] (20 PUTs a
//! minute) and deletes the name two back (DELETEs are free on S3); a
//! standby reads the next name every [`WATCH_EVERY`] (30 GETs a minute) and
//! lists the chain only when it is about to claim it.

use std::time::Duration;

use tokio::time::Instant;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::region::Region;
use crate::region::objects::{delete_if_present, get_if_present};

/// Where every region keeps its lease.
pub const LEASE_PREFIX: &str = "_lifeboat/lease";

/// How long a renewal stands: a standby claims the lease once it has seen
/// no renewal for this long.
pub const TERM: Duration = Duration::from_secs(10);

/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);

/// What the holder keeps of the term to stop writing before a standby may
/// start: it holds the lease for `TERM - STOP_MARGIN` after a renewal began.
pub const STOP_MARGIN: Duration = Duration::from_secs(4);

/// How long a renewal lets the holder write.
pub const VALID_FOR: Duration = TERM.saturating_sub(STOP_MARGIN);

/// How often a standby reads the next name of the chain.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// How long one look may take before it counts as the region not
/// answering (a held lease must lapse on time, never wait on a store).
pub const TICK_TIME: Duration = Duration::from_secs(2);

/// Names read forward in one look before the chain is listed instead.
const MAX_STEPS: u32 = 32;

/// Who holds (or held) a lease: enough to tell a person where that engine
/// runs, and to tell one of its renewals from another engine's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The data folder's engine id (the control log's).
    pub engine: String,
    /// This run of that engine: two processes on one data folder differ.
    pub instance: String,
    pub host: String,
    pub pid: u32,
    /// When this holder took the lease (its clock, ms since the epoch).
    pub since_ms: u64,
    /// When this renewal was written (its clock).
    pub renewed_ms: u64,
    /// The term it was written with, in ms.
    pub term_ms: u64,
    /// Set by a holder that let go on purpose: a standby may claim at once.
    #[serde(default)]
    pub released: bool,
    /// The engine's local socket on `host` (engine/socket.rs), if it has one.
    #[serde(default)]
    pub socket: Option<String>,
}

impl Holder {
    /// This process, as engine `engine`.
    pub fn me(engine: &str) -> Holder {
        Holder {
            engine: engine.to_string(),
            instance: format!("{:016x}", fastrand::u64(..)),
            host: host_name(),
            pid: std::process::id(),
            since_ms: 0,
            renewed_ms: 0,
            term_ms: TERM.as_millis() as u64,
            released: false,
            socket: None,
        }
    }

    /// Who, in words: `engine 1a2b… (pid 42 on host, since 10:04:05)`.
    pub fn describe(&self) -> String {
        // An engine's own identity carries no claim time until a lease
        // task claimed with it.
        let since = match self.since_ms {
            0 => String::new(),
            ms => format!(
                ", holding since {}",
                crate::workload::verify::format_us(ms.saturating_mul(1000))
            ),
        };
        format!(
            "the engine on {} (pid {}, engine id {}{since})",
            self.host, self.pid, self.engine
        )
    }

    /// Whether this holder runs on this machine.
    pub fn is_here(&self) -> bool {
        self.host == host_name()
    }

    /// The socket a client on this machine reaches it by.
    pub fn local_socket(&self) -> Option<std::path::PathBuf> {
        self.socket
            .as_ref()
            .filter(|_| self.is_here())
            .map(std::path::PathBuf::from)
    }

    fn same_run(&self, other: &Holder) -> bool {
        self.engine == other.engine && self.instance == other.instance
    }

    /// Whether this renewal was written by a process of this machine's
    /// data folder that is no longer running: its lease can be taken at
    /// once instead of after a term.
    fn is_dead_here(&self, me: &Holder) -> bool {
        self.engine == me.engine
            && self.host == me.host
            && self.pid != me.pid
            && !process_alive(self.pid)
    }
}

/// Where a region's lease stands for this engine.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub enum LeaseState {
    /// Not looked at yet.
    Unknown,
    /// This engine holds it.
    Held { since_ms: u64 },
    /// Another engine holds it (or held it, and its term has not run out
    /// since this engine first saw its newest renewal).
    Standby { holder: Holder },
    /// The region did not answer; a lease held here lapses after its term.
    Unreachable { error: String },
}

impl LeaseState {
    pub fn is_held(&self) -> bool {
        matches!(self, LeaseState::Held { .. })
    }
}

/// The newest renewal this engine has seen, and since when (its clock).
#[derive(Debug, Clone)]
struct Seen {
    seq: u64,
    holder: Holder,
    at: Instant,
}

/// One engine's view of one region's lease, moved forward by [`tick`].
///
/// [`tick`]: RegionLease::tick
pub struct RegionLease {
    region: Region,
    me: Holder,
    newest: Option<Seen>,
    /// Until when this engine holds it (start of the last renewal + VALID_FOR).
    held_until: Option<Instant>,
    /// When the last renewal's put began.
    renewed_at: Option<Instant>,
    state: LeaseState,
}

impl RegionLease {
    pub fn new(region: Region, me: Holder) -> RegionLease {
        RegionLease {
            region,
            me,
            newest: None,
            held_until: None,
            renewed_at: None,
            state: LeaseState::Unknown,
        }
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Where the lease stands as of the last tick, with a held lease
    /// lapsing on time even when no tick ran.
    pub fn state(&self) -> LeaseState {
        match (&self.state, self.held_until) {
            (LeaseState::Held { .. } | LeaseState::Unreachable { .. }, Some(until))
                if Instant::now() < until =>
            {
                LeaseState::Held {
                    since_ms: self.me.since_ms,
                }
            }
            (LeaseState::Held { .. }, _) => LeaseState::Unknown,
            (state, _) => state.clone(),
        }
    }

    /// Whether this engine may write into the region now.
    pub fn holds(&self) -> bool {
        self.held_until.is_some_and(|until| Instant::now() < until)
    }

    /// How long until the next tick is due.
    pub fn next_tick(&self) -> Duration {
        let now = Instant::now();
        match (&self.state, self.renewed_at) {
            (LeaseState::Held { .. }, Some(at)) => {
                (at + RENEW_EVERY).saturating_duration_since(now)
            }
            (LeaseState::Unreachable { .. }, _) if self.holds() => Duration::from_secs(1),
            (LeaseState::Standby { .. }, _) => {
                // Wake when the holder's term would run out, if sooner.
                let expiry = self
                    .newest
                    .as_ref()
                    .map(|s| (s.at + TERM).saturating_duration_since(now));
                expiry.map_or(WATCH_EVERY, |e| e.min(WATCH_EVERY))
            }
            _ => WATCH_EVERY,
        }
    }

    /// One look at the lease: renew it when held and due, follow the chain
    /// when not, claim it when its holder's term ran out.
    pub async fn tick(&mut self) -> LeaseState {
        self.state = match tokio::time::timeout(TICK_TIME, self.step()).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => LeaseState::Unreachable {
                error: crate::error::one_line(&e.to_string()),
            },
            Err(_) => LeaseState::Unreachable {
                error: format!(
                    "region {} did not answer within {} s",
                    self.region.name(),
                    TICK_TIME.as_secs()
                ),
            },
        };
        self.state()
    }

    async fn step(&mut self) -> Result<LeaseState> {
        let Some(seen) = self.newest.clone() else {
            self.newest = self.list_newest().await?;
            return match &self.newest {
                None => self.claim(0).await,
                Some(seen) if seen.holder.is_dead_here(&self.me) || seen.holder.released => {
                    self.claim(seen.seq + 1).await
                }
                Some(seen) => Ok(self.standby(seen.holder.clone())),
            };
        };
        if self.me.same_run(&seen.holder) {
            // Our own chain: extending it is safe at any time (a standby
            // claims by creating the same next name), and due when the
            // renewal is, or when ours lapsed.
            let due = !self.holds() || self.renewed_at.is_none_or(|at| at.elapsed() >= RENEW_EVERY);
            return if due {
                self.claim(seen.seq + 1).await
            } else {
                Ok(LeaseState::Held {
                    since_ms: self.me.since_ms,
                })
            };
        }
        if self.read_forward(&seen).await? {
            let holder = self.newest.as_ref().map(|s| s.holder.clone());
            return match holder {
                Some(h) if h.released || h.is_dead_here(&self.me) => self.claim_newest().await,
                Some(h) => Ok(self.standby(h)),
                None => Ok(LeaseState::Unknown),
            };
        }
        if seen.at.elapsed() >= TERM || seen.holder.released {
            return self.claim_newest().await;
        }
        Ok(self.standby(seen.holder))
    }

    fn standby(&mut self, holder: Holder) -> LeaseState {
        self.held_until = None;
        if self.me.same_run(&holder) {
            // Our own renewal, seen after our term lapsed: take it anew.
            return LeaseState::Unknown;
        }
        LeaseState::Standby { holder }
    }

    /// Reads names after `seen`; whether a newer one was found.
    async fn read_forward(&mut self, seen: &Seen) -> Result<bool> {
        let mut seq = seen.seq;
        let mut found = None;
        for _ in 0..MAX_STEPS {
            match self.read(seq + 1).await? {
                Some(holder) => {
                    seq += 1;
                    found = Some(holder);
                }
                None => break,
            }
        }
        match found {
            Some(holder) => {
                self.newest = Some(Seen {
                    seq,
                    holder,
                    at: Instant::now(),
                });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Claims the lease after the chain's true newest name (listed: a
    /// deleted name must never be created again).
    async fn claim_newest(&mut self) -> Result<LeaseState> {
        let listed = self.list_newest().await?;
        let known = self.newest.as_ref().map(|s| s.seq);
        match listed {
            Some(newest) if Some(newest.seq) != known => {
                // Renewed meanwhile, or behind: watch that one for a term.
                let holder = newest.holder.clone();
                self.newest = Some(newest);
                Ok(self.standby(holder))
            }
            Some(newest) => self.claim(newest.seq + 1).await,
            None => self.claim(known.map_or(0, |s| s + 1)).await,
        }
    }

    /// Creates name `seq` as this engine's renewal; whoever created it
    /// first holds the lease.
    async fn claim(&mut self, seq: u64) -> Result<LeaseState> {
        let started = Instant::now();
        let holding = self.holds()
            && self
                .newest
                .as_ref()
                .is_some_and(|s| self.me.same_run(&s.holder));
        let now_ms = crate::orchestrator::now_ms();
        if !holding {
            self.me.since_ms = now_ms;
        }
        let mut record = self.me.clone();
        record.renewed_ms = now_ms;
        let path = name(seq);
        let store = self.region.store();
        let put = create(store.as_ref(), &path, &record).await?;
        let won = match put {
            Ok(_) => true,
            // Another engine took the name, unless it was our own put
            // answered late and retried.
            Err(object_store::Error::AlreadyExists { .. }) => self
                .read(seq)
                .await?
                .is_some_and(|h| self.me.same_run(&h) && h.renewed_ms == record.renewed_ms),
            Err(e) => return Err(self.store_error(&format!("writing {path}"), &e)),
        };
        if !won {
            let holder = self.read(seq).await?;
            if let Some(holder) = holder {
                self.newest = Some(Seen {
                    seq,
                    holder: holder.clone(),
                    at: Instant::now(),
                });
                return Ok(self.standby(holder));
            }
            return Ok(LeaseState::Unknown);
        }
        if !holding {
            tracing::info!(region = %self.region.name(), "this engine holds the lease (name {seq})");
        }
        self.held_until = Some(started + VALID_FOR);
        self.renewed_at = Some(started);
        self.newest = Some(Seen {
            seq,
            holder: record,
            at: started,
        });
        if seq >= 2 {
            // Two back: a standby reading one behind still finds the next.
            let old = name(seq - 2);
            if let Err(e) = delete_if_present(store.as_ref(), &old).await {
                tracing::debug!(region = %self.region.name(), "deleting {old}: {e}");
            }
        }
        Ok(LeaseState::Held {
            since_ms: self.me.since_ms,
        })
    }

    /// Lets go of a held lease on purpose, so a standby takes it at once.
    pub async fn release(&mut self) -> Result<()> {
        let Some(seen) = self.newest.clone().filter(|_| self.holds()) else {
            return Ok(());
        };
        let mut record = self.me.clone();
        record.renewed_ms = crate::orchestrator::now_ms();
        record.released = true;
        let path = name(seen.seq + 1);
        let put = create(self.region.store().as_ref(), &path, &record).await?;
        self.held_until = None;
        self.state = LeaseState::Unknown;
        match put {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(self.store_error(&format!("writing {path}"), &e)),
        }
    }

    async fn read(&self, seq: u64) -> Result<Option<Holder>> {
        let path = name(seq);
        let store = self.region.store();
        let bytes = get_if_present(store.as_ref(), &path)
            .await
            .map_err(|e| self.store_error(&format!("reading {path}"), &e))?;
        bytes
            .map(|b| {
                parse(&b).map_err(|e| {
                    Error::Failed(format!("{path} in region {}: {e}", self.region.name()))
                })
            })
            .transpose()
    }

    /// The newest name of the chain, read; `None` when there is none.
    async fn list_newest(&self) -> Result<Option<Seen>> {
        let store = self.region.store();
        let prefix = Path::from(LEASE_PREFIX);
        let listed: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.store_error("listing the lease", &e))?;
        let newest = listed.iter().filter_map(|m| seq_of(&m.location)).max();
        let Some(seq) = newest else {
            return Ok(None);
        };
        Ok(self.read(seq).await?.map(|holder| Seen {
            seq,
            holder,
            at: Instant::now(),
        }))
    }

    fn store_error(&self, op: &str, e: &object_store::Error) -> Error {
        Error::store(self.region.name(), op, e)
    }
}

/// The newest renewal of `region`'s lease and its name's number, without
/// taking part (one LIST and one GET); `None` when nobody ever held it.
pub async fn newest(region: &Region) -> Result<Option<(u64, Holder)>> {
    let probe = RegionLease::new(region.clone(), Holder::me("0000000000000000"));
    Ok(probe.list_newest().await?.map(|s| (s.seq, s.holder)))
}

/// One create-only put of `record` at `path`; the store's answer, for the
/// caller to tell a won name from a taken one.
async fn create(
    store: &dyn ObjectStore,
    path: &Path,
    record: &Holder,
) -> Result<object_store::Result<object_store::PutResult>> {
    let text = ron::to_string(record)
        .map_err(|e| Error::Failed(format!("cannot encode the lease: {e}")))?;
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    Ok(store
        .put_opts(path, PutPayload::from(text.into_bytes()), options)
        .await)
}

fn name(seq: u64) -> Path {
    Path::from(LEASE_PREFIX).join(format!("{seq:020}.ron"))
}

fn seq_of(path: &Path) -> Option<u64> {
    let file = path.filename()?;
    file.strip_suffix(".ron")?.parse().ok()
}

fn parse(bytes: &[u8]) -> std::result::Result<Holder, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not text: {e}"))?;
    ron::from_str(text).map_err(|e| format!("not a lease: {e}"))
}

/// This machine's name (in leases and alerts).
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let uname = rustix::system::uname();
        let name = uname.nodename().to_string_lossy().into_owned();
        if !name.is_empty() {
            return name;
        }
    }
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "this machine".into())
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new("/proc").join(pid.to_string()).exists()
    } else {
        // Unknown: count it alive (the lease is taken after its term).
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::RegionSpec;

    fn memory_region() -> Region {
        let name = format!("lease-{:x}", fastrand::u64(..));
        Region::open(&RegionSpec::new("r", &format!("memory://{name}")))
            .expect("a memory region opens")
    }

    #[tokio::test]
    async fn one_holder_and_a_standby_that_takes_over_after_the_term() {
        tokio::time::pause();
        let region = memory_region();
        let mut a = RegionLease::new(region.clone(), Holder::me("aaaaaaaaaaaaaaaa"));
        let mut b = RegionLease::new(region.clone(), Holder::me("bbbbbbbbbbbbbbbb"));
        assert!(a.tick().await.is_held());
        match b.tick().await {
            LeaseState::Standby { holder } => assert_eq!(holder.engine, "aaaaaaaaaaaaaaaa"),
            other => panic!("b should stand by, got {other:?}"),
        }
        // a renews; b keeps standing by.
        for _ in 0..5 {
            tokio::time::advance(RENEW_EVERY).await;
            assert!(a.tick().await.is_held());
            assert!(!b.tick().await.is_held());
        }
        // a dies: b takes over once a term passed without a renewal.
        let mut waited = Duration::ZERO;
        while !b.tick().await.is_held() {
            tokio::time::advance(WATCH_EVERY).await;
            waited += WATCH_EVERY;
            assert!(waited <= TERM + WATCH_EVERY * 2, "b never took over");
        }
        assert!(
            waited >= TERM - WATCH_EVERY,
            "b took over early: {waited:?}"
        );
        // a comes back: its renewal loses, it stands by.
        assert!(!a.tick().await.is_held());
        assert!(!a.holds());
    }

    #[tokio::test]
    async fn of_engines_starting_at_once_exactly_one_holds_and_a_release_hands_over_at_once() {
        let region = memory_region();
        let mut leases: Vec<RegionLease> = (0..4)
            .map(|i| RegionLease::new(region.clone(), Holder::me(&format!("{i:016x}"))))
            .collect();
        let states = futures::future::join_all(leases.iter_mut().map(|l| l.tick())).await;
        assert_eq!(
            states.iter().filter(|s| s.is_held()).count(),
            1,
            "{states:?}"
        );
        let holder = states.iter().position(|s| s.is_held()).unwrap_or(0);
        leases[holder].release().await.expect("release");
        assert!(!leases[holder].holds());
        let mut taken = 0;
        for (i, lease) in leases.iter_mut().enumerate() {
            if i != holder && lease.tick().await.is_held() {
                taken += 1;
            }
        }
        assert_eq!(taken, 1, "one standby takes a released lease at once");
    }
}
