//! `[[intersection]]` configuration: the intersection in traffic-engineering terms (signal
//! groups with their approach, movements and lanes; stages; conflicts; the intergreen matrix;
//! detectors), the controller chosen for it with its parameters, where stage commands go, and
//! named plans (e.g. emergency plans asked for by `[hazard]`). Every struct rejects unknown
//! keys; defaults are `const fn`s. Semantic checks live in [`super::model`]
//! (`Intersection::from_config`), which `Config::validate` calls for every intersection.
//!
//! Stage numbering: the i-th `[[intersection.stage]]` (0-based in the gateway) is stage i + 1
//! on the signal controller's Modbus map, and the i-th `[[intersection.signal_group]]` is the
//! firmware's signal group i + 1 (`group_state_<i+1>`).

use serde::Deserialize;

/// One `[[intersection]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntersectionConfig {
    /// Intersection id, unique: letters, digits, `_`, `-` (e.g. `int-1`). Named by
    /// `[hazard]` emergency plans and in events and status.
    pub id: String,
    /// The controller that decides the stages.
    pub controller: ControllerKind,
    /// Where stage commands go; absent: none (the controller only decides, e.g. under SUMO).
    #[serde(default)]
    pub actuation: Option<ActuationConfig>,
    /// Fixed-time: shortest cycle Webster may choose, in seconds.
    #[serde(default = "default_cycle_min_s")]
    pub cycle_min_s: f64,
    /// Fixed-time: longest cycle Webster may choose, in seconds.
    #[serde(default = "default_cycle_max_s")]
    pub cycle_max_s: f64,
    /// Fixed-time: the measuring period after which cycle and splits are recomputed from the
    /// flows measured during it, in seconds.
    #[serde(default = "default_webster_period_s")]
    pub webster_period_s: f64,
    /// Fixed-time: lost time per stage (start-up and end lost time), in seconds; Webster's
    /// L is the sum of the stage intergreens of one cycle plus this per stage.
    #[serde(default = "default_lost_time_s")]
    pub lost_time_s: f64,
    /// Default saturation flow of one lane, vehicles per hour of green (a signal group may
    /// set its own).
    #[serde(default = "default_saturation_flow_vph")]
    pub saturation_flow_vph: f64,
    /// Actuated: passage time (gap) in seconds; a green is ended (gap-out) when no detector
    /// of the stage has seen a vehicle for this long after minimum green.
    #[serde(default = "default_gap_s")]
    pub gap_s: f64,
    /// Max-pressure: another stage's pressure must exceed the current stage's by this many
    /// vehicles before it is switched to (after minimum green).
    #[serde(default = "default_pressure_margin")]
    pub pressure_margin: f64,
    /// Detector fault: occupied without a break for longer than this (seconds) is stuck on.
    #[serde(default = "default_stuck_on_s")]
    pub stuck_on_s: f64,
    /// Detector fault: no vehicle for this long (seconds) while another detector of the same
    /// approach counts traffic is stuck off.
    #[serde(default = "default_stuck_off_s")]
    pub stuck_off_s: f64,
    /// Detector fault: no good sample for this long (seconds) is no data.
    #[serde(default = "default_no_data_s")]
    pub no_data_s: f64,
    /// Neighbouring intersections for coordination (look-ahead): where our traffic goes, so
    /// that our planned outflows are sent there.
    #[serde(default)]
    pub neighbours: Vec<NeighbourConfig>,
    /// `[[intersection.inflow]]`: where neighbours' traffic enters this intersection, so that
    /// their planned outflows are placed on our signal groups (look-ahead).
    #[serde(default)]
    pub inflow: Vec<InflowConfig>,
    /// Pairs of signal groups that must never be green together.
    #[serde(default)]
    pub conflicts: Vec<(String, String)>,
    /// `[[intersection.signal_group]]`, in firmware order.
    #[serde(default)]
    pub signal_group: Vec<SignalGroupConfig>,
    /// `[[intersection.stage]]`, in firmware order.
    #[serde(default)]
    pub stage: Vec<StageConfig>,
    /// `[[intersection.intergreen]]`: the intergreen matrix, one entry per ordered pair.
    #[serde(default)]
    pub intergreen: Vec<IntergreenConfig>,
    /// `[[intersection.detector]]`
    #[serde(default)]
    pub detector: Vec<DetectorConfig>,
    /// `[[intersection.plan]]`: named plans (e.g. `flood-detour`) run on request.
    #[serde(default)]
    pub plan: Vec<PlanConfig>,
}

