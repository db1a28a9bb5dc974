//! Counters every stage updates, and the status an operator reads (the terminal line and the
//! retained status message).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::outbox::{OutboxCounters, OutboxStatus};

/// Live counters of one gateway, shared by its tasks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Readings from every source that reached the rules.
    pub readings_in: AtomicU64,
    /// Payloads that could not be decoded (see the log for topic and reason).
    pub malformed: AtomicU64,
    /// Readings older than their sensor's open window.
    pub late: AtomicU64,
    /// Readings with a quality flag other than good.
    pub unusable: AtomicU64,
    pub summaries_out: AtomicU64,
    pub events_out: AtomicU64,
    pub alerts_out: AtomicU64,
    /// Records acknowledged by the uplink broker.
    pub delivered: AtomicU64,
    pub uplink_connected: AtomicBool,
    /// The local broker confirmed every ingest subscription.
    pub ingest_subscribed: AtomicBool,
    pub uplink_reconnects: AtomicU64,
    /// Records in the outbox, updated by the uplink.
    pub outbox_depth: AtomicU64,
    /// Local actions published (sirens, signs) and those that could not be.
    pub actions_out: AtomicU64,
    pub actions_failed: AtomicU64,
    /// One line on the hazard groups, e.g. `flood: warning (incident 1700000123)`.
    pub hazards: std::sync::Mutex<String>,
    /// Every signalised intersection: stage, controller, last decision.
    pub signals: std::sync::Mutex<Vec<crate::signals::runtime::IntersectionStatus>>,
    /// Downlink commands that passed verification.
    pub commands_accepted: AtomicU64,
    /// Downlink commands refused (see the `command_rejected` events and the log).
    pub commands_rejected: AtomicU64,
    /// Records the rules could not store in the outbox (refused when full, disk errors).
    pub records_not_stored: AtomicU64,
    /// The outbox's counters and byte budget, once the outbox is open.
    pub outbox: std::sync::OnceLock<(std::sync::Arc<OutboxCounters>, u64)>,
    /// The field gate's connections and refusals (`field`).
    pub field: crate::field::FieldCounters,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Increments and returns the new value.
    pub fn inc_get(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            readings_in: g(&self.readings_in),
            malformed: g(&self.malformed),
            late: g(&self.late),
            unusable: g(&self.unusable),
            summaries_out: g(&self.summaries_out),
            events_out: g(&self.events_out),
            alerts_out: g(&self.alerts_out),
            delivered: g(&self.delivered),
            uplink_connected: self.uplink_connected.load(Ordering::Relaxed),
            ingest_subscribed: self.ingest_subscribed.load(Ordering::Relaxed),
            uplink_reconnects: g(&self.uplink_reconnects),
            outbox_depth: g(&self.outbox_depth),
            actions_out: g(&self.actions_out),
            actions_failed: g(&self.actions_failed),
            hazards: self.hazards.lock().map(|h| h.clone()).unwrap_or_default(),
            records_not_stored: g(&self.records_not_stored),
            outbox: self
                .outbox
                .get()
                .map(|(c, max)| c.status(*max))
                .unwrap_or_default(),
            signals: self.signals.lock().map(|s| s.clone()).unwrap_or_default(),
            field: self.field.snapshot(),
        }
    }
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    pub readings_in: u64,
    pub malformed: u64,
    pub late: u64,
    pub unusable: u64,
    pub summaries_out: u64,
    pub events_out: u64,
    pub alerts_out: u64,
    pub delivered: u64,
    pub uplink_connected: bool,
    pub ingest_subscribed: bool,
    pub uplink_reconnects: u64,
    pub outbox_depth: u64,
    pub actions_out: u64,
    pub actions_failed: u64,
    pub hazards: String,
    pub records_not_stored: u64,
    /// Outbox depth and bytes per class, evictions, expiries, disk errors.
    pub outbox: OutboxStatus,
    pub signals: Vec<crate::signals::runtime::IntersectionStatus>,
    /// Field connections and what the gate refused.
    pub field: crate::field::FieldSnapshot,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "readings in {} (malformed {}, late {}) | summaries out {} | alerts {}{} | outbox {}{} | uplink {} (delivered {}, reconnects {}){}",
            self.readings_in,
            self.malformed,
            self.late,
            self.summaries_out,
            self.alerts_out,
            if self.hazards.is_empty() { String::new() } else { format!(" [{}]", self.hazards) },
            self.outbox_depth,
            outbox_losses(&self.outbox),
            if self.uplink_connected { "up" } else { "down" },
            self.delivered,
            self.uplink_reconnects,
            self.field.refusals(),
        )?;
        // one line per intersection: stage, controller, field controller, last decision
        for i in &self.signals {
            write!(
                f,
                "\n  {}: stage {}{} {} s | {}{} | field {} {}{} | {}",
                i.id,
                i.stage,
                if i.in_transition { " (intergreen)" } else { "" },
                i.green_for_s,
                i.controller,
                if i.faulty_detectors.is_empty() {
                    String::new()
                } else {
                    format!(" [faulty: {}]", i.faulty_detectors.join(", "))
                },
                if i.field_mode.is_empty() {
                    "-"
                } else {
                    &i.field_mode
                },
                i.field_stage,
                if i.expected_from_peers > 0.0 {
                    format!(" | {} veh expected from peers", i.expected_from_peers)
                } else {
                    String::new()
                },
                i.reason,
            )?;
        }
        Ok(())
    }
}

/// ` (evicted 3, expired 1, disk errors 2)` when any of those happened, else empty.
fn outbox_losses(o: &OutboxStatus) -> String {
    let sum = |c: &crate::outbox::ClassCounts| c.alerts + c.events + c.summaries;
    let parts: Vec<String> = [
        ("evicted", sum(&o.evicted)),
        ("expired", sum(&o.expired)),
        ("refused", sum(&o.refused)),
        ("disk errors", o.disk_errors),
        ("set aside", o.set_aside),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k} {n}"))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// The status file an operator (or `citygate status`) reads: `<data_dir>/status.json`,
/// rewritten every second by a running gateway.
pub const STATUS_FILE: &str = "status.json";

/// What `status.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatusFile {
    pub gateway: String,
    /// Seconds since the epoch when it was written.
    pub time: f64,
    pub status: serde_json::Value,
    /// The one-line form of the status.
    pub line: String,
}

impl StatusFile {
    /// Writes the status atomically (a temporary file, then a rename).
    pub fn write(
        dir: &std::path::Path,
        gateway: &str,
        time: f64,
        s: &Snapshot,
    ) -> std::io::Result<()> {
        let f = StatusFile {
            gateway: gateway.to_string(),
            time,
            status: serde_json::to_value(s).unwrap_or_default(),
            line: s.to_string(),
        };
        let tmp = dir.join(".status.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&f).unwrap_or_default())?;
        std::fs::rename(tmp, dir.join(STATUS_FILE))
    }

    pub fn read(dir: &std::path::Path) -> std::io::Result<StatusFile> {
        let bytes = std::fs::read(dir.join(STATUS_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}
