//! The drain limiter: paces how fast the uplink publishes a backlog of outbox records, so
//! that what built up during an outage does not flood the platform on reconnect, while the
//! steady flow the gateway sustains is never held back. Pure and clock-free: the caller passes
//! the time in milliseconds and the count of records stored so far.
//!
//! [`Pacer`]: every record stored while the uplink is connected earns one *live* token, valid
//! while it is among the arrivals of the last [`LIVE_WINDOW_MS`]; what was stored while the
//! uplink was down, and what is older than that window, is backlog, and drains from a
//! [`TokenBucket`] of `drain_per_s` tokens a second (holding one second's worth) on top. So the
//! uplink sends what arrives plus at most `drain_per_s` a second of older records, and the
//! limit shows (throttles) only while a backlog older than a few seconds is waiting. A rate of
//! 0 means no limit. Alerts are not paced: the uplink publishes them without taking tokens,
//! ahead of everything else.

use std::collections::VecDeque;

/// How long a stored record counts as live (not backlog), in milliseconds.
pub const LIVE_WINDOW_MS: u64 = 5_000;
/// How often the pacer keeps a sample of the stored count (for the live window).
const SAMPLE_MS: u64 = 100;
/// Rate-limited log: at most one line per this many milliseconds while pacing.
pub const LOG_EVERY_MS: u64 = 30_000;

/// The uplink's drain limiter: live tokens for recent arrivals, a token bucket for the backlog.
#[derive(Debug, Clone)]
pub struct Pacer {
    backlog: TokenBucket,
    /// Live tokens not yet used.
    live: u64,
    /// Stored count at the last [`Pacer::arrived`] (`None` before the first: what is in the
    /// outbox when the gateway starts is backlog).
    last_total: Option<u64>,
    /// (time, stored count) samples over the last [`LIVE_WINDOW_MS`].
    samples: VecDeque<(u64, u64)>,
    /// Of the last [`Pacer::take`], how many tokens came from the backlog bucket.
    last_from_backlog: usize,
    /// Whether the backlog is being paced, and when the last log line about it was due.
    pacing: bool,
    last_log_ms: Option<u64>,
}

/// What the uplink should report after a pass over the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceReport {
    /// Nothing new to say.
    Quiet,
    /// Pacing (newly, or still after [`LOG_EVERY_MS`]): log it.
    Throttling,
    /// The backlog is gone; pacing ended.
    Drained,
}

impl Pacer {
    pub fn new(rate_per_s: u32, now_ms: u64) -> Self {
        Pacer {
            backlog: TokenBucket::new(rate_per_s, now_ms),
            live: 0,
            last_total: None,
            samples: VecDeque::new(),
            last_from_backlog: 0,
            pacing: false,
            last_log_ms: None,
        }
    }

    /// `total` records (of the paced classes) stored so far, at `now_ms`: new ones earn live
    /// tokens while `connected`; live tokens are capped by the arrivals of the last
    /// [`LIVE_WINDOW_MS`], and dropped while the uplink is down (what it could not send then
    /// is backlog).
    pub fn arrived(&mut self, total: u64, now_ms: u64, connected: bool) {
        let new = self.last_total.map_or(0, |t| total.saturating_sub(t));
        let new = if connected { new } else { 0 };
        if !connected {
            self.live = 0;
        }
        self.last_total = Some(total);
        if self
            .samples
            .back()
            .is_none_or(|&(t, _)| now_ms >= t + SAMPLE_MS)
        {
            self.samples.push_back((now_ms, total));
        }
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| t + LIVE_WINDOW_MS < now_ms && self.samples.len() > 1)
        {
            self.samples.pop_front();
        }
        // The oldest sample within the window: arrivals since it are live.
        let since = self.samples.front().map_or(total, |&(_, n)| n);
        let recent = total.saturating_sub(since).max(new);
        self.live = self.live.saturating_add(new).min(recent);
    }

    /// Takes up to `want` tokens at `now_ms`: live ones first, then the backlog's.
    pub fn take(&mut self, want: usize, now_ms: u64) -> usize {
        if self.backlog.unlimited() {
            self.last_from_backlog = 0;
            return want;
        }
        let live = usize::try_from(self.live).unwrap_or(usize::MAX).min(want);
        self.live -= live as u64;
        let more = self.backlog.take(want - live, now_ms);
        self.last_from_backlog = more;
        live + more
    }

    /// Returns `n` tokens of the last [`Pacer::take`] that were not used.
    pub fn give_back(&mut self, n: usize) {
        let to_backlog = n.min(self.last_from_backlog);
        self.backlog.give_back(to_backlog);
        self.live = self.live.saturating_add((n - to_backlog) as u64);
        self.last_from_backlog -= to_backlog;
    }

    /// Milliseconds from `now_ms` until one token is available (0 if one is, or no limit).
    pub fn wait_ms(&mut self, now_ms: u64) -> u64 {
        if self.live > 0 {
            return 0;
        }
        self.backlog.wait_ms(now_ms)
    }

    /// The uplink found no token while records of a paced class were waiting.
    pub fn throttled(&mut self, now_ms: u64) -> PaceReport {
        self.pacing = true;
        match self.last_log_ms {
            Some(t) if now_ms < t + LOG_EVERY_MS => PaceReport::Quiet,
            _ => {
                self.last_log_ms = Some(now_ms);
                PaceReport::Throttling
            }
        }
    }

    /// The uplink found no record of any paced class waiting.
    pub fn idle(&mut self) -> PaceReport {
        if std::mem::take(&mut self.pacing) {
            self.last_log_ms = None;
            PaceReport::Drained
        } else {
            PaceReport::Quiet
        }
    }

    /// Whether a backlog is being paced now.
    pub fn pacing(&self) -> bool {
        self.pacing
    }

    /// The backlog rate, records a second (0: no limit).
    pub fn rate_per_s(&self) -> u64 {
        self.backlog.rate_per_s
    }
}

