//! Alerts without Prometheus: rules the engine evaluates on its own state
//! every second, and the sinks that carry what they say to people.
//!
//! A rule holds for a subject (a database, a replica, a region, an
//! operation kind). Once it has held for its duration it **fires** once,
//! **repeats** every `repeat_every_s` while it holds, and **resolves** once
//! when it stops holding; a condition shorter than its duration sends
//! nothing. Sinks: a webhook (a JSON POST signed with HMAC-SHA256 over the
//! body, `X-Lifeboat-Signature: sha256=<hex>`, the secret read from an
//! environment variable the settings name), a command (the event as JSON
//! on its stdin), and the app's desktop notifications.
//!
//! The settings live in `alerts.ron` in the config folder, written by
//! `lifeboat alert …` and the app's Settings; the engine reads the file
//! again when it changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The file, in the config folder.
pub const ALERTS_FILE: &str = "alerts.ron";
/// Sinks at most (each event goes to each).
pub const MAX_SINKS: usize = 16;
/// How long one delivery may take (a webhook's answer, a command's run).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries waiting or under way at once; past it the oldest waiting is
/// dropped, with a warning in the log.
pub const MAX_PENDING_DELIVERIES: usize = 64;
/// Events kept for the app (newest last).
pub const RECENT_EVENTS: usize = 50;

/// The rules' settings and the sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertSettings {
    /// A database's lag above the RPO target for this long fires.
    pub rpo_for_s: u64,
    /// A region that does not answer for this long fires.
    pub unreachable_for_s: u64,
    /// No engine holding a group region's lease for this long fires.
    pub engine_lost_for_s: u64,
    /// A replica damaged for this long fires.
    pub damaged_for_s: u64,
    /// A firing alert is sent again this often while it holds (0: never).
    pub repeat_every_s: u64,
    /// No passed drill for this many days fires (0: off). A drill schedule
    /// makes it its own period and a day.
    pub drill_overdue_days: u64,
    pub sinks: Vec<Sink>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            rpo_for_s: 30,
            unreachable_for_s: 60,
            engine_lost_for_s: 30,
            damaged_for_s: 60,
            repeat_every_s: 3600,
            drill_overdue_days: 8,
            sinks: Vec::new(),
        }
    }
}

/// A rule's duration at most (and the repeat interval's).
pub const MAX_RULE_S: u64 = 7 * 86_400;
/// The drill rule's days at most.
pub const MAX_OVERDUE_DAYS: u64 = 366;

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sink {
    pub name: String,
    pub target: SinkTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SinkTarget {
    /// A JSON POST to `url`, signed with the secret in env var `secret_env`.
    Webhook {
        url: String,
        secret_env: Option<String>,
    },
    /// `sh -c command` with the event as JSON on stdin.
    Command { command: String },
    /// A notification on the desktop of the app.
    Desktop,
}

impl SinkTarget {
    pub fn describe(&self) -> String {
        match self {
            SinkTarget::Webhook { url, secret_env } => match secret_env {
                Some(var) => format!("webhook {url} (signed with ${var})"),
                None => format!("webhook {url} (unsigned)"),
            },
            SinkTarget::Command { command } => format!("command `{command}`"),
            SinkTarget::Desktop => "desktop notification".into(),
        }
    }
}

/// What the place a sink was typed calls its fields (a CLI flag, a form
/// field), for errors in the user's words.
pub struct SinkWords {
    pub name: &'static str,
    pub url: &'static str,
    pub secret_env: &'static str,
    pub command: &'static str,
}

/// The words of the app's alert form (Settings).
pub const FORM_WORDS: SinkWords = SinkWords {
    name: "Name",
    url: "Webhook URL",
    secret_env: "Secret's variable",
    command: "Command",
};

impl Sink {
    /// Checks a sink as typed: one line per mistake, in `words`.
    pub fn validate(&self, words: &SinkWords) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(Error::invalid(format!(
                "`{}` is not a sink name; give {} as letters, digits, - and _ (at most 64)",
                self.name, words.name
            )));
        }
        match &self.target {
            SinkTarget::Webhook { url, secret_env } => {
                let parsed = url::Url::parse(url).map_err(|_| {
                    Error::invalid(format!(
                        "`{url}` is not a URL; give {} as https://host/path",
                        words.url
                    ))
                })?;
                match parsed.scheme() {
                    "https" => {}
                    "http" if crate::region::is_local(&parsed) => {}
                    "http" => {
                        return Err(Error::invalid(format!(
                            "plain http is allowed only for loopback and private-network addresses; give {} with https://",
                            words.url
                        )));
                    }
                    other => {
                        return Err(Error::invalid(format!(
                            "`{other}` is not http or https; give {} as https://host/path",
                            words.url
                        )));
                    }
                }
                if let Some(var) = secret_env {
                    let var_ok = !var.is_empty()
                        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !var.starts_with(|c: char| c.is_ascii_digit());
                    if !var_ok {
                        // Not echoed: a hurried user may have typed the secret itself.
                        return Err(Error::invalid(format!(
                            "that is not an environment variable's name; give {} as the NAME of the variable that holds the secret, not the secret",
                            words.secret_env
                        )));
                    }
                }
            }
            SinkTarget::Command { command } => {
                if command.trim().is_empty() || command.len() > 4096 {
                    return Err(Error::invalid(format!(
                        "give {} as a command line (at most 4 KiB); it gets the event as JSON on stdin",
                        words.command
                    )));
                }
            }
            SinkTarget::Desktop => {}
        }
        Ok(())
    }
}

