//! The demo crossroads: the one controller configuration shared by `citygate demo`'s virtual
//! signal controllers, the no_std link check (`firmware/nostd-check`) and the tests that need
//! a plain two-phase intersection.

use super::{ControllerConfig, GroupConfig, GroupSet, IntergreenMatrix, Plan};

/// Detector loops of the demo crossroads: the north, east, south and west approaches.
pub const DETECTORS: usize = 4;

/// Two signal groups (north–south and east–west through traffic), one stage each, 7 s minimum
/// and 60 s maximum green, 3 s yellow, 5 s intergreens, a 20 s / 20 s fallback plan, a 10 s
/// command watchdog, 2 s all-red at start-up and [`DETECTORS`] loops (50 ms debounce, counts
/// over 10 s). `None` only if the firmware's limits were below two groups and stages.
pub fn crossroads() -> Option<ControllerConfig> {
    let mut cfg = ControllerConfig::default();
    cfg.groups
        .push(GroupConfig::vehicle(7_000, 60_000, 3_000))
        .ok()?;
    cfg.groups
        .push(GroupConfig::vehicle(7_000, 60_000, 3_000))
        .ok()?;
    let mut ig = IntergreenMatrix::new();
    ig.set_conflict(0, 1, 5_000, 5_000);
    cfg.intergreen = ig;
    cfg.stages.push(GroupSet::of(&[0])).ok()?;
    cfg.stages.push(GroupSet::of(&[1])).ok()?;
    cfg.plans
        .push(Plan::from_steps(&[(0, 20_000), (1, 20_000)])?)
        .ok()?;
    cfg.watchdog_timeout_ms = 10_000;
    cfg.startup_all_red_ms = 2_000;
    cfg.detectors = DETECTORS;
    cfg.detector_debounce_ms = 50;
    cfg.detector_interval_ms = 10_000;
    Some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::SignalController;

    #[test]
    fn the_demo_crossroads_is_a_valid_controller() {
        let cfg = crossroads().expect("fits the firmware's limits");
        assert_eq!((cfg.groups.len(), cfg.stages.len()), (2, 2));
        assert!(SignalController::new(cfg, 0).is_ok());
    }
}
