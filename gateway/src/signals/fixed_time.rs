//! Fixed-time control with Webster's method: the stages run in configured order with fixed
//! greens; at the end of every measuring period the cycle and splits are recomputed from the
//! flows measured during it. Also [`PlanController`], which runs a named plan (hold a stage, or
//! a fixed cycle of stage greens) — the emergency plans `[hazard]` asks for.
//!
//! Webster: with y_i the flow ratio of stage i (the largest q/s of its vehicle groups), Y = Σ y_i
//! and L the lost time per cycle (the stage intergreens plus `lost_time_s` per stage), the
//! optimum cycle is C0 = (1.5 L + 5) / (1 − Y), clamped to `cycle_min_s..=cycle_max_s`; the
//! effective green C − L is split in proportion to y_i, and each green kept within the stage's
//! minimum and maximum green.

use super::controller::{Controller, Decision, DetectorSample, View};
use super::model::{GroupKind, Intersection, PlanKind};

/// Above this Y the intersection is oversaturated and Webster's formula breaks down: the
/// longest cycle is used.
pub const MAX_Y: f64 = 0.9;

/// A timing plan: the cycle and one green per stage (stage order).
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub cycle_s: f64,
    pub greens_s: Vec<f64>,
    /// Sum of the flow ratios it was computed from.
    pub y: f64,
}

/// Lost time per cycle: the intergreens of the stage sequence plus `lost_time_s` per stage.
pub fn lost_time(m: &Intersection) -> f64 {
    let n = m.stages.len();
    (0..n)
        .map(|i| m.stage_intergreen(i, (i + 1) % n) + m.params.lost_time_s)
        .sum()
}

/// Webster's cycle and splits for the stage flow ratios `y` (one per stage).
pub fn webster(m: &Intersection, y: &[f64]) -> Timing {
    let p = &m.params;
    let n = m.stages.len();
    let l = lost_time(m);
    let y_sum: f64 = y
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .sum();
    let cycle = if y_sum >= MAX_Y {
        p.cycle_max_s
    } else {
        ((1.5 * l + 5.0) / (1.0 - y_sum)).clamp(p.cycle_min_s, p.cycle_max_s)
    };
    let effective = (cycle - l).max(0.0);
    let greens_s = (0..n)
        .map(|i| {
            let share = if y_sum > 0.0 {
                y.get(i).copied().unwrap_or(0.0).max(0.0) / y_sum
            } else {
                1.0 / n as f64
            };
            (effective * share + p.lost_time_s).clamp(m.stage_min_green(i), m.stage_max_green(i))
        })
        .collect();
    Timing {
        cycle_s: cycle,
        greens_s,
        y: y_sum,
    }
}

/// Vehicles counted per signal group since the period began, by counting detector.
#[derive(Debug, Clone)]
struct Flows {
    counts: Vec<f64>,
    since: f64,
}

/// Fixed-time Webster controller.
#[derive(Debug, Clone)]
pub struct FixedTime {
    model: Intersection,
    timing: Timing,
    flows: Flows,
    /// Last measured flow ratio per stage (kept for stages whose detectors are faulty).
    last_y: Vec<f64>,
    /// Per detector: it counted something this period while not faulty.
    faulty_seen: Vec<bool>,
    reason: String,
    /// A new timing not yet reported as a plan change.
    changed: Option<String>,
}

impl FixedTime {
    /// Starts with the cycle Webster gives for a flow ratio of 0.5 spread evenly over the stages,
    /// until the first period has been measured.
    pub fn new(model: &Intersection) -> Self {
        let n = model.stages.len().max(1);
        let y = vec![0.5 / n as f64; n];
        let timing = webster(model, &y);
        FixedTime {
            model: model.clone(),
            reason: format!("initial plan: cycle {:.0} s", timing.cycle_s),
            timing,
            flows: Flows {
                counts: vec![0.0; model.groups.len()],
                since: f64::NAN,
            },
            last_y: y,
            faulty_seen: vec![false; model.detectors.len()],
            changed: None,
        }
    }

