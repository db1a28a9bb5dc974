//! The intersection plan imported from a SUMO net (`citygate sumo import`): signal groups,
//! stages, conflicts, intergreens, detectors and the net's own fixed-time program, with its
//! TOML form and the SUMO additional file that places the detectors.
//!
//! This is an intermediate shape of our own, written before the gateway's signal-control
//! config (`gateway/src/signals`) existed; every field maps onto that model by name.
//!
//! Derivation from the net:
//! - signal group: the links of one approach (incoming edge) that show the same aspect in every
//!   phase of the net's program (`G`/`g` count as the same green: which of the two SUMO shows
//!   follows from the junction's priorities, see `control::SumoBinding`);
//! - stage: a program phase with some green and no yellow / red-amber, and its duration;
//! - conflict: two groups with foe links (the junction's `foes` matrix) that the program never
//!   shows green together (permissive turns that the program runs with their foes are not);
//! - intergreen from a group to a conflicting one: its yellow plus the program's all-red;
//! - detectors on every incoming lane: stop-bar 5 m and advance 60 m before the stop line
//!   (the advance one continues onto the feeding lane when the lane is shorter).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::net::{Net, NetError, TlsTopology};

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
    #[error("{path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: {message}")]
    Toml { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("traffic light `{0}` is not in the net (it has: {1})")]
    UnknownTls(String, String),
}

/// A file of intersection plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The SUMO additional file placing the detectors, relative to this file.
    pub detectors_file: String,
    pub intersection: Vec<IntersectionPlan>,
}

