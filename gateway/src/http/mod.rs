//! The gateway's one HTTP server (`[http]`): `/` (the status page, `page/index.html`,
//! embedded), `/metrics` (Prometheus), `/healthz`, `/readyz`, `/api/status` (the
//! status as JSON), with bearer token authentication on every route when a token is
//! configured (always beyond loopback). It only reads what the stages count
//! (`status::Stats`); it never blocks them.
//!
//! - [`config`]: the `[http]` section and the token from the environment;
//! - `auth`: the bearer token check;
//! - [`metrics`]: the metrics and their names, written by `prom` (the text format);
//! - [`health`]: `/healthz` and `/readyz`;
//! - `process`: the process's memory and CPU.

pub mod config;
pub mod health;
pub mod metrics;

mod auth;
mod process;
mod prom;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{HttpConfig, TokenError};

use std::sync::atomic::Ordering;

use citygate_protocols::Class;

use crate::clock;
use crate::outbox::Outbox;
use crate::secret::Secret;
use crate::status::Stats;

/// What the handlers read, built once by `run::start`.
pub struct Context {
    pub gateway: String,
    pub stats: Arc<Stats>,
    pub outbox: Arc<Outbox>,
    /// Each intersection's id and its stages' ids, in configuration order.
    pub intersections: Vec<(String, Vec<String>)>,
    pub uplink_backoff_max_ms: u64,
    pub has_mqtt_sources: bool,
    pub ready_grace_ms: u64,
    /// When the gateway started (`clock::mono_ms()`): the uplink's grace and the stages'
    /// first beats count from then.
    pub started_ms: u64,
}

impl Context {
    /// The context of a gateway configured by `cfg`.
    pub fn new(cfg: &crate::config::Config, stats: Arc<Stats>, outbox: Arc<Outbox>) -> Context {
        Context {
            gateway: cfg.gateway.id.clone(),
            stats,
            outbox,
            intersections: cfg
                .intersection
                .iter()
                .map(|i| (i.id.clone(), i.stage.iter().map(|s| s.id.clone()).collect()))
                .collect(),
            uplink_backoff_max_ms: cfg.uplink.backoff_max_ms,
            has_mqtt_sources: !cfg.sources.mqtt.is_empty(),
            ready_grace_ms: cfg.http.ready_grace_s.saturating_mul(1000),
            started_ms: clock::mono_ms(),
        }
    }
}

struct Shared {
    ctx: Context,
    token: Option<Secret>,
    /// When the server started (seconds since the epoch), for `process_start_time_seconds`.
    started_s: f64,
}

/// Why the HTTP server did not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("http.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running server; [`HttpServer::shutdown`] stops it.
pub struct HttpServer {
    /// The address it listens on (the configured one, with the port chosen for port 0).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The bearer token `cfg` requires, read from the process environment. Called before
/// anything starts, so that a gateway without its token refuses to start.
pub fn token_from_env(cfg: &HttpConfig) -> Result<Option<Secret>, TokenError> {
    cfg.token(&|name| std::env::var(name).ok())
}

/// Starts the server on `cfg.listen` with `token` (from [`token_from_env`]).
pub async fn start(
    cfg: &HttpConfig,
    token: Option<Secret>,
    ctx: Context,
) -> Result<HttpServer, HttpError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    let shared = Arc::new(Shared {
        ctx,
        token,
        started_s: clock::wall_s() - clock::mono_s(),
    });
    let app = router(shared);
    let (stop, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("http server on {addr} stopped: {e}");
        }
    });
    tracing::info!("http server listening on http://{addr}/");
    Ok(HttpServer { addr, stop, task })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(api_status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            auth::require_token,
        ))
        .with_state(shared)
}

/// The status page: one file, no assets from elsewhere; it polls `/api/status`.
const PAGE: &str = include_str!("page/index.html");

async fn page() -> impl IntoResponse {
    axum::response::Html(PAGE)
}

