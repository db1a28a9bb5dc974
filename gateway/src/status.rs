//! Counters every stage updates, and the status an operator reads (the terminal line,
//! `status.json`, `citygate status` and the HTTP server's `/api/status` and `/metrics`): the
//! gateway-wide counters, per-source counters ([`Sources`]), the Modbus devices' counters,
//! the hazard groups' levels and the uplink's last acknowledgement.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
    /// The uplink is pacing a backlog by `outbox.drain_per_s` now (records older than the
    /// last few seconds' arrivals are waiting for the limit).
    pub drain_paced: AtomicBool,
    /// Times the uplink waited for the drain limit with records waiting.
    pub drain_throttled: AtomicU64,
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
    /// Readings, malformed payloads and late readings per source.
    pub sources: Sources,
    /// The Modbus devices' counters, when there are Modbus devices.
    pub modbus: std::sync::OnceLock<crate::sources::modbus::ModbusStats>,
    /// Every hazard group's level, refreshed by the rules each second.
    pub hazard_groups: Mutex<Vec<HazardState>>,
    /// When the uplink broker last acknowledged a publish: `clock::mono_ms() + 1`, 0 never.
    pub last_puback_ms: AtomicU64,
    /// When the uplink last connected or lost its connection (`clock::mono_ms()`; 0: start).
    pub uplink_changed_ms: AtomicU64,
    /// Each stage task's last heartbeat (`clock::mono_ms() + 1`; 0: none yet), by [`Stage`].
    pub beats: [AtomicU64; Stage::ALL.len()],
    /// The field gate's connections and refusals (`field`).
    pub field: crate::field::FieldCounters,
}

/// The stage tasks that beat (see [`Stats::beat`]); `/healthz` checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Ingest,
    Rules,
    Signals,
    Actions,
    Upkeep,
    Uplink,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Ingest,
        Stage::Rules,
        Stage::Signals,
        Stage::Actions,
        Stage::Upkeep,
        Stage::Uplink,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Rules => "rules",
            Stage::Signals => "signals",
            Stage::Actions => "actions",
            Stage::Upkeep => "upkeep",
            Stage::Uplink => "uplink",
        }
    }
}

/// How often the stages without a tick of their own beat.
pub const BEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// One hazard group's state, as the rules last saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HazardState {
    pub group: String,
    /// The level last told to the public while an incident is open (`None`: normal).
    pub level: Option<String>,
    /// Its rank among the group's levels, lowest first: 0 normal, 1 the lowest level, ...
    pub rank: usize,
    /// The CAP headline of the group's last alert, while an incident is open.
    pub headline: Option<String>,
}

impl HazardState {
    /// Every group of `engine` with its level now; headlines carried over from `prev` while
    /// the group's incident stays open.
    pub fn of_engine(
        engine: &crate::rules::hazard::HazardEngine,
        prev: &[HazardState],
    ) -> Vec<HazardState> {
        let cfg = engine.config();
        engine
            .status()
            .into_iter()
            .map(|g| {
                let rank = g.level_sent.as_ref().map_or(0, |name| {
                    cfg.groups
                        .iter()
                        .find(|c| c.id == g.id)
                        .and_then(|c| c.levels.iter().position(|l| &l.name == name))
                        .map_or(0, |i| i + 1)
                });
                let headline = g.level_sent.as_ref().and_then(|_| {
                    prev.iter()
                        .find(|p| p.group == g.id)
                        .and_then(|p| p.headline.clone())
                });
                HazardState {
                    group: g.id,
                    level: g.level_sent,
                    rank,
                    headline,
                }
            })
            .collect()
    }

    /// Notes the headline of an alert sent for `group` (a cancel clears it).
    pub fn note_alert(
        states: &mut Vec<HazardState>,
        group: &str,
        alert: &citygate_protocols::cap::Alert,
        cancelled: bool,
    ) {
        let headline = alert.info.first().and_then(|i| i.headline.clone());
        match states.iter_mut().find(|s| s.group == group) {
            Some(s) => s.headline = if cancelled { None } else { headline },
            None if !cancelled => states.push(HazardState {
                group: group.to_string(),
                level: None,
                rank: 0,
                headline,
            }),
            None => {}
        }
    }
}

/// Counters of one source: a `[[sources.mqtt]]` subscription or a Modbus device.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Readings handed to the rules (for Modbus devices: the device's own counter).
    pub readings: AtomicU64,
    /// Payloads that could not be decoded.
    pub malformed: AtomicU64,
    /// Readings older than their sensor's open window.
    pub late: AtomicU64,
}

