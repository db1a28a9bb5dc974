//! Gateway configuration: the schema (this file), loading with `${ENV}` substitution and
//! located errors (`load`, `load_str`), semantic checks (`Config::validate`) and the report
//! printed by `citygate check` (`check`). Keys and the error format are documented in
//! `config/README.md`.
//!
//! Every struct rejects unknown keys. Defaults are `const fn`s so that the documented default
//! and the code cannot drift apart.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

mod env;
mod error;
mod load;
mod locate;
pub(crate) mod report;
#[cfg(test)]
mod tests;
mod validate;

pub use error::{ConfigError, ConfigErrors, ValidationError};
pub use load::{check, load, load_str, load_str_with_env, load_with_env};
pub use validate::{
    anonymous_on, anonymous_setting, broker_warnings, check_topic_filter, is_env_var_name,
    parse_mqtt_url, parse_sensor_template, MqttUrl, TemplatePart,
};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub summaries: SummariesConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub uplink: UplinkConfig,
    /// `[hazard]`: disaster alert rules (see `rules::hazard::config`). Absent: no hazard rules.
    #[serde(default)]
    pub hazard: Option<crate::rules::hazard::config::HazardConfig>,
    #[serde(default)]
    pub commands: CommandsConfig,
    /// `[[intersection]]`: signalised intersections under adaptive control (see
    /// `signals::config`).
    #[serde(default)]
    pub intersection: Vec<crate::signals::IntersectionConfig>,
    /// `[http]`: metrics, health checks and the status page (see `http::config`).
    #[serde(default)]
    pub http: crate::http::HttpConfig,
}

/// `[gateway]`: identity and storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Gateway id, used in uplink topics and envelopes: 1–64 characters of `A-Z a-z 0-9 _ -`.
    pub id: String,
    /// Folder for durable state (the outbox). Relative paths are relative to the config file.
    pub data_dir: PathBuf,
}

/// `[broker]`: the local broker that field devices publish to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "mode", rename_all = "snake_case")]
pub enum BrokerConfig {
    /// An embedded broker (rumqttd) started by the gateway, behind the field gate
    /// (`field::gate`): authentication, TLS and topic ACLs.
    Embedded {
        /// Plain MQTT listener.
        #[serde(default = "default_listen")]
        listen: SocketAddr,
        /// MQTT over TLS listener (needs `cert_file` and `key_file`).
        #[serde(default)]
        tls_listen: Option<SocketAddr>,
        /// PEM server certificate chain of `tls_listen`.
        #[serde(default)]
        cert_file: Option<PathBuf>,
        /// PEM private key of `cert_file`.
        #[serde(default)]
        key_file: Option<PathBuf>,
        /// Device passwords, mosquitto format (`user:$7$...`, made by `mosquitto_passwd`).
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// Accept clients without credentials (loopback listeners only). Default: `true` when
        /// `listen` is a loopback address and there is no `password_file`.
        #[serde(default)]
        anonymous: Option<bool>,
        /// `[[broker.devices]]`: what each device may publish and subscribe to.
        #[serde(default)]
        devices: Vec<DeviceAclConfig>,
        /// Field connections open at once at most; more are refused.
        #[serde(default = "default_max_connections")]
        max_connections: usize,
        /// Publishes a second each device connection may send (a token bucket of one second's
        /// worth); faster senders are held back. 0: no limit. Not applied to anonymous
        /// (loopback) clients.
        #[serde(default = "default_max_publish_per_s")]
        max_publish_per_s: u32,
    },
    /// A broker run elsewhere, e.g. mosquitto; `citygate broker-config` writes its ACL.
    External {
        /// `mqtt://host:port` or `mqtts://host:port`
        url: String,
        /// PEM CA certificate(s) the broker's certificate must chain to; required for mqtts.
        #[serde(default)]
        ca_file: Option<PathBuf>,
        /// PEM client certificate chain (mTLS), with `client_key_file`.
        #[serde(default)]
        client_cert_file: Option<PathBuf>,
        /// PEM private key of `client_cert_file`.
        #[serde(default)]
        client_key_file: Option<PathBuf>,
        /// Name of the environment variable holding the gateway's user name on this broker.
        #[serde(default)]
        username_env: Option<String>,
        /// Name of the environment variable holding its password.
        #[serde(default)]
        password_env: Option<String>,
        /// The device password file mosquitto reads (written into `broker-config`'s output).
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// `[[broker.devices]]`, for the ACL file `citygate broker-config` writes.
        #[serde(default)]
        devices: Vec<DeviceAclConfig>,
    },
}

