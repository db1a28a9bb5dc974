//! End-to-end tests of the field side (docs/SECURITY.md), with the real brokers of each mode:
//!
//! - embedded: rumqttd behind citygate's field gate, with a TLS listener, a password file made
//!   by `mosquitto_passwd` and per-device topic ACLs;
//! - external: mosquitto configured from the files `citygate broker-config` writes, reached by
//!   the gateway over `mqtts://` with credentials from the environment.
//!
//! In both, a device is refused on another device's topic and on the peer topic, and a client
//! without (or with wrong) credentials is refused. Certificates are made with openssl.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use citygate::run::Gateway;
use citygate_tests::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

const PASS_A: &str = "gauge-A-pass-7391";
const PASS_B: &str = "gauge-B-pass-2217";
const PASS_SIGN: &str = "sign-pass-5521-x";
const PASS_GW: &str = "gateway-pass-0417-z";

/// A password file made by mosquitto's own tool, holding every `(user, password)`.
fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let f = dir.join("devices.passwd");
    for (i, (user, pass)) in users.iter().enumerate() {
        let mut cmd = Process::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg(&f)
            .args([user, pass])
            .status()
            .expect("mosquitto_passwd (Debian package `mosquitto`)");
        assert!(st.success(), "mosquitto_passwd failed");
    }
    pki::readable_by_all(dir);
    f
}

/// What a test device saw from its broker.
#[derive(Debug)]
enum Seen {
    Connected,
    Subscribed(Vec<rumqttc::SubscribeReasonCode>),
    Acked,
    Message(String),
    Closed(String),
}

/// A field device that does not reconnect, so that a refusal is seen as the connection closing.
struct Device {
    client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn connect(
        port: u16,
        id: &str,
        login: Option<(&str, &str)>,
        ca: Option<&Path>,
    ) -> Device {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        if let Some((u, p)) = login {
            opts.set_credentials(u, p);
        }
        if let Some(ca) = ca {
            let tls = citygate::tls::client_config_in("test", ca, None).expect("client TLS");
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let s = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Seen::Connected,
                    Ok(Event::Incoming(Packet::SubAck(a))) => Seen::Subscribed(a.return_codes),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Seen::Acked,
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message(p.topic),
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Seen::Closed(format!("{e:?}")));
                        return;
                    }
                };
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        Device { client, seen, task }
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the device saw nothing within 10 s")
            .expect("the device's event loop ended")
    }

    /// Waits for the CONNACK; fails the test on anything else.
    async fn connected(&mut self) {
        match self.next().await {
            Seen::Connected => {}
            other => panic!("expected a CONNACK, saw {other:?}"),
        }
    }

    /// Waits for the connection to be refused or closed; returns why.
    async fn refused(&mut self) -> String {
        loop {
            match self.next().await {
                Seen::Closed(why) => return why,
                Seen::Connected | Seen::Acked => {}
                other => panic!("expected the connection to close, saw {other:?}"),
            }
        }
    }

    async fn publish(&self, topic: &str, value: f64) {
        self.client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                reading_payload(value, 1_700_000_000.0),
            )
            .await
            .expect("queue a publish");
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const DEVICES_AND_SOURCES: &str = r#"
[[broker.devices]]
user = "gauge-a"
publish = ["field/gauge-a/value"]

[[broker.devices]]
user = "gauge-b"
publish = ["field/gauge-b/value", "actuators/sign-1/text"]

[[broker.devices]]
user = "sign-1"
subscribe = ["actuators/sign-1/#"]

[[sources.mqtt]]
name = "gauges"
topic = "field/+/value"
format = "json"
sensor = "{2}"
value_path = "v"
time_path = "t"
quantity = "level"
unit = "m"

[outbox]
flush_every_ms = 100
"#;

fn readings(gw: &Gateway) -> u64 {
    gw.stats.readings_in.load(Ordering::Relaxed)
}

async fn wait_readings(gw: &Gateway, n: u64) {
    let ok = eventually(Duration::from_secs(10), || readings(gw) >= n).await;
    assert!(ok, "expected {n} readings: {}", gw.stats.snapshot());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(readings(gw), n, "{}", gw.stats.snapshot());
}

