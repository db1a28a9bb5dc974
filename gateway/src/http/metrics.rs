//! `/metrics`: what the gateway counts, in Prometheus conventions (`citygate_` prefix, base
//! units, `_total` counters, `citygate_build_info`, the standard `process_*` metrics). Labels
//! come from the configuration only (source, device, group, intersection, stage, class), never
//! from sensor ids or payloads, so the number of series is bounded by the config. Pure:
//! [`render`] turns one [`Inputs`] into the exposition text.

use citygate_protocols::registers::signal_controller::Mode;
use citygate_protocols::Class;

use super::prom::{Kind, Text};
use crate::outbox::ClassCounts;
use crate::sources::modbus::stats::{TIMING_BUCKETS, TIMING_BUCKET_US};
use crate::sources::modbus::{DeviceState, DeviceStats};
use crate::status::Snapshot;

/// Everything one scrape shows.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub gateway: &'a str,
    pub version: &'a str,
    pub snapshot: &'a Snapshot,
    /// Every Modbus device's counters, in configuration order.
    pub devices: &'a [DeviceStats],
    /// Age of the oldest stored record per class (by rank: alerts, events, summaries).
    pub oldest_age_s: [Option<f64>; 3],
    /// Seconds since the uplink broker last acknowledged a publish (`None`: never).
    pub last_puback_age_s: Option<f64>,
    /// Each intersection's id and its stages' ids, in configuration order.
    pub intersections: &'a [(String, Vec<String>)],
    pub process: Process,
}

/// The process's own figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    pub resident_bytes: Option<u64>,
    pub cpu_s: Option<f64>,
    /// Start time, seconds since the epoch.
    pub start_time_s: f64,
}

/// The upper bounds (seconds) of the Modbus timing histograms' buckets: whole multiples of
/// the counters' 100 µs resolution, up to the last bucket counted exactly (12.7 ms).
const TIMING_LE_US: [u64; 7] = [200, 500, 1_000, 2_500, 5_000, 10_000, 12_700];

/// Cumulative `(le seconds, count)` of a timing histogram at [`TIMING_LE_US`].
fn timing_buckets(hist: &[u64; TIMING_BUCKETS]) -> Vec<(f64, u64)> {
    TIMING_LE_US
        .iter()
        .map(|le| {
            // Bucket k counts times in [k, k + 1) × 100 µs: all of them are below le when
            // (k + 1) × 100 µs ≤ le.
            let upto = usize::try_from(le / TIMING_BUCKET_US).unwrap_or(0);
            let n: u64 = hist.iter().take(upto.min(TIMING_BUCKETS - 1)).sum();
            (*le as f64 / 1e6, n)
        })
        .collect()
}

fn per_class(c: &ClassCounts) -> [(&'static str, u64); 3] {
    [
        (Class::Alert.as_str(), c.alerts),
        (Class::Event.as_str(), c.events),
        (Class::Summary.as_str(), c.summaries),
    ]
}

fn classes<'a>(c: &ClassCounts) -> Vec<(Vec<(&'a str, &'a str)>, f64)> {
    per_class(c)
        .into_iter()
        .map(|(class, n)| (vec![("class", class)], n as f64))
        .collect()
}

/// The exposition text of one scrape.
pub fn render(i: &Inputs<'_>) -> String {
    let mut t = Text::default();
    t.metric(
        "citygate_build_info",
        Kind::Gauge,
        "Build and identity of this gateway (always 1).",
        [(vec![("version", i.version), ("gateway", i.gateway)], 1.0)],
    );
    sources(&mut t, i.snapshot);
    modbus(&mut t, i.devices);
    rules_and_records(&mut t, i.snapshot);
    outbox(&mut t, i);
    uplink(&mut t, i);
    signals(&mut t, i);
    process(&mut t, &i.process);
    t.finish()
}

fn sources(t: &mut Text, s: &Snapshot) {
    let per = |f: fn(&crate::status::SourceSnapshot) -> u64| {
        s.sources
            .iter()
            .map(move |x| {
                (
                    vec![("kind", x.kind.as_str()), ("source", x.name.as_str())],
                    f(x) as f64,
                )
            })
            .collect::<Vec<_>>()
    };
    t.metric(
        "citygate_readings_total",
        Kind::Counter,
        "Readings a source handed to the rules.",
        per(|x| x.readings),
    );
    t.metric(
        "citygate_readings_malformed_total",
        Kind::Counter,
        "Payloads of a source that could not be decoded (the log names topic and reason).",
        per(|x| x.malformed),
    );
    t.metric(
        "citygate_readings_late_total",
        Kind::Counter,
        "Readings of a source older than their sensor's open summary window.",
        per(|x| x.late),
    );
    t.metric(
        "citygate_readings_unusable_total",
        Kind::Counter,
        "Readings with a quality flag other than good.",
        [(vec![], s.unusable as f64)],
    );
}

