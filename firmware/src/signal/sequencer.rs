//! The stage sequencer: drives every signal group through its sequence and moves between
//! stages only through a safe transition — leaving groups keep minimum green, then clear
//! (yellow / flashing green), and entering groups wait for every conflicting group to be red
//! and its intergreen to pass. Maximum green forces a move to the next stage.

use citygate_protocols::signal::{GroupKind, SignalState};

use super::plan::ControllerConfig;
use super::{GroupSet, MAX_GROUPS};

#[derive(Debug, Clone, Copy)]
struct GroupRt {
    state: SignalState,
    /// When the current state began.
    since: u64,
    /// When the group last turned green.
    green_start: u64,
    /// When the group's last green ended (start of its clearance).
    green_end: Option<u64>,
}

/// Where the sequencer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// All red (after clearing) until `until`.
    Startup { until: u64 },
    /// All groups of `stage` green, all others red, since `since`.
    Running { stage: usize, since: u64 },
    /// Moving to stage `to` since `since`.
    Transition { to: usize, since: u64 },
}

/// The per-group state machines and the stage logic. Time is passed in.
#[derive(Debug, Clone)]
pub struct Sequencer {
    groups: heapless::Vec<GroupRt, MAX_GROUPS>,
    phase: Phase,
    max_green_forced: bool,
}

fn clearance_of(kind: GroupKind) -> SignalState {
    kind.clearance_state()
}

impl Sequencer {
    /// Power-up: every group red, all-red for the configured start-up time.
    pub fn new(cfg: &ControllerConfig, now: u64) -> Self {
        let mut groups = heapless::Vec::new();
        for _ in cfg.groups.iter() {
            let _ = groups.push(GroupRt {
                state: SignalState::Red,
                since: now,
                green_start: now,
                green_end: None,
            });
        }
        Sequencer {
            groups,
            phase: Phase::Startup {
                until: now + cfg.startup_all_red_ms as u64,
            },
            max_green_forced: false,
        }
    }

