//! `citygate sumo`: `citygate sumo import --net NET.xml [--tls ID...]` writes intersection plans
//! and their detectors for a net's traffic lights; `citygate sumo --sumocfg FILE --config
//! PLAN.toml [--seed N] [--output-prefix P]` drives SUMO with a controller per intersection.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::control::{FixedTimeReplay, SignalController, StageFixedTime};
use super::net::Net;
use super::plan::{self, IntersectionPlan, PlanFile};
use super::run::{self, RunOptions};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SumoArgs {
    #[command(subcommand)]
    pub command: Option<SumoCommand>,
    /// The SUMO configuration to run (e.g. a kit scenario's `scenario.sumocfg`).
    #[arg(long, required = false)]
    pub sumocfg: Option<PathBuf>,
    /// Intersection plans, as written by `citygate sumo import`.
    #[arg(long)]
    pub config: Option<PathBuf>,
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
    /// Which controller drives the signals.
    #[arg(long, value_enum, default_value_t = ControllerKind::FixedTime)]
    pub controller: ControllerKind,
}

#[derive(Subcommand, Debug)]
pub enum SumoCommand {
    /// Write intersection plans and a detector file for the traffic lights of a SUMO net.
    Import {
        #[arg(long)]
        net: PathBuf,
        /// Traffic lights to import (default: all).
        #[arg(long)]
        tls: Vec<String>,
        /// The plan file to write.
        #[arg(short, long, default_value = "citygate-sumo.toml")]
        output: PathBuf,
        /// The SUMO additional file with the detectors (default: beside the plan,
        /// `<plan stem>.det.add.xml`).
        #[arg(long)]
        detectors: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerKind {
    /// Replays the net's own fixed-time program through the signal groups.
    FixedTime,
    /// Fixed time from the plan's stages, yellows and intergreens.
    Stages,
    /// Look-ahead (interim sequencer).
    LookAhead,
}

/// Builds the controller of one intersection.
pub fn controller(kind: ControllerKind, plan: &IntersectionPlan) -> Box<dyn SignalController> {
    match kind {
        ControllerKind::FixedTime => Box::new(FixedTimeReplay::new(plan)),
        ControllerKind::Stages => Box::new(StageFixedTime::new(plan)),
        ControllerKind::LookAhead => Box::new(super::interim::Interim::new(plan)),
    }
}

/// `citygate sumo import`: returns the lines to print.
pub fn import(
    net: &std::path::Path,
    tls: &[String],
    output: &std::path::Path,
    detectors: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let n = Net::load(net)?;
    let plans = plan::import(&n, tls)?;
    let det_path = match detectors {
        Some(d) => d.to_path_buf(),
        None => {
            let stem = output
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "citygate-sumo".into());
            output.with_file_name(format!("{stem}.det.add.xml"))
        }
    };
    let plan_dir = output.parent().unwrap_or(std::path::Path::new(""));
    let rel = det_path
        .strip_prefix(plan_dir)
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|_| std::path::absolute(&det_path).unwrap_or(det_path.clone()));
    let file = PlanFile {
        detectors_file: rel.display().to_string(),
        intersection: plans,
    };
    file.validate(&output.display().to_string())?;
    std::fs::write(output, file.to_toml()?)?;
    std::fs::write(&det_path, plan::detectors_xml(&file.intersection))?;
    let mut lines = Vec::new();
    for p in &file.intersection {
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
        }) => import(&net, &tls, &output, detectors.as_deref()).map(|s| {
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
        anyhow::bail!("needs --sumocfg FILE and --config PLAN.toml (or the `import` subcommand)");
    };
    let opts = RunOptions {
        sumocfg: sumocfg.clone(),
        plan: config.clone(),
        seed: args.seed,
        output_prefix: args.output_prefix.clone(),
        sumo_bin: args.sumo_bin.clone(),
        progress_every_s: args.progress_every,
        end_s: args.end,
    };
    let kind = args.controller;
    let mut out = std::io::stdout();
    run::run(&opts, &|p| controller(kind, p), &mut out)?;
    Ok(())
}
