//! Property tests of the conflict monitor against arbitrary lamp sequences, and of detector
//! debouncing against arbitrary loop signals.

use citygate_firmware::detector::Detector;
use citygate_firmware::signal::{
    ConflictMonitor, ControllerConfig, GroupConfig, GroupSet, IntergreenMatrix, Plan, SignalState,
};
use proptest::prelude::*;

/// Vehicle groups 0 and 1 conflict (intergreen 8 s both ways), pedestrian group 2 conflicts
/// with 0 (9 s from 0, 10 s from 2). Long all-red times leave room to open too early.
fn config() -> ControllerConfig {
    let mut cfg = ControllerConfig::default();
    cfg.groups
        .push(GroupConfig::vehicle(5_000, 0, 3_000))
        .expect("fits");
    cfg.groups
        .push(GroupConfig::vehicle(5_000, 0, 3_000))
        .expect("fits");
    cfg.groups
        .push(GroupConfig::pedestrian(4_000, 0, 5_000))
        .expect("fits");
    let mut ig = IntergreenMatrix::new();
    ig.set_conflict(0, 1, 8_000, 8_000);
    ig.set_conflict(0, 2, 9_000, 10_000);
    cfg.intergreen = ig;
    cfg.stages.push(GroupSet::of(&[0])).expect("fits");
    cfg.stages.push(GroupSet::of(&[1, 2])).expect("fits");
    cfg.plans
        .push(Plan::from_steps(&[(0, 10_000), (1, 10_000)]).expect("fits"))
        .expect("fits");
    cfg.watchdog_timeout_ms = 1_000;
    cfg.detector_interval_ms = 1_000;
    cfg
}

fn state() -> impl Strategy<Value = SignalState> {
    prop_oneof![
        Just(SignalState::Red),
        Just(SignalState::RedAmber),
        Just(SignalState::Green),
        Just(SignalState::Yellow),
        Just(SignalState::FlashingGreen),
    ]
}

/// What the group chosen at a step does: mostly take the next legal aspect (so that deep,
/// plausible sequences are reached), sometimes keep it or jump to any aspect.
#[derive(Debug, Clone, Copy)]
enum Move {
    Keep,
    Next,
    Jump(SignalState),
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![2 => Just(Move::Keep), 10 => Just(Move::Next), 1 => state().prop_map(Move::Jump)]
}

fn apply(m: Move, s: SignalState, pedestrian: bool, skip_red_amber: bool) -> SignalState {
    use SignalState::*;
    match m {
        Move::Keep => s,
        Move::Jump(to) => to,
        Move::Next => match (s, pedestrian) {
            (Red, false) if !skip_red_amber => RedAmber,
            (Red, _) | (RedAmber, _) => Green,
            (Green, false) => Yellow,
            (Green, true) => FlashingGreen,
            _ => Red,
        },
    }
}

proptest! {
    /// Whenever two conflicting groups are open together, or a group enters green before the
    /// intergreen from a conflicting group's last green has passed, the monitor reports a
    /// fault at that tick or before.
    #[test]
    fn monitor_catches_every_conflict_and_intergreen_cut(steps in prop::collection::vec((1u64..10_000, 0usize..3, moves(), any::<bool>()), 1..60)) {
        let cfg = config();
        let mut m = ConflictMonitor::new(&cfg, 0);
        let mut now = 0;
        let mut prev = [SignalState::Red; 3];
        let mut green_end: [Option<u64>; 3] = [None; 3];
        for (dt, group, mv, skip) in steps {
            now += dt;
            let mut s = prev;
            s[group] = apply(mv, prev[group], group == 2, skip);
            let verdict = m.check(&s, now);
            let conflict = (0..3).any(|x| (x + 1..3).any(|y| cfg.intergreen.conflicts(x, y) && s[x].is_open() && s[y].is_open()));
            let cut = (0..3).any(|g| {
                !prev[g].is_open() && s[g].is_open() && (0..3).any(|c| match (cfg.intergreen.get(c, g), green_end[c]) {
                    (Some(ig), Some(end)) => now - end < ig as u64,
                    _ => false,
                })
            });
            if conflict || cut {
                prop_assert!(verdict.is_err(), "t={} {:?} after {:?} not flagged", now, s, prev);
            }
            if verdict.is_err() {
                break; // the controller latches here
            }
            for g in 0..3 {
                if prev[g] == SignalState::Green && s[g] != SignalState::Green {
                    green_end[g] = Some(now);
                }
            }
            prev = s;
        }
    }

    /// A pulse is counted exactly when it lasts longer than the debounce time and the loop was
    /// free for longer than the debounce time before it; occupancy is then exact.
    #[test]
    fn detector_counts_debounced_pulses(segments in prop::collection::vec(prop_oneof![(1u64..400, 1u64..400), (101u64..400, 101u64..400)], 1..40)) {
        let debounce = 100;
        let mut d = Detector::new(debounce, 0);
        let mut t = 0;
        let mut expected = 0u16;
        let mut occupied_ms = 0u64;
        // sample every 1 ms, as a fast input poll would
        for &(free, on) in &segments {
            for _ in 0..free {
                d.sample(false, t);
                t += 1;
            }
            for _ in 0..on {
                d.sample(true, t);
                t += 1;
            }
            // sampled every 1 ms, a level is seen stable for (length − 1) ms; with gaps and
            // pulses all longer than the debounce the debounced signal follows the raw one
            if free > debounce as u64 && on > debounce as u64 {
                expected += 1;
                occupied_ms += on;
            }
        }
        // free long enough for the last release to be confirmed
        for _ in 0..=debounce {
            d.sample(false, t);
            t += 1;
        }
        let all_clean = segments.iter().all(|&(f, o)| f > debounce as u64 && o > debounce as u64);
        let iv = d.close_interval(t);
        if all_clean {
            prop_assert_eq!(iv.count, expected);
            prop_assert_eq!(iv.occupancy_permille as u64, occupied_ms * 1000 / t);
        } else {
            // short pulses can merge or vanish, never multiply
            prop_assert!(iv.count as usize <= segments.len());
        }
    }
}

#[test]
fn monitor_flags_a_conflicting_green_inside_the_all_red() {
    use SignalState::*;
    let cfg = config();
    let mut m = ConflictMonitor::new(&cfg, 0);
    for (t, s) in [
        (1_000, [RedAmber, Red, Red]),
        (2_000, [Green, Red, Red]),
        (8_000, [Yellow, Red, Red]),
        (12_000, [Red, Red, Red]),
    ] {
        assert_eq!(m.check(&s, t), Ok(()), "t={t}");
    }
    // 5 s after the end of group 0's green; the intergreen is 8 s
    assert!(m.check(&[Red, Green, Red], 13_000).is_err());
}
