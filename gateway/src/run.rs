//! Wires one gateway together: local broker, MQTT ingest, rules, outbox and uplink, each a
//! tokio task joined by bounded channels, and takes them down in order on shutdown.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use citygate_protocols::topic::{self, Topic};
use citygate_protocols::{Body, Event, Reading, Summary};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::actions::{self, LocalPublish};
use crate::commands::{Command, Downlink, Verifier, VerifierError};
use crate::config::{BrokerConfig, Config};
use crate::mqtt::{BrokerUrl, UrlError};
use crate::outbox::{Outbox, OutboxError};
use crate::rules::hazard::{HazardEngine, HazardOutput};
use crate::rules::summary::{Skipped, Summarizer};
use crate::signals::live::Signals;
use crate::sources::mqtt::epoch_now;
use crate::status::{Stats, StatusFile};
use crate::tls::{SecurityError, UplinkSecurity};
use crate::uplink::{self, UplinkParams};
use crate::{broker, sources};

/// Readings buffered between the sources and the rules.
pub const READINGS_CHANNEL: usize = 8192;
/// Source events (a device offline, a point error) buffered on their way to the outbox.
pub const EVENTS_CHANNEL: usize = 256;
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
    /// Verified downlink commands other than `ping` (`None` when `[commands]` has no keys,
    /// or after it was taken).
    pub commands: Option<mpsc::Receiver<Command>>,
    stop_ingest: watch::Sender<bool>,
    stop_uplink: watch::Sender<bool>,
    ingest: JoinHandle<()>,
    rules: JoinHandle<()>,
    actions_task: JoinHandle<()>,
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
    let hazard = match cfg.hazard.clone() {
        Some(h) => Some(HazardEngine::new(h).map_err(|errors| {
            RunError::Hazard(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?),
        None => None,
    };
    let (actions_tx, actions_rx) = mpsc::channel(actions::QUEUE);
    let actions_task = tokio::spawn(actions::run(
        local.clone(),
        format!("citygate-{gw}-actions"),
        actions_rx,
        Arc::clone(&stats),
    ));

    let (events_tx, events_rx) = mpsc::channel(EVENTS_CHANNEL);
    let modbus = if cfg.sources.modbus.is_empty() {
        None
    } else {
        Some(
            sources::modbus::spawn(cfg.sources.modbus.clone(), tx.clone(), events_tx)
                .map_err(|e| RunError::Modbus(e.to_string()))?,
        )
    };
    let signals = Signals::start(&cfg.intersection, modbus.as_ref().map(|m| m.writer()))
        .map_err(RunError::Signals)?;
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
        events_rx,
        Rules {
            summarizer: Summarizer::new(cfg.summaries.window_s),
            hazard,
            signals,
        },
        Sinks {
            outbox: Arc::clone(&outbox),
            stats: Arc::clone(&stats),
            wake: Arc::clone(&wake),
            actions: actions_tx,
            gateway: gw.clone(),
            data_dir: data_dir.clone(),
        },
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
        modbus,
        commands,
        stop_ingest,
        stop_uplink,
        ingest,
        rules,
        actions_task,
        uplink_task,
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
        let _ = self.actions_task.await;
        let _ = self.stop_uplink.send(true);
        let _ = self.uplink_task.await;
        if let Err(e) = self.outbox.flush() {
            tracing::error!("outbox flush at shutdown failed: {e}");
        }
    }
}

/// The pure rules one gateway runs on every reading.
struct Rules {
    summarizer: Summarizer,
    hazard: Option<HazardEngine>,
    /// Signalised intersections (adaptive control, see `signals`).
    signals: Signals,
}

/// Where rule outputs go.
struct Sinks {
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
    actions: mpsc::Sender<LocalPublish>,
    gateway: String,
    data_dir: PathBuf,
}

impl Sinks {
    fn store(&self, topic: Topic, body: Body) {
        let class = body.class();
        match self
            .outbox
            .append(&topic::format(&self.gateway, &topic), body)
        {
            Ok(_) => Stats::inc(match class {
                citygate_protocols::Class::Alert => &self.stats.alerts_out,
                citygate_protocols::Class::Event => &self.stats.events_out,
                citygate_protocols::Class::Summary => &self.stats.summaries_out,
            }),
            Err(e) => tracing::error!("{} record not stored: {e}", class.as_str()),
        }
        self.wake.notify_one();
    }

    fn summary(&self, s: Summary) {
        let sensor = s.sensor.clone();
        self.store(Topic::Summary { sensor }, Body::Summary(s));
    }

    fn event(&self, e: Event) {
        tracing::info!("event {} from {}: {}", e.kind, e.source, e.message);
        let kind = e.kind.clone();
        self.store(Topic::Event { kind }, Body::Event(e));
    }

    /// Signal-control events and MQTT stage commands of one tick.
    fn signals(&self, events: Vec<Event>, publish: Vec<LocalPublish>) {
        for e in events {
            self.event(e);
        }
        for p in publish {
            if self.actions.try_send(p).is_err() {
                Stats::inc(&self.stats.actions_failed);
                tracing::error!("stage command dropped: the action queue is full");
            }
        }
    }

    fn hazard(&self, outputs: Vec<HazardOutput>, now: f64) {
        for o in outputs {
            match o {
                HazardOutput::Alert(a) => {
                    tracing::warn!(
                        "hazard {}: {:?} {} ({})",
                        a.group,
                        a.lifecycle,
                        a.level.as_deref().unwrap_or("cleared"),
                        a.alert.identifier
                    );
                    let id = a.alert.identifier.clone();
                    self.store(Topic::Alert { id }, a.alert.to_body());
                }
                HazardOutput::SensorFault(f) => self.event(f.event),
                HazardOutput::Degraded { event, .. } => self.event(event),
                HazardOutput::Publish { topic, payload } => {
                    if self
                        .actions
                        .try_send(LocalPublish {
                            topic: topic.clone(),
                            payload,
                        })
                        .is_err()
                    {
                        Stats::inc(&self.stats.actions_failed);
                        tracing::error!(
                            "local action on {topic} dropped: the action queue is full"
                        );
                    }
                }
                HazardOutput::EmergencyPlan {
                    intersection,
                    plan,
                    active,
                } => {
                    self.event(Event {
                        kind: "emergency_plan".into(),
                        source: intersection,
                        message: format!(
                            "{} emergency plan `{plan}`",
                            if active { "requested" } else { "released" }
                        ),
                        time: now,
                    });
                }
            }
        }
    }
}

/// Hands the emergency plans `[hazard]` asks for to the intersections' safety supervisors.
fn emergency_plans(signals: &mut Signals, outputs: &[HazardOutput], now: f64) {
    for o in outputs {
        if let HazardOutput::EmergencyPlan {
            intersection,
            plan,
            active,
        } = o
        {
            signals.emergency_plan(intersection, plan, *active, now);
        }
    }
}

async fn rules_task(
    mut rx: mpsc::Receiver<Reading>,
    mut events: mpsc::Receiver<Event>,
    mut rules: Rules,
    sinks: Sinks,
) {
    let stats = &sinks.stats;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            r = rx.recv() => {
                let Some(r) = r else { break };
                Stats::inc(&stats.readings_in);
                let now = epoch_now();
                rules.signals.on_reading(&r, now);
                if let Some(h) = rules.hazard.as_mut() {
                    let out = h.on_reading(&r, now);
                    emergency_plans(&mut rules.signals, &out, now);
                    sinks.hazard(out, now);
                }
                match rules.summarizer.on_reading(&r, now) {
                    Ok(Some(s)) => sinks.summary(s),
                    Ok(None) => {}
                    Err(Skipped::Late) => Stats::inc(&stats.late),
                    Err(Skipped::Unusable) => Stats::inc(&stats.unusable),
                }
            }
            Some(e) = events.recv() => sinks.event(e),
            (i, result) = rules.signals.next_result() => {
                rules.signals.on_result(i, result, epoch_now());
            }
            _ = tick.tick() => {
                let now = epoch_now();
                for s in rules.summarizer.tick(now) {
                    sinks.summary(s);
                }
                if let Some(h) = rules.hazard.as_mut() {
                    let out = h.tick(now);
                    emergency_plans(&mut rules.signals, &out, now);
                    sinks.hazard(out, now);
                    let line = h
                        .status()
                        .iter()
                        .map(|g| format!("{}: {}", g.id, g.level_sent.as_deref().unwrap_or("normal")))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if let Ok(mut l) = stats.hazards.lock() {
                        *l = line;
                    }
                }
                if !rules.signals.is_empty() {
                    let (events, publish) = rules.signals.tick(now);
                    sinks.signals(events, publish);
                    if let Ok(mut s) = stats.signals.lock() {
                        *s = rules.signals.status(now);
                    }
                }
                stats.outbox_depth.store(sinks.outbox.len() as u64, Ordering::Relaxed);
                if let Err(e) = StatusFile::write(&sinks.data_dir, &sinks.gateway, now, &stats.snapshot()) {
                    tracing::debug!("status file not written: {e}");
                }
            }
        }
    }
    for s in rules.summarizer.flush() {
        sinks.summary(s);
    }
}
