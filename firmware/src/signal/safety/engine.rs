//! The transition engine of the safety core: owns every signal group's aspect and moves between
//! stages only through a safe transition. Leaving groups keep their minimum green, then show
//! yellow (pedestrians: flashing green) for its full time; an entering group starts (red-amber,
//! then green) only once every conflicting group is red and the intergreen since that group's
//! green ended has passed. A running stage whose group reaches maximum green is ended by a
//! forced change to the next stage in cyclic order that ends it. A request the rules forbid
//! now is refused with the reason and changes nothing.

use core::fmt;

use citygate_protocols::signal::SignalState;

use super::Rules;
use crate::signal::{GroupSet, MAX_GROUPS};

#[derive(Debug, Clone, Copy)]
struct GroupRt {
    state: SignalState,
    /// When the current aspect began.
    since: u64,
    /// When the group last turned green.
    green_start: u64,
    /// When the group's last green ended (start of its clearance).
    green_end: Option<u64>,
}

/// Where the engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Every group red until `until`, then the transition to `to`.
    Startup { until: u64, to: usize },
    /// Every group of `stage` green, all others red, since `since`.
    Running { stage: usize, since: u64 },
    /// Moving to stage `to` since `since`.
    Transition { to: usize, since: u64 },
}

/// Why a request was refused (stage and group indices 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stage does not exist.
    UnknownStage { stage: usize },
    /// A group that would lose right of way has not had its minimum green.
    MinGreen { group: usize, remaining_ms: u64 },
    /// A transition is running towards another stage.
    InTransition { to: usize },
    /// The stage would keep `group` green past its maximum green: the forced change comes first.
    MaxGreen { group: usize },
}

impl Refusal {
    /// The counter name of the reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownStage { .. } => "unknown_stage",
            Refusal::MinGreen { .. } => "min_green",
            Refusal::InTransition { .. } => "in_transition",
            Refusal::MaxGreen { .. } => "max_green",
        }
    }
}

impl core::error::Error for Refusal {}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::UnknownStage { stage } => write!(f, "stage index {stage} does not exist"),
            Refusal::MinGreen {
                group,
                remaining_ms,
            } => write!(
                f,
                "signal group index {group} has {}.{:03} s of minimum green left",
                remaining_ms / 1000,
                remaining_ms % 1000
            ),
            Refusal::InTransition { to } => {
                write!(f, "a transition to stage index {to} is running")
            }
            Refusal::MaxGreen { group } => write!(
                f,
                "signal group index {group} is past its maximum green and would stay green"
            ),
        }
    }
}

/// See the module docs. The rules are passed to every call (borrowed from their owner); time
/// is in ms and never goes back (see [`super`]).
#[derive(Debug, Clone)]
pub struct Engine {
    groups: heapless::Vec<GroupRt, MAX_GROUPS>,
    phase: Phase,
    now: u64,
    max_green_forced: bool,
}

impl Engine {
    /// Every served group red from `now`, all red for `all_red_ms`, then stage `first` (stage
    /// 0 if `first` does not exist).
    pub fn new(rules: Rules<'_>, now: u64, all_red_ms: u64, first: usize) -> Self {
        let mut groups = heapless::Vec::new();
        for _ in 0..rules.served() {
            let _ = groups.push(GroupRt {
                state: SignalState::Red,
                since: now,
                green_start: now,
                green_end: None,
            });
        }
        Engine {
            groups,
            phase: Phase::Startup {
                until: now.saturating_add(all_red_ms),
                to: if first < rules.stages.len() { first } else { 0 },
            },
            now,
            max_green_forced: false,
        }
    }

    /// Takes over a field that has shown `stage` since `green_since` (at most `now`): its
    /// groups green since then, every other group red. `None` when the stage does not exist,
    /// names a group not served, or puts conflicting groups green together.
    pub fn resume(rules: Rules<'_>, stage: usize, green_since: u64, now: u64) -> Option<Self> {
        let set = *rules.stages.get(stage)?;
        if !set.is_subset(GroupSet::first(rules.served())) || !rules.conflict_free(set) {
            return None;
        }
        let since = green_since.min(now);
        let mut e = Engine::new(rules, now, 0, stage);
        for g in set.iter() {
            if let Some(rt) = e.groups.get_mut(g) {
                *rt = GroupRt {
                    state: SignalState::Green,
                    since,
                    green_start: since,
                    green_end: None,
                };
            }
        }
        e.phase = Phase::Running { stage, since };
        Some(e)
    }

