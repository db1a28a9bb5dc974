//! `/healthz` and `/readyz`, decided by pure functions of what the stages report:
//! - alive ([`liveness`]): every stage task beat within its allowed silence;
//! - ready ([`readiness`]): the outbox is open and not failing, the local broker confirmed
//!   the ingest subscriptions (when there are MQTT sources), and the uplink is connected or
//!   has been down for less than `[http] ready_grace_s`.
//!
//! Both answer 200 or 503 with a JSON body naming what is not.

use serde::Serialize;

use crate::status::Stage;

/// How long a stage may be silent before the gateway counts as not alive, in ms: its beat
/// period and its longest wait without beating, plus slack for a loaded machine.
pub fn allowed_silence_ms(stage: Stage, uplink_backoff_max_ms: u64) -> u64 {
    const SLACK: u64 = 10_000;
    match stage {
        // The ingest's reconnect backoff is at most 10 s.
        Stage::Ingest => 10_000 + SLACK,
        Stage::Uplink => uplink_backoff_max_ms + SLACK,
        Stage::Rules | Stage::Signals | Stage::Actions | Stage::Upkeep => SLACK,
    }
}

/// A stage that has not beaten in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stale {
    pub stage: &'static str,
    /// Seconds since its last beat (since start when it never beat).
    pub silent_s: f64,
    pub allowed_s: f64,
}

/// `/healthz`'s body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Liveness {
    pub alive: bool,
    pub stale: Vec<Stale>,
}

/// Liveness at `now_ms` (monotonic) from each stage's last beat (`None`: not yet; counted
/// from 0, the process's start).
pub fn liveness(
    now_ms: u64,
    beats: &[(Stage, Option<u64>)],
    uplink_backoff_max_ms: u64,
) -> Liveness {
    let stale: Vec<Stale> = beats
        .iter()
        .filter_map(|(stage, last)| {
            let silent = now_ms.saturating_sub(last.unwrap_or(0));
            let allowed = allowed_silence_ms(*stage, uplink_backoff_max_ms);
            (silent > allowed).then(|| Stale {
                stage: stage.as_str(),
                silent_s: silent as f64 / 1000.0,
                allowed_s: allowed as f64 / 1000.0,
            })
        })
        .collect();
    Liveness {
        alive: stale.is_empty(),
        stale,
    }
}

/// What readiness is decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyInputs {
    pub now_ms: u64,
    /// The outbox is open and not failing after a disk error.
    pub outbox_open: bool,
    pub outbox_failing: bool,
    /// There are `[[sources.mqtt]]` subscriptions, and the local broker confirmed them.
    pub has_mqtt_sources: bool,
    pub ingest_subscribed: bool,
    pub uplink_connected: bool,
    /// When the uplink last connected or went down (0: start).
    pub uplink_changed_ms: u64,
    pub grace_ms: u64,
}

/// One check that failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotReady {
    pub check: &'static str,
    pub reason: String,
}

/// `/readyz`'s body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub not_ready: Vec<NotReady>,
}

pub fn readiness(i: &ReadyInputs) -> Readiness {
    let mut not = Vec::new();
    if !i.outbox_open {
        not.push(NotReady {
            check: "outbox",
            reason: "the outbox is not open".into(),
        });
    } else if i.outbox_failing {
        not.push(NotReady {
            check: "outbox",
            reason: "the outbox is failing after a disk error (reopened once a second)".into(),
        });
    }
    if i.has_mqtt_sources && !i.ingest_subscribed {
        not.push(NotReady {
            check: "local_broker",
            reason: "the local broker has not confirmed the ingest subscriptions".into(),
        });
    }
    let down_ms = i.now_ms.saturating_sub(i.uplink_changed_ms);
    if !i.uplink_connected && down_ms >= i.grace_ms {
        not.push(NotReady {
            check: "uplink",
            reason: format!(
                "the uplink has been down for {:.1} s (grace {:.0} s)",
                down_ms as f64 / 1000.0,
                i.grace_ms as f64 / 1000.0
            ),
        });
    }
    Readiness {
        ready: not.is_empty(),
        not_ready: not,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_silent_past_its_allowance_is_named() {
        let beats = [
            (Stage::Rules, Some(95_000)),
            (Stage::Signals, Some(80_000)),
            (Stage::Uplink, Some(75_000)),
            (Stage::Actions, None),
        ];
        let l = liveness(100_000, &beats, 30_000);
        assert!(!l.alive);
        let names: Vec<_> = l.stale.iter().map(|s| s.stage).collect();
        // The uplink may wait a whole backoff (30 s) plus slack; a stage that never beat
        // counts from the start.
        assert_eq!(names, ["signals", "actions"]);
        assert_eq!(l.stale[0].silent_s, 20.0);
        assert!(liveness(5_000, &[(Stage::Actions, None)], 30_000).alive);
    }

    #[test]
    fn readiness_names_each_failed_check_and_honours_the_uplink_grace() {
        let ok = ReadyInputs {
            now_ms: 100_000,
            outbox_open: true,
            outbox_failing: false,
            has_mqtt_sources: true,
            ingest_subscribed: true,
            uplink_connected: true,
            uplink_changed_ms: 0,
            grace_ms: 30_000,
        };
        assert!(readiness(&ok).ready);
        let down_briefly = ReadyInputs {
            uplink_connected: false,
            uplink_changed_ms: 90_000,
            ..ok
        };
        assert!(readiness(&down_briefly).ready);
        let down_long = ReadyInputs {
            uplink_changed_ms: 60_000,
            ..down_briefly
        };
        let r = readiness(&down_long);
        assert_eq!(r.not_ready.len(), 1);
        assert_eq!(r.not_ready[0].check, "uplink");
        assert!(r.not_ready[0].reason.contains("40.0 s"), "{r:?}");
        let r = readiness(&ReadyInputs {
            outbox_failing: true,
            ingest_subscribed: false,
            ..ok
        });
        let checks: Vec<_> = r.not_ready.iter().map(|n| n.check).collect();
        assert_eq!(checks, ["outbox", "local_broker"]);
        let no_sources = ReadyInputs {
            has_mqtt_sources: false,
            ingest_subscribed: false,
            ..ok
        };
        assert!(readiness(&no_sources).ready);
    }
}