/// The sources and which source each sensor's readings come from (the first source that
/// reported it), so that the rules can count a late reading against its source.
#[derive(Debug, Default)]
pub struct Sources {
    list: Mutex<Vec<(&'static str, String, Arc<SourceCounters>)>>,
    by_sensor: RwLock<HashMap<String, Arc<SourceCounters>>>,
}

/// One source's counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceSnapshot {
    /// `mqtt` or `modbus`.
    pub kind: String,
    pub name: String,
    pub readings: u64,
    pub malformed: u64,
    pub late: u64,
}

impl Sources {
    /// The counters of source `name` of `kind`, created on first use.
    pub fn register(&self, kind: &'static str, name: &str) -> Arc<SourceCounters> {
        let mut l = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = l.iter().find(|(k, n, _)| *k == kind && n == name) {
            return Arc::clone(c);
        }
        let c = Arc::new(SourceCounters::default());
        l.push((kind, name.to_string(), Arc::clone(&c)));
        c
    }

    /// Records that `sensor`'s readings come from the source counted by `c` (the first
    /// binding of a sensor stays).
    pub fn bind_sensor(&self, sensor: &str, c: &Arc<SourceCounters>) {
        let mut m = self.by_sensor.write().unwrap_or_else(|e| e.into_inner());
        m.entry(sensor.to_string()).or_insert_with(|| Arc::clone(c));
    }

    /// Registers every Modbus device and binds its points' sensors.
    pub fn add_modbus(&self, devices: &[crate::sources::modbus::DeviceConfig]) {
        for d in devices {
            let c = self.register("modbus", &d.name);
            for p in &d.points {
                self.bind_sensor(p.sensor.as_deref().unwrap_or(&d.name), &c);
            }
        }
    }

    /// Counts a late reading of `sensor` against its source, if known.
    pub fn late(&self, sensor: &str) {
        let m = self.by_sensor.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(sensor) {
            Stats::inc(&c.late);
        }
    }

    /// Every source in registration order; Modbus devices' readings from `modbus`.
    fn snapshot(&self, modbus: &[ModbusDevice]) -> Vec<SourceSnapshot> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let l = self.list.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .map(|(kind, name, c)| SourceSnapshot {
                kind: (*kind).to_string(),
                name: name.clone(),
                readings: match modbus
                    .iter()
                    .find(|d| *kind == "modbus" && &d.device == name)
                {
                    Some(d) => d.readings,
                    None => g(&c.readings),
                },
                malformed: g(&c.malformed),
                late: g(&c.late),
            })
            .collect()
    }
}

/// One Modbus device's counters as the status shows them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModbusDevice {
    pub device: String,
    /// `starting`, `online`, `backoff` or `offline`.
    pub state: String,
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub exceptions: u64,
    pub mismatches: u64,
    pub connects: u64,
    pub cycles: u64,
    pub failed_cycles: u64,
    pub readings: u64,
    pub overruns: u64,
    /// Poll cycle lateness against the schedule: median and 99th percentile (bucket upper
    /// bounds, ms; `None` before the first cycle).
    pub late_p50_ms: Option<f64>,
    pub late_p99_ms: Option<f64>,
    /// Poll period jitter, 99th percentile (ms).
    pub jitter_p99_ms: Option<f64>,
}

impl ModbusDevice {
    pub fn of(d: &crate::sources::modbus::DeviceStats) -> ModbusDevice {
        use crate::sources::modbus::DeviceStats as S;
        ModbusDevice {
            device: d.device.clone(),
            state: d.state.as_str().to_string(),
            requests: d.requests,
            errors: d.errors,
            timeouts: d.timeouts,
            exceptions: d.exceptions,
            mismatches: d.mismatches,
            connects: d.connects,
            cycles: d.cycles,
            failed_cycles: d.failed_cycles,
            readings: d.readings,
            overruns: d.overruns,
            late_p50_ms: S::quantile_ms(&d.lateness, 0.5),
            late_p99_ms: S::quantile_ms(&d.lateness, 0.99),
            jitter_p99_ms: S::quantile_ms(&d.period_jitter, 0.99),
        }
    }
}

impl fmt::Display for ModbusDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        write!(
            f,
            "modbus {}: {} | requests {}, errors {} (timeouts {}, exceptions {}, mismatches {}) | \
             cycles {} (failed {}, overruns {}), readings {}, connects {} | late p50 {} p99 {}, \
             jitter p99 {}",
            self.device,
            self.state,
            self.requests,
            self.errors,
            self.timeouts,
            self.exceptions,
            self.mismatches,
            self.cycles,
            self.failed_cycles,
            self.overruns,
            self.readings,
            self.connects,
            ms(self.late_p50_ms),
            ms(self.late_p99_ms),
            ms(self.jitter_p99_ms),
        )
    }
}

impl Stats {
    /// A heartbeat of `stage`'s task: its loop is running.
    pub fn beat(&self, stage: Stage) {
        if let Some(b) = self.beats.get(stage as usize) {
            b.store(crate::clock::mono_ms() + 1, Ordering::Relaxed);
        }
    }

