//! The signal controller: takes stage requests from the gateway (next stage, hold, plan) with a
//! heartbeat sequence, runs local fixed-time plans, falls back to the configured plan when the
//! watchdog expires, and latches to flashing when the conflict monitor reports a fault.
//! A pure state machine: `tick(now_ms)`; time is passed in, never read.

use core::fmt;

use citygate_protocols::signal::SignalState;

use super::monitor::{ConflictMonitor, Fault};
use super::plan::{ConfigError, ControllerConfig};
use super::sequencer::{Phase, Sequencer};
use super::watchdog::Watchdog;
use super::{Mode, MAX_GROUPS};
use crate::detector::DetectorSet;

/// A command from the gateway. Stage and plan numbers are 0-based here (1-based on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Command {
    /// Stage to move to; `None` keeps the current stage.
    pub stage: Option<usize>,
    /// Hold the current stage (still capped by maximum green).
    pub hold: bool,
    /// Run this local fixed-time plan; `None` = central stage control.
    pub plan: Option<usize>,
    /// Heartbeat counter; must differ from the last accepted command's.
    pub sequence: u16,
}

/// Why a command was rejected (numbers 1-based). A rejected command does not feed the watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The stage does not exist.
    UnknownStage { stage: usize },
    /// The plan does not exist.
    UnknownPlan { plan: usize },
    /// The sequence counter did not change: a stale or repeated command.
    RepeatedSequence { sequence: u16 },
}

impl core::error::Error for CommandError {}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CommandError::UnknownStage { stage } => {
                write!(f, "signal command: stage {stage} does not exist")
            }
            CommandError::UnknownPlan { plan } => {
                write!(f, "signal command: plan {plan} does not exist")
            }
            CommandError::RepeatedSequence { sequence } => {
                write!(f, "signal command: sequence {sequence} repeated")
            }
        }
    }
}

/// A snapshot of the controller for status registers and logs (stage/plan 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerStatus {
    /// Control mode.
    pub mode: Mode,
    /// Stage running, if not in a transition.
    pub current_stage: Option<usize>,
    /// Stage running or being moved to.
    pub target_stage: Option<usize>,
    /// Time in the current stage or transition.
    pub stage_elapsed_ms: u64,
    /// The latched fault, if any.
    pub fault: Option<Fault>,
    /// A transition is running.
    pub in_transition: bool,
    /// The gateway holds the stage.
    pub hold: bool,
    /// The last stage change was forced by a maximum green.
    pub max_green_forced: bool,
    /// Last accepted command sequence.
    pub last_sequence: Option<u16>,
    /// Rejected commands (saturating).
    pub rejected_commands: u16,
    /// Fixed-time plan running (commanded or fallback).
    pub active_plan: Option<usize>,
}

/// Steps through a fixed-time plan.
#[derive(Debug, Clone, Copy, Default)]
struct PlanRunner {
    plan: Option<usize>,
    step: usize,
    reached: bool,
}

impl PlanRunner {
    fn desired(
        &mut self,
        cfg: &ControllerConfig,
        p: usize,
        seq: &Sequencer,
        now: u64,
    ) -> Option<usize> {
        let steps = &cfg.plans.get(p)?.steps;
        let len = steps.len();
        if len == 0 {
            return None;
        }
        if self.plan != Some(p) {
            // join the plan at the step of the stage we are at, if it has one
            let at = seq.target_stage();
            *self = PlanRunner {
                plan: Some(p),
                step: steps.iter().position(|s| Some(s.stage) == at).unwrap_or(0),
                reached: false,
            };
        }
        let step = *steps.get(self.step % len)?;
        match seq.phase() {
            Phase::Running { stage, since } if stage == step.stage => {
                self.reached = true;
                if now.saturating_sub(since) >= step.green_ms as u64 {
                    self.advance(len);
                }
            }
            // forced away from the step's stage (maximum green): move on in the plan
            Phase::Running { .. } if self.reached => self.advance(len),
            _ => {}
        }
        steps.get(self.step % len).map(|s| s.stage)
    }

