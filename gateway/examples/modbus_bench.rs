//! Benchmark of the Modbus source: N simulated Modbus TCP devices × P points on loopback.
//!
//! The simulators run in a child process (this binary with `sim N`), so that only the
//! gateway side counts in the CPU and memory figures, which come from /proc/self.
//!
//! Phase 1 (jitter): 100 ms poll interval; poll-period jitter p50/p99: |Δt − interval| between
//! the starts of consecutive poll cycles of a device (the gateway's own histogram, 0.1 ms
//! buckets), and the same from the time stamps of the device's first reading per cycle (end
//! to end: it adds the simulator's answer time); points/s, requests/s, CPU.
//! Beside phase 1, a bare OS-timer thread sleeps to the same schedule: the machine's own floor
//! for jitter in the same window, so that a noisy machine shows in the reference too.
//! Phase 2 (throughput): a 10 ms poll interval (1,000,000 points/s asked for); points/s and
//! requests/s achieved, CPU.
//!
//! `cargo run --release -p citygate --example modbus_bench -- [devices] [points] [seconds] [workers]`
//! (defaults 100 100 10 1: one tokio worker thread, so the gateway side uses at most about
//! one core).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citygate::sources::modbus::config::{DataType, DeviceConfig, PointConfig, RegisterType};
use citygate::sources::modbus::stats::TIMING_BUCKETS;
use citygate::sources::modbus::{self};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("sim") {
        let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
        return simulators(n);
    }
    let devices: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let points: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let workers: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);

    let mut child = Command::new(std::env::current_exe()?)
        .arg("sim")
        .arg(devices.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut ports = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line == "READY" {
            break;
        }
        ports.push(line.trim().parse::<u16>()?);
    }
    anyhow::ensure!(
        ports.len() == devices,
        "simulator gave {} ports",
        ports.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        println!(
            "# {devices} devices x {points} points, Modbus TCP on loopback, {workers} tokio worker(s)"
        );
        let p1 = phase(&ports, points, 100, seconds).await?;
        p1.print("phase 1: poll interval 100 ms");
        let p2 = phase(&ports, points, 10, seconds).await?;
        p2.print("phase 2: poll interval 10 ms (throughput)");
        anyhow::Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "gateway peak RSS (VmHWM): {:.1} MB",
        vm_hwm_kb()? as f64 / 1024.0
    );
    result
}

struct PhaseResult {
    seconds: f64,
    readings: u64,
    requests: u64,
    errors: u64,
    cpu_s: f64,
    jitter_p50_ms: f64,
    jitter_p99_ms: f64,
    jitter_max_ms: f64,
    late_p50_ms: Option<f64>,
    late_p99_ms: Option<f64>,
    /// Poll-start period jitter p50, p99 (ms, bucket upper bounds).
    start_jitter: (Option<f64>, Option<f64>),
    /// The OS timer's own period jitter p50 and p99 (ms) over the same window.
    reference: Option<(f64, f64)>,
}

impl PhaseResult {
    fn print(&self, title: &str) {
        println!("## {title}");
        println!(
            "points/s: {:.0}   requests/s: {:.0}   errors: {}",
            self.readings as f64 / self.seconds,
            self.requests as f64 / self.seconds,
            self.errors
        );
        println!(
            "CPU: {:.2} cores ({:.2} s user+system in {:.1} s)",
            self.cpu_s / self.seconds,
            self.cpu_s,
            self.seconds
        );
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        println!(
            "poll-period jitter (poll starts): p50 < {} ms  p99 < {} ms",
            ms(self.start_jitter.0),
            ms(self.start_jitter.1)
        );
        println!(
            "poll-period jitter (reading time stamps, end to end): p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            self.jitter_p50_ms, self.jitter_p99_ms, self.jitter_max_ms
        );
        println!(
            "poll-start lateness vs schedule: p50 < {} ms  p99 < {} ms",
            ms(self.late_p50_ms),
            ms(self.late_p99_ms)
        );
        if let Some((p50, p99)) = self.reference {
            println!(
                "reference, a bare OS-timer thread on the same schedule: jitter p50 {p50:.3} ms  p99 {p99:.3} ms"
            );
        }
    }
}

