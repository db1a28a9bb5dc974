//! Adaptive signal control end to end: the gateway process drives a virtual signal controller
//! (the real firmware behind Modbus TCP) whose detector loops follow scripted traces. A
//! monitor inside the virtual device checks every firmware tick (10 ms) for conflicting open
//! signal groups and cut minimum greens, yellows and intergreens; the firmware's own conflict
//! monitor and rejected-commands register are read over Modbus at the end.

use std::path::Path;
use std::time::Duration;

use citygate::sim::virtual_device::{Device, VirtualDevice};
use citygate_firmware::bank::SignalBank;
use citygate_firmware::modbus::RegisterBank;
use citygate_firmware::signal::demo::crossroads;
use citygate_firmware::signal::{GroupConfig, IntergreenMatrix, Plan, SignalController};
use citygate_protocols::registers::signal_controller::{self as reg, Mode};
use citygate_protocols::signal::SignalState;
use citygate_protocols::Body;
use citygate_tests::{
    eventually, free_port, gateway_config, start_gateway, Collector, GatewayProcess, Mosquitto,
};

const TICK: Duration = Duration::from_millis(10);
const MIN_GREEN_MS: u64 = 2_000;
const MAX_GREEN_MS: u64 = 12_000;
const YELLOW_MS: u64 = 1_500;
const INTERGREEN_MS: u64 = 2_000;
const WATCHDOG_MS: u32 = 6_000;
/// A day of demand compressed into this many milliseconds (2 s an hour).
const DAY_MS: u64 = 48_000;

/// Vehicles per second on detector `d` (0 N, 1 E, 2 S, 3 W) at hour `h` of the compressed
/// day: a north–south morning peak, an east–west evening peak, light traffic otherwise.
fn rate(d: usize, h: u64) -> f64 {
    let ns = d.is_multiple_of(2);
    match h {
        4..=12 if ns => 1.5,
        14..=22 if !ns => 1.5,
        4..=12 | 14..=22 => 0.0,
        _ => 0.15,
    }
}

/// Whether a vehicle occupies loop `d` at `t_ms` into the day: evenly spaced arrivals at the
/// hour's rate, each on the loop for 250 ms.
fn occupied(d: usize, t_ms: u64) -> bool {
    let h = (t_ms * 24 / DAY_MS).min(23);
    let r = rate(d, h);
    let t = t_ms as f64 / 1000.0 + d as f64 * 0.29;
    (t * r).fract() < 0.25 * r
}

/// What the monitor saw.
#[derive(Debug, Default, Clone)]
struct Log {
    violations: Vec<String>,
    /// Per hour of the day, green milliseconds of groups NS and EW.
    green_ms: [[u64; 2]; 24],
    /// (ms, mode) at every mode change.
    modes: Vec<(u64, Mode)>,
    /// (ms, stage 0-based) whenever a stage became fully green.
    stages: Vec<(u64, usize)>,
    day_started: Option<u64>,
}

/// The firmware with scripted detector traces and an independent safety monitor.
struct Traced {
    bank: SignalBank,
    /// Detector stuck occupied from this time (ms), if any.
    stuck: Option<(usize, u64)>,
    prev: [SignalState; 2],
    since: [u64; 2],
    green_end: [Option<u64>; 2],
    last: u64,
    stage: Option<usize>,
    log: Log,
}

fn firmware() -> citygate_firmware::signal::ControllerConfig {
    let mut cfg = crossroads().expect("the demo crossroads is valid");
    cfg.groups.clear();
    for _ in 0..2 {
        let _ = cfg.groups.push(GroupConfig::vehicle(
            MIN_GREEN_MS as u32,
            MAX_GREEN_MS as u32,
            YELLOW_MS as u32,
        ));
    }
    let mut ig = IntergreenMatrix::new();
    ig.set_conflict(0, 1, INTERGREEN_MS as u32, INTERGREEN_MS as u32);
    cfg.intergreen = ig;
    cfg.plans.clear();
    let _ = cfg
        .plans
        .push(Plan::from_steps(&[(0, 5_000), (1, 5_000)]).expect("plan"));
    cfg.watchdog_timeout_ms = WATCHDOG_MS;
    cfg.startup_all_red_ms = 1_000;
    cfg.detector_debounce_ms = 20;
    cfg.detector_interval_ms = 1_000;
    cfg
}

