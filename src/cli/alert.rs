//! `lifeboat alert ...`: where alerts go (webhooks, commands, the desktop)
//! and when they fire. The engine reads the settings again within 5 s of
//! a change; `alert test` sends a sample through each sink from here.

use std::time::Duration;

use clap::Subcommand;

use lifeboat::error::{Error, Result, exit_code};
use lifeboat::metrics::alerts::{AlertSettings, Sink, SinkTarget, SinkWords};

use crate::{Ctx, emit, parse_duration};

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// Add a sink (or replace the one of that name): exactly one of
    /// --webhook, --command or --desktop.
    Add {
        /// The sink's name (letters, digits, - and _).
        name: String,
        /// POST each event as JSON to this URL (https; plain http only on
        /// loopback and private networks).
        #[arg(long, value_name = "URL", group = "target")]
        webhook: Option<String>,
        /// With --webhook: the NAME of the environment variable holding
        /// the signing secret (the body's HMAC-SHA256 goes in the
        /// X-Lifeboat-Signature header as sha256=<hex>).
        #[arg(long, value_name = "VAR", requires = "webhook")]
        secret_env: Option<String>,
        /// Run this command line (sh -c) with the event as JSON on stdin.
        #[arg(long, value_name = "COMMAND", group = "target")]
        command: Option<String>,
        /// Show a desktop notification from the app.
        #[arg(long, group = "target")]
        desktop: bool,
    },
    /// The sinks and the rules' settings.
    List,
    /// Send a sample event through each sink (or the one named) and say
    /// whether it arrived.
    Test {
        /// Only this sink.
        name: Option<String>,
    },
    /// Remove a sink.
    Remove { name: String },
    /// When the rules fire and how often a firing alert repeats.
    Rules {
        /// RPO above target for this long fires (e.g. 30s).
        #[arg(long, value_parser = parse_duration)]
        rpo_for: Option<Duration>,
        /// A region unreachable for this long fires.
        #[arg(long, value_parser = parse_duration)]
        unreachable_for: Option<Duration>,
        /// No engine holding a lease for this long fires.
        #[arg(long, value_parser = parse_duration)]
        engine_lost_for: Option<Duration>,
        /// A replica damaged for this long fires.
        #[arg(long, value_parser = parse_duration)]
        damaged_for: Option<Duration>,
        /// Send a firing alert again this often while it holds (0s: never).
        #[arg(long, value_parser = parse_duration)]
        repeat: Option<Duration>,
        /// No passed drill for this many days fires (0: off).
        #[arg(long, value_name = "DAYS")]
        drill_overdue_days: Option<u64>,
    },
}

const WORDS: SinkWords = SinkWords {
    name: "the sink's NAME",
    url: "--webhook",
    secret_env: "--secret-env",
    command: "--command",
};

