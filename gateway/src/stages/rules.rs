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
use crate::rules::hazard::{persist, HazardEngine, HazardOutput};
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
    rules.restore_hazard().await;
    loop {
        tokio::select! {
            r = readings.recv() => {
                let Some(r) = r else { break };
                rules.on_reading(r, clock::Now::read()).await;
            }
            e = events.recv(), if events_open => match e {
                Some(e) => rules.records.event(e),
                None => events_open = false,
            },
            _ = tick.tick() => rules.on_tick(clock::Now::read()).await,
        }
    }
    for s in rules.summarizer.flush() {
        rules.records.summary(s);
    }
}

impl Rules {
    /// Takes the hazard engine's state back from the outbox (open incidents continue), asserts
    /// their local actions again and reports what could not be restored as it was.
    async fn restore_hazard(&mut self) {
        let Some(h) = self.hazard.as_mut() else {
            return;
        };
        let outbox = std::sync::Arc::clone(self.records.outbox());
        let stored = match crate::outbox::blocking(|| outbox.state_entries(persist::PREFIX)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "hazard state not read from the outbox ({e}); every group starts afresh"
                );
                return;
            }
        };
        let now = clock::wall_s();
        let (out, warnings) = h.restore(&stored, now);
        let open: Vec<String> = h
            .status()
            .iter()
            .filter_map(|g| g.incident.map(|i| format!("{} incident {i}", g.id)))
            .collect();
        if !open.is_empty() {
            tracing::warn!("hazard: continuing {}", open.join(", "));
        }
        for w in warnings {
            tracing::error!("{w}");
            self.records.event(Event {
                kind: "hazard_state_not_restored".into(),
                source: self.records.gateway().to_string(),
                message: w,
                time: now,
            });
        }
        self.hazard_outputs(out, now).await;
    }

    /// A reading received at `now`: the summarizer's idle close runs on `now.mono`; the hazard
    /// engine still takes wall seconds (its durations are its owner's to move).
    async fn on_reading(&mut self, r: Reading, now: clock::Now) {
        let stats = self.records.stats();
        Stats::inc(&stats.readings_in);
        let summary = self.summarizer.on_reading(&r, now.mono);
        if matches!(summary, Err(Skipped::Late)) {
            stats.sources.late(&r.sensor);
        }
        let now = now.wall;
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

    async fn on_tick(&mut self, now: clock::Now) {
        self.records.stats().beat(crate::status::Stage::Rules);
        for s in self.summarizer.tick(now.mono) {
            self.records.summary(s);
        }
        let now = now.wall;
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
                    // The group's state goes with its alert, in one transaction.
                    let key = persist::state_key(&a.group);
                    let state = self.hazard.as_ref().and_then(|h| h.snapshot(&a.group));
                    let state: Vec<(&str, Option<&[u8]>)> = state
                        .iter()
                        .map(|b| (key.as_str(), Some(b.as_slice())))
                        .collect();
                    self.records
                        .store_with_state(Topic::Alert { id }, a.alert.to_body(), &state);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Now;
    use crate::config::OutboxConfig;
    use crate::outbox::Outbox;
    use citygate_protocols::{Quality, Unit};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    fn reading(time: f64) -> Reading {
        Reading {
            sensor: "s1".into(),
            quantity: "water_level".into(),
            value: 1.0,
            unit: Some(Unit::Metre),
            time,
            quality: Quality::Good,
        }
    }

    /// The idle close of a summary window runs on the monotonic clock: a wall clock stepped a
    /// day forward (an NTP correction) closes nothing; a window length of monotonic time does.
    #[tokio::test]
    async fn a_wall_clock_step_does_not_close_a_window() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), "gw", &OutboxConfig::default()).unwrap();
        let records = Records::new(Arc::new(outbox), Arc::new(Stats::default()));
        let (actions, _actions_rx) = mpsc::channel(4);
        let (signals, _signals_rx) = mpsc::channel(4);
        let mut rules = Rules {
            summarizer: Summarizer::new(60),
            hazard: None,
            records,
            actions,
            signals,
            feed_signals: false,
        };
        let wall = 1_700_000_000.0;
        let out = |r: &Rules| r.records.stats().summaries_out.load(Ordering::Relaxed);
        rules
            .on_reading(reading(wall), Now { mono: 5.0, wall })
            .await;
        rules
            .on_tick(Now {
                mono: 6.0,
                wall: wall + 86_400.0,
            })
            .await;
        assert_eq!(out(&rules), 0, "a wall step closed the window");
        assert_eq!(rules.summarizer.open_windows(), 1);
        rules
            .on_tick(Now {
                mono: 64.9,
                wall: wall - 3_600.0,
            })
            .await;
        assert_eq!(out(&rules), 0);
        rules.on_tick(Now { mono: 65.0, wall }).await;
        assert_eq!(out(&rules), 1, "60 s of monotonic time close it");
        assert_eq!(rules.summarizer.open_windows(), 0);
    }
}
