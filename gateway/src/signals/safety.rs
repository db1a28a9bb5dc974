//! The safety supervisor: the only path from a controller to the signal outputs. It owns the
//! signal-group states and moves between stages only through a safe transition, exactly as
//! the controller firmware's sequencer does: leaving groups keep their minimum green, then show
//! yellow (pedestrians: flashing green) for its full time; an entering group waits until every
//! conflicting group is red and its intergreen has passed, then shows red-amber (if any) and
//! green. A stage that reaches maximum green is ended by a forced change to the next stage.
//!
//! Illegal requests (unknown stage, before minimum green, during a transition) are refused,
//! counted by reason and never executed. Time is passed in (seconds).

use std::fmt;

use citygate_protocols::signal::SignalState;

use super::controller::Decision;
use super::model::Intersection;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// The stage does not exist.
    UnknownStage { stage: usize },
    /// A group that would lose right of way has not had its minimum green.
    MinGreen { group: usize, remaining_s: f64 },
    /// A transition is running towards another stage.
    InTransition { to: usize },
}

impl Refusal {
    /// The counter name of the reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownStage { .. } => "unknown_stage",
            Refusal::MinGreen { .. } => "min_green",
            Refusal::InTransition { .. } => "in_transition",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownStage { stage } => write!(f, "stage index {stage} does not exist"),
            Refusal::MinGreen { group, remaining_s } => write!(
                f,
                "signal group {group} has {remaining_s:.1} s of minimum green left"
            ),
            Refusal::InTransition { to } => {
                write!(f, "a transition to stage index {to} is running")
            }
        }
    }
}

/// Refusals by reason, and forced changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub refused_unknown_stage: u64,
    pub refused_min_green: u64,
    pub refused_in_transition: u64,
    /// Stage changes forced by a maximum green.
    pub forced_max_green: u64,
    /// Stage changes started (requested or forced).
    pub stage_changes: u64,
}

impl Counters {
    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.refused_unknown_stage + self.refused_min_green + self.refused_in_transition
    }
}

#[derive(Debug, Clone, Copy)]
struct GroupRt {
    state: SignalState,
    since: f64,
    green_start: f64,
    green_end: Option<f64>,
}

/// Where the supervisor is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// All red until `until` (start-up).
    Startup { until: f64, to: usize },
    /// Every group of `stage` green, all others red, since `since`.
    Running { stage: usize, since: f64 },
    /// Moving to `to` since `since`.
    Transition { to: usize, since: f64 },
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Supervisor {
    model: Intersection,
    groups: Vec<GroupRt>,
    states: Vec<SignalState>,
    phase: Phase,
    counters: Counters,
    max_green_forced: bool,
}

impl Supervisor {
    /// All red at `now = 0` for the longest intergreen, then the first stage.
    pub fn new(model: &Intersection) -> Self {
        Self::starting_at(model, 0.0, 0)
    }

    /// All red from `now` for the longest intergreen (a green before may have just ended),
    /// then `first` (the stage the field shows, when taking over a running controller).
    pub fn starting_at(model: &Intersection, now: f64, first: usize) -> Self {
        let longest = model
            .intergreen
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(0.0, f64::max);
        let n = model.groups.len();
        Supervisor {
            model: model.clone(),
            groups: vec![
                GroupRt {
                    state: SignalState::Red,
                    since: now,
                    green_start: now,
                    green_end: None,
                };
                n
            ],
            states: vec![SignalState::Red; n],
            phase: Phase::Startup {
                until: now + longest,
                to: if first < model.stages.len() { first } else { 0 },
            },
            counters: Counters::default(),
            max_green_forced: false,
        }
    }

    /// Takes over a field controller that has run `stage` for `green_for_s` seconds at `now`
    /// (e.g. its fallback plan): that stage green since then, every other group red.
    pub fn resume(model: &Intersection, stage: usize, green_for_s: f64, now: f64) -> Self {
        let mut s = Self::starting_at(model, now, stage);
        let Some(st) = model.stages.get(stage) else {
            return s;
        };
        let since = now - green_for_s.max(0.0);
        for &g in &st.groups {
            if let Some(rt) = s.groups.get_mut(g) {
                rt.state = SignalState::Green;
                rt.since = since;
                rt.green_start = since;
            }
        }
        for (o, rt) in s.states.iter_mut().zip(s.groups.iter()) {
            *o = rt.state;
        }
        s.phase = Phase::Running { stage, since };
        s
    }

