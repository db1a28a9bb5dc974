//! The seam between a signal controller and SUMO: the [`SignalController`] trait (detector
//! readings in, signal-group states out, on the simulation clock), the [`SumoBinding`] that
//! turns group states into a SUMO state string, and [`FixedTimeReplay`], a controller that
//! replays the net's own fixed-time program through the signal groups, and [`StageFixedTime`],
//! the same plan run from the imported stages and intergreens.
//!
//! SUMO tells `G` (green with priority) from `g` (green, give way). A signal-group model has
//! only "green", so the binding decides per link: a green link shows `g` when it must give way
//! (the junction's `response` matrix) to a link that is green or yellow at the same moment, and
//! `G` otherwise. On SUMO's own programs this reproduces their state strings exactly.

use std::collections::BTreeMap;

use citygate_protocols::signal::SignalState;
use citygate_protocols::Reading;

use super::net::TlsTopology;
use super::plan::{aspect, IntersectionPlan};

/// A controller that takes detector readings and returns signal-group states per tick.
/// Time is simulation seconds, passed in, never read inside.
pub trait SignalController {
    /// A detector reading (sensor = detector id, quantity `count` or `occupancy`).
    fn on_reading(&mut self, reading: &Reading, now: f64);
    /// The state of every signal group from `now` until the next tick.
    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)>;
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BindingError {
    #[error("intersection {intersection}: signal group {group} link {link} is beyond the {links} links of SUMO traffic light {tls}")]
    LinkOutOfRange {
        intersection: String,
        group: String,
        link: usize,
        links: usize,
        tls: String,
    },
    #[error("intersection {intersection}: the plan has {plan} links, SUMO traffic light {tls} has {net}")]
    LinkCount {
        intersection: String,
        tls: String,
        plan: usize,
        net: usize,
    },
    #[error("intersection {intersection}: the controller drove unknown signal group `{group}`")]
    UnknownGroup { intersection: String, group: String },
}

/// One intersection's signal groups bound to the link indices of one SUMO traffic light.
#[derive(Debug, Clone)]
pub struct SumoBinding {
    pub intersection: String,
    pub tls: String,
    links: usize,
    groups: BTreeMap<String, Vec<usize>>,
    yields: Vec<Vec<bool>>,
}

/// The SUMO letter of a signal state (before the `G`/`g` priority choice).
pub fn sumo_char(s: SignalState) -> char {
    match s {
        SignalState::Green | SignalState::FlashingGreen => 'G',
        SignalState::Yellow => 'y',
        SignalState::RedAmber => 'u',
        SignalState::Red => 'r',
        SignalState::FlashingYellow => 'o',
        SignalState::Dark => 'O',
    }
}

/// The signal state an aspect letter (see [`aspect`]) stands for.
pub fn state_of(aspect_char: char) -> SignalState {
    match aspect_char {
        'G' => SignalState::Green,
        'y' => SignalState::Yellow,
        'u' => SignalState::RedAmber,
        'o' => SignalState::FlashingYellow,
        'O' => SignalState::Dark,
        _ => SignalState::Red,
    }
}

impl SumoBinding {
    pub fn new(plan: &IntersectionPlan, topo: &TlsTopology) -> Result<SumoBinding, BindingError> {
        let links = topo.links.len();
        if plan.links != links {
            return Err(BindingError::LinkCount {
                intersection: plan.id.clone(),
                tls: topo.tls.clone(),
                plan: plan.links,
                net: links,
            });
        }
        let mut groups = BTreeMap::new();
        for g in &plan.signal_group {
            if let Some(&link) = g.links.iter().find(|&&l| l >= links) {
                return Err(BindingError::LinkOutOfRange {
                    intersection: plan.id.clone(),
                    group: g.id.clone(),
                    link,
                    links,
                    tls: topo.tls.clone(),
                });
            }
            groups.insert(g.id.clone(), g.links.clone());
        }
        Ok(SumoBinding {
            intersection: plan.id.clone(),
            tls: topo.tls.clone(),
            links,
            groups,
            yields: topo.yields.clone(),
        })
    }

    /// The SUMO state string for these group states. Links of groups not named stay red.
    pub fn state_string(&self, states: &[(String, SignalState)]) -> Result<String, BindingError> {
        let mut chars = vec!['r'; self.links];
        for (g, s) in states {
            let links = self
                .groups
                .get(g)
                .ok_or_else(|| BindingError::UnknownGroup {
                    intersection: self.intersection.clone(),
                    group: g.clone(),
                })?;
            for &l in links {
                if let Some(c) = chars.get_mut(l) {
                    *c = sumo_char(*s);
                }
            }
        }
        let moving: Vec<bool> = chars.iter().map(|c| matches!(c, 'G' | 'y')).collect();
        let mut out = String::with_capacity(self.links);
        for (i, &c) in chars.iter().enumerate() {
            let gives_way = c == 'G'
                && self
                    .yields
                    .get(i)
                    .is_some_and(|row| row.iter().zip(&moving).any(|(y, m)| *y && *m));
            out.push(if gives_way { 'g' } else { c });
        }
        Ok(out)
    }
}

