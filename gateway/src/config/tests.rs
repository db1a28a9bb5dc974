//! Tests of the whole loading pipeline: every kind of bad file gives one exact, located message,
//! substitution keeps positions right, and every shipped configuration file loads.

use std::path::{Path, PathBuf};

use super::*;

const GATEWAY: &str = "[gateway]\nid = \"gw-1\"\ndata_dir = \"data\"\n";

fn env(name: &str) -> Option<String> {
    match name {
        "UPLINK_URL" => Some("mqtts://platform.example:8883".into()),
        "GW_ID" => Some("gw-from-env".into()),
        "QUOTED" => Some("say \"hi\" \\ back\nnow".into()),
        "LONG_NAME" => Some("a-rather-long-source-name-from-the-environment".into()),
        _ => None,
    }
}

fn load_text(text: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(text, "config/x.toml", &env)
}

/// The full error text for `text`; panics (failing the test) when it loads.
fn errors(text: &str) -> String {
    match load_text(text) {
        Ok(_) => panic!("expected errors, but this loaded:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn ok(text: &str) -> Config {
    match load_text(text) {
        Ok(c) => c,
        Err(e) => panic!("expected to load, got:\n{e}"),
    }
}

// ---- schema errors ---------------------------------------------------------------------------

#[test]
fn unknown_key_at_top_level() {
    // Keys after `[gateway]` belong to it: a top-level key must come before any table.
    let text = format!("# gateway config\nlog_level = \"debug\"\n\n{GATEWAY}");
    // The list of sections grows with the gateway; the message names them in order.
    let e = errors(&text);
    assert!(
        e.starts_with(
            "config/x.toml:2:1: log_level: unknown field `log_level`, expected one of `gateway`, \
             `broker`, `sources`, `summaries`, `outbox`, `uplink`"
        ),
        "{e}"
    );
}

#[test]
fn unknown_key_nested() {
    let text = format!(
        "{GATEWAY}\n[[sources.mqtt]]\nname = \"a\"\ntopic = \"a/+\"\nformat = \"senml\"\n\n\
         [[sources.mqtt]]\nname = \"b\"\ntopic = \"b/+\"\nformat = \"senml\"\n  qos_level = 1\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:14:3: sources.mqtt[1].qos_level: unknown field `qos_level`, expected one \
         of `name`, `topic`, `format`, `sensor`, `value_path`, `time_path`, `quantity`, `unit`, \
         `unknown_units`, `qos`"
    );
}

#[test]
fn unknown_key_in_tagged_broker_table() {
    let text = format!("{GATEWAY}[broker]\nmode = \"embedded\"\nport = 1883\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:6:1: broker.port: unknown field `port`, expected one of `listen`, \
         `tls_listen`, `cert_file`, `key_file`, `password_file`, `anonymous`, `devices`, \
         `max_connections`, `max_publish_per_s`"
    );
}

#[test]
fn unknown_subtable() {
    let text = format!("{GATEWAY}[gateway.extra]\nk = 1\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:4:10: gateway.extra: unknown field `extra`, expected `id` or `data_dir`"
    );
}

#[test]
fn wrong_type() {
    let text = format!("{GATEWAY}[uplink]\nkeep_alive_s = \"30s\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:16: uplink.keep_alive_s: invalid type: string \"30s\", expected u16"
    );
}

#[test]
fn integer_out_of_range() {
    let text = format!("{GATEWAY}[uplink]\nmax_inflight = 70000\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:16: uplink.max_inflight: invalid value: integer `70000`, expected u16"
    );
}

#[test]
fn missing_required_key() {
    assert_eq!(
        errors("# comment\n[gateway]\nid = \"gw-1\"\n"),
        "config/x.toml:2:1: gateway.data_dir: missing field `data_dir`"
    );
    assert_eq!(
        errors("[summaries]\nwindow_s = 5\n"),
        "config/x.toml:1:1: gateway: missing field `gateway`"
    );
    let text = format!("{GATEWAY}\n[[sources.mqtt]]\nname = \"a\"\nformat = \"senml\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:1: sources.mqtt[0].topic: missing field `topic`"
    );
}

#[test]
fn bad_enum_variant() {
    let text = format!(
        "{GATEWAY}\n[[sources.mqtt]]\nname = \"a\"\ntopic = \"a/+\"\nformat = \"senml\"\n\n\
         [[sources.mqtt]]\nname = \"b\"\ntopic = \"b/+\"\n    format = \"xml\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:13:14: sources.mqtt[1].format: unknown variant `xml`, expected `senml` or \
         `json`"
    );
    let text = format!("{GATEWAY}[broker]\nmode = \"remote\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:8: broker.mode: unknown variant `remote`, expected `embedded` or \
         `external`"
    );
}

#[test]
fn bad_listen_address() {
    let text = format!("{GATEWAY}[broker]\nmode = \"embedded\"\nlisten = \"localhost\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:6:10: broker.listen: `localhost` is not a socket address: expected \
         `ip:port`, e.g. `127.0.0.1:1883`"
    );
}

#[test]
fn broker_values_of_the_wrong_type() {
    let text = format!("{GATEWAY}[broker]\nmode = \"external\"\nurl = 1883\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:6:7: broker.url: invalid type: expected a string `mqtt://host:port`"
    );
    let text = format!("{GATEWAY}[broker]\nlisten = 1883\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:10: broker.listen: invalid type: expected a string `ip:port`, e.g. \
         \"127.0.0.1:1883\""
    );
}

#[test]
fn dotted_keys_and_inline_tables_are_located() {
    let text = format!("uplink.keep_alive_s = 2\n{GATEWAY}");
    assert_eq!(
        errors(&text),
        "config/x.toml:1:8: uplink.keep_alive_s: keep_alive_s must be at least 5, not 2"
    );
    let text = format!(
        "sources.mqtt = [\n  {{ name = \"a\", topic = \"a/+\", format = \"senml\" }},\n  \
         {{ name = \"b\", topic = \"b/+\", format = \"senml\", qos = 3 }},\n]\n{GATEWAY}"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:3:50: sources.mqtt[1].qos: qos must be 0 or 1, not 3"
    );
}

#[test]
fn syntax_error() {
    assert_eq!(
        errors("[gateway]\nid = \"gw-1\"\ndata_dir = data\n"),
        "config/x.toml:3:12: gateway.data_dir: invalid string; expected `\"`, `'`"
    );
}

// ---- environment substitution ----------------------------------------------------------------

#[test]
fn missing_env_var() {
    let text =
        format!("{GATEWAY}[uplink]\nurl = \"mqtts://${{PLATFORM_HOST}}:${{PLATFORM_PORT}}\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:16: uplink.url: environment variable `PLATFORM_HOST` is not set\n\
         config/x.toml:5:33: uplink.url: environment variable `PLATFORM_PORT` is not set"
    );
}

#[test]
fn bad_env_references() {
    let text = format!("{GATEWAY}[uplink]\nclient_id = \"${{1ID}}\"\nurl = \"${{UPLINK_URL\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:14: uplink.client_id: `${1ID}` is not a valid environment variable \
         reference (names are letters, digits and `_`, not starting with a digit)\n\
         config/x.toml:6:8: uplink.url: `${` without a closing `}` (write `$${` for a literal `${`)"
    );
}

#[test]
fn env_substitution_fills_strings() {
    let c = ok(
        "[gateway]\nid = \"${GW_ID}\"\ndata_dir = \"/var/lib/${GW_ID}\"\n\
         [uplink]\nurl = \"${UPLINK_URL}\"\nclient_id = 'cg-${GW_ID}'\n\
         ca_file = \"/etc/citygate/${GW_ID}-ca.pem\"\n",
    );
    assert_eq!(c.gateway.id, "gw-from-env");
    assert_eq!(c.gateway.data_dir, PathBuf::from("/var/lib/gw-from-env"));
    assert_eq!(
        c.uplink.url.as_deref(),
        Some("mqtts://platform.example:8883")
    );
    assert_eq!(c.uplink.client_id.as_deref(), Some("cg-gw-from-env"));
}

#[test]
fn env_values_cannot_change_the_document() {
    // A value full of quotes, backslashes and newlines stays one string value.
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"${{QUOTED}}\"\ntopic = \"a/+\"\nformat = \"senml\"\n"
    );
    assert_eq!(ok(&text).sources.mqtt[0].name, "say \"hi\" \\ back\nnow");
}

#[test]
fn double_dollar_is_a_literal() {
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"cost $${{UPLINK_URL}} $5\"\ntopic = \"a/+\"\n\
         format = \"senml\"\n"
    );
    assert_eq!(ok(&text).sources.mqtt[0].name, "cost ${UPLINK_URL} $5");
}

