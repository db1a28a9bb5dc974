//! The actions stage: messages the rules and signal control send to devices on the local
//! broker (sirens, variable message signs, MQTT stage commands). Publishes at QoS 1 from a
//! task of its own, so that a slow broker never holds up the rules; a full queue is counted
//! (`actions_failed`) and logged, never silent; each publish is counted in `actions_out`.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::broker::LocalClient;
use crate::status::Stats;

/// A message for a local device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPublish {
    pub topic: String,
    pub payload: String,
}

/// Queues a local publish for this stage from a stage that must not wait (the rules, signal
/// control); a full queue is counted in `actions_failed` and logged with `what`.
pub fn queue(actions: &mpsc::Sender<LocalPublish>, stats: &Stats, p: LocalPublish, what: &str) {
    if actions.try_send(p).is_err() {
        Stats::inc(&stats.actions_failed);
        tracing::error!("{what} dropped: the action queue is full");
    }
}

/// Publishes every queued action on the local broker until the queue closes (when the rules
/// and signals stages are gone).
pub async fn run(
    local: LocalClient,
    client_id: String,
    mut rx: mpsc::Receiver<LocalPublish>,
    stats: Arc<Stats>,
) {
    let (client, mut eventloop) =
        AsyncClient::new(local.options(&client_id, 30), rx.max_capacity());
    let poller = tokio::spawn(async move {
        let mut backoff = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            u64::from(std::process::id()),
        );
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => backoff.reset(),
                Ok(_) => {}
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "local actions: {e}; reconnecting in {} ms",
                        delay.as_millis()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    });
    let mut beat = tokio::time::interval(crate::status::BEAT_EVERY);
    loop {
        let a = tokio::select! {
            a = rx.recv() => a,
            _ = beat.tick() => {
                stats.beat(crate::status::Stage::Actions);
                continue;
            }
        };
        let Some(a) = a else { break };
        tracing::info!("local action: {} <- {}", a.topic, a.payload);
        if client
            .publish(a.topic.clone(), QoS::AtLeastOnce, false, a.payload)
            .await
            .is_err()
        {
            Stats::inc(&stats.actions_failed);
            tracing::error!("local action on {} not sent: client closed", a.topic);
        } else {
            Stats::inc(&stats.actions_out);
        }
    }
    // Give queued publishes a moment to go out, then drop the connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    poller.abort();
}