impl Traced {
    fn new() -> Traced {
        let c = SignalController::new(firmware(), 0).expect("valid firmware config");
        Traced {
            bank: SignalBank::new(c),
            stuck: None,
            prev: [SignalState::Red; 2],
            since: [0; 2],
            green_end: [None; 2],
            last: 0,
            stage: None,
            log: Log::default(),
        }
    }

    fn check(&mut self, now: u64) {
        let c = self.bank.controller();
        let st = c.status();
        if self.log.modes.last().map(|m| m.1) != Some(st.mode) {
            self.log.modes.push((now, st.mode));
            if st.mode == Mode::Central && self.log.day_started.is_none() {
                self.log.day_started = Some(now);
            }
        }
        if st.current_stage != self.stage {
            if let Some(s) = st.current_stage {
                self.log.stages.push((now, s));
            }
            self.stage = st.current_stage;
        }
        if st.fault.is_some() {
            self.log.violations.push(format!(
                "{now} ms: conflict monitor latched: {:?}",
                st.fault
            ));
        }
        let states = [c.group_states()[0], c.group_states()[1]];
        if states[0].is_open() && states[1].is_open() {
            self.log
                .violations
                .push(format!("{now} ms: conflicting groups open: {states:?}"));
        }
        let dt = now - self.last;
        if let Some(day) = self.log.day_started {
            let h = ((now - day) * 24 / DAY_MS) as usize;
            if h < 24 {
                for (ms, s) in self.log.green_ms[h].iter_mut().zip(states) {
                    if s == SignalState::Green {
                        *ms += dt;
                    }
                }
            }
        }
        for (g, &s) in states.iter().enumerate() {
            let p = self.prev[g];
            if p == s {
                continue;
            }
            let held = now - self.since[g];
            // one firmware tick of slack: the monitor samples every 10 ms
            match (p, s) {
                (SignalState::Green, _) if held + 20 < MIN_GREEN_MS => self
                    .log
                    .violations
                    .push(format!("{now} ms: group {g} green cut after {held} ms")),
                (SignalState::Yellow, _) if held + 20 < YELLOW_MS => self
                    .log
                    .violations
                    .push(format!("{now} ms: group {g} yellow cut after {held} ms")),
                (SignalState::Red, _) => {
                    if let Some(end) = self.green_end[1 - g] {
                        if now - end + 20 < INTERGREEN_MS {
                            self.log.violations.push(format!(
                                "{now} ms: group {g} starts {} ms after the other ended",
                                now - end
                            ));
                        }
                    }
                }
                _ => {}
            }
            if p == SignalState::Green {
                self.green_end[g] = Some(now);
            }
            self.prev[g] = s;
            self.since[g] = now;
        }
        self.last = now;
    }
}

impl Device for Traced {
    fn bank(&mut self) -> &mut dyn RegisterBank {
        &mut self.bank
    }

    fn tick(&mut self, now: u64) {
        let t = self.log.day_started.map_or(0, |d| now.saturating_sub(d));
        for d in 0..4 {
            let stuck = self.stuck.is_some_and(|(s, from)| s == d && now >= from);
            let occ = stuck || (self.log.day_started.is_some() && occupied(d, t));
            self.bank
                .controller_mut()
                .detectors_mut()
                .sample(d, occ, now);
        }
        self.bank.tick(now);
        self.check(now);
    }
}

