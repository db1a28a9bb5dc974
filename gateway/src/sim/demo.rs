//! `citygate demo`: the gateway on its built-in default configuration with the simulated
//! field ([`super::field`]: the firmware as virtual Modbus devices) and the MQTT detectors
//! ([`super::sensors`]), printing a status line until stopped.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::run;

/// The built-in default configuration (`config/citygate.toml`).
const DEFAULT_CONFIG: &str = include_str!("../../../config/citygate.toml");

/// The arguments of `citygate demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Where the demo keeps its outbox.
    #[arg(long, default_value = "data/demo")]
    pub data_dir: PathBuf,
    /// Address of the embedded broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: std::net::SocketAddr,
    /// Address of the HTTP server (metrics, health, status; `:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub http: std::net::SocketAddr,
}

/// Runs the demo until Ctrl-C, SIGTERM or `--seconds`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut cfg: Config = config::load_str(DEFAULT_CONFIG, "config/citygate.toml")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.gateway.data_dir = args.data_dir;
    cfg.broker = config::BrokerConfig::embedded(args.listen);
    cfg.http.listen = args.http;
    // The intersections' signal controllers and a flood station run the real firmware
    // as virtual Modbus TCP devices; detectors and a second flood station publish over MQTT.
    let field = super::field::Field::start()
        .await
        .context("starting the virtual field devices")?;
    cfg.sources.modbus = field.devices();
    let problems = cfg.resolve_modbus_maps(std::path::Path::new("."));
    anyhow::ensure!(problems.is_empty(), "demo devices: {problems:?}");
    let gw = run::start(cfg).await.context("starting the demo gateway")?;
    println!(
        "citygate demo: embedded broker on {}; {} intersections and a flood station as virtual Modbus devices ({}), MQTT detectors and a second flood station; Ctrl-C stops",
        gw.local,
        super::sensors::INTERSECTIONS.len(),
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
    let sim = tokio::spawn(super::sensors::run(gw.local.clone(), sim_rx));
    let r = crate::cli::run_until_stopped(
        gw,
        args.seconds.map(Duration::from_secs),
        Duration::from_secs(1),
    )
    .await;
    let _ = stop_sim.send(true);
    let _ = sim.await;
    r
}