/// One `[[broker.devices]]` entry: a device's user name and its topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAclConfig {
    /// User name, as in the password file.
    pub user: String,
    /// Topic filters the device may publish on.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic filters the device may subscribe to (none by default).
    #[serde(default)]
    pub subscribe: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}

const fn default_max_connections() -> usize {
    1024
}

const fn default_max_publish_per_s() -> u32 {
    200
}

impl BrokerConfig {
    /// An embedded broker on `listen` with every other key at its default.
    pub fn embedded(listen: SocketAddr) -> BrokerConfig {
        BrokerConfig::Embedded {
            listen,
            tls_listen: None,
            cert_file: None,
            key_file: None,
            password_file: None,
            anonymous: None,
            devices: Vec::new(),
            max_connections: default_max_connections(),
            max_publish_per_s: default_max_publish_per_s(),
        }
    }
}

impl BrokerConfig {
    /// The file paths of the section, to resolve relative to the config file.
    pub fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            BrokerConfig::Embedded {
                cert_file,
                key_file,
                password_file,
                ..
            } => [cert_file, key_file, password_file]
                .into_iter()
                .filter_map(Option::as_mut)
                .collect(),
            BrokerConfig::External {
                ca_file,
                client_cert_file,
                client_key_file,
                password_file,
                ..
            } => [ca_file, client_cert_file, client_key_file, password_file]
                .into_iter()
                .filter_map(Option::as_mut)
                .collect(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::embedded(default_listen())
    }
}

/// `[sources]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// `[[sources.mqtt]]`: topic subscriptions on the local broker.
    #[serde(default)]
    pub mqtt: Vec<MqttSourceConfig>,
    /// `[[sources.modbus]]`: Modbus TCP and RTU devices (see `sources::modbus::config`).
    #[serde(default)]
    pub modbus: Vec<crate::sources::modbus::config::DeviceConfig>,
    /// `[[sources.modbus_maps]]`: register maps shared by many devices.
    #[serde(default)]
    pub modbus_maps: Vec<crate::sources::modbus::config::RegisterMapConfig>,
}

/// One `[[sources.mqtt]]` subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Name used in logs and counters.
    pub name: String,
    /// MQTT topic filter, e.g. `field/+/+/level`.
    pub topic: String,
    /// Payload format.
    pub format: PayloadFormat,
    /// Template for the sensor id: `{1}` is the first topic level, `{2}` the second, ...
    /// For SenML payloads the resolved SenML name is appended when the template is empty.
    #[serde(default)]
    pub sensor: String,
    /// For `json`: dot path to the numeric value, e.g. `data.level`.
    #[serde(default)]
    pub value_path: Option<String>,
    /// For `json`: dot path to the timestamp (seconds since the epoch); receive time if absent.
    #[serde(default)]
    pub time_path: Option<String>,
    /// For `json`: the quantity measured, e.g. `water_level`.
    #[serde(default)]
    pub quantity: Option<String>,
    /// For `json`: the SenML unit of the value, e.g. `m`.
    #[serde(default)]
    pub unit: Option<String>,
    /// For `senml`: what to do with a unit outside the SenML registries (default `refuse`).
    #[serde(default)]
    pub unknown_units: Option<citygate_protocols::UnknownUnits>,
    /// QoS of the subscription (0 or 1).
    #[serde(default = "default_qos")]
    pub qos: u8,
}

const fn default_qos() -> u8 {
    1
}

/// Payload formats of MQTT sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// SenML JSON (RFC 8428) pack.
    Senml,
    /// A JSON object; the value is found at `value_path`.
    Json,
}

/// `[summaries]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummariesConfig {
    /// Length of each tumbling window, in seconds (1 to 86400).
    #[serde(default = "default_window_s")]
    pub window_s: u32,
}

const fn default_window_s() -> u32 {
    60
}

impl Default for SummariesConfig {
    fn default() -> Self {
        SummariesConfig {
            window_s: default_window_s(),
        }
    }
}

