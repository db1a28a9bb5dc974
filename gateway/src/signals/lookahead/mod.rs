//! The look-ahead controller (`controller = "look_ahead"`), in the style of schedule-driven
//! control (SURTRAC; Xie, Smith, Barlow 2012). Every tick it
//! 1. turns advance and stop-bar detector samples into, per signal group, the queue at the
//!    stop line and the vehicles expected there in each coming second ([`arrivals`]): advance
//!    counts shifted by their travel time at the approach speed, stop-bar counts taken off,
//!    measured flow (and neighbours' planned outflows) beyond the detectors' reach;
//! 2. plans the stage sequence and green durations that minimise delay over a rolling
//!    horizon, by forward dynamic programming over the clusters of those arrivals
//!    ([`schedule`]), within min / max green and the intergreens ([`core`]);
//! 3. asks the safety supervisor only to hold the stage or to switch to the plan's next one.
//!
//! Neighbours exchange planned outflows: [`LookAhead::outflow`] gives, for every configured
//! neighbour, the vehicles the plan releases through its `via_group` and when; a receiver
//! places a neighbour's flow on its own groups by its [`Inflow`]s (which of its groups the
//! neighbour's traffic enters, and the travel time): the intersection's
//! `[[intersection.inflow]]` config, live and under SUMO alike (`citygate sumo import` writes
//! them from the net), or [`LookAhead::add_inflow`]. [`peer`] is the wire form of a planned
//! flow on the peer topic `citygate/v1/<gw>/peer/outflow`.
//!
//! Parameters come from the intersection config (min / max green, intergreens, saturation
//! flow, detector distances, `gap_s` as the cluster gap) and from measurement (flows, turning
//! shares); the approach speed is the lane's speed where known ([`LookAhead::with_speed`]),
//! else [`DEFAULT_APPROACH_SPEED_MPS`].

pub mod arrivals;
pub mod core;
pub mod peer;
pub mod schedule;

use self::arrivals::{DetectorSpec, Role};
use self::core::{Choice, Core, Layout};
use super::controller::{Controller, Decision, DetectorSample, PlannedFlow, View};
use super::model::{DetectorKind, GroupKind, Intersection};

/// Approach speed when the lanes' speed is not known: 50 km/h, the usual urban limit (m/s).
pub const DEFAULT_APPROACH_SPEED_MPS: f64 = 13.89;

pub use super::model::Inflow;

pub struct LookAhead {
    id: String,
    core: Core,
    /// Per neighbour: (its id, our group index, our group id).
    neighbours: Vec<(String, usize, String)>,
    inflows: Vec<Inflow>,
    /// Per inflow, the latest batch of announced arrivals at our stop line: (received in
    /// tick, first arrival, last arrival, vehicles); for status only.
    announced: Vec<(usize, f64, f64, f64, f64)>,
    /// When `decide` was last called (the estimator's tick).
    decided_at: Option<f64>,
    faulty: Vec<bool>,
}

impl std::fmt::Debug for LookAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookAhead")
            .field("id", &self.id)
            .field("explain", &self.core.explain())
            .finish()
    }
}

/// The look-ahead layout of a validated intersection.
pub fn layout(model: &Intersection, speed_mps: f64) -> Layout {
    let k = model.stages.len();
    // A stage runs once every group leaving it has cleared (yellow) and every group joining
    // it has waited its intergreen; groups in both stages stay green meanwhile.
    let intergreen = (0..k)
        .map(|a| {
            (0..k)
                .map(|b| {
                    let clearance = model.stages[a]
                        .groups
                        .iter()
                        .filter(|g| !model.stages[b].groups.contains(g))
                        .filter_map(|&g| model.groups.get(g))
                        .map(|g| g.clearance_time_s())
                        .fold(0.0, f64::max);
                    if a == b {
                        0.0
                    } else {
                        model.stage_intergreen(a, b).max(clearance)
                    }
                })
                .collect()
        })
        .collect();
    let detectors = model
        .detectors
        .iter()
        .map(|d| DetectorSpec {
            role: match d.kind {
                DetectorKind::StopBar => Role::StopBar,
                DetectorKind::Advance | DetectorKind::Queue => Role::Upstream,
            },
            distance_m: d.distance_m,
            groups: d.groups.clone(),
        })
        .collect();
    Layout {
        groups: model.groups.len(),
        stages: model.stages.iter().map(|s| s.groups.clone()).collect(),
        intergreen,
        min_green: (0..k).map(|s| model.stage_min_green(s)).collect(),
        max_green: (0..k).map(|s| model.stage_max_green(s)).collect(),
        group_max_green: model.groups.iter().map(|g| g.max_green_s).collect(),
        discharge: model
            .groups
            .iter()
            .map(|g| match g.kind {
                GroupKind::Vehicle => g.saturation_flow_vps(),
                _ => 0.0,
            })
            .collect(),
        detectors,
        speed_mps,
        cluster_gap_s: model.params.gap_s,
        opposed_by: opposed_by(model),
        lanes: model
            .groups
            .iter()
            .map(|g| g.lanes.len().max(1) as f64)
            .collect(),
    }
}

