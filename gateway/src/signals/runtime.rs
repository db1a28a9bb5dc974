//! One intersection at run time: readings become detector samples (by each detector's
//! `source`), the fault monitor watches them, the controller (or a named plan asked for by
//! `[hazard]`) proposes, the safety supervisor decides, and each tick yields the signal-group
//! states, the stage command for the field controller and the events for the uplink.
//! Pure: time is passed in, on one clock for every timer and for the events' times: the
//! monotonic clock live (`live` stamps the events that leave with wall time), simulation
//! seconds under SUMO and test.
//!
//! Readings: a detector's `quantity` is a vehicle count over `interval_s`, held as a flow
//! until the next value (the firmware reports counts per closed interval, on change);
//! `occupancy` is percent; `presence` is 0/1, and a sample is "occupied" when the loop was
//! occupied at the tick or at any reading since the previous tick (a vehicle passing between
//! two ticks still extends the green). A detector has fresh data in a tick when a good
//! reading of its own or of its sensor (the field controller reports every poll) arrived since
//! the previous tick; a non-good reading of its own marks it silent until a good one arrives.
//! Readings of the actuation device (`mode`, `current_stage`, `last_sequence`, ...) are the
//! field controller's status.

use std::collections::HashMap;

use citygate_protocols::registers::signal_controller::Mode;
use citygate_protocols::signal::SignalState;
use citygate_protocols::{Event, Quality, Reading};

use super::actuated::Actuated;
use super::config::ControllerKind;
use super::controller::{Controller, Decision, DetectorSample, PlannedFlow, View};
use super::faults::FaultMonitor;
use super::fixed_time::{FixedTime, PlanController};
use super::max_pressure::MaxPressure;
use super::model::{Actuation, Intersection};
use super::safety::{Counters, Supervisor};

/// Refused-request events are sent at most this often per intersection (the counters count
/// every refusal).
pub const REFUSAL_EVENT_EVERY_S: f64 = 60.0;
/// Without a `last_sequence` reading from the field controller, commands start after this
/// long anyway.
pub const SEQUENCE_SYNC_WAIT_S: f64 = 5.0;

/// Picks the configured controller.
pub fn controller_for(model: &Intersection) -> Box<dyn Controller> {
    match model.controller {
        ControllerKind::FixedTime => Box::new(FixedTime::new(model)),
        ControllerKind::Actuated => Box::new(Actuated::new(model)),
        ControllerKind::MaxPressure => Box::new(MaxPressure::new(model)),
        ControllerKind::LookAhead => Box::new(crate::signals::lookahead::LookAhead::new(model)),
    }
}

/// What one tick produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TickOutput {
    /// Every signal group's state, by group id.
    pub states: Vec<(String, SignalState)>,
    /// The stage green, or being moved to (index).
    pub stage: usize,
    /// The stage (target) changed in this tick.
    pub stage_changed: bool,
    /// Events for the uplink, timed on the runtime's clock.
    pub events: Vec<Event>,
}

/// A stage command for the field controller: the firmware's command block, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageCommand {
    /// Requested stage, 1-based (stage index + 1).
    pub stage: u16,
    /// Hold the current stage.
    pub hold: bool,
    /// Local plan (0 = central control).
    pub plan: u16,
    /// A new sequence value: commits the command and feeds the watchdog.
    pub sequence: u16,
}

impl StageCommand {
    /// The holding registers `HR_REQUESTED_STAGE..=HR_COMMAND_SEQUENCE`, for one function-16 write.
    pub fn registers(&self) -> [u16; 4] {
        [self.stage, u16::from(self.hold), self.plan, self.sequence]
    }
}

