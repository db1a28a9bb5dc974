//! The software-in-the-loop run: starts SUMO on a `.sumocfg` with `--remote-port`, and every
//! simulated second reads the config's detectors over TraCI, hands them to each intersection's
//! controller as [`Reading`]s, passes planned outflows between neighbouring intersections, and
//! applies the signal-group states it returns as SUMO states, until the network is empty or
//! the end time. SUMO writes its outputs where the `.sumocfg` and `--output-prefix` put them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use citygate_protocols::signal::SignalState;
use citygate_protocols::{Quality, Reading, Unit};
use quick_xml::events::Event;

use super::binding::{BindingError, SumoBinding};
use super::import::PlanError;
use super::net::{Net, NetError};
use super::traci::{
    Client, TraciError, Value, CMD_GET_INDUCTIONLOOP_VARIABLE, LAST_STEP_OCCUPANCY,
    LAST_STEP_VEHICLE_ID_LIST,
};
use crate::signals::{Intersection, PlannedFlow};

/// What drives one intersection in the loop: detector readings in, signal-group states out,
/// on the simulation clock; planned outflows to and from neighbours.
pub trait SignalController {
    /// A detector reading (sensor = the detector's source sensor, quantity `count` or
    /// `occupancy`).
    fn on_reading(&mut self, reading: &Reading, now: f64);
    /// The state of every signal group from `now` until the next tick.
    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)>;
    /// Planned outflows towards neighbours, after the tick.
    fn outflow(&self, _now: f64) -> Vec<PlannedFlow> {
        Vec::new()
    }
    /// A neighbour's planned outflow towards this intersection.
    fn on_peer_flow(&mut self, _flow: &PlannedFlow) {}
    /// A line for the end of the run (e.g. the safety supervisor's counters).
    fn report(&self) -> String {
        String::new()
    }
}

/// Builds the controller of one intersection.
pub type MakeController<'m> =
    dyn Fn(&Site<'_>) -> Result<Box<dyn SignalController>, SumoError> + 'm;

/// What the run knows of one intersection when it builds its controller.
#[derive(Debug)]
pub struct Site<'a> {
    pub model: &'a Intersection,
    pub binding: &'a SumoBinding,
    pub net: &'a Net,
    /// Mean speed limit of its incoming lanes (m/s).
    pub approach_speed_mps: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SumoError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Gateway(String),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Traci(#[from] TraciError),
    #[error(transparent)]
    Binding(#[from] BindingError),
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("cannot start SUMO ({bin}): {err}; install it with tests/sumo.sh or pass --sumo-bin")]
    Spawn { bin: String, err: std::io::Error },
    #[error("SUMO exited with {0}")]
    SumoFailed(std::process::ExitStatus),
    #[error("SUMO stopped ({status}); see its message above ({cause})")]
    SumoExited {
        status: std::process::ExitStatus,
        cause: String,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What `citygate sumo` runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub sumocfg: PathBuf,
    /// The gateway config with the `[[intersection]]`s (`citygate sumo import` output).
    pub config: PathBuf,
    /// The SUMO additional file placing the detectors (default: `<config stem>.det.add.xml`
    /// beside the config).
    pub detectors: Option<PathBuf>,
    pub seed: u64,
    /// Joined by SUMO to the `.sumocfg`'s folder; its folder must exist.
    pub output_prefix: Option<String>,
    /// The `sumo` binary; [`find_sumo`] when `None`.
    pub sumo_bin: Option<PathBuf>,
    /// A progress line every this many simulated seconds (0: none).
    pub progress_every_s: f64,
    /// Stop at this simulation time even if vehicles remain (default: the config's end).
    pub end_s: Option<f64>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub sumo_version: String,
    pub end_time_s: f64,
    pub steps: u64,
    pub readings: u64,
    /// Vehicles still in the network or waiting to enter when the run stopped.
    pub vehicles_left: i32,
    /// `setRedYellowGreenState` calls.
    pub state_changes: u64,
    pub wall_s: f64,
}

/// The parts of a `.sumocfg` the run needs, with paths relative to its folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SumoCfg {
    pub net_file: String,
    pub additional_files: Vec<String>,
    pub end: Option<f64>,
}

impl SumoCfg {
    pub fn parse(text: &str, path: &str) -> Result<SumoCfg, SumoError> {
        let bad = |message: String| SumoError::Config {
            path: path.to_string(),
            message,
        };
        let mut cfg = SumoCfg::default();
        let mut reader = quick_xml::Reader::from_str(text);
        loop {
            match reader.read_event() {
                Err(e) => return Err(bad(format!("XML error: {e}"))),
                Ok(Event::Eof) => break,
                Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                    let value = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"value")
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()));
                    let Some(value) = value else { continue };
                    match e.name().as_ref() {
                        b"net-file" => cfg.net_file = value,
                        b"additional-files" => {
                            cfg.additional_files = value
                                .split([',', ' '])
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect()
                        }
                        b"end" => {
                            cfg.end = Some(value.trim().parse().map_err(|_| {
                                bad(format!("<end value=\"{value}\"> is not a number"))
                            })?)
                        }
                        _ => {}
                    }
                }
                Ok(_) => {}
            }
        }
        if cfg.net_file.is_empty() {
            return Err(bad("has no <net-file value=...>".into()));
        }
        Ok(cfg)
    }
}

