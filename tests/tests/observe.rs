//! End-to-end tests of the gateway's HTTP server (`[http]`): bearer tokens, `/metrics` (checked
//! by `promtool` and scraped by a real Prometheus server), `/healthz` and `/readyz`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use citygate_tests::*;

/// One HTTP/1.1 GET; returns the status code and the body.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
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
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
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
