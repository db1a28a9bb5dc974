//! The citygate contract, shared by the gateway, the firmware and the platform.
//!
//! The `no_std` core (always present) holds what field devices need: quality flags, SenML units
//! and the Modbus register maps of citygate devices. The `std` feature adds the records that travel
//! the uplink (readings, summaries, the envelope), the versioned topic scheme and the codecs.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod quality;
pub mod quote;
pub mod registers;
pub mod signal;
pub mod unit;

#[cfg(feature = "std")]
pub mod cap;
#[cfg(feature = "std")]
pub mod record;
#[cfg(feature = "std")]
pub mod senml;
#[cfg(feature = "std")]
pub mod topic;

pub use quality::Quality;
#[cfg(feature = "std")]
pub use record::{Body, Class, Envelope, Event, Reading, Summary};
pub use unit::{Unit, UnknownUnits};
