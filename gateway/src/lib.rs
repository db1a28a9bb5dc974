//! citygate: an edge gateway for smart-city sensors.
//!
//! Pure logic lives in small modules (`rules`, `backoff`, `config` validation, the `outbox`
//! key scheme); the tokio tasks around it (`broker`, `sources`, `stages`, `actions`,
//! `uplink`) are thin shells, `run` builds the daemon's topology from them (see
//! `docs/ARCHITECTURE.md`), and `cli` is the command line.
pub mod actions;
pub mod backoff;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod field;
pub mod http;
pub mod logging;
pub mod mqtt;
pub mod outbox;
pub mod rules;
pub mod run;
pub mod secret;
pub mod signals;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sources;
pub mod stages;
pub mod status;
pub mod tls;
pub mod uplink;
