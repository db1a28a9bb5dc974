//! Checks of `[broker]` (the field side: listeners, authentication, device ACLs) and of the
//! client security keys shared by `[broker]` (external) and `[uplink]`, and the warnings
//! `citygate check` prints and `citygate run` logs. The anonymous rule used at run time
//! ([`anonymous_on`]) lives here so that the checker and the gate cannot disagree.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::syntax::{check_topic_filter, is_env_var_name, parse_mqtt_url};
use crate::config::report::Report;
use crate::config::{BrokerConfig, Config, DeviceAclConfig};

/// Whether the embedded broker's setting accepts anonymous clients at all: `anonymous` as
/// written, else `true` exactly when `listen` is loopback and no password file is set.
pub fn anonymous_setting(
    listen: &SocketAddr,
    anonymous: Option<bool>,
    has_password_file: bool,
) -> bool {
    anonymous.unwrap_or(listen.ip().is_loopback() && !has_password_file)
}

/// Whether a listener on `addr` accepts anonymous clients: only a loopback listener, and only
/// when the setting allows it.
pub fn anonymous_on(addr: &SocketAddr, setting: bool) -> bool {
    setting && addr.ip().is_loopback()
}

/// The client-side TLS and credential keys of one section (`uplink` or `broker`).
pub(crate) struct ClientKeys<'a> {
    pub section: &'static str,
    /// The section has a URL (`[uplink]` without one uses the local broker).
    pub has_url: bool,
    /// Whether the URL is `mqtts://`, when it parses.
    pub tls: Option<bool>,
    pub ca_file: &'a Option<PathBuf>,
    pub client_cert_file: &'a Option<PathBuf>,
    pub client_key_file: &'a Option<PathBuf>,
    pub username_env: &'a Option<String>,
    pub password_env: &'a Option<String>,
}

/// TLS files only with `mqtts://` (and a CA with it), certificate and key together,
/// credential variables named (never given) and together.
pub(crate) fn client_keys(k: &ClientKeys<'_>, r: &mut Report) {
    let s = k.section;
    if k.tls == Some(true) && k.ca_file.is_none() {
        r.push(
            format!("{s}.ca_file"),
            format!(
                "an `mqtts://` {s} needs `ca_file`: citygate trusts only the CA configured \
                 here, never the system roots"
            ),
        );
    }
    for (key, value) in [
        ("ca_file", k.ca_file),
        ("client_cert_file", k.client_cert_file),
        ("client_key_file", k.client_key_file),
    ] {
        let Some(path) = value else { continue };
        if path.as_os_str().is_empty() {
            r.push(format!("{s}.{key}"), format!("{key} is empty"));
        } else if k.tls == Some(false) || !k.has_url {
            r.push(
                format!("{s}.{key}"),
                format!("`{key}` needs a TLS {s}: set `url` to `mqtts://host:port`"),
            );
        }
    }
    pair(
        r,
        s,
        ("client_cert_file", k.client_cert_file.is_some()),
        ("client_key_file", k.client_key_file.is_some()),
    );
    for (key, value) in [
        ("username_env", k.username_env),
        ("password_env", k.password_env),
    ] {
        if let Some(name) = value {
            if !is_env_var_name(name) {
                // Do not repeat the value: it may be a secret written by mistake.
                r.push(
                    format!("{s}.{key}"),
                    format!(
                        "`{key}` must be the NAME of an environment variable (upper-case \
                         letters, digits and `_`, e.g. `CITYGATE_UPLINK_PASSWORD`), never \
                         the credential itself; secrets are not allowed in config files"
                    ),
                );
            }
        }
    }
    pair(
        r,
        s,
        ("username_env", k.username_env.is_some()),
        ("password_env", k.password_env.is_some()),
    );
}

/// Two keys that go together.
fn pair(r: &mut Report, s: &str, a: (&str, bool), b: (&str, bool)) {
    match (a.1, b.1) {
        (true, false) => r.push(
            format!("{s}.{}", a.0),
            format!("`{}` needs `{}` too", a.0, b.0),
        ),
        (false, true) => r.push(
            format!("{s}.{}", b.0),
            format!("`{}` needs `{}` too", b.0, a.0),
        ),
        _ => {}
    }
}

