//! When a hazard group next needs a cycle without a reading of its own: the earliest moment
//! at which time alone can change what its cycle does (a sensor falls silent or stuck, a
//! deviation or a level change has held long enough, an accumulation sample leaves its
//! window, a delayed update, renewal or re-arm is due), and the timer queue of those
//! deadlines. Deadlines may be early (a cycle that finds nothing to do is harmless), never
//! late: the engine runs every due group before it answers a call.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::config::{HazardConfig, RuleConfig};
use super::{FaultKind, GroupConfig, GroupState};

/// Deadlines of the groups, earliest first; a group has at most one live deadline.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// `(deadline bits, group)`: deadlines are finite and non-negative, so their bit
    /// patterns order as the numbers do.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The live deadline of each group (`None`: nothing scheduled); heap entries that
    /// disagree with it are stale and skipped.
    live: Vec<Option<u64>>,
}

impl Timers {
    pub fn new(groups: usize) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            live: vec![None; groups],
        }
    }

    /// Replaces the deadline of group `gi`.
    pub fn set(&mut self, gi: usize, at: Option<f64>) {
        let bits = at.map(f64::to_bits);
        let Some(slot) = self.live.get_mut(gi) else {
            return;
        };
        if *slot == bits {
            return;
        }
        *slot = bits;
        if let Some(b) = bits {
            self.heap.push(Reverse((b, gi)));
        }
    }

    /// Removes and returns every group due at `now`.
    pub fn due(&mut self, now: f64, into: &mut Vec<usize>) {
        let limit = now.to_bits();
        while let Some(&Reverse((b, gi))) = self.heap.peek() {
            if b > limit {
                break;
            }
            self.heap.pop();
            if let Some(slot) = self.live.get_mut(gi) {
                if *slot == Some(b) {
                    *slot = None;
                    into.push(gi);
                }
            }
        }
    }

    /// Heap entries, stale ones included (for tests of the bound).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Collects the earliest moment after `now` that a condition `now - base >= span` turns true.
struct Earliest {
    now: f64,
    at: Option<f64>,
}

impl Earliest {
    fn after(&mut self, base: f64, span: f64) {
        if self.now - base >= span || !span.is_finite() {
            return;
        }
        // A few units in the last place early, so that no rounding of `base + span` (or of
        // the check's own `now - window_s`) makes it late; never at or before `now`: the next
        // call's `now` is later and rechecks the condition itself.
        let at = base + span;
        let t = (at - at.abs() * 1e-15).max(next_up(self.now));
        self.at = Some(self.at.map_or(t, |a| a.min(t)));
    }
}

/// The smallest float above `x` (for the non-negative finite `x` the engine passes).
fn next_up(x: f64) -> f64 {
    f64::from_bits(x.to_bits() + 1)
}

/// When group `gs` next needs a cycle if none of its sensors reports, after a cycle at `now`.
pub(super) fn next_deadline(
    cfg: &HazardConfig,
    g: &GroupConfig,
    gs: &GroupState,
    started: f64,
    now: f64,
) -> Option<f64> {
    let mut e = Earliest { now, at: None };
    let f = &g.faults;
    for st in &gs.sensors {
        if !st.fault(FaultKind::Silent) {
            e.after(st.last_seen.unwrap_or(started), f.silent_after_s);
        }
        if let Some(t) = st.last_change {
            e.after(t, f.stuck_after_s);
        }
        if let Some(t) = st.deviation_since {
            e.after(t, f.deviation_hold_s);
        }
        if let RuleConfig::Accumulation { window_s, .. } = g.rule {
            // A sample leaves the window once `t <= now - window_s`.
            if let Some(t) = st.oldest_sample() {
                e.after(t, window_s);
            }
        }
    }
    for t in gs.up_since.iter().chain(&gs.down_since).flatten() {
        e.after(*t, g.persistence_s);
    }
    let interval = cfg.min_update_interval_s;
    match &gs.incident {
        Some(inc) => {
            e.after(inc.last_sent, interval);
            e.after(
                inc.last_sent,
                (f64::from(cfg.expires_s) / 2.0).max(interval),
            );
        }
        None if gs.committed > 0 && now < gs.rearm_at => {
            e.at = Some(e.at.map_or(gs.rearm_at, |a| a.min(gs.rearm_at)));
        }
        None => {}
    }
    e.at
}
