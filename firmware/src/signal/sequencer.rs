//! The stage sequencer: the controller's shell around the safety core's [`Engine`], which
//! drives every signal group and moves between stages only through a safe transition (minimum
//! green, clearance, intergreen; maximum green forces the next stage). The sequencer adds the
//! firmware's start-up and post-flash all-red times and follows the stage wanted at each tick.

use citygate_protocols::signal::SignalState;

use super::plan::ControllerConfig;
use super::safety::Engine;

pub use super::safety::Phase;

/// The per-group state machines and the stage logic. Time is passed in.
#[derive(Debug, Clone)]
pub struct Sequencer {
    engine: Engine,
}

impl Sequencer {
    /// Power-up: every group red, all-red for the configured start-up time.
    pub fn new(cfg: &ControllerConfig, now: u64) -> Self {
        let all_red = u64::from(cfg.startup_all_red_ms);
        Sequencer {
            engine: Engine::new(cfg.rules(), now, all_red, 0),
        }
    }

    /// Leaving flashing operation: every group red for the longest clearance plus the start-up
    /// all-red time, and at least the longest intergreen (a green may have been cut by the
    /// fault). Conflicting yellows together would look like a conflict to the monitor, so
    /// there is no steady-yellow step.
    pub fn restart_from_flash(cfg: &ControllerConfig, now: u64) -> Self {
        let rules = cfg.rules();
        let all_red = (u64::from(rules.longest_clearance_ms()) + u64::from(cfg.startup_all_red_ms))
            .max(u64::from(rules.longest_intergreen_ms()));
        Sequencer {
            engine: Engine::new(rules, now, all_red, 0),
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.engine.phase()
    }

    /// The stage running (all its groups green), if not in a transition.
    pub fn current_stage(&self) -> Option<usize> {
        self.engine.current_stage()
    }

    /// The stage running or being moved to (none during the start-up all-red).
    pub fn target_stage(&self) -> Option<usize> {
        match self.engine.phase() {
            Phase::Startup { .. } => None,
            _ => Some(self.engine.target()),
        }
    }

    /// Time since the current phase began (0 in the start-up).
    pub fn phase_elapsed(&self, now: u64) -> u64 {
        match self.engine.phase() {
            Phase::Running { since, .. } | Phase::Transition { since, .. } => {
                now.saturating_sub(since)
            }
            Phase::Startup { .. } => 0,
        }
    }

    /// Whether the last stage change was forced by a maximum green.
    pub fn max_green_forced(&self) -> bool {
        self.engine.max_green_forced()
    }

    /// State of group `g` (red for an unknown group).
    pub fn state(&self, g: usize) -> SignalState {
        self.engine.state(g)
    }

    /// Writes the state of every group into `out` (as many as fit).
    pub fn states(&self, out: &mut [SignalState]) {
        self.engine.states(out);
    }

    /// Advances to `now`. `desired` is the stage wanted (0-based); `None` keeps the stage.
    /// A request the safety core refuses now (minimum green, a transition running, a maximum
    /// green due) is simply asked again at the next tick. A transition in progress is always
    /// completed before a new one starts.
    pub fn tick(&mut self, cfg: &ControllerConfig, now: u64, desired: Option<usize>) {
        let rules = cfg.rules();
        if let Some(to) = desired {
            let _ = self.engine.request(rules, to, now);
        }
        self.engine.tick(rules, now);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{GroupConfig, GroupSet, IntergreenMatrix, Plan};
    use super::*;

    /// Two vehicle groups (1, 2) and a pedestrian group (3) crossing group 1.
    pub(crate) fn crossing() -> ControllerConfig {
        let mut cfg = ControllerConfig::default();
        let _ = cfg
            .groups
            .push(GroupConfig::vehicle(5_000, 60_000, 3_000).with_red_amber(1_000));
        let _ = cfg.groups.push(GroupConfig::vehicle(5_000, 0, 3_000));
        let _ = cfg.groups.push(GroupConfig::pedestrian(6_000, 0, 4_000));
        let mut ig = IntergreenMatrix::new();
        ig.set_conflict(0, 1, 5_000, 6_000);
        ig.set_conflict(0, 2, 4_000, 7_000);
        cfg.intergreen = ig;
        let _ = cfg.stages.push(GroupSet::of(&[0]));
        let _ = cfg.stages.push(GroupSet::of(&[1, 2]));
        let _ = cfg
            .plans
            .push(Plan::from_steps(&[(0, 20_000), (1, 15_000)]).unwrap_or_default());
        cfg.watchdog_timeout_ms = 10_000;
        cfg.startup_all_red_ms = 2_000;
        cfg.detector_interval_ms = 60_000;
        cfg
    }

    fn run_until(
        seq: &mut Sequencer,
        cfg: &ControllerConfig,
        from: u64,
        to: u64,
        desired: Option<usize>,
    ) {
        let mut t = from;
        while t <= to {
            seq.tick(cfg, t, desired);
            t += 100;
        }
    }

    #[test]
    fn startup_all_red_then_red_amber_then_green() {
        let cfg = crossing();
        assert_eq!(cfg.validate(), Ok(()));
        let mut seq = Sequencer::new(&cfg, 0);
        seq.tick(&cfg, 1_900, Some(0));
        assert_eq!(seq.state(0), SignalState::Red);
        seq.tick(&cfg, 2_000, Some(0));
        assert_eq!(seq.state(0), SignalState::RedAmber);
        seq.tick(&cfg, 2_900, Some(0));
        assert_eq!(seq.state(0), SignalState::RedAmber);
        seq.tick(&cfg, 3_000, Some(0));
        assert_eq!(seq.state(0), SignalState::Green);
        assert_eq!(seq.current_stage(), Some(0));
    }

    #[test]
    fn stage_change_keeps_min_green_clearance_and_intergreen() {
        let cfg = crossing();
        let mut seq = Sequencer::new(&cfg, 0);
        run_until(&mut seq, &cfg, 0, 3_000, Some(0)); // group 1 green at 3000
        seq.tick(&cfg, 3_100, Some(1));
        assert_eq!(
            seq.state(0),
            SignalState::Green,
            "minimum green of 5 s not yet over"
        );
        seq.tick(&cfg, 8_000, Some(1));
        assert_eq!(seq.state(0), SignalState::Yellow);
        seq.tick(&cfg, 10_999, Some(1));
        assert_eq!(seq.state(0), SignalState::Yellow);
        seq.tick(&cfg, 11_000, Some(1));
        assert_eq!(seq.state(0), SignalState::Red);
        // pedestrians: intergreen 4 s from the end of green at 8000
        assert_eq!(seq.state(2), SignalState::Red);
        seq.tick(&cfg, 11_900, Some(1));
        assert_eq!(seq.state(2), SignalState::Red);
        seq.tick(&cfg, 12_000, Some(1));
        assert_eq!(seq.state(2), SignalState::Green);
        // vehicles 2: intergreen 5 s
        assert_eq!(seq.state(1), SignalState::Red);
        assert_eq!(seq.current_stage(), None);
        seq.tick(&cfg, 13_000, Some(1));
        assert_eq!(seq.state(1), SignalState::Green);
        assert_eq!(seq.current_stage(), Some(1));
    }

    #[test]
    fn restart_after_flash_holds_all_red_for_the_longest_intergreen() {
        let cfg = crossing(); // longest intergreen 7 s > clearance 4 s + start-up 2 s
        let mut seq = Sequencer::restart_from_flash(&cfg, 0);
        seq.tick(&cfg, 6_999, Some(0));
        assert_eq!(seq.state(0), SignalState::Red);
        seq.tick(&cfg, 7_000, Some(0));
        assert_eq!(seq.state(0), SignalState::RedAmber);
    }

    #[test]
    fn pedestrians_clear_with_flashing_green() {
        let cfg = crossing();
        let mut seq = Sequencer::new(&cfg, 0);
        run_until(&mut seq, &cfg, 0, 2_000, Some(1));
        assert_eq!(seq.state(2), SignalState::Green);
        seq.tick(&cfg, 8_000, Some(0));
        assert_eq!(seq.state(2), SignalState::FlashingGreen);
        seq.tick(&cfg, 12_000, Some(0));
        assert_eq!(seq.state(2), SignalState::Red);
    }

    #[test]
    fn max_green_forces_the_next_stage_even_without_a_request() {
        let cfg = crossing();
        let mut seq = Sequencer::new(&cfg, 0);
        run_until(&mut seq, &cfg, 0, 62_900, None);
        assert_eq!(seq.state(0), SignalState::Green);
        seq.tick(&cfg, 63_000, None);
        assert_eq!(seq.state(0), SignalState::Yellow);
        assert!(seq.max_green_forced());
        assert_eq!(seq.target_stage(), Some(1));
    }
}