/// `[outbox]`: the durable store-and-forward queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// sled page cache, in bytes. Small on an edge box.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity_bytes: u64,
    /// Background flush period in milliseconds; 0 flushes after every append.
    /// Alerts are always flushed before they are published.
    #[serde(default = "default_flush_every_ms")]
    pub flush_every_ms: u64,
    /// Budget of stored records (keys and values), in bytes; 0: no limit. When a new record
    /// would exceed it, the oldest summaries, then events, are evicted; alerts never are.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// `[outbox.ttl_s]`: time-to-live per class; absent: records of that class never expire.
    #[serde(default)]
    pub ttl_s: TtlConfig,
    /// Records published per second at most when draining a backlog (a token bucket holding
    /// one second's worth); 0: no limit. Alerts are not paced.
    #[serde(default = "default_drain_per_s")]
    pub drain_per_s: u32,
}

/// `[outbox.ttl_s]`: seconds a record of each class may wait for delivery.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlConfig {
    #[serde(default)]
    pub alerts: Option<u64>,
    #[serde(default)]
    pub events: Option<u64>,
    #[serde(default)]
    pub summaries: Option<u64>,
}

const fn default_cache_capacity() -> u64 {
    4 * 1024 * 1024
}

const fn default_flush_every_ms() -> u64 {
    200
}

const fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}

const fn default_drain_per_s() -> u32 {
    500
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            cache_capacity_bytes: default_cache_capacity(),
            flush_every_ms: default_flush_every_ms(),
            max_bytes: default_max_bytes(),
            ttl_s: TtlConfig::default(),
            drain_per_s: default_drain_per_s(),
        }
    }
}

/// `[uplink]`: the MQTT connection to the government service platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// `mqtt://host:port`. Absent: the local broker.
    #[serde(default)]
    pub url: Option<String>,
    /// MQTT client id; default `citygate-<gateway id>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Keep-alive in seconds.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u16,
    /// Publishes awaiting PUBACK at once.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// First reconnect delay, in milliseconds.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Largest reconnect delay, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// PEM file of the CA certificate(s) the uplink broker's certificate must chain to. The
    /// only trust anchors (no system roots). Required for `mqtts://`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the gateway's client certificate chain (mTLS); with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key; with `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Name of the environment variable holding the MQTT user name (not the name itself).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Name of the environment variable holding the MQTT password (never the password).
    #[serde(default)]
    pub password_env: Option<String>,
}

const fn default_keep_alive_s() -> u16 {
    30
}
const fn default_max_inflight() -> u16 {
    100
}
const fn default_backoff_min_ms() -> u64 {
    200
}
const fn default_backoff_max_ms() -> u64 {
    30_000
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            url: None,
            client_id: None,
            keep_alive_s: default_keep_alive_s(),
            max_inflight: default_max_inflight(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            username_env: None,
            password_env: None,
        }
    }
}

/// `[commands]`: signed downlink commands from the platform. Without keys the gateway does not
/// subscribe to its command topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// Public keys whose signatures are trusted.
    #[serde(default)]
    pub keys: Vec<CommandKeyConfig>,
    /// Largest accepted difference between the gateway clock and `issued_at`, in seconds.
    #[serde(default = "default_max_clock_skew_s")]
    pub max_clock_skew_s: u64,
    /// Longest accepted command lifetime (`expires_at - issued_at`), in seconds. Bounds how
    /// long a nonce must be remembered.
    #[serde(default = "default_max_lifetime_s")]
    pub max_lifetime_s: u64,
    /// Nonces remembered at most; when full, new commands are refused until some expire.
    #[serde(default = "default_replay_capacity")]
    pub replay_capacity: usize,
}

/// One `[[commands.keys]]` entry (or `{ id = .., public_key = .. }` in `keys = [...]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandKeyConfig {
    /// Key id, as in the command's `key_id`.
    pub id: String,
    /// Ed25519 public key: 32 bytes, standard base64 (44 characters with padding).
    pub public_key: String,
}

const fn default_max_clock_skew_s() -> u64 {
    60
}
const fn default_max_lifetime_s() -> u64 {
    3600
}
const fn default_replay_capacity() -> usize {
    10_000
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            keys: Vec::new(),
            max_clock_skew_s: default_max_clock_skew_s(),
            max_lifetime_s: default_max_lifetime_s(),
            replay_capacity: default_replay_capacity(),
        }
    }
}

impl Config {
    /// Parses TOML text without `${ENV}` substitution or validation (for tests and tools).
    pub fn from_toml_str(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }
}
