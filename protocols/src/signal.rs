//! Signal-group states shown at the lamps, and their Modbus wire encoding.
//!
//! Vehicle groups run red → (red-amber) → green → yellow → red; pedestrian groups run
//! red → green → flashing green → red. Flashing yellow is the fault/standby aspect, dark is
//! "lamps off" (pedestrian heads during flashing yellow, or a switched-off group).

/// What a signal group shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignalState {
    /// All lamps off.
    Dark,
    /// Red: stop.
    #[default]
    Red,
    /// Red and amber together: green follows (vehicle groups, where configured).
    RedAmber,
    /// Green: right of way.
    Green,
    /// Yellow (amber): clearance after green (vehicle groups).
    Yellow,
    /// Flashing green: pedestrian clearance, do not start crossing.
    FlashingGreen,
    /// Flashing yellow: fault or standby, proceed with caution.
    FlashingYellow,
}

/// Every state, in wire-code order.
pub const ALL_SIGNAL_STATES: [SignalState; 7] = [
    SignalState::Dark,
    SignalState::Red,
    SignalState::RedAmber,
    SignalState::Green,
    SignalState::Yellow,
    SignalState::FlashingGreen,
    SignalState::FlashingYellow,
];

impl SignalState {
    /// The 16-bit register value (0 dark, 1 red, 2 red-amber, 3 green, 4 yellow,
    /// 5 flashing green, 6 flashing yellow).
    pub const fn to_wire(self) -> u16 {
        match self {
            SignalState::Dark => 0,
            SignalState::Red => 1,
            SignalState::RedAmber => 2,
            SignalState::Green => 3,
            SignalState::Yellow => 4,
            SignalState::FlashingGreen => 5,
            SignalState::FlashingYellow => 6,
        }
    }

    /// Decodes a register value; `None` for an unknown code.
    pub const fn from_wire(code: u16) -> Option<Self> {
        Some(match code {
            0 => SignalState::Dark,
            1 => SignalState::Red,
            2 => SignalState::RedAmber,
            3 => SignalState::Green,
            4 => SignalState::Yellow,
            5 => SignalState::FlashingGreen,
            6 => SignalState::FlashingYellow,
            _ => return None,
        })
    }

    /// The name used in logs and JSON (`red`, `red_amber`, `green`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            SignalState::Dark => "dark",
            SignalState::Red => "red",
            SignalState::RedAmber => "red_amber",
            SignalState::Green => "green",
            SignalState::Yellow => "yellow",
            SignalState::FlashingGreen => "flashing_green",
            SignalState::FlashingYellow => "flashing_yellow",
        }
    }

    /// Green or flashing green: the group's traffic has (or is clearing) right of way.
    pub const fn is_green(self) -> bool {
        matches!(self, SignalState::Green | SignalState::FlashingGreen)
    }

    /// Whether the group shows anything other than red or dark, i.e. traffic may be moving
    /// or about to move. Two conflicting groups must never both be "open".
    pub const fn is_open(self) -> bool {
        !matches!(self, SignalState::Red | SignalState::Dark)
    }
}

/// Whether a signal group serves vehicles or pedestrians; it decides the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// red → (red-amber) → green → yellow → red
    Vehicle,
    /// red → green → flashing green → red
    Pedestrian,
}

impl GroupKind {
    /// The clearance aspect that follows green for this kind.
    pub const fn clearance_state(self) -> SignalState {
        match self {
            GroupKind::Vehicle => SignalState::Yellow,
            GroupKind::Pedestrian => SignalState::FlashingGreen,
        }
    }

    /// What the group shows while the controller is latched to flashing operation.
    pub const fn flash_state(self) -> SignalState {
        match self {
            GroupKind::Vehicle => SignalState::FlashingYellow,
            GroupKind::Pedestrian => SignalState::Dark,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_round_trip_and_are_distinct() {
        for (i, s) in ALL_SIGNAL_STATES.iter().enumerate() {
            assert_eq!(s.to_wire(), i as u16);
            assert_eq!(SignalState::from_wire(s.to_wire()), Some(*s));
        }
        assert_eq!(SignalState::from_wire(7), None);
        assert_eq!(SignalState::from_wire(0xFFFF), None);
    }

    #[test]
    fn open_and_green_classification() {
        assert!(!SignalState::Red.is_open());
        assert!(!SignalState::Dark.is_open());
        assert!(SignalState::RedAmber.is_open());
        assert!(SignalState::Yellow.is_open());
        assert!(SignalState::FlashingGreen.is_green());
        assert!(!SignalState::Yellow.is_green());
        assert_eq!(
            GroupKind::Pedestrian.clearance_state(),
            SignalState::FlashingGreen
        );
        assert_eq!(
            GroupKind::Vehicle.flash_state(),
            SignalState::FlashingYellow
        );
    }
}