/// What an operator sees of one intersection (`status.json`, `citygate status`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntersectionStatus {
    pub id: String,
    /// Stage green (or being moved to).
    pub stage: String,
    pub in_transition: bool,
    /// Whole seconds the stage has been green.
    pub green_for_s: u64,
    /// The controller deciding now (`actuated`, ..., or `plan:<id>`).
    pub controller: String,
    /// The reason of its last decision.
    pub reason: String,
    /// Stage changes since start.
    pub stage_changes: u64,
    /// Requests the safety supervisor refused.
    pub refused: u64,
    /// Faulty detectors, `id (kind)`.
    pub faulty_detectors: Vec<String>,
    /// The field controller's mode and stage as last read (empty when not known).
    pub field_mode: String,
    pub field_stage: String,
    /// Vehicles that neighbours' planned outflows announce at its stop lines from now on
    /// (look-ahead with `[[intersection.inflow]]`), to a tenth of a vehicle.
    #[serde(default)]
    pub expected_from_peers: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Count,
    Occupancy,
    Presence,
}

#[derive(Debug, Clone, Copy, Default)]
struct Input {
    rate: f64,
    occupancy: f64,
    occupied: bool,
    /// Occupied at some time since the last sample (a vehicle between two ticks).
    seen_occupied: bool,
    alive_at: f64,
    bad: bool,
}

/// The field controller's status, from the actuation device's readings.
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    mode: Option<Mode>,
    stage: Option<u16>,
    /// Seconds in the current stage.
    stage_time: Option<f64>,
    last_sequence: Option<u16>,
    rejected: Option<f64>,
}

/// See the module docs.
pub struct IntersectionRuntime {
    model: Intersection,
    controller: Box<dyn Controller>,
    /// The adaptive controller, put aside while a named plan runs.
    parked: Option<Box<dyn Controller>>,
    plan: Option<String>,
    supervisor: Supervisor,
    monitor: Option<FaultMonitor>,
    /// sensor → quantity → the detectors it feeds, and as what.
    sources: HashMap<String, HashMap<String, Vec<(usize, Role)>>>,
    sensors: HashMap<String, Vec<usize>>,
    inputs: Vec<Input>,
    last_tick: Option<f64>,
    last_stage: Option<usize>,
    refused_reported: u64,
    last_refusal_event: f64,
    pending_events: Vec<Event>,
    field: Field,
    sequence: Option<u16>,
    started: Option<f64>,
    /// The supervisor has taken over the field controller's state (Modbus actuation), or
    /// there is none to take over.
    synced: bool,
    /// Since when the runtime waits to take over (start, or the field fell back).
    unsynced_since: Option<f64>,
    actuation_failing: bool,
}

impl std::fmt::Debug for IntersectionRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntersectionRuntime")
            .field("id", &self.model.id)
            .field("controller", &self.controller.name())
            .finish()
    }
}

impl IntersectionRuntime {
    pub fn new(model: Intersection, controller: Box<dyn Controller>) -> Self {
        let mut sources: HashMap<String, HashMap<String, Vec<(usize, Role)>>> = HashMap::new();
        let mut sensors: HashMap<String, Vec<usize>> = HashMap::new();
        for (d, det) in model.detectors.iter().enumerate() {
            let Some(s) = &det.source else { continue };
            let mut add = |q: &str, role| {
                sources
                    .entry(s.sensor.clone())
                    .or_default()
                    .entry(q.to_string())
                    .or_default()
                    .push((d, role));
            };
            add(&s.quantity, Role::Count);
            if let Some(q) = &s.occupancy {
                add(q, Role::Occupancy);
            }
            if let Some(q) = &s.presence {
                add(q, Role::Presence);
            }
            sensors.entry(s.sensor.clone()).or_default().push(d);
        }
        let supervisor = Supervisor::new(&model);
        IntersectionRuntime {
            inputs: vec![Input::default(); model.detectors.len()],
            controller,
            parked: None,
            plan: None,
            supervisor,
            monitor: None,
            sources,
            sensors,
            last_tick: None,
            last_stage: None,
            refused_reported: 0,
            last_refusal_event: f64::NEG_INFINITY,
            pending_events: Vec::new(),
            field: Field::default(),
            sequence: None,
            started: None,
            synced: false,
            unsynced_since: None,
            actuation_failing: false,
            model,
        }
    }

