//! The daemon's topology, built in one place: `citygate run`, `citygate demo` and the tests
//! all call [`start`], which declares every bounded channel between the stages together
//! (their bounds are the constants below). Data flows one way:
//!
//! ```text
//! sources::{mqtt, modbus}  --readings, source events-->  stages::rules
//! stages::rules            --readings, emergency plans--> stages::signals
//! uplink (downlink)        --verified commands-->         stages::signals
//! signals::peers           --neighbours' planned flows--> stages::signals
//! stages::{rules, signals} --local publishes-->           actions --> local broker
//! stages::{rules, signals, upkeep}, uplink (downlink) --records (stages::records)--> outbox
//! outbox --> uplink --> platform broker
//! ```
//!
//! Each stage is a task in its own module that owns its counters. `docs/ARCHITECTURE.md`
//! draws the topology in full. Shutdown goes with the flow: the sources stop, each stage ends
//! when its input closes, then the uplink drains the outbox for [`UPLINK_DRAIN`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::commands::{Downlink, Verifier, VerifierError};
use crate::config::{BrokerConfig, Config};
use crate::mqtt::{BrokerUrl, UrlError};
use crate::outbox::{Outbox, OutboxError};
use crate::rules::hazard::HazardEngine;
use crate::rules::summary::Summarizer;
use crate::signals::live::Signals;
use crate::stages::rules::{self, Rules};
use crate::stages::signals::{self as signal_stage, SignalInputs};
use crate::stages::upkeep;
use crate::status::Stats;
use crate::tls::{ClientKeys, SecurityError, UplinkSecurity};
use crate::uplink::{self, UplinkParams};
use crate::{actions, broker, clock, sources};

/// Readings buffered between the sources and the rules.
pub const READINGS_CHANNEL: usize = 8192;

/// Threads of the runtime's blocking pool (outbox appends in `block_in_place`, flushes). Each
/// thread costs its stack and, with glibc, a malloc arena of its own: left at tokio's 512, a
/// burst of 10,000 summaries at a window close left some 80 threads and 140–230 MB of RSS.
pub const MAX_BLOCKING_THREADS: usize = 4;

/// Source events (a device offline, a point error) buffered on their way to the rules, which
/// store them.
pub const EVENTS_CHANNEL: usize = 256;
/// Readings and emergency plans buffered between the rules and signal control; when full,
/// the rules wait (as they did when signal control ran inside them).
pub const SIGNALS_CHANNEL: usize = 1024;
/// Accepted downlink commands buffered for signal control; when full, new commands are
/// refused as `busy`.
pub const COMMANDS_CHANNEL: usize = 64;
/// Local publishes (sirens, signs, MQTT stage commands) waiting for the actions stage; when
/// full, new ones are dropped and counted in `actions_failed`.
pub const ACTIONS_CHANNEL: usize = 256;
/// Neighbouring gateways' planned outflows waiting for signal control; when full, the newest
/// is dropped (a fresher plan comes every second).
pub const PEERS_CHANNEL: usize = crate::signals::peers::QUEUE;
/// How long the uplink keeps delivering the outbox at shutdown.
pub const UPLINK_DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("modbus: {0}")]
    Modbus(String),
    #[error("hazard rules: {0}")]
    Hazard(String),
    #[error("signal control: {0}")]
    Signals(String),
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error(transparent)]
    Commands(#[from] VerifierError),
    #[error(transparent)]
    HttpToken(#[from] crate::http::TokenError),
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
    /// The Modbus field buses, for writes (signal control, alert actions).
    pub modbus: Option<sources::modbus::ModbusHandle>,
    /// The HTTP server (`[http]`), when enabled and listening.
    pub http: Option<crate::http::HttpServer>,
    stop_ingest: watch::Sender<bool>,
    stop_uplink: watch::Sender<bool>,
    /// In the order they stop: ingest, rules, signals, actions, then upkeep and uplink.
    ingest: JoinHandle<()>,
    rules: JoinHandle<()>,
    signals: JoinHandle<()>,
    actions: JoinHandle<()>,
    upkeep: JoinHandle<()>,
    uplink_task: JoinHandle<()>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local", &self.local)
            .finish()
    }
}

