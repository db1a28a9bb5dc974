//! Builds an [`Intersection`] from its config: one function per part (controller parameters,
//! actuation, signal groups, conflicts, intergreens, stages, detectors, neighbours, inflows,
//! plans), each validating what it builds and reporting every problem with its key path.

use std::collections::HashMap;

use super::{
    Actuation, ControllerParams, Detector, DetectorKind, DetectorSource, GroupKind, Inflow,
    Intersection, Neighbour, Plan, PlanKind, SignalGroup, Stage, FIRMWARE_MAX, MAX_INFLOW_TRAVEL_S,
    MOVEMENTS,
};
use crate::config::report::Report;
use crate::config::ValidationError;
use crate::signals::config::{
    ActuationConfig, DetectorConfig, DetectorKindConfig, GroupKindConfig, InflowConfig,
    IntersectionConfig, PlanConfig, SignalGroupConfig,
};

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
        let mut e = Report::new();
        e.name(format!("{at}.id"), &cfg.id);
        let params = params(&mut e, cfg, at);
        let actuation = actuation(&mut e, cfg.actuation.as_ref(), at);
        let mut names = Names {
            at,
            groups: index(
                &mut e,
                &cfg.signal_group,
                at,
                "signal_group",
                "signal group",
                |g| &g.id,
            ),
            stages: HashMap::new(),
        };
        let groups = groups(&mut e, cfg, at);
        let conflicts = conflicts(&mut e, cfg, &names, groups.len());
        let intergreen = intergreens(&mut e, cfg, &names, &groups, &conflicts);
        names.stages = index(&mut e, &cfg.stage, at, "stage", "stage", |s| &s.id);
        let stages = stages(&mut e, cfg, &names, &groups, &conflicts);
        if groups.len() > FIRMWARE_MAX && !matches!(actuation, Actuation::Modbus { .. }) {
            // the safety core (the supervisor) serves as many groups as the firmware
            e.push(
                format!("{at}.signal_group"),
                format!(
                    "the safety supervisor serves at most {FIRMWARE_MAX} signal groups, found {}",
                    groups.len()
                ),
            );
        }
        if matches!(actuation, Actuation::Modbus { .. }) {
            firmware_limits(&mut e, at, groups.len(), stages.len());
        }
        let detectors = detectors(&mut e, &cfg.detector, &names);
        let neighbours = neighbours(&mut e, cfg, &names);
        let inflows = cfg
            .inflow
            .iter()
            .enumerate()
            .map(|(i, inf)| inflow(&mut e, cfg, i, inf, &names, &groups))
            .collect();
        let plans = plans(&mut e, &cfg.plan, &names);
        e.into_result()?;
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
}

/// The indices of the signal groups and stages by name, and the key path of the intersection.
struct Names<'a> {
    at: &'a str,
    groups: HashMap<&'a str, usize>,
    stages: HashMap<&'a str, usize>,
}

impl Names<'_> {
    /// The signal group `name`, or a problem at `path`.
    fn group(&self, e: &mut Report, path: String, name: &str) -> Option<usize> {
        let g = self.groups.get(name).copied();
        if g.is_none() {
            e.push(path, format!("unknown signal group `{name}`"));
        }
        g
    }

    /// The stage `name`, or a problem at `path`.
    fn stage(&self, e: &mut Report, path: String, name: &str) -> Option<usize> {
        let s = self.stages.get(name).copied();
        if s.is_none() {
            e.push(path, format!("unknown stage `{name}`"));
        }
        s
    }
}

/// Indices of the items' names (`{at}.{key}[i].id`), reporting bad and duplicate names.
fn index<'a, T>(
    e: &mut Report,
    items: &'a [T],
    at: &str,
    key: &str,
    what: &str,
    id: impl Fn(&'a T) -> &'a String,
) -> HashMap<&'a str, usize> {
    let mut map = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let (path, name) = (format!("{at}.{key}[{i}].id"), id(item).as_str());
        e.name(path.clone(), name);
        if map.insert(name, i).is_some() {
            e.push(path, format!("{what} `{name}` is defined twice"));
        }
    }
    map
}