    /// The timing in force.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Ends a measuring period: flow ratios from the counts, then Webster.
    fn recompute(&mut self, now: f64) {
        let period = now - self.flows.since;
        if period <= 0.0 {
            return;
        }
        let m = &self.model;
        let mut y = Vec::with_capacity(m.stages.len());
        for (i, st) in m.stages.iter().enumerate() {
            let mut stage_y: Option<f64> = None;
            let mut blind = false;
            for &g in &st.groups {
                let grp = &m.groups[g];
                if grp.kind != GroupKind::Vehicle {
                    continue;
                }
                let dets = m.counting_detectors(g);
                if dets.is_empty() || dets.iter().any(|&d| self.faulty_seen[d]) {
                    blind = true;
                    continue;
                }
                let q = self.flows.counts[g] / period;
                let ratio = q / grp.saturation_flow_vps();
                stage_y = Some(stage_y.map_or(ratio, |v: f64| v.max(ratio)));
            }
            // A stage whose detectors failed keeps its last measured flow ratio.
            let v = match (stage_y, blind) {
                (Some(v), false) => v,
                (Some(v), true) => v.max(self.last_y.get(i).copied().unwrap_or(0.0)),
                (None, _) => self.last_y.get(i).copied().unwrap_or(0.0),
            };
            y.push(v);
        }
        let timing = webster(m, &y);
        let rounded = |t: &Timing| {
            t.greens_s
                .iter()
                .map(|g| g.round() as i64)
                .collect::<Vec<_>>()
        };
        let changed = rounded(&timing) != rounded(&self.timing);
        self.timing = timing;
        self.reason = format!(
            "Webster over {:.0} s: Y = {:.2}, cycle {:.0} s, greens {}",
            period,
            self.timing.y,
            self.timing.cycle_s,
            self.timing
                .greens_s
                .iter()
                .zip(&m.stages)
                .map(|(g, s)| format!("{} {:.0} s", s.id, g))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if changed {
            self.changed = Some(self.reason.clone());
        }
        self.last_y = y;
        self.flows.counts.iter_mut().for_each(|c| *c = 0.0);
        self.faulty_seen.iter_mut().for_each(|f| *f = false);
        self.flows.since = now;
    }
}

impl Controller for FixedTime {
    fn name(&self) -> &'static str {
        "fixed_time"
    }

    fn on_detector(&mut self, s: &DetectorSample) {
        if self.flows.since.is_nan() {
            self.flows.since = s.at;
        }
        let Some(d) = self.model.detectors.get(s.detector) else {
            return;
        };
        for &g in &d.groups {
            if self.model.counting_detectors(g).contains(&s.detector) {
                if let Some(c) = self.flows.counts.get_mut(g) {
                    *c += s.vehicles.max(0.0);
                }
            }
        }
    }

    fn decide(&mut self, view: &View<'_>, now: f64) -> Decision {
        if self.flows.since.is_nan() {
            self.flows.since = now;
        }
        for (seen, &f) in self.faulty_seen.iter_mut().zip(view.faulty_detectors) {
            *seen |= f;
        }
        if now - self.flows.since >= self.model.params.webster_period_s {
            self.recompute(now);
        }
        if view.in_transition {
            return Decision::Hold;
        }
        let green = self.timing.greens_s.get(view.stage).copied().unwrap_or(0.0);
        if view.green_for_s >= green.max(view.model.stage_min_green(view.stage)) {
            Decision::Switch((view.stage + 1) % view.model.stages.len().max(1))
        } else {
            Decision::Hold
        }
    }

    fn take_plan_change(&mut self) -> Option<String> {
        self.changed.take()
    }

    fn explain(&self) -> String {
        self.reason.clone()
    }
}

/// Runs a named plan of the model: holds its stage, or cycles through its steps.
#[derive(Debug, Clone)]
pub struct PlanController {
    id: String,
    kind: PlanKind,
    step: usize,
    reason: String,
}

impl PlanController {
    /// The plan `plan` (an index into `model.plans`); `None` if there is no such plan.
    pub fn new(model: &Intersection, plan: usize) -> Option<Self> {
        let p = model.plans.get(plan)?;
        Some(PlanController {
            id: p.id.clone(),
            kind: p.kind.clone(),
            step: 0,
            reason: format!("plan `{}` started", p.id),
        })
    }
}