#[test]
fn positions_after_a_substitution_are_those_of_the_file() {
    // The substituted value is longer than `${LONG_NAME}`; the error after it on the same line
    // must still point at `xml` as written.
    let text = format!(
        "sources.mqtt = [{{ name = \"${{LONG_NAME}}\", topic = \"a/+\", format = \"xml\" }}]\n{GATEWAY}"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:1:66: sources.mqtt[0].format: unknown variant `xml`, expected `senml` or \
         `json`"
    );
    // A multi-line string holding a reference is re-encoded on one line; later lines keep their
    // numbers.
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"\"\"\n${{GW_ID}}\nsecond line\"\"\"\ntopic = \"a/+\"\n\
         format = \"senml\"\nqos = \"one\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:10:7: sources.mqtt[0].qos: invalid type: string \"one\", expected u8"
    );
}

// ---- validation ------------------------------------------------------------------------------

#[test]
fn invalid_gateway_id() {
    assert_eq!(
        errors("[gateway]\nid = \"gw 1/north\"\ndata_dir = \"d\"\n"),
        "config/x.toml:2:1: gateway.id: gateway id `gw 1/north` contains ` `; only A-Z, a-z, \
         0-9, `_` and `-` are allowed"
    );
    let long = "g".repeat(65);
    assert_eq!(
        errors(&format!("[gateway]\nid = \"{long}\"\ndata_dir = \"d\"\n")),
        "config/x.toml:2:1: gateway.id: gateway id must be 1 to 64 characters long, not 65"
    );
}

