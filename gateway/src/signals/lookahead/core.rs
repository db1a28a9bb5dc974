//! The look-ahead controller's decision core, on an index-based [`Layout`] of the
//! intersection: detector samples feed the [`Estimator`]; every decision replans the schedule
//! ([`Problem::solve`]) over a rolling horizon and answers hold or switch; the plan's departures
//! are the planned outflow for neighbours.
//!
//! Every parameter comes from the layout (the intersection config) or from measurement; the
//! derived ones are documented where they are computed.

use super::arrivals::{DetectorSpec, Estimator, Params};
use super::schedule::{Plan, Problem};

/// HCM start-up lost time: seconds at the start of a green before a standing queue discharges
/// at the saturation flow.
pub const STARTUP_LOST_S: f64 = 2.0;
/// Time constant of measured flows and turning shares (s).
pub const FLOW_WINDOW_S: f64 = 300.0;
/// Weight of one saturated second in the measured discharge of a group in a stage.
pub const DISCHARGE_ALPHA: f64 = 0.02;
/// Saturated seconds measured before the measured discharge replaces the configured one.
pub const DISCHARGE_SAMPLES: u32 = 30;
/// Shortest planning horizon (s).
pub const MIN_HORIZON_S: f64 = 60.0;
/// Longest planning horizon (s).
pub const MAX_HORIZON_S: f64 = 180.0;

/// The intersection as the look-ahead core sees it (all indices).
#[derive(Debug, Clone)]
pub struct Layout {
    pub groups: usize,
    /// Groups green in each stage.
    pub stages: Vec<Vec<usize>>,
    /// `[from][to]` stage intergreen (s).
    pub intergreen: Vec<Vec<f64>>,
    pub min_green: Vec<f64>,
    pub max_green: Vec<f64>,
    /// Per group: its own maximum green.
    pub group_max_green: Vec<f64>,
    /// Per group: saturation discharge (vehicles per second, all its lanes).
    pub discharge: Vec<f64>,
    pub detectors: Vec<DetectorSpec>,
    /// Free-flow approach speed (m/s).
    pub speed_mps: f64,
    /// A cluster of arrivals ends at a gap this long (s).
    pub cluster_gap_s: f64,
    /// `[stage][group]`: the groups of the stage that group gives way to there.
    pub opposed_by: Vec<Vec<Vec<usize>>>,
    /// Per group: its lanes.
    pub lanes: Vec<f64>,
}

impl Layout {
    /// Shortest cycle: every stage at min green, each followed by its longest intergreen.
    pub fn min_cycle_s(&self) -> f64 {
        (0..self.stages.len())
            .map(|s| self.min_green[s] + self.intergreen[s].iter().copied().fold(0.0f64, f64::max))
            .sum()
    }

    /// The horizon: the longest green plus one shortest cycle, so that the plan always sees
    /// every stage served again; within [`MIN_HORIZON_S`], [`MAX_HORIZON_S`].
    pub fn horizon_s(&self) -> f64 {
        (self.longest_max_green_s() + self.min_cycle_s()).clamp(MIN_HORIZON_S, MAX_HORIZON_S)
    }

    /// The longest finite stage max green (s).
    fn longest_max_green_s(&self) -> f64 {
        self.max_green
            .iter()
            .copied()
            .filter(|m| m.is_finite())
            .fold(0.0f64, f64::max)
    }

    /// The starvation bound: a queued vehicle should wait no longer than one longest green
    /// of another stage and one change (the longest max green plus the longest
    /// intergreen); beyond it, its cost per second grows steeply. The horizon (a longest
    /// green plus a shortest cycle) was measured too: under oversaturation the protected
    /// turns then waited 250 s on average. A shortest cycle plus a change (45 s at the
    /// peak scenarios' intersection) cut the 95th percentile further there, but on a
    /// two-stage crossroads (29 s) it cuts off a platoon's green to serve one vehicle
    /// (docs/bench/sumo-peak.md).
    pub fn max_wait_s(&self) -> f64 {
        let longest = self.longest_max_green_s();
        let change = self
            .intergreen
            .iter()
            .flatten()
            .copied()
            .fold(0.0f64, f64::max);
        (longest + change).min(self.horizon_s())
    }

    /// What a vehicle left queued at the horizon costs: the least it still waits, one change of
    /// stage (the shortest intergreen between two stages). Its wait up to the horizon is
    /// already counted second by second; charging more (half the shortest cycle was tried)
    /// made plans that leave a few vehicles at the horizon look worse than plans that hold
    /// long greens, at the cost of mean and 95th-percentile delay (docs/BENCHMARKS.md).
    pub fn leftover_wait_s(&self) -> f64 {
        self.intergreen
            .iter()
            .enumerate()
            .flat_map(|(a, row)| row.iter().enumerate().filter(move |(b, _)| *b != a))
            .map(|(_, &s)| s)
            .fold(f64::INFINITY, f64::min)
            .min(self.min_cycle_s())
    }
}

