//! Interim: runs a signals [`Controller`] from the gateway config with a plain stage
//! sequencer (the ending groups' yellow, then red until the stage intergreen) until the signals
//! runtime and its safety supervisor are merged; removed then.

use citygate_protocols::signal::SignalState;
use citygate_protocols::Reading;

use super::run::SignalController;
use crate::signals::{Controller, Decision, DetectorSample, Intersection, PlannedFlow, View};

pub struct Interim {
    model: Intersection,
    controller: Box<dyn Controller>,
    sensors: Vec<String>,
    stage: usize,
    prev: usize,
    switched_at: f64,
    green_from: f64,
    settled: f64,
    counts: Vec<f64>,
    occupancy: Vec<f64>,
    faulty: Vec<bool>,
}

impl Interim {
    pub fn new(model: &Intersection, controller: Box<dyn Controller>) -> Interim {
        let n = model.detectors.len();
        Interim {
            sensors: model
                .detectors
                .iter()
                .map(|d| {
                    d.source
                        .as_ref()
                        .map_or_else(|| d.id.clone(), |s| s.sensor.clone())
                })
                .collect(),
            model: model.clone(),
            controller,
            stage: 0,
            prev: 0,
            switched_at: f64::NEG_INFINITY,
            green_from: 0.0,
            settled: 0.0,
            counts: vec![0.0; n],
            occupancy: vec![0.0; n],
            faulty: vec![false; n],
        }
    }
}

impl SignalController for Interim {
    fn on_reading(&mut self, r: &Reading, _now: f64) {
        for (i, s) in self.sensors.iter().enumerate() {
            if *s == r.sensor {
                match r.quantity.as_str() {
                    "count" => self.counts[i] += r.value,
                    "occupancy" => self.occupancy[i] = r.value / 100.0,
                    _ => {}
                }
            }
        }
    }

    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
        for i in 0..self.sensors.len() {
            let c = std::mem::take(&mut self.counts[i]);
            self.controller.on_detector(&DetectorSample {
                detector: i,
                vehicles: c,
                occupancy: self.occupancy[i],
                occupied: self.occupancy[i] > 0.0,
                at: now,
            });
        }
        let in_tr = now < self.settled;
        let green_for = if now < self.green_from {
            0.0
        } else {
            now - self.green_from
        };
        let view = View {
            model: &self.model,
            stage: self.stage,
            in_transition: in_tr,
            green_for_s: green_for,
            faulty_detectors: &self.faulty,
        };
        let m = &self.model;
        let forced = !in_tr && green_for >= m.stage_max_green(self.stage);
        let decision = self.controller.decide(&view, now);
        let target = match decision {
            Decision::Switch(j)
                if !in_tr
                    && j != self.stage
                    && j < m.stages.len()
                    && green_for >= m.stage_min_green(self.stage) =>
            {
                Some(j)
            }
            _ if forced => Some((self.stage + 1) % m.stages.len()),
            _ => None,
        };
        if let Some(j) = target {
            self.prev = self.stage;
            self.stage = j;
            self.switched_at = now;
            self.green_from = now + m.stage_intergreen(self.prev, j);
            let yellow = m.stages[self.prev]
                .groups
                .iter()
                .filter(|g| !m.stages[j].groups.contains(g))
                .map(|&g| m.groups[g].yellow_s)
                .fold(0.0, f64::max);
            self.settled = self.green_from.max(now + yellow);
        }
        (0..m.groups.len())
            .map(|g| {
                let now_in = m.stages[self.stage].groups.contains(&g);
                let was = m.stages[self.prev].groups.contains(&g);
                let s = if now_in {
                    if was || now >= self.green_from {
                        SignalState::Green
                    } else {
                        SignalState::Red
                    }
                } else if was && now < self.switched_at + m.groups[g].yellow_s {
                    SignalState::Yellow
                } else {
                    SignalState::Red
                };
                (m.groups[g].id.clone(), s)
            })
            .collect()
    }

    fn outflow(&self, now: f64) -> Vec<PlannedFlow> {
        self.controller.outflow(now)
    }

    fn on_peer_flow(&mut self, flow: &PlannedFlow) {
        self.controller.on_peer_flow(flow)
    }
}
