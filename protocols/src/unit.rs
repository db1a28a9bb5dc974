//! SenML units (RFC 8428 section 12.1 and the secondary registry) that citygate devices use.

use serde::{Deserialize, Serialize};

/// A SenML unit. `Other` is never produced by citygate itself; it keeps an unknown unit
/// from an outside device visible instead of dropping the reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// metre
    #[serde(rename = "m")]
    Metre,
    /// millimetre (secondary registry)
    #[serde(rename = "mm")]
    Millimetre,
    /// millimetres per hour (secondary registry)
    #[serde(rename = "mm/h")]
    MillimetrePerHour,
    /// degrees Celsius
    #[serde(rename = "Cel")]
    Celsius,
    /// percent
    #[serde(rename = "%")]
    Percent,
    /// percent relative humidity
    #[serde(rename = "%RH")]
    PercentRh,
    /// metres per second
    #[serde(rename = "m/s")]
    MetrePerSecond,
    /// metres per second squared
    #[serde(rename = "m/s2")]
    MetrePerSecondSquared,
    /// second
    #[serde(rename = "s")]
    Second,
    /// counter value
    #[serde(rename = "count")]
    Count,
    /// parts per million
    #[serde(rename = "ppm")]
    Ppm,
    /// micrograms per cubic metre (SenML `ug/m3`)
    #[serde(rename = "ug/m3")]
    MicrogramPerCubicMetre,
    /// pascal
    #[serde(rename = "Pa")]
    Pascal,
    /// volt
    #[serde(rename = "V")]
    Volt,
    /// ratio (1)
    #[serde(rename = "/")]
    Ratio,
    /// events per hour, e.g. vehicles per hour (`1/h`)
    #[serde(rename = "1/h")]
    PerHour,
    /// events per second (`1/s`)
    #[serde(rename = "1/s")]
    PerSecond,
}

const ALL: &[(Unit, &str)] = &[
    (Unit::Metre, "m"),
    (Unit::Millimetre, "mm"),
    (Unit::MillimetrePerHour, "mm/h"),
    (Unit::Celsius, "Cel"),
    (Unit::Percent, "%"),
    (Unit::PercentRh, "%RH"),
    (Unit::MetrePerSecond, "m/s"),
    (Unit::MetrePerSecondSquared, "m/s2"),
    (Unit::Second, "s"),
    (Unit::Count, "count"),
    (Unit::Ppm, "ppm"),
    (Unit::MicrogramPerCubicMetre, "ug/m3"),
    (Unit::Pascal, "Pa"),
    (Unit::Volt, "V"),
    (Unit::Ratio, "/"),
    (Unit::PerHour, "1/h"),
    (Unit::PerSecond, "1/s"),
];

impl Unit {
    /// The SenML unit name.
    pub fn as_str(self) -> &'static str {
        ALL.iter()
            .find(|(u, _)| *u == self)
            .map(|(_, s)| *s)
            .unwrap_or("")
    }

    /// Parses a SenML unit name; `None` for a unit citygate does not know.
    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().find(|(_, n)| *n == s).map(|(u, _)| *u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_round_trips_its_name() {
        for (u, s) in ALL {
            assert_eq!(u.as_str(), *s);
            assert_eq!(Unit::parse(s), Some(*u));
        }
        assert_eq!(Unit::parse("furlong"), None);
    }
}
