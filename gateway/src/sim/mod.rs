//! Simulation: field devices the gateway can talk to without hardware.
pub mod field;
pub mod sensors;
pub mod sumo;
pub mod virtual_device;
