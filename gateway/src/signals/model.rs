//! The validated intersection model: signal groups, stages, detectors and plans referenced by
//! index, the conflict and intergreen matrices, and the controller parameters, with the
//! questions the controllers and the supervisor ask of it. Built from an
//! [`IntersectionConfig`](super::config::IntersectionConfig) by [`Intersection::from_config`]
//! (`build`), which returns every problem with its key path (located in the file by the
//! config loader).

pub use citygate_protocols::signal::GroupKind;

use super::config::ControllerKind;

mod build;

/// Most signal groups and stages the citygate signal controller firmware serves.
pub const FIRMWARE_MAX: usize =
    citygate_protocols::registers::signal_controller::MAX_GROUPS as usize;

/// Movements a signal group may serve.
pub const MOVEMENTS: [&str; 7] = [
    "through",
    "left",
    "right",
    "u_turn",
    "partial_left",
    "partial_right",
    "crossing",
];

/// One intersection, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Intersection {
    pub id: String,
    pub groups: Vec<SignalGroup>,
    pub stages: Vec<Stage>,
    /// `[g][h]`: groups g and h must never be green together (symmetric).
    pub conflicts: Vec<Vec<bool>>,
    /// `[from][to]` seconds, `Some` for every conflicting pair.
    pub intergreen: Vec<Vec<Option<f64>>>,
    pub detectors: Vec<Detector>,
    pub params: ControllerParams,
    pub neighbours: Vec<Neighbour>,
    /// Where neighbours' planned outflows enter it (`[[intersection.inflow]]`).
    pub inflows: Vec<Inflow>,
    /// The configured controller.
    pub controller: ControllerKind,
    /// Where stage commands go.
    pub actuation: Actuation,
    /// Named plans (emergency plans).
    pub plans: Vec<Plan>,
}

/// A signal group.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalGroup {
    pub id: String,
    pub approach: String,
    pub movements: Vec<String>,
    pub lanes: Vec<String>,
    pub kind: GroupKind,
    pub min_green_s: f64,
    pub max_green_s: f64,
    pub yellow_s: f64,
    pub red_amber_s: f64,
    pub walk_s: f64,
    pub clearance_s: f64,
    /// Per lane, vehicles per hour of green.
    pub saturation_flow_vph: f64,
}

impl SignalGroup {
    /// The shortest green: minimum green, and for pedestrians at least the walk.
    pub fn effective_min_green_s(&self) -> f64 {
        match self.kind {
            GroupKind::Vehicle => self.min_green_s,
            GroupKind::Pedestrian => self.min_green_s.max(self.walk_s),
        }
    }

    /// How long the clearance aspect after green lasts: yellow, or the pedestrian flashing green.
    pub fn clearance_time_s(&self) -> f64 {
        match self.kind {
            GroupKind::Vehicle => self.yellow_s,
            GroupKind::Pedestrian => self.clearance_s,
        }
    }

    /// Saturation flow of the whole group, vehicles per second of green (at least one lane).
    pub fn saturation_flow_vps(&self) -> f64 {
        self.saturation_flow_vph * self.lanes.len().max(1) as f64 / 3600.0
    }
}

/// A stage: signal groups green together.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub id: String,
    pub groups: Vec<usize>,
}

/// Detector kinds by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorKind {
    StopBar,
    Advance,
    Queue,
}

/// A detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    pub id: String,
    pub kind: DetectorKind,
    pub lanes: Vec<String>,
    pub distance_m: f64,
    pub groups: Vec<usize>,
    /// The readings that feed it, if any.
    pub source: Option<DetectorSource>,
}

/// Where a detector's readings come from.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSource {
    pub sensor: String,
    pub quantity: String,
    pub interval_s: f64,
    pub occupancy: Option<String>,
    pub presence: Option<String>,
}

/// Controller parameters (see `config::IntersectionConfig` for their meaning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerParams {
    pub cycle_min_s: f64,
    pub cycle_max_s: f64,
    pub webster_period_s: f64,
    pub lost_time_s: f64,
    pub saturation_flow_vph: f64,
    pub gap_s: f64,
    pub pressure_margin: f64,
    pub stuck_on_s: f64,
    pub stuck_off_s: f64,
    pub no_data_s: f64,
}

