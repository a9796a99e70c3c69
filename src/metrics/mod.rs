//! What people who are not looking at the app use: the Prometheus endpoint
//! (`prometheus.rs`, `server.rs`).

pub mod prometheus;
pub mod server;