/// `/api/status`: the status snapshot and what only the server knows.
#[derive(serde::Serialize)]
struct ApiStatus {
    gateway: String,
    version: &'static str,
    uptime_s: f64,
    last_puback_age_s: Option<f64>,
    /// Age of the oldest stored record per class (`alert`, `event`, `summary`).
    outbox_oldest_age_s: std::collections::BTreeMap<&'static str, Option<f64>>,
    #[serde(flatten)]
    snapshot: crate::status::Snapshot,
}

/// The oldest stored record's age per class (by rank) and the seconds since the last PUBACK.
fn ages(c: &Context) -> ([Option<f64>; 3], Option<f64>) {
    let now_ms = clock::wall_ms();
    let oldest = Class::ALL.map(|class| {
        let o = c
            .outbox
            .pending_after(class, 0, 1)
            .ok()?
            .into_iter()
            .next()?;
        Some(now_ms.saturating_sub(o.stored_ms) as f64 / 1000.0)
    });
    let last = c.stats.last_puback_ms.load(Ordering::Relaxed);
    let puback = (last > 0).then(|| clock::mono_ms().saturating_sub(last - 1) as f64 / 1000.0);
    (oldest, puback)
}

async fn api_status(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let (oldest, last_puback_age_s) = ages(&s.ctx);
    axum::Json(ApiStatus {
        gateway: s.ctx.gateway.clone(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: clock::mono_ms().saturating_sub(s.ctx.started_ms) as f64 / 1000.0,
        last_puback_age_s,
        outbox_oldest_age_s: Class::ALL
            .iter()
            .zip(oldest)
            .map(|(c, a)| (c.as_str(), a))
            .collect(),
        snapshot: s.ctx.stats.snapshot(),
    })
}

fn answer<T: serde::Serialize>(ok: bool, body: T) -> axum::response::Response {
    let code = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn healthz(State(s): State<Arc<Shared>>) -> axum::response::Response {
    let st = &s.ctx.stats;
    let beats: Vec<_> = crate::status::Stage::ALL
        .iter()
        .map(|stage| {
            (
                *stage,
                Some(st.last_beat_ms(*stage).unwrap_or(s.ctx.started_ms)),
            )
        })
        .collect();
    let l = health::liveness(clock::mono_ms(), &beats, s.ctx.uplink_backoff_max_ms);
    answer(l.alive, l)
}

async fn readyz(State(s): State<Arc<Shared>>) -> axum::response::Response {
    let st = &s.ctx.stats;
    let r = health::readiness(&health::ReadyInputs {
        now_ms: clock::mono_ms(),
        outbox_open: st.outbox.get().is_some(),
        outbox_failing: s.ctx.outbox.failed(),
        has_mqtt_sources: s.ctx.has_mqtt_sources,
        ingest_subscribed: st.ingest_subscribed.load(Ordering::Relaxed),
        uplink_connected: st.uplink_connected.load(Ordering::Relaxed),
        uplink_changed_ms: st
            .uplink_changed_ms
            .load(Ordering::Relaxed)
            .max(s.ctx.started_ms),
        grace_ms: s.ctx.ready_grace_ms,
    });
    answer(r.ready, r)
}

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics_text(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let c = &s.ctx;
    let snapshot = c.stats.snapshot();
    let devices = c
        .stats
        .modbus
        .get()
        .map(|m| m.snapshot())
        .unwrap_or_default();
    let (oldest_age_s, last_puback_age_s) = ages(c);
    let text = metrics::render(&metrics::Inputs {
        gateway: &c.gateway,
        version: env!("CARGO_PKG_VERSION"),
        snapshot: &snapshot,
        devices: &devices,
        oldest_age_s,
        last_puback_age_s,
        intersections: &c.intersections,
        process: metrics::Process {
            resident_bytes: process::resident_bytes(),
            cpu_s: process::cpu_seconds(),
            start_time_s: s.started_s,
        },
    });
    ([(axum::http::header::CONTENT_TYPE, PROMETHEUS_TEXT)], text)
}

impl HttpServer {
    /// Stops accepting, lets requests in progress finish, and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
