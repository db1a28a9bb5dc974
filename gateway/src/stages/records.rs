//! The one path by which a record enters the outbox: every summary, event and alert the
//! gateway sends (from the rules, signal control, the downlink, the outbox's own reports) is
//! built into its topic here, appended, counted (`summaries_out`, `events_out`, `alerts_out`,
//! `records_not_stored`) and wakes the uplink.

use std::sync::Arc;

use citygate_protocols::topic::{self, Topic};
use citygate_protocols::{Body, Class, Event, Summary};
use tokio::sync::Notify;

use crate::outbox::Outbox;
use crate::status::Stats;

/// A handle on the outbox for the stages that produce records; cheap to clone.
#[derive(Debug, Clone)]
pub struct Records {
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
}

impl Records {
    pub fn new(outbox: Arc<Outbox>, stats: Arc<Stats>) -> Records {
        Records {
            outbox,
            stats,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The outbox records go to.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Notified after every append, and by the uplink when it has room for more.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// The gateway the records are from.
    pub fn gateway(&self) -> &str {
        self.outbox.gateway()
    }

    /// Appends a record under `topic` (off the async threads) and counts it by class; a
    /// record the outbox refuses is counted in `records_not_stored` and logged once per 1000.
    pub fn store(&self, topic: Topic, body: Body) {
        self.store_with_state(topic, body, &[]);
    }

    /// [`Records::store`] with state entries of the record's producer set (`Some`) or removed
    /// (`None`) in the same transaction (`outbox::Outbox::append_with_state`), flushed.
    pub fn store_with_state(&self, topic: Topic, body: Body, state: &[(&str, Option<&[u8]>)]) {
        let class = body.class();
        let t = topic::format(self.outbox.gateway(), &topic);
        let appended = crate::outbox::blocking(|| {
            if state.is_empty() {
                self.outbox.append(&t, body)
            } else {
                self.outbox.append_with_state(&t, body, state)
            }
        });
        match appended {
            Ok(_) => Stats::inc(match class {
                Class::Alert => &self.stats.alerts_out,
                Class::Event => &self.stats.events_out,
                Class::Summary => &self.stats.summaries_out,
            }),
            // Counted in the outbox status; logged once per 1000 so a full disk does not
            // also fill the log.
            Err(e) => {
                let n = Stats::inc_get(&self.stats.records_not_stored);
                if n == 1 || n.is_multiple_of(1000) {
                    tracing::error!("{} record not stored ({n} so far): {e}", class.as_str());
                }
            }
        }
        self.wake.notify_one();
    }

    pub fn summary(&self, s: Summary) {
        let sensor = s.sensor.clone();
        self.store(Topic::Summary { sensor }, Body::Summary(s));
    }

    pub fn event(&self, e: Event) {
        tracing::info!("event {} from {}: {}", e.kind, e.source, e.message);
        let kind = e.kind.clone();
        self.store(Topic::Event { kind }, Body::Event(e));
    }
}
