//! Bad input from outsiders, fuzzed with proptest: every decoder a field device, a broker or
//! the platform can reach must return an error, never panic, and keep memory bounded.
//!
//! | decoder | reached by |
//! |---|---|
//! | `citygate_protocols::senml::decode` + `readings` | field devices (SenML sources) |
//! | `citygate::sources::mqtt::Router::decode` (SenML and plain JSON) | field devices |
//! | `citygate_protocols::topic::parse` | anything on the uplink broker |
//! | `citygate::field::gate::first_in`, `screen` (MQTT frames, topic ACLs) | any client of the embedded broker |
//! | `citygate::field::acl` (`may_publish`, `may_subscribe`, `filter_covers`), `mqtt::filter_matches` | the topics of any client |
//! | `citygate::signals::lookahead::peer::decode` | anything that can publish on a peer topic |
//! | a running field gate, on raw bytes and mutated packets from many connections | any client of the embedded broker |
//! | `citygate::commands::Verifier::verify` | anything that can publish on the command topic |
//! | `citygate::config::load_str` | the operator's config file |
//!
//! Modbus frames are fuzzed beside their decoder (`firmware/tests/modbus_fuzz.rs`: the RTU slave
//! on arbitrary bytes) and in `modbus_faults.rs` (garbage and truncated answers to the poller).
//!
//! Each property runs for a fixed time: `CITYGATE_FUZZ_SECONDS` per property (default
//! [`DEFAULT_SECONDS`]), in batches of [`BATCH`] random cases with a fresh seed, at least one
//! batch; the number of cases run is printed. The payload-size tests at the end check what a
//! 10 MB publish does to a running gateway.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use citygate::commands::{Command, Verifier};
use citygate::config::{self, CommandKeyConfig, CommandsConfig, MqttSourceConfig, PayloadFormat};
use citygate::sources::mqtt::Router;
use citygate_protocols::{senml, topic};
use citygate_tests::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Value};

/// Seconds per property when `CITYGATE_FUZZ_SECONDS` is not set.
pub const DEFAULT_SECONDS: f64 = 4.0;
/// Cases per batch; a property runs whole batches until its time is up.
pub const BATCH: u32 = 500;