/// A bounded channel when `on`, none otherwise (a stage then waits on it forever).
fn channel_if<T>(on: bool, bound: usize) -> (Option<mpsc::Sender<T>>, Option<mpsc::Receiver<T>>) {
    if on {
        let (tx, rx) = mpsc::channel(bound);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

/// Starts every stage of the gateway described by a validated `cfg`.
pub async fn start(cfg: Config) -> Result<Gateway, RunError> {
    let gw = cfg.gateway.id.clone();
    for w in crate::config::broker_warnings(&cfg) {
        tracing::warn!("{w}");
    }
    // Before anything starts: a server beyond loopback without its token refuses to start.
    let http_token = crate::http::token_from_env(&cfg.http)?;
    let stats = Arc::new(Stats::default());
    let (local, own) = local_broker(&cfg.broker, &stats).await?;
    let params = uplink_params(&cfg, &own)?;
    let verifier = Verifier::new(&gw, &cfg.commands)?;
    if !verifier.has_keys() {
        tracing::info!("downlink commands disabled: no [commands] keys");
    }
    let hazard = hazard_engine(&cfg)?;
    let data_dir = cfg.gateway.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| RunError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let records = upkeep::open(&data_dir, &gw, &cfg.outbox, Arc::clone(&stats))?;

    // The channels between the stages, in the direction of the flow.
    let (readings_tx, readings_rx) = mpsc::channel(READINGS_CHANNEL);
    let (events_tx, events_rx) = mpsc::channel(EVENTS_CHANNEL);
    let (signals_tx, signals_rx) = mpsc::channel(SIGNALS_CHANNEL);
    let (actions_tx, actions_rx) = mpsc::channel(ACTIONS_CHANNEL);
    let (commands_tx, commands_rx) = channel_if(verifier.has_keys(), COMMANDS_CHANNEL);
    let (stop_ingest, ingest_rx) = watch::channel(false);
    let (stop_uplink, uplink_rx) = watch::channel(false);

    let modbus = if cfg.sources.modbus.is_empty() {
        None
    } else {
        Some(
            sources::modbus::spawn(cfg.sources.modbus.clone(), readings_tx.clone(), events_tx)
                .map_err(|e| RunError::Modbus(e.to_string()))?,
        )
    };
    if let Some(m) = &modbus {
        let _ = stats.modbus.set(m.stats_reader());
        stats.sources.add_modbus(&cfg.sources.modbus);
    }
    let signals = Signals::start(&gw, &cfg.intersection, modbus.as_ref().map(|m| m.writer()))
        .map_err(RunError::Signals)?;
    let (peers_tx, peers_rx) = channel_if(signals.coordinates(), PEERS_CHANNEL);
    if let Some(tx) = peers_tx {
        tokio::spawn(crate::signals::peers::listen(
            own.clone(),
            gw.clone(),
            tx,
            Arc::clone(&stats),
        ));
    }
    let ingest = tokio::spawn(sources::mqtt::run(
        own.clone(),
        format!("citygate-{gw}-ingest"),
        cfg.sources.mqtt.clone(),
        readings_tx,
        Arc::clone(&stats),
        ingest_rx,
    ));
    let rules = tokio::spawn(rules::run(
        readings_rx,
        events_rx,
        Rules {
            summarizer: Summarizer::new(cfg.summaries.window_s),
            hazard,
            records: records.clone(),
            actions: actions_tx.clone(),
            signals: signals_tx,
            feed_signals: !signals.is_empty(),
        },
    ));
    let inputs = SignalInputs {
        from_rules: signals_rx,
        commands: commands_rx,
        peers: peers_rx,
    };
    let signals = tokio::spawn(signal_stage::run(
        signals,
        inputs,
        records.clone(),
        actions_tx,
    ));
    let actions = tokio::spawn(actions::run(
        own.clone(),
        format!("citygate-{gw}-actions"),
        actions_rx,
        Arc::clone(&stats),
    ));
    let upkeep = tokio::spawn(upkeep::run(records.clone(), data_dir, uplink_rx.clone()));
    let downlink = commands_tx.map(|tx| {
        // The replay cache and the commands a stop interrupted, from the outbox's journal.
        let journal = crate::commands::Journal::new(Arc::clone(records.outbox()));
        let (d, events) = Downlink::new(&gw, verifier, tx).with_journal(journal, clock::wall_s());
        for e in events {
            records.event(e);
        }
        d
    });
    let uplink_url = params.url.clone();
    let uplink_task = tokio::spawn(uplink::run(
        params,
        downlink,
        records.clone(),
        uplink_rx,
        UPLINK_DRAIN,
    ));
    let http_ctx =
        crate::http::Context::new(&cfg, Arc::clone(&stats), Arc::clone(records.outbox()));
    let http = start_http(&cfg.http, http_token, http_ctx).await;
    Ok(Gateway {
        local,
        http,
        uplink: uplink_url,
        stats,
        outbox: Arc::clone(records.outbox()),
        modbus,
        stop_ingest,
        stop_uplink,
        ingest,
        rules,
        signals,
        actions,
        upkeep,
        uplink_task,
    })
}

/// The local broker: the embedded one (rumqttd behind the field gate), or the external one.
/// Returns the address field devices use and how the gateway's own clients connect.
async fn local_broker(
    cfg: &BrokerConfig,
    stats: &Arc<Stats>,
) -> Result<(BrokerUrl, broker::LocalClient), RunError> {
    match cfg {
        BrokerConfig::Embedded { .. } => {
            let b = broker::start(cfg, Arc::clone(stats)).await?;
            match b.tls_listen {
                Some(t) => {
                    tracing::info!("embedded broker listening on {} and {t} (TLS)", b.listen)
                }
                None => tracing::info!("embedded broker listening on {}", b.listen),
            }
            let field = BrokerUrl {
                host: b.listen.ip().to_string(),
                port: b.listen.port(),
                tls: false,
            };
            Ok((field, b.client))
        }
        BrokerConfig::External { url, .. } => {
            let client = broker::LocalClient::external(cfg, url, &|name| std::env::var(name).ok())?;
            Ok((client.url.clone(), client))
        }
    }
}

/// The HTTP server of `[http]`, unless switched off. A port that cannot be bound is logged
/// and the gateway runs on without it: metrics must not stop alerts or signal control.
async fn start_http(
    cfg: &crate::http::HttpConfig,
    token: Option<crate::secret::Secret>,
    ctx: crate::http::Context,
) -> Option<crate::http::HttpServer> {
    if !cfg.enabled {
        return None;
    }
    match crate::http::start(cfg, token, ctx).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("{e}; running without the HTTP server (metrics, health, status page)");
            None
        }
    }
}