/// An embedded gateway with a plain loopback listener and a TLS listener on `tls_listen`.
fn embedded_config(
    data: &Path,
    pki: &Path,
    pw: &Path,
    plain: u16,
    tls_listen: &str,
    extra: &str,
) -> String {
    format!(
        r#"[gateway]
id = "gw-field"
data_dir = "{data}"

[broker]
mode = "embedded"
listen = "127.0.0.1:{plain}"
tls_listen = "{tls_listen}"
cert_file = "{pki}/server.crt"
key_file = "{pki}/server.key"
password_file = "{pw}"
{extra}
{DEVICES_AND_SOURCES}"#,
        data = data.display(),
        pki = pki.display(),
        pw = pw.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_gate_authenticates_devices_and_enforces_their_topics() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    pki::server_pki(&pki);
    let pw = password_file(
        dir.path(),
        &[
            ("gauge-a", PASS_A),
            ("gauge-b", PASS_B),
            ("sign-1", PASS_SIGN),
        ],
    );
    let (plain, tls) = (free_port(), free_port());
    let text = embedded_config(
        &dir.path().join("data"),
        &pki,
        &pw,
        plain,
        &format!("127.0.0.1:{tls}"),
        "",
    );
    let gw = start_gateway(&text).await;
    let ca = pki.join("ca.crt");
    let field = |gw: &Gateway| gw.stats.field.snapshot();

    // A device with its own credentials, over TLS, on its own topic: ingested.
    let mut a = Device::connect(tls, "a", Some(("gauge-a", PASS_A)), Some(&ca)).await;
    a.connected().await;
    a.publish("field/gauge-a/value", 1.0).await;
    wait_readings(&gw, 1).await;

    // ... on another device's topic: refused, counted, disconnected, not ingested.
    a.publish("field/gauge-b/value", 2.0).await;
    let why = a.refused().await;
    assert!(!why.contains("ConnectionRefused"), "{why}");
    assert_eq!(field(&gw).acl_refused, 1, "{}", gw.stats.snapshot());
    let mut b = Device::connect(tls, "b", Some(("gauge-b", PASS_B)), Some(&ca)).await;
    b.connected().await;
    b.publish("field/gauge-b/value", 3.0).await;
    wait_readings(&gw, 2).await;

    // ... on a gateway's peer topic (planned outflows): refused.
    let mut a = Device::connect(tls, "a", Some(("gauge-a", PASS_A)), Some(&ca)).await;
    a.connected().await;
    a.publish("citygate/v1/gw-field/peer/outflow", 4.0).await;
    a.refused().await;
    assert_eq!(field(&gw).acl_refused, 2);

    // A subscription the device is not configured for: refused; one it is: granted.
    let mut a = Device::connect(tls, "a", Some(("gauge-a", PASS_A)), Some(&ca)).await;
    a.connected().await;
    a.client
        .subscribe("field/#", QoS::AtMostOnce)
        .await
        .unwrap();
    a.refused().await;
    assert_eq!(field(&gw).acl_refused, 3);
    let mut sign = Device::connect(tls, "s", Some(("sign-1", PASS_SIGN)), Some(&ca)).await;
    sign.connected().await;
    sign.client
        .subscribe("actuators/sign-1/#", QoS::AtMostOnce)
        .await
        .unwrap();
    match sign.next().await {
        Seen::Subscribed(codes) => assert!(
            matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
            "{codes:?}"
        ),
        other => panic!("expected a SUBACK, saw {other:?}"),
    }
    b.publish("actuators/sign-1/text", 5.0).await;
    loop {
        match sign.next().await {
            Seen::Message(topic) => break assert_eq!(topic, "actuators/sign-1/text"),
            Seen::Acked => {}
            other => panic!("expected the sign's message, saw {other:?}"),
        }
    }

    // A will on a topic outside the ACL: refused at CONNECT.
    let mut opts = MqttOptions::new("w", "127.0.0.1", plain);
    opts.set_credentials("gauge-a", PASS_A);
    opts.set_last_will(rumqttc::LastWill::new(
        "field/gauge-b/value",
        "x",
        QoS::AtMostOnce,
        false,
    ));
    let (_c, mut el) = AsyncClient::new(opts, 4);
    let e = el
        .poll()
        .await
        .expect_err("a will outside the ACL is refused");
    assert!(format!("{e:?}").contains("NotAuthorized"), "{e:?}");

    // No credentials (TLS and plain: a password file is set, so no anonymous clients) and
    // wrong credentials: refused at CONNECT, counted.
    let before = field(&gw).auth_refused;
    for (port, ca) in [(tls, Some(ca.as_path())), (plain, None)] {
        let mut anon = Device::connect(port, "anon", None, ca).await;
        let why = anon.refused().await;
        assert!(why.contains("NotAuthorized"), "{why}");
    }
    let mut wrong = Device::connect(tls, "a", Some(("gauge-a", PASS_B)), Some(&ca)).await;
    let why = wrong.refused().await;
    assert!(why.contains("BadUserNamePassword"), "{why}");
    let mut nobody = Device::connect(tls, "n", Some(("nobody", PASS_A)), Some(&ca)).await;
    assert!(nobody.refused().await.contains("BadUserNamePassword"));
    assert_eq!(
        field(&gw).auth_refused,
        before + 4,
        "{}",
        gw.stats.snapshot()
    );

    // A server certificate from another CA is refused by the device.
    let mut rogue = Device::connect(
        tls,
        "r",
        Some(("gauge-a", PASS_A)),
        Some(&pki.join("rogue.crt")),
    )
    .await;
    let why = rogue.refused().await;
    assert!(why.contains("Tls"), "{why}");

    assert_eq!(readings(&gw), 2, "{}", gw.stats.snapshot());
    assert!(
        gw.stats
            .snapshot()
            .to_string()
            .contains("field refused: auth 4, acl 4"),
        "{}",
        gw.stats.snapshot()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_only_on_a_loopback_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    pki::server_pki(&pki);
    let pw = password_file(dir.path(), &[("gauge-a", PASS_A)]);
    let (plain, tls) = (free_port(), free_port());
    // The TLS listener is on every interface: no anonymous client there, even from loopback.
    let text = embedded_config(
        &dir.path().join("data"),
        &pki,
        &pw,
        plain,
        &format!("0.0.0.0:{tls}"),
        "anonymous = true",
    );
    let gw = start_gateway(&text).await;
    let mut local = Device::connect(plain, "local", None, None).await;
    local.connected().await;
    local.publish("field/local-1/value", 1.0).await;
    wait_readings(&gw, 1).await;
    let mut remote = Device::connect(tls, "remote", None, Some(&pki.join("ca.crt"))).await;
    assert!(remote.refused().await.contains("NotAuthorized"));
    assert_eq!(gw.stats.field.snapshot().auth_refused, 1);
    gw.shutdown().await;
}

#[test]
fn check_refuses_an_open_field_broker_and_warns_of_a_local_uplink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.toml");
    std::fs::write(
        &path,
        "[gateway]\nid = \"gw\"\ndata_dir = \"d\"\n\n[broker]\nmode = \"embedded\"\nlisten = \"0.0.0.0:1883\"\n",
    )
    .unwrap();
    let (text, ok) = citygate::config::check(&path);
    assert!(!ok, "{text}");
    assert!(
        text.contains("open.toml:7:1: broker.listen: the embedded broker listens on 0.0.0.0:1883, beyond loopback, without authentication"),
        "{text}"
    );
    std::fs::write(
        &path,
        "[gateway]\nid = \"gw\"\ndata_dir = \"d\"\n\n[broker]\nmode = \"embedded\"\nlisten = \"0.0.0.0:1883\"\nanonymous = true\npassword_file = \"pw\"\n",
    )
    .unwrap();
    let (text, ok) = citygate::config::check(&path);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "broker.anonymous: anonymous clients are accepted only on a loopback listener"
        ),
        "{text}"
    );

    // Loopback without a password file: accepted, and the uplink to the local broker is a warning.
    std::fs::write(&path, "[gateway]\nid = \"gw\"\ndata_dir = \"d\"\n").unwrap();
    let (text, ok) = citygate::config::check(&path);
    assert!(ok, "{text}");
    assert!(text.starts_with("OK: "), "{text}");
    assert!(
        text.contains("\nwarning: uplink: no `url`, so the uplink is the local broker"),
        "{text}"
    );
}