/// The gateway's config: the test broker settings plus the virtual controller and its
/// intersection (stage and group order as in the firmware).
fn config(id: &str, local: u16, uplink: &str, data: &Path, device: &str) -> String {
    let mut c = gateway_config(id, local, uplink, data, 60);
    c.push_str(&format!(
        r#"
[[sources.modbus]]
name = "int-t"
tcp = "{device}"
map = "citygate-signal-controller"
poll_interval_ms = 100
timeout_ms = 500

[[intersection]]
id = "int-t"
controller = "actuated"
actuation = {{ modbus_device = "int-t" }}
gap_s = 2.0
stuck_on_s = 4.0
stuck_off_s = 120.0
no_data_s = 10.0
conflicts = [["NS", "EW"]]

[[intersection.signal_group]]
id = "NS"
approach = "north-south"
movements = ["through"]
lanes = ["n_in_0", "s_in_0"]
min_green_s = {min}
max_green_s = {max}
yellow_s = {yellow}

[[intersection.signal_group]]
id = "EW"
approach = "east-west"
movements = ["through"]
lanes = ["e_in_0", "w_in_0"]
min_green_s = {min}
max_green_s = {max}
yellow_s = {yellow}

[[intersection.stage]]
id = "NS"
green = ["NS"]

[[intersection.stage]]
id = "EW"
green = ["EW"]

[[intersection.intergreen]]
from = "NS"
to = "EW"
seconds = {ig}

[[intersection.intergreen]]
from = "EW"
to = "NS"
seconds = {ig}
"#,
        min = MIN_GREEN_MS as f64 / 1000.0,
        max = MAX_GREEN_MS as f64 / 1000.0,
        yellow = YELLOW_MS as f64 / 1000.0,
        ig = INTERGREEN_MS as f64 / 1000.0,
    ));
    for (i, (d, g)) in [
        ("det-n", "NS"),
        ("det-e", "EW"),
        ("det-s", "NS"),
        ("det-w", "EW"),
    ]
    .iter()
    .enumerate()
    {
        c.push_str(&format!(
            "\n[[intersection.detector]]\nid = \"{d}\"\nkind = \"stop_bar\"\nlanes = []\ndistance_m = 1.0\ngroups = [\"{g}\"]\nsource = {{ sensor = \"int-t\", quantity = \"detector_vehicles_{n}\", presence = \"detector_occupied_{n}\", interval_s = 1.0 }}\n",
            n = i + 1
        ));
    }
    c
}

struct Bench {
    _mosq: Mosquitto,
    collector: Collector,
    device: VirtualDevice<Traced>,
    dir: tempfile::TempDir,
    cfg_path: std::path::PathBuf,
}

impl Bench {
    async fn start(id: &str) -> Bench {
        let mosq = Mosquitto::start();
        let collector = Collector::start(mosq.port, id).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let device = VirtualDevice::start(listener, 1, Traced::new(), TICK).expect("device");
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("gw.toml");
        let text = config(
            id,
            free_port(),
            &mosq.url(),
            &dir.path().join("data"),
            &device.addr.to_string(),
        );
        std::fs::write(&cfg_path, text).expect("write config");
        Bench {
            _mosq: mosq,
            collector,
            device,
            dir,
            cfg_path,
        }
    }

    fn gateway(&self, n: u32) -> GatewayProcess {
        let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));
        GatewayProcess::start(
            bin,
            &self.cfg_path,
            &self.dir.path().join(format!("gw{n}.log")),
        )
    }

    fn log(&self) -> Log {
        self.device.with(|d| d.log.clone())
    }

    fn mode(&self) -> Mode {
        self.device.with(|d| d.bank.controller().status().mode)
    }

    /// Events that arrived on the uplink: (kind, source, message).
    fn events(&self) -> Vec<(String, String, String)> {
        self.collector
            .snapshot()
            .envelopes
            .into_iter()
            .filter_map(|e| match e.body {
                Body::Event(e) => Some((e.kind, e.source, e.message)),
                _ => None,
            })
            .collect()
    }

    /// The firmware's conflict-latched bit and rejected-commands register, over Modbus.
    async fn firmware_flags(&self) -> (bool, u16) {
        let (latched, rejected, _) = self.firmware_registers().await;
        (latched, rejected)
    }

    /// Conflict latched, rejected commands and the last accepted command sequence.
    async fn firmware_registers(&self) -> (bool, u16, u16) {
        use tokio_modbus::prelude::*;
        let mut ctx = tcp::connect_slave(self.device.addr, Slave(1))
            .await
            .expect("connect");
        let latched = ctx
            .read_discrete_inputs(reg::DI_CONFLICT_LATCHED, 1)
            .await
            .expect("transport")
            .expect("no exception");
        let rejected = ctx
            .read_input_registers(reg::IR_REJECTED_COMMANDS, 1)
            .await
            .expect("transport")
            .expect("no exception");
        let seq = ctx
            .read_input_registers(reg::IR_LAST_SEQUENCE, 1)
            .await
            .expect("transport")
            .expect("no exception");
        (latched[0], rejected[0], seq[0])
    }
}

