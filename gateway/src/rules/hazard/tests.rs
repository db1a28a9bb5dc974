//! Scenario tests with scripted traces (flood, noisy sensor, stuck and silent sensors, rain
//! accumulation), configuration checks, and property tests of the lifecycle invariants.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use citygate_protocols::cap::{MsgType, Reference};
use citygate_protocols::{Quality, Reading, Unit};
use proptest::prelude::*;

use super::*;

const FLOOD: &str = r#"
sender = "citygate.gw-12@city.example"
identifier_prefix = "gw-12"
sender_name = "City Traffic Management Centre"
min_update_interval_s = 300

[[groups]]
id = "underpass"
sensors = ["flood-1", "flood-2", "flood-3"]
quantity = "water_level"
rule = { kind = "threshold" }
k = 2
persistence_s = 60
event = "Flood"
category = ["Met", "Transport"]
area = { desc = "Main St underpass", polygon = [[52.1, 4.3], [52.1, 4.31], [52.11, 4.31], [52.11, 4.3]] }
faults = { valid_min = 0.0, valid_max = 10.0, silent_after_s = 600, stuck_after_s = 900 }

[[groups.levels]]
name = "advisory"
raise = 0.3
clear = 0.25
urgency = "Expected"
severity = "Moderate"
certainty = "Observed"
response_type = ["Monitor"]
headline = "Water on the road at Main St underpass ({value} m)"
publish = [{ topic = "vms/main-st/text", payload = "CAUTION WATER ON ROAD", clear_payload = "" }]

[[groups.levels]]
name = "warning"
raise = 0.5
clear = 0.4
urgency = "Immediate"
severity = "Severe"
certainty = "Observed"
response_type = ["Avoid"]
headline = "Main St underpass flooded ({value} m): road closed"
instruction = "Do not drive through flood water. Use Ring Road."
publish = [
    { topic = "siren/main-st", payload = "on", clear_payload = "off" },
    { topic = "vms/main-st/text", payload = "ROAD CLOSED FLOOD" },
]
emergency_plans = [{ intersection = "int-12", plan = "flood-detour" }]
"#;

fn parse(text: &str) -> HazardConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
}

fn engine(text: &str) -> HazardEngine {
    HazardEngine::new(parse(text)).unwrap_or_else(|e| panic!("{e:?}"))
}

fn reading(sensor: &str, quantity: &str, value: f64, t: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        quantity: quantity.into(),
        value,
        unit: Some(Unit::Metre),
        time: t,
        quality: Quality::Good,
    }
}

const T0: f64 = 1_764_340_000.0;