/// Every problem of `[broker]`.
pub(crate) fn validate_broker(b: &BrokerConfig, r: &mut Report) {
    match b {
        BrokerConfig::Embedded {
            listen,
            tls_listen,
            cert_file,
            key_file,
            password_file,
            anonymous,
            devices,
            max_connections,
            max_publish_per_s,
        } => {
            let setting = anonymous_setting(listen, *anonymous, password_file.is_some());
            if *anonymous == Some(true) && !listen.ip().is_loopback() {
                r.push(
                    "broker.anonymous",
                    format!(
                        "anonymous clients are accepted only on a loopback listener, and \
                         `listen` is {listen}"
                    ),
                );
            }
            for (key, addr) in [
                ("listen", Some(listen)),
                ("tls_listen", tls_listen.as_ref()),
            ] {
                let Some(addr) = addr else { continue };
                if !addr.ip().is_loopback() && password_file.is_none() {
                    r.push(
                        format!("broker.{key}"),
                        format!(
                            "the embedded broker listens on {addr}, beyond loopback, without \
                             authentication: set `password_file` (and [[broker.devices]]), or \
                             listen on 127.0.0.1"
                        ),
                    );
                }
            }
            if !setting && password_file.is_none() && listen.ip().is_loopback() {
                r.push(
                    "broker.password_file",
                    "anonymous clients are not accepted and there is no `password_file`: no \
                     device could connect",
                );
            }
            if tls_listen.is_some() {
                for (key, v) in [("cert_file", cert_file), ("key_file", key_file)] {
                    if v.is_none() {
                        r.push(
                            format!("broker.{key}"),
                            format!("`tls_listen` needs `{key}`"),
                        );
                    }
                }
            } else {
                for (key, v) in [("cert_file", cert_file), ("key_file", key_file)] {
                    if v.is_some() {
                        r.push(
                            format!("broker.{key}"),
                            format!("`{key}` is only used with `tls_listen`"),
                        );
                    }
                }
            }
            if Some(listen) == tls_listen.as_ref() {
                r.push(
                    "broker.tls_listen",
                    "`tls_listen` is the same address as `listen`",
                );
            }
            if !(1..=100_000).contains(max_connections) {
                r.push(
                    "broker.max_connections",
                    format!("max_connections must be in 1..=100000, not {max_connections}"),
                );
            }
            if *max_publish_per_s > 1_000_000 {
                r.push(
                    "broker.max_publish_per_s",
                    format!("max_publish_per_s must be in 0..=1000000, not {max_publish_per_s}"),
                );
            }
            validate_devices(devices, password_file.is_some(), r);
        }
        BrokerConfig::External {
            url,
            ca_file,
            client_cert_file,
            client_key_file,
            username_env,
            password_env,
            password_file,
            devices,
        } => {
            let parsed = parse_mqtt_url(url);
            if let Err(e) = &parsed {
                r.push("broker.url", e.clone());
            }
            client_keys(
                &ClientKeys {
                    section: "broker",
                    has_url: true,
                    tls: parsed.ok().map(|u| u.tls),
                    ca_file,
                    client_cert_file,
                    client_key_file,
                    username_env,
                    password_env,
                },
                r,
            );
            validate_devices(devices, password_file.is_some(), r);
        }
    }
}

fn validate_devices(devices: &[DeviceAclConfig], has_password_file: bool, r: &mut Report) {
    if !devices.is_empty() && !has_password_file {
        r.push(
            "broker.devices",
            "[[broker.devices]] need `password_file`: devices log in with their user name",
        );
    }
    for (i, d) in devices.iter().enumerate() {
        let at = format!("broker.devices[{i}]");
        if !crate::field::passwd::valid_user(&d.user) {
            r.push(
                format!("{at}.user"),
                format!(
                    "`{}` must be 1 to 128 letters, digits, `_`, `-`, `.` or `@`",
                    d.user.escape_debug()
                ),
            );
        } else if devices[..i].iter().any(|o| o.user == d.user) {
            r.push(
                format!("{at}.user"),
                format!("device `{}` is listed twice", d.user),
            );
        }
        for (key, filters) in [("publish", &d.publish), ("subscribe", &d.subscribe)] {
            for (k, f) in filters.iter().enumerate() {
                if let Err(e) = check_topic_filter(f) {
                    r.push(format!("{at}.{key}[{k}]"), e);
                }
            }
        }
    }
}

/// What `citygate check` prints (and `citygate run` logs) as warnings: allowed, but unsafe.
pub fn broker_warnings(cfg: &Config) -> Vec<String> {
    let mut w = Vec::new();
    if cfg.uplink.url.is_none() {
        w.push(
            "uplink: no `url`, so the uplink is the local broker: records never leave this \
             gateway and any local client can read them; set [uplink] url"
                .to_string(),
        );
    }
    if let BrokerConfig::Embedded {
        listen,
        password_file: Some(_),
        ..
    } = &cfg.broker
    {
        if !listen.ip().is_loopback() {
            w.push(format!(
                "broker.listen: devices send their passwords in clear on {listen}; use \
                 `tls_listen` beyond loopback"
            ));
        }
    }
    if let BrokerConfig::External { url, .. } = &cfg.broker {
        if parse_mqtt_url(url).is_ok_and(|u| !u.tls && !is_loopback_host(&u.host)) {
            w.push(format!(
                "broker.url: `{url}` is not TLS and not on this machine; use mqtts://"
            ));
        }
    }
    w
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
