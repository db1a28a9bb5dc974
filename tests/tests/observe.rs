//! End-to-end tests of the gateway's HTTP server (`[http]`): bearer tokens, `/metrics` (checked
//! by `promtool` and scraped by a real Prometheus server), `/healthz` and `/readyz`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use citygate_tests::*;

/// One HTTP/1.1 GET; returns the status code and the body.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    try_get(addr, path, token).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// As [`get`], with an error when nothing answers.
fn try_get(addr: SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).expect("a chunk length");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A test gateway config (embedded broker, uplink to itself) with this `[http]` section.
fn config_with_http(dir: &std::path::Path, http: &str) -> String {
    let port = free_port();
    let mut text = gateway_config(
        "gw-obs",
        port,
        &format!("mqtt://127.0.0.1:{port}"),
        &dir.join("data"),
        1,
    );
    text.push_str(http);
    text
}

fn http_addr(gw: &citygate::run::Gateway) -> SocketAddr {
    gw.http.as_ref().expect("the HTTP server listens").addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_on_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config_with_http(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\n",
    ))
    .await;
    let addr = http_addr(&gw);
    let (code, body) = tokio::task::spawn_blocking(move || get(addr, "/api/status", None))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["uplink_connected"], true, "{v}");
    let (code, _) = tokio::task::spawn_blocking(move || get(addr, "/nothing-here", None))
        .await
        .unwrap();
    assert_eq!(code, 404);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_every_request_needs_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("CG_OBS_TOKEN_A", "obs-test-token-1234");
    let gw = start_gateway(&config_with_http(
        dir.path(),
        "[http]\nlisten = \"0.0.0.0:0\"\ntoken_env = \"CG_OBS_TOKEN_A\"\n",
    ))
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], http_addr(&gw).port()));
    let (without, with, wrong) = tokio::task::spawn_blocking(move || {
        (
            get(addr, "/api/status", None),
            get(addr, "/api/status", Some("obs-test-token-1234")),
            get(addr, "/api/status", Some("obs-test-token-1235")),
        )
    })
    .await
    .unwrap();
    assert_eq!(without.0, 401, "{}", without.1);
    assert!(without.1.contains("bearer token"), "{}", without.1);
    assert_eq!(with.0, 200, "{}", with.1);
    assert_eq!(wrong.0, 401);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_without_a_token_the_gateway_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // Without `token_env`: the config check names the key and the line.
    let text = config_with_http(dir.path(), "[http]\nlisten = \"0.0.0.0:9180\"\n");
    let err = citygate::config::load_str(&text, "gw.toml")
        .expect_err("a listener beyond loopback without a token must be refused")
        .to_string();
    assert!(err.contains("http.token_env"), "{err}");
    assert!(err.contains("0.0.0.0:9180"), "{err}");
    // With `token_env` naming a variable that is not set: `run::start` refuses.
    let text = config_with_http(
        dir.path(),
        "[http]\nlisten = \"0.0.0.0:0\"\ntoken_env = \"CG_OBS_TOKEN_UNSET\"\n",
    );
    let err = citygate::run::start(load_config(&text))
        .await
        .expect_err("no token: no gateway")
        .to_string();
    assert!(
        err.contains("CG_OBS_TOKEN_UNSET") && err.contains("not set"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_server_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config_with_http(dir.path(), "[http]\nenabled = false\n")).await;
    assert!(gw.http.is_none());
    gw.shutdown().await;
}

/// The value of the sample written exactly as `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A tool of the Debian `prometheus` package, which tests/run.sh installs.
fn prometheus_tool(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run tests/run.sh, which installs the Debian package `prometheus`",
        p.display()
    );
    p
}

