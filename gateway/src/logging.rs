//! The log: its format (`--log-format text|json`, on stderr, filtered by `RUST_LOG`) and
//! [`RateLimit`], which keeps a noisy source (a device sending garbage many times a second)
//! from flooding it: at most [`RateLimit::BURST`] warnings per key per window, then one line
//! counting what was left out.

use std::collections::HashMap;

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields.message`, ...
    Json,
}

/// Installs the global log subscriber.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rumqttd=off".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => b.json().with_ansi(false).init(),
    }
}

/// Per-key warning budget: [`Self::BURST`] per [`Self::WINDOW_MS`].
#[derive(Debug, Default)]
pub struct RateLimit {
    keys: HashMap<usize, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: u64,
    logged: u32,
    suppressed: u64,
}

/// What to do with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` warnings of this key were left out in the window before.
    Log { suppressed: u64 },
    /// Leave it out (counted).
    Suppress,
}

impl RateLimit {
    pub const BURST: u32 = 5;
    pub const WINDOW_MS: u64 = 60_000;

    /// Whether a warning of `key` at `now_ms` (monotonic) is logged.
    pub fn check(&mut self, key: usize, now_ms: u64) -> Verdict {
        let w = self.keys.entry(key).or_insert(Window {
            start_ms: now_ms,
            logged: 0,
            suppressed: 0,
        });
        let mut carried = 0;
        if now_ms.saturating_sub(w.start_ms) >= Self::WINDOW_MS {
            carried = w.suppressed;
            *w = Window {
                start_ms: now_ms,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < Self::BURST {
            w.logged += 1;
            Verdict::Log {
                suppressed: carried,
            }
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_key_and_window_then_a_count_of_what_was_left_out() {
        let mut r = RateLimit::default();
        for _ in 0..RateLimit::BURST {
            assert_eq!(r.check(1, 1000), Verdict::Log { suppressed: 0 });
        }
        for _ in 0..7 {
            assert_eq!(r.check(1, 2000), Verdict::Suppress);
        }
        // Another source has its own budget.
        assert_eq!(r.check(2, 2000), Verdict::Log { suppressed: 0 });
        assert_eq!(
            r.check(1, 1000 + RateLimit::WINDOW_MS - 1),
            Verdict::Suppress
        );
        assert_eq!(
            r.check(1, 1000 + RateLimit::WINDOW_MS),
            Verdict::Log { suppressed: 8 }
        );
        assert_eq!(
            r.check(1, 1000 + RateLimit::WINDOW_MS),
            Verdict::Log { suppressed: 0 }
        );
    }
}
