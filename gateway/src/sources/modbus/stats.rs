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
    /// Poll cycles that ran past their next schedule slot (the next cycle waited for the
    /// first free slot).
    pub overruns: u64,
    /// Schedule slots skipped: passed while the device's own cycle ran, or not started within
    /// half an interval because the link was busy with other devices. Never made up.
    pub skipped: u64,
    /// How late poll cycles started against their schedule (a histogram, see [`TIMING_BUCKETS`]).
    pub lateness: [u64; TIMING_BUCKETS],
    /// Poll-period jitter: |Δt − poll interval| between the starts of consecutive cycles that
    /// were both on the regular schedule (not after a failure, backoff or probe).
    pub period_jitter: [u64; TIMING_BUCKETS],
    /// The sums of the times counted in `lateness` and `period_jitter`, in microseconds.
    pub lateness_sum_us: u64,
    pub period_jitter_sum_us: u64,
}

/// Timing histograms count in buckets of [`TIMING_BUCKET_US`]: bucket `k` counts times from
/// `k` to `k + 1` buckets long; the last bucket counts everything longer too.
pub const TIMING_BUCKETS: usize = 128;
/// The width of one timing bucket, in microseconds.
pub const TIMING_BUCKET_US: u64 = 100;

impl DeviceStats {
    /// The time (ms, bucket upper bound) below which a fraction `q` of a timing histogram
    /// falls (e.g. the difference of two snapshots, summed over devices).
    pub fn quantile_ms(hist: &[u64; TIMING_BUCKETS], q: f64) -> Option<f64> {
        let total: u64 = hist.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (total as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, n) in hist.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some((k as f64 + 1.0) * TIMING_BUCKET_US as f64 / 1000.0);
            }
        }
        None
    }
}

/// A timing histogram that the link task writes and snapshots read, with the sum of the
/// times counted (µs).
#[derive(Debug)]
pub(crate) struct Timing([AtomicU64; TIMING_BUCKETS], AtomicU64);

impl Default for Timing {
    fn default() -> Self {
        Timing(
            std::array::from_fn(|_| AtomicU64::new(0)),
            AtomicU64::new(0),
        )
    }
}

impl Timing {
    pub(crate) fn record(&self, d: std::time::Duration) {
        let k = usize::try_from(d.as_micros() / u128::from(TIMING_BUCKET_US))
            .unwrap_or(usize::MAX)
            .min(TIMING_BUCKETS - 1);
        if let Some(b) = self.0.get(k) {
            inc(b);
        }
        self.1.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn sum_us(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> [u64; TIMING_BUCKETS] {
        std::array::from_fn(|k| self.0.get(k).map_or(0, |c| c.load(Ordering::Relaxed)))
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
    pub(crate) skipped: AtomicU64,
    pub(crate) lateness: Timing,
    pub(crate) period_jitter: Timing,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
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
            skipped: l(&self.skipped),
            lateness: self.lateness.snapshot(),
            period_jitter: self.period_jitter.snapshot(),
            lateness_sum_us: self.lateness.sum_us(),
            period_jitter_sum_us: self.period_jitter.sum_us(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timing_histogram_and_quantiles() {
        let c = Counters::default();
        for _ in 0..98 {
            c.lateness.record(Duration::from_micros(50));
        }
        c.lateness.record(Duration::from_micros(3050));
        c.lateness.record(Duration::from_secs(5));
        c.period_jitter.record(Duration::from_micros(250));
        let s = c.snapshot("d");
        assert_eq!(s.lateness[0], 98);
        assert_eq!(s.lateness[30], 1);
        assert_eq!(s.lateness[TIMING_BUCKETS - 1], 1);
        assert_eq!(s.period_jitter[2], 1);
        assert_eq!(s.lateness_sum_us, 98 * 50 + 3050 + 5_000_000);
        assert_eq!(s.period_jitter_sum_us, 250);
        assert_eq!(DeviceStats::quantile_ms(&s.lateness, 0.5), Some(0.1));
        assert_eq!(DeviceStats::quantile_ms(&s.lateness, 0.99), Some(3.1));
        assert_eq!(DeviceStats::quantile_ms(&s.period_jitter, 0.99), Some(0.3));
        assert_eq!(DeviceStats::quantile_ms(&[0; TIMING_BUCKETS], 0.5), None);
    }
}