#[test]
fn window_zero() {
    let text = format!("{GATEWAY}\n[summaries]\n  window_s = 0\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:6:3: summaries.window_s: window_s must be in 1..=86400 seconds, not 0"
    );
}

#[test]
fn bad_topic_filter() {
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"a\"\ntopic = \"field/#/senml\"\nformat = \"senml\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:6:1: sources.mqtt[0].topic: `#` must be a whole level and the last one \
         in topic filter `field/#/senml` (level 2)"
    );
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"a\"\ntopic = \"field/det+/senml\"\nformat = \"senml\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:6:1: sources.mqtt[0].topic: `+` must be a whole level in topic filter \
         `field/det+/senml` (level 2 is `det+`)"
    );
}

#[test]
fn json_without_value_path_points_at_its_table() {
    let text = format!(
        "{GATEWAY}\n[[sources.mqtt]]\nname = \"flood\"\ntopic = \"field/+/water\"\nformat = \"json\"\n\
         sensor = \"{{2}}\"\nquantity = \"water_level\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:5:1: sources.mqtt[0].value_path: `json` sources need `value_path`"
    );
}

#[test]
fn senml_forbids_json_keys() {
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"a\"\ntopic = \"a/+\"\nformat = \"senml\"\n\
         value_path = \"v\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:8:1: sources.mqtt[0].value_path: `value_path` is only for `json` sources; \
         SenML packs carry their own names, times and units"
    );
}

#[test]
fn unknown_unit() {
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"flood\"\ntopic = \"field/+/water\"\nformat = \"json\"\n\
         sensor = \"{{2}}\"\nvalue_path = \"level\"\nquantity = \"water_level\"\nunit = \"ft\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:11:1: sources.mqtt[0].unit: unknown SenML unit `ft`"
    );
}

#[test]
fn unknown_units_policy() {
    let senml = |policy: &str| {
        format!(
            "{GATEWAY}[[sources.mqtt]]\nname = \"a\"\ntopic = \"a/+\"\nformat = \"senml\"\n\
             unknown_units = \"{policy}\"\n"
        )
    };
    for policy in ["refuse", "opaque"] {
        let c = ok(&senml(policy));
        assert_eq!(
            c.sources.mqtt[0]
                .unknown_units
                .map(|u| format!("{u:?}").to_lowercase()),
            Some(policy.to_string())
        );
    }
    assert!(errors(&senml("keep")).starts_with(
        "config/x.toml:8:17: sources.mqtt[0].unknown_units: unknown variant `keep`, expected \
         `refuse` or `opaque`"
    ));
    let json = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"flood\"\ntopic = \"field/+/water\"\nformat = \"json\"\n\
         sensor = \"{{2}}\"\nvalue_path = \"level\"\nquantity = \"water_level\"\n\
         unknown_units = \"opaque\"\n"
    );
    assert_eq!(
        errors(&json),
        "config/x.toml:11:1: sources.mqtt[0].unknown_units: `unknown_units` is only for `senml` \
         sources; a `json` source's `unit` must be a registered SenML unit"
    );
}

#[test]
fn placeholder_beyond_filter_levels() {
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"flood\"\ntopic = \"field/+/water\"\nformat = \"json\"\n\
         sensor = \"{{2}}-{{4}}\"\nvalue_path = \"level\"\nquantity = \"water_level\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:8:1: sources.mqtt[0].sensor: `{4}` refers to topic level 4, but topic \
         filter `field/+/water` has only 3 levels"
    );
}

