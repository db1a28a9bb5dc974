//! Test intersections shared by the signal tests: a two-stage crossroads written as a user
//! would write it in the gateway config.

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