    fn clock(&mut self, now: u64) -> u64 {
        self.now = self.now.max(now);
        self.now
    }

    /// Asks for stage `to` at `now`. `Ok(true)`: the transition starts now. `Ok(false)`: no
    /// change is needed (the stage runs or is being moved to), or the start-up all-red now
    /// leads to `to`. A refusal changes nothing.
    pub fn request(&mut self, rules: Rules<'_>, to: usize, now: u64) -> Result<bool, Refusal> {
        let now = self.clock(now);
        let Some(&target) = rules.stages.get(to) else {
            return Err(Refusal::UnknownStage { stage: to });
        };
        let stage = match self.phase {
            Phase::Startup { until, .. } => {
                self.phase = Phase::Startup { until, to };
                return Ok(false);
            }
            Phase::Transition { to: t, .. } if t == to => return Ok(false),
            Phase::Transition { to: t, .. } => return Err(Refusal::InTransition { to: t }),
            Phase::Running { stage, .. } if stage == to => return Ok(false),
            Phase::Running { stage, .. } => stage,
        };
        let current = rules.stages.get(stage).copied().unwrap_or_default();
        let expired = self.expired(rules, current, now);
        if forced_next(rules, stage, expired).is_some() {
            if let Some(group) = and(target, expired).iter().next() {
                return Err(Refusal::MaxGreen { group });
            }
        }
        let leaving = minus(current, target);
        if let Some((group, remaining_ms)) = self.min_green_left(rules, leaving, now) {
            return Err(Refusal::MinGreen {
                group,
                remaining_ms,
            });
        }
        self.leave(rules, leaving, to, now);
        self.max_green_forced = false;
        Ok(true)
    }

    /// Advances to `now`: ends clearances and red-amber periods that have run their time, ends
    /// the start-up all-red, forces a change at maximum green, lets entering groups start once
    /// safe. Returns whether a change was forced by a maximum green.
    pub fn tick(&mut self, rules: Rules<'_>, now: u64) -> bool {
        let now = self.clock(now);
        self.progress(rules, now);
        let mut forced = false;
        match self.phase {
            Phase::Startup { until, to } => {
                if now >= until && self.groups.iter().all(|g| g.state == SignalState::Red) {
                    self.phase = Phase::Transition { to, since: now };
                }
            }
            Phase::Running { stage, .. } => forced = self.force_max_green(rules, stage, now),
            Phase::Transition { .. } => {}
        }
        if let Phase::Transition { to, .. } = self.phase {
            self.enter(rules, to, now);
        }
        forced
    }

    /// Ends clearances and red-amber periods that have run their time.
    fn progress(&mut self, rules: Rules<'_>, now: u64) {
        for (g, c) in self.groups.iter_mut().zip(rules.groups.iter()) {
            let elapsed = now.saturating_sub(g.since);
            match g.state {
                SignalState::Yellow | SignalState::FlashingGreen
                    if elapsed >= u64::from(c.clearance_ms) =>
                {
                    g.state = SignalState::Red;
                    g.since = now;
                }
                SignalState::RedAmber if elapsed >= u64::from(c.red_amber_ms) => {
                    g.state = SignalState::Green;
                    g.since = now;
                    g.green_start = now;
                }
                _ => {}
            }
        }
    }

    /// The green groups of `set` past their maximum green.
    fn expired(&self, rules: Rules<'_>, set: GroupSet, now: u64) -> GroupSet {
        set.iter()
            .filter(|&g| match (self.groups.get(g), rules.groups.get(g)) {
                (Some(rt), Some(c)) => {
                    rt.state == SignalState::Green
                        && c.max_green_ms != 0
                        && now.saturating_sub(rt.green_start) >= u64::from(c.max_green_ms)
                }
                _ => false,
            })
            .fold(GroupSet::EMPTY, GroupSet::with)
    }