/// A neighbouring intersection reached through `via_group`.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    pub intersection: String,
    pub via_group: usize,
    /// Informational (the receiver's inflow has the travel time used).
    pub travel_s: Option<f64>,
}

/// Longest travel time of an inflow (s): the look-ahead's longest planning horizon; a flow
/// arriving later is never planned for.
pub const MAX_INFLOW_TRAVEL_S: f64 = super::lookahead::core::MAX_HORIZON_S;

/// Where a neighbour's outflow enters this intersection (`[[intersection.inflow]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Inflow {
    /// The neighbour (intersection id) and the signal group its vehicles leave through.
    pub from: String,
    pub from_group: String,
    /// Our signal groups they reach (by index), and how the flow splits over them (weights:
    /// the groups' numbers of lanes, at least one).
    pub groups: Vec<(usize, f64)>,
    /// Seconds from leaving the neighbour's stop line to reaching ours.
    pub travel_s: f64,
}

/// Where stage commands go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actuation {
    /// Nowhere (decisions only).
    None,
    /// The command block of a Modbus signal controller.
    Modbus { device: String },
    /// A topic on the local broker.
    Mqtt { topic: String },
}

/// A named plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: String,
    pub kind: PlanKind,
}

/// What a named plan does.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanKind {
    /// Hold one stage.
    Hold(usize),
    /// A fixed cycle of (stage, green seconds).
    Steps(Vec<(usize, f64)>),
}

impl Intersection {
    /// Seconds from the end of stage `from`'s green to the start of stage `to`'s green (the
    /// largest intergreen from a group losing right of way to a conflicting group gaining it;
    /// 0 if none).
    pub fn stage_intergreen(&self, from: usize, to: usize) -> f64 {
        let (Some(f), Some(t)) = (self.stages.get(from), self.stages.get(to)) else {
            return 0.0;
        };
        let mut worst: f64 = 0.0;
        for &g in f.groups.iter().filter(|g| !t.groups.contains(g)) {
            for &h in t.groups.iter().filter(|h| !f.groups.contains(h)) {
                if let Some(ig) = self
                    .intergreen
                    .get(g)
                    .and_then(|r| r.get(h))
                    .copied()
                    .flatten()
                {
                    worst = worst.max(ig);
                }
            }
        }
        worst
    }

    /// The shortest green of stage `s`: the largest minimum green (or walk) of its groups.
    pub fn stage_min_green(&self, s: usize) -> f64 {
        self.stages.get(s).map_or(0.0, |st| {
            st.groups
                .iter()
                .filter_map(|&g| self.groups.get(g))
                .map(SignalGroup::effective_min_green_s)
                .fold(0.0, f64::max)
        })
    }

    /// The longest green of stage `s`: the smallest maximum green of its groups.
    pub fn stage_max_green(&self, s: usize) -> f64 {
        self.stages.get(s).map_or(f64::INFINITY, |st| {
            st.groups
                .iter()
                .filter_map(|&g| self.groups.get(g))
                .map(|g| g.max_green_s)
                .fold(f64::INFINITY, f64::min)
        })
    }

    /// Index of the stage named `id`.
    pub fn stage_index(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }

    /// Index of the plan named `id`.
    pub fn plan_index(&self, id: &str) -> Option<usize> {
        self.plans.iter().position(|p| p.id == id)
    }

