//! The shared harness of citygate's end-to-end tests: free ports, a mosquitto broker process,
//! the gateway as a process, an uplink collector that counts what arrives, and a publisher of
//! field readings.

pub mod modbus;
pub mod pki;
pub mod proxy;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citygate_protocols::Envelope;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Polls `cond` every 20 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// The mosquitto binary (Debian package `mosquitto`), which the test command installs.
pub fn mosquitto_bin() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("mosquitto is not installed: run the README's test command (tests/run.sh), which installs it")
}

/// A mosquitto broker on loopback with persistent sessions, which can be stopped and started
/// again on the same port.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Mosquitto {
            port: free_port(),
            dir,
            child: None,
        };
        m.restart();
        m
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts the broker again (after `stop` or `kill`).
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nuser root\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\nmax_inflight_messages 100\nlog_dest stderr\nlog_type error\n",
                self.port,
                self.dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "mosquitto did not listen on {}",
            self.port
        );
    }

    /// Stops the broker with SIGTERM (it saves its sessions) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "TERM");
            let _ = c.wait();
        }
    }

    /// Kills the broker with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a signal by name (`TERM`, `KILL`, `INT`) to a child process.
pub fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

/// A TOML gateway config for tests: embedded local broker on `local_port`, uplink to
/// `uplink_url`, plain-JSON readings on `field/<sensor>/value`.
pub fn gateway_config(
    id: &str,
    local_port: u16,
    uplink_url: &str,
    data_dir: &Path,
    window_s: u32,
) -> String {
    format!(
        r#"[gateway]
id = "{id}"
data_dir = "{data}"

[broker]
mode = "embedded"
listen = "127.0.0.1:{local_port}"

[[sources.mqtt]]
name = "test"
topic = "field/+/value"
format = "json"
sensor = "{{2}}"
value_path = "v"
time_path = "t"
quantity = "level"
unit = "m"

[summaries]
window_s = {window_s}

[outbox]
flush_every_ms = 100

[uplink]
url = "{uplink_url}"
backoff_min_ms = 100
backoff_max_ms = 1000
"#,
        data = data_dir.display()
    )
}

/// A gateway config parsed from test text; a config error fails the test with its message.
pub fn load_config(text: &str) -> citygate::config::Config {
    citygate::config::load_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the gateway's ingest is subscribed on its local broker; fails the test if not.
pub async fn wait_subscribed(gw: &citygate::run::Gateway) {
    let ok = eventually(Duration::from_secs(20), || {
        gw.stats.ingest_subscribed.load(Ordering::Relaxed)
    })
    .await;
    assert!(ok, "ingest never subscribed: {}", gw.stats.snapshot());
}

/// Waits until the gateway's uplink is connected; fails the test if not.
pub async fn wait_uplink(gw: &citygate::run::Gateway) {
    let ok = eventually(Duration::from_secs(20), || {
        gw.stats.uplink_connected.load(Ordering::Relaxed)
    })
    .await;
    assert!(ok, "uplink never connected: {}", gw.stats.snapshot());
}

/// Starts an in-process gateway from test config text and waits until it ingests and its
/// uplink is connected.
pub async fn start_gateway(text: &str) -> citygate::run::Gateway {
    let gw = citygate::run::start(load_config(text))
        .await
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
    wait_subscribed(&gw).await;
    wait_uplink(&gw).await;
    gw
}

/// One reading as the tests publish it.
pub fn reading_payload(value: f64, time: f64) -> Vec<u8> {
    serde_json::json!({"v": value, "t": time})
        .to_string()
        .into_bytes()
}

/// Everything that arrived on the uplink, by topic kind.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// Envelopes in arrival order.
    pub envelopes: Vec<Envelope>,
    /// Raw payloads per sequence number, every copy.
    pub copies: BTreeMap<u64, Vec<Vec<u8>>>,
    /// Last status payload seen.
    pub status: Option<String>,
    /// Payloads that were not envelopes.
    pub garbage: usize,
}

impl Received {
    /// Sequence numbers in order of first arrival.
    pub fn first_arrivals(&self) -> Vec<u64> {
        let mut seen = std::collections::HashSet::new();
        self.envelopes
            .iter()
            .filter(|e| seen.insert(e.seq))
            .map(|e| e.seq)
            .collect()
    }

    /// Sequence numbers that arrived more than once with different bytes.
    pub fn conflicting_duplicates(&self) -> Vec<u64> {
        self.copies
            .iter()
            .filter(|(_, c)| c.iter().any(|p| p != &c[0]))
            .map(|(s, _)| *s)
            .collect()
    }

    pub fn duplicates(&self) -> usize {
        self.copies.values().map(|c| c.len() - 1).sum()
    }
}

/// Subscribes to a gateway's uplink topics with a persistent session and records every
/// message. Reconnects when the broker restarts.
pub struct Collector {
    pub received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start(port: u16, gateway: &str) -> Collector {
        let received = Arc::new(Mutex::new(Received::default()));
        let mut opts = MqttOptions::new(format!("collector-{gateway}"), "127.0.0.1", port);
        opts.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let filter = format!("citygate/v1/{gateway}/#");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let r = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut r = r.lock().unwrap();
                        if p.topic.ends_with("/status") {
                            r.status = Some(String::from_utf8_lossy(&p.payload).into_owned());
                        } else if let Ok(env) = Envelope::from_json(&p.payload) {
                            r.copies
                                .entry(env.seq)
                                .or_default()
                                .push(p.payload.to_vec());
                            r.envelopes.push(env);
                        } else {
                            r.garbage += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .expect("collector did not subscribe within 20 s")
            .expect("collector task ended");
        Collector { received, task }
    }

    pub fn snapshot(&self) -> Received {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().copies.len()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A field device publishing readings to a local broker at QoS 1.
pub struct Publisher {
    pub client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub async fn connect(port: u16, id: &str) -> Publisher {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let task = tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Publisher { client, task }
    }

    pub async fn reading(&self, sensor: &str, value: f64, time: f64) {
        self.client
            .publish(
                format!("field/{sensor}/value"),
                QoS::AtLeastOnce,
                false,
                reading_payload(value, time),
            )
            .await
            .expect("publish");
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gateway as a separate process (`citygate run CONFIG`), with its output in a log file.
pub struct GatewayProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl GatewayProcess {
    pub fn start(bin: &Path, config: &Path, log: &Path) -> GatewayProcess {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(bin)
            .arg("run")
            .arg(config)
            .env("RUST_LOG", "info,rumqttd=warn")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start citygate");
        GatewayProcess {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Starts the gateway and waits until its local broker listens on `port`; fails the test
    /// with the gateway's log if it does not.
    pub fn start_listening(bin: &Path, config: &Path, log: &Path, port: u16) -> GatewayProcess {
        let gw = GatewayProcess::start(bin, config, log);
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "{}",
            gw.log_text()
        );
        gw
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().expect("wait for citygate")
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Subscribes to `filter` on the broker at `port` from a thread of its own (so that its
/// polling competes with nobody in this process) and calls `on_publish(topic, payload)` for
/// every message. Returns once the subscription is acknowledged; the thread ends with the
/// connection.
pub async fn subscribe_on_thread(
    port: u16,
    client_id: &str,
    filter: &str,
    mut on_publish: impl FnMut(&str, &[u8]) + Send + 'static,
) {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20)
        .set_keep_alive(Duration::from_secs(30));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let filter = filter.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, mut el) = AsyncClient::new(o, 64);
            let mut tx = Some(tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => on_publish(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
    });
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("no SUBACK within 20 s")
        .expect("subscriber thread ended");
}
