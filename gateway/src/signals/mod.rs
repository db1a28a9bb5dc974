//! Adaptive traffic signal control: the intersection model (`config`, `model`), controllers
//! behind one trait (`controller`: fixed-time Webster, actuated, max-pressure), the safety
//! supervisor that stands between every controller and every output (`safety`), the detector
//! fault monitor (`faults`) and one intersection's runtime (`runtime`). Everything here is
//! pure and deterministic with time passed in; `live` is the shell `run.rs` feeds readings
//! and ticks through, on the monotonic clock (wall time only on what leaves).
//! See `docs/signals.md`.

pub mod actuated;
pub mod config;
pub mod controller;
pub mod faults;
pub mod fixed_time;
pub mod live;
pub mod lookahead;
pub mod max_pressure;
pub mod model;
pub mod peers;
pub mod queue_model;
pub mod runtime;
pub mod safety;

pub use config::IntersectionConfig;
pub use controller::{Controller, Decision, DetectorSample, PlannedFlow, View};
pub use model::Intersection;

#[cfg(test)]
pub(crate) mod fixtures;