    /// The first group of `leaving` short of its minimum green, with the time it still needs.
    fn min_green_left(
        &self,
        rules: Rules<'_>,
        leaving: GroupSet,
        now: u64,
    ) -> Option<(usize, u64)> {
        leaving.iter().find_map(|g| {
            let (rt, c) = (self.groups.get(g)?, rules.groups.get(g)?);
            let had = now.saturating_sub(rt.green_start);
            let remaining = u64::from(c.min_green_ms).saturating_sub(had);
            (remaining > 0).then_some((g, remaining))
        })
    }

    /// Starts the transition to `to`: `leaving` groups begin their clearance.
    fn leave(&mut self, rules: Rules<'_>, leaving: GroupSet, to: usize, now: u64) {
        for g in leaving.iter() {
            if let (Some(rt), Some(c)) = (self.groups.get_mut(g), rules.groups.get(g)) {
                if rt.state == SignalState::Green {
                    rt.state = c.kind.clearance_state();
                    rt.since = now;
                    rt.green_end = Some(now);
                }
            }
        }
        self.phase = Phase::Transition { to, since: now };
    }

    /// In a running stage: a group past its maximum green forces the next stage that ends
    /// it, once every leaving group has had its minimum green.
    fn force_max_green(&mut self, rules: Rules<'_>, stage: usize, now: u64) -> bool {
        let Some(&current) = rules.stages.get(stage) else {
            return false;
        };
        let expired = self.expired(rules, current, now);
        let Some(next) = forced_next(rules, stage, expired) else {
            return false;
        };
        let leaving = minus(current, rules.stages.get(next).copied().unwrap_or_default());
        if self.min_green_left(rules, leaving, now).is_some() {
            return false;
        }
        self.leave(rules, leaving, next, now);
        self.max_green_forced = true;
        true
    }