    /// This supervisor with `counters` carried over (from the one it replaces).
    pub fn with_counters(mut self, counters: Counters) -> Self {
        self.counters = counters;
        self
    }

    /// The model.
    pub fn model(&self) -> &Intersection {
        &self.model
    }

    /// Asks for `decision` at `now`. `Hold`, and a switch to the stage already running or being
    /// moved to, are accepted without effect. A legal switch starts the transition at `now`.
    pub fn request(&mut self, decision: Decision, now: f64) -> Result<(), Refusal> {
        let Decision::Switch(to) = decision else {
            return Ok(());
        };
        let r = self.check(to, now);
        match r {
            Ok(Some(stage)) => {
                self.leave(stage, to, now);
                self.max_green_forced = false;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(refusal) => {
                let c = &mut self.counters;
                match refusal {
                    Refusal::UnknownStage { .. } => c.refused_unknown_stage += 1,
                    Refusal::MinGreen { .. } => c.refused_min_green += 1,
                    Refusal::InTransition { .. } => c.refused_in_transition += 1,
                }
                Err(refusal)
            }
        }
    }

    /// `Ok(Some(from))` when a transition from `from` may start, `Ok(None)` for a no-op.
    fn check(&self, to: usize, now: f64) -> Result<Option<usize>, Refusal> {
        let Some(target) = self.model.stages.get(to) else {
            return Err(Refusal::UnknownStage { stage: to });
        };
        match self.phase {
            Phase::Startup { to: t, .. } | Phase::Transition { to: t, .. } => {
                if t == to {
                    Ok(None)
                } else {
                    Err(Refusal::InTransition { to: t })
                }
            }
            Phase::Running { stage, .. } if stage == to => Ok(None),
            Phase::Running { stage, .. } => {
                let current = self.model.stages.get(stage).map_or(&[][..], |s| &s.groups);
                for &g in current.iter().filter(|g| !target.groups.contains(g)) {
                    let min = self
                        .model
                        .groups
                        .get(g)
                        .map_or(0.0, |x| x.effective_min_green_s());
                    let had = self.groups.get(g).map_or(0.0, |r| now - r.green_start);
                    if had < min {
                        return Err(Refusal::MinGreen {
                            group: g,
                            remaining_s: min - had,
                        });
                    }
                }
                Ok(Some(stage))
            }
        }
    }

    /// Starts the transition from running `stage` to `to`: leaving groups begin clearing.
    fn leave(&mut self, stage: usize, to: usize, now: f64) {
        let (Some(current), Some(target)) =
            (self.model.stages.get(stage), self.model.stages.get(to))
        else {
            return;
        };
        for &g in current.groups.iter().filter(|g| !target.groups.contains(g)) {
            if let (Some(rt), Some(cfg)) = (self.groups.get_mut(g), self.model.groups.get(g)) {
                rt.state = cfg.kind.clearance_state();
                rt.since = now;
                rt.green_end = Some(now);
            }
        }
        self.counters.stage_changes += 1;
        self.phase = Phase::Transition { to, since: now };
    }

    /// Advances to `now`: ends clearances and red-amber periods, forces a change at maximum
    /// green, lets entering groups start once safe. Returns every group's state.
    pub fn tick(&mut self, now: f64) -> &[SignalState] {
        for (rt, cfg) in self.groups.iter_mut().zip(self.model.groups.iter()) {
            let elapsed = now - rt.since;
            match rt.state {
                SignalState::Yellow | SignalState::FlashingGreen
                    if elapsed >= cfg.clearance_time_s() =>
                {
                    rt.state = SignalState::Red;
                    rt.since = now;
                }
                SignalState::RedAmber if elapsed >= cfg.red_amber_s => {
                    rt.state = SignalState::Green;
                    rt.since = now;
                    rt.green_start = now;
                }
                _ => {}
            }
        }
        match self.phase {
            Phase::Startup { until, to } => {
                if now >= until {
                    self.phase = Phase::Transition { to, since: now };
                }
            }
            Phase::Running { stage, .. } => self.max_green(stage, now),
            Phase::Transition { .. } => {}
        }
        if let Phase::Transition { to, .. } = self.phase {
            self.enter(to, now);
        }
        for (s, rt) in self.states.iter_mut().zip(self.groups.iter()) {
            *s = rt.state;
        }
        &self.states
    }

    /// Forces the next stage (in cyclic order) that ends every group past its maximum green.
    fn max_green(&mut self, stage: usize, now: f64) {
        let Some(current) = self.model.stages.get(stage) else {
            return;
        };
        let expired: Vec<usize> = current
            .groups
            .iter()
            .copied()
            .filter(|&g| {
                let max = self
                    .model
                    .groups
                    .get(g)
                    .map_or(f64::INFINITY, |x| x.max_green_s);
                self.groups
                    .get(g)
                    .is_some_and(|r| now - r.green_start >= max)
            })
            .collect();
        if expired.is_empty() {
            return;
        }
        let n = self.model.stages.len();
        let ends = |s: usize, all: bool| {
            self.model.stages.get(s).is_some_and(|st| {
                let kept = expired.iter().filter(|g| st.groups.contains(g)).count();
                if all {
                    kept == 0
                } else {
                    kept < expired.len()
                }
            })
        };
        let order = || (1..n).map(|k| (stage + k) % n);
        let next = order()
            .find(|&s| ends(s, true))
            .or_else(|| order().find(|&s| ends(s, false)));
        if let Some(next) = next {
            self.leave(stage, next, now);
            self.counters.forced_max_green += 1;
            self.max_green_forced = true;
        }
    }

    /// Lets each entering group start once every conflicting group is red and its intergreen
    /// has passed; completes the transition when the stage is fully green.
    fn enter(&mut self, to: usize, now: f64) {
        let Some(target) = self.model.stages.get(to) else {
            return;
        };
        for &g in &target.groups {
            if self
                .groups
                .get(g)
                .is_none_or(|r| r.state != SignalState::Red)
            {
                continue;
            }
            let clear = self.groups.iter().enumerate().all(|(c, rt)| {
                if !self
                    .model
                    .conflicts
                    .get(c)
                    .and_then(|r| r.get(g))
                    .copied()
                    .unwrap_or(false)
                {
                    return true;
                }
                let ig = self
                    .model
                    .intergreen
                    .get(c)
                    .and_then(|r| r.get(g))
                    .copied()
                    .flatten()
                    .unwrap_or(f64::INFINITY);
                rt.state == SignalState::Red && rt.green_end.is_none_or(|end| now - end >= ig)
            });
            if !clear {
                continue;
            }
            let red_amber = self.model.groups.get(g).map_or(0.0, |x| x.red_amber_s);
            if let Some(rt) = self.groups.get_mut(g) {
                rt.since = now;
                if red_amber > 0.0 {
                    rt.state = SignalState::RedAmber;
                } else {
                    rt.state = SignalState::Green;
                    rt.green_start = now;
                }
            }
        }
        let done = self.groups.iter().enumerate().all(|(g, rt)| {
            if target.groups.contains(&g) {
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

    /// The stage green now, or the stage the transition leads to.
    pub fn stage(&self) -> usize {
        match self.phase {
            Phase::Startup { to, .. } | Phase::Transition { to, .. } => to,
            Phase::Running { stage, .. } => stage,
        }
    }

    /// The stage running, if not in a transition.
    pub fn current_stage(&self) -> Option<usize> {
        match self.phase {
            Phase::Running { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// Whether a transition (or the start-up all-red) is running.
    pub fn in_transition(&self) -> bool {
        !matches!(self.phase, Phase::Running { .. })
    }

    /// Seconds the current stage has been fully green (0 in a transition).
    pub fn green_for_s(&self, now: f64) -> f64 {
        match self.phase {
            Phase::Running { since, .. } => (now - since).max(0.0),
            _ => 0.0,
        }
    }

    /// The states as of the last tick.
    pub fn states(&self) -> &[SignalState] {
        &self.states
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether the last stage change was forced by a maximum green.
    pub fn max_green_forced(&self) -> bool {
        self.max_green_forced
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{crossroads, four_stage, Monitor};
    use super::*;
    use proptest::prelude::*;

    fn drive(m: &Intersection, steps: &[(f64, Option<usize>)]) -> Result<Supervisor, String> {
        let mut s = Supervisor::new(m);
        let max_dt = steps.iter().map(|x| x.0).fold(0.0, f64::max);
        let mut mon = Monitor::new(m, max_dt);
        let mut now = 0.0;
        mon.check(s.tick(now), now)?;
        for &(dt, want) in steps {
            now += dt;
            if let Some(st) = want {
                let _ = s.request(Decision::Switch(st), now);
            }
            let states = s.tick(now).to_vec();
            mon.check(&states, now)?;
        }
        Ok(s)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random controller outputs at random times never produce conflicting greens nor
        /// cut a minimum green, a yellow or an intergreen, and maximum green is honoured.
        #[test]
        fn random_requests_are_always_safe(
            steps in proptest::collection::vec((0.05f64..2.0, proptest::option::of(0usize..6)), 1..600)
        ) {
            for m in [crossroads(), four_stage()] {
                if let Err(e) = drive(&m, &steps) {
                    prop_assert!(false, "{}", e);
                }
            }
        }

        /// A controller that never asks to change still gets every stage served: maximum
        /// green forces the cycle on.
        #[test]
        fn holding_forever_is_ended_by_max_green(dt in 0.1f64..1.0) {
            let m = crossroads();
            let steps: Vec<(f64, Option<usize>)> = (0..(400.0 / dt) as usize).map(|_| (dt, None)).collect();
            let s = match drive(&m, &steps) {
                Ok(s) => s,
                Err(e) => return Err(TestCaseError::fail(e)),
            };
            prop_assert!(s.counters().forced_max_green >= 5, "{:?}", s.counters());
        }
    }

    #[test]
    fn resuming_a_running_stage_keeps_its_green_start() {
        let m = crossroads();
        let mut s = Supervisor::resume(&m, 1, 4.0, 100.0);
        assert_eq!(s.current_stage(), Some(1));
        assert_eq!(s.green_for_s(100.0), 4.0);
        assert!(matches!(
            s.request(Decision::Switch(0), 100.0),
            Err(Refusal::MinGreen { .. })
        ));
        assert_eq!(s.request(Decision::Switch(0), 103.0), Ok(()));
        assert_eq!(s.tick(103.0)[1], SignalState::Yellow);
        let mut s = Supervisor::resume(&m, 0, 59.5, 100.0);
        s.tick(100.0);
        assert_eq!(s.current_stage(), Some(0));
        s.tick(100.5);
        assert!(
            s.max_green_forced(),
            "maximum green counts from the field's green start"
        );
    }

    #[test]
    fn illegal_requests_are_refused_counted_and_not_executed() {
        let m = crossroads();
        let mut s = Supervisor::new(&m);
        s.tick(0.0);
        assert_eq!(
            s.request(Decision::Switch(9), 0.0),
            Err(Refusal::UnknownStage { stage: 9 })
        );
        assert_eq!(
            s.request(Decision::Switch(1), 0.0),
            Err(Refusal::InTransition { to: 0 })
        );
        let mut t = 0.0;
        while s.current_stage().is_none() {
            t += 1.0;
            s.tick(t);
        }
        assert_eq!(s.current_stage(), Some(0));
        assert_eq!(s.states()[0], SignalState::Green);
        let r = s.request(Decision::Switch(1), t + 3.0);
        assert!(
            matches!(r, Err(Refusal::MinGreen { group: 0, .. })),
            "{r:?}"
        );
        s.tick(t + 3.0);
        assert_eq!(s.states()[0], SignalState::Green, "refused: not executed");
        assert_eq!(s.request(Decision::Switch(1), t + 7.0), Ok(()));
        assert_eq!(s.tick(t + 7.0)[0], SignalState::Yellow);
        assert_eq!(
            s.request(Decision::Switch(0), t + 8.0),
            Err(Refusal::InTransition { to: 1 })
        );
        let c = s.counters();
        assert_eq!(
            (
                c.refused_unknown_stage,
                c.refused_in_transition,
                c.refused_min_green,
                c.refused()
            ),
            (1, 2, 1, 4)
        );
        // yellow 3 s, then red; E and W green 5 s after N and S ended
        assert_eq!(s.tick(t + 10.0)[0], SignalState::Red);
        assert_eq!(s.tick(t + 11.9)[1], SignalState::Red);
        assert_eq!(s.tick(t + 12.0)[1], SignalState::Green);
        assert_eq!(s.current_stage(), Some(1));
    }
}
