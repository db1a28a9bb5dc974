//! MQTT connection settings shared by every citygate MQTT client (local ingest, uplink, demo).

use std::time::Duration;

use rumqttc::MqttOptions;

/// Largest MQTT packet citygate sends or accepts. rumqttc's default (10 KiB) would kill the
/// connection on a larger incoming packet, so it is set explicitly.
pub const MAX_PACKET: usize = 256 * 1024;

/// A broker URL that does not parse; the message names the URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct UrlError(pub String);

/// A broker address parsed from `mqtt://host:port` (or `mqtts://host:port` for TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses a URL with the same rules `citygate check` applies.
    pub fn parse(url: &str) -> Result<BrokerUrl, UrlError> {
        let u = crate::config::parse_mqtt_url(url).map_err(UrlError)?;
        Ok(BrokerUrl {
            host: u.host,
            port: u.port,
            tls: u.tls,
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
    fn parses_urls_with_the_config_rules() {
        assert_eq!(
            BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap(),
            BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        assert!(BrokerUrl::parse("http://x:1")
            .unwrap_err()
            .to_string()
            .contains("http://x:1"));
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
