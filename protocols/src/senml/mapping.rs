//! The mapping between SenML packs and citygate [`Reading`]s: [`readings`] (a resolved pack's
//! numeric records as readings) and [`from_readings`] (a compact pack with base fields).

use super::{resolve_indexed, Record, SenmlError, Value};
use crate::{Quality, Reading, Unit, UnknownUnits};

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
/// here; [`resolve`](super::resolve) and [`readings`] reject a sensor id that is not a valid SenML name.
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
