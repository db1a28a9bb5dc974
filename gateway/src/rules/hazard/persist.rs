//! The hazard engine's durable state: what of a group must outlive a restart so that an open
//! incident continues under its identifier and its next Update or Cancel references every
//! message already sent, and so that a new incident never reuses a number. Per group: the
//! open incident (number, the messages named in `<references>`, level sent, time of the last
//! message), the level the vote settled on, each sensor's hysteresis level, the re-arm time
//! after a cancel and the last incident number.
//!
//! [`HazardEngine::snapshot`] encodes one group as JSON bytes under [`state_key`]; the caller
//! stores them together with that group's alert (the outbox writes both in one transaction).
//! [`HazardEngine::restore`] takes what was stored back at start. Levels are stored by name,
//! so a changed configuration is survivable: an unknown group is skipped, an unknown level
//! counts as the group's most severe one (so a cancel still follows once it clears), and every
//! such mismatch or undecodable value is returned as a warning naming its key. Sensor values
//! and windows are not stored: until `k` sensors report again the group holds its level.

use std::collections::BTreeMap;

use citygate_protocols::cap::Reference;
use serde::{Deserialize, Serialize};

use super::config::GroupConfig;
use super::{message, HazardEngine, HazardOutput, Incident};

/// Prefix of the hazard engine's keys in the outbox's state tree.
pub const PREFIX: &str = "hazard/";
/// Version of the stored form.
const VERSION: u32 = 1;

