//! Simulation: field devices the gateway can talk to without hardware (the firmware as virtual
//! Modbus devices, MQTT detectors), the `citygate demo` built on them, and SUMO
//! software-in-the-loop (`citygate sumo`). Compiled only with the `sim` cargo feature (on by
//! default); a cabinet build (`--no-default-features`) leaves the whole module out.
pub mod demo;
pub mod field;
pub mod sensors;
pub mod sumo;
pub mod virtual_device;