fn params(e: &mut Report, cfg: &IntersectionConfig, at: &str) -> ControllerParams {
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

fn actuation(e: &mut Report, a: Option<&ActuationConfig>, at: &str) -> Actuation {
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

fn groups(e: &mut Report, cfg: &IntersectionConfig, at: &str) -> Vec<SignalGroup> {
    if cfg.signal_group.is_empty() {
        e.push(
            format!("{at}.signal_group"),
            "at least one signal group is needed",
        );
    }
    cfg.signal_group
        .iter()
        .enumerate()
        .map(|(i, g)| group(e, &format!("{at}.signal_group[{i}]"), g, cfg))
        .collect()
}

/// One signal group at key path `p`; the intersection's saturation flow is its default.
fn group(e: &mut Report, p: &str, g: &SignalGroupConfig, cfg: &IntersectionConfig) -> SignalGroup {
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
    if let Some(s) = g.saturation_flow_vph {
        e.positive(format!("{p}.saturation_flow_vph"), s);
    }
    SignalGroup {
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
        saturation_flow_vph: g.saturation_flow_vph.unwrap_or(cfg.saturation_flow_vph),
    }
}

/// The symmetric conflict matrix of `n` groups.
fn conflicts(e: &mut Report, cfg: &IntersectionConfig, names: &Names, n: usize) -> Vec<Vec<bool>> {
    let mut conflicts = vec![vec![false; n]; n];
    for (k, (a, b)) in cfg.conflicts.iter().enumerate() {
        let p = format!("{}.conflicts[{k}]", names.at);
        let (ga, gb) = (names.group(e, p.clone(), a), names.group(e, p.clone(), b));
        if let (Some(ga), Some(gb)) = (ga, gb) {
            if ga == gb {
                e.push(p, format!("signal group `{a}` cannot conflict with itself"));
            } else {
                conflicts[ga][gb] = true;
                conflicts[gb][ga] = true;
            }
        }
    }
    conflicts
}

/// The intergreen matrix: one given for each direction of each conflict, at least the
/// clearance of the group losing right of way.
fn intergreens(
    e: &mut Report,
    cfg: &IntersectionConfig,
    names: &Names,
    groups: &[SignalGroup],
    conflicts: &[Vec<bool>],
) -> Vec<Vec<Option<f64>>> {
    let n = groups.len();
    let mut intergreen = vec![vec![None; n]; n];
    for (k, ig) in cfg.intergreen.iter().enumerate() {
        let p = format!("{}.intergreen[{k}]", names.at);
        let from = names.group(e, format!("{p}.from"), &ig.from);
        let to = names.group(e, format!("{p}.to"), &ig.to);
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
    missing_intergreens(e, cfg, names, groups, &mut intergreen);
    intergreen
}

/// Reports each direction of a conflict without an intergreen (filling in the clearance, so
/// that the matrix stays usable for the other checks).
fn missing_intergreens(
    e: &mut Report,
    cfg: &IntersectionConfig,
    names: &Names,
    groups: &[SignalGroup],
    intergreen: &mut [Vec<Option<f64>>],
) {
    for (k, (a, b)) in cfg.conflicts.iter().enumerate() {
        let (Some(&ga), Some(&gb)) = (names.groups.get(a.as_str()), names.groups.get(b.as_str()))
        else {
            continue;
        };
        if ga == gb {
            continue;
        }
        for (f, t, fname, tname) in [(ga, gb, a, b), (gb, ga, b, a)] {
            if intergreen[f][t].is_none() {
                e.push(
                    format!("{}.conflicts[{k}]", names.at),
                    format!(
                        "conflicting signal groups `{a}` and `{b}` have no intergreen from `{fname}` to `{tname}`; add [[intersection.intergreen]] from = \"{fname}\", to = \"{tname}\""
                    ),
                );
                intergreen[f][t] = Some(groups[f].clearance_time_s());
            }
        }
    }
}

/// The stages: at least two, each with non-conflicting greens, every group green in one.
fn stages(
    e: &mut Report,
    cfg: &IntersectionConfig,
    names: &Names,
    groups: &[SignalGroup],
    conflicts: &[Vec<bool>],
) -> Vec<Stage> {
    let at = names.at;
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
            if let Some(g) = names.group(e, p.clone(), name) {
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
    stages
}

/// What the citygate signal controller firmware can serve (Modbus actuation).
fn firmware_limits(e: &mut Report, at: &str, groups: usize, stages: usize) {
    if groups > FIRMWARE_MAX {
        e.push(
            format!("{at}.signal_group"),
            format!(
                "the signal controller serves at most {FIRMWARE_MAX} signal groups, found {groups}"
            ),
        );
    }
    if stages > FIRMWARE_MAX {
        e.push(
            format!("{at}.stage"),
            format!("the signal controller serves at most {FIRMWARE_MAX} stages, found {stages}"),
        );
    }
}

fn detectors(e: &mut Report, cfg: &[DetectorConfig], names: &Names) -> Vec<Detector> {
    let _ = index(e, cfg, names.at, "detector", "detector", |d| &d.id);
    let mut detectors = Vec::new();
    for (i, d) in cfg.iter().enumerate() {
        let p = format!("{}.detector[{i}]", names.at);
        e.non_negative(format!("{p}.distance_m"), d.distance_m);
        if d.groups.is_empty() {
            e.push(
                format!("{p}.groups"),
                "a detector must name at least one signal group",
            );
        }
        let groups: Vec<usize> = d
            .groups
            .iter()
            .filter_map(|g| names.group(e, format!("{p}.groups"), g))
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
            groups,
            source,
        });
    }
    detectors
}

fn neighbours(e: &mut Report, cfg: &IntersectionConfig, names: &Names) -> Vec<Neighbour> {
    let mut neighbours = Vec::new();
    for (i, nb) in cfg.neighbours.iter().enumerate() {
        let p = format!("{}.neighbours[{i}]", names.at);
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
        if let Some(g) = names.group(e, format!("{p}.via_group"), &nb.via_group) {
            neighbours.push(Neighbour {
                intersection: nb.intersection.clone(),
                via_group: g,
                travel_s: nb.travel_s,
            });
        }
    }
    neighbours
}

/// `inflow[i]`: from another intersection, given once, within the look-ahead's horizon, onto
/// our vehicle groups (split by their lanes).
fn inflow(
    e: &mut Report,
    cfg: &IntersectionConfig,
    i: usize,
    inf: &InflowConfig,
    names: &Names,
    groups: &[SignalGroup],
) -> Inflow {
    let p = format!("{}.inflow[{i}]", names.at);
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
    if !(inf.travel_s.is_finite() && inf.travel_s > 0.0 && inf.travel_s <= MAX_INFLOW_TRAVEL_S) {
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
            format!(
                "intersection `{id}`: name at least one signal group the flow from `{}` arrives on",
                inf.from
            ),
        );
    }
    let mut members: Vec<(usize, f64)> = Vec::new();
    for name in &inf.groups {
        let Some(&g) = names.groups.get(name.as_str()) else {
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
    Inflow {
        from: inf.from.clone(),
        from_group: inf.from_group.clone(),
        groups: members,
        travel_s: inf.travel_s,
    }
}

/// The named plans: each holds a stage or runs steps of known stages.
fn plans(e: &mut Report, cfg: &[PlanConfig], names: &Names) -> Vec<Plan> {
    let _ = index(e, cfg, names.at, "plan", "plan", |pl| &pl.id);
    let mut plans = Vec::new();
    for (i, pl) in cfg.iter().enumerate() {
        let p = format!("{}.plan[{i}]", names.at);
        let kind = match (&pl.hold, pl.steps.is_empty()) {
            (Some(h), true) => names.stage(e, format!("{p}.hold"), h).map(PlanKind::Hold),
            (None, false) => {
                let mut steps = Vec::new();
                for (k, st) in pl.steps.iter().enumerate() {
                    e.positive(format!("{p}.steps[{k}].green_s"), st.green_s);
                    if let Some(s) = names.stage(e, format!("{p}.steps[{k}].stage"), &st.stage) {
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
    plans
}
