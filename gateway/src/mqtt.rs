//! MQTT connection settings shared by every citygate MQTT client (local ingest, uplink, demo).

use std::time::Duration;

use rumqttc::MqttOptions;

/// Largest MQTT packet citygate sends or accepts. rumqttc's default (10 KiB) would kill the
/// connection on a larger incoming packet, so it is set explicitly.
pub const MAX_PACKET: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("MQTT URL `{url}`: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: &'static str,
}

/// A broker address parsed from `mqtt://host:port` (or `mqtts://host:port` for TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, UrlError> {
        let err = |reason| UrlError {
            url: url.to_string(),
            reason,
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(err("must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse().map_err(|_| err("port is not a number 1-65535"))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(err("host is missing or malformed"));
        }
        if port == 0 {
            return Err(err("port is not a number 1-65535"));
        }
        Ok(BrokerUrl {
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// Options for a client of this broker with citygate's packet-size limits.
    pub fn options(&self, client_id: &str, keep_alive_s: u16) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(u64::from(keep_alive_s.max(5))))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_clean_session(true);
        o
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Whether an MQTT topic filter (`+`, `#` wildcards) matches a topic name.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap(),
            BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(BrokerUrl::parse("mqtts://broker.city").unwrap().port, 8883);
        assert_eq!(
            BrokerUrl::parse("http://x:1").unwrap_err().to_string(),
            "MQTT URL `http://x:1`: must start with mqtt:// or mqtts://"
        );
        assert!(BrokerUrl::parse("mqtt://:1883").is_err());
        assert!(BrokerUrl::parse("mqtt://h:99999").is_err());
    }

    #[test]
    fn matches_filters() {
        assert!(filter_matches("field/+/+/senml", "field/int-1/det-2/senml"));
        assert!(!filter_matches("field/+/+/senml", "field/int-1/senml"));
        assert!(filter_matches("field/#", "field/a/b"));
        assert!(filter_matches("field/#", "field"));
        assert!(!filter_matches("field/+", "field/a/b"));
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }
}
