//! The embedded local broker (rumqttd), for field devices that publish over MQTT.
//!
//! rumqttd has no shutdown API and does not report a failed bind, so the port is probed first
//! and the broker runs on a thread of its own for the life of the process; `start` returns once
//! the broker accepts connections.
//!
//! rumqttd keeps each topic's messages in a commit log of `max_segment_count` segments of
//! `max_segment_size` bytes, and memory grows with topics × segments. A subscriber that falls
//! further behind on a topic than the log holds is moved forward by rumqttd and silently misses
//! messages: measured here, 256 KiB × 2 lost 455 of 200,000 readings of a 150,000 msg/s burst
//! over 100 topics, 512 KiB × 2 lost none in six such rounds at 29 MB peak RSS (1 MiB: 47 MB).
//! Hence 512 KiB × 2 (docs/BENCHMARKS.md). Use an external broker where bursts are larger.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

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
}

/// Starts the embedded broker on `listen` (port 0 picks a free port) and returns the address
/// it accepts connections on.
pub fn start(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
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
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
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

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = start(addr).unwrap_err().to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("cannot listen"), "{err}");
    }

    #[test]
    fn starts_on_a_free_port_and_accepts_connections() {
        let addr = start("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
        TcpStream::connect(addr).unwrap();
    }
}