fn alerts(out: &[HazardOutput]) -> Vec<&AlertAction> {
    out.iter()
        .filter_map(|o| match o {
            HazardOutput::Alert(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn faults(out: &[HazardOutput]) -> Vec<&SensorFaultReport> {
    out.iter()
        .filter_map(|o| match o {
            HazardOutput::SensorFault(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn xmllint(xml: &str) -> Result<(), String> {
    let schema =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cap/CAP-v1.2.xsd");
    let mut child = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(schema)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run xmllint (libxml2-utils): {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(xml.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Checks the lifecycle invariants over everything an engine emitted; returns messages per
/// incident.
fn check_lifecycle(
    out: &[(f64, HazardOutput)],
    interval: f64,
) -> Result<HashMap<String, Vec<f64>>, String> {
    let mut by_incident: HashMap<String, Vec<(f64, String, MsgType)>> = HashMap::new();
    for (t, o) in out {
        let HazardOutput::Alert(a) = o else { continue };
        a.alert.validate().map_err(|e| e.to_string())?;
        let inc = a.alert.incidents.clone().ok_or("no incidents")?;
        let earlier = by_incident.entry(inc.clone()).or_default();
        let refs = a.alert.reference_list()?;
        match a.alert.msg_type {
            MsgType::Alert => {
                if !earlier.is_empty() || !refs.is_empty() {
                    return Err(format!("{inc}: Alert that is not the first message"));
                }
            }
            MsgType::Update | MsgType::Cancel => {
                let prev = earlier
                    .last()
                    .ok_or(format!("{inc}: update without alert"))?;
                if prev.2 == MsgType::Cancel {
                    return Err(format!("{inc}: message after cancel"));
                }
                let ids: Vec<&str> = refs.iter().map(|r| r.identifier.as_str()).collect();
                let all: Vec<&str> = earlier.iter().map(|e| e.1.as_str()).collect();
                // All earlier messages, or (when there are many) the first plus the latest.
                let keep = message::MAX_REFERENCES.min(all.len());
                let mut want = vec![all[0]];
                want.extend_from_slice(&all[all.len() + 1 - keep..]);
                if ids != want {
                    return Err(format!("{inc}: references {ids:?}, earlier {all:?}"));
                }
                if t - prev.0 < interval {
                    return Err(format!("{inc}: messages {} s apart", t - prev.0));
                }
            }
            other => return Err(format!("unexpected {other:?}")),
        }
        earlier.push((*t, a.alert.identifier.clone(), a.alert.msg_type));
    }
    Ok(by_incident
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|e| e.0).collect()))
        .collect())
}

#[test]
fn flood_rises_and_recedes_through_two_levels() {
    let mut e = engine(FLOOD);
    let mut out = Vec::new();
    // 0 → 0.8 m over 30 min, back to 0 over the next 30 min, then dry; all three agree.
    let mut t: f64 = 0.0;
    while t <= 4200.0 {
        let level = if t <= 1800.0 {
            0.8 * t / 1800.0
        } else {
            (0.8 - 0.8 * (t - 1800.0) / 1800.0).max(0.0)
        };
        for (s, off) in [("flood-1", 0.0), ("flood-2", 0.01), ("flood-3", -0.01)] {
            let v: f64 = (level + off).max(0.0);
            for o in e.on_reading(&reading(s, "water_level", v, T0 + t), T0 + t) {
                out.push((t, o));
            }
        }
        t += 30.0;
    }
    let msgs: Vec<(f64, &AlertAction)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            HazardOutput::Alert(a) => Some((*t, a)),
            _ => None,
        })
        .collect();
    let kinds: Vec<Lifecycle> = msgs.iter().map(|(_, a)| a.lifecycle).collect();
    assert_eq!(
        kinds,
        [
            Lifecycle::Raise,
            Lifecycle::Escalate,
            Lifecycle::DeEscalate,
            Lifecycle::Cancel
        ]
    );
    let types: Vec<MsgType> = msgs.iter().map(|(_, a)| a.alert.msg_type).collect();
    assert_eq!(
        types,
        [
            MsgType::Alert,
            MsgType::Update,
            MsgType::Update,
            MsgType::Cancel
        ]
    );
    let levels: Vec<Option<&str>> = msgs.iter().map(|(_, a)| a.level.as_deref()).collect();
    assert_eq!(
        levels,
        [Some("advisory"), Some("warning"), Some("advisory"), None]
    );
    // The 2nd-highest sensor (k=2) reaches 0.3 m at t=675 s; +60 s persistence; readings every 30 s.
    assert_eq!(msgs[0].0, 750.0);
    let incident = msgs[0].1.incident;
    assert_eq!(incident, (T0 + 750.0) as u64);
    for (i, (_, a)) in msgs.iter().enumerate() {
        assert_eq!(
            a.alert.identifier,
            format!("gw-12.underpass.{incident}.{i}")
        );
        assert_eq!(
            a.alert.incidents.as_deref(),
            Some(&*format!("gw-12.underpass.{incident}"))
        );
        let refs = a.alert.reference_list().unwrap();
        let want: Vec<Reference> = msgs[..i]
            .iter()
            .map(|(_, p)| Reference::to(&p.alert))
            .collect();
        assert_eq!(refs, want, "message {i}");
        a.alert.validate().unwrap();
        xmllint(&a.alert.to_xml()).unwrap();
    }
    let warning = &msgs[1].1.alert.info[0];
    assert_eq!(warning.severity, citygate_protocols::cap::Severity::Severe);
    assert_eq!(
        warning.headline.as_deref(),
        Some("Main St underpass flooded (0.530 m): road closed")
    );
    let cancel = &msgs[3].1.alert.info[0];
    assert_eq!(
        cancel.response_type,
        [citygate_protocols::cap::ResponseType::AllClear]
    );
    check_lifecycle(&out, 300.0).unwrap();

    // Local actions ride on the same transitions.
    let actions: Vec<&HazardOutput> = out
        .iter()
        .map(|(_, o)| o)
        .filter(|o| {
            matches!(
                o,
                HazardOutput::Publish { .. } | HazardOutput::EmergencyPlan { .. }
            )
        })
        .collect();
    let publish = |topic: &str, payload: &str| HazardOutput::Publish {
        topic: topic.into(),
        payload: payload.into(),
    };
    let plan = |active| HazardOutput::EmergencyPlan {
        intersection: "int-12".into(),
        plan: "flood-detour".into(),
        active,
    };
    assert_eq!(
        actions,
        [
            &publish("vms/main-st/text", "CAUTION WATER ON ROAD"),
            &plan(true),
            &publish("siren/main-st", "on"),
            &publish("vms/main-st/text", "ROAD CLOSED FLOOD"),
            &plan(false),
            &publish("siren/main-st", "off"),
            &publish("vms/main-st/text", "CAUTION WATER ON ROAD"),
            &publish("vms/main-st/text", ""),
        ]
    );
    assert!(faults(&out.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()).is_empty());
    assert_eq!(e.status()[0].incident, None);
    assert_eq!(e.next_incident_floor(), incident + 1);
}

const NOISY: &str = r#"
sender = "citygate.gw-1@city.example"
identifier_prefix = "gw-1"
min_update_interval_s = 600

[[groups]]
id = "ford"
sensors = ["lvl"]
quantity = "water_level"
rule = { kind = "threshold" }
persistence_s = 60
event = "Flood"
area = { desc = "River ford", circle = { lat = 52.0, lon = 4.0, radius_km = 0.3 } }
faults = { stuck_after_s = 100000 }

[[groups.levels]]
name = "advisory"
raise = 1.0
clear = 0.9
urgency = "Expected"
severity = "Minor"
certainty = "Observed"
headline = "Water at the ford"
"#;

fn run_trace(
    e: &mut HazardEngine,
    sensor: &str,
    quantity: &str,
    trace: impl Iterator<Item = (f64, f64)>,
) -> Vec<(f64, HazardOutput)> {
    let mut out = Vec::new();
    for (t, v) in trace {
        for o in e.on_reading(&reading(sensor, quantity, v, T0 + t), T0 + t) {
            out.push((t, o));
        }
    }
    out
}

#[test]
fn noisy_sensor_near_the_threshold_is_bounded() {
    // (a) Fast chatter across both thresholds: persistence never holds, nothing is sent.
    let mut e = engine(NOISY);
    let out = run_trace(
        &mut e,
        "lvl",
        "water_level",
        (0..720).map(|i| (f64::from(i) * 10.0, if i % 2 == 0 { 0.85 } else { 1.05 })),
    );
    assert!(alerts(&out.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()).is_empty());

    // (b) Chatter between raise and clear after a real rise: hysteresis keeps one alert.
    let mut e = engine(NOISY);
    let trace = (0..720).map(|i| {
        let t = f64::from(i) * 10.0;
        (
            t,
            if t < 300.0 {
                1.1
            } else if i % 2 == 0 {
                0.95
            } else {
                1.05
            },
        )
    });
    let out = run_trace(&mut e, "lvl", "water_level", trace);
    let msgs: Vec<_> = out
        .iter()
        .filter(|(_, o)| matches!(o, HazardOutput::Alert(_)))
        .collect();
    assert_eq!(msgs.len(), 1);

    // (c) A slow square wave (150 s high / 150 s low) passes persistence every time; the storm
    // limit bounds the messages by duration / interval + 2.
    let mut e = engine(NOISY);
    let trace = (0..720).map(|i| {
        let t = f64::from(i) * 10.0;
        (
            t,
            if (t / 150.0).floor() as i64 % 2 == 0 {
                1.2
            } else {
                0.7
            },
        )
    });
    let out = run_trace(&mut e, "lvl", "water_level", trace);
    let per_incident = check_lifecycle(&out, 600.0).unwrap();
    let total: usize = per_incident.values().map(Vec::len).sum();
    assert!(total >= 2, "the wave should raise at least once: {total}");
    assert!(total <= (7200.0 / 600.0) as usize + 2, "{total} messages");
    for times in per_incident.values() {
        let span = times.last().unwrap() - times.first().unwrap();
        assert!(times.len() as f64 <= span / 600.0 + 2.0);
    }
}

#[test]
fn stuck_sensor_is_a_fault_not_an_alert() {
    let mut e = engine(FLOOD);
    let mut out = Vec::new();
    let mut t: f64 = 0.0;
    while t <= 3000.0 {
        let rising = 0.0002 * t;
        // flood-3 is stuck at 0.6 m (above warning) until t = 2500 s, then follows the others.
        let stuck = if t < 2500.0 { 0.6 } else { rising + 0.02 };
        for (s, v) in [
            ("flood-1", rising),
            ("flood-2", rising + 0.005),
            ("flood-3", stuck),
        ] {
            for o in e.on_reading(&reading(s, "water_level", v, T0 + t), T0 + t) {
                out.push((t, o));
            }
        }
        t += 30.0;
    }
    let f: Vec<(f64, &SensorFaultReport)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            HazardOutput::SensorFault(f) => Some((*t, f)),
            _ => None,
        })
        .collect();
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(
        (f[0].0, f[0].1.sensor.as_str(), f[0].1.fault, f[0].1.active),
        (900.0, "flood-3", FaultKind::Stuck, true)
    );
    assert_eq!(f[0].1.event.kind, "sensor_fault");
    assert_eq!(
        (f[1].0, f[1].1.fault, f[1].1.active),
        (2520.0, FaultKind::Stuck, false)
    );
    assert_eq!(f[1].1.event.kind, "sensor_recovered");
    let msgs: Vec<(f64, &AlertAction)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            HazardOutput::Alert(a) => Some((*t, a)),
            _ => None,
        })
        .collect();
    // No alert while only the stuck sensor is high; the two good ones (k=2) reach 0.3 m at
    // t = 1500 s and raise after persistence.
    assert_eq!(msgs[0].0, 1560.0);
    assert_eq!(msgs[0].1.lifecycle, Lifecycle::Raise);
    assert_eq!(msgs[0].1.level.as_deref(), Some("advisory"));
    let sensors = &msgs[0].1.alert.info[0].parameter[2];
    assert_eq!(sensors.value, "2/3 healthy, k=2");
    check_lifecycle(&out, 300.0).unwrap();
}

#[test]
fn silent_sensor_is_reported_once_and_group_degrades() {
    let mut e = engine(FLOOD);
    let mut out = Vec::new();
    let mut t: f64 = 0.0;
    while t <= 4000.0 {
        let v = 0.1 + 0.00001 * t;
        for s in ["flood-1", "flood-2", "flood-3"] {
            let quiet = (s == "flood-2" && (1000.0..3000.0).contains(&t))
                || (s == "flood-3" && (2000.0..3500.0).contains(&t));
            if !quiet {
                out.extend(
                    e.on_reading(&reading(s, "water_level", v, T0 + t), T0 + t)
                        .into_iter()
                        .map(|o| (t, o)),
                );
            }
        }
        out.extend(e.tick(T0 + t + 15.0).into_iter().map(|o| (t + 15.0, o)));
        t += 30.0;
    }
    let events: Vec<(f64, String, bool)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            HazardOutput::SensorFault(f) => {
                Some((*t, format!("{}:{}", f.sensor, f.fault.as_str()), f.active))
            }
            HazardOutput::Degraded { active, .. } => Some((*t, "group:degraded".into(), *active)),
            _ => None,
        })
        .collect();
    // flood-2 last reported at 990 s: silent from 1590 s (a tick); flood-3 last at 1980 s:
    // silent from 2580 s (a reading of flood-1), which leaves 1 of 3 (k=2): degraded until flood-2 is back at 3000 s.
    assert_eq!(
        events,
        [
            (1590.0, "flood-2:silent".to_string(), true),
            (2580.0, "flood-3:silent".to_string(), true),
            (2580.0, "group:degraded".to_string(), true),
            (3000.0, "flood-2:silent".to_string(), false),
            (3000.0, "group:degraded".to_string(), false),
            (3510.0, "flood-3:silent".to_string(), false),
        ]
    );
    assert!(alerts(&out.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()).is_empty());
}

