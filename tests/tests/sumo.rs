//! SUMO software-in-the-loop tests: the TraCI client against a real SUMO (version, stepping,
//! traffic-light state and links, detectors, lanes); `citygate sumo import` writing a gateway
//! config that `citygate check` accepts; the whole `citygate sumo` loop with the gateway's
//! runtime and look-ahead controller on a small scenario built from the committed D1 net; and,
//! with the benchmark kit, runs on the kit's D1 scored by its `score.py`: the net's program
//! replayed through the signal groups scores exactly like SUMO running it, and the look-ahead
//! controller runs without a safety violation and with less delay than that program.
//!
//! Needs SUMO from `tests/sumo.sh` (`.venv-sumo`). Without it the tests skip with a loud
//! message, unless `CITYGATE_REQUIRE_SUMO` is set (tests/run.sh sets it), where they fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use std::sync::{Arc, Mutex};

use citygate::signals::PlannedFlow;
use citygate::sim::sumo::cli::{controller, import, Choice};
use citygate::sim::sumo::net::Net;
use citygate::sim::sumo::run::{run, RunOptions, SignalController};
use citygate::sim::sumo::traci::Client;
use citygate_protocols::signal::SignalState;
use citygate_protocols::Reading;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The venv's `sumo`, or `None` (after a loud message) when the test should skip.
fn sumo() -> Option<PathBuf> {
    let bin = root().join(".venv-sumo/bin/sumo");
    if bin.exists() {
        return Some(bin);
    }
    if std::env::var_os("CITYGATE_REQUIRE_SUMO").is_some() {
        panic!(
            "SUMO is not installed ({} missing): run tests/sumo.sh",
            bin.display()
        );
    }
    eprintln!(
        "\n***** SKIPPED: SUMO is not installed ({} missing). Run tests/sumo.sh to install it. *****\n",
        bin.display()
    );
    None
}

const NET: &str = include_str!("../data/sumo/d1.net.xml");

