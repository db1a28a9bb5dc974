//! The gateway's one clock.
//!
//! Every duration the gateway measures (safety timers, timeouts, backoff, time to live, idle
//! window close, hazard persistence) runs on the monotonic clock: [`mono_s`] / [`mono_ms`],
//! which an NTP step cannot move. Wall time ([`wall_s`] / [`wall_ms`]) is read only where a
//! timestamp leaves the gateway (a reading's or record's time, a CAP `sent`, a peer message)
//! or is compared with one that came from outside.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The monotonic origin of this process: the first time anything asked for the clock.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// One reading of both clocks, for code that needs durations (`mono`) and also stamps what
/// leaves the gateway (`wall`), such as the signal runtime and the hazard engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now {
    /// Seconds on the monotonic clock ([`mono_s`]).
    pub mono: f64,
    /// Seconds since the Unix epoch ([`wall_s`]).
    pub wall: f64,
}

impl Now {
    /// Reads both clocks.
    pub fn read() -> Now {
        Now {
            mono: mono_s(),
            wall: wall_s(),
        }
    }
}

/// Seconds on the monotonic clock since this process's origin.
pub fn mono_s() -> f64 {
    origin().elapsed().as_secs_f64()
}

/// Milliseconds on the monotonic clock since this process's origin.
pub fn mono_ms() -> u64 {
    u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch, as the system clock says now (0 before the epoch).
pub fn wall_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch, as the system clock says now (0 before the epoch).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let a = mono_ms();
        let b = mono_ms();
        assert!(b >= a);
        assert!(mono_s() >= 0.0);
    }

    #[test]
    fn wall_time_is_after_2020() {
        assert!(wall_s() > 1_577_836_800.0);
        assert!(wall_ms() / 1000 >= 1_577_836_800);
    }
}
