//! The checker of the safety core: watches the aspects shown, tick by tick, against the rules.
//! It keeps its own record of what each group showed and since when (nothing shared with the
//! engine) and reports the first of: two conflicting groups open (not red or dark) together,
//! an intergreen cut, a minimum green cut, a clearance (yellow / flashing green) cut or skipped,
//! or an aspect change the group's kind never makes.

use core::fmt;

use citygate_protocols::signal::{GroupKind, SignalState};

use super::Rules;
use crate::signal::MAX_GROUPS;

/// What the checker saw (groups 1-based, as on the wire).
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

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Checker {
    seen: heapless::Vec<Seen, MAX_GROUPS>,
    now: u64,
}

impl Checker {
    /// A checker of `groups` groups (at most [`MAX_GROUPS`]), every one red at `now`.
    pub fn new(groups: usize, now: u64) -> Self {
        let mut seen = heapless::Vec::new();
        for _ in 0..groups.min(MAX_GROUPS) {
            let _ = seen.push(Seen {
                state: SignalState::Red,
                since: now,
                green_end: None,
            });
        }
        Checker { seen, now }
    }

    /// Restarts the record from `states` at `now` (after a fault reset).
    pub fn reset(&mut self, states: &[SignalState], now: u64) {
        self.now = self.now.max(now);
        for (s, &st) in self.seen.iter_mut().zip(states) {
            *s = Seen {
                state: st,
                since: self.now,
                green_end: None,
            };
        }
    }

    /// Checks the aspects `states` shown from `now` on.
    pub fn check(
        &mut self,
        rules: Rules<'_>,
        states: &[SignalState],
        now: u64,
    ) -> Result<(), Fault> {
        let now = {
            self.now = self.now.max(now);
            self.now
        };
        let n = self.seen.len().min(states.len());
        let states = states.get(..n).unwrap_or(&[]);
        for (a, &sa) in states.iter().enumerate() {
            for (b, &sb) in states.iter().enumerate().skip(a + 1) {
                if sa.is_open() && sb.is_open() && rules.intergreen.conflicts(a, b) {
                    return Err(Fault::ConflictingGreens { a: a + 1, b: b + 1 });
                }
            }
        }
        for (g, &new) in states.iter().enumerate() {
            let (Some(&old), Some(lim)) = (self.seen.get(g), rules.groups.get(g)) else {
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
                    if held < u64::from(lim.min_green_ms) {
                        return Err(Fault::MinGreenCut {
                            group,
                            green_ms: held,
                        });
                    }
                    green_end = Some(now);
                }
                (from, SignalState::Red) if from == clearance => {
                    if held < u64::from(lim.clearance_ms) {
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
                    self.intergreen_ok(rules, g, now)?
                }
                (SignalState::Red, SignalState::Green) => self.intergreen_ok(rules, g, now)?,
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

    fn intergreen_ok(&self, rules: Rules<'_>, entering: usize, now: u64) -> Result<(), Fault> {
        for (c, seen) in self.seen.iter().enumerate() {
            if let (Some(required), Some(end)) = (rules.intergreen.get(c, entering), seen.green_end)
            {
                let elapsed = now.saturating_sub(end);
                if elapsed < u64::from(required) {
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
