//! The validated intersection model: signal groups, stages, detectors and plans referenced by
//! index, the conflict and intergreen matrices, and the controller parameters. Built from an
//! [`IntersectionConfig`] by [`Intersection::from_config`], which returns every problem with
//! its key path (located in the file by the config loader).

use std::collections::HashMap;

pub use citygate_protocols::signal::GroupKind;

use super::config::{
    ActuationConfig, ControllerKind, DetectorKindConfig, GroupKindConfig, IntersectionConfig,
};
use crate::config::ValidationError;

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

struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError::new(path, message));
    }
    fn positive(&mut self, path: String, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            self.push(path, format!("must be a number > 0, got {v}"));
        }
    }
    fn non_negative(&mut self, path: String, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            self.push(path, format!("must be a number ≥ 0, got {v}"));
        }
    }
    fn name(&mut self, path: String, v: &str) {
        if v.is_empty() || v.len() > 64 || !v.chars().all(is_name_char) {
            self.push(
                path,
                format!("`{v}` must be 1 to 64 letters, digits, `_`, `-` or `.`"),
            );
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Indices of names, reporting duplicates.
fn index<'a>(
    e: &mut Errors,
    items: impl Iterator<Item = (String, &'a str)>,
    what: &str,
) -> HashMap<&'a str, usize> {
    let mut map = HashMap::new();
    for (i, (path, id)) in items.enumerate() {
        e.name(path.clone(), id);
        if map.insert(id, i).is_some() {
            e.push(path, format!("{what} `{id}` is defined twice"));
        }
    }
    map
}

impl Intersection {
    /// Validates `cfg` with key paths under `intersection`; see [`Self::from_config_at`].
    pub fn from_config(cfg: &IntersectionConfig) -> Result<Intersection, Vec<ValidationError>> {
        Self::from_config_at(cfg, "intersection")
    }

    /// Validates `cfg` and builds the model; every problem's key path starts with `at`
    /// (e.g. `intersection[2]`).
    pub fn from_config_at(
        cfg: &IntersectionConfig,
        at: &str,
    ) -> Result<Intersection, Vec<ValidationError>> {
        let mut e = Errors(Vec::new());
        e.name(format!("{at}.id"), &cfg.id);
        let params = params(&mut e, cfg, at);
        let actuation = actuation(&mut e, cfg.actuation.as_ref(), at);

        // signal groups
        let gi = index(
            &mut e,
            cfg.signal_group
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("{at}.signal_group[{i}].id"), g.id.as_str())),
            "signal group",
        );
        if cfg.signal_group.is_empty() {
            e.push(
                format!("{at}.signal_group"),
                "at least one signal group is needed",
            );
        }
        let mut groups = Vec::new();
        for (i, g) in cfg.signal_group.iter().enumerate() {
            let p = format!("{at}.signal_group[{i}]");
            if g.approach.trim().is_empty() {
                e.push(format!("{p}.approach"), "must not be empty");
            }
            for (k, m) in g.movements.iter().enumerate() {
                if !MOVEMENTS.contains(&m.as_str()) {
                    e.push(
                        format!("{p}.movements[{k}]"),
                        format!(
                            "unknown movement `{m}`: expected one of {}",
                            MOVEMENTS.join(", ")
                        ),
                    );
                }
            }
            e.positive(format!("{p}.min_green_s"), g.min_green_s);
            e.positive(format!("{p}.max_green_s"), g.max_green_s);
            if g.max_green_s < g.min_green_s {
                e.push(
                    format!("{p}.max_green_s"),
                    format!(
                        "maximum green {} s is shorter than minimum green {} s",
                        g.max_green_s, g.min_green_s
                    ),
                );
            }
            e.non_negative(format!("{p}.red_amber_s"), g.red_amber_s);
            e.non_negative(format!("{p}.walk_s"), g.walk_s);
            e.non_negative(format!("{p}.clearance_s"), g.clearance_s);
            let kind = match g.kind {
                GroupKindConfig::Vehicle => {
                    e.positive(format!("{p}.yellow_s"), g.yellow_s);
                    GroupKind::Vehicle
                }
                GroupKindConfig::Pedestrian => {
                    e.positive(format!("{p}.clearance_s"), g.clearance_s);
                    if g.walk_s > g.max_green_s {
                        e.push(
                            format!("{p}.walk_s"),
                            format!(
                                "walk {} s is longer than maximum green {} s",
                                g.walk_s, g.max_green_s
                            ),
                        );
                    }
                    GroupKind::Pedestrian
                }
            };
            let sat = g.saturation_flow_vph.unwrap_or(cfg.saturation_flow_vph);
            if let Some(s) = g.saturation_flow_vph {
                e.positive(format!("{p}.saturation_flow_vph"), s);
            }
            groups.push(SignalGroup {
                id: g.id.clone(),
                approach: g.approach.clone(),
                movements: g.movements.clone(),
                lanes: g.lanes.clone(),
                kind,
                min_green_s: g.min_green_s,
                max_green_s: g.max_green_s,
                yellow_s: if kind == GroupKind::Vehicle {
                    g.yellow_s
                } else {
                    0.0
                },
                red_amber_s: g.red_amber_s,
                walk_s: g.walk_s,
                clearance_s: g.clearance_s,
                saturation_flow_vph: sat,
            });
        }
        let n = groups.len();
        let group = |e: &mut Errors, path: String, name: &str| -> Option<usize> {
            let g = gi.get(name).copied();
            if g.is_none() {
                e.push(path, format!("unknown signal group `{name}`"));
            }
            g
        };

        // conflicts
        let mut conflicts = vec![vec![false; n]; n];
        for (k, (a, b)) in cfg.conflicts.iter().enumerate() {
            let p = format!("{at}.conflicts[{k}]");
            let (ga, gb) = (group(&mut e, p.clone(), a), group(&mut e, p.clone(), b));
            if let (Some(ga), Some(gb)) = (ga, gb) {
                if ga == gb {
                    e.push(p, format!("signal group `{a}` cannot conflict with itself"));
                } else {
                    conflicts[ga][gb] = true;
                    conflicts[gb][ga] = true;
                }
            }
        }

        // intergreens
        let mut intergreen = vec![vec![None; n]; n];
        for (k, ig) in cfg.intergreen.iter().enumerate() {
            let p = format!("{at}.intergreen[{k}]");
            let from = group(&mut e, format!("{p}.from"), &ig.from);
            let to = group(&mut e, format!("{p}.to"), &ig.to);
            let (Some(f), Some(t)) = (from, to) else {
                continue;
            };
            e.non_negative(format!("{p}.seconds"), ig.seconds);
            if !conflicts[f][t] {
                e.push(
                    p,
                    format!(
                        "signal groups `{}` and `{}` do not conflict; add them to `conflicts` or remove this intergreen",
                        ig.from, ig.to
                    ),
                );
                continue;
            }
            if intergreen[f][t].is_some() {
                e.push(
                    p,
                    format!(
                        "intergreen from `{}` to `{}` is given twice",
                        ig.from, ig.to
                    ),
                );
                continue;
            }
            let clearance = groups[f].clearance_time_s();
            if ig.seconds < clearance {
                e.push(
                    format!("{p}.seconds"),
                    format!(
                        "intergreen from `{}` to `{}` is {} s, shorter than the {} s {} of `{}`",
                        ig.from,
                        ig.to,
                        ig.seconds,
                        clearance,
                        if groups[f].kind == GroupKind::Vehicle {
                            "yellow"
                        } else {
                            "pedestrian clearance"
                        },
                        ig.from
                    ),
                );
            }
            intergreen[f][t] = Some(ig.seconds);
        }
        for (k, (a, b)) in cfg.conflicts.iter().enumerate() {
            if let (Some(&ga), Some(&gb)) = (gi.get(a.as_str()), gi.get(b.as_str())) {
                if ga == gb {
                    continue;
                }
                for (f, t, fname, tname) in [(ga, gb, a, b), (gb, ga, b, a)] {
                    if intergreen[f][t].is_none() {
                        e.push(
                            format!("{at}.conflicts[{k}]"),
                            format!(
                                "conflicting signal groups `{a}` and `{b}` have no intergreen from `{fname}` to `{tname}`; add [[intersection.intergreen]] from = \"{fname}\", to = \"{tname}\""
                            ),
                        );
                        // one message per missing direction; keep the matrix usable
                        intergreen[f][t] = Some(groups[f].clearance_time_s());
                    }
                }
            }
        }

        // stages
        let si = index(
            &mut e,
            cfg.stage
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{at}.stage[{i}].id"), s.id.as_str())),
            "stage",
        );
        if cfg.stage.len() < 2 {
            e.push(
                format!("{at}.stage"),
                format!("at least 2 stages are needed, found {}", cfg.stage.len()),
            );
        }
        let mut stages = Vec::new();
        for (i, s) in cfg.stage.iter().enumerate() {
            let p = format!("{at}.stage[{i}].green");
            if s.green.is_empty() {
                e.push(
                    p.clone(),
                    format!("stage `{}` has no green signal group", s.id),
                );
            }
            let mut members: Vec<usize> = Vec::new();
            for name in &s.green {
                if let Some(g) = group(&mut e, p.clone(), name) {
                    if members.contains(&g) {
                        e.push(
                            p.clone(),
                            format!("signal group `{name}` is listed twice in stage `{}`", s.id),
                        );
                    } else {
                        members.push(g);
                    }
                }
            }
            for (x, &a) in members.iter().enumerate() {
                for &b in &members[x + 1..] {
                    if conflicts[a][b] {
                        e.push(
                            p.clone(),
                            format!(
                                "stage `{}` puts conflicting signal groups `{}` and `{}` green together",
                                s.id, groups[a].id, groups[b].id
                            ),
                        );
                    }
                }
            }
            stages.push(Stage {
                id: s.id.clone(),
                groups: members,
            });
        }
        for (g, sg) in groups.iter().enumerate() {
            if !stages.is_empty() && !stages.iter().any(|s| s.groups.contains(&g)) {
                e.push(
                    format!("{at}.signal_group[{g}].id"),
                    format!("signal group `{}` is green in no stage", sg.id),
                );
            }
        }
        if matches!(actuation, Actuation::Modbus { .. }) {
            if n > FIRMWARE_MAX {
                e.push(format!("{at}.signal_group"), format!("the signal controller serves at most {FIRMWARE_MAX} signal groups, found {n}"));
            }
            if stages.len() > FIRMWARE_MAX {
                e.push(
                    format!("{at}.stage"),
                    format!(
                        "the signal controller serves at most {FIRMWARE_MAX} stages, found {}",
                        stages.len()
                    ),
                );
            }
        }

        // detectors
        let _ = index(
            &mut e,
            cfg.detector
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("{at}.detector[{i}].id"), d.id.as_str())),
            "detector",
        );
        let mut detectors = Vec::new();
        for (i, d) in cfg.detector.iter().enumerate() {
            let p = format!("{at}.detector[{i}]");
            e.non_negative(format!("{p}.distance_m"), d.distance_m);
            if d.groups.is_empty() {
                e.push(
                    format!("{p}.groups"),
                    "a detector must name at least one signal group",
                );
            }
            let dg: Vec<usize> = d
                .groups
                .iter()
                .filter_map(|g| group(&mut e, format!("{p}.groups"), g))
                .collect();
            let source = d.source.as_ref().map(|s| {
                if s.sensor.is_empty() {
                    e.push(format!("{p}.source.sensor"), "must not be empty");
                }
                if s.quantity.is_empty() {
                    e.push(format!("{p}.source.quantity"), "must not be empty");
                }
                e.positive(format!("{p}.source.interval_s"), s.interval_s);
                DetectorSource {
                    sensor: s.sensor.clone(),
                    quantity: s.quantity.clone(),
                    interval_s: s.interval_s,
                    occupancy: s.occupancy.clone(),
                    presence: s.presence.clone(),
                }
            });
            detectors.push(Detector {
                id: d.id.clone(),
                kind: match d.kind {
                    DetectorKindConfig::StopBar => DetectorKind::StopBar,
                    DetectorKindConfig::Advance => DetectorKind::Advance,
                    DetectorKindConfig::Queue => DetectorKind::Queue,
                },
                lanes: d.lanes.clone(),
                distance_m: d.distance_m,
                groups: dg,
                source,
            });
        }

        // neighbours
        let mut neighbours = Vec::new();
        for (i, nb) in cfg.neighbours.iter().enumerate() {
            let p = format!("{at}.neighbours[{i}]");
            e.name(format!("{p}.intersection"), &nb.intersection);
            if nb.intersection == cfg.id {
                e.push(
                    format!("{p}.intersection"),
                    "an intersection is not its own neighbour",
                );
            }
            if let Some(t) = nb.travel_s {
                e.non_negative(format!("{p}.travel_s"), t);
            }
            if let Some(g) = group(&mut e, format!("{p}.via_group"), &nb.via_group) {
                neighbours.push(Neighbour {
                    intersection: nb.intersection.clone(),
                    via_group: g,
                    travel_s: nb.travel_s,
                });
            }
        }

        // inflows
        let mut inflows = Vec::new();
        for (i, inf) in cfg.inflow.iter().enumerate() {
            let p = format!("{at}.inflow[{i}]");
            let id = &cfg.id;
            e.name(format!("{p}.from"), &inf.from);
            if inf.from == cfg.id {
                e.push(
                    format!("{p}.from"),
                    format!("intersection `{id}`: an inflow comes from another intersection, not from `{id}` itself"),
                );
            }
            e.name(format!("{p}.from_group"), &inf.from_group);
            if let Some(k) = cfg.inflow[..i]
                .iter()
                .position(|o| o.from == inf.from && o.from_group == inf.from_group)
            {
                e.push(
                    format!("{p}.from_group"),
                    format!(
                        "intersection `{id}`: the inflow from `{}` signal group `{}` is given twice (also inflow[{k}])",
                        inf.from, inf.from_group
                    ),
                );
            }
            if !(inf.travel_s.is_finite()
                && inf.travel_s > 0.0
                && inf.travel_s <= MAX_INFLOW_TRAVEL_S)
            {
                e.push(
                    format!("{p}.travel_s"),
                    format!(
                        "intersection `{id}`: travel time from `{}` must be > 0 and at most {MAX_INFLOW_TRAVEL_S} s (the look-ahead's longest horizon), got {}",
                        inf.from, inf.travel_s
                    ),
                );
            }
            if inf.groups.is_empty() {
                e.push(
                    format!("{p}.groups"),
                    format!("intersection `{id}`: name at least one signal group the flow from `{}` arrives on", inf.from),
                );
            }
            let mut members: Vec<(usize, f64)> = Vec::new();
            for name in &inf.groups {
                let Some(&g) = gi.get(name.as_str()) else {
                    e.push(
                        format!("{p}.groups"),
                        format!("intersection `{id}` has no signal group `{name}`"),
                    );
                    continue;
                };
                if members.iter().any(|&(m, _)| m == g) {
                    e.push(
                        format!("{p}.groups"),
                        format!("intersection `{id}`: signal group `{name}` is listed twice"),
                    );
                } else if groups[g].kind != GroupKind::Vehicle {
                    e.push(
                        format!("{p}.groups"),
                        format!("intersection `{id}`: signal group `{name}` is a pedestrian group; vehicles arrive on vehicle groups"),
                    );
                } else {
                    members.push((g, groups[g].lanes.len().max(1) as f64));
                }
            }
            inflows.push(Inflow {
                from: inf.from.clone(),
                from_group: inf.from_group.clone(),
                groups: members,
                travel_s: inf.travel_s,
            });
        }

        // plans
        let _ = index(
            &mut e,
            cfg.plan
                .iter()
                .enumerate()
                .map(|(i, pl)| (format!("{at}.plan[{i}].id"), pl.id.as_str())),
            "plan",
        );
        let stage = |e: &mut Errors, path: String, name: &str| -> Option<usize> {
            let s = si.get(name).copied();
            if s.is_none() {
                e.push(path, format!("unknown stage `{name}`"));
            }
            s
        };
        let mut plans = Vec::new();
        for (i, pl) in cfg.plan.iter().enumerate() {
            let p = format!("{at}.plan[{i}]");
            let kind = match (&pl.hold, pl.steps.is_empty()) {
                (Some(h), true) => stage(&mut e, format!("{p}.hold"), h).map(PlanKind::Hold),
                (None, false) => {
                    let mut steps = Vec::new();
                    for (k, st) in pl.steps.iter().enumerate() {
                        e.positive(format!("{p}.steps[{k}].green_s"), st.green_s);
                        if let Some(s) = stage(&mut e, format!("{p}.steps[{k}].stage"), &st.stage) {
                            steps.push((s, st.green_s));
                        }
                    }
                    Some(PlanKind::Steps(steps))
                }
                _ => {
                    e.push(
                        p.clone(),
                        format!("plan `{}` needs exactly one of `hold` and `steps`", pl.id),
                    );
                    None
                }
            };
            if let Some(kind) = kind {
                plans.push(Plan {
                    id: pl.id.clone(),
                    kind,
                });
            }
        }

        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(Intersection {
            id: cfg.id.clone(),
            groups,
            stages,
            conflicts,
            intergreen,
            detectors,
            params,
            neighbours,
            inflows,
            controller: cfg.controller,
            actuation,
            plans,
        })
    }

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