impl AlertSettings {
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join(ALERTS_FILE)
    }

    /// The saved settings (the defaults, no sinks, when none are saved).
    pub fn load(config_dir: &Path) -> Result<AlertSettings> {
        let path = Self::path(config_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => ron::from_str(&text).map_err(|e| {
                Error::invalid(format!(
                    "{}: not valid alert settings ({e}); fix it or delete it and add the sinks again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AlertSettings::default()),
            Err(e) => Err(Error::file(&path, format!("cannot read: {e}"))),
        }
    }

    pub fn save(&self, config_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(config_dir)
            .map_err(|e| Error::file(config_dir, format!("cannot create: {e}")))?;
        let path = Self::path(config_dir);
        let text = ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .map_err(|e| Error::file(&path, format!("cannot encode: {e}")))?;
        crate::config::write_atomically(&path, text.as_bytes())
    }

    /// Adds `sink`, or replaces the one of its name.
    pub fn put(&mut self, sink: Sink) -> Result<()> {
        let full = self.sinks.len() >= MAX_SINKS;
        match self.sinks.iter_mut().find(|s| s.name == sink.name) {
            Some(old) => *old = sink,
            None if full => {
                return Err(Error::invalid(format!(
                    "{MAX_SINKS} sinks already; remove one first"
                )));
            }
            None => self.sinks.push(sink),
        }
        Ok(())
    }

    /// Checks settings made whole (by the app's form): each sink in
    /// `words`, no name twice, at most [`MAX_SINKS`], each rule's duration
    /// up to [`MAX_RULE_S`] and the drill rule up to [`MAX_OVERDUE_DAYS`].
    pub fn check(&self, words: &SinkWords) -> Result<()> {
        for sink in &self.sinks {
            sink.validate(words)?;
        }
        let mut names: Vec<&str> = self.sinks.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(format!(
                "two sinks are named `{}`; give each its own name",
                twice[0]
            )));
        }
        if self.sinks.len() > MAX_SINKS {
            return Err(Error::invalid(format!(
                "at most {MAX_SINKS} sinks; remove one"
            )));
        }
        for (seconds, what) in [
            (self.rpo_for_s, "RPO above target for"),
            (self.unreachable_for_s, "a region unreachable for"),
            (self.engine_lost_for_s, "no engine for"),
            (self.damaged_for_s, "a replica damaged for"),
            (self.repeat_every_s, "repeat every"),
        ] {
            if seconds > MAX_RULE_S {
                return Err(Error::invalid(format!(
                    "give \"{what}\" up to 7 days (604800 s)"
                )));
            }
        }
        if self.drill_overdue_days > MAX_OVERDUE_DAYS {
            return Err(Error::invalid(format!(
                "give the drill-overdue days up to {MAX_OVERDUE_DAYS} (0: off)"
            )));
        }
        Ok(())
    }

    pub fn has_desktop(&self) -> bool {
        self.sinks.iter().any(|s| s.target == SinkTarget::Desktop)
    }
}

/// The rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Rule {
    RpoAboveTarget,
    ReplicaDamaged,
    RegionUnreachable,
    EngineLost,
    DrillOverdue,
    OperationFailed,
    /// `alert test`'s sample.
    Test,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::RpoAboveTarget => "rpo_above_target",
            Rule::ReplicaDamaged => "replica_damaged",
            Rule::RegionUnreachable => "region_unreachable",
            Rule::EngineLost => "engine_lost",
            Rule::DrillOverdue => "drill_overdue",
            Rule::OperationFailed => "operation_failed",
            Rule::Test => "test",
        }
    }
}

