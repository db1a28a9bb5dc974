//! The safety supervisor: the only path from a controller to the signal outputs. A thin shell
//! around the firmware's safety core (`citygate_firmware::signal::safety`, the same engine the
//! field controller's sequencer runs): it converts the model's seconds to the core's integer
//! milliseconds in one place ([`ms`]), starts with an all-red of the longest intergreen, takes
//! over a running field controller ([`Supervisor::resume`]), and counts refusals by reason and
//! forced changes. Illegal requests (unknown stage, before minimum green, during a transition,
//! keeping a green past its maximum) are refused and never executed. Time is passed in (seconds).

use citygate_firmware::signal::safety::{Engine, GroupConfig, IntergreenMatrix, Rules};
use citygate_firmware::signal::GroupSet;
use citygate_protocols::signal::SignalState;

pub use citygate_firmware::signal::safety::{Phase, Refusal};

use super::controller::Decision;
use super::model::Intersection;

/// Seconds to the core's milliseconds: the one conversion between the gateway's `f64` seconds
/// and the safety core. Rounds up (a minimum is never shortened; float noise below a
/// microsecond is ignored); negative and NaN are 0, too large saturates.
pub fn ms(seconds: f64) -> u64 {
    if seconds > 0.0 {
        // `as` saturates (infinity → u64::MAX)
        (seconds * 1000.0 - 1e-6).ceil() as u64
    } else {
        0
    }
}

fn ms32(seconds: f64) -> u32 {
    u32::try_from(ms(seconds)).unwrap_or(u32::MAX)
}

/// Refusals by reason, and forced changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub refused_unknown_stage: u64,
    pub refused_min_green: u64,
    pub refused_in_transition: u64,
    /// Requests that would have kept a green past its maximum (the forced change went first).
    pub refused_max_green: u64,
    /// Stage changes forced by a maximum green.
    pub forced_max_green: u64,
    /// Stage changes started (requested or forced).
    pub stage_changes: u64,
}

impl Counters {
    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.refused_unknown_stage
            + self.refused_min_green
            + self.refused_in_transition
            + self.refused_max_green
    }
}

/// The model's safety rules in the core's terms (ms): groups beyond the core's 16 are not
/// served (they stay red; validation rejects such an intersection).
#[derive(Debug, Clone)]
struct OwnedRules {
    groups: Vec<GroupConfig>,
    stages: Vec<GroupSet>,
    intergreen: IntergreenMatrix,
}

