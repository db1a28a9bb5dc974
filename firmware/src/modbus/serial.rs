//! Thin RS-485 driver around [`RtuSlave`]: reads bytes from an embedded-hal-nb serial port,
//! frames them by silence, answers through the slave core with the driver-enable pin raised.

use embedded_hal::digital::OutputPin;
use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{Read, Write};

use super::frame::{FrameAssembler, MAX_FRAME};
use super::{RegisterBank, RtuSlave};

/// A serial or pin failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<S, P> {
    /// The UART reported an error (framing, parity, overrun...).
    Serial(S),
    /// The RS-485 driver-enable pin failed.
    Pin(P),
}

impl<S: core::fmt::Debug, P: core::fmt::Debug> core::error::Error for Error<S, P> {}

impl<S: core::fmt::Debug, P: core::fmt::Debug> core::fmt::Display for Error<S, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Serial(e) => write!(f, "modbus rtu serial port: {e:?}"),
            Error::Pin(e) => write!(f, "modbus rtu driver-enable pin: {e:?}"),
        }
    }
}

/// An RTU slave on a half-duplex RS-485 line.
#[derive(Debug)]
pub struct RtuSerial<S, DE> {
    port: S,
    driver_enable: DE,
    assembler: FrameAssembler,
    slave: RtuSlave,
    frame: [u8; MAX_FRAME],
    response: [u8; MAX_FRAME],
    line_errors: u32,
    late_answers: u32,
}

type SerialErr<S, DE> = Error<
    <S as embedded_hal_nb::serial::ErrorType>::Error,
    <DE as embedded_hal::digital::ErrorType>::Error,
>;

