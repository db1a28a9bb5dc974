//! Interim: drives the look-ahead core from an imported plan with a simple stage sequencer
//! (yellow, then red until the intergreen), until the signals runtime and its safety
//! supervisor are merged. Removed then.

use citygate_protocols::signal::SignalState;
use citygate_protocols::Reading;

use super::control::SignalController;
use super::plan::{DetectorKind, IntersectionPlan};
use crate::signals::lookahead::arrivals::{DetectorSpec, Role};
use crate::signals::lookahead::core::{Choice, Core, Layout};

pub fn layout(p: &IntersectionPlan) -> Layout {
    let gi = |id: &str| p.signal_group.iter().position(|g| g.id == id);
    let stages: Vec<Vec<usize>> = p
        .stage
        .iter()
        .map(|s| s.green.iter().filter_map(|g| gi(g)).collect())
        .collect();
    let n = p.signal_group.len();
    let mut ig = vec![vec![None; n]; n];
    for i in &p.intergreen {
        if let (Some(a), Some(b)) = (gi(&i.from), gi(&i.to)) {
            ig[a][b] = Some(i.seconds);
        }
    }
    let k = stages.len();
    let mut sig = vec![vec![0.0; k]; k];
    for a in 0..k {
        for b in 0..k {
            let mut m: f64 = 0.0;
            for &g in stages[a].iter().filter(|g| !stages[b].contains(g)) {
                for &h in stages[b].iter().filter(|h| !stages[a].contains(h)) {
                    if let Some(s) = ig[g][h] {
                        m = m.max(s);
                    }
                }
            }
            sig[a][b] = m;
        }
    }
    let min_green = stages
        .iter()
        .map(|s| {
            s.iter()
                .map(|&g| p.signal_group[g].min_green_s)
                .fold(0.0, f64::max)
        })
        .collect();
    let max_green = stages
        .iter()
        .map(|s| {
            s.iter()
                .map(|&g| p.signal_group[g].max_green_s)
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    let detectors = p
        .detector
        .iter()
        .map(|d| DetectorSpec {
            role: match d.kind {
                DetectorKind::StopBar => Role::StopBar,
                DetectorKind::Advance => Role::Upstream,
            },
            distance_m: d.distance_m,
            groups: d.groups.iter().filter_map(|g| gi(g)).collect(),
        })
        .collect();
    Layout {
        groups: n,
        stages,
        intergreen: sig,
        min_green,
        max_green,
        discharge: p
            .signal_group
            .iter()
            .map(|g| g.lanes.len() as f64 * 1800.0 / 3600.0)
            .collect(),
        detectors,
        speed_mps: 13.89,
        cluster_gap_s: 3.0,
    }
}

pub struct Interim {
    core: Core,
    ids: Vec<String>,
    yellow: Vec<f64>,
    det: Vec<String>,
    stage: usize,
    prev: usize,
    switched_at: f64,
    green_from: f64,
    settled: f64,
    counts: Vec<f64>,
    occ: Vec<bool>,
}

impl Interim {
    pub fn new(p: &IntersectionPlan) -> Interim {
        let l = layout(p);
        let n = p.detector.len();
        Interim {
            core: Core::new(l),
            ids: p.signal_group.iter().map(|g| g.id.clone()).collect(),
            yellow: p.signal_group.iter().map(|g| g.yellow_s).collect(),
            det: p.detector.iter().map(|d| d.id.clone()).collect(),
            stage: 0,
            prev: 0,
            switched_at: f64::NEG_INFINITY,
            green_from: 0.0,
            settled: 0.0,
            counts: vec![0.0; n],
            occ: vec![false; n],
        }
    }
}

impl SignalController for Interim {
    fn on_reading(&mut self, r: &Reading, _now: f64) {
        if let Some(i) = self.det.iter().position(|d| *d == r.sensor) {
            match r.quantity.as_str() {
                "count" => self.counts[i] += r.value,
                "occupancy" => self.occ[i] = r.value > 0.0,
                _ => {}
            }
        }
    }

    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
        for i in 0..self.det.len() {
            let c = std::mem::take(&mut self.counts[i]);
            self.core.on_detector(i, c, self.occ[i], now);
        }
        let l = self.core.layout().clone();
        let in_tr = now < self.settled;
        let green_for = if now < self.green_from {
            0.0
        } else {
            now - self.green_from
        };
        if let Choice::Switch(j) = self.core.decide(self.stage, in_tr, green_for, now) {
            if j != self.stage && !in_tr {
                self.prev = self.stage;
                self.stage = j;
                self.switched_at = now;
                self.green_from = now + l.intergreen[self.prev][j];
                let yellow = l.stages[self.prev]
                    .iter()
                    .filter(|g| !l.stages[j].contains(g))
                    .map(|&g| self.yellow[g])
                    .fold(0.0, f64::max);
                self.settled = self.green_from.max(now + yellow);
            }
        }
        (0..l.groups)
            .map(|g| {
                let now_in = l.stages[self.stage].contains(&g);
                let was = l.stages[self.prev].contains(&g);
                let s = if now_in {
                    if was || now >= self.green_from {
                        SignalState::Green
                    } else {
                        SignalState::Red
                    }
                } else if was && now < self.switched_at + self.yellow[g] {
                    SignalState::Yellow
                } else {
                    SignalState::Red
                };
                (self.ids[g].clone(), s)
            })
            .collect()
    }
}
