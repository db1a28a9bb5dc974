//! Property tests of the safety core (`signal::safety::Engine`) and of the signal controller
//! built on it, checked by an observer that is independent of both: it sees only the aspects
//! over time and the configuration.
//!
//! The core: for random intersections (also with a stage that puts conflicting groups green
//! together), random stage requests (valid and not), a random clock (steps back, long jumps)
//! and a random start (power-up all-red, or taking over a running stage): no conflicting
//! groups are ever open together, minimum green, clearance (yellow / flashing green) and
//! intergreen (all-red) are never cut, sequences are the legal ones, and maximum green is
//! honoured (on valid intersections). The gateway's supervisor is this same core.
//!
//! The controller:
//! For random valid intersections and random sequences of gateway commands (valid and not),
//! detector inputs and tick timings: no conflicting groups are ever open together, minimum
//! green, clearance (yellow / flashing green) and intergreen are never cut, sequences are the
//! legal ones, the conflict monitor never trips, and the watchdog always takes over after its
//! timeout (and hands back when commands return).

use citygate_firmware::signal::safety::Engine;
use citygate_firmware::signal::{
    Command, ControllerConfig, GroupConfig, GroupKind, GroupSet, IntergreenMatrix, Mode, Plan,
    SignalController, SignalState,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct GroupSpec {
    pedestrian: bool,
    min_green_ms: u32,
    extra_max_ms: Option<u32>,
    clearance_ms: u32,
    red_amber_ms: u32,
}

#[derive(Debug, Clone)]
struct Intersection {
    groups: Vec<GroupSpec>,
    /// (a, b, all-red a→b, all-red b→a) for each conflicting pair
    conflicts: Vec<(usize, usize, u32, u32)>,
    stage_orders: Vec<Vec<usize>>,
    plan_greens: Vec<u32>,
    watchdog_ms: u32,
}

fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (
        any::<bool>(),
        1_000u32..8_000,
        prop::option::of(0u32..20_000),
        1_000u32..5_000,
        prop_oneof![Just(0u32), 500u32..2_000],
    )
        .prop_map(
            |(pedestrian, min_green_ms, extra_max_ms, clearance_ms, red_amber_ms)| GroupSpec {
                pedestrian,
                min_green_ms,
                extra_max_ms,
                clearance_ms,
                red_amber_ms: if pedestrian { 0 } else { red_amber_ms },
            },
        )
}

fn intersection() -> impl Strategy<Value = Intersection> {
    prop::collection::vec(group_spec(), 2..7).prop_flat_map(|groups| {
        let n = groups.len();
        let pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .collect();
        let np = pairs.len();
        (
            Just(groups),
            prop::collection::vec((any::<bool>(), 0u32..3_000, 0u32..3_000), np).prop_map(
                move |v| {
                    pairs
                        .iter()
                        .zip(v)
                        .filter(|(_, (c, _, _))| *c)
                        .map(|(&(a, b), (_, x, y))| (a, b, x, y))
                        .collect::<Vec<_>>()
                },
            ),
            prop::collection::vec(
                Just(()).prop_flat_map(move |_| Just((0..n).collect::<Vec<_>>()).prop_shuffle()),
                1..5,
            ),
            prop::collection::vec(5_000u32..40_000, 4),
            2_000u32..30_000,
        )
            .prop_map(
                |(groups, conflicts, stage_orders, plan_greens, watchdog_ms)| Intersection {
                    groups,
                    conflicts,
                    stage_orders,
                    plan_greens,
                    watchdog_ms,
                },
            )
    })
}

