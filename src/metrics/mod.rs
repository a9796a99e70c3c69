//! What people who are not looking at the app use: the Prometheus endpoint
//! (`prometheus.rs`, `server.rs`) and alerts (`alerts.rs`).

pub mod alerts;
pub mod prometheus;
pub mod server;
