//! Disaster alert rules: a pure, deterministic state machine from sensor readings to CAP 1.2
//! alert lifecycles, sensor-fault events and local actions.
//!
//! A reading runs a cycle of the groups that watch its sensor (an index sensor → groups);
//! what time alone changes (silence, stuck, persistence, windows sliding, delayed updates,
//! renewals) runs from a timer queue ([`schedule`]): every group whose deadline has come runs
//! a cycle on the next reading or tick. So a reading costs the same whatever the number of
//! groups, and the outputs are those of a cycle of every group on every call.
//!
//! Per group of sensors, each cycle does:
//! 1. **Faults.** A sensor that is out of range, silent, stuck while the others move, or far
//!    from the group median is reported once per onset and once on recovery
//!    ([`HazardOutput::SensorFault`]) and left out of the vote.
//! 2. **Levels.** Each sensor's rule value (raw, rise over a window, or sum over a window) moves
//!    its own hysteresis level (`raise` up, `clear` down).
//! 3. **Vote (k of n).** The group level is the highest level that at least `k` healthy sensors
//!    reach. With fewer than `k` healthy sensors the group holds its level (no raise, no clear)
//!    and reports itself degraded.
//! 4. **Persistence.** A level change is acted on only after the vote has held it for
//!    `persistence_s`.
//! 5. **Lifecycle.** Raise (`Alert`), escalate / de-escalate (`Update`, referencing earlier
//!    messages of the incident), clear (`Cancel`). Storm limit: after a message, the
//!    next one of the incident waits `min_update_interval_s` (and it carries the level of that
//!    moment, so an oscillation in between produces nothing); a new incident of the group waits
//!    the same after a cancel. An unchanged alert is renewed (`Update`, [`Lifecycle::Refresh`])
//!    when half of `expires_s` has passed. `<references>` names the incident's first message and
//!    the latest ones, at most [`message::MAX_REFERENCES`].
//!
//! Identifiers are `<prefix>.<group>.<incident>.<message>`, `<incidents>` is
//! `<prefix>.<group>.<incident>`. The incident number is the raise time in whole epoch seconds,
//! or one more than the group's previous incident, or the caller's floor
//! ([`HazardEngine::set_incident_floor`]), whichever is largest. The group's previous
//! incident and any open incident survive a restart through [`persist`] (stored with each
//! alert), so numbers are unique across restarts and clock steps.
//!
//! Time is `now`, passed in (seconds since the epoch); `Reading::time` is not used, so a device
//! with a wrong clock cannot confuse the rules. `now` going backwards is treated as no time
//! passing; a non-finite `now` or one outside 0..2e11 is ignored.

pub mod config;
pub mod message;
#[cfg(test)]
mod model;
pub mod persist;
mod schedule;
mod sensor;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use citygate_protocols::cap::{Alert, Reference};
use citygate_protocols::{Event, Quality, Reading};

pub use config::{
    AccumulationInput, AreaConfig, CircleConfig, ConfigError, Direction, EmergencyPlanConfig,
    FaultConfig, GroupConfig, HazardConfig, LevelConfig, PublishConfig, RuleConfig,
};
pub use sensor::FaultKind;

use schedule::Timers;
use sensor::SensorState;

/// Largest `now` accepted (about the year 8300; CAP times stop at 9999).
const MAX_NOW: f64 = 2.0e11;

/// What the rules ask the gateway to do.
#[derive(Debug, Clone, PartialEq)]
pub enum HazardOutput {
    /// A CAP message to send (outbox class Alert).
    Alert(AlertAction),
    /// A sensor fault began or ended (outbox class Event).
    SensorFault(SensorFaultReport),
    /// A group has fewer healthy sensors than its `k`, or has them again (class Event).
    Degraded {
        group: String,
        active: bool,
        event: Event,
    },
    /// Publish on the local broker (siren, variable message sign).
    Publish { topic: String, payload: String },
    /// Ask the signal safety layer to run (or stop) an emergency plan.
    EmergencyPlan {
        intersection: String,
        plan: String,
        active: bool,
    },
}