impl Intersection {
    fn config(&self) -> ControllerConfig {
        let mut cfg = ControllerConfig::default();
        for g in &self.groups {
            let max = g.extra_max_ms.map_or(0, |x| g.min_green_ms + x);
            let c = if g.pedestrian {
                GroupConfig::pedestrian(g.min_green_ms, max, g.clearance_ms)
            } else {
                GroupConfig::vehicle(g.min_green_ms, max, g.clearance_ms)
                    .with_red_amber(g.red_amber_ms)
            };
            cfg.groups.push(c).expect("fits");
        }
        let mut ig = IntergreenMatrix::new();
        for &(a, b, ab, ba) in &self.conflicts {
            ig.set_conflict(
                a,
                b,
                self.groups[a].clearance_ms + ab,
                self.groups[b].clearance_ms + ba,
            );
        }
        // each stage: groups in a shuffled order, added greedily when they conflict with none
        for order in &self.stage_orders {
            let mut stage = GroupSet::EMPTY;
            for &g in order {
                if stage.iter().all(|s| !ig.conflicts(s, g)) {
                    stage = stage.with(g);
                }
            }
            cfg.stages.push(stage).expect("fits");
        }
        cfg.intergreen = ig;
        let k = cfg.stages.len();
        let steps: Vec<(usize, u32)> = (0..k).map(|s| (s, self.plan_greens[s % 4])).collect();
        cfg.plans
            .push(Plan::from_steps(&steps).expect("fits"))
            .expect("fits");
        cfg.plans
            .push(Plan::from_steps(&steps.iter().rev().copied().collect::<Vec<_>>()).expect("fits"))
            .expect("fits");
        cfg.fallback_plan = 0;
        cfg.watchdog_timeout_ms = self.watchdog_ms;
        cfg.startup_all_red_ms = 2_000;
        cfg.detectors = 2;
        cfg.detector_debounce_ms = 50;
        cfg.detector_interval_ms = 30_000;
        cfg
    }
}

#[derive(Debug, Clone)]
enum Action {
    Nothing,
    Command {
        stage: Option<usize>,
        hold: bool,
        plan: Option<usize>,
        repeat_sequence: bool,
    },
    Detector {
        index: usize,
        occupied: bool,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::Nothing),
        4 => (prop::option::of(0usize..6), prop::bool::weighted(0.2), prop::option::weighted(0.2, 0usize..3), prop::bool::weighted(0.1))
            .prop_map(|(stage, hold, plan, repeat_sequence)| Action::Command { stage, hold, plan, repeat_sequence }),
        2 => (0usize..3, any::<bool>()).prop_map(|(index, occupied)| Action::Detector { index, occupied }),
    ]
}

/// Ticks: mostly short steps, sometimes long silences that let the watchdog expire.
fn step() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1u64..1_500, 1 => 1_500u64..40_000]
}

/// What the observer remembers of a group.
#[derive(Debug, Clone, Copy)]
struct Seen {
    state: SignalState,
    since: u64,
    green_end: Option<u64>,
}

struct Observer {
    cfg: ControllerConfig,
    seen: Vec<Seen>,
    /// Longest delay of one forced stage change after it falls due: a running transition
    /// (intergreen, red-amber), then the minimum green of the other leaving groups.
    max_delay_ms: u64,
    /// Longest gap between ticks while each group has been green: a transition or minimum
    /// green that falls due between two ticks completes only at the later tick.
    gap_in_green: Vec<u64>,
    last_tick: u64,
    /// Whether maximum green is checked (not for a configuration with an invalid stage, whose
    /// transition never completes).
    check_max_green: bool,
}