/// Replays the net's own fixed-time program (the plan's `program`) through the signal groups,
/// starting at the first tick. Ignores detectors.
#[derive(Debug, Clone)]
pub struct FixedTimeReplay {
    phases: Vec<(f64, Vec<(String, SignalState)>)>,
    cycle: f64,
    start: Option<f64>,
    pub readings_seen: u64,
}

impl FixedTimeReplay {
    pub fn new(plan: &IntersectionPlan) -> FixedTimeReplay {
        let phases: Vec<(f64, Vec<(String, SignalState)>)> = plan
            .program
            .iter()
            .map(|p| {
                let chars: Vec<char> = p.state.chars().map(aspect).collect();
                let states = plan
                    .signal_group
                    .iter()
                    .map(|g| {
                        let c = g
                            .links
                            .first()
                            .and_then(|&l| chars.get(l))
                            .copied()
                            .unwrap_or('r');
                        (g.id.clone(), state_of(c))
                    })
                    .collect();
                (p.duration_s, states)
            })
            .collect();
        let cycle = phases.iter().map(|p| p.0).sum();
        FixedTimeReplay {
            phases,
            cycle,
            start: None,
            readings_seen: 0,
        }
    }

    pub fn cycle_s(&self) -> f64 {
        self.cycle
    }
}

impl SignalController for FixedTimeReplay {
    fn on_reading(&mut self, _reading: &Reading, _now: f64) {
        self.readings_seen += 1;
    }

    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
        let start = *self.start.get_or_insert(now);
        if self.cycle <= 0.0 {
            return Vec::new();
        }
        let mut t = (now - start).rem_euclid(self.cycle);
        for (d, states) in &self.phases {
            if t < *d {
                return states.clone();
            }
            t -= d;
        }
        self.phases.last().map(|p| p.1.clone()).unwrap_or_default()
    }
}

/// A fixed-time controller built from the plan's signal-group model rather than the net's
/// state strings: its stages in order, each for its `duration_s`, and between two stages the
/// groups that stop show yellow for their `yellow_s`, then red, and the groups that start wait
/// for the longest intergreen from a conflicting group that stopped (at least the yellow).
/// On a net whose program is stage / yellow / all-red it reproduces that program, which checks
/// that the imported stages and intergreens describe the intersection.
#[derive(Debug, Clone)]
pub struct StageFixedTime {
    /// Per stage: transition into it (s), then its green (s), and the group states in both.
    steps: Vec<StageStep>,
    groups: Vec<String>,
    cycle: f64,
    start: Option<f64>,
}

#[derive(Debug, Clone)]
struct StageStep {
    /// (from transition start, state per group) breakpoints of the transition.
    transition: Vec<(f64, Vec<SignalState>)>,
    transition_s: f64,
    green: Vec<SignalState>,
    green_s: f64,
}

impl StageFixedTime {
    pub fn new(plan: &IntersectionPlan) -> StageFixedTime {
        let groups: Vec<String> = plan.signal_group.iter().map(|g| g.id.clone()).collect();
        let yellow: BTreeMap<&str, f64> = plan
            .signal_group
            .iter()
            .map(|g| (g.id.as_str(), g.yellow_s))
            .collect();
        let intergreen: BTreeMap<(&str, &str), f64> = plan
            .intergreen
            .iter()
            .map(|i| ((i.from.as_str(), i.to.as_str()), i.seconds))
            .collect();
        let n = plan.stage.len();
        let mut steps = Vec::with_capacity(n);
        for k in 0..n {
            let prev = &plan.stage[(k + n - 1) % n];
            let cur = &plan.stage[k];
            let is_green = |st: &super::plan::Stage, g: &str| st.green.iter().any(|x| x == g);
            let ending: Vec<&str> = groups
                .iter()
                .map(String::as_str)
                .filter(|g| is_green(prev, g) && !is_green(cur, g))
                .collect();
            let starting: Vec<&str> = groups
                .iter()
                .map(String::as_str)
                .filter(|g| !is_green(prev, g) && is_green(cur, g))
                .collect();
            let mut t_len = ending
                .iter()
                .map(|g| yellow.get(g).copied().unwrap_or(plan.yellow_s))
                .fold(0.0, f64::max);
            for e in &ending {
                for s in &starting {
                    if let Some(ig) = intergreen.get(&(*e, *s)) {
                        t_len = t_len.max(*ig);
                    }
                }
            }
            // breakpoints: at 0 the ending groups turn yellow; each ends its yellow after yellow_s
            let mut cuts: Vec<f64> = vec![0.0];
            for e in &ending {
                let y = yellow.get(e).copied().unwrap_or(plan.yellow_s);
                if y < t_len && !cuts.contains(&y) {
                    cuts.push(y);
                }
            }
            cuts.sort_by(f64::total_cmp);
            let transition = cuts
                .iter()
                .map(|&at| {
                    let states = groups
                        .iter()
                        .map(|g| {
                            if ending.contains(&g.as_str()) {
                                let y = yellow.get(g.as_str()).copied().unwrap_or(plan.yellow_s);
                                if at < y {
                                    SignalState::Yellow
                                } else {
                                    SignalState::Red
                                }
                            } else if is_green(prev, g) {
                                SignalState::Green
                            } else {
                                SignalState::Red
                            }
                        })
                        .collect();
                    (at, states)
                })
                .collect();
            let green = groups
                .iter()
                .map(|g| {
                    if is_green(cur, g) {
                        SignalState::Green
                    } else {
                        SignalState::Red
                    }
                })
                .collect();
            steps.push(StageStep {
                transition,
                transition_s: t_len,
                green,
                green_s: cur.duration_s,
            });
        }
        let cycle = steps.iter().map(|s| s.transition_s + s.green_s).sum();
        StageFixedTime {
            steps,
            groups,
            cycle,
            start: None,
        }
    }