/// The `sumo` binary: `$SUMO_BINARY`, else `.venv-sumo/bin/sumo` in this folder or a parent
/// (where `tests/sumo.sh` installs it), else `sumo` on the `PATH`.
pub fn find_sumo() -> PathBuf {
    if let Some(b) = std::env::var_os("SUMO_BINARY") {
        return PathBuf::from(b);
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let p = dir.join(".venv-sumo/bin/sumo");
            if p.exists() {
                return p;
            }
        }
    }
    PathBuf::from("sumo")
}

/// Kills SUMO if the run ends early.
struct SumoProcess(Option<Child>);

impl Drop for SumoProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One intersection in the loop.
struct Driven {
    id: String,
    binding: SumoBinding,
    controller: Box<dyn SignalController>,
    detectors: Vec<String>,
    last_state: String,
}

/// The detector file of a config written by `citygate sumo import`.
pub fn default_detectors(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "citygate".into());
    config.with_file_name(format!("{stem}.det.add.xml"))
}

/// The gateway config's intersections, validated.
pub fn load_models(config: &Path) -> Result<Vec<Intersection>, SumoError> {
    let cfg = crate::config::load(config).map_err(|e| SumoError::Gateway(e.to_string()))?;
    if cfg.intersection.is_empty() {
        return Err(SumoError::Gateway(format!(
            "{}: has no [[intersection]] (write one with `citygate sumo import`)",
            config.display()
        )));
    }
    cfg.intersection
        .iter()
        .map(|i| {
            Intersection::from_config(i).map_err(|errs| {
                SumoError::Gateway(
                    errs.iter()
                        .map(|e| format!("{}: {e}", config.display()))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })
        })
        .collect()
}

/// Runs SUMO under `opts`, with one controller per intersection from `make`, writing
/// progress lines to `out`.
pub fn run(
    opts: &RunOptions,
    make: &MakeController<'_>,
    out: &mut dyn Write,
) -> Result<RunSummary, SumoError> {
    let started = Instant::now();
    let cfg_path = opts.sumocfg.canonicalize().map_err(|e| SumoError::Config {
        path: opts.sumocfg.display().to_string(),
        message: e.to_string(),
    })?;
    let cfg_dir = cfg_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let cfg_text = std::fs::read_to_string(&cfg_path)?;
    let cfg = SumoCfg::parse(&cfg_text, &cfg_path.display().to_string())?;
    let net = Net::load(&cfg_dir.join(&cfg.net_file))?;
    let models = load_models(&opts.config)?;
    let det_path = opts
        .detectors
        .clone()
        .unwrap_or_else(|| default_detectors(&opts.config));
    let detectors_file = det_path.canonicalize().map_err(|e| SumoError::Config {
        path: det_path.display().to_string(),
        message: format!("the detectors' SUMO additional file: {e}"),
    })?;

    let tls = net.tls_ids();
    let mut bindings = Vec::new();
    for m in &models {
        if !tls.contains(&m.id) {
            return Err(PlanError::UnknownTls(m.id.clone(), tls.join(", ")).into());
        }
        bindings.push(SumoBinding::new(m, &net.tls_topology(&m.id)?)?);
    }
    let mut driven = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let speeds: Vec<f64> = m
            .groups
            .iter()
            .flat_map(|g| g.lanes.iter())
            .filter_map(|l| net.lane(l).map(|x| x.speed))
            .collect();
        let speed = if speeds.is_empty() {
            crate::signals::lookahead::DEFAULT_APPROACH_SPEED_MPS
        } else {
            speeds.iter().sum::<f64>() / speeds.len() as f64
        };
        let site = Site {
            model: m,
            binding: &bindings[i],
            net: &net,
            approach_speed_mps: speed,
        };
        driven.push(Driven {
            id: m.id.clone(),
            binding: bindings[i].clone(),
            controller: make(&site)?,
            detectors: m
                .detectors
                .iter()
                .map(|d| {
                    d.source
                        .as_ref()
                        .map_or_else(|| d.id.clone(), |s| s.sensor.clone())
                })
                .collect(),
            last_state: String::new(),
        });
    }

    let bin = opts.sumo_bin.clone().unwrap_or_else(find_sumo);
    let port = free_port()?;
    let mut additional = cfg.additional_files.clone();
    additional.push(detectors_file.display().to_string());
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&cfg_dir)
        .arg("-c")
        .arg(&cfg_path)
        .args(["--remote-port", &port.to_string()])
        .args(["--seed", &opts.seed.to_string()])
        .args(["--additional-files", &additional.join(",")])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(p) = &opts.output_prefix {
        cmd.args(["--output-prefix", p]);
    }
    let child = cmd.spawn().map_err(|err| SumoError::Spawn {
        bin: bin.display().to_string(),
        err,
    })?;
    let mut sumo = SumoProcess(Some(child));
    let end = opts.end_s.or(cfg.end).unwrap_or(f64::INFINITY);
    let driven_run = drive(&mut sumo, port, &mut driven, opts, end, out);
    let (version, t, expected, steps, readings, changes) = match driven_run {
        Ok(r) => r,
        Err(e) => {
            // When SUMO itself stopped (a bad option, an output folder missing), say so: its
            // own message is on stderr above.
            if let Some(mut child) = sumo.0.take() {
                for _ in 0..20 {
                    if let Ok(Some(status)) = child.try_wait() {
                        if !status.success() {
                            return Err(SumoError::SumoExited {
                                status,
                                cause: e.to_string(),
                            });
                        }
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                sumo.0 = Some(child);
            }
            return Err(e);
        }
    };
    if let Some(mut child) = sumo.0.take() {
        let status = child.wait()?;
        if !status.success() {
            return Err(SumoError::SumoFailed(status));
        }
    }
    let summary = RunSummary {
        sumo_version: version,
        end_time_s: t,
        steps,
        readings,
        vehicles_left: expected,
        state_changes: changes,
        wall_s: started.elapsed().as_secs_f64(),
    };
    for d in &driven {
        let r = d.controller.report();
        if !r.is_empty() {
            writeln!(out, "  {}: {r}", d.id)?;
        }
    }
    writeln!(
        out,
        "citygate sumo: stopped at t = {:.0} s ({} vehicles left), {} steps, {} readings, {} state changes, {:.1} s wall",
        summary.end_time_s,
        summary.vehicles_left,
        summary.steps,
        summary.readings,
        summary.state_changes,
        summary.wall_s
    )?;
    Ok(summary)
}

/// The TraCI part of a run: connect, drive every intersection each second, close.
#[allow(clippy::type_complexity)]
fn drive(
    sumo: &mut SumoProcess,
    port: u16,
    driven: &mut [Driven],
    opts: &RunOptions,
    end: f64,
    out: &mut dyn Write,
) -> Result<(String, f64, i32, u64, u64, u64), SumoError> {
    // SUMO opens the port once the network is loaded; give up early if it exits instead.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = loop {
        match Client::connect(port, Duration::from_millis(200)) {
            Ok(c) => break c,
            Err(e) => {
                if let Some(status) = sumo.0.as_mut().map(Child::try_wait).transpose()?.flatten() {
                    return Err(SumoError::SumoFailed(status));
                }
                if Instant::now() >= deadline {
                    return Err(e.into());
                }
            }
        }
    };
    let (api, version) = client.version()?;
    writeln!(
        out,
        "citygate sumo: {version} (TraCI API {api}), {} intersection(s), {} detectors, seed {}",
        driven.len(),
        driven.iter().map(|d| d.detectors.len()).sum::<usize>(),
        opts.seed
    )?;

    let mut previous: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (mut steps, mut readings, mut changes) = (0u64, 0u64, 0u64);
    let mut next_progress = opts.progress_every_s;
    let mut t;
    let mut expected;
    loop {
        t = client.time()?;
        expected = client.min_expected_vehicles()?;
        if expected == 0 || t >= end {
            break;
        }
        for d in driven.iter_mut() {
            let queries: Vec<(u8, u8, &str)> = d
                .detectors
                .iter()
                .flat_map(|det| {
                    [
                        (
                            CMD_GET_INDUCTIONLOOP_VARIABLE,
                            LAST_STEP_VEHICLE_ID_LIST,
                            det.as_str(),
                        ),
                        (
                            CMD_GET_INDUCTIONLOOP_VARIABLE,
                            LAST_STEP_OCCUPANCY,
                            det.as_str(),
                        ),
                    ]
                })
                .collect();
            let values = client.get_batch(&queries)?;
            for (det, pair) in d.detectors.iter().zip(values.chunks(2)) {
                let (Some(Value::StrList(ids)), Some(Value::Double(occupancy))) =
                    (pair.first(), pair.get(1))
                else {
                    return Err(SumoError::Traci(TraciError::Malformed {
                        command: CMD_GET_INDUCTIONLOOP_VARIABLE,
                        what: format!("detector {det}: unexpected values {pair:?}"),
                    }));
                };
                let ids: BTreeSet<String> = ids.iter().cloned().collect();
                let before = previous.entry(det.clone()).or_default();
                let count = ids.difference(before).count();
                *before = ids;
                for (quantity, value, unit) in [
                    ("count", count as f64, Some(Unit::Count)),
                    ("occupancy", *occupancy, Some(Unit::Percent)),
                    // occupied at the end of the second: on the loop during its last step
                    ("occupied", f64::from(u8::from(*occupancy > 0.0)), None),
                ] {
                    d.controller.on_reading(
                        &Reading {
                            sensor: det.clone(),
                            quantity: quantity.to_string(),
                            value,
                            unit,
                            time: t,
                            quality: Quality::Good,
                        },
                        t,
                    );
                    readings += 1;
                }
            }
            let states = d.controller.tick(t);
            let s = d.binding.state_string(&states)?;
            if s != d.last_state {
                client.set_red_yellow_green_state(&d.binding.tls, &s)?;
                d.last_state = s;
                changes += 1;
            }
        }
        // neighbours' planned outflows, in process
        let flows: Vec<PlannedFlow> = driven
            .iter()
            .flat_map(|d| d.controller.outflow(t))
            .collect();
        for f in &flows {
            if let Some(d) = driven.iter_mut().find(|d| d.id == f.to) {
                d.controller.on_peer_flow(f);
            }
        }
        client.step(t + 1.0)?;
        steps += 1;
        if opts.progress_every_s > 0.0 && t + 1.0 >= next_progress {
            let states: Vec<String> = driven
                .iter()
                .map(|d| format!("{} {}", d.binding.tls, d.last_state))
                .collect();
            writeln!(
                out,
                "  t = {:>6.0} s  vehicles expected {:>5}  readings {:>8}  {}",
                t + 1.0,
                expected,
                readings,
                states.join("  ")
            )?;
            out.flush()?;
            next_progress += opts.progress_every_s;
        }
    }
    client.close()?;
    Ok((version, t, expected, steps, readings, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kits_sumocfg() {
        let text = r#"<configuration>
  <input>
    <net-file value="net_static.net.xml"/>
    <route-files value="flows.xml"/>
    <additional-files value="outputs.add.xml, extra.add.xml"/>
  </input>
  <time><end value="5400"/></time>
</configuration>"#;
        let c = SumoCfg::parse(text, "s.sumocfg").unwrap();
        assert_eq!(c.net_file, "net_static.net.xml");
        assert_eq!(c.additional_files, ["outputs.add.xml", "extra.add.xml"]);
        assert_eq!(c.end, Some(5400.0));
        let e = SumoCfg::parse("<configuration/>", "s.sumocfg").unwrap_err();
        assert!(e.to_string().contains("s.sumocfg: has no <net-file"), "{e}");
        let e = SumoCfg::parse(
            r#"<c><net-file value="n"/><end value="soon"/></c>"#,
            "s.sumocfg",
        )
        .unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }
}
