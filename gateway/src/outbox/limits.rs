//! The outbox's disk budget and time-to-live, as pure functions: which records to evict when
//! a new one would exceed `max_bytes`, and when a record has expired. No storage here; the
//! sled shell (`store.rs`) passes in a closure that removes the oldest record of a class.
//!
//! Policy. A new record may displace only records of its own class or of a lower priority,
//! lowest class first and oldest first within a class (summaries, then events). Alerts are
//! never evicted: an alert that does not fit is stored anyway and counted as an overflow. A
//! summary or event that cannot be made to fit (only higher-priority records are left) is
//! refused and counted, and then nothing is evicted for it: a record evicts others only when
//! it is then stored.

use citygate_protocols::Class;

/// Bytes one record takes in the budget: its 9-byte key and its stored value.
pub const fn record_bytes(value_len: usize) -> u64 {
    9 + value_len as u64
}

/// What [`admit`] decided for a new record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Store it: it fits (possibly after evictions).
    Store,
    /// Store it although the budget is exceeded: an alert, which is never refused.
    Overflow,
    /// Do not store it: a summary or event with nothing evictable left to make room.
    Refuse,
}

/// The outcome of [`admit`]: the decision, and what was evicted per class (by rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub admission: Admission,
    pub evicted: [u64; 3],
    pub freed_bytes: u64,
}

/// The classes a new record of `class` may evict, in the order to evict them.
pub fn victims(class: Class) -> &'static [Class] {
    match class {
        Class::Alert => &[Class::Summary, Class::Event],
        Class::Event => &[Class::Summary, Class::Event],
        Class::Summary => &[Class::Summary],
    }
}

/// Decides whether a record of `class` and `incoming` bytes may be stored when `used` bytes
/// are stored under a budget of `max_bytes` (0: no limit), `by_class` of them per class (by
/// rank). `evict_oldest(class)` removes the oldest record of `class` and returns its size, or
/// `None` when that class is empty. A summary or event that would not fit even with every
/// record it may displace gone is refused before anything is evicted.
pub fn admit(
    class: Class,
    incoming: u64,
    used: u64,
    by_class: [u64; 3],
    max_bytes: u64,
    mut evict_oldest: impl FnMut(Class) -> Option<u64>,
) -> Admitted {
    let mut out = Admitted {
        admission: Admission::Store,
        evicted: [0; 3],
        freed_bytes: 0,
    };
    if max_bytes == 0 {
        return out;
    }
    // A summary or event larger than the whole budget would evict everything and still not
    // fit: refuse it at once.
    if class != Class::Alert && incoming > max_bytes {
        out.admission = Admission::Refuse;
        return out;
    }
    let fits = |freed: u64| used.saturating_sub(freed).saturating_add(incoming) <= max_bytes;
    let evictable: u64 = victims(class)
        .iter()
        .map(|v| by_class[usize::from(v.rank())])
        .sum();
    if class != Class::Alert && !fits(evictable) {
        out.admission = Admission::Refuse;
        return out;
    }
    for victim in victims(class) {
        while !fits(out.freed_bytes) {
            match evict_oldest(*victim) {
                Some(bytes) => {
                    out.freed_bytes += bytes;
                    out.evicted[usize::from(victim.rank())] += 1;
                }
                None => break,
            }
        }
    }
    if !fits(out.freed_bytes) {
        out.admission = if class == Class::Alert {
            Admission::Overflow
        } else {
            Admission::Refuse
        };
    }
    out
}

/// Time-to-live per class (by rank), in milliseconds; `None` never expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ttl(pub [Option<u64>; 3]);

impl Ttl {
    pub fn of(&self, class: Class) -> Option<u64> {
        self.0[usize::from(class.rank())]
    }

