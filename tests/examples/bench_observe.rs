//! Benchmark: what the HTTP server (metrics, health) costs the gateway, side by side in one
//! run at the ingest benchmark's rate (publishing as fast as QoS 1 allows).
//!
//!     cargo build --release -p citygate-tests --bins --examples
//!     target/release/examples/bench_observe [READINGS] [ROUNDS]
//!
//! Two gateways run as their own processes (`citygate run`, embedded broker, the ingest
//! benchmark's config): one with `[http] enabled = false`, one with the HTTP server on and
//! scraped once a second (`/metrics`, `/healthz`, `/readyz`, like a Prometheus server and a
//! probe). Rounds alternate between them: READINGS readings on `field/...`, until the
//! summaries on the uplink account for every one. Per round: the gateway's CPU time (user +
//! system from `/proc/<pid>/stat`) per 100,000 readings; at the end, each one's peak RSS.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citygate_protocols::{Body, Envelope};
use citygate_tests::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};

const SENSORS: usize = 100;

struct Gw {
    process: GatewayProcess,
    client: AsyncClient,
    summarised: Arc<AtomicU64>,
}

async fn start(dir: &std::path::Path, name: &str, http: &str) -> Gw {
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("citygate-under-test");
    let port = free_port();
    let cfg = dir.join(format!("{name}.toml"));
    let mut text = gateway_config(
        name,
        port,
        &format!("mqtt://127.0.0.1:{port}"),
        &dir.join(name),
        10,
    );
    text.push_str(http);
    std::fs::write(&cfg, text).unwrap();
    let process =
        GatewayProcess::start_listening(&bin, &cfg, &dir.join(format!("{name}.log")), port);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let summarised = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&summarised);
    subscribe_on_thread(
        port,
        &format!("{name}-sub"),
        &format!("citygate/v1/{name}/summary/#"),
        move |_, payload| {
            if let Ok(Envelope {
                body: Body::Summary(s),
                ..
            }) = Envelope::from_json(payload)
            {
                c.fetch_add(s.count, Ordering::Relaxed);
            }
        },
    )
    .await;
    let mut o = MqttOptions::new(format!("{name}-pub"), "127.0.0.1", port);
    o.set_inflight(100).set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(o, 1024);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    Gw {
        process,
        client,
        summarised,
    }
}

/// User + system CPU seconds of process `pid`.
fn cpu_s(pid: u32, ticks_per_s: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / ticks_per_s
}

fn vm_hwm_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// One round on `gw`: `n` readings, then one per sensor in a later window; returns the
/// readings/s and the CPU seconds the gateway used.
async fn round(gw: &Gw, n: usize, t0: f64, ticks: f64) -> (f64, f64) {
    gw.summarised.store(0, Ordering::Relaxed);
    let pid = gw.process.child.id();
    let cpu0 = cpu_s(pid, ticks);
    let start = Instant::now();
    for i in 0..n {
        let time = t0 + (i / SENSORS) as f64 * 0.001;
        gw.client
            .publish(
                format!("field/s{}/value", i % SENSORS),
                QoS::AtLeastOnce,
                false,
                reading_payload(i as f64, time),
            )
            .await
            .unwrap();
    }
    for s in 0..SENSORS {
        gw.client
            .publish(
                format!("field/s{s}/value"),
                QoS::AtLeastOnce,
                false,
                reading_payload(0.0, t0 + 1e6),
            )
            .await
            .unwrap();
    }
    while gw.summarised.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_micros(500)).await;
        assert!(start.elapsed() < Duration::from_secs(300), "round stalled");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (rate, cpu_s(pid, ticks) - cpu0)
}

/// GETs `path` from `port` and reads the whole answer.
fn scrape(port: u16, path: &str) -> usize {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let ticks: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let off = start(dir.path(), "bench-off", "[http]\nenabled = false\n").await;
    let on = start(
        dir.path(),
        "bench-on",
        &format!("[http]\nlisten = \"127.0.0.1:{http_port}\"\n"),
    )
    .await;
    assert!(
        scrape(http_port, "/metrics") > 1000,
        "no metrics from the gateway"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for p in ["/metrics", "/healthz", "/readyz"] {
                    scrape(http_port, p);
                }
                scrapes += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        })
    };

    println!("readings per round: {n}, sensors: {SENSORS}, rounds: {rounds} (each: off, then on)");
    println!("| round | http | readings/s | gateway CPU s per 100k readings |");
    println!("|---|---|---|---|");
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let t0 = 1_700_000_000.0 + r as f64 * 1e7;
        let (rate_off, cpu_off) = round(&off, n, t0, ticks).await;
        let (rate_on, cpu_on) = round(&on, n, t0, ticks).await;
        let per = |c: f64| c / n as f64 * 100_000.0;
        println!("| {} | off | {rate_off:.0} | {:.3} |", r + 1, per(cpu_off));
        println!("| {} | on | {rate_on:.0} | {:.3} |", r + 1, per(cpu_on));
        ratios.push(cpu_on / cpu_off);
    }
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let total = |g: &Gw| cpu_s(g.process.child.id(), ticks);
    let (hwm_off, hwm_on) = (
        vm_hwm_mb(off.process.child.id()),
        vm_hwm_mb(on.process.child.id()),
    );
    println!(
        "CPU on/off per round: median {:.3} (all: {:?})",
        ratios[ratios.len() / 2],
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>()
    );
    println!(
        "whole run CPU s: off {:.2}, on {:.2}; scrapes of /metrics + /healthz + /readyz: {scrapes}",
        total(&off),
        total(&on)
    );
    println!(
        "peak RSS (VmHWM): off {hwm_off:.1} MB, on {hwm_on:.1} MB, difference {:+.1} MB",
        hwm_on - hwm_off
    );
    off.process.stop();
    on.process.stop();
}
