//! SenML units: every unit of IANA's SenML registries (the units registry of RFC 8428 §12.1 and
//! RFC 8798 §2, the secondary units of RFC 8798 §3, and the entries IANA added later), and the
//! opaque unit that carries an unregistered name through when a source's policy allows it.
//!
//! Units are kept as sent: a reading in `km/h` stays in `km/h` through windows, hazard rules
//! and the uplink, because thresholds, deadbands and dashboards are written in the unit the
//! devices send, and a silent rescale to `m/s` would move every one of them. A secondary unit
//! knows its primary unit, scale and offset ([`Unit::secondary`]) for whoever wants to convert.
//! `protocols/data/senml-units.psv` is the registry list this module is tested against.

use core::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How a secondary unit converts to its primary unit (RFC 8798 §3):
/// `primary value = value × scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Secondary {
    pub primary: Unit,
    pub scale: f64,
    pub offset: f64,
}

impl Secondary {
    /// `value` (in the secondary unit) in the primary unit.
    pub fn to_primary(&self, value: f64) -> f64 {
        value * self.scale + self.offset
    }
}

macro_rules! registry {
    (
        units { $( $pv:ident $pn:literal $pd:literal $pnr:literal; )* }
        secondary { $( $sv:ident $sn:literal $sd:literal => $sp:ident, $scale:expr, $offset:expr; )* }
    ) => {
        /// A SenML unit: one of the registered units, or an [`OpaqueUnit`] that a source
        /// configured with `unknown_units = "opaque"` let through. citygate itself only
        /// produces registered units.
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Unit {
            $( #[doc = concat!("`", $pn, "`: ", $pd)] $pv, )*
            $( #[doc = concat!("`", $sn, "`: ", $sd, " (secondary unit of `", stringify!($sp), "`)")] $sv, )*
            /// A unit name outside the registries, kept as sent.
            Opaque(OpaqueUnit),
        }

        /// Every registered unit: the units registry first, then the secondary units.
        pub const REGISTERED: &[Unit] = &[ $( Unit::$pv, )* $( Unit::$sv, )* ];

        impl Unit {
            /// Parses a registered SenML unit name (case-sensitive); `None` for any other.
            pub fn parse(s: &str) -> Option<Unit> {
                match s {
                    $( $pn => Some(Unit::$pv), )*
                    $( $sn => Some(Unit::$sv), )*
                    _ => None,
                }
            }

            /// The SenML unit name.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Unit::$pv => $pn, )*
                    $( Unit::$sv => $sn, )*
                    Unit::Opaque(o) => o.as_str(),
                }
            }

            /// The registry's description; `None` for an opaque unit.
            pub fn description(&self) -> Option<&'static str> {
                match self {
                    $( Unit::$pv => Some($pd), )*
                    $( Unit::$sv => Some($sd), )*
                    Unit::Opaque(_) => None,
                }
            }

            /// Marked with an asterisk in the registry: NOT RECOMMENDED for new producers,
            /// but in use, so consumers implement it (RFC 8428 §12.1).
            pub fn not_recommended(&self) -> bool {
                match self {
                    $( Unit::$pv => $pnr, )*
                    _ => false,
                }
            }

            /// For a secondary unit (RFC 8798 §3), its primary unit, scale and offset.
            pub fn secondary(&self) -> Option<Secondary> {
                match self {
                    $( Unit::$sv => Some(Secondary { primary: Unit::$sp, scale: $scale, offset: $offset }), )*
                    _ => None,
                }
            }
        }
    };
}

