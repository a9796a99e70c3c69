//! Pins: files in a region that something other than the replica's newest
//! manifest still needs (a branch forked from the replica, a checkpoint, a
//! point-in-time retention window). A file deleted at home is deleted at a
//! replica only when no pin holds it (invariant 3).
//!
//! Branches, checkpoints and retention windows arrive in later issues; they
//! implement [`Pins`] and hand it to the replicator.

use super::files::FileRef;

/// Says whether a file of a branch replica must be kept.
pub trait Pins: Send + Sync {
    /// True when `file` of `db`/`branch` in `region` must not be deleted.
    fn holds(&self, region: &str, db: &str, branch: &str, file: &FileRef) -> bool;
}

/// No pins: only the replica's own manifests keep files.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPins;

impl Pins for NoPins {
    fn holds(&self, _: &str, _: &str, _: &str, _: &FileRef) -> bool {
        false
    }
}