#[test]
fn placeholder_on_multi_level_wildcard() {
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"a\"\ntopic = \"radar/#\"\nformat = \"senml\"\n\
         sensor = \"{{2}}\"\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:8:1: sources.mqtt[0].sensor: `{2}` refers to `#` in topic filter \
         `radar/#`, which may match several levels; use `+`"
    );
}

#[test]
fn qos_two() {
    let text = format!(
        "{GATEWAY}[[sources.mqtt]]\nname = \"a\"\ntopic = \"a/+\"\nformat = \"senml\"\nqos = 2\n"
    );
    assert_eq!(
        errors(&text),
        "config/x.toml:8:1: sources.mqtt[0].qos: qos must be 0 or 1, not 2"
    );
}

#[test]
fn duplicate_source_names() {
    let source = "[[sources.mqtt]]\nname = \"detectors\"\ntopic = \"a/+\"\nformat = \"senml\"\n";
    let text = format!("{GATEWAY}{source}{source}");
    assert_eq!(
        errors(&text),
        "config/x.toml:9:1: sources.mqtt[1].name: duplicate source name `detectors` (first used \
         by sources.mqtt[0])"
    );
}

#[test]
fn backoff_min_above_max() {
    let text = format!("{GATEWAY}[uplink]\nbackoff_min_ms = 5000\nbackoff_max_ms = 1000\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:1: uplink.backoff_min_ms: backoff_min_ms (5000) is greater than \
         backoff_max_ms (1000)"
    );
}

#[test]
fn defaults_are_checked_against_written_values() {
    // backoff_max_ms left at its default (30000): the error falls back to the `[uplink]` header.
    let text = format!("{GATEWAY}\n[uplink]\nbackoff_min_ms = 60000\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:6:1: uplink.backoff_min_ms: backoff_min_ms (60000) is greater than \
         backoff_max_ms (30000)"
    );
}

#[test]
fn bad_urls() {
    let text = format!("{GATEWAY}[uplink]\nurl = \"https://platform.example\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:5:1: uplink.url: `https://platform.example` is not an MQTT URL: expected \
         `mqtt://host:port` or `mqtts://host:port`"
    );
    let text = format!("{GATEWAY}[broker]\nmode = \"external\"\nurl = \"mqtt://localhost\"\n");
    assert_eq!(
        errors(&text),
        "config/x.toml:6:1: broker.url: `mqtt://localhost`: missing `:port`"
    );
}

#[test]
fn all_validation_errors_are_reported_in_file_order() {
    let text = "[uplink]\nkeep_alive_s = 1\nmax_inflight = 0\n\n\
                [gateway]\nid = \"\"\ndata_dir = \"d\"\n";
    assert_eq!(
        errors(text),
        "config/x.toml:2:1: uplink.keep_alive_s: keep_alive_s must be at least 5, not 1\n\
         config/x.toml:3:1: uplink.max_inflight: max_inflight must be at least 1, not 0\n\
         config/x.toml:6:1: gateway.id: gateway id must be 1 to 64 characters long, not 0"
    );
    match load_text(text) {
        Err(e) => {
            assert_eq!(e.errors.len(), 3);
            assert_eq!(e.errors[2].key_path, "gateway.id");
            assert_eq!((e.errors[2].line, e.errors[2].column), (6, 1));
        }
        Ok(_) => panic!("loaded"),
    }
}

#[test]
fn validate_is_callable_on_its_own() {
    let mut c = ok(GATEWAY);
    assert!(c.validate().is_empty());
    c.summaries.window_s = 86_401;
    c.outbox.cache_capacity_bytes = 1;
    let found: Vec<String> = c.validate().iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        [
            "summaries.window_s: window_s must be in 1..=86400 seconds, not 86401",
            "outbox.cache_capacity_bytes: cache_capacity_bytes must be in 65536..=1073741824 \
             (64 KiB to 1 GiB), not 1",
        ]
    );
}

// ---- files -----------------------------------------------------------------------------------

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn shipped_configs() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [config_dir(), config_dir().join("examples")] {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let files = shipped_configs();
    assert!(files.len() >= 4, "found only {files:?}");
    for path in &files {
        if let Err(e) = load_with_env(path, &env) {
            panic!("{} does not load:\n{e}", path.display());
        }
    }
}