/// Hold the running stage or change to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Hold,
    Switch(usize),
}

#[derive(Debug, Clone)]
pub struct Core {
    layout: Layout,
    est: Estimator,
    plan: Option<Plan>,
    planned_at: f64,
    explain: String,
    /// Per group: green now (for the estimator's empty-stop-bar check).
    green: Vec<bool>,
    /// Per group: when its green (without a break) began.
    green_since: Vec<Option<f64>>,
    /// Per group: when it was last served (green with the right of way, or less than half a
    /// vehicle queued).
    last_served: Vec<Option<f64>>,
    /// The saturated regime (see [`Problem::saturated`]), with hysteresis on what the last
    /// plan left queued at its horizon.
    saturated: bool,
    /// Per group: stop-bar counts since the last decision.
    departed: Vec<f64>,
    /// Per group: the queue at the last decision.
    last_queue: Vec<f64>,
    /// `[stage][group]`: measured discharge while queued (vehicles/s) and its samples.
    measured: Vec<Vec<(f64, u32)>>,
    /// The stage and whether it was running (not a transition) at the last decision.
    last_running: Option<usize>,
}

impl Core {
    pub fn new(layout: Layout) -> Core {
        let est = Estimator::new(
            layout.groups,
            layout.detectors.clone(),
            Params {
                speed_mps: layout.speed_mps,
                flow_window_s: FLOW_WINDOW_S,
                empty_gap_s: layout.cluster_gap_s.max(1.0),
            },
        );
        Core {
            green: vec![false; layout.groups],
            green_since: vec![None; layout.groups],
            last_served: vec![None; layout.groups],
            saturated: false,
            departed: vec![0.0; layout.groups],
            last_queue: vec![0.0; layout.groups],
            measured: vec![vec![(0.0, 0); layout.groups]; layout.stages.len()],
            last_running: None,
            layout,
            est,
            plan: None,
            planned_at: 0.0,
            explain: String::new(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn estimator_mut(&mut self) -> &mut Estimator {
        &mut self.est
    }

    pub fn estimator(&self) -> &Estimator {
        &self.est
    }

    /// A detector sample: vehicles counted since the last one, and presence now.
    pub fn on_detector(&mut self, detector: usize, vehicles: f64, occupied: bool, at: f64) {
        if let Some(d) = self.layout.detectors.get(detector) {
            if d.role == super::arrivals::Role::StopBar && vehicles > 0.0 && !d.groups.is_empty() {
                let per = vehicles / d.groups.len() as f64;
                for &g in &d.groups {
                    if let Some(x) = self.departed.get_mut(g) {
                        *x += per;
                    }
                }
            }
        }
        self.est.on_count(detector, vehicles, at);
        self.est.on_presence(detector, occupied, at);
    }

    /// The decision at `now`: `stage` green for `green_for` s, or a transition into it.
    pub fn decide(
        &mut self,
        stage: usize,
        in_transition: bool,
        green_for: f64,
        now: f64,
    ) -> Choice {
        let l = &self.layout;
        let k = l.stages.len();
        if k == 0 || stage >= k {
            return Choice::Hold;
        }
        for (g, slot) in self.green.iter_mut().enumerate() {
            *slot = !in_transition && l.stages[stage].contains(&g) && green_for >= l.cluster_gap_s;
        }
        // groups green without a break: those of the stage (in a transition, those that stay)
        for (g, since) in self.green_since.iter_mut().enumerate() {
            if !l.stages[stage].contains(&g) {
                *since = None;
            } else if !in_transition && since.is_none() {
                *since = Some(now - green_for);
            }
        }
        // measured discharge: a group green in a running stage with a queue left at the last
        // decision discharged what its stop bar counted since
        if let Some(st) = self.last_running {
            for g in 0..l.groups {
                let started = self.green_since[g].is_some_and(|t| now - t > STARTUP_LOST_S + 1.0);
                if l.stages[st].contains(&g) && started && self.last_queue[g] >= 2.0 {
                    let m = &mut self.measured[st][g];
                    m.0 += DISCHARGE_ALPHA * (self.departed[g] - m.0);
                    m.1 += 1;
                }
            }
        }
        // served: green with the right of way (a group giving way, only once its queue is
        // gone)
        let served: Vec<bool> = (0..l.groups)
            .map(|g| {
                let gives_way = l
                    .opposed_by
                    .get(stage)
                    .and_then(|o| o.get(g))
                    .is_some_and(|o| !o.is_empty());
                self.green_since[g].is_some() && !in_transition && !gives_way
            })
            .collect();
        self.departed.iter_mut().for_each(|x| *x = 0.0);
        self.last_running = (!in_transition).then_some(stage);
        self.est.tick(&self.green, now);
        if in_transition {
            self.explain = format!("transition to stage {stage}");
            return Choice::Hold;
        }
        let h = l.horizon_s().ceil() as usize;
        let queue: Vec<f64> = (0..l.groups).map(|g| self.est.queue(g, now)).collect();
        self.last_queue.clone_from(&queue);
        let stage_discharge: Vec<Vec<f64>> = self
            .measured
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&(rate, n)| {
                        // the average starts at 0: unbias it (1 - (1 - a)^n)
                        if n >= DISCHARGE_SAMPLES {
                            rate / (1.0 - (1.0 - DISCHARGE_ALPHA).powi(n as i32))
                        } else {
                            f64::NAN
                        }
                    })
                    .collect()
            })
            .collect();
        for (g, last) in self.last_served.iter_mut().enumerate() {
            if served[g] || queue[g] < 0.5 || last.is_none() {
                *last = Some(now);
            }
        }
        // unserved: since the group was last served, or since its first queued vehicle
        // arrived, whichever is longer (a short protected green does not reset a long wait)
        let unserved_for: Vec<f64> = self
            .last_served
            .iter()
            .enumerate()
            .map(|(g, t)| {
                let since = t.map_or(0.0, |t| (now - t).max(0.0));
                since.max(self.est.oldest_wait(g, now))
            })
            .collect();
        let group_green_for: Vec<f64> = self
            .green_since
            .iter()
            .map(|s| s.map_or(0.0, |t| (now - t).max(0.0)))
            .collect();
        let arrivals: Vec<Vec<f64>> = (0..l.groups)
            .map(|g| self.est.arrivals(g, now, h))
            .collect();
        let plan = Problem {
            stages: &l.stages,
            intergreen: &l.intergreen,
            min_green: &l.min_green,
            max_green: &l.max_green,
            group_max_green: &l.group_max_green,
            group_green_for: &group_green_for,
            discharge: &l.discharge,
            stage_discharge: &stage_discharge,
            queue: &queue,
            arrivals: &arrivals,
            current: stage,
            green_for,
            startup_lost_s: STARTUP_LOST_S,
            leftover_wait_s: l.leftover_wait_s(),
            unserved_for: &unserved_for,
            wait_scale_s: l.min_cycle_s(),
            max_wait_s: l.max_wait_s(),
            saturated: self.saturated,
            cluster_gap_s: l.cluster_gap_s,
            opposed_by: &l.opposed_by,
            sneakers: &l.lanes,
        }
        .solve();
        // saturated once the plan leaves more queued at its horizon than a vehicle per lane
        // of the intersection, and no longer once that halves
        let lanes: f64 = l.lanes.iter().sum::<f64>().max(1.0);
        self.saturated = if self.saturated {
            plan.left > 0.5 * lanes
        } else {
            plan.left > lanes
        };
        let choice = match plan.next {
            Some(j) if plan.hold_s <= 0.0 && green_for >= l.min_green[stage] => Choice::Switch(j),
            _ => Choice::Hold,
        };
        let queued: f64 = queue.iter().sum();
        let regime = if self.saturated { ", saturated" } else { "" };
        self.explain = match choice {
            Choice::Hold => format!(
                "hold stage {stage} {:.0} s more ({queued:.1} queued, plan delay {:.0} veh-s{regime})",
                plan.hold_s, plan.cost
            ),
            Choice::Switch(j) => format!(
                "switch to stage {j} ({queued:.1} queued, plan delay {:.0} veh-s{regime})",
                plan.cost
            ),
        };
        self.plan = Some(plan);
        self.planned_at = now;
        choice
    }

