//! `citygate sumo import`: a SUMO net's traffic lights as the gateway's `[[intersection]]`
//! config (signal groups, stages, conflicts, intergreens, detectors, neighbours and inflows), and the
//! SUMO additional file that places the detectors. The in-memory [`IntersectionPlan`] also
//! keeps what only SUMO needs (link indices, the net's own program) for the tests; the run
//! gets those back from the net itself (see `binding`).
//!
//! Derivation from the net:
//! - signal group: the links of one approach (incoming edge) that show the same aspect in every
//!   phase of the net's program (`G`/`g` count as the same green: which of the two SUMO shows
//!   follows from the junction's priorities, see `binding::SumoBinding`);
//! - stage: a program phase with some green and no yellow / red-amber;
//! - conflict: two groups with foe links (the junction's `foes` matrix) that the program never
//!   shows green together (permissive turns that the program runs with their foes are not);
//! - intergreen from a group to a conflicting one: its yellow plus the program's all-red;
//! - detectors on every incoming lane: stop-bar 5 m before the stop line, advance 10 s of travel
//!   at the lane's speed (at least 60 m) upstream, on the feeding lanes when the lane is shorter
//!   (never past another traffic light);
//! - coordination ([`coordination`]): for each group, the traffic light its outgoing edges lead
//!   to (through junctions without traffic lights) as a `neighbours` entry, and there an
//!   `[[intersection.inflow]]` with the groups of the edge it arrives on and the travel time at
//!   the lanes' speed. `citygate sumo` and the live gateway both take them from the config.

use std::collections::{BTreeMap, BTreeSet};

use super::net::{Net, NetError, TlLogic, TlsTopology};
use citygate_protocols::quote::quoted;

/// Distance of the stop-bar detector from the stop line (m).
pub const STOP_BAR_M: f64 = 5.0;
/// Shortest distance of the advance detector from the stop line (m).
pub const ADVANCE_M: f64 = 60.0;
/// The advance detector sits this many seconds of travel at the lane's speed limit before the
/// stop line (when that is farther than [`ADVANCE_M`]), so that a look-ahead controller sees
/// arrivals that long ahead. It does not go past an upstream traffic light.
pub const ADVANCE_TRAVEL_S: f64 = 10.0;
/// Default minimum green (s), when the program has no `minDur` (static programs).
pub const DEFAULT_MIN_GREEN_S: f64 = 5.0;
/// Default maximum green (s), raised to the program's longest green where that is longer;
/// an actuated program's `maxDur` replaces it.
pub const DEFAULT_MAX_GREEN_S: f64 = 60.0;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("traffic light `{0}` is not in the net (it has: {1})")]
    UnknownTls(String, String),
}