    /// The model.
    pub fn model(&self) -> &Intersection {
        &self.model
    }

    fn start(&mut self, now: f64) {
        if self.started.is_none() {
            self.started = Some(now);
            self.supervisor = Supervisor::starting_at(&self.model, now, 0);
            self.monitor = Some(FaultMonitor::new(&self.model, now));
        }
    }

    /// A reading from any source: detector data, or the field controller's status.
    pub fn on_reading(&mut self, r: &Reading, now: f64) {
        self.start(now);
        let good = r.quality == Quality::Good && r.value.is_finite();
        if let Some(ds) = self.sensors.get(&r.sensor) {
            if good {
                for &d in ds {
                    self.inputs[d].alive_at = now;
                }
            }
        }
        let targets = self
            .sources
            .get(r.sensor.as_str())
            .and_then(|q| q.get(r.quantity.as_str()));
        if let Some(targets) = targets {
            for &(d, role) in targets {
                let input = &mut self.inputs[d];
                if !good {
                    input.bad = true;
                    continue;
                }
                input.bad = false;
                input.alive_at = now;
                match role {
                    Role::Count => {
                        let interval = self.model.detectors[d]
                            .source
                            .as_ref()
                            .map_or(1.0, |s| s.interval_s);
                        input.rate = r.value.max(0.0) / interval;
                    }
                    Role::Occupancy => input.occupancy = (r.value / 100.0).clamp(0.0, 1.0),
                    Role::Presence => {
                        input.occupied = r.value >= 0.5;
                        input.seen_occupied |= input.occupied;
                    }
                }
            }
        }
        if let Actuation::Modbus { device } = &self.model.actuation {
            if &r.sensor == device && good {
                self.on_field(r, now);
            }
        }
    }

    fn on_field(&mut self, r: &Reading, now: f64) {
        let v = r.value;
        match r.quantity.as_str() {
            "mode" => {
                let mode = Mode::from_wire(v as u16);
                if mode != self.field.mode {
                    self.field_mode_changed(self.field.mode, mode, now);
                    // The field runs on its own (watchdog fallback, restart): take over its
                    // state again before the next command.
                    if matches!(mode, Some(Mode::Fallback | Mode::Startup)) && self.synced {
                        self.synced = false;
                        self.unsynced_since = Some(now);
                    }
                }
                self.field.mode = mode;
            }
            "current_stage" => self.field.stage = Some(v as u16),
            "stage_time" => self.field.stage_time = Some(v),
            "last_sequence" => self.field.last_sequence = Some(v as u16),
            "rejected_commands" => {
                if let Some(before) = self.field.rejected {
                    if v > before {
                        self.event(
                            "signal_controller_fault",
                            format!(
                                "the signal controller rejected {} command(s) ({} since its start)",
                                v - before,
                                v
                            ),
                            now,
                        );
                    }
                }
                self.field.rejected = Some(v);
            }
            _ => {}
        }
    }

    fn field_mode_changed(&mut self, before: Option<Mode>, mode: Option<Mode>, now: f64) {
        let (kind, message) = match mode {
            Some(Mode::Fallback) => (
                "signal_controller_fault",
                "the signal controller runs its local fallback plan (watchdog expired)".to_string(),
            ),
            Some(Mode::Flashing) => (
                "signal_controller_fault",
                "the signal controller's conflict monitor latched: flashing yellow".to_string(),
            ),
            Some(Mode::Central) if before.is_some() => (
                "signal_control_resumed",
                "the signal controller follows the gateway's stage commands".to_string(),
            ),
            _ => return,
        };
        self.event(kind, message, now);
    }

    fn event(&mut self, kind: &str, message: String, now: f64) {
        self.pending_events.push(Event {
            kind: kind.to_string(),
            source: self.model.id.clone(),
            message,
            time: now,
        });
    }