/// Where an alert message stands in its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// First message, `msgType` Alert.
    Raise,
    /// Update to a more severe level.
    Escalate,
    /// Update to a less severe level.
    DeEscalate,
    /// Update at the same level, sent when half of `expires_s` has passed since the last
    /// message, so that receivers do not drop a hazard that is still there.
    Refresh,
    /// `msgType` Cancel: the hazard is over.
    Cancel,
}

/// One CAP message of an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertAction {
    pub group: String,
    pub incident: u64,
    pub lifecycle: Lifecycle,
    /// Level name after this message; `None` for a cancel.
    pub level: Option<String>,
    /// Ready to send: `alert.to_body()` gives the XML and JSON forms.
    pub alert: Alert,
}

/// A sensor fault onset (`active`) or recovery.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorFaultReport {
    pub group: String,
    pub sensor: String,
    pub fault: FaultKind,
    pub active: bool,
    /// `kind` is `sensor_fault` or `sensor_recovered`, `source` the sensor id.
    pub event: Event,
}

/// A snapshot of one group, for status pages and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStatus {
    pub id: String,
    /// The level the vote has settled on (after persistence), if any.
    pub level: Option<String>,
    /// The level last told to the public, if an incident is open.
    pub level_sent: Option<String>,
    pub incident: Option<u64>,
    /// The group value: the k-th most severe healthy sensor value.
    pub value: Option<f64>,
    pub healthy: usize,
}

struct Incident {
    number: u64,
    /// Every message sent so far, oldest first.
    msgs: Vec<Reference>,
    level_sent: usize,
    last_sent: f64,
}

struct GroupState {
    sensors: Vec<SensorState>,
    /// Level after vote and persistence, 0 = none.
    committed: usize,
    /// Per level `L` (index `L`, 0 unused): since when the vote has been ≥ `L` / < `L`.
    up_since: Vec<Option<f64>>,
    down_since: Vec<Option<f64>>,
    degraded: bool,
    value: Option<f64>,
    healthy: usize,
    incident: Option<Incident>,
    rearm_at: f64,
    last_incident: u64,
}

/// The hazard rules of one gateway.
pub struct HazardEngine {
    cfg: HazardConfig,
    groups: Vec<GroupState>,
    /// Sensor id → (group, sensor) positions.
    index: HashMap<String, Vec<(usize, usize)>>,
    started: Option<f64>,
    last_now: f64,
    incident_floor: u64,
    /// Deadlines of time-driven work per group; every group runs at the first call.
    timers: Timers,
    /// Groups to run in this call (scratch, kept to avoid an allocation per reading).
    run: Vec<usize>,
}

impl std::fmt::Debug for HazardEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HazardEngine")
            .field("groups", &self.cfg.groups.len())
            .field("last_now", &self.last_now)
            .finish()
    }
}

