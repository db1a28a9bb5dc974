//! The daemon's stages that have no module of their own elsewhere: the rules loop, signal
//! control, the one path into the outbox, and the outbox's upkeep. `run` wires them together
//! with `sources` (ingest), `actions` (local publishes) and `uplink` (uplink and downlink);
//! `docs/ARCHITECTURE.md` draws the whole topology.

pub mod records;
pub mod rules;
pub mod signals;
pub mod upkeep;
