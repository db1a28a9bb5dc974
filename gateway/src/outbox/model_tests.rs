//! Model-based property test of the outbox: random sequences of append (per class), ack,
//! flush, crash (the files copied as they are on disk, without a flush, and opened again),
//! clean reopen and clock ticks (time-to-live expiry), under a small byte budget that forces
//! evictions, checked against a simple in-memory model.
//!
//! Within one process lifetime the store must equal the model exactly. A crash may keep or
//! lose what changed since the last flush, nothing else: every record that was on disk at the
//! last flush and not removed since is still there; nothing acknowledged (or evicted) before
//! the last flush comes back; nothing that was never appended appears; a sequence number that
//! was ever on disk is never handed out again. Losses are only counted evictions and expiries
//! of summaries and events. A refused summary or event evicts nothing: the store is unchanged
//! and no eviction is counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use citygate_protocols::{Body, Class, Envelope, Event, Summary};
use proptest::prelude::*;

use super::limits;
use super::store::encode_value;
use super::Outbox;
use crate::config::OutboxConfig;

const BUDGET: u64 = 4000;
const TTL_SUMMARIES_S: u64 = 6;
const TTL_EVENTS_S: u64 = 15;
const T: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Append(Class, u8),
    Ack(usize),
    Flush,
    Crash,
    Reopen,
    /// The clock moves on by this many seconds and expired records are removed.
    Tick(u8),
}

/// Operations with class weights drawn per run, so that some runs fill the budget with
/// events or alerts and others with summaries.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (1u32..6, 1u32..6, 1u32..4, 1u32..5).prop_flat_map(|(s, e, a, ack)| {
        let op = prop_oneof![
            s => (0u8..20).prop_map(|n| Op::Append(Class::Summary, n)),
            e => (0u8..20).prop_map(|n| Op::Append(Class::Event, n)),
            a => (0u8..20).prop_map(|n| Op::Append(Class::Alert, n)),
            ack => any::<usize>().prop_map(Op::Ack),
            1 => Just(Op::Flush),
            1 => Just(Op::Crash),
            1 => Just(Op::Reopen),
            1 => (0u8..8).prop_map(Op::Tick),
        ];
        proptest::collection::vec(op, 1..120)
    })
}

fn body(class: Class, n: u8) -> Body {
    let pad = "x".repeat(usize::from(n) * 7);
    match class {
        Class::Summary => Body::Summary(Summary {
            sensor: format!("s{pad}"),
            quantity: "level".into(),
            unit: None,
            start: 0.0,
            end: 1.0,
            count: u64::from(n),
            min: 0.0,
            max: 1.0,
            mean: 0.5,
            last: 1.0,
        }),
        Class::Event => Body::Event(Event {
            kind: "k".into(),
            source: "d".into(),
            message: format!("e{pad}"),
            time: 0.0,
        }),
        Class::Alert => Body::Alert {
            cap: format!("<alert>{pad}</alert>"),
            json: serde_json::json!({ "n": n }),
        },
    }
}

