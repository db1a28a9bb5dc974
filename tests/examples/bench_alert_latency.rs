//! Benchmark: latency from a reading that crosses a hazard threshold, published on the
//! gateway's local broker, to the CAP alert received from the uplink broker (mosquitto), under
//! a background load of 10,000 readings/s.
//!
//!     cargo build --release -p citygate-tests --bins --examples
//!     target/release/examples/bench_alert_latency [ALERTS]
//!
//! 200 hazard groups of one sensor each take turns: the bench publishes a reading above the
//! raise level, waits for that group's `Alert` message on the uplink, then clears it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citygate_protocols::cap::{Alert, MsgType};
use citygate_protocols::{Body, Envelope};
use citygate_tests::*;

const GROUPS: usize = 200;

fn hazard_config() -> String {
    let mut s = String::from(
        "\n[hazard]\nsender = \"citygate.bench@city.example\"\nidentifier_prefix = \"bench\"\nmin_update_interval_s = 0.001\n",
    );
    for g in 0..GROUPS {
        s += &format!(
            r#"
[[hazard.groups]]
id = "g{g}"
sensors = ["a{g}"]
quantity = "level"
rule = {{ kind = "threshold" }}
k = 1
persistence_s = 0
event = "Flood"
area = {{ desc = "bench area {g}", circle = {{ lat = 52.0, lon = 4.0, radius_km = 1.0 }} }}

[[hazard.groups.levels]]
name = "warning"
raise = 1.0
clear = 0.5
urgency = "Immediate"
severity = "Severe"
certainty = "Observed"
headline = "bench"
"#
        );
    }
    s
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn alert_listener(port: u16) -> Arrivals {
    let arrivals: Arrivals = Arc::default();
    let a = Arc::clone(&arrivals);
    subscribe_on_thread(
        port,
        "bench-alerts",
        "citygate/v1/bench-h/alert/#",
        move |_, payload| {
            let at = Instant::now();
            if let Ok(Envelope {
                body: Body::Alert { cap, .. },
                ..
            }) = Envelope::from_json(payload)
            {
                if let Ok(alert) = Alert::from_xml(&cap) {
                    if alert.msg_type == MsgType::Alert {
                        // identifier: bench.<group>.<incident>.<n>
                        let group = alert.identifier.split('.').nth(1).unwrap_or("").to_string();
                        a.lock().unwrap().insert(group, at);
                    }
                }
            }
        },
    )
    .await;
    arrivals
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let alerts: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("citygate-under-test");
    let mosq = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        gateway_config("bench-h", port, &mosq.url(), &dir.path().join("data"), 10)
            + &hazard_config(),
    )
    .unwrap();
    let gw = GatewayProcess::start(&bin, &cfg, &dir.path().join("gw.log"));
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "{}",
        gw.log_text()
    );
    let arrivals = alert_listener(mosq.port).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Background load: 10,000 readings/s on 100 other sensors, from a thread of its own.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent_bg = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent_bg));
    let bg = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let p = Publisher::connect(port, "bench-bg").await;
            let start = Instant::now();
            let mut n = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * 10_000.0) as u64;
                while n < due {
                    p.reading(
                        &format!("bg{}", n % 100),
                        (n % 7) as f64,
                        1_700_000_000.0 + n as f64 * 1e-4,
                    )
                    .await;
                    n += 1;
                }
                sent2.store(n, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    });
    let trigger = Publisher::connect(port, "bench-trigger").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let load_start = Instant::now();
    let bg_start = sent_bg.load(std::sync::atomic::Ordering::Relaxed);
    let mut lat = Vec::with_capacity(alerts);
    for i in 0..alerts {
        let g = format!("g{}", i % GROUPS);
        arrivals.lock().unwrap().remove(&g);
        let sent = Instant::now();
        trigger
            .reading(&format!("a{}", i % GROUPS), 2.0, 1_700_000_000.0)
            .await;
        loop {
            if let Some(at) = arrivals.lock().unwrap().get(&g) {
                lat.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "alert {i} never arrived: {}",
                gw.log_text()
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        trigger
            .reading(&format!("a{}", i % GROUPS), 0.0, 1_700_000_000.0)
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bg_rate = (sent_bg.load(std::sync::atomic::Ordering::Relaxed) - bg_start) as f64
        / load_start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = bg.join();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "alerts: {}, background load: {:.0} readings/s",
        lat.len(),
        bg_rate
    );
    println!(
        "latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    gw.stop();
}