impl<S, DE> RtuSerial<S, DE>
where
    S: Read<u8> + Write<u8>,
    DE: OutputPin,
{
    /// Wraps `port` at `baud`; `driver_enable` is high while transmitting.
    pub fn new(port: S, driver_enable: DE, baud: u32, slave: RtuSlave) -> Self {
        RtuSerial {
            port,
            driver_enable,
            assembler: FrameAssembler::new(baud),
            slave,
            frame: [0; MAX_FRAME],
            response: [0; MAX_FRAME],
            line_errors: 0,
            late_answers: 0,
        }
    }

    /// The slave core (counters, unit id).
    pub fn slave(&self) -> &RtuSlave {
        &self.slave
    }

    /// UART errors seen while receiving (the frame in progress is spoiled by the gap they leave).
    pub fn line_errors(&self) -> u32 {
        self.line_errors
    }

    /// Answers not sent because [`poll`](Self::poll) came too late: the next frame had already
    /// begun. Poll more often than t3.5 if this grows.
    pub fn late_answers(&self) -> u32 {
        self.late_answers
    }

    /// Gives back the port and the pin.
    pub fn release(self) -> (S, DE) {
        (self.port, self.driver_enable)
    }

    /// Call often (every few hundred µs): drains received bytes stamped `now_us`, and when a
    /// frame is complete answers it from `bank`. Returns the number of response bytes sent.
    pub fn poll<B: RegisterBank + ?Sized>(
        &mut self,
        bank: &mut B,
        now_us: u64,
    ) -> Result<Option<usize>, SerialErr<S, DE>> {
        loop {
            match self.port.read() {
                Ok(byte) => {
                    if let Some(n) = self.assembler.push(byte, now_us, &mut self.frame) {
                        // A frame ended by silence we did not poll in time, and the master is
                        // already sending again: act on it, but answering now would collide
                        // with the new frame on the half-duplex line.
                        let req = self.frame.get(..n).unwrap_or(&[]);
                        if self
                            .slave
                            .handle_frame(bank, req, &mut self.response)
                            .is_some()
                        {
                            self.late_answers = self.late_answers.wrapping_add(1);
                        }
                    }
                }
                Err(nb::Error::WouldBlock) => break,
                Err(nb::Error::Other(_)) => {
                    self.line_errors = self.line_errors.wrapping_add(1);
                    break;
                }
            }
        }
        match self.assembler.poll(now_us, &mut self.frame) {
            Some(n) => self.answer(bank, n),
            None => Ok(None),
        }
    }

    fn answer<B: RegisterBank + ?Sized>(
        &mut self,
        bank: &mut B,
        n: usize,
    ) -> Result<Option<usize>, SerialErr<S, DE>> {
        let req = self.frame.get(..n).unwrap_or(&[]);
        let Some(len) = self.slave.handle_frame(bank, req, &mut self.response) else {
            return Ok(None);
        };
        self.driver_enable.set_high().map_err(Error::Pin)?;
        let sent = self.transmit(len);
        // Always release the line, even after a UART error.
        let released = self.driver_enable.set_low().map_err(Error::Pin);
        sent?;
        released?;
        Ok(Some(len))
    }

    fn transmit(&mut self, len: usize) -> Result<(), SerialErr<S, DE>> {
        for &b in self.response.get(..len).unwrap_or(&[]) {
            nb::block!(self.port.write(b)).map_err(Error::Serial)?;
        }
        nb::block!(self.port.flush()).map_err(Error::Serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::{check_range, Exception};
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
    use embedded_hal_mock::eh1::serial::{Mock as SerialMock, Transaction as SerialTx};
    use std::vec::Vec;

    struct Regs([u16; 4]);
    impl RegisterBank for Regs {
        fn read_coils(&mut self, _: u16, _: &mut [bool]) -> Result<(), Exception> {
            Err(Exception::IllegalDataAddress)
        }
        fn read_discrete_inputs(&mut self, _: u16, _: &mut [bool]) -> Result<(), Exception> {
            Err(Exception::IllegalDataAddress)
        }
        fn read_holding_registers(&mut self, a: u16, out: &mut [u16]) -> Result<(), Exception> {
            check_range(a, out.len(), 4)?;
            out.copy_from_slice(&self.0[a as usize..a as usize + out.len()]);
            Ok(())
        }
        fn read_input_registers(&mut self, a: u16, out: &mut [u16]) -> Result<(), Exception> {
            self.read_holding_registers(a, out)
        }
        fn write_coils(&mut self, _: u16, _: &[bool]) -> Result<(), Exception> {
            Err(Exception::IllegalDataAddress)
        }
        fn write_registers(&mut self, _: u16, _: &[u16]) -> Result<(), Exception> {
            Err(Exception::IllegalDataAddress)
        }
    }

    #[test]
    fn answers_a_request_after_t35_with_driver_enable_around_it() {
        let req = [0x01u8, 0x03, 0x00, 0x01, 0x00, 0x01, 0xD5, 0xCA];
        let resp = [0x01u8, 0x03, 0x02, 0x12, 0x34, 0xB5, 0x33];
        let mut serial_tx: Vec<SerialTx<u8>> = req.iter().map(|&b| SerialTx::read(b)).collect();
        serial_tx.push(SerialTx::read_error(nb::Error::WouldBlock));
        // second poll, after t3.5: nothing new, then the answer
        serial_tx.push(SerialTx::read_error(nb::Error::WouldBlock));
        serial_tx.push(SerialTx::write_many(resp));
        serial_tx.push(SerialTx::flush());
        let port = SerialMock::new(&serial_tx);
        let de = PinMock::new(&[PinTx::set(State::High), PinTx::set(State::Low)]);
        let mut rtu = RtuSerial::new(port, de, 9600, RtuSlave::new(1));
        let mut bank = Regs([0, 0x1234, 0, 0]);
        assert_eq!(
            rtu.poll(&mut bank, 10_000),
            Ok(None),
            "frame not complete before t3.5"
        );
        assert_eq!(rtu.poll(&mut bank, 10_000 + 4_011), Ok(Some(resp.len())));
        let (mut port, mut de) = rtu.release();
        port.done();
        de.done();
    }

    #[test]
    fn a_frame_polled_too_late_is_acted_on_but_not_answered() {
        let req = [0x01u8, 0x03, 0x00, 0x01, 0x00, 0x01, 0xD5, 0xCA];
        let mut serial_tx: Vec<SerialTx<u8>> = req.iter().map(|&b| SerialTx::read(b)).collect();
        serial_tx.push(SerialTx::read_error(nb::Error::WouldBlock));
        // 10 ms later the master already sends the next frame's first byte
        serial_tx.push(SerialTx::read(0x02));
        serial_tx.push(SerialTx::read_error(nb::Error::WouldBlock));
        let port = SerialMock::new(&serial_tx);
        let de = PinMock::new(&[]);
        let mut rtu = RtuSerial::new(port, de, 9600, RtuSlave::new(1));
        let mut bank = Regs([0, 0x1234, 0, 0]);
        assert_eq!(rtu.poll(&mut bank, 0), Ok(None));
        assert_eq!(rtu.poll(&mut bank, 10_000), Ok(None));
        assert_eq!(rtu.late_answers(), 1);
        let (mut port, mut de) = rtu.release();
        port.done();
        de.done();
    }

    #[test]
    fn stays_silent_on_a_bad_crc() {
        let req = [0x01u8, 0x03, 0x00, 0x01, 0x00, 0x01, 0xD5, 0xCB];
        let mut serial_tx: Vec<SerialTx<u8>> = req.iter().map(|&b| SerialTx::read(b)).collect();
        serial_tx.push(SerialTx::read_error(nb::Error::WouldBlock));
        serial_tx.push(SerialTx::read_error(nb::Error::WouldBlock));
        let port = SerialMock::new(&serial_tx);
        let de = PinMock::new(&[]);
        let mut rtu = RtuSerial::new(port, de, 19_200, RtuSlave::new(1));
        let mut bank = Regs([0; 4]);
        assert_eq!(rtu.poll(&mut bank, 0), Ok(None));
        assert_eq!(rtu.poll(&mut bank, 5_000), Ok(None));
        assert_eq!(rtu.slave().counters().crc_errors, 1);
        let (mut port, mut de) = rtu.release();
        port.done();
        de.done();
    }
}
