//! `lifeboat service install | uninstall | status`: the engine as a systemd
//! user service, so replication goes on when the app closes and starts at
//! login (where no package installed the unit; the .deb ships the same unit
//! in /usr/lib/systemd/user/). The service runs `lifeboat serve` on this
//! data folder; systemd restarts it when it fails and keeps its log in the
//! journal (`journalctl --user -u lifeboat`).

use std::path::PathBuf;
use std::process::Command;

use clap::Subcommand;

use lifeboat::error::{Error, Result, exit_code};

use crate::{Ctx, emit};

/// The unit's name.
pub const UNIT: &str = "lifeboat.service";

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Write the user unit for `lifeboat serve` on this data folder, and
    /// enable and start it (unless --no-start).
    Install {
        /// Only write the unit; start it later with
        /// `systemctl --user enable --now lifeboat`.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop and disable the service and remove its unit (replication stops
    /// unless another engine runs the group).
    Uninstall,
    /// Whether the unit is installed and running, and which engine runs
    /// the group.
    Status,
}

/// Where systemd looks for this user's units.
fn unit_path() -> Result<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| Error::invalid("neither XDG_CONFIG_HOME nor HOME is set; set HOME"))?;
    Ok(config.join("systemd").join("user").join(UNIT))
}

/// The unit: `lifeboat serve` on this data and config folder, restarted on
/// failure, logging to the journal.
pub fn unit(ctx: &Ctx) -> Result<String> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find this program: {e}")))?;
    let quote = |p: &std::path::Path| format!("\"{}\"", p.display());
    Ok(format!(
        "[Unit]\n\
         Description=Lifeboat engine: replication, failover and recovery of the group\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={} --data-dir {} --config-dir {} serve --report-every 60s\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         # SIGTERM: the engine stops its flows, withdraws its status and\n\
         # releases its leases, so a standby takes over at once.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=30\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        quote(&exe),
        quote(&ctx.home.data_dir),
        quote(&ctx.home.config_dir),
    ))
}

fn systemctl(args: &[&str]) -> Result<String> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .map_err(|e| Error::Failed(format!("cannot run systemctl: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(text)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(Error::Failed(format!(
            "systemctl --user {} failed: {}",
            args.join(" "),
            lifeboat::error::one_line(err.trim())
        )))
    }
}

pub async fn service(ctx: &Ctx, json: bool, command: ServiceCommand) -> Result<i32> {
    let path = unit_path()?;
    match command {
        ServiceCommand::Install { no_start } => {
            if lifeboat::engine::group::load(&ctx.home.config_dir)?.is_none() {
                return Err(Error::invalid(
                    "no replication group to serve; configure one first with `lifeboat group configure --secondary REGION`",
                ));
            }
            let dir = path
                .parent()
                .ok_or_else(|| Error::file(&path, "has no folder"))?;
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
            lifeboat::config::write_atomically(&path, unit(ctx)?.as_bytes())?;
            let started = if no_start {
                None
            } else {
                Some(
                    systemctl(&["daemon-reload"])
                        .and_then(|_| systemctl(&["enable", "--now", UNIT]))
                        .map_err(|e| {
                            Error::Failed(format!(
                                "{} was written, but the service did not start: {e}; start the engine with `lifeboat serve` instead",
                                path.display()
                            ))
                        })?,
                )
            };
            emit(
                json,
                &serde_json::json!({ "unit": path, "started": started.is_some() }),
                || match started {
                    Some(_) => format!(
                        "installed {} and started it; its log: journalctl --user -u lifeboat",
                        path.display()
                    ),
                    None => format!(
                        "installed {}; start it with `systemctl --user enable --now lifeboat`",
                        path.display()
                    ),
                },
            )?;
        }
        ServiceCommand::Uninstall => {
            if !path.exists() {
                return Err(Error::invalid(format!(
                    "no service is installed ({} does not exist)",
                    path.display()
                )));
            }
            let stopped = systemctl(&["disable", "--now", UNIT]);
            std::fs::remove_file(&path).map_err(|e| Error::file(&path, e))?;
            let note = match &stopped {
                Ok(_) => "stopped and removed".to_string(),
                Err(e) => format!("removed; stopping it failed ({e})"),
            };
            emit(
                json,
                &serde_json::json!({ "unit": path, "stopped": stopped.is_ok() }),
                || format!("{}: {note}", path.display()),
            )?;
        }
        ServiceCommand::Status => {
            let installed = path.exists();
            let active = installed
                .then(|| systemctl(&["is-active", UNIT]).unwrap_or_else(|_| "inactive".into()));
            let mut holders = Vec::new();
            for spec in ctx.regions.specs() {
                let region = ctx.open_spec(spec)?;
                let line = match lifeboat::control::lease::newest(&region).await {
                    Ok(Some((_, h)))
                        if !h.released
                            && lifeboat::orchestrator::now_ms().saturating_sub(h.renewed_ms)
                                < lifeboat::control::lease::TERM.as_millis() as u64 =>
                    {
                        format!("{}: {}", spec.name, h.describe())
                    }
                    Ok(Some((_, h))) if !h.released => format!(
                        "{}: no engine renews its lease (the last was {}, {} s ago)",
                        spec.name,
                        h.describe(),
                        lifeboat::orchestrator::now_ms().saturating_sub(h.renewed_ms) / 1000
                    ),
                    Ok(_) => format!("{}: no engine holds its lease", spec.name),
                    Err(e) => format!(
                        "{}: the lease cannot be read ({})",
                        spec.name,
                        lifeboat::error::one_line(&e.to_string())
                    ),
                };
                holders.push(line);
            }
            emit(
                json,
                &serde_json::json!({ "unit": path, "installed": installed, "active": active, "leases": holders }),
                || {
                    let mut lines = vec![match &active {
                        None => format!(
                            "no service installed ({}); install one with `lifeboat service install`",
                            path.display()
                        ),
                        Some(state) => format!("{}: {state}", path.display()),
                    }];
                    lines.extend(holders.iter().cloned());
                    lines.join("\n")
                },
            )?;
        }
    }
    Ok(exit_code::OK)
}
