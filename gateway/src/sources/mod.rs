//! Field-bus and broker sources that turn device data into [`citygate_protocols::Reading`]s.
pub mod modbus;
