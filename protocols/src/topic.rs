//! The versioned uplink topic scheme: `citygate/v1/<gateway-id>/<kind>/...`.
//!
//! | topic | direction | [`Topic`] |
//! |---|---|---|
//! | `citygate/v1/<gw>/status` | up, retained (birth / last will) | [`Topic::Status`] |
//! | `citygate/v1/<gw>/summary/<sensor...>` | up | [`Topic::Summary`] |
//! | `citygate/v1/<gw>/event/<kind>` | up | [`Topic::Event`] |
//! | `citygate/v1/<gw>/alert/<id>` | up | [`Topic::Alert`] |
//! | `citygate/v1/<gw>/cmd/<name>` | down | [`Topic::Command`] |
//! | `citygate/v1/<gw>/cmd_result/<id>` | up | [`Topic::CommandResult`] |
//! | `citygate/v1/<gw>/peer/<channel>` | gateway to gateway | [`Topic::Peer`] |
//!
//! A sensor id is made of joined segments (`int-12/det-3`), so `summary/` takes the rest of the
//! topic. Every other id is one segment. A peer message is published by a gateway under its own
//! id, so the `<gw>` of a peer topic is the sending gateway (a broker ACL can then allow each
//! gateway to publish under `citygate/v1/<its-id>/#` only).
//!
//! Ids never contain the MQTT wildcards `+` and `#`, NUL, or an empty segment. A gateway id is
//! 1 to 64 characters of `A-Z a-z 0-9 _ -`.

/// The first segment of every citygate topic.
pub const ROOT: &str = "citygate";
/// The version segment of the topic scheme.
pub const VERSION: &str = "v1";
/// Longest gateway id, in characters.
pub const MAX_GATEWAY_ID: usize = 64;
/// Longest MQTT topic name, in bytes (MQTT 3.1.1 / 5 length prefix).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// What a topic under `citygate/v1/<gateway-id>/` carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Retained gateway status (birth message and last will).
    Status,
    /// Window summaries of one sensor; the sensor id may span several segments.
    Summary { sensor: String },
    /// Gateway events of one kind (`device_offline`, `plan_change`...).
    Event { kind: String },
    /// One CAP alert, by its identifier.
    Alert { id: String },
    /// A downlink command, by name (`plan_override`, `config_reload`, `alert_ack`...).
    Command { name: String },
    /// The result of the command with this id.
    CommandResult { id: String },
    /// Neighbour exchange on one channel (`outflow`, `queue`, `hazard`...), published by the
    /// topic's gateway.
    Peer { channel: String },
}

/// The kinds of topic, i.e. the segment after the gateway id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Status,
    Summary,
    Event,
    Alert,
    Command,
    CommandResult,
    Peer,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Status,
        Kind::Summary,
        Kind::Event,
        Kind::Alert,
        Kind::Command,
        Kind::CommandResult,
        Kind::Peer,
    ];

    /// The topic segment.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Summary => "summary",
            Kind::Event => "event",
            Kind::Alert => "alert",
            Kind::Command => "cmd",
            Kind::CommandResult => "cmd_result",
            Kind::Peer => "peer",
        }
    }

    pub fn parse(segment: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == segment)
    }

    /// The name of the id that follows the kind segment, for error messages.
    const fn field(self) -> &'static str {
        match self {
            Kind::Status => "",
            Kind::Summary => "sensor",
            Kind::Event => "event kind",
            Kind::Alert | Kind::CommandResult => "id",
            Kind::Command => "command name",
            Kind::Peer => "channel",
        }
    }
}

impl Topic {
    pub fn kind(&self) -> Kind {
        match self {
            Topic::Status => Kind::Status,
            Topic::Summary { .. } => Kind::Summary,
            Topic::Event { .. } => Kind::Event,
            Topic::Alert { .. } => Kind::Alert,
            Topic::Command { .. } => Kind::Command,
            Topic::CommandResult { .. } => Kind::CommandResult,
            Topic::Peer { .. } => Kind::Peer,
        }
    }

    /// The id after the kind segment (`None` for [`Topic::Status`]).
    pub fn id(&self) -> Option<&str> {
        match self {
            Topic::Status => None,
            Topic::Summary { sensor: s }
            | Topic::Event { kind: s }
            | Topic::Alert { id: s }
            | Topic::Command { name: s }
            | Topic::CommandResult { id: s }
            | Topic::Peer { channel: s } => Some(s),
        }
    }
}

