//! Subcommands that live in their own files (one per area).

pub mod bench;
pub mod group;
pub mod replication;
pub mod soak;
