//! Detector loops: debouncing of the raw loop signal, vehicle counts (debounced rising edges)
//! and occupancy (share of time occupied) per counting interval, a stuck-occupied check, and
//! a thin driver that samples embedded-hal input pins.

use embedded_hal::digital::InputPin;

use citygate_protocols::registers::signal_controller as map;

/// Most detectors.
pub const MAX_DETECTORS: usize = map::MAX_DETECTORS as usize;

/// Counts and occupancy of one closed interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DetectorInterval {
    /// Vehicles (debounced rising edges).
    pub count: u16,
    /// Occupancy in 0.1 % (0..=1000).
    pub occupancy_permille: u16,
}

/// One loop detector.
#[derive(Debug, Clone, Copy)]
pub struct Detector {
    debounce_ms: u32,
    raw: bool,
    raw_since: u64,
    occupied: bool,
    occupied_since: u64,
    interval_start: u64,
    count: u16,
    occupied_ms: u64,
    last: DetectorInterval,
}

/// Occupied for longer than this is reported as a stuck loop.
pub const STUCK_OCCUPIED_MS: u64 = 300_000;

impl Detector {
    /// A detector, free at `now`.
    pub const fn new(debounce_ms: u32, now: u64) -> Self {
        Detector {
            debounce_ms,
            raw: false,
            raw_since: now,
            occupied: false,
            occupied_since: now,
            interval_start: now,
            count: 0,
            occupied_ms: 0,
            last: DetectorInterval {
                count: 0,
                occupancy_permille: 0,
            },
        }
    }

    /// Takes a raw sample of the loop at `now`. A change counts once the raw level has been
    /// stable for the debounce time; it is dated back to when the level changed.
    pub fn sample(&mut self, raw: bool, now: u64) {
        if raw != self.raw {
            self.raw = raw;
            self.raw_since = now;
        }
        if self.raw != self.occupied
            && now.saturating_sub(self.raw_since) >= self.debounce_ms as u64
        {
            let at = self.raw_since.max(self.interval_start);
            if self.raw {
                self.count = self.count.saturating_add(1);
                self.occupied_since = at;
            } else {
                self.occupied_ms += at.saturating_sub(self.occupied_since.max(self.interval_start));
            }
            self.occupied = self.raw;
        }
    }

    /// Debounced state now.
    pub const fn occupied(&self) -> bool {
        self.occupied
    }

    /// Whether the loop has been occupied for longer than [`STUCK_OCCUPIED_MS`].
    pub fn stuck(&self, now: u64) -> bool {
        self.occupied && now.saturating_sub(self.occupied_since) > STUCK_OCCUPIED_MS
    }

    /// Closes the running interval at `now` and starts the next one.
    pub fn close_interval(&mut self, now: u64) -> DetectorInterval {
        let mut occ = self.occupied_ms;
        if self.occupied {
            occ += now.saturating_sub(self.occupied_since.max(self.interval_start));
        }
        let len = now.saturating_sub(self.interval_start);
        let permille = (occ.min(len) * 1000).checked_div(len).unwrap_or(0) as u16;
        self.last = DetectorInterval {
            count: self.count,
            occupancy_permille: permille,
        };
        self.interval_start = now;
        self.count = 0;
        self.occupied_ms = 0;
        self.last
    }

    /// The last closed interval.
    pub const fn last_interval(&self) -> DetectorInterval {
        self.last
    }
}

/// The detectors of an intersection, closing their intervals together.
#[derive(Debug, Clone)]
pub struct DetectorSet {
    detectors: heapless::Vec<Detector, MAX_DETECTORS>,
    interval_ms: u32,
    interval_start: u64,
}

impl DetectorSet {
    /// `count` detectors (at most [`MAX_DETECTORS`]) with a counting interval.
    pub fn new(count: usize, debounce_ms: u32, interval_ms: u32, now: u64) -> Self {
        let mut detectors = heapless::Vec::new();
        for _ in 0..count.min(MAX_DETECTORS) {
            let _ = detectors.push(Detector::new(debounce_ms, now));
        }
        DetectorSet {
            detectors,
            interval_ms: interval_ms.max(1),
            interval_start: now,
        }
    }