const RAIN: &str = r#"
sender = "citygate.gw-1@city.example"
identifier_prefix = "gw-1"
min_update_interval_s = 300

[[groups]]
id = "rain-inc"
sensors = ["gauge-a"]
quantity = "rain"
rule = { kind = "accumulation", window_s = 3600, input = "increment" }
persistence_s = 0
event = "Heavy rain"
area = { desc = "District 4", circle = { lat = 52.0, lon = 4.0, radius_km = 2 } }
faults = { silent_after_s = 1800, stuck_after_s = 100000 }

[[groups.levels]]
name = "heavy"
raise = 20.0
clear = 15.0
urgency = "Expected"
severity = "Moderate"
certainty = "Observed"
headline = "Heavy rain: {value} mm in the last hour"

[[groups.levels]]
name = "severe"
raise = 40.0
clear = 30.0
urgency = "Immediate"
severity = "Severe"
certainty = "Observed"
headline = "Severe rain: {value} mm in the last hour"

[[groups]]
id = "rain-cnt"
sensors = ["gauge-b"]
quantity = "rain"
rule = { kind = "accumulation", window_s = 3600, input = "counter" }
persistence_s = 0
event = "Heavy rain"
area = { desc = "District 4", circle = { lat = 52.0, lon = 4.0, radius_km = 2 } }
faults = { silent_after_s = 1800, stuck_after_s = 100000 }