    /// When the last decision was made.
    pub fn last_tick(&self) -> Option<f64> {
        self.plan.as_ref().map(|_| self.planned_at)
    }

    /// The last plan and when it was made.
    pub fn plan(&self) -> Option<(&Plan, f64)> {
        self.plan.as_ref().map(|p| (p, self.planned_at))
    }

    /// Vehicles group `g` is planned to discharge, per second from the plan's time:
    /// (start, end, vehicles) of each run of departures.
    pub fn planned_departures(&self, g: usize) -> Vec<(f64, f64, f64)> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        let Some(dep) = plan.departures.get(g) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut run: Option<(usize, f64)> = None;
        for (t, &v) in dep.iter().enumerate() {
            match (&mut run, v > 1e-9) {
                (Some((_, sum)), true) => *sum += v,
                (None, true) => run = Some((t, v)),
                (Some((start, sum)), false) => {
                    out.push((
                        self.planned_at + *start as f64,
                        self.planned_at + t as f64,
                        *sum,
                    ));
                    run = None;
                }
                (None, false) => {}
            }
        }
        if let Some((start, sum)) = run {
            out.push((
                self.planned_at + start as f64,
                self.planned_at + dep.len() as f64,
                sum,
            ));
        }
        out
    }

    pub fn explain(&self) -> &str {
        &self.explain
    }
}