impl Observer {
    fn new(cfg: ControllerConfig, now: u64) -> Self {
        let seen = cfg
            .groups
            .iter()
            .map(|_| Seen {
                state: SignalState::Red,
                since: now,
                green_end: None,
            })
            .collect();
        let n = cfg.groups.len();
        let max_ig = (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .filter_map(|(a, b)| cfg.intergreen.get(a, b))
            .max()
            .unwrap_or(0);
        let max_of =
            |f: fn(&GroupConfig) -> u32| cfg.groups.iter().map(f).max().unwrap_or(0) as u64;
        let max_delay_ms = max_ig as u64
            + max_of(|g| g.red_amber_ms)
            + max_of(|g| g.min_green_ms)
            + max_of(|g| g.clearance_ms);
        Observer {
            max_delay_ms,
            gap_in_green: vec![0; n],
            last_tick: now,
            cfg,
            seen,
            check_max_green: true,
        }
    }

    /// An observer that starts from `states` shown since `since`.
    fn starting(cfg: ControllerConfig, states: &[SignalState], since: u64, now: u64) -> Self {
        let mut o = Observer::new(cfg, now);
        for (seen, &state) in o.seen.iter_mut().zip(states) {
            seen.state = state;
            seen.since = since;
        }
        o
    }

    fn observe(&mut self, states: &[SignalState], now: u64) -> Result<(), String> {
        let n = self.cfg.groups.len();
        if states.len() != n {
            return Err(format!("{} states for {n} groups", states.len()));
        }
        for a in 0..n {
            for b in a + 1..n {
                if self.cfg.intergreen.conflicts(a, b) && states[a].is_open() && states[b].is_open()
                {
                    return Err(format!(
                        "t={now}: conflicting groups {a} {:?} and {b} {:?} open",
                        states[a], states[b]
                    ));
                }
            }
        }
        for (g, &new) in states.iter().enumerate() {
            let old = self.seen[g];
            if new == old.state {
                continue;
            }
            let cfg = self.cfg.groups[g];
            let held = now - old.since;
            let clearance = match cfg.kind {
                GroupKind::Vehicle => SignalState::Yellow,
                GroupKind::Pedestrian => SignalState::FlashingGreen,
            };
            let mut green_end = old.green_end;
            match (old.state, new) {
                (SignalState::Green, s) if s == clearance => {
                    if held < cfg.min_green_ms as u64 {
                        return Err(format!(
                            "t={now}: group {g} green {held} ms < minimum {}",
                            cfg.min_green_ms
                        ));
                    }
                    green_end = Some(now);
                }
                (s, SignalState::Red) if s == clearance => {
                    if held < cfg.clearance_ms as u64 {
                        return Err(format!(
                            "t={now}: group {g} clearance {held} ms < {}",
                            cfg.clearance_ms
                        ));
                    }
                }
                (SignalState::Red, SignalState::RedAmber)
                    if cfg.kind == GroupKind::Vehicle && cfg.red_amber_ms > 0 =>
                {
                    self.intergreen(g, now)?
                }
                (SignalState::Red, SignalState::Green) if cfg.red_amber_ms == 0 => {
                    self.intergreen(g, now)?
                }
                (SignalState::RedAmber, SignalState::Green) => {
                    if held < cfg.red_amber_ms as u64 {
                        return Err(format!("t={now}: group {g} red-amber {held} ms"));
                    }
                }
                (from, to) => {
                    return Err(format!(
                        "t={now}: group {g} ({:?}) went {from:?} -> {to:?}",
                        cfg.kind
                    ))
                }
            }
            self.seen[g] = Seen {
                state: new,
                since: now,
                green_end,
            };
        }
        self.max_green(now)
    }

    /// A group green past its maximum green must be ended by forced stage changes: each
    /// change ends at least one expired green, so at most one change per group is needed, each
    /// within `max_delay_ms` plus two tick gaps (the change and the transition end happen at
    /// ticks). A group green in every stage cannot be ended and is not checked.
    fn max_green(&mut self, now: u64) -> Result<(), String> {
        let gap = now - self.last_tick;
        self.last_tick = now;
        let n = self.seen.len() as u64;
        for (g, seen) in self.seen.iter().enumerate() {
            if seen.state != SignalState::Green {
                self.gap_in_green[g] = 0;
                continue;
            }
            self.gap_in_green[g] = self.gap_in_green[g].max(gap);
            let max = self.cfg.groups[g].max_green_ms as u64;
            let releasable = self.cfg.stages.iter().any(|s| !s.contains(g));
            let bound = max + n * (self.max_delay_ms + 2 * self.gap_in_green[g]);
            if self.check_max_green && max > 0 && releasable && now - seen.since > bound {
                return Err(format!(
                    "t={now}: group {g} green {} ms, maximum green {max}, bound {bound}",
                    now - seen.since
                ));
            }
        }
        Ok(())
    }

    fn intergreen(&self, entering: usize, now: u64) -> Result<(), String> {
        for c in 0..self.seen.len() {
            if let (Some(ig), Some(end)) =
                (self.cfg.intergreen.get(c, entering), self.seen[c].green_end)
            {
                if now - end < ig as u64 {
                    return Err(format!("t={now}: group {entering} entered {} ms after group {c}'s green, intergreen {ig}", now - end));
                }
            }
        }
        Ok(())
    }
}

/// The clock the core is given: mostly forward, sometimes back, sometimes a long jump.
fn clock_step() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 1i64..1_500, 1 => -20_000i64..0, 1 => 1_500i64..40_000]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn core_is_safe_for_any_request_clock_and_start(
        x in intersection(),
        invalid_stage in prop::bool::weighted(0.2),
        resume in prop::option::of((0usize..6, 0u64..90_000)),
        events in prop::collection::vec((clock_step(), prop::option::of(0usize..7)), 1..300),
    ) {
        let mut cfg = x.config();
        if invalid_stage {
            // every group green together: conflicting whenever any pair conflicts
            cfg.stages.push(GroupSet::first(cfg.groups.len())).expect("fits");
        }
        let n = cfg.groups.len();
        let rules = cfg.rules();
        let start = 100_000u64;
        let resumed = resume.and_then(|(s, g)| Engine::resume(rules, s, start - g, start).map(|e| (e, start - g)));
        let (mut engine, mut obs) = match resumed {
            Some((e, since)) => {
                let mut st = vec![SignalState::Red; n];
                e.states(&mut st);
                // a resumed stage is never one with conflicting groups
                for a in 0..n {
                    for b in a + 1..n {
                        prop_assert!(!(cfg.intergreen.conflicts(a, b) && st[a].is_open() && st[b].is_open()));
                    }
                }
                let o = Observer::starting(cfg.clone(), &st, since, start);
                (e, o)
            }
            None => (Engine::new(rules, start, 2_000, 0), Observer::new(cfg.clone(), start)),
        };
        obs.check_max_green = !invalid_stage;
        let mut clock = start as i64;
        let mut trace: Vec<String> = Vec::new();
        for (dt, want) in events {
            clock = (clock + dt).max(0);
            let now = clock as u64;
            let asked = want.map(|s| engine.request(rules, s, now));
            engine.tick(rules, now);
            let mut st = vec![SignalState::Red; n];
            engine.states(&mut st);
            trace.push(format!("clock {now} core {} {:?} asked {want:?} -> {asked:?} {st:?}", engine.now(), engine.phase()));
            // durations are measured on the core's clock, which never goes back
            if let Err(e) = obs.observe(&st, engine.now()) {
                let tail = trace.len().saturating_sub(30);
                return Err(TestCaseError::fail(format!("{e}\nlast ticks:\n{}", trace[tail..].join("\n"))));
            }
        }
    }
}

