//! Device logic of citygate's own field devices, `no_std` and allocation-free.
//!
//! - [`signal`]: the signal controller (plans, intergreens, sequencer, conflict monitor,
//!   watchdog fallback) and its lamp driver.
//! - [`detector`]: debounced detector loops with counts and occupancy.
//! - [`hazard`]: the hazard sensor node (water level, rain gauge, gas) with filters.
//! - [`modbus`]: the Modbus RTU slave core and its serial driver.
//! - [`bank`]: the register banks that map the protocols register maps onto the devices.
//!
//! Everything is a pure state machine fed with time (`now_ms`); drivers are thin and generic
//! over embedded-hal 1.0 traits.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod bank;
pub mod detector;
pub mod hazard;
pub mod modbus;
pub mod signal;
