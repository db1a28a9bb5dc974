//! Resolving and checking `[[sources.modbus]]`: register maps (`map`, `map_file`) replaced
//! by their points, then every device's link (TCP or a shared RTU bus), timing, request
//! limits and points checked, each problem with its key path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    ConfigErrors, DataType, DeviceConfig, MapFile, PointConfig, RegisterMapConfig, RtuConfig,
    MAX_CONNECTIONS, MAX_READ_BITS, MAX_READ_REGISTERS,
};
use crate::config::report::Report;

/// Upper bound of the period settings: one day.
const DAY_MS: u64 = 86_400_000;

/// Replaces each device's `map` and `map_file` by the points they name (map points first,
/// then the device's own), so that the result can be validated and spawned.
/// `base_dir` resolves relative `map_file` paths.
pub fn resolve_maps(
    devices: &[DeviceConfig],
    maps: &[RegisterMapConfig],
    base_dir: &Path,
) -> Result<Vec<DeviceConfig>, ConfigErrors> {
    let mut e = Report::new();
    let mut by_name: HashMap<&str, &RegisterMapConfig> = HashMap::new();
    for (i, m) in maps.iter().enumerate() {
        if by_name.insert(m.name.as_str(), m).is_some() {
            e.push(
                format!("sources.modbus_maps[{i}].name"),
                format!("duplicate map name \"{}\"", m.name),
            );
        }
    }
    let mut files: HashMap<PathBuf, Vec<PointConfig>> = HashMap::new();
    let mut out = Vec::with_capacity(devices.len());
    for (i, d) in devices.iter().enumerate() {
        let mut d = d.clone();
        let mut points = Vec::new();
        if let Some(name) = d.map.take() {
            match by_name.get(name.as_str()) {
                Some(m) => points.extend(m.points.iter().cloned()),
                None => e.push(
                    format!("sources.modbus[{i}].map"),
                    format!("no [[sources.modbus_maps]] named \"{name}\""),
                ),
            }
        }
        if let Some(file) = d.map_file.take() {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                base_dir.join(&file)
            };
            if !files.contains_key(&path) {
                match load_map_file(&path) {
                    Ok(m) => {
                        files.insert(path.clone(), m.points);
                    }
                    Err(why) => e.push(format!("sources.modbus[{i}].map_file"), why),
                }
            }
            if let Some(p) = files.get(&path) {
                points.extend(p.iter().cloned());
            }
        }
        points.append(&mut d.points);
        d.points = points;
        out.push(d);
    }
    e.into_result().map_err(ConfigErrors)?;
    Ok(out)
}

/// Reads and parses a register map file (`points = [...]`).
pub fn load_map_file(path: &Path) -> Result<MapFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks resolved devices (see [`resolve_maps`]); every error names its key path below
/// `prefix` (normally `sources.modbus`).
pub fn validate(devices: &[DeviceConfig], prefix: &str) -> Result<(), ConfigErrors> {
    let mut e = Report::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut links = Links::default();
    for (i, d) in devices.iter().enumerate() {
        let p = format!("{prefix}[{i}]");
        if d.name.is_empty() {
            e.push(format!("{p}.name"), "must not be empty");
        }
        if let Some(j) = names.insert(d.name.as_str(), i) {
            e.push(
                format!("{p}.name"),
                format!("duplicate device name \"{}\" (also {prefix}[{j}])", d.name),
            );
        }
        links.check(&mut e, prefix, i, d);
        check_timing(&mut e, &p, d);
        check_points(&mut e, &p, d);
    }
    e.into_result().map_err(ConfigErrors)
}