proptest! {
    // 200 cases by default; PROPTEST_CASES=n for a longer search
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)))]

    #[test]
    fn lamps_stay_safe_and_watchdog_takes_over(x in intersection(), events in prop::collection::vec((step(), action()), 1..250)) {
        let cfg = x.config();
        prop_assert_eq!(cfg.validate(), Ok(()));
        let mut ctrl = SignalController::new(cfg.clone(), 0).expect("valid config");
        let mut obs = Observer::new(cfg.clone(), 0);
        let mut now = 0u64;
        let mut sequence = 0u16;
        let mut last_accepted: Option<u64> = None;
        let mut trace: Vec<String> = Vec::new();
        for (dt, act) in events {
            now += dt;
            match act {
                Action::Nothing => {}
                Action::Command { stage, hold, plan, repeat_sequence } => {
                    if !repeat_sequence {
                        sequence = sequence.wrapping_add(1);
                    }
                    let ok = ctrl.command(Command { stage, hold, plan, sequence }, now).is_ok();
                    let valid = stage.is_none_or(|s| s < cfg.stages.len()) && plan.is_none_or(|p| p < cfg.plans.len());
                    // a command is accepted exactly when it is valid and its sequence is new
                    let new_seq = ctrl.status().last_sequence == Some(sequence);
                    prop_assert!(!ok || (valid && new_seq));
                    if ok {
                        last_accepted = Some(now);
                    }
                }
                Action::Detector { index, occupied } => {
                    let exists = ctrl.detectors_mut().sample(index, occupied, now);
                    prop_assert_eq!(exists, index < 2);
                }
            }
            ctrl.tick(now);
            let status = ctrl.status();
            prop_assert_eq!(status.fault, None, "conflict monitor tripped at t={}", now);
            trace.push(format!("t={now} {:?} stage {:?}->{:?} plan {:?} {:?}", status.mode, status.current_stage, status.target_stage, status.active_plan, ctrl.group_states()));
            if let Err(e) = obs.observe(ctrl.group_states(), now) {
                let tail = trace.len().saturating_sub(40);
                return Err(TestCaseError::fail(format!("{e}\nlast ticks:\n{}", trace[tail..].join("\n"))));
            }
            let silent = last_accepted.is_none_or(|t| now - t >= cfg.watchdog_timeout_ms as u64);
            if status.mode != Mode::Startup {
                prop_assert_eq!(silent, status.mode == Mode::Fallback, "t={} mode {:?} last command {:?}", now, status.mode, last_accepted);
            }
        }
    }
}

