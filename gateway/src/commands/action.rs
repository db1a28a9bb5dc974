//! What an accepted downlink command asks of the gateway: [`Action::from_command`] reads a
//! verified [`Command`]'s name and arguments into an [`Action`], or says which argument is
//! wrong. Pure; the rules task carries the action out and reports the outcome as an event.
//!
//! | name | args | action |
//! |---|---|---|
//! | `plan_override` | `intersection` (string), `plan` (string, a `[[intersection.plan]]` id), `duration_s` (integer, 1–86400) | run that plan through the signal safety layer for that long |
//! | `plan_release` | `intersection` (string) | end an override; the configured controller resumes |

use serde_json::Value;

use super::Command;

/// Longest plan override a command may ask for, seconds (one day).
pub const MAX_OVERRIDE_S: u64 = 86_400;

/// A command, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    PlanOverride {
        intersection: String,
        plan: String,
        duration_s: u64,
    },
    PlanRelease {
        intersection: String,
    },
}

/// Why a verified command cannot be carried out as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("command `{0}` is not supported by this gateway")]
    Unsupported(String),
    #[error("command `{command}`: argument `{arg}` {problem}")]
    BadArgument {
        command: String,
        arg: &'static str,
        problem: String,
    },
}

impl Action {
    /// Reads a verified command.
    pub fn from_command(cmd: &Command) -> Result<Action, ActionError> {
        let bad = |arg: &'static str, problem: &str| ActionError::BadArgument {
            command: cmd.name.clone(),
            arg,
            problem: problem.to_string(),
        };
        let text = |arg: &'static str| -> Result<String, ActionError> {
            match cmd.args.get(arg) {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Ok(s.clone()),
                Some(Value::String(_)) => Err(bad(arg, "must be 1 to 64 characters")),
                Some(_) => Err(bad(arg, "must be a string")),
                None => Err(bad(arg, "is missing")),
            }
        };
        match cmd.name.as_str() {
            "plan_override" => {
                let duration_s = match cmd.args.get("duration_s") {
                    Some(v) => v
                        .as_u64()
                        .filter(|d| (1..=MAX_OVERRIDE_S).contains(d))
                        .ok_or_else(|| {
                            bad(
                                "duration_s",
                                &format!("must be an integer from 1 to {MAX_OVERRIDE_S}"),
                            )
                        })?,
                    None => return Err(bad("duration_s", "is missing")),
                };
                Ok(Action::PlanOverride {
                    intersection: text("intersection")?,
                    plan: text("plan")?,
                    duration_s,
                })
            }
            "plan_release" => Ok(Action::PlanRelease {
                intersection: text("intersection")?,
            }),
            other => Err(ActionError::Unsupported(other.to_string())),
        }
    }

    /// The intersection the action is about.
    pub fn intersection(&self) -> &str {
        match self {
            Action::PlanOverride { intersection, .. } | Action::PlanRelease { intersection } => {
                intersection
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, args: Value) -> Command {
        Command {
            gateway: "gw-1".into(),
            name: name.into(),
            args: args.as_object().cloned().unwrap_or_default(),
            issued_at: 1,
            expires_at: 2,
            nonce: "n".repeat(16),
            key_id: "k".into(),
        }
    }

    #[test]
    fn reads_a_plan_override() {
        let c = cmd(
            "plan_override",
            serde_json::json!({"intersection": "int-1", "plan": "flood-detour", "duration_s": 600}),
        );
        assert_eq!(
            Action::from_command(&c),
            Ok(Action::PlanOverride {
                intersection: "int-1".into(),
                plan: "flood-detour".into(),
                duration_s: 600
            })
        );
    }

    #[test]
    fn names_the_bad_argument() {
        let c = cmd(
            "plan_override",
            serde_json::json!({"intersection": "int-1", "plan": "p", "duration_s": 0}),
        );
        let e = Action::from_command(&c).unwrap_err().to_string();
        assert!(
            e.contains("`duration_s`") && e.contains("1 to 86400"),
            "{e}"
        );
        let c = cmd(
            "plan_override",
            serde_json::json!({"plan": "p", "duration_s": 5}),
        );
        let e = Action::from_command(&c).unwrap_err().to_string();
        assert!(e.contains("`intersection` is missing"), "{e}");
        let c = cmd("plan_release", serde_json::json!({"intersection": 3}));
        let e = Action::from_command(&c).unwrap_err().to_string();
        assert!(e.contains("must be a string"), "{e}");
    }

    #[test]
    fn unknown_commands_are_unsupported_not_dropped() {
        let c = cmd("reboot", serde_json::json!({}));
        assert_eq!(
            Action::from_command(&c),
            Err(ActionError::Unsupported("reboot".into()))
        );
    }
}
