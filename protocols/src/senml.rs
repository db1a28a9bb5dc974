//! SenML JSON (RFC 8428) in both directions: the raw [`Record`] codec ([`decode`], [`encode`]),
//! resolution of base fields and relative times ([`resolve`], RFC 8428 §4.6), and the mapping
//! between SenML packs and citygate [`Reading`]s ([`readings`], [`from_readings`]).
//!
//! Wire form written by [`encode`]:
//! - compact JSON, no whitespace; labels in the order of the RFC 8428 §5 examples:
//!   `bn, bt, bu, bv, bs, bver, n, u, t, ut, v, vs, vb, vd, s`;
//! - numbers in their shortest round-trip form; integral values without `.0` (`20`, `-5`);
//!   magnitudes of 1e9 and above, or below 1e-5, in exponent form with a signed two-digit
//!   exponent as in the RFC (`1.320067464e+09`, `1e-07`). A non-finite number cannot be
//!   written in JSON: it is written as `null`, which [`decode`] rejects, so it never passes
//!   silently.
//!
//! [`decode`] ignores labels it does not know, except labels ending in `_`, which are
//! must-understand (RFC 8428 §4.4) and are rejected.

use std::fmt::Write as _;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::{Quality, Reading, Unit, UnknownUnits};

/// The highest SenML version (`bver`) this codec understands (RFC 8428 §4.4).
pub const SENML_VERSION: u64 = 10;

/// Times below 2**28 seconds are relative to "now" (RFC 8428 §4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// One SenML record with the RFC 8428 JSON labels, all optional.
///
/// The serde derives use the same labels and skip absent fields; [`encode`] and [`decode`]
/// are the checked, byte-exact codec and should be preferred on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Base Name: prepended to the names of this and the following records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bn: Option<String>,
    /// Base Time: added to the times of this and the following records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bt: Option<f64>,
    /// Base Unit: the unit of records that have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bu: Option<String>,
    /// Base Value: added to the numeric values of this and the following records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bv: Option<f64>,
    /// Base Sum: added to the sums of this and the following records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bs: Option<f64>,
    /// Base Version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bver: Option<u64>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub u: Option<String>,
    /// Time, seconds (absolute since the epoch, or relative to now below 2**28).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<f64>,
    /// Update Time: the longest time, in seconds, before the sensor reports again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ut: Option<f64>,
    /// Numeric Value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v: Option<f64>,
    /// String Value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs: Option<String>,
    /// Boolean Value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vb: Option<bool>,
    /// Data Value: base64url without padding, kept as text here (decoded by [`resolve`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vd: Option<String>,
    /// Value Sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s: Option<f64>,
}

impl Record {
    /// Whether the record carries only base labels (`bn`, `bt`, `bu`, `bv`, `bs`, `bver`).
    /// Such a record only sets the context for the following ones (RFC 8428 §5.1.7).
    pub fn is_base_only(&self) -> bool {
        self.n.is_none()
            && self.u.is_none()
            && self.t.is_none()
            && self.ut.is_none()
            && self.v.is_none()
            && self.vs.is_none()
            && self.vb.is_none()
            && self.vd.is_none()
            && self.s.is_none()
    }
}

/// The value of a resolved record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    String(String),
    Bool(bool),
    /// Octets decoded from the `vd` base64url text.
    Data(Vec<u8>),
}

/// A record with the base fields applied and its time made absolute (RFC 8428 §4.6).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Base name + name.
    pub name: String,
    /// Unit, or the base unit when the record has none.
    pub unit: Option<String>,
    /// `None` only for a record that carries a sum and no value.
    pub value: Option<Value>,
    /// Base sum + sum, when either is present.
    pub sum: Option<f64>,
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// Update time, seconds, when given.
    pub update_time: Option<f64>,
}

impl Resolved {
    /// The record in resolved form (`n`, `u`, `t`, `ut`, one value field, `s`), as in
    /// RFC 8428 §5.1.4.
    pub fn to_record(&self) -> Record {
        let mut r = Record {
            n: Some(self.name.clone()),
            u: self.unit.clone(),
            t: Some(self.time),
            ut: self.update_time,
            s: self.sum,
            ..Record::default()
        };
        match &self.value {
            Some(Value::Float(v)) => r.v = Some(*v),
            Some(Value::String(s)) => r.vs = Some(s.clone()),
            Some(Value::Bool(b)) => r.vb = Some(*b),
            Some(Value::Data(d)) => r.vd = Some(base64url_encode(d)),
            None => {}
        }
        r
    }
}

