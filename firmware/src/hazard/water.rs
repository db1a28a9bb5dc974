//! Water level from a downward-looking rangefinder: level = mounting height − distance to the
//! surface, median- then EMA-filtered, with no-response, out-of-range and stuck status bits.
//! Includes a driver for the MaxBotix I2CXL-MaxSonar (I2C address 0x70, command 0x51 starts a
//! range reading, two bytes read back give the range in cm).

use embedded_hal::i2c::I2c;

use citygate_protocols::registers::hazard_node as map;

use super::filter::{Ema, MedianFilter, StuckDetector};

/// Water-level settings (mm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaterConfig {
    /// Sensor face height above the level datum.
    pub mount_height_mm: u16,
    /// Shortest valid distance (the sensor's dead zone).
    pub min_distance_mm: u16,
    /// Longest valid distance.
    pub max_distance_mm: u16,
    /// EMA smoothing factor.
    pub ema_alpha: f32,
    /// Identical raw readings in a row before "stuck".
    pub stuck_samples: u16,
}

impl Default for WaterConfig {
    fn default() -> Self {
        WaterConfig {
            mount_height_mm: 5_000,
            min_distance_mm: 200,
            max_distance_mm: 7_650,
            ema_alpha: 0.3,
            stuck_samples: 60,
        }
    }
}

/// The water-level channel.
#[derive(Debug, Clone)]
pub struct WaterLevel {
    cfg: WaterConfig,
    median: MedianFilter<5>,
    ema: Ema,
    stuck: StuckDetector,
    status: u16,
    distance_mm: Option<u16>,
}

impl WaterLevel {
    /// A channel with no reading yet.
    pub fn new(cfg: WaterConfig) -> Self {
        WaterLevel {
            cfg,
            median: MedianFilter::new(),
            ema: Ema::new(cfg.ema_alpha),
            stuck: StuckDetector::new(cfg.stuck_samples),
            status: 0,
            distance_mm: None,
        }
    }

    /// Changes the mounting height (e.g. written over Modbus).
    pub fn set_mount_height(&mut self, mm: u16) {
        self.cfg.mount_height_mm = mm;
    }

    /// The settings.
    pub fn config(&self) -> &WaterConfig {
        &self.cfg
    }

    /// A raw distance reading. Out-of-range readings set the status bit and are not filtered in.
    pub fn on_distance(&mut self, distance_mm: u16) {
        self.status &= !map::STATUS_WATER_NO_RESPONSE;
        set(
            &mut self.status,
            map::STATUS_WATER_STUCK,
            self.stuck.update(distance_mm as i32),
        );
        if distance_mm < self.cfg.min_distance_mm || distance_mm > self.cfg.max_distance_mm {
            self.status |= map::STATUS_WATER_OUT_OF_RANGE;
            return;
        }
        self.status &= !map::STATUS_WATER_OUT_OF_RANGE;
        let med = self.median.push(distance_mm as i32);
        let smooth = self.ema.update(med as f32);
        self.distance_mm = Some((smooth + 0.5) as u16);
    }

    /// The sensor did not answer.
    pub fn on_no_response(&mut self) {
        self.status |= map::STATUS_WATER_NO_RESPONSE;
    }

    /// Filtered distance to the surface.
    pub fn distance_mm(&self) -> Option<u16> {
        self.distance_mm
    }

    /// Filtered level above the datum (negative below it).
    pub fn level_mm(&self) -> Option<i32> {
        self.distance_mm
            .map(|d| self.cfg.mount_height_mm as i32 - d as i32)
    }

    /// Status bits (`STATUS_WATER_*`).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the current value may be used.
    pub fn is_good(&self) -> bool {
        self.status == 0 && self.distance_mm.is_some()
    }
}

pub(crate) fn set(status: &mut u16, bit: u16, on: bool) {
    if on {
        *status |= bit;
    } else {
        *status &= !bit;
    }
}

/// I2C error of a sensor driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus transaction failed (no ACK: the sensor does not answer).
    I2c(E),
}

