//! The records that travel from sensors to the platform: readings, window summaries, events,
//! and the versioned envelope (gateway id + sequence number) that every uplink record carries.

use serde::{Deserialize, Serialize};

use crate::{Quality, Unit};

/// Version of the uplink envelope. The platform rejects versions it does not know.
pub const ENVELOPE_VERSION: u8 = 1;

/// One measured value of one sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Sensor id, unique within the gateway (e.g. `int-12/det-3` or `flood-1`).
    pub sensor: String,
    /// What is measured (e.g. `water_level`, `count`, `occupancy`).
    pub quantity: String,
    pub value: f64,
    /// SenML unit; `None` for a unitless value.
    pub unit: Option<Unit>,
    /// Seconds since the Unix epoch (UTC), as in SenML.
    pub time: f64,
    pub quality: Quality,
}

/// A tumbling window over the usable readings of one sensor and quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub sensor: String,
    pub quantity: String,
    pub unit: Option<Unit>,
    /// Window start (inclusive), seconds since the epoch.
    pub start: f64,
    /// Window end (exclusive), seconds since the epoch.
    pub end: f64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
}

/// Outbox and uplink priority classes, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Alert,
    Event,
    Summary,
}

impl Class {
    /// All classes, highest priority first.
    pub const ALL: [Class; 3] = [Class::Alert, Class::Event, Class::Summary];

    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Alert => "alert",
            Class::Event => "event",
            Class::Summary => "summary",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// A small integer, 0 for the highest priority; used in storage keys.
    pub const fn rank(self) -> u8 {
        self as u8
    }
}

/// Something the gateway reports that is neither a summary nor an alert: a device going
/// offline, a dropped payload, a plan change, a controller fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Machine-readable kind, e.g. `device_offline`, `plan_change`, `detector_fault`.
    pub kind: String,
    /// What it is about: a device, sensor, intersection or topic.
    pub source: String,
    /// Human-readable text for the operator.
    pub message: String,
    /// Seconds since the epoch.
    pub time: f64,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Summary(Summary),
    Event(Event),
    /// A CAP 1.2 alert: the XML document and its JSON form.
    Alert { cap: String, json: serde_json::Value },
}

impl Body {
    pub fn class(&self) -> Class {
        match self {
            Body::Summary(_) => Class::Summary,
            Body::Event(_) => Class::Event,
            Body::Alert { .. } => Class::Alert,
        }
    }
}

/// Every uplink record: `(gateway, seq)` is unique, so the platform can drop duplicates of
/// an at-least-once delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope version, [`ENVELOPE_VERSION`].
    pub v: u8,
    pub gateway: String,
    /// Per-gateway, strictly increasing across restarts.
    pub seq: u64,
    #[serde(flatten)]
    pub body: Body,
}

impl Envelope {
    pub fn new(gateway: impl Into<String>, seq: u64, body: Body) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            gateway: gateway.into(),
            seq,
            body,
        }
    }

    pub fn class(&self) -> Class {
        self.body.class()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these types cannot fail: all map keys are strings.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_envelope_wire_form_is_stable() {
        let e = Envelope::new(
            "gw-1",
            7,
            Body::Summary(Summary {
                sensor: "flood-1".into(),
                quantity: "water_level".into(),
                unit: Some(Unit::Metre),
                start: 10.0,
                end: 20.0,
                count: 2,
                min: 1.0,
                max: 2.0,
                mean: 1.5,
                last: 2.0,
            }),
        );
        let json = String::from_utf8(e.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"gateway":"gw-1","seq":7,"summary":{"sensor":"flood-1","quantity":"water_level","unit":"m","start":10.0,"end":20.0,"count":2,"min":1.0,"max":2.0,"mean":1.5,"last":2.0}}"#
        );
        assert_eq!(Envelope::from_json(json.as_bytes()).unwrap(), e);
        assert_eq!(e.class(), Class::Summary);
    }

    #[test]
    fn classes_order_by_priority() {
        assert!(Class::Alert < Class::Event && Class::Event < Class::Summary);
        for c in Class::ALL {
            assert_eq!(Class::parse(c.as_str()), Some(c));
        }
    }
}