/// One signalised intersection, driven through one SUMO traffic light.
#[derive(Debug, Clone, PartialEq)]
pub struct IntersectionPlan {
    pub id: String,
    /// The SUMO traffic light (`tlLogic` id) this intersection drives.
    pub sumo_tls: String,
    /// Number of SUMO link indices (length of the state string).
    pub links: usize,
    /// Longest yellow in the net's program (s).
    pub yellow_s: f64,
    /// Longest all-red in the net's program (s).
    pub all_red_s: f64,
    /// Pairs of signal groups that must never be green together.
    pub conflicts: Vec<[String; 2]>,
    pub signal_group: Vec<SignalGroup>,
    pub stage: Vec<Stage>,
    pub intergreen: Vec<Intergreen>,
    pub detector: Vec<Detector>,
    /// The net's own fixed-time program, phase by phase (SUMO state strings).
    pub program: Vec<ProgramPhase>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignalGroup {
    pub id: String,
    /// The incoming edge (approach) its links leave from.
    pub approach: String,
    /// Turn directions served (`s` straight, `l` left, `r` right, `t` U-turn).
    pub movements: Vec<String>,
    /// SUMO link indices (positions in the state string).
    pub links: Vec<usize>,
    /// Incoming lanes of its links.
    pub lanes: Vec<String>,
    pub min_green_s: f64,
    pub max_green_s: f64,
    pub yellow_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub id: String,
    /// Signal groups green in this stage.
    pub green: Vec<String>,
    /// Its green time in the net's program (s).
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Intergreen {
    /// The group losing right of way.
    pub from: String,
    /// The conflicting group gaining it.
    pub to: String,
    /// End of `from`'s green to start of `to`'s green (s).
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorKind {
    StopBar,
    Advance,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    /// Detector id in SUMO, and the sensor id of its readings.
    pub id: String,
    pub kind: DetectorKind,
    pub lane: String,
    /// Position on `lane` from its start (m).
    pub pos_m: f64,
    /// Distance upstream of the stop line (m).
    pub distance_m: f64,
    /// Signal groups whose traffic crosses it.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProgramPhase {
    pub duration_s: f64,
    pub state: String,
}

/// A SUMO signal character reduced to its aspect: `G` green (either priority), `y` yellow,
/// `u` red-amber, `r` red, `o` flashing yellow, `O` off.
pub fn aspect(c: char) -> char {
    match c {
        'G' | 'g' | 's' => 'G',
        'y' | 'Y' => 'y',
        'u' => 'u',
        'o' => 'o',
        'O' => 'O',
        _ => 'r',
    }
}

/// Longest cyclic run of consecutive phases satisfying `f`, in seconds.
fn longest_run(durations: &[f64], f: impl Fn(usize) -> bool) -> f64 {
    let n = durations.len();
    if n == 0 {
        return 0.0;
    }
    if (0..n).all(&f) {
        return durations.iter().sum();
    }
    let (mut best, mut cur) = (0.0f64, 0.0f64);
    for k in 0..2 * n {
        if f(k % n) {
            cur += durations[k % n];
            best = best.max(cur);
        } else {
            cur = 0.0;
        }
    }
    best
}

/// Imports every traffic light in `tls` (all of the net's when empty).
pub fn import(net: &Net, tls: &[String]) -> Result<Vec<IntersectionPlan>, PlanError> {
    let all = net.tls_ids();
    let chosen: Vec<String> = if tls.is_empty() {
        all.clone()
    } else {
        tls.to_vec()
    };
    chosen
        .iter()
        .map(|t| {
            if !all.contains(t) {
                return Err(PlanError::UnknownTls(t.clone(), all.join(", ")));
            }
            import_one(net, &net.tls_topology(t)?)
        })
        .collect()
}

fn import_one(net: &Net, topo: &TlsTopology) -> Result<IntersectionPlan, PlanError> {
    let tls = &topo.tls;
    let program = net
        .program(tls)
        .ok_or_else(|| PlanError::UnknownTls(tls.clone(), net.tls_ids().join(", ")))?;
    let n = topo.links.len();
    let invalid = |key: String, message: String| PlanError::Invalid {
        path: net.path.clone(),
        key,
        message,
    };
    let phases: Vec<Vec<char>> = program
        .phases
        .iter()
        .map(|p| p.state.chars().map(aspect).collect())
        .collect();
    for (k, p) in phases.iter().enumerate() {
        if p.len() != n {
            return Err(invalid(
                format!("tlLogic {tls} phase {k}"),
                format!("state has {} signals, the light has {n} links", p.len()),
            ));
        }
    }
    let durations: Vec<f64> = program.phases.iter().map(|p| p.duration).collect();
    let mut groups = signal_groups(topo, &phases);
    for sg in &mut groups {
        group_timing(sg, program, &phases, &durations);
    }
    if let Some(sg) = group_without_yellow(&groups, &phases) {
        return Err(invalid(
            format!("tlLogic {tls} (type {})", program.kind),
            format!(
                "signal group {} (links {:?}) goes from green to red without a yellow phase; \
                 import a net with a static or actuated program (NEMA programs keep their \
                 yellow outside the phases)",
                sg.id, sg.links
            ),
        ));
    }
    let yellow_s = groups.iter().map(|g| g.yellow_s).fold(0.0, f64::max);
    let all_red_s = longest_run(&durations, |k| {
        phases[k].iter().all(|c| !matches!(c, 'G' | 'y' | 'u'))
    });
    let stage = stages(&groups, &phases, &durations);
    let (conflicts, intergreen) = conflicts_and_intergreens(&groups, &phases, topo, all_red_s);
    let detector = place_detectors(net, tls, &groups);
    Ok(IntersectionPlan {
        id: tls.clone(),
        sumo_tls: tls.clone(),
        links: n,
        yellow_s,
        all_red_s,
        conflicts,
        signal_group: groups,
        stage,
        intergreen,
        detector,
        program: program
            .phases
            .iter()
            .map(|p| ProgramPhase {
                duration_s: p.duration,
                state: p.state.clone(),
            })
            .collect(),
    })
}

/// Signal groups: the links of one approach with the same aspect in every phase.
fn signal_groups(topo: &TlsTopology, phases: &[Vec<char>]) -> Vec<SignalGroup> {
    let mut key_to_group: BTreeMap<(String, Vec<char>), usize> = BTreeMap::new();
    let mut groups: Vec<SignalGroup> = Vec::new();
    for link in &topo.links {
        let seq: Vec<char> = phases.iter().map(|p| p[link.index]).collect();
        let key = (link.from_edge.clone(), seq);
        let g = *key_to_group.entry(key).or_insert_with(|| {
            groups.push(SignalGroup {
                id: format!("sg{}", groups.len() + 1),
                approach: link.from_edge.clone(),
                movements: Vec::new(),
                links: Vec::new(),
                lanes: Vec::new(),
                min_green_s: DEFAULT_MIN_GREEN_S,
                max_green_s: DEFAULT_MAX_GREEN_S,
                yellow_s: 0.0,
            });
            groups.len() - 1
        });
        let sg = &mut groups[g];
        sg.links.push(link.index);
        if !sg.movements.contains(&link.dir) {
            sg.movements.push(link.dir.clone());
        }
        if !sg.lanes.contains(&link.from_lane) {
            sg.lanes.push(link.from_lane.clone());
        }
    }
    groups
}

/// A group's minimum and maximum green and its yellow, from the program.
fn group_timing(sg: &mut SignalGroup, program: &TlLogic, phases: &[Vec<char>], durations: &[f64]) {
    let Some(&first) = sg.links.first() else {
        return;
    };
    let green = longest_run(durations, |k| phases[k][first] == 'G');
    sg.max_green_s = sg.max_green_s.max(green);
    // An actuated program's minDur / maxDur on the group's green phases, when it has them.
    let greens = || {
        program
            .phases
            .iter()
            .zip(phases)
            .filter(move |(_, a)| a[first] == 'G')
            .map(|(p, _)| p)
    };
    if let Some(min) = greens().filter_map(|p| p.min_dur).reduce(f64::min) {
        sg.min_green_s = min;
    }
    if let Some(max) = greens().filter_map(|p| p.max_dur).reduce(f64::max) {
        sg.max_green_s = max.max(sg.min_green_s);
    }
    sg.yellow_s = longest_run(durations, |k| phases[k][first] == 'y');
}

/// The first group that goes from green to red without a yellow phase.
fn group_without_yellow<'a>(
    groups: &'a [SignalGroup],
    phases: &[Vec<char>],
) -> Option<&'a SignalGroup> {
    groups.iter().find(|sg| {
        sg.links.first().is_some_and(|&first| {
            let seq: Vec<char> = phases.iter().map(|p| p[first]).collect();
            seq.contains(&'G') && seq.contains(&'r') && !seq.contains(&'y')
        })
    })
}

/// Whether group `g` is green in phase `k`.
fn green_in(groups: &[SignalGroup], phases: &[Vec<char>], g: usize, k: usize) -> bool {
    groups[g]
        .links
        .first()
        .is_some_and(|&l| phases[k][l] == 'G')
}

/// Stages: the distinct sets of green groups of the program's green phases (no yellow).
fn stages(groups: &[SignalGroup], phases: &[Vec<char>], durations: &[f64]) -> Vec<Stage> {
    let mut stage: Vec<Stage> = Vec::new();
    for (k, p) in phases.iter().enumerate() {
        if p.iter().any(|c| matches!(c, 'y' | 'u')) || !p.contains(&'G') {
            continue;
        }
        let green: Vec<String> = (0..groups.len())
            .filter(|&g| green_in(groups, phases, g, k))
            .map(|g| groups[g].id.clone())
            .collect();
        if stage.iter().any(|s| s.green == green) {
            continue;
        }
        stage.push(Stage {
            id: format!("st{}", stage.len() + 1),
            green,
            duration_s: durations[k],
        });
    }
    stage
}

/// Conflicts (groups with foe links that are never green together) and their intergreens
/// (yellow + all-red).
fn conflicts_and_intergreens(
    groups: &[SignalGroup],
    phases: &[Vec<char>],
    topo: &TlsTopology,
    all_red_s: f64,
) -> (Vec<[String; 2]>, Vec<Intergreen>) {
    let mut conflicts = Vec::new();
    let mut intergreen = Vec::new();
    for a in 0..groups.len() {
        for b in 0..groups.len() {
            if a == b {
                continue;
            }
            let foes = groups[a]
                .links
                .iter()
                .any(|&i| groups[b].links.iter().any(|&j| topo.foes[i][j]));
            let together = (0..phases.len())
                .any(|k| green_in(groups, phases, a, k) && green_in(groups, phases, b, k));
            if !foes || together {
                continue;
            }
            if a < b {
                conflicts.push([groups[a].id.clone(), groups[b].id.clone()]);
            }
            intergreen.push(Intergreen {
                from: groups[a].id.clone(),
                to: groups[b].id.clone(),
                seconds: groups[a].yellow_s + all_red_s,
            });
        }
    }
    (conflicts, intergreen)
}

/// Finds (lane, pos, distance reached) points `distance` metres upstream of the end of `lane`,
/// following feeding lanes (not through traffic lights) back up to 4 lanes when `lane` is
/// shorter; where the chain ends first, the point is the start of its first lane.
fn upstream_points(net: &Net, lane: &str, distance: f64, depth: usize) -> Vec<(String, f64, f64)> {
    let Some(l) = net.lane(lane) else {
        return Vec::new();
    };
    if l.length >= distance {
        return vec![(lane.to_string(), l.length - distance, distance)];
    }
    let ups = net.upstream_lanes(lane);
    if depth == 0 || ups.is_empty() {
        return vec![(lane.to_string(), 0.0, l.length)];
    }
    ups.iter()
        .flat_map(|u| upstream_points(net, u, distance - l.length, depth - 1))
        .map(|(id, pos, d)| (id, pos, d + l.length))
        .collect()
}

fn place_detectors(net: &Net, tls: &str, groups: &[SignalGroup]) -> Vec<Detector> {
    // lane -> groups, in order of first appearance
    let mut lanes: Vec<(String, BTreeSet<String>)> = Vec::new();
    for g in groups {
        for lane in &g.lanes {
            match lanes.iter_mut().find(|(l, _)| l == lane) {
                Some((_, gs)) => {
                    gs.insert(g.id.clone());
                }
                None => lanes.push((lane.clone(), BTreeSet::from([g.id.clone()]))),
            }
        }
    }
    let mut out: Vec<Detector> = Vec::new();
    for (kind, name) in [
        (DetectorKind::StopBar, "stop"),
        (DetectorKind::Advance, "advance"),
    ] {
        for (lane, gs) in &lanes {
            let distance = match kind {
                DetectorKind::StopBar => STOP_BAR_M,
                DetectorKind::Advance => {
                    let speed = net.lane(lane).map_or(0.0, |l| l.speed);
                    (speed * ADVANCE_TRAVEL_S).max(ADVANCE_M)
                }
            };
            for (at, pos, reached) in upstream_points(net, lane, distance, 4) {
                // ids are gateway names (letters, digits, `_`, `-`, `.`) and unique in the net
                let id: String = format!("{tls}-{at}-{name}")
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                match out.iter_mut().find(|d| d.id == id) {
                    Some(d) => {
                        for g in gs {
                            if !d.groups.contains(g) {
                                d.groups.push(g.clone());
                            }
                        }
                    }
                    None => out.push(Detector {
                        id,
                        kind,
                        lane: at,
                        pos_m: (pos * 100.0).round() / 100.0,
                        distance_m: (reached * 100.0).round() / 100.0,
                        groups: gs.iter().cloned().collect(),
                    }),
                }
            }
        }
    }
    out
}

/// The SUMO additional file placing every plan's detectors as induction loops whose own
/// output is discarded (`file="NUL"`): the run reads them over TraCI.
pub fn detectors_xml(plans: &[IntersectionPlan]) -> String {
    use quick_xml::escape::escape;
    let mut s = String::from("<additional>\n");
    for p in plans {
        for d in &p.detector {
            s.push_str(&format!(
                "  <inductionLoop id=\"{}\" lane=\"{}\" pos=\"{:.2}\" period=\"3600\" file=\"NUL\" friendlyPos=\"true\"/>\n",
                escape(&d.id),
                escape(&d.lane),
                d.pos_m
            ));
        }
    }
    s.push_str("</additional>\n");
    s
}

/// Where a signal group's traffic goes: the next traffic light, through junctions without one.
#[derive(Debug, Clone, PartialEq)]
pub struct Downstream {
    pub tls: String,
    /// The incoming edge it arrives on.
    pub edge: String,
    /// From the stop line it leaves to the next one (m), and the travel time at the lanes'
    /// speed limits (s).
    pub distance_m: f64,
    pub travel_s: f64,
}

/// The traffic lights the lanes `from` lead to (their outgoing lanes' edges followed
/// downstream), each once.
pub fn downstream(net: &Net, to_lanes: &[String]) -> Vec<Downstream> {
    // incoming edges of every traffic light
    let mut tls_of_edge: BTreeMap<String, String> = BTreeMap::new();
    for c in &net.connections {
        if let Some(t) = &c.tl {
            tls_of_edge.insert(c.from.clone(), t.clone());
        }
    }
    let edge_of = |lane: &str| lane.rsplit_once('_').map(|(e, _)| e.to_string());
    let mut out: Vec<Downstream> = Vec::new();
    let mut todo: Vec<(String, f64, f64, usize)> = to_lanes
        .iter()
        .filter_map(|l| edge_of(l))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|e| (e, 0.0, 0.0, 0))
        .collect();
    while let Some((edge, dist, time, depth)) = todo.pop() {
        let Some(e) = net.edges.get(&edge) else {
            continue;
        };
        let (len, speed) = e
            .lanes
            .first()
            .map_or((0.0, 13.89), |l| (l.length, l.speed.max(0.1)));
        let (dist, time) = (dist + len, time + len / speed);
        if let Some(t) = tls_of_edge.get(&edge) {
            if !out.iter().any(|d| d.tls == *t && d.edge == edge) {
                out.push(Downstream {
                    tls: t.clone(),
                    edge: edge.clone(),
                    distance_m: (dist * 10.0).round() / 10.0,
                    travel_s: (time * 10.0).round() / 10.0,
                });
            }
            continue;
        }
        if depth >= 8 {
            continue;
        }
        let next: BTreeSet<String> = net
            .connections
            .iter()
            .filter(|c| c.from == edge && !c.to.starts_with(':'))
            .map(|c| c.to.clone())
            .collect();
        for n in next {
            todo.push((n, dist, time, depth + 1));
        }
    }
    out
}