pub async fn alert(ctx: &Ctx, json: bool, command: AlertCommand) -> Result<i32> {
    let dir = &ctx.home.config_dir;
    let mut settings = AlertSettings::load(dir)?;
    match command {
        AlertCommand::Add {
            name,
            webhook,
            secret_env,
            command,
            desktop,
        } => {
            let target = match (webhook, command, desktop) {
                (Some(url), None, false) => SinkTarget::Webhook { url, secret_env },
                (None, Some(command), false) => SinkTarget::Command { command },
                (None, None, true) => SinkTarget::Desktop,
                _ => {
                    return Err(Error::invalid(
                        "give one of --webhook URL, --command COMMAND or --desktop",
                    ));
                }
            };
            let sink = Sink { name, target };
            sink.validate(&WORDS)?;
            let line = format!("sink {}: {}", sink.name, sink.target.describe());
            settings.put(sink)?;
            settings.save(dir)?;
            emit(json, &settings.sinks, || {
                format!("{line}\ntry it with `lifeboat alert test`")
            })?;
        }
        AlertCommand::List => {
            emit(json, &settings, || {
                let mut lines = vec![format!(
                    "rules: RPO above target for {} s, a region unreachable for {} s, no engine for {} s, a replica damaged for {} s, no passed drill for {} days{}; repeat every {}",
                    settings.rpo_for_s,
                    settings.unreachable_for_s,
                    settings.engine_lost_for_s,
                    settings.damaged_for_s,
                    settings.drill_overdue_days,
                    if settings.drill_overdue_days == 0 {
                        " (off)"
                    } else {
                        ""
                    },
                    match settings.repeat_every_s {
                        0 => "never".to_string(),
                        s => humantime::format_duration(Duration::from_secs(s)).to_string(),
                    }
                )];
                if settings.sinks.is_empty() {
                    lines.push(
                        "no sinks: add one with `lifeboat alert add NAME --webhook URL`".into(),
                    );
                }
                for sink in &settings.sinks {
                    lines.push(format!("{}: {}", sink.name, sink.target.describe()));
                }
                lines.join("\n")
            })?;
        }
        AlertCommand::Test { name } => {
            let sinks: Vec<Sink> = settings
                .sinks
                .iter()
                .filter(|s| name.as_ref().is_none_or(|n| &s.name == n))
                .cloned()
                .collect();
            if sinks.is_empty() {
                return Err(Error::invalid(match name {
                    Some(n) => format!("no sink named `{n}`; see `lifeboat alert list`"),
                    None => {
                        "no sinks to test; add one with `lifeboat alert add NAME --webhook URL`"
                            .into()
                    }
                }));
            }
            let group = lifeboat::engine::group::load(dir)?
                .map(|g| format!("{} → {}", g.primary, g.secondary))
                .unwrap_or_else(|| "no group".into());
            let results = lifeboat::metrics::alerts::send_test(&sinks, &group).await;
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            let out: Vec<_> = results
                .iter()
                .map(|(name, r)| {
                    serde_json::json!({"sink": name, "ok": r.is_ok(), "error": r.as_ref().err()})
                })
                .collect();
            emit(json, &out, || {
                results
                    .iter()
                    .map(|(name, r)| match r {
                        Ok(()) => format!("{name}: sent"),
                        Err(why) => format!("{name}: NOT sent: {why}"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            if failed > 0 {
                return Ok(exit_code::FAILED);
            }
        }
        AlertCommand::Remove { name } => {
            let before = settings.sinks.len();
            settings.sinks.retain(|s| s.name != name);
            if settings.sinks.len() == before {
                return Err(Error::invalid(format!(
                    "no sink named `{name}`; see `lifeboat alert list`"
                )));
            }
            settings.save(dir)?;
            emit(json, &settings.sinks, || format!("sink {name} removed"))?;
        }
        AlertCommand::Rules {
            rpo_for,
            unreachable_for,
            engine_lost_for,
            damaged_for,
            repeat,
            drill_overdue_days,
        } => {
            const DAY: u64 = 86_400;
            for (given, into, flag) in [
                (rpo_for, &mut settings.rpo_for_s, "--rpo-for"),
                (
                    unreachable_for,
                    &mut settings.unreachable_for_s,
                    "--unreachable-for",
                ),
                (
                    engine_lost_for,
                    &mut settings.engine_lost_for_s,
                    "--engine-lost-for",
                ),
                (damaged_for, &mut settings.damaged_for_s, "--damaged-for"),
                (repeat, &mut settings.repeat_every_s, "--repeat"),
            ] {
                if let Some(d) = given {
                    if d.as_secs() > 7 * DAY {
                        return Err(Error::invalid(format!("give {flag} up to 7 days (168h)")));
                    }
                    *into = d.as_secs();
                }
            }
            if let Some(days) = drill_overdue_days {
                if days > 366 {
                    return Err(Error::invalid(
                        "give --drill-overdue-days up to 366 (0: off)",
                    ));
                }
                settings.drill_overdue_days = days;
            }
            settings.save(dir)?;
            emit(json, &settings, || "alert rules saved".to_string())?;
        }
    }
    Ok(exit_code::OK)
}
