//! Thin sampling driver of a hazard node: polls the rain gauge contact on every call and runs
//! the measurement cycle of the I2C sensors — start the rangefinder and the ADC, wait for the
//! conversions, read both into the node — once per sample period. Sensor failures become
//! status bits on the node, never errors; only a failing rain-gauge pin is returned.

use embedded_hal::digital::InputPin;
use embedded_hal::i2c::I2c;

use super::gas::Ads1115;
use super::rain::RainGaugeInput;
use super::water::MaxSonar;
use super::HazardNode;

/// Time the rangefinder needs for one reading (the ADC needs 8 ms at 128 SPS).
pub const CONVERSION_MS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cycle {
    Idle { next: u64 },
    Converting { since: u64, water: bool, gas: bool },
}

/// The sensors of a hazard node and their sampling schedule.
#[derive(Debug)]
pub struct HazardStation<W, A, R> {
    sonar: MaxSonar<W>,
    adc: Ads1115<A>,
    rain: RainGaugeInput<R>,
    gas_channel: u8,
    period_ms: u32,
    cycle: Cycle,
}

impl<W: I2c, A: I2c, R: InputPin> HazardStation<W, A, R> {
    /// Samples every `period_ms` (at least [`CONVERSION_MS`]), the first cycle at `now`.
    pub fn new(
        sonar: MaxSonar<W>,
        adc: Ads1115<A>,
        gas_channel: u8,
        rain: RainGaugeInput<R>,
        period_ms: u32,
        now: u64,
    ) -> Self {
        HazardStation {
            sonar,
            adc,
            rain,
            gas_channel,
            period_ms: period_ms.max(CONVERSION_MS as u32),
            cycle: Cycle::Idle { next: now },
        }
    }

    /// Call every few ms. Returns `Ok(true)` when a measurement cycle completed.
    pub fn poll(&mut self, node: &mut HazardNode, now: u64) -> Result<bool, R::Error> {
        self.rain.poll(&mut node.rain, now)?;
        match self.cycle {
            Cycle::Idle { next } if now >= next => {
                let water = self.sonar.start_ranging().is_ok();
                if !water {
                    node.water.on_no_response();
                }
                let gas = self.adc.start(self.gas_channel).is_ok();
                if !gas {
                    node.gas.on_no_response();
                }
                self.cycle = Cycle::Converting {
                    since: now,
                    water,
                    gas,
                };
                Ok(false)
            }
            Cycle::Converting { since, water, gas }
                if now.saturating_sub(since) >= CONVERSION_MS =>
            {
                if water {
                    let _ = self.sonar.read_into(&mut node.water);
                }
                if gas {
                    let _ = self.adc.read_into(&mut node.gas);
                }
                // keep the schedule anchored to the cycle start, skipping missed periods
                let mut next = since + self.period_ms as u64;
                while next <= now {
                    next += self.period_ms as u64;
                }
                self.cycle = Cycle::Idle { next };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Gives the drivers back.
    pub fn release(self) -> (MaxSonar<W>, Ads1115<A>, RainGaugeInput<R>) {
        (self.sonar, self.adc, self.rain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hazard::{GasConfig, RainConfig, WaterConfig, ADS1115_ADDRESS, MAXSONAR_ADDRESS};
    use citygate_protocols::registers::hazard_node as map;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
    use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTx};
    use std::vec;

    #[test]
    fn one_cycle_per_period_with_every_transaction_verified() {
        let sonar_bus = I2cMock::new(&[
            I2cTx::write(0x70, vec![0x51]),
            I2cTx::read(0x70, vec![0x00, 0xC8]), // 200 cm
            I2cTx::write(0x70, vec![0x51]).with_error(ErrorKind::Other),
        ]);
        let adc_bus = I2cMock::new(&[
            I2cTx::write(0x48, vec![0x01, 0xD3, 0x83]), // AIN1
            I2cTx::write_read(0x48, vec![0x00], vec![0x1F, 0x40]), // 8000 LSB = 1000 mV
            I2cTx::write(0x48, vec![0x01, 0xD3, 0x83]),
            I2cTx::write_read(0x48, vec![0x00], vec![0x1F, 0x48]), // 1001 mV
        ]);
        let polls = [0u64, 50, 100, 500, 1_000, 1_100];
        let pin = PinMock::new(
            &polls
                .iter()
                .map(|_| PinTx::get(State::High))
                .collect::<std::vec::Vec<_>>(),
        );
        let mut station = HazardStation::new(
            MaxSonar::new(sonar_bus, MAXSONAR_ADDRESS),
            Ads1115::new(adc_bus, ADS1115_ADDRESS),
            1,
            RainGaugeInput::new(pin, true),
            1_000,
            0,
        );
        let mut node = HazardNode::new(
            WaterConfig::default(),
            RainConfig::default(),
            GasConfig::default(),
            0,
        );
        let done: std::vec::Vec<bool> = polls
            .iter()
            .map(|&t| station.poll(&mut node, t).expect("pin"))
            .collect();
        assert_eq!(done, [false, false, true, false, false, true]);
        assert_eq!(node.water.distance_mm(), Some(2_000));
        assert_eq!(
            node.status(),
            map::STATUS_WATER_NO_RESPONSE,
            "second ranging start failed"
        );
        assert!(node.gas.raw_mv() == 1_001);
        let (sonar, adc, rain) = station.release();
        sonar.release().done();
        adc.release().done();
        rain.release().done();
    }
}
