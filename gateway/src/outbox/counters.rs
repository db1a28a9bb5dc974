//! The outbox's counters: what went through it since start, per class, and the outbox part
//! of the status (`status.json`).

use std::sync::atomic::{AtomicU64, Ordering};

use citygate_protocols::Class;

/// One counter per class.
#[derive(Debug, Default)]
pub struct PerClass(pub [AtomicU64; 3]);

impl PerClass {
    pub fn get(&self, class: Class) -> u64 {
        self.0[usize::from(class.rank())].load(Ordering::Relaxed)
    }

    pub(super) fn add(&self, class: Class, n: u64) {
        self.0[usize::from(class.rank())].fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, class: Class, n: u64) {
        let _ = self.0[usize::from(class.rank())].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |v| Some(v.saturating_sub(n)),
        );
    }

    pub(super) fn set(&self, class: Class, n: u64) {
        self.0[usize::from(class.rank())].store(n, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        Class::ALL.iter().map(|c| self.get(*c)).sum()
    }

    fn snapshot(&self) -> ClassCounts {
        ClassCounts {
            alerts: self.get(Class::Alert),
            events: self.get(Class::Event),
            summaries: self.get(Class::Summary),
        }
    }
}

/// Counters of what went through the outbox since start (depth and bytes: stored now).
#[derive(Debug, Default)]
pub struct OutboxCounters {
    pub appended: AtomicU64,
    pub acked: AtomicU64,
    /// Records stored now.
    pub depth: AtomicU64,
    /// Records stored now, per class.
    pub depth_by_class: PerClass,
    /// Bytes of the records stored now (key and value), per class.
    pub bytes: PerClass,
    /// Records evicted to keep within `max_bytes` (never alerts).
    pub evicted: PerClass,
    /// Records removed because their class's time-to-live passed.
    pub expired: PerClass,
    /// New records refused because nothing of their class or lower was left to evict.
    pub refused: PerClass,
    /// Alerts stored although the byte budget was exceeded.
    pub alert_overflow: AtomicU64,
    /// Storage errors (e.g. a full disk) reported by sled.
    pub disk_errors: AtomicU64,
    /// Times the store was reopened after a disk error.
    pub reopened: AtomicU64,
    /// Damaged stores set aside at start (0 or 1).
    pub set_aside: AtomicU64,
}

/// Per-class numbers in the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassCounts {
    pub alerts: u64,
    pub events: u64,
    pub summaries: u64,
}

/// The outbox part of the status (`status.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxStatus {
    pub bytes: u64,
    pub max_bytes: u64,
    pub depth: ClassCounts,
    pub bytes_by_class: ClassCounts,
    pub evicted: ClassCounts,
    pub expired: ClassCounts,
    pub refused: ClassCounts,
    pub alert_overflow: u64,
    pub disk_errors: u64,
    pub reopened: u64,
    pub set_aside: u64,
}

impl OutboxCounters {
    pub fn status(&self, max_bytes: u64) -> OutboxStatus {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        OutboxStatus {
            bytes: self.bytes.total(),
            max_bytes,
            depth: self.depth_by_class.snapshot(),
            bytes_by_class: self.bytes.snapshot(),
            evicted: self.evicted.snapshot(),
            expired: self.expired.snapshot(),
            refused: self.refused.snapshot(),
            alert_overflow: g(&self.alert_overflow),
            disk_errors: g(&self.disk_errors),
            reopened: g(&self.reopened),
            set_aside: g(&self.set_aside),
        }
    }
}