/// A condition that holds now: the rule, what it is about, and what to say.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub rule: Rule,
    pub subject: String,
    pub summary: String,
    /// The figure behind it (seconds of lag, days since a drill), if any.
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
    Test,
}

/// What a sink receives (as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The rule's name (`rpo_above_target`).
    pub alert: String,
    pub status: Status,
    pub subject: String,
    pub summary: String,
    pub value: Option<f64>,
    /// Since when the condition held (Unix ms).
    pub since_ms: u64,
    /// When this event was made (Unix ms).
    pub at_ms: u64,
    /// Which time of sending this is for a firing alert (1: the first).
    pub repeat: u32,
    /// The group it is about (`us-east-1 → eu-west-1`) and the engine's host.
    pub group: String,
    pub host: String,
}

#[derive(Debug, Clone)]
struct Active {
    since_ms: u64,
    fired: bool,
    sent_ms: u64,
    repeat: u32,
    last: Condition,
}

/// The rules' memory: what holds, since when, and what was sent.
#[derive(Debug, Default)]
pub struct Alerter {
    active: BTreeMap<(Rule, String), Active>,
}

/// A firing alert, as the app shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiringAlert {
    pub alert: String,
    pub subject: String,
    pub summary: String,
    pub since_ms: u64,
}