registry! {
    units {
        // RFC 8428 §12.1, Table 6.
        Metre "m" "meter" false;
        Kilogram "kg" "kilogram" false;
        Gram "g" "gram" true;
        Second "s" "second" false;
        Ampere "A" "ampere" false;
        Kelvin "K" "kelvin" false;
        Candela "cd" "candela" false;
        Mole "mol" "mole" false;
        Hertz "Hz" "hertz" false;
        Radian "rad" "radian" false;
        Steradian "sr" "steradian" false;
        Newton "N" "newton" false;
        Pascal "Pa" "pascal" false;
        Joule "J" "joule" false;
        Watt "W" "watt" false;
        Coulomb "C" "coulomb" false;
        Volt "V" "volt" false;
        Farad "F" "farad" false;
        Ohm "Ohm" "ohm" false;
        Siemens "S" "siemens" false;
        Weber "Wb" "weber" false;
        Tesla "T" "tesla" false;
        Henry "H" "henry" false;
        Celsius "Cel" "degrees Celsius" false;
        Lumen "lm" "lumen" false;
        Lux "lx" "lux" false;
        Becquerel "Bq" "becquerel" false;
        Gray "Gy" "gray" false;
        Sievert "Sv" "sievert" false;
        Katal "kat" "katal" false;
        SquareMetre "m2" "square meter (area)" false;
        CubicMetre "m3" "cubic meter (volume)" false;
        Litre "l" "liter (volume)" true;
        MetrePerSecond "m/s" "meter per second (velocity)" false;
        MetrePerSecondSquared "m/s2" "meter per square second (acceleration)" false;
        CubicMetrePerSecond "m3/s" "cubic meter per second (flow rate)" false;
        LitrePerSecond "l/s" "liter per second (flow rate)" true;
        WattPerSquareMetre "W/m2" "watt per square meter (irradiance)" false;
        CandelaPerSquareMetre "cd/m2" "candela per square meter (luminance)" false;
        Bit "bit" "bit (information content)" false;
        BitPerSecond "bit/s" "bit per second (data rate)" false;
        Latitude "lat" "degrees latitude" false;
        Longitude "lon" "degrees longitude" false;
        Ph "pH" "pH value (acidity; logarithmic quantity)" false;
        Decibel "dB" "decibel (logarithmic quantity)" false;
        DecibelWatt "dBW" "decibel relative to 1 W (power level)" false;
        BelSoundPressure "Bspl" "bel (sound pressure level; logarithmic quantity)" true;
        Count "count" "1 (counter value)" false;
        Ratio "/" "1 (ratio e.g., value of a switch)" false;
        Percent "%" "1 (ratio e.g., value of a switch)" true;
        PercentRh "%RH" "Percentage (Relative Humidity)" false;
        PercentEl "%EL" "Percentage (remaining battery energy level)" false;
        EnergyLevel "EL" "seconds (remaining battery energy level)" false;
        PerSecond "1/s" "1 per second (event rate)" false;
        PerMinute "1/min" "1 per minute (event rate, \"rpm\")" true;
        BeatsPerMinute "beat/min" "1 per minute (heart rate in beats per minute)" true;
        Beats "beats" "1 (Cumulative number of heart beats)" true;
        SiemensPerMetre "S/m" "Siemens per meter (conductivity)" false;
        // RFC 8798 §2, Table 1.
        Byte "B" "Byte (information content)" false;
        VoltAmpere "VA" "volt-ampere (Apparent Power)" false;
        VoltAmpereSecond "VAs" "volt-ampere second (Apparent Energy)" false;
        Var "var" "volt-ampere reactive (Reactive Power)" false;
        VarSecond "vars" "volt-ampere-reactive second (Reactive Energy)" false;
        JoulePerMetre "J/m" "joule per meter (Energy per distance)" false;
        KilogramPerCubicMetre "kg/m3" "kilogram per cubic meter (mass density, mass concentration)" false;
        Degree "deg" "degree (angle)" true;
        // Added by IANA, reference ISO 7027-1:2016.
        Ntu "NTU" "Nephelometric Turbidity Unit" false;
    }
    secondary {
        // RFC 8798 §3, Table 2.
        Millisecond "ms" "millisecond" => Second, 1.0 / 1000.0, 0.0;
        Minute "min" "minute" => Second, 60.0, 0.0;
        Hour "h" "hour" => Second, 3600.0, 0.0;
        Megahertz "MHz" "megahertz" => Hertz, 1_000_000.0, 0.0;
        Kilowatt "kW" "kilowatt" => Watt, 1000.0, 0.0;
        KilovoltAmpere "kVA" "kilovolt-ampere" => VoltAmpere, 1000.0, 0.0;
        Kilovar "kvar" "kilovar" => Var, 1000.0, 0.0;
        AmpereHour "Ah" "ampere-hour" => Coulomb, 3600.0, 0.0;
        WattHour "Wh" "watt-hour" => Joule, 3600.0, 0.0;
        KilowattHour "kWh" "kilowatt-hour" => Joule, 3_600_000.0, 0.0;
        VarHour "varh" "var-hour" => VarSecond, 3600.0, 0.0;
        KilovarHour "kvarh" "kilovar-hour" => VarSecond, 3_600_000.0, 0.0;
        KilovoltAmpereHour "kVAh" "kilovolt-ampere-hour" => VoltAmpereSecond, 3_600_000.0, 0.0;
        WattHourPerKilometre "Wh/km" "watt-hour per kilometer" => JoulePerMetre, 3.6, 0.0;
        Kibibyte "KiB" "kibibyte" => Byte, 1024.0, 0.0;
        Gigabyte "GB" "gigabyte" => Byte, 1e9, 0.0;
        MegabitPerSecond "Mbit/s" "megabit per second" => BitPerSecond, 1_000_000.0, 0.0;
        BytePerSecond "B/s" "byte per second" => BitPerSecond, 8.0, 0.0;
        MegabytePerSecond "MB/s" "megabyte per second" => BitPerSecond, 8_000_000.0, 0.0;
        Millivolt "mV" "millivolt" => Volt, 1.0 / 1000.0, 0.0;
        Milliampere "mA" "milliampere" => Ampere, 1.0 / 1000.0, 0.0;
        DecibelMilliwatt "dBm" "decibel (milliwatt)" => DecibelWatt, 1.0, -30.0;
        MicrogramPerCubicMetre "ug/m3" "microgram per cubic meter" => KilogramPerCubicMetre, 1e-9, 0.0;
        MillimetrePerHour "mm/h" "millimeter per hour" => MetrePerSecond, 1.0 / 3_600_000.0, 0.0;
        MetrePerHour "m/h" "meter per hour" => MetrePerSecond, 1.0 / 3600.0, 0.0;
        Ppm "ppm" "parts per million" => Ratio, 1e-6, 0.0;
        PerHundred "/100" "percent" => Ratio, 1.0 / 100.0, 0.0;
        PerThousand "/1000" "permille" => Ratio, 1.0 / 1000.0, 0.0;
        Hectopascal "hPa" "hectopascal" => Pascal, 100.0, 0.0;
        Millimetre "mm" "millimeter" => Metre, 1.0 / 1000.0, 0.0;
        Centimetre "cm" "centimeter" => Metre, 1.0 / 100.0, 0.0;
        Kilometre "km" "kilometer" => Metre, 1000.0, 0.0;
        KilometrePerHour "km/h" "kilometer per hour" => MetrePerSecond, 1.0 / 3.6, 0.0;
        // Added by IANA by expert review.
        Ppb "ppb" "parts per billion" => Ratio, 1e-9, 0.0;
        Ppt "ppt" "parts per trillion" => Ratio, 1e-12, 0.0;
        VoltAmpereHour "VAh" "volt-ampere-hour" => VoltAmpereSecond, 3600.0, 0.0;
        MilligramPerLitre "mg/l" "milligram per liter" => KilogramPerCubicMetre, 1.0 / 1000.0, 0.0;
        MicrogramPerLitre "ug/l" "microgram per liter" => KilogramPerCubicMetre, 1e-6, 0.0;
        GramPerLitre "g/l" "gram per liter" => KilogramPerCubicMetre, 1.0, 0.0;
    }
}

