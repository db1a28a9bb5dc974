//! The MQTT uplink to the platform: drains the outbox at QoS 1 and deletes a record only on
//! the broker's PUBACK.
//!
//! rumqttc does not return packet ids from `publish`, so publishes are matched to outbox keys by
//! order: the feeder queues a key for each publish it hands to the client, and the event loop's
//! `Outgoing::Publish(pkid)` events come in the same order. After any connection error the
//! event loop's pending queue and request channel are cleared under the same lock that guards
//! the feeder, so no stale publish can shift that order; the feeder then starts again from the
//! oldest record in the outbox. The event loop is never blocked on the client.
//!
//! The connection carries the TLS configuration and credentials of `tls::UplinkSecurity`.
//! With a `commands::Downlink`, it also subscribes to `citygate/v1/<gw>/cmd/#` after each
//! CONNACK; each command publish is verified there, answered on `cmd_result/<nonce>` (a
//! publish that is not an outbox record, queued as `None` in the order like the status) and,
//! when refused, stored as a `command_rejected` event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use citygate_protocols::topic::{self, Topic};
use citygate_protocols::Class;
use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, QoS};
use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::clock;
use crate::commands::Downlink;
use crate::config::UplinkConfig;
use crate::mqtt::BrokerUrl;
use crate::outbox::drain::{PaceReport, Pacer};
use crate::outbox::{Key, Outbox};
use crate::stages::records::Records;
use crate::status::Stats;
use crate::tls::UplinkSecurity;

/// The retained status payload, `{"v":1,"gateway":..,"state":"online"|"offline"}`.
pub fn status_payload(gateway: &str, state: &str) -> Vec<u8> {
    serde_json::json!({"v": citygate_protocols::record::ENVELOPE_VERSION, "gateway": gateway, "state": state})
        .to_string()
        .into_bytes()
}

#[derive(Debug, Default)]
struct Link {
    connected: bool,
    /// Keys of publishes handed to the client and not yet seen going out; `None` for a
    /// publish that is not an outbox record (the status).
    order: VecDeque<Option<Key>>,
    by_pkid: HashMap<u16, Key>,
    inflight: usize,
    /// Highest sequence number handed to the client in this connection, per class.
    cursor: [u64; 3],
}

impl Link {
    fn reset(&mut self) {
        *self = Link::default();
    }
}

/// Everything the uplink needs.
#[derive(Debug, Clone)]
pub struct UplinkParams {
    pub url: BrokerUrl,
    pub config: UplinkConfig,
    pub gateway: String,
    /// TLS and credentials, loaded at start.
    pub security: UplinkSecurity,
}

fn lock(link: &Mutex<Link>) -> MutexGuard<'_, Link> {
    link.lock().unwrap_or_else(|e| e.into_inner())
}

/// The MQTT client of the uplink: client id, keep-alive, TLS and credentials, the in-flight
/// window, and the retained `offline` status as last will.
fn client(params: &UplinkParams, status_topic: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let cfg = &params.config;
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("citygate-{}", params.gateway));
    let mut opts = params.url.options(&client_id, cfg.keep_alive_s);
    params.security.apply(&mut opts);
    opts.set_inflight(cfg.max_inflight.max(1))
        .set_last_will(LastWill::new(
            status_topic,
            status_payload(&params.gateway, "offline"),
            QoS::AtLeastOnce,
            true,
        ));
    AsyncClient::new(opts, usize::from(cfg.max_inflight.max(1)) + 8)
}

/// The reconnect backoff, seeded per gateway and process so that a fleet does not reconnect
/// in step.
fn backoff(params: &UplinkParams) -> Backoff {
    let seed = params
        .gateway
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
        ^ u64::from(std::process::id());
    Backoff::new(
        Duration::from_millis(params.config.backoff_min_ms),
        Duration::from_millis(params.config.backoff_max_ms),
        seed,
    )
}

/// The uplink task's connection state.
struct Uplink {
    params: UplinkParams,
    status_topic: String,
    client: AsyncClient,
    link: Arc<Mutex<Link>>,
    records: Records,
    downlink: Option<Downlink>,
    backoff: Backoff,
}

