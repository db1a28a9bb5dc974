//! The drain limiter: a token bucket that paces how fast the uplink publishes outbox records,
//! so that a backlog built up during an outage does not flood the platform on reconnect.
//! Pure and clock-free: the caller passes the time in milliseconds.
//!
//! The bucket holds at most one second's worth of tokens (`rate_per_s`) and refills
//! continuously. A rate of 0 means no limit. Alerts are not paced: the uplink publishes them
//! without taking tokens, ahead of everything else.

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
