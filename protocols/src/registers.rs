//! The Modbus register maps of citygate's own field devices: the signal controller and the
//! hazard sensor node. Defined once here; the firmware serves them and the gateway reads them.
//!
//! Addresses are 0-based wire addresses (PDU addresses). A 32-bit point takes two consecutive
//! registers, high word first, each word big-endian (Modbus "ABCD" order). An engineering value
//! is `raw / 10^decimals` in `unit`; signed points are two's complement.

use crate::unit::Unit;

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Read/write bits (functions 1, 5, 15).
    Coil,
    /// Read-only bits (function 2).
    DiscreteInput,
    /// Read/write registers (functions 3, 6, 16).
    HoldingRegister,
    /// Read-only registers (function 4).
    InputRegister,
}

/// One point (or a block of `count` alike points) of a register map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    /// Stable snake_case name, used by the gateway's config and logs.
    pub name: &'static str,
    /// Which table it lives in.
    pub table: Table,
    /// First 0-based wire address.
    pub address: u16,
    /// Number of alike consecutive points (e.g. one per signal group); 1 for a single point.
    pub count: u16,
    /// Registers per point: 1 (16-bit) or 2 (32-bit, high word first).
    pub words: u16,
    /// Two's complement value.
    pub signed: bool,
    /// Engineering value = raw / 10^decimals.
    pub decimals: u8,
    /// SenML unit of the engineering value, if it has one.
    pub unit: Option<Unit>,
    /// What it means, for documentation.
    pub description: &'static str,
}

impl Register {
    const fn bit(
        table: Table,
        address: u16,
        name: &'static str,
        description: &'static str,
    ) -> Self {
        Register {
            name,
            table,
            address,
            count: 1,
            words: 1,
            signed: false,
            decimals: 0,
            unit: None,
            description,
        }
    }
    const fn word(
        table: Table,
        address: u16,
        name: &'static str,
        description: &'static str,
    ) -> Self {
        Register::bit(table, address, name, description)
    }
    const fn scaled(mut self, decimals: u8, unit: Unit) -> Self {
        self.decimals = decimals;
        self.unit = Some(unit);
        self
    }
    const fn block(mut self, count: u16) -> Self {
        self.count = count;
        self
    }
    const fn wide(mut self) -> Self {
        self.words = 2;
        self
    }
    const fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    /// One past the last address this entry occupies.
    pub const fn end(&self) -> u32 {
        self.address as u32 + self.count as u32 * self.words as u32
    }

    /// Whether `address` falls inside this entry.
    pub const fn contains(&self, address: u16) -> bool {
        address >= self.address && (address as u32) < self.end()
    }

    /// Scales a raw register value to its engineering value.
    pub fn scale(&self, raw: i64) -> f64 {
        let mut v = raw as f64;
        let mut d = self.decimals;
        while d > 0 {
            v /= 10.0;
            d -= 1;
        }
        v
    }
}