/// What is wrong with a SenML pack. `index` is the 0-based position of the record in the pack.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SenmlError {
    #[error("SenML JSON is not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("SenML JSON must be an array of records, found {found}")]
    NotAnArray { found: &'static str },
    #[error("SenML record {index} must be a JSON object, found {found}")]
    NotAnObject { index: usize, found: &'static str },
    #[error("SenML record {index}: label `{label}` must be {expected}, found {found}")]
    WrongType {
        index: usize,
        label: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("SenML record {index}: label `{label}` must be understood (it ends in `_`) and is not supported")]
    MustUnderstand { index: usize, label: String },
    #[error("SenML record {index}: label `{label}` is not a finite number")]
    NonFinite { index: usize, label: &'static str },
    #[error("SenML record {index}: version {version} is newer than the supported version {SENML_VERSION}")]
    UnsupportedVersion { index: usize, version: u64 },
    #[error("SenML record {index}: name `{name}` is invalid: {reason}")]
    BadName {
        index: usize,
        name: String,
        reason: &'static str,
    },
    #[error("SenML record {index} has no value (`v`, `vs`, `vb`, `vd`) and no sum (`s`)")]
    NoValue { index: usize },
    #[error("SenML record {index} has more than one value label (`v`, `vs`, `vb`, `vd`)")]
    MultipleValues { index: usize },
    #[error("SenML record {index}: label `vd` is not base64url data")]
    BadData { index: usize },
    #[error(
        "SenML record {index}: unit `{unit}` is not a registered SenML unit \
         (this source refuses unknown units)"
    )]
    UnknownUnit { index: usize, unit: String },
    #[error(
        "SenML record {index}: unit `{unit}` is not registered and cannot pass as an opaque \
         unit (1 to {max} printable ASCII characters)",
        max = crate::unit::OPAQUE_MAX
    )]
    UnfitUnit { index: usize, unit: String },
    #[error("SenML record {index}: name `{name}` has no quantity segment after a `/` or `:`")]
    NoQuantity { index: usize, name: String },
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes a SenML JSON pack into raw records (no resolution). Unknown labels are ignored,
/// labels ending in `_` are rejected (RFC 8428 §4.4).
pub fn decode(json: &[u8]) -> Result<Vec<Record>, SenmlError> {
    let doc: Json = serde_json::from_slice(json).map_err(|e| SenmlError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Json::Array(items) = doc else {
        return Err(SenmlError::NotAnArray {
            found: json_kind(&doc),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Json::Object(map) => decode_record(index, map),
            other => Err(SenmlError::NotAnObject {
                index,
                found: json_kind(other),
            }),
        })
        .collect()
}

fn decode_record(index: usize, map: &Map<String, Json>) -> Result<Record, SenmlError> {
    let mut r = Record::default();
    for (label, value) in map {
        match label.as_str() {
            "bn" => r.bn = Some(string(index, "bn", value)?),
            "bt" => r.bt = Some(number(index, "bt", value)?),
            "bu" => r.bu = Some(string(index, "bu", value)?),
            "bv" => r.bv = Some(number(index, "bv", value)?),
            "bs" => r.bs = Some(number(index, "bs", value)?),
            "bver" => {
                r.bver = Some(value.as_u64().ok_or(SenmlError::WrongType {
                    index,
                    label: "bver",
                    expected: "a non-negative integer",
                    found: json_kind(value),
                })?)
            }
            "n" => r.n = Some(string(index, "n", value)?),
            "u" => r.u = Some(string(index, "u", value)?),
            "t" => r.t = Some(number(index, "t", value)?),
            "ut" => r.ut = Some(number(index, "ut", value)?),
            "v" => r.v = Some(number(index, "v", value)?),
            "vs" => r.vs = Some(string(index, "vs", value)?),
            "vb" => {
                r.vb = Some(value.as_bool().ok_or(SenmlError::WrongType {
                    index,
                    label: "vb",
                    expected: "a boolean",
                    found: json_kind(value),
                })?)
            }
            "vd" => r.vd = Some(string(index, "vd", value)?),
            "s" => r.s = Some(number(index, "s", value)?),
            other if other.ends_with('_') => {
                return Err(SenmlError::MustUnderstand {
                    index,
                    label: other.to_owned(),
                })
            }
            _ => {}
        }
    }
    Ok(r)
}

fn string(index: usize, label: &'static str, value: &Json) -> Result<String, SenmlError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or(SenmlError::WrongType {
            index,
            label,
            expected: "a string",
            found: json_kind(value),
        })
}

fn number(index: usize, label: &'static str, value: &Json) -> Result<f64, SenmlError> {
    let x = value.as_f64().ok_or(SenmlError::WrongType {
        index,
        label,
        expected: "a number",
        found: json_kind(value),
    })?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(SenmlError::NonFinite { index, label })
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes a pack as compact SenML JSON (see the module documentation for the exact form).
pub fn encode(pack: &[Record]) -> Vec<u8> {
    let mut out = String::with_capacity(64 * pack.len() + 2);
    out.push('[');
    for (i, r) in pack.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_record(&mut out, r);
    }
    out.push(']');
    out.into_bytes()
}

fn encode_record(out: &mut String, r: &Record) {
    let mut first = true;
    let mut label = |out: &mut String, name: &str| {
        out.push_str(if first { "{\"" } else { ",\"" });
        first = false;
        out.push_str(name);
        out.push_str("\":");
    };
    if let Some(x) = &r.bn {
        label(out, "bn");
        write_string(out, x);
    }
    if let Some(x) = r.bt {
        label(out, "bt");
        write_number(out, x);
    }
    if let Some(x) = &r.bu {
        label(out, "bu");
        write_string(out, x);
    }
    if let Some(x) = r.bv {
        label(out, "bv");
        write_number(out, x);
    }
    if let Some(x) = r.bs {
        label(out, "bs");
        write_number(out, x);
    }
    if let Some(x) = r.bver {
        label(out, "bver");
        let _ = write!(out, "{x}");
    }
    if let Some(x) = &r.n {
        label(out, "n");
        write_string(out, x);
    }
    if let Some(x) = &r.u {
        label(out, "u");
        write_string(out, x);
    }
    if let Some(x) = r.t {
        label(out, "t");
        write_number(out, x);
    }
    if let Some(x) = r.ut {
        label(out, "ut");
        write_number(out, x);
    }
    if let Some(x) = r.v {
        label(out, "v");
        write_number(out, x);
    }
    if let Some(x) = &r.vs {
        label(out, "vs");
        write_string(out, x);
    }
    if let Some(x) = r.vb {
        label(out, "vb");
        out.push_str(if x { "true" } else { "false" });
    }
    if let Some(x) = &r.vd {
        label(out, "vd");
        write_string(out, x);
    }
    if let Some(x) = r.s {
        label(out, "s");
        write_number(out, x);
    }
    if first {
        out.push('{');
    }
    out.push('}');
}

/// Writes a JSON string (RFC 8259).
fn write_string(out: &mut String, s: &str) {
    // Writing to a String cannot fail.
    let _ = crate::quote::write_quoted(out, s);
}

