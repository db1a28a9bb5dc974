//! RTU framing: the 1.5- and 3.5-character silent intervals, a byte-stream frame assembler, and
//! parsing of request PDUs into [`Request`]s (with the exception each malformed request earns).

use super::Exception;

/// Largest RTU frame: address + 253-byte PDU + CRC.
pub const MAX_FRAME: usize = 256;

/// Bits per character in RTU mode: start + 8 data + parity (or a second stop) + stop.
const BITS_PER_CHAR: u64 = 11;

/// The inter-frame silence t3.5 in µs: 3.5 characters, fixed at 1750 µs above 19200 baud
/// (Modbus over serial line, 2.5.1.1). A baud rate of 0 yields the fixed value.
pub const fn t35_us(baud: u32) -> u32 {
    if baud == 0 || baud > 19_200 {
        1_750
    } else {
        // 3.5 × 11 bits × 1e6 / baud, rounded up
        (35 * BITS_PER_CHAR * 1_000_000).div_ceil(10 * baud as u64) as u32
    }
}

/// The inter-character limit t1.5 in µs, fixed at 750 µs above 19200 baud.
pub const fn t15_us(baud: u32) -> u32 {
    if baud == 0 || baud > 19_200 {
        750
    } else {
        (15 * BITS_PER_CHAR * 1_000_000).div_ceil(10 * baud as u64) as u32
    }
}

/// Collects bytes from the line into frames using the silent intervals: a gap of t3.5 ends a
/// frame; a gap above t1.5 inside a frame, or an overlong frame, marks it bad (discarded).
#[derive(Debug)]
pub struct FrameAssembler {
    buf: heapless::Vec<u8, MAX_FRAME>,
    last_byte_us: u64,
    t15: u64,
    t35: u64,
    bad: bool,
    discarded: u32,
}

impl FrameAssembler {
    /// An assembler for a line at `baud`.
    pub fn new(baud: u32) -> Self {
        FrameAssembler {
            buf: heapless::Vec::new(),
            last_byte_us: 0,
            t15: t15_us(baud) as u64,
            t35: t35_us(baud) as u64,
            bad: false,
            discarded: 0,
        }
    }

    /// Frames thrown away for a t1.5 violation or overflow.
    pub fn discarded(&self) -> u32 {
        self.discarded
    }

    /// Takes one received byte at `now_us`. Returns a frame completed by the silence before
    /// this byte (when [`poll`](Self::poll) was not called in time), copied into `out`.
    pub fn push(&mut self, byte: u8, now_us: u64, out: &mut [u8]) -> Option<usize> {
        let mut done = None;
        if !self.buf.is_empty() {
            let gap = now_us.saturating_sub(self.last_byte_us);
            if gap >= self.t35 {
                done = self.take(out);
            } else if gap > self.t15 {
                self.bad = true;
            }
        }
        if self.buf.push(byte).is_err() {
            self.bad = true;
        }
        self.last_byte_us = now_us;
        done
    }

    /// Returns a complete frame, copied into `out`, once t3.5 has passed since its last byte.
    pub fn poll(&mut self, now_us: u64, out: &mut [u8]) -> Option<usize> {
        if !self.buf.is_empty() && now_us.saturating_sub(self.last_byte_us) >= self.t35 {
            self.take(out)
        } else {
            None
        }
    }

    fn take(&mut self, out: &mut [u8]) -> Option<usize> {
        let n = self.buf.len();
        let ok = !self.bad && n <= out.len();
        if ok {
            out[..n].copy_from_slice(&self.buf);
        } else {
            self.discarded = self.discarded.wrapping_add(1);
        }
        self.buf.clear();
        self.bad = false;
        ok.then_some(n)
    }
}

