//! The intergreen matrix: for each ordered pair of conflicting signal groups, the minimum time
//! from the end of green of the first (clearing) group to the start of green of the second
//! (entering) group. A pair without an entry in either direction does not conflict; a pair
//! with an entry in one direction only conflicts, and the safety core never lets the group
//! without an intergreen enter after the other (validation reports it).

use crate::signal::{GroupSet, MAX_GROUPS};

/// Intergreen times in ms, indexed `[clearing][entering]`; `None` = no conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntergreenMatrix {
    times: [[Option<u32>; MAX_GROUPS]; MAX_GROUPS],
}

impl Default for IntergreenMatrix {
    fn default() -> Self {
        Self::new()
    }
}

impl IntergreenMatrix {
    /// A matrix without conflicts.
    pub const fn new() -> Self {
        IntergreenMatrix {
            times: [[None; MAX_GROUPS]; MAX_GROUPS],
        }
    }

    /// Declares `a` and `b` conflicting, with intergreen `a_to_b_ms` (a clears, b enters) and
    /// `b_to_a_ms`. Out-of-range groups are reported by
    /// [`ControllerConfig::validate`](crate::signal::ControllerConfig::validate),
    /// here they are ignored and `false` is returned.
    pub fn set_conflict(&mut self, a: usize, b: usize, a_to_b_ms: u32, b_to_a_ms: u32) -> bool {
        match (
            a < MAX_GROUPS && b < MAX_GROUPS,
            self.times.get_mut(a).and_then(|r| r.get_mut(b)),
        ) {
            (true, Some(slot)) => *slot = Some(a_to_b_ms),
            _ => return false,
        }
        if let Some(slot) = self.times.get_mut(b).and_then(|r| r.get_mut(a)) {
            *slot = Some(b_to_a_ms);
        }
        true
    }

    /// Sets the intergreen of one direction: `clearing` ends its green, `entering` may start
    /// `ms` later. Out-of-range groups are ignored and `false` is returned.
    pub fn set(&mut self, clearing: usize, entering: usize, ms: u32) -> bool {
        match self
            .times
            .get_mut(clearing)
            .and_then(|r| r.get_mut(entering))
        {
            Some(slot) => {
                *slot = Some(ms);
                true
            }
            None => false,
        }
    }

    /// Intergreen from the end of green of `clearing` to the start of green of `entering`.
    pub fn get(&self, clearing: usize, entering: usize) -> Option<u32> {
        self.times
            .get(clearing)
            .and_then(|r| r.get(entering))
            .copied()
            .flatten()
    }

    /// Whether the two groups conflict (in either direction).
    pub fn conflicts(&self, a: usize, b: usize) -> bool {
        self.get(a, b).is_some() || self.get(b, a).is_some()
    }

    /// The groups that conflict with `group`.
    pub fn conflicting(&self, group: usize) -> GroupSet {
        let mut set = GroupSet::EMPTY;
        for other in 0..MAX_GROUPS {
            if self.conflicts(group, other) {
                set = set.with(other);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_recorded_in_both_directions() {
        let mut m = IntergreenMatrix::new();
        assert!(m.set_conflict(0, 2, 5000, 6000));
        assert_eq!(m.get(0, 2), Some(5000));
        assert_eq!(m.get(2, 0), Some(6000));
        assert!(m.conflicts(2, 0));
        assert!(!m.conflicts(0, 1));
        assert_eq!(m.conflicting(0), GroupSet::EMPTY.with(2));
        assert!(!m.set_conflict(0, MAX_GROUPS, 1, 1));
        assert!(m.set(3, 4, 2_500) && !m.set(MAX_GROUPS, 0, 1));
        assert_eq!((m.get(3, 4), m.get(4, 3)), (Some(2_500), None));
        assert!(m.conflicts(4, 3), "one direction is a conflict");
    }
}