impl HazardEngine {
    /// Validates `cfg` and builds the engine.
    pub fn new(cfg: HazardConfig) -> Result<Self, Vec<ConfigError>> {
        cfg.validate()?;
        let mut index: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let groups: Vec<GroupState> = cfg
            .groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                for (si, s) in g.sensors.iter().enumerate() {
                    index.entry(s.clone()).or_default().push((gi, si));
                }
                let n = g.levels.len() + 1;
                GroupState {
                    sensors: g.sensors.iter().map(|_| SensorState::default()).collect(),
                    committed: 0,
                    up_since: vec![None; n],
                    down_since: vec![None; n],
                    degraded: false,
                    value: None,
                    healthy: 0,
                    incident: None,
                    rearm_at: f64::NEG_INFINITY,
                    last_incident: 0,
                }
            })
            .collect();
        let mut timers = Timers::new(groups.len());
        for gi in 0..groups.len() {
            timers.set(gi, Some(0.0));
        }
        Ok(HazardEngine {
            cfg,
            groups,
            index,
            started: None,
            last_now: f64::NEG_INFINITY,
            incident_floor: 0,
            timers,
            run: Vec::new(),
        })
    }

    pub fn config(&self) -> &HazardConfig {
        &self.cfg
    }

    /// New incidents get at least this number (e.g. a counter the caller persists).
    pub fn set_incident_floor(&mut self, n: u64) {
        self.incident_floor = n;
    }

    /// One more than the largest incident number used so far (or the floor): what to persist.
    pub fn next_incident_floor(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| g.last_incident.saturating_add(1))
            .fold(self.incident_floor, u64::max)
    }

    /// Status of every group, in configuration order.
    pub fn status(&self) -> Vec<GroupStatus> {
        self.cfg
            .groups
            .iter()
            .zip(&self.groups)
            .map(|(g, s)| GroupStatus {
                id: g.id.clone(),
                level: level_name(g, s.committed),
                level_sent: s
                    .incident
                    .as_ref()
                    .and_then(|i| level_name(g, i.level_sent)),
                incident: s.incident.as_ref().map(|i| i.number),
                value: s.value,
                healthy: s.healthy,
            })
            .collect()
    }

    /// Takes one reading (other sensors and quantities are ignored) and runs a cycle of the
    /// groups that watch its sensor and of every group whose time-driven work is due.
    pub fn on_reading(&mut self, r: &Reading, now: f64) -> Vec<HazardOutput> {
        let Some(now) = self.clock(now) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut run = std::mem::take(&mut self.run);
        run.clear();
        let targets = self.index.get(&r.sensor).map_or(0, Vec::len);
        for i in 0..targets {
            let Some(&(gi, si)) = self.index.get(&r.sensor).and_then(|t| t.get(i)) else {
                break;
            };
            self.ingest(gi, si, r, now, &mut out);
            run.push(gi);
        }
        self.timers.due(now, &mut run);
        self.cycle(&mut run, now, &mut out);
        self.run = run;
        out
    }

    /// Runs the cycles that are due without a reading: silence, windows sliding, delayed
    /// updates, renewals.
    pub fn tick(&mut self, now: f64) -> Vec<HazardOutput> {
        let Some(now) = self.clock(now) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut run = std::mem::take(&mut self.run);
        run.clear();
        self.timers.due(now, &mut run);
        self.cycle(&mut run, now, &mut out);
        self.run = run;
        out
    }

    fn clock(&mut self, now: f64) -> Option<f64> {
        if !now.is_finite() || !(0.0..=MAX_NOW).contains(&now) {
            return None;
        }
        let now = now.max(self.last_now);
        self.last_now = now;
        self.started.get_or_insert(now);
        Some(now)
    }

    fn ingest(&mut self, gi: usize, si: usize, r: &Reading, now: f64, out: &mut Vec<HazardOutput>) {
        let (Some(g), Some(gs)) = (self.cfg.groups.get(gi), self.groups.get_mut(gi)) else {
            return;
        };
        if r.quantity != g.quantity {
            return;
        }
        let Some(st) = gs.sensors.get_mut(si) else {
            return;
        };
        let v = r.value;
        let in_range = match r.quality {
            Quality::Good => {
                v.is_finite()
                    && g.faults.valid_min.is_none_or(|lo| v >= lo)
                    && g.faults.valid_max.is_none_or(|hi| v <= hi)
                    && !(matches!(
                        g.rule,
                        RuleConfig::Accumulation {
                            input: AccumulationInput::Increment,
                            ..
                        }
                    ) && v < 0.0)
            }
            Quality::OutOfRange => false,
            // Not a new measurement: silence detection takes care of a dead device.
            Quality::Stale | Quality::CommError => return,
        };
        if !in_range {
            // The device is talking, just not sensibly.
            st.last_seen = Some(now);
            if st.set_fault(FaultKind::OutOfRange, true) {
                out.push(fault_output(
                    g,
                    si,
                    FaultKind::OutOfRange,
                    true,
                    now,
                    &format!("value {v}"),
                ));
            }
            return;
        }
        if st.set_fault(FaultKind::OutOfRange, false) {
            out.push(fault_output(
                g,
                si,
                FaultKind::OutOfRange,
                false,
                now,
                &format!("value {v}"),
            ));
        }
        st.push(g, v, now);
    }

    /// Runs a cycle of the groups in `run` (in configuration order, each once) and schedules
    /// their next time-driven work.
    fn cycle(&mut self, run: &mut Vec<usize>, now: f64, out: &mut Vec<HazardOutput>) {
        run.sort_unstable();
        run.dedup();
        let started = self.started.unwrap_or(now);
        for &gi in run.iter() {
            self.cycle_group(gi, started, now, out);
            let (Some(g), Some(gs)) = (self.cfg.groups.get(gi), self.groups.get(gi)) else {
                continue;
            };
            let next = schedule::next_deadline(&self.cfg, g, gs, started, now);
            self.timers.set(gi, next);
        }
    }

    /// One cycle of group `gi`: faults, vote, persistence, lifecycle.
    fn cycle_group(&mut self, gi: usize, started: f64, now: f64, out: &mut Vec<HazardOutput>) {
        let (Some(g), Some(gs)) = (self.cfg.groups.get(gi), self.groups.get_mut(gi)) else {
            return;
        };
        update_faults(g, gs, started, now, out);
        vote(g, gs, now, out);
        persist(g, gs, now);
        let floor = self.incident_floor;
        message::reconcile(&self.cfg, g, gs, floor, now, out);
    }
}

