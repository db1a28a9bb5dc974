//! Per-device counters and link state, shared lock-free between a link task and the handle.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Where a device is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Not polled yet.
    Starting,
    /// The last poll cycle succeeded.
    Online,
    /// Failing, retried with exponential backoff; not yet reported offline.
    Backoff,
    /// Reported offline (an event); probed at `probe_interval_ms`.
    Offline,
}

impl DeviceState {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceState::Starting => "starting",
            DeviceState::Online => "online",
            DeviceState::Backoff => "backoff",
            DeviceState::Offline => "offline",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => DeviceState::Online,
            2 => DeviceState::Backoff,
            3 => DeviceState::Offline,
            _ => DeviceState::Starting,
        }
    }

    const fn to_u8(self) -> u8 {
        match self {
            DeviceState::Starting => 0,
            DeviceState::Online => 1,
            DeviceState::Backoff => 2,
            DeviceState::Offline => 3,
        }
    }
}

/// A snapshot of one device's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStats {
    pub device: String,
    pub state: DeviceState,
    /// Requests sent (reads and writes, retries included).
    pub requests: u64,
    /// Requests that failed for any reason (timeouts and exceptions included).
    pub errors: u64,
    /// Requests that got no answer within `timeout_ms`.
    pub timeouts: u64,
    /// Exception responses.
    pub exceptions: u64,
    /// Answers that did not match the request (transaction id, unit id, function, length).
    pub mismatches: u64,
    /// Connections (re)opened.
    pub connects: u64,
    /// Poll cycles started, and those that failed.
    pub cycles: u64,
    pub failed_cycles: u64,
    /// Readings emitted.
    pub readings: u64,
    /// Poll cycles that started more than one poll interval late (skipped ahead).
    pub overruns: u64,
    /// How late poll cycles started against their schedule: bucket `k` counts starts
    /// `k × 0.5 ms` to `(k + 1) × 0.5 ms` late; the last bucket everything from 15.5 ms on.
    pub lateness_500us: [u64; LATENESS_BUCKETS],
}

/// Buckets of [`DeviceStats::lateness_500us`].
pub const LATENESS_BUCKETS: usize = 32;

impl DeviceStats {
    /// The lateness (ms, bucket upper bound) below which a fraction `q` of poll starts fall,
    /// over a histogram (e.g. the difference of two snapshots, summed over devices).
    pub fn lateness_quantile_ms(hist: &[u64; LATENESS_BUCKETS], q: f64) -> Option<f64> {
        let total: u64 = hist.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (total as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, n) in hist.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some((k as f64 + 1.0) * 0.5);
            }
        }
        None
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    state: AtomicU8,
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) exceptions: AtomicU64,
    pub(crate) mismatches: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) cycles: AtomicU64,
    pub(crate) failed_cycles: AtomicU64,
    pub(crate) readings: AtomicU64,
    pub(crate) overruns: AtomicU64,
    lateness: [AtomicU64; LATENESS_BUCKETS],
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn record_lateness(&self, late: std::time::Duration) {
        let k = usize::try_from(late.as_micros() / 500)
            .unwrap_or(usize::MAX)
            .min(LATENESS_BUCKETS - 1);
        if let Some(b) = self.lateness.get(k) {
            inc(b);
        }
    }

    pub(crate) fn set_state(&self, s: DeviceState) {
        self.state.store(s.to_u8(), Ordering::Relaxed);
    }

    pub(crate) fn state(&self) -> DeviceState {
        DeviceState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn snapshot(&self, device: &str) -> DeviceStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceStats {
            device: device.to_string(),
            state: self.state(),
            requests: l(&self.requests),
            errors: l(&self.errors),
            timeouts: l(&self.timeouts),
            exceptions: l(&self.exceptions),
            mismatches: l(&self.mismatches),
            connects: l(&self.connects),
            cycles: l(&self.cycles),
            failed_cycles: l(&self.failed_cycles),
            readings: l(&self.readings),
            overruns: l(&self.overruns),
            lateness_500us: std::array::from_fn(|k| self.lateness.get(k).map(l).unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lateness_histogram_and_quantiles() {
        let c = Counters::default();
        for _ in 0..98 {
            c.record_lateness(Duration::from_micros(200));
        }
        c.record_lateness(Duration::from_millis(3));
        c.record_lateness(Duration::from_secs(5));
        let s = c.snapshot("d");
        assert_eq!(s.lateness_500us[0], 98);
        assert_eq!(s.lateness_500us[6], 1);
        assert_eq!(s.lateness_500us[LATENESS_BUCKETS - 1], 1);
        assert_eq!(
            DeviceStats::lateness_quantile_ms(&s.lateness_500us, 0.5),
            Some(0.5)
        );
        assert_eq!(
            DeviceStats::lateness_quantile_ms(&s.lateness_500us, 0.99),
            Some(3.5)
        );
        assert_eq!(
            DeviceStats::lateness_quantile_ms(&[0; LATENESS_BUCKETS], 0.5),
            None
        );
    }
}