#[test]
fn default_config_matches_the_demo() {
    let path = config_dir().join("citygate.toml");
    let c = match load_with_env(&path, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.gateway.id, "gw-demo");
    assert_eq!(c.gateway.data_dir, config_dir().join("../data/gw-demo"));
    assert!(matches!(
        c.broker,
        BrokerConfig::Embedded { listen, .. } if listen.to_string() == "127.0.0.1:1883"
    ));
    assert_eq!(c.summaries.window_s, 10);
    let [traffic, flood] = &c.sources.mqtt[..] else {
        panic!("expected two sources, got {:?}", c.sources.mqtt);
    };
    assert_eq!(
        (
            traffic.topic.as_str(),
            traffic.format,
            traffic.sensor.as_str()
        ),
        ("field/+/+/senml", PayloadFormat::Senml, "{2}/{3}")
    );
    assert_eq!(
        (flood.topic.as_str(), flood.format, flood.sensor.as_str()),
        ("field/+/water", PayloadFormat::Json, "{2}")
    );
    assert_eq!(flood.value_path.as_deref(), Some("level"));
    assert_eq!(flood.time_path.as_deref(), Some("ts"));
    assert_eq!(flood.quantity.as_deref(), Some("water_level"));
    assert_eq!(flood.unit.as_deref(), Some("m"));
}

#[test]
fn examples_need_their_environment() {
    let path = config_dir().join("examples/external-broker.toml");
    let e = match load_with_env(&path, &|_| None) {
        Ok(_) => panic!("loaded without UPLINK_URL"),
        Err(e) => e,
    };
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].key_path, "uplink.url");
    assert_eq!(
        e.errors[0].message,
        "environment variable `UPLINK_URL` is not set"
    );
}

#[test]
fn load_resolves_data_dir_next_to_the_file_and_load_str_does_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, GATEWAY).expect("write config");
    let c = load(&path).expect("loads");
    assert_eq!(c.gateway.data_dir, dir.path().join("data"));
    assert_eq!(ok(GATEWAY).gateway.data_dir, PathBuf::from("data"));

    std::fs::write(&path, "[gateway]\nid = \"g\"\ndata_dir = \"/abs/dir\"\n").expect("write");
    assert_eq!(
        load(&path).expect("loads").gateway.data_dir,
        PathBuf::from("/abs/dir")
    );
}

#[test]
fn check_reports_ok_or_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gw.toml");
    let source = "[[sources.mqtt]]\nname = \"a\"\ntopic = \"a/+\"\nformat = \"senml\"\n";
    std::fs::write(&path, format!("{GATEWAY}{source}")).expect("write config");
    assert_eq!(
        check(&path),
        (
            format!(
                "OK: {} (gateway gw-1, 1 source)\nwarning: uplink: no `url`, so the uplink is the local broker: records never leave this \
                 gateway and any local client can read them; set [uplink] url",
                path.display()
            ),
            true
        )
    );

    std::fs::write(&path, format!("{GATEWAY}[summaries]\nwindow_s = 0\n")).expect("write");
    assert_eq!(
        check(&path),
        (
            format!(
                "{}:5:1: summaries.window_s: window_s must be in 1..=86400 seconds, not 0",
                path.display()
            ),
            false
        )
    );

    let missing = dir.path().join("nope.toml");
    let (text, is_ok) = check(&missing);
    assert!(!is_ok);
    assert!(
        text.starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{text}"
    );
}

#[test]
fn minimal_config_takes_the_documented_defaults() {
    let c = ok(GATEWAY);
    assert!(matches!(
        c.broker,
        BrokerConfig::Embedded { listen, .. } if listen.to_string() == "127.0.0.1:1883"
    ));
    assert!(c.sources.mqtt.is_empty());
    assert_eq!(c.summaries.window_s, 60);
    assert_eq!(c.outbox.cache_capacity_bytes, 4 * 1024 * 1024);
    assert_eq!(c.outbox.flush_every_ms, 200);
    assert_eq!(c.uplink.url, None);
    assert_eq!(c.uplink.keep_alive_s, 30);
    assert_eq!(c.uplink.max_inflight, 100);
    assert_eq!(
        (c.uplink.backoff_min_ms, c.uplink.backoff_max_ms),
        (200, 30_000)
    );
}

#[test]
fn env_errors_come_in_file_order() {
    let text = "[uplink]\nurl = \"${NO_URL}\"\n\n[gateway]\nid = \"${NO_ID}\"\ndata_dir = \"d\"\n";
    assert_eq!(
        errors(text),
        "config/x.toml:2:8: uplink.url: environment variable `NO_URL` is not set\n\
         config/x.toml:5:7: gateway.id: environment variable `NO_ID` is not set"
    );
}