    /// Whether a record of `class` stored at `stored_ms` has expired at `now_ms`.
    pub fn expired(&self, class: Class, stored_ms: u64, now_ms: u64) -> bool {
        self.of(class)
            .is_some_and(|ttl| now_ms.saturating_sub(stored_ms) >= ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Stored record sizes per class (by rank), oldest first.
    fn store(sizes: [&[u64]; 3]) -> [VecDeque<u64>; 3] {
        sizes.map(|s| s.iter().copied().collect())
    }

    fn run(class: Class, incoming: u64, max: u64, s: &mut [VecDeque<u64>; 3]) -> Admitted {
        let used: u64 = s.iter().flatten().sum();
        let by_class = [0, 1, 2].map(|r| s[r].iter().sum());
        admit(class, incoming, used, by_class, max, |c| {
            s[usize::from(c.rank())].pop_front()
        })
    }

    #[test]
    fn no_limit_admits_everything_and_evicts_nothing() {
        let mut s = store([&[100], &[100], &[100]]);
        let a = run(Class::Summary, 1000, 0, &mut s);
        assert_eq!(a.admission, Admission::Store);
        assert_eq!(a.evicted, [0, 0, 0]);
    }

    #[test]
    fn a_record_that_fits_evicts_nothing() {
        let mut s = store([&[10], &[10], &[10]]);
        let a = run(Class::Summary, 10, 40, &mut s);
        assert_eq!((a.admission, a.evicted), (Admission::Store, [0, 0, 0]));
    }

    #[test]
    fn summaries_go_first_oldest_first_then_events() {
        let mut s = store([&[10], &[10, 11], &[10, 12]]);
        // used 53, max 53: an alert of 30 needs 30 freed: both summaries (22), then one event.
        let a = run(Class::Alert, 30, 53, &mut s);
        assert_eq!(a.admission, Admission::Store);
        assert_eq!(a.evicted, [0, 1, 2]);
        assert_eq!(a.freed_bytes, 32);
        assert_eq!(s[1], VecDeque::from([11]), "the oldest event went");
        assert_eq!(s[0], VecDeque::from([10]), "alerts are never evicted");
    }

    #[test]
    fn alerts_are_never_evicted_and_overflow_instead() {
        let mut s = store([&[50, 50], &[], &[]]);
        let a = run(Class::Alert, 50, 100, &mut s);
        assert_eq!(a.admission, Admission::Overflow);
        assert_eq!(a.evicted, [0, 0, 0]);
        assert_eq!(s[0].len(), 2);
    }

    #[test]
    fn a_summary_never_displaces_an_event_or_an_alert() {
        let mut s = store([&[40], &[40], &[10]]);
        let a = run(Class::Summary, 30, 100, &mut s);
        assert_eq!(a.admission, Admission::Refuse);
        assert_eq!(
            a.evicted,
            [0, 0, 0],
            "it may displace older summaries only, and evicts none when it is refused"
        );
        assert_eq!((s[0].len(), s[1].len(), s[2].len()), (1, 1, 1));
        // With room once the older summary goes, it displaces exactly that.
        let a = run(Class::Summary, 20, 100, &mut s);
        assert_eq!((a.admission, a.evicted), (Admission::Store, [0, 0, 1]));
    }

    #[test]
    fn an_event_displaces_summaries_then_older_events() {
        let mut s = store([&[], &[30, 30], &[30]]);
        let a = run(Class::Event, 40, 90, &mut s);
        assert_eq!(a.admission, Admission::Store);
        assert_eq!(a.evicted, [0, 1, 1]);
        assert_eq!(s[1], VecDeque::from([30]));
    }

    #[test]
    fn a_summary_larger_than_the_budget_is_refused_without_evicting() {
        let mut s = store([&[], &[], &[10, 10]]);
        let a = run(Class::Summary, 101, 100, &mut s);
        assert_eq!((a.admission, a.evicted), (Admission::Refuse, [0, 0, 0]));
        assert_eq!(s[2].len(), 2);
    }

    #[test]
    fn ttl_expires_only_configured_classes_at_the_boundary() {
        let ttl = Ttl([None, Some(1000), Some(10)]);
        assert!(!ttl.expired(Class::Alert, 0, u64::MAX));
        assert!(!ttl.expired(Class::Event, 5000, 5999));
        assert!(ttl.expired(Class::Event, 5000, 6000));
        assert!(ttl.expired(Class::Summary, 0, 10));
        // A clock that went backwards expires nothing.
        assert!(!ttl.expired(Class::Summary, 100, 50));
    }
}