/// A 5-minute scenario on the D1 net: flows on all four approaches, the kit's outputs.
fn small_scenario(dir: &Path) {
    std::fs::write(dir.join("net.net.xml"), NET).unwrap();
    std::fs::write(
        dir.join("flows.xml"),
        r#"<routes>
  <flow id="ns" from="top0A0" to="A0bottom0" begin="0" end="200" vehsPerHour="700"/>
  <flow id="nl" from="top0A0" to="A0right0" begin="0" end="200" vehsPerHour="120"/>
  <flow id="sn" from="bottom0A0" to="A0top0" begin="0" end="200" vehsPerHour="500"/>
  <flow id="ew" from="right0A0" to="A0left0" begin="0" end="200" vehsPerHour="300"/>
  <flow id="we" from="left0A0" to="A0right0" begin="0" end="200" vehsPerHour="250"/>
</routes>
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("outputs.add.xml"),
        "<additional>\n  <timedEvent type=\"SaveTLSStates\" source=\"A0\" dest=\"tls_states.xml\"/>\n</additional>\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("scenario.sumocfg"),
        r#"<configuration>
  <input>
    <net-file value="net.net.xml"/>
    <route-files value="flows.xml"/>
    <additional-files value="outputs.add.xml"/>
  </input>
  <output>
    <tripinfo-output value="tripinfo.xml"/>
    <statistic-output value="statistic.xml"/>
  </output>
  <time><end value="900"/></time>
  <report><no-step-log value="true"/><no-warnings value="true"/><duration-log.disable value="true"/></report>
</configuration>
"#,
    )
    .unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn traci_client_steps_reads_and_sets_a_traffic_light() {
    let Some(bin) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    small_scenario(dir.path());
    std::fs::write(
        dir.path().join("det.add.xml"),
        r#"<additional>
  <inductionLoop id="loop_n0" lane="top0A0.240.00_0" pos="39" period="3600" file="NUL"/>
  <laneAreaDetector id="area_n0" lane="top0A0.240.00_0" pos="0" length="40" period="3600" file="NUL"/>
</additional>
"#,
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(&bin)
        .current_dir(dir.path())
        .args(["-c", "scenario.sumocfg", "--remote-port", &port.to_string()])
        .args(["--additional-files", "outputs.add.xml,det.add.xml"])
        .args(["--seed", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = Client::connect(port, Duration::from_secs(30)).unwrap();
    let (api, version) = c.version().unwrap();
    assert!(api >= 20, "TraCI API {api}");
    assert!(version.starts_with("SUMO "), "{version}");

    assert_eq!(c.traffic_light_ids().unwrap(), ["A0"]);
    let links = c.controlled_links("A0").unwrap();
    assert_eq!(links.len(), 20);
    assert_eq!(
        links[3][0],
        [
            "top0A0.240.00_2".to_string(),
            "A0right0_1".to_string(),
            ":A0_3_0".to_string()
        ]
    );
    // the same links as the net reader sees
    let topo = Net::parse(NET, "d1").unwrap().tls_topology("A0").unwrap();
    for (i, l) in topo.links.iter().enumerate() {
        assert_eq!(links[i][0][0], l.from_lane, "link {i}");
        assert_eq!(links[i][0][1], l.to_lane, "link {i}");
    }
    assert_eq!(c.controlled_lanes("A0").unwrap().len(), 20);
    assert_eq!(
        c.red_yellow_green_state("A0").unwrap(),
        "GGGggrrrrrGGGggrrrrr"
    );
    assert_eq!(c.time().unwrap(), 0.0);

    let mut seen_on_loop = 0;
    for _ in 0..60 {
        c.step(0.0).unwrap();
        seen_on_loop += c.loop_vehicle_number("loop_n0").unwrap();
        let occ = c.loop_occupancy("loop_n0").unwrap();
        assert!((0.0..=100.0).contains(&occ), "occupancy {occ}");
    }
    assert_eq!(c.time().unwrap(), 60.0);
    assert!(seen_on_loop > 0, "north flow crossed the stop-bar loop");
    assert!(c.min_expected_vehicles().unwrap() > 0);
    assert!(c.lane_vehicle_number("top0A0.240.00_0").unwrap() >= 0);
    assert!(c.lane_halting_number("top0A0.240.00_0").unwrap() >= 0);
    assert!(c.lane_area_vehicle_number("area_n0").unwrap() >= 0);
    assert!(c.lane_area_jam_length("area_n0").unwrap() >= 0.0);

    // all red for 30 s: the north approach queues
    let red = "r".repeat(20);
    c.set_red_yellow_green_state("A0", &red).unwrap();
    assert_eq!(c.red_yellow_green_state("A0").unwrap(), red);
    c.step(90.0).unwrap();
    assert_eq!(c.time().unwrap(), 90.0);
    assert_eq!(c.red_yellow_green_state("A0").unwrap(), red, "state held");
    assert!(c.lane_halting_number("top0A0.240.00_1").unwrap() > 0);
    assert!(c.lane_area_jam_length("area_n0").unwrap() > 0.0);
    assert!(c.loop_vehicle_ids("loop_n0").unwrap().len() <= 1);

    // a wrong id is SUMO's error, not a hang or a panic
    let e = c.red_yellow_green_state("nope").unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    // and the connection still works
    assert_eq!(c.time().unwrap(), 90.0);

    c.close().unwrap();
    assert!(child.wait().unwrap().success());
}

/// What the controller was given, summed: vehicles counted on stop-bar and advance loops,
/// the occupancy range, and the times seen.
#[derive(Default, Debug)]
struct Seen {
    stop_count: f64,
    advance_count: f64,
    occupancy_min: f64,
    occupancy_max: f64,
    last_time: f64,
    out_of_order: u32,
}

struct Recorder {
    inner: Box<dyn SignalController>,
    seen: Arc<Mutex<Seen>>,
}

impl SignalController for Recorder {
    fn on_reading(&mut self, r: &Reading, now: f64) {
        let mut s = self.seen.lock().unwrap();
        assert_eq!(r.time, now);
        if now < s.last_time {
            s.out_of_order += 1;
        }
        s.last_time = now;
        match (r.quantity.as_str(), r.sensor.ends_with("-stop")) {
            ("count", true) => s.stop_count += r.value,
            ("count", false) => s.advance_count += r.value,
            ("occupancy", _) => {
                s.occupancy_min = s.occupancy_min.min(r.value);
                s.occupancy_max = s.occupancy_max.max(r.value);
            }
            ("occupied", _) => assert!(r.value == 0.0 || r.value == 1.0),
            (q, _) => panic!("unexpected quantity {q}"),
        }
        drop(s);
        self.inner.on_reading(r, now);
    }
    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
        self.inner.tick(now)
    }
    fn outflow(&self, now: f64) -> Vec<PlannedFlow> {
        self.inner.outflow(now)
    }
    fn report(&self) -> String {
        self.inner.report()
    }
}

#[test]
fn citygate_sumo_runs_the_gateways_look_ahead_until_the_network_is_empty() {
    let Some(bin) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    small_scenario(dir.path());
    let cfg_path = dir.path().join("gw.toml");
    let printed = import(
        &dir.path().join("net.net.xml"),
        &[],
        &cfg_path,
        None,
        Choice::LookAhead,
        "sumo-test",
    )
    .unwrap();
    assert!(
        printed.contains("A0: 20 links, 8 signal groups, 4 stages"),
        "{printed}"
    );
    assert!(dir.path().join("gw.det.add.xml").exists());
    // `citygate check` accepts what the import wrote
    let (text, ok) = citygate::config::check(&cfg_path);
    assert!(ok, "{text}");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let opts = RunOptions {
        sumocfg: dir.path().join("scenario.sumocfg"),
        config: cfg_path.clone(),
        detectors: None,
        seed: 3,
        output_prefix: Some("out/run.".into()),
        sumo_bin: Some(bin),
        progress_every_s: 60.0,
        end_s: None,
    };
    let mut log = Vec::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = run(
        &opts,
        &|site| {
            Ok(Box::new(Recorder {
                inner: controller(None, site)?,
                seen: Arc::clone(&seen),
            }))
        },
        &mut log,
    )
    .unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("t =     60 s"), "{log}");
    assert!(
        log.contains("refused: 0 before min green, 0 in transition, 0 unknown stage"),
        "the look-ahead only asks for what the supervisor allows: {log}"
    );
    assert_eq!(s.vehicles_left, 0, "ran until the network was empty");
    assert!(s.end_time_s > 200.0 && s.end_time_s < 900.0, "{s:?}");
    assert_eq!(
        s.readings,
        s.steps * 3 * 20,
        "count + occupancy + occupied, 20 detectors"
    );
    // outputs where the prefix puts them
    let states = std::fs::read_to_string(dir.path().join("out/run.tls_states.xml")).unwrap();
    assert!(states.matches("<tlsState ").count() as u64 >= s.steps - 1);
    let trips = std::fs::read_to_string(dir.path().join("out/run.tripinfo.xml")).unwrap();
    let vehicles = trips.matches("<tripinfo ").count() as f64;
    assert!(vehicles > 50.0);
    // every vehicle crosses one stop-bar loop and one advance loop on its way in (a vehicle
    // that stops at the edge of a loop can be counted twice: 109 for 105 vehicles seen)
    let seen_now = seen.lock().unwrap();
    assert_eq!(seen_now.out_of_order, 0);
    assert!(
        (seen_now.stop_count - vehicles).abs() <= 0.05 * vehicles,
        "{seen_now:?} vs {vehicles} vehicles"
    );
    assert!(
        (seen_now.advance_count - vehicles).abs() <= 0.05 * vehicles,
        "{seen_now:?} vs {vehicles} vehicles"
    );
    assert!(
        seen_now.occupancy_min >= 0.0 && seen_now.occupancy_max <= 100.0,
        "{seen_now:?}"
    );
    eprintln!("readings seen: {seen_now:?} for {vehicles} vehicles");
    drop(seen_now);

    // SUMO refusing to start (its output folder is missing) is reported as such, promptly
    let e = run(
        &RunOptions {
            output_prefix: Some("missing/run.".into()),
            ..opts.clone()
        },
        &|site| controller(Some(Choice::SumoProgram), site),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("SUMO stopped"), "{e}");

    // a config for another net is refused with a clear message
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, text.replace("id = \"A0\"", "id = \"B7\"")).unwrap();
    std::fs::copy(
        dir.path().join("gw.det.add.xml"),
        dir.path().join("bad.det.add.xml"),
    )
    .unwrap();
    let e = run(
        &RunOptions {
            config: bad_path,
            ..opts
        },
        &|site| controller(None, site),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`B7`"), "{e}");
}

/// The kit's D1 (from target/sumo-scenarios when tests/sumo.sh built it, else built here),
/// copied into `dir`; `None` without the kit.
fn kit_d1(dir: &Path) -> Option<PathBuf> {
    kit_scenario(dir, "D1")
}

/// The kit's scenario `name` (`D1`, `D2`), as [`kit_d1`].
fn kit_scenario(dir: &Path, name: &str) -> Option<PathBuf> {
    let kit = root().join("../shared/sumo");
    if !kit.join("make_scenarios.sh").exists() {
        if std::env::var_os("CITYGATE_REQUIRE_SUMO").is_some() {
            panic!("the SUMO benchmark kit is not at {}", kit.display());
        }
        eprintln!(
            "\n***** SKIPPED: the SUMO benchmark kit is not at {} *****\n",
            kit.display()
        );
        return None;
    }
    let built = root().join("target/sumo-scenarios").join(name);
    let d1 = dir.join(name);
    if built.join("scenario.sumocfg").exists() {
        std::fs::create_dir(&d1).unwrap();
        for f in [
            "net_static.net.xml",
            "flows.xml",
            "outputs.add.xml",
            "scenario.sumocfg",
            "scenario.json",
        ] {
            std::fs::copy(built.join(f), d1.join(f)).unwrap();
        }
    } else {
        let ok = Command::new(kit.join("make_scenarios.sh"))
            .arg(dir)
            .env("PATH", venv_path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
    }
    Some(d1)
}

fn venv_path() -> String {
    format!(
        "{}:{}",
        root().join(".venv-sumo/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The kit's `score.py` on a run.
fn score(d1: &Path, prefix: &Path, name: &str) -> serde_json::Value {
    let out = Command::new(root().join(".venv-sumo/bin/python3"))
        .arg(root().join("../shared/sumo/score.py"))
        .args(["--scenario", d1.to_str().unwrap()])
        .args(["--prefix", prefix.to_str().unwrap()])
        .args(["--controller", name, "--seed", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The kit's D1 for 900 s: the net's program replayed through the signal groups must score
/// exactly like SUMO running it itself; the look-ahead controller through the gateway's
/// runtime must have no safety violation by the kit's monitor and less delay than that
/// program.
#[test]
fn on_the_kits_d1_the_replay_matches_sumo_and_look_ahead_is_safe_and_better() {
    let Some(bin) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(d1) = kit_d1(dir.path()) else { return };
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let cfg_path = d1.join("citygate.toml");
    import(
        &d1.join("net_static.net.xml"),
        &[],
        &cfg_path,
        None,
        Choice::LookAhead,
        "sumo-d1",
    )
    .unwrap();
    let opts = RunOptions {
        sumocfg: d1.join("scenario.sumocfg"),
        config: cfg_path,
        detectors: None,
        seed: 1,
        output_prefix: Some("../results/replay_s1.".into()),
        sumo_bin: Some(bin.clone()),
        progress_every_s: 0.0,
        end_s: Some(900.0),
    };
    run(
        &opts,
        &|site| controller(Some(Choice::SumoProgram), site),
        &mut Vec::new(),
    )
    .unwrap();
    let mut log = Vec::new();
    run(
        &RunOptions {
            output_prefix: Some("../results/lookahead_s1.".into()),
            ..opts
        },
        &|site| controller(None, site),
        &mut log,
    )
    .unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("refused: 0 before min green"), "{log}");
    let ok = Command::new(&bin)
        .current_dir(&d1)
        .args(["-c", "scenario.sumocfg", "--seed", "1", "--end", "900"])
        .args(["--output-prefix", "../results/static_s1."])
        .status()
        .unwrap();
    assert!(ok.success());
    let replay = score(&d1, &results.join("replay_s1."), "replay");
    let theirs = score(&d1, &results.join("static_s1."), "static");
    let ours = score(&d1, &results.join("lookahead_s1."), "look_ahead");
    assert_eq!(replay["safety_violations"], 0, "{replay}");
    assert!(replay["vehicles"].as_u64().unwrap() > 300, "{replay}");
    for k in [
        "vehicles",
        "mean_delay_s",
        "p95_delay_s",
        "mean_stops",
        "safety",
    ] {
        assert_eq!(replay[k], theirs[k], "{k}: {replay} vs {theirs}");
    }
    assert_eq!(ours["safety_violations"], 0, "{ours}");
    let (n, m) = (
        ours["vehicles"].as_f64().unwrap(),
        theirs["vehicles"].as_f64().unwrap(),
    );
    assert!((n - m).abs() <= 0.02 * m, "{ours} vs {theirs}");
    let (a, b) = (
        ours["mean_delay_s"].as_f64().unwrap(),
        theirs["mean_delay_s"].as_f64().unwrap(),
    );
    assert!(a < b, "look-ahead {a} s vs the net's program {b} s");
    eprintln!("D1 900 s: look-ahead {ours}\nprogram {theirs}");
}

/// `citygate sumo import` of the kit's D2 corridor writes both ends of every coordination
/// link: each `neighbours` entry has the receiver's `[[intersection.inflow]]`, on the
/// receiver's approach from the sender, with the net's travel time; `citygate sumo` and the
/// live gateway take them from there.
#[test]
fn the_import_of_the_d2_corridor_writes_both_ends_of_every_coordination_link() {
    let dir = tempfile::tempdir().unwrap();
    let Some(d2) = kit_scenario(dir.path(), "D2") else {
        return;
    };
    let cfg_path = dir.path().join("d2.toml");
    import(
        &d2.join("net_static.net.xml"),
        &[],
        &cfg_path,
        None,
        Choice::LookAhead,
        "sumo-test",
    )
    .unwrap();
    let cfg = citygate::config::load(&cfg_path).unwrap_or_else(|e| panic!("{e}"));
    let mut links = 0;
    for a in &cfg.intersection {
        for n in &a.neighbours {
            let b = cfg
                .intersection
                .iter()
                .find(|b| b.id == n.intersection)
                .unwrap_or_else(|| panic!("{}: neighbour {} not imported", a.id, n.intersection));
            let inflow = b
                .inflow
                .iter()
                .find(|i| i.from == a.id && i.from_group == n.via_group)
                .unwrap_or_else(|| panic!("{} has no inflow from {} {}", b.id, a.id, n.via_group));
            assert_eq!(
                inflow.travel_s, 15.7,
                "D2: 15.7 s between neighbours at the speed limits"
            );
            for g in &inflow.groups {
                let group = b.signal_group.iter().find(|x| &x.id == g).unwrap();
                // the kit's edges are named <from junction><to junction>...
                assert!(
                    group.approach.starts_with(&a.id),
                    "{}: {g} on {} does not come from {}",
                    b.id,
                    group.approach,
                    a.id
                );
            }
            links += 1;
        }
        assert_eq!(
            a.inflow.len(),
            cfg.intersection
                .iter()
                .flat_map(|o| o.neighbours.iter().map(move |n| (o, n)))
                .filter(|(_, n)| n.intersection == a.id)
                .count(),
            "{}: one inflow per neighbour link towards it",
            a.id
        );
    }
    // five intersections in a row, four groups of each sending to each neighbour
    assert_eq!(links, 32, "{}", std::fs::read_to_string(&cfg_path).unwrap());
}
