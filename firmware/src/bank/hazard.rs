//! The hazard node's register bank: readings, rain total (32-bit, high word first) and rate,
//! gas, status bits as a register and as discrete inputs; mounting height and rain reset as
//! holding registers. A water level of `i16::MIN` (0x8000) means "no reading yet".

use citygate_protocols::registers::hazard_node as map;

use super::read_each;
use crate::hazard::HazardNode;
use crate::modbus::{check_range, Exception, RegisterBank};

/// Register value of the water level before the first good reading.
pub const NO_LEVEL: u16 = i16::MIN as u16;

/// A [`HazardNode`] behind its Modbus register map.
#[derive(Debug, Clone)]
pub struct HazardBank {
    node: HazardNode,
}

impl HazardBank {
    /// Wraps `node`.
    pub fn new(node: HazardNode) -> Self {
        HazardBank { node }
    }

    /// The node.
    pub fn node(&self) -> &HazardNode {
        &self.node
    }

    /// The node, to feed readings.
    pub fn node_mut(&mut self) -> &mut HazardNode {
        &mut self.node
    }

    fn input_register(&self, address: u16) -> u16 {
        let n = &self.node;
        let total = n.rain.total_tenths_mm();
        match address {
            map::IR_WATER_LEVEL => n.water.level_mm().map_or(NO_LEVEL, |l| {
                l.clamp(i16::MIN as i32 + 1, i16::MAX as i32) as i16 as u16
            }),
            map::IR_WATER_DISTANCE => n.water.distance_mm().unwrap_or(0),
            map::IR_RAIN_TOTAL => (total >> 16) as u16,
            a if a == map::IR_RAIN_TOTAL + 1 => total as u16,
            map::IR_RAIN_RATE => n.rain.rate_tenths_mm_h(),
            map::IR_GAS => n.gas.ppm_tenths().unwrap_or(0),
            map::IR_STATUS => n.status(),
            map::IR_GAS_RAW_MV => n.gas.raw_mv(),
            _ => 0,
        }
    }
}

impl RegisterBank for HazardBank {
    fn read_coils(&mut self, address: u16, out: &mut [bool]) -> Result<(), Exception> {
        read_each(address, out, 0, |_| false)
    }

    fn read_discrete_inputs(&mut self, address: u16, out: &mut [bool]) -> Result<(), Exception> {
        let status = self.node.status();
        read_each(address, out, map::STATUS_BITS, |a| status & (1 << a) != 0)
    }

    fn read_holding_registers(&mut self, address: u16, out: &mut [u16]) -> Result<(), Exception> {
        let mount = self.node.water.config().mount_height_mm;
        read_each(address, out, map::HOLDING_COUNT, |a| {
            if a == map::HR_WATER_MOUNT_HEIGHT {
                mount
            } else {
                0
            }
        })
    }

    fn read_input_registers(&mut self, address: u16, out: &mut [u16]) -> Result<(), Exception> {
        read_each(address, out, map::INPUT_COUNT, |a| self.input_register(a))
    }

    fn write_coils(&mut self, address: u16, values: &[bool]) -> Result<(), Exception> {
        check_range(address, values.len(), 0)
    }

    fn write_registers(&mut self, address: u16, values: &[u16]) -> Result<(), Exception> {
        check_range(address, values.len(), map::HOLDING_COUNT)?;
        let mut mount = None;
        let mut reset = false;
        for (i, &v) in values.iter().enumerate() {
            match address + i as u16 {
                map::HR_WATER_MOUNT_HEIGHT => mount = Some(v),
                _ if v == map::RAIN_RESET_MAGIC => reset = true,
                _ => return Err(Exception::IllegalDataValue),
            }
        }
        if let Some(mm) = mount {
            self.node.water.set_mount_height(mm);
        }
        if reset {
            self.node.rain.reset_total();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hazard::{GasConfig, RainConfig, WaterConfig};
    use crate::modbus::crc::crc16;
    use crate::modbus::RtuSlave;
    use std::vec::Vec;

    fn frame(bytes: &[u8]) -> Vec<u8> {
        let mut f = bytes.to_vec();
        f.extend_from_slice(&crc16(bytes).to_le_bytes());
        f
    }

    fn ask(bank: &mut HazardBank, req: &[u8]) -> Option<Vec<u8>> {
        let mut resp = [0u8; 256];
        let n = RtuSlave::new(3).handle_frame(bank, &frame(req), &mut resp)?;
        Some(resp[..n].to_vec())
    }

    #[test]
    fn readings_appear_in_the_register_map() {
        let mut b = HazardBank::new(HazardNode::new(
            WaterConfig {
                ema_alpha: 1.0,
                ..WaterConfig::default()
            },
            RainConfig::default(),
            GasConfig::default(),
            0,
        ));
        let resp = ask(&mut b, &[3, 0x04, 0, 0, 0, 1]).expect("answer");
        assert_eq!(&resp[3..5], &[0x80, 0x00], "no reading yet");
        b.node_mut().water.on_distance(5_250); // 250 mm below the datum
        for i in 0..4 {
            b.node_mut().rain.sample(true, i * 1_000);
            b.node_mut().rain.sample(false, i * 1_000 + 100);
        }
        b.node_mut().gas.on_millivolts(560); // 100 ppm
        let resp = ask(&mut b, &[3, 0x04, 0, 0, 0, 8]).expect("answer");
        let level = (-250i16) as u16;
        let expect: Vec<u8> = [level, 5_250, 0, 8, 48, 1_000, 0, 560]
            .iter()
            .flat_map(|v: &u16| v.to_be_bytes())
            .collect();
        assert_eq!(&resp[3..19], &expect[..]);
        // mounting height write moves the level, rain reset zeroes the total
        assert_eq!(
            ask(&mut b, &[3, 0x10, 0, 0, 0, 2, 4, 0x17, 0x70, 0x0A, 0x1D]),
            Some(frame(&[3, 0x10, 0, 0, 0, 2]))
        );
        assert_eq!(b.node().water.level_mm(), Some(750));
        assert_eq!(b.node().rain.total_tenths_mm(), 0);
        assert_eq!(
            ask(&mut b, &[3, 0x06, 0, 1, 0, 1]),
            Some(frame(&[3, 0x86, 3]))
        );
        assert_eq!(
            ask(&mut b, &[3, 0x01, 0, 0, 0, 1]),
            Some(frame(&[3, 0x81, 2]))
        );
    }

    #[test]
    fn status_bits_as_register_and_discrete_inputs() {
        let mut b = HazardBank::new(HazardNode::new(
            WaterConfig::default(),
            RainConfig::default(),
            GasConfig::default(),
            0,
        ));
        b.node_mut().water.on_no_response();
        b.node_mut().gas.on_millivolts(10);
        let resp = ask(&mut b, &[3, 0x02, 0, 0, 0, 8]).expect("answer");
        assert_eq!(&resp[..4], &[3, 0x02, 1, 0b0100_0001]);
        let resp = ask(&mut b, &[3, 0x04, 0, 6, 0, 1]).expect("answer");
        assert_eq!(&resp[3..5], &[0, 0b0100_0001]);
    }
}
