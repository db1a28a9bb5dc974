//! End-to-end tests of the secure uplink and downlink against mosquitto: TLS with a pinned CA
//! and client certificates (mTLS), refusal of certificates from another CA, user name and
//! password from the environment (never in the log), start errors for missing or placeholder
//! credentials, and signed downlink commands (ping, accepted, and every kind of refusal).
//!
//! Certificates are made at run time with the `openssl` command line.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use citygate::commands::Command;
use citygate::config;
use citygate_protocols::Body;
use citygate_tests::pki::{make_ca, make_leaf, readable_by_all};
use citygate_tests::*;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const T0: f64 = 1_700_000_000.0;

/// Certificates for the TLS tests: `ca` signs `server` and `client`; `rogue` (another CA)
/// signs `rogue-server` and `rogue-client`.
fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_leaf(d, "ca", "server", "serverAuth");
    make_leaf(d, "ca", "client", "clientAuth");
    make_ca(d, "rogue");
    make_leaf(d, "rogue", "rogue-server", "serverAuth");
    make_leaf(d, "rogue", "rogue-client", "clientAuth");
    // mosquitto started as root drops to its own user before it reads the certificates.
    readable_by_all(d);
    dir
}

/// mosquitto with a secured listener on `secure_port` (the gateway's uplink) and a plain
/// loopback listener on `plain_port` for the test's observers.
struct SecureBroker {
    secure_port: u16,
    plain_port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl SecureBroker {
    fn start(secure_listener: &str) -> SecureBroker {
        let dir = tempfile::tempdir().unwrap();
        let secure_port = free_port();
        let plain_port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings true\n\
                 listener {plain_port} 127.0.0.1\nallow_anonymous true\n\
                 listener {secure_port} 127.0.0.1\n{secure_listener}\n\
                 log_dest stderr\nlog_type error\n"
            ),
        )
        .unwrap();
        let child = Process::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        assert!(wait_for_port(plain_port, Duration::from_secs(10)));
        assert!(wait_for_port(secure_port, Duration::from_secs(10)));
        SecureBroker {
            secure_port,
            plain_port,
            child,
            _dir: dir,
        }
    }

    /// The TLS listener requiring a client certificate from `ca`.
    fn mtls(pki: &Path) -> SecureBroker {
        let p = |f: &str| pki.join(f).display().to_string();
        SecureBroker::start(&format!(
            "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
            p("ca.crt"),
            p("server.crt"),
            p("server.key")
        ))
    }

    /// A plain listener that requires a user name and password from `password_file`.
    fn with_password(password_file: &Path) -> SecureBroker {
        SecureBroker::start(&format!(
            "allow_anonymous false\npassword_file {}",
            password_file.display()
        ))
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_config(
    id: &str,
    local: u16,
    uplink_port: u16,
    data: &Path,
    pki: &Path,
    ca: &str,
    client: &str,
) -> String {
    let base = gateway_config(
        id,
        local,
        &format!("mqtts://127.0.0.1:{uplink_port}"),
        data,
        1,
    );
    let p = |f: &str| pki.join(f).display().to_string();
    format!(
        "{base}ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        p(&format!("{ca}.crt")),
        p(&format!("{client}.crt")),
        p(&format!("{client}.key"))
    )
}

async fn wait_connected(gw: &citygate::run::Gateway, within: Duration) -> bool {
    eventually(within, || gw.stats.uplink_connected.load(Ordering::Relaxed)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_uplink_delivers_summaries() {
    let pki = pki();
    let broker = SecureBroker::mtls(pki.path());
    let data = tempfile::tempdir().unwrap();
    let local = free_port();
    let text = tls_config(
        "gw-tls",
        local,
        broker.secure_port,
        data.path(),
        pki.path(),
        "ca",
        "client",
    );
    let collector = Collector::start(broker.plain_port, "gw-tls").await;
    let gw = start_gateway(&text).await;
    let publisher = Publisher::connect(local, "field-tls").await;
    for i in 0..50 {
        publisher
            .reading("s1", f64::from(i), T0 + f64::from(i) * 0.1)
            .await;
    }
    // Windows of 1 s over 5 s of readings: the first four close when later readings arrive.
    assert!(
        eventually(Duration::from_secs(20), || collector.count() >= 4).await,
        "summaries did not arrive over TLS: {:?}",
        collector.snapshot()
    );
    let got = collector.snapshot();
    assert!(got.status.as_deref().unwrap_or("").contains("online"));
    assert_eq!(got.garbage, 0);
    drop(publisher);
    gw.shutdown().await;
}

/// Runs the gateway as a process for `secs` seconds; it must never connect. Returns its log.
async fn never_connects(text: &str, secs: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, text).unwrap();
    let gw = spawn_gateway(&cfg, &dir.path().join("gw.log"), &[], "info,rumqttd=warn");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let log = gw.log_text();
    gw.kill();
    assert!(!log.contains("uplink connected"), "{log}");
    assert!(
        log.contains("reconnecting in"),
        "no failed connection attempt: {log}"
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_are_refused() {
    let pki = pki();
    let broker = SecureBroker::mtls(pki.path());
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(broker.plain_port, "gw-rogue").await;

    // 1. The gateway pins the rogue CA: the broker's genuine server certificate is refused.
    let text = tls_config(
        "gw-rogue",
        free_port(),
        broker.secure_port,
        data.path(),
        pki.path(),
        "rogue",
        "client",
    );
    let log = never_connects(&text, 4).await;
    assert!(log.contains("UnknownIssuer"), "{log}");

    // 2. A client certificate from the rogue CA: the broker refuses the gateway.
    let text = tls_config(
        "gw-rogue",
        free_port(),
        broker.secure_port,
        data.path(),
        pki.path(),
        "ca",
        "rogue-client",
    );
    let log = never_connects(&text, 4).await;
    assert!(log.contains("UnknownCA"), "{log}");

    // 3. No client certificate at all: the broker requires one.
    let text = gateway_config(
        "gw-rogue",
        free_port(),
        &format!("mqtts://127.0.0.1:{}", broker.secure_port),
        data.path(),
        1,
    ) + &format!("ca_file = \"{}\"\n", pki.path().join("ca.crt").display());
    let log = never_connects(&text, 4).await;
    assert!(log.contains("CertificateRequired"), "{log}");

    // Nothing of any of them reached the broker.
    let got = collector.snapshot();
    assert_eq!(got.status, None);
    assert!(got.envelopes.is_empty());

    // 4. A server presenting a certificate from the rogue CA (a man in the middle) is refused
    // by a gateway that pins the genuine CA.
    let p = |f: &str| pki.path().join(f).display().to_string();
    let mitm = SecureBroker::start(&format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
        p("ca.crt"),
        p("rogue-server.crt"),
        p("rogue-server.key")
    ));
    let text = tls_config(
        "gw-rogue",
        free_port(),
        mitm.secure_port,
        data.path(),
        pki.path(),
        "ca",
        "client",
    );
    let log = never_connects(&text, 4).await;
    assert!(log.contains("UnknownIssuer"), "{log}");
}

/// A password file for mosquitto holding `user` / `pass`.
fn password_file(dir: &Path, user: &str, pass: &str) -> PathBuf {
    let f = dir.join("passwd");
    let st = Process::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&f)
        .args([user, pass])
        .status()
        .expect("mosquitto_passwd (Debian package `mosquitto`)");
    assert!(st.success());
    f
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_citygate-under-test"))
}

/// Runs `citygate run` with extra environment variables; its stdout and stderr go to `log`.
fn spawn_gateway(
    config: &Path,
    log: &Path,
    env: &[(&str, &str)],
    rust_log: &str,
) -> GatewayProcess {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let mut cmd = Process::new(bin());
    cmd.arg("run")
        .arg(config)
        .env("RUST_LOG", rust_log)
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    GatewayProcess {
        child: cmd.spawn().expect("start citygate"),
        log: log.to_path_buf(),
    }
}

fn credential_config(
    id: &str,
    local: u16,
    port: u16,
    data: &Path,
    user_var: &str,
    pass_var: &str,
) -> String {
    gateway_config(id, local, &format!("mqtt://127.0.0.1:{port}"), data, 1)
        + &format!("username_env = \"{user_var}\"\npassword_env = \"{pass_var}\"\n")
}

const PASSWORD: &str = "Tq8#zR2!pLw9-uplink";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_from_the_environment_and_never_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "gw-pw", PASSWORD);
    let broker = SecureBroker::with_password(&pw);
    let collector = Collector::start(broker.plain_port, "gw-pw").await;
    let cfg = dir.path().join("gw.toml");
    let local = free_port();
    std::fs::write(
        &cfg,
        credential_config(
            "gw-pw",
            local,
            broker.secure_port,
            &dir.path().join("data"),
            "CG_SEC_USER",
            "CG_SEC_PASS",
        ),
    )
    .unwrap();
    // The most verbose log there is: every crate at trace.
    let gw = spawn_gateway(
        &cfg,
        &dir.path().join("gw.log"),
        &[("CG_SEC_USER", "gw-pw"), ("CG_SEC_PASS", PASSWORD)],
        "trace",
    );
    assert!(
        eventually(Duration::from_secs(30), || collector
            .snapshot()
            .status
            .is_some_and(|s| s.contains("online")))
        .await,
        "gateway did not log in with the password: {}",
        gw.log_text()
    );
    let publisher = Publisher::connect(local, "field-pw").await;
    for i in 0..30 {
        publisher
            .reading("s1", f64::from(i), T0 + f64::from(i) * 0.1)
            .await;
    }
    assert!(eventually(Duration::from_secs(20), || collector.count() >= 2).await);
    drop(publisher);
    let status = gw.child.id();
    let log_path = gw.log.clone();
    assert!(
        gw.stop().success(),
        "citygate {status} did not exit cleanly"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("uplink connected"), "{log}");
    assert!(log.len() > 1000, "the trace log is suspiciously short");
    assert!(!log.contains(PASSWORD), "the password is in the log");
    assert!(
        !log.contains("Tq8#zR2"),
        "part of the password is in the log"
    );

    // A wrong password: the broker refuses, nothing is delivered.
    let collector2 = Collector::start(broker.plain_port, "gw-pw2").await;
    std::fs::write(
        &cfg,
        credential_config(
            "gw-pw2",
            free_port(),
            broker.secure_port,
            &dir.path().join("data2"),
            "CG_SEC_USER",
            "CG_SEC_PASS",
        ),
    )
    .unwrap();
    let gw = spawn_gateway(
        &cfg,
        &dir.path().join("gw2.log"),
        &[
            ("CG_SEC_USER", "gw-pw"),
            ("CG_SEC_PASS", "Wrong-password-42"),
        ],
        "info",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(collector2.snapshot().status, None, "{}", gw.log_text());
    assert!(!gw.log_text().contains("Wrong-password-42"));
    gw.kill();
}

/// Runs `citygate run` expecting it to refuse to start; returns its output.
fn start_error(config_text: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, config_text).unwrap();
    let mut gw = spawn_gateway(&cfg, &dir.path().join("gw.log"), env, "info");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = gw.child.try_wait().unwrap() {
            assert!(!st.success(), "citygate started: {}", gw.log_text());
            return gw.log_text();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "citygate did not stop: {}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn missing_or_placeholder_credentials_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = credential_config(
        "gw-x",
        free_port(),
        free_port(),
        &dir.path().join("d"),
        "CG_X_USER",
        "CITYGATE_UPLINK_PASSWORD",
    );
    let out = start_error(&text, &[("CG_X_USER", "gw-x")]);
    assert!(
        out.contains(
            "uplink.password_env: environment variable `CITYGATE_UPLINK_PASSWORD` is not set"
        ),
        "{out}"
    );
    for (user, pass) in [
        ("gw-x", "changeme"),
        ("gw-x", "<password>"),
        ("gw-x", ""),
        ("gw-x", "PASSWORD"),
        ("admin", "Tq8#zR2!pLw9-ok"),
        ("gw-x", "xxxxxxxx"),
    ] {
        let out = start_error(
            &text,
            &[("CG_X_USER", user), ("CITYGATE_UPLINK_PASSWORD", pass)],
        );
        assert!(
            out.contains("placeholder") || out.contains("is empty"),
            "{user}/{pass}: {out}"
        );
        if pass.len() > 8 && pass != "xxxxxxxx" {
            assert!(!out.contains(pass), "{out}");
        }
    }
    // A secret written into the config instead of a variable name is refused by `check`,
    // without repeating it.
    let text = credential_config(
        "gw-x",
        free_port(),
        free_port(),
        &dir.path().join("d"),
        "CG_X_USER",
        "s3cret-Passw0rd!",
    );
    let e = config::load_str(&text, "gw.toml").unwrap_err().to_string();
    assert!(e.contains("uplink.password_env"), "{e}");
    assert!(!e.contains("s3cret-Passw0rd!"), "{e}");
    // So is a literal password key: there is no such key.
    let text = gateway_config(
        "gw-x",
        1883,
        "mqtt://127.0.0.1:1884",
        &dir.path().join("d"),
        1,
    ) + "password = \"Tq8#zR2!pLw9\"\n";
    let e = config::load_str(&text, "gw.toml").unwrap_err().to_string();
    assert!(e.contains("unknown field `password`"), "{e}");
}

