//! Users and passwords: argon2id hashes in the control log, checked on a
//! blocking thread, and a brake on clients that keep guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::Output;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::{Error, Result};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Failures from one address before its answers slow down.
const FREE_FAILURES: u32 = 3;
/// The longest a failed AUTH waits before it answers.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Addresses remembered at most (the oldest are forgotten first).
const MAX_TRACKED: usize = 10_000;

/// The argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(format!(
            "the password is too short; use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Failed(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC string `hash` (slow on purpose: run
/// it off the async threads, through [`check`] when a client asked).
pub fn verify_password(hash: &str, password: &str) -> bool {
    verify_with(&mut Vec::new(), hash, password)
}

/// [`verify_password`] in `memory`, which keeps its blocks for the next
/// check: argon2id's 19 MiB are allocated once per checking thread instead
/// of once per AUTH (an allocator keeps freed blocks of that size, and a
/// burst of checks used to leave gigabytes resident).
fn verify_with(memory: &mut Vec<Block>, hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        Params::try_from(&parsed),
        Algorithm::try_from(parsed.algorithm),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    if params.m_cost() > MAX_M_COST_KIB {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    memory.resize(blocks, Block::default());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// The most memory a stored hash may ask of a check (the default is 19 MiB).
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Password checks that may wait for a checking thread; one more is
/// refused with a retry hint rather than queued.
pub const MAX_WAITING_CHECKS: usize = 64;

/// Threads that check passwords for clients: a small pool for the whole
/// process (every workspace in it), so a flood of AUTHs costs at most this
/// many times argon2id's memory and leaves at most that much resident.
pub fn checking_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

type Check = (String, String, tokio::sync::oneshot::Sender<bool>);

/// The process's password-checking pool, started on first use.
fn pool() -> &'static std::sync::mpsc::SyncSender<Check> {
    static POOL: OnceLock<std::sync::mpsc::SyncSender<Check>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Check>(MAX_WAITING_CHECKS);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..checking_threads() {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("lifeboat-auth-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((hash, password, answer)) = next else {
                            return;
                        };
                        // The client may have gone; its answer is not needed.
                        answer.send(verify_with(&mut memory, &hash, &password)).ok();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password-checking thread: {e}");
            }
        }
        tx
    })
}

/// Why a password was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// [`MAX_WAITING_CHECKS`] checks are waiting already.
    Full,
    /// The pool is gone (its threads could not start).
    Gone,
}

/// Checks `password` against `hash` on the process's pool, waiting for a
/// free thread behind at most [`MAX_WAITING_CHECKS`] others.
pub async fn check(hash: String, password: String) -> std::result::Result<bool, Busy> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    match pool().try_send((hash, password, answer)) {
        Ok(()) => answered.await.map_err(|_| Busy::Gone),
        Err(std::sync::mpsc::TrySendError::Full(_)) => Err(Busy::Full),
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(Busy::Gone),
    }
}

/// Passwords already checked once, as keyed digests: a client that opens
/// many connections (a pool, `redis-benchmark -c 50`) pays for argon2 once,
/// not per connection. The key is random per process, so the digests are
/// worthless outside it; a changed hash (a new password) misses the cache.
#[derive(Debug)]
pub struct Verified {
    key: [u8; 32],
    seen: Mutex<HashMap<(String, String), [u8; 64]>>,
}

/// Checked passwords remembered at most.
const MAX_VERIFIED: usize = 10_000;