/// The longest unregistered unit name an [`OpaqueUnit`] holds.
pub const OPAQUE_MAX: usize = 15;

/// An unregistered unit name, kept as sent: 1 to [`OPAQUE_MAX`] printable ASCII characters
/// (no spaces), never the name of a registered unit. Stored inline so that [`Unit`] stays
/// `Copy` and allocation-free.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpaqueUnit {
    len: u8,
    bytes: [u8; OPAQUE_MAX],
}

impl OpaqueUnit {
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// What a source does with a unit outside the registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownUnits {
    /// Refuse the record: the message counts as malformed (RFC 8428's default; see
    /// `config/README.md`).
    #[default]
    Refuse,
    /// Keep the name as an [`OpaqueUnit`].
    Opaque,
}

impl Unit {
    /// A registered unit, or else an opaque one when `name` fits [`OpaqueUnit`]; `None` for
    /// a name that is neither.
    pub fn parse_or_opaque(name: &str) -> Option<Unit> {
        if let Some(u) = Unit::parse(name) {
            return Some(u);
        }
        if name.is_empty() || name.len() > OPAQUE_MAX || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return None;
        }
        let mut bytes = [0; OPAQUE_MAX];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Unit::Opaque(OpaqueUnit {
            len: name.len() as u8,
            bytes,
        }))
    }

    /// `true` for a unit outside the registries.
    pub fn is_opaque(&self) -> bool {
        matches!(self, Unit::Opaque(_))
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Opaque(o) => write!(f, "Opaque({:?})", o.as_str()),
            u => write!(f, "Unit({:?})", u.as_str()),
        }
    }
}

