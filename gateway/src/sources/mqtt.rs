//! MQTT ingest from the local broker: routes each publish to the first configured source whose
//! topic filter matches, decodes its payload (SenML JSON, or plain JSON with a value path) into
//! readings, and names the sensor from the topic. A payload that does not decode is counted and
//! logged with its topic, and the source goes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use citygate_protocols::{senml, Quality, Reading, Unit, UnknownUnits};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::config::{parse_sensor_template, MqttSourceConfig, PayloadFormat, TemplatePart};
use crate::logging::{RateLimit, Verdict};
use crate::mqtt::filter_matches;
use crate::status::Stats;

/// A compiled `[[sources.mqtt]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub filter: String,
    format: PayloadFormat,
    sensor: Vec<TemplatePart>,
    value_path: Vec<String>,
    time_path: Option<Vec<String>>,
    quantity: String,
    unit: Option<Unit>,
    unknown_units: UnknownUnits,
}

/// Why a payload was not turned into readings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("topic {topic}: SenML: {source}")]
    Senml {
        topic: String,
        source: senml::SenmlError,
    },
    #[error("topic {topic}: payload is not JSON: {reason}")]
    NotJson { topic: String, reason: String },
    #[error("topic {topic}: no number at `{path}`")]
    NoValue { topic: String, path: String },
    #[error("topic {topic}: `{path}` is not a time in seconds since the epoch")]
    BadTime { topic: String, path: String },
    #[error("topic {topic}: sensor template needs topic level {level}")]
    NoLevel { topic: String, level: usize },
}

fn dot_path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_string).collect()
}

fn lookup<'a>(v: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(v, |v, k| match v {
        serde_json::Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => v.get(k),
    })
}

impl Route {
    /// Compiles a validated source config.
    pub fn new(c: &MqttSourceConfig) -> Route {
        Route {
            name: c.name.clone(),
            filter: c.topic.clone(),
            format: c.format,
            // Validated by `citygate check`; an invalid template names no sensor.
            sensor: parse_sensor_template(&c.sensor).unwrap_or_default(),
            value_path: c.value_path.as_deref().map(dot_path).unwrap_or_default(),
            time_path: c.time_path.as_deref().map(dot_path),
            quantity: c.quantity.clone().unwrap_or_default(),
            unit: c.unit.as_deref().and_then(Unit::parse),
            unknown_units: c.unknown_units.unwrap_or_default(),
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        filter_matches(&self.filter, topic)
    }

    fn sensor_id(&self, topic: &str) -> Result<String, DecodeError> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut id = String::new();
        for p in &self.sensor {
            match p {
                TemplatePart::Literal(t) => id.push_str(t),
                TemplatePart::Level(n) => id.push_str(
                    n.checked_sub(1)
                        .and_then(|i| levels.get(i))
                        .ok_or_else(|| DecodeError::NoLevel {
                            topic: topic.to_string(),
                            level: *n,
                        })?,
                ),
            }
        }
        Ok(id)
    }

    /// Decodes one publish received at `now` (epoch seconds).
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        now: f64,
    ) -> Result<Vec<Reading>, DecodeError> {
        let sensor = self.sensor_id(topic)?;
        match self.format {
            PayloadFormat::Senml => {
                let err = |source| DecodeError::Senml {
                    topic: topic.to_string(),
                    source,
                };
                let pack = senml::decode(payload).map_err(err)?;
                let mut rs = senml::readings(&pack, now, self.unknown_units).map_err(err)?;
                if !sensor.is_empty() {
                    for r in &mut rs {
                        r.sensor.clone_from(&sensor);
                    }
                }
                Ok(rs)
            }
            PayloadFormat::Json => {
                let v: serde_json::Value =
                    serde_json::from_slice(payload).map_err(|e| DecodeError::NotJson {
                        topic: topic.to_string(),
                        reason: e.to_string(),
                    })?;
                let value = lookup(&v, &self.value_path)
                    .and_then(serde_json::Value::as_f64)
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| DecodeError::NoValue {
                        topic: topic.to_string(),
                        path: self.value_path.join("."),
                    })?;
                let time = match &self.time_path {
                    None => now,
                    Some(p) => lookup(&v, p)
                        .and_then(serde_json::Value::as_f64)
                        .filter(|t| t.is_finite() && *t >= 0.0)
                        .ok_or_else(|| DecodeError::BadTime {
                            topic: topic.to_string(),
                            path: p.join("."),
                        })?,
                };
                Ok(vec![Reading {
                    sensor,
                    quantity: self.quantity.clone(),
                    value,
                    unit: self.unit,
                    time,
                    quality: Quality::Good,
                }])
            }
        }
    }
}

/// The routes of a gateway, tried in config order.
#[derive(Debug, Clone, Default)]
pub struct Router {
    pub routes: Vec<Route>,
}

impl Router {
    pub fn new(sources: &[MqttSourceConfig]) -> Router {
        Router {
            routes: sources.iter().map(Route::new).collect(),
        }
    }

    /// Readings in a publish; `Ok(empty)` when no route matches.
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        now: f64,
    ) -> Result<Vec<Reading>, DecodeError> {
        self.decode_routed(topic, payload, now)
            .map_or(Ok(Vec::new()), |(_, r)| r)
    }

    /// The index of the route a topic matches and what it decodes; `None` when no route
    /// matches.
    pub fn decode_routed(
        &self,
        topic: &str,
        payload: &[u8],
        now: f64,
    ) -> Option<(usize, Result<Vec<Reading>, DecodeError>)> {
        let i = self.routes.iter().position(|r| r.matches(topic))?;
        let r = self.routes.get(i)?;
        Some((i, r.decode(topic, payload, now)))
    }
}

