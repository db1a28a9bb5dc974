//! The RTU slave core: one request frame in, at most one response frame out. Pure: no I/O,
//! no clock. Silent on a bad CRC, a frame for another unit, and (after acting) on broadcasts.

use super::crc::{crc16, frame_crc_ok};
use super::frame::{Request, MAX_FRAME};
use super::{Exception, RegisterBank};

/// The broadcast unit id: writes are performed, nothing is answered.
pub const BROADCAST: u8 = 0;

/// Diagnostic counters (as in the serial line spec's diagnostics, function 8 not served).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlaveCounters {
    /// Frames with a correct CRC seen on the bus, any unit.
    pub bus_messages: u32,
    /// Frames dropped for a bad CRC or a length below 4.
    pub crc_errors: u32,
    /// Requests addressed to this unit (or broadcast).
    pub slave_messages: u32,
    /// Exception responses sent.
    pub exceptions: u32,
    /// Broadcast requests handled without answer.
    pub broadcasts: u32,
    /// Responses that did not fit the caller's buffer (dropped).
    pub overruns: u32,
}

/// A Modbus RTU slave with a unit id. See [`RtuSlave::handle_frame`].
#[derive(Debug, Clone)]
pub struct RtuSlave {
    unit_id: u8,
    counters: SlaveCounters,
}

/// Writes into a caller's buffer, tracking overflow instead of panicking.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflow: bool,
}

impl Writer<'_> {
    fn put(&mut self, byte: u8) {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }
    fn put_u16(&mut self, v: u16) {
        let [hi, lo] = v.to_be_bytes();
        self.put(hi);
        self.put(lo);
    }
    fn finish(mut self) -> Option<usize> {
        let crc = crc16(self.buf.get(..self.len).unwrap_or(&[]));
        self.put((crc & 0xFF) as u8);
        self.put((crc >> 8) as u8);
        (!self.overflow).then_some(self.len)
    }
}

