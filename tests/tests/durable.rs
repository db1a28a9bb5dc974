//! End-to-end tests that promises survive a restart: the gateway runs as its own process
//! (`citygate run`), is killed with SIGKILL and started again on the same data directory.
//! An open alert incident continues under its identifier and is cancelled with references to
//! what was sent before the kill.

use base64::prelude::Engine as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use citygate_protocols::cap::{Alert, MsgType};
use citygate_protocols::Body;
use citygate_tests::*;

const HAZARD: &str = r#"
[hazard]
sender = "citygate.gw-d@city.example"
identifier_prefix = "gw-d"
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
"#;

fn xsd() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cap/CAP-v1.2.xsd")
}

/// Validates CAP XML against the CAP 1.2 schema with xmllint (Debian libxml2-utils, which
/// tests/run.sh installs); a missing xmllint fails the test.
fn xmllint_ok(xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("alert.xml");
    std::fs::write(&f, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(xsd())
        .arg(&f)
        .output()
        .map_err(|e| format!("xmllint (Debian libxml2-utils) is needed: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every CAP message that arrived on the uplink, in arrival order (duplicates dropped).
fn alerts(c: &Collector) -> Vec<(String, Alert)> {
    let got = c.snapshot();
    let mut seen = std::collections::HashSet::new();
    got.envelopes
        .iter()
        .filter(|e| seen.insert(e.seq))
        .filter_map(|e| match &e.body {
            Body::Alert { cap, .. } => Some((cap.clone(), Alert::from_xml(cap).ok()?)),
            _ => None,
        })
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Publishes `level` on w1 and w2 every 200 ms until `done` holds or `within` passes.
async fn publish_until(
    p: &Publisher,
    level: f64,
    within: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        for s in ["w1", "w2"] {
            p.reading(s, level, now()).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_open_at_a_sigkill_is_cancelled_after_the_restart_with_references() {
    let id = "gw-d";
    let mosq = Mosquitto::start();
    let collector = Collector::start(mosq.port, id).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let local = free_port();
    let cfg_path = dir.path().join("gw.toml");
    let text = gateway_config(id, local, &mosq.url(), &data, 60) + HAZARD;
    std::fs::write(&cfg_path, text).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw1.log"), local);
    let field = Publisher::connect(local, "field-d1").await;
    let raised = publish_until(&field, 1.5, Duration::from_secs(30), || {
        !alerts(&collector).is_empty()
    })
    .await;
    assert!(raised, "no alert before the kill: {}", gw.log_text());
    let (_, alert) = alerts(&collector).remove(0);
    assert_eq!(alert.msg_type, MsgType::Alert);
    gw.kill();
    drop(field);

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw2.log"), local);
    let field = Publisher::connect(local, "field-d2").await;
    let cancelled = publish_until(&field, 0.1, Duration::from_secs(30), || {
        alerts(&collector)
            .iter()
            .any(|(_, a)| a.msg_type == MsgType::Cancel)
    })
    .await;
    let log = gw.log_text();
    assert!(cancelled, "no cancel after the restart: {log}");
    let all = alerts(&collector);
    let types: Vec<MsgType> = all.iter().map(|(_, a)| a.msg_type).collect();
    assert_eq!(
        types,
        vec![MsgType::Alert, MsgType::Cancel],
        "no new incident after the restart: {all:?}"
    );
    let (xml, cancel) = &all[1];
    assert_eq!(cancel.incidents, alert.incidents, "the same incident");
    assert_ne!(cancel.identifier, alert.identifier);
    let refs = cancel.reference_list().unwrap();
    assert!(
        refs.iter().any(|r| r.identifier == alert.identifier
            && r.sender == alert.sender
            && r.sent == alert.sent),
        "the cancel must reference the pre-kill alert: {refs:?}"
    );
    xmllint_ok(xml).unwrap();
    cancel.validate().unwrap();
    assert!(log.contains("continuing underpass incident"), "{log}");
    assert!(gw.stop().success());
}

/// Overwrites every file under `dir` with garbage of the same length; returns how many.
fn scribble(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += scribble(&p);
        } else {
            let len = std::fs::metadata(&p).unwrap().len() as usize;
            let junk: Vec<u8> = (0..len.max(64))
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                .collect();
            std::fs::write(&p, junk).unwrap();
            n += 1;
        }
    }
    n
}

/// Publishes one reading on each of 20 sensors every 100 ms for `secs` seconds.
async fn readings_for(p: &Publisher, secs: u64) {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut i = 0.0;
    while tokio::time::Instant::now() < end {
        for s in 0..20 {
            p.reading(&format!("s{s}"), i, now()).await;
        }
        i += 1.0;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_damaged_outbox_is_set_aside_sequence_numbers_go_on_above_the_old_ones() {
    let id = "gw-ds";
    let mosq = Mosquitto::start();
    let collector = Collector::start(mosq.port, id).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let local = free_port();
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, gateway_config(id, local, &mosq.url(), &data, 1)).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw1.log"), local);
    let field = Publisher::connect(local, "field-ds1").await;
    readings_for(&field, 4).await;
    assert!(
        eventually(Duration::from_secs(20), || collector.count() >= 40).await,
        "{} records arrived: {}",
        collector.count(),
        gw.log_text()
    );
    drop(field);
    assert!(gw.stop().success());
    let before = collector.snapshot();
    let old_max = before.copies.keys().copied().max().unwrap();
    assert!(scribble(&data.join("outbox")) > 0);

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw2.log"), local);
    let field = Publisher::connect(local, "field-ds2").await;
    readings_for(&field, 3).await;
    let arrived_after = |r: &Received| r.copies.len() - before.copies.len();
    assert!(
        eventually(Duration::from_secs(20), || arrived_after(
            &collector.snapshot()
        ) >= 20)
        .await,
        "{}",
        gw.log_text()
    );
    let log = gw.log_text();
    assert!(gw.stop().success(), "{log}");
    assert!(log.contains("outbox was damaged"), "{log}");
    let after = collector.snapshot();
    // Everything that arrived after the restart (nothing from before was left to resend).
    let new = &after.envelopes[before.envelopes.len()..];
    assert!(
        new.iter()
            .any(|e| matches!(&e.body, Body::Event(ev) if ev.kind == "outbox_set_aside")),
        "no outbox_set_aside event"
    );
    let lowest = new.iter().map(|e| e.seq).min().unwrap();
    assert!(
        lowest > old_max,
        "a record after the set-aside has seq {lowest}, at or below {old_max} from before"
    );
    assert!(after.conflicting_duplicates().is_empty());
}

const INTERSECTION: &str = r#"
[[intersection]]
id = "int-d"
controller = "max_pressure"
actuation = { mqtt_topic = "signals/int-d/stage" }
conflicts = [["NS", "EW"]]

[[intersection.signal_group]]
id = "NS"
approach = "north-south"
min_green_s = 3.0
max_green_s = 60.0
yellow_s = 2.0

[[intersection.signal_group]]
id = "EW"
approach = "east-west"
min_green_s = 3.0
max_green_s = 60.0
yellow_s = 2.0

[[intersection.stage]]
id = "NS"
green = ["NS"]

[[intersection.stage]]
id = "EW"
green = ["EW"]

[[intersection.intergreen]]
from = "NS"
to = "EW"
seconds = 3.0

[[intersection.intergreen]]
from = "EW"
to = "NS"
seconds = 3.0

[[intersection.plan]]
id = "flood-detour"
hold = "EW"
"#;

/// The platform's side of the downlink: signs and publishes commands, records every result.
struct Platform {
    key: ring::signature::Ed25519KeyPair,
    gateway: String,
    publisher: Publisher,
    results: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Platform {
    async fn connect(port: u16, gateway: &str) -> Platform {
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .unwrap();
        let key = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = std::sync::Arc::clone(&results);
        let filter = format!("citygate/v1/{gateway}/cmd_result/#");
        subscribe_on_thread(port, "platform-results", &filter, move |t, p| {
            if let Ok(v) = serde_json::from_slice(p) {
                r.lock().unwrap().push((t.to_string(), v));
            }
        })
        .await;
        Platform {
            key,
            gateway: gateway.into(),
            publisher: Publisher::connect(port, "platform-cmd").await,
            results,
        }
    }

    fn public_key(&self) -> String {
        use ring::signature::KeyPair as _;
        base64::prelude::BASE64_STANDARD.encode(self.key.public_key().as_ref())
    }

    fn signed(&self, name: &str, nonce: &str, args: serde_json::Value) -> Vec<u8> {
        let t = now() as u64;
        let c = citygate::commands::Command {
            gateway: self.gateway.clone(),
            name: name.into(),
            args: args.as_object().cloned().unwrap(),
            issued_at: t - 5,
            expires_at: t + 300,
            nonce: nonce.into(),
            key_id: "platform-1".into(),
        };
        serde_json::to_vec(&c.sign(&self.key)).unwrap()
    }

    async fn send(&self, name: &str, payload: Vec<u8>, retain: bool) {
        let topic = format!("citygate/v1/{}/cmd/{name}", self.gateway);
        self.publisher
            .client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
    }

    /// The results for `nonce`, oldest first: (status, reason).
    fn results_for(&self, nonce: &str) -> Vec<(String, String)> {
        self.results
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.ends_with(&format!("/{nonce}")))
            .map(|(_, v)| {
                (
                    v["status"].as_str().unwrap_or("").to_string(),
                    v["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// The controller of the one intersection as the gateway's status file shows it.
fn controller(data: &Path) -> Option<String> {
    let s = citygate::status::StatusFile::read(data).ok()?;
    s.status["signals"][0]["controller"]
        .as_str()
        .map(String::from)
}

fn events_of(c: &Collector, kind: &str) -> Vec<citygate_protocols::Event> {
    c.snapshot()
        .envelopes
        .iter()
        .filter_map(|e| match &e.body {
            Body::Event(ev) if ev.kind == kind => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_survives_a_sigkill_and_neither_a_captured_nor_a_retained_command_runs_again() {
    let id = "gw-dc";
    let mosq = Mosquitto::start();
    let collector = Collector::start(mosq.port, id).await;
    let platform = Platform::connect(mosq.port, id).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let local = free_port();
    let cfg_path = dir.path().join("gw.toml");
    let text = gateway_config(id, local, &mosq.url(), &data, 60)
        + &format!(
            "\n[commands]\nkeys = [{{ id = \"platform-1\", public_key = \"{}\" }}]\n",
            platform.public_key()
        )
        + INTERSECTION;
    std::fs::write(&cfg_path, text).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw1.log"), local);
    // Pings until the gateway's command subscription answers.
    let mut n = 0;
    let answered = eventually(Duration::from_secs(20), || {
        n += 1;
        let nonce = format!("ping-{n:012}");
        let p = platform.signed("ping", &nonce, serde_json::json!({}));
        let _ = platform.publisher.client.try_publish(
            format!("citygate/v1/{id}/cmd/ping"),
            rumqttc::QoS::AtLeastOnce,
            false,
            p,
        );
        std::thread::sleep(Duration::from_millis(200));
        (1..=n).any(|i| !platform.results_for(&format!("ping-{i:012}")).is_empty())
    })
    .await;
    assert!(answered, "no answer to ping: {}", gw.log_text());
    let over = platform.signed(
        "plan_override",
        "over-000000000001",
        serde_json::json!({"intersection": "int-d", "plan": "flood-detour", "duration_s": 600}),
    );
    platform.send("plan_override", over.clone(), false).await;
    assert!(
        eventually(Duration::from_secs(15), || controller(&data).as_deref()
            == Some("plan:flood-detour"))
        .await,
        "the override never ran: {:?} {}",
        platform.results_for("over-000000000001"),
        gw.log_text()
    );
    assert!(
        eventually(Duration::from_secs(10), || !events_of(
            &collector,
            "command_applied"
        )
        .is_empty())
        .await
    );
    gw.kill();

    // While the gateway is down, a release is left retained on the command topic.
    let release = platform.signed(
        "plan_release",
        "rtnd-000000000001",
        serde_json::json!({"intersection": "int-d"}),
    );
    platform.send("plan_release", release, true).await;

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw2.log"), local);
    assert!(
        eventually(Duration::from_secs(20), || platform
            .results_for("rtnd-000000000001")
            .contains(&("rejected".into(), "retained".into())))
        .await,
        "the retained command was not refused: {:?} {}",
        platform.results_for("rtnd-000000000001"),
        gw.log_text()
    );
    // The override is taken up again for what is left of it, and reported.
    assert!(
        eventually(Duration::from_secs(15), || !events_of(
            &collector,
            "plan_override_restored"
        )
        .is_empty())
        .await,
        "{}",
        gw.log_text()
    );
    assert!(
        eventually(Duration::from_secs(10), || controller(&data).as_deref()
            == Some("plan:flood-detour"))
        .await,
        "{:?}",
        controller(&data)
    );
    // A captured copy of the override is a replay after the restart too.
    platform.send("plan_override", over, false).await;
    assert!(
        eventually(Duration::from_secs(10), || platform
            .results_for("over-000000000001")
            .last()
            == Some(&("rejected".into(), "replayed".into())))
        .await,
        "{:?}",
        platform.results_for("over-000000000001")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(controller(&data).as_deref(), Some("plan:flood-detour"));
    let applied = events_of(&collector, "command_applied");
    assert_eq!(applied.len(), 1, "only the override ran, once: {applied:?}");
    assert!(applied[0].message.contains("over-000000000001"));
    // Clear the retained message.
    platform.send("plan_release", Vec::new(), true).await;
    let log = gw.log_text();
    assert!(gw.stop().success(), "{log}");
}
