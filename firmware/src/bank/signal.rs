//! The signal controller's register bank: the command block (requested stage, hold, plan,
//! sequence) is staged register by register and committed as one [`Command`] when the sequence
//! register is written; status, group states and detector data are read from the controller.

use citygate_protocols::registers::signal_controller as map;

use super::read_each;
use crate::modbus::{check_range, Exception, RegisterBank};
use crate::signal::{Command, CommandError, SignalController};

/// A [`SignalController`] behind its Modbus register map.
#[derive(Debug, Clone)]
pub struct SignalBank {
    controller: SignalController,
    /// Staged holding registers 0..=2: requested stage, hold, plan (wire values).
    staged: [u16; 3],
    now: u64,
}

impl SignalBank {
    /// Wraps `controller`; its last tick time is the bank's clock until [`set_now`](Self::set_now).
    pub fn new(controller: SignalController) -> Self {
        let now = controller.now();
        SignalBank {
            controller,
            staged: [0; 3],
            now,
        }
    }

    /// The controller.
    pub fn controller(&self) -> &SignalController {
        &self.controller
    }

    /// The controller, e.g. to sample detectors.
    pub fn controller_mut(&mut self) -> &mut SignalController {
        &mut self.controller
    }

    /// Sets the time at which the next Modbus writes happen.
    pub fn set_now(&mut self, now_ms: u64) {
        self.now = now_ms;
    }

    /// Sets the clock and ticks the controller.
    pub fn tick(&mut self, now_ms: u64) {
        self.now = now_ms;
        self.controller.tick(now_ms);
    }

    /// Gives the controller back.
    pub fn into_inner(self) -> SignalController {
        self.controller
    }

    fn input_register(&self, address: u16) -> u16 {
        let c = &self.controller;
        let st = c.status();
        let one_based = |x: Option<usize>| x.map_or(0, |v| (v + 1) as u16);
        let detector = |base: u16, f: fn(&crate::detector::Detector) -> u16| {
            c.detectors().get((address - base) as usize).map_or(0, f)
        };
        match address {
            map::IR_CURRENT_STAGE => one_based(st.current_stage),
            map::IR_TARGET_STAGE => one_based(st.target_stage),
            map::IR_MODE => st.mode as u16,
            map::IR_STATUS_FLAGS => {
                let mut flags = 0;
                for (on, bit) in [
                    (st.fault.is_some(), map::FLAG_CONFLICT_LATCHED),
                    (st.mode == map::Mode::Fallback, map::FLAG_FALLBACK_ACTIVE),
                    (st.in_transition, map::FLAG_IN_TRANSITION),
                    (st.hold, map::FLAG_HOLD),
                    (st.max_green_forced, map::FLAG_MAX_GREEN_FORCED),
                    (
                        (0..c.detectors().len())
                            .any(|i| c.detectors().get(i).is_some_and(|d| d.stuck(self.now))),
                        map::FLAG_DETECTOR_STUCK,
                    ),
                ] {
                    if on {
                        flags |= bit;
                    }
                }
                flags
            }
            map::IR_STAGE_TIME => (st.stage_elapsed_ms / 100).min(u16::MAX as u64) as u16,
            map::IR_LAST_SEQUENCE => st.last_sequence.unwrap_or(0),
            map::IR_REJECTED_COMMANDS => st.rejected_commands,
            map::IR_GROUP_COUNT => c.config().groups.len() as u16,
            map::IR_DETECTOR_COUNT => c.detectors().len() as u16,
            map::IR_ACTIVE_PLAN => one_based(st.active_plan),
            map::IR_DETECTOR_INTERVAL => {
                (c.detectors().interval_ms() / 1000).min(u16::MAX as u32) as u16
            }
            a if (map::IR_GROUP_STATE_BASE..map::IR_GROUP_STATE_BASE + map::MAX_GROUPS)
                .contains(&a) =>
            {
                c.group_states()
                    .get((a - map::IR_GROUP_STATE_BASE) as usize)
                    .map_or(0, |s| s.to_wire())
            }
            a if (map::IR_DETECTOR_COUNT_BASE
                ..map::IR_DETECTOR_COUNT_BASE + map::MAX_DETECTORS)
                .contains(&a) =>
            {
                detector(map::IR_DETECTOR_COUNT_BASE, |d| d.last_interval().count)
            }
            a if (map::IR_DETECTOR_OCCUPANCY_BASE
                ..map::IR_DETECTOR_OCCUPANCY_BASE + map::MAX_DETECTORS)
                .contains(&a) =>
            {
                detector(map::IR_DETECTOR_OCCUPANCY_BASE, |d| {
                    d.last_interval().occupancy_permille
                })
            }
            _ => 0,
        }
    }

