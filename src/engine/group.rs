//! The replication group: primary, secondary, which databases, which kind
//! of replication, the RPO target and what a person paused. Kept as RON in
//! the config dir today; it moves into the control log with that issue.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::write_atomically;
use crate::error::{Error, Result};

/// Which databases a group replicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selection {
    /// Every database homed in the primary, including those created later.
    All,
    /// These databases only.
    Only(BTreeSet<String>),
}

impl Selection {
    pub fn includes(&self, db: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(dbs) => dbs.contains(db),
        }
    }
}

/// What stands ready in the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationKind {
    /// Only the files are copied; compute is made at failover.
    StorageOnly,
    /// Files, plus a standing read-only workspace (arrives with failover).
    PreProvisioned,
    /// Files only, and a workspace acknowledges a write only once the
    /// secondary holds the WAL file that makes it durable (up to
    /// [`WriteRules::zero_loss_timeout_s`]; past it the group runs
    /// asynchronously until the secondary holds everything again).
    ZeroLoss,
}

impl ReplicationKind {
    /// The type in words, as the app and `group show` print it.
    pub fn label(self) -> &'static str {
        match self {
            ReplicationKind::StorageOnly => "storage only",
            ReplicationKind::PreProvisioned => "storage + pre-provisioned",
            ReplicationKind::ZeroLoss => "storage, zero loss",
        }
    }
}

/// What a group asks of its workspaces' writes beyond their home.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WriteRules {
    /// With the zero-loss type: how long a write waits for the secondary
    /// before the group runs asynchronously (seconds).
    pub zero_loss_timeout_s: f64,
    /// The RPO guard: slow, then refuse, writes while a replica would lag
    /// past the RPO target (off by default: availability first).
    pub rpo_guard: bool,
    /// The GC hold: how long the homes' writers keep a file a replica still
    /// needs (seconds; 0: off). See `storage::gc_hold`.
    #[serde(default = "default_gc_hold_s")]
    pub gc_hold_s: u64,
}

fn default_gc_hold_s() -> u64 {
    crate::storage::gc_hold::DEFAULT_GC_HOLD.as_secs()
}

/// The GC hold's longest bound: 30 days of a home's garbage.
pub const MAX_GC_HOLD_S: u64 = 30 * 24 * 3600;

/// A write waits this long for the secondary by default: long enough for
/// a slow put across regions, short enough for a client's own timeout.
pub const DEFAULT_ZERO_LOSS_TIMEOUT_S: f64 = 5.0;

impl Default for WriteRules {
    fn default() -> Self {
        WriteRules {
            zero_loss_timeout_s: DEFAULT_ZERO_LOSS_TIMEOUT_S,
            rpo_guard: false,
            gc_hold_s: default_gc_hold_s(),
        }
    }
}

/// Who moves the SSTs, the bulk of a database's bytes, between the regions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataCopy {
    /// Lifeboat copies every file.
    #[default]
    Lifeboat,
    /// The region pair replicates each branch's `compacted/` folder by
    /// itself (S3 Cross-Region Replication, GCS dual-region, Azure object
    /// replication, SeaweedFS `filer.sync`), without deletes; Lifeboat
    /// copies the manifests, the WAL and the compactions files in order,
    /// each manifest once the store has every SST it names.
    Store,
}

impl DataCopy {
    /// In words, as the app and `group show` print it.
    pub fn label(self) -> &'static str {
        match self {
            DataCopy::Lifeboat => "Lifeboat copies every file",
            DataCopy::Store => "the store replicates data files; Lifeboat keeps the order",
        }
    }
}

/// One replication group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub primary: String,
    pub secondary: String,
    pub databases: Selection,
    pub kind: ReplicationKind,
    /// Lag above this is an RPO breach (seconds).
    pub rpo_target_s: f64,
    /// Databases a person paused.
    #[serde(default)]
    pub held: BTreeSet<String>,
    /// The drill's smoke commands, as last run.
    #[serde(default)]
    pub smoke: Vec<String>,
    /// Who moves the SSTs.
    #[serde(default)]
    pub data: DataCopy,
    /// Zero loss's timeout and the RPO guard.
    #[serde(default)]
    pub writes: WriteRules,
    /// When the group's engine drills by itself (`None`: only when asked).
    #[serde(default)]
    pub drill_schedule: Option<super::schedule::DrillSchedule>,
}

impl GroupConfig {
    /// What the group's flows promise the writers at their homes.
    pub fn zero_loss_timeout(&self) -> Option<std::time::Duration> {
        (self.kind == ReplicationKind::ZeroLoss)
            .then(|| std::time::Duration::from_secs_f64(self.writes.zero_loss_timeout_s))
    }
}

/// How the place a group is set in says to fix it.
#[derive(Debug, Clone, Copy)]
pub struct Fixes {
    pub secondary: &'static str,
    pub rpo_target: &'static str,
    pub zero_loss_timeout: &'static str,
    pub gc_hold: &'static str,
}

/// In the app's words (the wizard) and the engine's.
pub const IN_THE_APP: Fixes = Fixes {
    secondary: "choose another region as the secondary",
    rpo_target: "give a number of seconds above 0",
    zero_loss_timeout: "give the zero-loss timeout in seconds, from 0.1 to 600",
    gc_hold: "give the hold in hours, from 0.02 (a minute) to 720, or 0 (off)",
};