fn level_name(g: &GroupConfig, level: usize) -> Option<String> {
    level
        .checked_sub(1)
        .and_then(|i| g.levels.get(i))
        .map(|l| l.name.clone())
}

fn fault_output(
    g: &GroupConfig,
    si: usize,
    fault: FaultKind,
    active: bool,
    now: f64,
    detail: &str,
) -> HazardOutput {
    let sensor = g.sensors.get(si).cloned().unwrap_or_default();
    let (kind, verb) = if active {
        ("sensor_fault", "is")
    } else {
        ("sensor_recovered", "is no longer")
    };
    HazardOutput::SensorFault(SensorFaultReport {
        group: g.id.clone(),
        fault,
        active,
        event: Event {
            kind: kind.to_string(),
            source: sensor.clone(),
            message: format!(
                "sensor {sensor} of hazard group {} {verb} {} ({detail}); {}",
                g.id,
                fault.as_str(),
                if active {
                    "left out of the vote"
                } else {
                    "back in the vote"
                }
            ),
            time: now,
        },
        sensor,
    })
}

/// Silence, stuck and disagreement checks (out of range is set on ingest).
fn update_faults(
    g: &GroupConfig,
    gs: &mut GroupState,
    started: f64,
    now: f64,
    out: &mut Vec<HazardOutput>,
) {
    let f = &g.faults;
    for (si, st) in gs.sensors.iter_mut().enumerate() {
        let since = st.last_seen.unwrap_or(started);
        let silent = now - since >= f.silent_after_s;
        if st.set_fault(FaultKind::Silent, silent) {
            out.push(fault_output(
                g,
                si,
                FaultKind::Silent,
                silent,
                now,
                &format!("last reading {:.0} s ago", now - since),
            ));
        }
    }
    // Which sensors moved within the stuck window (and are otherwise fine)?
    let moved: Vec<bool> = gs
        .sensors
        .iter()
        .map(|st| {
            !st.fault(FaultKind::Silent)
                && !st.fault(FaultKind::OutOfRange)
                && st.last_change.is_some_and(|t| now - t < f.stuck_after_s)
        })
        .collect();
    for si in 0..gs.sensors.len() {
        let others_move = moved.iter().enumerate().any(|(j, &m)| j != si && m);
        let Some(st) = gs.sensors.get_mut(si) else {
            continue;
        };
        if st.fault(FaultKind::Silent) {
            continue;
        }
        let unchanged = st.last_change.is_some_and(|t| now - t >= f.stuck_after_s);
        let stuck = unchanged && (st.fault(FaultKind::Stuck) || others_move);
        if st.set_fault(FaultKind::Stuck, stuck) {
            let detail = match st.last_change {
                Some(t) => format!("no change for {:.0} s", now - t),
                None => String::from("no change"),
            };
            out.push(fault_output(g, si, FaultKind::Stuck, stuck, now, &detail));
        }
    }
    let Some(tol) = f.max_deviation else {
        return;
    };
    let values: Vec<Option<f64>> = gs
        .sensors
        .iter_mut()
        .map(|st| {
            let ok = !st.fault(FaultKind::Silent)
                && !st.fault(FaultKind::OutOfRange)
                && !st.fault(FaultKind::Stuck);
            st.value(g, now).filter(|_| ok)
        })
        .collect();
    let mut present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.len() < 3 {
        return;
    }
    present.sort_by(f64::total_cmp);
    let mid = present.len() / 2;
    let median = if present.len() % 2 == 1 {
        present.get(mid).copied().unwrap_or(0.0)
    } else {
        (present.get(mid - 1).copied().unwrap_or(0.0) + present.get(mid).copied().unwrap_or(0.0))
            / 2.0
    };
    for (si, (st, v)) in gs.sensors.iter_mut().zip(&values).enumerate() {
        let Some(v) = v else {
            continue;
        };
        let off = (v - median).abs() > tol;
        let disagrees = if off {
            let t = *st.deviation_since.get_or_insert(now);
            now - t >= f.deviation_hold_s
        } else {
            st.deviation_since = None;
            false
        };
        if st.set_fault(FaultKind::Disagrees, disagrees) {
            let detail = format!("value {v:.3}, group median {median:.3}, tolerance {tol}");
            out.push(fault_output(
                g,
                si,
                FaultKind::Disagrees,
                disagrees,
                now,
                &detail,
            ));
        }
    }
}

