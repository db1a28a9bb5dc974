//! The safety core of signal transitions, in integer milliseconds and `no_std`: the rules
//! ([`Rules`]: each group's minimum and maximum green, yellow or pedestrian clearance
//! (flashing green) and red-amber, the stages, the [`intergreen`] matrix that says which groups
//! conflict and how long the all-red between them lasts), the [`engine`] that moves groups
//! between stages without ever breaking a rule, and the [`check`]er that watches shown aspects
//! against the same rules. The firmware's sequencer and conflict monitor and the gateway's
//! supervisor are thin shells around it; its property tests are `firmware/tests/signal_safety.rs`.
//!
//! Time is a `u64` of milliseconds passed in. The engine and the checker each keep the latest
//! time they were given and never go back: a clock that steps backwards stands still for them
//! until it has caught up, so no duration is ever measured short.

pub mod check;
pub mod engine;
pub mod intergreen;

pub use check::{Checker, Fault};
pub use engine::{Engine, Phase, Refusal};
pub use intergreen::IntergreenMatrix;

use citygate_protocols::signal::GroupKind;

use super::{GroupSet, MAX_GROUPS};

/// Timings of one signal group, all in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// Vehicle or pedestrian sequence.
    pub kind: GroupKind,
    /// Minimum green (for pedestrians at least the walk): a green is never ended earlier.
    pub min_green_ms: u32,
    /// Maximum green: a green (even when held) is ended by a forced stage change after this
    /// (to the next stage in order that ends it); 0 = no maximum. A group that is green in
    /// every stage cannot be ended by a stage change and keeps its green.
    pub max_green_ms: u32,
    /// Yellow for vehicles, flashing green (pedestrian clearance) for pedestrians.
    pub clearance_ms: u32,
    /// Red-amber before green (vehicles only); 0 = go straight from red to green.
    pub red_amber_ms: u32,
}

impl GroupConfig {
    /// A vehicle group.
    pub const fn vehicle(min_green_ms: u32, max_green_ms: u32, yellow_ms: u32) -> Self {
        GroupConfig {
            kind: GroupKind::Vehicle,
            min_green_ms,
            max_green_ms,
            clearance_ms: yellow_ms,
            red_amber_ms: 0,
        }
    }
    /// A pedestrian group.
    pub const fn pedestrian(min_green_ms: u32, max_green_ms: u32, flashing_green_ms: u32) -> Self {
        GroupConfig {
            kind: GroupKind::Pedestrian,
            min_green_ms,
            max_green_ms,
            clearance_ms: flashing_green_ms,
            red_amber_ms: 0,
        }
    }
    /// With a red-amber period before green.
    pub const fn with_red_amber(mut self, red_amber_ms: u32) -> Self {
        self.red_amber_ms = red_amber_ms;
        self
    }

    /// The red-amber the group shows before green: vehicles only.
    pub const fn red_amber(&self) -> u32 {
        match self.kind {
            GroupKind::Vehicle => self.red_amber_ms,
            GroupKind::Pedestrian => 0,
        }
    }
}

/// The rules of one intersection, borrowed from where they are kept (the firmware's
/// `ControllerConfig`, the gateway's supervisor). Group `g` is `groups[g]`; at most
/// [`MAX_GROUPS`] groups are served, any beyond stay red. Nothing here needs to be valid
/// for the engine to be safe: an invalid stage is never completed, it is not made unsafe.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Timings by group.
    pub groups: &'a [GroupConfig],
    /// Stages: the groups green together.
    pub stages: &'a [GroupSet],
    /// Conflicts and intergreens.
    pub intergreen: &'a IntergreenMatrix,
}

impl Rules<'_> {
    /// The groups served: at most [`MAX_GROUPS`].
    pub fn served(&self) -> usize {
        self.groups.len().min(MAX_GROUPS)
    }

    /// Whether no two groups of `set` conflict.
    pub fn conflict_free(&self, set: GroupSet) -> bool {
        set.iter().all(|a| {
            set.iter()
                .all(|b| a >= b || !self.intergreen.conflicts(a, b))
        })
    }

    /// The longest intergreen between served groups.
    pub fn longest_intergreen_ms(&self) -> u32 {
        let n = self.served();
        (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .filter_map(|(a, b)| self.intergreen.get(a, b))
            .max()
            .unwrap_or(0)
    }

    /// The longest clearance (yellow / flashing green) of any group.
    pub fn longest_clearance_ms(&self) -> u32 {
        self.groups
            .iter()
            .map(|g| g.clearance_ms)
            .max()
            .unwrap_or(0)
    }
}
