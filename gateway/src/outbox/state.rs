//! State other stages keep durably beside the records, in a second sled tree of the outbox's
//! database (`state`): the hazard engine's open incidents (stored in the same transaction as
//! the alert that changed them, so after a crash both or neither are there), the downlink's
//! replay cache and the signal plan overrides. Keys are UTF-8 text, `<owner>/<id>`; values
//! are the owner's bytes. Every write is flushed before it returns. The tree goes wherever the
//! records go: carried over by `recover`, set aside with a damaged store.

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use citygate_protocols::Body;

use super::store::{Key, Outbox, OutboxError, Store};

/// Name of the state tree in the outbox's sled database.
pub(super) const TREE: &str = "state";

/// Writes the next-sequence counter, a record and `state` pairs atomically (one transaction
/// over both trees when there is state, plain inserts otherwise).
pub(super) fn insert_with(
    s: &Store,
    meta_seq: &[u8],
    next: u64,
    key: [u8; 9],
    value: &[u8],
    state: &[(&[u8], Option<&[u8]>)],
) -> Result<(), sled::Error> {
    if state.is_empty() {
        s.tree.insert(meta_seq, &next.to_be_bytes())?;
        s.tree.insert(key, value)?;
        return Ok(());
    }
    (&s.tree, &s.state)
        .transaction(|(t, st)| {
            t.insert(meta_seq, &next.to_be_bytes())?;
            t.insert(&key, value)?;
            for (k, v) in state {
                match v {
                    Some(v) => st.insert(*k, *v)?,
                    None => st.remove(*k)?,
                };
            }
            Ok::<_, ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            TransactionError::Storage(e) => e,
            TransactionError::Abort(()) => {
                sled::Error::ReportableBug("outbox state transaction aborted".into())
            }
        })
}

impl Outbox {
    /// [`Outbox::append`] that also sets (`Some`) or removes (`None`) `state` entries in the
    /// same transaction: after a crash the record and the state changes are both stored or
    /// neither. Flushed to disk before it returns, whatever the class.
    pub fn append_with_state(
        &self,
        topic: &str,
        body: Body,
        state: &[(&str, Option<&[u8]>)],
    ) -> Result<Key, OutboxError> {
        let pairs: Vec<(&[u8], Option<&[u8]>)> =
            state.iter().map(|(k, v)| (k.as_bytes(), *v)).collect();
        let key = self.append_full(topic, body, super::now_ms(), &pairs)?;
        self.flush()?;
        Ok(key)
    }

    /// Every state entry whose key starts with `prefix`, in key order. A key that is not
    /// UTF-8 is returned with its bytes replaced, so its owner can name it in a warning.
    pub fn state_entries(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, OutboxError> {
        self.with_store(|s| {
            s.state
                .scan_prefix(prefix.as_bytes())
                .map(|item| {
                    item.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
                })
                .collect()
        })
    }

    /// One state entry, if set.
    pub fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        self.with_store(|s| s.state.get(key.as_bytes()).map(|v| v.map(|v| v.to_vec())))
    }

    /// Sets one state entry and flushes it to disk.
    pub fn put_state(&self, key: &str, value: &[u8]) -> Result<(), OutboxError> {
        self.with_store(|s| s.state.insert(key.as_bytes(), value).map(|_| ()))?;
        self.flush()
    }

    /// Removes one state entry (absent is fine) and flushes.
    pub fn remove_state(&self, key: &str) -> Result<(), OutboxError> {
        self.with_store(|s| s.state.remove(key.as_bytes()).map(|_| ()))?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutboxConfig;
    use citygate_protocols::Class;

    fn alert(n: u64) -> Body {
        Body::Alert {
            cap: format!("<alert>{n}</alert>"),
            json: serde_json::json!({ "n": n }),
        }
    }

    #[test]
    fn state_is_written_with_the_record_and_survives_reopen_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = OutboxConfig::default();
        {
            let ob = Outbox::reopen(dir.path(), "gw", &cfg).unwrap();
            ob.put_state("hazard/g2", b"two").unwrap();
            ob.append_with_state(
                "t/a",
                alert(1),
                &[("hazard/g1", Some(b"one")), ("hazard/g2", None)],
            )
            .unwrap();
            ob.put_state("nonce/abc", b"9").unwrap();
            ob.put_state("nonce/abd", b"10").unwrap();
            ob.remove_state("nonce/abd").unwrap();
        }
        let ob = Outbox::reopen(dir.path(), "gw", &cfg).unwrap();
        assert_eq!(
            ob.state_entries("hazard/").unwrap(),
            vec![("hazard/g1".to_string(), b"one".to_vec())]
        );
        assert_eq!(
            ob.state_entries("nonce/").unwrap(),
            vec![("nonce/abc".to_string(), b"9".to_vec())]
        );
        assert_eq!(ob.pending_after(Class::Alert, 0, 10).unwrap().len(), 1);
        // A reopen after a disk error carries the state over.
        ob.failed_for_test();
        assert!(ob.recover().unwrap());
        assert_eq!(ob.state_entries("").unwrap().len(), 2);
    }
}