/// Runs `promtool check metrics` on `text`; fails the test with its findings.
fn promtool_check(text: &str) {
    let mut child = std::process::Command::new(prometheus_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn scrape(addr: SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || get(addr, path, None))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config_with_http(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\n",
    ))
    .await;
    let addr = http_addr(&gw);
    let publisher = Publisher::connect(gw.local.port, "obs-pub").await;
    let now = citygate::clock::wall_s();
    for i in 0..20 {
        publisher.reading("s1", f64::from(i), now).await;
    }
    // Late: older than the sensor's open 1 s window.
    publisher.reading("s1", 99.0, now - 100.0).await;
    publisher
        .client
        .publish(
            "field/s2/value",
            rumqttc::QoS::AtLeastOnce,
            false,
            "not json",
        )
        .await
        .unwrap();
    let counted = eventually(Duration::from_secs(20), || {
        let s = gw.stats.snapshot();
        s.readings_in >= 21 && s.malformed >= 1
    })
    .await;
    assert!(counted, "{}", gw.stats.snapshot());
    let (code, text) = scrape(addr, "/metrics").await;
    assert_eq!(code, 200, "{text}");
    promtool_check(&text);
    let src = "{kind=\"mqtt\",source=\"test\"}";
    assert_eq!(
        sample(&text, &format!("citygate_readings_total{src}")),
        Some(21.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("citygate_readings_malformed_total{src}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &format!("citygate_readings_late_total{src}")),
        Some(1.0)
    );
    assert_eq!(sample(&text, "citygate_uplink_connected"), Some(1.0));
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&text, "process_cpu_seconds_total").unwrap() > 0.0);
    assert!(text.contains("citygate_build_info{version=\""), "{text}");
    drop(publisher);
    gw.shutdown().await;
}

/// A Prometheus server scraping `target` every second, with its data in `dir`.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: SocketAddr) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: citygate\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = std::process::Command::new(prometheus_tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The value of an instant query's first result, if any.
    fn query(&self, q: &'static str) -> Option<f64> {
        let (code, body) = try_get(self.addr, q, None).ok()?;
        if code != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_rising_readings_counter() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config_with_http(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\n",
    ))
    .await;
    let prom = std::sync::Arc::new(Prometheus::start(dir.path(), http_addr(&gw)));
    let publisher = Publisher::connect(gw.local.port, "obs-prom").await;
    const Q: &str = "/api/v1/query?query=sum%28citygate_readings_total%29";
    let mut seen: Vec<f64> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0.0;
    while tokio::time::Instant::now() < deadline {
        for _ in 0..5 {
            publisher.reading("p1", n, citygate::clock::wall_s()).await;
            n += 1.0;
        }
        let p = std::sync::Arc::clone(&prom);
        if let Some(v) = tokio::task::spawn_blocking(move || p.query(Q))
            .await
            .unwrap()
        {
            if seen.last() != Some(&v) {
                seen.push(v);
            }
        }
        if seen.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(
        seen.len() >= 3 && seen.windows(2).all(|w| w[1] > w[0]),
        "Prometheus saw citygate_readings_total {seen:?}; its log:\n{log}"
    );
    // The scrape itself is healthy.
    let p = std::sync::Arc::clone(&prom);
    let up = tokio::task::spawn_blocking(move || p.query("/api/v1/query?query=up"))
        .await
        .unwrap();
    assert_eq!(up, Some(1.0));
    drop(publisher);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_when_everything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config_with_http(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\n",
    ))
    .await;
    let addr = http_addr(&gw);
    // Every stage beats within a second or two of starting.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, body) = scrape(addr, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["alive"], true, "{v}");
    let (code, body) = scrape(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["ready"],
        true
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_uplink_down_past_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The uplink points at a port where nothing listens.
    let mut text = gateway_config(
        "gw-obs-down",
        port,
        &format!("mqtt://127.0.0.1:{}", free_port()),
        &dir.path().join("data"),
        1,
    );
    text.push_str("[http]\nlisten = \"127.0.0.1:0\"\nready_grace_s = 2\n");
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    wait_subscribed(&gw).await;
    let addr = http_addr(&gw);
    // Within the grace period the gateway is ready.
    let (code, body) = scrape(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, body) = scrape(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    let not = v["not_ready"].as_array().unwrap();
    assert_eq!(not.len(), 1, "{v}");
    assert_eq!(not[0]["check"], "uplink", "{v}");
    assert!(not[0]["reason"].as_str().unwrap().contains("down"), "{v}");
    // Still alive: the uplink task beats while it waits to reconnect.
    let (code, body) = scrape(addr, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    gw.shutdown().await;
}

/// `citygate demo` as a process with its HTTP server on a free port: the process, the
/// server's address (from what it prints) and the thread that reads the rest of its output.
fn start_demo(
    data: &std::path::Path,
) -> (
    std::process::Child,
    SocketAddr,
    std::thread::JoinHandle<usize>,
) {
    use std::io::BufRead;
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));
    let mut child = std::process::Command::new(bin)
        .args([
            "demo",
            "--seconds",
            "40",
            "--http",
            "127.0.0.1:0",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = lines
        .by_ref()
        .take(200)
        .map_while(Result::ok)
        .find_map(|l| {
            let rest = l.split("metrics http://").nth(1)?;
            rest.split("/metrics").next()?.parse().ok()
        })
        .expect("the demo prints the metrics address");
    // Keep reading its output so that it never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    (child, addr, drain)
}

#[test]
fn the_demo_prints_its_http_address_and_status_shows_the_modbus_devices() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, addr, drain) = start_demo(&data);
    let readings = || -> u64 {
        let (code, body) = get(addr, "/api/status", None);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["readings_in"].as_u64().unwrap()
    };
    std::thread::sleep(Duration::from_secs(3));
    let first = readings();
    std::thread::sleep(Duration::from_secs(3));
    assert!(readings() > first, "the readings counter rises");
    // `citygate status` on a config with the demo's data_dir.
    let cfg = dir.path().join("demo.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nid = \"gw-demo\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .arg("status")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for device in ["int-1", "int-2", "int-3", "flood-1"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("modbus {device}: ")))
            .unwrap_or_else(|| panic!("no line for {device}: {text}"));
        assert!(line.contains("online | requests "), "{line}");
        assert!(line.contains("late p50 "), "{line}");
    }
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    drain.join().unwrap();
}