/// Runs `test` on random values of `strategy` for the fixed time, and fails on the first
/// failing case (shrunk).
fn fuzz<S: Strategy>(strategy: &S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let budget = std::env::var("CITYGATE_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let start = Instant::now();
    let mut cases = 0u64;
    loop {
        let mut runner = TestRunner::new(PropConfig {
            cases: BATCH,
            failure_persistence: None,
            ..PropConfig::default()
        });
        if let Err(e) = runner.run(strategy, &test) {
            panic!("{e}");
        }
        cases += u64::from(BATCH);
        if start.elapsed().as_secs_f64() >= budget {
            break;
        }
    }
    eprintln!("{cases} cases in {:.1} s", start.elapsed().as_secs_f64());
}

const NOW: f64 = 1_700_000_000.0;

// ---- generators ------------------------------------------------------------------------------

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A SenML-shaped record: known labels with values of any type, sometimes sensible ones.
fn senml_record() -> impl Strategy<Value = Value> {
    let label = prop_oneof![
        Just("bn"),
        Just("bt"),
        Just("bu"),
        Just("bv"),
        Just("bs"),
        Just("bver"),
        Just("n"),
        Just("u"),
        Just("t"),
        Just("ut"),
        Just("v"),
        Just("vs"),
        Just("vb"),
        Just("vd"),
        Just("s"),
        Just("x_"),
        Just("other"),
    ];
    let value = prop_oneof![
        json_value(),
        (-1e12f64..1e12).prop_map(Value::from),
        prop_oneof![
            Just("m"),
            Just("Cel"),
            Just("count"),
            Just("%"),
            Just("bogus")
        ]
        .prop_map(Value::from),
        "[a-z0-9:/_-]{0,12}".prop_map(Value::from),
    ];
    proptest::collection::btree_map(label, value, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn senml_pack() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(senml_record(), 0..8)
            .prop_map(|v| serde_json::to_vec(&Value::Array(v)).unwrap_or_default()),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Bytes `b` with one of: a byte changed, a byte removed, a byte inserted, or cut short.
fn mutated(b: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = b.len().max(1);
    (0..4u8, 0..len, any::<u8>()).prop_map(move |(op, i, x)| {
        let mut m = b.clone();
        let i = i.min(m.len());
        match op {
            0 if i < m.len() => m[i] = x,
            1 if i < m.len() => {
                m.remove(i);
            }
            2 => m.insert(i, x),
            _ => m.truncate(i),
        }
        m
    })
}

fn router() -> Router {
    let src = |name: &str, topic: &str, format, value_path: Option<&str>| MqttSourceConfig {
        name: name.into(),
        topic: topic.into(),
        format,
        sensor: if format == PayloadFormat::Json {
            "{2}".into()
        } else {
            String::new()
        },
        value_path: value_path.map(Into::into),
        time_path: value_path.map(|_| "t".into()),
        quantity: value_path.map(|_| "level".into()),
        unit: value_path.map(|_| "m".into()),
        unknown_units: None,
        qos: 1,
    };
    Router::new(&[
        src("senml", "field/+/senml", PayloadFormat::Senml, None),
        src("json", "field/+/value", PayloadFormat::Json, Some("data.v")),
        src(
            "json-array",
            "arr/+/value",
            PayloadFormat::Json,
            Some("a.1"),
        ),
    ])
}

// ---- decoders ----------------------------------------------------------------------------------

#[test]
fn senml_decoder_never_panics() {
    fuzz(&senml_pack(), |bytes| {
        if let Ok(pack) = senml::decode(&bytes) {
            if let Ok(readings) = senml::readings(&pack, NOW, Default::default()) {
                for r in readings {
                    prop_assert!(r.value.is_finite() && r.time.is_finite());
                }
            }
        }
        Ok(())
    });
}

#[test]
fn mqtt_router_never_panics() {
    let router = router();
    let topic = prop_oneof![
        Just("field/s1/senml".to_string()),
        Just("field/s1/value".to_string()),
        Just("arr/s1/value".to_string()),
        "[a-z0-9/+#]{0,30}",
    ];
    let payload = prop_oneof![
        senml_pack(),
        json_value().prop_map(
            |v| serde_json::to_vec(&json!({"data": {"v": v}, "t": NOW})).unwrap_or_default()
        ),
        (json_value(), json_value())
            .prop_map(
                |(a, t)| serde_json::to_vec(&json!({"a": [0, a], "t": t})).unwrap_or_default()
            ),
    ];
    fuzz(&(topic, payload), |(topic, payload)| {
        if let Ok(readings) = router.decode(&topic, &payload, NOW) {
            for r in readings {
                prop_assert!(r.value.is_finite(), "{r:?}");
                prop_assert!(r.time.is_finite() && r.time >= 0.0, "{r:?}");
            }
        }
        Ok(())
    });
}

#[test]
fn topic_parser_never_panics() {
    let t = prop_oneof![
        ".{0,80}",
        "citygate/v1/[A-Za-z0-9_+#/ -]{0,20}/[a-z_]{0,12}(/[^\u{0}]{0,20}){0,3}",
        proptest::collection::vec(any::<u8>(), 0..80)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    fuzz(&t, |text| {
        if let Ok((gw, parsed)) = topic::parse(&text) {
            prop_assert_eq!(topic::format(&gw, &parsed), text);
        }
        Ok(())
    });
}

fn keypair() -> Ed25519KeyPair {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
}

fn verifier(k: &Ed25519KeyPair) -> Verifier {
    let cfg = CommandsConfig {
        keys: vec![CommandKeyConfig {
            id: "platform-1".into(),
            public_key: BASE64_STANDARD.encode(k.public_key().as_ref()),
        }],
        ..CommandsConfig::default()
    };
    Verifier::new("gw-1", &cfg).unwrap()
}

#[test]
fn command_verifier_refuses_everything_not_signed_as_is() {
    let k = keypair();
    let now = NOW as u64;
    let genuine = Command {
        gateway: "gw-1".into(),
        name: "plan_override".into(),
        args: json!({"plan": 3, "until": "17:00"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        issued_at: now,
        expires_at: now + 60,
        nonce: "fuzz-nonce-000001".into(),
        key_id: "platform-1".into(),
    };
    let signed = serde_json::to_vec(&genuine.sign(&k)).unwrap();
    // The genuine command is accepted (so the refusals below are not vacuous).
    assert_eq!(
        verifier(&k).verify(&signed, now).map(|c| c.name),
        Ok("plan_override".into())
    );

    let envelope_like = (
        json_value(),
        ".{0,20}",
        any::<u64>(),
        any::<u64>(),
        ".{0,70}",
        ".{0,90}",
    )
        .prop_map(|(args, name, a, b, nonce, sig)| {
            serde_json::to_vec(&json!({
                "v": 1, "gateway": "gw-1", "name": name, "args": args, "issued_at": a,
                "expires_at": b, "nonce": nonce, "key_id": "platform-1", "sig": sig,
            }))
            .unwrap_or_default()
        });
    let input = prop_oneof![
        mutated(signed.clone()),
        mutated(signed.clone()).prop_flat_map(mutated),
        envelope_like,
        proptest::collection::vec(any::<u8>(), 0..300),
    ];
    // The signature covers the command, not its JSON layout: a variant with extra whitespace
    // is the same command. So: whatever is accepted is exactly the genuine command, and only
    // once (every later variant is a replay).
    let v = std::cell::RefCell::new(verifier(&k));
    let accepted = std::cell::Cell::new(0u32);
    fuzz(&input, |bytes| {
        if let Ok(cmd) = v.borrow_mut().verify(&bytes, now) {
            accepted.set(accepted.get() + 1);
            prop_assert_eq!(
                &cmd,
                &genuine,
                "accepted a forged command: {}",
                String::from_utf8_lossy(&bytes)
            );
            prop_assert_eq!(accepted.get(), 1, "accepted a replay");
        }
        Ok(())
    });
    // A megabyte of garbage is refused on its size, before any parsing.
    let big = vec![b'['; 1 << 20];
    let t = Instant::now();
    assert!(matches!(
        v.borrow_mut().verify(&big, now).unwrap_err().reason,
        citygate::commands::Reason::TooLarge { .. }
    ));
    assert!(t.elapsed() < Duration::from_millis(50));
}

const CONFIG: &str = r#"[gateway]
id = "gw-1"
data_dir = "data"

[broker]
mode = "embedded"
listen = "127.0.0.1:1883"

[[sources.mqtt]]
name = "flood"
topic = "field/+/water"
format = "json"
sensor = "{2}"
value_path = "level"
quantity = "water_level"
unit = "m"

[summaries]
window_s = 60

[uplink]
url = "mqtts://platform.example:8883"
ca_file = "ca.pem"
username_env = "CG_USER"
password_env = "CG_PASS"

[commands]
keys = [{ id = "p-1", public_key = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=" }]
"#;

#[test]
fn config_loader_never_panics() {
    assert!(
        config::load_str(CONFIG, "fuzz.toml").is_ok(),
        "the seed config must load"
    );
    let text = prop_oneof![
        mutated(CONFIG.as_bytes().to_vec())
            .prop_flat_map(mutated)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[\\[\\]a-z_.=\"'{}$, \n0-9#-]{0,200}",
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let env = |name: &str| (name == "X").then(|| "\"]\n[evil]\nk=1".to_string());
    fuzz(&text, |text| {
        let r = config::load_str_with_env(&text, "fuzz.toml", &env);
        if let Err(e) = r {
            // Every error names the file and a position.
            for line in e.to_string().lines() {
                prop_assert!(line.starts_with("fuzz.toml:"), "{line}");
            }
        }
        Ok(())
    });
    // Deep nesting is refused, not a stack overflow.
    for deep in [
        format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("a = {}", "{ b = ".repeat(100_000)),
        format!("{}\n", "[a]\n".repeat(10_000)),
    ] {
        assert!(config::load_str(&deep, "deep.toml").is_err());
    }
}

// ---- payload size -----------------------------------------------------------------------------

/// 10 MB: a SenML pack of 10-byte-ish records and one huge JSON string.
fn ten_megabytes() -> Vec<Vec<u8>> {
    let mut pack = b"[".to_vec();
    while pack.len() < 10 << 20 {
        pack.extend_from_slice(br#"{"n":"s","v":1},"#);
    }
    pack.extend_from_slice(br#"{"n":"s","v":1}]"#);
    let mut string = br#"{"data":{"v":1},"t":1700000000,"x":""#.to_vec();
    string.resize(10 << 20, b'a');
    string.extend_from_slice(br#""}"#);
    let deep = vec![b'['; 10 << 20];
    vec![pack, string, deep]
}

#[test]
fn ten_megabyte_payloads_in_the_decoders() {
    // The decoders themselves do not limit size (the MQTT transport does, see below), but they
    // must stay linear and not blow the stack.
    let router = router();
    for (i, p) in ten_megabytes().iter().enumerate() {
        let t = Instant::now();
        for topic in ["field/s1/senml", "field/s1/value"] {
            let _ = router.decode(topic, p, NOW);
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "payload {i} took {:?}",
            t.elapsed()
        );
    }
}

/// A client that can send up to 16 MiB.
async fn big_publisher(port: u16, id: &str) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut el) = AsyncClient::new(o, 16);
    let task = tokio::spawn(async move {
        for _ in 0..50 {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    (client, task)
}

async fn survives_a_ten_megabyte_publish(text: String, local_port: u16) {
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    wait_subscribed(&gw).await;
    let (big, task) = big_publisher(local_port, "field-big").await;
    for p in ten_megabytes().into_iter().take(2) {
        let _ = big
            .publish("field/s1/value", QoS::AtLeastOnce, false, p)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    task.abort();
    // Ingest carries on: ordinary readings after the huge ones are counted.
    let publisher = Publisher::connect(local_port, "field-small").await;
    let before = gw.stats.readings_in.load(Ordering::Relaxed);
    let mut i = 0;
    let ok = eventually(Duration::from_secs(30), || {
        i += 1;
        let p = publisher.client.clone();
        tokio::spawn(async move {
            let _ = p
                .publish(
                    "field/s2/value",
                    QoS::AtLeastOnce,
                    false,
                    reading_payload(1.0, NOW),
                )
                .await;
        });
        gw.stats.readings_in.load(Ordering::Relaxed) > before
    })
    .await;
    assert!(
        ok,
        "ingest stopped after a 10 MB publish (sent {i} small readings)"
    );
    drop(publisher);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_publish_to_the_embedded_broker() {
    // The field gate refuses packets above `field::gate::MAX_PACKET` (256 KiB and headers) from
    // their fixed header and drops that client.
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let uplink = free_port();
    let text = gateway_config(
        "gw-big",
        local,
        &format!("mqtt://127.0.0.1:{uplink}"),
        dir.path(),
        60,
    );
    survives_a_ten_megabyte_publish(text, local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_publish_through_mosquitto() {
    // mosquitto forwards 10 MB; the gateway's ingest client refuses packets above
    // `mqtt::MAX_PACKET` (256 KiB) from the header, before reading the body, reconnects and
    // carries on.
    let mosq = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let text = gateway_config("gw-big2", 1, &mosq.url(), dir.path(), 60).replace(
        "mode = \"embedded\"\nlisten = \"127.0.0.1:1\"",
        &format!("mode = \"external\"\nurl = \"{}\"", mosq.url()),
    );
    assert!(text.contains("external"), "{text}");
    // An observer that accepts big packets proves mosquitto did forward the 10 MB.
    let mut o = MqttOptions::new("observer", "127.0.0.1", mosq.port);
    o.set_max_packet_size(16 << 20, 16 << 20);
    let (obs, mut el) = AsyncClient::new(o, 16);
    obs.subscribe("field/#", QoS::AtMostOnce).await.unwrap();
    let biggest = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let b = std::sync::Arc::clone(&biggest);
    let observer = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    b.fetch_max(p.payload.len(), Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    survives_a_ten_megabyte_publish(text, mosq.port).await;
    observer.abort();
    assert!(
        biggest.load(Ordering::Relaxed) >= 10 << 20,
        "mosquitto did not forward the 10 MB publish"
    );
}

// ---- the field gate ----------------------------------------------------------------------------

use bytes::BytesMut;
use citygate::config::DeviceAclConfig;
use citygate::field::acl::{filter_covers, Acl, Identity};
use citygate::field::gate::{first_in, screen};
use proptest::strategy::ValueTree;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe, SubscribeFilter};

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("+".to_string()),
        Just("#".to_string()),
        Just(String::new()),
        Just("$SYS".to_string()),
        "[a-c]{1,2}",
        "[^/]{0,4}",
    ]
}

/// Topics and filters from a few levels, wildcards anywhere (valid or not).
fn topic_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
}

fn gate_acl() -> Acl {
    Acl::new(&[DeviceAclConfig {
        user: "dev".into(),
        publish: vec!["a/+".into(), "b/#".into()],
        subscribe: vec!["c/+/d".into()],
    }])
}

/// Valid packets a client sends, written by rumqttc, each possibly mutated, back to back.
fn client_stream() -> impl Strategy<Value = Vec<u8>> {
    let packet = (
        0..5u8,
        topic_like(),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(kind, topic, payload)| {
            let p = match kind {
                0 => Packet::Publish(Publish::new(topic, rumqttc::QoS::AtLeastOnce, payload)),
                1 => Packet::Subscribe(Subscribe::new_many([SubscribeFilter::new(
                    topic,
                    rumqttc::QoS::AtMostOnce,
                )])),
                2 => Packet::Connect(Connect::new(topic)),
                3 => Packet::PingReq,
                _ => Packet::Publish(Publish::new(topic, rumqttc::QoS::AtMostOnce, payload)),
            };
            let mut b = BytesMut::new();
            let _ = p.write(&mut b, 1 << 20);
            b.to_vec()
        });
    proptest::collection::vec(packet, 1..6)
        .prop_map(|ps| ps.concat())
        .prop_flat_map(|b| prop_oneof![Just(b.clone()), mutated(b)])
}

#[test]
fn the_gate_forwards_only_what_the_acl_allows_and_never_panics() {
    let acl = gate_acl();
    let bytes = prop_oneof![
        client_stream(),
        proptest::collection::vec(any::<u8>(), 0..200)
    ];
    fuzz(&bytes, |bytes| {
        for who in [
            Identity::Device("dev".into()),
            Identity::Device("other".into()),
        ] {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut out = BytesMut::new();
            let _ = screen(&mut buf, &mut out, &acl, &who);
            // Every packet forwarded parses and is allowed.
            while !out.is_empty() {
                let p = Packet::read(&mut out, 1 << 20);
                let p = p.map_err(|e| TestCaseError::fail(format!("forwarded garbage: {e}")))?;
                match p {
                    Packet::Publish(p) => {
                        prop_assert!(acl.may_publish(&who, &p.topic), "{}", p.topic)
                    }
                    Packet::Subscribe(s) => {
                        for f in s.filters {
                            prop_assert!(acl.may_subscribe(&who, &f.path), "{}", f.path);
                        }
                    }
                    Packet::Connect(_) => prop_assert!(false, "a second CONNECT was forwarded"),
                    _ => {}
                }
            }
            let mut first = BytesMut::from(&bytes[..]);
            let _ = first_in(&mut first);
        }
        Ok(())
    });
}

#[test]
fn topic_acls_are_sound_and_never_panic() {
    let acl = gate_acl();
    fuzz(&(topic_like(), topic_like(), topic_like()), |(a, r, t)| {
        // What a covering filter lets a client subscribe to never reaches past the allowed one.
        if filter_covers(&a, &r) && citygate::mqtt::filter_matches(&r, &t) {
            prop_assert!(
                citygate::mqtt::filter_matches(&a, &t),
                "{a} covers {r}, which matches {t}"
            );
        }
        let dev = Identity::Device("dev".into());
        if acl.may_publish(&dev, &t) {
            prop_assert!(!t.contains(['+', '#']) && !t.starts_with('$'), "{t}");
        }
        let _ = acl.may_subscribe(&dev, &r);
        let _ = acl.may_publish(&Identity::Anonymous, &t);
        Ok(())
    });
}

#[test]
fn peer_flow_decoder_never_panics() {
    use citygate::signals::lookahead::peer;
    fn flow() -> impl Strategy<Value = Vec<u8>> {
        (json_value(), json_value(), json_value()).prop_map(|(v, l, u)| {
            serde_json::to_vec(&json!([{"from": "int-1", "to": "int-2", "group": "E",
                "vehicles": v, "leaves_at": l, "until": u}]))
            .unwrap_or_default()
        })
    }
    let bytes = prop_oneof![
        flow(),
        flow().prop_flat_map(mutated),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ];
    fuzz(&bytes, |bytes| {
        if let Ok(flows) = peer::decode(&bytes) {
            for f in flows {
                prop_assert!(
                    f.vehicles.is_finite() && f.leaves_at.is_finite() && f.until.is_finite()
                );
            }
        }
        Ok(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gate_survives_garbage_from_many_connections() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let text = gateway_config("gw-garbage", local, "mqtt://127.0.0.1:1", dir.path(), 60)
        .replace("[uplink]\nurl = \"mqtt://127.0.0.1:1\"\n", "[uplink]\n");
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    wait_subscribed(&gw).await;
    // A CONNECT that the gate accepts, then random packets; and random bytes from the start.
    let mut connect = BytesMut::new();
    Connect::new("garbage").write(&mut connect).unwrap();
    let mut runner = TestRunner::new(PropConfig::default());
    let streams = prop_oneof![
        client_stream(),
        proptest::collection::vec(any::<u8>(), 0..200)
    ];
    let mut sent = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) || sent < 50 {
        let body = streams.new_tree(&mut runner).unwrap().current();
        let with_connect = sent % 2 == 0;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", local))
            .await
            .unwrap();
        if with_connect {
            let _ = s.write_all(&connect).await;
        }
        let _ = s.write_all(&body).await;
        let _ = s.shutdown().await;
        sent += 1;
    }
    println!("sent {sent} garbage streams to the gate");
    // The gateway still ingests from an ordinary device.
    let publisher = Publisher::connect(local, "after-garbage").await;
    let before = gw.stats.readings_in.load(Ordering::Relaxed);
    let ok = eventually(Duration::from_secs(10), || {
        let p = publisher.client.clone();
        tokio::spawn(async move {
            let _ = p
                .publish(
                    "field/s9/value",
                    QoS::AtLeastOnce,
                    false,
                    reading_payload(1.0, NOW),
                )
                .await;
        });
        gw.stats.readings_in.load(Ordering::Relaxed) > before
    })
    .await;
    assert!(
        ok,
        "ingest stopped after the garbage: {}",
        gw.stats.snapshot()
    );
    drop(publisher);
    gw.shutdown().await;
}