[[groups.levels]]
name = "heavy"
raise = 20.0
clear = 15.0
urgency = "Expected"
severity = "Moderate"
certainty = "Observed"
headline = "Heavy rain"

[[groups.levels]]
name = "severe"
raise = 40.0
clear = 30.0
urgency = "Immediate"
severity = "Severe"
certainty = "Observed"
headline = "Severe rain"
"#;

#[test]
fn rain_accumulates_over_a_sliding_hour_from_increments_or_a_counter() {
    let mut e = engine(RAIN);
    let mut out = Vec::new();
    let mut total = 0.0;
    let mut values = Vec::new();
    // Every 5 min: 2 mm for an hour, 5 mm for the next, then dry for two hours.
    // The counter restarts from 0 between 4200 s and 4500 s (logger reboot).
    for i in 0..=48 {
        let t = f64::from(i) * 300.0;
        let inc = if i == 0 {
            0.0
        } else if t <= 3600.0 {
            2.0
        } else if t <= 7200.0 {
            5.0
        } else {
            0.0
        };
        total += inc;
        let counter = if t >= 4500.0 { total - 34.0 } else { total };
        out.extend(
            e.on_reading(&reading("gauge-a", "rain", inc, T0 + t), T0 + t)
                .into_iter()
                .map(|o| (t, o)),
        );
        out.extend(
            e.on_reading(&reading("gauge-b", "rain", counter, T0 + t), T0 + t)
                .into_iter()
                .map(|o| (t, o)),
        );
        let st = e.status();
        values.push((t, st[0].value, st[1].value));
    }
    let at = |t: f64| {
        values
            .iter()
            .find(|v| v.0 == t)
            .map(|v| (v.1, v.2))
            .unwrap()
    };
    // Window (t-3600, t]: at 3600 s, twelve 2 mm readings.
    assert_eq!(at(3600.0), (Some(24.0), Some(24.0)));
    // At 5400 s: six 2 mm (2100..3600 s) + six 5 mm (3900..5400 s).
    assert_eq!(at(5400.0), (Some(42.0), Some(42.0)));
    assert_eq!(at(7200.0), (Some(60.0), Some(60.0)));
    assert_eq!(at(10800.0), (Some(0.0), Some(0.0)));
    for gid in ["rain-inc", "rain-cnt"] {
        let kinds: Vec<(f64, Lifecycle)> = out
            .iter()
            .filter_map(|(t, o)| match o {
                HazardOutput::Alert(a) if a.group == gid => Some((*t, a.lifecycle)),
                _ => None,
            })
            .collect();
        // 20 mm is reached at 3000 s (ten 2 mm readings); 40 mm at 5400 s (six 2 mm + six
        // 5 mm; 39 mm at 5100 s); back below 15 mm once the 5 mm readings leave the window.
        assert_eq!(kinds.first(), Some(&(3000.0, Lifecycle::Raise)), "{gid}");
        assert_eq!(kinds.get(1), Some(&(5400.0, Lifecycle::Escalate)), "{gid}");
        assert_eq!(kinds.last().map(|k| k.1), Some(Lifecycle::Cancel), "{gid}");
    }
    check_lifecycle(&out, 300.0).unwrap();
}