// ---- downlink commands ------------------------------------------------------------------------

fn keypair() -> Ed25519KeyPair {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn command(gateway: &str, name: &str, nonce: &str, issued_at: u64, expires_at: u64) -> Command {
    Command {
        gateway: gateway.into(),
        name: name.into(),
        args: serde_json::json!({"plan": 3}).as_object().cloned().unwrap(),
        issued_at,
        expires_at,
        nonce: nonce.into(),
        key_id: "platform-1".into(),
    }
}

/// The platform: publishes commands and records every `cmd_result`.
struct Platform {
    client: AsyncClient,
    results: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Platform {
    async fn connect(port: u16, gateway: &str) -> Platform {
        let mut o = MqttOptions::new("platform", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(o, 64);
        let results = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&results);
        let filter = format!("citygate/v1/{gateway}/cmd_result/#");
        let (ready, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready);
        let c = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v =
                            serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                        r.lock().unwrap().push((p.topic.clone(), v));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .unwrap()
            .unwrap();
        Platform {
            client,
            results,
            task,
        }
    }

    async fn send(&self, gateway: &str, name: &str, payload: Vec<u8>) {
        self.client
            .publish(
                format!("citygate/v1/{gateway}/cmd/{name}"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    /// Waits for the `n`-th result (1-based) and returns it.
    async fn result(&self, n: usize) -> (String, serde_json::Value) {
        assert!(
            eventually(Duration::from_secs(10), || self
                .results
                .lock()
                .unwrap()
                .len()
                >= n)
            .await,
            "no result #{n}; have {:?}",
            self.results.lock().unwrap()
        );
        self.results.lock().unwrap()[n - 1].clone()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_commands_through_mosquitto() {
    let mosq = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let key = keypair();
    let text = gateway_config("gw-cmd", free_port(), &mosq.url(), data.path(), 1)
        + &format!(
            "\n[commands]\nkeys = [{{ id = \"platform-1\", public_key = \"{}\" }}]\nmax_clock_skew_s = 30\nmax_lifetime_s = 600\n",
            BASE64_STANDARD.encode(key.public_key().as_ref())
        );
    let collector = Collector::start(mosq.port, "gw-cmd").await;
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    assert!(wait_connected(&gw, Duration::from_secs(20)).await);
    let platform = Platform::connect(mosq.port, "gw-cmd").await;
    // Let the gateway's subscription settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = now();
    let sign = |c: &Command| serde_json::to_vec(&c.sign(&key)).unwrap();

    // ping is answered ok.
    platform
        .send(
            "gw-cmd",
            "ping",
            sign(&command("gw-cmd", "ping", "ping-000000000001", t, t + 60)),
        )
        .await;
    let (topic, r) = platform.result(1).await;
    assert_eq!(topic, "citygate/v1/gw-cmd/cmd_result/ping-000000000001");
    assert_eq!(r["status"], "ok", "{r}");

    // Another command is accepted, handed to the rules and carried out; this one's
    // arguments are wrong (no `duration_s`), which comes back as an event.
    let plan = sign(&command(
        "gw-cmd",
        "plan_override",
        "plan-000000000001",
        t,
        t + 60,
    ));
    platform.send("gw-cmd", "plan_override", plan.clone()).await;
    let (_, r) = platform.result(2).await;
    assert_eq!(r["status"], "accepted", "{r}");
    let outcome = |c: &Collector| {
        c.snapshot().envelopes.iter().find_map(|e| match &e.body {
            Body::Event(ev) if ev.kind == "command_applied" || ev.kind == "command_failed" => {
                Some(ev.clone())
            }
            _ => None,
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || outcome(&collector).is_some()).await,
        "no command outcome event"
    );
    let ev = outcome(&collector).unwrap();
    assert_eq!(ev.kind, "command_failed", "{ev:?}");
    assert!(
        ev.message.contains("plan-000000000001") && ev.message.contains("`duration_s` is missing"),
        "{ev:?}"
    );

    // Refusals, each reported with its reason on cmd_result/<nonce>.
    let other_key = keypair();
    let mut unsigned =
        command("gw-cmd", "plan_override", "unsg-000000000001", t, t + 60).unsigned();
    unsigned["args"] = serde_json::json!({});
    let mut tampered =
        command("gw-cmd", "plan_override", "tamp-000000000001", t, t + 60).sign(&key);
    tampered["args"]["plan"] = serde_json::json!(99);
    let mut unknown = command("gw-cmd", "plan_override", "unkn-000000000001", t, t + 60);
    unknown.key_id = "platform-9".into();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (plan.clone(), "replayed", "plan-000000000001"),
        (
            serde_json::to_vec(&unsigned).unwrap(),
            "unsigned",
            "unsg-000000000001",
        ),
        (
            serde_json::to_vec(&tampered).unwrap(),
            "bad_signature",
            "tamp-000000000001",
        ),
        (
            serde_json::to_vec(
                &command("gw-cmd", "plan_override", "othr-000000000001", t, t + 60)
                    .sign(&other_key),
            )
            .unwrap(),
            "bad_signature",
            "othr-000000000001",
        ),
        (
            sign(&command(
                "gw-cmd",
                "plan_override",
                "expd-000000000001",
                t - 600,
                t - 300,
            )),
            "expired",
            "expd-000000000001",
        ),
        (
            sign(&command(
                "gw-cmd",
                "plan_override",
                "futr-000000000001",
                t + 300,
                t + 360,
            )),
            "not_yet_valid",
            "futr-000000000001",
        ),
        (
            sign(&command(
                "gw-other",
                "plan_override",
                "wrgw-000000000001",
                t,
                t + 60,
            )),
            "wrong_gateway",
            "wrgw-000000000001",
        ),
        (sign(&unknown), "unknown_key", "unkn-000000000001"),
        (b"{\"v\":1,".to_vec(), "malformed", "invalid"),
    ];
    for (i, (payload, reason, nonce)) in cases.iter().enumerate() {
        platform
            .send("gw-cmd", "plan_override", payload.clone())
            .await;
        let (topic, r) = platform.result(3 + i).await;
        assert_eq!(
            topic,
            format!("citygate/v1/gw-cmd/cmd_result/{nonce}"),
            "{reason}"
        );
        assert_eq!(r["status"], "rejected", "{reason}: {r}");
        assert_eq!(r["reason"], *reason, "{r}");
    }
    // Nothing refused reached the rest of the gateway: the one accepted command has the
    // only outcome event.
    let outcomes = collector
        .snapshot()
        .envelopes
        .iter()
        .filter(|e| matches!(&e.body, Body::Event(ev) if ev.kind == "command_applied" || ev.kind == "command_failed"))
        .count();
    assert_eq!(outcomes, 1);
    assert_eq!(gw.stats.commands_accepted.load(Ordering::Relaxed), 2);
    assert_eq!(
        gw.stats.commands_rejected.load(Ordering::Relaxed),
        cases.len() as u64
    );
    // Each refusal is also an event on the uplink.
    assert!(
        eventually(Duration::from_secs(10), || {
            collector
                .snapshot()
                .envelopes
                .iter()
                .filter(|e| matches!(&e.body, Body::Event(ev) if ev.kind == "command_rejected"))
                .count()
                >= cases.len()
        })
        .await,
        "{:?}",
        collector.snapshot().envelopes
    );
    gw.shutdown().await;
}

// ---- no secrets in the repository ------------------------------------------------------------

/// Every file in the repository a commit would carry (skipping build output and tool folders).
fn repository_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | ".venv" | "data" | "node_modules"
            ) && !name.starts_with("target")
            {
                repository_files(&p, out);
            }
        } else if e.metadata().map(|m| m.len() < 2 << 20).unwrap_or(false) {
            out.push(p);
        }
    }
}

/// Keys that would hold a secret inline (the schema has none: secrets come from `*_env`).
fn secret_keys(v: &toml::Value, path: &str, found: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                let lower = k.to_ascii_lowercase();
                let secretish = [
                    "password",
                    "passwd",
                    "secret",
                    "token",
                    "private_key",
                    "api_key",
                ]
                .iter()
                .any(|s| lower.contains(s));
                if secretish && !lower.ends_with("_env") && !lower.ends_with("_file") {
                    found.push(format!("{path}.{k}"));
                }
                secret_keys(x, &format!("{path}.{k}"), found);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|x| secret_keys(x, path, found)),
        _ => {}
    }
}

#[test]
fn no_committed_file_holds_a_secret() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    repository_files(&root, &mut files);
    assert!(files.len() > 20, "walked only {} files", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        // A PEM private key (this test's own source names the marker in two pieces).
        let marker = format!("{}{}", "PRIVATE ", "KEY-----");
        if text.contains(&marker) && text.contains("-----BEGIN") {
            problems.push(format!("{}: PEM private key", f.display()));
        }
        if f.extension().is_some_and(|e| e == "toml") && !f.ends_with("Cargo.toml") {
            if let Ok(v) = text.parse::<toml::Value>() {
                let mut found = Vec::new();
                secret_keys(&v, "", &mut found);
                problems.extend(
                    found
                        .into_iter()
                        .map(|k| format!("{}: key {k}", f.display())),
                );
            }
        }
    }
    assert!(
        problems.is_empty(),
        "secrets in committed files: {problems:#?}"
    );
}