#[tokio::test]
async fn an_external_broker_needs_its_ca_for_mqtts_and_its_credentials_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ext.toml");
    let base = "[gateway]\nid = \"gw\"\ndata_dir = \"d\"\n\n[broker]\nmode = \"external\"\n";
    std::fs::write(&path, format!("{base}url = \"mqtts://10.0.0.2:8883\"\n")).unwrap();
    let (text, ok) = citygate::config::check(&path);
    assert!(!ok, "{text}");
    assert!(
        text.contains("broker.ca_file: an `mqtts://` broker needs `ca_file`"),
        "{text}"
    );
    std::fs::write(
        &path,
        format!(
            "{base}url = \"mqtt://127.0.0.1:1\"\nusername_env = \"FIELD_TEST_UNSET_USER\"\n\
             password_env = \"FIELD_TEST_UNSET_PASSWORD\"\n"
        ),
    )
    .unwrap();
    let cfg = citygate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let e = citygate::run::start(cfg).await.expect_err("no credentials");
    assert_eq!(
        e.to_string(),
        "broker.username_env: environment variable `FIELD_TEST_UNSET_USER` is not set"
    );
}

/// mosquitto with the fragment `citygate broker-config` wrote and a TLS listener on `port`.
struct Mosq {
    child: std::process::Child,
}

