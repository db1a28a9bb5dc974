//! The rules stage: one task that takes every reading (and the sources' events) and runs the
//! pure rules on it: the per-sensor summaries (`rules::summary`) and the hazard engine
//! (`rules::hazard`). It stores what they produce through [`Records`], hands local actions
//! (sirens, signs) to the actions stage, and passes each reading and each emergency plan on to
//! the signals stage. Its counters: `readings_in`, `late`, `unusable`, `actions_failed` (a
//! full action queue) and the `hazards` line. It ends when every source is gone, closing the
//! open windows into the outbox.

use std::time::Duration;

use citygate_protocols::topic::Topic;
use citygate_protocols::{Event, Reading};
use tokio::sync::mpsc;

use super::records::Records;
use super::signals::SignalInput;
use crate::actions::{self, LocalPublish};
use crate::clock;
use crate::rules::hazard::{HazardEngine, HazardOutput};
use crate::rules::summary::{Skipped, Summarizer};
use crate::status::Stats;

/// How often open windows are closed and the hazard engine's persistence is checked.
pub const TICK: Duration = Duration::from_secs(1);

/// The rules of one gateway and where their outputs go.
pub struct Rules {
    pub summarizer: Summarizer,
    pub hazard: Option<HazardEngine>,
    pub records: Records,
    pub actions: mpsc::Sender<LocalPublish>,
    /// The signals stage.
    pub signals: mpsc::Sender<SignalInput>,
    /// Whether the signals stage wants the readings (it has intersections).
    pub feed_signals: bool,
}

/// Runs the rules until both the readings and the events channels close.
pub async fn run(
    mut readings: mpsc::Receiver<Reading>,
    mut events: mpsc::Receiver<Event>,
    mut rules: Rules,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut events_open = true;
    loop {
        tokio::select! {
            r = readings.recv() => {
                let Some(r) = r else { break };
                rules.on_reading(r).await;
            }
            e = events.recv(), if events_open => match e {
                Some(e) => rules.records.event(e),
                None => events_open = false,
            },
            _ = tick.tick() => rules.on_tick().await,
        }
    }
    for s in rules.summarizer.flush() {
        rules.records.summary(s);
    }
}

impl Rules {
    async fn on_reading(&mut self, r: Reading) {
        let stats = self.records.stats();
        Stats::inc(&stats.readings_in);
        // Readings carry wall time; the summaries' and hazard's owners move their durations
        // onto the monotonic clock.
        let now = clock::wall_s();
        let summary = self.summarizer.on_reading(&r, now);
        if matches!(summary, Err(Skipped::Late)) {
            stats.sources.late(&r.sensor);
        }
        let hazard = self.hazard.as_mut().map(|h| h.on_reading(&r, now));
        if self.feed_signals {
            let _ = self.signals.send(SignalInput::Reading(r)).await;
        }
        if let Some(out) = hazard {
            self.hazard_outputs(out, now).await;
        }
        match summary {
            Ok(Some(s)) => self.records.summary(s),
            Ok(None) => {}
            Err(Skipped::Late) => Stats::inc(&self.records.stats().late),
            Err(Skipped::Unusable) => Stats::inc(&self.records.stats().unusable),
        }
    }

    async fn on_tick(&mut self) {
        self.records.stats().beat(crate::status::Stage::Rules);
        let now = clock::wall_s();
        for s in self.summarizer.tick(now) {
            self.records.summary(s);
        }
        let Some(h) = self.hazard.as_mut() else {
            return;
        };
        let out = h.tick(now);
        let line = h
            .status()
            .iter()
            .map(|g| format!("{}: {}", g.id, g.level_sent.as_deref().unwrap_or("normal")))
            .collect::<Vec<_>>()
            .join(", ");
        self.hazard_outputs(out, now).await;
        if let Ok(mut l) = self.records.stats().hazards.lock() {
            *l = line;
        }
        if let (Some(h), Ok(mut g)) = (&self.hazard, self.records.stats().hazard_groups.lock()) {
            *g = crate::status::HazardState::of_engine(h, &g);
        }
    }

    /// Stores alerts and events, queues local actions, and passes emergency plans on to the
    /// signals stage (and reports them as `emergency_plan` events).
    async fn hazard_outputs(&self, outputs: Vec<HazardOutput>, now: f64) {
        for o in outputs {
            match o {
                HazardOutput::Alert(a) => {
                    tracing::warn!(
                        "hazard {}: {:?} {} ({})",
                        a.group,
                        a.lifecycle,
                        a.level.as_deref().unwrap_or("cleared"),
                        a.alert.identifier
                    );
                    if let Ok(mut g) = self.records.stats().hazard_groups.lock() {
                        let cancelled = a.level.is_none();
                        crate::status::HazardState::note_alert(
                            &mut g, &a.group, &a.alert, cancelled,
                        );
                    }
                    let id = a.alert.identifier.clone();
                    self.records.store(Topic::Alert { id }, a.alert.to_body());
                }
                HazardOutput::SensorFault(f) => self.records.event(f.event),
                HazardOutput::Degraded { event, .. } => self.records.event(event),
                HazardOutput::Publish { topic, payload } => {
                    let what = format!("local action on {topic}");
                    actions::queue(
                        &self.actions,
                        self.records.stats(),
                        LocalPublish { topic, payload },
                        &what,
                    );
                }
                HazardOutput::EmergencyPlan {
                    intersection,
                    plan,
                    active,
                } => {
                    let message = format!(
                        "{} emergency plan `{plan}`",
                        if active { "requested" } else { "released" }
                    );
                    let _ = self
                        .signals
                        .send(SignalInput::EmergencyPlan {
                            intersection: intersection.clone(),
                            plan,
                            active,
                        })
                        .await;
                    self.records.event(Event {
                        kind: "emergency_plan".into(),
                        source: intersection,
                        message,
                        time: now,
                    });
                }
            }
        }
    }
}
