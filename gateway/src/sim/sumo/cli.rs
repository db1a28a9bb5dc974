//! `citygate sumo`: `citygate sumo import --net NET.xml [--tls ID...]` writes the gateway
//! config (`[[intersection]]` per traffic light) and its detectors for a net's traffic lights;
//! `citygate sumo --sumocfg FILE --config GATEWAY.toml [--seed N] [--controller C]` drives SUMO
//! with the config's controllers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::binding::ProgramReplay;
use super::import;
use super::net::Net;
use super::run::{self, RunOptions, SignalController, Site, SumoError};
use citygate_protocols::signal::SignalState;
use citygate_protocols::Reading;

use crate::signals::config::ControllerKind;
use crate::signals::lookahead::LookAhead;
use crate::signals::runtime::{controller_for, IntersectionRuntime};
use crate::signals::PlannedFlow;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SumoArgs {
    #[command(subcommand)]
    pub command: Option<SumoCommand>,
    /// The SUMO configuration to run (e.g. a kit scenario's `scenario.sumocfg`).
    #[arg(long, required = false)]
    pub sumocfg: Option<PathBuf>,
    /// The gateway config with the intersections (as written by `citygate sumo import`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The SUMO additional file with the detectors (default: `<config stem>.det.add.xml`).
    #[arg(long)]
    pub detectors: Option<PathBuf>,
    /// SUMO's random seed (departures).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// SUMO's output prefix, relative to the .sumocfg's folder (its folder must exist).
    #[arg(long)]
    pub output_prefix: Option<String>,
    /// The sumo binary (default: $SUMO_BINARY, .venv-sumo/bin/sumo, or sumo on PATH).
    #[arg(long)]
    pub sumo_bin: Option<PathBuf>,
    /// A progress line every this many simulated seconds (0: none).
    #[arg(long, default_value_t = 300.0)]
    pub progress_every: f64,
    /// Stop at this simulation time even if vehicles remain (default: the config's end).
    #[arg(long)]
    pub end: Option<f64>,
    /// The controller of every intersection (default: each intersection's `controller`).
    /// `sumo_program` replays the net's own program through the signal groups (a check).
    #[arg(long, value_enum)]
    pub controller: Option<Choice>,
}

#[derive(Subcommand, Debug)]
pub enum SumoCommand {
    /// Write the gateway config and a detector file for the traffic lights of a SUMO net.
    Import {
        #[arg(long)]
        net: PathBuf,
        /// Traffic lights to import (default: all).
        #[arg(long)]
        tls: Vec<String>,
        /// The gateway config to write.
        #[arg(short, long, default_value = "citygate.toml")]
        output: PathBuf,
        /// The SUMO additional file with the detectors (default: beside the config,
        /// `<config stem>.det.add.xml`).
        #[arg(long)]
        detectors: Option<PathBuf>,
        /// The `controller` written for every intersection.
        #[arg(long, value_enum, default_value_t = Choice::LookAhead)]
        controller: Choice,
        /// The `[gateway] id` written.
        #[arg(long, default_value = "sumo")]
        gateway_id: String,
    },
}

/// `--controller`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum Choice {
    FixedTime,
    Actuated,
    MaxPressure,
    LookAhead,
    /// The net's own program, replayed through the signal groups (not a controller: a check
    /// of the binding; bypasses the safety supervisor).
    SumoProgram,
}

impl Choice {
    fn kind(self) -> Option<ControllerKind> {
        match self {
            Choice::FixedTime => Some(ControllerKind::FixedTime),
            Choice::Actuated => Some(ControllerKind::Actuated),
            Choice::MaxPressure => Some(ControllerKind::MaxPressure),
            Choice::LookAhead => Some(ControllerKind::LookAhead),
            Choice::SumoProgram => None,
        }
    }
}

/// Builds the controller of one intersection: the config's (or `choice`), behind the signals
/// runtime; or the net's program replay.
pub fn controller(
    choice: Option<Choice>,
    site: &Site<'_>,
) -> Result<Box<dyn SignalController>, SumoError> {
    if choice == Some(Choice::SumoProgram) {
        let program = site.net.program(&site.binding.tls).ok_or_else(|| {
            SumoError::Gateway(format!("{}: no program in the net", site.binding.tls))
        })?;
        return Ok(Box::new(Replay(ProgramReplay::new(site.binding, program))));
    }
    let kind = choice
        .and_then(Choice::kind)
        .unwrap_or(site.model.controller);
    let mut model = site.model.clone();
    model.controller = kind;
    // the look-ahead takes its inflows from the config (`[[intersection.inflow]]`), as live
    let c: Box<dyn crate::signals::Controller> = match kind {
        ControllerKind::LookAhead => {
            Box::new(LookAhead::with_speed(&model, site.approach_speed_mps))
        }
        _ => controller_for(&model),
    };
    Ok(Box::new(Runtime(IntersectionRuntime::new(model, c))))
}

