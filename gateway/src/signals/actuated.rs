//! Fully actuated control: a stage is served when its detectors call for it, its green is
//! extended while vehicles keep arriving within the passage time (`gap_s`), and ended by
//! gap-out (no vehicle for `gap_s` after minimum green) or max-out (maximum green) when another
//! stage has a call. With no call elsewhere the green rests where it is.
//!
//! A detector actuates when it reports "occupied"; a detector that has never reported presence
//! (counts only) actuates when it counts a vehicle. A faulty detector puts a permanent call on
//! its groups' stages and stops them from gapping out (maximum-green recall), so that approach
//! runs like fixed-time at its maximum green.

use super::controller::{Controller, Decision, DetectorSample, View};
use super::model::Intersection;

/// Max-out this long before the maximum green, one live tick, so that the stage change is
/// the controller's (to the next called stage) and not forced by the supervisor or the field
/// controller's own maximum green.
pub const MAX_OUT_LEAD_S: f64 = 1.0;

/// The actuated controller.
#[derive(Debug, Clone)]
pub struct Actuated {
    model: Intersection,
    /// Per signal group: time of the last actuation.
    last_actuation: Vec<f64>,
    /// Per signal group: a vehicle waits (actuated since the group was last green).
    called: Vec<bool>,
    /// Per detector: it has reported presence at least once.
    presence_capable: Vec<bool>,
    reason: String,
}

impl Actuated {
    pub fn new(model: &Intersection) -> Self {
        Actuated {
            model: model.clone(),
            last_actuation: vec![f64::NEG_INFINITY; model.groups.len()],
            called: vec![false; model.groups.len()],
            presence_capable: vec![false; model.detectors.len()],
            reason: String::from("waiting for the first stage"),
        }
    }

    fn stage_recall(&self, s: usize, faulty: &[bool]) -> bool {
        self.model.stages.get(s).is_some_and(|st| {
            st.groups.iter().any(|&g| {
                self.model.detectors.iter().enumerate().any(|(d, det)| {
                    det.groups.contains(&g) && faulty.get(d).copied().unwrap_or(false)
                })
            })
        })
    }

    fn stage_called(&self, s: usize, faulty: &[bool]) -> bool {
        self.stage_recall(s, faulty)
            || self
                .model
                .stages
                .get(s)
                .is_some_and(|st| st.groups.iter().any(|&g| self.called[g]))
    }
}

