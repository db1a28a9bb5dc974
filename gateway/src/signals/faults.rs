//! The detector fault monitor: from the samples a detector delivers (and does not deliver),
//! decides whether it is stuck on (occupied without a break, and counting no vehicle, for
//! longer than `stuck_on_s`: a stop-bar loop under a saturated queue stays occupied for
//! minutes but counts the vehicles that leave over it, and is healthy),
//! stuck off (no vehicle for `stuck_off_s` while another detector of the same approach sees
//! traffic) or silent (no sample for `no_data_s`). Faults begin and end as [`FaultChange`]s; the
//! controllers see the faulty set and degrade (max recall, fixed-time for that approach).
//! Each change also words its own event ([`FaultChange::event`]). Pure: time passed in,
//! seconds (the monotonic clock live).

use std::fmt;

use citygate_protocols::Event;

use super::config::ControllerKind;
use super::controller::DetectorSample;
use super::model::Intersection;

/// Occupancy (0..=1) treated as "occupied" when a sample has no presence bit.
pub const FULL_OCCUPANCY: f64 = 0.99;

/// Kinds of detector fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// No sample for `no_data_s`.
    NoData,
    /// Occupied without a break, and no vehicle counted, for longer than `stuck_on_s`.
    StuckOn,
    /// No vehicle for `stuck_off_s` while the approach's other detectors count traffic.
    StuckOff,
}

impl FaultKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultKind::NoData => "no_data",
            FaultKind::StuckOn => "stuck_on",
            FaultKind::StuckOff => "stuck_off",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::NoData => "no data",
            FaultKind::StuckOn => "stuck on",
            FaultKind::StuckOff => "stuck off",
        })
    }
}

/// A fault began (`kind: Some`) or ended (`None`, with the kind that ended in `was`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultChange {
    pub detector: usize,
    pub kind: Option<FaultKind>,
    pub was: Option<FaultKind>,
    pub at: f64,
}

impl FaultChange {
    /// The `detector_fault` or `detector_recovered` event of this change (`None` for an
    /// unknown detector), naming the approaches it degrades and how the controller copes.
    pub fn event(&self, m: &Intersection) -> Option<Event> {
        let c = self;
        let det = m.detectors.get(c.detector)?;
        let approaches: Vec<&str> = det
            .groups
            .iter()
            .filter_map(|&g| m.groups.get(g).map(|x| x.approach.as_str()))
            .collect();
        let message = match (c.kind, c.was) {
            (Some(k), _) => format!(
                "detector {} {k}: approach {} degraded ({})",
                det.id,
                approaches.join(", "),
                match m.controller {
                    ControllerKind::FixedTime => "keeps its last measured flow",
                    ControllerKind::MaxPressure => "assumed queue, served like fixed-time",
                    _ => "maximum-green recall",
                }
            ),
            (None, Some(k)) => format!("detector {} recovered (was {k})", det.id),
            (None, None) => return None,
        };
        let kind = if c.kind.is_some() {
            "detector_fault"
        } else {
            "detector_recovered"
        };
        let mut e = Event {
            kind: kind.to_string(),
            source: format!("{}/{}", m.id, det.id),
            message,
            time: c.at,
        };
        if let Some(k) = c.kind {
            e.message.push_str(&format!(" [{}]", k.as_str()));
        }
        Some(e)
    }
}

#[derive(Debug, Clone, Copy)]
struct DetState {
    last_sample: f64,
    occupied_since: Option<f64>,
    last_activity: f64,
    fault: Option<FaultKind>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct FaultMonitor {
    stuck_on_s: f64,
    stuck_off_s: f64,
    no_data_s: f64,
    /// Per detector: the other detectors on one of its approaches.
    peers: Vec<Vec<usize>>,
    state: Vec<DetState>,
    faulty: Vec<bool>,
}

impl FaultMonitor {
    /// Every detector starts healthy at `now` (a silent one is reported after `no_data_s`).
    pub fn new(m: &Intersection, now: f64) -> Self {
        let approaches = |d: usize| -> Vec<&str> {
            m.detectors[d]
                .groups
                .iter()
                .filter_map(|&g| m.groups.get(g).map(|x| x.approach.as_str()))
                .collect()
        };
        let peers = (0..m.detectors.len())
            .map(|d| {
                let mine = approaches(d);
                (0..m.detectors.len())
                    .filter(|&o| o != d && approaches(o).iter().any(|a| mine.contains(a)))
                    .collect()
            })
            .collect();
        FaultMonitor {
            stuck_on_s: m.params.stuck_on_s,
            stuck_off_s: m.params.stuck_off_s,
            no_data_s: m.params.no_data_s,
            peers,
            state: vec![
                DetState {
                    last_sample: now,
                    occupied_since: None,
                    last_activity: now,
                    fault: None,
                };
                m.detectors.len()
            ],
            faulty: vec![false; m.detectors.len()],
        }
    }

    /// A sample arrived.
    pub fn on_sample(&mut self, s: &DetectorSample) {
        let Some(st) = self.state.get_mut(s.detector) else {
            return;
        };
        st.last_sample = st.last_sample.max(s.at);
        let occupied = s.occupied || s.occupancy >= FULL_OCCUPANCY;
        if occupied {
            if st.occupied_since.is_none() {
                st.occupied_since = Some(s.at);
                st.last_activity = st.last_activity.max(s.at);
            }
        } else {
            st.occupied_since = None;
        }
        if s.vehicles > 0.0 {
            st.last_activity = st.last_activity.max(s.at);
        }
    }

