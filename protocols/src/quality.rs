//! The quality flag carried by every reading.

use serde::{Deserialize, Serialize};

/// How far a reading can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Read from the device just now, in range.
    #[default]
    Good,
    /// The last good value, repeated because the device did not answer in time.
    Stale,
    /// The device or the bus failed; the value is not meaningful.
    CommError,
    /// The device answered with a value outside its configured range.
    OutOfRange,
}

impl Quality {
    /// The wire name (`good`, `stale`, `comm_error`, `out_of_range`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Stale => "stale",
            Quality::CommError => "comm_error",
            Quality::OutOfRange => "out_of_range",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "good" => Quality::Good,
            "stale" => Quality::Stale,
            "comm_error" => Quality::CommError,
            "out_of_range" => Quality::OutOfRange,
            _ => return None,
        })
    }

    /// Whether a value with this quality may enter summaries and rules.
    pub const fn is_usable(self) -> bool {
        matches!(self, Quality::Good)
    }
}
