//! The alert lifecycle of one group: when to raise, update or cancel (with the storm limit),
//! the CAP message for each, and the local actions of a level change.

use citygate_protocols::cap::{
    circle_text, polygon_text, Alert, Area, CapTime, Certainty, Info, MsgType, Reference,
    ResponseType, Scope, Severity, Urgency, ValuePair,
};

use super::config::{AreaConfig, GroupConfig, HazardConfig, LevelConfig};
use super::{level_name, AlertAction, GroupState, HazardOutput, Incident, Lifecycle};

/// Most messages named in `<references>`: the incident's first message and the latest others.
pub const MAX_REFERENCES: usize = 8;

/// Sends what the committed level calls for, if the storm limit allows it now.
pub(super) fn reconcile(
    cfg: &HazardConfig,
    g: &GroupConfig,
    gs: &mut GroupState,
    floor: u64,
    now: f64,
    out: &mut Vec<HazardOutput>,
) {
    let interval = cfg.min_update_interval_s;
    let target = gs.committed;
    match gs.incident.take() {
        None => {
            if target > 0 && now >= gs.rearm_at {
                // `now` is within 0..2e11, so the cast is exact after floor.
                let number = (now.floor() as u64)
                    .max(gs.last_incident.saturating_add(1))
                    .max(floor);
                let mut inc = Incident {
                    number,
                    msgs: Vec::new(),
                    level_sent: 0,
                    last_sent: now,
                };
                if send(cfg, g, gs, &mut inc, Lifecycle::Raise, target, now, out) {
                    gs.last_incident = number;
                    gs.incident = Some(inc);
                }
            }
        }
        Some(mut inc) => {
            let since = now - inc.last_sent;
            let change_due = target != inc.level_sent && since >= interval;
            // Renew an unchanged alert at half its lifetime, so that it never lapses.
            let refresh_due = target == inc.level_sent
                && target > 0
                && since >= (f64::from(cfg.expires_s) / 2.0).max(interval);
            if !change_due && !refresh_due {
                gs.incident = Some(inc);
                return;
            }
            let lifecycle = if refresh_due {
                Lifecycle::Refresh
            } else if target == 0 {
                Lifecycle::Cancel
            } else if target > inc.level_sent {
                Lifecycle::Escalate
            } else {
                Lifecycle::DeEscalate
            };
            let sent = send(cfg, g, gs, &mut inc, lifecycle, target, now, out);
            if sent && lifecycle == Lifecycle::Cancel {
                gs.rearm_at = now + interval;
            } else {
                gs.incident = Some(inc);
            }
        }
    }
}

/// Builds and emits one message plus the local actions; `false` if the time cannot be written.
#[allow(clippy::too_many_arguments)]
fn send(
    cfg: &HazardConfig,
    g: &GroupConfig,
    gs: &GroupState,
    inc: &mut Incident,
    lifecycle: Lifecycle,
    target: usize,
    now: f64,
    out: &mut Vec<HazardOutput>,
) -> bool {
    let Some(alert) = build(cfg, g, gs, inc, lifecycle, target, now) else {
        return false;
    };
    let from = inc.level_sent;
    inc.msgs.push(Reference::to(&alert));
    // Keep `<references>` bounded: the first message and the most recent ones.
    if inc.msgs.len() > MAX_REFERENCES {
        inc.msgs.remove(1);
    }
    inc.level_sent = target;
    inc.last_sent = now;
    out.push(HazardOutput::Alert(AlertAction {
        group: g.id.clone(),
        incident: inc.number,
        lifecycle,
        level: level_name(g, target),
        alert,
    }));
    if from != target {
        local_actions(g, from, target, out);
    }
    true
}

fn level(g: &GroupConfig, l: usize) -> Option<&LevelConfig> {
    l.checked_sub(1).and_then(|i| g.levels.get(i))
}

fn fill(template: &str, g: &GroupConfig, level: &str, value: &str) -> String {
    template
        .replace("{group}", &g.id)
        .replace("{level}", level)
        .replace("{value}", value)
}

fn area(a: &AreaConfig) -> Area {
    let pts: Vec<(f64, f64)> = a.polygon.iter().map(|[la, lo]| (*la, *lo)).collect();
    Area {
        area_desc: a.desc.clone(),
        polygon: if pts.is_empty() {
            Vec::new()
        } else {
            vec![polygon_text(&pts)]
        },
        circle: a
            .circle
            .iter()
            .map(|c| circle_text(c.lat, c.lon, c.radius_km))
            .collect(),
        geocode: Vec::new(),
        altitude: None,
        ceiling: None,
    }
}