#[test]
fn a_lasting_hazard_is_renewed_before_it_expires() {
    let text = NOISY.replace(
        "min_update_interval_s = 600",
        "min_update_interval_s = 600\nexpires_s = 3600",
    );
    let mut e = engine(&text);
    // 1.5 m for 10 hours.
    let out = run_trace(
        &mut e,
        "lvl",
        "water_level",
        (0..=600).map(|i| (f64::from(i) * 60.0, 1.5)),
    );
    let msgs: Vec<(f64, &AlertAction)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            HazardOutput::Alert(a) => Some((*t, a)),
            _ => None,
        })
        .collect();
    // Raised at 60 s, then renewed every 1800 s (half of expires_s): 60, 1860, ... 34260.
    assert_eq!(msgs.len(), 20);
    for (i, (t, a)) in msgs.iter().enumerate() {
        assert_eq!(*t, 60.0 + 1800.0 * i as f64);
        let want = if i == 0 {
            Lifecycle::Raise
        } else {
            Lifecycle::Refresh
        };
        assert_eq!(a.lifecycle, want);
        // The alert on the air never lapses: the next message comes before this one expires.
        let expires = a.alert.info[0].expires.unwrap().epoch() as f64;
        assert!(msgs.get(i + 1).is_none_or(|(next, _)| T0 + next < expires));
        assert!(a.alert.reference_list().unwrap().len() <= message::MAX_REFERENCES);
    }
    check_lifecycle(&out, 600.0).unwrap();
    // Renewals repeat no local action.
    assert!(!out
        .iter()
        .any(|(_, o)| matches!(o, HazardOutput::Publish { .. })));
}

#[test]
fn below_thresholds_raise_on_falling_values() {
    // Road surface temperature: ice warning at or below 0 °C, cleared above 1.5 °C.
    let text = NOISY
        .replace(
            r#"quantity = "water_level""#,
            "quantity = \"road_temp\"\ndirection = \"below\"",
        )
        .replace("raise = 1.0", "raise = 0.0")
        .replace("clear = 0.9", "clear = 1.5");
    let mut e = engine(&text);
    // 3 °C falling 0.1 °C a minute to -1 °C, then rising back to 3 °C.
    let temp = |i: i32| {
        if i <= 40 {
            3.0 - 0.1 * f64::from(i)
        } else {
            -1.0 + 0.1 * f64::from(i - 40)
        }
    };
    let out = run_trace(
        &mut e,
        "lvl",
        "road_temp",
        (0..=80).map(|i| (f64::from(i) * 60.0, temp(i))),
    );
    let msgs: Vec<(f64, Lifecycle)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            HazardOutput::Alert(a) => Some((*t, a.lifecycle)),
            _ => None,
        })
        .collect();
    // ≤ 0 °C from minute 30 (+1 min persistence); > 1.5 °C again from minute 66 (+1 min).
    assert_eq!(
        msgs,
        [
            (31.0 * 60.0, Lifecycle::Raise),
            (67.0 * 60.0, Lifecycle::Cancel)
        ]
    );
    let mut cfg = parse(&text);
    cfg.groups[0].levels[0].clear = -1.0;
    let paths: Vec<String> = cfg
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.key_path)
        .collect();
    assert_eq!(paths, ["hazard.groups[0].levels[0].clear"]);
}

