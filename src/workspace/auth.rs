//! Users and passwords: argon2id hashes in the control log, checked on a
//! blocking thread, and a brake on clients that keep guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

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
/// it off the async threads).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
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

/// Failed AUTHs per client address: each one past the first few waits
/// twice as long as the one before, up to [`MAX_DELAY`].
#[derive(Debug, Default)]
pub struct Brake {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Brake {
    /// Records a failure from `ip` and returns how long to wait before
    /// answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&ip) {
            let oldest = failures
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        delay_after(entry.0)
    }

    /// A success from `ip` clears its record.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
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

    #[test]
    fn repeated_failures_slow_down() {
        let brake = Brake::default();
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let delays: Vec<Duration> = (0..6).map(|_| brake.failed(ip)).collect();
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert!(delays[3] > Duration::ZERO && delays[4] > delays[3] && delays[5] > delays[4]);
        brake.succeeded(ip);
        assert_eq!(brake.failed(ip), Duration::ZERO);
        assert_eq!(delay_after(100), MAX_DELAY);
    }
}