/// Runs the uplink until `shutdown` turns true; then publishes the offline status, waits up to
/// `drain` (on the monotonic clock) for the outbox to empty, and disconnects.
pub async fn run(
    params: UplinkParams,
    downlink: Option<Downlink>,
    records: Records,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let status_topic = topic::format(&params.gateway, &Topic::Status);
    let (client, mut eventloop) = client(&params, &status_topic);
    let max_inflight = usize::from(params.config.max_inflight.max(1));
    let link = Arc::new(Mutex::new(Link::default()));
    let outbox = Arc::clone(records.outbox());
    let wake = Arc::clone(records.wake());
    let feeder = tokio::spawn(feed(
        client.clone(),
        Arc::clone(&link),
        Arc::clone(&outbox),
        Arc::clone(&wake),
        max_inflight,
        Arc::clone(records.stats()),
    ));
    let mut up = Uplink {
        backoff: backoff(&params),
        params,
        status_topic,
        client,
        link,
        records,
        downlink,
    };
    let mut stopping: Option<tokio::time::Instant> = None;
    let mut beat = tokio::time::interval(crate::status::BEAT_EVERY);
    loop {
        if let Some(deadline) = stopping {
            if outbox.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        let event = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = beat.tick() => {
                up.records.stats().beat(crate::status::Stage::Uplink);
                continue;
            }
            _ = shutdown.changed(), if stopping.is_none() => {
                stopping = Some(tokio::time::Instant::now() + drain);
                wake.notify_one();
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)), if stopping.is_some() => continue,
        };
        match event {
            Ok(ev) => up.on_event(ev),
            Err(e) => {
                up.on_error(&mut eventloop);
                if stopping.is_some() {
                    break;
                }
                let delay = up.backoff.next_delay();
                // Alive while it waits: `/healthz` allows the longest backoff.
                up.records.stats().beat(crate::status::Stage::Uplink);
                tracing::warn!(
                    "uplink {}: {e}; reconnecting in {} ms",
                    up.params.url,
                    delay.as_millis()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed(), if stopping.is_none() => break,
                }
            }
        }
    }
    feeder.abort();
    up.go_offline(&mut eventloop).await;
}

impl Uplink {
    fn on_event(&mut self, event: Event) {
        let stats = self.records.stats();
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                let mut l = lock(&self.link);
                l.reset();
                l.connected = true;
                if self
                    .client
                    .try_publish(
                        &self.status_topic,
                        QoS::AtLeastOnce,
                        true,
                        status_payload(&self.params.gateway, "online"),
                    )
                    .is_ok()
                {
                    l.order.push_back(None);
                }
                drop(l);
                if let Some(d) = &self.downlink {
                    if let Err(e) = self.client.try_subscribe(d.filter(), QoS::AtLeastOnce) {
                        tracing::error!("uplink: cannot subscribe to {}: {e}", d.filter());
                    }
                }
                self.backoff.reset();
                stats.uplink_connected.store(true, Ordering::Relaxed);
                stats
                    .uplink_changed_ms
                    .store(crate::clock::mono_ms(), Ordering::Relaxed);
                tracing::info!("uplink connected to {}", self.params.url);
                self.records.wake().notify_one();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let mut l = lock(&self.link);
                if let Some(Some(key)) = l.order.pop_front() {
                    l.by_pkid.insert(pkid, key);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                stats
                    .last_puback_ms
                    .store(crate::clock::mono_ms() + 1, Ordering::Relaxed);
                let mut l = lock(&self.link);
                if let Some(key) = l.by_pkid.remove(&ack.pkid) {
                    l.inflight = l.inflight.saturating_sub(1);
                    drop(l);
                    let outbox = self.records.outbox();
                    if let Err(e) = outbox.ack(key) {
                        tracing::error!("uplink: cannot delete acknowledged record {key:?}: {e}");
                    }
                    Stats::inc(&stats.delivered);
                    stats
                        .outbox_depth
                        .store(outbox.len() as u64, Ordering::Relaxed);
                    self.records.wake().notify_one();
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                if let Some(d) = self.downlink.as_mut() {
                    on_command(
                        d,
                        &p.topic,
                        &p.payload,
                        p.retain,
                        &self.client,
                        &self.link,
                        &self.records,
                    );
                    self.records.wake().notify_one();
                }
            }
            _ => {}
        }
    }

    /// After a connection error: forgets the publishes in flight (the feeder starts again
    /// from the oldest record) and counts a reconnect if the link was up.
    fn on_error(&mut self, eventloop: &mut rumqttc::EventLoop) {
        let stats = self.records.stats();
        {
            let mut l = lock(&self.link);
            let was_connected = l.connected;
            l.reset();
            eventloop.clean();
            eventloop.pending.clear();
            if was_connected {
                Stats::inc(&stats.uplink_reconnects);
                stats
                    .uplink_changed_ms
                    .store(crate::clock::mono_ms(), Ordering::Relaxed);
            }
        }
        stats.uplink_connected.store(false, Ordering::Relaxed);
    }

