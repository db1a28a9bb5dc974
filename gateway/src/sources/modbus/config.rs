//! Configuration of Modbus devices (`[[sources.modbus]]`) and shared register maps
//! (`[[sources.modbus_maps]]` or a `map_file`), and their semantic validation.
//!
//! Addresses are 0-based wire addresses (`address = 0` is the first register). The Modicon
//! `4xxxx` notation is accepted only when written as a string *and* the point says
//! `notation = "modicon"`: `address = "40001", notation = "modicon"` is holding register 0.
//! The first digit selects the table (`0` coil, `1` discrete input, `3` input register,
//! `4` holding register) and must agree with `register`; 5-digit (`40001`..`49999`) and 6-digit
//! (`400001`..`465536`) forms are accepted.
//!
//! Every struct rejects unknown keys; every error of [`validate`] (in `check`, with
//! [`resolve_maps`]) names its key path, e.g. `sources.modbus[0].points[3].address`.

use std::fmt;
use std::path::PathBuf;

use citygate_protocols::Unit;
use serde::Deserialize;

mod check;
pub use check::{load_map_file, resolve_maps, validate};

/// Largest number of registers one read request may carry (Modbus spec, FC 03/04).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Largest number of bits one read request may carry (Modbus spec, FC 01/02).
pub const MAX_READ_BITS: u16 = 2000;
/// Largest number of registers one write request may carry (FC 16).
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Largest number of coils one write request may carry (FC 15).
pub const MAX_WRITE_COILS: u16 = 1968;
/// Most TCP connections to one address (`connections`).
pub const MAX_CONNECTIONS: u16 = 64;

/// One `[[sources.modbus]]` device.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device name, unique across Modbus sources; the default sensor id of its points.
    pub name: String,
    /// Modbus TCP: `host:port`, e.g. `10.1.2.3:502`. Exactly one of `tcp` and `rtu`. Devices
    /// with the same address (unit ids behind a TCP/RTU gateway) share one connection and
    /// are polled in turn.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Modbus TCP: how many connections the gateway opens to this address (1–64, default 1),
    /// for servers that accept several. The devices at the address are spread over them, each
    /// connection polling its share in turn. Devices at one address that set it must agree.
    #[serde(default)]
    pub connections: Option<u16>,
    /// Modbus RTU on a serial line. Devices naming the same `port` share that bus and are
    /// polled in turn.
    #[serde(default)]
    pub rtu: Option<RtuConfig>,
    /// Unit id (slave address), 0–247. TCP devices usually ignore it (255 or 1).
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// Poll period in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Timeout of one request (connect, send, answer), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Immediate retries of a timed-out request while the device is healthy. A device that is
    /// already failing gets none, so a dead slave costs a shared bus at most one timeout.
    #[serde(default = "default_retries")]
    pub retries: u8,
    /// Largest unused gap, in registers (or bits), that the read planner bridges to merge two
    /// points into one request. 0 merges only adjacent points.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Largest number of registers per read request (1–125); some devices accept fewer.
    #[serde(default = "default_max_registers")]
    pub max_registers_per_request: u16,
    /// Largest number of bits per read request (1–2000).
    #[serde(default = "default_max_bits")]
    pub max_bits_per_request: u16,
    /// Consecutive failed poll cycles before the device is reported offline.
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
    /// Probe period of an offline device, in milliseconds.
    #[serde(default = "default_probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// First retry delay after a failed cycle, in milliseconds (doubles, with jitter).
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Largest retry delay, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Name of a shared `[[sources.modbus_maps]]` register map whose points this device uses
    /// (before its own `points`).
    #[serde(default)]
    pub map: Option<String>,
    /// A TOML file holding `points = [...]`, shared by many devices. Relative paths are
    /// relative to the config file.
    #[serde(default)]
    pub map_file: Option<PathBuf>,
    /// The device's own points.
    #[serde(default)]
    pub points: Vec<PointConfig>,
}

/// Serial line settings of an RTU device.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RtuConfig {
    /// Serial device, e.g. `/dev/ttyUSB0`.
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default)]
    pub parity: Parity,
    /// 5–8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// After a failed exchange (timeout, garbage), the line must stay silent this long before
    /// the next frame; anything arriving meanwhile (a late reply) is discarded, so it is never
    /// taken as the answer to the next request. Default: half the failed device's timeout.
    /// A dead slave costs its bus neighbours its timeout plus this guard per attempt.
    #[serde(default)]
    pub guard_ms: Option<u64>,
}

