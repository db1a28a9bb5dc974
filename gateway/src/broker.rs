//! The local broker: the embedded one (rumqttd behind the field gate, `field`), or the URL and
//! client security of an external one; and [`LocalClient`], how the gateway's own clients
//! (ingest, actions, peers) connect to it.
//!
//! Embedded, rumqttd listens only on an inner `127.0.0.1` port and accepts only credentials
//! made at start from the operating system's random source: one pair for the gate, one for the
//! gateway's own clients. Field clients reach it through the gate's listeners (`listen`, and
//! `tls_listen` with rustls), which authenticate them and enforce their topic ACLs.
//!
//! rumqttd has no shutdown API and does not report a failed bind, so ports are probed first and
//! the broker runs on a thread of its own for the life of the process; `start` returns once
//! it accepts connections.
//!
//! rumqttd keeps each topic's messages in a commit log of `max_segment_count` segments of
//! `max_segment_size` bytes, and memory grows with topics × segments. A subscriber that falls
//! further behind on a topic than the log holds is moved forward by rumqttd and silently misses
//! messages: measured here, 256 KiB × 2 lost 455 of 200,000 readings of a 150,000 msg/s burst
//! over 100 topics, 512 KiB × 2 lost none in six such rounds at 29 MB peak RSS (1 MiB: 47 MB).
//! Hence 512 KiB × 2 (docs/BENCHMARKS.md). Use an external broker where bursts are larger.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::MqttOptions;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::{anonymous_on, anonymous_setting, BrokerConfig};
use crate::field::acl::Acl;
use crate::field::gate::{Gate, Listener};
use crate::field::passwd::{PasswdError, Reloading};
use crate::mqtt::BrokerUrl;
use crate::secret::Secret;
use crate::status::Stats;
use crate::tls::{ClientKeys, ClientSecurity, Credentials, SecurityError};
use base64::prelude::{Engine as _, BASE64_STANDARD};

/// Largest payload the embedded broker accepts.
pub const MAX_PAYLOAD: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker: cannot listen on {addr}: {source} (is another broker running? set [broker] listen to a free port, or mode = \"external\")")]
    PortTaken {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker on {0} did not start accepting connections within 5 s")]
    NotReady(SocketAddr),
    #[error(transparent)]
    Passwords(#[from] PasswdError),
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error("broker.anonymous: anonymous clients are accepted only on a loopback listener, and `listen` is {0}")]
    AnonymousBeyondLoopback(SocketAddr),
    #[error("broker: {addr} is beyond loopback and there is no `password_file`: refusing to run an open field broker")]
    Unauthenticated { addr: SocketAddr },
    #[error("embedded broker: {0}")]
    Random(std::io::Error),
    #[error("broker: an embedded broker was started for [broker] mode = \"external\"")]
    NotEmbedded,
}

/// How the gateway's own clients reach the local broker.
#[derive(Debug, Clone)]
pub struct LocalClient {
    pub url: BrokerUrl,
    pub security: ClientSecurity,
}

impl std::fmt::Display for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

impl LocalClient {
    /// Options of a client with citygate's packet limits, TLS and credentials.
    pub fn options(&self, client_id: &str, keep_alive_s: u16) -> MqttOptions {
        let mut o = self.url.options(client_id, keep_alive_s);
        self.security.apply(&mut o);
        o
    }

    /// An external broker's URL with the `[broker]` TLS files and credential variables.
    pub fn external(
        cfg: &BrokerConfig,
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LocalClient, crate::run::RunError> {
        let url = BrokerUrl::parse(url)?;
        let security =
            ClientSecurity::load(ClientKeys::broker(cfg), url.tls, &url.to_string(), env)?;
        if security.credentials.is_some() && !url.tls {
            tracing::warn!("local broker {url}: sending the MQTT password without TLS");
        }
        Ok(LocalClient { url, security })
    }
}

/// A started embedded broker.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The gate's plain listener (field devices, the demo's simulator).
    pub listen: SocketAddr,
    /// The gate's TLS listener, if configured.
    pub tls_listen: Option<SocketAddr>,
    /// For the gateway's own clients: rumqttd's inner listener and their credentials.
    pub client: LocalClient,
}