impl fmt::Debug for OpaqueUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Unit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Records read back (outbox, uplink) carry the units they were given, opaque ones included.
impl<'de> Deserialize<'de> for Unit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(UnitVisitor {
            registered_only: false,
        })
    }
}

/// `deserialize_with` for config keys, which name registered units only (a typo is an error
/// at `citygate check`, not an opaque unit).
pub fn deserialize_registered<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Unit>, D::Error> {
    d.deserialize_str(UnitVisitor {
        registered_only: true,
    })
    .map(Some)
}

struct UnitVisitor {
    registered_only: bool,
}

impl Visitor<'_> for UnitVisitor {
    type Value = Unit;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML unit name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Unit, E> {
        let unit = if self.registered_only {
            Unit::parse(v)
        } else {
            Unit::parse_or_opaque(v)
        };
        unit.ok_or_else(|| E::custom(format_args!("unknown SenML unit `{v}`")))
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    /// The registry list: (registry, symbol, description, not recommended, primary, scale,
    /// offset) for each line of `protocols/data/senml-units.psv`.
    fn registry_list() -> impl Iterator<Item = [&'static str; 8]> {
        include_str!("../data/senml-units.psv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("registry|"))
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                f.try_into()
                    .unwrap_or_else(|f| panic!("line `{l}` has {} fields", Vec::len(&f)))
            })
    }

    fn number(s: &str) -> f64 {
        match s.split_once('/') {
            Some((a, b)) => a.parse::<f64>().unwrap() / b.parse::<f64>().unwrap(),
            None => s.parse().unwrap(),
        }
    }

    #[test]
    fn every_registry_entry_parses_with_its_description_and_conversion() {
        let mut seen = 0;
        for [registry, symbol, description, not_recommended, primary, scale, offset, _] in
            registry_list()
        {
            let u = Unit::parse(symbol).unwrap_or_else(|| panic!("`{symbol}` does not parse"));
            assert_eq!(u.as_str(), symbol);
            assert_eq!(u.description(), Some(description), "{symbol}");
            assert_eq!(u.not_recommended(), not_recommended == "*", "{symbol}");
            match registry {
                "units" => assert_eq!(u.secondary(), None, "{symbol}"),
                "secondary" => {
                    let s = u
                        .secondary()
                        .unwrap_or_else(|| panic!("{symbol}: not secondary"));
                    assert_eq!(s.primary, Unit::parse(primary).unwrap(), "{symbol}");
                    assert_eq!(s.primary.secondary(), None, "{symbol}: primary is primary");
                    let want = number(scale);
                    assert!(
                        (s.scale - want).abs() <= want * 1e-15,
                        "{symbol}: {}",
                        s.scale
                    );
                    assert_eq!(s.offset, number(offset), "{symbol}");
                }
                other => panic!("unknown registry `{other}`"),
            }
            seen += 1;
        }
        assert_eq!(seen, 106);
        assert_eq!(
            REGISTERED.len(),
            seen,
            "units in the code that the registry does not list"
        );
    }

    #[test]
    fn registered_units_round_trip_and_unregistered_ones_do_not_parse() {
        for u in REGISTERED {
            assert_eq!(Unit::parse(u.as_str()), Some(*u));
            assert_eq!(Unit::parse_or_opaque(u.as_str()), Some(*u));
            assert!(!u.is_opaque());
        }
        for name in ["furlong", "1/h", "KM/H", "celsius", "M", ""] {
            assert_eq!(Unit::parse(name), None, "{name}");
        }
    }

    #[test]
    fn secondary_units_convert_with_the_registry_scale_and_offset() {
        let kmh = Unit::KilometrePerHour.secondary().unwrap();
        assert_eq!(kmh.primary, Unit::MetrePerSecond);
        assert!((kmh.to_primary(36.0) - 10.0).abs() < 1e-12);
        let dbm = Unit::DecibelMilliwatt.secondary().unwrap();
        assert_eq!(dbm.to_primary(0.0), -30.0);
        assert_eq!(Unit::Lux.secondary(), None);
    }

    #[test]
    fn opaque_units_keep_their_name_within_limits() {
        let ft = Unit::parse_or_opaque("ft").unwrap();
        assert!(ft.is_opaque());
        assert_eq!(ft.as_str(), "ft");
        assert_eq!(ft, Unit::parse_or_opaque("ft").unwrap());
        assert_ne!(ft, Unit::parse_or_opaque("fT").unwrap());
        assert_eq!(ft.description(), None);
        let longest = "a".repeat(OPAQUE_MAX);
        assert_eq!(Unit::parse_or_opaque(&longest).unwrap().as_str(), longest);
        for bad in ["", "a b", "a\u{7f}", "é", &"a".repeat(OPAQUE_MAX + 1)] {
            assert_eq!(Unit::parse_or_opaque(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn serde_keeps_opaque_units_but_config_names_registered_ones_only() {
        let json = serde_json::to_string(&[Unit::Lux, Unit::parse_or_opaque("ft").unwrap()]);
        assert_eq!(json.unwrap(), r#"["lx","ft"]"#);
        let back: Vec<Unit> = serde_json::from_str(r#"["km/h","ft"]"#).unwrap();
        assert_eq!(
            back,
            [Unit::KilometrePerHour, Unit::parse_or_opaque("ft").unwrap()]
        );
        assert!(serde_json::from_str::<Unit>(r#""a b""#).is_err());

        #[derive(Deserialize)]
        struct Point {
            #[serde(default, deserialize_with = "deserialize_registered")]
            unit: Option<Unit>,
        }
        let p: Point = serde_json::from_str(r#"{"unit":"dB"}"#).unwrap();
        assert_eq!(p.unit, Some(Unit::Decibel));
        let p: Point = serde_json::from_str("{}").unwrap();
        assert_eq!(p.unit, None);
        let e = serde_json::from_str::<Point>(r#"{"unit":"ft"}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown SenML unit `ft`"), "{e}");
    }
}
