//! The shared harness of citygate's end-to-end tests: brokers, gateway processes, collectors.
pub mod modbus;
