//! The downlink's durable journal, in the outbox's state tree (`outbox::Outbox` state). It
//! owns three promises across a restart or a SIGKILL:
//!
//! - **Replay cache.** Every accepted command's nonce is kept (`cmd/<nonce>`) until it may be
//!   forgotten (`expires_at + max_clock_skew_s`, after which the command is refused as expired
//!   anyway), so a captured command is refused as a replay after a restart too. It is written
//!   and flushed before the command is handed on or answered.
//! - **Executed commands.** The same entry holds the command until it has been carried out;
//!   its outcome event and the entry's update are stored in one transaction. A command that a
//!   kill interrupted in between is carried out at the next start while its nonce is still
//!   remembered, or reported as `command_failed` once it has lapsed.
//! - **Plan overrides.** A running `plan_override` is kept (`override/<intersection>`) with its
//!   end in wall seconds, set and removed in the same transaction as the outcome event that
//!   started or ended it; at start the signals stage takes up the ones still running. One
//!   ended by its own expiry is removed at the next start.
//!
//! Values are JSON. An entry that does not decode is removed and named in a warning.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Action, Command};
use crate::outbox::{Outbox, OutboxError};

/// Prefix of the replay-cache entries.
pub const COMMAND_PREFIX: &str = "cmd/";
/// Prefix of the plan-override entries.
pub const OVERRIDE_PREFIX: &str = "override/";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// Wall second after which the nonce may be forgotten.
    forget_after: u64,
    /// The command, until it has been carried out (`None` for `ping` and once done).
    pending: Option<Command>,
}

/// A plan override that was running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub plan: String,
    /// When it ends, wall seconds.
    pub until: f64,
    /// The nonce of the command that started it.
    pub nonce: String,
}

/// What [`Journal::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Nonces to remember, with until when.
    pub nonces: Vec<(String, u64)>,
    /// Accepted commands not carried out yet, still valid: to carry out now.
    pub pending: Vec<Command>,
    /// Accepted commands not carried out that have lapsed meanwhile: to report as failed.
    pub lapsed: Vec<Command>,
    /// Entries that could not be read (removed).
    pub warnings: Vec<String>,
}

/// The journal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    outbox: Arc<Outbox>,
}

fn command_key(nonce: &str) -> String {
    format!("{COMMAND_PREFIX}{nonce}")
}

fn override_key(intersection: &str) -> String {
    format!("{OVERRIDE_PREFIX}{intersection}")
}

impl Journal {
    pub fn new(outbox: Arc<Outbox>) -> Journal {
        Journal { outbox }
    }

    /// Records an accepted command before it is handed on: its nonce until `forget_after`,
    /// and the command itself when it is still to be carried out (`pending`). Flushed.
    pub fn accepted(
        &self,
        cmd: &Command,
        forget_after: u64,
        pending: bool,
    ) -> Result<(), OutboxError> {
        let e = Entry {
            forget_after,
            pending: pending.then(|| cmd.clone()),
        };
        let bytes = serde_json::to_vec(&e).unwrap_or_default();
        crate::outbox::blocking(|| self.outbox.put_state(&command_key(&cmd.nonce), &bytes))
    }

    /// The replay cache and the commands left pending, at wall second `now`; entries that may
    /// be forgotten or that do not decode are removed.
    pub fn load(&self, now: u64) -> Result<Loaded, OutboxError> {
        let mut out = Loaded::default();
        for (key, bytes) in self.outbox.state_entries(COMMAND_PREFIX)? {
            let nonce = key.trim_start_matches(COMMAND_PREFIX).to_string();
            match serde_json::from_slice::<Entry>(&bytes) {
                Ok(e) if e.forget_after < now => {
                    out.lapsed.extend(e.pending);
                    self.outbox.remove_state(&key)?;
                }
                Ok(e) => {
                    out.nonces.push((nonce, e.forget_after));
                    out.pending.extend(e.pending);
                }
                Err(err) => {
                    out.warnings.push(format!(
                        "command journal {key}: cannot be read ({err}); removed"
                    ));
                    self.outbox.remove_state(&key)?;
                }
            }
        }
        Ok(out)
    }