/// The page's "readings in" figure as headless Chromium renders it after its scripts ran.
fn page_readings(addr: SocketAddr, screenshot: Option<&std::path::Path>) -> u64 {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "chromium is missing: run tests/run.sh, which installs the Debian package `chromium`"
    );
    let mut cmd = std::process::Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=412,915",
        "--virtual-time-budget=3000",
    ]);
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(format!("http://{addr}/")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if screenshot.is_some() {
        return 0;
    }
    let dom = String::from_utf8_lossy(&out.stdout);
    dom.split("data-key=\"readings in\">")
        .nth(1)
        .and_then(|r| r.split('<').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no readings figure on the page: {dom}"))
}

#[test]
fn the_status_page_in_headless_chromium_shows_the_readings_rise() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, drain) = start_demo(&dir.path().join("data"));
    let (code, html) = get(addr, "/", None);
    assert_eq!(code, 200);
    // Embedded and self-contained: nothing is loaded from elsewhere.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let first = page_readings(addr, None);
    std::thread::sleep(Duration::from_secs(3));
    let second = page_readings(addr, None);
    assert!(
        second > first,
        "readings on the page: {first} then {second}"
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("observe-status-page.png");
    page_readings(addr, Some(&shot));
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    drain.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_with_malformed_payload_warnings_rate_limited_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut text = gateway_config(
        "gw-obs-log",
        port,
        &format!("mqtt://127.0.0.1:{port}"),
        &dir.path().join("data"),
        1,
    );
    text.push_str("[http]\nenabled = false\n");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("gw.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_citygate-under-test"))
        .args(["--log-format", "json", "run"])
        .arg(&cfg)
        .env("RUST_LOG", "info,rumqttd=off")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_for_port(port, Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let publisher = Publisher::connect(port, "obs-garbage").await;
    for _ in 0..30 {
        publisher
            .client
            .publish(
                "field/g1/value",
                rumqttc::QoS::AtLeastOnce,
                false,
                "garbage",
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let malformed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("malformed payload"))
        })
        .collect();
    assert_eq!(malformed.len(), 5, "{text}");
    assert_eq!(malformed[0]["level"], "WARN");
    assert!(malformed[0]["fields"]["message"]
        .as_str()
        .unwrap()
        .starts_with("source test: malformed payload dropped: topic field/g1/value"));
    drop(publisher);
}
