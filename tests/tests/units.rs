//! End-to-end tests of SenML units through the real MQTT ingest (embedded broker → SenML
//! decode → summaries → uplink): registered units such as `dB`, `lx` and `km/h` pass under
//! either `unknown_units` policy and keep the unit they were sent in; an unregistered unit is
//! refused and counted as malformed by default, and kept as an opaque unit where a source says
//! `unknown_units = "opaque"`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use citygate_protocols::{Body, Unit};
use citygate_tests::*;

const T0: f64 = 1_700_000_000.0;

fn config(port: u16, data: &std::path::Path) -> String {
    format!(
        r#"[gateway]
id = "gw-units"
data_dir = "{data}"

[broker]
mode = "embedded"
listen = "127.0.0.1:{port}"

[[sources.mqtt]]
name = "strict"
topic = "strict/#"
format = "senml"

[[sources.mqtt]]
name = "open"
topic = "open/#"
format = "senml"
unknown_units = "opaque"

[summaries]
window_s = 1

[outbox]
flush_every_ms = 100

[uplink]
url = "mqtt://127.0.0.1:{port}"
backoff_min_ms = 100
backoff_max_ms = 1000
"#,
        data = data.display()
    )
}

/// (sensor suffix, unit, value) published under each source.
const SENT: [(&str, &str, f64); 4] = [
    ("noise", "dB", 61.5),
    ("light", "lx", 12000.0),
    ("traffic", "km/h", 36.0),
    ("odd", "furlong", 3.0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_units_pass_and_unknown_ones_follow_the_source_policy() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gw = start_gateway(&config(port, dir.path())).await;
    let collector = Collector::start(port, "gw-units").await;
    let publisher = Publisher::connect(port, "field-units").await;
    for source in ["strict", "open"] {
        for (sensor, unit, value) in SENT {
            let pack = serde_json::json!([{
                "n": format!("{source}-{sensor}/level"), "u": unit, "v": value, "t": T0
            }]);
            publisher
                .client
                .publish(
                    format!("{source}/{sensor}"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    pack.to_string(),
                )
                .await
                .unwrap();
        }
    }
    // 3 strict + 4 open summaries, each window closed by the idle timeout.
    assert!(
        eventually(Duration::from_secs(30), || collector.count() >= 7).await,
        "only {} of 7 summaries arrived; {}",
        collector.count(),
        gw.stats.snapshot()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = collector.snapshot();
    let summaries: BTreeMap<String, (Option<Unit>, f64)> = got
        .envelopes
        .iter()
        .filter_map(|e| match &e.body {
            Body::Summary(s) => Some((s.sensor.clone(), (s.unit, s.last))),
            _ => None,
        })
        .collect();
    let opaque = Unit::parse_or_opaque("furlong").unwrap();
    let want: BTreeMap<String, (Option<Unit>, f64)> = [
        ("strict-noise", Unit::Decibel, 61.5),
        ("strict-light", Unit::Lux, 12000.0),
        ("strict-traffic", Unit::KilometrePerHour, 36.0),
        ("open-noise", Unit::Decibel, 61.5),
        ("open-light", Unit::Lux, 12000.0),
        ("open-traffic", Unit::KilometrePerHour, 36.0),
        ("open-odd", opaque, 3.0),
    ]
    .into_iter()
    .map(|(s, u, v)| (s.to_string(), (Some(u), v)))
    .collect();
    assert_eq!(summaries, want, "units are kept as sent, km/h not rescaled");
    assert_eq!(
        gw.stats.malformed.load(Ordering::Relaxed),
        1,
        "the strict source refuses `furlong` and counts it"
    );
    assert_eq!(gw.stats.readings_in.load(Ordering::Relaxed), 7);
    // The opaque unit travels the uplink under its own name.
    let raw = got
        .copies
        .values()
        .flatten()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .find(|p| p.contains("open-odd"))
        .expect("the open-odd summary's payload");
    assert!(raw.contains(r#""unit":"furlong""#), "{raw}");
    gw.shutdown().await;
}
