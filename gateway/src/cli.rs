//! The `citygate` command line: run a gateway, check a config, or run the demo. The binary's
//! `main` is one call to [`main`], so that the end-to-end tests can build the same command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config;
use crate::run::{self, Gateway};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// What `citygate demo` and `citygate sumo` say in a build without the simulator.
#[cfg(not(feature = "sim"))]
pub const NO_SIMULATOR: &str = "citygate: this build has no simulator (built without the cargo \
feature `sim`, e.g. a cabinet build); `demo` and `sumo` need a build with default features";

/// The arguments a subcommand of a build without the simulator takes: anything, ignored.
#[cfg(not(feature = "sim"))]
#[derive(clap::Args, Debug)]
struct NoSimulator {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

#[derive(Parser)]
#[command(
    name = "citygate",
    version,
    about = "Edge gateway for smart-city sensors"
)]
struct Cli {
    /// How the log (stderr) is written.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway from a config file.
    Run { config: PathBuf },
    /// Validate a config file without running it; prints OK or every error.
    Check { config: PathBuf },
    /// Print the status of the gateway that runs with this config (from its status file).
    Status { config: PathBuf },
    /// Run the gateway on embedded defaults: embedded broker, simulated sensors, a live status line.
    #[cfg(feature = "sim")]
    Demo(crate::sim::demo::DemoArgs),
    /// Write mosquitto's ACL file and a mosquitto.conf fragment from an external `[broker]`.
    BrokerConfig {
        config: PathBuf,
        /// Folder to write `citygate.acl` and `citygate.conf` into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Set a device's password in a password file (mosquitto's `$7$` format); the password is
    /// read from the first line of standard input.
    Passwd { file: PathBuf, user: String },
    /// SUMO software-in-the-loop: import a net's traffic lights, or drive SUMO over TraCI.
    #[cfg(feature = "sim")]
    Sumo(Box<crate::sim::sumo::cli::SumoArgs>),
    /// Not in this build: it was built without the simulator (cargo feature `sim`).
    #[cfg(not(feature = "sim"))]
    #[command(hide = true)]
    Demo(NoSimulator),
    /// Not in this build: it was built without the simulator (cargo feature `sim`).
    #[cfg(not(feature = "sim"))]
    #[command(hide = true)]
    Sumo(NoSimulator),
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.log_format);
    match &cli.command {
        Command::Check { config } => {
            let (text, ok) = config::check(config);
            println!("{text}");
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Status { config } => return print_status(config),
        #[cfg(not(feature = "sim"))]
        Command::Demo(_) | Command::Sumo(_) => {
            eprintln!("{NO_SIMULATOR}");
            return ExitCode::from(2);
        }
        Command::BrokerConfig { config, out } => return broker_config(config, out),
        Command::Passwd { file, user } => return passwd(file, user),
        _ => {}
    }
    #[cfg(feature = "sim")]
    if let Command::Sumo(args) = cli.command {
        return crate::sim::sumo::cli::main(*args);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(crate::run::MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("citygate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(async_main(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("citygate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let cfg = config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let gw = run::start(cfg).await.context("starting the gateway")?;
            run_until_stopped(gw, None, Duration::from_secs(10)).await
        }
        #[cfg(feature = "sim")]
        Command::Demo(args) => crate::sim::demo::run(args).await,
        #[cfg(not(feature = "sim"))]
        Command::Demo(_) => Ok(()),
        Command::Check { .. }
        | Command::Status { .. }
        | Command::BrokerConfig { .. }
        | Command::Passwd { .. }
        | Command::Sumo(_) => Ok(()),
    }
}

/// Prints the status line every `every` until Ctrl-C, SIGTERM or `limit`, then shuts down.
pub(crate) async fn run_until_stopped(
    gw: Gateway,
    limit: Option<Duration>,
    every: Duration,
) -> anyhow::Result<()> {
    let mut status = tokio::time::interval(every);
    let deadline = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = status.tick() => println!("{}", gw.stats.snapshot()),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = &mut deadline => break,
        }
    }
    println!("citygate: shutting down, flushing the outbox");
    let stats = std::sync::Arc::clone(&gw.stats);
    gw.shutdown().await;
    println!("{}", stats.snapshot());
    Ok(())
}

/// `citygate broker-config CONFIG --out DIR`: prints the files written, or the error.
fn broker_config(config: &std::path::Path, out: &std::path::Path) -> ExitCode {
    let written = config::load(config)
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            crate::field::mosquitto::write(&cfg, out, &|name| std::env::var(name).ok())
        });
    match written {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `citygate passwd FILE USER`, the password on standard input.
fn passwd(file: &std::path::Path, user: &str) -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("citygate passwd: reading the password from standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    match crate::field::passwd::set(file, user, password) {
        Ok(()) => {
            println!("{}: password of `{user}` set", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("citygate passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `citygate status CONFIG`: the last status the gateway wrote, and how old it is.
fn print_status(config: &std::path::Path) -> ExitCode {
    let cfg = match config::load(config) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::status::StatusFile::read(&cfg.gateway.data_dir) {
        Ok(s) => {
            let age = crate::clock::wall_s() - s.time;
            let state = if age < 5.0 {
                "running"
            } else {
                "not running (status is stale)"
            };
            println!("gateway {}: {state}, status {age:.0} s old", s.gateway);
            println!("{}", s.report());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "gateway {}: no status in {} ({e}); is it running?",
                cfg.gateway.id,
                cfg.gateway.data_dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "sim"))]
    #[test]
    fn a_build_without_the_simulator_names_it_for_demo_and_sumo() {
        for argv in [
            &["citygate", "demo"][..],
            &["citygate", "demo", "--seconds", "3"],
            &["citygate", "sumo", "import", "--net", "x.net.xml"],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parses");
            assert!(
                matches!(cli.command, Command::Demo(_) | Command::Sumo(_)),
                "{argv:?}"
            );
        }
        assert!(NO_SIMULATOR.contains("no simulator"));
        assert!(NO_SIMULATOR.contains("`sim`"));
    }

    #[cfg(feature = "sim")]
    #[test]
    fn a_build_with_the_simulator_parses_demo_and_sumo() {
        let cli = Cli::try_parse_from(["citygate", "demo", "--seconds", "3"]).expect("parses");
        assert!(matches!(cli.command, Command::Demo(ref a) if a.seconds == Some(3)));
        let cli = Cli::try_parse_from(["citygate", "sumo", "import", "--net", "x.net.xml"])
            .expect("parses");
        assert!(matches!(cli.command, Command::Sumo(_)));
    }
}
