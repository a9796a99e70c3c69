//! Lifeboat: cross-region disaster recovery for databases that live in
//! object storage. See DESIGN.md (shared) and ARCHITECTURE.md for the map.

pub mod about;
pub mod config;
pub mod control;
pub mod cost;
pub mod engine;
pub mod error;
pub mod gui;
pub mod logging;
pub mod metrics;
pub mod orchestrator;
pub mod region;
pub mod replication;
pub mod soak;
pub mod storage;
pub mod workload;
pub mod workspace;

pub use error::{Error, Result};