impl OwnedRules {
    fn of(model: &Intersection) -> Self {
        let groups = model
            .groups
            .iter()
            .map(|g| GroupConfig {
                kind: g.kind,
                min_green_ms: ms32(g.effective_min_green_s()),
                max_green_ms: ms32(g.max_green_s),
                clearance_ms: ms32(g.clearance_time_s()),
                red_amber_ms: ms32(g.red_amber_s),
            })
            .collect();
        let stages = model
            .stages
            .iter()
            .map(|s| s.groups.iter().fold(GroupSet::EMPTY, |set, &g| set.with(g)))
            .collect();
        let mut intergreen = IntergreenMatrix::new();
        for (c, row) in model.conflicts.iter().enumerate() {
            for (g, &conflict) in row.iter().enumerate() {
                if conflict {
                    // a conflict without an intergreen (never after validation): the clearance
                    let ig = model
                        .intergreen
                        .get(c)
                        .and_then(|r| r.get(g))
                        .copied()
                        .flatten();
                    let clearance = model.groups.get(c).map_or(0.0, |x| x.clearance_time_s());
                    intergreen.set(c, g, ms32(ig.unwrap_or(clearance)));
                }
            }
        }
        OwnedRules {
            groups,
            stages,
            intergreen,
        }
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            groups: &self.groups,
            stages: &self.stages,
            intergreen: &self.intergreen,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Supervisor {
    model: Intersection,
    rules: OwnedRules,
    engine: Engine,
    states: Vec<SignalState>,
    counters: Counters,
}

impl Supervisor {
    /// All red at `now = 0` for the longest intergreen, then the first stage.
    pub fn new(model: &Intersection) -> Self {
        Self::starting_at(model, 0.0, 0)
    }

    /// All red from `now` for the longest intergreen (a green before may have just ended),
    /// then `first` (the stage the field shows, when taking over a running controller).
    pub fn starting_at(model: &Intersection, now: f64, first: usize) -> Self {
        let rules = OwnedRules::of(model);
        let r = rules.rules();
        let engine = Engine::new(r, ms(now), u64::from(r.longest_intergreen_ms()), first);
        Self::with(model, rules, engine)
    }

    fn with(model: &Intersection, rules: OwnedRules, engine: Engine) -> Self {
        let mut states = vec![SignalState::Red; model.groups.len()];
        engine.states(&mut states);
        Supervisor {
            model: model.clone(),
            rules,
            engine,
            states,
            counters: Counters::default(),
        }
    }

    /// Takes over a field controller that has run `stage` for `green_for_s` seconds at `now`
    /// (e.g. its fallback plan): that stage green since then, every other group red. A stage
    /// that does not exist starts with the all-red instead.
    pub fn resume(model: &Intersection, stage: usize, green_for_s: f64, now: f64) -> Self {
        let rules = OwnedRules::of(model);
        let now_ms = ms(now);
        let since = now_ms.saturating_sub(ms(green_for_s));
        match Engine::resume(rules.rules(), stage, since, now_ms) {
            Some(engine) => Self::with(model, rules, engine),
            None => Self::starting_at(model, now, stage),
        }
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
        match self.engine.request(self.rules.rules(), to, ms(now)) {
            Ok(started) => {
                self.counters.stage_changes += u64::from(started);
                Ok(())
            }
            Err(refusal) => {
                let c = &mut self.counters;
                match refusal {
                    Refusal::UnknownStage { .. } => c.refused_unknown_stage += 1,
                    Refusal::MinGreen { .. } => c.refused_min_green += 1,
                    Refusal::InTransition { .. } => c.refused_in_transition += 1,
                    Refusal::MaxGreen { .. } => c.refused_max_green += 1,
                }
                Err(refusal)
            }
        }
    }

    /// Advances to `now` (see the core's `Engine::tick`). Returns every group's state.
    pub fn tick(&mut self, now: f64) -> &[SignalState] {
        if self.engine.tick(self.rules.rules(), ms(now)) {
            self.counters.forced_max_green += 1;
            self.counters.stage_changes += 1;
        }
        self.engine.states(&mut self.states);
        &self.states
    }

    /// The phase (times in ms).
    pub fn phase(&self) -> Phase {
        self.engine.phase()
    }

    /// The stage green now, or the stage the transition leads to.
    pub fn stage(&self) -> usize {
        self.engine.target()
    }

    /// The stage running, if not in a transition.
    pub fn current_stage(&self) -> Option<usize> {
        self.engine.current_stage()
    }

    /// Whether a transition (or the start-up all-red) is running.
    pub fn in_transition(&self) -> bool {
        self.engine.current_stage().is_none()
    }

    /// Seconds the current stage has been fully green (0 in a transition).
    pub fn green_for_s(&self, now: f64) -> f64 {
        self.engine.green_for(ms(now)) as f64 / 1000.0
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
        self.engine.max_green_forced()
    }
}

#[cfg(test)]
mod tests {
    //! What the supervisor adds to the core: the seconds-to-ms boundary, the model's rules,
    //! the take-over, and the counted refusals. The safety properties themselves are proved on
    //! the core (`firmware/tests/signal_safety.rs`).
    use super::super::fixtures::{crossroads, four_stage};
    use super::*;

    #[test]
    fn seconds_become_ms_rounded_up_once() {
        assert_eq!(ms(7.0), 7_000);
        assert_eq!(ms(1.1), 1_100, "float noise is not a millisecond");
        assert_eq!(ms(0.1 + 0.2), 300);
        assert_eq!(ms(0.0004), 1, "a minimum is never shortened");
        assert_eq!(
            (ms(-3.0), ms(f64::NAN), ms(f64::INFINITY)),
            (0, 0, u64::MAX)
        );
        // pedestrians: minimum green is at least the walk, clearance is the flashing green
        let m = four_stage();
        let r = OwnedRules::of(&m);
        for (g, c) in m.groups.iter().zip(&r.groups) {
            assert_eq!(
                u64::from(c.min_green_ms),
                ms(g.effective_min_green_s()),
                "{}",
                g.id
            );
            assert_eq!(
                u64::from(c.clearance_ms),
                ms(g.clearance_time_s()),
                "{}",
                g.id
            );
        }
        for a in 0..m.groups.len() {
            for b in 0..m.groups.len() {
                assert_eq!(
                    r.intergreen.get(a, b).map(u64::from),
                    m.intergreen[a][b].map(ms),
                    "{a}->{b}"
                );
            }
        }
    }

    /// Bad clocks at the boundary: NaN, negative and backward times stand still; nothing panics
    /// and no green is shortened.
    #[test]
    fn nan_and_backward_times_stand_still() {
        let m = crossroads();
        let mut s = Supervisor::resume(&m, 0, 10.0, 100.0);
        assert_eq!(s.request(Decision::Switch(1), 100.0), Ok(()));
        assert_eq!(s.tick(f64::NAN)[0], SignalState::Yellow);
        assert_eq!(s.tick(-5.0)[0], SignalState::Yellow);
        assert_eq!(s.tick(102.9)[0], SignalState::Yellow, "yellow is 3 s");
        assert_eq!(s.tick(103.0)[0], SignalState::Red);
        assert_eq!(s.tick(50.0)[1], SignalState::Red, "intergreen 5 s from 100");
        assert_eq!(s.tick(105.0)[1], SignalState::Green);
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
        // the start-up all-red may be led to another stage (nothing is green yet)
        assert_eq!(s.request(Decision::Switch(1), 0.0), Ok(()));
        assert_eq!(s.request(Decision::Switch(0), 0.0), Ok(()));
        assert_eq!(s.stage(), 0);
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
            (1, 1, 1, 3)
        );
        // yellow 3 s, then red; E and W green 5 s after N and S ended
        assert_eq!(s.tick(t + 10.0)[0], SignalState::Red);
        assert_eq!(s.tick(t + 11.9)[1], SignalState::Red);
        assert_eq!(s.tick(t + 12.0)[1], SignalState::Green);
        assert_eq!(s.current_stage(), Some(1));
    }
}