impl Default for Verified {
    fn default() -> Self {
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&fastrand::u64(..).to_le_bytes());
        }
        // fastrand is not a CSPRNG: mix in the OS's randomness too.
        use argon2::password_hash::rand_core::RngCore;
        let mut os = [0u8; 32];
        OsRng.fill_bytes(&mut os);
        for (k, o) in key.iter_mut().zip(os) {
            *k ^= o;
        }
        Verified {
            key,
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Verified {
    fn digest(&self, password: &str) -> [u8; 64] {
        use blake2::Digest;
        let mut hasher = blake2::Blake2b512::new();
        hasher.update(self.key);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// The brake's name for an attempt of `user` with `password`.
    pub fn guess(&self, user: &str, password: &str) -> Guess {
        use blake2::Digest;
        let mut hasher = blake2::Blake2b512::new();
        hasher.update(self.key);
        hasher.update(user.as_bytes());
        hasher.update([0u8]);
        hasher.update(password.as_bytes());
        let digest: [u8; 64] = hasher.finalize().into();
        let mut guess = [0u8; 16];
        guess.copy_from_slice(&digest[..16]);
        guess
    }

    /// Whether `user` proved `password` against `hash` before.
    pub fn knows(&self, user: &str, hash: &str, password: &str) -> bool {
        let digest = self.digest(password);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(user.to_string(), hash.to_string()))
            .is_some_and(|d| *d == digest)
    }

    /// Remembers that `password` matched `hash` for `user`.
    pub fn remember(&self, user: &str, hash: &str, password: &str) {
        let digest = self.digest(password);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_VERIFIED {
            seen.clear();
        }
        seen.insert((user.to_string(), hash.to_string()), digest);
    }
}

/// AUTH attempts per client address. After the first few failures every
/// attempt from that address, on any connection and whatever its password,
/// waits for its turn: each turn comes twice as long after the one before,
/// up to [`MAX_DELAY`]. The turn is taken before the password is checked
/// and the wait is the same for a right and a wrong one, so neither hanging
/// up early nor opening more connections tries passwords faster.
#[derive(Debug, Default)]
pub struct Brake {
    addresses: Mutex<HashMap<IpAddr, Attempts>>,
}

#[derive(Debug, Clone)]
struct Attempts {
    failures: u32,
    /// Attempts let through whose outcome is not known yet, by guess
    /// ([`Verified::guess`]): a pool logging in with one password counts
    /// once, a client trying many passwords at once counts each.
    in_flight: HashMap<Guess, u32>,
    /// When the next attempt may be checked.
    next_turn: Instant,
}

/// A keyed digest of a user and a password, worthless outside the process.
pub type Guess = [u8; 16];

/// A turn the brake gave: finish it with [`Brake::finished`] or
/// [`Brake::abandoned`].
#[derive(Debug)]
#[must_use]
pub struct Turn {
    ip: IpAddr,
    guess: Guess,
    /// How long to wait before checking the password.
    pub wait: Duration,
}

/// The longest an attempt waits for its turn; a later turn is refused.
pub const MAX_TURN_WAIT: Duration = Duration::from_secs(10);

impl Brake {
    /// The turn of an attempt to log in with `guess` from `ip`, or `Err`
    /// with how long until one could be had when that is more than
    /// [`MAX_TURN_WAIT`] away.
    pub fn turn(&self, ip: IpAddr, guess: Guess) -> std::result::Result<Turn, Duration> {
        let now = Instant::now();
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if addresses.len() >= MAX_TRACKED && !addresses.contains_key(&ip) {
            let oldest = addresses
                .iter()
                .min_by_key(|(_, a)| a.next_turn)
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                addresses.remove(&oldest);
            }
        }
        let attempts = addresses.entry(ip).or_insert_with(|| Attempts {
            failures: 0,
            in_flight: HashMap::new(),
            next_turn: now,
        });
        let at = attempts.next_turn.max(now);
        if at > now + MAX_TURN_WAIT {
            return Err(at - now);
        }
        // Other passwords being tried from the address count as failures
        // already: trying many at once is no faster than one by one.
        let others = attempts.in_flight.keys().filter(|g| **g != guess).count();
        let others = u32::try_from(others).unwrap_or(u32::MAX);
        attempts.next_turn = at + delay_after(attempts.failures.saturating_add(others));
        *attempts.in_flight.entry(guess).or_default() += 1;
        Ok(Turn {
            ip,
            guess,
            wait: at - now,
        })
    }

    /// A turn in which no password was checked (the pool was full).
    pub fn abandoned(&self, turn: Turn) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(attempts) = addresses.get_mut(&turn.ip) {
            attempts.land(turn.guess);
        }
    }

    /// Records how a turn ended: a right password clears the address's
    /// record, a wrong one counts.
    pub fn finished(&self, turn: Turn, ok: bool) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            addresses.remove(&turn.ip);
        } else if let Some(attempts) = addresses.get_mut(&turn.ip) {
            attempts.land(turn.guess);
            attempts.failures = attempts.failures.saturating_add(1);
            let step = delay_after(attempts.failures);
            attempts.next_turn = attempts.next_turn.max(Instant::now() + step);
        }
    }
}