#[test]
fn rate_of_change_rises_over_the_window() {
    let text = NOISY
        .replace(
            r#"rule = { kind = "threshold" }"#,
            r#"rule = { kind = "rate_of_change", window_s = 600 }"#,
        )
        .replace("raise = 1.0", "raise = 0.25")
        .replace("clear = 0.9", "clear = 0.1");
    let mut e = engine(&text);
    // Flat at 1.0 m for 20 min, then rising 0.0625 m per minute (exact in binary).
    let out = run_trace(
        &mut e,
        "lvl",
        "water_level",
        (0..60).map(|i| {
            let t = f64::from(i) * 60.0;
            (
                t,
                if t <= 1200.0 {
                    1.0
                } else {
                    1.0 + 0.0625 * (t - 1200.0) / 60.0
                },
            )
        }),
    );
    // Rise over 10 min reaches 0.25 m at 1440 s (4 min × 0.0625); persistence 60 s.
    let first = out
        .iter()
        .find(|(_, o)| matches!(o, HazardOutput::Alert(_)))
        .map(|(t, _)| *t);
    assert_eq!(first, Some(1500.0));
}

#[test]
fn documented_example_parses_and_validates() {
    #[derive(serde::Deserialize)]
    struct File {
        hazard: HazardConfig,
    }
    let src = include_str!("config.rs");
    let start = src.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
    let len = src[start..].find("//! ```\n").unwrap();
    let toml_text: String = src[start..start + len]
        .lines()
        .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n");
    let file: File = toml::from_str(&toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    file.hazard.validate().unwrap();
    assert_eq!(
        file.hazard.groups[0].levels[0].emergency_plans[0].plan,
        "flood-detour"
    );
    HazardEngine::new(file.hazard).unwrap();
}

#[test]
fn config_errors_name_their_key_path() {
    let mut cfg = parse(FLOOD);
    cfg.groups[0].levels[1].raise = 0.2;
    cfg.groups[0].levels[0].clear = 0.35;
    cfg.groups[0].k = 4;
    cfg.groups[0].levels[1].publish[0].topic = "siren/#".into();
    cfg.sender = "has space".into();
    let paths: Vec<String> = cfg
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.key_path)
        .collect();
    assert_eq!(
        paths,
        [
            "hazard.sender",
            "hazard.groups[0].k",
            "hazard.groups[0].levels[0].clear",
            "hazard.groups[0].levels[1].clear",
            "hazard.groups[0].levels[1].raise",
            "hazard.groups[0].levels[1].publish[0].topic",
        ]
    );
    // Unknown keys are errors.
    let bad = FLOOD.replace("persistence_s = 60", "persistence = 60");
    assert!(toml::from_str::<HazardConfig>(&bad).is_err());
    let bad = FLOOD.replace(
        r#"kind = "threshold""#,
        r#"kind = "threshold", window_s = 5"#,
    );
    assert!(toml::from_str::<HazardConfig>(&bad).is_err());
    // Defaults.
    let cfg = parse(FLOOD);
    assert_eq!(cfg.expires_s, 6 * 3600);
    assert_eq!(cfg.language, "en-US");
    assert_eq!(cfg.groups[0].faults.deviation_hold_s, 120.0);
    assert_eq!(cfg.groups[0].direction, Direction::Above);
}

#[test]
fn disagreeing_and_out_of_range_sensors_are_left_out() {
    let text = FLOOD.replace(
        "stuck_after_s = 900 }",
        "stuck_after_s = 900, max_deviation = 0.2, deviation_hold_s = 60 }",
    );
    let mut e = engine(&text);
    let mut out = Vec::new();
    for i in 0..40 {
        let t = f64::from(i) * 30.0;
        let base = 0.1 + 0.0001 * t;
        let f3 = if i < 20 { base + 0.5 } else { base };
        for (s, v) in [
            ("flood-1", base),
            ("flood-2", if i == 5 { 42.0 } else { base + 0.01 }),
            ("flood-3", f3),
        ] {
            out.extend(e.on_reading(&reading(s, "water_level", v, T0 + t), T0 + t));
        }
    }
    let f: Vec<(String, FaultKind, bool)> = faults(&out)
        .iter()
        .map(|f| (f.sensor.clone(), f.fault, f.active))
        .collect();
    assert_eq!(
        f,
        [
            ("flood-3".into(), FaultKind::Disagrees, true),
            ("flood-2".into(), FaultKind::OutOfRange, true),
            ("flood-2".into(), FaultKind::OutOfRange, false),
            ("flood-3".into(), FaultKind::Disagrees, false),
        ]
    );
    assert!(alerts(&out).is_empty());
}

#[test]
fn incident_numbers_survive_a_restart() {
    // Same trace twice, the second engine "restarted" with a persisted floor above the first.
    let trace = |e: &mut HazardEngine, start: f64| {
        let mut first = None;
        for i in 0..20 {
            let t = start + f64::from(i) * 30.0;
            for s in ["flood-1", "flood-2", "flood-3"] {
                for o in e.on_reading(&reading(s, "water_level", 0.35, t), t) {
                    if let HazardOutput::Alert(a) = o {
                        first.get_or_insert(a.incident);
                    }
                }
            }
        }
        first.unwrap()
    };
    let mut a = engine(FLOOD);
    let n1 = trace(&mut a, T0);
    let mut b = engine(FLOOD);
    b.set_incident_floor(a.next_incident_floor() + 1_000_000_000);
    let n2 = trace(&mut b, T0);
    assert!(n2 > n1);
    // Without a floor, the time-derived number differs for a raise at a later time.
    let mut c = engine(FLOOD);
    assert!(trace(&mut c, T0 + 10.0) > n1);
}

