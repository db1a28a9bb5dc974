//! Signal filters for sensor readings: a sliding median (spike rejection), an exponential
//! moving average (smoothing), and a stuck-value detector.

/// Median of the last `N` samples (fewer at start-up).
#[derive(Debug, Clone)]
pub struct MedianFilter<const N: usize> {
    window: [i32; N],
    len: usize,
    next: usize,
}

impl<const N: usize> Default for MedianFilter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MedianFilter<N> {
    /// An empty window.
    pub const fn new() -> Self {
        MedianFilter {
            window: [0; N],
            len: 0,
            next: 0,
        }
    }

    /// Adds `x` and returns the median of the window (the lower middle for an even count).
    pub fn push(&mut self, x: i32) -> i32 {
        if N == 0 {
            return x;
        }
        if let Some(slot) = self.window.get_mut(self.next) {
            *slot = x;
        }
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
        let mut sorted = self.window;
        let part = sorted.get_mut(..self.len).unwrap_or(&mut []);
        part.sort_unstable();
        part.get((self.len - 1) / 2).copied().unwrap_or(x)
    }

    /// Forgets all samples.
    pub fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }
}

/// Exponential moving average: `y += alpha · (x − y)`, starting at the first sample.
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    alpha: f32,
    value: Option<f32>,
}

impl Ema {
    /// `alpha` in (0, 1]: 1 = no smoothing; it is clamped into that range.
    pub fn new(alpha: f32) -> Self {
        let alpha = if alpha.is_nan() {
            1.0
        } else {
            alpha.clamp(0.001, 1.0)
        };
        Ema { alpha, value: None }
    }

    /// Adds `x` and returns the new average.
    pub fn update(&mut self, x: f32) -> f32 {
        let y = match self.value {
            Some(y) => y + self.alpha * (x - y),
            None => x,
        };
        self.value = Some(y);
        y
    }

    /// The current average.
    pub fn value(&self) -> Option<f32> {
        self.value
    }

    /// Forgets the average.
    pub fn clear(&mut self) {
        self.value = None;
    }
}

/// Reports a value that has not changed at all for `limit` consecutive samples: real sensors
/// always show some noise, so an exactly repeated raw value means a frozen sensor or bus.
#[derive(Debug, Clone, Copy)]
pub struct StuckDetector {
    limit: u16,
    last: Option<i32>,
    repeats: u16,
}

impl StuckDetector {
    /// Stuck after `limit` identical samples in a row (0 disables the check).
    pub const fn new(limit: u16) -> Self {
        StuckDetector {
            limit,
            last: None,
            repeats: 0,
        }
    }

    /// Adds a raw sample; returns whether the value is stuck.
    pub fn update(&mut self, raw: i32) -> bool {
        if self.last == Some(raw) {
            self.repeats = self.repeats.saturating_add(1);
        } else {
            self.last = Some(raw);
            self.repeats = 1;
        }
        self.limit != 0 && self.repeats >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_rejects_a_spike() {
        let mut m = MedianFilter::<5>::new();
        assert_eq!(m.push(100), 100);
        assert_eq!(m.push(102), 100);
        assert_eq!(m.push(5_000), 102);
        assert_eq!(m.push(101), 101);
        assert_eq!(m.push(99), 101);
        assert_eq!(m.push(0), 101, "window is now 0 102 5000 101 99");
    }

    #[test]
    fn ema_converges() {
        let mut e = Ema::new(0.5);
        assert_eq!(e.update(10.0), 10.0);
        assert_eq!(e.update(20.0), 15.0);
        assert_eq!(e.update(20.0), 17.5);
        assert_eq!(Ema::new(f32::NAN).update(3.0), 3.0);
    }

    #[test]
    fn stuck_after_limit_repeats() {
        let mut s = StuckDetector::new(3);
        assert!(!s.update(7));
        assert!(!s.update(7));
        assert!(s.update(7));
        assert!(!s.update(8));
        assert!(!StuckDetector::new(0).update(1));
    }
}