    /// Leaving flashing operation: every group red for the longest clearance plus the start-up
    /// all-red time, and at least the longest intergreen (a green may have been cut by the
    /// fault). Conflicting yellows together would look like a conflict to the monitor, so
    /// there is no steady-yellow step.
    pub fn restart_from_flash(cfg: &ControllerConfig, now: u64) -> Self {
        let mut seq = Sequencer::new(cfg, now);
        let all_red = (cfg.max_clearance_ms() as u64 + cfg.startup_all_red_ms as u64)
            .max(cfg.max_intergreen_ms() as u64);
        seq.phase = Phase::Startup {
            until: now + all_red,
        };
        seq
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The stage running (all its groups green), if not in a transition.
    pub fn current_stage(&self) -> Option<usize> {
        match self.phase {
            Phase::Running { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// The stage running or being moved to.
    pub fn target_stage(&self) -> Option<usize> {
        match self.phase {
            Phase::Running { stage, .. } => Some(stage),
            Phase::Transition { to, .. } => Some(to),
            Phase::Startup { .. } => None,
        }
    }

    /// Time since the current phase began.
    pub fn phase_elapsed(&self, now: u64) -> u64 {
        match self.phase {
            Phase::Running { since, .. } | Phase::Transition { since, .. } => {
                now.saturating_sub(since)
            }
            Phase::Startup { .. } => 0,
        }
    }

    /// Whether the last stage change was forced by a maximum green.
    pub fn max_green_forced(&self) -> bool {
        self.max_green_forced
    }

    /// State of group `g` (red for an unknown group).
    pub fn state(&self, g: usize) -> SignalState {
        self.groups.get(g).map_or(SignalState::Red, |r| r.state)
    }

    /// Writes the state of every group into `out` (as many as fit).
    pub fn states(&self, out: &mut [SignalState]) {
        for (o, g) in out.iter_mut().zip(self.groups.iter()) {
            *o = g.state;
        }
    }

    /// Advances to `now`. `desired` is the stage wanted (0-based); `None` keeps the stage.
    /// A transition in progress is always completed before a new one starts.
    pub fn tick(&mut self, cfg: &ControllerConfig, now: u64, desired: Option<usize>) {
        self.progress_clearances(cfg, now);
        match self.phase {
            Phase::Startup { until } => {
                if now >= until && self.groups.iter().all(|g| g.state == SignalState::Red) {
                    let to = desired.filter(|&s| s < cfg.stages.len()).unwrap_or(0);
                    self.phase = Phase::Transition { to, since: now };
                }
            }
            Phase::Running { stage, .. } => self.maybe_leave(cfg, now, stage, desired),
            Phase::Transition { .. } => {}
        }
        if let Phase::Transition { to, .. } = self.phase {
            self.enter(cfg, now, to);
        }
    }

    /// Ends clearances and red-amber periods that have run their time.
    fn progress_clearances(&mut self, cfg: &ControllerConfig, now: u64) {
        for (g, c) in self.groups.iter_mut().zip(cfg.groups.iter()) {
            let elapsed = now.saturating_sub(g.since);
            match g.state {
                SignalState::Yellow | SignalState::FlashingGreen
                    if elapsed >= c.clearance_ms as u64 =>
                {
                    g.state = SignalState::Red;
                    g.since = now;
                }
                SignalState::RedAmber if elapsed >= c.red_amber_ms as u64 => {
                    g.state = SignalState::Green;
                    g.since = now;
                    g.green_start = now;
                }
                _ => {}
            }
        }
    }

    /// In a running stage: applies maximum green, then starts the transition to the wanted
    /// stage once every leaving group has had its minimum green.
    fn maybe_leave(
        &mut self,
        cfg: &ControllerConfig,
        now: u64,
        stage: usize,
        desired: Option<usize>,
    ) {
        let Some(&current) = cfg.stages.get(stage) else {
            return;
        };
        let mut want = desired.filter(|&s| s < cfg.stages.len()).unwrap_or(stage);
        let mut forced = false;
        // groups of this stage past their maximum green
        let mut expired = GroupSet::EMPTY;
        for g in current.iter() {
            if let (Some(rt), Some(c)) = (self.groups.get(g), cfg.groups.get(g)) {
                if c.max_green_ms != 0
                    && now.saturating_sub(rt.green_start) >= c.max_green_ms as u64
                {
                    expired = expired.with(g);
                }
            }
        }
        let wanted_set = cfg.stages.get(want).copied().unwrap_or_default();
        if wanted_set.bits() & expired.bits() != 0 {
            // the next stage in cyclic order that ends every expired green; failing that, the
            // next that ends some of them (the others follow on the next forced change). A group
            // green in every stage cannot be ended by a stage change and keeps its green.
            let n = cfg.stages.len();
            let overlap = |s: usize| {
                cfg.stages
                    .get(s)
                    .map_or(expired.bits(), |st| st.bits() & expired.bits())
            };
            let order = || (1..n).map(|k| (stage + k) % n);
            let next = order()
                .find(|&s| overlap(s) == 0)
                .or_else(|| order().find(|&s| overlap(s) != expired.bits()));
            if let Some(next) = next {
                want = next;
                forced = true;
            }
        }
        if want == stage {
            return;
        }
        let Some(&target) = cfg.stages.get(want) else {
            return;
        };
        let leaving = GroupSet::from_bits(current.bits() & !target.bits());
        let min_green_done =
            leaving
                .iter()
                .all(|g| match (self.groups.get(g), cfg.groups.get(g)) {
                    (Some(rt), Some(c)) => {
                        now.saturating_sub(rt.green_start) >= c.min_green_ms as u64
                    }
                    _ => true,
                });
        if !min_green_done {
            return;
        }
        for g in leaving.iter() {
            if let (Some(rt), Some(c)) = (self.groups.get_mut(g), cfg.groups.get(g)) {
                rt.state = clearance_of(c.kind);
                rt.since = now;
                rt.green_end = Some(now);
            }
        }
        self.max_green_forced = forced;
        self.phase = Phase::Transition {
            to: want,
            since: now,
        };
    }

    /// In a transition: lets each entering group start once every conflicting group is red and
    /// its intergreen has passed; completes the transition when the stage is fully green.
    fn enter(&mut self, cfg: &ControllerConfig, now: u64, to: usize) {
        let Some(&target) = cfg.stages.get(to) else {
            return;
        };
        for g in target.iter() {
            if self.state(g) != SignalState::Red {
                continue;
            }
            let clear = (0..self.groups.len()).all(|c| {
                let Some(ig) = cfg.intergreen.get(c, g) else {
                    return !cfg.intergreen.conflicts(c, g);
                };
                let Some(rt) = self.groups.get(c) else {
                    return true;
                };
                rt.state == SignalState::Red
                    && rt
                        .green_end
                        .is_none_or(|end| now.saturating_sub(end) >= ig as u64)
            });
            if !clear {
                continue;
            }
            if let (Some(rt), Some(c)) = (self.groups.get_mut(g), cfg.groups.get(g)) {
                rt.since = now;
                if c.red_amber_ms > 0 {
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{GroupConfig, IntergreenMatrix, Plan};
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