/// Writes a number in the RFC 8428 example style: shortest round-trip digits, integers without
/// a fraction, exponent form (`1.320067464e+09`) outside [1e-5, 1e9).
fn write_number(out: &mut String, x: f64) {
    if !x.is_finite() {
        out.push_str("null");
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // `{:e}` gives the shortest round-trip mantissa and the decimal exponent.
    let sci = format!("{x:e}");
    let parsed = sci
        .split_once('e')
        .and_then(|(m, e)| e.parse::<i32>().ok().map(|e| (m, e)));
    match parsed {
        Some((mantissa, exp)) if !(-5..9).contains(&exp) => {
            let sign = if exp < 0 { '-' } else { '+' };
            let _ = write!(out, "{mantissa}e{sign}{:02}", exp.unsigned_abs());
        }
        // Display is the shortest round-trip form and never uses an exponent.
        _ => {
            let _ = write!(out, "{x}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// Resolves a pack (RFC 8428 §4.6): base name + name, base time + time (times below 2**28 are
/// relative to `now`, §4.5.3), the base unit for records without a unit, base value + value,
/// base sum + sum. The result is in chronological order (stable: records with equal times keep
/// their pack order). Records that carry only base labels set context and yield nothing.
pub fn resolve(pack: &[Record], now: f64) -> Result<Vec<Resolved>, SenmlError> {
    Ok(resolve_indexed(pack, now)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Like [`resolve`], keeping the pack index of each resolved record for error messages.
fn resolve_indexed(pack: &[Record], now: f64) -> Result<Vec<(usize, Resolved)>, SenmlError> {
    let mut bn = String::new();
    let mut bt = 0.0_f64;
    let mut bu: Option<&str> = None;
    let mut bv = 0.0_f64;
    let mut bs: Option<f64> = None;
    let mut out = Vec::with_capacity(pack.len());

    for (index, r) in pack.iter().enumerate() {
        let finite = |label: &'static str, x: Option<f64>| match x {
            Some(x) if !x.is_finite() => Err(SenmlError::NonFinite { index, label }),
            _ => Ok(()),
        };
        finite("bt", r.bt)?;
        finite("bv", r.bv)?;
        finite("bs", r.bs)?;
        finite("t", r.t)?;
        finite("ut", r.ut)?;
        finite("v", r.v)?;
        finite("s", r.s)?;
        if let Some(version) = r.bver {
            if version > SENML_VERSION {
                return Err(SenmlError::UnsupportedVersion { index, version });
            }
        }

        if let Some(x) = &r.bn {
            bn.clone_from(x);
        }
        if let Some(x) = r.bt {
            bt = x;
        }
        if let Some(x) = &r.bu {
            bu = Some(x);
        }
        if let Some(x) = r.bv {
            bv = x;
        }
        if let Some(x) = r.bs {
            bs = Some(x);
        }
        if r.is_base_only() {
            continue;
        }

        let name = format!("{bn}{}", r.n.as_deref().unwrap_or(""));
        check_name(&name).map_err(|reason| SenmlError::BadName {
            index,
            name: name.clone(),
            reason,
        })?;

        let values = [
            r.v.is_some(),
            r.vs.is_some(),
            r.vb.is_some(),
            r.vd.is_some(),
        ];
        if values.iter().filter(|x| **x).count() > 1 {
            return Err(SenmlError::MultipleValues { index });
        }
        let value = if let Some(v) = r.v {
            Some(Value::Float(sum_finite(index, "v", bv, v)?))
        } else if let Some(vs) = &r.vs {
            Some(Value::String(vs.clone()))
        } else if let Some(vb) = r.vb {
            Some(Value::Bool(vb))
        } else if let Some(vd) = &r.vd {
            Some(Value::Data(
                base64url_decode(vd).ok_or(SenmlError::BadData { index })?,
            ))
        } else {
            None
        };
        let sum = match (bs, r.s) {
            (None, None) => None,
            (b, s) => Some(sum_finite(index, "s", b.unwrap_or(0.0), s.unwrap_or(0.0))?),
        };
        if value.is_none() && sum.is_none() {
            return Err(SenmlError::NoValue { index });
        }

        let mut time = sum_finite(index, "t", bt, r.t.unwrap_or(0.0))?;
        if time < RELATIVE_TIME_LIMIT {
            time = sum_finite(index, "t", now, time)?;
        }

        out.push((
            index,
            Resolved {
                name,
                unit: r.u.as_deref().or(bu).map(str::to_owned),
                value,
                sum,
                time,
                update_time: r.ut,
            },
        ));
    }
    // Resolved records are in chronological order (RFC 8428 §4.6). NaN cannot occur here.
    out.sort_by(|a, b| a.1.time.total_cmp(&b.1.time));
    Ok(out)
}

fn sum_finite(index: usize, label: &'static str, a: f64, b: f64) -> Result<f64, SenmlError> {
    let x = a + b;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(SenmlError::NonFinite { index, label })
    }
}

/// RFC 8428 §4.5.1: a name starts with a letter or digit and uses only `A-Za-z0-9-:./_`.
fn check_name(name: &str) -> Result<(), &'static str> {
    let Some(first) = name.chars().next() else {
        return Err("the name (base name + name) is empty");
    };
    if !first.is_ascii_alphanumeric() {
        return Err("it must start with a letter or a digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '/' | '_'))
    {
        return Err("only letters, digits and `-:./_` are allowed");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Readings

/// Turns the numeric records of a pack into readings.
///
/// The rule: the resolved name is split at its last `/` or `:`. What comes before is the
/// sensor id, what comes after is the quantity: `int-12/det-3/count` is sensor `int-12/det-3`,
/// quantity `count`; `urn:dev:ow:10e2073a01080063:temp` is sensor `urn:dev:ow:10e2073a01080063`,
/// quantity `temp`. A name without such a separator, or ending in one, is an error. A unit
/// outside the registries is an error, or with [`UnknownUnits::Opaque`] an opaque unit (see
/// [`Unit::parse_or_opaque`]). Records whose value is not numeric (string, boolean,
/// data, or a sum only) carry no reading and are skipped. Quality is [`Quality::Good`].
pub fn readings(
    pack: &[Record],
    now: f64,
    unknown_units: UnknownUnits,
) -> Result<Vec<Reading>, SenmlError> {
    resolve_indexed(pack, now)?
        .into_iter()
        .filter_map(|(index, r)| match r.value {
            Some(Value::Float(value)) => Some((index, r.name, r.unit, value, r.time)),
            _ => None,
        })
        .map(|(index, name, unit, value, time)| {
            let (sensor, quantity) = match name.rfind(['/', ':']) {
                Some(at) if at > 0 && at + 1 < name.len() => {
                    (name[..at].to_owned(), name[at + 1..].to_owned())
                }
                _ => return Err(SenmlError::NoQuantity { index, name }),
            };
            let unit = match unit {
                None => None,
                Some(u) => Some(match (Unit::parse(&u), unknown_units) {
                    (Some(unit), _) => unit,
                    (None, UnknownUnits::Refuse) => {
                        return Err(SenmlError::UnknownUnit { index, unit: u })
                    }
                    (None, UnknownUnits::Opaque) => {
                        Unit::parse_or_opaque(&u).ok_or(SenmlError::UnfitUnit { index, unit: u })?
                    }
                }),
            };
            Ok(Reading {
                sensor,
                quantity,
                value,
                unit,
                time,
                quality: Quality::Good,
            })
        })
        .collect()
}

/// Builds a compact pack from readings: each record is named `<sensor>/<quantity>`; with more
/// than one reading the longest common prefix of those names, cut after its last `/` or `:`,
/// becomes the base name; the first reading's time is the base time (other times are written
/// relative to it); a unit shared by all readings becomes the base unit. Quality is not
/// carried by SenML: filter readings before encoding if that matters. Names are not checked
/// here; [`resolve`] and [`readings`] reject a sensor id that is not a valid SenML name.
pub fn from_readings(readings: &[Reading]) -> Vec<Record> {
    let names: Vec<String> = readings
        .iter()
        .map(|r| format!("{}/{}", r.sensor, r.quantity))
        .collect();
    let base_name = if names.len() > 1 {
        common_segment_prefix(&names)
    } else {
        ""
    };
    let base_time = readings.first().map(|r| r.time).unwrap_or(0.0);
    let shared_unit = match readings.split_first() {
        Some((first, rest)) if !rest.is_empty() && rest.iter().all(|r| r.unit == first.unit) => {
            first.unit
        }
        _ => None,
    };

    readings
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (r, name))| {
            let first = i == 0;
            let offset = r.time - base_time;
            Record {
                bn: (first && !base_name.is_empty()).then(|| base_name.to_owned()),
                bt: (first && base_time != 0.0).then_some(base_time),
                bu: if first {
                    shared_unit.map(|u| u.as_str().to_owned())
                } else {
                    None
                },
                n: Some(name.strip_prefix(base_name).unwrap_or(name).to_owned()),
                u: if shared_unit.is_some() {
                    None
                } else {
                    r.unit.map(|u| u.as_str().to_owned())
                },
                t: (!first && offset != 0.0).then_some(offset),
                v: Some(r.value),
                ..Record::default()
            }
        })
        .collect()
}

/// The longest common prefix of `names` that ends in `/` or `:` (empty if none).
fn common_segment_prefix(names: &[String]) -> &str {
    let Some((first, rest)) = names.split_first() else {
        return "";
    };
    let mut len = first.len();
    for other in rest {
        len = first
            .char_indices()
            .zip(other.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(len);
    }
    let prefix = first.get(..len).unwrap_or("");
    match prefix.rfind(['/', ':']) {
        Some(at) => &prefix[..=at],
        None => "",
    }
}

// ---------------------------------------------------------------------------------------------
// base64url (RFC 4648 §5), the `vd` encoding

/// `vd` is written base64url without padding; read leniently (below).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

fn base64url_encode(data: &[u8]) -> String {
    B64URL.encode(data)
}

/// Decodes base64url without padding; for robustness the standard alphabet (`+/`), `=`
/// padding and non-zero trailing bits are accepted too.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.contains(['+', '/']) {
        B64URL.decode(text.replace('+', "-").replace('/', "_")).ok()
    } else {
        B64URL.decode(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Removes JSON whitespace outside strings (the RFC examples are indented).
    fn compact(pretty: &str) -> String {
        let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
        for c in pretty.chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if !c.is_whitespace() {
                in_string = c == '"';
                out.push(c);
            }
        }
        out
    }

    /// Decodes an RFC example and checks that encoding gives back its exact bytes.
    fn byte_exact(example: &str) -> Vec<Record> {
        let pack = decode(example.as_bytes()).expect("RFC example decodes");
        let encoded = String::from_utf8(encode(&pack)).expect("UTF-8");
        assert_eq!(encoded, compact(example));
        pack
    }

    fn float(r: &Resolved) -> f64 {
        match r.value {
            Some(Value::Float(v)) => v,
            ref other => panic!("{} has value {other:?}, not a number", r.name),
        }
    }

    const NOW: f64 = 1.7e9;

    // RFC 8428 §5.1.1
    const SINGLE_DATAPOINT: &str = r#"
      [
        {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}
      ]"#;

    // RFC 8428 §5.1.2, first example
    const MULTIPLE_DATAPOINTS: &str = r#"
      [
        {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
        {"n":"current","u":"A","v":1.2}
      ]"#;

    // RFC 8428 §5.1.2, second example (the RFC's base name really lacks the final `3`)
    const MULTIPLE_DATAPOINTS_TIMED: &str = r#"
      [
        {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
         "bu":"A","bver":5,
         "n":"voltage","u":"V","v":120.1},
        {"n":"current","t":-5,"v":1.2},
        {"n":"current","t":-4,"v":1.3},
        {"n":"current","t":-3,"v":1.4},
        {"n":"current","t":-2,"v":1.5},
        {"n":"current","t":-1,"v":1.6},
        {"n":"current","v":1.7}
      ]"#;

    // RFC 8428 §5.1.3
    const MULTIPLE_MEASUREMENTS: &str = r#"
      [
        {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
         "bu":"%RH","v":20},
        {"u":"lon","v":24.30621},
        {"u":"lat","v":60.07965},
        {"t":60,"v":20.3},
        {"u":"lon","t":60,"v":24.30622},
        {"u":"lat","t":60,"v":60.07965},
        {"t":120,"v":20.7},
        {"u":"lon","t":120,"v":24.30623},
        {"u":"lat","t":120,"v":60.07966},
        {"u":"%EL","t":150,"v":98},
        {"t":180,"v":21.2},
        {"u":"lon","t":180,"v":24.30628},
        {"u":"lat","t":180,"v":60.07967}
      ]"#;

    // RFC 8428 §5.1.4
    const RESOLVED_DATA: &str = r#"
      [
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
         "v":20},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
         "v":24.30621},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
         "v":60.07965},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
         "v":20.3},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
         "v":24.30622},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
         "v":60.07965},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
         "v":20.7},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
         "v":24.30623},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
         "v":60.07966},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
         "v":98},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
         "v":21.2},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
         "v":24.30628},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
         "v":60.07967}
      ]"#;

    // RFC 8428 §5.1.5
    const MULTIPLE_DATA_TYPES: &str = r#"
      [
        {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
        {"n":"label","vs":"Machine Room"},
        {"n":"open","vb":false},
        {"n":"nfc-reader","vd":"aGkgCg"}
      ]"#;

    // RFC 8428 §5.1.6
    const COLLECTION_OF_RESOURCES: &str = r#"
      [
        {"bn":"2001:db8::2/","bt":1.320078429e+09,
         "n":"temperature","u":"Cel","v":25.2},
        {"n":"humidity","u":"%RH","v":30},
        {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
        {"n":"humidity","u":"%RH","v":67}
      ]"#;

    // RFC 8428 §5.1.7, the thermostat and the two light examples
    const SETTING_AN_ACTUATOR: &str = r#"
      [
        {"bn":"urn:dev:ow:10e2073a01080063:"},
        {"n":"temp","u":"Cel","v":23.1},
        {"n":"heat","u":"/","v":1},
        {"n":"fan","u":"/","v":0}
      ]"#;
    const LIGHTS_ON: &str = r#"
      [
        {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
        {"n":"2001:db8::4","v":1}
      ]"#;
    const LIGHTS_OFF: &str = r#"
      [
        {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
        {"n":"2001:db8::4","v":0.5},
        {"n":"2001:db8::3","t":0.1,"v":0},
        {"n":"2001:db8::4","t":0.1,"v":0}
      ]"#;

    #[test]
    fn rfc_single_datapoint() {
        let pack = byte_exact(SINGLE_DATAPOINT);
        let r = resolve(&pack, NOW).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "urn:dev:ow:10e2073a01080063");
        assert_eq!(r[0].unit.as_deref(), Some("Cel"));
        assert_eq!(float(&r[0]), 23.1);
        // No time at all: "roughly now".
        assert_eq!(r[0].time, NOW);
    }

    #[test]
    fn rfc_multiple_datapoints() {
        let pack = byte_exact(MULTIPLE_DATAPOINTS);
        let r = resolve(&pack, NOW).unwrap();
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "urn:dev:ow:10e2073a01080063:voltage",
                "urn:dev:ow:10e2073a01080063:current"
            ]
        );
        assert_eq!(r[1].unit.as_deref(), Some("A"));
        assert_eq!((float(&r[0]), float(&r[1])), (120.1, 1.2));
        assert!(r.iter().all(|r| r.time == NOW));
    }

    #[test]
    fn rfc_multiple_datapoints_with_base_time() {
        let pack = byte_exact(MULTIPLE_DATAPOINTS_TIMED);
        assert_eq!(pack[0].bver, Some(5));
        let r = resolve(&pack, NOW).unwrap();
        assert_eq!(r.len(), 7);
        let bt = 1_276_020_076.001;
        // Chronological: the five older currents first, then voltage and current at bt.
        for (k, rec) in r[..5].iter().enumerate() {
            assert_eq!(rec.name, "urn:dev:ow:10e2073a0108006:current");
            assert_eq!(rec.unit.as_deref(), Some("A"), "base unit applies");
            assert_eq!(rec.time, bt - (5 - k) as f64);
            assert_eq!(float(rec), [1.2, 1.3, 1.4, 1.5, 1.6][k]);
        }
        assert_eq!(r[5].name, "urn:dev:ow:10e2073a0108006:voltage");
        assert_eq!(r[5].unit.as_deref(), Some("V"), "own unit beats base unit");
        assert_eq!((r[5].time, r[6].time), (bt, bt));
        assert_eq!(float(&r[6]), 1.7);
    }

    #[test]
    fn rfc_multiple_measurements_resolve_to_the_rfc_resolved_data() {
        let pack = byte_exact(MULTIPLE_MEASUREMENTS);
        let resolved = resolve(&pack, NOW).unwrap();
        assert_eq!(resolved.len(), 13);
        assert_eq!(resolved[9].unit.as_deref(), Some("%EL"));
        assert_eq!(resolved[9].time, 1_320_067_614.0);
        // Writing our resolution gives the RFC's own §5.1.4 bytes.
        let records: Vec<Record> = resolved.iter().map(Resolved::to_record).collect();
        assert_eq!(
            String::from_utf8(encode(&records)).unwrap(),
            compact(RESOLVED_DATA)
        );
    }

    #[test]
    fn rfc_resolved_data_is_a_fixed_point() {
        let pack = byte_exact(RESOLVED_DATA);
        let resolved = resolve(&pack, NOW).unwrap();
        let again: Vec<Record> = resolved.iter().map(Resolved::to_record).collect();
        assert_eq!(again, pack);
        let from_base = resolve(&decode(MULTIPLE_MEASUREMENTS.as_bytes()).unwrap(), NOW).unwrap();
        assert_eq!(resolved, from_base);
    }

    #[test]
    fn rfc_multiple_data_types() {
        let pack = byte_exact(MULTIPLE_DATA_TYPES);
        let r = resolve(&pack, NOW).unwrap();
        let values: Vec<_> = r.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(
            values,
            [
                Value::Float(23.1),
                Value::String("Machine Room".into()),
                Value::Bool(false),
                Value::Data(b"hi \n".to_vec()),
            ]
        );
        assert_eq!(r[3].name, "urn:dev:ow:10e2073a01080063:nfc-reader");
        // The data value re-encodes to the same base64url text.
        assert_eq!(r[3].to_record().vd.as_deref(), Some("aGkgCg"));
    }

    #[test]
    fn rfc_collection_of_resources() {
        let pack = byte_exact(COLLECTION_OF_RESOURCES);
        let r = resolve(&pack, NOW).unwrap();
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.name.as_str(), r.unit.as_deref(), float(r), r.time))
            .collect();
        let t = 1_320_078_429.0;
        assert_eq!(
            got,
            [
                ("2001:db8::2/temperature", Some("Cel"), 25.2, t),
                ("2001:db8::2/humidity", Some("%RH"), 30.0, t),
                // The third record changes the base name, the base time stays.
                ("2001:db8::1/temperature", Some("Cel"), 12.3, t),
                ("2001:db8::1/humidity", Some("%RH"), 67.0, t),
            ]
        );
    }

    #[test]
    fn rfc_setting_an_actuator() {
        let pack = byte_exact(SETTING_AN_ACTUATOR);
        assert!(pack[0].is_base_only());
        let r = resolve(&pack, NOW).unwrap();
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.name.as_str(), r.unit.as_deref(), float(r)))
            .collect();
        assert_eq!(
            got,
            [
                ("urn:dev:ow:10e2073a01080063:temp", Some("Cel"), 23.1),
                ("urn:dev:ow:10e2073a01080063:heat", Some("/"), 1.0),
                ("urn:dev:ow:10e2073a01080063:fan", Some("/"), 0.0),
            ]
        );

        let on = resolve(&byte_exact(LIGHTS_ON), NOW).unwrap();
        assert!(on.iter().all(|r| r.unit.as_deref() == Some("/")));
        let off = resolve(&byte_exact(LIGHTS_OFF), NOW).unwrap();
        let times: Vec<_> = off
            .iter()
            .map(|r| (r.name.as_str(), r.time, float(r)))
            .collect();
        let t = 1_320_078_429.0;
        assert_eq!(
            times,
            [
                ("2001:db8::3", t, 0.5),
                ("2001:db8::4", t, 0.5),
                ("2001:db8::3", t + 0.1, 0.0),
                ("2001:db8::4", t + 0.1, 0.0),
            ]
        );
    }

    #[test]
    fn numbers_are_written_like_the_rfc() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (20.0, "20"),
            (-5.0, "-5"),
            (23.1, "23.1"),
            (0.1, "0.1"),
            (0.00001, "0.00001"),
            (0.000001, "1e-06"),
            (123_456_789.0, "123456789"),
            (999_999_999.5, "999999999.5"),
            (1e9, "1e+09"),
            (1_276_020_076.001, "1.276020076001e+09"),
            (-1.5e300, "-1.5e+300"),
            (5e-324, "5e-324"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ];
        for (x, want) in cases {
            let mut s = String::new();
            write_number(&mut s, x);
            assert_eq!(s, want, "{x:?}");
        }
    }

    #[test]
    fn strings_are_escaped_and_come_back() {
        let pack = vec![Record {
            n: Some("a".into()),
            vs: Some("quote \" slash \\ nl \n tab \t bell \u{7} é 漢".into()),
            ..Record::default()
        }];
        let bytes = encode(&pack);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"[{"n":"a","vs":"quote \" slash \\ nl \n tab \t bell \u0007 é 漢"}]"#
        );
        assert_eq!(decode(&bytes).unwrap(), pack);
    }

    #[test]
    fn empty_records_and_packs() {
        assert_eq!(encode(&[]), b"[]");
        assert_eq!(encode(&[Record::default()]), b"[{}]");
        assert_eq!(decode(b"[{}]").unwrap(), vec![Record::default()]);
    }

    #[test]
    fn unknown_labels_are_ignored_but_must_understand_ones_rejected() {
        let pack = decode(br#"[{"n":"a","v":1,"foo":{"x":[1]},"l":"link"}]"#).unwrap();
        assert_eq!(pack[0].v, Some(1.0));
        let err = decode(br#"[{"n":"a","v":1},{"n":"b","v":2,"geo_":1}]"#).unwrap_err();
        assert_eq!(
            err,
            SenmlError::MustUnderstand {
                index: 1,
                label: "geo_".into()
            }
        );
        assert!(err.to_string().contains("record 1") && err.to_string().contains("geo_"));
    }

    #[test]
    fn decode_errors_name_the_record_and_label() {
        let err = |json: &str| decode(json.as_bytes()).unwrap_err();
        assert!(matches!(err("[1,"), SenmlError::Json { line: 1, .. }));
        assert_eq!(err("{}"), SenmlError::NotAnArray { found: "an object" });
        assert_eq!(
            err(r#"[{},"x"]"#),
            SenmlError::NotAnObject {
                index: 1,
                found: "a string"
            }
        );
        let e = err(r#"[{"n":"a","v":"12"}]"#);
        assert_eq!(
            e,
            SenmlError::WrongType {
                index: 0,
                label: "v",
                expected: "a number",
                found: "a string"
            }
        );
        assert_eq!(
            e.to_string(),
            "SenML record 0: label `v` must be a number, found a string"
        );
        // `null` is what encode writes for a non-finite number: it must not pass.
        assert!(matches!(
            err(r#"[{"n":"a","v":null}]"#),
            SenmlError::WrongType { label: "v", .. }
        ));
        assert!(matches!(
            err(r#"[{"bver":5.5}]"#),
            SenmlError::WrongType { label: "bver", .. }
        ));
        assert!(matches!(
            err(r#"[{"n":"a","vb":1}]"#),
            SenmlError::WrongType { label: "vb", .. }
        ));
        assert!(matches!(err(r#"[{"v":1e999}]"#), SenmlError::Json { .. }));
    }

    #[test]
    fn resolve_rejects_bad_records() {
        let rec = |json: &str| decode(json.as_bytes()).unwrap();
        let err = |json: &str| resolve(&rec(json), NOW).unwrap_err();
        assert_eq!(
            err(r#"[{"n":"ok","v":1},{"n":"a"}]"#),
            SenmlError::NoValue { index: 1 }
        );
        assert_eq!(
            err(r#"[{"n":"a","v":1,"vs":"x"}]"#),
            SenmlError::MultipleValues { index: 0 }
        );
        assert!(matches!(
            err(r#"[{"n":"-a","v":1}]"#),
            SenmlError::BadName { index: 0, reason, .. } if reason.contains("start")
        ));
        let e = err(r#"[{"bn":"dev 1/","n":"a","v":1}]"#);
        assert!(matches!(&e, SenmlError::BadName { name, .. } if name == "dev 1/a"));
        assert!(e.to_string().contains("`dev 1/a`"), "{e}");
        assert!(matches!(
            err(r#"[{"v":1}]"#),
            SenmlError::BadName { index: 0, .. }
        ));
        assert_eq!(
            err(r#"[{"n":"a","vd":"a*b"}]"#),
            SenmlError::BadData { index: 0 }
        );
        assert_eq!(
            err(r#"[{"n":"a","vd":"abcde"}]"#),
            SenmlError::BadData { index: 0 }
        );
        assert_eq!(
            err(r#"[{"bver":11,"n":"a","v":1}]"#),
            SenmlError::UnsupportedVersion {
                index: 0,
                version: 11
            }
        );
        assert_eq!(
            err(r#"[{"bv":1.7e308,"n":"a","v":1.7e308}]"#),
            SenmlError::NonFinite {
                index: 0,
                label: "v"
            }
        );
        let nan = [Record {
            n: Some("a".into()),
            v: Some(f64::NAN),
            ..Record::default()
        }];
        assert_eq!(
            resolve(&nan, NOW).unwrap_err(),
            SenmlError::NonFinite {
                index: 0,
                label: "v"
            }
        );
    }

    #[test]
    fn base_value_sum_and_relative_times() {
        let pack = decode(
            br#"[{"bn":"d/","bv":100,"bs":10,"bt":-10,"n":"a","v":1},
                 {"n":"b","s":5,"t":3},
                 {"n":"c","vb":true,"t":1.5e9,"ut":60}]"#,
        )
        .unwrap();
        let now = 1.0e9;
        let r = resolve(&pack, now).unwrap();
        assert_eq!(r[0].value, Some(Value::Float(101.0)));
        assert_eq!(r[0].sum, Some(10.0), "base sum alone gives a sum");
        assert_eq!(r[0].time, now - 10.0);
        assert_eq!((r[1].value.clone(), r[1].sum), (None, Some(15.0)));
        assert_eq!(r[1].time, now - 7.0);
        // bt + t = 1.5e9 - 10 is above 2**28: absolute. And chronological order.
        assert_eq!(r[2].time, 1.5e9 - 10.0);
        assert_eq!(r[2].update_time, Some(60.0));
        assert_eq!(
            r[2].value,
            Some(Value::Bool(true)),
            "base value is for `v` only"
        );
        let order: Vec<_> = resolve(&pack, 1.0e9)
            .unwrap()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(order, ["d/a", "d/b", "d/c"]);
        let order: Vec<_> = resolve(&pack, 1.6e9)
            .unwrap()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(order, ["d/c", "d/a", "d/b"]);
    }

    #[test]
    fn readings_from_a_pack() {
        let pack = decode(
            br#"[{"bn":"int-12/det-3/","bt":1.7e9,"bu":"count","n":"count","v":12},
                 {"n":"occupancy","u":"%","v":35.5,"t":1},
                 {"bn":"flood-1:","n":"water_level","u":"m","v":0.42},
                 {"bn":"","n":"cabinet/door","vb":false}]"#,
        )
        .unwrap();
        let rs = readings(&pack, NOW, UnknownUnits::Refuse).unwrap();
        let got: Vec<_> = rs
            .iter()
            .map(|r| {
                (
                    r.sensor.as_str(),
                    r.quantity.as_str(),
                    r.value,
                    r.unit,
                    r.time,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("int-12/det-3", "count", 12.0, Some(Unit::Count), 1.7e9),
                ("flood-1", "water_level", 0.42, Some(Unit::Metre), 1.7e9),
                (
                    "int-12/det-3",
                    "occupancy",
                    35.5,
                    Some(Unit::Percent),
                    1.7e9 + 1.0
                ),
            ]
        );
        assert!(rs.iter().all(|r| r.quality == Quality::Good));

        let furlong = decode(br#"[{"n":"a/b","u":"furlong","v":1}]"#).unwrap();
        let e = readings(&furlong, NOW, UnknownUnits::Refuse).unwrap_err();
        assert_eq!(
            e,
            SenmlError::UnknownUnit {
                index: 0,
                unit: "furlong".into()
            }
        );
        assert!(e.to_string().contains("furlong"));
        let kept = readings(&furlong, NOW, UnknownUnits::Opaque).unwrap();
        assert_eq!(
            kept[0].unit.map(|u| u.as_str().to_owned()).as_deref(),
            Some("furlong")
        );
        assert!(kept[0].unit.is_some_and(|u| u.is_opaque()));
        let long = decode(br#"[{"n":"a/b","u":"furlongs-per-fortnight","v":1}]"#).unwrap();
        assert_eq!(
            readings(&long, NOW, UnknownUnits::Opaque).unwrap_err(),
            SenmlError::UnfitUnit {
                index: 0,
                unit: "furlongs-per-fortnight".into()
            }
        );
        // Registered units parse under either policy, secondary ones kept as sent.
        let kmh =
            decode(br#"[{"n":"car/speed","u":"km/h","v":36},{"n":"a/noise","u":"dB","v":61}]"#)
                .unwrap();
        for policy in [UnknownUnits::Refuse, UnknownUnits::Opaque] {
            let rs = readings(&kmh, NOW, policy).unwrap();
            assert_eq!(rs[0].unit, Some(Unit::KilometrePerHour));
            assert_eq!(rs[0].value, 36.0);
            assert_eq!(rs[1].unit, Some(Unit::Decibel));
        }
        for name in ["flood", "flood/", "/x"] {
            let pack = vec![Record {
                n: Some(name.into()),
                v: Some(1.0),
                ..Record::default()
            }];
            let e = readings(&pack, NOW, UnknownUnits::Refuse).unwrap_err();
            assert!(
                matches!(
                    e,
                    SenmlError::NoQuantity { .. } | SenmlError::BadName { .. }
                ),
                "{name}: {e}"
            );
        }
    }

    fn reading(sensor: &str, quantity: &str, value: f64, unit: Option<Unit>, time: f64) -> Reading {
        Reading {
            sensor: sensor.into(),
            quantity: quantity.into(),
            value,
            unit,
            time,
            quality: Quality::Good,
        }
    }

    #[test]
    fn from_readings_builds_a_compact_pack() {
        let rs = vec![
            reading("int-12/det-3", "count", 12.0, Some(Unit::Count), 1.7e9),
            reading(
                "int-12/det-4",
                "count",
                9.0,
                Some(Unit::Count),
                1.7e9 + 60.0,
            ),
        ];
        let pack = from_readings(&rs);
        assert_eq!(
            String::from_utf8(encode(&pack)).unwrap(),
            r#"[{"bn":"int-12/","bt":1.7e+09,"bu":"count","n":"det-3/count","v":12},{"n":"det-4/count","t":60,"v":9}]"#
        );
        assert_eq!(readings(&pack, NOW, UnknownUnits::Refuse).unwrap(), rs);

        let one = vec![reading(
            "flood-1",
            "water_level",
            0.42,
            Some(Unit::Metre),
            1.7e9,
        )];
        assert_eq!(
            String::from_utf8(encode(&from_readings(&one))).unwrap(),
            r#"[{"bt":1.7e+09,"n":"flood-1/water_level","u":"m","v":0.42}]"#
        );
        assert!(from_readings(&[]).is_empty());
    }

    fn opt_f64() -> impl Strategy<Value = Option<f64>> {
        use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
        proptest::option::of(POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO)
    }

    fn opt_string() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(any::<String>())
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            (opt_string(), opt_f64(), opt_string(), opt_f64(), opt_f64()),
            (
                proptest::option::of(any::<u64>()),
                opt_string(),
                opt_string(),
            ),
            (opt_f64(), opt_f64(), opt_f64(), opt_string()),
            (proptest::option::of(any::<bool>()), opt_string(), opt_f64()),
        )
            .prop_map(
                |((bn, bt, bu, bv, bs), (bver, n, u), (t, ut, v, vs), (vb, vd, s))| Record {
                    bn,
                    bt,
                    bu,
                    bv,
                    bs,
                    bver,
                    n,
                    u,
                    t,
                    ut,
                    v,
                    vs,
                    vb,
                    vd,
                    s,
                },
            )
    }

    #[test]
    fn vd_is_read_leniently_but_written_base64url_unpadded() {
        // "hi \n" is aGkgCg; 0xfb 0xff is +/8 in the standard alphabet and -_8 in base64url.
        assert_eq!(base64url_encode(b"hi \n"), "aGkgCg");
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        for ok in ["aGkgCg", "aGkgCg==", "aGkgCh"] {
            assert_eq!(base64url_decode(ok).as_deref(), Some(&b"hi \n"[..]), "{ok}");
        }
        for ok in ["-_8", "+/8", "+_8=", "-/8"] {
            assert_eq!(
                base64url_decode(ok).as_deref(),
                Some(&[0xfb, 0xff][..]),
                "{ok}"
            );
        }
        for bad in ["a", "aGkgC", "aG!g", "aG g", "aGk\n"] {
            assert_eq!(base64url_decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(pack in proptest::collection::vec(record(), 0..6)) {
            let bytes = encode(&pack);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &pack);
            // Bit-exact numbers, including the sign of zero.
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_json_like_text(text in r#"[\[\]{}",:0-9a-z_ .eE+\-]{0,64}"#) {
            if let Ok(pack) = decode(text.as_bytes()) {
                let _ = resolve(&pack, NOW);
                let _ = readings(&pack, NOW, UnknownUnits::Refuse);
            }
        }

        #[test]
        fn readings_round_trip_through_senml(
            items in proptest::collection::vec(
                ("[a-z0-9]{1,4}(/[a-z0-9]{1,4}){0,2}", "[a-z_]{1,8}", -1e6..1e6f64,
                 proptest::option::of(proptest::sample::select(vec![Unit::Count, Unit::Metre, Unit::Percent])),
                 1.6e9..1.8e9f64),
                1..6),
        ) {
            let rs: Vec<Reading> = items
                .into_iter()
                .map(|(s, q, v, u, t)| reading(&s, &q, v, u, t))
                .collect();
            let pack = decode(&encode(&from_readings(&rs))).unwrap();
            let mut back = readings(&pack, NOW, UnknownUnits::Refuse).unwrap();
            let mut want = rs.clone();
            // Resolution orders by time; compare as sets ordered the same way.
            let key = |r: &Reading| (r.time.to_bits(), r.sensor.clone(), r.quantity.clone());
            back.sort_by_key(key);
            want.sort_by_key(key);
            prop_assert_eq!(back, want);
        }

        #[test]
        fn base64url_round_trips(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let text = base64url_encode(&data);
            prop_assert!(!text.contains('='));
            prop_assert_eq!(base64url_decode(&text), Some(data));
        }
    }
}