/// The hazard engine of `[hazard]`, if any.
fn hazard_engine(cfg: &Config) -> Result<Option<HazardEngine>, RunError> {
    let Some(h) = cfg.hazard.clone() else {
        return Ok(None);
    };
    HazardEngine::new(h).map(Some).map_err(|errors| {
        RunError::Hazard(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// The uplink's broker (without `[uplink] url`, the local one, as the gateway's own clients
/// reach it), TLS and credentials.
fn uplink_params(cfg: &Config, local: &broker::LocalClient) -> Result<UplinkParams, RunError> {
    let (url, security) = match &cfg.uplink.url {
        Some(u) => {
            let url = BrokerUrl::parse(u)?;
            let security = UplinkSecurity::load(
                ClientKeys::uplink(&cfg.uplink),
                url.tls,
                &url.to_string(),
                &|name| std::env::var(name).ok(),
            )?;
            (url, security)
        }
        None => (local.url.clone(), local.security.clone()),
    };
    if security.credentials.is_some() && !url.tls {
        tracing::warn!(
            "uplink {url}: sending the MQTT password without TLS; use mqtts:// outside a test bench"
        );
    }
    Ok(UplinkParams {
        url,
        config: cfg.uplink.clone(),
        gateway: cfg.gateway.id.clone(),
        security,
    })
}

impl Gateway {
    /// Stops ingest, closes every open window into the outbox, gives the uplink a few seconds
    /// to deliver, and flushes the outbox to disk.
    pub async fn shutdown(self) {
        let _ = self.stop_ingest.send(true);
        let _ = self.ingest.await;
        if let Some(m) = self.modbus {
            m.shutdown().await;
        }
        let _ = self.rules.await;
        let _ = self.signals.await;
        let _ = self.actions.await;
        let _ = self.stop_uplink.send(true);
        let _ = self.upkeep.await;
        let _ = self.uplink_task.await;
        if let Err(e) = self.outbox.flush() {
            tracing::error!("outbox flush at shutdown failed: {e}");
        }
        if let Some(h) = self.http {
            h.shutdown().await;
        }
    }
}