    fn discrete_input(&self, address: u16) -> bool {
        let c = &self.controller;
        let st = c.status();
        match address {
            map::DI_CONFLICT_LATCHED => st.fault.is_some(),
            map::DI_FALLBACK_ACTIVE => st.mode == map::Mode::Fallback,
            map::DI_IN_TRANSITION => st.in_transition,
            a if (map::DI_DETECTOR_OCCUPIED_BASE
                ..map::DI_DETECTOR_OCCUPIED_BASE + map::MAX_DETECTORS)
                .contains(&a) =>
            {
                c.detectors()
                    .get((a - map::DI_DETECTOR_OCCUPIED_BASE) as usize)
                    .is_some_and(|d| d.occupied())
            }
            a if (map::DI_GROUP_GREEN_BASE..map::DI_GROUP_GREEN_BASE + map::MAX_GROUPS)
                .contains(&a) =>
            {
                c.group_states()
                    .get((a - map::DI_GROUP_GREEN_BASE) as usize)
                    .is_some_and(|s| s.is_green())
            }
            _ => false,
        }
    }

    /// Commits the staged block with `sequence` as a command.
    fn commit(&mut self, staged: [u16; 3], sequence: u16) -> Result<(), Exception> {
        let [stage, hold, plan] = staged;
        let cmd = Command {
            stage: (stage > 0).then(|| stage as usize - 1),
            hold: hold == 1,
            plan: (plan > 0).then(|| plan as usize - 1),
            sequence,
        };
        match self.controller.command(cmd, self.now) {
            // A repeated sequence is a retry of a write already taken: acknowledged, ignored
            // (and it does not feed the watchdog).
            Ok(()) | Err(CommandError::RepeatedSequence { .. }) => Ok(()),
            Err(_) => Err(Exception::IllegalDataValue),
        }
    }
}

impl RegisterBank for SignalBank {
    fn read_coils(&mut self, address: u16, out: &mut [bool]) -> Result<(), Exception> {
        let hold = self.staged[1] == 1;
        read_each(address, out, map::COIL_COUNT, |a| {
            a == map::COIL_HOLD && hold
        })
    }

    fn read_discrete_inputs(&mut self, address: u16, out: &mut [bool]) -> Result<(), Exception> {
        read_each(address, out, map::DISCRETE_COUNT, |a| {
            self.discrete_input(a)
        })
    }

    fn read_holding_registers(&mut self, address: u16, out: &mut [u16]) -> Result<(), Exception> {
        let staged = self.staged;
        let seq = self.controller.status().last_sequence.unwrap_or(0);
        read_each(address, out, map::HOLDING_COUNT, |a| match a {
            map::HR_REQUESTED_STAGE | map::HR_HOLD | map::HR_PLAN => {
                staged.get(a as usize).copied().unwrap_or(0)
            }
            map::HR_COMMAND_SEQUENCE => seq,
            _ => 0,
        })
    }

    fn read_input_registers(&mut self, address: u16, out: &mut [u16]) -> Result<(), Exception> {
        read_each(address, out, map::INPUT_COUNT, |a| self.input_register(a))
    }

    fn write_coils(&mut self, address: u16, values: &[bool]) -> Result<(), Exception> {
        check_range(address, values.len(), map::COIL_COUNT)?;
        let mut hold = self.staged[1];
        let mut reset = false;
        for (i, &v) in values.iter().enumerate() {
            match address as usize + i {
                a if a == map::COIL_HOLD as usize => hold = v as u16,
                _ => reset |= v,
            }
        }
        self.staged[1] = hold;
        if reset {
            self.controller.reset_fault(self.now);
        }
        Ok(())
    }

