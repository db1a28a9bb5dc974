//! Coordination between gateways on the broker: a thin shell that subscribes to every
//! gateway's `citygate/v1/+/peer/outflow` topic on the local broker, decodes the planned
//! outflows (`lookahead::peer`), and hands those of other gateways to the rules task. The
//! gateway's own outflows go out through the local actions publisher (`Signals::tick`).
//! A malformed peer message is logged with its topic and counted, and the rest goes on.

use std::sync::Arc;
use std::time::Duration;

use citygate_protocols::topic::{self, Topic};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;

use super::controller::PlannedFlow;
use super::lookahead::peer;
use crate::backoff::Backoff;
use crate::broker::LocalClient;
use crate::status::Stats;

/// Peer messages waiting for the rules task; when full, the newest is dropped and logged
/// (the sender publishes a fresher plan every second).
pub const QUEUE: usize = 64;

/// The topic a gateway publishes its planned outflows on.
pub fn topic_of(gateway: &str) -> String {
    topic::format(
        gateway,
        &Topic::Peer {
            channel: peer::CHANNEL.into(),
        },
    )
}

/// Which planned flows of a peer message to take: those of other gateways only.
pub fn from_other_gateway(topic_name: &str, own: &str) -> bool {
    match topic::parse(topic_name) {
        Ok((gw, Topic::Peer { channel })) => gw != own && channel == peer::CHANNEL,
        _ => false,
    }
}

/// Listens until the receiver is gone.
pub async fn listen(
    local: LocalClient,
    own: String,
    tx: mpsc::Sender<Vec<PlannedFlow>>,
    stats: Arc<Stats>,
) {
    let filter = format!("citygate/v1/+/peer/{}", peer::CHANNEL);
    let (client, mut eventloop) =
        AsyncClient::new(local.options(&format!("citygate-{own}-peers"), 30), 16);
    let mut backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(10),
        u64::from(std::process::id()) ^ 0x9e37,
    );
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                let _ = client.try_subscribe(filter.clone(), QoS::AtMostOnce);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if !from_other_gateway(&p.topic, &own) {
                    continue;
                }
                match peer::decode(&p.payload) {
                    Ok(flows) => {
                        if tx.is_closed() {
                            return;
                        }
                        if tx.try_send(flows).is_err() {
                            tracing::warn!("peer flows from {} dropped: queue full", p.topic);
                        }
                    }
                    Err(e) => {
                        Stats::inc(&stats.malformed);
                        tracing::warn!("peer message on {}: {e}", p.topic);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!("peers: {e}; reconnecting in {} ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_outflows_of_other_gateways_only() {
        assert_eq!(topic_of("gw-2"), "citygate/v1/gw-2/peer/outflow");
        assert!(from_other_gateway("citygate/v1/gw-2/peer/outflow", "gw-1"));
        assert!(!from_other_gateway("citygate/v1/gw-1/peer/outflow", "gw-1"));
        assert!(!from_other_gateway("citygate/v1/gw-2/peer/queues", "gw-1"));
        assert!(!from_other_gateway("citygate/v1/gw-2/status", "gw-1"));
        assert!(!from_other_gateway("junk", "gw-1"));
    }
}
