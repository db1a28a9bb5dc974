//! Exponential reconnect backoff with full jitter, pure and clock-free.
//!
//! The n-th delay (n = 0, 1, ...) is drawn uniformly from `[min/2, min(max, min * 2^n)]`:
//! "full jitter" (as in the AWS architecture note on backoff) with a floor of `min/2`, so that a
//! gateway never retries in a tight loop, while a fleet that lost its uplink at the same instant
//! spreads its reconnects instead of hammering the broker in waves. The caller sleeps; this type
//! only computes. Each gateway should seed it differently (e.g. from its gateway id).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The smallest `min` accepted; a zero `min` would let the floor reach zero and spin.
pub const MIN_FLOOR: Duration = Duration::from_millis(1);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Reconnect delays for one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: SmallRng,
}

impl Backoff {
    /// `min` is the first delay ceiling (raised to [`MIN_FLOOR`]); `max` caps every delay
    /// (raised to `min` if smaller). `seed` makes the jitter reproducible.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        let min = min.max(MIN_FLOOR);
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt; each call counts one attempt.
    pub fn next_delay(&mut self) -> Duration {
        let (floor, ceiling) = self.bounds();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = self.rng.gen_range(floor..=ceiling);
        from_nanos(nanos)
    }

    /// Back to the first delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts counted since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The range, in nanoseconds, the next delay is drawn from.
    fn bounds(&self) -> (u128, u128) {
        let min = self.min.as_nanos();
        let max = self.max.as_nanos();
        let growth = 1u128 << self.attempt.min(100);
        let ceiling = min.saturating_mul(growth).min(max);
        (min / 2, ceiling)
    }

    /// The inclusive range the next delay is drawn from.
    pub fn next_bounds(&self) -> (Duration, Duration) {
        let (floor, ceiling) = self.bounds();
        (from_nanos(floor), from_nanos(ceiling))
    }
}

fn from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 1e9, so it fits.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn delays_stay_within_the_floor_and_the_exponential_ceiling() {
        for seed in 0..50 {
            let mut b = Backoff::new(MIN, MAX, seed);
            for n in 0..40u32 {
                let (lo, hi) = b.next_bounds();
                let d = b.next_delay();
                let ceiling = MIN.saturating_mul(2u32.saturating_pow(n)).min(MAX);
                assert_eq!(hi, ceiling, "attempt {n}");
                assert_eq!(lo, MIN / 2);
                assert!(d >= MIN / 2 && d <= ceiling, "attempt {n}: {d:?}");
            }
            assert_eq!(b.attempt(), 40);
        }
    }

    #[test]
    fn delays_grow_in_expectation_until_the_cap() {
        let samples = 2000;
        let mean = |n: usize| -> f64 {
            (0..samples)
                .map(|seed| {
                    let mut b = Backoff::new(MIN, MAX, seed);
                    (0..n).for_each(|_| {
                        b.next_delay();
                    });
                    b.next_delay().as_secs_f64()
                })
                .sum::<f64>()
                / samples as f64
        };
        let means: Vec<f64> = (0..8).map(mean).collect();
        // Expected (floor + ceiling) / 2: 1.5, 2.5, 4.5, 8.5, 16.5, 30.5, 30.5, 30.5 s.
        for (n, want) in [1.5, 2.5, 4.5, 8.5, 16.5, 30.5, 30.5, 30.5]
            .iter()
            .enumerate()
        {
            assert!(
                (means[n] - want).abs() < want * 0.05,
                "attempt {n}: {means:?}"
            );
        }
        assert!(means.windows(2).take(5).all(|w| w[1] > w[0]), "{means:?}");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(MIN, MAX, 7);
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.next_bounds().1, MAX);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_bounds(), (MIN / 2, MIN));
        assert!(b.next_delay() <= MIN);
    }

    #[test]
    fn same_seed_same_delays_and_degenerate_bounds_do_not_spin() {
        let run = |seed| {
            let mut b = Backoff::new(MIN, MAX, seed);
            (0..10).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO, 1);
        assert!((0..100).all(|_| zero.next_delay() >= MIN_FLOOR / 2));
        let mut inverted = Backoff::new(Duration::from_secs(5), Duration::from_secs(1), 1);
        assert_eq!(inverted.next_bounds().1, Duration::from_secs(5));
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX, 1);
        for _ in 0..200 {
            huge.next_delay();
        }
        inverted.next_delay();
    }

    /// The largest share of `schedules` (one list of attempt instants per gateway) that falls
    /// into one 100 ms bucket.
    fn worst_bucket_share(schedules: &[Vec<Duration>]) -> f64 {
        let mut buckets = std::collections::HashMap::<u128, usize>::new();
        for schedule in schedules {
            for at in schedule {
                *buckets.entry(at.as_millis() / 100).or_default() += 1;
            }
        }
        let worst = buckets.values().copied().max().unwrap_or(0);
        worst as f64 / schedules.len() as f64
    }

    /// The reconnect instants of 100 gateways that lost the broker at the same instant (time
    /// zero), over 10 attempts each.
    fn fleet(mut delay: impl FnMut(u64, u32) -> Duration) -> Vec<Vec<Duration>> {
        (0..100u64)
            .map(|gw| {
                let mut at = Duration::ZERO;
                (0..10)
                    .map(|n| {
                        at += delay(gw, n);
                        at
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_fleet_does_not_reconnect_in_waves() {
        let mut backoffs: Vec<Backoff> = (0..100u64)
            .map(|gw| Backoff::new(MIN, MAX, 0x6369_7479_6761_7465 ^ gw))
            .collect();
        let jittered = fleet(|gw, _| backoffs[gw as usize].next_delay());
        // After the first reconnect attempt: no 100 ms bucket holds more than 20% of the fleet
        // (measured: 12%).
        let later: Vec<Vec<Duration>> = jittered.iter().map(|s| s[1..].to_vec()).collect();
        let share = worst_bucket_share(&later);
        assert!(
            share <= 0.20,
            "worst 100 ms bucket holds {share:.2} of the fleet"
        );
        // The first attempt can only spread over [min/2, min] = 10 buckets, so about 10% each
        // on average; the fullest of them holds 19% with these seeds.
        let first: Vec<Vec<Duration>> = jittered.iter().map(|s| s[..1].to_vec()).collect();
        let share = worst_bucket_share(&first);
        assert!(
            share <= 0.25,
            "first attempt: worst bucket holds {share:.2} of the fleet"
        );

        // The check can fail: plain exponential backoff without jitter puts everyone into the
        // same bucket at every attempt.
        let plain = fleet(|_, n| MIN.saturating_mul(1 << n).min(MAX));
        assert_eq!(worst_bucket_share(&plain), 1.0);
    }
}
