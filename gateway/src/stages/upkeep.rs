//! The outbox stage's upkeep: opens the outbox at start (setting a damaged one aside and
//! reporting it as an `outbox_set_aside` event), then once a second until stopped removes
//! records whose class's time to live passed, reopens the outbox after a disk error (reported
//! as an `outbox_disk_errors` event), and rewrites `status.json`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use citygate_protocols::Event;
use tokio::sync::watch;

use super::records::Records;
use crate::clock;
use crate::config::OutboxConfig;
use crate::outbox::{Outbox, OutboxError, SetAside};
use crate::status::{Stats, StatusFile};

/// How often the upkeep runs.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Opens (or sets aside and recreates) the outbox under `data_dir/outbox` and hands it to the
/// stages through [`Records`], with its counters in `stats`.
pub fn open(
    data_dir: &Path,
    gateway: &str,
    cfg: &OutboxConfig,
    stats: Arc<Stats>,
) -> Result<Records, OutboxError> {
    let (outbox, set_aside) = Outbox::open_or_set_aside(
        &data_dir.join("outbox"),
        gateway,
        cfg,
        clock::wall_s() as u64,
    )?;
    let outbox = Arc::new(outbox);
    let _ = stats
        .outbox
        .set((Arc::clone(&outbox.counters), outbox.max_bytes()));
    let records = Records::new(Arc::clone(&outbox), stats);
    if let Some(aside) = set_aside {
        report_set_aside(&records, &aside);
    }
    records
        .stats()
        .outbox_depth
        .store(outbox.len() as u64, Ordering::Relaxed);
    if !outbox.is_empty() {
        tracing::info!(
            "outbox holds {} records from before; resending",
            outbox.len()
        );
    }
    Ok(records)
}

/// Logs a damaged outbox that was set aside at start and reports it on the uplink as an
/// `outbox_set_aside` event.
fn report_set_aside(records: &Records, aside: &SetAside) {
    tracing::error!(
        "outbox was damaged ({}); kept it at {} and started a fresh one",
        aside.reason,
        aside.path.display()
    );
    records.event(Event {
        kind: "outbox_set_aside".into(),
        source: aside.path.display().to_string(),
        message: format!(
            "damaged outbox kept at {}, a fresh one started: {}",
            aside.path.display(),
            aside.reason
        ),
        time: clock::wall_s(),
    });
}

/// Every [`PERIOD`] until `stop`: expiry, recovery after disk errors, and the status file
/// in `data_dir`. The expiry and the reopening run off the async threads.
pub async fn run(records: Records, data_dir: PathBuf, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        records.stats().beat(crate::status::Stage::Upkeep);
        let ob = Arc::clone(records.outbox());
        let done = tokio::task::spawn_blocking(move || {
            // Records are stamped with wall time today; the outbox's owner moves its time to
            // live onto the monotonic clock.
            let expired = ob.expire(clock::wall_ms());
            let recovered = ob.recover();
            (expired, recovered)
        })
        .await;
        match done {
            Ok((expired, recovered)) => {
                match expired {
                    Ok(n) if n.iter().any(|c| *c > 0) => tracing::warn!(
                        "outbox: time-to-live passed for {} alerts, {} events, {} summaries; removed",
                        n[0],
                        n[1],
                        n[2]
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("outbox expiry: {e}"),
                }
                match recovered {
                    Ok(true) => report_recovered(&records),
                    Ok(false) => {}
                    Err(e) => tracing::error!("outbox still failing after a disk error: {e}"),
                }
            }
            Err(e) => tracing::error!("outbox upkeep task failed: {e}"),
        }
        write_status(&records, &data_dir);
    }
}

/// Logs that the outbox works again after disk errors, and tells the platform with an
/// `outbox_disk_errors` event: records may have been refused meanwhile.
fn report_recovered(records: &Records) {
    let st = records.outbox().status();
    let message = format!(
        "outbox reopened after {} disk errors (reopened {} times so far); records the gateway \
         could not store meanwhile are counted in records_not_stored",
        st.disk_errors, st.reopened
    );
    tracing::warn!("{message}");
    records.event(Event {
        kind: "outbox_disk_errors".into(),
        source: records.gateway().to_string(),
        message,
        time: clock::wall_s(),
    });
}

/// Refreshes the outbox depth and rewrites `status.json` (stamped with wall time: it is read
/// outside the gateway).
fn write_status(records: &Records, data_dir: &Path) {
    let stats = records.stats();
    stats
        .outbox_depth
        .store(records.outbox().len() as u64, Ordering::Relaxed);
    let written = crate::outbox::blocking(|| {
        StatusFile::write(
            data_dir,
            records.gateway(),
            clock::wall_s(),
            &stats.snapshot(),
        )
    });
    if let Err(e) = written {
        tracing::debug!("status file not written: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citygate_protocols::{Body, Class};

    #[test]
    fn a_set_aside_outbox_is_reported_as_a_counted_event() {
        let root = tempfile::tempdir().unwrap();
        // Something that is not a sled store at all where the outbox should be.
        std::fs::write(root.path().join("outbox"), b"not a directory").unwrap();
        let stats = Arc::new(Stats::default());
        let records = open(
            root.path(),
            "gw",
            &OutboxConfig::default(),
            Arc::clone(&stats),
        )
        .unwrap();
        let stored = records.outbox().pending_after(Class::Event, 0, 10).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].topic, "citygate/v1/gw/event/outbox_set_aside");
        let record: citygate_protocols::Envelope =
            serde_json::from_slice(&stored[0].payload).unwrap();
        assert!(
            matches!(&record.body, Body::Event(e) if e.kind == "outbox_set_aside"),
            "{record:?}"
        );
        // The status counts every event that went out, this one too.
        let s = stats.snapshot();
        assert_eq!(s.events_out, 1, "{s}");
        assert_eq!(s.outbox.set_aside, 1);
        assert_eq!(s.outbox_depth, 1);
    }
}