    /// The controller's planned outflows towards neighbours (look-ahead coordination).
    pub fn outflow(&self, now: f64) -> Vec<PlannedFlow> {
        self.controller.outflow(now)
    }

    /// A neighbour's planned outflow towards this intersection.
    pub fn on_peer_flow(&mut self, flow: &PlannedFlow) {
        self.controller.on_peer_flow(flow);
        // the configured controller, parked while a named plan runs, keeps its picture
        if let Some(p) = self.parked.as_mut() {
            p.on_peer_flow(flow);
        }
    }

    /// A detector sample delivered directly (e.g. by SUMO), not through readings.
    pub fn on_sample(&mut self, s: &DetectorSample) {
        self.start(s.at);
        if let Some(m) = self.monitor.as_mut() {
            m.on_sample(s);
        }
        self.controller.on_detector(s);
        if let Some(p) = self.parked.as_mut() {
            p.on_detector(s);
        }
    }

    /// Starts (`active`) or ends the named plan `plan` (an `[[intersection.plan]]` id), run
    /// through the same safety supervisor. Ending a plan that is not running does nothing.
    pub fn set_plan(&mut self, plan: &str, active: bool, now: f64) -> Result<(), String> {
        self.start(now);
        let Some(index) = self.model.plan_index(plan) else {
            return Err(format!(
                "intersection `{}` has no plan `{plan}`",
                self.model.id
            ));
        };
        if active {
            if self.plan.as_deref() == Some(plan) {
                return Ok(());
            }
            let Some(pc) = PlanController::new(&self.model, index) else {
                return Err(format!(
                    "intersection `{}` has no plan `{plan}`",
                    self.model.id
                ));
            };
            let previous = std::mem::replace(&mut self.controller, Box::new(pc));
            if self.parked.is_none() {
                self.parked = Some(previous);
            }
            self.plan = Some(plan.to_string());
            self.event(
                "plan_change",
                format!("emergency plan `{plan}` started"),
                now,
            );
        } else if self.plan.as_deref() == Some(plan) {
            if let Some(c) = self.parked.take() {
                self.controller = c;
            }
            self.plan = None;
            self.event(
                "plan_change",
                format!(
                    "emergency plan `{plan}` ended; {} control resumes",
                    self.controller.name()
                ),
                now,
            );
        }
        Ok(())
    }

    /// With Modbus actuation, takes over the stage the field controller runs (and how long it
    /// has run it) before the first command, so that both count minimum and maximum green
    /// from the same start; without field status within [`SEQUENCE_SYNC_WAIT_S`], starts with
    /// the all-red start-up.
    fn sync(&mut self, now: f64) {
        if self.synced {
            return;
        }
        if !matches!(self.model.actuation, Actuation::Modbus { .. }) {
            self.synced = true;
            return;
        }
        let since = *self.unsynced_since.get_or_insert(now);
        if let (Some(stage), Some(t)) = (self.field.stage, self.field.stage_time) {
            let stage = usize::from(stage);
            if stage >= 1 && stage <= self.model.stages.len() {
                self.supervisor = Supervisor::resume(&self.model, stage - 1, t, now)
                    .with_counters(self.supervisor.counters());
                self.synced = true;
                self.unsynced_since = None;
                tracing::info!(
                    "intersection {}: taking over stage {} after {t:.1} s",
                    self.model.id,
                    self.model.stages[stage - 1].id
                );
                return;
            }
        }
        if now - since >= SEQUENCE_SYNC_WAIT_S {
            self.synced = true;
            self.unsynced_since = None;
        }
    }

