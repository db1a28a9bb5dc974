//! What the uplink does with a publish on `citygate/v1/<gw>/cmd/<name>`: verify it, answer on
//! `citygate/v1/<gw>/cmd_result/<nonce>`, record an `Event` for a refusal, and hand an accepted
//! command to the rest of the gateway through a bounded channel (never awaited: a full channel
//! refuses the command as `busy`). `ping` is answered here with `ok`.
//!
//! A retained command message is refused (`retained`) before any other check: the broker
//! would hand it over again at every connect. A nonce is used up only by a command that
//! passed every check (signature and times, the topic, room in the channel) and was recorded
//! in the [`Journal`] (flushed) before it is handed on; a refused command leaves its nonce
//! free for a corrected resend. [`Downlink::with_journal`] takes the journal up at start.
//!
//! Refusals are counted by reason. Reports of refusals (result message and event) are limited
//! to [`REPORTS_PER_MINUTE`], so a flood of junk on the command topic cannot flood the outbox;
//! the counters still count every one.

use std::collections::BTreeMap;

use citygate_protocols::topic::{self, Topic};
use citygate_protocols::Event;
use tokio::sync::mpsc;

use super::envelope::{self, Command};
use super::journal::Journal;
use super::verify::{Reason, Rejection, Verifier};

/// Refusals reported (result + event) per minute at most.
pub const REPORTS_PER_MINUTE: u32 = 30;
/// Result id used when a refused command has no readable nonce.
pub const NO_NONCE: &str = "invalid";

/// What to do after one command publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `cmd_result` topic and JSON payload to publish, unless rate-limited.
    pub result: Option<(String, Vec<u8>)>,
    /// An event to store in the outbox (refusals), unless rate-limited.
    pub event: Option<Event>,
    /// Whether the command was accepted.
    pub accepted: bool,
}

/// Verifier, channel and counters of one gateway's downlink.
#[derive(Debug)]
pub struct Downlink {
    gateway: String,
    verifier: Verifier,
    tx: mpsc::Sender<Command>,
    /// Where accepted commands are recorded before they are handed on (none in unit tests of
    /// the verifier shell).
    journal: Option<Journal>,
    /// Accepted commands.
    pub accepted: u64,
    /// Refused commands by reason code.
    pub refused: BTreeMap<&'static str, u64>,
    report_window: (u64, u32),
}

fn result_payload(
    gateway: &str,
    nonce: &str,
    name: Option<&str>,
    status: &str,
    reason: Option<&Reason>,
) -> Vec<u8> {
    let mut v = serde_json::json!({
        "v": 1,
        "gateway": gateway,
        "nonce": nonce,
        "name": name,
        "status": status,
    });
    if let (Some(r), Some(m)) = (reason, v.as_object_mut()) {
        m.insert("reason".into(), r.code().into());
        m.insert("message".into(), r.to_string().into());
    }
    v.to_string().into_bytes()
}

impl Downlink {
    pub fn new(gateway: &str, verifier: Verifier, tx: mpsc::Sender<Command>) -> Downlink {
        Downlink {
            gateway: gateway.to_string(),
            verifier,
            tx,
            journal: None,
            accepted: 0,
            refused: BTreeMap::new(),
            report_window: (0, 0),
        }
    }

    /// The subscription filter, `citygate/v1/<gw>/cmd/#`.
    pub fn filter(&self) -> String {
        topic::subscription(&self.gateway, topic::Kind::Command)
    }

    fn result_topic(&self, nonce: &str) -> String {
        topic::format(
            &self.gateway,
            &Topic::CommandResult {
                id: nonce.to_string(),
            },
        )
    }