fn modbus(t: &mut Text, devices: &[DeviceStats]) {
    let per = |f: fn(&DeviceStats) -> f64| {
        devices
            .iter()
            .map(move |d| (vec![("device", d.device.as_str())], f(d)))
            .collect::<Vec<_>>()
    };
    t.metric(
        "citygate_modbus_requests_total",
        Kind::Counter,
        "Modbus requests sent to a device (reads and writes, retries included).",
        per(|d| d.requests as f64),
    );
    t.family(
        "citygate_modbus_errors_total",
        Kind::Counter,
        "Modbus requests that failed, by kind: timeout, exception, mismatch (an answer to \
         another request), transport.",
    );
    for d in devices {
        let transport = d
            .errors
            .saturating_sub(d.timeouts + d.exceptions + d.mismatches);
        for (kind, n) in [
            ("timeout", d.timeouts),
            ("exception", d.exceptions),
            ("mismatch", d.mismatches),
            ("transport", transport),
        ] {
            t.sample(
                "citygate_modbus_errors_total",
                &[("device", &d.device), ("kind", kind)],
                n as f64,
            );
        }
    }
    t.metric(
        "citygate_modbus_timeouts_total",
        Kind::Counter,
        "Modbus requests that got no answer within the device's timeout_ms.",
        per(|d| d.timeouts as f64),
    );
    t.metric(
        "citygate_modbus_device_online",
        Kind::Gauge,
        "1 when the device's last poll cycle succeeded, else 0.",
        per(|d| f64::from(u8::from(d.state == DeviceState::Online))),
    );
    t.metric(
        "citygate_modbus_poll_cycles_total",
        Kind::Counter,
        "Poll cycles started.",
        per(|d| d.cycles as f64),
    );
    t.metric(
        "citygate_modbus_poll_overruns_total",
        Kind::Counter,
        "Poll cycles that started more than one poll interval late.",
        per(|d| d.overruns as f64),
    );
    for (name, help, hist, sum) in [
        (
            "citygate_modbus_poll_lateness_seconds",
            "How late poll cycles started against their schedule.",
            (|d: &DeviceStats| d.lateness) as fn(&DeviceStats) -> [u64; TIMING_BUCKETS],
            (|d: &DeviceStats| d.lateness_sum_us) as fn(&DeviceStats) -> u64,
        ),
        (
            "citygate_modbus_poll_jitter_seconds",
            "Poll period jitter: |interval between consecutive regular cycle starts - poll interval|.",
            |d: &DeviceStats| d.period_jitter,
            |d: &DeviceStats| d.period_jitter_sum_us,
        ),
    ] {
        t.family(name, Kind::Histogram, help);
        for d in devices {
            let h = hist(d);
            t.histogram(
                name,
                &[("device", &d.device)],
                &timing_buckets(&h),
                sum(d) as f64 / 1e6,
                h.iter().sum(),
            );
        }
    }
}

fn rules_and_records(t: &mut Text, s: &Snapshot) {
    t.metric(
        "citygate_hazard_level",
        Kind::Gauge,
        "A hazard group's level told to the public: 0 normal, 1 its lowest level, 2 the next, ...",
        s.hazard_groups
            .iter()
            .map(|g| (vec![("group", g.group.as_str())], g.rank as f64)),
    );
    t.metric(
        "citygate_records_out_total",
        Kind::Counter,
        "Records stored in the outbox for the uplink, by class (summary, event, alert).",
        [
            ("summary", s.summaries_out),
            ("event", s.events_out),
            ("alert", s.alerts_out),
        ]
        .map(|(c, n)| (vec![("class", c)], n as f64)),
    );
    t.metric(
        "citygate_records_not_stored_total",
        Kind::Counter,
        "Records the gateway could not store in the outbox (refused when full, disk errors).",
        [(vec![], s.records_not_stored as f64)],
    );
    t.metric(
        "citygate_actions_total",
        Kind::Counter,
        "Local actions (sirens, signs, stage commands) by outcome: sent or failed.",
        [("sent", s.actions_out), ("failed", s.actions_failed)]
            .map(|(o, n)| (vec![("outcome", o)], n as f64)),
    );
    t.metric(
        "citygate_commands_total",
        Kind::Counter,
        "Downlink commands by verification outcome: accepted or rejected.",
        [
            ("accepted", s.commands_accepted),
            ("rejected", s.commands_rejected),
        ]
        .map(|(o, n)| (vec![("outcome", o)], n as f64)),
    );
}