/// A greedy controller "attacker": requests every stage as often as it can; the observer must
/// still see every minimum green, clearance and intergreen.
#[test]
fn rapid_stage_requests_on_a_fixed_crossing() {
    let x = Intersection {
        groups: vec![
            GroupSpec {
                pedestrian: false,
                min_green_ms: 5_000,
                extra_max_ms: Some(10_000),
                clearance_ms: 3_000,
                red_amber_ms: 1_000,
            },
            GroupSpec {
                pedestrian: false,
                min_green_ms: 5_000,
                extra_max_ms: None,
                clearance_ms: 3_000,
                red_amber_ms: 0,
            },
            GroupSpec {
                pedestrian: true,
                min_green_ms: 6_000,
                extra_max_ms: None,
                clearance_ms: 4_000,
                red_amber_ms: 0,
            },
        ],
        conflicts: vec![(0, 1, 2_000, 2_000), (0, 2, 1_000, 3_000)],
        stage_orders: vec![vec![0], vec![1, 2]],
        plan_greens: vec![10_000; 4],
        watchdog_ms: 5_000,
    };
    let cfg = x.config();
    let mut ctrl = SignalController::new(cfg.clone(), 0).expect("valid");
    let mut obs = Observer::new(cfg, 0);
    let mut greens = 0;
    for i in 0..3_000u64 {
        let now = i * 100;
        ctrl.command(
            Command {
                stage: Some((i % 2) as usize),
                hold: false,
                plan: None,
                sequence: i as u16,
            },
            now,
        )
        .expect("valid");
        ctrl.tick(now);
        if ctrl.group_states()[0] == SignalState::Green && obs.seen[0].state != SignalState::Green {
            greens += 1;
        }
        obs.observe(ctrl.group_states(), now).expect("safe");
        assert_eq!(ctrl.status().fault, None);
    }
    // the controller did actually move: group 1 got green many times in 300 s
    assert!(greens > 5, "only {greens} greens");
}