async fn wait_central(b: &Bench, gw: &GatewayProcess, within: Duration) {
    assert!(
        eventually(within, || b.mode() == Mode::Central).await,
        "the gateway did not take control: {:?}\n{}",
        b.log().modes,
        gw.log_text()
    );
}

/// (a) A compressed day of demand: the gateway keeps the controller under central control,
/// stage greens follow the peaks, and nothing unsafe happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_drives_a_compressed_day_with_zero_safety_violations() {
    let b = Bench::start("gw-sig-day").await;
    let gw = b.gateway(1);
    wait_central(&b, &gw, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(DAY_MS + 500)).await;
    let log = b.log();
    let (latched, rejected) = b.firmware_flags().await;
    gw.stop();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert!(!latched, "conflict monitor latched");
    assert_eq!(rejected, 0, "the firmware rejected commands");
    let day = log.day_started.expect("day started");
    assert!(
        log.modes
            .iter()
            .all(|&(t, m)| t <= day || m == Mode::Central),
        "control was lost during the day: {:?}",
        log.modes
    );
    let sum = |hours: std::ops::RangeInclusive<usize>, g: usize| -> u64 {
        hours.map(|h| log.green_ms[h][g]).sum()
    };
    let (ns_am, ew_am) = (sum(4..=12, 0), sum(4..=12, 1));
    let (ns_pm, ew_pm) = (sum(14..=22, 0), sum(14..=22, 1));
    let shares = format!(
        "morning NS {ns_am} ms / EW {ew_am} ms, evening NS {ns_pm} ms / EW {ew_pm} ms; stages {:?}",
        log.stages
    );
    println!("{shares}");
    assert!(
        ns_am * 10 > ew_am * 15,
        "the morning peak is north–south: {shares}"
    );
    assert!(
        ew_pm * 10 > ns_pm * 15,
        "the evening peak is east–west: {shares}"
    );
    assert!(log.stages.len() >= 6, "{shares}");
}

/// (b) A detector loop sticks on mid-run: a detector_fault event reaches the uplink and the
/// gateway keeps controlling (the stuck approach on maximum-green recall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_detector_is_reported_and_control_continues() {
    let b = Bench::start("gw-sig-stuck").await;
    let gw = b.gateway(1);
    wait_central(&b, &gw, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stuck_at = b.device.with(|d| {
        let now = d.last;
        d.stuck = Some((1, now));
        now
    });
    let fault = eventually(Duration::from_secs(15), || {
        b.events()
            .iter()
            .any(|(k, s, _)| k == "detector_fault" && s == "int-t/det-e")
    })
    .await;
    assert!(
        fault,
        "no detector_fault event: {:?}\n{}",
        b.events(),
        gw.log_text()
    );
    let (_, _, message) = b
        .events()
        .into_iter()
        .find(|(k, _, _)| k == "detector_fault")
        .expect("fault event");
    assert!(
        message.contains("stuck on") && message.contains("east-west"),
        "{message}"
    );
    let changes_at_fault = b.log().stages.len();
    let (_, _, seq_at_fault) = b.firmware_registers().await;
    tokio::time::sleep(Duration::from_secs(14)).await;
    let log = b.log();
    let (latched, rejected, seq) = b.firmware_registers().await;
    let status = std::fs::read_to_string(b.dir.path().join("data/status.json")).unwrap_or_default();
    gw.stop();
    assert!(
        status.contains("det-e (stuck on)"),
        "status shows the fault: {status}"
    );
    assert!(
        seq.wrapping_sub(seq_at_fault) >= 10,
        "stage commands keep coming: sequence {seq_at_fault} then {seq}"
    );
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert!(
        !latched && rejected == 0,
        "latched {latched}, rejected {rejected}"
    );
    assert!(
        log.stages.len() > changes_at_fault,
        "control continues after the fault at {stuck_at} ms: {:?}",
        log.stages
    );
    assert!(
        log.modes.last().map(|m| m.1) == Some(Mode::Central),
        "{:?}",
        log.modes
    );
}