/// The gateway's name for a SUMO link direction.
pub fn movement(dir: &str) -> &'static str {
    match dir {
        "s" => "through",
        "l" => "left",
        "r" => "right",
        "t" => "u_turn",
        "L" => "partial_left",
        "R" => "partial_right",
        _ => "through",
    }
}

fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| quoted(s)).collect();
    format!("[{}]", v.join(", "))
}

/// Coordination between two imported intersections: `from`'s signal group `from_group`
/// sends its traffic to `to`, where it arrives on `groups` (those with lanes on the edge it
/// comes in on) `travel_s` later. Written as `from`'s `neighbours` entry and `to`'s
/// `[[intersection.inflow]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub from: String,
    pub from_group: String,
    pub to: String,
    pub groups: Vec<String>,
    pub travel_s: f64,
}

/// Every [`Link`] between `plans`: for each signal group, the traffic lights its outgoing
/// lanes lead to (through junctions without lights, [`downstream`]), with the travel time at
/// the lanes' speed limits. One link per (group, neighbour): a group reaching a neighbour on
/// two edges arrives on both edges' groups, after the shorter travel time. Links that no
/// look-ahead could use (no vehicle group on the arrival edge, a travel time beyond the
/// longest horizon) are left out.
pub fn coordination(net: &Net, plans: &[IntersectionPlan]) -> Vec<Link> {
    use crate::signals::model::MAX_INFLOW_TRAVEL_S;
    let mut out: Vec<Link> = Vec::new();
    for p in plans {
        let Ok(topo) = net.tls_topology(&p.id) else {
            continue;
        };
        for g in &p.signal_group {
            let to_lanes: Vec<String> = topo
                .links
                .iter()
                .filter(|l| g.links.contains(&l.index))
                .map(|l| l.to_lane.clone())
                .collect();
            for d in downstream(net, &to_lanes) {
                let Some(b) = plans.iter().find(|o| o.id == d.tls && o.id != p.id) else {
                    continue;
                };
                if !(d.travel_s > 0.0 && d.travel_s <= MAX_INFLOW_TRAVEL_S) {
                    continue;
                }
                let groups: Vec<String> = b
                    .signal_group
                    .iter()
                    .filter(|h| {
                        h.lanes
                            .iter()
                            .any(|l| l.rsplit_once('_').is_some_and(|(e, _)| e == d.edge))
                    })
                    .map(|h| h.id.clone())
                    .collect();
                if groups.is_empty() {
                    continue;
                }
                match out
                    .iter_mut()
                    .find(|l| l.from == p.id && l.from_group == g.id && l.to == b.id)
                {
                    Some(l) => {
                        for h in groups {
                            if !l.groups.contains(&h) {
                                l.groups.push(h);
                            }
                        }
                        l.travel_s = l.travel_s.min(d.travel_s);
                    }
                    None => out.push(Link {
                        from: p.id.clone(),
                        from_group: g.id.clone(),
                        to: b.id.clone(),
                        groups,
                        travel_s: d.travel_s,
                    }),
                }
            }
        }
    }
    out
}

