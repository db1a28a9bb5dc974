//! One sensor of a hazard group: the value the rule derives from its readings (raw value,
//! rise over a window, or sum over a window), its own hysteresis level, and its fault flags.

use std::collections::VecDeque;

use super::config::{AccumulationInput, Direction, GroupConfig, LevelConfig, RuleConfig};

/// Samples kept per sensor at most (a reading a second over an hour window still fits).
const MAX_HISTORY: usize = 4096;

/// Why a sensor is left out of the vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A reading outside the valid range, non-finite, or flagged out of range by its source.
    OutOfRange,
    /// No change while the rest of the group moves.
    Stuck,
    /// No usable reading for too long.
    Silent,
    /// Too far from the group median.
    Disagrees,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::OutOfRange,
        FaultKind::Stuck,
        FaultKind::Silent,
        FaultKind::Disagrees,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            FaultKind::OutOfRange => "out_of_range",
            FaultKind::Stuck => "stuck",
            FaultKind::Silent => "silent",
            FaultKind::Disagrees => "disagrees",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
pub(super) struct SensorState {
    /// Arrival time of the last usable reading.
    pub last_seen: Option<f64>,
    /// Last usable raw value.
    pub last_value: Option<f64>,
    /// Value at the last change, and when it changed (stuck detection).
    pub change_ref: Option<f64>,
    pub last_change: Option<f64>,
    /// `(time, value)` for rate of change, `(time, increment)` for accumulation.
    history: VecDeque<(f64, f64)>,
    /// Previous counter value (accumulation from a counter).
    counter_prev: Option<f64>,
    /// Current hysteresis level, 0 = none.
    pub level: usize,
    faults: [bool; 4],
    pub deviation_since: Option<f64>,
}

impl SensorState {
    pub fn fault(&self, f: FaultKind) -> bool {
        self.faults.get(f.index()).copied().unwrap_or(false)
    }

    /// Sets a fault flag; returns whether it changed.
    pub fn set_fault(&mut self, f: FaultKind, on: bool) -> bool {
        match self.faults.get_mut(f.index()) {
            Some(flag) if *flag != on => {
                *flag = on;
                true
            }
            _ => false,
        }
    }

    pub fn healthy(&self) -> bool {
        !self.faults.iter().any(|&f| f)
    }

    /// Takes a usable value that arrived at `now`.
    pub fn push(&mut self, g: &GroupConfig, value: f64, now: f64) {
        let moved = self
            .change_ref
            .is_none_or(|r| (value - r).abs() > g.faults.stuck_epsilon);
        if moved {
            self.change_ref = Some(value);
            self.last_change = Some(now);
        }
        self.last_seen = Some(now);
        self.last_value = Some(value);
        match g.rule {
            RuleConfig::Threshold {} => {}
            RuleConfig::RateOfChange { window_s } => {
                self.history.push_back((now, value));
                // Keep one sample at or before the window start as the anchor.
                while self
                    .history
                    .get(1)
                    .is_some_and(|&(t, _)| t <= now - window_s)
                {
                    self.history.pop_front();
                }
            }
            RuleConfig::Accumulation { window_s, input } => {
                let inc = match input {
                    AccumulationInput::Increment => Some(value),
                    AccumulationInput::Counter => {
                        let inc = self
                            .counter_prev
                            .map(|p| if value >= p { value - p } else { value });
                        self.counter_prev = Some(value);
                        inc
                    }
                };
                if let Some(inc) = inc {
                    self.history.push_back((now, inc));
                }
                self.prune(now, window_s);
            }
        }
        while self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
    }

    fn prune(&mut self, now: f64, window_s: f64) {
        while self
            .history
            .front()
            .is_some_and(|&(t, _)| t <= now - window_s)
        {
            self.history.pop_front();
        }
    }

    /// Arrival time of the oldest sample kept (rate of change, accumulation).
    pub fn oldest_sample(&self) -> Option<f64> {
        self.history.front().map(|&(t, _)| t)
    }

    /// The rule's value at `now`, or `None` before the first usable reading.
    pub fn value(&mut self, g: &GroupConfig, now: f64) -> Option<f64> {
        let last = self.last_value?;
        match g.rule {
            RuleConfig::Threshold {} => Some(last),
            RuleConfig::RateOfChange { .. } => {
                let anchor = self.history.front().map_or(last, |&(_, v)| v);
                Some(last - anchor)
            }
            RuleConfig::Accumulation { window_s, .. } => {
                self.prune(now, window_s);
                Some(self.history.iter().map(|&(_, inc)| inc).sum())
            }
        }
    }

    /// Moves the hysteresis level for `value`: up to the most severe level whose `raise` is
    /// reached, else down while below the current level's `clear`.
    pub fn update_level(&mut self, levels: &[LevelConfig], dir: Direction, value: f64) {
        let reached = |thr: f64| match dir {
            Direction::Above => value >= thr,
            Direction::Below => value <= thr,
        };
        let raised = levels
            .iter()
            .rposition(|l| reached(l.raise))
            .map_or(0, |i| i + 1);
        if raised > self.level {
            self.level = raised;
            return;
        }
        while self.level > 0 {
            let held = levels.get(self.level - 1).is_some_and(|l| reached(l.clear));
            if held {
                break;
            }
            self.level -= 1;
        }
    }
}
