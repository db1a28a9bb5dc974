//! The durable store-and-forward outbox on sled: the thin shell around `limits`.
//!
//! Design note. One sled tree holds every record under the key `[class rank][seq, big endian]`,
//! so a prefix scan yields one class in sequence order and classes sort by priority
//! (alerts < events < summaries by rank). The next sequence number lives in the same tree under
//! `[0xFF]`, written before the record it numbers; sled recovers a prefix of its operations, so
//! after a crash the stored counter is always past every stored record and a sequence number is
//! never reused. A record leaves only through [`Outbox::ack`] (the broker's PUBACK), through an
//! eviction under the byte budget (never an alert) or through its class's time-to-live; each
//! of the last two is counted per class. Alerts are flushed to disk before `append` returns;
//! other classes are made durable by sled's periodic flush or by [`Outbox::flush`], which the
//! uplink calls before it publishes a batch, so nothing is published that a crash could take
//! back.
//!
//! Losing the store. A store that never numbered a record (a fresh one after a set-aside,
//! or one an operator removed) starts at the sequence floor kept in a file beside it
//! (`floor`), which is always above every number handed out; so `(gateway, seq)` is never
//! reused even when the store's own counter is gone.
//!
//! Damage. [`Outbox::open_or_set_aside`] refuses to wipe anything: a store sled cannot open, or
//! one holding a record that does not decode, is renamed to `<dir>.corrupt-<unix time>` and a
//! fresh store is opened in its place; the caller logs and reports it. A store locked by another
//! process, or one that cannot be opened because the disk is full, is an error instead.
//!
//! Disk errors while running. sled stops accepting writes after an I/O error (e.g. a full disk).
//! Every storage error is counted; [`Outbox::recover`] (called by the gateway's upkeep) then
//! reopens the store, carrying over every record it can still read from the failed one, and
//! works again once the disk has room.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use citygate_protocols::{Body, Class, Envelope};

use super::counters::{OutboxCounters, OutboxStatus};
use super::floor;
use super::limits::{self, Admission, Ttl};
use crate::config::OutboxConfig;

const META_SEQ: &[u8] = &[0xFF, b's', b'e', b'q'];
/// First byte of a stored value that carries its storage time (format 2). Format 1 began with
/// the topic length's high byte, which is never 0xA5 for a real topic.
const VALUE_V2: u8 = 0xA5;

/// Where a record is stored: its class and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub class: Class,
    pub seq: u64,
}

impl Key {
    fn to_bytes(self) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = self.class.rank();
        k[1..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }

    fn from_bytes(b: &[u8]) -> Option<Key> {
        if b.len() != 9 {
            return None;
        }
        let class = *Class::ALL.get(usize::from(*b.first()?))?;
        let seq = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
        Some(Key { class, seq })
    }
}

/// A stored record: its key and the envelope's wire bytes.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: Key,
    /// The uplink topic it is published on.
    pub topic: String,
    /// The envelope's JSON.
    pub payload: Vec<u8>,
    /// When it was stored, in milliseconds since the epoch (for the time-to-live).
    pub stored_ms: u64,
}

/// Stored value (format 2): 0xA5, storage time (u64 ms, big endian), topic length (u16, big
/// endian), topic, envelope JSON.
pub(super) fn encode_value(topic: &str, payload: &[u8], stored_ms: u64) -> Vec<u8> {
    let t = topic.as_bytes();
    let len = u16::try_from(t.len()).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(11 + t.len() + payload.len());
    v.push(VALUE_V2);
    v.extend_from_slice(&stored_ms.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&t[..usize::from(len)]);
    v.extend_from_slice(payload);
    v
}