/// Controllers that can run an intersection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerKind {
    /// Fixed-time with Webster cycle and splits recomputed from measured flows per period.
    FixedTime,
    /// Fully actuated: gap-out / max-out.
    Actuated,
    /// Max-pressure: the stage with the most upstream-minus-downstream queue.
    MaxPressure,
    /// Look-ahead with neighbour coordination.
    LookAhead,
}

impl ControllerKind {
    /// The name used in config, status and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            ControllerKind::FixedTime => "fixed_time",
            ControllerKind::Actuated => "actuated",
            ControllerKind::MaxPressure => "max_pressure",
            ControllerKind::LookAhead => "look_ahead",
        }
    }
}

/// `actuation = { modbus_device = "int-1" }` or `{ mqtt_topic = "field/int-1/stage" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActuationConfig {
    /// A `[[sources.modbus]]` device serving the citygate signal controller map: the command
    /// block is written with one function-16 request per tick.
    #[serde(default)]
    pub modbus_device: Option<String>,
    /// A local-broker topic: `{"stage": <1-based>, "stage_id": .., "sequence": ..}` per tick.
    #[serde(default)]
    pub mqtt_topic: Option<String>,
}

/// A neighbouring intersection that traffic reaches through one of our signal groups (the
/// sending side: our planned outflows through `via_group` go to it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    /// The neighbour's intersection id.
    pub intersection: String,
    /// Our signal group whose traffic drives towards the neighbour.
    pub via_group: String,
    /// Travel time to the neighbour's stop line, in seconds. Optional: the receiver's
    /// `[[intersection.inflow]]` `travel_s` is the one used; when both intersections are in
    /// one config and both are given, they must agree.
    #[serde(default)]
    pub travel_s: Option<f64>,
}

/// One `[[intersection.inflow]]` (the receiving side of a `neighbours` entry): the planned
/// outflow of `from`'s signal group `from_group` reaches our signal groups `groups` (the
/// approach it arrives on) `travel_s` after leaving `from`'s stop line. `from` may be on this
/// gateway or on another one (its flows then arrive on the peer topic).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InflowConfig {
    /// The upstream intersection's id.
    pub from: String,
    /// Its signal group whose green sends the flow.
    pub from_group: String,
    /// Our signal groups the flow arrives on; it splits over them by their number of lanes.
    pub groups: Vec<String>,
    /// Seconds from leaving `from`'s stop line to reaching ours.
    pub travel_s: f64,
}

/// Signal group kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKindConfig {
    /// red → (red-amber) → green → yellow → red.
    #[default]
    Vehicle,
    /// red → green (walk) → flashing green (clearance) → red.
    Pedestrian,
}

/// One `[[intersection.signal_group]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalGroupConfig {
    /// Signal group name, unique in the intersection (e.g. `N`, `P-north`).
    pub id: String,
    /// The approach (arm) the group serves, e.g. `north`.
    pub approach: String,
    /// Movements the group gives right of way: `through`, `left`, `right`, `u_turn`,
    /// `crossing` (pedestrians).
    #[serde(default)]
    pub movements: Vec<String>,
    /// Lanes the group controls (free text; SUMO lane ids when imported).
    #[serde(default)]
    pub lanes: Vec<String>,
    /// Vehicle or pedestrian sequence.
    #[serde(default)]
    pub kind: GroupKindConfig,
    /// Minimum green, seconds; a green is never ended earlier.
    #[serde(default = "default_min_green_s")]
    pub min_green_s: f64,
    /// Maximum green, seconds; a longer green is ended by a forced stage change.
    #[serde(default = "default_max_green_s")]
    pub max_green_s: f64,
    /// Yellow after green, seconds (vehicle groups).
    #[serde(default = "default_yellow_s")]
    pub yellow_s: f64,
    /// Red-amber before green, seconds (vehicle groups); 0: none.
    #[serde(default)]
    pub red_amber_s: f64,
    /// Pedestrian walk (green), seconds; the green lasts at least this long.
    #[serde(default)]
    pub walk_s: f64,
    /// Pedestrian clearance (flashing green), seconds.
    #[serde(default)]
    pub clearance_s: f64,
    /// Saturation flow per lane, vehicles per hour of green; default: the intersection's.
    #[serde(default)]
    pub saturation_flow_vph: Option<f64>,
}

