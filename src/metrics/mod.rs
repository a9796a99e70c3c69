//! What people who are not looking at the app use: the Prometheus endpoint
//! (`prometheus.rs`, `server.rs`) alerts (`alerts.rs`), the
//! samples kept on disk (`samples.rs`) and the monthly DR report (`month.rs`).

pub mod alerts;
pub mod month;
pub mod prometheus;
pub mod samples;
pub mod server;