impl RtuConfig {
    /// Bits on the wire per character: start + data + parity + stop.
    pub fn bits_per_char(&self) -> u32 {
        1 + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits)
    }

    /// The silent interval that must separate two frames: 3.5 character times, and at
    /// least 1.75 ms above 19200 baud (Modbus over serial line, 2.5.1.1).
    pub fn inter_frame_silence(&self) -> std::time::Duration {
        if self.baud > 19_200 || self.baud == 0 {
            return std::time::Duration::from_micros(1750);
        }
        let micros = (u64::from(self.bits_per_char()) * 3_500_000).div_ceil(u64::from(self.baud));
        std::time::Duration::from_micros(micros)
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// `[[sources.modbus_maps]]`: a named register map shared by many devices.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegisterMapConfig {
    pub name: String,
    pub points: Vec<PointConfig>,
}

/// The content of a `map_file`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MapFile {
    pub points: Vec<PointConfig>,
}

/// The Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterType {
    /// Read/write bits (FC 01, 05, 15).
    Coil,
    /// Read-only bits (FC 02).
    DiscreteInput,
    /// Read-only 16-bit registers (FC 04).
    InputRegister,
    /// Read/write 16-bit registers (FC 03, 06, 16).
    HoldingRegister,
}

impl RegisterType {
    /// Whether the table holds single bits.
    pub const fn is_bit(self) -> bool {
        matches!(self, RegisterType::Coil | RegisterType::DiscreteInput)
    }

    /// The protocol limit of one read of this table.
    pub const fn read_limit(self) -> u16 {
        if self.is_bit() {
            MAX_READ_BITS
        } else {
            MAX_READ_REGISTERS
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            RegisterType::Coil => "coil",
            RegisterType::DiscreteInput => "discrete_input",
            RegisterType::InputRegister => "input_register",
            RegisterType::HoldingRegister => "holding_register",
        }
    }

    /// The Modicon prefix digit of this table.
    const fn modicon_digit(self) -> u8 {
        match self {
            RegisterType::Coil => 0,
            RegisterType::DiscreteInput => 1,
            RegisterType::InputRegister => 3,
            RegisterType::HoldingRegister => 4,
        }
    }
}

/// How a point's value is laid out in its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// A coil or discrete input; or a register that is 0 or non-zero.
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// One bit (`bit = 0..15`, 0 the least significant) of a register.
    Bit,
    /// Text in `len` registers (two bytes each), NUL- or space-padded.
    String,
}

impl DataType {
    /// Registers (or bits, for bit tables) the value occupies.
    pub fn width(self, len: u16) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 | DataType::Bit => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::String => len,
        }
    }
}

/// Byte and word order of multi-register values, naming the bytes of the value from the most
/// significant (`A`) on, in the order they appear on the wire. `ABCD` is big-endian (the
/// Modbus default); `CDAB` swaps words; `BADC` swaps the bytes in each word; `DCBA` is
/// little-endian. For 64-bit values the same rule extends to four words (`CDAB`: the word
/// order is reversed, each word big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum ByteOrder {
    #[default]
    #[serde(rename = "ABCD")]
    Abcd,
    #[serde(rename = "BADC")]
    Badc,
    #[serde(rename = "CDAB")]
    Cdab,
    #[serde(rename = "DCBA")]
    Dcba,
}

impl ByteOrder {
    /// Whether the words are sent least significant first.
    pub const fn words_swapped(self) -> bool {
        matches!(self, ByteOrder::Cdab | ByteOrder::Dcba)
    }

    /// Whether the two bytes of each register are swapped.
    pub const fn bytes_swapped(self) -> bool {
        matches!(self, ByteOrder::Badc | ByteOrder::Dcba)
    }
}

/// How an address is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notation {
    /// 0-based wire address, an integer.
    #[default]
    Wire,
    /// Modicon `4xxxx` notation, written as a string: `"40001"` is holding register 0.
    Modicon,
}

/// A point address as written: an integer, or a string in Modicon notation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AddressSpec {
    Wire(u16),
    Text(String),
}