/// A token bucket of `rate_per_s` tokens a second, holding at most `rate_per_s`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: u64,
    /// Tokens, in thousandths, so that refills of less than a token are not lost.
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate_per_s: u32, now_ms: u64) -> Self {
        let rate_per_s = u64::from(rate_per_s);
        TokenBucket {
            rate_per_s,
            milli_tokens: rate_per_s * 1000,
            last_ms: now_ms,
        }
    }

    pub fn unlimited(&self) -> bool {
        self.rate_per_s == 0
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        // rate tokens/s = rate milli-tokens/ms.
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(self.rate_per_s))
            .min(self.rate_per_s * 1000);
    }

    /// Takes up to `want` tokens at `now_ms` and returns how many it got.
    pub fn take(&mut self, want: usize, now_ms: u64) -> usize {
        if self.unlimited() {
            return want;
        }
        self.refill(now_ms);
        let got = (self.milli_tokens / 1000).min(want as u64);
        self.milli_tokens -= got * 1000;
        got as usize
    }

    /// Returns `n` tokens taken but not used.
    pub fn give_back(&mut self, n: usize) {
        if !self.unlimited() {
            self.milli_tokens = self
                .milli_tokens
                .saturating_add(n as u64 * 1000)
                .min(self.rate_per_s * 1000);
        }
    }

    /// Milliseconds from `now_ms` until one token is available (0 if one is, or no limit).
    pub fn wait_ms(&mut self, now_ms: u64) -> u64 {
        if self.unlimited() {
            return 0;
        }
        self.refill(now_ms);
        let missing = 1000u64.saturating_sub(self.milli_tokens);
        missing.div_ceil(self.rate_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_bucket_gives_one_second_then_paces() {
        let mut b = TokenBucket::new(100, 0);
        assert_eq!(b.take(1000, 0), 100);
        assert_eq!(b.take(1, 0), 0);
        assert_eq!(b.wait_ms(0), 10);
        assert_eq!(b.take(10, 50), 5);
        assert_eq!(b.take(10, 10_000), 10, "refills up to the burst");
        assert_eq!(b.take(1000, 10_000), 90);
    }

    #[test]
    fn tokens_given_back_can_be_taken_again_up_to_the_burst() {
        let mut b = TokenBucket::new(10, 0);
        assert_eq!(b.take(10, 0), 10);
        b.give_back(4);
        assert_eq!(b.take(10, 0), 4);
        b.give_back(100);
        assert_eq!(b.take(100, 0), 10);
    }

    #[test]
    fn zero_rate_is_no_limit() {
        let mut b = TokenBucket::new(0, 0);
        assert_eq!(b.take(1_000_000, 0), 1_000_000);
        assert_eq!(b.wait_ms(0), 0);
    }

    #[test]
    fn fractional_refills_accumulate() {
        let mut b = TokenBucket::new(3, 0);
        assert_eq!(b.take(3, 0), 3);
        let mut got = 0;
        for ms in 1..=1000 {
            got += b.take(1, ms);
        }
        assert_eq!(got, 3);
    }

    /// The uplink against a pacer: every `step_ms`, `arrive(t)` records are stored, then the
    /// uplink (when `connected(t)`) takes tokens for everything waiting. Returns what was sent
    /// in each step and what is left waiting at the end.
    fn simulate(
        pacer: &mut Pacer,
        backlog: u64,
        steps: u64,
        step_ms: u64,
        arrive: impl Fn(u64) -> u64,
        connected: impl Fn(u64) -> bool,
    ) -> (Vec<u64>, u64) {
        let (mut stored, mut waiting) = (backlog, backlog);
        pacer.arrived(stored, 0, true);
        let mut sent = Vec::new();
        for k in 1..=steps {
            let t = k * step_ms;
            let n = arrive(t);
            stored += n;
            waiting += n;
            pacer.arrived(stored, t, connected(t));
            let got = if connected(t) {
                pacer.take(waiting as usize, t) as u64
            } else {
                0
            };
            waiting -= got;
            sent.push(got);
        }
        (sent, waiting)
    }

    #[test]
    fn a_steady_flow_far_above_the_limit_is_never_held_back() {
        // 10,000 summaries at the close of every 1 s window, and of every 10 s window; 500/s.
        for window_s in [1, 10] {
            let mut p = Pacer::new(500, 0);
            let every = window_s * 1000;
            let (sent, left) = simulate(
                &mut p,
                0,
                600,
                100,
                |t| if t % every == 0 { 10_000 } else { 0 },
                |_| true,
            );
            assert_eq!(left, 0, "{window_s} s windows");
            assert_eq!(sent.iter().sum::<u64>(), 10_000 * 60 / window_s);
            assert!(!p.pacing());
        }
    }

    #[test]
    fn a_backlog_drains_at_the_limit_on_top_of_the_live_flow() {
        let mut p = Pacer::new(500, 0);
        // 20,000 records waiting at start, 1,000/s arriving: each 100 ms the live flow goes
        // out in full, and the backlog by the one-second burst, then 50 (500/s).
        let (sent, left) = simulate(&mut p, 20_000, 100, 100, |_| 100, |_| true);
        assert_eq!(sent.first(), Some(&600));
        assert!(sent.iter().skip(1).all(|&n| n == 150), "{sent:?}");
        assert_eq!(left, 20_000 - 500 - 50 * 99);
    }

    #[test]
    fn arrivals_during_an_outage_are_backlog() {
        let mut p = Pacer::new(500, 0);
        // 60 s down at 1,000/s, then up: at reconnect only the new arrivals go out unpaced,
        // plus the one-second burst.
        let (sent, left) = simulate(&mut p, 0, 601, 100, |_| 100, |t| t > 60_000);
        assert_eq!(sent.last().copied(), Some(100 + 500));
        assert_eq!(left, 60_100 - 600);
    }

    #[test]
    fn live_tokens_expire_after_the_live_window() {
        // Connected, but the uplink takes nothing for 60 s (its in-flight window full): at
        // most the last 5 s of arrivals stay live.
        let mut p = Pacer::new(500, 0);
        p.arrived(0, 0, true);
        for k in 1..=600 {
            p.arrived(k * 100, k * 100, true);
        }
        assert_eq!(p.take(1_000_000, 60_000), 5_000 + 500);
    }

    #[test]
    fn throttling_is_reported_once_per_log_period_and_its_end_once() {
        let mut p = Pacer::new(10, 0);
        assert_eq!(p.idle(), PaceReport::Quiet);
        assert_eq!(p.throttled(1_000), PaceReport::Throttling);
        assert!(p.pacing());
        assert_eq!(p.throttled(2_000), PaceReport::Quiet);
        assert_eq!(p.throttled(1_000 + LOG_EVERY_MS), PaceReport::Throttling);
        assert_eq!(p.idle(), PaceReport::Drained);
        assert!(!p.pacing());
        assert_eq!(p.idle(), PaceReport::Quiet);
        assert_eq!(p.throttled(40_000), PaceReport::Throttling);
    }

    #[test]
    fn tokens_given_back_return_to_where_they_came_from() {
        let mut p = Pacer::new(10, 0);
        p.arrived(0, 0, true);
        p.arrived(5, 0, true);
        assert_eq!(p.take(100, 0), 15);
        p.give_back(12);
        // 10 back to the bucket (at most its burst), 2 to the live tokens.
        assert_eq!(p.take(100, 0), 12);
        let mut none = Pacer::new(0, 0);
        assert_eq!(none.take(1_000_000, 0), 1_000_000);
        assert_eq!(none.wait_ms(0), 0);
    }

    proptest! {
        /// Over any schedule, no more than burst + rate × elapsed tokens are handed out.
        #[test]
        fn never_exceeds_burst_plus_rate(rate in 1u32..5000, steps in proptest::collection::vec((0u64..500, 0usize..200), 1..200)) {
            let mut b = TokenBucket::new(rate, 0);
            let mut now = 0;
            let mut total = 0u64;
            for (dt, want) in steps {
                now += dt;
                let got = b.take(want, now);
                prop_assert!(got <= want);
                total += got as u64;
                prop_assert!(total <= u64::from(rate) + u64::from(rate) * now / 1000);
            }
        }
    }
}
