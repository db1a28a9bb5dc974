//! The durable store-and-forward outbox: the sled shell (`store`), its pure budget and
//! time-to-live policy (`limits`), the uplink's drain pacing (`drain`), and the counters an
//! operator sees in the status.

pub mod drain;
pub mod limits;
mod store;

#[cfg(test)]
mod model_tests;

pub use store::*;
