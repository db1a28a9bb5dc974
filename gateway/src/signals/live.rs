//! The live shell around the intersection runtimes, used by the gateway's rules task: feeds
//! readings, runs the 1 s tick, applies `[hazard]` emergency plans, and hands stage commands
//! to an actuation task (one function-16 write of the firmware's command block per tick and
//! intersection, or an MQTT publish on the local broker). Write results come back to the
//! runtimes, so that a failing actuation becomes an event.

use citygate_protocols::registers::signal_controller as map;
use citygate_protocols::{Event, Reading};
use tokio::sync::mpsc;

use super::config::IntersectionConfig;
use super::model::{Actuation, Intersection};
use super::runtime::{controller_for, IntersectionRuntime, IntersectionStatus};
use crate::actions::LocalPublish;
use crate::sources::modbus::{ModbusWriter, Write};

/// Commands waiting for the actuation task; when full, a tick's command is skipped (the next
/// tick sends a newer one).
pub const ACTUATION_QUEUE: usize = 64;

struct Job {
    intersection: usize,
    device: String,
    registers: [u16; 4],
}

/// Every intersection of the gateway.
pub struct Signals {
    runtimes: Vec<IntersectionRuntime>,
    in_flight: Vec<bool>,
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<(usize, Result<(), String>)>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("runtimes", &self.runtimes)
            .finish()
    }
}

impl Signals {
    /// Builds every intersection (already validated with the config) and, if any actuates
    /// over Modbus, starts the actuation task on the current tokio runtime.
    pub fn start(
        configs: &[IntersectionConfig],
        modbus: Option<ModbusWriter>,
    ) -> Result<Signals, String> {
        let mut runtimes = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let model =
                Intersection::from_config_at(c, &format!("intersection[{i}]")).map_err(|e| {
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })?;
            let controller = controller_for(&model);
            tracing::info!(
                "intersection {}: {} control of {} stages, actuation {:?}",
                model.id,
                controller.name(),
                model.stages.len(),
                model.actuation
            );
            runtimes.push(IntersectionRuntime::new(model, controller));
        }
        let (results_tx, results) = mpsc::channel(ACTUATION_QUEUE);
        let needs_modbus = runtimes
            .iter()
            .any(|r| matches!(r.model().actuation, Actuation::Modbus { .. }));
        let jobs = match (needs_modbus, modbus) {
            (true, Some(writer)) => {
                let (tx, rx) = mpsc::channel(ACTUATION_QUEUE);
                tokio::spawn(actuate(writer, rx, results_tx));
                Some(tx)
            }
            (true, None) => return Err("Modbus actuation needs [[sources.modbus]] devices".into()),
            (false, _) => None,
        };
        Ok(Signals {
            in_flight: vec![false; runtimes.len()],
            runtimes,
            jobs,
            results,
        })
    }

    /// Whether there is any intersection.
    pub fn is_empty(&self) -> bool {
        self.runtimes.is_empty()
    }

    pub fn on_reading(&mut self, r: &Reading, now: f64) {
        for rt in &mut self.runtimes {
            rt.on_reading(r, now);
        }
    }

    /// `[hazard]` asks for (or releases) an emergency plan.
    pub fn emergency_plan(&mut self, intersection: &str, plan: &str, active: bool, now: f64) {
        match self
            .runtimes
            .iter_mut()
            .find(|r| r.model().id == intersection)
        {
            Some(rt) => {
                if let Err(e) = rt.set_plan(plan, active, now) {
                    tracing::error!("emergency plan: {e}");
                }
            }
            None => tracing::error!("emergency plan `{plan}`: no intersection `{intersection}`"),
        }
    }

    /// The 1 s tick: every runtime ticks; Modbus commands go to the actuation task; returns
    /// the events and the MQTT stage commands to publish.
    pub fn tick(&mut self, now: f64) -> (Vec<Event>, Vec<LocalPublish>) {
        let mut events = Vec::new();
        let mut publish = Vec::new();
        for (i, rt) in self.runtimes.iter_mut().enumerate() {
            let out = rt.tick(now);
            if out.stage_changed {
                tracing::debug!(
                    "intersection {}: stage {} ({})",
                    rt.model().id,
                    rt.model()
                        .stages
                        .get(out.stage)
                        .map_or("?", |s| s.id.as_str()),
                    rt.status(now).reason
                );
            }
            events.extend(out.events);
            match rt.model().actuation.clone() {
                Actuation::None => {}
                Actuation::Modbus { device } => {
                    if self.in_flight[i] {
                        continue;
                    }
                    let (Some(jobs), Some(cmd)) = (self.jobs.as_ref(), rt.command(now)) else {
                        continue;
                    };
                    let job = Job {
                        intersection: i,
                        device,
                        registers: cmd.registers(),
                    };
                    if jobs.try_send(job).is_ok() {
                        self.in_flight[i] = true;
                    }
                }
                Actuation::Mqtt { topic } => {
                    let Some(cmd) = rt.command(now) else { continue };
                    let m = rt.model();
                    let payload = serde_json::json!({
                        "intersection": m.id,
                        "stage": cmd.stage,
                        "stage_id": m.stages.get(usize::from(cmd.stage).saturating_sub(1)).map(|s| s.id.clone()),
                        "sequence": cmd.sequence,
                        "groups": out.states.iter().map(|(g, s)| (g.clone(), s.as_str())).collect::<std::collections::BTreeMap<_, _>>(),
                    });
                    publish.push(LocalPublish {
                        topic,
                        payload: payload.to_string(),
                    });
                }
            }
        }
        (events, publish)
    }

    /// The next write result from the actuation task (pending forever without one).
    pub async fn next_result(&mut self) -> (usize, Result<(), String>) {
        match self.results.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    /// A write finished.
    pub fn on_result(&mut self, intersection: usize, result: Result<(), String>, now: f64) {
        if let Some(f) = self.in_flight.get_mut(intersection) {
            *f = false;
        }
        if let Some(rt) = self.runtimes.get_mut(intersection) {
            if let Err(e) = &result {
                tracing::warn!("intersection {}: stage command failed: {e}", rt.model().id);
            }
            rt.on_actuation(result, now);
        }
    }

    /// Status of every intersection.
    pub fn status(&self, now: f64) -> Vec<IntersectionStatus> {
        self.runtimes.iter().map(|r| r.status(now)).collect()
    }
}

/// Writes each command block as one function-16 request (requested stage, hold, plan,
/// sequence) and reports the result.
async fn actuate(
    writer: ModbusWriter,
    mut jobs: mpsc::Receiver<Job>,
    results: mpsc::Sender<(usize, Result<(), String>)>,
) {
    while let Some(job) = jobs.recv().await {
        let r = writer
            .write(
                &job.device,
                Write::Registers {
                    address: map::HR_REQUESTED_STAGE,
                    values: job.registers.to_vec(),
                },
            )
            .await
            .map_err(|e| format!("{}: {e}", job.device));
        if results.send((job.intersection, r)).await.is_err() {
            break;
        }
    }
}
