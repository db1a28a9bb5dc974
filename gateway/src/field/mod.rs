//! The field side of the embedded broker: who may connect and what each client may publish
//! and subscribe to (docs/SECURITY.md). rumqttd authenticates a CONNECT but has no topic
//! ACLs, so field clients reach it only through the gate (`gate`), which authenticates them
//! against a mosquitto-format password file (`passwd`), checks every packet against their
//! ACL (`acl`) and bounds connections and packet sizes. `mosquitto` writes the same rules as
//! mosquitto's files for an external broker (`citygate broker-config`).
//!
//! The refusals are counted here ([`FieldCounters`], a part of `status::Stats`) and logged at
//! most [`LogLimit::PER_MINUTE`] times a minute.

pub mod acl;
pub mod gate;
pub mod mosquitto;
pub mod passwd;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counters of the field gate.
#[derive(Debug, Default)]
pub struct FieldCounters {
    /// Field connections that passed authentication.
    pub connected: AtomicU64,
    /// CONNECTs refused: no or wrong credentials, anonymous where it is not allowed.
    pub auth_refused: AtomicU64,
    /// Publishes, wills and subscriptions outside the client's ACL (the client is disconnected).
    pub acl_refused: AtomicU64,
    /// Connections over `max_connections`, packets over the size limit, malformed MQTT.
    pub limits_refused: AtomicU64,
    /// Times a device was held back for publishing faster than `max_publish_per_s`.
    pub throttled: AtomicU64,
}

/// A copy of [`FieldCounters`] for the status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldSnapshot {
    pub connected: u64,
    pub auth_refused: u64,
    pub acl_refused: u64,
    pub limits_refused: u64,
    pub throttled: u64,
}

impl FieldCounters {
    pub fn snapshot(&self) -> FieldSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FieldSnapshot {
            connected: g(&self.connected),
            auth_refused: g(&self.auth_refused),
            acl_refused: g(&self.acl_refused),
            limits_refused: g(&self.limits_refused),
            throttled: g(&self.throttled),
        }
    }
}

impl FieldSnapshot {
    /// ` | field refused: auth 2, acl 1` when anything was refused, else empty.
    pub fn refusals(&self) -> String {
        let parts: Vec<String> = [
            ("auth", self.auth_refused),
            ("acl", self.acl_refused),
            ("limits", self.limits_refused),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" | field refused: {}", parts.join(", "))
        }
    }
}

/// At most [`LogLimit::PER_MINUTE`] log lines a minute; the rest are only counted, and the
/// number left out is told with the next line that is logged.
#[derive(Debug)]
pub struct LogLimit {
    state: Mutex<(Instant, u32, u64)>,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit {
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

impl LogLimit {
    pub const PER_MINUTE: u32 = 20;

    /// `Some(left out since the last line)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(s.0) >= Duration::from_secs(60) {
            s.0 = now;
            s.1 = 0;
        }
        if s.1 < Self::PER_MINUTE {
            s.1 += 1;
            Some(std::mem::take(&mut s.2))
        } else {
            s.2 += 1;
            None
        }
    }
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| std::io::Error::other("the operating system's random source failed"))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_limited_per_minute_and_tell_what_was_left_out() {
        let l = LogLimit::default();
        let t0 = Instant::now();
        for _ in 0..LogLimit::PER_MINUTE {
            assert_eq!(l.allow_at(t0), Some(0));
        }
        assert_eq!(l.allow_at(t0), None);
        assert_eq!(l.allow_at(t0 + Duration::from_secs(30)), None);
        assert_eq!(l.allow_at(t0 + Duration::from_secs(61)), Some(2));
    }
}
