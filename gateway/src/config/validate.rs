//! Semantic checks of a parsed [`Config`]: ranges, identifiers, MQTT topic filters, sensor id
//! templates, units and URLs. Each problem carries the key path it concerns.
//!
//! The small parsers (`syntax`: `parse_mqtt_url`, `check_topic_filter`,
//! `parse_sensor_template`) are public so that the runtime uses the same rules the checker
//! enforces.

use std::collections::HashMap;

use citygate_protocols::Unit;

mod broker;
mod syntax;
pub use broker::{anonymous_on, anonymous_setting, broker_warnings};
use syntax::{check_dot_path, check_template_against_filter, is_quantity_name};
pub use syntax::{
    check_topic_filter, is_env_var_name, parse_mqtt_url, parse_sensor_template, MqttUrl,
    TemplatePart,
};

use super::error::ValidationError;
use super::report::Report;
use super::{Config, MqttSourceConfig, PayloadFormat};
use crate::commands::envelope::valid_key_id;
use crate::commands::verify::decode_public_key;

/// Longest gateway id.
pub const MAX_GATEWAY_ID_LEN: usize = 64;
/// Longest summary window: one day.
pub const MAX_WINDOW_S: u32 = 86_400;
/// Smallest outbox page cache.
pub const MIN_CACHE_CAPACITY_BYTES: u64 = 64 * 1024;
/// Largest outbox page cache.
pub const MAX_CACHE_CAPACITY_BYTES: u64 = 1024 * 1024 * 1024;
/// Longest background flush period of the outbox.
pub const MAX_FLUSH_EVERY_MS: u64 = 60_000;
/// Smallest outbox byte budget (other than 0, no limit).
pub const MIN_OUTBOX_MAX_BYTES: u64 = 64 * 1024;
/// Longest time-to-live of an outbox class: one year.
pub const MAX_TTL_S: u64 = 366 * 86_400;
/// Shortest uplink keep-alive.
pub const MIN_KEEP_ALIVE_S: u16 = 5;
/// Longest uplink client id.
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// Longest reconnect delay: one hour.
pub const MAX_BACKOFF_MS: u64 = 3_600_000;
/// Longest MQTT topic filter (the MQTT string limit).
pub const MAX_TOPIC_LEN: usize = 65_535;
/// Largest accepted clock skew of downlink commands: one hour.
pub const MAX_CLOCK_SKEW_S: u64 = 3600;
/// Longest accepted downlink command lifetime: one day.
pub const MAX_COMMAND_LIFETIME_S: u64 = 86_400;
/// Most nonces the replay window may remember.
pub const MAX_REPLAY_CAPACITY: usize = 1_000_000;

impl Config {
    /// Replaces each Modbus device's `map` and `map_file` by the points they name; `base`
    /// resolves relative map files. Returns the problems found.
    pub fn resolve_modbus_maps(&mut self, base: &std::path::Path) -> Vec<ValidationError> {
        use crate::sources::modbus::{builtin, config::resolve_maps};
        // The built-in maps of citygate's own devices come after the configured ones, so that
        // a configured map of the same name is reported as a duplicate.
        let mut maps = self.sources.modbus_maps.clone();
        maps.extend(builtin::maps());
        match resolve_maps(&self.sources.modbus, &maps, base) {
            Ok(devices) => {
                self.sources.modbus = devices;
                Vec::new()
            }
            Err(e) => e.0,
        }
    }

    /// Semantic checks beyond what the schema's types enforce. Returns every problem found, each
    /// with its key path; an empty list means the configuration is usable.
    pub fn validate(&self) -> Vec<ValidationError> {
        let mut r = Report::new();
        self.validate_gateway(&mut r);
        self.validate_broker(&mut r);
        self.validate_sources(&mut r);
        self.validate_summaries(&mut r);
        self.validate_outbox(&mut r);
        self.validate_uplink(&mut r);
        if let Err(e) =
            crate::sources::modbus::config::validate(&self.sources.modbus, "sources.modbus")
        {
            r.extend(e.0);
        }
        if let Some(h) = &self.hazard {
            if let Err(errors) = h.validate() {
                r.extend(errors);
            }
        }
        self.validate_uplink_security(&mut r);
        broker::validate_own_topics(self, &mut r);
        self.validate_commands(&mut r);
        self.validate_intersections(&mut r);
        for (key, message) in self.http.problems() {
            r.push(key, message);
        }
        r.0
    }