fn device_config(i: usize, port: u16, points: usize, interval_ms: u64) -> DeviceConfig {
    let mut d = DeviceConfig::tcp(format!("dev-{i}"), format!("127.0.0.1:{port}"));
    d.poll_interval_ms = interval_ms;
    d.timeout_ms = 1000;
    // Mostly u16 points, every fifth an f32: 100 points take 120 registers, one request.
    let mut address = 0u16;
    for k in 0..points {
        let mut p = PointConfig::new(format!("p{k}"), RegisterType::HoldingRegister, address);
        if k % 5 == 4 {
            p = p.with_type(DataType::F32);
        }
        address += p.width();
        d.points.push(p);
    }
    d
}

async fn phase(
    ports: &[u16],
    points: usize,
    interval_ms: u64,
    seconds: u64,
) -> anyhow::Result<PhaseResult> {
    let devices: Vec<DeviceConfig> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| device_config(i, *p, points, interval_ms))
        .collect();
    let (rt, mut rr) = tokio::sync::mpsc::channel::<citygate_protocols::Reading>(10_000);
    let (et, mut er) = tokio::sync::mpsc::channel(1000);
    let h = modbus::spawn(devices, rt, et).map_err(|e| anyhow::anyhow!("{e}"))?;
    tokio::spawn(async move { while er.recv().await.is_some() {} });
    let interval = interval_ms as f64 / 1000.0;
    // The consumer: counts readings and measures the period of each device's cycles, from
    // the time stamp of its first point. It only records while `recording` is set.
    let recording = Arc::new(AtomicBool::new(false));
    let flag = recording.clone();
    let consumer = tokio::spawn(async move {
        let mut readings = 0u64;
        let mut last_cycle: HashMap<String, f64> = HashMap::new();
        let mut jitter: Vec<f64> = Vec::new();
        while let Some(r) = rr.recv().await {
            if !flag.load(Ordering::Relaxed) {
                last_cycle.clear();
                continue;
            }
            readings += 1;
            if r.quantity == "p0" {
                if let Some(prev) = last_cycle.insert(r.sensor, r.time) {
                    jitter.push(((r.time - prev) - interval).abs() * 1000.0);
                }
            }
        }
        (readings, jitter)
    });
    // Warm up: connect and settle for a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats0 = h.stats();
    let cpu0 = cpu_seconds("/proc/self/stat")?;
    let start = Instant::now();
    recording.store(true, Ordering::Relaxed);
    let reference = (interval_ms >= 100).then(|| {
        let stop = recording.clone();
        let (period, n) = (Duration::from_millis(interval_ms), ports.len());
        std::thread::spawn(move || os_timer_reference(&stop, period, n))
    });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    recording.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let reference = match reference {
        Some(t) => Some(
            t.join()
                .map_err(|_| anyhow::anyhow!("reference thread panicked"))??,
        ),
        None => None,
    };
    // The reference thread's own CPU is not the gateway's.
    let cpu = cpu_seconds("/proc/self/stat")? - cpu0 - reference.as_ref().map_or(0.0, |r| r.2);
    let stats1 = h.stats();
    h.shutdown().await;
    let (readings, mut jitter) = consumer.await?;
    let sum = |s: &[modbus::DeviceStats], f: fn(&modbus::DeviceStats) -> u64| -> u64 {
        s.iter().map(f).sum()
    };
    jitter.sort_by(f64::total_cmp);
    let pct = |q: f64| -> f64 {
        if jitter.is_empty() {
            return f64::NAN;
        }
        let i = ((jitter.len() - 1) as f64 * q).round() as usize;
        jitter.get(i).copied().unwrap_or(f64::NAN)
    };
    let (mut late, mut start_jitter) = ([0u64; TIMING_BUCKETS], [0u64; TIMING_BUCKETS]);
    for (a, b) in stats1.iter().zip(&stats0) {
        for k in 0..TIMING_BUCKETS {
            late[k] += a.lateness[k] - b.lateness[k];
            start_jitter[k] += a.period_jitter[k] - b.period_jitter[k];
        }
    }
    let q = modbus::DeviceStats::quantile_ms;
    Ok(PhaseResult {
        reference: reference.map(|r| (r.0, r.1)),
        late_p50_ms: q(&late, 0.5),
        late_p99_ms: q(&late, 0.99),
        start_jitter: (q(&start_jitter, 0.5), q(&start_jitter, 0.99)),
        seconds: elapsed,
        readings,
        requests: sum(&stats1, |s| s.requests) - sum(&stats0, |s| s.requests),
        errors: sum(&stats1, |s| s.errors) - sum(&stats0, |s| s.errors),
        cpu_s: cpu,
        jitter_p50_ms: pct(0.5),
        jitter_p99_ms: pct(0.99),
        jitter_max_ms: jitter.last().copied().unwrap_or(f64::NAN),
    })
}