    pub fn cycle_s(&self) -> f64 {
        self.cycle
    }

    fn states_at(&self, mut t: f64) -> Option<&Vec<SignalState>> {
        for s in &self.steps {
            if t < s.transition_s {
                return s
                    .transition
                    .iter()
                    .rev()
                    .find(|(at, _)| *at <= t)
                    .map(|(_, st)| st);
            }
            t -= s.transition_s;
            if t < s.green_s {
                return Some(&s.green);
            }
            t -= s.green_s;
        }
        self.steps.last().map(|s| &s.green)
    }
}

impl SignalController for StageFixedTime {
    fn on_reading(&mut self, _reading: &Reading, _now: f64) {}

    /// Starts with the first stage's green (its transition comes at the end of the cycle).
    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
        let start = *self.start.get_or_insert(now);
        if self.cycle <= 0.0 {
            return Vec::new();
        }
        let first_transition = self.steps.first().map_or(0.0, |s| s.transition_s);
        let t = (now - start + first_transition).rem_euclid(self.cycle);
        match self.states_at(t) {
            Some(states) => self
                .groups
                .iter()
                .cloned()
                .zip(states.iter().copied())
                .collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::net::{tests::D1, Net};
    use super::super::plan::import;
    use super::*;

    fn d1() -> (IntersectionPlan, TlsTopology) {
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        let plan = import(&net, &[]).unwrap().remove(0);
        (plan, net.tls_topology("A0").unwrap())
    }

    #[test]
    fn replay_through_groups_reproduces_every_phase_of_the_program() {
        let (plan, topo) = d1();
        let b = SumoBinding::new(&plan, &topo).unwrap();
        let mut c = FixedTimeReplay::new(&plan);
        assert_eq!(c.cycle_s(), 90.0);
        let mut t = 100.0;
        for _ in 0..2 {
            for p in &plan.program {
                for dt in [0.0, p.duration_s - 1.0] {
                    let s = b.state_string(&c.tick(t + dt)).unwrap();
                    assert_eq!(s, p.state, "at {}", t + dt);
                }
                t += p.duration_s;
            }
        }
    }

    #[test]
    fn stage_model_reproduces_the_program_second_by_second() {
        let (plan, topo) = d1();
        let b = SumoBinding::new(&plan, &topo).unwrap();
        let mut c = StageFixedTime::new(&plan);
        assert_eq!(c.cycle_s(), 90.0);
        let mut t = 0.0;
        for _ in 0..2 {
            for p in &plan.program {
                for dt in 0..p.duration_s as u32 {
                    let now = t + f64::from(dt);
                    let s = b.state_string(&c.tick(now)).unwrap();
                    assert_eq!(s, p.state, "at {now}");
                }
                t += p.duration_s;
            }
        }
    }

    #[test]
    fn permissive_green_gives_way_only_while_its_foe_moves() {
        let (plan, topo) = d1();
        let b = SumoBinding::new(&plan, &topo).unwrap();
        let g = SignalState::Green;
        // north left (sg2) alone: protected
        let s = b.state_string(&[("sg2".into(), g)]).unwrap();
        assert_eq!(&s[3..5], "GG");
        // with the south through (sg5) green or yellow: gives way
        let s = b
            .state_string(&[("sg2".into(), g), ("sg5".into(), g)])
            .unwrap();
        assert_eq!(&s[3..5], "gg");
        assert_eq!(&s[10..13], "GGG");
        let s = b
            .state_string(&[("sg2".into(), g), ("sg5".into(), SignalState::Yellow)])
            .unwrap();
        assert_eq!(&s[3..5], "gg");
        assert_eq!(&s[10..13], "yyy");
    }

    #[test]
    fn unknown_groups_and_mismatched_nets_are_errors() {
        let (mut plan, topo) = d1();
        let b = SumoBinding::new(&plan, &topo).unwrap();
        assert!(matches!(
            b.state_string(&[("nope".into(), SignalState::Green)]),
            Err(BindingError::UnknownGroup { .. })
        ));
        assert_eq!(b.state_string(&[]).unwrap(), "r".repeat(20));
        plan.signal_group[0].links.push(25);
        assert!(matches!(
            SumoBinding::new(&plan, &topo),
            Err(BindingError::LinkOutOfRange { link: 25, .. })
        ));
        plan.links = 21;
        assert!(matches!(
            SumoBinding::new(&plan, &topo),
            Err(BindingError::LinkCount { .. })
        ));
    }
}