    /// Re-evaluates every detector at `now`; returns the faults that began or ended.
    pub fn tick(&mut self, now: f64) -> Vec<FaultChange> {
        let mut changes = Vec::new();
        let window = self.stuck_off_s;
        // a healthy peer on the same approach counted or saw a vehicle within stuck_off_s
        let active_peer = |me: usize, state: &[DetState], peers: &[Vec<usize>]| {
            peers.get(me).is_some_and(|ps| {
                ps.iter().any(|&o| {
                    state
                        .get(o)
                        .is_some_and(|p| p.fault.is_none() && now - p.last_activity < window)
                })
            })
        };
        let mut next = Vec::with_capacity(self.state.len());
        for (d, st) in self.state.iter().enumerate() {
            let kind = if now - st.last_sample > self.no_data_s {
                Some(FaultKind::NoData)
            } else if st.occupied_since.is_some_and(|t| now - t > self.stuck_on_s)
                && now - st.last_activity > self.stuck_on_s
            {
                Some(FaultKind::StuckOn)
            } else if now - st.last_activity > self.stuck_off_s
                && active_peer(d, &self.state, &self.peers)
            {
                Some(FaultKind::StuckOff)
            } else if st.fault == Some(FaultKind::StuckOff)
                && now - st.last_activity > self.stuck_off_s
            {
                // stays stuck off until it counts again, even if its peers go quiet
                Some(FaultKind::StuckOff)
            } else {
                None
            };
            next.push(kind);
        }
        for (d, kind) in next.into_iter().enumerate() {
            let st = &mut self.state[d];
            if st.fault != kind {
                changes.push(FaultChange {
                    detector: d,
                    kind,
                    was: st.fault,
                    at: now,
                });
                st.fault = kind;
            }
            self.faulty[d] = kind.is_some();
        }
        changes
    }

    /// By detector: currently faulty.
    pub fn faulty(&self) -> &[bool] {
        &self.faulty
    }

    /// The fault of detector `d`, if any.
    pub fn fault(&self, d: usize) -> Option<FaultKind> {
        self.state.get(d).and_then(|s| s.fault)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{crossroads, parse, CROSSROADS};
    use super::*;

    fn sample(d: usize, vehicles: f64, occupied: bool, at: f64) -> DetectorSample {
        DetectorSample {
            detector: d,
            vehicles,
            occupancy: if occupied { 1.0 } else { 0.1 },
            occupied,
            at,
        }
    }

    /// The crossroads with N and S on one approach, so that they are each other's peers.
    fn shared_approach() -> Intersection {
        let text = CROSSROADS.replace("approach = \"south\"", "approach = \"north\"");
        match Intersection::from_config(&parse(&text)) {
            Ok(m) => m,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn stuck_on_is_reported_after_the_threshold_and_clears() {
        let m = crossroads();
        let mut f = FaultMonitor::new(&m, 0.0);
        let mut changes = Vec::new();
        for t in 0..=400 {
            let t = t as f64;
            for d in 0..4 {
                let stuck = d == 0 && t >= 50.0;
                f.on_sample(&sample(d, if stuck { 0.0 } else { 0.2 }, stuck, t));
            }
            changes.extend(f.tick(t));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].detector, 0);
        assert_eq!(changes[0].kind, Some(FaultKind::StuckOn));
        assert_eq!(changes[0].at, 351.0, "occupied since 50 s, more than 300 s");
        assert_eq!(f.faulty(), &[true, false, false, false]);
        f.on_sample(&sample(0, 1.0, false, 401.0));
        let c = f.tick(401.0);
        assert_eq!(c[0].kind, None);
        assert_eq!(c[0].was, Some(FaultKind::StuckOn));
    }

    #[test]
    fn a_loop_occupied_for_minutes_that_keeps_counting_is_a_saturated_queue_not_stuck() {
        let m = crossroads();
        let mut f = FaultMonitor::new(&m, 0.0);
        let mut changes = Vec::new();
        for t in 0..=900 {
            let t = t as f64;
            for d in 0..4 {
                // detector 0 always occupied, a vehicle leaving over it every 4 s
                let leaving = if (t as u64).is_multiple_of(4) {
                    1.0
                } else {
                    0.0
                };
                f.on_sample(&sample(d, if d == 0 { leaving } else { 0.2 }, d == 0, t));
            }
            changes.extend(f.tick(t));
        }
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn silence_is_no_data_and_a_dead_loop_beside_a_busy_one_is_stuck_off() {
        let m = shared_approach();
        let mut f = FaultMonitor::new(&m, 0.0);
        let mut log = Vec::new();
        for t in 0..=1000 {
            let t = t as f64;
            // N counts traffic, S reports samples but never a vehicle, E is silent after 10 s,
            // W is quiet with no busy peer on its approach
            f.on_sample(&sample(0, 0.3, false, t));
            f.on_sample(&sample(2, 0.0, false, t));
            if t <= 10.0 {
                f.on_sample(&sample(1, 0.0, false, t));
            }
            f.on_sample(&sample(3, 0.0, false, t));
            log.extend(f.tick(t));
        }
        let find = |d: usize| log.iter().find(|c| c.detector == d).copied();
        assert_eq!(
            find(1).map(|c| (c.kind, c.at)),
            Some((Some(FaultKind::NoData), 71.0))
        );
        assert_eq!(
            find(2).map(|c| (c.kind, c.at)),
            Some((Some(FaultKind::StuckOff), 901.0))
        );
        assert_eq!(
            find(3),
            None,
            "no traffic anywhere on its approach: not a fault"
        );
        assert_eq!(find(0), None);
    }
}