    /// Number of detectors.
    pub fn len(&self) -> usize {
        self.detectors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// The counting interval.
    pub const fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    /// Raw sample of detector `index`; `false` if there is no such detector.
    pub fn sample(&mut self, index: usize, raw: bool, now: u64) -> bool {
        self.detectors
            .get_mut(index)
            .map(|d| d.sample(raw, now))
            .is_some()
    }

    /// Detector `index`.
    pub fn get(&self, index: usize) -> Option<&Detector> {
        self.detectors.get(index)
    }

    /// Closes the interval when it has run its length; returns whether one was closed.
    pub fn tick(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.interval_start) < self.interval_ms as u64 {
            return false;
        }
        for d in self.detectors.iter_mut() {
            d.close_interval(now);
        }
        self.interval_start = now;
        true
    }
}

/// Samples one input pin per detector (high = occupied unless `active_low`).
#[derive(Debug)]
pub struct DetectorInputs<I, const N: usize> {
    pins: [I; N],
    active_low: bool,
}

/// A detector pin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorPinError<E> {
    /// 0-based detector index.
    pub detector: usize,
    /// The pin's error.
    pub error: E,
}

impl<I: InputPin, const N: usize> DetectorInputs<I, N> {
    /// Wraps the pins, detector i on `pins[i]`.
    pub const fn new(pins: [I; N], active_low: bool) -> Self {
        DetectorInputs { pins, active_low }
    }

    /// Reads every pin into `set` at `now`. All pins are read even if one fails; the first
    /// failure is returned.
    pub fn poll(
        &mut self,
        set: &mut DetectorSet,
        now: u64,
    ) -> Result<(), DetectorPinError<I::Error>> {
        let mut first = Ok(());
        for (i, pin) in self.pins.iter_mut().enumerate() {
            match pin.is_high() {
                Ok(high) => {
                    set.sample(i, high != self.active_low, now);
                }
                Err(error) if first.is_ok() => first = Err(DetectorPinError { detector: i, error }),
                Err(_) => {}
            }
        }
        first
    }

    /// Gives the pins back.
    pub fn release(self) -> [I; N] {
        self.pins
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    #[test]
    fn bounces_are_ignored_and_vehicles_counted() {
        let mut d = Detector::new(50, 0);
        // a 20 ms bounce does not count
        d.sample(true, 100);
        d.sample(false, 120);
        d.sample(false, 200);
        assert!(!d.occupied());
        // a vehicle from 1000 to 1500
        d.sample(true, 1_000);
        d.sample(true, 1_040);
        assert!(!d.occupied());
        d.sample(true, 1_050);
        assert!(d.occupied());
        d.sample(false, 1_500);
        d.sample(false, 1_560);
        assert!(!d.occupied());
        // a second vehicle still on the loop when the interval closes at 10 000
        d.sample(true, 9_000);
        d.sample(true, 9_100);
        let iv = d.close_interval(10_000);
        assert_eq!(iv.count, 2);
        // occupied 500 ms + 1000 ms of 10 000 ms = 15.0 %
        assert_eq!(iv.occupancy_permille, 150);
        // the next interval starts occupied
        d.sample(false, 10_500);
        d.sample(false, 10_600);
        let iv = d.close_interval(20_000);
        assert_eq!(
            iv,
            DetectorInterval {
                count: 0,
                occupancy_permille: 50
            }
        );
    }

    #[test]
    fn stuck_loop_is_reported() {
        let mut d = Detector::new(0, 0);
        d.sample(true, 0);
        assert!(!d.stuck(STUCK_OCCUPIED_MS));
        assert!(d.stuck(STUCK_OCCUPIED_MS + 1));
    }

    #[test]
    fn set_closes_intervals_on_time() {
        let mut s = DetectorSet::new(2, 0, 60_000, 0);
        assert!(s.sample(1, true, 10));
        assert!(!s.sample(2, true, 10));
        assert!(!s.tick(59_999));
        assert!(s.tick(60_000));
        assert_eq!(s.get(1).map(|d| d.last_interval().count), Some(1));
    }

    #[test]
    fn pin_driver_reads_every_pin_active_low() {
        let a = Mock::new(&[Transaction::get(State::Low), Transaction::get(State::High)]);
        let b = Mock::new(&[Transaction::get(State::High), Transaction::get(State::High)]);
        let mut inputs = DetectorInputs::new([a, b], true);
        let mut set = DetectorSet::new(2, 0, 60_000, 0);
        assert_eq!(inputs.poll(&mut set, 0), Ok(()));
        assert_eq!(set.get(0).map(Detector::occupied), Some(true));
        assert_eq!(set.get(1).map(Detector::occupied), Some(false));
        assert_eq!(inputs.poll(&mut set, 100), Ok(()));
        assert_eq!(set.get(0).map(Detector::occupied), Some(false));
        for mut p in inputs.release() {
            p.done();
        }
    }
}
