//! The security log of a workspace: refused connections, failed AUTHs and
//! broken requests, rate-limited. The first event of a kind is logged at
//! once with its client's address; the ones after it in the same window are
//! counted and logged as one line when the window ends, with the addresses
//! they came from, so a flood of attempts costs one line per kind every
//! [`WINDOW`] instead of one per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long events of one kind are summed up before they are logged.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Addresses named in a summary at most (the rest are counted together).
const NAMED: usize = 5;
/// Addresses counted in a window at most (more are counted as others).
const COUNTED: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    FirewallRefused,
    TooManyConnections,
    AuthRefused,
    AuthThrottled,
    AuthBusy,
    LoginTimeout,
    BadRequest,
}

impl Security {
    const ALL: [Security; 7] = [
        Security::FirewallRefused,
        Security::TooManyConnections,
        Security::AuthRefused,
        Security::AuthThrottled,
        Security::AuthBusy,
        Security::LoginTimeout,
        Security::BadRequest,
    ];

    /// What one event is, in the log's words.
    fn what(self) -> &'static str {
        match self {
            Security::FirewallRefused => "connection refused by the firewall",
            Security::TooManyConnections => "connection refused: too many connections",
            Security::AuthRefused => "AUTH refused (wrong user or password)",
            Security::AuthThrottled => "AUTH refused: too many failed attempts from the address",
            Security::AuthBusy => "AUTH refused: too many password checks waiting",
            Security::LoginTimeout => "connection closed: no AUTH within the login time",
            Security::BadRequest => "connection closed: a request broke the protocol or its limits",
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    /// When the window opened (`None`: no event of the kind lately).
    opened: Option<Instant>,
    /// Events since the one logged at once.
    since: u64,
    by_address: HashMap<IpAddr, u64>,
    others: u64,
}

/// One workspace's security log.
#[derive(Debug)]
pub struct SecurityLog {
    workspace: String,
    windows: Mutex<[Window; Security::ALL.len()]>,
}

impl SecurityLog {
    pub fn new(workspace: &str) -> SecurityLog {
        SecurityLog {
            workspace: workspace.to_string(),
            windows: Mutex::new(Default::default()),
        }
    }

    /// Records one event from `ip`: logged now if it is the first of its
    /// kind lately, else counted for the window's summary.
    pub fn note(&self, kind: Security, ip: IpAddr) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = &mut windows[kind as usize];
        let Some(_) = window.opened else {
            window.opened = Some(Instant::now());
            tracing::warn!(workspace = %self.workspace, client = %ip, "{}", kind.what());
            return;
        };
        window.since += 1;
        if window.by_address.len() < COUNTED || window.by_address.contains_key(&ip) {
            *window.by_address.entry(ip).or_default() += 1;
        } else {
            window.others += 1;
        }
    }

    /// Logs the summary of every window that has run its time; called at
    /// least once a [`WINDOW`].
    pub fn flush(&self) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for kind in Security::ALL {
            let window = &mut windows[kind as usize];
            let Some(opened) = window.opened else {
                continue;
            };
            if opened.elapsed() < WINDOW {
                continue;
            }
            if window.since == 0 {
                window.opened = None;
                continue;
            }
            let from = summary(&window.by_address, window.others);
            tracing::warn!(
                workspace = %self.workspace,
                "{} {} more {} in the last {} s, from {from}",
                kind.what(),
                window.since,
                if window.since == 1 { "time" } else { "times" },
                opened.elapsed().as_secs()
            );
            // A flood that goes on is summed up again, not logged anew.
            *window = Window {
                opened: Some(Instant::now()),
                ..Window::default()
            };
        }
    }
}

/// `127.0.0.1 (990), 127.0.0.2 (8) and 3 other addresses (4)`.
fn summary(by_address: &HashMap<IpAddr, u64>, others: u64) -> String {
    let mut counted: Vec<(IpAddr, u64)> = by_address.iter().map(|(ip, n)| (*ip, *n)).collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut parts: Vec<String> = counted
        .iter()
        .take(NAMED)
        .map(|(ip, n)| format!("{ip} ({n})"))
        .collect();
    let rest: Vec<u64> = counted.iter().skip(NAMED).map(|(_, n)| *n).collect();
    let rest_addresses = rest.len() as u64 + u64::from(others > 0);
    let rest_events = rest.iter().sum::<u64>() + others;
    if rest_events > 0 {
        let more = if others > 0 { "or more " } else { "" };
        parts.push(format!(
            "{rest_addresses} {more}other addresses ({rest_events})"
        ));
    }
    match parts.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "nowhere".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_the_busiest_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let mut counted = HashMap::new();
        counted.insert(ip("127.0.0.1"), 990);
        counted.insert(ip("127.0.0.2"), 8);
        assert_eq!(summary(&counted, 0), "127.0.0.1 (990) and 127.0.0.2 (8)");
        for n in 3..10 {
            counted.insert(ip(&format!("127.0.0.{n}")), 1);
        }
        assert_eq!(
            summary(&counted, 2),
            "127.0.0.1 (990), 127.0.0.2 (8), 127.0.0.3 (1), 127.0.0.4 (1), 127.0.0.5 (1) and 5 or more other addresses (6)"
        );
    }
}
