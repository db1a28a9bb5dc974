//! Controller configuration: signal groups with their timings, stages (sets of groups green
//! together), local fixed-time plans, and validation that names what is wrong and where.

use core::fmt;

use citygate_protocols::signal::GroupKind;

pub use super::safety::GroupConfig;
use super::safety::{IntergreenMatrix, Rules};
use super::{GroupSet, MAX_GROUPS, MAX_PLANS, MAX_PLAN_STEPS, MAX_STAGES};
use crate::detector::MAX_DETECTORS;

/// One step of a fixed-time plan: run `stage` (0-based) for `green_ms` once all its groups are
/// green, then move to the next step (cyclically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanStep {
    /// Stage index, 0-based.
    pub stage: usize,
    /// Stage green time in ms, counted from the moment the stage is fully green.
    pub green_ms: u32,
}

/// A local fixed-time plan: a cycle of stage steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The steps, run in order and repeated.
    pub steps: heapless::Vec<PlanStep, MAX_PLAN_STEPS>,
}

impl Plan {
    /// A plan from `(stage, green_ms)` pairs; `None` if there are more than [`MAX_PLAN_STEPS`].
    pub fn from_steps(steps: &[(usize, u32)]) -> Option<Self> {
        let mut plan = Plan::default();
        for &(stage, green_ms) in steps {
            plan.steps.push(PlanStep { stage, green_ms }).ok()?;
        }
        Some(plan)
    }
}

/// Everything the signal controller needs. Build it, then [`validate`](Self::validate) (done
/// by [`super::SignalController::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerConfig {
    /// Signal groups, index = group number − 1.
    pub groups: heapless::Vec<GroupConfig, MAX_GROUPS>,
    /// Stages, index = stage number − 1; each the set of groups green together.
    pub stages: heapless::Vec<GroupSet, MAX_STAGES>,
    /// Conflicts and intergreen times.
    pub intergreen: IntergreenMatrix,
    /// Local fixed-time plans, index = plan number − 1.
    pub plans: heapless::Vec<Plan, MAX_PLANS>,
    /// The plan (0-based) run when the gateway goes silent.
    pub fallback_plan: usize,
    /// How long without a valid command before the fallback plan takes over.
    pub watchdog_timeout_ms: u32,
    /// All-red time at power-up and after a fault reset.
    pub startup_all_red_ms: u32,
    /// Number of detector loops.
    pub detectors: usize,
    /// Detector debounce time.
    pub detector_debounce_ms: u32,
    /// Detector counting interval (counts and occupancy are reported per interval).
    pub detector_interval_ms: u32,
}

/// A configuration mistake, naming where it is (group, stage and plan numbers are 1-based as
/// on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// No signal groups.
    NoGroups,
    /// No stages.
    NoStages,
    /// No plans (the fallback plan is required).
    NoPlans,
    /// The fallback plan index is past the plans.
    UnknownFallbackPlan { plan: usize },
    /// A stage has no groups, or names a group that is not configured.
    BadStage { stage: usize },
    /// Two conflicting groups are green together in a stage.
    ConflictInStage { stage: usize, a: usize, b: usize },
    /// A group conflicts with itself, or a conflict is declared in one direction only.
    BadConflict { a: usize, b: usize },
    /// A conflict names a group that is not configured.
    ConflictWithUnknownGroup { a: usize, b: usize },
    /// An intergreen is shorter than the clearing group's yellow / flashing green.
    IntergreenBelowClearance {
        clearing: usize,
        entering: usize,
        intergreen_ms: u32,
        clearance_ms: u32,
    },
    /// Minimum green is zero or above maximum green.
    BadGreenTimes { group: usize },
    /// A vehicle group without yellow, or a pedestrian group with red-amber.
    BadClearance { group: usize },
    /// A plan has no steps.
    EmptyPlan { plan: usize },
    /// A plan step names an unknown stage.
    PlanUnknownStage {
        plan: usize,
        step: usize,
        stage: usize,
    },
    /// The watchdog timeout is zero.
    NoWatchdogTimeout,
    /// More detectors than supported, or a zero counting interval.
    BadDetectors,
}

