//! The conflict monitor: an independent check of the lamp outputs on every tick, by the safety
//! core's [`Checker`] with its own copy of the group timings and the intergreen matrix (it
//! shares no state with the sequencer). The controller latches to flashing on any fault.

use citygate_protocols::signal::SignalState;

use super::plan::ControllerConfig;
use super::safety::{Checker, GroupConfig, IntergreenMatrix, Rules};
use super::MAX_GROUPS;

pub use super::safety::Fault;

/// The monitor. Built from the configuration, it shares no state with the sequencer.
#[derive(Debug, Clone)]
pub struct ConflictMonitor {
    groups: heapless::Vec<GroupConfig, MAX_GROUPS>,
    intergreen: IntergreenMatrix,
    checker: Checker,
}

impl ConflictMonitor {
    /// A monitor for `cfg`, assuming every group red at `now`.
    pub fn new(cfg: &ControllerConfig, now: u64) -> Self {
        ConflictMonitor {
            groups: cfg.groups.clone(),
            intergreen: cfg.intergreen.clone(),
            checker: Checker::new(cfg.groups.len(), now),
        }
    }

    /// Restarts the record from `states` at `now` (after a fault reset).
    pub fn reset(&mut self, states: &[SignalState], now: u64) {
        self.checker.reset(states, now);
    }

    /// Checks the lamp outputs `states` shown from `now` on.
    pub fn check(&mut self, states: &[SignalState], now: u64) -> Result<(), Fault> {
        let rules = Rules {
            groups: &self.groups,
            stages: &[],
            intergreen: &self.intergreen,
        };
        self.checker.check(rules, states, now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sequencer::tests::crossing;
    use super::*;
    use SignalState::*;

    #[test]
    fn conflicting_open_groups_are_caught() {
        let cfg = crossing();
        let mut m = ConflictMonitor::new(&cfg, 0);
        assert_eq!(m.check(&[Red, Green, Green], 1_000), Ok(()));
        let mut m = ConflictMonitor::new(&cfg, 0);
        assert_eq!(
            m.check(&[Green, Green, Red], 1_000),
            Err(Fault::ConflictingGreens { a: 1, b: 2 })
        );
    }

    #[test]
    fn min_green_clearance_and_intergreen_cuts_are_caught() {
        let cfg = crossing();
        let mut m = ConflictMonitor::new(&cfg, 0);
        assert_eq!(m.check(&[Green, Red, Red], 0), Ok(()));
        assert_eq!(
            m.check(&[Yellow, Red, Red], 4_999),
            Err(Fault::MinGreenCut {
                group: 1,
                green_ms: 4_999
            })
        );

        let mut m = ConflictMonitor::new(&cfg, 0);
        m.check(&[Green, Red, Red], 0).unwrap_or(());
        assert_eq!(m.check(&[Yellow, Red, Red], 5_000), Ok(()));
        assert_eq!(
            m.check(&[Red, Red, Red], 7_000),
            Err(Fault::ClearanceCut {
                group: 1,
                clearance_ms: 2_000
            })
        );

        let mut m = ConflictMonitor::new(&cfg, 0);
        m.check(&[Green, Red, Red], 0).unwrap_or(());
        m.check(&[Yellow, Red, Red], 5_000).unwrap_or(());
        assert_eq!(m.check(&[Red, Red, Red], 8_000), Ok(()));
        // group 2 needs 5 s from the end of group 1's green at 5000
        assert_eq!(
            m.check(&[Red, Green, Red], 9_999),
            Err(Fault::IntergreenCut {
                clearing: 1,
                entering: 2,
                elapsed_ms: 4_999,
                required_ms: 5_000
            })
        );
    }

    #[test]
    fn skipped_yellow_and_odd_sequences_are_caught() {
        let cfg = crossing();
        let mut m = ConflictMonitor::new(&cfg, 0);
        m.check(&[Red, Green, Red], 0).unwrap_or(());
        assert_eq!(
            m.check(&[Red, Red, Red], 10_000),
            Err(Fault::ClearanceCut {
                group: 2,
                clearance_ms: 0
            })
        );
        let mut m = ConflictMonitor::new(&cfg, 0);
        assert_eq!(
            m.check(&[Red, Red, RedAmber], 0),
            Err(Fault::BadSequence {
                group: 3,
                from: Red,
                to: RedAmber
            })
        );
    }
}