/// The key under which group `group`'s state is stored.
pub fn state_key(group: &str) -> String {
    format!("{PREFIX}{group}")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSnapshot {
    v: u32,
    /// Level the vote settled on (after persistence).
    committed: Option<String>,
    /// Hysteresis level per sensor id (sensors at no level are left out).
    sensors: BTreeMap<String, String>,
    incident: Option<IncidentSnapshot>,
    /// When a new incident may be raised after the last cancel (epoch seconds).
    rearm_at: Option<f64>,
    last_incident: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentSnapshot {
    number: u64,
    /// The messages sent so far as CAP writes `<references>`: `sender,identifier,sent ...`.
    references: String,
    level_sent: Option<String>,
    last_sent: f64,
}

fn name(g: &GroupConfig, level: usize) -> Option<String> {
    super::level_name(g, level)
}

/// The level called `name` in `g` (0 for none); an unknown name is the most severe level.
fn level_of(g: &GroupConfig, name: Option<&str>, key: &str, warnings: &mut Vec<String>) -> usize {
    let Some(n) = name else { return 0 };
    match g.levels.iter().position(|l| l.name == n) {
        Some(i) => i + 1,
        None => {
            warnings.push(format!(
                "hazard state {key}: level `{n}` is no longer configured; taken as `{}`, the most severe",
                g.levels.last().map_or("", |l| l.name.as_str())
            ));
            g.levels.len()
        }
    }
}

impl HazardEngine {
    /// The durable state of group `group` as it is now, to store under [`state_key`]; `None`
    /// for an unknown group.
    pub fn snapshot(&self, group: &str) -> Option<Vec<u8>> {
        let gi = self.cfg.groups.iter().position(|g| g.id == group)?;
        let (g, gs) = (self.cfg.groups.get(gi)?, self.groups.get(gi)?);
        let snap = GroupSnapshot {
            v: VERSION,
            committed: name(g, gs.committed),
            sensors: g
                .sensors
                .iter()
                .zip(&gs.sensors)
                .filter_map(|(id, st)| name(g, st.level).map(|l| (id.clone(), l)))
                .collect(),
            incident: gs.incident.as_ref().map(|i| IncidentSnapshot {
                number: i.number,
                references: Reference::join(&i.msgs).unwrap_or_default(),
                level_sent: name(g, i.level_sent),
                last_sent: i.last_sent,
            }),
            rearm_at: gs.rearm_at.is_finite().then_some(gs.rearm_at),
            last_incident: gs.last_incident,
        };
        serde_json::to_vec(&snap).ok()
    }

    /// Takes back the state stored under [`PREFIX`] (`(key, bytes)` pairs) at start, at wall
    /// time `now`. Returns the local actions of every open incident's level (sirens, signs,
    /// emergency plans) to assert them again, and a warning for every entry that could not be
    /// taken as it was. A time stored in the future (the clock went back) is taken as `now`.
    pub fn restore(
        &mut self,
        stored: &[(String, Vec<u8>)],
        now: f64,
    ) -> (Vec<HazardOutput>, Vec<String>) {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for (key, bytes) in stored {
            let Some(group) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let Some(gi) = self.cfg.groups.iter().position(|g| g.id == group) else {
                warnings.push(format!(
                    "hazard state {key}: no group `{group}` in [hazard] any more; ignored"
                ));
                continue;
            };
            let snap: GroupSnapshot = match serde_json::from_slice(bytes) {
                Ok(s) => s,
                Err(e) => {
                    warnings.push(format!(
                        "hazard state {key}: cannot be read ({e}); the group starts afresh"
                    ));
                    continue;
                }
            };
            if snap.v != VERSION {
                warnings.push(format!(
                    "hazard state {key}: version {} is not {VERSION}; the group starts afresh",
                    snap.v
                ));
                continue;
            }
            self.restore_group(gi, snap, key, now, &mut out, &mut warnings);
        }
        (out, warnings)
    }

    fn restore_group(
        &mut self,
        gi: usize,
        snap: GroupSnapshot,
        key: &str,
        now: f64,
        out: &mut Vec<HazardOutput>,
        warnings: &mut Vec<String>,
    ) {
        let (Some(g), Some(gs)) = (self.cfg.groups.get(gi), self.groups.get_mut(gi)) else {
            return;
        };
        let now = if now.is_finite() { now } else { 0.0 };
        gs.committed = level_of(g, snap.committed.as_deref(), key, warnings);
        for (id, st) in g.sensors.iter().zip(gs.sensors.iter_mut()) {
            st.level = level_of(g, snap.sensors.get(id).map(String::as_str), key, warnings);
        }
        gs.last_incident = snap.last_incident;
        gs.rearm_at = snap.rearm_at.map_or(f64::NEG_INFINITY, |t| {
            t.min(now + self.cfg.min_update_interval_s)
        });
        gs.incident = snap.incident.and_then(|i| {
            let msgs = match Reference::parse_list(&i.references) {
                Ok(m) if !m.is_empty() => m,
                Ok(_) => {
                    warnings.push(format!(
                        "hazard state {key}: incident {} has no messages; dropped",
                        i.number
                    ));
                    return None;
                }
                Err(e) => {
                    warnings.push(format!(
                        "hazard state {key}: incident {} references: {e}; dropped",
                        i.number
                    ));
                    return None;
                }
            };
            gs.last_incident = gs.last_incident.max(i.number);
            Some(Incident {
                number: i.number,
                msgs,
                level_sent: level_of(g, i.level_sent.as_deref(), key, warnings),
                last_sent: if i.last_sent.is_finite() {
                    i.last_sent.min(now)
                } else {
                    now
                },
            })
        });
        if let Some(inc) = &gs.incident {
            message::assert_actions(g, inc.level_sent, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::hazard::{HazardConfig, Lifecycle};
    use citygate_protocols::cap::MsgType;
    use citygate_protocols::{Quality, Reading};

    const CFG: &str = r#"
sender = "citygate.gw-p@city.example"
identifier_prefix = "gw-p"
min_update_interval_s = 1

[[groups]]
id = "underpass"
sensors = ["w1", "w2", "w3"]
quantity = "level"
rule = { kind = "threshold" }
k = 2
persistence_s = 0
event = "Flood"
area = { desc = "Main St underpass", polygon = [[52.1, 4.3], [52.1, 4.31], [52.11, 4.31]] }

[[groups.levels]]
name = "warning"
raise = 1.0
clear = 0.8
urgency = "Immediate"
severity = "Severe"
certainty = "Observed"
headline = "Underpass flooded ({value} m)"
publish = [{ topic = "siren", payload = "on", clear_payload = "off" }]

[[groups.levels]]
name = "danger"
raise = 2.0
clear = 1.8
urgency = "Immediate"
severity = "Extreme"
certainty = "Observed"
headline = "Underpass deep under water ({value} m)"
"#;
    const T0: f64 = 1_764_340_000.0;

    fn engine() -> HazardEngine {
        let cfg: HazardConfig = toml::from_str(CFG).unwrap();
        HazardEngine::new(cfg).unwrap()
    }

    fn level(e: &mut HazardEngine, v: f64, t: f64) -> Vec<AlertAction> {
        let mut out = Vec::new();
        for s in ["w1", "w2"] {
            let r = Reading {
                sensor: s.into(),
                quantity: "level".into(),
                value: v,
                unit: None,
                time: t,
                quality: Quality::Good,
            };
            out.extend(e.on_reading(&r, t));
        }
        out.into_iter()
            .filter_map(|o| match o {
                HazardOutput::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    use super::super::AlertAction;

    /// What the gateway stores: the snapshot of each group that sent an alert.
    fn stored(e: &HazardEngine) -> Vec<(String, Vec<u8>)> {
        vec![(state_key("underpass"), e.snapshot("underpass").unwrap())]
    }

    #[test]
    fn an_open_incident_continues_after_a_restart_and_its_cancel_references_every_message() {
        let mut e = engine();
        let raised = level(&mut e, 1.5, T0);
        assert_eq!(raised.len(), 1);
        let up = level(&mut e, 2.5, T0 + 5.0);
        assert_eq!(up[0].lifecycle, Lifecycle::Escalate);
        let saved = stored(&e);
        drop(e);

        let mut e = engine();
        let (actions, warnings) = e.restore(&saved, T0 + 30.0);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(
            actions.iter().all(|a| !matches!(a, HazardOutput::Alert(_))),
            "no message is sent by a restore"
        );
        assert_eq!(e.status()[0].incident, Some(raised[0].incident));
        // Nothing happens until the sensors report again: the level holds.
        assert!(alerts_of(e.tick(T0 + 31.0)).is_empty());
        let cancel = level(&mut e, 0.1, T0 + 40.0);
        assert_eq!(cancel.len(), 1, "{cancel:?}");
        let c = &cancel[0];
        assert_eq!(c.alert.msg_type, MsgType::Cancel);
        assert_eq!(c.incident, raised[0].incident);
        assert_eq!(c.alert.incidents, raised[0].alert.incidents);
        let refs = c.alert.reference_list().unwrap();
        let ids: Vec<&str> = refs.iter().map(|r| r.identifier.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                raised[0].alert.identifier.as_str(),
                up[0].alert.identifier.as_str()
            ]
        );
        assert!(c.alert.identifier.ends_with(".2"), "{}", c.alert.identifier);
        c.alert.validate().unwrap();
    }

    fn alerts_of(out: Vec<HazardOutput>) -> Vec<AlertAction> {
        out.into_iter()
            .filter_map(|o| match o {
                HazardOutput::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn incident_numbers_are_unique_across_restarts_in_the_same_second_and_clock_steps() {
        let mut e = engine();
        let first = level(&mut e, 1.5, T0)[0].incident;
        level(&mut e, 0.1, T0 + 2.0);
        let saved = stored(&e);
        // Restarted within the same second, and again with the clock an hour back.
        for restart_at in [T0 + 2.5, T0 - 3600.0] {
            let mut e = engine();
            let (_, w) = e.restore(&saved, restart_at);
            assert!(w.is_empty(), "{w:?}");
            let again = level(&mut e, 1.5, restart_at + 1.0);
            let second = again.first().map(|a| a.incident);
            assert!(second > Some(first), "{second:?} after {first}");
        }
    }

    #[test]
    fn the_level_of_an_open_incident_has_its_local_actions_asserted_again() {
        let mut e = engine();
        level(&mut e, 1.5, T0);
        let saved = stored(&e);
        let mut e = engine();
        let (actions, _) = e.restore(&saved, T0 + 10.0);
        assert_eq!(
            actions,
            vec![HazardOutput::Publish {
                topic: "siren".into(),
                payload: "on".into()
            }]
        );
    }

    #[test]
    fn damaged_or_stale_state_is_a_warning_naming_its_key_never_a_panic() {
        let mut e = engine();
        level(&mut e, 1.5, T0);
        let good = e.snapshot("underpass").unwrap();
        let renamed = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"warning\"", "\"gone\"");
        let cases: Vec<(String, Vec<u8>, &str)> = vec![
            (
                state_key("underpass"),
                b"{not json".to_vec(),
                "cannot be read",
            ),
            (state_key("old-group"), good.clone(), "no group `old-group`"),
            (state_key("underpass"), renamed.into_bytes(), "level `gone`"),
        ];
        for (key, bytes, says) in cases {
            let mut e = engine();
            let (_, w) = e.restore(&[(key.clone(), bytes)], T0 + 5.0);
            assert!(
                w.iter().any(|w| w.contains(&key) && w.contains(says)),
                "{key}: {w:?}"
            );
        }
    }
}