    fn advance(&mut self, len: usize) {
        self.step = (self.step + 1) % len;
        self.reached = false;
    }
}

/// The controller core. See the module docs.
#[derive(Debug, Clone)]
pub struct SignalController {
    cfg: ControllerConfig,
    seq: Sequencer,
    monitor: ConflictMonitor,
    watchdog: Watchdog,
    detectors: DetectorSet,
    command: Command,
    pending_stage: Option<usize>,
    last_sequence: Option<u16>,
    rejected: u16,
    runner: PlanRunner,
    mode: Mode,
    fault: Option<Fault>,
    lamps: [SignalState; MAX_GROUPS],
    now: u64,
}

impl SignalController {
    /// Validates `cfg` and powers up at `now_ms`: all red, the watchdog expired (so the
    /// fallback plan runs until the gateway speaks).
    pub fn new(cfg: ControllerConfig, now_ms: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let seq = Sequencer::new(&cfg, now_ms);
        let monitor = ConflictMonitor::new(&cfg, now_ms);
        let watchdog = Watchdog::new(cfg.watchdog_timeout_ms);
        let detectors = DetectorSet::new(
            cfg.detectors,
            cfg.detector_debounce_ms,
            cfg.detector_interval_ms,
            now_ms,
        );
        let mut lamps = [SignalState::Dark; MAX_GROUPS];
        for l in lamps.iter_mut().take(cfg.groups.len()) {
            *l = SignalState::Red;
        }
        Ok(SignalController {
            cfg,
            seq,
            monitor,
            watchdog,
            detectors,
            command: Command::default(),
            pending_stage: None,
            last_sequence: None,
            rejected: 0,
            runner: PlanRunner::default(),
            mode: Mode::Startup,
            fault: None,
            lamps,
            now: now_ms,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// Takes a command at `now_ms`. Accepted commands feed the watchdog and take effect at the
    /// next tick, always through a safe transition.
    pub fn command(&mut self, cmd: Command, now_ms: u64) -> Result<(), CommandError> {
        let check = if self.last_sequence == Some(cmd.sequence) {
            Err(CommandError::RepeatedSequence {
                sequence: cmd.sequence,
            })
        } else if let Some(stage) = cmd.stage.filter(|&s| s >= self.cfg.stages.len()) {
            Err(CommandError::UnknownStage { stage: stage + 1 })
        } else if let Some(plan) = cmd.plan.filter(|&p| p >= self.cfg.plans.len()) {
            Err(CommandError::UnknownPlan { plan: plan + 1 })
        } else {
            Ok(())
        };
        if check.is_err() {
            self.rejected = self.rejected.saturating_add(1);
            return check;
        }
        self.command = cmd;
        self.pending_stage = cmd.stage;
        self.last_sequence = Some(cmd.sequence);
        self.watchdog.feed(now_ms);
        Ok(())
    }

    /// Advances the controller to `now_ms`: detector intervals, mode, stage sequencing, then the
    /// conflict monitor on the resulting lamp outputs.
    pub fn tick(&mut self, now_ms: u64) {
        self.now = now_ms;
        self.detectors.tick(now_ms);
        let n = self.cfg.groups.len();
        if self.fault.is_some() {
            self.show_flash();
            return;
        }
        let fallback = self.watchdog.expired(now_ms);
        let plan = if fallback {
            Some(self.cfg.fallback_plan)
        } else {
            self.command.plan
        };
        let desired = match plan {
            Some(p) => self.runner.desired(&self.cfg, p, &self.seq, now_ms),
            None => {
                self.runner = PlanRunner::default();
                if self.command.hold {
                    None
                } else {
                    self.pending_stage
                }
            }
        };
        self.seq.tick(&self.cfg, now_ms, desired);
        if plan.is_none()
            && self.pending_stage.is_some()
            && self.seq.current_stage() == self.pending_stage
        {
            self.pending_stage = None; // request served
        }
        self.mode = match (self.seq.phase(), fallback, plan) {
            (Phase::Startup { .. }, _, _) => Mode::Startup,
            (_, true, _) => Mode::Fallback,
            (_, false, Some(_)) => Mode::CommandedPlan,
            (_, false, None) => Mode::Central,
        };
        let lamps = self.lamps.get_mut(..n).unwrap_or(&mut []);
        self.seq.states(lamps);
        if let Err(fault) = self.monitor.check(lamps, now_ms) {
            self.fault = Some(fault);
            self.show_flash();
        }
    }

    fn show_flash(&mut self) {
        self.mode = Mode::Flashing;
        for (l, g) in self.lamps.iter_mut().zip(self.cfg.groups.iter()) {
            *l = g.kind.flash_state();
        }
    }

    /// Clears a latched fault at `now_ms`: all red for the longest clearance plus the start-up
    /// time before the first stage. Returns whether a fault was latched.
    pub fn reset_fault(&mut self, now_ms: u64) -> bool {
        if self.fault.take().is_none() {
            return false;
        }
        self.seq = Sequencer::restart_from_flash(&self.cfg, now_ms);
        self.runner = PlanRunner::default();
        let n = self.cfg.groups.len();
        if let Some(lamps) = self.lamps.get_mut(..n) {
            self.seq.states(lamps);
            self.monitor.reset(lamps, now_ms);
        }
        self.mode = Mode::Startup;
        true
    }

    /// Latches a fault found outside the controller (e.g. lamp current monitoring).
    pub fn latch_fault(&mut self, fault: Fault) {
        self.fault.get_or_insert(fault);
        self.show_flash();
    }

    /// What each configured signal group shows.
    pub fn group_states(&self) -> &[SignalState] {
        self.lamps.get(..self.cfg.groups.len()).unwrap_or(&[])
    }

    /// The detectors.
    pub fn detectors(&self) -> &DetectorSet {
        &self.detectors
    }

    /// The detectors, for sampling.
    pub fn detectors_mut(&mut self) -> &mut DetectorSet {
        &mut self.detectors
    }

    /// The last accepted command.
    pub fn last_command(&self) -> Command {
        self.command
    }

    /// The watchdog.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// Time of the last tick.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// A status snapshot as of the last tick.
    pub fn status(&self) -> ControllerStatus {
        let fallback = self.mode == Mode::Fallback
            || (self.mode == Mode::Startup && self.watchdog.expired(self.now));
        ControllerStatus {
            mode: self.mode,
            current_stage: self.seq.current_stage(),
            target_stage: self.seq.target_stage(),
            stage_elapsed_ms: self.seq.phase_elapsed(self.now),
            fault: self.fault,
            in_transition: matches!(self.seq.phase(), Phase::Transition { .. }),
            hold: self.command.hold && !fallback,
            max_green_forced: self.seq.max_green_forced(),
            last_sequence: self.last_sequence,
            rejected_commands: self.rejected,
            active_plan: if self.fault.is_some() {
                None
            } else if fallback {
                Some(self.cfg.fallback_plan)
            } else {
                self.command.plan
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sequencer::tests::crossing;
    use super::*;

    fn run(c: &mut SignalController, from: u64, to: u64) {
        let mut t = from;
        while t <= to {
            c.tick(t);
            t += 100;
        }
    }

    #[test]
    fn starts_in_fallback_plan_and_hands_over_to_the_gateway() {
        let mut c = SignalController::new(crossing(), 0).expect("valid");
        run(&mut c, 0, 3_000);
        assert_eq!(c.status().mode, Mode::Fallback);
        assert_eq!(c.status().active_plan, Some(0));
        assert_eq!(c.status().current_stage, Some(0));
        assert_eq!(
            c.command(
                Command {
                    stage: Some(1),
                    sequence: 1,
                    ..Command::default()
                },
                3_000
            ),
            Ok(())
        );
        run(&mut c, 3_100, 20_000);
        assert_eq!(
            c.status().mode,
            Mode::Fallback,
            "watchdog of 10 s expired without a heartbeat"
        );
        let mut c = SignalController::new(crossing(), 0).expect("valid");
        run(&mut c, 0, 3_000);
        for (i, t) in (3_000..20_000).step_by(1_000).enumerate() {
            let stage = Some(1);
            assert_eq!(
                c.command(
                    Command {
                        stage,
                        sequence: i as u16,
                        ..Command::default()
                    },
                    t
                ),
                Ok(())
            );
            run(&mut c, t, t + 900);
        }
        assert_eq!(c.status().mode, Mode::Central);
        assert_eq!(c.status().current_stage, Some(1));
    }

    #[test]
    fn rejects_unknown_stage_plan_and_repeated_sequence() {
        let mut c = SignalController::new(crossing(), 0).expect("valid");
        assert_eq!(
            c.command(
                Command {
                    stage: Some(2),
                    sequence: 1,
                    ..Command::default()
                },
                0
            ),
            Err(CommandError::UnknownStage { stage: 3 })
        );
        assert_eq!(
            c.command(
                Command {
                    plan: Some(1),
                    sequence: 1,
                    ..Command::default()
                },
                0
            ),
            Err(CommandError::UnknownPlan { plan: 2 })
        );
        assert_eq!(
            c.command(
                Command {
                    sequence: 1,
                    ..Command::default()
                },
                0
            ),
            Ok(())
        );
        assert_eq!(
            c.command(
                Command {
                    sequence: 1,
                    ..Command::default()
                },
                0
            ),
            Err(CommandError::RepeatedSequence { sequence: 1 })
        );
        assert_eq!(c.status().rejected_commands, 3);
        assert!(c.watchdog().last_feed() == Some(0));
    }

    #[test]
    fn external_fault_latches_flash_until_reset() {
        let mut c = SignalController::new(crossing(), 0).expect("valid");
        run(&mut c, 0, 5_000);
        c.latch_fault(Fault::ConflictingGreens { a: 1, b: 2 });
        c.tick(5_100);
        assert_eq!(
            c.group_states(),
            &[
                SignalState::FlashingYellow,
                SignalState::FlashingYellow,
                SignalState::Dark
            ]
        );
        assert_eq!(c.status().mode, Mode::Flashing);
        run(&mut c, 5_200, 60_000);
        assert_eq!(c.status().mode, Mode::Flashing, "latched");
        assert!(c.reset_fault(60_000));
        assert_eq!(c.group_states(), &[SignalState::Red; 3]);
        run(&mut c, 60_100, 70_000);
        assert_eq!(c.status().fault, None);
        assert_eq!(c.status().mode, Mode::Fallback);
    }

    #[test]
    fn hold_keeps_the_stage_until_max_green() {
        let mut c = SignalController::new(crossing(), 0).expect("valid");
        c.command(
            Command {
                stage: Some(0),
                hold: false,
                plan: None,
                sequence: 0,
            },
            0,
        )
        .expect("ok");
        run(&mut c, 0, 3_000);
        assert_eq!(c.status().current_stage, Some(0));
        let mut seq = 1;
        let mut t = 3_000;
        while t < 62_000 {
            c.command(
                Command {
                    stage: Some(1),
                    hold: true,
                    plan: None,
                    sequence: seq,
                },
                t,
            )
            .expect("ok");
            seq += 1;
            run(&mut c, t, t + 900);
            t += 1_000;
        }
        assert_eq!(c.group_states()[0], SignalState::Green, "held");
        while t < 64_000 {
            c.command(
                Command {
                    stage: Some(1),
                    hold: true,
                    plan: None,
                    sequence: seq,
                },
                t,
            )
            .expect("ok");
            seq += 1;
            run(&mut c, t, t + 900);
            t += 1_000;
        }
        assert_ne!(
            c.group_states()[0],
            SignalState::Green,
            "max green 60 s ends the hold"
        );
        assert!(c.status().max_green_forced);
    }
}
