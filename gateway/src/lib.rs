//! citygate: an edge gateway for smart-city sensors.
//!
//! Pure logic lives in small modules (`rules`, `outbox` model, `config` validation); the
//! tokio tasks around it (`broker`, `sources`, `uplink`, `run`) are thin shells.
pub mod config;
pub mod sources;
