//! End-to-end tests of disaster alerts: readings on the local broker raise a CAP 1.2 alert
//! that reaches the uplink broker ahead of queued summaries, valid against the CAP schema, and
//! the configured local action (a siren) is published on the local broker.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use citygate::config;
use citygate_protocols::cap::{Alert, MsgType};
use citygate_protocols::{Body, Class};
use citygate_tests::*;

const HAZARD: &str = r#"
[hazard]
sender = "citygate.gw-h@city.example"
identifier_prefix = "gw-h"
min_update_interval_s = 1

[[hazard.groups]]
id = "underpass"
sensors = ["w1", "w2", "w3"]
quantity = "level"
rule = { kind = "threshold" }
k = 2
persistence_s = 0
event = "Flood"
area = { desc = "Main St underpass", polygon = [[52.1, 4.3], [52.1, 4.31], [52.11, 4.31]] }

[[hazard.groups.levels]]
name = "warning"
raise = 1.0
clear = 0.8
urgency = "Immediate"
severity = "Severe"
certainty = "Observed"
headline = "Underpass flooded ({value} m)"
publish = [{ topic = "actuators/underpass/siren", payload = "on", clear_payload = "off" }]
"#;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cap/CAP-v1.2.xsd")
}

fn xmllint_ok(xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("alert.xml");
    std::fs::write(&f, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(shared())
        .arg(&f)
        .output()
        .map_err(|e| format!("xmllint (Debian libxml2-utils) is needed: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Records every publish on `filter` of the local broker.
async fn watch_local(port: u16, filter: &str) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    subscribe_on_thread(port, "siren-watch", filter, move |_, payload| {
        s.lock()
            .unwrap()
            .push(String::from_utf8_lossy(payload).into_owned());
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_alert_jumps_the_queue_and_is_valid_cap() {
    let mut mosq = Mosquitto::start();
    let collector = Collector::start(mosq.port, "gw-h").await;
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let text = gateway_config("gw-h", local, &mosq.url(), dir.path(), 1) + HAZARD;
    let gw = start_gateway(&text).await;
    let siren = watch_local(local, "actuators/#").await;
    let publisher = Publisher::connect(local, "field-h").await;

    // The uplink goes down; summaries pile up in the outbox.
    mosq.stop();
    let t0 = 1_700_000_000.0;
    for i in 0..200 {
        for s in 0..20 {
            publisher
                .reading(&format!("other{s}"), i as f64, t0 + i as f64 * 0.1)
                .await;
        }
    }
    assert!(
        eventually(Duration::from_secs(30), || gw
            .stats
            .summaries_out
            .load(Ordering::Relaxed)
            >= 300)
        .await,
        "{}",
        gw.stats.snapshot()
    );
    // Two of three water sensors cross the raise level; the third stays low.
    for (sensor, level) in [("w1", 1.3), ("w2", 1.25), ("w3", 0.2)] {
        publisher.reading(sensor, level, t0).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || gw
            .stats
            .alerts_out
            .load(Ordering::Relaxed)
            == 1)
        .await,
        "no alert: {}",
        gw.stats.snapshot()
    );
    assert!(
        eventually(Duration::from_secs(10), || siren
            .lock()
            .unwrap()
            .contains(&"on".to_string()))
        .await
    );
    let queued = gw.outbox.len();
    assert!(queued > 300, "{queued}");

    mosq.restart();
    assert!(
        eventually(Duration::from_secs(60), || collector.count() >= queued).await,
        "{} of {queued} arrived",
        collector.count()
    );
    let got = collector.snapshot();
    let first = &got.envelopes[0];
    assert_eq!(first.class(), Class::Alert, "the alert must arrive first");
    assert!(got
        .envelopes
        .iter()
        .skip(1)
        .any(|e| e.class() == Class::Summary && e.seq < first.seq));
    let Body::Alert { cap, json } = &first.body else {
        unreachable!()
    };
    xmllint_ok(cap).unwrap();
    let alert = Alert::from_xml(cap).unwrap();
    alert.validate().unwrap();
    assert_eq!(alert.msg_type, MsgType::Alert);
    assert!(cap.contains("-00:00</sent>"), "{cap}");
    assert_eq!(Alert::from_json(json).unwrap(), alert);
    gw.shutdown().await;
}

/// The demo's flood (config/citygate.toml and the simulator's water profile) plays the whole
/// alert lifecycle: raised, escalated, de-escalated and cancelled.
#[test]
fn the_demo_flood_raises_escalates_and_cancels() {
    use citygate::rules::hazard::{HazardEngine, HazardOutput, Lifecycle};
    use citygate::sim::sensors::water_level;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/citygate.toml");
    let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = HazardEngine::new(cfg.hazard.expect("the demo config has [hazard]")).unwrap();
    let t0 = 1_700_000_000.0;
    let mut lifecycle = Vec::new();
    for s in 0..240u64 {
        let now = t0 + s as f64;
        let mut out = Vec::new();
        for (sensor, offset) in [("flood-1", 0.02), ("flood-2", 0.0)] {
            let r = citygate_protocols::Reading {
                sensor: sensor.into(),
                quantity: "water_level".into(),
                value: water_level(s) + offset,
                unit: Some(citygate_protocols::Unit::Metre),
                time: now,
                quality: citygate_protocols::Quality::Good,
            };
            out.extend(engine.on_reading(&r, now));
        }
        out.extend(engine.tick(now));
        for o in out {
            if let HazardOutput::Alert(a) = o {
                lifecycle.push(a.lifecycle);
            }
        }
    }
    assert_eq!(
        lifecycle,
        vec![
            Lifecycle::Raise,
            Lifecycle::Escalate,
            Lifecycle::DeEscalate,
            Lifecycle::Cancel
        ],
        "{lifecycle:?}"
    );
}