/// The gateway's own runtime for one intersection: readings in, the controller's decisions
/// through the safety supervisor, group states out.
struct Runtime(IntersectionRuntime);

impl SignalController for Runtime {
    fn on_reading(&mut self, r: &Reading, now: f64) {
        self.0.on_reading(r, now);
    }
    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
        self.0.tick(now).states
    }
    fn outflow(&self, now: f64) -> Vec<PlannedFlow> {
        self.0.outflow(now)
    }
    fn on_peer_flow(&mut self, flow: &PlannedFlow) {
        self.0.on_peer_flow(flow);
    }
    fn report(&self) -> String {
        let c = self.0.counters();
        format!(
            "{} stage changes ({} forced by max green); refused: {} before min green, {} in transition, {} unknown stage",
            c.stage_changes,
            c.forced_max_green,
            c.refused_min_green,
            c.refused_in_transition,
            c.refused_unknown_stage
        )
    }
}

struct Replay(ProgramReplay);

impl SignalController for Replay {
    fn on_reading(&mut self, _r: &Reading, _now: f64) {}
    fn tick(&mut self, now: f64) -> Vec<(String, SignalState)> {
        self.0.tick(now)
    }
}

/// `citygate sumo import`: returns the lines to print.
pub fn import(
    net: &Path,
    tls: &[String],
    output: &Path,
    detectors: Option<&Path>,
    controller: Choice,
    gateway_id: &str,
) -> anyhow::Result<String> {
    let Some(kind) = controller.kind() else {
        anyhow::bail!("sumo_program is not a controller for the config; pick one of fixed_time, actuated, max_pressure, look_ahead");
    };
    let n = Net::load(net)?;
    let plans = import::import(&n, tls)?;
    let det_path = detectors
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run::default_detectors(output));
    let text = import::gateway_toml(&n, &plans, gateway_id, kind.as_str());
    // what we write must be a config the gateway accepts
    if let Err(e) = crate::config::load_str(&text, &output.display().to_string()) {
        anyhow::bail!("the imported config does not validate (a bug in the import):\n{e}");
    }
    std::fs::write(output, text)?;
    std::fs::write(&det_path, import::detectors_xml(&plans))?;
    let mut lines = Vec::new();
    for p in &plans {
        lines.push(format!(
            "{}: {} links, {} signal groups, {} stages, {} conflicts, {} detectors, cycle {:.0} s",
            p.id,
            p.links,
            p.signal_group.len(),
            p.stage.len(),
            p.conflicts.len(),
            p.detector.len(),
            p.program.iter().map(|x| x.duration_s).sum::<f64>()
        ));
    }
    lines.push(format!(
        "wrote {} and {}",
        output.display(),
        det_path.display()
    ));
    Ok(lines.join("\n"))
}

/// Runs `citygate sumo ...`.
pub fn main(args: SumoArgs) -> ExitCode {
    let r = match args.command {
        Some(SumoCommand::Import {
            net,
            tls,
            output,
            detectors,
            controller,
            gateway_id,
        }) => import(
            &net,
            &tls,
            &output,
            detectors.as_deref(),
            controller,
            &gateway_id,
        )
        .map(|s| {
            use std::io::Write;
            // a closed stdout (`| head`) is not an error worth a panic
            let _ = writeln!(std::io::stdout(), "{s}");
        }),
        None => run_cmd(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("citygate sumo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_cmd(args: &SumoArgs) -> anyhow::Result<()> {
    let (Some(sumocfg), Some(config)) = (&args.sumocfg, &args.config) else {
        anyhow::bail!(
            "needs --sumocfg FILE and --config GATEWAY.toml (or the `import` subcommand)"
        );
    };
    let opts = RunOptions {
        sumocfg: sumocfg.clone(),
        config: config.clone(),
        detectors: args.detectors.clone(),
        seed: args.seed,
        output_prefix: args.output_prefix.clone(),
        sumo_bin: args.sumo_bin.clone(),
        progress_every_s: args.progress_every,
        end_s: args.end,
    };
    let choice = args.controller;
    let mut out = std::io::stdout();
    run::run(&opts, &move |site| controller(choice, site), &mut out)?;
    Ok(())
}