/// The gateway config for `plans`: `[gateway]` and one `[[intersection]]` per traffic light,
/// with `controller` and each detector's `source` (sensor = the SUMO detector id, quantities
/// `count`, `occupancy` and `occupied` per second, as `citygate sumo` gives them).
pub fn gateway_toml(
    net: &Net,
    plans: &[IntersectionPlan],
    gateway_id: &str,
    controller: &str,
) -> String {
    let links = coordination(net, plans);
    let mut s = String::new();
    s.push_str(&format!(
        "# Written by `citygate sumo import` from {}.\n\
         # Signal groups: SUMO link indices of one approach that always share an aspect (found again\n\
         # from lanes + movements when `citygate sumo` runs); stages: the program's green phases;\n\
         # intergreen = yellow + all-red; detectors: {} m stop bar and {} s of travel upstream.\n\n",
        net.path, STOP_BAR_M, ADVANCE_TRAVEL_S
    ));
    s.push_str(&format!(
        "[gateway]\nid = {}\ndata_dir = \"data\"\n",
        quoted(gateway_id)
    ));
    for p in plans {
        s.push_str(&format!(
            "\n[[intersection]]\nid = {}\ncontroller = {}\n",
            quoted(&p.id),
            quoted(controller)
        ));
        let neighbours: Vec<String> = links
            .iter()
            .filter(|l| l.from == p.id)
            .map(|l| {
                format!(
                    "  {{ intersection = {}, via_group = {} }},",
                    quoted(&l.to),
                    quoted(&l.from_group)
                )
            })
            .collect();
        if !neighbours.is_empty() {
            s.push_str(&format!("neighbours = [\n{}\n]\n", neighbours.join("\n")));
        }
        let pairs: Vec<String> = p
            .conflicts
            .iter()
            .map(|[a, b]| format!("[{}, {}]", quoted(a), quoted(b)))
            .collect();
        s.push_str(&format!("conflicts = [{}]\n", pairs.join(", ")));
        for g in &p.signal_group {
            let movements: Vec<String> = g
                .movements
                .iter()
                .map(|m| movement(m).to_string())
                .collect();
            s.push_str(&format!(
                "\n[[intersection.signal_group]]\nid = {}\napproach = {}\nmovements = {}\nlanes = {}\n\
                 min_green_s = {:?}\nmax_green_s = {:?}\nyellow_s = {:?}\n",
                quoted(&g.id),
                quoted(&g.approach),
                list(&movements),
                list(&g.lanes),
                g.min_green_s,
                g.max_green_s,
                g.yellow_s
            ));
        }
        for st in &p.stage {
            s.push_str(&format!(
                "\n[[intersection.stage]]\nid = {}\ngreen = {}\n",
                quoted(&st.id),
                list(&st.green)
            ));
        }
        for i in &p.intergreen {
            s.push_str(&format!(
                "\n[[intersection.intergreen]]\nfrom = {}\nto = {}\nseconds = {:?}\n",
                quoted(&i.from),
                quoted(&i.to),
                i.seconds
            ));
        }
        for l in links.iter().filter(|l| l.to == p.id) {
            s.push_str(&format!(
                "\n[[intersection.inflow]]\nfrom = {}\nfrom_group = {}\ngroups = {}\ntravel_s = {:?}\n",
                quoted(&l.from),
                quoted(&l.from_group),
                list(&l.groups),
                l.travel_s
            ));
        }
        for d in &p.detector {
            s.push_str(&format!(
                "\n[[intersection.detector]]\nid = {}\nkind = {}\nlanes = {}\ndistance_m = {:?}\ngroups = {}\n\
                 source = {{ sensor = {}, quantity = \"count\", interval_s = 1.0, occupancy = \"occupancy\", presence = \"occupied\" }}\n",
                quoted(&d.id),
                quoted(match d.kind {
                    DetectorKind::StopBar => "stop_bar",
                    DetectorKind::Advance => "advance",
                }),
                list(std::slice::from_ref(&d.lane)),
                d.distance_m,
                list(&d.groups),
                quoted(&d.id)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::net::tests::D1;
    use super::*;

    fn d1() -> IntersectionPlan {
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        let mut plans = import(&net, &[]).unwrap();
        assert_eq!(plans.len(), 1);
        plans.remove(0)
    }

    #[test]
    fn d1_groups_are_approach_movements() {
        let p = d1();
        assert_eq!(p.links, 20);
        assert_eq!(p.signal_group.len(), 8, "{:#?}", p.signal_group);
        let g = |id: &str| p.signal_group.iter().find(|g| g.id == id).unwrap();
        // north: right + through (links 0-2), left + U-turn (3-4)
        assert_eq!(g("sg1").links, [0, 1, 2]);
        assert_eq!(g("sg1").movements, ["r", "s"]);
        assert_eq!(g("sg2").links, [3, 4]);
        assert_eq!(g("sg2").movements, ["l", "t"]);
        assert_eq!(g("sg1").yellow_s, 3.0);
        assert_eq!(p.yellow_s, 3.0);
        assert_eq!(p.all_red_s, 2.0);
    }

    #[test]
    fn d1_stages_conflicts_and_intergreens() {
        let p = d1();
        let greens: Vec<(Vec<String>, f64)> = p
            .stage
            .iter()
            .map(|s| (s.green.clone(), s.duration_s))
            .collect();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            greens,
            [
                (v(&["sg1", "sg2", "sg5", "sg6"]), 31.0),
                (v(&["sg2", "sg6"]), 6.0),
                (v(&["sg3", "sg4", "sg7", "sg8"]), 31.0),
                (v(&["sg4", "sg8"]), 6.0),
            ]
        );
        let has = |a: &str, b: &str| p.conflicts.iter().any(|c| c[0] == a && c[1] == b);
        // north through vs east through: conflict; north left vs south through: permissive
        assert!(has("sg1", "sg3"));
        assert!(!has("sg2", "sg5"));
        // north vs south through do not cross
        assert!(!has("sg1", "sg5"));
        assert!(p
            .intergreen
            .iter()
            .all(|i| i.seconds == 5.0 && i.from != i.to));
        assert_eq!(p.intergreen.len(), 2 * p.conflicts.len());
    }

    #[test]
    fn d1_detectors_stop_bar_and_advance() {
        let p = d1();
        let stop: Vec<&Detector> = p
            .detector
            .iter()
            .filter(|d| d.kind == DetectorKind::StopBar)
            .collect();
        assert_eq!(stop.len(), 12, "3 lanes x 4 approaches");
        let d = stop.iter().find(|d| d.lane == "top0A0.240.00_0").unwrap();
        assert_eq!(d.pos_m, 39.0);
        assert_eq!(d.id, "A0-top0A0.240.00_0-stop");
        // advance: 10 s at 13.89 m/s = 138.9 m; the turn-lane section is 44 m, so they sit
        // 94.9 m before the end of the 2-lane edge upstream, one per lane
        let adv: Vec<&Detector> = p
            .detector
            .iter()
            .filter(|d| d.kind == DetectorKind::Advance)
            .collect();
        assert_eq!(adv.len(), 8, "{adv:#?}");
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        for a in &adv {
            let len = net.lane(&a.lane).unwrap().length;
            assert!((len - a.pos_m - 94.9).abs() < 0.01, "{a:?} on {len}");
            assert!((a.distance_m - 138.9).abs() < 0.01, "{a:?}");
        }
        let xml = detectors_xml(std::slice::from_ref(&p));
        assert!(xml.contains(
            r#"<inductionLoop id="A0-top0A0.240.00_0-stop" lane="top0A0.240.00_0" pos="39.00" period="3600" file="NUL""#
        ));
    }

    #[test]
    fn the_gateway_config_passes_the_gateways_own_validation() {
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        let plans = import(&net, &[]).unwrap();
        let text = gateway_toml(&net, &plans, "sumo-d1", "look_ahead");
        let cfg = crate::config::load_str(&text, "citygate.toml")
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.intersection.len(), 1);
        let i = &cfg.intersection[0];
        assert_eq!(i.signal_group.len(), 8);
        assert_eq!(i.stage.len(), 4);
        assert_eq!(i.detector.len(), 20);
        assert_eq!(i.signal_group[0].movements, ["right", "through"]);
        let m = crate::signals::Intersection::from_config(i).unwrap();
        assert_eq!(m.stage_intergreen(0, 2), 5.0);
        assert_eq!(m.stage_min_green(0), 5.0);
        // a broken intergreen is refused, naming where
        let broken = text.replacen("seconds = 5.0", "seconds = 1.0", 1);
        let e = crate::config::load_str(&broken, "citygate.toml").unwrap_err();
        assert!(e.to_string().contains("intergreen"), "{e}");
    }

    #[test]
    fn actuated_programs_give_min_and_max_green() {
        let text = D1.replace(
            r#"<phase duration="31" state="GGGggrrrrrGGGggrrrrr"/>"#,
            r#"<phase duration="31" state="GGGggrrrrrGGGggrrrrr" minDur="7" maxDur="45"/>"#,
        );
        assert_ne!(text, D1);
        let net = Net::parse(&text, "d1.net.xml").unwrap();
        let p = import(&net, &[]).unwrap().remove(0);
        let g = |id: &str| p.signal_group.iter().find(|g| g.id == id).unwrap().clone();
        assert_eq!((g("sg1").min_green_s, g("sg1").max_green_s), (7.0, 45.0));
        // sg2 is green in that phase and in the 6 s protected phase without minDur
        assert_eq!((g("sg2").min_green_s, g("sg2").max_green_s), (7.0, 45.0));
        // the east-west groups keep the defaults
        assert_eq!((g("sg3").min_green_s, g("sg3").max_green_s), (5.0, 60.0));
    }

    #[test]
    fn a_program_without_yellow_is_refused() {
        let net = Net::parse(&D1.replace("state=\"yyy", "state=\"rrr"), "d1.net.xml").unwrap();
        let e = import(&net, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("sg1 (links [0, 1, 2]) goes from green to red"),
            "{e}"
        );
    }

    #[test]
    fn unknown_tls_is_named() {
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        let e = import(&net, &["B9".into()]).unwrap_err();
        assert!(
            e.to_string().contains("`B9`") && e.to_string().contains("A0"),
            "{e}"
        );
    }
}