/// A parsed request PDU. Multi-point writes borrow their data from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// 0x01
    ReadCoils { address: u16, quantity: u16 },
    /// 0x02
    ReadDiscreteInputs { address: u16, quantity: u16 },
    /// 0x03
    ReadHoldingRegisters { address: u16, quantity: u16 },
    /// 0x04
    ReadInputRegisters { address: u16, quantity: u16 },
    /// 0x05
    WriteSingleCoil { address: u16, value: bool },
    /// 0x06
    WriteSingleRegister { address: u16, value: u16 },
    /// 0x0F: `packed` holds `quantity` bits, LSB of the first byte = first coil.
    WriteMultipleCoils {
        address: u16,
        quantity: u16,
        packed: &'a [u8],
    },
    /// 0x10: `data` holds `quantity` big-endian registers.
    WriteMultipleRegisters {
        address: u16,
        quantity: u16,
        data: &'a [u8],
    },
}

fn be(pdu: &[u8], at: usize) -> Result<u16, Exception> {
    match (pdu.get(at), pdu.get(at + 1)) {
        (Some(&hi), Some(&lo)) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(Exception::IllegalDataValue),
    }
}

/// Checks quantity bounds (exception 03) and then the address range (exception 02).
fn bounded(address: u16, quantity: u16, max: u16) -> Result<(), Exception> {
    if quantity == 0 || quantity > max {
        return Err(Exception::IllegalDataValue);
    }
    if address as u32 + quantity as u32 > 0x1_0000 {
        return Err(Exception::IllegalDataAddress);
    }
    Ok(())
}

impl<'a> Request<'a> {
    /// Parses a PDU (function code first, no address or CRC). An unknown function gives
    /// exception 01, a bad length, quantity, byte count or coil value exception 03, a range
    /// past 0xFFFF exception 02.
    pub fn parse(pdu: &'a [u8]) -> Result<Self, Exception> {
        let function = *pdu.first().ok_or(Exception::IllegalFunction)?;
        let fixed_len = |n: usize| {
            if pdu.len() == n {
                Ok(())
            } else {
                Err(Exception::IllegalDataValue)
            }
        };
        match function {
            0x01..=0x04 => {
                fixed_len(5)?;
                let (address, quantity) = (be(pdu, 1)?, be(pdu, 3)?);
                let max = if function <= 0x02 { 2000 } else { 125 };
                bounded(address, quantity, max)?;
                Ok(match function {
                    0x01 => Request::ReadCoils { address, quantity },
                    0x02 => Request::ReadDiscreteInputs { address, quantity },
                    0x03 => Request::ReadHoldingRegisters { address, quantity },
                    _ => Request::ReadInputRegisters { address, quantity },
                })
            }
            0x05 => {
                fixed_len(5)?;
                let value = match be(pdu, 3)? {
                    0xFF00 => true,
                    0x0000 => false,
                    _ => return Err(Exception::IllegalDataValue),
                };
                Ok(Request::WriteSingleCoil {
                    address: be(pdu, 1)?,
                    value,
                })
            }
            0x06 => {
                fixed_len(5)?;
                Ok(Request::WriteSingleRegister {
                    address: be(pdu, 1)?,
                    value: be(pdu, 3)?,
                })
            }
            0x0F | 0x10 => {
                let (address, quantity) = (be(pdu, 1)?, be(pdu, 3)?);
                let byte_count = *pdu.get(5).ok_or(Exception::IllegalDataValue)? as usize;
                let (max, expected) = if function == 0x0F {
                    (1968, (quantity as usize).div_ceil(8))
                } else {
                    (123, quantity as usize * 2)
                };
                if quantity == 0 || quantity > max || byte_count != expected {
                    return Err(Exception::IllegalDataValue);
                }
                fixed_len(6 + byte_count)?;
                bounded(address, quantity, max)?;
                let data = pdu.get(6..).ok_or(Exception::IllegalDataValue)?;
                Ok(if function == 0x0F {
                    Request::WriteMultipleCoils {
                        address,
                        quantity,
                        packed: data,
                    }
                } else {
                    Request::WriteMultipleRegisters {
                        address,
                        quantity,
                        data,
                    }
                })
            }
            _ => Err(Exception::IllegalFunction),
        }
    }

