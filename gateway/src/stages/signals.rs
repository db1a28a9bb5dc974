//! The signals stage: one task that owns every signalised intersection (`signals::live`).
//! It takes the readings and emergency plans the rules stage passes on, the verified
//! downlink commands and the neighbouring gateways' planned outflows; runs the 1 s tick of
//! adaptive control; hands stage commands to the actions stage; and reports through
//! [`Records`] (`command_applied` / `command_failed`, the runtimes' events). Its counters: the
//! `signals` status and `actions_failed` for a full action queue. It ends when the rules
//! stage is gone.

use std::time::Duration;

use citygate_protocols::{Event, Reading};
use tokio::sync::mpsc;

use super::records::Records;
use crate::actions::{self, LocalPublish};
use crate::clock;
use crate::commands::{Action, Command};
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
                apply_command(&mut signals, &records, &c, clock::Now::read());
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

/// Carries out one verified command and reports the outcome on the uplink as a
/// `command_applied` or `command_failed` event naming the command's nonce.
fn apply_command(signals: &mut Signals, records: &Records, cmd: &Command, now: clock::Now) {
    let outcome = Action::from_command(cmd)
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
    records.event(Event {
        kind: kind.into(),
        source,
        message: format!("{} ({}): {message}", cmd.name, cmd.nonce),
        time: now.wall,
    });
}