impl Attempts {
    /// One attempt with `guess` is no longer in flight.
    fn land(&mut self, guess: Guess) {
        if let Some(n) = self.in_flight.get_mut(&guess) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&guess);
            }
        }
    }
}

fn delay_after(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES - 1).min(16);
    (Duration::from_millis(100) * 2u32.pow(doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_password_only() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn a_remembered_password_matches_only_itself_and_its_hash() {
        let verified = Verified::default();
        verified.remember("app", "$hash1", "correct horse");
        assert!(verified.knows("app", "$hash1", "correct horse"));
        assert!(!verified.knows("app", "$hash1", "correct horsf"));
        assert!(!verified.knows("app", "$hash2", "correct horse"));
        assert!(!verified.knows("other", "$hash1", "correct horse"));
    }

    fn guess(n: u8) -> Guess {
        [n; 16]
    }

    #[test]
    fn repeated_failures_slow_down_every_attempt_from_the_address() {
        let brake = Brake::default();
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut waits = Vec::new();
        for n in 0..6 {
            let turn = brake.turn(ip, guess(n)).expect("a turn");
            waits.push(turn.wait);
            brake.finished(turn, false);
        }
        assert_eq!(waits[..4], [Duration::ZERO; 4]);
        // The fifth waits, and so does the sixth, more.
        assert!(
            waits[4] > Duration::ZERO && waits[5] > waits[4],
            "{waits:?}"
        );
        // Attempts at once (more connections) queue behind each other, and
        // one that would wait too long is refused.
        let queued: Vec<_> = (10..13)
            .map(|n| brake.turn(ip, guess(n)).expect("a turn"))
            .collect();
        assert!(queued[1].wait > queued[0].wait && queued[2].wait > queued[1].wait);
        for n in 20..24 {
            if let Ok(turn) = brake.turn(ip, guess(n)) {
                brake.finished(turn, false);
            }
        }
        assert!(
            brake.turn(ip, guess(30)).is_err(),
            "a turn more than 10 s away is refused"
        );
        // A right password clears the address's record.
        for turn in queued {
            brake.finished(turn, true);
        }
        assert_eq!(
            brake.turn(ip, guess(31)).expect("a turn").wait,
            Duration::ZERO
        );
        assert_eq!(delay_after(100), MAX_DELAY);
    }

    #[test]
    fn a_pool_logging_in_is_not_held_back_but_many_passwords_at_once_are() {
        let brake = Brake::default();
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        let pool: Vec<_> = (0..50)
            .map(|_| brake.turn(ip, guess(1)).expect("a turn"))
            .collect();
        assert!(pool.iter().all(|t| t.wait == Duration::ZERO));
        let other: IpAddr = "127.0.0.3".parse().expect("ip");
        let guesses: Vec<_> = (0..8)
            .map(|n| brake.turn(other, guess(n)).expect("a turn"))
            .collect();
        assert!(guesses[7].wait > Duration::ZERO, "{guesses:?}");
    }

    #[tokio::test]
    async fn the_pool_checks_like_the_one_off_check() {
        let hash = hash_password("correct horse").expect("hash");
        assert_eq!(check(hash.clone(), "correct horse".into()).await, Ok(true));
        assert_eq!(check(hash, "correct horsf".into()).await, Ok(false));
    }
}
