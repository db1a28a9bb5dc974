//! Built-in register maps of citygate's own field devices, generated from the maps in
//! `citygate_protocols::registers` that the firmware serves, so that the gateway and the
//! firmware cannot disagree. A device uses one with `map = "citygate-signal-controller"` or
//! `map = "citygate-hazard-node"`. Blocks (one register per signal group or detector) become
//! points named `<name>_<n>`, `n` from 1. Every point reports on change.

use citygate_protocols::registers::{hazard_node, signal_controller, Register, Table};

use super::config::{DataType, PointConfig, RegisterMapConfig, RegisterType};

/// The name of the signal controller's built-in map.
pub const SIGNAL_CONTROLLER: &str = "citygate-signal-controller";
/// The name of the hazard node's built-in map.
pub const HAZARD_NODE: &str = "citygate-hazard-node";

fn register_type(t: Table) -> RegisterType {
    match t {
        Table::Coil => RegisterType::Coil,
        Table::DiscreteInput => RegisterType::DiscreteInput,
        Table::HoldingRegister => RegisterType::HoldingRegister,
        Table::InputRegister => RegisterType::InputRegister,
    }
}

fn points(map: &[Register]) -> Vec<PointConfig> {
    let mut out = Vec::new();
    for r in map {
        let rt = register_type(r.table);
        let data_type = match (rt, r.words, r.signed) {
            (RegisterType::Coil | RegisterType::DiscreteInput, _, _) => DataType::Bool,
            (_, 2, true) => DataType::I32,
            (_, 2, false) => DataType::U32,
            (_, _, true) => DataType::I16,
            _ => DataType::U16,
        };
        for i in 0..r.count {
            let name = if r.count > 1 {
                format!("{}_{}", r.name, i + 1)
            } else {
                r.name.to_string()
            };
            let mut p = PointConfig::new(name, rt, r.address + i * r.words).with_type(data_type);
            p.scale = r.scale(1);
            p.unit = r.unit;
            // Device state changes rarely: report a point when its value changes.
            p.on_change = true;
            out.push(p);
        }
    }
    out
}

/// The built-in maps.
pub fn maps() -> Vec<RegisterMapConfig> {
    vec![
        RegisterMapConfig {
            name: SIGNAL_CONTROLLER.into(),
            points: points(signal_controller::MAP),
        },
        RegisterMapConfig {
            name: HAZARD_NODE.into(),
            points: points(hazard_node::MAP),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signal_controller_map_follows_the_protocols_map() {
        let m = maps();
        let sc = &m[0].points;
        let stage = sc.iter().find(|p| p.name == "current_stage").unwrap();
        assert_eq!(stage.register, RegisterType::InputRegister);
        assert_eq!(
            stage.address,
            super::super::config::AddressSpec::Wire(signal_controller::IR_CURRENT_STAGE)
        );
        let groups: Vec<_> = sc
            .iter()
            .filter(|p| p.name.starts_with("group_state_"))
            .collect();
        assert_eq!(groups.len(), usize::from(signal_controller::MAX_GROUPS));
        assert_eq!(
            groups[3].address,
            super::super::config::AddressSpec::Wire(signal_controller::IR_GROUP_STATE_BASE + 3)
        );
        let occ = sc
            .iter()
            .find(|p| p.name == "detector_occupancy_2")
            .unwrap();
        assert!((occ.scale - 0.1).abs() < 1e-12);
        assert_eq!(occ.unit, Some(citygate_protocols::Unit::Percent));
        assert!(!m[1].points.is_empty());
    }
}
