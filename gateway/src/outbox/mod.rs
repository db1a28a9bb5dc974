//! The durable store-and-forward outbox: the sled shell (`store`), its pure budget and
//! time-to-live policy (`limits`), the uplink's drain pacing (`drain`), the counters an
//! operator sees in the status (`counters`), the state other stages keep durably beside the
//! records (`state`), and the sequence floor kept outside the store (`floor`).

mod counters;
pub mod drain;
mod floor;
pub mod limits;
mod state;
mod store;

#[cfg(test)]
mod model_tests;

pub use counters::*;
pub use floor::FloorError;
pub use store::*;