/// One `[[intersection.stage]]`: signal groups green together.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Stage name, unique in the intersection (e.g. `NS`).
    pub id: String,
    /// Signal groups green in this stage.
    pub green: Vec<String>,
}

/// One `[[intersection.intergreen]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntergreenConfig {
    /// Group losing right of way.
    pub from: String,
    /// Group gaining it.
    pub to: String,
    /// End of green of `from` to start of green (or red-amber) of `to`, seconds; includes
    /// the yellow (or pedestrian clearance) of `from` and the all-red.
    pub seconds: f64,
}

/// Detector kinds by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKindConfig {
    /// At the stop line: presence, gaps and discharge.
    StopBar,
    /// Upstream (e.g. 40 m): arrivals.
    Advance,
    /// Far upstream: the queue reached it.
    Queue,
}

/// One `[[intersection.detector]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Detector name, unique in the intersection.
    pub id: String,
    /// Position kind.
    pub kind: DetectorKindConfig,
    /// Lanes it covers.
    #[serde(default)]
    pub lanes: Vec<String>,
    /// Distance upstream of the stop line, metres.
    #[serde(default)]
    pub distance_m: f64,
    /// Signal groups it calls / measures (at least one).
    pub groups: Vec<String>,
    /// The readings that feed it; absent: fed directly (e.g. by SUMO).
    #[serde(default)]
    pub source: Option<DetectorSourceConfig>,
}

/// `source = { sensor = "int-1", quantity = "detector_vehicles_1", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSourceConfig {
    /// Sensor id of the readings (a Modbus device name, or an MQTT sensor id).
    pub sensor: String,
    /// Quantity of the vehicle count: vehicles counted over the last `interval_s`.
    pub quantity: String,
    /// Counting interval of `quantity`, seconds (the firmware's detector interval; 1 for a
    /// field sensor publishing per-second counts). The count is held as a flow until the
    /// next value.
    #[serde(default = "default_interval_s")]
    pub interval_s: f64,
    /// Quantity of the occupancy over the interval, percent (optional).
    #[serde(default)]
    pub occupancy: Option<String>,
    /// Quantity of the "occupied now" presence bit, 0/1 (optional; e.g. `detector_occupied_1`).
    #[serde(default)]
    pub presence: Option<String>,
}

/// One `[[intersection.plan]]`: a named plan run on request (e.g. by `[hazard]`), through the
/// same safety supervisor as every controller. Either `hold` or `steps`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Plan name, unique in the intersection (e.g. `flood-detour`).
    pub id: String,
    /// Hold this stage (maximum green still applies: the supervisor forces the next stage
    /// and the plan returns to it).
    #[serde(default)]
    pub hold: Option<String>,
    /// A fixed cycle of stages with their green times.
    #[serde(default)]
    pub steps: Vec<PlanStepConfig>,
}

/// One step of a plan: `{ stage = "NS", green_s = 40 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStepConfig {
    /// Stage name.
    pub stage: String,
    /// Green time of the stage, seconds (kept within the stage's minimum and maximum green).
    pub green_s: f64,
}

const fn default_cycle_min_s() -> f64 {
    30.0
}
const fn default_cycle_max_s() -> f64 {
    120.0
}
const fn default_webster_period_s() -> f64 {
    900.0
}
const fn default_lost_time_s() -> f64 {
    2.0
}
const fn default_saturation_flow_vph() -> f64 {
    1800.0
}
const fn default_gap_s() -> f64 {
    3.0
}
const fn default_pressure_margin() -> f64 {
    2.0
}
const fn default_stuck_on_s() -> f64 {
    300.0
}
const fn default_stuck_off_s() -> f64 {
    900.0
}
const fn default_no_data_s() -> f64 {
    60.0
}
const fn default_min_green_s() -> f64 {
    7.0
}
const fn default_max_green_s() -> f64 {
    60.0
}
const fn default_yellow_s() -> f64 {
    3.0
}
const fn default_interval_s() -> f64 {
    10.0
}
