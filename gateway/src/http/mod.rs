//! The gateway's one HTTP server (`[http]`): `/api/status` (the status as JSON), with bearer
//! token authentication on every route when a token is configured (always beyond loopback).
//! It only reads what the stages count (`status::Stats`); it never blocks them.
//!
//! - [`config`]: the `[http]` section and the token from the environment;
//! - `auth`: the bearer token check.

pub mod config;

mod auth;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{HttpConfig, TokenError};

use crate::secret::Secret;
use crate::status::Stats;

/// What the handlers read.
pub struct Shared {
    pub stats: Arc<Stats>,
    token: Option<Secret>,
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
    stats: Arc<Stats>,
) -> Result<HttpServer, HttpError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    let shared = Arc::new(Shared { stats, token });
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
        .route("/api/status", get(api_status))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            auth::require_token,
        ))
        .with_state(shared)
}

async fn api_status(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    axum::Json(s.stats.snapshot())
}

impl HttpServer {
    /// Stops accepting, lets requests in progress finish, and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
