//! Gas concentration from an analogue sensor with a live-zero voltage output (e.g. an
//! electrochemical CO transmitter, 0.4 V = 0 ppm), read by a TI ADS1115 16-bit I2C ADC.
//! Linear calibration to ppm, median + EMA filtering, and no-response, out-of-range (open
//! loop below the live zero, saturated above full scale) and stuck status bits.

use embedded_hal::i2c::I2c;

use citygate_protocols::registers::hazard_node as map;

use super::filter::{Ema, MedianFilter, StuckDetector};
use super::water::set;

/// Gas sensor calibration and limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GasConfig {
    /// Output at 0 ppm, mV.
    pub zero_mv: u16,
    /// Output at `span_ppm`, mV.
    pub span_mv: u16,
    /// Concentration at `span_mv`, ppm.
    pub span_ppm: f32,
    /// Below this the loop is open (sensor disconnected), mV.
    pub min_live_mv: u16,
    /// Above this the output is saturated, mV.
    pub max_mv: u16,
    /// EMA smoothing factor.
    pub ema_alpha: f32,
    /// Identical raw readings in a row before "stuck".
    pub stuck_samples: u16,
}

impl Default for GasConfig {
    fn default() -> Self {
        GasConfig {
            zero_mv: 400,
            span_mv: 2_000,
            span_ppm: 1_000.0,
            min_live_mv: 300,
            max_mv: 2_100,
            ema_alpha: 0.2,
            stuck_samples: 120,
        }
    }
}

/// The gas channel.
#[derive(Debug, Clone)]
pub struct GasSensor {
    cfg: GasConfig,
    median: MedianFilter<5>,
    ema: Ema,
    stuck: StuckDetector,
    status: u16,
    ppm: Option<f32>,
    raw_mv: u16,
}

impl GasSensor {
    /// A channel with no reading yet.
    pub fn new(cfg: GasConfig) -> Self {
        GasSensor {
            cfg,
            median: MedianFilter::new(),
            ema: Ema::new(cfg.ema_alpha),
            stuck: StuckDetector::new(cfg.stuck_samples),
            status: 0,
            ppm: None,
            raw_mv: 0,
        }
    }

    /// The linear calibration: mV → ppm (not below 0).
    pub fn to_ppm(&self, mv: u16) -> f32 {
        let span = self.cfg.span_mv.saturating_sub(self.cfg.zero_mv).max(1) as f32;
        let ppm = (mv as f32 - self.cfg.zero_mv as f32) * self.cfg.span_ppm / span;
        if ppm > 0.0 {
            ppm
        } else {
            0.0
        }
    }

    /// A raw output voltage.
    pub fn on_millivolts(&mut self, mv: u16) {
        self.raw_mv = mv;
        self.status &= !map::STATUS_GAS_NO_RESPONSE;
        set(
            &mut self.status,
            map::STATUS_GAS_STUCK,
            self.stuck.update(mv as i32),
        );
        if mv < self.cfg.min_live_mv || mv > self.cfg.max_mv {
            self.status |= map::STATUS_GAS_OUT_OF_RANGE;
            return;
        }
        self.status &= !map::STATUS_GAS_OUT_OF_RANGE;
        let med = self.median.push(mv as i32);
        self.ppm = Some(
            self.ema
                .update(self.to_ppm(med.clamp(0, u16::MAX as i32) as u16)),
        );
    }

    /// The ADC did not answer.
    pub fn on_no_response(&mut self) {
        self.status |= map::STATUS_GAS_NO_RESPONSE;
    }

    /// Filtered concentration.
    pub fn ppm(&self) -> Option<f32> {
        self.ppm
    }

    /// Filtered concentration in 0.1 ppm for the register map.
    pub fn ppm_tenths(&self) -> Option<u16> {
        self.ppm
            .map(|p| (p * 10.0 + 0.5).clamp(0.0, u16::MAX as f32) as u16)
    }

    /// Last raw voltage, mV.
    pub fn raw_mv(&self) -> u16 {
        self.raw_mv
    }

    /// Status bits (`STATUS_GAS_*`).
    pub fn status(&self) -> u16 {
        self.status
    }
}

/// I2C error of the ADC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdcError<E> {
    /// The bus transaction failed.
    I2c(E),
    /// Channel above 3.
    BadChannel(u8),
}

/// TI ADS1115 in single-shot mode, single-ended input, ±4.096 V range, 128 samples/s.
#[derive(Debug)]
pub struct Ads1115<I> {
    i2c: I,
    address: u8,
}

