//! The wire form of planned flows between gateways: the payload of the peer topic
//! `citygate/v1/<gw>/peer/outflow` ([`CHANNEL`]), published by a gateway under its own id with the
//! planned outflows of its look-ahead intersections towards a neighbour's. A JSON array:
//!
//! ```json
//! [{"from":"int-1","to":"int-2","group":"E","vehicles":6.5,"leaves_at":1764384000.0,"until":1764384012.0}]
//! ```
//!
//! Times are the sender's clock in seconds (Unix time live, simulation time in SUMO).
//! Decoding checks every field and names the entry and field that is wrong.

use serde::{Deserialize, Serialize};

use crate::signals::controller::PlannedFlow;

/// The peer channel of planned flows.
pub const CHANNEL: &str = "outflow";

/// Largest payload accepted (bytes).
pub const MAX_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeerError {
    #[error("peer flow payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("peer flow payload is not a JSON array of flows: {0}")]
    Json(String),
    #[error("peer flow [{index}].{field}: {message}")]
    Invalid {
        index: usize,
        field: &'static str,
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    from: String,
    to: String,
    group: String,
    vehicles: f64,
    leaves_at: f64,
    until: f64,
}

/// The JSON payload for `flows`.
pub fn encode(flows: &[PlannedFlow]) -> String {
    let wire: Vec<Wire> = flows
        .iter()
        .map(|f| Wire {
            from: f.from.clone(),
            to: f.to.clone(),
            group: f.group.clone(),
            vehicles: f.vehicles,
            leaves_at: f.leaves_at,
            until: f.until,
        })
        .collect();
    serde_json::to_string(&wire).unwrap_or_else(|_| "[]".into())
}

/// The flows in a payload, checked.
pub fn decode(payload: &[u8]) -> Result<Vec<PlannedFlow>, PeerError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PeerError::TooLarge(payload.len()));
    }
    let wire: Vec<Wire> =
        serde_json::from_slice(payload).map_err(|e| PeerError::Json(e.to_string()))?;
    wire.into_iter()
        .enumerate()
        .map(|(index, w)| {
            let bad = |field: &'static str, message: &str| PeerError::Invalid {
                index,
                field,
                message: message.to_string(),
            };
            for (field, v) in [("from", &w.from), ("to", &w.to), ("group", &w.group)] {
                if v.is_empty() {
                    return Err(bad(field, "is empty"));
                }
            }
            if !(w.vehicles.is_finite() && w.vehicles >= 0.0) {
                return Err(bad("vehicles", "must be a finite number >= 0"));
            }
            if !w.leaves_at.is_finite() {
                return Err(bad("leaves_at", "must be a finite number"));
            }
            if !(w.until.is_finite() && w.until >= w.leaves_at) {
                return Err(bad("until", "must be a finite number >= leaves_at"));
            }
            Ok(PlannedFlow {
                from: w.from,
                to: w.to,
                group: w.group,
                vehicles: w.vehicles,
                leaves_at: w.leaves_at,
                until: w.until,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use citygate_protocols::topic::{self, Topic};

    fn flow() -> PlannedFlow {
        PlannedFlow {
            from: "int-1".into(),
            to: "int-2".into(),
            group: "E".into(),
            vehicles: 6.5,
            leaves_at: 1_764_384_000.0,
            until: 1_764_384_012.0,
        }
    }

    #[test]
    fn round_trip_and_exact_form() {
        let text = encode(&[flow()]);
        assert_eq!(
            text,
            r#"[{"from":"int-1","to":"int-2","group":"E","vehicles":6.5,"leaves_at":1764384000.0,"until":1764384012.0}]"#
        );
        assert_eq!(decode(text.as_bytes()).unwrap(), [flow()]);
        assert_eq!(decode(b"[]").unwrap(), []);
    }

    #[test]
    fn bad_payloads_name_the_entry_and_field() {
        let e = decode(br#"{"from":"a"}"#).unwrap_err();
        assert!(matches!(e, PeerError::Json(_)), "{e}");
        let mut f = flow();
        f.until = f.leaves_at - 1.0;
        let e = decode(encode(&[flow(), f]).as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer flow [1].until: must be a finite number >= leaves_at"
        );
        let e =
            decode(br#"[{"from":"","to":"b","group":"g","vehicles":1,"leaves_at":0,"until":1}]"#)
                .unwrap_err();
        assert_eq!(e.to_string(), "peer flow [0].from: is empty");
        let e =
            decode(br#"[{"from":"a","to":"b","group":"g","vehicles":-1,"leaves_at":0,"until":1}]"#)
                .unwrap_err();
        assert!(e.to_string().contains("[0].vehicles"), "{e}");
        let e = decode(
            br#"[{"from":"a","to":"b","group":"g","vehicles":1,"leaves_at":0,"until":1,"x":2}]"#,
        )
        .unwrap_err();
        assert!(matches!(e, PeerError::Json(_)), "{e}");
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(decode(&big), Err(PeerError::TooLarge(MAX_PAYLOAD + 1)));
    }

    #[test]
    fn the_channel_is_a_valid_peer_topic() {
        let t = topic::parse(&format!("citygate/v1/gw-1/peer/{CHANNEL}")).unwrap();
        assert_eq!(
            t,
            (
                "gw-1".to_string(),
                Topic::Peer {
                    channel: CHANNEL.into()
                }
            )
        );
    }
}