fn cfg() -> OutboxConfig {
    OutboxConfig {
        max_bytes: BUDGET,
        // No background flush in practice: the test decides what is durable.
        flush_every_ms: 60_000,
        ttl_s: crate::config::TtlConfig {
            alerts: None,
            events: Some(TTL_EVENTS_S),
            summaries: Some(TTL_SUMMARIES_S),
        },
        ..OutboxConfig::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A record as the model knows it.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    class: Class,
    bytes: u64,
    payload: Vec<u8>,
    stored_ms: u64,
}

#[derive(Debug, Default)]
struct Model {
    /// What the store holds now, by sequence number.
    live: BTreeMap<u64, Rec>,
    /// What was on disk at the last flush.
    durable: BTreeMap<u64, Rec>,
    /// Appended since the last flush (they may or may not survive a crash).
    since_flush: BTreeMap<u64, Rec>,
    /// Every sequence number that was on disk at some flush.
    ever_durable: BTreeSet<u64>,
    /// Evictions counted by the store (all lifetimes), by class rank.
    evicted: [u64; 3],
    /// Evictions the model expects (this lifetime), by class rank.
    expect_evicted: [u64; 3],
    /// Expiries the model expects (this lifetime), by class rank.
    expect_expired: [u64; 3],
}

impl Model {
    fn used(&self) -> u64 {
        self.live.values().map(|r| r.bytes).sum()
    }

    /// The simple eviction rule, written out independently of `limits`: lowest class first,
    /// oldest first, a record displaces only its own class or lower, alerts never go, and a
    /// summary or event that cannot be made to fit displaces nothing.
    fn make_room(&mut self, class: Class, bytes: u64) -> bool {
        let order: &[Class] = match class {
            Class::Summary => &[Class::Summary],
            _ => &[Class::Summary, Class::Event],
        };
        if class != Class::Alert && bytes > BUDGET {
            return false;
        }
        let displaceable: u64 = self
            .live
            .values()
            .filter(|r| order.contains(&r.class))
            .map(|r| r.bytes)
            .sum();
        if class != Class::Alert && self.used() - displaceable + bytes > BUDGET {
            return false;
        }
        for victim in order {
            while self.used() + bytes > BUDGET {
                let oldest = self
                    .live
                    .iter()
                    .find(|(_, r)| r.class == *victim)
                    .map(|(s, _)| *s);
                match oldest {
                    Some(s) => {
                        self.live.remove(&s);
                        self.expect_evicted[usize::from(victim.rank())] += 1;
                    }
                    None => break,
                }
            }
        }
        class == Class::Alert || self.used() + bytes <= BUDGET
    }

    /// Removes what outlived its class's time-to-live at `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        let ttl = |c: Class| match c {
            Class::Alert => None,
            Class::Event => Some(TTL_EVENTS_S * 1000),
            Class::Summary => Some(TTL_SUMMARIES_S * 1000),
        };
        let dead: Vec<(u64, Class)> = self
            .live
            .iter()
            .filter(|(_, r)| ttl(r.class).is_some_and(|t| now_ms - r.stored_ms >= t))
            .map(|(s, r)| (*s, r.class))
            .collect();
        for (s, c) in dead {
            self.live.remove(&s);
            self.expect_expired[usize::from(c.rank())] += 1;
        }
    }

    fn flushed(&mut self) {
        self.durable = self.live.clone();
        self.ever_durable.extend(self.live.keys());
        self.since_flush.clear();
    }
}

/// Reads the whole store: every class in sequence order (checked), by sequence number.
fn contents(ob: &Outbox) -> BTreeMap<u64, (Class, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for class in Class::ALL {
        let recs = ob.pending_after(class, 0, usize::MAX).unwrap();
        assert!(
            recs.windows(2).all(|w| w[0].key.seq < w[1].key.seq),
            "{class:?} out of order"
        );
        for r in recs {
            assert_eq!(r.key.class, class);
            out.insert(r.key.seq, (class, r.payload));
        }
    }
    out
}

fn check_exact(ob: &Outbox, m: &Model) {
    let got = contents(ob);
    let want: BTreeMap<u64, (Class, Vec<u8>)> = m
        .live
        .iter()
        .map(|(s, r)| (*s, (r.class, r.payload.clone())))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert_eq!(got, want);
    assert_eq!(ob.len(), m.live.len());
    assert_eq!(ob.counters.bytes.total(), m.used(), "byte accounting");
    for class in Class::ALL {
        let r = usize::from(class.rank());
        assert_eq!(
            ob.counters.evicted.get(class),
            m.expect_evicted[r],
            "{class:?} evictions counted"
        );
        assert_eq!(
            ob.counters.expired.get(class),
            m.expect_expired[r],
            "{class:?} expiries counted"
        );
    }
    assert_eq!(ob.counters.evicted.get(Class::Alert), 0);
}

/// After a crash: the recovered store lies between what was durable and what was live.
fn check_after_crash(ob: &Outbox, m: &Model) {
    let got = contents(ob);
    for (seq, r) in &m.durable {
        if m.live.contains_key(seq) {
            assert!(
                got.contains_key(seq),
                "record {seq} ({:?}) was on disk and not removed, and is gone",
                r.class
            );
        }
    }
    for (seq, (class, payload)) in &got {
        let known = m.durable.get(seq).or_else(|| m.since_flush.get(seq));
        let Some(rec) = known else {
            panic!("record {seq} came back although it was removed before the last flush, or never stored");
        };
        assert_eq!(rec.class, *class);
        assert_eq!(&rec.payload, payload, "record {seq} changed");
    }
    let max_durable = m.ever_durable.iter().next_back().copied().unwrap_or(0);
    assert!(
        ob.next_seq() > max_durable,
        "next sequence {} would reuse {max_durable}",
        ob.next_seq()
    );
}

