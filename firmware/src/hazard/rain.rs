//! Tipping-bucket rain gauge: each debounced contact closure is one tip of a known depth.
//! Gives the total since reset and the rate over a rolling 10-minute window (ten 1-minute
//! buckets), with status bits for a contact stuck closed and an implausible rate. Includes a
//! driver that polls the reed contact on an input pin.

use embedded_hal::digital::InputPin;

use citygate_protocols::registers::hazard_node as map;

use super::water::set;

/// Minutes in the rate window.
pub const RATE_WINDOW_MIN: usize = 10;
const MINUTE_MS: u64 = 60_000;

/// Rain gauge settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RainConfig {
    /// Depth of one tip in 0.01 mm (20 = 0.2 mm).
    pub tip_hundredths_mm: u16,
    /// Closures within this time after a tip are contact bounce.
    pub debounce_ms: u32,
    /// Contact closed longer than this is reported stuck.
    pub stuck_closed_ms: u32,
    /// Rates above this (0.1 mm/h) are implausible.
    pub max_rate_tenths_mm_h: u16,
}

impl Default for RainConfig {
    fn default() -> Self {
        RainConfig {
            tip_hundredths_mm: 20,
            debounce_ms: 50,
            stuck_closed_ms: 10_000,
            max_rate_tenths_mm_h: 5_000,
        }
    }
}

/// The rain channel.
#[derive(Debug, Clone)]
pub struct RainGauge {
    cfg: RainConfig,
    total_tips: u32,
    buckets: [u16; RATE_WINDOW_MIN],
    minute: u64,
    closed: bool,
    closed_since: u64,
    last_tip: Option<u64>,
    status: u16,
}

impl RainGauge {
    /// A gauge with nothing counted, at `now`.
    pub fn new(cfg: RainConfig, now: u64) -> Self {
        RainGauge {
            cfg,
            total_tips: 0,
            buckets: [0; RATE_WINDOW_MIN],
            minute: now / MINUTE_MS,
            closed: false,
            closed_since: now,
            last_tip: None,
            status: 0,
        }
    }

    fn roll(&mut self, now: u64) {
        let minute = now / MINUTE_MS;
        let skipped = minute
            .saturating_sub(self.minute)
            .min(RATE_WINDOW_MIN as u64);
        for k in 1..=skipped {
            if let Some(b) = self
                .buckets
                .get_mut(((self.minute + k) % RATE_WINDOW_MIN as u64) as usize)
            {
                *b = 0;
            }
        }
        self.minute = self.minute.max(minute);
    }

    /// Samples the contact (`true` = closed) at `now`.
    pub fn sample(&mut self, closed: bool, now: u64) {
        self.roll(now);
        if closed && !self.closed {
            self.closed_since = now;
            let bounce = self
                .last_tip
                .is_some_and(|t| now.saturating_sub(t) < self.cfg.debounce_ms as u64);
            if !bounce {
                self.tip(now);
            }
        }
        self.closed = closed;
        let stuck =
            closed && now.saturating_sub(self.closed_since) > self.cfg.stuck_closed_ms as u64;
        set(&mut self.status, map::STATUS_RAIN_STUCK, stuck);
        let implausible = self.rate_tenths_mm_h() > self.cfg.max_rate_tenths_mm_h;
        set(&mut self.status, map::STATUS_RAIN_OUT_OF_RANGE, implausible);
    }

    fn tip(&mut self, now: u64) {
        self.total_tips = self.total_tips.saturating_add(1);
        if let Some(b) = self
            .buckets
            .get_mut((self.minute % RATE_WINDOW_MIN as u64) as usize)
        {
            *b = b.saturating_add(1);
        }
        self.last_tip = Some(now);
    }

    /// Rain since the last reset, 0.1 mm.
    pub fn total_tenths_mm(&self) -> u32 {
        (self.total_tips as u64 * self.cfg.tip_hundredths_mm as u64 / 10).min(u32::MAX as u64)
            as u32
    }

