//! Benchmark: readings/s from MQTT in to summaries in the outbox, side by side with the local
//! broker's own pub→sub rate for the same messages, and the gateway's peak RSS.
//!
//!     cargo build --release -p citygate-tests --bins --examples
//!     target/release/examples/bench_ingest [READINGS] [ROUNDS]
//!
//! The gateway runs as its own process (`citygate run`, embedded broker). Each round publishes
//! READINGS messages twice through that broker at QoS 1: once on `ref/...`, which only a plain
//! subscriber of this process reads (the broker's rate), and once on `field/...`, which the
//! gateway summarises (the gateway's rate: until every reading is counted in a summary on the
//! uplink). The ratio is gateway rate / broker rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citygate_protocols::{Body, Envelope};
use citygate_tests::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};

const SENSORS: usize = 100;

async fn subscriber(port: u16, filter: &str, counter: Arc<AtomicU64>, summaries: bool) {
    let id = if summaries {
        "bench-sub-summaries"
    } else {
        "bench-sub-reference"
    };
    subscribe_on_thread(port, id, filter, move |_, payload| {
        if !summaries {
            counter.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(Envelope {
            body: Body::Summary(s),
            ..
        }) = Envelope::from_json(payload)
        {
            counter.fetch_add(s.count, Ordering::Relaxed);
        }
    })
    .await;
}

/// Publishes `n` readings on `prefix/<sensor>/value`, then one reading per sensor in a later
/// window so that every window closes; returns when `done` reaches `n`.
async fn round(
    client: &AsyncClient,
    prefix: &str,
    n: usize,
    t0: f64,
    done: &AtomicU64,
) -> Duration {
    done.store(0, Ordering::Relaxed);
    let start = Instant::now();
    for i in 0..n {
        let sensor = i % SENSORS;
        let time = t0 + (i / SENSORS) as f64 * 0.001;
        client
            .publish(
                format!("{prefix}/s{sensor}/value"),
                QoS::AtLeastOnce,
                false,
                reading_payload(i as f64, time),
            )
            .await
            .unwrap();
    }
    if prefix == "field" {
        for s in 0..SENSORS {
            client
                .publish(
                    format!("field/s{s}/value"),
                    QoS::AtLeastOnce,
                    false,
                    reading_payload(0.0, t0 + 1e6),
                )
                .await
                .unwrap();
        }
    }
    while done.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_micros(500)).await;
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "round stalled at {}",
            done.load(Ordering::Relaxed)
        );
    }
    start.elapsed()
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("citygate-under-test");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        gateway_config(
            "bench",
            port,
            &format!("mqtt://127.0.0.1:{port}"),
            &dir.path().join("data"),
            10,
        ),
    )
    .unwrap();
    let gw = GatewayProcess::start(&bin, &cfg, &dir.path().join("gw.log"));
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "{}",
        gw.log_text()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let reference = Arc::new(AtomicU64::new(0));
    let summarised = Arc::new(AtomicU64::new(0));
    subscriber(port, "ref/+/value", Arc::clone(&reference), false).await;
    subscriber(
        port,
        "citygate/v1/bench/summary/#",
        Arc::clone(&summarised),
        true,
    )
    .await;
    let mut o = MqttOptions::new("bench-pub", "127.0.0.1", port);
    o.set_inflight(100).set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(o, 1024);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });

    println!("readings per round: {n}, sensors: {SENSORS}, rounds: {rounds}");
    println!("| round | broker pub→sub (msg/s) | gateway MQTT→outbox (readings/s) | ratio |");
    println!("|---|---|---|---|");
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let t0 = 1_700_000_000.0 + r as f64 * 1e7;
        let b = round(&client, "ref", n, t0, &reference).await;
        let g = round(&client, "field", n, t0, &summarised).await;
        let (br, gr) = (n as f64 / b.as_secs_f64(), n as f64 / g.as_secs_f64());
        ratios.push(gr / br);
        println!("| {} | {:.0} | {:.0} | {:.2} |", r + 1, br, gr, gr / br);
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median ratio: {:.2}", ratios[ratios.len() / 2]);
    println!(
        "gateway peak RSS (VmHWM): {:.1} MB",
        vm_hwm_kb(gw.child.id()) as f64 / 1024.0
    );
    gw.stop();
}
