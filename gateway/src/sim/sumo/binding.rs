//! How an intersection of the gateway config drives one SUMO traffic light: the
//! [`SumoBinding`] finds each signal group's link indices again from its lanes and movements,
//! and turns group states into a SUMO state string; [`ProgramReplay`] replays the net's own
//! program through the groups (a check of the binding: it must score exactly like SUMO running
//! that program, see the SUMO tests).
//!
//! SUMO tells `G` (green with priority) from `g` (green, give way). A signal-group model has
//! only "green", so the binding decides per link: a green link shows `g` when it must give way
//! (the junction's `response` matrix) to a link that is green or yellow at the same moment, and
//! `G` otherwise. On SUMO's own programs this reproduces their state strings exactly.

use std::collections::BTreeMap;

use citygate_protocols::signal::SignalState;

use super::import::{aspect, movement};
use super::net::{TlLogic, TlsTopology};
use crate::signals::Intersection;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BindingError {
    /// A SUMO link in no group, or in two.
    #[error("intersection {intersection}: SUMO traffic light {tls} link {link} {message}")]
    Link {
        intersection: String,
        tls: String,
        link: usize,
        message: String,
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
    /// Binds `model`'s groups to the links of `topo` (the traffic light with the
    /// intersection's id): a link belongs to the group whose lanes hold its incoming lane and
    /// whose movements hold its direction.
    pub fn new(model: &Intersection, topo: &TlsTopology) -> Result<SumoBinding, BindingError> {
        let links = topo.links.len();
        let mut owner: Vec<Option<usize>> = vec![None; links];
        for l in &topo.links {
            for (gi, g) in model.groups.iter().enumerate() {
                let m = movement(&l.dir);
                if !(g.lanes.contains(&l.from_lane) && g.movements.iter().any(|x| x == m)) {
                    continue;
                }
                if let Some(o) = owner[l.index] {
                    return Err(BindingError::Link {
                        intersection: model.id.clone(),
                        tls: topo.tls.clone(),
                        link: l.index,
                        message: format!(
                            "({}, {m}) is in signal groups {} and {}",
                            l.from_lane, model.groups[o].id, g.id
                        ),
                    });
                }
                owner[l.index] = Some(gi);
            }
        }
        let mut groups: BTreeMap<String, Vec<usize>> = model
            .groups
            .iter()
            .map(|g| (g.id.clone(), Vec::new()))
            .collect();
        for l in &topo.links {
            match owner[l.index] {
                Some(g) => {
                    if let Some(v) = groups.get_mut(&model.groups[g].id) {
                        v.push(l.index);
                    }
                }
                None => {
                    return Err(BindingError::Link {
                        intersection: model.id.clone(),
                        tls: topo.tls.clone(),
                        link: l.index,
                        message: format!(
                        "({}, {}) is in no signal group (groups name their lanes and movements)",
                        l.from_lane,
                        movement(&l.dir)
                    ),
                    })
                }
            }
        }
        Ok(SumoBinding {
            intersection: model.id.clone(),
            tls: topo.tls.clone(),
            links,
            groups,
            yields: topo.yields.clone(),
        })
    }

    /// The link indices of a signal group.
    pub fn links(&self, group: &str) -> &[usize] {
        self.groups.get(group).map_or(&[], Vec::as_slice)
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

/// Replays the net's own program (`tlLogic`) through the signal groups, starting at the first
/// tick: each group shows the aspect of its first link. Ignores detectors; bypasses the
/// controllers and the safety supervisor on purpose (it checks the binding, not control).
#[derive(Debug, Clone)]
pub struct ProgramReplay {
    phases: Vec<(f64, Vec<(String, SignalState)>)>,
    cycle: f64,
    start: Option<f64>,
}

impl ProgramReplay {
    pub fn new(binding: &SumoBinding, program: &TlLogic) -> ProgramReplay {
        let phases: Vec<(f64, Vec<(String, SignalState)>)> = program
            .phases
            .iter()
            .map(|p| {
                let chars: Vec<char> = p.state.chars().map(aspect).collect();
                let states = binding
                    .groups
                    .iter()
                    .map(|(g, links)| {
                        let c = links
                            .first()
                            .and_then(|&l| chars.get(l))
                            .copied()
                            .unwrap_or('r');
                        (g.clone(), state_of(c))
                    })
                    .collect();
                (p.duration, states)
            })
            .collect();
        let cycle = phases.iter().map(|p| p.0).sum();
        ProgramReplay {
            phases,
            cycle,
            start: None,
        }
    }

    pub fn cycle_s(&self) -> f64 {
        self.cycle
    }

    /// The group states at `now`.
    pub fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
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
    use super::super::import::{gateway_toml, import};
    use super::super::net::{tests::D1, Net};
    use super::*;

    fn d1() -> (Intersection, TlsTopology, Net) {
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        let plans = import(&net, &[]).unwrap();
        let text = gateway_toml(&net, &plans, "gw", "fixed_time");
        let cfg = crate::config::load_str(&text, "c.toml").unwrap();
        let model = Intersection::from_config(&cfg.intersection[0]).unwrap();
        let topo = net.tls_topology("A0").unwrap();
        (model, topo, net)
    }

    #[test]
    fn groups_find_their_links_again_from_lanes_and_movements() {
        let (model, topo, net) = d1();
        let b = SumoBinding::new(&model, &topo).unwrap();
        let plan = import(&net, &[]).unwrap().remove(0);
        for g in &plan.signal_group {
            assert_eq!(b.links(&g.id), g.links.as_slice(), "{}", g.id);
        }
    }

    #[test]
    fn replay_through_groups_reproduces_every_phase_of_the_program() {
        let (model, topo, net) = d1();
        let b = SumoBinding::new(&model, &topo).unwrap();
        let program = net.program("A0").unwrap();
        let mut c = ProgramReplay::new(&b, program);
        assert_eq!(c.cycle_s(), 90.0);
        let mut t = 100.0;
        for _ in 0..2 {
            for p in &program.phases {
                for dt in [0.0, p.duration - 1.0] {
                    let s = b.state_string(&c.tick(t + dt)).unwrap();
                    assert_eq!(s, p.state, "at {}", t + dt);
                }
                t += p.duration;
            }
        }
    }

    #[test]
    fn permissive_green_gives_way_only_while_its_foe_moves() {
        let (model, topo, _) = d1();
        let b = SumoBinding::new(&model, &topo).unwrap();
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
    fn unknown_groups_and_unbound_links_are_errors() {
        let (mut model, topo, _) = d1();
        let b = SumoBinding::new(&model, &topo).unwrap();
        assert!(matches!(
            b.state_string(&[("nope".into(), SignalState::Green)]),
            Err(BindingError::UnknownGroup { .. })
        ));
        assert_eq!(b.state_string(&[]).unwrap(), "r".repeat(20));
        let lanes = model.groups[0].lanes.clone();
        model.groups[1].lanes.extend(lanes);
        model.groups[1].movements.push("through".into());
        let e = SumoBinding::new(&model, &topo).unwrap_err();
        assert!(
            e.to_string().contains("is in signal groups sg1 and sg2"),
            "{e}"
        );
        model.groups[0].lanes.clear();
        model.groups[1].lanes.truncate(1);
        let e = SumoBinding::new(&model, &topo).unwrap_err();
        assert!(
            e.to_string().contains("link 0") && e.to_string().contains("in no signal group"),
            "{e}"
        );
    }
}