fn run(ops: Vec<Op>) {
    let root = tempfile::tempdir().unwrap();
    let mut generation = 0;
    let mut dir: PathBuf = root.path().join("g0");
    let mut ob = Outbox::open(&dir, "gw", &cfg()).unwrap();
    let mut m = Model::default();
    let mut now = T;
    for op in ops {
        match op {
            Op::Append(class, n) => {
                let b = body(class, n);
                let seq = ob.next_seq();
                assert!(!m.ever_durable.contains(&seq), "sequence {seq} reused");
                let payload = Envelope::new("gw", seq, b.clone()).to_json();
                let bytes = limits::record_bytes(encode_value("t", &payload, now).len());
                let evicted_before = Class::ALL.map(|c| ob.counters.evicted.get(c));
                let live_before = m.live.len();
                let fits = m.make_room(class, bytes);
                match ob.append_at("t", b, now) {
                    Ok(key) => {
                        assert!(fits, "stored a {class:?} the model refuses");
                        assert_eq!(key.seq, seq);
                        let rec = Rec {
                            class,
                            bytes,
                            payload,
                            stored_ms: now,
                        };
                        m.live.insert(seq, rec.clone());
                        m.since_flush.insert(seq, rec);
                        if class == Class::Alert {
                            m.flushed();
                        }
                    }
                    Err(e) => {
                        assert!(!fits, "refused a {class:?} the model stores: {e}");
                        assert_ne!(class, Class::Alert, "an alert was refused: {e}");
                        assert_eq!(
                            Class::ALL.map(|c| ob.counters.evicted.get(c)),
                            evicted_before,
                            "a refused {class:?} evicted records: {e}"
                        );
                        assert_eq!(m.live.len(), live_before);
                    }
                }
                check_exact(&ob, &m);
            }
            Op::Ack(i) => {
                if !m.live.is_empty() {
                    let seq = *m.live.keys().nth(i % m.live.len()).unwrap();
                    let class = m.live[&seq].class;
                    ob.ack(super::Key { class, seq }).unwrap();
                    // A second PUBACK for the same record is harmless.
                    ob.ack(super::Key { class, seq }).unwrap();
                    m.live.remove(&seq);
                }
                check_exact(&ob, &m);
            }
            Op::Tick(secs) => {
                now += u64::from(secs) * 1000;
                let before = m.expect_expired;
                let n = ob.expire(now).unwrap();
                m.expire(now);
                for r in 0..3 {
                    assert_eq!(
                        n[r],
                        m.expect_expired[r] - before[r],
                        "expired by class {r}"
                    );
                }
                check_exact(&ob, &m);
            }
            Op::Flush => {
                ob.flush().unwrap();
                m.flushed();
            }
            Op::Reopen | Op::Crash => {
                let crash = matches!(op, Op::Crash);
                for c in Class::ALL {
                    let r = usize::from(c.rank());
                    m.evicted[r] += ob.counters.evicted.get(c);
                }
                if crash {
                    // The files as they are now, as a power cut would leave them.
                    generation += 1;
                    let copy = root.path().join(format!("g{generation}"));
                    copy_dir(&dir, &copy);
                    drop(ob);
                    dir = copy;
                } else {
                    ob.flush().unwrap();
                    m.flushed();
                    drop(ob);
                }
                ob = Outbox::reopen(&dir, "gw", &cfg()).unwrap();
                if crash {
                    check_after_crash(&ob, &m);
                } else {
                    check_exact(
                        &ob,
                        &Model {
                            expect_evicted: [0; 3],
                            live: m.live.clone(),
                            ..Model::default()
                        },
                    );
                }
                // The model now follows what the store recovered.
                let got = contents(&ob);
                m.live = got
                    .keys()
                    .map(|s| {
                        let rec = m.durable.get(s).or_else(|| m.since_flush.get(s));
                        (*s, rec.cloned().expect("checked above"))
                    })
                    .collect();
                m.flushed();
                m.expect_evicted = [0; 3];
                m.expect_expired = [0; 3];
            }
        }
    }
    // Losses are only counted evictions of summaries and events: never an alert.
    assert_eq!(m.evicted[0] + ob.counters.evicted.get(Class::Alert), 0);
    assert_eq!(
        ob.counters.depth.load(Ordering::Relaxed) as usize,
        m.live.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_outbox_behaves_like_its_model(ops in ops()) {
        run(ops);
    }
}

#[test]
fn a_crash_right_after_appends_keeps_what_was_flushed() {
    use Op::*;
    run(vec![
        Append(Class::Summary, 1),
        Append(Class::Event, 2),
        Flush,
        Append(Class::Summary, 3),
        Ack(0),
        Crash,
        Append(Class::Alert, 4),
        Crash,
        Reopen,
    ]);
}