    /// The function code.
    pub const fn function(&self) -> u8 {
        match self {
            Request::ReadCoils { .. } => 0x01,
            Request::ReadDiscreteInputs { .. } => 0x02,
            Request::ReadHoldingRegisters { .. } => 0x03,
            Request::ReadInputRegisters { .. } => 0x04,
            Request::WriteSingleCoil { .. } => 0x05,
            Request::WriteSingleRegister { .. } => 0x06,
            Request::WriteMultipleCoils { .. } => 0x0F,
            Request::WriteMultipleRegisters { .. } => 0x10,
        }
    }

    /// Whether the request changes the device (and so may be broadcast).
    pub const fn is_write(&self) -> bool {
        self.function() >= 0x05
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_intervals_follow_the_serial_line_spec() {
        assert_eq!(t35_us(9600), 4011); // 38.5 bits / 9600 baud = 4010.4 µs
        assert_eq!(t15_us(9600), 1719);
        assert_eq!(t35_us(19_200), 2006);
        assert_eq!(t35_us(38_400), 1750);
        assert_eq!(t15_us(115_200), 750);
    }

    #[test]
    fn assembler_splits_on_t35_and_drops_t15_violations() {
        let mut a = FrameAssembler::new(9600);
        let mut out = [0u8; MAX_FRAME];
        let mut t = 0;
        for b in [1u8, 2, 3] {
            assert_eq!(a.push(b, t, &mut out), None);
            t += 1146; // one character at 9600 baud
        }
        assert_eq!(a.poll(t + 1000, &mut out), None, "too early");
        assert_eq!(a.poll(t - 1146 + 4011, &mut out), Some(3));
        assert_eq!(&out[..3], &[1, 2, 3]);
        // a 2 ms gap inside a frame (> t1.5, < t3.5) spoils it
        a.push(9, 100_000, &mut out);
        a.push(9, 102_000, &mut out);
        assert_eq!(a.poll(110_000, &mut out), None);
        assert_eq!(a.discarded(), 1);
        // a new byte after t3.5 closes the previous frame even without poll
        a.push(7, 200_000, &mut out);
        assert_eq!(a.push(8, 205_000, &mut out), Some(1));
        assert_eq!(out[0], 7);
    }

    #[test]
    fn parse_rejects_bad_quantities_lengths_and_functions() {
        assert_eq!(
            Request::parse(&[0x03, 0x00, 0x6B, 0x00, 0x03]),
            Ok(Request::ReadHoldingRegisters {
                address: 0x6B,
                quantity: 3
            })
        );
        assert_eq!(
            Request::parse(&[0x03, 0x00, 0x00, 0x00, 0x7E]),
            Err(Exception::IllegalDataValue)
        );
        assert_eq!(
            Request::parse(&[0x03, 0x00, 0x00, 0x00, 0x00]),
            Err(Exception::IllegalDataValue)
        );
        assert_eq!(
            Request::parse(&[0x03, 0xFF, 0xFF, 0x00, 0x02]),
            Err(Exception::IllegalDataAddress)
        );
        assert_eq!(
            Request::parse(&[0x03, 0x00, 0x00]),
            Err(Exception::IllegalDataValue)
        );
        assert_eq!(
            Request::parse(&[0x05, 0x00, 0xAC, 0x12, 0x34]),
            Err(Exception::IllegalDataValue)
        );
        assert_eq!(
            Request::parse(&[0x2B, 0x0E]),
            Err(Exception::IllegalFunction)
        );
        // byte count disagrees with quantity
        assert_eq!(
            Request::parse(&[0x10, 0x00, 0x01, 0x00, 0x02, 0x03, 0, 1, 2]),
            Err(Exception::IllegalDataValue)
        );
        assert_eq!(
            Request::parse(&[0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01]),
            Ok(Request::WriteMultipleCoils {
                address: 0x13,
                quantity: 10,
                packed: &[0xCD, 0x01]
            })
        );
    }
}
