//! The `citygate` command line: run a gateway, check a config, or run the demo. The binary's
//! `main` is one call to [`main`], so that the end-to-end tests can build the same command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Config};
use crate::run::{self, Gateway};
use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

/// The built-in default configuration (`config/citygate.toml`), used by `citygate demo`.
const DEFAULT_CONFIG: &str = include_str!("../../config/citygate.toml");

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
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Where the demo keeps its outbox.
        #[arg(long, default_value = "data/demo")]
        data_dir: PathBuf,
        /// Address of the embedded broker.
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: std::net::SocketAddr,
        /// Address of the HTTP server (metrics, health, status; `:0` picks a free port).
        #[arg(long, default_value = "127.0.0.1:9180")]
        http: std::net::SocketAddr,
    },
    /// SUMO software-in-the-loop: import a net's traffic lights, or drive SUMO over TraCI.
    Sumo(Box<crate::sim::sumo::cli::SumoArgs>),
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
        _ => {}
    }
    if let Command::Sumo(args) = cli.command {
        return crate::sim::sumo::cli::main(*args);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        Command::Demo {
            seconds,
            data_dir,
            listen,
            http,
        } => {
            let mut cfg: Config = config::load_str(DEFAULT_CONFIG, "config/citygate.toml")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            cfg.gateway.data_dir = data_dir;
            cfg.broker = config::BrokerConfig::Embedded { listen };
            cfg.http.listen = http;
            // The intersections' signal controllers and a flood station run the real firmware
            // as virtual Modbus TCP devices; detectors and a second flood station publish over MQTT.
            let field = crate::sim::field::Field::start()
                .await
                .context("starting the virtual field devices")?;
            cfg.sources.modbus = field.devices();
            let problems = cfg.resolve_modbus_maps(std::path::Path::new("."));
            anyhow::ensure!(problems.is_empty(), "demo devices: {problems:?}");
            let gw = run::start(cfg).await.context("starting the demo gateway")?;
            println!(
                "citygate demo: embedded broker on {}; {} intersections and a flood station as virtual Modbus devices ({}), MQTT detectors and a second flood station; Ctrl-C stops",
                gw.local,
                crate::sim::sensors::INTERSECTIONS.len(),
                field.intersections.iter().map(|d| d.addr.to_string()).collect::<Vec<_>>().join(", "),
            );
            match &gw.http {
                Some(h) => println!(
                    "citygate demo: status page http://{0}/ (JSON at /api/status), metrics http://{0}/metrics, health http://{0}/healthz and http://{0}/readyz",
                    h.addr
                ),
                None => println!("citygate demo: no HTTP server (see the log)"),
            }
            let (stop_sim, sim_rx) = watch::channel(false);
            let sim = tokio::spawn(crate::sim::sensors::run(gw.local.clone(), sim_rx));
            let r = run_until_stopped(gw, seconds.map(Duration::from_secs), Duration::from_secs(1))
                .await;
            let _ = stop_sim.send(true);
            let _ = sim.await;
            r
        }
        Command::Check { .. } | Command::Status { .. } | Command::Sumo(_) => Ok(()),
    }
}

/// Prints the status line every `every` until Ctrl-C, SIGTERM or `limit`, then shuts down.
async fn run_until_stopped(
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
            let age = crate::sources::mqtt::epoch_now() - s.time;
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
