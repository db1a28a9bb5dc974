//! The hazard engine as it was before the timer queue, kept as the model of the property
//! test in `tests`: every call (reading or tick) runs a cycle of every group. It shares the
//! per-group logic (ingest, faults, vote, persistence, lifecycle) with [`HazardEngine`], so
//! what it checks is the scheduling: which groups run when.

use citygate_protocols::Reading;

use super::{HazardConfig, HazardEngine, HazardOutput};

/// Cycles every group on every call.
pub(super) struct FullCycleEngine(HazardEngine);

impl FullCycleEngine {
    pub fn new(cfg: HazardConfig) -> Self {
        match HazardEngine::new(cfg) {
            Ok(e) => FullCycleEngine(e),
            Err(errors) => panic!("model config: {errors:?}"),
        }
    }

    pub fn set_incident_floor(&mut self, n: u64) {
        self.0.set_incident_floor(n);
    }

    pub fn status(&self) -> Vec<super::GroupStatus> {
        self.0.status()
    }

    pub fn on_reading(&mut self, r: &Reading, now: f64) -> Vec<HazardOutput> {
        let e = &mut self.0;
        let Some(now) = e.clock(now) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let targets = e.index.get(&r.sensor).cloned().unwrap_or_default();
        for (gi, si) in targets {
            e.ingest(gi, si, r, now, &mut out);
        }
        self.cycle_all(now, &mut out);
        out
    }

    pub fn tick(&mut self, now: f64) -> Vec<HazardOutput> {
        let Some(now) = self.0.clock(now) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        self.cycle_all(now, &mut out);
        out
    }

    fn cycle_all(&mut self, now: f64, out: &mut Vec<HazardOutput>) {
        let started = self.0.started.unwrap_or(now);
        for gi in 0..self.0.groups.len() {
            self.0.cycle_group(gi, started, now, out);
        }
    }
}