/// Decodes a stored value; a format-1 value (no storage time) counts as stored at `opened_ms`.
fn decode_value(key: Key, v: &[u8], opened_ms: u64) -> Option<Stored> {
    let (stored_ms, rest) = if v.first() == Some(&VALUE_V2) {
        (
            u64::from_be_bytes(v.get(1..9)?.try_into().ok()?),
            v.get(9..)?,
        )
    } else {
        (opened_ms, v)
    };
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let topic = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string();
    Some(Stored {
        key,
        topic,
        payload: rest.get(2 + len..)?.to_vec(),
        stored_ms,
    })
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs blocking outbox work (an append that flushes to disk) from async code without
/// stalling the other tasks of that runtime thread: through `block_in_place` on a multi-thread
/// runtime, directly elsewhere.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: cannot open: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("outbox {path}: the store is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("outbox {path}: in use by another process (is another gateway running on this data_dir?): {source}")]
    Locked { path: PathBuf, source: sled::Error },
    #[error("outbox {path}: damaged ({reason}) and cannot be set aside to {aside}: {source}")]
    SetAside {
        path: PathBuf,
        aside: PathBuf,
        reason: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Floor(#[from] floor::FloorError),
    #[error("outbox: storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("outbox: record {0:?} is unreadable")]
    Corrupt(Vec<u8>),
    #[error("outbox: the store is unavailable after a disk error; retrying")]
    Unavailable,
    #[error("outbox full ({used} of {max} bytes): {class} record of {bytes} bytes refused")]
    Refused {
        class: &'static str,
        bytes: u64,
        used: u64,
        max: u64,
    },
}

/// A damaged store that was moved aside at start.
#[derive(Debug, Clone)]
pub struct SetAside {
    /// Where the damaged store is now.
    pub path: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

pub(super) struct Store {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    /// Other stages' durable state beside the records (see `state`).
    pub(super) state: sled::Tree,
}

/// The outbox. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Outbox {
    dir: PathBuf,
    cfg: OutboxConfig,
    /// `None` between a failed store being dropped and a new one opening.
    store: RwLock<Option<Store>>,
    gateway: String,
    /// Next sequence number; the mutex also orders appends and evictions.
    next_seq: Mutex<u64>,
    /// The sequence floor file beside the store, and the floor it holds: every number
    /// handed out is below it (changed only under `next_seq`).
    floor_path: PathBuf,
    reserved: AtomicU64,
    ttl: Ttl,
    /// A storage error happened; `recover` reopens the store.
    failed: AtomicBool,
    /// Records read from a failed store that the new one has not taken yet.
    carry: Mutex<Vec<(sled::IVec, sled::IVec)>>,
    /// The same for the state tree.
    carry_state: Mutex<Vec<(sled::IVec, sled::IVec)>>,
    pub counters: Arc<OutboxCounters>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("gateway", &self.gateway)
            .field("dir", &self.dir)
            .finish()
    }
}

fn lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn disk_full(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.raw_os_error() == Some(28)
        || io.kind() == std::io::ErrorKind::StorageFull)
}

/// Opens sled in `dir`; a panic inside sled (it has a few on damaged files) becomes an error.
fn open_sled(dir: &Path, cfg: &OutboxConfig) -> Result<Store, sled::Error> {
    let flush = (cfg.flush_every_ms > 0).then_some(cfg.flush_every_ms);
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cfg.cache_capacity_bytes)
        .flush_every_ms(flush);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let db = config.open()?;
        let tree = db.open_tree("records")?;
        let state = db.open_tree(super::state::TREE)?;
        Ok::<_, sled::Error>(Store { db, tree, state })
    }));
    match opened {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "sled panicked".into());
            Err(sled::Error::ReportableBug(format!("sled panicked: {msg}")))
        }
    }
}

/// [`open_sled`], retried for up to two seconds while the lock is still held: sled releases
/// its file lock only when its background flusher, which outlives the last handle briefly, ends.
fn open_sled_released(dir: &Path, cfg: &OutboxConfig) -> Result<Store, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match open_sled(dir, cfg) {
            Err(e) if lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// What a full scan at open finds.
struct Scan {
    next_seq: u64,
    /// Whether the store holds its own counter (it numbered records before).
    numbered: bool,
    depth: [u64; 3],
    bytes: [u64; 3],
}

fn scan(tree: &sled::Tree) -> Result<Scan, OutboxError> {
    let mut s = Scan {
        next_seq: 1,
        numbered: false,
        depth: [0; 3],
        bytes: [0; 3],
    };
    if let Some(v) = tree.get(META_SEQ)? {
        s.numbered = true;
        s.next_seq = u64::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| OutboxError::Corrupt(META_SEQ.to_vec()))?,
        );
    }
    for item in tree.iter() {
        let (k, v) = item?;
        if k.as_ref() == META_SEQ {
            continue;
        }
        let key = Key::from_bytes(&k).ok_or_else(|| OutboxError::Corrupt(k.to_vec()))?;
        decode_value(key, &v, 0).ok_or_else(|| OutboxError::Corrupt(k.to_vec()))?;
        let r = usize::from(key.class.rank());
        s.depth[r] += 1;
        s.bytes[r] += limits::record_bytes(v.len());
        // Belt and braces: never below the largest stored sequence number.
        s.next_seq = s.next_seq.max(key.seq + 1);
    }
    Ok(s)
}

