//! The traffic signal controller: the [`safety`] core (rules, intergreen matrix, transition
//! engine, checker), configuration ([`plan`]), the stage [`sequencer`] and the independent
//! conflict [`monitor`] (both shells around the core), the command [`watchdog`], the
//! [`controller`] that ties them together, the thin [`lamps`] driver, and the [`demo`] crossroads.

pub mod controller;
pub mod demo;
pub mod lamps;
pub mod monitor;
pub mod plan;
pub mod safety;
pub mod sequencer;
pub mod watchdog;

pub use controller::{Command, CommandError, ControllerStatus, SignalController};
pub use monitor::{ConflictMonitor, Fault};
pub use plan::{ConfigError, ControllerConfig, GroupConfig, Plan, PlanStep};
pub use safety::IntergreenMatrix;
pub use sequencer::Sequencer;
pub use watchdog::Watchdog;

pub use citygate_protocols::registers::signal_controller::Mode;
pub use citygate_protocols::signal::{GroupKind, SignalState};

use citygate_protocols::registers::signal_controller as map;

/// Most signal groups.
pub const MAX_GROUPS: usize = map::MAX_GROUPS as usize;
/// Most stages.
pub const MAX_STAGES: usize = map::MAX_STAGES as usize;
/// Most fixed-time plans.
pub const MAX_PLANS: usize = map::MAX_PLANS as usize;
/// Most steps in one plan.
pub const MAX_PLAN_STEPS: usize = 16;

/// A set of signal groups (0-based indices below [`MAX_GROUPS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GroupSet(u16);

impl GroupSet {
    /// No group.
    pub const EMPTY: GroupSet = GroupSet(0);

    /// Groups `0..n`.
    pub const fn first(n: usize) -> Self {
        if n >= 16 {
            GroupSet(u16::MAX)
        } else {
            GroupSet((1u16 << n) - 1)
        }
    }

    /// From a bit mask (bit i = group i).
    pub const fn from_bits(bits: u16) -> Self {
        GroupSet(bits)
    }

    /// From 0-based group indices; indices of [`MAX_GROUPS`] or more are ignored.
    pub fn of(groups: &[usize]) -> Self {
        groups.iter().fold(GroupSet::EMPTY, |s, &g| s.with(g))
    }

    /// The bit mask.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// This set plus `group`.
    pub const fn with(self, group: usize) -> Self {
        if group < 16 {
            GroupSet(self.0 | (1 << group))
        } else {
            self
        }
    }

    /// Whether `group` is in the set.
    pub const fn contains(self, group: usize) -> bool {
        group < 16 && self.0 & (1 << group) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every member is also in `other`.
    pub const fn is_subset(self, other: GroupSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The members, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..16).filter(move |&g| self.contains(g))
    }
}