impl Mosq {
    fn start(dir: &Path, fragment: &Path, pki: &Path, port: u16) -> Mosq {
        let conf = dir.join("mosquitto.conf");
        let p = |f: &str| pki.join(f).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "{}\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nlog_dest stderr\nlog_type error\n",
                std::fs::read_to_string(fragment).unwrap(),
                p("ca.crt"),
                p("server.crt"),
                p("server.key"),
            ),
        )
        .unwrap();
        pki::readable_by_all(dir);
        let child = Process::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "mosquitto did not listen"
        );
        Mosq { child }
    }
}

impl Drop for Mosq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_mosquitto_enforces_the_rules_broker_config_writes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    pki::server_pki(&pki);
    let pw = password_file(
        dir.path(),
        &[
            ("gw-ext", PASS_GW),
            ("gauge-a", PASS_A),
            ("gauge-b", PASS_B),
        ],
    );
    let port = free_port();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "gw-ext"
data_dir = "{data}"

[broker]
mode = "external"
url = "mqtts://127.0.0.1:{port}"
ca_file = "{pki}/ca.crt"
username_env = "FIELD_TEST_BROKER_USER"
password_env = "FIELD_TEST_BROKER_PASSWORD"
password_file = "{pw}"
{DEVICES_AND_SOURCES}"#,
            data = dir.path().join("data").display(),
            pki = pki.display(),
            pw = pw.display(),
        ),
    )
    .unwrap();
    // The command writes the ACL and the fragment.
    let out_dir = dir.path().join("mosquitto");
    let out = Process::new(env!("CARGO_BIN_EXE_citygate-under-test"))
        .arg("broker-config")
        .arg(&config)
        .arg("--out")
        .arg(&out_dir)
        .env("FIELD_TEST_BROKER_USER", "gw-ext")
        .output()
        .expect("run citygate broker-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acl = std::fs::read_to_string(out_dir.join("citygate.acl")).unwrap();
    assert!(
        acl.contains("user gauge-a\ntopic write field/gauge-a/value\n"),
        "{acl}"
    );
    let _mosq = Mosq::start(dir.path(), &out_dir.join("citygate.conf"), &pki, port);

    // The gateway's own clients log in over TLS with the credentials from the environment.
    std::env::set_var("FIELD_TEST_BROKER_USER", "gw-ext");
    std::env::set_var("FIELD_TEST_BROKER_PASSWORD", PASS_GW);
    let cfg = citygate::config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let gw = citygate::run::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_subscribed(&gw).await;
    wait_uplink(&gw).await;
    assert!(gw.local.tls, "{}", gw.local);

    let ca = pki.join("ca.crt");
    let mut a = Device::connect(port, "a", Some(("gauge-a", PASS_A)), Some(&ca)).await;
    a.connected().await;
    a.publish("field/gauge-a/value", 1.0).await;
    wait_readings(&gw, 1).await;
    // mosquitto (MQTT 3.1.1) acknowledges a publish its ACL denies and drops it.
    a.publish("field/gauge-b/value", 2.0).await;
    a.publish("field/gauge-a/value", 3.0).await;
    wait_readings(&gw, 2).await;

    for login in [None, Some(("gauge-a", PASS_B)), Some(("gw-ext", PASS_A))] {
        let mut d = Device::connect(port, "x", login, Some(&ca)).await;
        let why = d.refused().await;
        assert!(why.contains("ConnectionRefused"), "{login:?}: {why}");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_removed_from_the_password_file_is_refused_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), &[("gauge-a", PASS_A), ("gauge-b", PASS_B)]);
    let plain = free_port();
    let text = format!(
        "[gateway]\nid = \"gw-revoke\"\ndata_dir = \"{}\"\n\n[broker]\nmode = \"embedded\"\n\
         listen = \"127.0.0.1:{plain}\"\npassword_file = \"{}\"\n{DEVICES_AND_SOURCES}",
        dir.path().join("data").display(),
        pw.display()
    );
    let gw = start_gateway(&text).await;
    let mut a = Device::connect(plain, "a", Some(("gauge-a", PASS_A)), None).await;
    a.connected().await;
    // Revoke gauge-a: a new file with gauge-b only, renamed over the old one.
    let next = dir.path().join("next.passwd");
    citygate::field::passwd::set(&next, "gauge-b", PASS_B).unwrap();
    std::fs::rename(&next, &pw).unwrap();
    tokio::time::sleep(citygate::field::passwd::RELOAD_CHECK + Duration::from_millis(100)).await;
    let mut again = Device::connect(plain, "a2", Some(("gauge-a", PASS_A)), None).await;
    assert!(again.refused().await.contains("BadUserNamePassword"));
    let mut b = Device::connect(plain, "b", Some(("gauge-b", PASS_B)), None).await;
    b.connected().await;
    // A broken file is not taken: gauge-b still logs in.
    std::fs::write(&pw, "gauge-b:plain-text\n").unwrap();
    tokio::time::sleep(citygate::field::passwd::RELOAD_CHECK + Duration::from_millis(100)).await;
    let mut b2 = Device::connect(plain, "b2", Some(("gauge-b", PASS_B)), None).await;
    b2.connected().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_publishing_too_fast_is_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), &[("gauge-a", PASS_A)]);
    let plain = free_port();
    let text = format!(
        "[gateway]\nid = \"gw-rate\"\ndata_dir = \"{}\"\n\n[broker]\nmode = \"embedded\"\n\
         listen = \"127.0.0.1:{plain}\"\npassword_file = \"{}\"\nmax_publish_per_s = 20\n{DEVICES_AND_SOURCES}",
        dir.path().join("data").display(),
        pw.display()
    );
    let gw = start_gateway(&text).await;
    let mut a = Device::connect(plain, "a", Some(("gauge-a", PASS_A)), None).await;
    a.connected().await;
    let t0 = std::time::Instant::now();
    for i in 0..60 {
        a.publish("field/gauge-a/value", f64::from(i)).await;
    }
    // 20 at once (one second's worth), then 20 a second: at least 2 s for the other 40.
    wait_readings(&gw, 60).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1800),
        "60 publishes in {took:?}"
    );
    assert!(gw.stats.field.snapshot().throttled > 0);
    assert_eq!(gw.stats.field.snapshot().acl_refused, 0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let text = gateway_config("gw-limit", local, "mqtt://127.0.0.1:1", dir.path(), 60)
        .replace("[uplink]\nurl = \"mqtt://127.0.0.1:1\"\n", "[uplink]\n")
        .replace(
            &format!("listen = \"127.0.0.1:{local}\"\n"),
            &format!("listen = \"127.0.0.1:{local}\"\nmax_connections = 2\n"),
        );
    assert!(text.contains("max_connections = 2"), "{text}");
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    wait_subscribed(&gw).await;
    let mut first = Device::connect(local, "one", None, None).await;
    first.connected().await;
    let mut second = Device::connect(local, "two", None, None).await;
    second.connected().await;
    let mut third = Device::connect(local, "three", None, None).await;
    third.refused().await;
    assert_eq!(gw.stats.field.snapshot().limits_refused, 1);
    // A slot that frees up is usable again.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        let mut d = Device::connect(local, "four", None, None).await;
        if matches!(d.next().await, Seen::Connected) {
            again = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "{}", gw.stats.snapshot());
    gw.shutdown().await;
}