    fn write_registers(&mut self, address: u16, values: &[u16]) -> Result<(), Exception> {
        check_range(address, values.len(), map::HOLDING_COUNT)?;
        let mut staged = self.staged;
        let mut sequence = None;
        let mut reset = false;
        for (i, &v) in values.iter().enumerate() {
            let a = address + i as u16;
            let ok = match a {
                map::HR_REQUESTED_STAGE => v <= map::MAX_STAGES,
                map::HR_HOLD => v <= 1,
                map::HR_PLAN => v <= map::MAX_PLANS,
                map::HR_COMMAND_SEQUENCE => {
                    sequence = Some(v);
                    true
                }
                _ => {
                    reset = true;
                    v == map::FAULT_RESET_MAGIC
                }
            };
            if !ok {
                return Err(Exception::IllegalDataValue);
            }
            if let Some(slot) = staged.get_mut(a as usize) {
                *slot = v;
            }
        }
        if let Some(seq) = sequence {
            self.commit(staged, seq)?;
        }
        self.staged = staged;
        if reset {
            self.controller.reset_fault(self.now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::crc::crc16;
    use crate::modbus::RtuSlave;
    use crate::signal::sequencer::tests::crossing;
    use crate::signal::{Fault, SignalState};
    use std::vec::Vec;

    fn frame(bytes: &[u8]) -> Vec<u8> {
        let mut f = bytes.to_vec();
        f.extend_from_slice(&crc16(bytes).to_le_bytes());
        f
    }

    fn ask(slave: &mut RtuSlave, bank: &mut SignalBank, req: &[u8]) -> Option<Vec<u8>> {
        let mut resp = [0u8; 256];
        let n = slave.handle_frame(bank, &frame(req), &mut resp)?;
        Some(resp[..n].to_vec())
    }

    fn bank() -> SignalBank {
        SignalBank::new(SignalController::new(crossing(), 0).expect("valid"))
    }

    #[test]
    fn command_block_write_moves_the_stage_and_status_reads_back() {
        let mut b = bank();
        let mut s = RtuSlave::new(7);
        for t in (0..=3_000).step_by(100) {
            b.tick(t);
        }
        // write stage 2, hold 0, plan 0, sequence 1 in one function-16 request
        let resp = ask(
            &mut s,
            &mut b,
            &[7, 0x10, 0, 0, 0, 4, 8, 0, 2, 0, 0, 0, 0, 0, 1],
        );
        assert_eq!(resp, Some(frame(&[7, 0x10, 0, 0, 0, 4])));
        for t in (3_100..=20_000).step_by(100) {
            b.set_now(t);
            if t % 1_000 == 0 {
                // heartbeat: bump the sequence only
                let seq = (t / 1_000) as u16;
                let [hi, lo] = seq.to_be_bytes();
                assert!(ask(&mut s, &mut b, &[7, 0x06, 0, 3, hi, lo]).is_some());
            }
            b.tick(t);
        }
        // current stage 2, target 2, mode central (1)
        let resp = ask(&mut s, &mut b, &[7, 0x04, 0, 0, 0, 3]).expect("answer");
        assert_eq!(&resp[..9], &[7, 0x04, 6, 0, 2, 0, 2, 0, 1]);
        // group states: group 1 red, group 2 green, group 3 (pedestrian) green
        let resp = ask(&mut s, &mut b, &[7, 0x04, 0, 16, 0, 3]).expect("answer");
        let red = SignalState::Red.to_wire() as u8;
        let green = SignalState::Green.to_wire() as u8;
        assert_eq!(&resp[3..9], &[0, red, 0, green, 0, green]);
        // group-green discrete inputs 32..35 → bits 0b110
        let resp = ask(&mut s, &mut b, &[7, 0x02, 0, 32, 0, 3]).expect("answer");
        assert_eq!(&resp[..4], &[7, 0x02, 1, 0b110]);
        // holding registers read back the staged block and the last sequence
        let resp = ask(&mut s, &mut b, &[7, 0x03, 0, 0, 0, 4]).expect("answer");
        assert_eq!(&resp[3..11], &[0, 2, 0, 0, 0, 0, 0, 20]);
    }

    #[test]
    fn invalid_commands_are_exceptions_and_change_nothing() {
        let mut b = bank();
        let mut s = RtuSlave::new(7);
        // stage 3 does not exist on this crossing → illegal data value, staged block unchanged
        assert_eq!(
            ask(
                &mut s,
                &mut b,
                &[7, 0x10, 0, 0, 0, 4, 8, 0, 3, 0, 0, 0, 0, 0, 1]
            ),
            Some(frame(&[7, 0x90, 3]))
        );
        let resp = ask(&mut s, &mut b, &[7, 0x03, 0, 0, 0, 1]).expect("answer");
        assert_eq!(&resp[3..5], &[0, 0]);
        // hold = 2 → illegal data value; past the table → illegal data address
        assert_eq!(
            ask(&mut s, &mut b, &[7, 0x06, 0, 1, 0, 2]),
            Some(frame(&[7, 0x86, 3]))
        );
        assert_eq!(
            ask(&mut s, &mut b, &[7, 0x06, 0, 5, 0, 0]),
            Some(frame(&[7, 0x86, 2]))
        );
        assert_eq!(
            ask(&mut s, &mut b, &[7, 0x04, 0, 60, 0, 5]),
            Some(frame(&[7, 0x84, 2]))
        );
        // a wrong fault-reset value is refused
        assert_eq!(
            ask(&mut s, &mut b, &[7, 0x06, 0, 4, 0x12, 0x34]),
            Some(frame(&[7, 0x86, 3]))
        );
        assert_eq!(b.controller().status().rejected_commands, 1);
    }

    #[test]
    fn stuck_detector_sets_its_status_flag() {
        let mut cfg = crossing();
        cfg.detectors = 2;
        let mut b = SignalBank::new(SignalController::new(cfg, 0).expect("valid"));
        let mut s = RtuSlave::new(7);
        b.controller_mut().detectors_mut().sample(1, true, 0);
        b.tick(1_000);
        let resp = ask(&mut s, &mut b, &[7, 0x04, 0, 3, 0, 1]).expect("answer");
        assert_eq!(resp[4] & map::FLAG_DETECTOR_STUCK as u8, 0);
        b.controller_mut().detectors_mut().sample(1, true, 400_000);
        b.tick(400_000);
        let resp = ask(&mut s, &mut b, &[7, 0x04, 0, 3, 0, 1]).expect("answer");
        assert_ne!(resp[4] & map::FLAG_DETECTOR_STUCK as u8, 0);
    }

    #[test]
    fn repeated_sequence_is_acknowledged_but_does_not_feed_the_watchdog() {
        let mut b = bank();
        let mut s = RtuSlave::new(7);
        b.set_now(1_000);
        assert!(ask(&mut s, &mut b, &[7, 0x06, 0, 3, 0, 9]).is_some());
        b.set_now(5_000);
        assert_eq!(
            ask(&mut s, &mut b, &[7, 0x06, 0, 3, 0, 9]),
            Some(frame(&[7, 0x06, 0, 3, 0, 9]))
        );
        assert_eq!(b.controller().watchdog().last_feed(), Some(1_000));
    }

    #[test]
    fn fault_reset_by_register_and_coil() {
        let mut b = bank();
        let mut s = RtuSlave::new(7);
        b.tick(100);
        b.controller_mut()
            .latch_fault(Fault::ConflictingGreens { a: 1, b: 2 });
        b.tick(200);
        let resp = ask(&mut s, &mut b, &[7, 0x02, 0, 0, 0, 1]).expect("answer");
        assert_eq!(resp[3], 1, "conflict latched bit");
        assert_eq!(
            ask(&mut s, &mut b, &[7, 0x06, 0, 4, 0x5A, 0xFE]),
            Some(frame(&[7, 0x06, 0, 4, 0x5A, 0xFE]))
        );
        assert_eq!(b.controller().status().fault, None);
        b.controller_mut()
            .latch_fault(Fault::ConflictingGreens { a: 1, b: 2 });
        assert_eq!(
            ask(&mut s, &mut b, &[7, 0x05, 0, 1, 0xFF, 0]),
            Some(frame(&[7, 0x05, 0, 1, 0xFF, 0]))
        );
        assert_eq!(b.controller().status().fault, None);
        // the hold coil stages hold = 1
        assert!(ask(&mut s, &mut b, &[7, 0x0F, 0, 0, 0, 2, 1, 0b01]).is_some());
        let resp = ask(&mut s, &mut b, &[7, 0x01, 0, 0, 0, 2]).expect("answer");
        assert_eq!(&resp[..4], &[7, 0x01, 1, 0b01]);
    }
}