/// Finds the entry of `map` covering `address` in `table`.
pub fn lookup(map: &'static [Register], table: Table, address: u16) -> Option<&'static Register> {
    map.iter().find(|r| r.table == table && r.contains(address))
}

/// Finds the entry of `map` named `name`.
pub fn by_name(map: &'static [Register], name: &str) -> Option<&'static Register> {
    map.iter().find(|r| r.name == name)
}

/// The signal controller's map.
pub mod signal_controller {
    use super::{Register, Table::*};
    use crate::unit::Unit;

    /// Most signal groups a controller serves (and blocks below are sized for).
    pub const MAX_GROUPS: u16 = 16;
    /// Most stages.
    pub const MAX_STAGES: u16 = 16;
    /// Most local fixed-time plans.
    pub const MAX_PLANS: u16 = 4;
    /// Most detector loops.
    pub const MAX_DETECTORS: u16 = 16;

    // ---- holding registers: the command block, written together with function 16 ----
    /// Requested stage, 1-based; 0 keeps the current stage.
    pub const HR_REQUESTED_STAGE: u16 = 0;
    /// 1 holds the current stage (capped by maximum green), 0 releases it.
    pub const HR_HOLD: u16 = 1;
    /// 0 = central stage control by the gateway; k = run local fixed-time plan k (1-based).
    pub const HR_PLAN: u16 = 2;
    /// Command sequence / heartbeat counter. Writing a value different from the last accepted
    /// one commits registers 0..=2 as one command and feeds the watchdog.
    pub const HR_COMMAND_SEQUENCE: u16 = 3;
    /// Write [`FAULT_RESET_MAGIC`] to clear a latched conflict fault (restarts with all-red).
    pub const HR_FAULT_RESET: u16 = 4;
    /// The value that [`HR_FAULT_RESET`] must be written with.
    pub const FAULT_RESET_MAGIC: u16 = 0x5AFE;
    /// Number of holding registers.
    pub const HOLDING_COUNT: u16 = 5;

    // ---- input registers: status ----
    /// Current stage, 1-based; 0 while in a transition or at start-up.
    pub const IR_CURRENT_STAGE: u16 = 0;
    /// Stage the controller is heading to or running, 1-based; 0 none.
    pub const IR_TARGET_STAGE: u16 = 1;
    /// Control mode, see [`Mode`].
    pub const IR_MODE: u16 = 2;
    /// Status flags, see `FLAG_*`.
    pub const IR_STATUS_FLAGS: u16 = 3;
    /// Time since the current stage started, 0.1 s.
    pub const IR_STAGE_TIME: u16 = 4;
    /// Last accepted command sequence value.
    pub const IR_LAST_SEQUENCE: u16 = 5;
    /// Rejected commands since start (wraps).
    pub const IR_REJECTED_COMMANDS: u16 = 6;
    /// Configured signal groups.
    pub const IR_GROUP_COUNT: u16 = 7;
    /// Configured detectors.
    pub const IR_DETECTOR_COUNT: u16 = 8;
    /// Running fixed-time plan, 1-based; 0 under central stage control.
    pub const IR_ACTIVE_PLAN: u16 = 9;
    /// Detector counting interval, s.
    pub const IR_DETECTOR_INTERVAL: u16 = 10;
    /// First of [`MAX_GROUPS`] signal-group states ([`crate::signal::SignalState`] wire codes).
    pub const IR_GROUP_STATE_BASE: u16 = 16;
    /// First of [`MAX_DETECTORS`] vehicle counts of the last closed interval.
    pub const IR_DETECTOR_COUNT_BASE: u16 = 32;
    /// First of [`MAX_DETECTORS`] occupancies of the last closed interval, 0.1 %.
    pub const IR_DETECTOR_OCCUPANCY_BASE: u16 = 48;
    /// Number of input registers.
    pub const INPUT_COUNT: u16 = 64;

    /// Conflict monitor latched: lamps flash yellow until a fault reset.
    pub const FLAG_CONFLICT_LATCHED: u16 = 1 << 0;
    /// The watchdog expired: the local fallback plan runs.
    pub const FLAG_FALLBACK_ACTIVE: u16 = 1 << 1;
    /// A stage transition (clearance / intergreen) is running.
    pub const FLAG_IN_TRANSITION: u16 = 1 << 2;
    /// The gateway holds the current stage.
    pub const FLAG_HOLD: u16 = 1 << 3;
    /// The last stage change was forced by a maximum green.
    pub const FLAG_MAX_GREEN_FORCED: u16 = 1 << 4;
    /// A detector loop has been occupied for over 5 minutes (stuck or faulty loop).
    pub const FLAG_DETECTOR_STUCK: u16 = 1 << 5;

    // ---- coils ----
    /// Hold (same as [`HR_HOLD`]; committed with the next command sequence).
    pub const COIL_HOLD: u16 = 0;
    /// Writing 1 requests a fault reset (as [`HR_FAULT_RESET`]); reads 0.
    pub const COIL_FAULT_RESET: u16 = 1;
    /// Number of coils.
    pub const COIL_COUNT: u16 = 2;

    // ---- discrete inputs ----
    /// Conflict latched.
    pub const DI_CONFLICT_LATCHED: u16 = 0;
    /// Fallback plan active.
    pub const DI_FALLBACK_ACTIVE: u16 = 1;
    /// Transition running.
    pub const DI_IN_TRANSITION: u16 = 2;
    /// First of [`MAX_DETECTORS`] debounced "detector occupied now" bits.
    pub const DI_DETECTOR_OCCUPIED_BASE: u16 = 16;
    /// First of [`MAX_GROUPS`] "group shows green or flashing green" bits.
    pub const DI_GROUP_GREEN_BASE: u16 = 32;
    /// Number of discrete inputs.
    pub const DISCRETE_COUNT: u16 = 48;

    /// Control mode as reported in [`IR_MODE`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Mode {
        /// All-red start-up period.
        Startup = 0,
        /// Stages requested by the gateway.
        Central = 1,
        /// A local fixed-time plan chosen by the gateway.
        CommandedPlan = 2,
        /// The watchdog expired; the local fallback plan runs.
        Fallback = 3,
        /// The conflict monitor latched; flashing yellow.
        Flashing = 4,
    }

    impl Mode {
        /// Decodes [`IR_MODE`].
        pub const fn from_wire(v: u16) -> Option<Self> {
            Some(match v {
                0 => Mode::Startup,
                1 => Mode::Central,
                2 => Mode::CommandedPlan,
                3 => Mode::Fallback,
                4 => Mode::Flashing,
                _ => return None,
            })
        }
    }

    /// The whole map.
    pub const MAP: &[Register] = &[
        Register::word(HoldingRegister, HR_REQUESTED_STAGE, "requested_stage", "requested stage, 1-based; 0 keeps the current stage"),
        Register::word(HoldingRegister, HR_HOLD, "hold", "1 holds the current stage (capped by maximum green)"),
        Register::word(HoldingRegister, HR_PLAN, "plan", "0 central stage control, k local fixed-time plan k"),
        Register::word(HoldingRegister, HR_COMMAND_SEQUENCE, "command_sequence", "heartbeat; a new value commits the command and feeds the watchdog"),
        Register::word(HoldingRegister, HR_FAULT_RESET, "fault_reset", "write 0x5AFE to clear a latched conflict"),
        Register::word(InputRegister, IR_CURRENT_STAGE, "current_stage", "current stage, 1-based; 0 in transition"),
        Register::word(InputRegister, IR_TARGET_STAGE, "target_stage", "stage heading to or running, 1-based"),
        Register::word(InputRegister, IR_MODE, "mode", "0 startup, 1 central, 2 commanded plan, 3 fallback, 4 flashing"),
        Register::word(InputRegister, IR_STATUS_FLAGS, "status_flags", "bit0 conflict latched, bit1 fallback, bit2 transition, bit3 hold, bit4 max green forced, bit5 detector stuck"),
        Register::word(InputRegister, IR_STAGE_TIME, "stage_time", "time in the current stage").scaled(1, Unit::Second),
        Register::word(InputRegister, IR_LAST_SEQUENCE, "last_sequence", "last accepted command sequence"),
        Register::word(InputRegister, IR_REJECTED_COMMANDS, "rejected_commands", "rejected commands since start").scaled(0, Unit::Count),
        Register::word(InputRegister, IR_GROUP_COUNT, "group_count", "configured signal groups"),
        Register::word(InputRegister, IR_DETECTOR_COUNT, "detector_count", "configured detectors"),
        Register::word(InputRegister, IR_ACTIVE_PLAN, "active_plan", "running fixed-time plan, 1-based; 0 none"),
        Register::word(InputRegister, IR_DETECTOR_INTERVAL, "detector_interval", "detector counting interval").scaled(0, Unit::Second),
        Register::word(InputRegister, IR_GROUP_STATE_BASE, "group_state", "signal-group state wire code, one per group").block(MAX_GROUPS),
        Register::word(InputRegister, IR_DETECTOR_COUNT_BASE, "detector_vehicles", "vehicles counted in the last interval, one per detector").scaled(0, Unit::Count).block(MAX_DETECTORS),
        Register::word(InputRegister, IR_DETECTOR_OCCUPANCY_BASE, "detector_occupancy", "occupancy in the last interval, one per detector").scaled(1, Unit::Percent).block(MAX_DETECTORS),
        Register::bit(Coil, COIL_HOLD, "hold_coil", "hold, committed with the next command sequence"),
        Register::bit(Coil, COIL_FAULT_RESET, "fault_reset_coil", "write 1 to clear a latched conflict"),
        Register::bit(DiscreteInput, DI_CONFLICT_LATCHED, "conflict_latched", "conflict monitor latched"),
        Register::bit(DiscreteInput, DI_FALLBACK_ACTIVE, "fallback_active", "watchdog fallback plan running"),
        Register::bit(DiscreteInput, DI_IN_TRANSITION, "in_transition", "stage transition running"),
        Register::bit(DiscreteInput, DI_DETECTOR_OCCUPIED_BASE, "detector_occupied", "debounced occupancy now, one per detector").block(MAX_DETECTORS),
        Register::bit(DiscreteInput, DI_GROUP_GREEN_BASE, "group_green", "group shows green or flashing green, one per group").block(MAX_GROUPS),
    ];
}

/// The hazard sensor node's map.
pub mod hazard_node {
    use super::{Register, Table::*};
    use crate::unit::Unit;

    /// Water level above the datum, mm (signed).
    pub const IR_WATER_LEVEL: u16 = 0;
    /// Filtered distance from the rangefinder to the water surface, mm.
    pub const IR_WATER_DISTANCE: u16 = 1;
    /// Rain since the last reset, 0.1 mm, 32-bit (registers 2 and 3, high word first).
    pub const IR_RAIN_TOTAL: u16 = 2;
    /// Rain rate over the last 10 minutes, 0.1 mm/h.
    pub const IR_RAIN_RATE: u16 = 4;
    /// Gas concentration, 0.1 ppm.
    pub const IR_GAS: u16 = 5;
    /// Status bits, see `STATUS_*`.
    pub const IR_STATUS: u16 = 6;
    /// Gas sensor output voltage, mV (for diagnosis).
    pub const IR_GAS_RAW_MV: u16 = 7;
    /// Number of input registers.
    pub const INPUT_COUNT: u16 = 8;

    /// Rangefinder mounting height above the water-level datum, mm.
    pub const HR_WATER_MOUNT_HEIGHT: u16 = 0;
    /// Write [`RAIN_RESET_MAGIC`] to zero the rain total.
    pub const HR_RAIN_RESET: u16 = 1;
    /// The value [`HR_RAIN_RESET`] must be written with.
    pub const RAIN_RESET_MAGIC: u16 = 0x0A1D;
    /// Number of holding registers.
    pub const HOLDING_COUNT: u16 = 2;

    /// Rangefinder does not answer.
    pub const STATUS_WATER_NO_RESPONSE: u16 = 1 << 0;
    /// Rangefinder distance outside its valid range.
    pub const STATUS_WATER_OUT_OF_RANGE: u16 = 1 << 1;
    /// Rangefinder value stuck.
    pub const STATUS_WATER_STUCK: u16 = 1 << 2;
    /// Rain gauge contact stuck closed.
    pub const STATUS_RAIN_STUCK: u16 = 1 << 3;
    /// Rain rate implausibly high (bouncing contact or tampering).
    pub const STATUS_RAIN_OUT_OF_RANGE: u16 = 1 << 4;
    /// Gas sensor ADC does not answer.
    pub const STATUS_GAS_NO_RESPONSE: u16 = 1 << 5;
    /// Gas sensor output outside its live range (open loop or saturated).
    pub const STATUS_GAS_OUT_OF_RANGE: u16 = 1 << 6;
    /// Gas sensor value stuck.
    pub const STATUS_GAS_STUCK: u16 = 1 << 7;
    /// Number of status bits (also discrete inputs 0..STATUS_BITS, one per bit).
    pub const STATUS_BITS: u16 = 8;

    /// The whole map.
    pub const MAP: &[Register] = &[
        Register::word(
            InputRegister,
            IR_WATER_LEVEL,
            "water_level",
            "water level above datum",
        )
        .scaled(3, Unit::Metre)
        .signed(),
        Register::word(
            InputRegister,
            IR_WATER_DISTANCE,
            "water_distance",
            "distance sensor to water surface",
        )
        .scaled(3, Unit::Metre),
        Register::word(
            InputRegister,
            IR_RAIN_TOTAL,
            "rain_total",
            "rain since last reset",
        )
        .scaled(1, Unit::Millimetre)
        .wide(),
        Register::word(
            InputRegister,
            IR_RAIN_RATE,
            "rain_rate",
            "rain rate over 10 minutes",
        )
        .scaled(1, Unit::MillimetrePerHour),
        Register::word(InputRegister, IR_GAS, "gas", "gas concentration").scaled(1, Unit::Ppm),
        Register::word(
            InputRegister,
            IR_STATUS,
            "status",
            "fault bits: water 0-2, rain 3-4, gas 5-7",
        ),
        Register::word(InputRegister, IR_GAS_RAW_MV, "gas_raw", "gas sensor output")
            .scaled(3, Unit::Volt),
        Register::word(
            HoldingRegister,
            HR_WATER_MOUNT_HEIGHT,
            "water_mount_height",
            "rangefinder height above datum",
        )
        .scaled(3, Unit::Metre),
        Register::word(
            HoldingRegister,
            HR_RAIN_RESET,
            "rain_reset",
            "write 0x0A1D to zero the rain total",
        ),
        Register::bit(
            DiscreteInput,
            0,
            "status_bit",
            "one discrete input per status bit",
        )
        .block(STATUS_BITS),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_overlap(map: &'static [Register]) {
        for (i, a) in map.iter().enumerate() {
            assert!(a.words == 1 || a.words == 2, "{} words", a.name);
            for b in &map[i + 1..] {
                assert_ne!(a.name, b.name, "duplicate name");
                if a.table == b.table {
                    let disjoint = a.end() <= b.address as u32 || b.end() <= a.address as u32;
                    assert!(disjoint, "{} overlaps {}", a.name, b.name);
                }
            }
        }
    }

    #[test]
    fn maps_have_no_overlaps_or_duplicate_names() {
        no_overlap(signal_controller::MAP);
        no_overlap(hazard_node::MAP);
    }

    #[test]
    fn blocks_fit_their_declared_table_sizes() {
        use signal_controller as sc;
        for r in sc::MAP {
            let size = match r.table {
                Table::HoldingRegister => sc::HOLDING_COUNT,
                Table::InputRegister => sc::INPUT_COUNT,
                Table::Coil => sc::COIL_COUNT,
                Table::DiscreteInput => sc::DISCRETE_COUNT,
            };
            assert!(r.end() <= size as u32, "{} past end of table", r.name);
        }
    }

    #[test]
    fn lookup_finds_block_members_and_scales() {
        let r = lookup(signal_controller::MAP, Table::InputRegister, 20).expect("group state");
        assert_eq!(r.name, "group_state");
        assert!(lookup(signal_controller::MAP, Table::InputRegister, 11).is_none());
        let rain = by_name(hazard_node::MAP, "rain_total").expect("rain");
        assert!(rain.contains(3) && !rain.contains(4));
        assert!((rain.scale(125) - 12.5).abs() < 1e-9);
        assert_eq!(
            signal_controller::Mode::from_wire(3),
            Some(signal_controller::Mode::Fallback)
        );
    }
}