    /// In a transition: lets each entering group start once every conflicting group is red and
    /// its intergreen has passed; completes the transition when the stage is fully green.
    fn enter(&mut self, rules: Rules<'_>, to: usize, now: u64) {
        let Some(&target) = rules.stages.get(to) else {
            return;
        };
        for g in target.iter() {
            if self.state(g) != SignalState::Red || g >= self.groups.len() {
                continue;
            }
            let clear = self.groups.iter().enumerate().all(|(c, rt)| {
                if !rules.intergreen.conflicts(c, g) {
                    return true;
                }
                let Some(ig) = rules.intergreen.get(c, g) else {
                    return false;
                };
                rt.state == SignalState::Red
                    && rt
                        .green_end
                        .is_none_or(|end| now.saturating_sub(end) >= u64::from(ig))
            });
            if !clear {
                continue;
            }
            let red_amber = rules.groups.get(g).map_or(0, |c| c.red_amber());
            if let Some(rt) = self.groups.get_mut(g) {
                rt.since = now;
                if red_amber > 0 {
                    rt.state = SignalState::RedAmber;
                } else {
                    rt.state = SignalState::Green;
                    rt.green_start = now;
                }
            }
        }
        let done = self.groups.iter().enumerate().all(|(g, rt)| {
            if target.contains(g) {
                rt.state == SignalState::Green
            } else {
                rt.state == SignalState::Red
            }
        });
        if done {
            self.phase = Phase::Running {
                stage: to,
                since: now,
            };
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The stage green now, or the stage the transition (or the start-up) leads to.
    pub fn target(&self) -> usize {
        match self.phase {
            Phase::Startup { to, .. } | Phase::Transition { to, .. } => to,
            Phase::Running { stage, .. } => stage,
        }
    }

    /// The stage running, if not in a transition or the start-up.
    pub fn current_stage(&self) -> Option<usize> {
        match self.phase {
            Phase::Running { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// Time the current stage has been fully green at `now` (0 in a transition).
    pub fn green_for(&self, now: u64) -> u64 {
        match self.phase {
            Phase::Running { since, .. } => now.max(self.now).saturating_sub(since),
            _ => 0,
        }
    }

    /// Whether the last stage change was forced by a maximum green.
    pub fn max_green_forced(&self) -> bool {
        self.max_green_forced
    }

    /// The latest time given.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The aspect of group `g` (red for a group not served).
    pub fn state(&self, g: usize) -> SignalState {
        self.groups.get(g).map_or(SignalState::Red, |r| r.state)
    }

    /// Writes every group's aspect into `out`: red for groups not served.
    pub fn states(&self, out: &mut [SignalState]) {
        for (g, o) in out.iter_mut().enumerate() {
            *o = self.state(g);
        }
    }
}

/// `a` without the groups of `b`.
fn minus(a: GroupSet, b: GroupSet) -> GroupSet {
    GroupSet::from_bits(a.bits() & !b.bits())
}

/// The groups in both.
fn and(a: GroupSet, b: GroupSet) -> GroupSet {
    GroupSet::from_bits(a.bits() & b.bits())
}

/// The stage a maximum green forces from `stage`: the next in cyclic order that ends every
/// expired green, failing that the next that ends some of them (the others follow at the next
/// forced change). `None` when nothing expired, or no stage ends any of them (a group green in
/// every stage keeps its green).
fn forced_next(rules: Rules<'_>, stage: usize, expired: GroupSet) -> Option<usize> {
    if expired.is_empty() {
        return None;
    }
    let n = rules.stages.len();
    let kept = |s: usize| rules.stages.get(s).map_or(expired, |st| and(*st, expired));
    let order = || (1..n).map(move |k| (stage + k) % n);
    order()
        .find(|&s| kept(s).is_empty())
        .or_else(|| order().find(|&s| kept(s) != expired))
}

#[cfg(test)]
mod tests {
    use super::super::{GroupConfig, IntergreenMatrix};
    use super::*;
    use SignalState::*;

    /// Stage 0: groups 0 (max green 10 s) and 1 (min green 15 s); stage 1: group 2, which
    /// conflicts with both (intergreen 4 s); stage 2: group 0 alone.
    fn rules_parts() -> ([GroupConfig; 3], [GroupSet; 3], IntergreenMatrix) {
        let mut ig = IntergreenMatrix::new();
        ig.set_conflict(0, 2, 4_000, 4_000);
        ig.set_conflict(1, 2, 4_000, 4_000);
        (
            [
                GroupConfig::vehicle(5_000, 10_000, 3_000),
                GroupConfig::vehicle(15_000, 0, 3_000),
                GroupConfig::vehicle(5_000, 0, 3_000),
            ],
            [
                GroupSet::of(&[0, 1]),
                GroupSet::of(&[2]),
                GroupSet::of(&[0]),
            ],
            ig,
        )
    }

    #[test]
    fn a_forced_change_waits_for_every_minimum_green_and_overrides_requests() {
        let (g, s, ig) = rules_parts();
        let r = Rules {
            groups: &g,
            stages: &s,
            intergreen: &ig,
        };
        let mut e = Engine::new(r, 0, 0, 1);
        assert_eq!(
            e.request(r, 0, 0),
            Ok(false),
            "the start-up leads to stage 0"
        );
        e.tick(r, 0);
        assert_eq!(e.current_stage(), Some(0));
        // group 0 past its maximum at 10 s, group 1 short of its minimum until 15 s
        assert!(!e.tick(r, 12_000));
        assert_eq!(
            e.request(r, 2, 12_000),
            Err(Refusal::MaxGreen { group: 0 }),
            "stage 2 would keep group 0 green"
        );
        assert!(matches!(
            e.request(r, 1, 12_000),
            Err(Refusal::MinGreen { group: 1, .. })
        ));
        assert_eq!((e.state(0), e.state(1)), (Green, Green));
        assert!(e.tick(r, 15_000), "forced once the minimum green is over");
        assert_eq!((e.state(0), e.state(1)), (Yellow, Yellow));
    }

    #[test]
    fn a_stage_with_conflicting_groups_is_never_resumed_nor_completed() {
        let (g, _, ig) = rules_parts();
        let s = [GroupSet::of(&[0, 2]), GroupSet::of(&[1])];
        let r = Rules {
            groups: &g,
            stages: &s,
            intergreen: &ig,
        };
        assert!(Engine::resume(r, 0, 0, 1_000).is_none());
        let mut e = Engine::new(r, 0, 0, 0);
        for t in 0..100 {
            e.tick(r, t * 1_000);
            assert!(!(e.state(0).is_open() && e.state(2).is_open()), "t={t}");
        }
        assert_eq!(e.current_stage(), None, "stuck in the transition, safely");
    }
}