    /// Takes up `journal` at wall time `now`: its nonces are remembered, the accepted commands
    /// a stop interrupted before they were carried out are handed on again, and the returned
    /// events report those that lapsed meanwhile and entries that could not be read.
    pub fn with_journal(mut self, journal: Journal, now: f64) -> (Downlink, Vec<Event>) {
        let mut events = Vec::new();
        let event = |kind: &str, source: &str, message: String| Event {
            kind: kind.into(),
            source: source.into(),
            message,
            time: now,
        };
        match crate::outbox::blocking(|| journal.load(now.max(0.0) as u64)) {
            Ok(l) => {
                for (nonce, forget_after) in &l.nonces {
                    self.verifier.remember(nonce, *forget_after);
                }
                for w in l.warnings {
                    events.push(event("command_journal_unreadable", &self.gateway, w));
                }
                for c in l.lapsed {
                    let m = format!(
                        "{} ({}): not carried out: the gateway stopped after accepting it, and it lapsed before the restart",
                        c.name, c.nonce
                    );
                    events.push(event("command_failed", "-", m));
                }
                for c in l.pending {
                    let (name, nonce) = (c.name.clone(), c.nonce.clone());
                    tracing::warn!("command {name} ({nonce}): accepted before a stop, carried out now");
                    if self.tx.try_send(c).is_err() {
                        let m = format!("{name} ({nonce}): not carried out after the restart: the gateway is busy");
                        events.push(event("command_failed", "-", m));
                    }
                }
            }
            Err(e) => events.push(event(
                "command_journal_unreadable",
                &self.gateway,
                format!("the command journal cannot be read ({e}): replays of commands accepted before the restart are not recognised"),
            )),
        }
        self.journal = Some(journal);
        (self, events)
    }