/// MaxBotix I2CXL-MaxSonar rangefinder.
#[derive(Debug)]
pub struct MaxSonar<I> {
    i2c: I,
    address: u8,
}

/// The factory I2C address (7-bit).
pub const MAXSONAR_ADDRESS: u8 = 0x70;
const RANGE_COMMAND: u8 = 0x51;

impl<I: I2c> MaxSonar<I> {
    /// A sensor at `address` (usually [`MAXSONAR_ADDRESS`]).
    pub const fn new(i2c: I, address: u8) -> Self {
        MaxSonar { i2c, address }
    }

    /// Starts a range reading; read it back after about 100 ms.
    pub fn start_ranging(&mut self) -> Result<(), Error<I::Error>> {
        self.i2c
            .write(self.address, &[RANGE_COMMAND])
            .map_err(Error::I2c)
    }

    /// Reads the last range, in mm.
    pub fn read_distance_mm(&mut self) -> Result<u16, Error<I::Error>> {
        let mut buf = [0u8; 2];
        self.i2c.read(self.address, &mut buf).map_err(Error::I2c)?;
        Ok(u16::from_be_bytes(buf).saturating_mul(10))
    }

    /// Reads the last range and feeds it (or the failure) into `channel`.
    pub fn read_into(&mut self, channel: &mut WaterLevel) -> Result<(), Error<I::Error>> {
        match self.read_distance_mm() {
            Ok(mm) => {
                channel.on_distance(mm);
                Ok(())
            }
            Err(e) => {
                channel.on_no_response();
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
    fn driver_ranges_and_reports_level() {
        let i2c = Mock::new(&[
            Transaction::write(0x70, vec![0x51]),
            Transaction::read(0x70, vec![0x01, 0x2C]), // 300 cm
            Transaction::write(0x70, vec![0x51]),
            Transaction::read(0x70, vec![0x00, 0x00]).with_error(ErrorKind::NoAcknowledge(
                embedded_hal::i2c::NoAcknowledgeSource::Address,
            )),
        ]);
        let mut sonar = MaxSonar::new(i2c, MAXSONAR_ADDRESS);
        let mut ch = WaterLevel::new(WaterConfig::default());
        sonar.start_ranging().expect("write");
        sonar.read_into(&mut ch).expect("read");
        assert_eq!(ch.distance_mm(), Some(3_000));
        assert_eq!(ch.level_mm(), Some(2_000));
        assert!(ch.is_good());
        sonar.start_ranging().expect("write");
        assert!(sonar.read_into(&mut ch).is_err());
        assert_eq!(ch.status(), map::STATUS_WATER_NO_RESPONSE);
        assert_eq!(
            ch.level_mm(),
            Some(2_000),
            "last good value kept, flagged by status"
        );
        sonar.release().done();
    }

    #[test]
    fn out_of_range_and_stuck_are_flagged_and_not_filtered_in() {
        let mut ch = WaterLevel::new(WaterConfig {
            stuck_samples: 3,
            ..WaterConfig::default()
        });
        ch.on_distance(3_000);
        ch.on_distance(100); // inside the dead zone
        assert_eq!(ch.status(), map::STATUS_WATER_OUT_OF_RANGE);
        assert_eq!(ch.distance_mm(), Some(3_000));
        ch.on_distance(3_010);
        assert_eq!(ch.status(), 0);
        ch.on_distance(3_010);
        ch.on_distance(3_010);
        assert_eq!(ch.status(), map::STATUS_WATER_STUCK);
        ch.on_distance(3_011);
        assert_eq!(ch.status(), 0);
    }

    #[test]
    fn level_is_median_then_ema_filtered() {
        let mut ch = WaterLevel::new(WaterConfig {
            ema_alpha: 1.0,
            ..WaterConfig::default()
        });
        for d in [3_000, 3_002, 6_000, 3_001] {
            ch.on_distance(d);
        }
        // median of {3000, 3002, 6000, 3001} (lower middle) = 3001: the spike is gone
        assert_eq!(ch.distance_mm(), Some(3_001));
    }
}