    /// Advances to `now`.
    pub fn tick(&mut self, now: f64) -> TickOutput {
        self.start(now);
        self.sync(now);
        let dt = self.last_tick.map_or(0.0, |t| (now - t).clamp(0.0, 5.0));
        let prev = self.last_tick.unwrap_or(f64::NEG_INFINITY);
        self.last_tick = Some(now);
        // detector samples from the readings held
        for d in 0..self.inputs.len() {
            let i = self.inputs[d];
            if self.model.detectors[d].source.is_none() || i.bad || i.alive_at <= prev {
                continue;
            }
            let s = DetectorSample {
                detector: d,
                vehicles: i.rate * dt,
                occupancy: i.occupancy,
                occupied: i.occupied || i.seen_occupied,
                at: now,
            };
            self.inputs[d].seen_occupied = false;
            self.on_sample(&s);
        }
        let changes = self
            .monitor
            .as_mut()
            .map(|m| m.tick(now))
            .unwrap_or_default();
        let fault_events: Vec<Event> = changes
            .iter()
            .filter_map(|c| c.event(&self.model))
            .collect();
        self.pending_events.extend(fault_events);
        let faulty = self
            .monitor
            .as_ref()
            .map(|m| m.faulty().to_vec())
            .unwrap_or_else(|| vec![false; self.model.detectors.len()]);
        let view = View {
            model: &self.model,
            stage: self.supervisor.stage(),
            in_transition: self.supervisor.in_transition(),
            green_for_s: self.supervisor.green_for_s(now),
            faulty_detectors: &faulty,
        };
        let decision = self.controller.decide(&view, now);
        if let Some(p) = self.parked.as_mut() {
            // keep the adaptive controller's measurements going
            let _ = p.decide(&view, now);
        }
        if let Some(change) = self.controller.take_plan_change() {
            self.event("plan_change", change, now);
        }
        if let Err(refusal) = self.supervisor.request(decision, now) {
            tracing::warn!(
                "intersection {}: {} asked for {:?}, refused: {refusal}",
                self.model.id,
                self.controller.name(),
                decision
            );
            let total = self.supervisor.counters().refused();
            if now - self.last_refusal_event >= REFUSAL_EVENT_EVERY_S {
                self.event(
                    "signal_request_refused",
                    format!(
                        "{} asked for {}; refused: {refusal} ({} refused since start, {} since the last report)",
                        self.controller.name(),
                        match decision {
                            Decision::Switch(s) => self
                                .model
                                .stages
                                .get(s)
                                .map_or(format!("stage index {s}"), |x| format!("stage {}", x.id)),
                            Decision::Hold => "hold".to_string(),
                        },
                        total,
                        total - self.refused_reported
                    ),
                    now,
                );
                self.refused_reported = total;
                self.last_refusal_event = now;
            }
        }
        let states = self.supervisor.tick(now);
        let states = self
            .model
            .groups
            .iter()
            .zip(states.iter())
            .map(|(g, s)| (g.id.clone(), *s))
            .collect();
        let stage = self.supervisor.stage();
        let stage_changed = self.last_stage != Some(stage);
        self.last_stage = Some(stage);
        TickOutput {
            states,
            stage,
            stage_changed,
            events: std::mem::take(&mut self.pending_events),
        }
    }

    /// The command block to write now (Modbus actuation), with a new sequence value; `None`
    /// before the first stage or while waiting briefly for the field controller's last
    /// sequence (so that the first command's sequence differs from it).
    pub fn command(&mut self, now: f64) -> Option<StageCommand> {
        let started = self.started?;
        if matches!(
            self.supervisor.phase(),
            super::safety::Phase::Startup { .. }
        ) {
            return None;
        }
        let seq = match (self.sequence, self.field.last_sequence) {
            (Some(s), _) => s.wrapping_add(1),
            (None, Some(last)) => last.wrapping_add(1),
            (None, None) if now - started >= SEQUENCE_SYNC_WAIT_S => 1,
            (None, None) => return None,
        };
        let seq = if Some(seq) == self.field.last_sequence && self.sequence.is_none() {
            seq.wrapping_add(1)
        } else {
            seq
        };
        self.sequence = Some(seq);
        Some(StageCommand {
            stage: (self.supervisor.stage() + 1) as u16,
            hold: false,
            plan: 0,
            sequence: seq,
        })
    }