/// Why a topic or an id is not part of the scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic `{topic}` does not start with `{ROOT}/{VERSION}/`")]
    NotCitygate { topic: String },
    #[error("topic `{topic}` has version `{version}`, this gateway speaks `{VERSION}`")]
    WrongVersion { topic: String, version: String },
    #[error("gateway id `{gateway}` is invalid: {reason}")]
    BadGateway {
        gateway: String,
        reason: &'static str,
    },
    #[error("topic `{topic}` has no topic kind after the gateway id")]
    NoKind { topic: String },
    #[error("topic `{topic}`: unknown kind `{kind}` (expected status, summary, event, alert, cmd, cmd_result or peer)")]
    UnknownKind { topic: String, kind: String },
    #[error("topic `{topic}`: `{kind}` needs a {field} after it")]
    MissingId {
        topic: String,
        kind: &'static str,
        field: &'static str,
    },
    #[error("topic `{topic}`: unexpected `{rest}` after `{kind}`")]
    Trailing {
        topic: String,
        kind: &'static str,
        rest: String,
    },
    #[error("{field} `{value}` is invalid: {reason}")]
    BadId {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("topic is {len} bytes long, MQTT allows at most {MAX_TOPIC_LEN}")]
    TooLong { len: usize },
}

/// Writes the topic of `t` for `gateway`. Ids are not checked: use [`try_format`] for ids that
/// do not come from a validated configuration.
pub fn format(gateway: &str, t: &Topic) -> String {
    let kind = t.kind().as_str();
    match t.id() {
        None => format!("{ROOT}/{VERSION}/{gateway}/{kind}"),
        Some(id) => format!("{ROOT}/{VERSION}/{gateway}/{kind}/{id}"),
    }
}

/// Like [`format`], after checking the gateway id and the topic's id.
pub fn try_format(gateway: &str, t: &Topic) -> Result<String, TopicError> {
    validate_gateway(gateway)?;
    if let Some(id) = t.id() {
        let kind = t.kind();
        validate_id(kind.field(), id, kind == Kind::Summary)?;
    }
    let topic = format(gateway, t);
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    Ok(topic)
}

/// Parses a topic into its gateway id and [`Topic`].
pub fn parse(topic: &str) -> Result<(String, Topic), TopicError> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: topic.len() });
    }
    let not_ours = || TopicError::NotCitygate {
        topic: topic.to_owned(),
    };
    let rest = topic
        .strip_prefix(ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(not_ours)?;
    let (version, rest) = rest.split_once('/').ok_or_else(not_ours)?;
    if version != VERSION {
        return Err(TopicError::WrongVersion {
            topic: topic.to_owned(),
            version: version.to_owned(),
        });
    }
    let (gateway, rest) = rest.split_once('/').unwrap_or((rest, ""));
    validate_gateway(gateway)?;
    if rest.is_empty() {
        return Err(TopicError::NoKind {
            topic: topic.to_owned(),
        });
    }
    let (kind_segment, id) = match rest.split_once('/') {
        Some((k, id)) => (k, Some(id)),
        None => (rest, None),
    };
    let kind = Kind::parse(kind_segment).ok_or_else(|| TopicError::UnknownKind {
        topic: topic.to_owned(),
        kind: kind_segment.to_owned(),
    })?;

    let parsed = match (kind, id) {
        (Kind::Status, None) => Topic::Status,
        (Kind::Status, Some(rest)) => {
            return Err(TopicError::Trailing {
                topic: topic.to_owned(),
                kind: kind.as_str(),
                rest: rest.to_owned(),
            })
        }
        (_, None) => {
            return Err(TopicError::MissingId {
                topic: topic.to_owned(),
                kind: kind.as_str(),
                field: kind.field(),
            })
        }
        (kind, Some(id)) => {
            validate_id(kind.field(), id, kind == Kind::Summary)?;
            let id = id.to_owned();
            match kind {
                Kind::Summary => Topic::Summary { sensor: id },
                Kind::Event => Topic::Event { kind: id },
                Kind::Alert => Topic::Alert { id },
                Kind::Command => Topic::Command { name: id },
                Kind::CommandResult => Topic::CommandResult { id },
                // `status` with an id was rejected above.
                Kind::Status | Kind::Peer => Topic::Peer { channel: id },
            }
        }
    };
    Ok((gateway.to_owned(), parsed))
}

