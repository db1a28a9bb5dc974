//! The conflict monitor: an independent check of the lamp outputs on every tick. It keeps its
//! own record of what each group showed and when, and reports the first of: two conflicting
//! groups open (not red/dark) together, an intergreen cut, a minimum green cut, a clearance
//! (yellow / flashing green) cut, or an aspect sequence the group's kind never shows. The
//! controller latches to flashing on any fault.

use core::fmt;

use citygate_protocols::signal::{GroupKind, SignalState};

use super::plan::ControllerConfig;
use super::{IntergreenMatrix, MAX_GROUPS};

/// What the monitor saw (groups 1-based, as on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Two conflicting groups were open at once.
    ConflictingGreens { a: usize, b: usize },
    /// `entering` opened before the intergreen from `clearing` had passed.
    IntergreenCut {
        clearing: usize,
        entering: usize,
        elapsed_ms: u64,
        required_ms: u32,
    },
    /// A green ended before its minimum green.
    MinGreenCut { group: usize, green_ms: u64 },
    /// A clearance ended (or was skipped) before its time.
    ClearanceCut { group: usize, clearance_ms: u64 },
    /// An aspect change the group's sequence never makes.
    BadSequence {
        group: usize,
        from: SignalState,
        to: SignalState,
    },
}

impl core::error::Error for Fault {}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::ConflictingGreens { a, b } => write!(f, "conflict monitor: conflicting groups {a} and {b} open together"),
            Fault::IntergreenCut { clearing, entering, elapsed_ms, required_ms } => write!(
                f,
                "conflict monitor: group {entering} opened {elapsed_ms} ms after group {clearing}'s green, intergreen is {required_ms} ms"
            ),
            Fault::MinGreenCut { group, green_ms } => write!(f, "conflict monitor: group {group} green only {green_ms} ms"),
            Fault::ClearanceCut { group, clearance_ms } => write!(f, "conflict monitor: group {group} clearance only {clearance_ms} ms"),
            Fault::BadSequence { group, from, to } => {
                write!(f, "conflict monitor: group {group} went {} -> {}", from.as_str(), to.as_str())
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    state: SignalState,
    since: u64,
    green_end: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    kind: GroupKind,
    min_green_ms: u32,
    clearance_ms: u32,
}

/// The monitor. Built from the configuration, it shares no state with the sequencer.
#[derive(Debug, Clone)]
pub struct ConflictMonitor {
    limits: heapless::Vec<Limits, MAX_GROUPS>,
    intergreen: IntergreenMatrix,
    seen: heapless::Vec<Seen, MAX_GROUPS>,
}

impl ConflictMonitor {
    /// A monitor for `cfg`, assuming every group red at `now`.
    pub fn new(cfg: &ControllerConfig, now: u64) -> Self {
        let mut limits = heapless::Vec::new();
        let mut seen = heapless::Vec::new();
        for g in cfg.groups.iter() {
            let _ = limits.push(Limits {
                kind: g.kind,
                min_green_ms: g.min_green_ms,
                clearance_ms: g.clearance_ms,
            });
            let _ = seen.push(Seen {
                state: SignalState::Red,
                since: now,
                green_end: None,
            });
        }
        ConflictMonitor {
            limits,
            intergreen: cfg.intergreen.clone(),
            seen,
        }
    }

    /// Restarts the record from `states` at `now` (after a fault reset).
    pub fn reset(&mut self, states: &[SignalState], now: u64) {
        for (s, &st) in self.seen.iter_mut().zip(states) {
            *s = Seen {
                state: st,
                since: now,
                green_end: None,
            };
        }
    }

    /// Checks the lamp outputs `states` shown from `now` on.
    pub fn check(&mut self, states: &[SignalState], now: u64) -> Result<(), Fault> {
        let n = self.seen.len().min(states.len());
        let states = states.get(..n).unwrap_or(&[]);
        for (a, &sa) in states.iter().enumerate() {
            for (b, &sb) in states.iter().enumerate().skip(a + 1) {
                if sa.is_open() && sb.is_open() && self.intergreen.conflicts(a, b) {
                    return Err(Fault::ConflictingGreens { a: a + 1, b: b + 1 });
                }
            }
        }
        for (g, &new) in states.iter().enumerate() {
            let (Some(&old), Some(&lim)) = (self.seen.get(g), self.limits.get(g)) else {
                continue;
            };
            if new == old.state {
                continue;
            }
            let held = now.saturating_sub(old.since);
            let group = g + 1;
            let clearance = lim.kind.clearance_state();
            let mut green_end = old.green_end;
            match (old.state, new) {
                (SignalState::Green, to) if to == clearance => {
                    if held < lim.min_green_ms as u64 {
                        return Err(Fault::MinGreenCut {
                            group,
                            green_ms: held,
                        });
                    }
                    green_end = Some(now);
                }
                (from, SignalState::Red) if from == clearance => {
                    if held < lim.clearance_ms as u64 {
                        return Err(Fault::ClearanceCut {
                            group,
                            clearance_ms: held,
                        });
                    }
                }
                (SignalState::Green, SignalState::Red)
                | (SignalState::Green, SignalState::Dark) => {
                    return Err(Fault::ClearanceCut {
                        group,
                        clearance_ms: 0,
                    });
                }
                (SignalState::Red, SignalState::RedAmber) if lim.kind == GroupKind::Vehicle => {
                    self.intergreen_ok(g, now)?
                }
                (SignalState::Red, SignalState::Green) => self.intergreen_ok(g, now)?,
                (SignalState::RedAmber, SignalState::Green) => {}
                (from, to) => return Err(Fault::BadSequence { group, from, to }),
            }
            if let Some(s) = self.seen.get_mut(g) {
                *s = Seen {
                    state: new,
                    since: now,
                    green_end,
                };
            }
        }
        Ok(())
    }

    fn intergreen_ok(&self, entering: usize, now: u64) -> Result<(), Fault> {
        for (c, seen) in self.seen.iter().enumerate() {
            if let (Some(required), Some(end)) = (self.intergreen.get(c, entering), seen.green_end)
            {
                let elapsed = now.saturating_sub(end);
                if elapsed < required as u64 {
                    return Err(Fault::IntergreenCut {
                        clearing: c + 1,
                        entering: entering + 1,
                        elapsed_ms: elapsed,
                        required_ms: required,
                    });
                }
            }
        }
        Ok(())
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