    /// The detectors that count group `g`'s vehicles: its stop-bar detectors, or failing
    /// those its advance detectors, or its queue detectors (so a vehicle is counted once).
    pub fn counting_detectors(&self, g: usize) -> Vec<usize> {
        for kind in [
            DetectorKind::StopBar,
            DetectorKind::Advance,
            DetectorKind::Queue,
        ] {
            let found: Vec<usize> = (0..self.detectors.len())
                .filter(|&d| {
                    self.detectors[d].kind == kind && self.detectors[d].groups.contains(&g)
                })
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// Saturation flow of stage `s`'s vehicle groups together, vehicles per second of green.
    pub fn stage_saturation_vps(&self, s: usize) -> f64 {
        self.stages.get(s).map_or(0.0, |st| {
            st.groups
                .iter()
                .filter_map(|&g| self.groups.get(g))
                .filter(|g| g.kind == GroupKind::Vehicle)
                .map(SignalGroup::saturation_flow_vps)
                .sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{crossroads, parse, CROSSROADS};
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Intersection::from_config(&parse(text)) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_crossroads_builds_an_index_model() {
        let m = crossroads();
        assert_eq!(m.groups.len(), 4);
        assert_eq!(m.stages[0].groups, vec![0, 2]);
        assert_eq!(m.stages[1].groups, vec![1, 3]);
        assert!(m.conflicts[0][1] && m.conflicts[1][0] && !m.conflicts[0][2]);
        assert_eq!(m.intergreen[0][1], Some(5.0));
        assert_eq!(m.intergreen[0][2], None);
        assert_eq!(m.stage_intergreen(0, 1), 5.0);
        assert_eq!(m.stage_intergreen(0, 0), 0.0);
        assert_eq!(m.stage_min_green(0), 7.0);
        assert_eq!(m.stage_max_green(1), 60.0);
        assert_eq!(m.detectors[2].groups, vec![2]);
        assert_eq!(m.plans[0].kind, PlanKind::Hold(1));
        assert_eq!(m.params.gap_s, 3.0, "documented default");
        assert_eq!(m.controller, ControllerKind::Actuated);
        let mp = super::super::fixtures::crossroads_with("max_pressure");
        assert_eq!(mp.controller, ControllerKind::MaxPressure);
        assert_eq!(m.params.cycle_max_s, 120.0, "documented default");
        assert!((m.groups[0].saturation_flow_vps() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_stage_with_conflicting_greens_is_rejected_naming_stage_and_pair() {
        let text = CROSSROADS.replace("green = [\"E\", \"W\"]", "green = [\"E\", \"W\", \"N\"]");
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|m| m.starts_with("intersection.stage[1].green:")
                    && m.contains(
                        "stage `EW` puts conflicting signal groups `E` and `N` green together"
                    )),
            "{p:?}"
        );
    }

    #[test]
    fn a_missing_intergreen_is_rejected_naming_the_pair_and_direction() {
        let text = CROSSROADS.replacen(
            "[[intergreen]]\nfrom = \"E\"\nto = \"S\"\nseconds = 5.0\n",
            "",
            1,
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("intersection.conflicts[2]:")
                && p[0].contains("`S` and `E` have no intergreen from `E` to `S`"),
            "{p:?}"
        );
    }

    #[test]
    fn timings_names_and_references_are_checked() {
        let text = CROSSROADS
            .replacen("max_green_s = 60.0", "max_green_s = 5.0", 1)
            .replacen("seconds = 5.0", "seconds = 2.0", 1)
            .replace("groups = [\"W\"]", "groups = [\"X\"]")
            .replace("hold = \"EW\"", "hold = \"XX\"");
        let p = problems(&text);
        let has = |s: &str| p.iter().any(|m| m.contains(s));
        assert!(
            has("signal_group[0].max_green_s: maximum green 5 s is shorter than minimum green 7 s"),
            "{p:?}"
        );
        assert!(has("intergreen[0].seconds: intergreen from `N` to `E` is 2 s, shorter than the 3 s yellow of `N`"), "{p:?}");
        assert!(has("detector[3].groups: unknown signal group `X`"), "{p:?}");
        assert!(has("plan[0].hold: unknown stage `XX`"), "{p:?}");

        let one_stage = CROSSROADS
            .replacen("[[stage]]\nid = \"EW\"\ngreen = [\"E\", \"W\"]\n", "", 1)
            .replace("hold = \"EW\"", "hold = \"NS\"");
        let p = problems(&one_stage);
        assert!(
            p.iter()
                .any(|m| m.contains("at least 2 stages are needed, found 1")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("signal group `E` is green in no stage")),
            "{p:?}"
        );

        let dup = CROSSROADS.replacen("id = \"W\"\napproach", "id = \"E\"\napproach", 1);
        let p = problems(&dup);
        assert!(
            p.iter()
                .any(|m| m.contains("signal_group[3].id: signal group `E` is defined twice")),
            "{p:?}"
        );

        let look = CROSSROADS.replace("controller = \"actuated\"", "controller = \"look_ahead\"");
        assert!(problems(&look).is_empty(), "look_ahead is available");
    }

    #[test]
    fn intergreen_between_non_conflicting_groups_is_rejected() {
        let text =
            format!("{CROSSROADS}\n[[intergreen]]\nfrom = \"N\"\nto = \"S\"\nseconds = 5.0\n");
        let p = problems(&text);
        assert!(
            p.iter().any(|m| m.contains("`N` and `S` do not conflict")),
            "{p:?}"
        );
    }

    /// `[[intersection.inflow]]`: the split over our groups is by their lanes; every problem
    /// names the intersection and the key.
    #[test]
    fn inflows_are_checked_naming_intersection_and_key() {
        let inflow = |from: &str, from_group: &str, groups: &str, travel: &str| {
            format!("\n[[inflow]]\nfrom = \"{from}\"\nfrom_group = \"{from_group}\"\ngroups = {groups}\ntravel_s = {travel}\n")
        };
        let good = format!(
            "{}{}",
            CROSSROADS.replace("lanes = [\"w_in_0\"]", "lanes = [\"w_in_0\", \"w_in_1\"]"),
            inflow("int-0", "E", "[\"W\", \"S\"]", "18.0")
        );
        let m = match Intersection::from_config(&parse(&good)) {
            Ok(m) => m,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(
            m.inflows,
            [Inflow {
                from: "int-0".into(),
                from_group: "E".into(),
                groups: vec![(3, 2.0), (2, 1.0)],
                travel_s: 18.0,
            }]
        );

        let bad = [
            inflow("int-0", "E", "[\"W\", \"X\"]", "18.0"),
            inflow("int-0", "E", "[\"N\"]", "12.0"),
            inflow("int-9", "E", "[\"N\"]", "0.0"),
            inflow("int-8", "E", "[\"N\"]", "900.0"),
            inflow("int-1", "E", "[\"N\"]", "10.0"),
            inflow("int-7", "E", "[]", "10.0"),
            inflow("int-6", "E", "[\"N\", \"N\"]", "10.0"),
        ]
        .concat();
        let p = problems(&format!("{CROSSROADS}{bad}"));
        let has = |s: &str| p.iter().any(|m| m == s);
        assert!(
            has("intersection.inflow[0].groups: intersection `int-1` has no signal group `X`"),
            "{p:?}"
        );
        assert!(has("intersection.inflow[1].from_group: intersection `int-1`: the inflow from `int-0` signal group `E` is given twice (also inflow[0])"), "{p:?}");
        assert!(has("intersection.inflow[2].travel_s: intersection `int-1`: travel time from `int-9` must be > 0 and at most 180 s (the look-ahead's longest horizon), got 0"), "{p:?}");
        assert!(has("intersection.inflow[3].travel_s: intersection `int-1`: travel time from `int-8` must be > 0 and at most 180 s (the look-ahead's longest horizon), got 900"), "{p:?}");
        assert!(has("intersection.inflow[4].from: intersection `int-1`: an inflow comes from another intersection, not from `int-1` itself"), "{p:?}");
        assert!(has("intersection.inflow[5].groups: intersection `int-1`: name at least one signal group the flow from `int-7` arrives on"), "{p:?}");
        assert!(
            has("intersection.inflow[6].groups: intersection `int-1`: signal group `N` is listed twice"),
            "{p:?}"
        );
        assert_eq!(p.len(), 7, "{p:?}");
    }

    /// The same problems through the config loader: located by file line and key path.
    #[test]
    fn citygate_check_locates_intersection_errors() {
        let body: String = CROSSROADS
            .replace("green = [\"E\", \"W\"]", "green = [\"E\", \"W\", \"S\"]")
            .lines()
            .map(|l| match l.strip_prefix("[[") {
                Some(rest) => format!("[[intersection.{rest}"),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let text =
            format!("[gateway]\nid = \"gw\"\ndata_dir = \"d\"\n\n[[intersection]]\n{body}\n");
        let e = match crate::config::load_str(&text, "site.toml") {
            Ok(_) => panic!("accepted a stage with conflicting greens"),
            Err(e) => e,
        };
        assert_eq!(e.errors.len(), 2, "E–S and W–S: {e}");
        let err = &e.errors[0];
        assert_eq!(err.key_path, "intersection[0].stage[1].green");
        let line = text
            .lines()
            .position(|l| l.starts_with("green = [\"E\", \"W\", \"S\"]"))
            .map(|i| i + 1);
        assert_eq!(Some(err.line), line, "{err}");
        assert!(err.message.contains("`E` and `S`"), "{err}");
    }
}