    /// Records an accepted command in the journal (when there is one); a failure refuses it.
    fn record(&self, cmd: &Command, forget_after: u64, pending: bool) -> Result<(), Rejection> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        j.accepted(cmd, forget_after, pending)
            .map_err(|e| Rejection {
                reason: Reason::NotRecorded(e.to_string()),
                nonce: Some(cmd.nonce.clone()),
                name: Some(cmd.name.clone()),
            })
    }

    /// Handles one publish received on `topic` (`retained`: with the retain flag) at `now`
    /// (seconds since the epoch).
    pub fn handle(
        &mut self,
        topic_name: &str,
        payload: &[u8],
        retained: bool,
        now: f64,
    ) -> Outcome {
        let now_s = if now.is_finite() && now > 0.0 {
            now as u64
        } else {
            0
        };
        if retained {
            let value = serde_json::from_slice::<serde_json::Value>(payload).ok();
            let r = Rejection {
                reason: Reason::Retained,
                nonce: value.as_ref().and_then(envelope::nonce_of),
                name: value
                    .as_ref()
                    .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
                    .filter(|n| envelope::valid_name(n)),
            };
            return self.refuse(topic_name, r, now_s, now);
        }
        let checked = self
            .verifier
            .check(payload, now_s)
            .and_then(|(cmd, forget_after)| match topic::parse(topic_name) {
                Ok((_, Topic::Command { name })) if name == cmd.name => Ok((cmd, forget_after)),
                Ok((_, t)) => Err(Rejection {
                    reason: Reason::TopicMismatch {
                        topic: t.id().unwrap_or_default().to_string(),
                        envelope: cmd.name.clone(),
                    },
                    nonce: Some(cmd.nonce.clone()),
                    name: Some(cmd.name.clone()),
                }),
                Err(_) => Err(Rejection {
                    reason: Reason::TopicMismatch {
                        topic: topic_name.to_string(),
                        envelope: cmd.name.clone(),
                    },
                    nonce: Some(cmd.nonce.clone()),
                    name: Some(cmd.name.clone()),
                }),
            });
        let (cmd, forget_after) = match checked {
            Ok(c) => c,
            Err(r) => return self.refuse(topic_name, r, now_s, now),
        };
        if cmd.name == "ping" {
            if let Err(r) = self.record(&cmd, forget_after, false) {
                return self.refuse(topic_name, r, now_s, now);
            }
            self.verifier.remember(&cmd.nonce, forget_after);
            self.accepted += 1;
            return Outcome {
                result: Some((
                    self.result_topic(&cmd.nonce),
                    result_payload(&self.gateway, &cmd.nonce, Some(&cmd.name), "ok", None),
                )),
                event: None,
                accepted: true,
            };
        }
        let (nonce, name) = (cmd.nonce.clone(), cmd.name.clone());
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => {
                if let Err(r) = self.record(&cmd, forget_after, true) {
                    return self.refuse(topic_name, r, now_s, now);
                }
                self.verifier.remember(&nonce, forget_after);
                permit.send(cmd);
                self.accepted += 1;
                Outcome {
                    result: Some((
                        self.result_topic(&nonce),
                        result_payload(&self.gateway, &nonce, Some(&name), "accepted", None),
                    )),
                    event: None,
                    accepted: true,
                }
            }
            Err(_) => self.refuse(
                topic_name,
                Rejection {
                    reason: Reason::Busy,
                    nonce: Some(nonce),
                    name: Some(name),
                },
                now_s,
                now,
            ),
        }
    }

    fn refuse(&mut self, topic_name: &str, r: Rejection, now_s: u64, now: f64) -> Outcome {
        *self.refused.entry(r.reason.code()).or_insert(0) += 1;
        let minute = now_s / 60;
        if self.report_window.0 != minute {
            self.report_window = (minute, 0);
        }
        if self.report_window.1 >= REPORTS_PER_MINUTE {
            return Outcome {
                result: None,
                event: None,
                accepted: false,
            };
        }
        self.report_window.1 += 1;
        let nonce = r.nonce.as_deref().unwrap_or(NO_NONCE);
        let payload = result_payload(
            &self.gateway,
            nonce,
            r.name.as_deref(),
            "rejected",
            Some(&r.reason),
        );
        // The topic may be anything the broker let through; keep the event's source short.
        let source: String = topic_name.chars().take(200).collect();
        Outcome {
            result: Some((self.result_topic(nonce), payload)),
            event: Some(Event {
                kind: "command_rejected".into(),
                source,
                message: format!("{} ({})", r.reason, r.reason.code()),
                time: now,
            }),
            accepted: false,
        }
    }

    /// Refused commands in total.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommandKeyConfig, CommandsConfig};
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const NOW: u64 = 1_700_000_000;

    fn setup(channel: usize) -> (Downlink, mpsc::Receiver<Command>, Ed25519KeyPair) {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let k = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let cfg = CommandsConfig {
            keys: vec![CommandKeyConfig {
                id: "p".into(),
                public_key: BASE64_STANDARD.encode(k.public_key().as_ref()),
            }],
            ..CommandsConfig::default()
        };
        let (tx, rx) = mpsc::channel(channel);
        (
            Downlink::new("gw-1", Verifier::new("gw-1", &cfg).unwrap(), tx),
            rx,
            k,
        )
    }

    fn signed(k: &Ed25519KeyPair, name: &str, nonce: &str) -> Vec<u8> {
        let c = Command {
            gateway: "gw-1".into(),
            name: name.into(),
            args: serde_json::Map::new(),
            issued_at: NOW,
            expires_at: NOW + 60,
            nonce: nonce.into(),
            key_id: "p".into(),
        };
        serde_json::to_vec(&c.sign(k)).unwrap()
    }

    fn json(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn ping_answers_ok_and_others_go_to_the_channel() {
        let (mut d, mut rx, k) = setup(1);
        let o = d.handle(
            "citygate/v1/gw-1/cmd/ping",
            &signed(&k, "ping", "n-00000000000001"),
            false,
            NOW as f64,
        );
        let (t, p) = o.result.unwrap();
        assert_eq!(t, "citygate/v1/gw-1/cmd_result/n-00000000000001");
        assert_eq!(json(&p)["status"], "ok");
        assert!(rx.try_recv().is_err());

        let o = d.handle(
            "citygate/v1/gw-1/cmd/plan_override",
            &signed(&k, "plan_override", "n-00000000000002"),
            false,
            NOW as f64,
        );
        assert_eq!(json(&o.result.unwrap().1)["status"], "accepted");
        assert_eq!(rx.try_recv().unwrap().name, "plan_override");

        // A full channel refuses as busy.
        d.handle(
            "citygate/v1/gw-1/cmd/x",
            &signed(&k, "x", "n-00000000000003"),
            false,
            NOW as f64,
        );
        let o = d.handle(
            "citygate/v1/gw-1/cmd/y",
            &signed(&k, "y", "n-00000000000004"),
            false,
            NOW as f64,
        );
        assert!(!o.accepted);
        assert_eq!(json(&o.result.unwrap().1)["reason"], "busy");
        assert_eq!(d.accepted, 3);
    }

    #[test]
    fn refusals_are_reported_counted_and_rate_limited() {
        let (mut d, _rx, k) = setup(4);
        let o = d.handle("citygate/v1/gw-1/cmd/ping", b"{}", false, NOW as f64);
        let (t, p) = o.result.unwrap();
        assert_eq!(t, "citygate/v1/gw-1/cmd_result/invalid");
        assert_eq!(json(&p)["reason"], "malformed");
        let ev = o.event.unwrap();
        assert_eq!(ev.kind, "command_rejected");
        // The topic must name the same command as the envelope.
        let o = d.handle(
            "citygate/v1/gw-1/cmd/reboot",
            &signed(&k, "ping", "n-00000000000009"),
            false,
            NOW as f64,
        );
        let p = json(&o.result.unwrap().1);
        assert_eq!(p["reason"], "topic_mismatch");
        assert_eq!(p["nonce"], "n-00000000000009");
        for _ in 0..100 {
            d.handle("citygate/v1/gw-1/cmd/ping", b"junk", false, NOW as f64);
        }
        assert_eq!(d.refused_total(), 102);
        let o = d.handle("citygate/v1/gw-1/cmd/ping", b"junk", false, NOW as f64);
        assert_eq!(
            o,
            Outcome {
                result: None,
                event: None,
                accepted: false
            }
        );
        // A new minute reports again.
        let o = d.handle(
            "citygate/v1/gw-1/cmd/ping",
            b"junk",
            false,
            (NOW + 60) as f64,
        );
        assert!(o.result.is_some());
    }

    fn status(o: &Outcome) -> (String, String) {
        let p = json(&o.result.as_ref().unwrap().1);
        (
            p["status"].as_str().unwrap().to_string(),
            p["reason"].as_str().unwrap_or("").to_string(),
        )
    }

    #[test]
    fn a_nonce_is_used_up_only_by_a_command_that_passed_every_check() {
        let (mut d, mut rx, k) = setup(1);
        let p = signed(&k, "plan_override", "n-00000000000021");
        let t = "citygate/v1/gw-1/cmd/plan_override";
        // Retained: refused before anything else, and reported with its nonce.
        let o = d.handle(t, &p, true, NOW as f64);
        assert_eq!(status(&o), ("rejected".into(), "retained".into()));
        assert_eq!(
            o.result.as_ref().unwrap().0,
            "citygate/v1/gw-1/cmd_result/n-00000000000021"
        );
        assert_eq!(o.event.unwrap().kind, "command_rejected");
        // On the wrong topic.
        let o = d.handle("citygate/v1/gw-1/cmd/plan_release", &p, false, NOW as f64);
        assert_eq!(status(&o).1, "topic_mismatch");
        // With the channel full.
        d.handle(
            t,
            &signed(&k, "plan_override", "n-00000000000022"),
            false,
            NOW as f64,
        );
        let o = d.handle(t, &p, false, NOW as f64);
        assert_eq!(status(&o).1, "busy");
        rx.try_recv().unwrap();
        // None of those used the nonce up: the same bytes are accepted now, once.
        let o = d.handle(t, &p, false, NOW as f64);
        assert_eq!(status(&o).0, "accepted");
        assert_eq!(rx.try_recv().unwrap().nonce, "n-00000000000021");
        let o = d.handle(t, &p, false, NOW as f64);
        assert_eq!(status(&o).1, "replayed");
    }

    #[test]
    fn the_journal_keeps_nonces_and_interrupted_commands_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::OutboxConfig::default();
        let (d, _rx, k) = setup(4);
        let t = "citygate/v1/gw-1/cmd/plan_override";
        let p = signed(&k, "plan_override", "n-00000000000031");
        let verifier = d.verifier.clone();
        {
            let ob = std::sync::Arc::new(
                crate::outbox::Outbox::reopen(dir.path(), "gw-1", &cfg).unwrap(),
            );
            let (tx, mut rx) = mpsc::channel(4);
            let (mut d, events) = Downlink::new("gw-1", verifier.clone(), tx)
                .with_journal(Journal::new(ob), NOW as f64);
            assert!(events.is_empty());
            assert_eq!(status(&d.handle(t, &p, false, NOW as f64)).0, "accepted");
            // Killed before the command was carried out.
            assert!(rx.try_recv().is_ok());
        }
        let ob =
            std::sync::Arc::new(crate::outbox::Outbox::reopen(dir.path(), "gw-1", &cfg).unwrap());
        let (tx, mut rx) = mpsc::channel(4);
        let (mut d, events) =
            Downlink::new("gw-1", verifier, tx).with_journal(Journal::new(ob), (NOW + 10) as f64);
        assert!(events.is_empty(), "{events:?}");
        // Handed on again, since it was never carried out...
        assert_eq!(rx.try_recv().unwrap().nonce, "n-00000000000031");
        // ...and a captured copy is a replay.
        let o = d.handle(t, &p, false, (NOW + 10) as f64);
        assert_eq!(status(&o).1, "replayed");
    }
}