    /// Rate over the last 10 minutes, 0.1 mm/h (call [`sample`](Self::sample) first to roll
    /// the window to now).
    pub fn rate_tenths_mm_h(&self) -> u16 {
        let tips: u64 = self.buckets.iter().map(|&b| b as u64).sum();
        // tips × depth (0.01 mm) per 10 min → × 6 per hour → ÷ 10 for 0.1 mm
        (tips * self.cfg.tip_hundredths_mm as u64 * 6 / 10).min(u16::MAX as u64) as u16
    }

    /// Zeroes the total (the rate window is kept).
    pub fn reset_total(&mut self) {
        self.total_tips = 0;
    }

    /// Status bits (`STATUS_RAIN_*`).
    pub fn status(&self) -> u16 {
        self.status
    }
}

/// Polls the gauge's reed contact on an input pin.
#[derive(Debug)]
pub struct RainGaugeInput<P> {
    pin: P,
    closed_is_low: bool,
}

impl<P: InputPin> RainGaugeInput<P> {
    /// `closed_is_low`: the contact pulls the pin to ground (the usual wiring with a pull-up).
    pub const fn new(pin: P, closed_is_low: bool) -> Self {
        RainGaugeInput { pin, closed_is_low }
    }

    /// Reads the contact into `gauge` at `now`; poll at least every 10 ms.
    pub fn poll(&mut self, gauge: &mut RainGauge, now: u64) -> Result<(), P::Error> {
        let high = self.pin.is_high()?;
        gauge.sample(high != self.closed_is_low, now);
        Ok(())
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    fn tip_at(g: &mut RainGauge, t: u64) {
        g.sample(true, t);
        g.sample(false, t + 20);
    }

    #[test]
    fn counts_tips_into_total_and_rate_and_ignores_bounce() {
        let mut g = RainGauge::new(RainConfig::default(), 0);
        // 10 tips of 0.2 mm in the first minute; each bounces once 10 ms later
        for i in 0..10 {
            let t = i * 5_000;
            tip_at(&mut g, t);
            g.sample(true, t + 30);
            g.sample(false, t + 40);
        }
        assert_eq!(g.total_tenths_mm(), 20, "2.0 mm");
        // 2.0 mm in 10 minutes = 12.0 mm/h
        assert_eq!(g.rate_tenths_mm_h(), 120);
        // ten minutes later the window has emptied, the total stays
        g.sample(false, 11 * 60_000);
        assert_eq!(g.rate_tenths_mm_h(), 0);
        assert_eq!(g.total_tenths_mm(), 20);
        g.reset_total();
        assert_eq!(g.total_tenths_mm(), 0);
        assert_eq!(g.status(), 0);
    }

    #[test]
    fn stuck_contact_and_implausible_rate_are_flagged() {
        let mut g = RainGauge::new(RainConfig::default(), 0);
        g.sample(true, 0);
        g.sample(true, 10_001);
        assert_eq!(g.status(), map::STATUS_RAIN_STUCK);
        g.sample(false, 10_002);
        assert_eq!(g.status(), 0);
        // 500 mm/h needs > 833 tips in 10 minutes: 900 tips at 100 ms
        for i in 0..900 {
            tip_at(&mut g, 20_000 + i * 100);
        }
        assert_ne!(g.status() & map::STATUS_RAIN_OUT_OF_RANGE, 0);
    }

    #[test]
    fn pin_driver_counts_a_closure_active_low() {
        let pin = Mock::new(&[
            Transaction::get(State::High),
            Transaction::get(State::Low),
            Transaction::get(State::High),
        ]);
        let mut input = RainGaugeInput::new(pin, true);
        let mut g = RainGauge::new(RainConfig::default(), 0);
        for t in [0, 100, 200] {
            input.poll(&mut g, t).expect("pin");
        }
        assert_eq!(g.total_tenths_mm(), 2);
        input.release().done();
    }
}