/// One point of a register map.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// Quantity measured, e.g. `water_level`; unique within the device.
    pub name: String,
    /// Sensor id of the readings; default: the device name.
    #[serde(default)]
    pub sensor: Option<String>,
    /// The table the point lives in.
    pub register: RegisterType,
    /// 0-based wire address (integer), or a Modicon string with `notation = "modicon"`.
    pub address: AddressSpec,
    #[serde(default)]
    pub notation: Notation,
    /// Data type. Default: `bool` for coils and discrete inputs, `u16` for registers.
    #[serde(default, rename = "type")]
    pub data_type: Option<DataType>,
    /// For `type = "bit"`: the bit, 0 (least significant) to 15.
    #[serde(default)]
    pub bit: Option<u8>,
    /// For `type = "string"`: length in registers (1–125, at most one read request).
    #[serde(default)]
    pub len: Option<u16>,
    /// Byte and word order of multi-register values (and byte order of strings).
    #[serde(default)]
    pub order: ByteOrder,
    /// Engineering value = raw × scale + offset.
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// SenML unit of the engineering value, e.g. `m`.
    #[serde(
        default,
        deserialize_with = "citygate_protocols::unit::deserialize_registered"
    )]
    pub unit: Option<Unit>,
    /// Report only when the engineering value moved by more than this since the last report
    /// (0: report every poll). Quality changes are always reported.
    #[serde(default)]
    pub deadband: f64,
    /// Report only on change (same as a deadband of 0 that suppresses equal values).
    #[serde(default)]
    pub on_change: bool,
    /// Valid range of the engineering value; outside it the reading is `out_of_range`.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

impl PointConfig {
    /// The data type, with its default for the table.
    pub fn data_type(&self) -> DataType {
        self.data_type.unwrap_or(if self.register.is_bit() {
            DataType::Bool
        } else {
            DataType::U16
        })
    }

    /// Registers or bits the point occupies.
    pub fn width(&self) -> u16 {
        self.data_type().width(self.len.unwrap_or(0))
    }

    /// The 0-based wire address, or why it is not one.
    pub fn wire_address(&self) -> Result<u16, String> {
        match (&self.address, self.notation) {
            (AddressSpec::Wire(a), Notation::Wire) => Ok(*a),
            (AddressSpec::Wire(_), Notation::Modicon) => Err(
                "modicon notation must be written as a string, e.g. address = \"40001\"".into(),
            ),
            (AddressSpec::Text(t), Notation::Wire) => Err(format!(
                "address \"{t}\" is a string: write a 0-based integer, or add notation = \"modicon\""
            )),
            (AddressSpec::Text(t), Notation::Modicon) => parse_modicon(t, self.register),
        }
    }
}

/// Parses `"40001"` (or `"400001"`) into the 0-based wire address of `register`.
pub fn parse_modicon(text: &str, register: RegisterType) -> Result<u16, String> {
    let bad = || {
        format!(
            "\"{text}\" is not a Modicon address of a {}: expected {}0001..{}9999 or {}00001..{}65536",
            register.as_str(),
            register.modicon_digit(),
            register.modicon_digit(),
            register.modicon_digit(),
            register.modicon_digit()
        )
    };
    if !(text.len() == 5 || text.len() == 6) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let digit = text.as_bytes().first().map(|b| b - b'0').ok_or_else(bad)?;
    if digit != register.modicon_digit() {
        return Err(format!(
            "\"{text}\" names table {digit}xxxx but register = \"{}\" is table {}xxxx",
            register.as_str(),
            register.modicon_digit()
        ));
    }
    let number: u32 = text.get(1..).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    if number == 0 || number > 65_536 {
        return Err(bad());
    }
    u16::try_from(number - 1).map_err(|_| bad())
}

const fn default_unit_id() -> u8 {
    1
}
const fn default_poll_interval_ms() -> u64 {
    1000
}
const fn default_timeout_ms() -> u64 {
    500
}
const fn default_retries() -> u8 {
    1
}
const fn default_max_gap() -> u16 {
    8
}
const fn default_max_registers() -> u16 {
    MAX_READ_REGISTERS
}
const fn default_max_bits() -> u16 {
    MAX_READ_BITS
}
const fn default_offline_after() -> u32 {
    3
}
const fn default_probe_interval_ms() -> u64 {
    10_000
}
const fn default_backoff_min_ms() -> u64 {
    200
}
const fn default_backoff_max_ms() -> u64 {
    5_000
}
const fn default_baud() -> u32 {
    9600
}
const fn default_data_bits() -> u8 {
    8
}
const fn default_stop_bits() -> u8 {
    1
}
const fn default_scale() -> f64 {
    1.0
}