/// Starts rumqttd on an inner port and the gate on the listeners of an embedded `[broker]`.
/// Must be called inside the tokio runtime the gate is to run on.
pub async fn start(cfg: &BrokerConfig, stats: Arc<Stats>) -> Result<Embedded, BrokerError> {
    let BrokerConfig::Embedded {
        listen,
        tls_listen,
        cert_file,
        key_file,
        password_file,
        anonymous,
        devices,
        max_connections,
        max_publish_per_s,
    } = cfg
    else {
        return Err(BrokerError::NotEmbedded);
    };
    let setting = anonymous_setting(listen, *anonymous, password_file.is_some());
    if *anonymous == Some(true) && !listen.ip().is_loopback() {
        return Err(BrokerError::AnonymousBeyondLoopback(*listen));
    }
    let passwords = Reloading::new(password_file.as_deref())?;
    let tls = match (tls_listen, cert_file, key_file) {
        (Some(_), Some(c), Some(k)) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            crate::tls::server_config(c, k)?,
        ))),
        _ => None,
    };
    let mut listeners = Vec::new();
    for (addr, acceptor) in [(Some(*listen), None), (*tls_listen, tls.clone())] {
        let Some(addr) = addr else { continue };
        if !addr.ip().is_loopback() && password_file.is_none() {
            return Err(BrokerError::Unauthenticated { addr });
        }
        let socket = bind(addr)?;
        listeners.push(Listener {
            socket,
            tls: acceptor,
            anonymous: anonymous_on(&addr, setting),
        });
    }
    let gate_login = generated("citygate-gate")?;
    let own_login = generated("citygate-gateway")?;
    let auth = HashMap::from([
        (
            gate_login.username.clone(),
            gate_login.password.expose().to_string(),
        ),
        (
            own_login.username.clone(),
            own_login.password.expose().to_string(),
        ),
    ]);
    let inner = tokio::task::spawn_blocking({
        let n = *max_connections;
        move || start_rumqttd(SocketAddr::from(([127, 0, 0, 1], 0)), Some(auth), n + 16)
    })
    .await
    .map_err(|e| BrokerError::Random(std::io::Error::other(e)))??;
    let gate = Arc::new(Gate::new(
        inner,
        gate_login,
        Arc::new(passwords),
        Acl::new(devices),
        *max_connections,
        *max_publish_per_s,
        stats,
    ));
    let mut bound = Vec::new();
    for l in listeners {
        bound.push(
            l.socket
                .local_addr()
                .map_err(|source| BrokerError::PortTaken {
                    addr: *listen,
                    source,
                })?,
        );
        tokio::spawn(Arc::clone(&gate).run(l));
    }
    Ok(Embedded {
        listen: bound[0],
        tls_listen: bound.get(1).copied(),
        client: LocalClient {
            url: BrokerUrl {
                host: inner.ip().to_string(),
                port: inner.port(),
                tls: false,
            },
            security: ClientSecurity {
                tls: None,
                credentials: Some(own_login),
            },
        },
    })
}

/// A user name and a random password of 32 bytes.
fn generated(username: &str) -> Result<Credentials, BrokerError> {
    let bytes = crate::field::random_bytes::<32>().map_err(BrokerError::Random)?;
    Ok(Credentials {
        username: username.to_string(),
        password: Secret::new(BASE64_STANDARD.encode(bytes)),
    })
}

fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, BrokerError> {
    let err = |source| BrokerError::PortTaken { addr, source };
    let l = TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(l).map_err(err)
}

/// Starts rumqttd on `listen` (port 0 picks a free port) with `auth` (user → password) and
/// returns the address it accepts connections on.
fn start_rumqttd(
    listen: SocketAddr,
    auth: Option<HashMap<String, String>>,
    max_connections: usize,
) -> Result<SocketAddr, BrokerError> {
    let probe = TcpListener::bind(listen).map_err(|source| BrokerError::PortTaken {
        addr: listen,
        source,
    })?;
    let addr = probe
        .local_addr()
        .map_err(|source| BrokerError::PortTaken {
            addr: listen,
            source,
        })?;
    drop(probe);

    let server = ServerSettings {
        name: "citygate-local".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 512 * 1024,
            max_segment_count: 2,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name("citygate-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(|source| BrokerError::PortTaken {
            addr: listen,
            source,
        })?;

    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(BrokerError::NotReady(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = start(&BrokerConfig::embedded(addr), Arc::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("cannot listen"), "{err}");
    }

    #[tokio::test]
    async fn starts_on_a_free_port_and_accepts_connections() {
        let b = start(
            &BrokerConfig::embedded("127.0.0.1:0".parse().unwrap()),
            Arc::default(),
        )
        .await
        .unwrap();
        assert_ne!(b.listen.port(), 0);
        TcpStream::connect(b.listen).unwrap();
    }

    /// The first event of a client of `opts`: its CONNACK, or why it was refused.
    async fn first_event(opts: MqttOptions) -> Result<(), String> {
        let (_c, mut el) = rumqttc::AsyncClient::new(opts, 4);
        match el.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => Ok(()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    #[tokio::test]
    async fn rumqttd_accepts_only_the_generated_credentials() {
        let b = start(
            &BrokerConfig::embedded("127.0.0.1:0".parse().unwrap()),
            Arc::default(),
        )
        .await
        .unwrap();
        assert_eq!(b.client.url.host, "127.0.0.1");
        assert_ne!(b.client.url.port, b.listen.port());
        // The gateway's own clients, with their credentials.
        first_event(b.client.options("own", 30)).await.unwrap();
        // Anyone else who finds the inner port, without or with guessed credentials: rumqttd
        // closes the connection without a CONNACK.
        let bare = b.client.url.options("intruder", 30);
        let e = first_event(bare.clone()).await.unwrap_err();
        assert!(e.contains("ConnectionAborted"), "{e}");
        let mut guessed = bare;
        guessed.set_credentials("citygate-gateway", "citygate");
        let e = first_event(guessed).await.unwrap_err();
        assert!(e.contains("ConnectionAborted"), "{e}");
        // The field listener accepts anonymous clients here: loopback, no password file.
        first_event(MqttOptions::new("dev", "127.0.0.1", b.listen.port()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_open_listener_beyond_loopback_does_not_start() {
        let err = start(
            &BrokerConfig::embedded("0.0.0.0:0".parse().unwrap()),
            Arc::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("beyond loopback"), "{err}");
    }
}