    /// Every `[[intersection]]` (see `signals::model`), unique ids, actuation devices that
    /// exist, and `[hazard]` emergency plans that name a configured intersection and plan.
    fn validate_intersections(&self, r: &mut Report) {
        let mut models = Vec::new();
        for (i, ic) in self.intersection.iter().enumerate() {
            let at = format!("intersection[{i}]");
            if self.intersection[..i].iter().any(|o| o.id == ic.id) {
                r.push(
                    format!("{at}.id"),
                    format!("intersection `{}` is defined twice", ic.id),
                );
            }
            if let Some(d) = ic.actuation.as_ref().and_then(|a| a.modbus_device.as_ref()) {
                if !self.sources.modbus.iter().any(|m| &m.name == d) {
                    r.push(
                        format!("{at}.actuation.modbus_device"),
                        format!("no [[sources.modbus]] device is named `{d}`"),
                    );
                }
            }
            match crate::signals::Intersection::from_config_at(ic, &at) {
                Ok(m) => models.push(Some(m)),
                Err(errors) => {
                    r.extend(errors);
                    models.push(None);
                }
            }
        }
        self.validate_coordination(r);
        let Some(h) = &self.hazard else { return };
        for (gi, g) in h.groups.iter().enumerate() {
            for (li, l) in g.levels.iter().enumerate() {
                for (k, ep) in l.emergency_plans.iter().enumerate() {
                    let p = format!("hazard.groups[{gi}].levels[{li}].emergency_plans[{k}]");
                    match self
                        .intersection
                        .iter()
                        .position(|ic| ic.id == ep.intersection)
                    {
                        None => r.push(
                            format!("{p}.intersection"),
                            format!("no [[intersection]] is named `{}`", ep.intersection),
                        ),
                        Some(i) => {
                            let known = match models.get(i) {
                                Some(Some(m)) => m.plan_index(&ep.plan).is_some(),
                                // invalid intersection: already reported; check the names
                                _ => self.intersection[i].plan.iter().any(|p| p.id == ep.plan),
                            };
                            if !known {
                                r.push(
                                    format!("{p}.plan"),
                                    format!(
                                        "intersection `{}` has no [[intersection.plan]] `{}`",
                                        ep.intersection, ep.plan
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Both ends of coordination between two intersections of this config: an inflow from
    /// one of them names its signal group and has a matching `neighbours` entry there (else
    /// nothing is ever sent), with the same travel time when both give one; a look-ahead
    /// neighbour has the inflow (else what is sent is ignored). Ends on other gateways are
    /// not known here.
    fn validate_coordination(&self, r: &mut Report) {
        use crate::signals::config::ControllerKind;
        let all = &self.intersection;
        for (b, ib) in all.iter().enumerate() {
            for (k, inf) in ib.inflow.iter().enumerate() {
                let p = format!("intersection[{b}].inflow[{k}]");
                let Some(ia) = all.iter().find(|a| a.id == inf.from && a.id != ib.id) else {
                    continue;
                };
                if !ia.signal_group.iter().any(|g| g.id == inf.from_group) {
                    r.push(
                        format!("{p}.from_group"),
                        format!(
                            "intersection `{}`: intersection `{}` has no signal group `{}`",
                            ib.id, ia.id, inf.from_group
                        ),
                    );
                    continue;
                }
                match ia
                    .neighbours
                    .iter()
                    .find(|n| n.intersection == ib.id && n.via_group == inf.from_group)
                {
                    None => r.push(
                        format!("{p}.from"),
                        format!(
                            "intersection `{}`: intersection `{}` sends no planned outflow through `{}` here; add {{ intersection = \"{}\", via_group = \"{}\" }} to its `neighbours`",
                            ib.id, ia.id, inf.from_group, ib.id, inf.from_group
                        ),
                    ),
                    Some(n) => {
                        if let Some(t) = n.travel_s.filter(|t| (t - inf.travel_s).abs() > 1e-9) {
                            r.push(
                                format!("{p}.travel_s"),
                                format!(
                                    "intersection `{}`: travel time {} s from `{}` differs from the {} s in `{}`'s `neighbours` entry; give one value (or drop it there)",
                                    ib.id, inf.travel_s, ia.id, t, ia.id
                                ),
                            );
                        }
                    }
                }
            }
        }
        for (a, ia) in all.iter().enumerate() {
            for (k, n) in ia.neighbours.iter().enumerate() {
                let Some(ib) = all.iter().find(|b| b.id == n.intersection && b.id != ia.id) else {
                    continue;
                };
                if ib.controller != ControllerKind::LookAhead {
                    continue;
                }
                if !ib
                    .inflow
                    .iter()
                    .any(|i| i.from == ia.id && i.from_group == n.via_group)
                {
                    r.push(
                        format!("intersection[{a}].neighbours[{k}]"),
                        format!(
                            "intersection `{}` has no [[intersection.inflow]] from = \"{}\", from_group = \"{}\": its look-ahead would ignore the planned outflow (add the inflow with its signal groups and travel time)",
                            ib.id, ia.id, n.via_group
                        ),
                    );
                }
            }
        }
    }

    fn validate_gateway(&self, r: &mut Report) {
        let id = &self.gateway.id;
        let len = id.chars().count();
        if len == 0 || len > MAX_GATEWAY_ID_LEN {
            r.push(
                "gateway.id",
                format!("gateway id must be 1 to {MAX_GATEWAY_ID_LEN} characters long, not {len}"),
            );
        } else if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            r.push(
                "gateway.id",
                format!(
                    "gateway id `{id}` contains `{}`; only A-Z, a-z, 0-9, `_` and `-` are allowed",
                    bad.escape_debug()
                ),
            );
        }
        if self.gateway.data_dir.as_os_str().is_empty() {
            r.push("gateway.data_dir", "data_dir is empty");
        }
    }

    fn validate_broker(&self, r: &mut Report) {
        broker::validate_broker(&self.broker, r);
    }

    fn validate_sources(&self, r: &mut Report) {
        let mut first_by_name: HashMap<&str, usize> = HashMap::new();
        for (i, source) in self.sources.mqtt.iter().enumerate() {
            let at = format!("sources.mqtt[{i}]");
            if source.name.trim().is_empty() {
                r.push(format!("{at}.name"), "source name is empty");
            } else if let Some(first) = first_by_name.get(source.name.as_str()) {
                r.push(
                    format!("{at}.name"),
                    format!(
                        "duplicate source name `{}` (first used by sources.mqtt[{first}])",
                        source.name
                    ),
                );
            } else {
                first_by_name.insert(&source.name, i);
            }
            validate_mqtt_source(source, &at, r);
        }
    }

    fn validate_summaries(&self, r: &mut Report) {
        let w = self.summaries.window_s;
        if !(1..=MAX_WINDOW_S).contains(&w) {
            r.push(
                "summaries.window_s",
                format!("window_s must be in 1..={MAX_WINDOW_S} seconds, not {w}"),
            );
        }
    }

    fn validate_outbox(&self, r: &mut Report) {
        let o = &self.outbox;
        if !(MIN_CACHE_CAPACITY_BYTES..=MAX_CACHE_CAPACITY_BYTES).contains(&o.cache_capacity_bytes)
        {
            r.push(
                "outbox.cache_capacity_bytes",
                format!(
                    "cache_capacity_bytes must be in {MIN_CACHE_CAPACITY_BYTES}..={MAX_CACHE_CAPACITY_BYTES} \
                     (64 KiB to 1 GiB), not {}",
                    o.cache_capacity_bytes
                ),
            );
        }
        if o.flush_every_ms > MAX_FLUSH_EVERY_MS {
            r.push(
                "outbox.flush_every_ms",
                format!(
                    "flush_every_ms must be in 0..={MAX_FLUSH_EVERY_MS}, not {}",
                    o.flush_every_ms
                ),
            );
        }
        if o.max_bytes != 0 && o.max_bytes < MIN_OUTBOX_MAX_BYTES {
            r.push(
                "outbox.max_bytes",
                format!(
                    "max_bytes must be 0 (no limit) or at least {MIN_OUTBOX_MAX_BYTES} (64 KiB), not {}",
                    o.max_bytes
                ),
            );
        }
        for (name, ttl) in [
            ("alerts", o.ttl_s.alerts),
            ("events", o.ttl_s.events),
            ("summaries", o.ttl_s.summaries),
        ] {
            if let Some(t) = ttl {
                if !(1..=MAX_TTL_S).contains(&t) {
                    r.push(
                        format!("outbox.ttl_s.{name}"),
                        format!(
                            "ttl_s.{name} must be in 1..={MAX_TTL_S} seconds (one year), not {t}"
                        ),
                    );
                }
            }
        }
    }

    fn validate_uplink(&self, r: &mut Report) {
        let u = &self.uplink;
        if let Some(url) = &u.url {
            if let Err(e) = parse_mqtt_url(url) {
                r.push("uplink.url", e);
            }
        }
        if let Some(id) = &u.client_id {
            let len = id.chars().count();
            if len == 0 || len > MAX_CLIENT_ID_LEN {
                r.push(
                    "uplink.client_id",
                    format!(
                        "client_id must be 1 to {MAX_CLIENT_ID_LEN} characters long, not {len}"
                    ),
                );
            } else if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
                r.push(
                    "uplink.client_id",
                    "client_id must not contain spaces or control characters",
                );
            }
        }
        if u.keep_alive_s < MIN_KEEP_ALIVE_S {
            r.push(
                "uplink.keep_alive_s",
                format!(
                    "keep_alive_s must be at least {MIN_KEEP_ALIVE_S}, not {}",
                    u.keep_alive_s
                ),
            );
        }
        if u.max_inflight < 1 {
            r.push(
                "uplink.max_inflight",
                "max_inflight must be at least 1, not 0",
            );
        }
        if u.backoff_min_ms < 1 {
            r.push(
                "uplink.backoff_min_ms",
                "backoff_min_ms must be at least 1, not 0",
            );
        }
        if u.backoff_max_ms > MAX_BACKOFF_MS {
            r.push(
                "uplink.backoff_max_ms",
                format!(
                    "backoff_max_ms must be at most {MAX_BACKOFF_MS} (one hour), not {}",
                    u.backoff_max_ms
                ),
            );
        }
        if u.backoff_min_ms > u.backoff_max_ms {
            r.push(
                "uplink.backoff_min_ms",
                format!(
                    "backoff_min_ms ({}) is greater than backoff_max_ms ({})",
                    u.backoff_min_ms, u.backoff_max_ms
                ),
            );
        }
    }
}

impl Config {
    /// `[uplink]` TLS files and credential variable names. The files themselves and the
    /// variables' values are read and checked at start (`tls::UplinkSecurity::load`).
    fn validate_uplink_security(&self, r: &mut Report) {
        let u = &self.uplink;
        broker::client_keys(
            &broker::ClientKeys {
                section: "uplink",
                has_url: u.url.is_some(),
                tls: u
                    .url
                    .as_deref()
                    .and_then(|url| parse_mqtt_url(url).ok())
                    .map(|url| url.tls),
                ca_file: &u.ca_file,
                client_cert_file: &u.client_cert_file,
                client_key_file: &u.client_key_file,
                username_env: &u.username_env,
                password_env: &u.password_env,
            },
            r,
        );
    }

    fn validate_commands(&self, r: &mut Report) {
        let c = &self.commands;
        let mut first_by_id: HashMap<&str, usize> = HashMap::new();
        for (i, k) in c.keys.iter().enumerate() {
            if !valid_key_id(&k.id) {
                r.push(
                    format!("commands.keys[{i}].id"),
                    format!(
                        "key id `{}` must be 1-64 of A-Z a-z 0-9 _ . -",
                        k.id.escape_debug()
                    ),
                );
            } else if let Some(first) = first_by_id.get(k.id.as_str()) {
                r.push(
                    format!("commands.keys[{i}].id"),
                    format!(
                        "duplicate key id `{}` (first used by commands.keys[{first}])",
                        k.id
                    ),
                );
            } else {
                first_by_id.insert(&k.id, i);
            }
            if decode_public_key(&k.public_key).is_none() {
                r.push(
                    format!("commands.keys[{i}].public_key"),
                    "public_key must be a 32-byte Ed25519 public key in standard base64 \
                     (44 characters ending in `=`)",
                );
            }
        }
        if c.max_clock_skew_s > MAX_CLOCK_SKEW_S {
            r.push(
                "commands.max_clock_skew_s",
                format!(
                    "max_clock_skew_s must be in 0..={MAX_CLOCK_SKEW_S}, not {}",
                    c.max_clock_skew_s
                ),
            );
        }
        if !(1..=MAX_COMMAND_LIFETIME_S).contains(&c.max_lifetime_s) {
            r.push(
                "commands.max_lifetime_s",
                format!(
                    "max_lifetime_s must be in 1..={MAX_COMMAND_LIFETIME_S}, not {}",
                    c.max_lifetime_s
                ),
            );
        }
        if !(1..=MAX_REPLAY_CAPACITY).contains(&c.replay_capacity) {
            r.push(
                "commands.replay_capacity",
                format!(
                    "replay_capacity must be in 1..={MAX_REPLAY_CAPACITY}, not {}",
                    c.replay_capacity
                ),
            );
        }
    }
}

/// `unknown_units` is a policy for the units SenML packs carry; `json` sources name their one
/// unit in the config, which must be registered.
fn validate_unknown_units(s: &MqttSourceConfig, at: &str, r: &mut Report) {
    if s.unknown_units.is_some() && s.format == PayloadFormat::Json {
        r.push(
            format!("{at}.unknown_units"),
            "`unknown_units` is only for `senml` sources; a `json` source's `unit` must be a \
             registered SenML unit",
        );
    }
}

fn validate_mqtt_source(s: &MqttSourceConfig, at: &str, r: &mut Report) {
    validate_unknown_units(s, at, r);
    let topic_ok = match check_topic_filter(&s.topic) {
        Ok(()) => true,
        Err(e) => {
            r.push(format!("{at}.topic"), e);
            false
        }
    };
    if topic_ok {
        if let Err(e) = check_template_against_filter(&s.sensor, &s.topic) {
            r.push(format!("{at}.sensor"), e);
        }
    } else if let Err(e) = parse_sensor_template(&s.sensor) {
        r.push(format!("{at}.sensor"), e);
    }
    if s.qos > 1 {
        r.push(
            format!("{at}.qos"),
            format!("qos must be 0 or 1, not {}", s.qos),
        );
    }
    match s.format {
        PayloadFormat::Json => {
            if s.sensor.is_empty() {
                r.push(
                    format!("{at}.sensor"),
                    "`json` sources need a sensor template, e.g. `{1}`",
                );
            }
            match &s.value_path {
                None => r.push(
                    format!("{at}.value_path"),
                    "`json` sources need `value_path`",
                ),
                Some(p) => {
                    if let Err(e) = check_dot_path(p) {
                        r.push(format!("{at}.value_path"), e);
                    }
                }
            }
            if let Some(p) = &s.time_path {
                if let Err(e) = check_dot_path(p) {
                    r.push(format!("{at}.time_path"), e);
                }
            }
            match &s.quantity {
                None => r.push(format!("{at}.quantity"), "`json` sources need `quantity`"),
                Some(q) if !is_quantity_name(q) => r.push(
                    format!("{at}.quantity"),
                    format!(
                        "quantity `{q}` must be lower-case letters, digits and `_`, \
                         e.g. `water_level`"
                    ),
                ),
                Some(_) => {}
            }
            if let Some(u) = &s.unit {
                if Unit::parse(u).is_none() {
                    r.push(format!("{at}.unit"), format!("unknown SenML unit `{u}`"));
                }
            }
        }
        PayloadFormat::Senml => {
            for (key, present) in [
                ("value_path", s.value_path.is_some()),
                ("time_path", s.time_path.is_some()),
                ("quantity", s.quantity.is_some()),
                ("unit", s.unit.is_some()),
            ] {
                if present {
                    r.push(
                        format!("{at}.{key}"),
                        format!(
                            "`{key}` is only for `json` sources; SenML packs carry their own names, \
                             times and units"
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls() {
        assert_eq!(
            parse_mqtt_url("mqtts://platform.example:8883"),
            Ok(MqttUrl {
                tls: true,
                host: "platform.example".into(),
                port: 8883
            })
        );
        assert_eq!(
            parse_mqtt_url("mqtt://[::1]:1883").map(|u| (u.host, u.port)),
            Ok(("::1".to_string(), 1883))
        );
        for bad in [
            "http://x:1",
            "mqtt://x",
            "mqtt://:1883",
            "mqtt://x:0",
            "mqtt://x:70000",
            "mqtt://x:1883/path",
            "mqtt://user@x:1883",
            "mqtt://[zz]:1",
            "mqtt://a b:1",
        ] {
            assert!(parse_mqtt_url(bad).is_err(), "{bad} accepted");
        }
    }

    fn problems(uplink_and_commands: &str) -> Vec<String> {
        let text = format!("[gateway]\nid = \"gw\"\ndata_dir = \"d\"\n{uplink_and_commands}");
        Config::from_toml_str(&text)
            .unwrap_or_else(|e| panic!("{e}"))
            .validate()
            .into_iter()
            .map(|v| format!("{}: {}", v.key_path, v.message))
            .collect()
    }

    const KEY: &str = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=";

    #[test]
    fn uplink_tls_and_credentials() {
        let ok = "[uplink]\nurl = \"mqtts://p:8883\"\nca_file = \"ca.pem\"\n\
                  client_cert_file = \"c.pem\"\nclient_key_file = \"k.pem\"\n\
                  username_env = \"CG_USER\"\npassword_env = \"CG_PASS\"\n";
        assert_eq!(problems(ok), Vec::<String>::new());
        let p = problems("[uplink]\nurl = \"mqtts://p:8883\"\n");
        assert!(
            p[0].starts_with("uplink.ca_file: an `mqtts://` uplink needs `ca_file`"),
            "{p:?}"
        );
        let p = problems("[uplink]\nurl = \"mqtt://p:1883\"\nca_file = \"ca.pem\"\n");
        assert!(
            p[0].starts_with("uplink.ca_file: `ca_file` needs a TLS uplink"),
            "{p:?}"
        );
        let p = problems("[uplink]\nurl = \"mqtts://p:8883\"\nca_file = \"ca.pem\"\nclient_cert_file = \"c.pem\"\n");
        assert_eq!(
            p,
            ["uplink.client_cert_file: `client_cert_file` needs `client_key_file` too"]
        );
        let p =
            problems("[uplink]\nusername_env = \"CG_USER\"\npassword_env = \"hunter2-Secret!\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("uplink.password_env: `password_env` must be the NAME"),
            "{p:?}"
        );
        assert!(!p[0].contains("hunter2"));
        let p = problems("[uplink]\npassword_env = \"CG_PASS\"\n");
        assert_eq!(
            p,
            ["uplink.password_env: `password_env` needs `username_env` too"]
        );
        use super::syntax::is_env_var_name;
        assert!(is_env_var_name("CITYGATE_UPLINK_PASSWORD"));
        assert!(is_env_var_name("_X1"));
        for bad in ["", "1X", "lower", "A-B", "A B"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    #[test]
    fn commands_section() {
        let ok = format!("[commands]\nkeys = [{{ id = \"p-1\", public_key = \"{KEY}\" }}]\n");
        assert_eq!(problems(&ok), Vec::<String>::new());
        let p = problems(&format!(
            "[commands]\nkeys = [{{ id = \"p-1\", public_key = \"{KEY}\" }}, \
             {{ id = \"p-1\", public_key = \"AAAA\" }}, {{ id = \"a b\", public_key = \"{KEY}\" }}]\n\
             max_clock_skew_s = 7200\nmax_lifetime_s = 0\nreplay_capacity = 0\n"
        ));
        assert_eq!(
            p,
            [
                "commands.keys[1].id: duplicate key id `p-1` (first used by commands.keys[0])",
                "commands.keys[1].public_key: public_key must be a 32-byte Ed25519 public key in \
                 standard base64 (44 characters ending in `=`)",
                "commands.keys[2].id: key id `a b` must be 1-64 of A-Z a-z 0-9 _ . -",
                "commands.max_clock_skew_s: max_clock_skew_s must be in 0..=3600, not 7200",
                "commands.max_lifetime_s: max_lifetime_s must be in 1..=86400, not 0",
                "commands.replay_capacity: replay_capacity must be in 1..=1000000, not 0",
            ]
        );
    }

    #[test]
    fn topic_filters() {
        for good in ["#", "a/#", "+/+/x", "a//b", "/", "field/+/water"] {
            assert_eq!(check_topic_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "+a/b", "a\0b"] {
            assert!(check_topic_filter(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn templates() {
        assert_eq!(
            parse_sensor_template("det-{1}/{12}{{x}}"),
            Ok(vec![
                TemplatePart::Literal("det-".into()),
                TemplatePart::Level(1),
                TemplatePart::Literal("/".into()),
                TemplatePart::Level(12),
                TemplatePart::Literal("{x}".into()),
            ])
        );
        assert_eq!(parse_sensor_template(""), Ok(vec![]));
        for bad in ["{0}", "{x}", "{1", "}", "{+1}", "{}"] {
            assert!(parse_sensor_template(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            check_template_against_filter("{1}/{2}{3}", "f/+/+/senml"),
            Ok(())
        );
        assert!(check_template_against_filter("{2}", "a/#").is_err());
        assert!(check_template_against_filter("{1}", "a/#").is_ok());
        assert!(check_template_against_filter("{3}", "a/+").is_err());
    }
}