/// The subscription filter for one kind of topic of one gateway: `citygate/v1/<gw>/status`
/// for [`Kind::Status`], `citygate/v1/<gw>/<kind>/#` otherwise (e.g. `citygate/v1/gw-1/cmd/#`
/// for the commands a gateway obeys, `citygate/v1/gw-2/peer/#` for a neighbour's exchange).
pub fn subscription(gateway: &str, kind: Kind) -> String {
    match kind {
        Kind::Status => format!("{ROOT}/{VERSION}/{gateway}/status"),
        k => format!("{ROOT}/{VERSION}/{gateway}/{}/#", k.as_str()),
    }
}

/// The subscription filter for one kind of topic of every gateway (`citygate/v1/+/alert/#`),
/// as the platform uses it.
pub fn subscription_all(kind: Kind) -> String {
    subscription("+", kind)
}

/// Checks a gateway id: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
pub fn validate_gateway(gateway: &str) -> Result<(), TopicError> {
    let bad = |reason| TopicError::BadGateway {
        gateway: gateway.to_owned(),
        reason,
    };
    if gateway.is_empty() {
        return Err(bad("it is empty"));
    }
    if gateway.chars().count() > MAX_GATEWAY_ID {
        return Err(bad("it is longer than 64 characters"));
    }
    if !gateway
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad("only letters, digits, `_` and `-` are allowed"));
    }
    Ok(())
}

