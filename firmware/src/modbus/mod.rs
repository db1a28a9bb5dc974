//! Modbus RTU slave: CRC-16, frame timing and request parsing, the pure slave core that maps
//! requests onto a [`RegisterBank`], and a thin RS-485 serial driver.

pub mod crc;
pub mod frame;
pub mod serial;
pub mod slave;

pub use frame::{FrameAssembler, Request};
pub use slave::{RtuSlave, SlaveCounters};

/// Modbus exception codes (application protocol spec, section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exception {
    /// 01: the function code is not supported.
    IllegalFunction = 0x01,
    /// 02: the address (or address + quantity) is not served.
    IllegalDataAddress = 0x02,
    /// 03: a value in the request is not allowed (quantity, byte count, coil value, setting).
    IllegalDataValue = 0x03,
    /// 04: the device failed while performing the action.
    ServerDeviceFailure = 0x04,
}

impl core::fmt::Display for Exception {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self {
            Exception::IllegalFunction => "illegal function",
            Exception::IllegalDataAddress => "illegal data address",
            Exception::IllegalDataValue => "illegal data value",
            Exception::ServerDeviceFailure => "server device failure",
        };
        write!(f, "modbus exception {:02}: {what}", self.code())
    }
}

impl core::error::Error for Exception {}

impl Exception {
    /// The exception code byte.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// The four Modbus tables of a device, read and written a block at a time.
///
/// A write of several points must be validated as a whole before anything changes, so that a
/// rejected request leaves the device as it was.
pub trait RegisterBank {
    /// Function 1: fills `out` with the coils from `address`.
    fn read_coils(&mut self, address: u16, out: &mut [bool]) -> Result<(), Exception>;
    /// Function 2: fills `out` with the discrete inputs from `address`.
    fn read_discrete_inputs(&mut self, address: u16, out: &mut [bool]) -> Result<(), Exception>;
    /// Function 3: fills `out` with the holding registers from `address`.
    fn read_holding_registers(&mut self, address: u16, out: &mut [u16]) -> Result<(), Exception>;
    /// Function 4: fills `out` with the input registers from `address`.
    fn read_input_registers(&mut self, address: u16, out: &mut [u16]) -> Result<(), Exception>;
    /// Functions 5 and 15: writes `values` to the coils from `address`.
    fn write_coils(&mut self, address: u16, values: &[bool]) -> Result<(), Exception>;
    /// Functions 6 and 16: writes `values` to the holding registers from `address`.
    fn write_registers(&mut self, address: u16, values: &[u16]) -> Result<(), Exception>;
}

/// Checks that `address..address+len` lies inside a table of `size` points.
pub fn check_range(address: u16, len: usize, size: u16) -> Result<(), Exception> {
    if (address as usize).saturating_add(len) <= size as usize {
        Ok(())
    } else {
        Err(Exception::IllegalDataAddress)
    }
}
