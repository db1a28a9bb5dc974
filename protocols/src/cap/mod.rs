//! OASIS Common Alerting Protocol 1.2: the typed alert citygate emits, its XML writer (schema
//! element order), its JSON form (serde, keys are the CAP element names), the CAP §3 checks the
//! schema leaves out ([`Alert::validate`]) and an XML reader ([`Alert::from_xml`]).
//!
//! The subset is every element except `<resource>` (the reader skips resources) and the
//! XML signature (skipped too).

mod read;
mod time;
mod validate;
mod write;

use serde::{Deserialize, Serialize};

pub use read::ReadError;
pub use time::{CapTime, TimeError, MAX_OFFSET_MINUTES};
pub use validate::{Violation, Violations};

/// The CAP 1.2 XML namespace.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

macro_rules! cap_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[allow(clippy::upper_case_acronyms)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The CAP code, e.g. `Actual`.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            /// Parses the CAP code exactly (CAP values are case-sensitive).
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

cap_enum!(
    /// `<status>`: the handling code.
    Status { Actual, Exercise, System, Test, Draft }
);
cap_enum!(
    /// `<msgType>`: the nature of the message.
    MsgType { Alert, Update, Cancel, Ack, Error }
);
cap_enum!(
    /// `<scope>`: who may receive it.
    Scope { Public, Restricted, Private }
);
cap_enum!(
    /// `<category>`.
    Category { Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other }
);
cap_enum!(
    /// `<responseType>`: the recommended action.
    ResponseType { Shelter, Evacuate, Prepare, Execute, Avoid, Monitor, Assess, AllClear, None }
);
cap_enum!(
    /// `<urgency>`.
    Urgency { Immediate, Expected, Future, Past, Unknown }
);
cap_enum!(
    /// `<severity>`.
    Severity { Extreme, Severe, Moderate, Minor, Unknown }
);
cap_enum!(
    /// `<certainty>`.
    Certainty { Observed, Likely, Possible, Unlikely, Unknown }
);

/// `<alert>`: the message envelope. Field order is the schema's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Alert {
    /// Unique per sender; no spaces, commas, `<` or `&`.
    pub identifier: String,
    /// Globally unique sender id; same character rules as `identifier`.
    pub sender: String,
    pub sent: CapTime,
    pub status: Status,
    pub msg_type: MsgType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<String>,
    /// Space-separated recipients; required when `scope` is `Private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Earlier messages: space-separated `sender,identifier,sent` triplets (see [`Reference`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incidents: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
}

/// `<info>`: one language's description of the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Info {
    /// RFC 3066 language tag; CAP's default is `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// At least one.
    pub category: Vec<Category>,
    pub event: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_type: Vec<ResponseType>,
    pub urgency: Urgency,
    pub severity: Severity,
    pub certainty: Certainty,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_code: Vec<ValuePair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<CapTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<CapTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<CapTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter: Vec<ValuePair>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub area: Vec<Area>,
}

/// `<area>`: where the event applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Area {
    pub area_desc: String,
    /// `lat,lon lat,lon ...`, at least 4 pairs, first == last (WGS 84 degrees).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polygon: Vec<String>,
    /// `lat,lon radius` with the radius in kilometres.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub circle: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub geocode: Vec<ValuePair>,
    /// Feet above mean sea level (CAP's unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    /// Feet above mean sea level; only with `altitude`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<f64>,
}

/// `<eventCode>`, `<parameter>`, `<geocode>`: a named value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValuePair {
    pub value_name: String,
    pub value: String,
}

impl ValuePair {
    pub fn new(value_name: impl Into<String>, value: impl Into<String>) -> Self {
        ValuePair {
            value_name: value_name.into(),
            value: value.into(),
        }
    }
}

/// One `sender,identifier,sent` triplet of `<references>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
    pub sent: CapTime,
}

impl Reference {
    /// The triplet naming `alert`.
    pub fn to(alert: &Alert) -> Self {
        Reference {
            sender: alert.sender.clone(),
            identifier: alert.identifier.clone(),
            sent: alert.sent,
        }
    }

    /// The `<references>` text for a list of earlier messages (`None` when empty).
    pub fn join(refs: &[Reference]) -> Option<String> {
        if refs.is_empty() {
            return None;
        }
        let parts: Vec<String> = refs
            .iter()
            .map(|r| format!("{},{},{}", r.sender, r.identifier, r.sent))
            .collect();
        Some(parts.join(" "))
    }

    /// Parses `<references>` text; errors name the bad triplet.
    pub fn parse_list(text: &str) -> Result<Vec<Reference>, String> {
        text.split_whitespace()
            .map(|triplet| {
                let mut parts = triplet.split(',');
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(s), Some(i), Some(t), None) if !s.is_empty() && !i.is_empty() => {
                        let sent = CapTime::parse(t).map_err(|e| format!("`{triplet}`: {e}"))?;
                        Ok(Reference {
                            sender: s.to_string(),
                            identifier: i.to_string(),
                            sent,
                        })
                    }
                    _ => Err(format!(
                        "`{triplet}` is not a sender,identifier,sent triplet"
                    )),
                }
            })
            .collect()
    }
}

/// A `<polygon>` string from `(lat, lon)` points; the ring is closed if it is not already.
pub fn polygon_text(points: &[(f64, f64)]) -> String {
    let mut pts: Vec<(f64, f64)> = points.to_vec();
    if let (Some(first), Some(last)) = (pts.first().copied(), pts.last().copied()) {
        if first != last {
            pts.push(first);
        }
    }
    let parts: Vec<String> = pts.iter().map(|(la, lo)| format!("{la},{lo}")).collect();
    parts.join(" ")
}

/// A `<circle>` string: centre `(lat, lon)` and radius in kilometres.
pub fn circle_text(lat: f64, lon: f64, radius_km: f64) -> String {
    format!("{lat},{lon} {radius_km}")
}

impl Alert {
    /// The JSON form (keys are the CAP element names, optional elements left out).
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising cannot fail: every key is a string and every float is written by serde_json
        // (a non-finite altitude becomes `null`, which validate() reports).
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Reads the JSON form.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Alert::deserialize(value)
    }

    /// The XML document and JSON form, ready for [`crate::Body::Alert`].
    pub fn to_body(&self) -> crate::Body {
        crate::Body::Alert {
            cap: self.to_xml(),
            json: self.to_json(),
        }
    }

    /// Parsed `<references>` (empty when absent).
    pub fn reference_list(&self) -> Result<Vec<Reference>, String> {
        self.references
            .as_deref()
            .map_or(Ok(Vec::new()), Reference::parse_list)
    }
}

#[cfg(test)]
mod tests;
