//! The command watchdog: expired when no valid command has arrived for the configured time
//! (and before the first one), which hands the controller to its local fallback plan.

/// Tracks the time of the last valid command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    timeout_ms: u32,
    last_feed: Option<u64>,
}

impl Watchdog {
    /// A watchdog that has never been fed (so it starts expired).
    pub const fn new(timeout_ms: u32) -> Self {
        Watchdog {
            timeout_ms,
            last_feed: None,
        }
    }

    /// A valid command arrived at `now`.
    pub fn feed(&mut self, now: u64) {
        self.last_feed = Some(now);
    }

    /// Whether the timeout has passed since the last valid command (or none ever came).
    pub fn expired(&self, now: u64) -> bool {
        self.last_feed
            .is_none_or(|t| now.saturating_sub(t) >= self.timeout_ms as u64)
    }

    /// Time of the last valid command.
    pub fn last_feed(&self) -> Option<u64> {
        self.last_feed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_exactly_at_the_timeout() {
        let mut w = Watchdog::new(1_000);
        assert!(w.expired(0));
        w.feed(500);
        assert!(!w.expired(1_499));
        assert!(w.expired(1_500));
        w.feed(1_600);
        assert!(!w.expired(1_600));
    }
}