/// Inputs that stop rumqttd 0.20 when they reach it (found by tests/tests/fuzz.rs): a topic
/// whose first character is not ASCII panics its router; a client id with `/` gets no CONNACK
/// and leaks a will handler, and the same id connecting again panics the broker and poisons
/// its lock, so that no client could connect any more. The gate refuses both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_that_stop_rumqttd_are_refused_at_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let text = gateway_config("gw-crash", local, "mqtt://127.0.0.1:1", dir.path(), 60)
        .replace("[uplink]\nurl = \"mqtt://127.0.0.1:1\"\n", "[uplink]\n");
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    wait_subscribed(&gw).await;
    for _ in 0..3 {
        let mut d = Device::connect(local, "bad/id", None, None).await;
        assert!(d.refused().await.contains("BadClientId"));
    }
    let mut d = Device::connect(local, "first-char", None, None).await;
    d.connected().await;
    d.publish("Ѩ/value", 1.0).await;
    d.refused().await;
    // The broker still routes: an ordinary device's reading arrives.
    let mut ok = Device::connect(local, "ordinary", None, None).await;
    ok.connected().await;
    ok.publish("field/s1/value", 2.0).await;
    wait_readings(&gw, 1).await;
    assert_eq!(gw.stats.field.snapshot().limits_refused, 3);
    assert_eq!(gw.stats.field.snapshot().acl_refused, 1);
    gw.shutdown().await;
}