/// Address with ADDR tied to ground.
pub const ADS1115_ADDRESS: u8 = 0x48;
const REG_CONVERSION: u8 = 0x00;
const REG_CONFIG: u8 = 0x01;

impl<I: I2c> Ads1115<I> {
    /// An ADC at `address` (0x48..=0x4B).
    pub const fn new(i2c: I, address: u8) -> Self {
        Ads1115 { i2c, address }
    }

    /// The config word that starts one conversion of AIN`channel` against ground.
    pub const fn config_word(channel: u8) -> u16 {
        // OS=1 start | MUX=1xx single-ended | PGA=001 ±4.096 V | MODE=1 single-shot |
        // DR=100 128 SPS | comparator off (QUE=11)
        0x8000
            | ((0b100 | (channel as u16 & 0b11)) << 12)
            | (0b001 << 9)
            | (1 << 8)
            | (0b100 << 5)
            | 0b11
    }

    /// Starts a conversion; read it back after at least 8 ms.
    pub fn start(&mut self, channel: u8) -> Result<(), AdcError<I::Error>> {
        if channel > 3 {
            return Err(AdcError::BadChannel(channel));
        }
        let [hi, lo] = Self::config_word(channel).to_be_bytes();
        self.i2c
            .write(self.address, &[REG_CONFIG, hi, lo])
            .map_err(AdcError::I2c)
    }

    /// Reads the last conversion in mV (negative readings give 0; 1 LSB = 0.125 mV).
    pub fn read_millivolts(&mut self) -> Result<u16, AdcError<I::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[REG_CONVERSION], &mut buf)
            .map_err(AdcError::I2c)?;
        let raw = i16::from_be_bytes(buf).max(0) as u32;
        Ok((raw / 8) as u16)
    }

    /// Reads the last conversion and feeds it (or the failure) into `channel`.
    pub fn read_into(&mut self, sensor: &mut GasSensor) -> Result<(), AdcError<I::Error>> {
        match self.read_millivolts() {
            Ok(mv) => {
                sensor.on_millivolts(mv);
                Ok(())
            }
            Err(e) => {
                sensor.on_no_response();
                Err(e)
            }
        }
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
    use std::vec;

    #[test]
    fn config_word_matches_the_datasheet_default_layout() {
        // AIN0 single-shot ±4.096 V 128 SPS comparator off = 0xC383
        assert_eq!(Ads1115::<Mock>::config_word(0), 0xC383);
        assert_eq!(Ads1115::<Mock>::config_word(3), 0xF383);
    }

    #[test]
    fn adc_driver_converts_and_reports_no_response() {
        let i2c = Mock::new(&[
            Transaction::write(0x48, vec![0x01, 0xC3, 0x83]),
            // 1200 mV = 9600 LSB = 0x2580
            Transaction::write_read(0x48, vec![0x00], vec![0x25, 0x80]),
            Transaction::write(0x48, vec![0x01, 0xC3, 0x83]),
            Transaction::write_read(0x48, vec![0x00], vec![0, 0]).with_error(ErrorKind::Other),
        ]);
        let mut adc = Ads1115::new(i2c, ADS1115_ADDRESS);
        let mut gas = GasSensor::new(GasConfig::default());
        adc.start(0).expect("start");
        adc.read_into(&mut gas).expect("read");
        assert_eq!(gas.raw_mv(), 1_200);
        // (1200 − 400) / 1600 × 1000 ppm = 500 ppm
        assert_eq!(gas.ppm_tenths(), Some(5_000));
        adc.start(0).expect("start");
        assert!(adc.read_into(&mut gas).is_err());
        assert_eq!(gas.status(), map::STATUS_GAS_NO_RESPONSE);
        assert!(matches!(adc.start(4), Err(AdcError::BadChannel(4))));
        adc.release().done();
    }

    #[test]
    fn open_loop_and_saturation_are_out_of_range() {
        let mut gas = GasSensor::new(GasConfig::default());
        gas.on_millivolts(50);
        assert_eq!(gas.status(), map::STATUS_GAS_OUT_OF_RANGE);
        assert_eq!(gas.ppm(), None);
        gas.on_millivolts(400);
        assert_eq!(gas.status(), 0);
        assert_eq!(gas.ppm_tenths(), Some(0));
        gas.on_millivolts(3_000);
        assert_eq!(gas.status(), map::STATUS_GAS_OUT_OF_RANGE);
    }
}
