//! The seam between a signal controller and SUMO: the [`SignalController`] trait (detector
//! readings in, signal-group states out, on the simulation clock), the [`SumoBinding`] that
//! turns group states into a SUMO state string, and [`FixedTimeReplay`], a controller that
//! replays the net's own fixed-time program through the signal groups.
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