fn build(
    cfg: &HazardConfig,
    g: &GroupConfig,
    gs: &GroupState,
    inc: &Incident,
    lifecycle: Lifecycle,
    target: usize,
    now: f64,
) -> Option<Alert> {
    let sent = CapTime::from_epoch_f64(now).ok()?;
    let expires = sent.plus_seconds(i64::from(cfg.expires_s)).ok()?;
    let value = gs
        .value
        .map_or_else(|| "unknown".to_string(), |v| format!("{v:.3}"));
    let prev = level(g, inc.level_sent);
    let lvl = level(g, target);
    let shown = lvl.or(prev);
    let level_text = lvl.map_or("none", |l| l.name.as_str());
    let event = shown
        .and_then(|l| l.event.clone())
        .unwrap_or_else(|| g.event.clone());
    let (msg_type, note) = match lifecycle {
        Lifecycle::Raise => (MsgType::Alert, None),
        Lifecycle::Refresh => (
            MsgType::Update,
            Some(format!(
                "level {level_text} unchanged: alert renewed before it expires"
            )),
        ),
        Lifecycle::Escalate | Lifecycle::DeEscalate => (
            MsgType::Update,
            Some(format!(
                "level {} -> {}",
                prev.map_or("none", |l| l.name.as_str()),
                level_text
            )),
        ),
        Lifecycle::Cancel => (
            MsgType::Cancel,
            Some(format!(
                "level {} -> none: hazard over",
                prev.map_or("none", |l| l.name.as_str())
            )),
        ),
    };
    let info = match lvl {
        Some(l) => Info {
            response_type: l.response_type.clone(),
            urgency: l.urgency,
            severity: l.severity,
            certainty: l.certainty,
            headline: Some(fill(&l.headline, g, &l.name, &value)),
            description: Some(match &l.description {
                Some(d) => fill(d, g, &l.name, &value),
                None => format!(
                    "{} {} in group {}: {} of {} sensors healthy, value {} reached the {} level (raise {}, clear {}).",
                    event, g.quantity, g.id, gs.healthy, g.sensors.len(), value, l.name, l.raise, l.clear
                ),
            }),
            instruction: l.instruction.clone(),
            area: vec![area(l.area.as_ref().unwrap_or(&g.area))],
            ..base_info(cfg, g, &event, sent, expires)
        },
        None => Info {
            response_type: vec![ResponseType::AllClear],
            urgency: Urgency::Past,
            severity: Severity::Minor,
            certainty: Certainty::Observed,
            headline: Some(format!("{event}: all clear ({})", g.area.desc)),
            description: Some(format!(
                "{} {} in group {} is back below every level (value {}).",
                event, g.quantity, g.id, value
            )),
            instruction: None,
            area: vec![area(
                shown.and_then(|l| l.area.as_ref()).unwrap_or(&g.area),
            )],
            ..base_info(cfg, g, &event, sent, expires)
        },
    };
    let mut info = info;
    info.parameter = vec![
        ValuePair::new("citygate:level", level_text),
        ValuePair::new("citygate:value", value),
        ValuePair::new(
            "citygate:sensors",
            format!("{}/{} healthy, k={}", gs.healthy, g.sensors.len(), g.k),
        ),
    ];
    let incident = format!("{}.{}.{}", cfg.identifier_prefix, g.id, inc.number);
    Some(Alert {
        identifier: format!("{incident}.{}", inc.msgs.len()),
        sender: cfg.sender.clone(),
        sent,
        status: cfg.status,
        msg_type,
        source: Some(format!("citygate {}", cfg.identifier_prefix)),
        scope: Scope::Public,
        restriction: None,
        addresses: None,
        code: Vec::new(),
        note,
        references: Reference::join(&inc.msgs),
        incidents: Some(incident),
        info: vec![info],
    })
}

fn base_info(
    cfg: &HazardConfig,
    g: &GroupConfig,
    event: &str,
    sent: CapTime,
    expires: CapTime,
) -> Info {
    Info {
        language: Some(cfg.language.clone()),
        category: g.category.clone(),
        event: event.to_string(),
        response_type: Vec::new(),
        urgency: Urgency::Unknown,
        severity: Severity::Unknown,
        certainty: Certainty::Unknown,
        audience: None,
        event_code: vec![ValuePair::new("citygate:group", g.id.clone())],
        effective: Some(sent),
        onset: None,
        expires: Some(expires),
        sender_name: cfg.sender_name.clone(),
        headline: None,
        description: None,
        instruction: None,
        web: cfg.web.clone(),
        contact: cfg.contact.clone(),
        parameter: Vec::new(),
        area: Vec::new(),
    }
}

/// The local actions of level `level` as if raised from none: asserted again after a restart.
pub(super) fn assert_actions(g: &GroupConfig, level: usize, out: &mut Vec<HazardOutput>) {
    local_actions(g, 0, level, out);
}

/// Local actions of a change from level `from` to level `to` (0 = none): emergency plans of
/// `from` that `to` does not keep end, those of `to` start; topics of `from` that `to` does
/// not publish get their clear payload; `to`'s publishes go out.
fn local_actions(g: &GroupConfig, from: usize, to: usize, out: &mut Vec<HazardOutput>) {
    let old = level(g, from);
    let new = level(g, to);
    let old_plans = old.map_or(&[][..], |l| &l.emergency_plans[..]);
    let new_plans = new.map_or(&[][..], |l| &l.emergency_plans[..]);
    let old_publish = old.map_or(&[][..], |l| &l.publish[..]);
    let new_publish = new.map_or(&[][..], |l| &l.publish[..]);
    for p in old_plans.iter().filter(|p| !new_plans.contains(p)) {
        out.push(HazardOutput::EmergencyPlan {
            intersection: p.intersection.clone(),
            plan: p.plan.clone(),
            active: false,
        });
    }
    for p in new_plans.iter().filter(|p| !old_plans.contains(p)) {
        out.push(HazardOutput::EmergencyPlan {
            intersection: p.intersection.clone(),
            plan: p.plan.clone(),
            active: true,
        });
    }
    for p in old_publish
        .iter()
        .filter(|p| !new_publish.iter().any(|n| n.topic == p.topic))
    {
        if let Some(clear) = &p.clear_payload {
            out.push(HazardOutput::Publish {
                topic: p.topic.clone(),
                payload: clear.clone(),
            });
        }
    }
    for p in new_publish {
        out.push(HazardOutput::Publish {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
        });
    }
}