impl core::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigError::*;
        match *self {
            NoGroups => write!(f, "signal controller: no signal groups configured"),
            NoStages => write!(f, "signal controller: no stages configured"),
            NoPlans => write!(f, "signal controller: no fixed-time plan configured (the fallback needs one)"),
            UnknownFallbackPlan { plan } => write!(f, "signal controller: fallback plan {plan} does not exist"),
            BadStage { stage } => write!(f, "stage {stage}: empty or names an unconfigured signal group"),
            ConflictInStage { stage, a, b } => write!(f, "stage {stage}: conflicting signal groups {a} and {b} are green together"),
            BadConflict { a, b } => write!(f, "intergreen matrix: conflict between groups {a} and {b} must be declared both ways and not with itself"),
            ConflictWithUnknownGroup { a, b } => write!(f, "intergreen matrix: conflict {a}-{b} names an unconfigured group"),
            IntergreenBelowClearance { clearing, entering, intergreen_ms, clearance_ms } => write!(
                f,
                "intergreen {clearing}->{entering}: {intergreen_ms} ms is shorter than group {clearing}'s clearance of {clearance_ms} ms"
            ),
            BadGreenTimes { group } => write!(f, "signal group {group}: minimum green must be above 0 and not above maximum green"),
            BadClearance { group } => write!(f, "signal group {group}: vehicle groups need a yellow time; pedestrian groups have no red-amber"),
            EmptyPlan { plan } => write!(f, "plan {plan}: no steps"),
            PlanUnknownStage { plan, step, stage } => write!(f, "plan {plan} step {step}: stage {stage} does not exist"),
            NoWatchdogTimeout => write!(f, "signal controller: watchdog timeout must be above 0"),
            BadDetectors => write!(f, "signal controller: at most {MAX_DETECTORS} detectors and a counting interval above 0"),
        }
    }
}

impl ControllerConfig {
    /// Checks the configuration; the first mistake found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.groups.len();
        if n == 0 {
            return Err(ConfigError::NoGroups);
        }
        for (g, cfg) in self.groups.iter().enumerate() {
            if cfg.min_green_ms == 0
                || (cfg.max_green_ms != 0 && cfg.max_green_ms < cfg.min_green_ms)
            {
                return Err(ConfigError::BadGreenTimes { group: g + 1 });
            }
            let bad = match cfg.kind {
                GroupKind::Vehicle => cfg.clearance_ms == 0,
                GroupKind::Pedestrian => cfg.red_amber_ms != 0,
            };
            if bad {
                return Err(ConfigError::BadClearance { group: g + 1 });
            }
        }
        for a in 0..MAX_GROUPS {
            for b in 0..MAX_GROUPS {
                let (ab, ba) = (self.intergreen.get(a, b), self.intergreen.get(b, a));
                if ab.is_none() && ba.is_none() {
                    continue;
                }
                if a >= n || b >= n {
                    return Err(ConfigError::ConflictWithUnknownGroup { a: a + 1, b: b + 1 });
                }
                if a == b || ab.is_none() != ba.is_none() {
                    return Err(ConfigError::BadConflict { a: a + 1, b: b + 1 });
                }
                if let (Some(ig), Some(cfg)) = (ab, self.groups.get(a)) {
                    if ig < cfg.clearance_ms {
                        return Err(ConfigError::IntergreenBelowClearance {
                            clearing: a + 1,
                            entering: b + 1,
                            intergreen_ms: ig,
                            clearance_ms: cfg.clearance_ms,
                        });
                    }
                }
            }
        }
        if self.stages.is_empty() {
            return Err(ConfigError::NoStages);
        }
        let all = GroupSet::first(n);
        for (s, stage) in self.stages.iter().enumerate() {
            if stage.is_empty() || !stage.is_subset(all) {
                return Err(ConfigError::BadStage { stage: s + 1 });
            }
            for a in stage.iter() {
                for b in stage.iter() {
                    if a < b && self.intergreen.conflicts(a, b) {
                        return Err(ConfigError::ConflictInStage {
                            stage: s + 1,
                            a: a + 1,
                            b: b + 1,
                        });
                    }
                }
            }
        }
        if self.plans.is_empty() {
            return Err(ConfigError::NoPlans);
        }
        if self.fallback_plan >= self.plans.len() {
            return Err(ConfigError::UnknownFallbackPlan {
                plan: self.fallback_plan + 1,
            });
        }
        for (p, plan) in self.plans.iter().enumerate() {
            if plan.steps.is_empty() {
                return Err(ConfigError::EmptyPlan { plan: p + 1 });
            }
            for (i, step) in plan.steps.iter().enumerate() {
                if step.stage >= self.stages.len() {
                    return Err(ConfigError::PlanUnknownStage {
                        plan: p + 1,
                        step: i + 1,
                        stage: step.stage + 1,
                    });
                }
            }
        }
        if self.watchdog_timeout_ms == 0 {
            return Err(ConfigError::NoWatchdogTimeout);
        }
        if self.detectors > MAX_DETECTORS || self.detector_interval_ms == 0 {
            return Err(ConfigError::BadDetectors);
        }
        Ok(())
    }

    /// The safety rules: group timings, stages and the intergreen matrix.
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            groups: &self.groups,
            stages: &self.stages,
            intergreen: &self.intergreen,
        }
    }
}