fn params(e: &mut Errors, cfg: &IntersectionConfig, at: &str) -> ControllerParams {
    for (k, v) in [
        ("cycle_min_s", cfg.cycle_min_s),
        ("cycle_max_s", cfg.cycle_max_s),
        ("webster_period_s", cfg.webster_period_s),
        ("saturation_flow_vph", cfg.saturation_flow_vph),
        ("gap_s", cfg.gap_s),
        ("stuck_on_s", cfg.stuck_on_s),
        ("stuck_off_s", cfg.stuck_off_s),
        ("no_data_s", cfg.no_data_s),
    ] {
        e.positive(format!("{at}.{k}"), v);
    }
    e.non_negative(format!("{at}.lost_time_s"), cfg.lost_time_s);
    e.non_negative(format!("{at}.pressure_margin"), cfg.pressure_margin);
    if cfg.cycle_max_s < cfg.cycle_min_s {
        e.push(
            format!("{at}.cycle_max_s"),
            format!(
                "cycle_max_s {} is below cycle_min_s {}",
                cfg.cycle_max_s, cfg.cycle_min_s
            ),
        );
    }
    ControllerParams {
        cycle_min_s: cfg.cycle_min_s,
        cycle_max_s: cfg.cycle_max_s,
        webster_period_s: cfg.webster_period_s,
        lost_time_s: cfg.lost_time_s,
        saturation_flow_vph: cfg.saturation_flow_vph,
        gap_s: cfg.gap_s,
        pressure_margin: cfg.pressure_margin,
        stuck_on_s: cfg.stuck_on_s,
        stuck_off_s: cfg.stuck_off_s,
        no_data_s: cfg.no_data_s,
    }
}

fn actuation(e: &mut Errors, a: Option<&ActuationConfig>, at: &str) -> Actuation {
    let Some(a) = a else {
        return Actuation::None;
    };
    match (&a.modbus_device, &a.mqtt_topic) {
        (Some(d), None) => {
            if d.is_empty() {
                e.push(format!("{at}.actuation.modbus_device"), "must not be empty");
            }
            Actuation::Modbus { device: d.clone() }
        }
        (None, Some(t)) => {
            if let Err(m) = crate::config::check_topic_filter(t) {
                e.push(format!("{at}.actuation.mqtt_topic"), m);
            } else if t.contains(['+', '#']) {
                e.push(
                    format!("{at}.actuation.mqtt_topic"),
                    format!("`{t}` is a topic to publish to; it cannot hold wildcards"),
                );
            }
            Actuation::Mqtt { topic: t.clone() }
        }
        _ => {
            e.push(
                format!("{at}.actuation"),
                "needs exactly one of `modbus_device` and `mqtt_topic`",
            );
            Actuation::None
        }
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
