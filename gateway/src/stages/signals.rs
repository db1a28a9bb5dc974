//! The signals stage: one task that owns every signalised intersection (`signals::live`).
//! It takes the readings and emergency plans the rules stage passes on, the verified
//! downlink commands and the neighbouring gateways' planned outflows; runs the 1 s tick of
//! adaptive control; hands stage commands to the actions stage; and reports through
//! [`Records`] (`command_applied` / `command_failed`, the runtimes' events). Its counters: the
//! `signals` status and `actions_failed` for a full action queue. It ends when the rules
//! stage is gone. A command's outcome event is stored in one transaction with its journal
//! entry (`commands::journal`: the command done, the plan override it started or ended); at
//! start the plan overrides still running before a stop are taken up again.

use std::time::Duration;

use citygate_protocols::topic::Topic;
use citygate_protocols::{Body, Event, Reading};
use tokio::sync::mpsc;

use super::records::Records;
use crate::actions::{self, LocalPublish};
use crate::clock;
use crate::commands::{Action, Command, Journal};
use crate::signals::live::Signals;
use crate::signals::PlannedFlow;

/// How often adaptive control decides.
pub const TICK: Duration = Duration::from_secs(1);

/// What the rules stage passes on to signal control, in the order it happened.
#[derive(Debug, Clone)]
pub enum SignalInput {
    /// A reading (detector counts, occupancy).
    Reading(Reading),
    /// `[hazard]` asks for (`active`) or releases an intersection's emergency plan.
    EmergencyPlan {
        intersection: String,
        plan: String,
        active: bool,
    },
}

/// The signals stage's inputs besides the rules.
pub struct SignalInputs {
    pub from_rules: mpsc::Receiver<SignalInput>,
    /// Verified downlink commands (`None` when `[commands]` has no keys).
    pub commands: Option<mpsc::Receiver<Command>>,
    /// Neighbouring gateways' planned outflows (`None` when no intersection coordinates).
    pub peers: Option<mpsc::Receiver<Vec<PlannedFlow>>>,
}

/// The next message of an optional channel (pending forever without one).
async fn next<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs signal control until the rules stage closes its channel.
pub async fn run(
    mut signals: Signals,
    mut inputs: SignalInputs,
    records: Records,
    actions: mpsc::Sender<LocalPublish>,
) {
    let journal = Journal::new(std::sync::Arc::clone(records.outbox()));
    restore_overrides(&mut signals, &journal, &records, clock::Now::read());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            m = inputs.from_rules.recv() => match m {
                Some(SignalInput::Reading(r)) => signals.on_reading(&r, clock::Now::read()),
                Some(SignalInput::EmergencyPlan { intersection, plan, active }) => {
                    signals.emergency_plan(&intersection, &plan, active, clock::Now::read());
                }
                None => break,
            },
            Some(c) = next(&mut inputs.commands) => {
                apply_command(&mut signals, &records, &journal, &c, clock::Now::read());
            }
            Some(flows) = next(&mut inputs.peers) => signals.on_peer_flows(&flows),
            (i, result) = signals.next_result() => signals.on_result(i, result, clock::Now::read()),
            _ = tick.tick() => {
                records.stats().beat(crate::status::Stage::Signals);
                if signals.is_empty() {
                    continue;
                }
                let now = clock::Now::read();
                let (events, publish) = signals.tick(now);
                for e in events {
                    records.event(e);
                }
                for p in publish {
                    actions::queue(&actions, records.stats(), p, "stage command");
                }
                if let Ok(mut s) = records.stats().signals.lock() {
                    *s = signals.status(now);
                }
            }
        }
    }
}

/// Takes up the plan overrides that were running before a stop, for what is left of them;
/// each is reported as a `plan_override_restored` (or `plan_override_not_restored`) event.
fn restore_overrides(signals: &mut Signals, journal: &Journal, records: &Records, now: clock::Now) {
    let (running, warnings) = match crate::outbox::blocking(|| journal.overrides(now.wall)) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("plan overrides not read from the outbox ({e}); none taken up");
            return;
        }
    };
    let warned = warnings.into_iter().map(|w| {
        (
            String::from("plan_override_not_restored"),
            "-".to_string(),
            w,
        )
    });
    let taken = running.into_iter().map(|(intersection, o)| {
        let left = (o.until - now.wall).ceil().max(1.0) as u64;
        let a = Action::PlanOverride {
            intersection: intersection.clone(),
            plan: o.plan.clone(),
            duration_s: left,
        };
        match signals.apply(&a, now) {
            Ok(done) => (
                "plan_override_restored".to_string(),
                intersection,
                format!(
                    "plan_override ({}) taken up after a restart: {done}",
                    o.nonce
                ),
            ),
            Err(e) => (
                "plan_override_not_restored".to_string(),
                intersection,
                format!(
                    "plan_override ({}) not taken up after a restart: {e}",
                    o.nonce
                ),
            ),
        }
    });
    for (kind, source, message) in warned.chain(taken).collect::<Vec<_>>() {
        records.event(Event {
            kind,
            source,
            message,
            time: now.wall,
        });
    }
}

/// Carries out one verified command and reports the outcome on the uplink as a
/// `command_applied` or `command_failed` event naming the command's nonce, stored with the
/// command's journal entry.
fn apply_command(
    signals: &mut Signals,
    records: &Records,
    journal: &Journal,
    cmd: &Command,
    now: clock::Now,
) {
    let action = Action::from_command(cmd);
    let outcome = action
        .clone()
        .map_err(|e| (String::from("-"), e.to_string()))
        .and_then(|a| {
            let source = a.intersection().to_string();
            signals
                .apply(&a, now)
                .map(|done| (source.clone(), done))
                .map_err(|e| (source, e))
        });
    let (kind, source, message) = match outcome {
        Ok((source, done)) => ("command_applied", source, done),
        Err((source, why)) => ("command_failed", source, why),
    };
    let state = journal.outcome(
        cmd,
        action.as_ref().ok(),
        kind == "command_applied",
        now.wall,
    );
    let state: Vec<(&str, Option<&[u8]>)> = state
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    let event = Event {
        kind: kind.into(),
        source,
        message: format!("{} ({}): {message}", cmd.name, cmd.nonce),
        time: now.wall,
    };
    tracing::info!(
        "event {} from {}: {}",
        event.kind,
        event.source,
        event.message
    );
    let topic = Topic::Event {
        kind: kind.to_string(),
    };
    records.store_with_state(topic, Body::Event(event), &state);
}
