//! Tumbling-window summaries per sensor and quantity.
//!
//! Windows are aligned to multiples of the window length in the readings' own time (event
//! time). A window closes when a reading of a later window arrives for the same sensor, when
//! the sensor has been idle for one window length of receive time (`tick`; receive times are
//! monotonic seconds, `clock::mono_s`, so a wall-clock step closes nothing), or on shutdown
//! (`flush`). A reading older than the sensor's open window arrives too late: it is counted
//! and left out. Readings whose quality is not usable are counted and left out.

use std::collections::HashMap;

use citygate_protocols::{Reading, Summary, Unit};

#[derive(Debug, Clone)]
struct Window {
    unit: Option<Unit>,
    start: f64,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    last: f64,
    /// Receive time (monotonic seconds) of the last reading, for the idle close.
    touched: f64,
}

/// Why a reading was left out of the summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Older than the sensor's open window.
    Late,
    /// Quality flag other than good, or a value that is not finite.
    Unusable,
}

/// The summariser of one gateway.
#[derive(Debug)]
pub struct Summarizer {
    window_s: f64,
    open: HashMap<(String, String), Window>,
}

impl Summarizer {
    pub fn new(window_s: u32) -> Self {
        Summarizer {
            window_s: f64::from(window_s.max(1)),
            open: HashMap::new(),
        }
    }

    /// Adds a reading received at `now`; returns the summary of a window it closed, if any.
    pub fn on_reading(&mut self, r: &Reading, now: f64) -> Result<Option<Summary>, Skipped> {
        if !r.quality.is_usable() || !r.value.is_finite() || !r.time.is_finite() {
            return Err(Skipped::Unusable);
        }
        let start = (r.time / self.window_s).floor() * self.window_s;
        let fresh = || Window {
            unit: r.unit,
            start,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            last: 0.0,
            touched: now,
        };
        let mut closed = None;
        let key = (r.sensor.clone(), r.quantity.clone());
        let w = match self.open.get_mut(&key) {
            Some(w) if start < w.start => return Err(Skipped::Late),
            Some(w) => {
                if start > w.start {
                    closed = Some(summary_of(self.window_s, &key, w));
                    *w = fresh();
                }
                w
            }
            None => self.open.entry(key).or_insert_with(fresh),
        };
        w.count += 1;
        w.min = w.min.min(r.value);
        w.max = w.max.max(r.value);
        w.sum += r.value;
        w.last = r.value;
        w.touched = now;
        Ok(closed)
    }

    /// Closes the windows of sensors idle for a window length of receive time.
    pub fn tick(&mut self, now: f64) -> Vec<Summary> {
        let idle: Vec<_> = self
            .open
            .iter()
            .filter(|(_, w)| now - w.touched >= self.window_s)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Summary> = idle
            .into_iter()
            .filter_map(|k| {
                self.open
                    .remove(&k)
                    .map(|w| summary_of(self.window_s, &k, &w))
            })
            .collect();
        out.sort_by(|a, b| {
            (a.start, &a.sensor)
                .partial_cmp(&(b.start, &b.sensor))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        out
    }

    /// Closes every open window (shutdown).
    pub fn flush(&mut self) -> Vec<Summary> {
        self.tick(f64::INFINITY)
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

fn summary_of(window_s: f64, key: &(String, String), w: &Window) -> Summary {
    Summary {
        sensor: key.0.clone(),
        quantity: key.1.clone(),
        unit: w.unit,
        start: w.start,
        end: w.start + window_s,
        count: w.count,
        min: w.min,
        max: w.max,
        mean: w.sum / w.count as f64,
        last: w.last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citygate_protocols::Quality;
    use proptest::prelude::*;

    fn reading(sensor: &str, time: f64, value: f64) -> Reading {
        Reading {
            sensor: sensor.into(),
            quantity: "level".into(),
            value,
            unit: Some(Unit::Metre),
            time,
            quality: Quality::Good,
        }
    }

    #[test]
    fn a_later_window_closes_the_open_one() {
        let mut s = Summarizer::new(10);
        assert_eq!(s.on_reading(&reading("a", 100.0, 1.0), 0.0), Ok(None));
        assert_eq!(s.on_reading(&reading("a", 105.0, 3.0), 0.0), Ok(None));
        assert_eq!(s.on_reading(&reading("b", 101.0, 9.0), 0.0), Ok(None));
        let closed = s
            .on_reading(&reading("a", 110.0, 5.0), 0.0)
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                closed.start,
                closed.end,
                closed.count,
                closed.min,
                closed.max,
                closed.mean,
                closed.last
            ),
            (100.0, 110.0, 2, 1.0, 3.0, 2.0, 3.0)
        );
        assert_eq!(
            s.on_reading(&reading("a", 109.0, 5.0), 0.0),
            Err(Skipped::Late)
        );
        let rest = s.flush();
        assert_eq!(rest.len(), 2);
        assert_eq!(s.open_windows(), 0);
    }

    #[test]
    fn idle_sensors_close_on_tick_and_bad_quality_is_left_out() {
        let mut s = Summarizer::new(10);
        s.on_reading(&reading("a", 100.0, 1.0), 50.0).unwrap();
        let mut bad = reading("a", 101.0, 7.0);
        bad.quality = Quality::CommError;
        assert_eq!(s.on_reading(&bad, 51.0), Err(Skipped::Unusable));
        assert!(s.tick(59.0).is_empty());
        let closed = s.tick(60.0);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].count, 1);
    }

    proptest! {
        /// Every usable reading lands in exactly one summary, and the statistics agree with
        /// a recomputation from scratch.
        #[test]
        fn summaries_account_for_every_reading(
            mut times in proptest::collection::vec((0u8..3, 0.0f64..100.0, -50.0f64..50.0), 1..200)
        ) {
            times.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
            let mut s = Summarizer::new(7);
            let mut out = Vec::new();
            for (sensor, t, v) in &times {
                if let Some(sm) = s.on_reading(&reading(&sensor.to_string(), *t, *v), 0.0).unwrap() {
                    out.push(sm);
                }
            }
            out.extend(s.flush());
            let total: u64 = out.iter().map(|s| s.count).sum();
            prop_assert_eq!(total as usize, times.len());
            for sm in &out {
                let inside: Vec<f64> = times.iter()
                    .filter(|(id, t, _)| id.to_string() == sm.sensor && *t >= sm.start && *t < sm.end)
                    .map(|x| x.2).collect();
                prop_assert_eq!(inside.len() as u64, sm.count);
                let mean = inside.iter().sum::<f64>() / inside.len() as f64;
                prop_assert!((mean - sm.mean).abs() < 1e-9);
                prop_assert_eq!(inside.iter().cloned().fold(f64::INFINITY, f64::min), sm.min);
                prop_assert_eq!(*inside.last().unwrap(), sm.last);
            }
        }
    }
}
