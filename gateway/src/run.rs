//! Wires one gateway together: local broker, MQTT ingest, rules, outbox and uplink, each a
//! tokio task joined by bounded channels, and takes them down in order on shutdown.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use citygate_protocols::topic::{self, Topic};
use citygate_protocols::{Body, Reading, Summary};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::commands::{Command, Downlink, Verifier, VerifierError};
use crate::config::{BrokerConfig, Config};
use crate::mqtt::{BrokerUrl, UrlError};
use crate::outbox::{Outbox, OutboxError};
use crate::rules::summary::{Skipped, Summarizer};
use crate::sources::mqtt::epoch_now;
use crate::status::Stats;
use crate::tls::{SecurityError, UplinkSecurity};
use crate::uplink::{self, UplinkParams};
use crate::{broker, sources};

/// Readings buffered between ingest and rules.
pub const READINGS_CHANNEL: usize = 8192;
/// Accepted downlink commands buffered for the rest of the gateway; when full, new commands
/// are refused as `busy`.
pub const COMMANDS_CHANNEL: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error(transparent)]
    Commands(#[from] VerifierError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    pub local: BrokerUrl,
    pub uplink: BrokerUrl,
    pub stats: Arc<Stats>,
    pub outbox: Arc<Outbox>,
    /// Verified downlink commands other than `ping` (`None` when `[commands]` has no keys,
    /// or after it was taken).
    pub commands: Option<mpsc::Receiver<Command>>,
    stop_ingest: watch::Sender<bool>,
    stop_uplink: watch::Sender<bool>,
    ingest: JoinHandle<()>,
    rules: JoinHandle<()>,
    uplink_task: JoinHandle<()>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local", &self.local)
            .finish()
    }
}

/// Starts every stage of the gateway described by a validated `cfg`.
pub async fn start(cfg: Config) -> Result<Gateway, RunError> {
    let gw = cfg.gateway.id.clone();
    let local = match &cfg.broker {
        BrokerConfig::Embedded { listen } => {
            let listen = *listen;
            let addr = tokio::task::spawn_blocking(move || broker::start(listen))
                .await
                .map_err(|e| broker::BrokerError::PortTaken {
                    addr: listen,
                    source: std::io::Error::other(e),
                })??;
            tracing::info!("embedded broker listening on {addr}");
            BrokerUrl {
                host: addr.ip().to_string(),
                port: addr.port(),
                tls: false,
            }
        }
        BrokerConfig::External { url } => BrokerUrl::parse(url)?,
    };
    let uplink_url = match &cfg.uplink.url {
        Some(u) => BrokerUrl::parse(u)?,
        None => local.clone(),
    };

    let security = UplinkSecurity::load(
        &cfg.uplink,
        uplink_url.tls,
        &uplink_url.to_string(),
        &|name| std::env::var(name).ok(),
    )?;
    if security.credentials.is_some() && !uplink_url.tls {
        tracing::warn!(
            "uplink {uplink_url}: sending the MQTT password without TLS; use mqtts:// outside a test bench"
        );
    }
    let verifier = Verifier::new(&gw, &cfg.commands)?;
    let (downlink, commands) = if verifier.has_keys() {
        let (tx, rx) = mpsc::channel(COMMANDS_CHANNEL);
        (Some(Downlink::new(&gw, verifier, tx)), Some(rx))
    } else {
        tracing::info!("downlink commands disabled: no [commands] keys");
        (None, None)
    };

    let data_dir = cfg.gateway.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| RunError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let outbox = Arc::new(Outbox::open(&data_dir.join("outbox"), &gw, &cfg.outbox)?);
    let stats = Arc::new(Stats::default());
    stats
        .outbox_depth
        .store(outbox.len() as u64, Ordering::Relaxed);
    if !outbox.is_empty() {
        tracing::info!(
            "outbox holds {} records from before; resending",
            outbox.len()
        );
    }
    let wake = Arc::new(Notify::new());
    let (stop_ingest, ingest_rx) = watch::channel(false);
    let (stop_uplink, uplink_rx) = watch::channel(false);
    let (tx, rx) = mpsc::channel(READINGS_CHANNEL);

    let ingest = tokio::spawn(sources::mqtt::run(
        local.clone(),
        format!("citygate-{gw}-ingest"),
        cfg.sources.mqtt.clone(),
        tx,
        Arc::clone(&stats),
        ingest_rx,
    ));
    let rules = tokio::spawn(rules_task(
        rx,
        Summarizer::new(cfg.summaries.window_s),
        Arc::clone(&outbox),
        Arc::clone(&stats),
        Arc::clone(&wake),
    ));
    let uplink_task = tokio::spawn(uplink::run(
        UplinkParams {
            url: uplink_url.clone(),
            config: cfg.uplink.clone(),
            gateway: gw,
            security,
        },
        downlink,
        Arc::clone(&outbox),
        Arc::clone(&stats),
        wake,
        uplink_rx,
        Duration::from_secs(3),
    ));
    Ok(Gateway {
        local,
        uplink: uplink_url,
        stats,
        outbox,
        commands,
        stop_ingest,
        stop_uplink,
        ingest,
        rules,
        uplink_task,
    })
}

impl Gateway {
    /// Stops ingest, closes every open window into the outbox, gives the uplink a few seconds
    /// to deliver, and flushes the outbox to disk.
    pub async fn shutdown(self) {
        let _ = self.stop_ingest.send(true);
        let _ = self.ingest.await;
        let _ = self.rules.await;
        let _ = self.stop_uplink.send(true);
        let _ = self.uplink_task.await;
        if let Err(e) = self.outbox.flush() {
            tracing::error!("outbox flush at shutdown failed: {e}");
        }
    }
}

fn store_summary(outbox: &Outbox, stats: &Stats, gateway: &str, s: Summary) {
    let t = topic::format(
        gateway,
        &Topic::Summary {
            sensor: s.sensor.clone(),
        },
    );
    match outbox.append(&t, Body::Summary(s)) {
        Ok(_) => Stats::inc(&stats.summaries_out),
        Err(e) => tracing::error!("summary not stored: {e}"),
    }
}

async fn rules_task(
    mut rx: mpsc::Receiver<Reading>,
    mut summarizer: Summarizer,
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
) {
    let gw = outbox.gateway().to_string();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            r = rx.recv() => {
                let Some(r) = r else { break };
                match summarizer.on_reading(&r, epoch_now()) {
                    Ok(Some(s)) => {
                        store_summary(&outbox, &stats, &gw, s);
                        wake.notify_one();
                    }
                    Ok(None) => {}
                    Err(Skipped::Late) => Stats::inc(&stats.late),
                    Err(Skipped::Unusable) => Stats::inc(&stats.unusable),
                }
            }
            _ = tick.tick() => {
                let closed = summarizer.tick(epoch_now());
                if !closed.is_empty() {
                    for s in closed {
                        store_summary(&outbox, &stats, &gw, s);
                    }
                    wake.notify_one();
                }
                stats.outbox_depth.store(outbox.len() as u64, Ordering::Relaxed);
            }
        }
    }
    for s in summarizer.flush() {
        store_summary(&outbox, &stats, &gw, s);
    }
    wake.notify_one();
}