    /// Publishes the retained offline status and disconnects, if connected.
    async fn go_offline(&self, eventloop: &mut rumqttc::EventLoop) {
        if lock(&self.link).connected {
            let _ = self.client.try_publish(
                &self.status_topic,
                QoS::AtLeastOnce,
                true,
                status_payload(&self.params.gateway, "offline"),
            );
            let _ = self.client.try_disconnect();
            // Let the event loop write the offline status and the disconnect.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        self.records
            .stats()
            .uplink_connected
            .store(false, Ordering::Relaxed);
    }
}

/// Verifies a command publish, answers on `cmd_result`, and stores a refusal as a
/// `command_rejected` event.
fn on_command(
    d: &mut Downlink,
    topic_name: &str,
    payload: &[u8],
    retained: bool,
    client: &AsyncClient,
    link: &Mutex<Link>,
    records: &Records,
) {
    // A command's time is checked against the wall clock of its sender.
    let out = d.handle(topic_name, payload, retained, clock::wall_s());
    let stats = records.stats();
    if out.accepted {
        Stats::inc(&stats.commands_accepted);
        tracing::info!("command accepted on {topic_name}");
    } else {
        Stats::inc(&stats.commands_rejected);
    }
    if let Some((t, body)) = out.result {
        let mut l = lock(link);
        if l.connected
            && client
                .try_publish(&t, QoS::AtLeastOnce, false, body)
                .is_ok()
        {
            l.order.push_back(None);
        }
    }
    if let Some(ev) = out.event {
        tracing::warn!("command refused on {}: {}", ev.source, ev.message);
        records.event(ev);
    }
}

/// Hands outbox records to the client, highest class first, while the connection has room.
/// A backlog of summaries and events is paced by the drain limiter (`outbox.drain_per_s` on
/// top of what arrived in the last seconds, on the monotonic clock); alerts are not.
async fn feed(
    client: AsyncClient,
    link: Arc<Mutex<Link>>,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    max_inflight: usize,
    stats: Arc<Stats>,
) {
    let mut durable_up_to = 0u64;
    let mut bucket = Pacer::new(outbox.drain_per_s(), clock::mono_ms());
    let mut pause = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
        pause = Duration::from_millis(250);
        // Publish only what a crash cannot take back.
        let appended_up_to = outbox.next_seq().saturating_sub(1);
        if appended_up_to > durable_up_to {
            let ob = Arc::clone(&outbox);
            match tokio::task::spawn_blocking(move || ob.flush()).await {
                Ok(Ok(())) => durable_up_to = appended_up_to,
                Ok(Err(e)) => {
                    tracing::error!("outbox flush failed: {e}");
                    continue;
                }
                Err(_) => continue,
            }
        }
        let mut l = lock(&link);
        let stored =
            stats.summaries_out.load(Ordering::Relaxed) + stats.events_out.load(Ordering::Relaxed);
        bucket.arrived(stored, clock::mono_ms(), l.connected);
        if !l.connected {
            continue;
        }
        let mut paced_empty = 0;
        'classes: for class in Class::ALL {
            while l.inflight < max_inflight {
                let mut room = max_inflight - l.inflight;
                let paced = class != Class::Alert;
                if paced {
                    room = bucket.take(room, clock::mono_ms());
                    if room == 0 {
                        pause =
                            Duration::from_millis(bucket.wait_ms(clock::mono_ms()).clamp(1, 250));
                        let cursor = l.cursor[usize::from(class.rank())];
                        if outbox
                            .pending_after(class, cursor, 1)
                            .is_ok_and(|b| !b.is_empty())
                        {
                            Stats::inc(&stats.drain_throttled);
                            let report = bucket.throttled(clock::mono_ms());
                            report_pace(report, &bucket, &stats, &outbox);
                        }
                        break 'classes;
                    }
                }
                let cursor = l.cursor[usize::from(class.rank())];
                let batch = match outbox.pending_after(class, cursor, room) {
                    Ok(b) => b,
                    Err(e) => {
                        if paced {
                            bucket.give_back(room);
                        }
                        tracing::error!("outbox read failed: {e}");
                        break 'classes;
                    }
                };
                if batch.is_empty() {
                    if paced {
                        bucket.give_back(room);
                        paced_empty += 1;
                    }
                    break;
                }
                let mut sent = 0;
                let mut halted = false;
                for rec in batch {
                    if rec.key.seq > durable_up_to
                        || client
                            .try_publish(&rec.topic, QoS::AtLeastOnce, false, rec.payload)
                            .is_err()
                    {
                        halted = true;
                        break;
                    }
                    l.order.push_back(Some(rec.key));
                    l.cursor[usize::from(class.rank())] = rec.key.seq;
                    l.inflight += 1;
                    sent += 1;
                }
                if paced {
                    bucket.give_back(room - sent);
                }
                if halted {
                    break 'classes;
                }
            }
        }
        if paced_empty == Class::ALL.len() - 1 {
            report_pace(bucket.idle(), &bucket, &stats, &outbox);
        }
    }
}

/// Shows the drain limiter in the status (`drain_paced`) and the log (one
/// line when pacing starts, at most one per `drain::LOG_EVERY_MS` while it lasts, one when the
/// backlog is gone).
fn report_pace(report: PaceReport, pacer: &Pacer, stats: &Stats, outbox: &Outbox) {
    stats.drain_paced.store(pacer.pacing(), Ordering::Relaxed);
    match report {
        PaceReport::Quiet => {}
        PaceReport::Throttling => tracing::warn!(
            "uplink: a backlog of {} records is paced by outbox.drain_per_s = {}/s on top of \
             the records of the last {} s ({} waits so far)",
            outbox.len(),
            pacer.rate_per_s(),
            crate::outbox::drain::LIVE_WINDOW_MS / 1000,
            stats.drain_throttled.load(Ordering::Relaxed),
        ),
        PaceReport::Drained => tracing::info!("uplink: backlog drained, pacing ended"),
    }
}