    /// When `stage` last beat (`clock::mono_ms()`), if it has.
    pub fn last_beat_ms(&self, stage: Stage) -> Option<u64> {
        let v = self.beats.get(stage as usize)?.load(Ordering::Relaxed);
        v.checked_sub(1)
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Increments and returns the new value.
    pub fn inc_get(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let modbus: Vec<ModbusDevice> = self
            .modbus
            .get()
            .map(|m| m.snapshot().iter().map(ModbusDevice::of).collect())
            .unwrap_or_default();
        Snapshot {
            sources: self.sources.snapshot(&modbus),
            modbus,
            hazard_groups: self
                .hazard_groups
                .lock()
                .map(|h| h.clone())
                .unwrap_or_default(),
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
            drain_paced: self.drain_paced.load(Ordering::Relaxed),
            drain_throttled: g(&self.drain_throttled),
            actions_out: g(&self.actions_out),
            actions_failed: g(&self.actions_failed),
            hazards: self.hazards.lock().map(|h| h.clone()).unwrap_or_default(),
            records_not_stored: g(&self.records_not_stored),
            commands_accepted: g(&self.commands_accepted),
            commands_rejected: g(&self.commands_rejected),
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    pub drain_paced: bool,
    pub drain_throttled: u64,
    pub actions_out: u64,
    pub actions_failed: u64,
    pub hazards: String,
    pub records_not_stored: u64,
    /// Outbox depth and bytes per class, evictions, expiries, disk errors.
    pub outbox: OutboxStatus,
    pub signals: Vec<crate::signals::runtime::IntersectionStatus>,
    /// Readings, malformed payloads and late readings per source.
    #[serde(default)]
    pub sources: Vec<SourceSnapshot>,
    /// Every Modbus device's counters, in configuration order.
    #[serde(default)]
    pub modbus: Vec<ModbusDevice>,
    /// Every hazard group's level.
    #[serde(default)]
    pub hazard_groups: Vec<HazardState>,
    #[serde(default)]
    pub commands_accepted: u64,
    #[serde(default)]
    pub commands_rejected: u64,
    /// Field connections and what the gate refused.
    #[serde(default)]
    pub field: crate::field::FieldSnapshot,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "readings in {} (malformed {}, late {}) | summaries out {} | alerts {}{} | outbox {}{}{} | uplink {} (delivered {}, reconnects {}){}",
            self.readings_in,
            self.malformed,
            self.late,
            self.summaries_out,
            self.alerts_out,
            if self.hazards.is_empty() { String::new() } else { format!(" [{}]", self.hazards) },
            self.outbox_depth,
            outbox_losses(&self.outbox),
            if self.drain_paced { ", backlog paced by drain_per_s" } else { "" },
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

    /// What `citygate status` prints below its first line: the status line, then one line
    /// per Modbus device.
    pub fn report(&self) -> String {
        let mut out = self.line.clone();
        let devices = self
            .status
            .get("modbus")
            .cloned()
            .and_then(|m| serde_json::from_value::<Vec<ModbusDevice>>(m).ok())
            .unwrap_or_default();
        for d in devices {
            out.push_str(&format!("\n{d}"));
        }
        out
    }

    pub fn read(dir: &std::path::Path) -> std::io::Result<StatusFile> {
        let bytes = std::fs::read(dir.join(STATUS_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_report_shows_every_modbus_device() {
        let stats = Stats::default();
        let mut snap = stats.snapshot();
        snap.modbus = vec![ModbusDevice {
            device: "int-1".into(),
            state: "online".into(),
            requests: 120,
            errors: 3,
            timeouts: 2,
            exceptions: 1,
            mismatches: 0,
            connects: 1,
            cycles: 60,
            failed_cycles: 2,
            readings: 300,
            overruns: 0,
            late_p50_ms: Some(0.4),
            late_p99_ms: Some(2.1),
            jitter_p99_ms: None,
        }];
        let dir = tempfile::tempdir().unwrap();
        StatusFile::write(dir.path(), "gw", 1.0, &snap).unwrap();
        let report = StatusFile::read(dir.path()).unwrap().report();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[0], snap.to_string());
        assert_eq!(
            lines[1],
            "modbus int-1: online | requests 120, errors 3 (timeouts 2, exceptions 1, \
             mismatches 0) | cycles 60 (failed 2, overruns 0), readings 300, connects 1 | \
             late p50 0.4 ms p99 2.1 ms, jitter p99 -"
        );
        // A status written before the Modbus statistics existed still reads.
        let old = StatusFile {
            gateway: "gw".into(),
            time: 1.0,
            status: serde_json::json!({"readings_in": 1}),
            line: "x".into(),
        };
        assert_eq!(old.report(), "x");
    }
}