/// The links seen so far: RTU buses by port (first device and settings), and the unit ids
/// taken on each bus and at each TCP address.
#[derive(Default)]
struct Links<'a> {
    buses: HashMap<&'a str, (usize, &'a RtuConfig)>,
    bus_units: HashMap<(&'a str, u8), usize>,
    tcp_units: HashMap<(&'a str, u8), usize>,
    /// The first device at each TCP address that set `connections`, and its value.
    tcp_connections: HashMap<&'a str, (usize, u16)>,
}

impl<'a> Links<'a> {
    /// Device `i`'s link: exactly one of TCP and RTU, well formed, its unit id free, and the
    /// same serial settings as the other devices on its bus.
    fn check(&mut self, e: &mut Report, prefix: &str, i: usize, d: &'a DeviceConfig) {
        let p = format!("{prefix}[{i}]");
        self.check_connections(e, prefix, i, d);
        let (buses, bus_units, tcp_units) =
            (&mut self.buses, &mut self.bus_units, &mut self.tcp_units);
        match (&d.tcp, &d.rtu) {
            (Some(_), Some(_)) => e.push(p.clone(), "set only one of `tcp` and `rtu`"),
            (None, None) => e.push(p.clone(), "set `tcp = \"host:port\"` or an `rtu` table"),
            (Some(addr), None) => {
                if let Some(j) = tcp_units.insert((addr.as_str(), d.unit_id), i) {
                    e.push(
                        format!("{p}.unit_id"),
                        format!(
                            "unit id {} already used at {addr} by {prefix}[{j}]",
                            d.unit_id
                        ),
                    );
                }
                let ok = addr
                    .rsplit_once(':')
                    .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    e.push(format!("{p}.tcp"), format!("\"{addr}\" is not host:port"));
                }
            }
            (None, Some(r)) => {
                if r.port.is_empty() {
                    e.push(format!("{p}.rtu.port"), "must not be empty");
                }
                if r.baud == 0 {
                    e.push(format!("{p}.rtu.baud"), "must be above 0");
                }
                if !(5..=8).contains(&r.data_bits) {
                    e.push(format!("{p}.rtu.data_bits"), "must be 5 to 8");
                }
                if !(1..=2).contains(&r.stop_bits) {
                    e.push(format!("{p}.rtu.stop_bits"), "must be 1 or 2");
                }
                if r.guard_ms.is_some_and(|g| g > 60_000) {
                    e.push(format!("{p}.rtu.guard_ms"), "must be at most 60000");
                }
                if d.unit_id == 0 || d.unit_id > 247 {
                    e.push(format!("{p}.unit_id"), "an RTU slave address is 1 to 247");
                }
                match buses.get(r.port.as_str()) {
                    Some((j, other)) if *other != r => e.push(
                        format!("{p}.rtu"),
                        format!(
                            "serial settings of {} differ from {prefix}[{j}] on the same bus",
                            r.port
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        buses.insert(r.port.as_str(), (i, r));
                    }
                }
                if let Some(j) = bus_units.insert((r.port.as_str(), d.unit_id), i) {
                    e.push(
                        format!("{p}.unit_id"),
                        format!(
                            "unit id {} already used on {} by {prefix}[{j}]",
                            d.unit_id, r.port
                        ),
                    );
                }
            }
        }
    }
}

impl<'a> Links<'a> {
    /// `connections`: TCP only, 1 to [`MAX_CONNECTIONS`], the same for every device at one
    /// address that sets it.
    fn check_connections(&mut self, e: &mut Report, prefix: &str, i: usize, d: &'a DeviceConfig) {
        let Some(n) = d.connections else {
            return;
        };
        let key = format!("{prefix}[{i}].connections");
        let Some(addr) = &d.tcp else {
            e.push(
                key,
                "applies to Modbus TCP only (a serial bus has one line)",
            );
            return;
        };
        if n == 0 || n > MAX_CONNECTIONS {
            e.push(key, format!("must be 1 to {MAX_CONNECTIONS}"));
            return;
        }
        match self.tcp_connections.get(addr.as_str()) {
            Some(&(j, m)) if m != n => e.push(
                key,
                format!("{n}, but {prefix}[{j}] at the same address {addr} says {m}"),
            ),
            Some(_) => {}
            None => {
                self.tcp_connections.insert(addr.as_str(), (i, n));
            }
        }
    }
}

/// Periods, timeouts, back-off and request sizes of the device at `p`.
fn check_timing(e: &mut Report, p: &str, d: &DeviceConfig) {
    for (key, v, max) in [
        ("poll_interval_ms", d.poll_interval_ms, DAY_MS),
        ("timeout_ms", d.timeout_ms, 600_000),
        ("probe_interval_ms", d.probe_interval_ms, DAY_MS),
        ("backoff_max_ms", d.backoff_max_ms, DAY_MS),
    ] {
        if v > max {
            e.push(format!("{p}.{key}"), format!("must be at most {max}"));
        }
    }
    if d.poll_interval_ms == 0 {
        e.push(format!("{p}.poll_interval_ms"), "must be above 0");
    }
    if d.timeout_ms == 0 {
        e.push(format!("{p}.timeout_ms"), "must be above 0");
    }
    if d.offline_after == 0 {
        e.push(format!("{p}.offline_after"), "must be above 0");
    }
    if d.probe_interval_ms == 0 {
        e.push(format!("{p}.probe_interval_ms"), "must be above 0");
    }
    if d.backoff_min_ms == 0 || d.backoff_max_ms < d.backoff_min_ms {
        e.push(
            format!("{p}.backoff_max_ms"),
            "need 0 < backoff_min_ms <= backoff_max_ms",
        );
    }
    if !(1..=MAX_READ_REGISTERS).contains(&d.max_registers_per_request) {
        e.push(
            format!("{p}.max_registers_per_request"),
            format!("must be 1 to {MAX_READ_REGISTERS}"),
        );
    }
    if !(1..=MAX_READ_BITS).contains(&d.max_bits_per_request) {
        e.push(
            format!("{p}.max_bits_per_request"),
            format!("must be 1 to {MAX_READ_BITS}"),
        );
    }
    if d.map.is_some() || d.map_file.is_some() {
        e.push(
            format!("{p}.map"),
            "register maps must be resolved before validation (resolve_maps)",
        );
    }
    if d.points.is_empty() {
        e.push(format!("{p}.points"), "a device needs at least one point");
    }
}

/// The points of the device at `p`: resolved, at least one, unique per sensor, each valid.
fn check_points(e: &mut Report, p: &str, d: &DeviceConfig) {
    let mut point_names: HashMap<(&str, &str), usize> = HashMap::new();
    for (k, pt) in d.points.iter().enumerate() {
        let pp = format!("{p}.points[{k}]");
        let sensor = pt.sensor.as_deref().unwrap_or(d.name.as_str());
        if pt.name.is_empty() {
            e.push(format!("{pp}.name"), "must not be empty");
        }
        if let Some(j) = point_names.insert((sensor, pt.name.as_str()), k) {
            e.push(
                format!("{pp}.name"),
                format!(
                    "duplicate point \"{}\" of sensor \"{sensor}\" (also points[{j}])",
                    pt.name
                ),
            );
        }
        validate_point(pt, d, &pp, e);
    }
}

fn validate_point(pt: &PointConfig, d: &DeviceConfig, pp: &str, e: &mut Report) {
    let t = pt.data_type();
    let address = match pt.wire_address() {
        Ok(a) => Some(a),
        Err(m) => {
            e.push(format!("{pp}.address"), m);
            None
        }
    };
    if pt.register.is_bit() && t != DataType::Bool {
        e.push(
            format!("{pp}.type"),
            format!(
                "a {} holds one bit: type must be \"bool\"",
                pt.register.as_str()
            ),
        );
    }
    match t {
        DataType::Bit => match pt.bit {
            Some(b) if b <= 15 => {}
            Some(b) => e.push(format!("{pp}.bit"), format!("bit {b} is not 0 to 15")),
            None => e.push(format!("{pp}.bit"), "type \"bit\" needs `bit = 0..15`"),
        },
        _ if pt.bit.is_some() => e.push(format!("{pp}.bit"), "only for type = \"bit\""),
        _ => {}
    }
    match t {
        DataType::String => match pt.len {
            Some(l) if (1..=MAX_READ_REGISTERS).contains(&l) => {}
            _ => e.push(
                format!("{pp}.len"),
                format!("type \"string\" needs `len = 1..{MAX_READ_REGISTERS}` (registers)"),
            ),
        },
        _ if pt.len.is_some() => e.push(format!("{pp}.len"), "only for type = \"string\""),
        _ => {}
    }
    if t == DataType::String && pt.order.words_swapped() {
        e.push(
            format!("{pp}.order"),
            "strings take \"ABCD\" or \"BADC\" (byte order within each register)",
        );
    }
    let width = pt.width();
    let limit = if pt.register.is_bit() {
        d.max_bits_per_request
    } else {
        d.max_registers_per_request
    };
    if width > limit {
        e.push(
            format!("{pp}.type"),
            format!("needs {width} registers, more than one request may read ({limit})"),
        );
    }
    if let Some(a) = address {
        if u32::from(a) + u32::from(width) > 65_536 {
            e.push(
                format!("{pp}.address"),
                format!("{a} + {width} registers runs past 65535"),
            );
        }
    }
    if !pt.scale.is_finite() || pt.scale == 0.0 {
        e.push(format!("{pp}.scale"), "must be finite and not 0");
    }
    if !pt.offset.is_finite() {
        e.push(format!("{pp}.offset"), "must be finite");
    }
    if !pt.deadband.is_finite() || pt.deadband < 0.0 {
        e.push(format!("{pp}.deadband"), "must be 0 or more");
    }
    if let (Some(lo), Some(hi)) = (pt.min, pt.max) {
        if lo > hi {
            e.push(format!("{pp}.max"), format!("max {hi} is below min {lo}"));
        }
    }
}
