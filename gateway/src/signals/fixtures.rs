//! Test intersections shared by the signal tests: a two-stage crossroads written as a user
//! would write it in the gateway config.

use citygate_protocols::signal::SignalState;

use super::config::IntersectionConfig;
use super::model::Intersection;

/// A crossroads: N and S (stage `NS`), E and W (stage `EW`), every N/S group conflicting with
/// every E/W group, 5 s intergreens, one stop-bar detector per group fed by `int-1`.
pub const CROSSROADS: &str = r#"
id = "int-1"
controller = "actuated"
conflicts = [["N", "E"], ["N", "W"], ["S", "E"], ["S", "W"]]

[[signal_group]]
id = "N"
approach = "north"
movements = ["through", "right"]
lanes = ["n_in_0"]
min_green_s = 7.0
max_green_s = 60.0
yellow_s = 3.0

[[signal_group]]
id = "E"
approach = "east"
movements = ["through", "right"]
lanes = ["e_in_0"]
min_green_s = 7.0
max_green_s = 60.0
yellow_s = 3.0

[[signal_group]]
id = "S"
approach = "south"
movements = ["through", "right"]
lanes = ["s_in_0"]
min_green_s = 7.0
max_green_s = 60.0
yellow_s = 3.0

[[signal_group]]
id = "W"
approach = "west"
movements = ["through", "right"]
lanes = ["w_in_0"]
min_green_s = 7.0
max_green_s = 60.0
yellow_s = 3.0

[[stage]]
id = "NS"
green = ["N", "S"]

[[stage]]
id = "EW"
green = ["E", "W"]

[[intergreen]]
from = "N"
to = "E"
seconds = 5.0
[[intergreen]]
from = "E"
to = "N"
seconds = 5.0
[[intergreen]]
from = "N"
to = "W"
seconds = 5.0
[[intergreen]]
from = "W"
to = "N"
seconds = 5.0
[[intergreen]]
from = "S"
to = "E"
seconds = 5.0
[[intergreen]]
from = "E"
to = "S"
seconds = 5.0
[[intergreen]]
from = "S"
to = "W"
seconds = 5.0
[[intergreen]]
from = "W"
to = "S"
seconds = 5.0

[[detector]]
id = "det-n"
kind = "stop_bar"
lanes = ["n_in_0"]
distance_m = 2.0
groups = ["N"]
source = { sensor = "int-1", quantity = "detector_vehicles_1", presence = "detector_occupied_1" }

[[detector]]
id = "det-e"
kind = "stop_bar"
lanes = ["e_in_0"]
distance_m = 2.0
groups = ["E"]
source = { sensor = "int-1", quantity = "detector_vehicles_2", presence = "detector_occupied_2" }

[[detector]]
id = "det-s"
kind = "stop_bar"
lanes = ["s_in_0"]
distance_m = 2.0
groups = ["S"]
source = { sensor = "int-1", quantity = "detector_vehicles_3", presence = "detector_occupied_3" }

[[detector]]
id = "det-w"
kind = "stop_bar"
lanes = ["w_in_0"]
distance_m = 2.0
groups = ["W"]
source = { sensor = "int-1", quantity = "detector_vehicles_4", presence = "detector_occupied_4" }

[[plan]]
id = "flood-detour"
hold = "EW"
"#;

/// Parses an intersection table written without the `intersection.` prefix.
pub fn parse(text: &str) -> IntersectionConfig {
    match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{text}"),
    }
}

/// The crossroads model.
pub fn crossroads() -> Intersection {
    match Intersection::from_config(&parse(CROSSROADS)) {
        Ok(m) => m,
        Err(e) => panic!("{e:?}"),
    }
}

/// The crossroads with a different controller.
pub fn crossroads_with(controller: &str) -> Intersection {
    let text = CROSSROADS.replace(
        "controller = \"actuated\"",
        &format!("controller = \"{controller}\""),
    );
    match Intersection::from_config(&parse(&text)) {
        Ok(m) => m,
        Err(e) => panic!("{e:?}"),
    }
}

/// The shipped four-stage example (`config/examples/intersection-four-stage.toml`): twelve
/// signal groups including pedestrians, loaded through the config loader.
pub fn four_stage() -> Intersection {
    let text = include_str!("../../../config/examples/intersection-four-stage.toml");
    let cfg = match crate::config::load_str(text, "intersection-four-stage.toml") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    match Intersection::from_config(&cfg.intersection[0]) {
        Ok(m) => m,
        Err(e) => panic!("{e:?}"),
    }
}

/// An independent monitor of the safety rules, fed every tick's states.
pub struct Monitor<'a> {
    m: &'a Intersection,
    prev: Vec<SignalState>,
    since: Vec<f64>,
    green_end: Vec<Option<f64>>,
    max_dt: f64,
}

impl<'a> Monitor<'a> {
    pub fn new(m: &'a Intersection, max_dt: f64) -> Self {
        let n = m.groups.len();
        Monitor {
            m,
            prev: vec![SignalState::Red; n],
            since: vec![0.0; n],
            green_end: vec![None; n],
            max_dt,
        }
    }

    pub fn check(&mut self, states: &[SignalState], now: f64) -> Result<(), String> {
        let m = self.m;
        for a in 0..states.len() {
            for b in a + 1..states.len() {
                if m.conflicts[a][b] && states[a].is_open() && states[b].is_open() {
                    return Err(format!("t={now}: conflicting {a} {b} open: {states:?}"));
                }
            }
        }
        for (g, (&s, &p)) in states.iter().zip(self.prev.iter()).enumerate() {
            if s == p {
                if s == SignalState::Green
                    && now - self.since[g] > m.groups[g].max_green_s + self.max_dt + 1e-9
                {
                    return Err(format!("t={now}: group {g} green beyond max green"));
                }
                continue;
            }
            let held = now - self.since[g];
            match (p, s) {
                (SignalState::Green, _) if held + 1e-9 < m.groups[g].effective_min_green_s() => {
                    return Err(format!("t={now}: group {g} green cut after {held} s"));
                }
                (SignalState::Yellow | SignalState::FlashingGreen, _)
                    if held + 1e-9 < m.groups[g].clearance_time_s() =>
                {
                    return Err(format!("t={now}: group {g} clearance cut after {held} s"));
                }
                (SignalState::Green, x) if x != m.groups[g].kind.clearance_state() => {
                    return Err(format!("t={now}: group {g} green to {x:?}"));
                }
                (SignalState::Red, _) => {
                    for c in 0..states.len() {
                        if let (true, Some(end)) = (m.conflicts[c][g], self.green_end[c]) {
                            let ig = m.intergreen[c][g].unwrap_or(f64::INFINITY);
                            if now - end + 1e-9 < ig {
                                return Err(format!(
                                    "t={now}: group {g} starts {} s after {c}, intergreen {ig}",
                                    now - end
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
            if p == SignalState::Green {
                self.green_end[g] = Some(now);
            }
            self.since[g] = now;
        }
        self.prev = states.to_vec();
        Ok(())
    }
}
