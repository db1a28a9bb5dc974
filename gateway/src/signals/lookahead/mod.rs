//! The look-ahead controller (schedule-driven, after SURTRAC): [`schedule`] plans the stage
//! sequence and green durations that minimise delay over a rolling horizon.
pub mod arrivals;
pub mod core;
pub mod schedule;