#[test]
fn check_accepts_the_demo_config() {
    // citygate.toml uses no environment variable, so the process environment does not matter.
    let path = config_dir().join("citygate.toml");
    assert_eq!(
        check(&path),
        (
            format!(
                "OK: {} (gateway gw-demo, 6 sources)\nwarning: uplink: no `url`, so the uplink is the local broker: records never leave this \
                 gateway and any local client can read them; set [uplink] url",
                path.display()
            ),
            true
        )
    );
}

/// The part of config/README.md under `## {heading}`, from the line break before its heading
/// line up to the next `## ` heading (or the end).
fn readme_section(heading: &str) -> String {
    let path = config_dir().join("README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = readme
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("{} has no `## {heading}` section", path.display()));
    let part = &readme[start..];
    part[1..]
        .find("\n## ")
        .map_or(part, |end| &part[..end + 1])
        .to_string()
}

/// What `section` leaves undocumented: for each `(heading, keys)`, the subsection from that
/// heading line to the next `### ` heading needs a `| `key` |` row per key; each of `values`
/// must be named as `"value"` in backquotes.
fn undocumented(section: &str, tables: &[(&str, &[&str])], values: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    for (heading, keys) in tables {
        let Some(at) = section.find(&format!("\n{heading}")) else {
            missing.push(format!("heading {heading}"));
            continue;
        };
        let body = &section[at + 1..];
        let body = body[1..]
            .find("\n### ")
            .map_or(body, |end| &body[..end + 1]);
        for key in *keys {
            if !body.lines().any(|l| l.starts_with(&format!("| `{key}` |"))) {
                missing.push(format!("{heading}: row `{key}`"));
            }
        }
    }
    for value in values {
        if !section.contains(&format!("`\"{value}\"`")) {
            missing.push(format!("value \"{value}\""));
        }
    }
    missing
}

#[test]
fn readme_documents_every_hazard_key() {
    // Listed by hand from `rules::hazard::config` (one list per struct or inline table), so that
    // removing a row from the README, or adding a key here without documenting it, fails.
    let tables: [(&str, &[&str]); 9] = [
        (
            "### `[hazard]` keys",
            &[
                "sender",
                "identifier_prefix",
                "sender_name",
                "language",
                "status",
                "web",
                "contact",
                "min_update_interval_s",
                "expires_s",
                "groups",
            ],
        ),
        (
            "### `[[hazard.groups]]`",
            &[
                "id",
                "sensors",
                "quantity",
                "rule",
                "direction",
                "k",
                "persistence_s",
                "category",
                "event",
                "area",
                "faults",
                "levels",
            ],
        ),
        ("### `rule`", &["kind", "window_s", "input"]),
        (
            "### `faults`",
            &[
                "valid_min",
                "valid_max",
                "silent_after_s",
                "stuck_after_s",
                "stuck_epsilon",
                "max_deviation",
                "deviation_hold_s",
            ],
        ),
        (
            "### `area`",
            &["desc", "polygon", "circle", "lat", "lon", "radius_km"],
        ),
        (
            "### `[[hazard.groups.levels]]`",
            &[
                "name",
                "raise",
                "clear",
                "urgency",
                "severity",
                "certainty",
                "response_type",
                "event",
                "headline",
                "description",
                "instruction",
                "area",
                "publish",
                "emergency_plans",
            ],
        ),
        ("### `publish`", &["topic", "payload", "clear_payload"]),
        ("### `emergency_plans`", &["intersection", "plan"]),
        // Rule kinds and enum values: each documented as a row of the rule's kind table or
        // named in a row of its own table.
        (
            "### `rule`",
            &["threshold", "rate_of_change", "accumulation"],
        ),
    ];
    // Enum values the schema accepts, named (in backquotes, with quotes) in the tables.
    let values = [
        "above",
        "below",
        "increment",
        "counter",
        "Actual",
        "Exercise",
    ];
    let missing = undocumented(&readme_section("`[hazard]`"), &tables, &values);
    assert!(
        missing.is_empty(),
        "config/README.md does not document: {missing:?}"
    );
}