/// Whether a group of `primary` and `secondary` with an RPO target of
/// `rpo_target_s` makes sense; the error says what to change, in `fixes`.
pub fn check(primary: &str, secondary: &str, rpo_target_s: f64, fixes: Fixes) -> Result<()> {
    if !(rpo_target_s.is_finite() && rpo_target_s > 0.0) {
        return Err(Error::invalid(format!(
            "an RPO target of {rpo_target_s} s makes no sense; {}",
            fixes.rpo_target
        )));
    }
    if secondary == primary {
        return Err(Error::invalid(format!(
            "{primary} is the primary; {}",
            fixes.secondary
        )));
    }
    Ok(())
}

/// Whether `writes` makes sense; the error says what to change, in `fixes`.
pub fn check_writes(writes: &WriteRules, fixes: Fixes) -> Result<()> {
    let t = writes.zero_loss_timeout_s;
    if !(t.is_finite() && (0.1..=600.0).contains(&t)) {
        return Err(Error::invalid(format!(
            "a zero-loss timeout of {t} s is outside 0.1 to 600 s; {}",
            fixes.zero_loss_timeout
        )));
    }
    if (1..60).contains(&writes.gc_hold_s) {
        return Err(Error::invalid(format!(
            "a GC hold of {} s is too short to outlast a paused link; give at least a minute, or 0 to turn it off; {}",
            writes.gc_hold_s, fixes.gc_hold
        )));
    }
    if writes.gc_hold_s > MAX_GC_HOLD_S {
        return Err(Error::invalid(format!(
            "a GC hold of {} h is longer than 720 h (30 days); {}",
            writes.gc_hold_s / 3600,
            fixes.gc_hold
        )));
    }
    Ok(())
}

/// The default RPO target: one second.
pub const DEFAULT_RPO_TARGET_S: f64 = 1.0;

const GROUP_FILE: &str = "replication.ron";

/// The group file in `config_dir`.
pub fn group_file(config_dir: &Path) -> std::path::PathBuf {
    config_dir.join(GROUP_FILE)
}

/// Loads the group saved in `config_dir`, if any.
pub fn load(config_dir: &Path) -> Result<Option<GroupConfig>> {
    let path = group_file(config_dir);
    const FIX: &str = "fix it or delete it and configure replication again";
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let group: GroupConfig = ron::from_str(&text).map_err(|e| {
                Error::invalid(format!(
                    "{}: not a valid replication group ({e}); {FIX}",
                    path.display()
                ))
            })?;
            let fixes = Fixes {
                secondary: FIX,
                rpo_target: FIX,
                zero_loss_timeout: FIX,
                gc_hold: FIX,
            };
            check_writes(&group.writes, fixes)?;
            check(&group.primary, &group.secondary, group.rpo_target_s, fixes)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
            Ok(Some(group))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::file(&path, format!("cannot read: {e}"))),
    }
}

/// Saves `group` in `config_dir` (or removes the file for `None`).
pub fn save(config_dir: &Path, group: Option<&GroupConfig>) -> Result<()> {
    let path = group_file(config_dir);
    let Some(group) = group else {
        return match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::file(&path, format!("cannot remove: {e}"))),
        };
    };
    std::fs::create_dir_all(config_dir)
        .map_err(|e| Error::file(config_dir, format!("cannot create: {e}")))?;
    let text = ron::ser::to_string_pretty(group, ron::ser::PrettyConfig::default())
        .map_err(|e| Error::file(&path, format!("cannot encode: {e}")))?;
    write_atomically(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_group_loads_back_and_removing_it_leaves_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(load(dir.path()).expect("load"), None);
        let group = GroupConfig {
            primary: "us-east-1".into(),
            secondary: "eu-west-1".into(),
            databases: Selection::Only(["orders".to_string()].into()),
            kind: ReplicationKind::ZeroLoss,
            rpo_target_s: 2.5,
            held: ["orders".to_string()].into(),
            smoke: vec!["GET greeting".into()],
            data: DataCopy::Store,
            writes: WriteRules {
                zero_loss_timeout_s: 2.0,
                rpo_guard: true,
                gc_hold_s: 3600,
            },
            drill_schedule: Some(super::super::schedule::DrillSchedule::Every { every_s: 604_800 }),
        };
        save(dir.path(), Some(&group)).expect("save");
        assert_eq!(load(dir.path()).expect("load"), Some(group));
        save(dir.path(), None).expect("remove");
        assert_eq!(load(dir.path()).expect("load"), None);
    }

    #[test]
    fn a_hand_edited_group_that_makes_no_sense_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let group = |secondary: &str, rpo: f64| GroupConfig {
            primary: "us-east-1".into(),
            secondary: secondary.into(),
            databases: Selection::All,
            kind: ReplicationKind::StorageOnly,
            rpo_target_s: rpo,
            held: BTreeSet::new(),
            smoke: Vec::new(),
            data: DataCopy::Lifeboat,
            writes: WriteRules::default(),
            drill_schedule: None,
        };
        let no_timeout = GroupConfig {
            writes: WriteRules {
                zero_loss_timeout_s: 0.0,
                rpo_guard: false,
                gc_hold_s: 0,
            },
            ..group("eu-west-1", 1.0)
        };
        for (bad, needle) in [
            (group("us-east-1", 1.0), "us-east-1 is the primary"),
            (group("eu-west-1", -1.0), "an RPO target of -1 s"),
            (no_timeout, "a zero-loss timeout of 0 s"),
        ] {
            save(dir.path(), Some(&bad)).expect("save");
            let refused = load(dir.path()).expect_err("refused");
            assert!(matches!(refused, Error::Invalid(_)), "{refused}");
            assert!(refused.to_string().contains(needle), "{refused}");
        }
        std::fs::write(group_file(dir.path()), "(primary: ").expect("write");
        let refused = load(dir.path()).expect_err("refused");
        assert!(matches!(refused, Error::Invalid(_)), "{refused}");
    }
}