/// `[stage][group]`: whom each group gives way to in each stage. A turning group (left or
/// u-turn movements, no through) green in a stage with another approach's through group
/// gives way to it: they are not configured as conflicting, so the turn is permissive.
pub fn opposed_by(model: &Intersection) -> Vec<Vec<Vec<usize>>> {
    let has = |g: usize, m: &str| {
        model
            .groups
            .get(g)
            .is_some_and(|x| x.movements.iter().any(|v| v == m))
    };
    let turning = |g: usize| (has(g, "left") || has(g, "u_turn")) && !has(g, "through");
    model
        .stages
        .iter()
        .map(|st| {
            (0..model.groups.len())
                .map(|g| {
                    if !st.groups.contains(&g)
                        || !turning(g)
                        || model.groups[g].kind != GroupKind::Vehicle
                    {
                        return Vec::new();
                    }
                    st.groups
                        .iter()
                        .copied()
                        .filter(|&h| {
                            h != g
                                && has(h, "through")
                                && model.groups[h].kind == GroupKind::Vehicle
                                && model.groups[h].approach != model.groups[g].approach
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

impl LookAhead {
    pub fn new(model: &Intersection) -> LookAhead {
        LookAhead::with_speed(model, DEFAULT_APPROACH_SPEED_MPS)
    }

    /// With the approach speed (m/s), e.g. the lanes' speed limit.
    pub fn with_speed(model: &Intersection, speed_mps: f64) -> LookAhead {
        LookAhead {
            id: model.id.clone(),
            core: Core::new(layout(model, speed_mps)),
            neighbours: model
                .neighbours
                .iter()
                .filter_map(|n| {
                    let g = model.groups.get(n.via_group)?;
                    Some((n.intersection.clone(), n.via_group, g.id.clone()))
                })
                .collect(),
            inflows: model.inflows.clone(),
            announced: Vec::new(),
            decided_at: None,
            faulty: vec![false; model.detectors.len()],
        }
    }

    /// Places `inflow`'s planned flows on our groups from now on (in addition to, or instead
    /// of, the model's configured inflow from the same neighbour and group).
    pub fn add_inflow(&mut self, inflow: Inflow) {
        self.inflows
            .retain(|i| !(i.from == inflow.from && i.from_group == inflow.from_group));
        self.inflows.push(inflow);
    }

    pub fn core(&self) -> &Core {
        &self.core
    }
}

impl Controller for LookAhead {
    fn name(&self) -> &'static str {
        "look_ahead"
    }

    fn on_detector(&mut self, s: &DetectorSample) {
        if self.faulty.get(s.detector).copied().unwrap_or(false) {
            return;
        }
        self.core
            .on_detector(s.detector, s.vehicles, s.occupied, s.at);
    }

    fn decide(&mut self, view: &View<'_>, now: f64) -> Decision {
        self.faulty.clear();
        self.faulty.extend_from_slice(view.faulty_detectors);
        self.decided_at = Some(now);
        match self
            .core
            .decide(view.stage, view.in_transition, view.green_for_s, now)
        {
            Choice::Hold => Decision::Hold,
            Choice::Switch(j) => Decision::Switch(j),
        }
    }

    fn outflow(&self, _now: f64) -> Vec<PlannedFlow> {
        let mut out = Vec::new();
        for (to, g, gid) in &self.neighbours {
            for (leaves_at, until, vehicles) in self.core.planned_departures(*g) {
                out.push(PlannedFlow {
                    from: self.id.clone(),
                    to: to.clone(),
                    group: gid.clone(),
                    vehicles,
                    leaves_at,
                    until,
                });
            }
        }
        out
    }

    fn on_peer_flow(&mut self, flow: &PlannedFlow) {
        if flow.to != self.id {
            return;
        }
        let Some((source, i)) = self
            .inflows
            .iter()
            .enumerate()
            .find(|(_, i)| i.from == flow.from && i.from_group == flow.group)
        else {
            return;
        };
        // the configured split (e.g. lane counts), refined by the measured stop-bar shares
        let est = self.core.estimator();
        let weights: Vec<(usize, f64)> = i
            .groups
            .iter()
            .map(|&(g, w)| (g, w + est.share(g)))
            .collect();
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return;
        }
        let received = self.decided_at.unwrap_or(f64::NEG_INFINITY);
        self.announced
            .retain(|a| !(a.0 == source && a.1 < received));
        self.announced.push((
            source,
            received,
            flow.leaves_at + i.travel_s,
            flow.until + i.travel_s,
            flow.vehicles,
        ));
        let covers_from = self.core.last_tick().unwrap_or(flow.leaves_at) + i.travel_s;
        for (g, w) in weights {
            self.core.estimator_mut().on_peer(
                source,
                g,
                flow.leaves_at + i.travel_s,
                flow.until + i.travel_s,
                flow.vehicles * w / total,
                covers_from,
            );
        }
    }

    fn explain(&self) -> String {
        self.core.explain().to_string()
    }

    fn expected_from_peers(&self, now: f64) -> f64 {
        self.announced
            .iter()
            .map(|&(_, _, from, until, vehicles)| {
                if until <= now {
                    0.0
                } else if from >= now || until <= from {
                    vehicles
                } else {
                    vehicles * (until - now) / (until - from)
                }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{crossroads_with, parse, Monitor, CROSSROADS};
    use super::super::queue_model::{Demand, QueueModel};
    use super::super::runtime::{controller_for, IntersectionRuntime};
    use super::*;

    /// The crossroads, with an advance detector per approach 100 m upstream.
    fn with_advance(id: &str, extra: &str) -> Intersection {
        let mut text = CROSSROADS
            .replace("controller = \"actuated\"", "controller = \"look_ahead\"")
            .replace("id = \"int-1\"", &format!("id = \"{id}\"\n{extra}"));
        for (g, n) in [("N", 5), ("E", 6), ("S", 7), ("W", 8)] {
            text.push_str(&format!(
                "\n[[detector]]\nid = \"adv-{g}\"\nkind = \"advance\"\nlanes = [\"x\"]\ndistance_m = 100.0\ngroups = [\"{g}\"]\nsource = {{ sensor = \"int-1\", quantity = \"detector_vehicles_{n}\" }}\n"
            ));
        }
        match Intersection::from_config(&parse(&text)) {
            Ok(m) => m,
            Err(e) => panic!("{e:?}"),
        }
    }

    /// A vehicle left at the horizon costs one change of stage, the shortest intergreen (the
    /// crossroads: 5 s), not half the shortest cycle (12 s).
    #[test]
    fn a_vehicle_left_at_the_horizon_costs_the_shortest_intergreen() {
        let l = layout(&crossroads_with("look_ahead"), 10.0);
        assert_eq!((l.leftover_wait_s(), l.min_cycle_s()), (5.0, 24.0), "{l:?}");
    }

    #[test]
    fn config_look_ahead_runs_the_look_ahead_controller() {
        let m = crossroads_with("look_ahead");
        assert_eq!(controller_for(&m).name(), "look_ahead");
    }

    /// The whole runtime (fault monitor, safety supervisor) on the deterministic queue model,
    /// stop-bar detectors only: every tick safe by the independent monitor, no request
    /// refused, and the traffic served.
    fn queue_run(controller: &str) -> super::super::queue_model::Score {
        queue_run_with(controller, &[650.0, 150.0, 650.0, 150.0], None)
    }

    fn queue_run_with(
        controller: &str,
        vph: &[f64],
        incident: Option<super::super::queue_model::Incident>,
    ) -> super::super::queue_model::Score {
        let m = crossroads_with(controller);
        let mut rt = IntersectionRuntime::new(m.clone(), controller_for(&m));
        let mut q = QueueModel::new(&m, Demand { vph: vph.to_vec() });
        if let Some(i) = incident {
            q = q.with_incident(i);
        }
        let mut mon = Monitor::new(&m, 1.0);
        for t in 0..3600 {
            let states = q.step(&mut rt, f64::from(t), 1.0);
            if let Err(e) = mon.check(&states, f64::from(t)) {
                panic!("{controller} violated safety at {t}: {e}");
            }
        }
        q.score()
    }

    /// The whole runtime (fault monitor, safety supervisor) on SIG's deterministic queue
    /// model, stop-bar detectors only (no advance detector: the look-ahead falls back to
    /// queues from stop-bar occupancy): every tick safe by the independent monitor, no
    /// request refused, the traffic served, and within 30% of actuated control's delay (with
    /// nothing to look ahead at, it cannot be expected to do better).
    #[test]
    fn on_the_queue_model_it_is_safe_never_refused_and_serves_the_traffic() {
        let s = queue_run("look_ahead");
        let actuated = queue_run("actuated");
        assert_eq!(s.refused, 0, "{s:?}");
        assert!(s.arrived > 1500, "{s:?}");
        assert!(s.departed + 30 >= s.arrived, "{s:?}");
        assert!(s.max_queue < 30, "{s:?}");
        assert!(
            s.delay_veh_s <= 1.3 * actuated.delay_veh_s,
            "look-ahead {s:?} vs actuated {actuated:?}"
        );
    }

    /// The look-ahead and actuated control on the same queue model: the look-ahead never
    /// refused, serving at least 0.99 x what actuated serves, with no more delay, and no
    /// group waiting longer than actuated lets one wait (or 90 s).
    fn no_worse_than_actuated(vph: &[f64], incident: Option<super::super::queue_model::Incident>) {
        let s = queue_run_with("look_ahead", vph, incident);
        let actuated = queue_run_with("actuated", vph, incident);
        eprintln!("look-ahead {s:?}\nactuated {actuated:?}");
        assert_eq!(s.refused, 0, "{s:?}");
        assert!(
            s.departed as f64 >= 0.99 * actuated.departed as f64,
            "{s:?} vs {actuated:?}"
        );
        assert!(
            s.delay_veh_s <= actuated.delay_veh_s,
            "{s:?} vs {actuated:?}"
        );
        assert!(
            s.max_wait_s <= actuated.max_wait_s.max(90.0),
            "{s:?} vs {actuated:?}"
        );
    }

    /// Oversaturated (the north-south demand alone needs more than its share of the cycle):
    /// safe, never refused, it serves at least what actuated control serves, with no more
    /// delay, and the lighter east-west approaches are not starved.
    #[test]
    fn on_the_queue_model_oversaturated_it_serves_as_much_as_actuated_and_starves_no_one() {
        let vph = [1100.0, 600.0, 1100.0, 600.0];
        no_worse_than_actuated(&vph, None);
    }

    /// An incident: the north approach discharges at 40% for 20 minutes of a heavy hour,
    /// unannounced. Safe, never refused, served at least as well as by actuated control.
    #[test]
    fn on_the_queue_model_through_an_incident_it_does_no_worse_than_actuated() {
        let vph = [900.0, 400.0, 900.0, 400.0];
        let incident = super::super::queue_model::Incident {
            group: 0,
            from: 1200.0,
            until: 2400.0,
            factor: 0.4,
        };
        no_worse_than_actuated(&vph, Some(incident));
    }

    /// A platoon seen on the advance detector keeps the green going until it has passed.
    #[test]
    fn holds_the_green_for_a_platoon_on_the_advance_detector() {
        let m = with_advance("int-1", "");
        let mut la = LookAhead::with_speed(&m, 10.0);
        let faulty = vec![false; m.detectors.len()];
        let view = |green_for_s: f64| View {
            model: &m,
            stage: 0,
            in_transition: false,
            green_for_s,
            faulty_detectors: &faulty,
        };
        // EW (stage 1) has one vehicle waiting at its stop bar; NS has been green 20 s
        // with nothing left; a platoon of 10 passes N's advance detector (10 s away)
        let adv_n = m.detectors.iter().position(|d| d.id == "adv-N").unwrap();
        let adv_e = m.detectors.iter().position(|d| d.id == "adv-E").unwrap();
        let sample = |detector, vehicles, at| DetectorSample {
            detector,
            vehicles,
            occupancy: 0.0,
            occupied: false,
            at,
        };
        la.on_detector(&sample(adv_e, 1.0, 80.0));
        for t in 0..10 {
            la.on_detector(&sample(adv_n, 1.0, 100.0 + f64::from(t)));
        }
        assert_eq!(
            la.decide(&view(20.0), 100.0),
            Decision::Hold,
            "{}",
            la.explain()
        );
        // without the platoon, the same moment switches to EW
        let mut other = LookAhead::with_speed(&m, 10.0);
        other.on_detector(&sample(adv_e, 1.0, 80.0));
        assert_eq!(
            other.decide(&view(20.0), 100.0),
            Decision::Switch(1),
            "{}",
            other.explain()
        );
        // and never before min green (7 s), whatever waits
        let mut early = LookAhead::with_speed(&m, 10.0);
        early.on_detector(&sample(adv_e, 20.0, 50.0));
        assert_eq!(early.decide(&view(3.0), 100.0), Decision::Hold);
    }

    /// A's planned outflow through its group E reaches B's west approach after the travel
    /// time, beyond B's detectors.
    #[test]
    fn planned_outflow_reaches_the_neighbour() {
        let a = with_advance(
            "int-a",
            "neighbours = [{ intersection = \"int-b\", via_group = \"E\", travel_s = 30.0 }]",
        );
        let b = with_advance("int-b", "");
        let mut la = LookAhead::with_speed(&a, 10.0);
        let mut lb = LookAhead::with_speed(&b, 10.0);
        lb.add_inflow(Inflow {
            from: "int-a".into(),
            from_group: "E".into(),
            groups: vec![(3, 1.0)],
            travel_s: 30.0,
        });
        let faulty = vec![false; a.detectors.len()];
        // A: EW green (stage 1); 8 vehicles on E's approach, at the stop line in 5 s
        let adv_e = a.detectors.iter().position(|d| d.id == "adv-E").unwrap();
        la.on_detector(&DetectorSample {
            detector: adv_e,
            vehicles: 8.0,
            occupancy: 0.0,
            occupied: false,
            at: 15.0,
        });
        let view = View {
            model: &a,
            stage: 1,
            in_transition: false,
            green_for_s: 10.0,
            faulty_detectors: &faulty,
        };
        assert_eq!(la.decide(&view, 20.0), Decision::Hold, "{}", la.explain());
        let flows = la.outflow(20.0);
        assert!(
            flows.iter().all(|f| f.to == "int-b" && f.group == "E"),
            "{flows:?}"
        );
        let first = &flows[0];
        assert_eq!(first.leaves_at, 25.0, "{flows:?}");
        assert!(first.vehicles >= 7.5, "the platoon leaves A: {flows:?}");
        // B, deciding at the same time, expects them at W 30 s after they leave A
        let view_b = View {
            model: &b,
            stage: 0,
            in_transition: false,
            green_for_s: 10.0,
            faulty_detectors: &faulty,
        };
        lb.decide(&view_b, 20.0);
        lb.on_peer_flow(first);
        // a flow for someone else is ignored
        let mut stray = first.clone();
        stray.to = "int-c".into();
        lb.on_peer_flow(&stray);
        let arrivals = lb.core().estimator().arrivals(3, 20.0, 90);
        // leaves A from 25 s, at B 30 s later: 35 s from now
        let expected: f64 = arrivals[35..].iter().sum();
        assert!((expected - first.vehicles).abs() < 0.5, "{arrivals:?}");
        assert!(arrivals[10..35].iter().sum::<f64>() < 1e-9, "{arrivals:?}");
    }

    #[test]
    fn a_left_turn_green_with_the_opposing_through_gives_way_to_it() {
        let text = CROSSROADS
            .replace("controller = \"actuated\"", "controller = \"look_ahead\"")
            .replacen(
                "approach = \"west\"\nmovements = [\"through\", \"right\"]",
                "approach = \"west\"\nmovements = [\"left\"]",
                1,
            );
        let m = match Intersection::from_config(&parse(&text)) {
            Ok(m) => m,
            Err(e) => panic!("{e:?}"),
        };
        let id = |g: &str| m.groups.iter().position(|x| x.id == g).unwrap();
        let o = opposed_by(&m);
        let ew = m.stages.iter().position(|s| s.id == "EW").unwrap();
        let ns = m.stages.iter().position(|s| s.id == "NS").unwrap();
        assert_eq!(o[ew][id("W")], vec![id("E")]);
        assert!(o[ew][id("E")].is_empty());
        assert!(o[ns].iter().all(Vec::is_empty), "{o:?}");
        // the through crossroads: nobody gives way
        assert!(opposed_by(&crossroads_with("look_ahead"))
            .iter()
            .flatten()
            .all(Vec::is_empty));
    }
}