    /// The result of writing a command: the first failure and the recovery are events.
    pub fn on_actuation(&mut self, result: Result<(), String>, now: f64) {
        match result {
            Err(e) if !self.actuation_failing => {
                self.actuation_failing = true;
                self.event(
                    "signal_controller_fault",
                    format!("stage command not delivered: {e}"),
                    now,
                );
            }
            Ok(()) if self.actuation_failing => {
                self.actuation_failing = false;
                self.event(
                    "signal_control_resumed",
                    "stage commands are delivered again".to_string(),
                    now,
                );
            }
            _ => {}
        }
    }

    /// The supervisor's counters.
    pub fn counters(&self) -> Counters {
        self.supervisor.counters()
    }

    /// The named plan running, if any.
    pub fn plan(&self) -> Option<&str> {
        self.plan.as_deref()
    }

    /// The status line of this intersection.
    pub fn status(&self, now: f64) -> IntersectionStatus {
        let m = &self.model;
        let stage = m
            .stages
            .get(self.supervisor.stage())
            .map_or(String::new(), |s| s.id.clone());
        let faulty = match &self.monitor {
            Some(mon) => (0..m.detectors.len())
                .filter_map(|d| mon.fault(d).map(|k| format!("{} ({k})", m.detectors[d].id)))
                .collect(),
            None => Vec::new(),
        };
        let c = self.supervisor.counters();
        IntersectionStatus {
            id: m.id.clone(),
            stage,
            in_transition: self.supervisor.in_transition(),
            green_for_s: self.supervisor.green_for_s(now) as u64,
            controller: match &self.plan {
                Some(p) => format!("plan:{p}"),
                None => self.controller.name().to_string(),
            },
            reason: self.controller.explain(),
            stage_changes: c.stage_changes,
            refused: c.refused(),
            faulty_detectors: faulty,
            field_mode: self
                .field
                .mode
                .map_or(String::new(), |m| format!("{m:?}").to_lowercase()),
            field_stage: match self.field.stage {
                None => String::new(),
                Some(0) => "transition".to_string(),
                Some(s) => m
                    .stages
                    .get(usize::from(s) - 1)
                    .map_or(format!("{s}"), |x| x.id.clone()),
            },
            expected_from_peers: {
                let c = self.parked.as_ref().unwrap_or(&self.controller);
                (c.expected_from_peers(now) * 10.0).round() / 10.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{crossroads, Monitor};
    use super::*;
    use citygate_protocols::Unit;

    fn reading(sensor: &str, quantity: &str, value: f64, quality: Quality) -> Reading {
        Reading {
            sensor: sensor.into(),
            quantity: quantity.into(),
            value,
            unit: Some(Unit::Count),
            time: 0.0,
            quality,
        }
    }

    fn with_modbus() -> Intersection {
        let mut m = crossroads();
        m.actuation = Actuation::Modbus {
            device: "int-1".into(),
        };
        m
    }

    /// The firmware's points drive the actuated controller: presence on E calls stage EW,
    /// which is served after N/S minimum green; a stuck loop becomes a detector_fault event.
    #[test]
    fn readings_feed_detectors_and_a_stuck_loop_is_reported() {
        let m = with_modbus();
        let mut rt = IntersectionRuntime::new(m.clone(), controller_for(&m));
        let mut mon = Monitor::new(&m, 1.0);
        let mut events = Vec::new();
        let mut stage_at = Vec::new();
        for t in 0..420u32 {
            let now = 1000.0 + f64::from(t);
            // the controller reports every poll
            rt.on_reading(
                &reading("int-1", "stage_time", f64::from(t), Quality::Good),
                now,
            );
            // E: a vehicle at 30 s; N: loop stuck occupied from 100 s
            let e_occ = (30..32).contains(&t);
            rt.on_reading(
                &reading(
                    "int-1",
                    "detector_occupied_2",
                    f64::from(u8::from(e_occ)),
                    Quality::Good,
                ),
                now,
            );
            rt.on_reading(
                &reading(
                    "int-1",
                    "detector_occupied_1",
                    f64::from(u8::from(t >= 100)),
                    Quality::Good,
                ),
                now,
            );
            let out = rt.tick(now);
            let states: Vec<SignalState> = out.states.iter().map(|(_, s)| *s).collect();
            if let Err(e) = mon.check(&states, now) {
                panic!("{e}");
            }
            if out.stage_changed {
                stage_at.push((t, out.stage));
            }
            events.extend(out.events);
        }
        assert_eq!(stage_at[0], (0, 0));
        assert!(
            stage_at
                .iter()
                .any(|&(t, s)| s == 1 && (30..=40).contains(&t)),
            "{stage_at:?}"
        );
        let fault = events
            .iter()
            .find(|e| e.kind == "detector_fault")
            .unwrap_or_else(|| panic!("no fault event: {events:?}"));
        assert_eq!(fault.source, "int-1/det-n");
        assert!(
            fault.message.contains("stuck on") && fault.message.contains("maximum-green recall"),
            "{fault:?}"
        );
        assert_eq!(
            fault.time, 1401.0,
            "occupied from 1100 s: more than 300 s at 1401 s"
        );
        let st = rt.status(1419.0);
        assert_eq!(st.faulty_detectors, vec!["det-n (stuck on)".to_string()]);
        assert_eq!(st.controller, "actuated");
    }

    #[test]
    fn silent_detectors_and_bad_quality_are_no_data() {
        let m = with_modbus();
        let mut rt = IntersectionRuntime::new(m.clone(), controller_for(&m));
        let mut events = Vec::new();
        for t in 0..100u32 {
            let now = f64::from(t);
            if t < 10 {
                rt.on_reading(&reading("int-1", "stage_time", now, Quality::Good), now);
            } else {
                rt.on_reading(
                    &reading("int-1", "detector_vehicles_1", 0.0, Quality::CommError),
                    now,
                );
            }
            events.extend(rt.tick(now).events);
        }
        let faults: Vec<&Event> = events
            .iter()
            .filter(|e| e.kind == "detector_fault")
            .collect();
        assert_eq!(faults.len(), 4, "{events:?}");
        assert!(faults.iter().all(|e| e.message.contains("[no_data]")));
    }

    /// The emergency plan runs through the same supervisor: it holds its stage until the
    /// plan ends, then the adaptive controller resumes; both are plan_change events.
    #[test]
    fn an_emergency_plan_holds_its_stage_until_released() {
        let m = crossroads();
        let mut rt = IntersectionRuntime::new(m.clone(), controller_for(&m));
        let mut mon = Monitor::new(&m, 1.0);
        let mut events = Vec::new();
        let mut check = |rt: &mut IntersectionRuntime, t: u32, events: &mut Vec<Event>| {
            let out = rt.tick(f64::from(t));
            let states: Vec<SignalState> = out.states.iter().map(|(_, s)| *s).collect();
            if let Err(e) = mon.check(&states, f64::from(t)) {
                panic!("{e}");
            }
            events.extend(out.events);
            out.stage
        };
        for t in 0..20 {
            check(&mut rt, t, &mut events);
        }
        assert_eq!(
            rt.set_plan("no-such-plan", true, 20.0)
                .map_err(|e| e.contains("no plan")),
            Err(true)
        );
        rt.set_plan("flood-detour", true, 20.0)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stages = Vec::new();
        for t in 20..200 {
            // north traffic keeps calling: the plan ignores it
            rt.on_sample(&DetectorSample {
                detector: 0,
                vehicles: 1.0,
                occupancy: 1.0,
                occupied: t % 2 == 0,
                at: f64::from(t),
            });
            stages.push(check(&mut rt, t, &mut events));
        }
        assert_eq!(rt.status(200.0).controller, "plan:flood-detour");
        // after the 5 s intergreen EW is green, and stays so except when maximum green forces
        // NS for its minimum, after which the plan goes straight back
        assert!(
            stages[10..].iter().filter(|&&s| s == 1).count() > 140,
            "{stages:?}"
        );
        rt.set_plan("flood-detour", false, 200.0)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut back = false;
        for t in 200..300 {
            rt.on_sample(&DetectorSample {
                detector: 0,
                vehicles: 1.0,
                occupancy: 1.0,
                occupied: t % 2 == 0,
                at: f64::from(t),
            });
            back |= check(&mut rt, t, &mut events) == 0;
        }
        assert!(back, "actuated control serves the north call again");
        let plans: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == "plan_change")
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            plans,
            vec![
                "emergency plan `flood-detour` started",
                "emergency plan `flood-detour` ended; actuated control resumes"
            ]
        );
        assert_eq!(rt.counters().refused(), 0);
    }

    /// A controller that asks for anything at any time: the supervisor refuses what is
    /// illegal, counts it, and one event a minute reports it; the outputs stay safe.
    #[test]
    fn illegal_requests_are_refused_and_reported() {
        struct Rogue(usize);
        impl Controller for Rogue {
            fn name(&self) -> &'static str {
                "rogue"
            }
            fn on_detector(&mut self, _: &DetectorSample) {}
            fn decide(&mut self, _: &View<'_>, _: f64) -> Decision {
                self.0 += 1;
                Decision::Switch(self.0 % 3)
            }
        }
        let m = crossroads();
        let mut rt = IntersectionRuntime::new(m.clone(), Box::new(Rogue(0)));
        let mut mon = Monitor::new(&m, 1.0);
        let mut events = Vec::new();
        for t in 0..130u32 {
            let out = rt.tick(f64::from(t));
            let states: Vec<SignalState> = out.states.iter().map(|(_, s)| *s).collect();
            if let Err(e) = mon.check(&states, f64::from(t)) {
                panic!("{e}");
            }
            events.extend(out.events);
        }
        let c = rt.counters();
        assert!(
            c.refused_unknown_stage > 20 && c.refused_min_green > 5 && c.refused_in_transition > 5,
            "{c:?}"
        );
        let refused: Vec<&Event> = events
            .iter()
            .filter(|e| e.kind == "signal_request_refused")
            .collect();
        assert_eq!(refused.len(), 3, "at 0, 60 and 120 s: {refused:?}");
        assert!(
            refused[1].message.contains("refused since start"),
            "{}",
            refused[1].message
        );
        assert_eq!(rt.status(130.0).refused, c.refused());
    }