#[derive(Debug, Clone)]
enum Step {
    Reading {
        dt: f64,
        sensor: usize,
        value: f64,
        quality: u8,
    },
    Tick {
        dt: f64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let value = prop_oneof![
        8 => 0.0f64..1.0,
        1 => Just(f64::NAN),
        1 => -5.0f64..20.0,
    ];
    prop_oneof![
        6 => (0.0f64..90.0, 0usize..4, value, 0u8..8).prop_map(|(dt, sensor, value, quality)| Step::Reading { dt, sensor, value, quality }),
        1 => (0.0f64..900.0).prop_map(|dt| Step::Tick { dt }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lifecycle_invariants_hold_for_any_trace(steps in proptest::collection::vec(step(), 1..400), kind in 0u8..3) {
        let text = FLOOD
            .replace("persistence_s = 60", "persistence_s = 30")
            .replace(
                "stuck_after_s = 900 }",
                "stuck_after_s = 900, max_deviation = 0.3, deviation_hold_s = 30 }",
            )
            .replace(
                r#"rule = { kind = "threshold" }"#,
                match kind {
                    0 => r#"rule = { kind = "threshold" }"#,
                    1 => r#"rule = { kind = "rate_of_change", window_s = 300 }"#,
                    _ => r#"rule = { kind = "accumulation", window_s = 600, input = "counter" }"#,
                },
            );
        let mut e = engine(&text);
        let sensors = ["flood-1", "flood-2", "flood-3", "other"];
        let mut t = T0;
        let mut out = Vec::new();
        for s in &steps {
            match s {
                Step::Reading { dt, sensor, value, quality } => {
                    t += dt;
                    let mut r = reading(sensors[*sensor], "water_level", *value, t);
                    r.quality = match quality { 0 => Quality::Stale, 1 => Quality::OutOfRange, 2 => Quality::CommError, _ => Quality::Good };
                    out.extend(e.on_reading(&r, t).into_iter().map(|o| (t, o)));
                }
                Step::Tick { dt } => {
                    t += dt;
                    out.extend(e.tick(t).into_iter().map(|o| (t, o)));
                }
            }
        }
        let per_incident = check_lifecycle(&out, 300.0);
        prop_assert!(per_incident.is_ok(), "{:?}", per_incident);
        for times in per_incident.unwrap_or_default().values() {
            let first = times.first().copied().unwrap_or(t);
            let duration = t - first;
            prop_assert!(times.len() as f64 <= duration / 300.0 + 2.0);
        }
        // Fault events alternate onset / recovery per sensor and fault.
        let mut state: HashMap<(String, FaultKind), bool> = HashMap::new();
        for (_, o) in &out {
            if let HazardOutput::SensorFault(f) = o {
                let prev = state.insert((f.sensor.clone(), f.fault), f.active).unwrap_or(false);
                prop_assert_ne!(prev, f.active);
            }
        }
    }

    #[test]
    fn bad_clock_values_never_panic(nows in proptest::collection::vec(prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(1e300), 0.0f64..3e11], 1..50)) {
        let mut e = engine(FLOOD);
        for now in nows {
            let _ = e.on_reading(&reading("flood-1", "water_level", 0.6, now), now);
            let _ = e.tick(now);
        }
    }
}

/// The uplink's MQTT client drops packets above its maximum size (10 KiB by default, see
/// DESIGN.md): an alert envelope (XML + JSON forms) must stay well below it, even with the
/// longest `<references>`. Sizes are recorded in docs/bench/hazard.md.
#[test]
fn alert_envelopes_fit_the_mqtt_packet_limit() {
    let text = FLOOD.replace(
        "min_update_interval_s = 300",
        "min_update_interval_s = 300\nexpires_s = 1200",
    );
    let mut e = engine(&text);
    let mut sizes = Vec::new();
    // Ten hours at warning level: a raise and 59 renewals, references at their cap.
    for i in 0..=1200 {
        let t = T0 + f64::from(i) * 30.0;
        for s in ["flood-1", "flood-2", "flood-3"] {
            for o in e.on_reading(&reading(s, "water_level", 0.6, t), t) {
                if let HazardOutput::Alert(a) = o {
                    let env = citygate_protocols::Envelope::new(
                        "gw-12",
                        u64::try_from(i).unwrap_or(0),
                        a.alert.to_body(),
                    );
                    sizes.push((
                        a.alert.to_xml().len(),
                        env.to_json().len(),
                        a.alert.reference_list().unwrap().len(),
                    ));
                }
            }
        }
    }
    assert_eq!(sizes.len(), 60);
    let max = sizes.iter().map(|s| s.1).max().unwrap();
    eprintln!("hazard alert sizes (xml, envelope json, references): first {:?}, last {:?}, max envelope {max}", sizes[0], sizes[sizes.len() - 1]);
    assert_eq!(sizes[sizes.len() - 1].2, message::MAX_REFERENCES);
    assert!(max < 8 * 1024, "envelope of {max} bytes");
}

/// Two more groups for the scheduling property: one sharing a sensor with `underpass`, one
/// of a single sensor with no persistence (as in the scale benchmark).
const MORE_GROUPS: &str = r#"
[[groups]]
id = "creek"
sensors = ["flood-2", "other", "creek-1"]
quantity = "water_level"
rule = { kind = "accumulation", window_s = 120, input = "increment" }
k = 1
persistence_s = 15
event = "Flood"
area = { desc = "Creek" }
faults = { silent_after_s = 200, stuck_after_s = 100, max_deviation = 0.5, deviation_hold_s = 20 }

[[groups.levels]]
name = "advisory"
raise = 1.0
clear = 0.8
urgency = "Expected"
severity = "Moderate"
certainty = "Observed"
headline = "Creek rising"

[[groups]]
id = "solo"
sensors = ["creek-1"]
quantity = "water_level"
rule = { kind = "threshold" }
k = 1
persistence_s = 0
event = "Flood"
area = { desc = "Solo" }
faults = { silent_after_s = 300 }

[[groups.levels]]
name = "advisory"
raise = 0.5
clear = 0.45
urgency = "Expected"
severity = "Moderate"
certainty = "Observed"
headline = "Solo"
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The timer-queue engine gives the same outputs, call by call, as the model that runs
    /// every group on every call, on random traces over three groups (shared sensors, every
    /// rule kind, faults, persistence, storm limit, renewals).
    #[test]
    fn indexed_engine_matches_the_full_cycle_model(
        steps in proptest::collection::vec(step(), 1..400),
        kind in 0u8..3,
        interval in prop_oneof![Just(1.0), Just(60.0), Just(300.0)],
    ) {
        let text = FLOOD
            .replace("persistence_s = 60", "persistence_s = 30")
            .replace("min_update_interval_s = 300", &format!("min_update_interval_s = {interval}\nexpires_s = 1200"))
            .replace(
                "stuck_after_s = 900 }",
                "stuck_after_s = 900, max_deviation = 0.3, deviation_hold_s = 30 }",
            )
            .replace(
                r#"rule = { kind = "threshold" }"#,
                match kind {
                    0 => r#"rule = { kind = "threshold" }"#,
                    1 => r#"rule = { kind = "rate_of_change", window_s = 300 }"#,
                    _ => r#"rule = { kind = "accumulation", window_s = 600, input = "counter" }"#,
                },
            ) + MORE_GROUPS;
        let mut e = engine(&text);
        let mut m = model::FullCycleEngine::new(parse(&text));
        e.set_incident_floor(7);
        m.set_incident_floor(7);
        let sensors = ["flood-1", "flood-2", "creek-1", "other"];
        let mut t = T0;
        for (i, s) in steps.iter().enumerate() {
            let (got, want) = match s {
                Step::Reading { dt, sensor, value, quality } => {
                    t += dt;
                    let mut r = reading(sensors[*sensor], "water_level", *value, t);
                    r.quality = match quality { 0 => Quality::Stale, 1 => Quality::OutOfRange, 2 => Quality::CommError, _ => Quality::Good };
                    (e.on_reading(&r, t), m.on_reading(&r, t))
                }
                Step::Tick { dt } => {
                    t += dt;
                    (e.tick(t), m.tick(t))
                }
            };
            prop_assert_eq!(got, want, "step {} at t = {}", i, t);
        }
        prop_assert_eq!(e.status(), m.status());
        prop_assert!(e.timers.len() <= steps.len() + 3);
    }
}

/// A reading runs only the groups of its sensor: with 10,000 single-sensor groups, a reading
/// of one sensor leaves every other group's deadline where it was (the heap holds one entry
/// per group, plus the stale one of the group rescheduled) and outputs only its own group's alert.
#[test]
fn a_reading_runs_only_the_groups_of_its_sensor() {
    let mut text =
        String::from("sender = \"s@x\"\nidentifier_prefix = \"gw\"\nmin_update_interval_s = 1\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[groups]]\nid = \"g{i}\"\nsensors = [\"s{i}\"]\nquantity = \"q\"\nrule = {{ kind = \"threshold\" }}\npersistence_s = 0\nevent = \"E\"\narea = {{ desc = \"A\" }}\n[[groups.levels]]\nname = \"high\"\nraise = 100.0\nclear = 90.0\nurgency = \"Expected\"\nseverity = \"Moderate\"\ncertainty = \"Observed\"\nheadline = \"h\"\n"
        ));
    }
    let mut e = engine(&text);
    assert!(e.tick(T0).is_empty());
    let base = e.timers.len();
    assert_eq!(
        base, 10_000,
        "the first call runs and reschedules every group once"
    );
    let out = e.on_reading(&reading("s42", "q", 150.0, T0 + 1.0), T0 + 1.0);
    let groups: Vec<&str> = alerts(&out).iter().map(|a| a.group.as_str()).collect();
    assert_eq!(groups, ["g42"]);
    assert_eq!(e.timers.len(), base + 1);
}