/// Per-sensor hysteresis, then the k-of-n vote; sets `gs.value` and returns nothing, the
/// result is applied by [`persist`] through `up_since` / `down_since`.
fn vote(g: &GroupConfig, gs: &mut GroupState, now: f64, out: &mut Vec<HazardOutput>) {
    let mut healthy: Vec<(usize, f64)> = Vec::new();
    let mut faulty = 0;
    for st in gs.sensors.iter_mut() {
        let value = st.value(g, now);
        if let Some(v) = value {
            st.update_level(&g.levels, g.direction, v);
        }
        if !st.healthy() {
            faulty += 1;
        } else if let Some(v) = value {
            healthy.push((st.level, v));
        }
    }
    gs.healthy = healthy.len();
    let degraded = g.sensors.len() - faulty < g.k;
    if degraded != gs.degraded {
        gs.degraded = degraded;
        out.push(HazardOutput::Degraded {
            group: g.id.clone(),
            active: degraded,
            event: Event {
                kind: if degraded {
                    "hazard_group_degraded"
                } else {
                    "hazard_group_restored"
                }
                .to_string(),
                source: g.id.clone(),
                message: format!(
                    "hazard group {}: {} of {} sensors without fault, {} needed to raise or clear",
                    g.id,
                    g.sensors.len() - faulty,
                    g.sensors.len(),
                    g.k
                ),
                time: now,
            },
        });
    }
    let k = g.k;
    let voted = if healthy.len() >= k {
        let mut levels: Vec<usize> = healthy.iter().map(|&(l, _)| l).collect();
        levels.sort_unstable_by(|a, b| b.cmp(a));
        let mut values: Vec<f64> = healthy.iter().map(|&(_, v)| v).collect();
        values.sort_by(|a, b| match g.direction {
            Direction::Above => b.total_cmp(a),
            Direction::Below => a.total_cmp(b),
        });
        gs.value = values.get(k - 1).copied();
        levels.get(k - 1).copied()
    } else {
        gs.value = None;
        None
    };
    for l in 1..gs.up_since.len() {
        let (Some(up), Some(down)) = (gs.up_since.get_mut(l), gs.down_since.get_mut(l)) else {
            continue;
        };
        match voted {
            Some(v) if v >= l => {
                up.get_or_insert(now);
                *down = None;
            }
            Some(_) => {
                down.get_or_insert(now);
                *up = None;
            }
            // Not enough healthy sensors: hold, and start persistence afresh afterwards.
            None => {
                *up = None;
                *down = None;
            }
        }
    }
}

/// Applies level changes that have held for `persistence_s`.
fn persist(g: &GroupConfig, gs: &mut GroupState, now: f64) {
    let held = |t: &Option<f64>| t.is_some_and(|t| now - t >= g.persistence_s);
    let n = g.levels.len();
    if let Some(up) = (gs.committed + 1..=n)
        .rev()
        .find(|&l| gs.up_since.get(l).is_some_and(held))
    {
        gs.committed = up;
        return;
    }
    if let Some(l) = (1..=gs.committed).find(|&l| gs.down_since.get(l).is_some_and(held)) {
        gs.committed = l - 1;
    }
}
