//! CAP 1.2 date-times: `YYYY-MM-DDThh:mm:ss±hh:mm`, always with a numeric offset.
//!
//! CAP §3.3.2 forbids the `Z` designator: UTC is written `-00:00`. A [`CapTime`] is an instant
//! (whole seconds since the Unix epoch) plus the offset it is written in. Offset 0 is always
//! written `-00:00`, so `+00:00` read from outside comes back out as `-00:00` (same instant).

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest offset allowed by XML Schema `dateTime`: 14 hours.
pub const MAX_OFFSET_MINUTES: i16 = 14 * 60;

/// 0001-01-01T00:00:00 UTC and 9999-12-31T23:59:59 UTC: four-digit years only.
const MIN_EPOCH: i64 = -62_135_596_800;
const MAX_EPOCH: i64 = 253_402_300_799;

/// An instant as CAP writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapTime {
    epoch: i64,
    offset_minutes: i16,
}

/// Why a time could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error(
        "`{0}` is not a CAP date-time (expected YYYY-MM-DDThh:mm:ss±hh:mm, UTC as -00:00, never Z)"
    )]
    Syntax(String),
    #[error("`{0}` names a date or time that does not exist")]
    Field(String),
    #[error("time is outside the years 0001..9999 or not a finite number")]
    Range,
    #[error("offset of {0} minutes is beyond ±14:00")]
    Offset(i32),
}

impl CapTime {
    /// An instant written in UTC (`-00:00`).
    pub fn utc(epoch: i64) -> Result<Self, TimeError> {
        Self::with_offset(epoch, 0)
    }

    /// An instant written with the given offset from UTC, in minutes (east positive).
    pub fn with_offset(epoch: i64, offset_minutes: i16) -> Result<Self, TimeError> {
        if offset_minutes.abs() > MAX_OFFSET_MINUTES {
            return Err(TimeError::Offset(offset_minutes.into()));
        }
        let local = epoch.checked_add(i64::from(offset_minutes) * 60);
        match local {
            Some(l)
                if (MIN_EPOCH..=MAX_EPOCH).contains(&epoch)
                    && (MIN_EPOCH..=MAX_EPOCH).contains(&l) =>
            {
                Ok(CapTime {
                    epoch,
                    offset_minutes,
                })
            }
            _ => Err(TimeError::Range),
        }
    }

    /// UTC from seconds since the epoch as carried by readings (fractions are truncated down).
    pub fn from_epoch_f64(secs: f64) -> Result<Self, TimeError> {
        if !secs.is_finite() || secs < MIN_EPOCH as f64 || secs > MAX_EPOCH as f64 {
            return Err(TimeError::Range);
        }
        // In range and finite, so the cast is exact after floor.
        Self::utc(secs.floor() as i64)
    }

    /// Seconds since the Unix epoch.
    pub const fn epoch(self) -> i64 {
        self.epoch
    }

    /// Offset from UTC the time is written in, minutes.
    pub const fn offset_minutes(self) -> i16 {
        self.offset_minutes
    }

    /// The same instant `secs` later, in the same offset.
    pub fn plus_seconds(self, secs: i64) -> Result<Self, TimeError> {
        let epoch = self.epoch.checked_add(secs).ok_or(TimeError::Range)?;
        Self::with_offset(epoch, self.offset_minutes)
    }

    /// Parses `YYYY-MM-DDThh:mm:ss±hh:mm` exactly (the CAP schema's pattern).
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let syntax = || TimeError::Syntax(text.chars().take(64).collect());
        let b = text.as_bytes();
        if b.len() != 25 {
            return Err(syntax());
        }
        let shape = b"dddd-dd-ddTdd:dd:dd+dd:dd";
        for (i, (&c, &s)) in b.iter().zip(shape.iter()).enumerate() {
            let ok = match s {
                b'd' => c.is_ascii_digit(),
                b'+' => c == b'+' || c == b'-',
                _ => c == s,
            };
            if !ok || (i == 19 && s != b'+') {
                return Err(syntax());
            }
        }
        let num = |from: usize, to: usize| -> i64 {
            b[from..to]
                .iter()
                .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'))
        };
        let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
        let (hour, minute, second) = (num(11, 13), num(14, 16), num(17, 19));
        let (oh, om) = (num(20, 22), num(23, 25));
        let field = || TimeError::Field(text.to_string());
        if year < 1
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
            || om > 59
        {
            return Err(field());
        }
        let sign = if b[19] == b'-' { -1 } else { 1 };
        let offset = sign * (oh * 60 + om);
        if offset.abs() > i64::from(MAX_OFFSET_MINUTES) {
            return Err(TimeError::Offset(i32::try_from(offset).unwrap_or(i32::MAX)));
        }
        let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        // |offset| <= 840, so the cast is exact.
        Self::with_offset(local - offset * 60, offset as i16)
    }
}

impl fmt::Display for CapTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.epoch + i64::from(self.offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let sign = if self.offset_minutes > 0 { '+' } else { '-' };
        let off = self.offset_minutes.unsigned_abs();
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            off / 60,
            off % 60
        )
    }
}

impl Serialize for CapTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CapTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CapTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utc_is_written_minus_zero() {
        let t = CapTime::utc(1_049_312_341).unwrap();
        assert_eq!(t.to_string(), "2003-04-02T19:39:01-00:00");
    }

    #[test]
    fn offsets_parse_to_the_same_instant() {
        let a = CapTime::parse("2003-04-02T14:39:01-05:00").unwrap();
        assert_eq!(a.epoch(), 1_049_312_341);
        assert_eq!(a.offset_minutes(), -300);
        assert_eq!(a.to_string(), "2003-04-02T14:39:01-05:00");
        let b = CapTime::parse("2011-10-05T23:04:00+10:00").unwrap();
        assert_eq!(b.to_string(), "2011-10-05T23:04:00+10:00");
        assert_eq!(
            b.epoch(),
            CapTime::parse("2011-10-05T13:04:00-00:00").unwrap().epoch()
        );
    }

    #[test]
    fn z_and_bad_fields_are_rejected() {
        for bad in [
            "2003-04-02T19:39:01Z",
            "2003-04-02T19:39:01+0000",
            "2003-02-29T00:00:00-00:00",
            "2003-04-02T24:00:00-00:00",
            "2003-04-02 19:39:01-00:00",
            "2003-04-02T19:39:01.5-00:00",
            "2003-04-02T19:39:01-15:00",
            "",
        ] {
            assert!(CapTime::parse(bad).is_err(), "{bad}");
        }
        assert!(CapTime::parse("2004-02-29T00:00:00+00:00").is_ok());
    }

    #[test]
    fn non_finite_and_far_times_are_errors() {
        assert_eq!(CapTime::from_epoch_f64(f64::NAN), Err(TimeError::Range));
        assert_eq!(CapTime::from_epoch_f64(1e300), Err(TimeError::Range));
        assert_eq!(CapTime::from_epoch_f64(1.9).unwrap().epoch(), 1);
    }

    proptest! {
        #[test]
        fn write_then_parse_is_identity(epoch in MIN_EPOCH + 86_400..MAX_EPOCH - 86_400, off in -840i16..=840) {
            let t = CapTime::with_offset(epoch, off).unwrap();
            let s = t.to_string();
            prop_assert_eq!(CapTime::parse(&s).unwrap(), t);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,30}") {
            let _ = CapTime::parse(&s);
        }
    }
}