/// Checks an id that goes after the kind segment. `multi_segment` ids (sensor ids) may contain
/// `/` between non-empty segments.
pub fn validate_id(
    field: &'static str,
    value: &str,
    multi_segment: bool,
) -> Result<(), TopicError> {
    let bad = |reason| TopicError::BadId {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("it is empty"));
    }
    if value.contains(['+', '#']) {
        return Err(bad("it contains an MQTT wildcard (`+` or `#`)"));
    }
    if value.contains('\0') {
        return Err(bad("it contains NUL"));
    }
    if value.contains('/') {
        if !multi_segment {
            return Err(bad("it must be a single topic segment (no `/`)"));
        }
        if value.split('/').any(str::is_empty) {
            return Err(bad("it has an empty segment"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(topic: &str) -> (String, Topic) {
        parse(topic).unwrap_or_else(|e| panic!("{topic}: {e}"))
    }

    #[test]
    fn every_kind_formats_and_parses() {
        let cases = [
            (Topic::Status, "citygate/v1/gw-1/status"),
            (
                Topic::Summary {
                    sensor: "int-12/det-3".into(),
                },
                "citygate/v1/gw-1/summary/int-12/det-3",
            ),
            (
                Topic::Event {
                    kind: "device_offline".into(),
                },
                "citygate/v1/gw-1/event/device_offline",
            ),
            (
                Topic::Alert { id: "a-17".into() },
                "citygate/v1/gw-1/alert/a-17",
            ),
            (
                Topic::Command {
                    name: "plan_override".into(),
                },
                "citygate/v1/gw-1/cmd/plan_override",
            ),
            (
                Topic::CommandResult { id: "c-9".into() },
                "citygate/v1/gw-1/cmd_result/c-9",
            ),
            (
                Topic::Peer {
                    channel: "outflow".into(),
                },
                "citygate/v1/gw-1/peer/outflow",
            ),
        ];
        for (topic, text) in cases {
            assert_eq!(format("gw-1", &topic), text);
            assert_eq!(try_format("gw-1", &topic).unwrap(), text);
            assert_eq!(t(text), ("gw-1".to_owned(), topic));
        }
    }

    #[test]
    fn subscriptions() {
        assert_eq!(
            subscription("gw-1", Kind::Command),
            "citygate/v1/gw-1/cmd/#"
        );
        assert_eq!(subscription("gw-2", Kind::Peer), "citygate/v1/gw-2/peer/#");
        assert_eq!(
            subscription("gw-2", Kind::Status),
            "citygate/v1/gw-2/status"
        );
        assert_eq!(subscription_all(Kind::Alert), "citygate/v1/+/alert/#");
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        let err = |topic: &str| parse(topic).unwrap_err().to_string();
        assert_eq!(
            err("other/v1/gw/status"),
            "topic `other/v1/gw/status` does not start with `citygate/v1/`"
        );
        assert_eq!(
            err("citygate"),
            "topic `citygate` does not start with `citygate/v1/`"
        );
        assert_eq!(
            err("citygate/v2/gw/status"),
            "topic `citygate/v2/gw/status` has version `v2`, this gateway speaks `v1`"
        );
        assert_eq!(
            err("citygate/v1/gw 1/status"),
            "gateway id `gw 1` is invalid: only letters, digits, `_` and `-` are allowed"
        );
        assert_eq!(
            err("citygate/v1//status"),
            "gateway id `` is invalid: it is empty"
        );
        let long = "g".repeat(65);
        assert!(err(&format!("citygate/v1/{long}/status")).contains("longer than 64"));
        assert!(parse(&format!("citygate/v1/{}/status", "g".repeat(64))).is_ok());
        assert_eq!(
            err("citygate/v1/gw"),
            "topic `citygate/v1/gw` has no topic kind after the gateway id"
        );
        assert_eq!(
            err("citygate/v1/gw/telemetry/x"),
            "topic `citygate/v1/gw/telemetry/x`: unknown kind `telemetry` (expected status, summary, event, alert, cmd, cmd_result or peer)"
        );
        assert_eq!(
            err("citygate/v1/gw/summary"),
            "topic `citygate/v1/gw/summary`: `summary` needs a sensor after it"
        );
        assert_eq!(
            err("citygate/v1/gw/status/x"),
            "topic `citygate/v1/gw/status/x`: unexpected `x` after `status`"
        );
        assert_eq!(
            err("citygate/v1/gw/summary/a//b"),
            "sensor `a//b` is invalid: it has an empty segment"
        );
        assert_eq!(
            err("citygate/v1/gw/summary/a/"),
            "sensor `a/` is invalid: it has an empty segment"
        );
        assert_eq!(
            err("citygate/v1/gw/summary/"),
            "sensor `` is invalid: it is empty"
        );
        assert_eq!(
            err("citygate/v1/gw/cmd/#"),
            "command name `#` is invalid: it contains an MQTT wildcard (`+` or `#`)"
        );
        assert_eq!(
            err("citygate/v1/gw/event/a+b"),
            "event kind `a+b` is invalid: it contains an MQTT wildcard (`+` or `#`)"
        );
        assert_eq!(
            err("citygate/v1/gw/alert/a\0"),
            "id `a\0` is invalid: it contains NUL"
        );
        assert_eq!(
            err("citygate/v1/gw/peer/a/b"),
            "channel `a/b` is invalid: it must be a single topic segment (no `/`)"
        );
        assert_eq!(
            err("citygate/v1/+/status"),
            "gateway id `+` is invalid: only letters, digits, `_` and `-` are allowed"
        );
    }

    #[test]
    fn try_format_rejects_bad_ids() {
        assert!(matches!(
            try_format("gw/1", &Topic::Status),
            Err(TopicError::BadGateway { .. })
        ));
        assert!(matches!(
            try_format("gw", &Topic::Alert { id: "a/b".into() }),
            Err(TopicError::BadId { field: "id", .. })
        ));
        let huge = Topic::Summary {
            sensor: "s".repeat(MAX_TOPIC_LEN),
        };
        assert!(matches!(
            try_format("gw", &huge),
            Err(TopicError::TooLong { .. })
        ));
    }

    fn segment() -> impl Strategy<Value = String> {
        // Anything but `/`, `+`, `#` and NUL, non-empty: unicode included.
        "[^/+#\u{0}]{1,12}"
    }

    fn topic() -> impl Strategy<Value = Topic> {
        let sensor = proptest::collection::vec(segment(), 1..4).prop_map(|s| s.join("/"));
        prop_oneof![
            Just(Topic::Status),
            sensor.prop_map(|sensor| Topic::Summary { sensor }),
            segment().prop_map(|kind| Topic::Event { kind }),
            segment().prop_map(|id| Topic::Alert { id }),
            segment().prop_map(|name| Topic::Command { name }),
            segment().prop_map(|id| Topic::CommandResult { id }),
            segment().prop_map(|channel| Topic::Peer { channel }),
        ]
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(gw in "[A-Za-z0-9_-]{1,64}", topic in topic()) {
            let text = try_format(&gw, &topic).unwrap();
            prop_assert_eq!(text.clone(), format(&gw, &topic));
            prop_assert_eq!(parse(&text).unwrap(), (gw, topic));
        }

        #[test]
        fn parse_never_panics_and_round_trips_what_it_accepts(text in "[a-z0-9/+#_ \u{0}-]{0,40}") {
            if let Ok((gw, topic)) = parse(&text) {
                prop_assert_eq!(format(&gw, &topic), text);
            }
        }

        #[test]
        fn prefixed_random_tails_round_trip(tail in "[a-z_/+#]{0,30}") {
            let text = format!("citygate/v1/gw-1/{tail}");
            if let Ok((gw, topic)) = parse(&text) {
                prop_assert_eq!(format(&gw, &topic), text);
            }
        }
    }
}