impl Controller for Actuated {
    fn name(&self) -> &'static str {
        "actuated"
    }

    fn on_detector(&mut self, s: &DetectorSample) {
        let Some(det) = self.model.detectors.get(s.detector) else {
            return;
        };
        if s.occupied {
            self.presence_capable[s.detector] = true;
        }
        let actuated = s.occupied || (!self.presence_capable[s.detector] && s.vehicles > 0.0);
        if actuated {
            for &g in &det.groups {
                self.last_actuation[g] = self.last_actuation[g].max(s.at);
                self.called[g] = true;
            }
        }
    }

    fn decide(&mut self, view: &View<'_>, now: f64) -> Decision {
        let m = view.model;
        let n = m.stages.len();
        let Some(stage) = m.stages.get(view.stage) else {
            return Decision::Hold;
        };
        if view.in_transition {
            return Decision::Hold;
        }
        // the groups of the running stage are served: their calls are answered
        for &g in &stage.groups {
            self.called[g] = false;
        }
        if view.green_for_s < m.stage_min_green(view.stage) {
            self.reason = format!("{}: minimum green", stage.id);
            return Decision::Hold;
        }
        let max_out = view.green_for_s + MAX_OUT_LEAD_S >= m.stage_max_green(view.stage);
        let next = (1..n)
            .map(|k| (view.stage + k) % n)
            .find(|&s| self.stage_called(s, view.faulty_detectors));
        let next = match next {
            Some(s) => s,
            // maximum green ends the stage anyway (supervisor and field controller force the
            // next stage): change to it now, one tick ahead, so both stay in step
            None if max_out && n > 1 => {
                let s = (view.stage + 1) % n;
                self.reason = format!(
                    "{}: max-out after {:.0} s, no call elsewhere: {} for its minimum",
                    stage.id, view.green_for_s, m.stages[s].id
                );
                return Decision::Switch(s);
            }
            None => {
                self.reason = format!("{}: resting, no call elsewhere", stage.id);
                return Decision::Hold;
            }
        };
        let gap = stage
            .groups
            .iter()
            .map(|&g| now - self.last_actuation[g])
            .fold(f64::INFINITY, f64::min);
        let recall = self.stage_recall(view.stage, view.faulty_detectors);
        let gap_out = !recall && gap >= m.params.gap_s;
        if max_out || gap_out {
            self.reason = if max_out {
                format!(
                    "{}: max-out after {:.0} s{}, {} called",
                    stage.id,
                    view.green_for_s,
                    if recall {
                        " (detector fault: max recall)"
                    } else {
                        ""
                    },
                    m.stages[next].id
                )
            } else {
                format!(
                    "{}: gap-out after {:.0} s (no vehicle for {:.1} s), {} called",
                    stage.id, view.green_for_s, gap, m.stages[next].id
                )
            };
            Decision::Switch(next)
        } else {
            self.reason = format!(
                "{}: extending (last vehicle {:.1} s ago)",
                stage.id,
                gap.min(999.0)
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

    fn view<'a>(m: &'a Intersection, stage: usize, green: f64, faulty: &'a [bool]) -> View<'a> {
        View {
            model: m,
            stage,
            in_transition: false,
            green_for_s: green,
            faulty_detectors: faulty,
        }
    }

    fn car(c: &mut Actuated, d: usize, at: f64) {
        c.on_detector(&DetectorSample {
            detector: d,
            vehicles: 1.0,
            occupancy: 0.5,
            occupied: true,
            at,
        });
    }

    #[test]
    fn gaps_out_after_the_passage_time_when_another_stage_is_called() {
        let m = crossroads();
        let ok = [false; 4];
        let mut c = Actuated::new(&m);
        // N green since t = 0; vehicles keep arriving every 2 s on N until 20 s
        for t in (0..=20).step_by(2) {
            car(&mut c, 0, t as f64);
        }
        // without a call on E/W it rests, until maximum green ends the stage anyway
        assert_eq!(c.decide(&view(&m, 0, 30.0, &ok), 30.0), Decision::Hold);
        assert!(c.explain().contains("resting"));
        let mut idle = Actuated::new(&m);
        assert_eq!(
            idle.decide(&view(&m, 0, 59.0, &ok), 59.0),
            Decision::Switch(1)
        );
        assert!(
            idle.explain().contains("no call elsewhere"),
            "{}",
            idle.explain()
        );
        car(&mut c, 1, 30.0);
        for t in (0..=20).step_by(2) {
            car(&mut c, 0, 30.0 + t as f64);
        }
        // vehicles within 3 s: extend
        assert_eq!(c.decide(&view(&m, 0, 51.0, &ok), 51.0), Decision::Hold);
        assert!(c.explain().contains("extending"), "{}", c.explain());
        // 3 s without a vehicle: gap-out
        assert_eq!(c.decide(&view(&m, 0, 53.0, &ok), 53.0), Decision::Switch(1));
        assert!(c.explain().contains("gap-out"), "{}", c.explain());
    }

    #[test]
    fn maxes_out_under_continuous_demand_and_a_faulty_detector_means_max_recall() {
        let m = crossroads();
        let ok = [false; 4];
        let mut c = Actuated::new(&m);
        car(&mut c, 1, 0.0);
        for t in 0..=59 {
            car(&mut c, 0, t as f64);
            let d = c.decide(&view(&m, 0, t as f64, &ok), t as f64);
            if t < 59 {
                assert_eq!(d, Decision::Hold, "t={t}");
            } else {
                assert_eq!(d, Decision::Switch(1));
                assert!(c.explain().contains("max-out"));
            }
        }
        // detector det-e (E) stuck: stage EW always called and never gaps out
        let faulty = [false, true, false, false];
        let mut c = Actuated::new(&m);
        assert_eq!(
            c.decide(&view(&m, 0, 10.0, &faulty), 10.0),
            Decision::Switch(1),
            "recall"
        );
        car(&mut c, 0, 100.0);
        assert_eq!(
            c.decide(&view(&m, 1, 30.0, &faulty), 130.0),
            Decision::Hold,
            "no gap-out"
        );
        assert_eq!(
            c.decide(&view(&m, 1, 60.0, &faulty), 160.0),
            Decision::Switch(0)
        );
        assert!(c.explain().contains("max recall"), "{}", c.explain());
    }
}