    /// Commands carry stage index + 1 and a sequence that follows the field controller's last
    /// accepted one, so that a restarted gateway's first command is accepted.
    #[test]
    fn commands_continue_the_field_controllers_sequence() {
        let m = with_modbus();
        let mut rt = IntersectionRuntime::new(m.clone(), controller_for(&m));
        rt.on_reading(&reading("int-1", "last_sequence", 41.0, Quality::Good), 0.0);
        let mut cmds = Vec::new();
        for t in 0..12 {
            rt.tick(f64::from(t));
            cmds.extend(rt.command(f64::from(t)));
        }
        assert_eq!(cmds[0].sequence, 42);
        assert_eq!(cmds[0].registers(), [1, 0, 0, 42]);
        assert!(cmds
            .windows(2)
            .all(|w| w[1].sequence == w[0].sequence.wrapping_add(1)));
        rt.on_reading(&reading("int-1", "mode", 3.0, Quality::Good), 12.0);
        rt.on_reading(&reading("int-1", "mode", 1.0, Quality::Good), 13.0);
        let kinds: Vec<String> = rt.tick(14.0).events.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec!["signal_controller_fault", "signal_control_resumed"]
        );
        // without a last_sequence reading commands start after a short wait
        let mut rt = IntersectionRuntime::new(m.clone(), controller_for(&m));
        rt.tick(0.0);
        assert_eq!(rt.command(1.0), None);
        rt.tick(6.0);
        assert_eq!(rt.command(6.0).map(|c| c.sequence), Some(1));
    }
}