/// Subscribes to every route's filter on the local broker and sends decoded readings to `tx`
/// until `shutdown` turns true. A full channel holds the event loop (back-pressure).
pub async fn run(
    url: crate::broker::LocalClient,
    client_id: String,
    sources: Vec<MqttSourceConfig>,
    tx: mpsc::Sender<Reading>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = Router::new(&sources);
    // Per-source counters, and the sensors already bound to their source.
    let counters: Vec<_> = sources
        .iter()
        .map(|s| stats.sources.register("mqtt", &s.name))
        .collect();
    let mut bound = std::collections::HashSet::new();
    let mut limit = RateLimit::default();
    let mut beat = tokio::time::interval(crate::status::BEAT_EVERY);
    let opts = url.options(&client_id, 30);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(10),
        u64::from(std::process::id()),
    );
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = shutdown.changed() => return,
            _ = beat.tick() => {
                stats.beat(crate::status::Stage::Ingest);
                continue;
            }
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                for s in &sources {
                    let qos = if s.qos == 0 {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    if let Err(e) = client.try_subscribe(&s.topic, qos) {
                        tracing::error!("source {}: cannot subscribe to {}: {e}", s.name, s.topic);
                    }
                }
                tracing::info!("ingest connected to {url}, {} topic filters", sources.len());
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                stats.ingest_subscribed.store(true, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = &p.topic;
                let Some((i, decoded)) =
                    router.decode_routed(topic, &p.payload, crate::clock::wall_s())
                else {
                    continue;
                };
                let Some(c) = counters.get(i) else { continue };
                match decoded {
                    Ok(readings) => {
                        for r in readings {
                            if !bound.contains(&r.sensor) {
                                stats.sources.bind_sensor(&r.sensor, c);
                                bound.insert(r.sensor.clone());
                            }
                            if tx.send(r).await.is_err() {
                                return;
                            }
                            Stats::inc(&c.readings);
                        }
                    }
                    Err(e) => {
                        Stats::inc(&stats.malformed);
                        Stats::inc(&c.malformed);
                        let name = sources.get(i).map_or("", |s| s.name.as_str());
                        match limit.check(i, crate::clock::mono_ms()) {
                            Verdict::Log { suppressed: 0 } => {
                                tracing::warn!("source {name}: malformed payload dropped: {e}");
                            }
                            Verdict::Log { suppressed } => tracing::warn!(
                                "source {name}: malformed payload dropped: {e} ({suppressed} \
                                 more left out of the log in the last minute; all are counted)"
                            ),
                            Verdict::Suppress => {}
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                stats.ingest_subscribed.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(
                    "ingest from {url}: {e}; reconnecting in {} ms",
                    delay.as_millis()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_source() -> MqttSourceConfig {
        MqttSourceConfig {
            name: "flood".into(),
            topic: "field/+/water".into(),
            format: PayloadFormat::Json,
            sensor: "{2}".into(),
            value_path: Some("data.level".into()),
            time_path: Some("ts".into()),
            quantity: Some("water_level".into()),
            unit: Some("m".into()),
            unknown_units: None,
            qos: 1,
        }
    }

    #[test]
    fn json_payloads_use_the_value_path_and_the_topic_for_the_sensor() {
        let r = Route::new(&json_source());
        let got = r
            .decode(
                "field/st-4/water",
                br#"{"data":{"level":1.25},"ts":1700000000.5}"#,
                9.0,
            )
            .unwrap();
        assert_eq!(
            got,
            vec![Reading {
                sensor: "st-4".into(),
                quantity: "water_level".into(),
                value: 1.25,
                unit: Some(Unit::Metre),
                time: 1_700_000_000.5,
                quality: Quality::Good,
            }]
        );
    }

    #[test]
    fn malformed_json_payloads_name_the_topic() {
        let r = Route::new(&json_source());
        let e = r
            .decode("field/st-4/water", b"{nope", 0.0)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("topic field/st-4/water: payload is not JSON"),
            "{e}"
        );
        let e = r
            .decode(
                "field/st-4/water",
                br#"{"data":{"level":"high"},"ts":1}"#,
                0.0,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "topic field/st-4/water: no number at `data.level`"
        );
        let e = r
            .decode("field/st-4/water", br#"{"data":{"level":1},"ts":"x"}"#, 0.0)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "topic field/st-4/water: `ts` is not a time in seconds since the epoch"
        );
    }

    #[test]
    fn senml_payloads_take_the_sensor_from_the_topic() {
        let mut c = json_source();
        c.format = PayloadFormat::Senml;
        c.topic = "field/+/+/senml".into();
        c.sensor = "{2}/{3}".into();
        let r = Route::new(&c);
        let got = r
            .decode(
                "field/int-1/det-2/senml",
                br#"[{"bn":"det-2/","bt":1700000000,"n":"count","u":"count","v":3},{"n":"occupancy","u":"%","v":12.5}]"#,
                0.0,
            )
            .unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|r| r.sensor == "int-1/det-2"));
        assert_eq!(got[1].value, 12.5);
        assert!(r
            .decode("field/int-1/det-2/senml", b"[{\"v\":\"x\"}]", 0.0)
            .is_err());
    }

    #[test]
    fn a_template_level_missing_from_the_topic_is_an_error() {
        let mut c = json_source();
        c.sensor = "{4}".into();
        let e = Route::new(&c)
            .decode("field/a/water", b"{}", 0.0)
            .unwrap_err();
        assert_eq!(
            e,
            DecodeError::NoLevel {
                topic: "field/a/water".into(),
                level: 4
            }
        );
    }

    #[test]
    fn unmatched_topics_yield_nothing() {
        let router = Router::new(&[json_source()]);
        assert!(router
            .decode("other/x", b"garbage", 0.0)
            .unwrap()
            .is_empty());
    }
}
