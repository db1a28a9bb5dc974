//! Max-pressure control: each signal group keeps an estimate of its upstream queue (vehicles
//! counted arriving, minus saturation-flow discharge while it is green; a queue detector that
//! is occupied bounds it from below); a stage's pressure is the sum over its vehicle groups of
//! upstream queue minus downstream queue (0: the model has no exit detectors; a neighbour's
//! planned flow is not a queue). After minimum green, the controller switches to the stage with
//! the highest pressure when it exceeds the current stage's by `pressure_margin` vehicles.
//!
//! A group whose counting detectors are faulty cannot be measured: its queue is assumed to grow
//! at a quarter of its saturation flow while it is red, which serves it like fixed-time.

use super::controller::{Controller, Decision, DetectorSample, View};
use super::model::{DetectorKind, GroupKind, Intersection};

/// Arrival rate assumed for an unmeasured group, as a share of its saturation flow.
pub const BLIND_ARRIVAL_SHARE: f64 = 0.25;
/// Length of a queued vehicle, metres (queue detectors).
pub const VEHICLE_SPACING_M: f64 = 7.0;

/// The max-pressure controller.
#[derive(Debug, Clone)]
pub struct MaxPressure {
    model: Intersection,
    /// Per group: estimated upstream queue, vehicles.
    queue: Vec<f64>,
    last: Option<f64>,
    reason: String,
}

impl MaxPressure {
    pub fn new(model: &Intersection) -> Self {
        MaxPressure {
            model: model.clone(),
            queue: vec![0.0; model.groups.len()],
            last: None,
            reason: String::from("waiting for the first stage"),
        }
    }

    /// The queue estimate of each signal group.
    pub fn queues(&self) -> &[f64] {
        &self.queue
    }

    /// Pressure of stage `s`.
    pub fn pressure(&self, s: usize) -> f64 {
        self.model.stages.get(s).map_or(0.0, |st| {
            st.groups
                .iter()
                .filter(|&&g| self.model.groups[g].kind == GroupKind::Vehicle)
                .map(|&g| self.queue[g])
                .sum()
        })
    }

    fn blind(&self, g: usize, faulty: &[bool]) -> bool {
        let dets = self.model.counting_detectors(g);
        dets.is_empty()
            || dets
                .iter()
                .all(|&d| faulty.get(d).copied().unwrap_or(false))
    }
}

impl Controller for MaxPressure {
    fn name(&self) -> &'static str {
        "max_pressure"
    }

    fn on_detector(&mut self, s: &DetectorSample) {
        let Some(det) = self.model.detectors.get(s.detector) else {
            return;
        };
        for &g in &det.groups {
            if self.model.counting_detectors(g).contains(&s.detector) {
                self.queue[g] += s.vehicles.max(0.0);
            }
            if det.kind == DetectorKind::Queue && s.occupied {
                let lanes = det.lanes.len().max(1) as f64;
                let floor = (det.distance_m / VEHICLE_SPACING_M).floor() * lanes;
                self.queue[g] = self.queue[g].max(floor);
            }
        }
    }

    fn decide(&mut self, view: &View<'_>, now: f64) -> Decision {
        let m = view.model;
        let dt = self.last.map_or(0.0, |l| (now - l).max(0.0));
        self.last = Some(now);
        let green: &[usize] = if view.in_transition {
            &[]
        } else {
            m.stages.get(view.stage).map_or(&[], |s| &s.groups)
        };
        for g in 0..self.queue.len() {
            let sat = m.groups[g].saturation_flow_vps();
            if green.contains(&g) {
                self.queue[g] = (self.queue[g] - sat * dt).max(0.0);
            } else if self.blind(g, view.faulty_detectors) {
                self.queue[g] += BLIND_ARRIVAL_SHARE * sat * dt;
            }
        }
        if view.in_transition || view.green_for_s < m.stage_min_green(view.stage) {
            return Decision::Hold;
        }
        let here = self.pressure(view.stage);
        let best = (0..m.stages.len())
            .filter(|&s| s != view.stage)
            .map(|s| (s, self.pressure(s)))
            .fold(None, |acc: Option<(usize, f64)>, (s, p)| match acc {
                Some((_, bp)) if bp >= p => acc,
                _ => Some((s, p)),
            });
        let Some((best, p)) = best else {
            return Decision::Hold;
        };
        let id = |s: usize| m.stages.get(s).map_or("?", |x| x.id.as_str());
        if p > here + m.params.pressure_margin {
            self.reason = format!(
                "{} pressure {:.1} > {} pressure {:.1} + margin {:.1}",
                id(best),
                p,
                id(view.stage),
                here,
                m.params.pressure_margin
            );
            Decision::Switch(best)
        } else {
            self.reason = format!(
                "{} pressure {:.1}; highest elsewhere {} {:.1}",
                id(view.stage),
                here,
                id(best),
                p
            );
            Decision::Hold
        }
    }

    fn explain(&self) -> String {
        self.reason.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::crossroads;
    use super::*;

    fn arrive(c: &mut MaxPressure, d: usize, n: f64, at: f64) {
        c.on_detector(&DetectorSample {
            detector: d,
            vehicles: n,
            occupancy: 0.2,
            occupied: false,
            at,
        });
    }

    #[test]
    fn switches_when_another_stage_has_more_pressure_by_the_margin() {
        let m = crossroads();
        let ok = [false; 4];
        let mut c = MaxPressure::new(&m);
        let v = |green: f64| View {
            model: &m,
            stage: 0,
            in_transition: false,
            green_for_s: green,
            faulty_detectors: &ok,
        };
        arrive(&mut c, 1, 3.0, 0.0);
        assert_eq!(c.decide(&v(3.0), 0.0), Decision::Hold, "minimum green");
        assert_eq!(c.decide(&v(8.0), 5.0), Decision::Switch(1), "3 > 0 + 2");
        assert!(
            c.explain().contains("EW pressure 3.0 > NS pressure 0.0"),
            "{}",
            c.explain()
        );
        // N has 4 waiting; discharge at 0.5 veh/s while NS is green
        let mut c = MaxPressure::new(&m);
        arrive(&mut c, 0, 4.0, 0.0);
        arrive(&mut c, 1, 5.0, 0.0);
        assert_eq!(c.decide(&v(8.0), 0.0), Decision::Hold, "5 is not > 4 + 2");
        assert_eq!(
            c.decide(&v(11.0), 3.0),
            Decision::Switch(1),
            "N discharged to 2.5"
        );
        assert!((c.queues()[0] - 2.5).abs() < 1e-9);
    }

    #[test]
    fn an_unmeasured_group_builds_an_assumed_queue_while_red() {
        let m = crossroads();
        let faulty = [false, true, false, false];
        let mut c = MaxPressure::new(&m);
        let v = |now: f64| View {
            model: &m,
            stage: 0,
            in_transition: false,
            green_for_s: now,
            faulty_detectors: &faulty,
        };
        c.decide(&v(0.0), 0.0);
        assert_eq!(
            c.decide(&v(10.0), 10.0),
            Decision::Hold,
            "E: 10 s × 0.125 veh/s = 1.25"
        );
        assert_eq!(
            c.decide(&v(20.0), 20.0),
            Decision::Switch(1),
            "E: 2.5 > 0 + 2"
        );
    }
}