/// The machine's own floor for poll jitter, measured beside the gateway in the same window:
/// one thread that sleeps with the OS timer (`std::thread::sleep`, no async runtime) to the
/// schedule `devices` devices at `period` make (one wake every `period / devices`). Its period
/// jitter per slot is |Δt − period| between consecutive wakes of the slot, as for the gateway.
/// Returns jitter p50 and p99 (ms) and the thread's own CPU seconds.
fn os_timer_reference(
    recording: &AtomicBool,
    period: Duration,
    devices: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let devices = devices.max(1);
    let step = period / devices as u32;
    let mut due = Instant::now() + step;
    let mut last = vec![None::<Instant>; devices];
    let mut jitter = Vec::new();
    let mut k = 0usize;
    while recording.load(Ordering::Relaxed) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let woke = Instant::now();
        if let Some(prev) = last[k % devices].replace(woke) {
            let dt = woke.duration_since(prev).as_secs_f64();
            jitter.push((dt - period.as_secs_f64()).abs() * 1000.0);
        }
        due += step;
        k += 1;
    }
    jitter.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        jitter
            .get(((jitter.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok((pct(0.5), pct(0.99), cpu_seconds("/proc/thread-self/stat")?))
}

/// utime + stime of a process or thread (`/proc/.../stat`), in seconds (ticks of 1/100 s).
fn cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("bad /proc/self/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    Ok((utime + stime) / 100.0)
}

fn vm_hwm_kb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))
}

/// The simulator process: `n` Modbus TCP servers, each with 2000 holding registers whose
/// values change on every read. Prints one port per line, then `READY`.
fn simulators(n: usize) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::Arc;
    use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

    #[derive(Clone)]
    struct Sim(Arc<AtomicU16>);
    impl tokio_modbus::server::Service for Sim {
        type Request = SlaveRequest<'static>;
        type Response = Response;
        type Exception = ExceptionCode;
        type Future = std::future::Ready<Result<Response, ExceptionCode>>;
        fn call(&self, req: Self::Request) -> Self::Future {
            let tick = self.0.fetch_add(1, Ordering::Relaxed);
            std::future::ready(match req.request {
                Request::ReadHoldingRegisters(a, n) if u32::from(a) + u32::from(n) <= 2000 => {
                    Ok(Response::ReadHoldingRegisters(
                        (0..n)
                            .map(|i| tick.wrapping_add(a).wrapping_add(i))
                            .collect(),
                    ))
                }
                _ => Err(ExceptionCode::IllegalDataAddress),
            })
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for _ in 0..n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("{}", l.local_addr()?.port());
            listeners.push(l);
        }
        println!("READY");
        let mut tasks = Vec::new();
        for l in listeners {
            tasks.push(tokio::spawn(async move {
                let sim = Sim(Arc::new(AtomicU16::new(0)));
                let server = tokio_modbus::server::tcp::Server::new(l);
                let on_connected = |stream, _| {
                    let sim = sim.clone();
                    async move { Ok(Some((sim, stream))) }
                };
                let _ = server.serve(&on_connected, |_| {}).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok(())
    })
}
