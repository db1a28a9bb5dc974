//! The citygate contract, shared by the gateway, the firmware and the platform.
//!
//! The `no_std` core (always present) holds what field devices need: quality flags, SenML units
//! and the Modbus register maps of citygate devices. The `std` feature adds the records that travel
//! the uplink (readings, summaries, the envelope), the versioned topic scheme and the codecs.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod quality;
pub mod unit;

#[cfg(feature = "std")]
pub mod record;

pub use quality::Quality;
pub use unit::Unit;
#[cfg(feature = "std")]
pub use record::{Body, Class, Envelope, Event, Reading, Summary};
