//! What the uplink does with a publish on `citygate/v1/<gw>/cmd/<name>`: verify it, answer on
//! `citygate/v1/<gw>/cmd_result/<nonce>`, record an `Event` for a refusal, and hand an accepted
//! command to the rest of the gateway through a bounded channel (never awaited: a full channel
//! refuses the command as `busy`). `ping` is answered here with `ok`.
//!
//! Refusals are counted by reason. Reports of refusals (result message and event) are limited
//! to [`REPORTS_PER_MINUTE`], so a flood of junk on the command topic cannot flood the outbox;
//! the counters still count every one.

use std::collections::BTreeMap;

use citygate_protocols::topic::{self, Topic};
use citygate_protocols::Event;
use tokio::sync::mpsc;

use super::envelope::Command;
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

    /// Handles one publish received on `topic` at `now` (seconds since the epoch).
    pub fn handle(&mut self, topic_name: &str, payload: &[u8], now: f64) -> Outcome {
        let now_s = if now.is_finite() && now > 0.0 {
            now as u64
        } else {
            0
        };
        let checked =
            self.verifier
                .verify(payload, now_s)
                .and_then(|cmd| match topic::parse(topic_name) {
                    Ok((_, Topic::Command { name })) if name == cmd.name => Ok(cmd),
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
        let cmd = match checked {
            Ok(cmd) => cmd,
            Err(r) => return self.refuse(topic_name, r, now_s, now),
        };
        if cmd.name == "ping" {
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
        match self.tx.try_send(cmd) {
            Ok(()) => {
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
            NOW as f64,
        );
        let (t, p) = o.result.unwrap();
        assert_eq!(t, "citygate/v1/gw-1/cmd_result/n-00000000000001");
        assert_eq!(json(&p)["status"], "ok");
        assert!(rx.try_recv().is_err());

        let o = d.handle(
            "citygate/v1/gw-1/cmd/plan_override",
            &signed(&k, "plan_override", "n-00000000000002"),
            NOW as f64,
        );
        assert_eq!(json(&o.result.unwrap().1)["status"], "accepted");
        assert_eq!(rx.try_recv().unwrap().name, "plan_override");

        // A full channel refuses as busy.
        d.handle(
            "citygate/v1/gw-1/cmd/x",
            &signed(&k, "x", "n-00000000000003"),
            NOW as f64,
        );
        let o = d.handle(
            "citygate/v1/gw-1/cmd/y",
            &signed(&k, "y", "n-00000000000004"),
            NOW as f64,
        );
        assert!(!o.accepted);
        assert_eq!(json(&o.result.unwrap().1)["reason"], "busy");
        assert_eq!(d.accepted, 3);
    }

    #[test]
    fn refusals_are_reported_counted_and_rate_limited() {
        let (mut d, _rx, k) = setup(4);
        let o = d.handle("citygate/v1/gw-1/cmd/ping", b"{}", NOW as f64);
        let (t, p) = o.result.unwrap();
        assert_eq!(t, "citygate/v1/gw-1/cmd_result/invalid");
        assert_eq!(json(&p)["reason"], "malformed");
        let ev = o.event.unwrap();
        assert_eq!(ev.kind, "command_rejected");
        // The topic must name the same command as the envelope.
        let o = d.handle(
            "citygate/v1/gw-1/cmd/reboot",
            &signed(&k, "ping", "n-00000000000009"),
            NOW as f64,
        );
        let p = json(&o.result.unwrap().1);
        assert_eq!(p["reason"], "topic_mismatch");
        assert_eq!(p["nonce"], "n-00000000000009");
        for _ in 0..100 {
            d.handle("citygate/v1/gw-1/cmd/ping", b"junk", NOW as f64);
        }
        assert_eq!(d.refused_total(), 102);
        let o = d.handle("citygate/v1/gw-1/cmd/ping", b"junk", NOW as f64);
        assert_eq!(
            o,
            Outcome {
                result: None,
                event: None,
                accepted: false
            }
        );
        // A new minute reports again.
        let o = d.handle("citygate/v1/gw-1/cmd/ping", b"junk", (NOW + 60) as f64);
        assert!(o.result.is_some());
    }
}
