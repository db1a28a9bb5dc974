//! The poll schedule of one device: fixed-rate slots `due + k·interval`. A slot the device
//! cannot start within half an interval of (its link was busy with other devices), or that
//! passed while its own previous cycle was still running, is skipped, never made up: a late
//! device waits for its next slot instead of being polled again at once, so polls never come
//! in bursts and two cycle starts are never closer than half an interval.
//!
//! Pure: the caller passes the clock.

use std::time::Duration;

use tokio::time::Instant;

/// How late a cycle may start against its slot and still run: half an interval.
pub(crate) fn tolerance(interval: Duration) -> Duration {
    interval / 2
}

/// Whether a cycle due at `due` and about to start at `now` missed its slot.
pub(crate) fn missed(due: Instant, interval: Duration, now: Instant) -> bool {
    now.saturating_duration_since(due) > tolerance(interval)
}

/// The slot to poll at after a cycle due at `due` (started or skipped), when the link is free
/// again at `now`: the first slot `due + k·interval` (k ≥ 1) that is not already past.
/// Returns it and how many slots in between were skipped.
pub(crate) fn next_slot(due: Instant, interval: Duration, now: Instant) -> (Instant, u64) {
    let next = due + interval;
    if next >= now || interval.is_zero() {
        return (next.max(due), 0);
    }
    let behind = now.duration_since(next).as_nanos();
    let step = interval.as_nanos();
    let skipped = behind.div_ceil(step);
    let k = u32::try_from(skipped).unwrap_or(u32::MAX);
    (
        next + interval.saturating_mul(k),
        u64::try_from(skipped).unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn on_time_cycles_keep_the_fixed_rate() {
        let t0 = Instant::now();
        let i = 100 * MS;
        assert_eq!(next_slot(t0, i, t0 + 3 * MS), (t0 + i, 0));
        assert_eq!(next_slot(t0, i, t0 + i), (t0 + i, 0));
        assert!(!missed(t0, i, t0 + 50 * MS));
        assert!(missed(t0, i, t0 + 51 * MS));
    }

    #[test]
    fn a_cycle_that_overran_its_interval_skips_to_the_next_free_slot() {
        let t0 = Instant::now();
        let i = 100 * MS;
        // A 150 ms cycle: the slot at 100 passed while it ran; the next one is 200.
        assert_eq!(next_slot(t0, i, t0 + 150 * MS), (t0 + 2 * i, 1));
        // 350 ms: 100, 200 and 300 passed.
        assert_eq!(next_slot(t0, i, t0 + 350 * MS), (t0 + 4 * i, 3));
    }

    proptest! {
        /// Whatever the lateness, the next slot is on the grid, not in the past, at most one
        /// interval ahead, and the skipped count says how many slots were passed over.
        #[test]
        fn the_next_slot_is_on_the_grid_and_never_in_the_past(
            interval_ms in 1u64..1000, late_ms in 0u64..10_000,
        ) {
            let t0 = Instant::now();
            let i = Duration::from_millis(interval_ms);
            let now = t0 + Duration::from_millis(late_ms);
            let (next, skipped) = next_slot(t0, i, now);
            prop_assert!(next >= now);
            prop_assert!(next < now + i || next == t0 + i);
            prop_assert_eq!(next, t0 + i * u32::try_from(skipped + 1).unwrap());
        }
    }
}