impl Alerter {
    /// Takes the conditions that hold at `now_ms` and returns the events to
    /// send: the first firing of those held for their duration, repeats,
    /// and the resolution of those that stopped holding after firing.
    pub fn evaluate(
        &mut self,
        settings: &AlertSettings,
        holding: Vec<Condition>,
        now_ms: u64,
        group: &str,
        host: &str,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let event = |c: &Condition, status: Status, since_ms: u64, repeat: u32| AlertEvent {
            alert: c.rule.name().to_string(),
            status,
            subject: c.subject.clone(),
            summary: c.summary.clone(),
            value: c.value,
            since_ms,
            at_ms: now_ms,
            repeat,
            group: group.to_string(),
            host: host.to_string(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for condition in holding {
            let key = (condition.rule, condition.subject.clone());
            seen.insert(key.clone());
            let active = self.active.entry(key).or_insert_with(|| Active {
                since_ms: now_ms,
                fired: false,
                sent_ms: 0,
                repeat: 0,
                last: condition.clone(),
            });
            active.last = condition;
            let wait_ms = duration_of(settings, active.last.rule) * 1000;
            let due = if !active.fired {
                now_ms.saturating_sub(active.since_ms) >= wait_ms
            } else {
                settings.repeat_every_s > 0
                    && now_ms.saturating_sub(active.sent_ms) >= settings.repeat_every_s * 1000
            };
            if due {
                active.fired = true;
                active.sent_ms = now_ms;
                active.repeat += 1;
                events.push(event(
                    &active.last,
                    Status::Firing,
                    active.since_ms,
                    active.repeat,
                ));
            }
        }
        let gone: Vec<(Rule, String)> = self
            .active
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(was) = self.active.remove(&key)
                && was.fired
            {
                events.push(event(&was.last, Status::Resolved, was.since_ms, was.repeat));
            }
        }
        events
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<FiringAlert> {
        self.active
            .values()
            .filter(|a| a.fired)
            .map(|a| FiringAlert {
                alert: a.last.rule.name().to_string(),
                subject: a.last.subject.clone(),
                summary: a.last.summary.clone(),
                since_ms: a.since_ms,
            })
            .collect()
    }
}

/// How long `rule` must hold before it fires, in seconds.
fn duration_of(settings: &AlertSettings, rule: Rule) -> u64 {
    match rule {
        Rule::RpoAboveTarget => settings.rpo_for_s,
        Rule::ReplicaDamaged => settings.damaged_for_s,
        Rule::RegionUnreachable => settings.unreachable_for_s,
        Rule::EngineLost => settings.engine_lost_for_s,
        Rule::DrillOverdue | Rule::OperationFailed | Rule::Test => 0,
    }
}

/// The signature header's value for `body` under `secret`:
/// `sha256=<hex of HMAC-SHA256>` (as GitHub's `X-Hub-Signature-256`).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Lifeboat-Signature";

/// `alert test` and the app's *Send a test alert*: a sample event through
/// each of `sinks` (a desktop notification shown from here, off the
/// runtime's workers: D-Bus blocks); each sink's name with whether it
/// arrived.
pub async fn send_test(
    sinks: &[Sink],
    group: &str,
) -> Vec<(String, std::result::Result<(), String>)> {
    let event = sample(
        group,
        &crate::control::lease::host_name(),
        crate::orchestrator::now_ms(),
    );
    let mut results = Vec::new();
    for sink in sinks {
        let outcome = match sink.target {
            SinkTarget::Desktop => {
                let event = event.clone();
                tokio::task::spawn_blocking(move || crate::gui::notify::show(&event))
                    .await
                    .unwrap_or_else(|e| Err(format!("the notification stopped: {e}")))
            }
            _ => deliver(sink, &event).await,
        };
        results.push((sink.name.clone(), outcome));
    }
    results
}

/// Sends `event` to `sink` (not the desktop: the app shows those); one
/// line saying what went wrong when it could not.
pub async fn deliver(sink: &Sink, event: &AlertEvent) -> std::result::Result<(), String> {
    let body = serde_json::to_vec(event).map_err(|e| format!("cannot encode the event: {e}"))?;
    match &sink.target {
        SinkTarget::Webhook { url, secret_env } => {
            let client = reqwest::Client::builder()
                .timeout(DELIVERY_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("no HTTP client: {e}"))?;
            let mut request = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Lifeboat-Event", status_word(event.status));
            if let Some(var) = secret_env {
                let secret = std::env::var(var).map_err(|_| {
                    format!("the signing secret's variable ${var} is not set in the engine's environment")
                })?;
                request = request.header(SIGNATURE_HEADER, signature(secret.as_bytes(), &body));
            }
            let response =
                request.body(body).send().await.map_err(|e| {
                    format!("POST {url}: {}", crate::error::one_line(&e.to_string()))
                })?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("POST {url}: answered {}", response.status()))
            }
        }
        SinkTarget::Command { command } => run_command(command, &body).await,
        SinkTarget::Desktop => Ok(()),
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Firing => "firing",
        Status::Resolved => "resolved",
        Status::Test => "test",
    }
}