impl Controller for PlanController {
    fn name(&self) -> &'static str {
        "plan"
    }

    fn on_detector(&mut self, _sample: &DetectorSample) {}

    fn decide(&mut self, view: &View<'_>, _now: f64) -> Decision {
        if view.in_transition {
            return Decision::Hold;
        }
        let min_done = view.green_for_s >= view.model.stage_min_green(view.stage);
        match &self.kind {
            PlanKind::Hold(s) => {
                if view.stage == *s {
                    self.reason = format!(
                        "plan `{}`: holding stage {}",
                        self.id, view.model.stages[*s].id
                    );
                    Decision::Hold
                } else if min_done {
                    self.reason =
                        format!("plan `{}`: to stage {}", self.id, view.model.stages[*s].id);
                    Decision::Switch(*s)
                } else {
                    Decision::Hold
                }
            }
            PlanKind::Steps(steps) => {
                if steps.is_empty() {
                    return Decision::Hold;
                }
                let (stage, green) = steps[self.step % steps.len()];
                if view.stage != stage {
                    // join the plan: go to the step's stage
                    return if min_done {
                        Decision::Switch(stage)
                    } else {
                        Decision::Hold
                    };
                }
                if view.green_for_s >= green && min_done {
                    self.step = (self.step + 1) % steps.len();
                    let (next, _) = steps[self.step];
                    self.reason = format!(
                        "plan `{}`: step {} ({} after {:.0} s)",
                        self.id,
                        self.step + 1,
                        view.model.stages[next].id,
                        view.green_for_s
                    );
                    if next == view.stage {
                        return Decision::Hold;
                    }
                    return Decision::Switch(next);
                }
                Decision::Hold
            }
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

    /// A naive plan of 30 s green per stage has a 70 s cycle on the crossroads (two 5 s
    /// intergreens). Webster shortens it for light demand and lengthens it for heavy demand.
    #[test]
    fn webster_is_shorter_than_a_naive_split_for_light_and_longer_for_heavy_demand() {
        let m = crossroads();
        let naive_cycle = 30.0 + 30.0 + m.stage_intergreen(0, 1) + m.stage_intergreen(1, 0);
        assert_eq!(naive_cycle, 70.0);
        assert_eq!(
            lost_time(&m),
            14.0,
            "two 5 s intergreens and 2 s lost per stage"
        );
        // light: 150 and 100 veh/h on 1800 veh/h lanes
        let light = webster(&m, &[150.0 / 1800.0, 100.0 / 1800.0]);
        // (1.5 × 14 + 5) / (1 − 0.139) = 30.2 s
        assert!(
            (light.cycle_s - 26.0 / (1.0 - 250.0 / 1800.0)).abs() < 1e-9,
            "{light:?}"
        );
        assert!(light.cycle_s < naive_cycle);
        // heavy: 700 and 500 veh/h
        let heavy = webster(&m, &[700.0 / 1800.0, 500.0 / 1800.0]);
        assert!(heavy.cycle_s > naive_cycle, "{heavy:?}");
        assert!(
            (heavy.cycle_s - 78.0).abs() < 1e-9,
            "(1.5×14+5)/(1−2/3) = 78 s: {heavy:?}"
        );
        // splits in proportion to the flow ratios (plus the lost time per stage)
        let e = heavy.cycle_s - 14.0;
        assert!((heavy.greens_s[0] - (e * 7.0 / 12.0 + 2.0)).abs() < 1e-9);
        assert!(heavy.greens_s[0] > heavy.greens_s[1]);
        // oversaturated: the longest cycle; minimum greens respected
        let over = webster(&m, &[0.6, 0.35]);
        assert_eq!(over.cycle_s, m.params.cycle_max_s);
        assert!(over.greens_s[1] >= m.stage_min_green(1));
        let idle = webster(&m, &[0.0, 0.0]);
        assert_eq!(idle.cycle_s, m.params.cycle_min_s);
        assert_eq!(idle.greens_s[0], idle.greens_s[1]);
    }

    #[test]
    fn splits_follow_the_flows_measured_over_a_period() {
        let m = crossroads();
        let mut c = FixedTime::new(&m);
        let faulty = vec![false; 4];
        let mut now = 0.0;
        while now < m.params.webster_period_s + 1.0 {
            // north and south 600 veh/h each, east and west 200 veh/h
            for (d, rate) in [(0, 600.0), (2, 600.0), (1, 200.0), (3, 200.0)] {
                c.on_detector(&DetectorSample {
                    detector: d,
                    vehicles: rate / 3600.0,
                    occupancy: 0.1,
                    occupied: false,
                    at: now,
                });
            }
            let v = View {
                model: &m,
                stage: 0,
                in_transition: true,
                green_for_s: 0.0,
                faulty_detectors: &faulty,
            };
            c.decide(&v, now);
            now += 1.0;
        }
        let t = c.timing();
        assert!((t.y - 800.0 / 1800.0).abs() < 0.01, "{t:?}");
        assert!(t.greens_s[0] > 2.0 * t.greens_s[1] - 5.0, "{t:?}");
        assert!(c.explain().contains("Webster"), "{}", c.explain());
        let change = c.take_plan_change();
        assert!(
            change.is_some_and(|m| m.contains("cycle")),
            "a new plan is a plan change"
        );
        assert_eq!(c.take_plan_change(), None);
    }
}
