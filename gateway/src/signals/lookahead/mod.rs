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
//! places a neighbour's flow on its own groups through [`LookAhead::add_inflow`] (which of its
//! groups the neighbour's traffic enters, and the travel time), set by whoever knows the
//! road network (the SUMO run from the net). [`peer`] is the wire form of a planned flow on
//! the peer topic `citygate/v1/<gw>/peer/outflow`.
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

/// Where a neighbour's outflow enters this intersection.
#[derive(Debug, Clone, PartialEq)]
pub struct Inflow {
    /// The neighbour (intersection id) and the signal group its vehicles leave through.
    pub from: String,
    pub from_group: String,
    /// Our signal groups they reach (by index), and how the flow splits over them.
    pub groups: Vec<(usize, f64)>,
    /// Seconds from leaving the neighbour's stop line to reaching ours.
    pub travel_s: f64,
}

pub struct LookAhead {
    id: String,
    core: Core,
    /// Per neighbour: (its id, our group index, our group id).
    neighbours: Vec<(String, usize, String)>,
    inflows: Vec<Inflow>,
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
    }
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
            inflows: Vec::new(),
            faulty: vec![false; model.detectors.len()],
        }
    }

    /// Places `inflow`'s planned flows on our groups from now on.
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
}