/// Runs `sh -c command` with `stdin` written to it, within the delivery
/// timeout (then killed).
async fn run_command(command: &str, stdin: &[u8]) -> std::result::Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    let mut input = child.stdin.take();
    let run = async {
        if let Some(input) = input.as_mut() {
            // A command that does not read its input is its own business.
            if let Err(e) = input.write_all(stdin).await {
                tracing::debug!("alert command's stdin: {e}");
            }
        }
        drop(input);
        child.wait_with_output().await
    };
    match tokio::time::timeout(DELIVERY_TIMEOUT, run).await {
        Err(_) => Err(format!(
            "`{command}` did not finish within {} s",
            DELIVERY_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("`{command}`: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "`{command}` failed ({}): {}",
            out.status,
            crate::error::one_line(String::from_utf8_lossy(&out.stderr).trim())
        )),
    }
}

/// A sample event for `alert test`.
pub fn sample(group: &str, host: &str, now_ms: u64) -> AlertEvent {
    AlertEvent {
        alert: Rule::Test.name().into(),
        status: Status::Test,
        subject: "alert test".into(),
        summary: "A test of Lifeboat's alerts: this sink works.".into(),
        value: None,
        since_ms: now_ms,
        at_ms: now_ms,
        repeat: 1,
        group: group.into(),
        host: host.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(db: &str) -> Condition {
        Condition {
            rule: Rule::RpoAboveTarget,
            subject: db.into(),
            summary: format!("{db} lags"),
            value: Some(12.0),
        }
    }

    #[test]
    fn an_alert_fires_once_after_its_duration_repeats_and_resolves_once() {
        let settings = AlertSettings {
            rpo_for_s: 10,
            repeat_every_s: 60,
            ..AlertSettings::default()
        };
        let mut alerter = Alerter::default();
        let mut sent = Vec::new();
        // Holds from t=0 to t=100 s, sampled each second; then stops.
        for t in 0..=130u64 {
            let holding = if t <= 100 {
                vec![lag("orders")]
            } else {
                vec![]
            };
            sent.extend(alerter.evaluate(&settings, holding, t * 1000, "g", "h"));
        }
        let statuses: Vec<(Status, u64, u32)> = sent
            .iter()
            .map(|e| (e.status, e.at_ms / 1000, e.repeat))
            .collect();
        assert_eq!(
            statuses,
            [
                (Status::Firing, 10, 1),
                (Status::Firing, 70, 2),
                (Status::Resolved, 101, 2)
            ]
        );
        // A condition shorter than the duration sends nothing.
        let mut quiet = Alerter::default();
        let mut none = Vec::new();
        for t in 0..30u64 {
            let holding = if t < 5 { vec![lag("users")] } else { vec![] };
            none.extend(quiet.evaluate(&settings, holding, t * 1000, "g", "h"));
        }
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_sink_as_typed_is_checked_in_the_words_of_where_it_was_typed() {
        let words = SinkWords {
            name: "NAME",
            url: "--webhook",
            secret_env: "--secret-env",
            command: "--command",
        };
        let webhook = |url: &str, secret: Option<&str>| Sink {
            name: "ops".into(),
            target: SinkTarget::Webhook {
                url: url.into(),
                secret_env: secret.map(str::to_string),
            },
        };
        assert!(
            webhook("https://hooks.example.com/x", Some("HOOK_SECRET"))
                .validate(&words)
                .is_ok()
        );
        assert!(
            webhook("http://127.0.0.1:9000/x", None)
                .validate(&words)
                .is_ok()
        );
        let plain = webhook("http://hooks.example.com/x", None)
            .validate(&words)
            .expect_err("refused")
            .to_string();
        assert!(
            plain.contains("--webhook") && plain.contains("https"),
            "{plain}"
        );
        let secret = webhook("https://hooks.example.com/x", Some("s3cr3t value!"))
            .validate(&words)
            .expect_err("refused")
            .to_string();
        assert!(
            secret.contains("--secret-env") && !secret.contains("s3cr3t"),
            "{secret}"
        );
        let bad_name = Sink {
            name: "a b".into(),
            target: SinkTarget::Desktop,
        };
        assert!(bad_name.validate(&words).is_err());
    }
}