/// One signalised intersection, driven through one SUMO traffic light.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: String,
    /// Signal groups green in this stage.
    pub green: Vec<String>,
    /// Its green time in the net's program (s).
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intergreen {
    /// The group losing right of way.
    pub from: String,
    /// The conflicting group gaining it.
    pub to: String,
    /// End of `from`'s green to start of `to`'s green (s).
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    StopBar,
    Advance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

    // Signal groups: same approach and same aspect sequence.
    let mut key_to_group: BTreeMap<(String, Vec<char>), usize> = BTreeMap::new();
    let mut groups: Vec<SignalGroup> = Vec::new();
    let mut group_of = vec![0usize; n];
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
        group_of[link.index] = g;
        let sg = &mut groups[g];
        sg.links.push(link.index);
        if !sg.movements.contains(&link.dir) {
            sg.movements.push(link.dir.clone());
        }
        if !sg.lanes.contains(&link.from_lane) {
            sg.lanes.push(link.from_lane.clone());
        }
    }
    for sg in &mut groups {
        let Some(&first) = sg.links.first() else {
            continue;
        };
        let green = longest_run(&durations, |k| phases[k][first] == 'G');
        sg.max_green_s = sg.max_green_s.max(green);
        // An actuated program's minDur / maxDur on the group's green phases, when it has them.
        let greens = || {
            program
                .phases
                .iter()
                .zip(&phases)
                .filter(move |(_, a)| a[first] == 'G')
                .map(|(p, _)| p)
        };
        if let Some(min) = greens().filter_map(|p| p.min_dur).reduce(f64::min) {
            sg.min_green_s = min;
        }
        if let Some(max) = greens().filter_map(|p| p.max_dur).reduce(f64::max) {
            sg.max_green_s = max.max(sg.min_green_s);
        }
        sg.yellow_s = longest_run(&durations, |k| phases[k][first] == 'y');
    }
    for sg in &groups {
        let Some(&first) = sg.links.first() else {
            continue;
        };
        let seq: Vec<char> = phases.iter().map(|p| p[first]).collect();
        if seq.contains(&'G') && seq.contains(&'r') && !seq.contains(&'y') {
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
    }
    let yellow_s = groups.iter().map(|g| g.yellow_s).fold(0.0, f64::max);
    let all_red_s = longest_run(&durations, |k| {
        phases[k].iter().all(|c| !matches!(c, 'G' | 'y' | 'u'))
    });

    // Green of a group in a phase.
    let green_in = |g: usize, k: usize| -> bool {
        groups[g]
            .links
            .first()
            .is_some_and(|&l| phases[k][l] == 'G')
    };

    // Stages.
    let mut stage: Vec<Stage> = Vec::new();
    for (k, p) in phases.iter().enumerate() {
        if p.iter().any(|c| matches!(c, 'y' | 'u')) || !p.contains(&'G') {
            continue;
        }
        let green: Vec<String> = (0..groups.len())
            .filter(|&g| green_in(g, k))
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

    // Conflicts and intergreens.
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
            let together = (0..phases.len()).any(|k| green_in(a, k) && green_in(b, k));
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
                let id = format!("{tls}/{at}/{name}");
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

impl PlanFile {
    pub fn to_toml(&self) -> Result<String, PlanError> {
        let body = toml::to_string(self).map_err(|e| PlanError::Toml {
            path: "(plan)".into(),
            message: e.to_string(),
        })?;
        Ok(format!(
            "# Intersection plans imported from a SUMO net by `citygate sumo import`.\n\
             # Signal groups are SUMO link indices that always share an aspect; stages are the\n\
             # program's green phases; intergreen = yellow + all-red; min/max green are defaults.\n\n{body}"
        ))
    }

    pub fn parse(text: &str, path: &str) -> Result<PlanFile, PlanError> {
        let f: PlanFile = toml::from_str(text).map_err(|e| PlanError::Toml {
            path: path.into(),
            message: e.to_string(),
        })?;
        f.validate(path)?;
        Ok(f)
    }

    pub fn load(path: &Path) -> Result<PlanFile, PlanError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| PlanError::Read {
            path: shown.clone(),
            err,
        })?;
        PlanFile::parse(&text, &shown)
    }

    /// Cross-checks: every link index inside the state string, each link in one group, every
    /// group named by stages, conflicts, intergreens and detectors exists, program states match.
    pub fn validate(&self, path: &str) -> Result<(), PlanError> {
        let bad = |key: String, message: String| PlanError::Invalid {
            path: path.into(),
            key,
            message,
        };
        for (k, p) in self.intersection.iter().enumerate() {
            let at = format!("intersection[{k}] ({})", p.id);
            let mut owner = vec![None; p.links];
            let ids: BTreeSet<&str> = p.signal_group.iter().map(|g| g.id.as_str()).collect();
            for g in &p.signal_group {
                for &l in &g.links {
                    match owner.get_mut(l) {
                        None => {
                            return Err(bad(
                                format!("{at}.signal_group {}.links", g.id),
                                format!("link {l} is beyond the {} links", p.links),
                            ))
                        }
                        Some(Some(o)) => {
                            return Err(bad(
                                format!("{at}.signal_group {}.links", g.id),
                                format!("link {l} is also in group {o}"),
                            ))
                        }
                        Some(slot) => *slot = Some(g.id.clone()),
                    }
                }
                if !(g.min_green_s >= 0.0 && g.max_green_s >= g.min_green_s) {
                    return Err(bad(
                        format!("{at}.signal_group {}", g.id),
                        "needs 0 <= min_green_s <= max_green_s".into(),
                    ));
                }
            }
            let known = |key: String, g: &str| {
                if ids.contains(g) {
                    Ok(())
                } else {
                    Err(bad(key, format!("unknown signal group `{g}`")))
                }
            };
            for s in &p.stage {
                for g in &s.green {
                    known(format!("{at}.stage {}.green", s.id), g)?;
                }
            }
            for c in &p.conflicts {
                for g in c {
                    known(format!("{at}.conflicts"), g)?;
                }
            }
            for i in &p.intergreen {
                known(format!("{at}.intergreen"), &i.from)?;
                known(format!("{at}.intergreen"), &i.to)?;
            }
            for d in &p.detector {
                for g in &d.groups {
                    known(format!("{at}.detector {}.groups", d.id), g)?;
                }
            }
            for (j, ph) in p.program.iter().enumerate() {
                if ph.state.chars().count() != p.links
                    || ph.duration_s.is_nan()
                    || ph.duration_s <= 0.0
                {
                    return Err(bad(
                        format!("{at}.program[{j}]"),
                        format!(
                            "needs a state of {} signals and a positive duration",
                            p.links
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
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
        assert_eq!(d.id, "A0/top0A0.240.00_0/stop");
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
            r#"<inductionLoop id="A0/top0A0.240.00_0/stop" lane="top0A0.240.00_0" pos="39.00" period="3600" file="NUL""#
        ));
    }

    #[test]
    fn toml_round_trip_and_validation() {
        let f = PlanFile {
            detectors_file: "d.add.xml".into(),
            intersection: vec![d1()],
        };
        let text = f.to_toml().unwrap();
        let back = PlanFile::parse(&text, "p.toml").unwrap();
        assert_eq!(back, f);
        let reparse = |f: &PlanFile| PlanFile::parse(&f.to_toml().unwrap(), "p.toml");
        let mut broken = f.clone();
        broken.intersection[0].signal_group[0].links.push(3);
        let e = reparse(&broken).unwrap_err();
        assert!(
            e.to_string()
                .contains("signal_group sg2.links: link 3 is also in group sg1"),
            "{e}"
        );
        let mut broken = f.clone();
        broken.intersection[0].stage[0].green[0] = "sgX".into();
        let e = reparse(&broken).unwrap_err();
        assert!(e.to_string().contains("unknown signal group `sgX`"), "{e}");
        let mut broken = f.clone();
        broken.intersection[0].program[1].state.push('G');
        let e = reparse(&broken).unwrap_err();
        assert!(e.to_string().contains("program[1]"), "{e}");
        let e = PlanFile::parse("detectors_file = 1", "p.toml").unwrap_err();
        assert!(e.to_string().starts_with("p.toml"), "{e}");
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
