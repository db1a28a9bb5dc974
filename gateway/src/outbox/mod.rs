//! The durable store-and-forward outbox on sled.
//!
//! Design note. One sled tree holds every record under the key `[class rank][seq, big endian]`,
//! so a prefix scan yields one class in sequence order and classes sort by priority
//! (alerts < events < summaries by rank). The next sequence number lives in the same tree under
//! `[0xFF]`, written before the record it numbers; sled recovers a prefix of its operations, so
//! after a crash the stored counter is always past every stored record and a sequence number is
//! never reused. A record leaves only through [`Outbox::ack`], which the uplink calls on the
//! broker's PUBACK. Alerts are flushed to disk before `append` returns; other classes are made
//! durable by sled's periodic flush or by [`Outbox::flush`], which the uplink calls before it
//! publishes a batch, so nothing is published that a crash could take back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use citygate_protocols::{Body, Class, Envelope};

use crate::config::OutboxConfig;

const META_SEQ: &[u8] = &[0xFF, b's', b'e', b'q'];

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
}

/// Stored value: topic length (u16, big endian), topic, envelope JSON.
fn encode_value(topic: &str, payload: &[u8]) -> Vec<u8> {
    let t = topic.as_bytes();
    let len = u16::try_from(t.len()).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(2 + t.len() + payload.len());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&t[..usize::from(len)]);
    v.extend_from_slice(payload);
    v
}

fn decode_value(key: Key, v: &[u8]) -> Option<Stored> {
    let len = usize::from(u16::from_be_bytes(v.get(..2)?.try_into().ok()?));
    let topic = std::str::from_utf8(v.get(2..2 + len)?).ok()?.to_string();
    Some(Stored {
        key,
        topic,
        payload: v.get(2 + len..)?.to_vec(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: cannot open: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("outbox: storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("outbox: record {0:?} is unreadable")]
    Corrupt(Vec<u8>),
}

/// Counters of what went through the outbox since start.
#[derive(Debug, Default)]
pub struct OutboxCounters {
    pub appended: AtomicU64,
    pub acked: AtomicU64,
    /// Records stored now.
    pub depth: AtomicU64,
}

/// The outbox. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Outbox {
    db: sled::Db,
    tree: sled::Tree,
    gateway: String,
    /// Next sequence number; the mutex also orders appends.
    next_seq: Mutex<u64>,
    pub counters: OutboxCounters,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("gateway", &self.gateway)
            .finish()
    }
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` for `gateway`.
    pub fn open(dir: &Path, gateway: &str, cfg: &OutboxConfig) -> Result<Outbox, OutboxError> {
        let flush = (cfg.flush_every_ms > 0).then_some(cfg.flush_every_ms);
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cfg.cache_capacity_bytes)
            .flush_every_ms(flush)
            .open()
            .map_err(|source| OutboxError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        let tree = db.open_tree("records")?;
        let stored_next = match tree.get(META_SEQ)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| OutboxError::Corrupt(META_SEQ.to_vec()))?,
            ),
            None => 1,
        };
        // Belt and braces: never below the largest stored sequence number.
        let mut next = stored_next;
        for class in Class::ALL {
            if let Some((k, _)) = tree.scan_prefix([class.rank()]).next_back().transpose()? {
                let key = Key::from_bytes(&k).ok_or_else(|| OutboxError::Corrupt(k.to_vec()))?;
                next = next.max(key.seq + 1);
            }
        }
        let counters = OutboxCounters::default();
        counters
            .depth
            .store(tree.len().saturating_sub(1) as u64, Ordering::Relaxed);
        Ok(Outbox {
            db,
            tree,
            gateway: gateway.to_string(),
            next_seq: Mutex::new(next),
            counters,
        })
    }

    /// Stores `body`, to be published on `topic`, under the next sequence number and returns
    /// its key. Alerts are on disk when this returns.
    pub fn append(&self, topic: &str, body: Body) -> Result<Key, OutboxError> {
        let class = body.class();
        let key = {
            let mut next = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
            let seq = *next;
            let env = Envelope::new(self.gateway.as_str(), seq, body);
            let key = Key { class, seq };
            self.tree.insert(META_SEQ, &(seq + 1).to_be_bytes())?;
            self.tree
                .insert(key.to_bytes(), encode_value(topic, &env.to_json()))?;
            *next = seq + 1;
            key
        };
        self.counters.appended.fetch_add(1, Ordering::Relaxed);
        self.counters.depth.fetch_add(1, Ordering::Relaxed);
        if class == Class::Alert {
            self.flush()?;
        }
        Ok(key)
    }

    /// Makes every append so far durable.
    pub fn flush(&self) -> Result<(), OutboxError> {
        self.db.flush()?;
        Ok(())
    }

    /// Removes an acknowledged record. Acking a missing key is harmless (a duplicate PUBACK).
    pub fn ack(&self, key: Key) -> Result<(), OutboxError> {
        if self.tree.remove(key.to_bytes())?.is_some() {
            self.counters.acked.fetch_add(1, Ordering::Relaxed);
            self.counters.depth.fetch_sub(1, Ordering::Relaxed);
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
        for item in self.tree.range(start.to_bytes().to_vec()..end.to_vec()) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let key = Key::from_bytes(&k).ok_or_else(|| OutboxError::Corrupt(k.to_vec()))?;
            out.push(decode_value(key, &v).ok_or_else(|| OutboxError::Corrupt(k.to_vec()))?);
        }
        Ok(out)
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
            let ob = Outbox::open(dir.path(), "gw", &cfg).unwrap();
            assert_eq!(ob.append("t/s", summary(1)).unwrap().seq, 1);
            assert_eq!(ob.append("t/e", event(2)).unwrap().seq, 2);
            assert_eq!(ob.append("t/s", summary(3)).unwrap().seq, 3);
            ob.flush().unwrap();
        }
        let ob = Outbox::open(dir.path(), "gw", &cfg).unwrap();
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
            let ob = Outbox::open(dir.path(), "gw", &cfg).unwrap();
            let a = ob.append("t/s", summary(1)).unwrap();
            let b = ob.append("t/s", summary(2)).unwrap();
            ob.ack(a).unwrap();
            ob.ack(b).unwrap();
            ob.ack(b).unwrap();
            assert!(ob.is_empty());
            assert_eq!(ob.counters.acked.load(Ordering::Relaxed), 2);
            ob.flush().unwrap();
        }
        let ob = Outbox::open(dir.path(), "gw", &cfg).unwrap();
        assert_eq!(ob.append("t/s", summary(3)).unwrap().seq, 3);
    }

    #[test]
    fn pending_after_pages_through_a_class() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path(), "gw", &OutboxConfig::default()).unwrap();
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
}