    /// The state changes to store in one transaction with the outcome event of `cmd`, carried
    /// out at wall time `now` as `action` with `ok` success: the command marked done, and the
    /// plan override it started (set) or ended (removed).
    pub fn outcome(
        &self,
        cmd: &Command,
        action: Option<&Action>,
        ok: bool,
        now: f64,
    ) -> Vec<(String, Option<Vec<u8>>)> {
        let key = command_key(&cmd.nonce);
        let forget_after = self
            .outbox
            .get_state(&key)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            .map_or(cmd.expires_at, |e| e.forget_after);
        let done = Entry {
            forget_after,
            pending: None,
        };
        let mut out = vec![(key, serde_json::to_vec(&done).ok())];
        match action {
            Some(Action::PlanOverride {
                intersection,
                plan,
                duration_s,
            }) if ok => {
                let o = Override {
                    plan: plan.clone(),
                    until: now + *duration_s as f64,
                    nonce: cmd.nonce.clone(),
                };
                out.push((override_key(intersection), serde_json::to_vec(&o).ok()));
            }
            Some(Action::PlanRelease { intersection }) if ok => {
                out.push((override_key(intersection), None));
            }
            _ => {}
        }
        out
    }

    /// The plan overrides still running at wall time `now`, by intersection; ended or
    /// undecodable ones are removed (the latter named in a warning).
    #[allow(clippy::type_complexity)]
    pub fn overrides(
        &self,
        now: f64,
    ) -> Result<(Vec<(String, Override)>, Vec<String>), OutboxError> {
        let mut running = Vec::new();
        let mut warnings = Vec::new();
        for (key, bytes) in self.outbox.state_entries(OVERRIDE_PREFIX)? {
            let intersection = key.trim_start_matches(OVERRIDE_PREFIX).to_string();
            match serde_json::from_slice::<Override>(&bytes) {
                Ok(o) if o.until > now => running.push((intersection, o)),
                Ok(_) => self.outbox.remove_state(&key)?,
                Err(e) => {
                    warnings.push(format!(
                        "plan override {key}: cannot be read ({e}); removed"
                    ));
                    self.outbox.remove_state(&key)?;
                }
            }
        }
        Ok((running, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutboxConfig;

    fn cmd(nonce: &str, expires_at: u64) -> Command {
        Command {
            gateway: "gw".into(),
            name: "plan_override".into(),
            args: serde_json::json!({"intersection": "i1", "plan": "p", "duration_s": 100})
                .as_object()
                .cloned()
                .unwrap(),
            issued_at: 1000,
            expires_at,
            nonce: nonce.into(),
            key_id: "k".into(),
        }
    }

    fn apply(j: &Journal, ob: &Outbox, c: &Command, now: f64) {
        let action = Action::from_command(c).unwrap();
        let state = j.outcome(c, Some(&action), true, now);
        let refs: Vec<(&str, Option<&[u8]>)> = state
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        let ev = citygate_protocols::Event {
            kind: "command_applied".into(),
            source: "i1".into(),
            message: "m".into(),
            time: now,
        };
        ob.append_with_state("t/e", citygate_protocols::Body::Event(ev), &refs)
            .unwrap();
    }

    #[test]
    fn nonces_pending_commands_and_overrides_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = OutboxConfig::default();
        {
            let ob = Arc::new(Outbox::reopen(dir.path(), "gw", &cfg).unwrap());
            let j = Journal::new(Arc::clone(&ob));
            let (done, waiting, old) = (
                cmd("done-0000000000001", 1060),
                cmd("wait-0000000000001", 1060),
                cmd("old0-0000000000001", 1010),
            );
            j.accepted(&done, 1090, true).unwrap();
            apply(&j, &ob, &done, 1005.0);
            j.accepted(&waiting, 1090, true).unwrap();
            j.accepted(&old, 1040, true).unwrap();
            ob.put_state("cmd/junk-000000000001", b"{").unwrap();
        }
        let ob = Arc::new(Outbox::reopen(dir.path(), "gw", &cfg).unwrap());
        let j = Journal::new(Arc::clone(&ob));
        let l = j.load(1050).unwrap();
        let mut nonces: Vec<&str> = l.nonces.iter().map(|(n, _)| n.as_str()).collect();
        nonces.sort_unstable();
        assert_eq!(nonces, vec!["done-0000000000001", "wait-0000000000001"]);
        assert_eq!(l.pending.len(), 1, "only the one not carried out");
        assert_eq!(l.pending[0].nonce, "wait-0000000000001");
        assert_eq!(l.lapsed.len(), 1);
        assert_eq!(l.lapsed[0].nonce, "old0-0000000000001");
        assert!(
            l.warnings[0].contains("cmd/junk-000000000001"),
            "{:?}",
            l.warnings
        );
        // The override runs until 1005 + 100.
        let (running, w) = j.overrides(1050.0).unwrap();
        assert!(w.is_empty());
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].0, "i1");
        assert_eq!(running[0].1.until, 1105.0);
        // Once over, it is forgotten.
        assert!(j.overrides(1105.0).unwrap().0.is_empty());
        assert!(ob.state_entries(OVERRIDE_PREFIX).unwrap().is_empty());
    }
}
