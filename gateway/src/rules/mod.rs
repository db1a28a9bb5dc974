//! Local rules: pure, deterministic state machines fed with readings and the time.
pub mod hazard;
pub mod summary;