fn outbox(t: &mut Text, i: &Inputs<'_>) {
    let o = &i.snapshot.outbox;
    t.metric(
        "citygate_outbox_records",
        Kind::Gauge,
        "Records stored in the outbox, waiting for the uplink broker's PUBACK.",
        classes(&o.depth),
    );
    t.metric(
        "citygate_outbox_bytes",
        Kind::Gauge,
        "Bytes of the stored records (keys and values), as counted against max_bytes.",
        classes(&o.bytes_by_class),
    );
    t.metric(
        "citygate_outbox_max_bytes",
        Kind::Gauge,
        "The outbox's byte budget (0: no limit).",
        [(vec![], o.max_bytes as f64)],
    );
    t.metric(
        "citygate_outbox_oldest_record_age_seconds",
        Kind::Gauge,
        "Age of the oldest stored record of a class (absent when the class is empty).",
        Class::ALL.iter().filter_map(|c| {
            let age = i
                .oldest_age_s
                .get(usize::from(c.rank()))
                .copied()
                .flatten()?;
            Some((vec![("class", c.as_str())], age))
        }),
    );
    for (name, help, c) in [
        (
            "citygate_outbox_evicted_total",
            "Records evicted to keep within max_bytes (never alerts).",
            &o.evicted,
        ),
        (
            "citygate_outbox_expired_total",
            "Records removed because their class's time to live passed.",
            &o.expired,
        ),
        (
            "citygate_outbox_refused_total",
            "New records refused because nothing of their class or lower was left to evict.",
            &o.refused,
        ),
    ] {
        t.metric(name, Kind::Counter, help, classes(c));
    }
    t.metric(
        "citygate_outbox_disk_errors_total",
        Kind::Counter,
        "Storage errors (e.g. a full disk) reported by the outbox's store.",
        [(vec![], o.disk_errors as f64)],
    );
}

fn uplink(t: &mut Text, i: &Inputs<'_>) {
    let s = i.snapshot;
    t.metric(
        "citygate_uplink_connected",
        Kind::Gauge,
        "1 while the uplink's MQTT connection is up.",
        [(vec![], f64::from(u8::from(s.uplink_connected)))],
    );
    t.metric(
        "citygate_uplink_reconnects_total",
        Kind::Counter,
        "Times the uplink's connection was lost after being up.",
        [(vec![], s.uplink_reconnects as f64)],
    );
    t.metric(
        "citygate_uplink_delivered_total",
        Kind::Counter,
        "Records the uplink broker acknowledged (PUBACK) and the outbox deleted.",
        [(vec![], s.delivered as f64)],
    );
    t.metric(
        "citygate_uplink_last_puback_age_seconds",
        Kind::Gauge,
        "Seconds since the uplink broker last acknowledged a publish (absent before the first).",
        i.last_puback_age_s.map(|a| (vec![], a)),
    );
}

fn signals(t: &mut Text, i: &Inputs<'_>) {
    let status = |id: &str| i.snapshot.signals.iter().find(|s| s.id == id);
    t.family(
        "citygate_signal_stage",
        Kind::Gauge,
        "1 for the stage an intersection is green in (or moving to), 0 for its other stages.",
    );
    for (id, stages) in i.intersections {
        let now = status(id).map(|s| s.stage.as_str());
        for st in stages {
            let v = f64::from(u8::from(now == Some(st.as_str())));
            t.sample(
                "citygate_signal_stage",
                &[("intersection", id), ("stage", st)],
                v,
            );
        }
    }
    t.family(
        "citygate_signal_field_mode",
        Kind::Gauge,
        "1 for the mode the field controller reports (startup, central, commandedplan, \
         fallback, flashing), 0 for the others; all 0 while unknown.",
    );
    let modes: Vec<String> = (0..=u16::MAX)
        .map_while(Mode::from_wire)
        .map(|m| format!("{m:?}").to_lowercase())
        .collect();
    for (id, _) in i.intersections {
        let now = status(id).map(|s| s.field_mode.as_str());
        for m in &modes {
            let v = f64::from(u8::from(now == Some(m.as_str())));
            t.sample(
                "citygate_signal_field_mode",
                &[("intersection", id), ("mode", m)],
                v,
            );
        }
    }
    let per = |f: fn(&crate::signals::runtime::IntersectionStatus) -> f64| {
        i.intersections
            .iter()
            .filter_map(move |(id, _)| Some((vec![("intersection", id.as_str())], f(status(id)?))))
            .collect::<Vec<_>>()
    };
    t.metric(
        "citygate_signal_supervisor_refusals_total",
        Kind::Counter,
        "Stage requests the safety supervisor refused.",
        per(|s| s.refused as f64),
    );
    t.metric(
        "citygate_signal_stage_changes_total",
        Kind::Counter,
        "Stage changes since start.",
        per(|s| s.stage_changes as f64),
    );
    t.metric(
        "citygate_signal_detector_faults",
        Kind::Gauge,
        "Detectors of an intersection that are faulty now (stuck on, stuck off, no data).",
        per(|s| s.faulty_detectors.len() as f64),
    );
}

fn process(t: &mut Text, p: &Process) {
    t.metric(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
        p.resident_bytes.map(|b| (vec![], b as f64)),
    );
    t.metric(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
        p.cpu_s.map(|s| (vec![], s)),
    );
    t.metric(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        [(vec![], p.start_time_s)],
    );
}
