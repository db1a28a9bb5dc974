//! Sources: where readings come from (the local MQTT broker, Modbus field buses).
pub mod modbus;
pub mod mqtt;
