//! The activity log: every action anyone took, with who, when, what and the
//! outcome. Kept as JSON lines in the data dir today; each entry is one
//! self-contained event so that it can move into the control log (DESIGN.md)
//! as an audit event without changing shape.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::workload::now_us;

/// How many entries the engine keeps in memory (the file keeps all).
pub const ACTIVITY_KEPT: usize = 2000;

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityEntry {
    /// The request it answers (0 for what the engine did by itself).
    pub request: u64,
    /// When it was asked for (µs since epoch).
    pub at_us: u64,
    /// When it finished (µs since epoch).
    pub finished_us: Option<u64>,
    /// Who asked: the OS user, or `engine`.
    pub who: String,
    /// What was asked, in words (`create database orders in us-east-1`).
    pub what: String,
    pub outcome: Outcome,
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Running,
    Done(String),
    Failed(String),
}

impl Outcome {
    /// The message of a request that ended well; a failed one (or one
    /// that never ended) as the error it is.
    pub fn into_result(self) -> Result<String> {
        match self {
            Outcome::Done(message) => Ok(message),
            Outcome::Failed(message) => Err(Error::Failed(message)),
            Outcome::Running => Err(Error::Failed("the engine did not finish".into())),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Done(_) => "done",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Outcome::Running => "",
            Outcome::Done(m) | Outcome::Failed(m) => m,
        }
    }
}

/// The user at this machine, for the `who` column.
pub fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "local user".into())
}

/// The entries in memory and the file they are appended to.
#[derive(Debug)]
pub struct ActivityLog {
    path: PathBuf,
    entries: VecDeque<ActivityEntry>,
}

impl ActivityLog {
    /// Loads the newest entries of the log at `path` (a missing file is an
    /// empty log; a line that does not parse is skipped with a warning).
    pub fn load(path: PathBuf) -> ActivityLog {
        let mut entries = VecDeque::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    match serde_json::from_str::<ActivityEntry>(line) {
                        Ok(entry) => {
                            entries.push_back(entry);
                            if entries.len() > ACTIVITY_KEPT {
                                entries.pop_front();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), "skipping an activity line: {e}")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "cannot read the activity log: {e}"),
        }
        ActivityLog { path, entries }
    }

    /// Records that `what` was asked for by `who`.
    pub fn begin(&mut self, request: u64, who: &str, what: String) {
        self.entries.push_back(ActivityEntry {
            request,
            at_us: now_us(),
            finished_us: None,
            who: who.to_string(),
            what,
            outcome: Outcome::Running,
        });
        if self.entries.len() > ACTIVITY_KEPT {
            self.entries.pop_front();
        }
    }

    /// Records how request `request` ended, and appends it to the file.
    pub fn finish(&mut self, request: u64, outcome: Outcome) {
        let Some(entry) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.request == request && e.outcome == Outcome::Running)
        else {
            return;
        };
        entry.outcome = outcome;
        entry.finished_us = Some(now_us());
        let entry = entry.clone();
        if let Err(e) = self.append(&entry) {
            tracing::warn!("{e}");
        }
    }

    /// Records something the engine did by itself, already finished.
    pub fn note(&mut self, what: String, outcome: Outcome) {
        self.begin(0, "engine", what);
        self.finish(0, outcome);
    }

    fn append(&self, entry: &ActivityEntry) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
        }
        let line = serde_json::to_string(entry)
            .map_err(|e| Error::Failed(format!("cannot encode an activity entry: {e}")))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::file(&self.path, format!("cannot open: {e}")))?;
        writeln!(file, "{line}").map_err(|e| Error::file(&self.path, format!("cannot write: {e}")))
    }

    /// The entries in memory, oldest first.
    pub fn entries(&self) -> Vec<ActivityEntry> {
        self.entries.iter().cloned().collect()
    }
}

/// Writes `entries` as CSV (when, who, what, outcome, message, duration).
pub fn export_csv(entries: &[ActivityEntry], path: &Path) -> Result<usize> {
    let mut out = csv::Writer::from_path(path)
        .map_err(|e| Error::file(path, format!("cannot create: {e}")))?;
    let fail = |e: csv::Error| Error::file(path, format!("cannot write: {e}"));
    out.write_record(["when", "who", "what", "outcome", "message", "duration_ms"])
        .map_err(fail)?;
    for entry in entries {
        let duration = entry
            .finished_us
            .map(|f| (f.saturating_sub(entry.at_us) / 1000).to_string())
            .unwrap_or_default();
        out.write_record([
            crate::workload::verify::format_us(entry.at_us).as_str(),
            &entry.who,
            &entry.what,
            entry.outcome.label(),
            entry.outcome.message(),
            &duration,
        ])
        .map_err(fail)?;
    }
    out.flush()
        .map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
    Ok(entries.len())
}
