//! citygate: an edge gateway for smart-city sensors.
//!
//! Pure logic lives in small modules (`rules`, `outbox` model, `config` validation); the
//! tokio tasks around it (`broker`, `sources`, `uplink`, `run`) are thin shells.
pub mod broker;
pub mod config;
pub mod mqtt;
pub mod outbox;
pub mod rules;
pub mod status;
pub mod uplink;
pub mod sources;
pub mod run;
pub mod sim;
pub mod cli;