#[test]
fn outbox_limits_parse_take_their_defaults_and_are_validated() {
    let c = ok(GATEWAY);
    assert_eq!(c.outbox.max_bytes, 256 * 1024 * 1024);
    assert_eq!(c.outbox.drain_per_s, 500);
    assert_eq!(
        (
            c.outbox.ttl_s.alerts,
            c.outbox.ttl_s.events,
            c.outbox.ttl_s.summaries
        ),
        (None, None, None)
    );
    let c = ok(&format!(
        "{GATEWAY}[outbox]\nmax_bytes = 0\ndrain_per_s = 0\nttl_s = {{ summaries = 60, events = 3600 }}\n"
    ));
    assert_eq!((c.outbox.max_bytes, c.outbox.drain_per_s), (0, 0));
    assert_eq!(c.outbox.ttl_s.summaries, Some(60));
    assert_eq!(c.outbox.ttl_s.events, Some(3600));
    let text = errors(&format!(
        "{GATEWAY}[outbox]\nmax_bytes = 1000\n\n[outbox.ttl_s]\nsummaries = 0\nalerts = 99999999\n"
    ));
    assert!(
        text.contains("outbox.max_bytes: max_bytes must be 0 (no limit) or at least 65536"),
        "{text}"
    );
    assert!(
        text.contains("outbox.ttl_s.summaries: ttl_s.summaries must be in 1..=31622400"),
        "{text}"
    );
    assert!(text.contains("outbox.ttl_s.alerts"), "{text}");
    let text = errors(&format!("{GATEWAY}[outbox.ttl_s]\nwarnings = 5\n"));
    assert!(text.contains("warnings"), "{text}");
}

#[test]
fn readme_documents_every_outbox_key() {
    let section = readme_section("`[outbox]`");
    let keys: &[&str] = &[
        "cache_capacity_bytes",
        "flush_every_ms",
        "max_bytes",
        "drain_per_s",
        "ttl_s",
    ];
    let missing = undocumented(&section, &[("## `[outbox]`", keys)], &[]);
    assert!(
        missing.is_empty(),
        "config/README.md does not document: {missing:?}"
    );
    for class in ["ttl_s.alerts", "ttl_s.events", "ttl_s.summaries"] {
        assert!(section.contains(class), "README does not name {class}");
    }
}

#[test]
fn readme_documents_every_intersection_key() {
    // Listed by hand from `signals::config` (one list per struct or inline table), so that
    // removing a row from the README, or adding a key here without documenting it, fails.
    let tables: [(&str, &[&str]); 10] = [
        (
            "### `[[intersection]]` keys",
            &[
                "id",
                "controller",
                "actuation",
                "cycle_min_s",
                "cycle_max_s",
                "webster_period_s",
                "lost_time_s",
                "saturation_flow_vph",
                "gap_s",
                "pressure_margin",
                "stuck_on_s",
                "stuck_off_s",
                "no_data_s",
                "neighbours",
                "inflow",
                "conflicts",
                "signal_group",
                "stage",
                "intergreen",
                "detector",
                "plan",
            ],
        ),
        ("### `actuation`", &["modbus_device", "mqtt_topic"]),
        (
            "### `neighbours`",
            &["intersection", "via_group", "travel_s"],
        ),
        (
            "### `[[intersection.inflow]]`",
            &["from", "from_group", "groups", "travel_s"],
        ),
        (
            "### `[[intersection.signal_group]]`",
            &[
                "id",
                "approach",
                "movements",
                "lanes",
                "kind",
                "min_green_s",
                "max_green_s",
                "yellow_s",
                "red_amber_s",
                "walk_s",
                "clearance_s",
                "saturation_flow_vph",
            ],
        ),
        ("### `[[intersection.stage]]`", &["id", "green"]),
        (
            "### `[[intersection.intergreen]]`",
            &["from", "to", "seconds"],
        ),
        (
            "### `[[intersection.detector]]`",
            &["id", "kind", "lanes", "distance_m", "groups", "source"],
        ),
        (
            "### `source`",
            &["sensor", "quantity", "interval_s", "occupancy", "presence"],
        ),
        ("### `[[intersection.plan]]`", &["id", "hold", "steps"]),
    ];
    // Enum values the schema accepts, named in the tables.
    let values = [
        "fixed_time",
        "actuated",
        "max_pressure",
        "look_ahead",
        "vehicle",
        "pedestrian",
        "stop_bar",
        "advance",
        "queue",
        "through",
        "crossing",
    ];
    let missing = undocumented(&readme_section("`[[intersection]]`"), &tables, &values);
    assert!(
        missing.is_empty(),
        "config/README.md does not document: {missing:?}"
    );
}

