//! What every controller implements: a pure, deterministic state machine fed detector samples
//! and asked for a [`Decision`] every tick, with time passed in (seconds). Controllers only
//! propose; the safety supervisor (`super::safety`) decides what is shown.

use super::model::Intersection;

/// One detector's measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorSample {
    /// Detector index in the model.
    pub detector: usize,
    /// Vehicles counted since the last sample.
    pub vehicles: f64,
    /// Occupancy over the sample, 0..=1.
    pub occupancy: f64,
    /// Occupied at sample time.
    pub occupied: bool,
    /// Sample time, seconds.
    pub at: f64,
}

/// What a controller sees of the intersection when it decides.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub model: &'a Intersection,
    /// Stage green now, or the stage the transition leads to.
    pub stage: usize,
    /// An intergreen (transition) is running.
    pub in_transition: bool,
    /// Seconds the current stage has been green (0 in transition).
    pub green_for_s: f64,
    /// By detector index: the fault monitor considers it faulty.
    pub faulty_detectors: &'a [bool],
}

/// A controller's proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep the current stage.
    Hold,
    /// Move to this stage (index).
    Switch(usize),
}

/// Planned outflow towards a neighbour (look-ahead coordination).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFlow {
    /// Intersection the vehicles leave.
    pub from: String,
    /// Intersection they drive to.
    pub to: String,
    /// Signal group they leave through.
    pub group: String,
    /// Vehicles.
    pub vehicles: f64,
    /// First departure, seconds.
    pub leaves_at: f64,
    /// Last departure, seconds.
    pub until: f64,
}

/// A signal controller. Pure and deterministic: the same samples and times give the same
/// decisions.
pub trait Controller: Send {
    /// The controller's name (`fixed_time`, `actuated`, ...).
    fn name(&self) -> &'static str;
    /// A detector measurement.
    fn on_detector(&mut self, sample: &DetectorSample);
    /// Called every tick (1 s live; each SUMO step).
    fn decide(&mut self, view: &View<'_>, now: f64) -> Decision;
    /// Planned outflows for neighbours (look_ahead); default none.
    fn outflow(&self, _now: f64) -> Vec<PlannedFlow> {
        Vec::new()
    }
    /// A neighbour's planned flow towards us.
    fn on_peer_flow(&mut self, _flow: &PlannedFlow) {}
    /// Vehicles that neighbours' planned outflows (taken by `on_peer_flow`) announce at our
    /// stop lines from `now` on; default none.
    fn expected_from_peers(&self, _now: f64) -> f64 {
        0.0
    }
    /// A change of the controller's own plan since the last call (e.g. new Webster cycle and
    /// splits), as a message for a `plan_change` event; default none.
    fn take_plan_change(&mut self) -> Option<String> {
        None
    }
    /// A short human-readable reason for the last decision, for status/events.
    fn explain(&self) -> String {
        String::new()
    }
}