/// (c) The gateway is killed: the firmware's watchdog falls back to its local plan. A new
/// gateway process continues the command sequence and resumes central control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_falls_back_and_a_restarted_one_resumes_control() {
    let b = Bench::start("gw-sig-restart").await;
    let gw = b.gateway(1);
    wait_central(&b, &gw, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    gw.kill();
    assert!(
        eventually(
            Duration::from_millis(u64::from(WATCHDOG_MS) + 3_000),
            || b.mode() == Mode::Fallback
        )
        .await,
        "the watchdog did not fall back: {:?}",
        b.log().modes
    );
    let fallback_at = b.log().modes.last().map(|m| m.0).unwrap_or(0);
    // the local plan runs (5 s per stage) while the gateway is away
    tokio::time::sleep(Duration::from_secs(7)).await;
    let log = b.log();
    assert!(
        log.stages.iter().any(|&(t, _)| t > fallback_at),
        "the fallback plan changes stages: {:?}",
        log.stages
    );
    let gw = b.gateway(2);
    wait_central(&b, &gw, Duration::from_secs(15)).await;
    let resumed = eventually(Duration::from_secs(10), || {
        b.events()
            .iter()
            .any(|(k, s, _)| k == "signal_control_resumed" && s == "int-t")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = b.log();
    let (latched, rejected) = b.firmware_flags().await;
    gw.stop();
    assert!(resumed, "no signal_control_resumed event: {:?}", b.events());
    assert!(
        b.events()
            .iter()
            .any(|(k, _, m)| k == "signal_controller_fault" && m.contains("fallback")),
        "{:?}",
        b.events()
    );
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert!(!latched, "conflict monitor latched");
    assert_eq!(rejected, 0, "the restarted gateway's sequence was accepted");
    let modes: Vec<Mode> = log.modes.iter().map(|m| m.1).collect();
    assert!(
        modes
            .windows(3)
            .any(|w| w == [Mode::Central, Mode::Fallback, Mode::Central]),
        "{modes:?}"
    );
}

/// (d) `[hazard]` asks for an emergency plan: the intersection holds the plan's stage (stage
/// commands on its MQTT topic show it) until the alert clears, then adaptive control resumes;
/// both are `plan_change` events on the uplink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hazard_emergency_plan_runs_until_the_alert_clears() {
    use citygate_tests::{subscribe_on_thread, Publisher};
    use std::sync::{Arc, Mutex};
    let id = "gw-sig-plan";
    let dir = tempfile::tempdir().expect("tempdir");
    let local = free_port();
    let mut text = gateway_config(
        id,
        local,
        &format!("mqtt://127.0.0.1:{local}"),
        dir.path(),
        60,
    );
    text.push_str(
        r#"
[hazard]
sender = "citygate.gw-sig-plan@city.example"
identifier_prefix = "gw-sig-plan"
min_update_interval_s = 1

[[hazard.groups]]
id = "underpass"
sensors = ["w1"]
quantity = "level"
rule = { kind = "threshold" }
persistence_s = 0
event = "Flood"
area = { desc = "Main St underpass", polygon = [[52.1, 4.3], [52.1, 4.31], [52.11, 4.31]] }

[[hazard.groups.levels]]
name = "warning"
raise = 1.0
clear = 0.8
urgency = "Immediate"
severity = "Severe"
certainty = "Observed"
headline = "Underpass flooded ({value} m)"
emergency_plans = [{ intersection = "int-m", plan = "flood-detour" }]

[[intersection]]
id = "int-m"
controller = "max_pressure"
actuation = { mqtt_topic = "signals/int-m/stage" }
conflicts = [["NS", "EW"]]

[[intersection.signal_group]]
id = "NS"
approach = "north-south"
min_green_s = 3.0
max_green_s = 60.0
yellow_s = 2.0

[[intersection.signal_group]]
id = "EW"
approach = "east-west"
min_green_s = 3.0
max_green_s = 60.0
yellow_s = 2.0

[[intersection.stage]]
id = "NS"
green = ["NS"]

[[intersection.stage]]
id = "EW"
green = ["EW"]

[[intersection.intergreen]]
from = "NS"
to = "EW"
seconds = 3.0

[[intersection.intergreen]]
from = "EW"
to = "NS"
seconds = 3.0

[[intersection.plan]]
id = "flood-detour"
hold = "EW"
"#,
    );
    let gw = start_gateway(&text).await;
    let collector = Collector::start(local, id).await;
    let commands = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let c = Arc::clone(&commands);
    subscribe_on_thread(local, "stage-watch", "signals/#", move |_, p| {
        if let Ok(v) = serde_json::from_slice(p) {
            c.lock().unwrap_or_else(|e| e.into_inner()).push(v);
        }
    })
    .await;
    let last_stage = || {
        commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .and_then(|v| v["stage_id"].as_str().map(String::from))
    };
    let controller = || {
        gw.stats
            .snapshot()
            .signals
            .first()
            .map(|s| s.controller.clone())
    };
    // no demand: max-pressure rests on the first stage
    assert!(
        eventually(Duration::from_secs(15), || last_stage().as_deref()
            == Some("NS"))
        .await
    );
    let publisher = Publisher::connect(local, "field-w").await;
    let now = citygate::clock::wall_s();
    publisher.reading("w1", 1.5, now).await;
    assert!(
        eventually(Duration::from_secs(10), || controller().as_deref()
            == Some("plan:flood-detour"))
        .await,
        "{}",
        gw.stats.snapshot()
    );
    assert!(
        eventually(Duration::from_secs(15), || last_stage().as_deref()
            == Some("EW"))
        .await,
        "the plan's stage is commanded: {:?}",
        commands.lock().unwrap_or_else(|e| e.into_inner()).last()
    );
    assert!(gw.stats.snapshot().signals[0].stage == "EW");
    publisher.reading("w1", 0.2, now + 1.0).await;
    assert!(
        eventually(Duration::from_secs(10), || controller().as_deref()
            == Some("max_pressure"))
        .await,
        "{}",
        gw.stats.snapshot()
    );
    let plans = || {
        collector
            .snapshot()
            .envelopes
            .into_iter()
            .filter_map(|e| match e.body {
                Body::Event(e) if e.kind == "plan_change" => Some(e.message),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(10), || plans().len() == 2).await,
        "{:?}",
        plans()
    );
    assert_eq!(
        plans(),
        vec![
            "emergency plan `flood-detour` started".to_string(),
            "emergency plan `flood-detour` ended; max_pressure control resumes".to_string()
        ]
    );
    assert_eq!(gw.stats.snapshot().signals[0].refused, 0);
    gw.shutdown().await;
}

/// (e) `citygate demo`: every status shows each intersection's stage, controller and last
/// decision, and the stages change with the simulated demand.
#[test]
fn the_demo_shows_each_intersections_stage_and_decisions() {
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(bin)
        .args(["demo", "--seconds", "35", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (int, controller, decision) in [
        ("int-1", "actuated", "-out after"),
        ("int-2", "max_pressure", "pressure"),
        ("int-3", "fixed_time", "cycle "),
    ] {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{int}: stage ")))
            .collect();
        assert!(lines.len() >= 25, "one line a second for {int}: {text}");
        assert!(
            lines.iter().all(|l| l.contains(controller)),
            "{int}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains(decision)),
            "{int}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("field central")),
            "{int} under central control: {lines:?}"
        );
        let stage = |l: &str| {
            l.split("stage ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .map(String::from)
        };
        let stages: Vec<Option<String>> = lines.iter().map(|l| stage(l)).collect();
        assert!(
            stages.windows(2).any(|w| w[0] != w[1]),
            "{int}: the stage changes during the demo: {lines:?}"
        );
    }
}