impl DeviceConfig {
    /// A TCP device with defaults and no points (for code and tests).
    pub fn tcp(name: impl Into<String>, addr: impl Into<String>) -> Self {
        DeviceConfig {
            name: name.into(),
            tcp: Some(addr.into()),
            connections: None,
            rtu: None,
            unit_id: default_unit_id(),
            poll_interval_ms: default_poll_interval_ms(),
            timeout_ms: default_timeout_ms(),
            retries: default_retries(),
            max_gap: default_max_gap(),
            max_registers_per_request: default_max_registers(),
            max_bits_per_request: default_max_bits(),
            offline_after: default_offline_after(),
            probe_interval_ms: default_probe_interval_ms(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            map: None,
            map_file: None,
            points: Vec::new(),
        }
    }

    /// An RTU device with defaults and no points.
    pub fn rtu(name: impl Into<String>, rtu: RtuConfig, unit_id: u8) -> Self {
        DeviceConfig {
            tcp: None,
            rtu: Some(rtu),
            unit_id,
            ..DeviceConfig::tcp(name, "")
        }
    }
}

impl PointConfig {
    /// A point with defaults (for code and tests).
    pub fn new(name: impl Into<String>, register: RegisterType, address: u16) -> Self {
        PointConfig {
            name: name.into(),
            sensor: None,
            register,
            address: AddressSpec::Wire(address),
            notation: Notation::Wire,
            data_type: None,
            bit: None,
            len: None,
            order: ByteOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            deadband: 0.0,
            on_change: false,
            min: None,
            max: None,
        }
    }

    /// Sets the data type.
    pub fn with_type(mut self, t: DataType) -> Self {
        self.data_type = Some(t);
        self
    }

    /// Sets the byte and word order.
    pub fn with_order(mut self, order: ByteOrder) -> Self {
        self.order = order;
        self
    }
}

/// One configuration error with the key path it is about, e.g.
/// `sources.modbus[0].points[3].address` (the gateway config's own error type).
pub use crate::config::ValidationError as ConfigError;

/// All errors found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sources {
        #[serde(default)]
        modbus: Vec<DeviceConfig>,
        #[serde(default)]
        modbus_maps: Vec<RegisterMapConfig>,
    }

    #[derive(Deserialize)]
    struct Root {
        sources: Sources,
    }

    const EXAMPLE: &str = r#"
[[sources.modbus_maps]]
name = "flood-sensor-v2"
points = [
  { name = "water_level", register = "input_register", address = 0, type = "f32", order = "CDAB", unit = "m", min = -1.0, max = 10.0, deadband = 0.01 },
  { name = "pump_running", register = "coil", address = "00001", notation = "modicon" },
  { name = "alarm", register = "holding_register", address = "40011", notation = "modicon", type = "bit", bit = 3 },
]

[[sources.modbus]]
name = "flood-1"
tcp = "10.0.0.7:502"
unit_id = 1
poll_interval_ms = 500
map = "flood-sensor-v2"

