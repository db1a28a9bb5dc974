//! Benchmark: the whole Modbus pipeline to the uplink, and the gateway's memory over time.
//!
//!     cargo build --release -p citygate-tests --bins --examples
//!     target/release/examples/bench_modbus_pipeline WINDOW_S SECONDS [CONNECTIONS] [DEVICES] [POINTS]
//!
//! (defaults 1 180 1 100 100). One pymodbus server (`tests/py/modbus_sim.py`, the interpreter
//! of `CITYGATE_PYTHON` or `.venv`) serves DEVICES unit ids × POINTS holding registers on one
//! port; the gateway runs as its own process (`citygate run`, embedded local broker) and polls
//! every unit as a device every 100 ms (over CONNECTIONS connections), summarises every point
//! in WINDOW_S windows and uplinks the summaries to mosquitto, where a subscriber adds up
//! their counts. Every second the bench samples the gateway's RSS (`/proc/PID/status` VmRSS)
//! and, from `status.json`, the readings it took in. At the end it stops the gateway (SIGTERM:
//! the open windows are closed into the outbox and drained) and compares the points delivered
//! (the sum of the summaries' counts at the uplink) with the points read (`readings in`).
//! Printed: RSS median and peak over the run and per minute, readings/s per minute, CPU.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citygate_protocols::{Body, Envelope};
use citygate_tests::modbus::{python, wait_listening};
use citygate_tests::*;

const POLL_MS: u64 = 100;

struct Args {
    window_s: u32,
    seconds: u64,
    connections: u16,
    devices: usize,
    points: usize,
}

fn args() -> Args {
    let a: Vec<String> = std::env::args().collect();
    let get = |i: usize, d: u64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    Args {
        window_s: get(1, 1) as u32,
        seconds: get(2, 180),
        connections: get(3, 1) as u16,
        devices: get(4, 100) as usize,
        points: get(5, 100) as usize,
    }
}

fn config(a: &Args, dir: &Path, local: u16, sim: u16, uplink: u16) -> String {
    let points: Vec<String> = (0..a.points)
        .map(|k| {
            format!("  {{ name = \"p{k}\", register = \"holding_register\", address = {k} }},")
        })
        .collect();
    let mut t = format!(
        "[gateway]\nid = \"gw-bench\"\ndata_dir = \"{}\"\n\n[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{local}\"\n\n[summaries]\nwindow_s = {}\n\n[uplink]\nurl = \"mqtt://127.0.0.1:{uplink}\"\n\n[[sources.modbus_maps]]\nname = \"bench\"\npoints = [\n{}\n]\n",
        dir.join("data").display(),
        a.window_s,
        points.join("\n")
    );
    for i in 1..=a.devices {
        t.push_str(&format!(
            "\n[[sources.modbus]]\nname = \"dev-{i}\"\ntcp = \"127.0.0.1:{sim}\"\nunit_id = {i}\npoll_interval_ms = {POLL_MS}\ntimeout_ms = 1000\nmap = \"bench\"\n"
        ));
        if a.connections > 1 {
            t.push_str(&format!("connections = {}\n", a.connections));
        }
    }
    t
}

fn proc_field_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn readings_in(data: &Path) -> Option<u64> {
    let s = citygate::status::StatusFile::read(data).ok()?;
    s.status.get("readings_in")?.as_u64()
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The uplink subscriber's tally.
#[derive(Default)]
struct Uplinked {
    messages: AtomicU64,
    bytes: AtomicU64,
    points: AtomicU64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let a = args();
    let py = python().expect("pymodbus interpreter (CITYGATE_PYTHON or .venv)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/modbus_sim.py");
    let sim_port = free_port();
    let mut sim = tokio::process::Command::new(&py)
        .arg(&script)
        .args([
            sim_port.to_string(),
            a.devices.to_string(),
            a.points.to_string(),
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("start the pymodbus simulator");
    wait_listening(format!("127.0.0.1:{sim_port}").parse().unwrap()).await;
    let mosq = Mosquitto::start();
    let up = Arc::new(Uplinked::default());
    let u = Arc::clone(&up);
    subscribe_on_thread(
        mosq.port,
        "bench-uplink",
        "citygate/v1/gw-bench/#",
        move |_, payload| {
            u.messages.fetch_add(1, Ordering::Relaxed);
            u.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
            if let Ok(Envelope {
                body: Body::Summary(s),
                ..
            }) = Envelope::from_json(payload)
            {
                u.points.fetch_add(s.count, Ordering::Relaxed);
            }
        },
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, config(&a, dir.path(), local, sim_port, mosq.port)).unwrap();
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("citygate-under-test");
    let gw = GatewayProcess::start_listening(&bin, &cfg, &dir.path().join("gw.log"), local);
    let pid = gw.child.id();
    let data = dir.path().join("data");
    println!(
        "# {} devices x {} points on one pymodbus server, {POLL_MS} ms poll, {} s windows, {} connection(s), {} s",
        a.devices, a.points, a.window_s, a.connections, a.seconds
    );
    let start = Instant::now();
    let cpu0 = cpu_s(pid);
    let mut rss = Vec::new();
    let mut minute: Vec<u64> = Vec::new();
    let mut read_at_minute = readings_in(&data).unwrap_or(0);
    println!("| minute | RSS median (MB) | RSS max (MB) | readings/s |");
    println!("|---|---|---|---|");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for s in 1..=a.seconds {
        tick.tick().await;
        let kb = proc_field_kb(pid, "VmRSS:");
        rss.push(kb);
        minute.push(kb);
        if s % 60 == 0 || s == a.seconds {
            let read = readings_in(&data).unwrap_or(read_at_minute);
            let secs = minute.len() as f64;
            let max = minute.iter().max().copied().unwrap_or(0);
            println!(
                "| {} | {:.1} | {:.1} | {:.0} |",
                s.div_ceil(60),
                median(&mut minute) as f64 / 1024.0,
                max as f64 / 1024.0,
                (read - read_at_minute) as f64 / secs
            );
            read_at_minute = read;
            minute.clear();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_s(pid) - cpu0;
    let hwm = proc_field_kb(pid, "VmHWM:");
    let log = gw.log.clone();
    let status = gw.stop();
    let _ = sim.start_kill();
    // The final status line the gateway prints after its shutdown.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let last = text
        .lines()
        .rfind(|l| l.starts_with("readings in "))
        .unwrap_or_default()
        .to_string();
    let read: u64 = last
        .strip_prefix("readings in ")
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered = up.points.load(Ordering::Relaxed);
    let messages = up.messages.load(Ordering::Relaxed);
    let bytes = up.bytes.load(Ordering::Relaxed);
    println!("gateway exit: {status}; final status: {last}");
    println!(
        "RSS median {:.1} MB, max sampled {:.1} MB, peak (VmHWM) {:.1} MB",
        median(&mut rss) as f64 / 1024.0,
        rss.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "CPU {:.2} cores; points read {read} ({:.0}/s), delivered {delivered}: {}",
        cpu / elapsed,
        read as f64 / elapsed,
        if delivered == read {
            "all".to_string()
        } else {
            format!("MISSING {}", read as i64 - delivered as i64)
        }
    );
    println!(
        "uplink: {messages} messages, {bytes} bytes; per 1,000 readings: {:.1} messages, {:.0} bytes",
        messages as f64 * 1000.0 / read.max(1) as f64,
        bytes as f64 * 1000.0 / read.max(1) as f64
    );
}