/// Two look-ahead crossroads `int-a` and `int-b` in one config, each with `extra` keys
/// (written before its sub-tables).
fn corridor(a_extra: &str, b_extra: &str, b_tables: &str) -> String {
    let crossroads = |id: &str, extra: &str| -> String {
        crate::signals::fixtures::CROSSROADS
            .replace("id = \"int-1\"", &format!("id = \"{id}\"\n{extra}"))
            .replace("controller = \"actuated\"", "controller = \"look_ahead\"")
            .lines()
            .map(|l| match l.strip_prefix("[[") {
                Some(rest) => format!("[[intersection.{rest}"),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"d\"\n\n[[intersection]]\n{}\n\n[[intersection]]\n{}\n{b_tables}",
        crossroads("int-a", a_extra),
        crossroads("int-b", b_extra)
    )
}

const INFLOW_B: &str =
    "\n[[intersection.inflow]]\nfrom = \"int-a\"\nfrom_group = \"E\"\ngroups = [\"W\"]\ntravel_s = 18.0\n";

/// Both ends of coordination inside one config: an inflow needs the sender's `neighbours`
/// entry and an existing sender group, a look-ahead neighbour needs the inflow, travel times
/// agree; each problem is located and names both intersections.
#[test]
fn coordination_between_intersections_of_one_config_is_checked_at_both_ends() {
    let nb = "neighbours = [{ intersection = \"int-b\", via_group = \"E\" }]";
    let c = ok(&corridor(nb, "", INFLOW_B));
    assert_eq!(c.intersection[1].inflow[0].from, "int-a");
    // the neighbour may repeat the travel time if it agrees
    ok(&corridor(
        "neighbours = [{ intersection = \"int-b\", via_group = \"E\", travel_s = 18.0 }]",
        "",
        INFLOW_B,
    ));
    // an inflow from another gateway's intersection is not checked here
    ok(&corridor("", "", &INFLOW_B.replace("int-a", "int-z")));

    let text = corridor("", "", INFLOW_B);
    let e = errors(&text);
    let line = text
        .lines()
        .position(|l| l == "from = \"int-a\"")
        .map_or(0, |i| i + 1);
    assert_eq!(
        e,
        format!(
            "config/x.toml:{line}:1: intersection[1].inflow[0].from: intersection `int-b`: intersection `int-a` sends no planned outflow through `E` here; add {{ intersection = \"int-b\", via_group = \"E\" }} to its `neighbours`"
        )
    );

    let e = errors(&corridor(nb, "", ""));
    assert!(
        e.contains("intersection[0].neighbours[0]: intersection `int-b` has no [[intersection.inflow]] from = \"int-a\", from_group = \"E\": its look-ahead would ignore the planned outflow"),
        "{e}"
    );

    let e = errors(&corridor(nb, "", &INFLOW_B.replace("\"E\"", "\"Q\"")));
    assert!(
        e.contains("intersection[1].inflow[0].from_group: intersection `int-b`: intersection `int-a` has no signal group `Q`"),
        "{e}"
    );

    let e = errors(&corridor(
        "neighbours = [{ intersection = \"int-b\", via_group = \"E\", travel_s = 25.0 }]",
        "",
        INFLOW_B,
    ));
    assert!(
        e.contains("intersection[1].inflow[0].travel_s: intersection `int-b`: travel time 18 s from `int-a` differs from the 25 s in `int-a`'s `neighbours` entry"),
        "{e}"
    );
}

#[test]
fn modbus_point_units_are_registered_ones() {
    let point = |unit: &str| {
        format!(
            "{GATEWAY}[[sources.modbus]]\nname = \"meter-1\"\ntcp = \"127.0.0.1:502\"\n\
             [[sources.modbus.points]]\nname = \"speed\"\nregister = \"holding_register\"\n\
             address = 0\nunit = \"{unit}\"\n"
        )
    };
    let c = ok(&point("km/h"));
    assert_eq!(
        c.sources.modbus[0].points[0].unit,
        Some(citygate_protocols::Unit::KilometrePerHour)
    );
    let e = errors(&point("ft"));
    assert!(
        e.contains("sources.modbus[0].points[0].unit: unknown SenML unit `ft`"),
        "{e}"
    );
}

#[test]
fn string_len_counts_registers_within_one_read() {
    let point = |len: u16, max: u16| {
        format!(
            "{GATEWAY}[[sources.modbus]]\nname = \"meter-1\"\ntcp = \"127.0.0.1:502\"\n\
             max_registers_per_request = {max}\n\
             [[sources.modbus.points]]\nname = \"model\"\nregister = \"holding_register\"\n\
             address = 0\ntype = \"string\"\nlen = {len}\n"
        )
    };
    assert_eq!(
        ok(&point(125, 125)).sources.modbus[0].points[0].width(),
        125
    );
    let e = errors(&point(126, 125));
    assert!(
        e.contains(
            "sources.modbus[0].points[0].len: type \"string\" needs `len = 1..125` (registers)"
        ),
        "{e}"
    );
    let e = errors(&point(12, 10));
    assert!(
        e.contains("needs 12 registers, more than one request may read (10)"),
        "{e}"
    );
}