[[sources.modbus]]
name = "loop-9"
rtu = { port = "/dev/ttyUSB0", baud = 19200, parity = "even" }
unit_id = 9
[[sources.modbus.points]]
name = "count"
register = "holding_register"
address = 100
type = "u32"
unit = "count"
[[sources.modbus.points]]
name = "model"
register = "holding_register"
address = 200
type = "string"
len = 12
"#;

    fn example() -> Vec<DeviceConfig> {
        let root: Root = toml::from_str(EXAMPLE).unwrap();
        resolve_maps(
            &root.sources.modbus,
            &root.sources.modbus_maps,
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn example_parses_resolves_and_validates() {
        let devices = example();
        validate(&devices, "sources.modbus").unwrap();
        assert_eq!(devices[0].points.len(), 3);
        assert_eq!(devices[0].points[1].wire_address(), Ok(0));
        assert_eq!(devices[0].points[2].wire_address(), Ok(10));
        assert_eq!(devices[1].rtu.as_ref().unwrap().parity, Parity::Even);
        assert_eq!(devices[1].points[1].width(), 12);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let bad = EXAMPLE.replace("unit_id = 9", "unit_id = 9\npoll_intervall_ms = 3");
        let e = toml::from_str::<Root>(&bad).err().unwrap().to_string();
        assert!(e.contains("poll_intervall_ms"), "{e}");
        let bad = EXAMPLE.replace("len = 12", "len = 12\nscael = 2");
        assert!(toml::from_str::<Root>(&bad).is_err());
    }

    #[test]
    fn errors_name_their_key_path() {
        let mut devices = example();
        devices[1].points[0].address = AddressSpec::Text("40101".into());
        devices[1].points[1].len = None;
        devices[0].tcp = Some("nohost".into());
        devices[0].poll_interval_ms = u64::MAX;
        let e = validate(&devices, "sources.modbus").unwrap_err().0;
        let paths: Vec<&str> = e.iter().map(|e| e.key_path.as_str()).collect();
        assert!(
            paths.contains(&"sources.modbus[1].points[0].address"),
            "{e:?}"
        );
        assert!(paths.contains(&"sources.modbus[1].points[1].len"), "{e:?}");
        assert!(paths.contains(&"sources.modbus[0].tcp"), "{e:?}");
        assert!(
            paths.contains(&"sources.modbus[0].poll_interval_ms"),
            "{e:?}"
        );
        assert_eq!(e.len(), 4, "{e:?}");
    }

    #[test]
    fn modicon_notation_only_as_string_with_notation() {
        assert_eq!(parse_modicon("40001", RegisterType::HoldingRegister), Ok(0));
        assert_eq!(
            parse_modicon("49999", RegisterType::HoldingRegister),
            Ok(9998)
        );
        assert_eq!(
            parse_modicon("465536", RegisterType::HoldingRegister),
            Ok(65535)
        );
        assert_eq!(parse_modicon("30010", RegisterType::InputRegister), Ok(9));
        assert_eq!(parse_modicon("10001", RegisterType::DiscreteInput), Ok(0));
        assert!(parse_modicon("30001", RegisterType::HoldingRegister).is_err());
        assert!(parse_modicon("40000", RegisterType::HoldingRegister).is_err());
        assert!(parse_modicon("4001", RegisterType::HoldingRegister).is_err());
        assert!(parse_modicon("4000a", RegisterType::HoldingRegister).is_err());
        assert!(parse_modicon("465537", RegisterType::HoldingRegister).is_err());
        let mut p = PointConfig::new("x", RegisterType::HoldingRegister, 40001);
        p.notation = Notation::Modicon;
        assert!(p.wire_address().is_err(), "an integer is never modicon");
        p.notation = Notation::Wire;
        assert_eq!(p.wire_address(), Ok(40001), "an integer is a wire address");
        p.address = AddressSpec::Text("40001".into());
        assert!(
            p.wire_address().is_err(),
            "a string needs notation = modicon"
        );
    }

    #[test]
    fn shared_bus_settings_must_agree() {
        let r = RtuConfig {
            port: "/dev/ttyS1".into(),
            baud: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
            guard_ms: None,
        };
        let pt = PointConfig::new("x", RegisterType::HoldingRegister, 0);
        let mut a = DeviceConfig::rtu("a", r.clone(), 1);
        a.points.push(pt.clone());
        let mut b = DeviceConfig::rtu(
            "b",
            RtuConfig {
                baud: 19200,
                ..r.clone()
            },
            1,
        );
        b.points.push(pt);
        let e = validate(&[a, b], "sources.modbus").unwrap_err().0;
        assert!(
            e.iter().any(|e| e.key_path == "sources.modbus[1].rtu"),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.key_path == "sources.modbus[1].unit_id"),
            "{e:?}"
        );
    }

    #[test]
    fn map_files_are_loaded_once_and_missing_maps_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.toml"),
            "points = [{ name = \"level\", register = \"holding_register\", address = 3 }]\n",
        )
        .unwrap();
        let mut a = DeviceConfig::tcp("a", "h:502");
        a.map_file = Some("m.toml".into());
        let mut b = DeviceConfig::tcp("b", "h:503");
        b.map = Some("nope".into());
        let e = resolve_maps(&[a.clone(), b], &[], dir.path())
            .unwrap_err()
            .0;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key_path, "sources.modbus[1].map");
        let ok = resolve_maps(&[a], &[], dir.path()).unwrap();
        assert_eq!(ok[0].points[0].wire_address(), Ok(3));
    }

    #[test]
    fn inter_frame_silence_follows_the_spec() {
        let mut r = RtuConfig {
            port: "x".into(),
            baud: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
            guard_ms: None,
        };
        // 10 bits per char, 3.5 chars at 9600 baud = 3646 us (rounded up).
        assert_eq!(
            r.inter_frame_silence(),
            std::time::Duration::from_micros(3646)
        );
        r.baud = 115_200;
        assert_eq!(
            r.inter_frame_silence(),
            std::time::Duration::from_micros(1750)
        );
    }
}