fn bit(packed: &[u8], i: usize) -> bool {
    packed.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

impl RtuSlave {
    /// A slave answering to `unit_id` (1..=247).
    pub const fn new(unit_id: u8) -> Self {
        RtuSlave {
            unit_id,
            counters: SlaveCounters {
                bus_messages: 0,
                crc_errors: 0,
                slave_messages: 0,
                exceptions: 0,
                broadcasts: 0,
                overruns: 0,
            },
        }
    }

    /// This slave's unit id.
    pub const fn unit_id(&self) -> u8 {
        self.unit_id
    }

    /// The diagnostic counters.
    pub const fn counters(&self) -> &SlaveCounters {
        &self.counters
    }

    /// Handles one complete RTU frame `req` (address, PDU, CRC) against `bank`. Writes the
    /// response frame into `resp` (256 bytes always suffice) and returns its length, or `None`
    /// when nothing must be sent: bad CRC, another unit, broadcast, or `resp` too small.
    pub fn handle_frame<B: RegisterBank + ?Sized>(
        &mut self,
        bank: &mut B,
        req: &[u8],
        resp: &mut [u8],
    ) -> Option<usize> {
        if req.len() < 4 || req.len() > MAX_FRAME || !frame_crc_ok(req) {
            self.counters.crc_errors = self.counters.crc_errors.wrapping_add(1);
            return None;
        }
        self.counters.bus_messages = self.counters.bus_messages.wrapping_add(1);
        let unit = *req.first()?;
        if unit != self.unit_id && unit != BROADCAST {
            return None;
        }
        self.counters.slave_messages = self.counters.slave_messages.wrapping_add(1);
        let pdu = req.get(1..req.len() - 2)?;
        let function = *pdu.first()?;
        let parsed = Request::parse(pdu);
        if unit == BROADCAST {
            // Only writes make sense as broadcast; nothing is ever answered.
            if let Ok(r) = parsed {
                if r.is_write() {
                    let _ = Self::execute(
                        bank,
                        &r,
                        &mut Writer {
                            buf: &mut [],
                            len: 0,
                            overflow: false,
                        },
                    );
                }
            }
            self.counters.broadcasts = self.counters.broadcasts.wrapping_add(1);
            return None;
        }
        let mut w = Writer {
            buf: resp,
            len: 0,
            overflow: false,
        };
        w.put(unit);
        w.put(function);
        let outcome = parsed.and_then(|r| Self::execute(bank, &r, &mut w));
        if let Err(e) = outcome {
            self.counters.exceptions = self.counters.exceptions.wrapping_add(1);
            w.len = 1;
            w.overflow = false;
            w.put(function | 0x80);
            w.put(e.code());
        }
        let n = w.finish();
        if n.is_none() {
            self.counters.overruns = self.counters.overruns.wrapping_add(1);
        }
        n
    }

    /// Performs `r` and appends the response PDU after the function code.
    fn execute<B: RegisterBank + ?Sized>(
        bank: &mut B,
        r: &Request<'_>,
        w: &mut Writer<'_>,
    ) -> Result<(), Exception> {
        match *r {
            Request::ReadCoils { address, quantity }
            | Request::ReadDiscreteInputs { address, quantity } => {
                let mut bits = [false; 2000];
                let bits = bits
                    .get_mut(..quantity as usize)
                    .ok_or(Exception::IllegalDataValue)?;
                if matches!(r, Request::ReadCoils { .. }) {
                    bank.read_coils(address, bits)?;
                } else {
                    bank.read_discrete_inputs(address, bits)?;
                }
                w.put(bits.len().div_ceil(8) as u8);
                for chunk in bits.chunks(8) {
                    w.put(
                        chunk
                            .iter()
                            .enumerate()
                            .fold(0u8, |acc, (i, &b)| acc | ((b as u8) << i)),
                    );
                }
            }
            Request::ReadHoldingRegisters { address, quantity }
            | Request::ReadInputRegisters { address, quantity } => {
                let mut regs = [0u16; 125];
                let regs = regs
                    .get_mut(..quantity as usize)
                    .ok_or(Exception::IllegalDataValue)?;
                if matches!(r, Request::ReadHoldingRegisters { .. }) {
                    bank.read_holding_registers(address, regs)?;
                } else {
                    bank.read_input_registers(address, regs)?;
                }
                w.put(regs.len() as u8 * 2);
                regs.iter().for_each(|&v| w.put_u16(v));
            }
            Request::WriteSingleCoil { address, value } => {
                bank.write_coils(address, &[value])?;
                w.put_u16(address);
                w.put_u16(if value { 0xFF00 } else { 0x0000 });
            }
            Request::WriteSingleRegister { address, value } => {
                bank.write_registers(address, &[value])?;
                w.put_u16(address);
                w.put_u16(value);
            }
            Request::WriteMultipleCoils {
                address,
                quantity,
                packed,
            } => {
                let mut bits = [false; 1968];
                let bits = bits
                    .get_mut(..quantity as usize)
                    .ok_or(Exception::IllegalDataValue)?;
                for (i, b) in bits.iter_mut().enumerate() {
                    *b = bit(packed, i);
                }
                bank.write_coils(address, bits)?;
                w.put_u16(address);
                w.put_u16(quantity);
            }
            Request::WriteMultipleRegisters {
                address,
                quantity,
                data,
            } => {
                let mut regs = [0u16; 123];
                let regs = regs
                    .get_mut(..quantity as usize)
                    .ok_or(Exception::IllegalDataValue)?;
                for (v, pair) in regs.iter_mut().zip(data.chunks_exact(2)) {
                    *v = u16::from_be_bytes([pair[0], pair[1]]);
                }
                bank.write_registers(address, regs)?;
                w.put_u16(address);
                w.put_u16(quantity);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::check_range;
    use super::*;
    use std::{format, vec::Vec};

    /// A plain memory bank, sized like the published examples need (addresses up to 0xFF).
    struct MemoryBank {
        coils: [bool; 256],
        discrete: [bool; 256],
        holding: [u16; 256],
        input: [u16; 256],
        fail_writes: bool,
    }

    impl MemoryBank {
        fn new() -> Self {
            MemoryBank {
                coils: [false; 256],
                discrete: [false; 256],
                holding: [0; 256],
                input: [0; 256],
                fail_writes: false,
            }
        }
        fn set_bits(table: &mut [bool; 256], start: usize, packed: &[u8], n: usize) {
            for i in 0..n {
                table[start + i] = bit(packed, i);
            }
        }
    }

    fn read<T: Copy>(table: &[T], address: u16, out: &mut [T]) -> Result<(), Exception> {
        check_range(address, out.len(), table.len() as u16)?;
        out.copy_from_slice(&table[address as usize..address as usize + out.len()]);
        Ok(())
    }

    impl RegisterBank for MemoryBank {
        fn read_coils(&mut self, a: u16, out: &mut [bool]) -> Result<(), Exception> {
            read(&self.coils, a, out)
        }
        fn read_discrete_inputs(&mut self, a: u16, out: &mut [bool]) -> Result<(), Exception> {
            read(&self.discrete, a, out)
        }
        fn read_holding_registers(&mut self, a: u16, out: &mut [u16]) -> Result<(), Exception> {
            read(&self.holding, a, out)
        }
        fn read_input_registers(&mut self, a: u16, out: &mut [u16]) -> Result<(), Exception> {
            read(&self.input, a, out)
        }
        fn write_coils(&mut self, a: u16, v: &[bool]) -> Result<(), Exception> {
            check_range(a, v.len(), 256)?;
            self.coils[a as usize..a as usize + v.len()].copy_from_slice(v);
            Ok(())
        }
        fn write_registers(&mut self, a: u16, v: &[u16]) -> Result<(), Exception> {
            if self.fail_writes {
                return Err(Exception::ServerDeviceFailure);
            }
            check_range(a, v.len(), 256)?;
            self.holding[a as usize..a as usize + v.len()].copy_from_slice(v);
            Ok(())
        }
    }

    fn run(slave: &mut RtuSlave, bank: &mut MemoryBank, req: &[u8]) -> Option<Vec<u8>> {
        let mut resp = [0u8; 256];
        slave
            .handle_frame(bank, req, &mut resp)
            .map(|n| resp[..n].to_vec())
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    // Published RTU examples for slave 17 (0x11): registers 40108-40110, coils 20-56,
    // coil 173, register 40002, coils 20-29, registers 40002-40003, input register 30009.
    #[test]
    fn read_holding_registers_published_frame() {
        let mut bank = MemoryBank::new();
        bank.holding[0x6B..0x6E].copy_from_slice(&[0xAE41, 0x5652, 0x4340]);
        let mut s = RtuSlave::new(0x11);
        assert_eq!(
            run(&mut s, &mut bank, &hex("11 03 00 6B 00 03 76 87")),
            Some(hex("11 03 06 AE 41 56 52 43 40 49 AD"))
        );
    }

    #[test]
    fn read_holding_registers_unit_1_application_spec_values() {
        // Application protocol spec 6.3: registers 108-110 hold 0x022B, 0x0000, 0x0064.
        let mut bank = MemoryBank::new();
        bank.holding[0x6B..0x6E].copy_from_slice(&[0x022B, 0x0000, 0x0064]);
        let mut s = RtuSlave::new(1);
        assert_eq!(
            run(&mut s, &mut bank, &hex("01 03 00 6B 00 03 74 17")),
            Some(hex("01 03 06 02 2B 00 00 00 64 05 7A"))
        );
    }

    #[test]
    fn read_coils_published_frame() {
        let mut bank = MemoryBank::new();
        MemoryBank::set_bits(&mut bank.coils, 0x13, &[0xCD, 0x6B, 0xB2, 0x0E, 0x1B], 37);
        let mut s = RtuSlave::new(0x11);
        assert_eq!(
            run(&mut s, &mut bank, &hex("11 01 00 13 00 25 0E 84")),
            Some(hex("11 01 05 CD 6B B2 0E 1B 45 E6"))
        );
    }

    #[test]
    fn read_discrete_inputs_application_spec_values() {
        // Application protocol spec 6.2: inputs 197-218 read AC DB 35.
        let mut bank = MemoryBank::new();
        MemoryBank::set_bits(&mut bank.discrete, 0xC4, &[0xAC, 0xDB, 0x35], 22);
        let mut s = RtuSlave::new(0x11);
        let resp = run(&mut s, &mut bank, &hex("11 02 00 C4 00 16 BA A9")).expect("answer");
        assert_eq!(&resp[..6], &hex("11 02 03 AC DB 35")[..]);
        assert!(frame_crc_ok(&resp));
    }

    #[test]
    fn read_input_register_published_frame() {
        let mut bank = MemoryBank::new();
        bank.input[8] = 0x000A;
        let mut s = RtuSlave::new(0x11);
        assert_eq!(
            run(&mut s, &mut bank, &hex("11 04 00 08 00 01 B2 98")),
            Some(hex("11 04 02 00 0A F8 F4"))
        );
    }

    #[test]
    fn write_single_coil_and_register_echo() {
        let mut bank = MemoryBank::new();
        let mut s = RtuSlave::new(0x11);
        let req = hex("11 05 00 AC FF 00 4E 8B");
        assert_eq!(run(&mut s, &mut bank, &req), Some(req.clone()));
        assert!(bank.coils[0xAC]);
        let req = hex("11 06 00 01 00 03 9A 9B");
        assert_eq!(run(&mut s, &mut bank, &req), Some(req.clone()));
        assert_eq!(bank.holding[1], 3);
    }

    #[test]
    fn write_multiple_coils_and_registers_published_frames() {
        let mut bank = MemoryBank::new();
        let mut s = RtuSlave::new(0x11);
        assert_eq!(
            run(&mut s, &mut bank, &hex("11 0F 00 13 00 0A 02 CD 01 BF 0B")),
            Some(hex("11 0F 00 13 00 0A 26 99"))
        );
        let expect = [
            true, false, true, true, false, false, true, true, true, false,
        ];
        assert_eq!(&bank.coils[0x13..0x1D], &expect);
        assert!(!bank.coils[0x1D]);
        assert_eq!(
            run(
                &mut s,
                &mut bank,
                &hex("11 10 00 01 00 02 04 00 0A 01 02 C6 F0")
            ),
            Some(hex("11 10 00 01 00 02 12 98"))
        );
        assert_eq!(&bank.holding[1..3], &[0x000A, 0x0102]);
    }

    #[test]
    fn exceptions() {
        let mut bank = MemoryBank::new();
        let mut s = RtuSlave::new(1);
        let frame = |pdu: &str| {
            let mut f = hex(&format!("01 {pdu}"));
            let c = crc16(&f);
            f.extend_from_slice(&c.to_le_bytes());
            f
        };
        // unknown function 0x2B → 01 AB 01
        assert_eq!(
            run(&mut s, &mut bank, &frame("2B 0E 01 00")),
            Some(frame("AB 01"))
        );
        // read past the bank → illegal data address
        assert_eq!(
            run(&mut s, &mut bank, &frame("03 00 FF 00 02")),
            Some(frame("83 02"))
        );
        // quantity 0 → illegal data value
        assert_eq!(
            run(&mut s, &mut bank, &frame("04 00 00 00 00")),
            Some(frame("84 03"))
        );
        // device failure from the bank
        bank.fail_writes = true;
        assert_eq!(
            run(&mut s, &mut bank, &frame("06 00 01 00 03")),
            Some(frame("86 04"))
        );
        assert_eq!(s.counters().exceptions, 4);
    }

    #[test]
    fn silence_on_bad_crc_other_unit_and_broadcast() {
        let mut bank = MemoryBank::new();
        let mut s = RtuSlave::new(0x11);
        assert_eq!(
            run(&mut s, &mut bank, &hex("11 03 00 6B 00 03 76 88")),
            None
        );
        assert_eq!(
            run(&mut s, &mut bank, &hex("01 03 00 6B 00 03 74 17")),
            None
        );
        assert_eq!(s.counters().crc_errors, 1);
        assert_eq!(s.counters().bus_messages, 1);
        // broadcast write is performed but not answered
        let mut f = hex("00 06 00 01 00 2A");
        let c = crc16(&f);
        f.extend_from_slice(&c.to_le_bytes());
        assert_eq!(run(&mut s, &mut bank, &f), None);
        assert_eq!(bank.holding[1], 42);
    }

    #[test]
    fn small_response_buffer_is_not_a_panic() {
        let mut bank = MemoryBank::new();
        let mut s = RtuSlave::new(0x11);
        let mut resp = [0u8; 5];
        assert_eq!(
            s.handle_frame(&mut bank, &hex("11 03 00 6B 00 03 76 87"), &mut resp),
            None
        );
        assert_eq!(s.counters().overruns, 1);
    }
}