/// The next sequence number of a store just scanned, given the floor file beside it: the
/// store's own counter if it has one, else the floor (a fresh store after a set-aside or a
/// removal continues above every number handed out before). Makes sure a floor above it is
/// on disk. Returns the next number, the floor file and the floor.
fn floor_at_open(dir: &Path, found: &Scan) -> Result<(u64, PathBuf, u64), OutboxError> {
    let path = floor::path_for(dir);
    let stored = floor::read(&path)?.unwrap_or(0);
    let next = if found.numbered {
        found.next_seq
    } else {
        found.next_seq.max(stored)
    };
    let mut reserved = stored;
    if reserved <= next {
        reserved = next.saturating_add(floor::BLOCK);
        floor::write(&path, reserved)?;
    }
    Ok((next, path, reserved))
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` for `gateway`. A damaged store is an error;
    /// see [`Outbox::open_or_set_aside`].
    pub fn open(dir: &Path, gateway: &str, cfg: &OutboxConfig) -> Result<Outbox, OutboxError> {
        let store = open_sled(dir, cfg).map_err(|source| {
            if lock_error(&source) {
                OutboxError::Locked {
                    path: dir.to_path_buf(),
                    source,
                }
            } else {
                OutboxError::Open {
                    path: dir.to_path_buf(),
                    source,
                }
            }
        })?;
        let found = scan(&store.tree).map_err(|e| OutboxError::Damaged {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let counters = Arc::new(OutboxCounters::default());
        for class in Class::ALL {
            let r = usize::from(class.rank());
            counters.depth_by_class.set(class, found.depth[r]);
            counters.bytes.set(class, found.bytes[r]);
        }
        counters
            .depth
            .store(found.depth.iter().sum(), Ordering::Relaxed);
        let (next_seq, floor_path, reserved) = floor_at_open(dir, &found)?;
        let secs = |s: Option<u64>| s.map(|s| s.saturating_mul(1000));
        Ok(Outbox {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            store: RwLock::new(Some(store)),
            gateway: gateway.to_string(),
            next_seq: Mutex::new(next_seq),
            floor_path,
            reserved: AtomicU64::new(reserved),
            ttl: Ttl([
                secs(cfg.ttl_s.alerts),
                secs(cfg.ttl_s.events),
                secs(cfg.ttl_s.summaries),
            ]),
            failed: AtomicBool::new(false),
            carry: Mutex::new(Vec::new()),
            carry_state: Mutex::new(Vec::new()),
            counters,
        })
    }

    /// [`Outbox::open`] of a store this process just dropped: waits up to two seconds for
    /// sled to release its lock.
    pub fn reopen(dir: &Path, gateway: &str, cfg: &OutboxConfig) -> Result<Outbox, OutboxError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match Outbox::open(dir, gateway, cfg) {
                Err(OutboxError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => return r,
            }
        }
    }

    /// Opens the outbox like [`Outbox::open`], but a damaged or unreadable store is renamed to
    /// `<dir>.corrupt-<now_s>` (kept, never deleted) and a fresh one is opened in its place.
    /// Returns where the damaged one went. A store locked by another process, or a full disk,
    /// stays an error.
    pub fn open_or_set_aside(
        dir: &Path,
        gateway: &str,
        cfg: &OutboxConfig,
        now_s: u64,
    ) -> Result<(Outbox, Option<SetAside>), OutboxError> {
        // `reopen`: a lock the previous handle's flusher still holds is waited for.
        let reason = match Outbox::reopen(dir, gateway, cfg) {
            Ok(ob) => return Ok((ob, None)),
            Err(e @ (OutboxError::Locked { .. } | OutboxError::Floor(_))) => return Err(e),
            Err(OutboxError::Open { source, path }) if disk_full(&source) => {
                return Err(OutboxError::Open { path, source })
            }
            Err(e) => e.to_string(),
        };
        let name = dir
            .file_name()
            .map_or_else(|| "outbox".into(), |n| n.to_string_lossy().into_owned());
        let mut aside = dir.with_file_name(format!("{name}.corrupt-{now_s}"));
        let mut n = 1;
        while aside.exists() {
            aside = dir.with_file_name(format!("{name}.corrupt-{now_s}-{n}"));
            n += 1;
        }
        std::fs::rename(dir, &aside).map_err(|source| OutboxError::SetAside {
            path: dir.to_path_buf(),
            aside: aside.clone(),
            reason: reason.clone(),
            source,
        })?;
        let ob = Outbox::open(dir, gateway, cfg)?;
        ob.counters.set_aside.store(1, Ordering::Relaxed);
        Ok((
            ob,
            Some(SetAside {
                path: aside,
                reason,
            }),
        ))
    }

    /// Counts and flags a storage error.
    fn storage<T>(&self, r: Result<T, sled::Error>) -> Result<T, OutboxError> {
        r.map_err(|e| {
            self.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
            if matches!(e, sled::Error::Io(_)) {
                self.failed.store(true, Ordering::Relaxed);
            }
            OutboxError::Storage(e)
        })
    }

    fn with_tree<T>(
        &self,
        f: impl FnOnce(&sled::Tree) -> Result<T, sled::Error>,
    ) -> Result<T, OutboxError> {
        self.with_store(|s| f(&s.tree))
    }

    pub(super) fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, sled::Error>,
    ) -> Result<T, OutboxError> {
        let guard = self.store.read().unwrap_or_else(|e| e.into_inner());
        let Some(s) = guard.as_ref() else {
            return Err(OutboxError::Unavailable);
        };
        self.storage(f(s))
    }

    /// Stores `body`, to be published on `topic`, under the next sequence number and returns
    /// its key. Alerts are on disk when this returns. Under the byte budget, older records of
    /// a lower class are evicted first; see `limits`.
    pub fn append(&self, topic: &str, body: Body) -> Result<Key, OutboxError> {
        self.append_at(topic, body, now_ms())
    }

    /// [`Outbox::append`] at a given time (milliseconds since the epoch).
    pub fn append_at(&self, topic: &str, body: Body, now_ms: u64) -> Result<Key, OutboxError> {
        self.append_full(topic, body, now_ms, &[])
    }

    /// [`Outbox::append_at`], setting or removing `state` entries in the same transaction as
    /// the record.
    pub(super) fn append_full(
        &self,
        topic: &str,
        body: Body,
        now_ms: u64,
        state: &[(&[u8], Option<&[u8]>)],
    ) -> Result<Key, OutboxError> {
        let class = body.class();
        let key = {
            let mut next = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
            let seq = *next;
            self.reserve(seq)?;
            let env = Envelope::new(self.gateway.as_str(), seq, body);
            let key = Key { class, seq };
            let value = encode_value(topic, &env.to_json(), now_ms);
            let value_len = value.len();
            let incoming = limits::record_bytes(value_len);
            let used = self.counters.bytes.total();
            let max = self.cfg.max_bytes;
            let mut evict_error = None;
            let by_class = Class::ALL.map(|c| self.counters.bytes.get(c));
            let admitted = limits::admit(class, incoming, used, by_class, max, |victim| match self
                .remove_oldest(victim)
            {
                Ok(freed) => freed,
                Err(e) => {
                    evict_error = Some(e);
                    None
                }
            });
            for c in Class::ALL {
                self.counters
                    .evicted
                    .add(c, admitted.evicted[usize::from(c.rank())]);
            }
            if let Some(e) = evict_error {
                return Err(e);
            }
            match admitted.admission {
                Admission::Store => {}
                Admission::Overflow => {
                    self.counters.alert_overflow.fetch_add(1, Ordering::Relaxed);
                }
                Admission::Refuse => {
                    self.counters.refused.add(class, 1);
                    return Err(OutboxError::Refused {
                        class: class.as_str(),
                        bytes: incoming,
                        used: self.counters.bytes.total(),
                        max,
                    });
                }
            }
            // Counted before the record becomes visible, so that an ack racing in right
            // after the insert always finds it counted.
            self.counters.bytes.add(class, incoming);
            self.counters.depth_by_class.add(class, 1);
            self.counters.depth.fetch_add(1, Ordering::Relaxed);
            let inserted = self.with_store(|s| {
                super::state::insert_with(s, META_SEQ, seq + 1, key.to_bytes(), &value, state)
            });
            if let Err(e) = inserted {
                self.removed(class, value_len);
                return Err(e);
            }
            *next = seq + 1;
            key
        };
        self.counters.appended.fetch_add(1, Ordering::Relaxed);
        if class == Class::Alert || self.cfg.flush_every_ms == 0 {
            self.flush()?;
        }
        Ok(key)
    }

    /// Makes sure the floor file is above `seq` before `seq` is handed out (called under the
    /// `next_seq` lock); a floor that cannot be written is a counted disk error and the
    /// record is not stored.
    fn reserve(&self, seq: u64) -> Result<(), OutboxError> {
        if seq < self.reserved.load(Ordering::Relaxed) {
            return Ok(());
        }
        let floor = seq.saturating_add(floor::BLOCK);
        if let Err(e) = floor::write(&self.floor_path, floor) {
            self.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
            return Err(e.into());
        }
        self.reserved.store(floor, Ordering::Relaxed);
        Ok(())
    }

    /// Accounts for a record that left the store.
    fn removed(&self, class: Class, value_len: usize) {
        self.counters
            .bytes
            .sub(class, limits::record_bytes(value_len));
        self.counters.depth_by_class.sub(class, 1);
        let _ = self
            .counters
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    /// Removes the oldest record of `class`; returns its size in the budget, `None` if the
    /// class is empty.
    fn remove_oldest(&self, class: Class) -> Result<Option<u64>, OutboxError> {
        loop {
            let first = self.with_tree(|t| t.scan_prefix([class.rank()]).next().transpose())?;
            let Some((k, _)) = first else {
                return Ok(None);
            };
            // An ack may race us to it; then look again.
            if let Some(v) = self.with_tree(|t| t.remove(&k))? {
                self.removed(class, v.len());
                return Ok(Some(limits::record_bytes(v.len())));
            }
        }
    }

    /// Removes every record whose class's time-to-live has passed at `now_ms`; returns how
    /// many per class (by rank). Records of a class are stored in time order, so the scan of
    /// a class stops at its first live record.
    pub fn expire(&self, now_ms: u64) -> Result<[u64; 3], OutboxError> {
        let mut out = [0u64; 3];
        for class in Class::ALL {
            if self.ttl.of(class).is_none() {
                continue;
            }
            let mut dead = Vec::new();
            self.with_tree(|t| {
                for item in t.scan_prefix([class.rank()]) {
                    let (k, v) = item?;
                    let stored = Key::from_bytes(&k).and_then(|key| decode_value(key, &v, now_ms));
                    match stored {
                        Some(s) if self.ttl.expired(class, s.stored_ms, now_ms) => dead.push(k),
                        _ => break,
                    }
                }
                Ok(())
            })?;
            for k in dead {
                if let Some(v) = self.with_tree(|t| t.remove(&k))? {
                    self.removed(class, v.len());
                    self.counters.expired.add(class, 1);
                    out[usize::from(class.rank())] += 1;
                }
            }
        }
        Ok(out)
    }

    /// Makes every append so far durable.
    pub fn flush(&self) -> Result<(), OutboxError> {
        let guard = self.store.read().unwrap_or_else(|e| e.into_inner());
        let Some(s) = guard.as_ref() else {
            return Err(OutboxError::Unavailable);
        };
        self.storage(s.db.flush()).map(|_| ())
    }

    /// Marks the store failed, as a disk error would.
    #[cfg(test)]
    pub(super) fn failed_for_test(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Whether a storage error left the store needing [`Outbox::recover`].
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// After a storage error: reopens the store, carrying over every record the failed one
    /// still holds, and flushes. Returns `Ok(true)` when it reopened, `Ok(false)` when
    /// nothing had failed. On error (e.g. the disk is still full) the carried records stay in
    /// memory for the next attempt.
    pub fn recover(&self) -> Result<bool, OutboxError> {
        if !self.failed() {
            return Ok(false);
        }
        // Hold appends while the store is swapped.
        let next = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        let mut guard = self.store.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = guard.take() {
            let mut carry = self.carry.lock().unwrap_or_else(|e| e.into_inner());
            carry.extend(old.tree.iter().filter_map(Result::ok));
            let mut carry_state = self.carry_state.lock().unwrap_or_else(|e| e.into_inner());
            carry_state.extend(old.state.iter().filter_map(Result::ok));
            // Dropping the last handles releases sled's file lock.
            drop(old);
        }
        let fresh = open_sled_released(&self.dir, &self.cfg).map_err(|e| {
            self.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
            OutboxError::Storage(e)
        })?;
        let mut carry = self.carry.lock().unwrap_or_else(|e| e.into_inner());
        let mut carry_state = self.carry_state.lock().unwrap_or_else(|e| e.into_inner());
        let write = (|| {
            for (k, v) in carry.iter() {
                if k.as_ref() != META_SEQ {
                    fresh.tree.insert(k, v)?;
                }
            }
            for (k, v) in carry_state.iter() {
                fresh.state.insert(k, v)?;
            }
            fresh.tree.insert(META_SEQ, &(*next).to_be_bytes())?;
            fresh.db.flush()
        })();
        if let Err(e) = write {
            self.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
            return Err(OutboxError::Storage(e));
        }
        carry.clear();
        carry_state.clear();
        // Recount from what the new store holds.
        let found = scan(&fresh.tree)?;
        for class in Class::ALL {
            let r = usize::from(class.rank());
            self.counters.depth_by_class.set(class, found.depth[r]);
            self.counters.bytes.set(class, found.bytes[r]);
        }
        self.counters
            .depth
            .store(found.depth.iter().sum(), Ordering::Relaxed);
        *guard = Some(fresh);
        self.failed.store(false, Ordering::Relaxed);
        self.counters.reopened.fetch_add(1, Ordering::Relaxed);
        drop(next);
        Ok(true)
    }

    /// Removes an acknowledged record. Acking a missing key is harmless (a duplicate PUBACK,
    /// or a record evicted while in flight).
    pub fn ack(&self, key: Key) -> Result<(), OutboxError> {
        if let Some(v) = self.with_tree(|t| t.remove(key.to_bytes()))? {
            self.counters.acked.fetch_add(1, Ordering::Relaxed);
            self.removed(key.class, v.len());
        }
        Ok(())
    }

    /// Up to `limit` records of `class` with a sequence number above `after`, in order.
    pub fn pending_after(
        &self,
        class: Class,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, OutboxError> {
        let start = Key {
            class,
            seq: after.saturating_add(1),
        };
        let end = [class.rank() + 1];
        let mut out = Vec::new();
        let mut bad = None;
        self.with_tree(|t| {
            for item in t.range(start.to_bytes().to_vec()..end.to_vec()) {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item?;
                match Key::from_bytes(&k).and_then(|key| decode_value(key, &v, 0)) {
                    Some(s) => out.push(s),
                    None => {
                        bad = Some(k.to_vec());
                        break;
                    }
                }
            }
            Ok(())
        })?;
        match bad {
            Some(k) => Err(OutboxError::Corrupt(k)),
            None => Ok(out),
        }
    }

    /// Every stored record, highest class first, each class in sequence order.
    pub fn all(&self) -> Result<Vec<Stored>, OutboxError> {
        let mut out = Vec::new();
        for class in Class::ALL {
            out.extend(self.pending_after(class, 0, usize::MAX)?);
        }
        Ok(out)
    }

    /// Records waiting for a PUBACK.
    pub fn len(&self) -> usize {
        self.counters.depth.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        *self.next_seq.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The byte budget (0: none).
    pub fn max_bytes(&self) -> u64 {
        self.cfg.max_bytes
    }

    /// Records a second the uplink may publish when draining (0: no limit).
    pub fn drain_per_s(&self) -> u32 {
        self.cfg.drain_per_s
    }

    /// The outbox part of the status.
    pub fn status(&self) -> OutboxStatus {
        self.counters.status(self.cfg.max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citygate_protocols::{Event, Summary};

    fn summary(n: u64) -> Body {
        Body::Summary(Summary {
            sensor: format!("s{n}"),
            quantity: "q".into(),
            unit: None,
            start: 0.0,
            end: 1.0,
            count: n,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            last: 0.0,
        })
    }

    fn event(n: u64) -> Body {
        Body::Event(Event {
            kind: "k".into(),
            source: "s".into(),
            message: format!("e{n}"),
            time: 0.0,
        })
    }

    #[test]
    fn appends_replay_in_priority_then_sequence_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = OutboxConfig::default();
        {
            let ob = Outbox::reopen(dir.path(), "gw", &cfg).unwrap();
            assert_eq!(ob.append("t/s", summary(1)).unwrap().seq, 1);
            assert_eq!(ob.append("t/e", event(2)).unwrap().seq, 2);
            assert_eq!(ob.append("t/s", summary(3)).unwrap().seq, 3);
            ob.flush().unwrap();
        }
        let ob = Outbox::reopen(dir.path(), "gw", &cfg).unwrap();
        let all: Vec<_> = ob.all().unwrap().iter().map(|s| s.key.seq).collect();
        assert_eq!(all, vec![2, 1, 3]);
        let env = Envelope::from_json(&ob.all().unwrap()[1].payload).unwrap();
        assert_eq!((env.gateway.as_str(), env.seq), ("gw", 1));
        assert_eq!(ob.all().unwrap()[1].topic, "t/s");
        assert_eq!(ob.len(), 3);
        assert_eq!(ob.next_seq(), 4);
    }

    #[test]
    fn only_ack_removes_and_sequence_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = OutboxConfig::default();
        {
            let ob = Outbox::reopen(dir.path(), "gw", &cfg).unwrap();
            let a = ob.append("t/s", summary(1)).unwrap();
            let b = ob.append("t/s", summary(2)).unwrap();
            ob.ack(a).unwrap();
            ob.ack(b).unwrap();
            ob.ack(b).unwrap();
            assert!(ob.is_empty());
            assert_eq!(ob.counters.acked.load(Ordering::Relaxed), 2);
            ob.flush().unwrap();
        }
        let ob = Outbox::reopen(dir.path(), "gw", &cfg).unwrap();
        assert_eq!(ob.append("t/s", summary(3)).unwrap().seq, 3);
    }

    #[test]
    fn pending_after_pages_through_a_class() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::reopen(dir.path(), "gw", &OutboxConfig::default()).unwrap();
        for n in 0..10 {
            ob.append("t/s", summary(n)).unwrap();
        }
        let page: Vec<_> = ob
            .pending_after(Class::Summary, 4, 3)
            .unwrap()
            .iter()
            .map(|s| s.key.seq)
            .collect();
        assert_eq!(page, vec![5, 6, 7]);
        assert!(ob.pending_after(Class::Alert, 0, 10).unwrap().is_empty());
    }

    fn alert(n: u64) -> Body {
        Body::Alert {
            cap: format!("<alert>{n}</alert>"),
            json: serde_json::json!({"n": n}),
        }
    }

    fn cfg(max_bytes: u64) -> OutboxConfig {
        OutboxConfig {
            max_bytes,
            ..OutboxConfig::default()
        }
    }

    fn seqs(ob: &Outbox, class: Class) -> Vec<u64> {
        ob.pending_after(class, 0, usize::MAX)
            .unwrap()
            .iter()
            .map(|s| s.key.seq)
            .collect()
    }

    /// Whether `got` is the last `got.len()` elements of `of` (the oldest went first).
    fn is_suffix(got: &[u64], of: &[u64]) -> bool {
        of.ends_with(got)
    }

    #[test]
    fn the_byte_budget_evicts_oldest_summaries_then_events_and_never_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::reopen(&dir.path().join("o"), "gw", &cfg(0)).unwrap();
        for n in 1..=6 {
            ob.append_at("t/s", summary(n), 0).unwrap();
        }
        for n in 7..=10 {
            ob.append_at("t/e", event(n), 0).unwrap();
        }
        let ten = ob.counters.bytes.total();
        drop(ob);
        // The same records under a budget with a little room to spare.
        let dir = tempfile::tempdir().unwrap();
        let max = ten + 16;
        let ob = Outbox::reopen(dir.path(), "gw", &cfg(max)).unwrap();
        for n in 1..=6 {
            ob.append_at("t/s", summary(n), 0).unwrap();
        }
        for n in 7..=10 {
            ob.append_at("t/e", event(n), 0).unwrap();
        }
        assert_eq!(ob.counters.evicted.total(), 0);
        // Alerts push out the oldest summaries only.
        for n in 11..=13 {
            ob.append_at("t/a", alert(n), 0).unwrap();
        }
        let s = seqs(&ob, Class::Summary);
        assert!(s.len() < 6 && is_suffix(&s, &[1, 2, 3, 4, 5, 6]), "{s:?}");
        assert_eq!(seqs(&ob, Class::Event), vec![7, 8, 9, 10]);
        assert_eq!(ob.counters.evicted.get(Class::Summary), 6 - s.len() as u64);
        assert!(ob.counters.bytes.total() <= max);
        // A summary displaces only older summaries.
        ob.append_at("t/s", summary(14), 0).unwrap();
        let s2 = seqs(&ob, Class::Summary);
        assert_eq!(s2.last(), Some(&14));
        assert_eq!(seqs(&ob, Class::Event), vec![7, 8, 9, 10]);
        // Events displace the remaining summaries, then the oldest events.
        for n in 15..=30 {
            ob.append_at("t/e", event(n), 0).unwrap();
            assert!(ob.counters.bytes.total() <= max);
        }
        assert!(seqs(&ob, Class::Summary).is_empty());
        let e = seqs(&ob, Class::Event);
        assert!(is_suffix(&e, &(7..=30).collect::<Vec<_>>()), "{e:?}");
        assert!(ob.counters.evicted.get(Class::Event) > 0);
        // Now a summary finds nothing it may displace: refused and counted.
        let err = ob.append_at("t/s", summary(31), 0).unwrap_err();
        assert!(
            matches!(
                err,
                OutboxError::Refused {
                    class: "summary",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(ob.counters.refused.get(Class::Summary), 1);
        // Alerts take the rest, and beyond the budget they are still stored.
        for n in 32..=60 {
            ob.append_at("t/a", alert(n), 0).unwrap();
        }
        assert_eq!(
            seqs(&ob, Class::Alert).len(),
            3 + 29,
            "no alert is ever evicted"
        );
        assert!(seqs(&ob, Class::Event).is_empty());
        assert!(ob.counters.alert_overflow.load(Ordering::Relaxed) > 0);
        assert_eq!(ob.counters.evicted.get(Class::Alert), 0);
        let st = ob.status();
        assert_eq!(st.depth.alerts, 32);
        assert_eq!((st.depth.events, st.depth.summaries), (0, 0));
        assert_eq!(st.evicted.events, 20);
        assert_eq!(
            st.evicted.summaries + st.refused.summaries,
            7 + 1,
            "every summary is accounted for"
        );
        // The running accounting matches what a fresh open counts.
        ob.flush().unwrap();
        drop(ob);
        let again = Outbox::reopen(dir.path(), "gw", &cfg(0)).unwrap();
        assert_eq!(again.counters.bytes.total(), st.bytes);
        assert_eq!(again.len(), 32);
    }

    #[test]
    fn records_past_their_class_ttl_are_removed_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(0);
        c.ttl_s.summaries = Some(10);
        c.ttl_s.events = Some(100);
        let ob = Outbox::reopen(dir.path(), "gw", &c).unwrap();
        ob.append_at("t/s", summary(1), 1_000).unwrap();
        ob.append_at("t/e", event(2), 1_000).unwrap();
        ob.append_at("t/a", alert(3), 1_000).unwrap();
        ob.append_at("t/s", summary(4), 5_000).unwrap();
        assert_eq!(ob.expire(10_999).unwrap(), [0, 0, 0]);
        assert_eq!(ob.expire(11_000).unwrap(), [0, 0, 1]);
        assert_eq!(seqs(&ob, Class::Summary), vec![4]);
        assert_eq!(ob.expire(1_000_000).unwrap(), [0, 1, 1]);
        assert_eq!(
            seqs(&ob, Class::Alert),
            vec![3],
            "alerts have no ttl by default"
        );
        assert_eq!(ob.status().expired.summaries, 2);
        assert_eq!(ob.status().expired.events, 1);
        assert_eq!(ob.len(), 1);
        assert_eq!(
            ob.counters.bytes.total(),
            ob.counters.bytes.get(Class::Alert)
        );
    }

    #[test]
    fn a_format_one_record_is_still_read() {
        let v1 = {
            let mut v = vec![0u8, 3];
            v.extend_from_slice(b"t/s{}");
            v
        };
        let key = Key {
            class: Class::Summary,
            seq: 7,
        };
        let s = decode_value(key, &v1, 42).unwrap();
        assert_eq!(
            (s.topic.as_str(), s.payload.as_slice(), s.stored_ms),
            ("t/s", &b"{}"[..], 42)
        );
        let v2 = encode_value("t/s", b"{}", 9);
        let s = decode_value(key, &v2, 42).unwrap();
        assert_eq!(
            (s.topic.as_str(), s.payload.as_slice(), s.stored_ms),
            ("t/s", &b"{}"[..], 9)
        );
    }

    /// Overwrites every file of a sled store with garbage of the same length.
    fn scribble(dir: &Path) {
        for entry in walk(dir) {
            let len = std::fs::metadata(&entry).unwrap().len() as usize;
            let junk: Vec<u8> = (0..len.max(64)).map(|i| (i * 131 % 251) as u8).collect();
            std::fs::write(&entry, junk).unwrap();
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn a_garbled_store_is_set_aside_whole_and_a_fresh_one_opened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("outbox");
        {
            let ob = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap();
            for n in 0..50 {
                ob.append("t/s", summary(n)).unwrap();
            }
            ob.flush().unwrap();
        }
        scribble(&dir);
        let before: Vec<Vec<u8>> = walk(&dir)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let strict = Outbox::reopen(&dir, "gw", &cfg(0));
        assert!(strict.is_err(), "a garbled store must not open silently");
        let (ob, aside) = Outbox::open_or_set_aside(&dir, "gw", &cfg(0), 1_700_000_000).unwrap();
        let aside = aside.expect("the damage is reported");
        assert_eq!(aside.path, root.path().join("outbox.corrupt-1700000000"));
        assert!(!aside.reason.is_empty());
        // Kept byte for byte.
        let kept: Vec<Vec<u8>> = walk(&aside.path)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert_eq!(kept.len(), before.len());
        assert!(ob.is_empty());
        assert_eq!(ob.status().set_aside, 1);
        // Numbering goes on above every number the damaged store handed out.
        assert!(ob.append("t/s", summary(1)).unwrap().seq > 50);
    }

    #[test]
    fn numbering_never_goes_back_when_the_store_is_lost_or_its_floor_garbled() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("outbox");
        let n = floor::BLOCK + 500;
        {
            let ob = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap();
            for i in 0..n {
                ob.append("t/s", summary(i)).unwrap();
            }
            assert_eq!(ob.next_seq(), n + 1);
            ob.flush().unwrap();
        }
        // A clean reopen continues without a gap.
        assert_eq!(
            Outbox::reopen(&dir, "gw", &cfg(0)).unwrap().next_seq(),
            n + 1
        );
        // The store removed (or lost to a disk error) but its floor kept: above every number.
        std::fs::remove_dir_all(&dir).unwrap();
        let ob = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap();
        let next = ob.next_seq();
        assert!(next > n && next <= n + 1 + floor::BLOCK, "{next}");
        drop(ob);
        // A garbled floor is an error naming the file, and the store is not set aside for it.
        let path = floor::path_for(&dir);
        std::fs::write(&path, "junk").unwrap();
        let e = Outbox::open_or_set_aside(&dir, "gw", &cfg(0), 9).unwrap_err();
        assert!(matches!(e, OutboxError::Floor(_)), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(!root.path().join("outbox.corrupt-9").exists());
    }

    #[test]
    fn an_unreadable_outbox_path_is_set_aside_not_deleted() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("outbox");
        // Something that is not a sled store at all where the outbox should be.
        std::fs::write(&dir, b"not a directory").unwrap();
        let e = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap_err();
        assert!(e.to_string().contains("outbox"), "{e}");
        let (ob, aside) = Outbox::open_or_set_aside(&dir, "gw", &cfg(0), 7).unwrap();
        let aside = aside.unwrap();
        assert_eq!(std::fs::read(&aside.path).unwrap(), b"not a directory");
        assert!(dir.is_dir());
        assert!(ob.is_empty());
    }

    #[test]
    fn a_record_that_does_not_decode_is_damage_not_a_wipe() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("outbox");
        {
            let ob = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap();
            ob.append("t/s", summary(1)).unwrap();
            let guard = ob.store.read().unwrap();
            let t = &guard.as_ref().unwrap().tree;
            t.insert([9u8, 1, 2], &b"junk"[..]).unwrap();
            drop(guard);
            ob.flush().unwrap();
        }
        let e = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap_err();
        assert!(matches!(e, OutboxError::Damaged { .. }), "{e}");
        let (_ob, aside) = Outbox::open_or_set_aside(&dir, "gw", &cfg(0), 5).unwrap();
        let aside = aside.unwrap();
        assert!(aside.reason.contains("unreadable"), "{}", aside.reason);
        // The damaged store still holds the good record for an operator to salvage.
        assert!(aside.path.join("db").exists());
    }

    #[test]
    fn a_store_in_use_by_another_process_is_an_error_not_damage() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("outbox");
        let _first = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap();
        let e = Outbox::open_or_set_aside(&dir, "gw", &cfg(0), 5).unwrap_err();
        assert!(matches!(e, OutboxError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("another gateway"), "{e}");
        assert!(
            !root.path().join("outbox.corrupt-5").exists(),
            "a live store is never set aside"
        );
        assert!(disk_full(&sled::Error::Io(
            std::io::Error::from_raw_os_error(28)
        )));
    }

    #[test]
    fn recover_reopens_and_keeps_every_record() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("outbox");
        let ob = Outbox::reopen(&dir, "gw", &cfg(0)).unwrap();
        for n in 1..=5 {
            ob.append("t/s", summary(n)).unwrap();
        }
        ob.append("t/a", alert(6)).unwrap();
        assert!(!ob.recover().unwrap(), "nothing failed");
        ob.failed.store(true, Ordering::Relaxed);
        assert!(ob.recover().unwrap());
        assert_eq!(seqs(&ob, Class::Summary), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(&ob, Class::Alert), vec![6]);
        assert_eq!(ob.append("t/s", summary(7)).unwrap().seq, 7);
        assert_eq!(ob.status().reopened, 1);
        assert_eq!(ob.len(), 7);
    }
}
