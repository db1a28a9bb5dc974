//! A private exponential backoff with jitter for failing Modbus devices. Same shape as the
//! gateway-wide `Backoff` being written in `gateway/src/backoff.rs` (`new(min, max, seed)`,
//! `next_delay()`, `reset()`); to be unified with it.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Delays that double from `min` up to `max`; each is drawn uniformly from the upper half of
/// the current step ("equal jitter"), so that many devices failing together spread out.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    rng: SmallRng,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            step: min,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The next delay; the step doubles up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let extra = if jitter_ns == 0 {
            0
        } else {
            self.rng.gen_range(0..=jitter_ns)
        };
        step - half + Duration::from_nanos(extra)
    }

    /// Back to `min` after a success.
    pub(crate) fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_bounds_with_jitter_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max, 7);
        let mut steps = vec![];
        for _ in 0..8 {
            steps.push(b.next_delay());
        }
        assert!(
            steps[0] >= Duration::from_millis(50) && steps[0] <= min,
            "{steps:?}"
        );
        assert!(steps[1] >= Duration::from_millis(100) && steps[1] <= min * 2);
        assert!(steps[7] >= max / 2 && steps[7] <= max, "{steps:?}");
        b.reset();
        assert!(b.next_delay() <= min);
        // The same seed repeats; different seeds spread out.
        let seq = |seed| {
            let mut b = Backoff::new(min, max, seed);
            (0..5).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(seq(1), seq(1));
        assert_ne!(seq(1), seq(2));
    }
}
