//! The read planner: merges a device's points into the fewest read requests that respect the
//! protocol limits (125 registers, 2000 bits, or a device's lower limits) and a maximum
//! unused gap. Pure: no I/O.
//!
//! Per table, spans are sorted by address and merged greedily: a span joins the current
//! request while the request stays within the limit and the hole before the span is at most
//! `max_gap`. For intervals on a line this greedy choice is optimal.

use super::config::RegisterType;

/// Where one point lives: its table, first address and width (registers or bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub register: RegisterType,
    pub address: u16,
    pub width: u16,
}

impl Span {
    fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.width)
    }
}

/// One read request and the points it serves (indices into the planner's input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub register: RegisterType,
    pub address: u16,
    pub count: u16,
    pub points: Vec<usize>,
}

/// Limits of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest register count of one request (≤125).
    pub max_registers: u16,
    /// Largest bit count of one request (≤2000).
    pub max_bits: u16,
    /// Largest unused hole bridged between two points.
    pub max_gap: u16,
}

impl Limits {
    fn limit(&self, r: RegisterType) -> u32 {
        u32::from(if r.is_bit() {
            self.max_bits
        } else {
            self.max_registers
        })
    }
}

/// Plans the reads of `spans`. A span wider than its limit (which validation rejects) gets a
/// request of its own, clipped to the limit, so that nothing panics.
pub fn plan(spans: &[Span], limits: Limits) -> Vec<ReadRequest> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| {
        spans
            .get(i)
            .map(|s| (s.register, s.address, s.width))
            .unwrap_or((RegisterType::Coil, 0, 0))
    });
    let mut out: Vec<ReadRequest> = Vec::new();
    let mut cur: Option<(ReadRequest, u32)> = None; // request and its end (exclusive)
    for i in order {
        let Some(s) = spans.get(i) else { continue };
        let limit = limits.limit(s.register);
        if let Some((req, end)) = cur.as_mut() {
            let new_end = (*end).max(s.end());
            let fits = req.register == s.register
                && u32::from(s.address) <= *end + u32::from(limits.max_gap)
                && new_end - u32::from(req.address) <= limit;
            if fits {
                *end = new_end;
                req.count = u16::try_from(new_end - u32::from(req.address)).unwrap_or(u16::MAX);
                req.points.push(i);
                continue;
            }
        }
        if let Some((req, _)) = cur.take() {
            out.push(req);
        }
        let count = u32::from(s.width.max(1)).min(limit);
        cur = Some((
            ReadRequest {
                register: s.register,
                address: s.address,
                count: u16::try_from(count).unwrap_or(u16::MAX),
                points: vec![i],
            },
            u32::from(s.address) + count,
        ));
    }
    if let Some((req, _)) = cur {
        out.push(req);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HR: RegisterType = RegisterType::HoldingRegister;
    const LIM: Limits = Limits {
        max_registers: 125,
        max_bits: 2000,
        max_gap: 4,
    };

    fn span(register: RegisterType, address: u16, width: u16) -> Span {
        Span {
            register,
            address,
            width,
        }
    }

    #[test]
    fn merges_adjacent_and_small_gaps_only() {
        let spans = [
            span(HR, 0, 2),
            span(HR, 2, 1),
            span(HR, 7, 2),
            span(HR, 20, 1),
        ];
        let p = plan(&spans, LIM);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].address, p[0].count, p[0].points.clone()),
            (0, 9, vec![0, 1, 2])
        );
        assert_eq!((p[1].address, p[1].count), (20, 1));
    }

    #[test]
    fn tables_never_mix_and_limits_split() {
        let mut spans: Vec<Span> = (0..130).map(|a| span(HR, a, 1)).collect();
        spans.push(span(RegisterType::InputRegister, 0, 1));
        spans.extend((0..2001).map(|a| span(RegisterType::Coil, a, 1)));
        let p = plan(&spans, LIM);
        let hr: Vec<_> = p.iter().filter(|r| r.register == HR).collect();
        assert_eq!(hr.len(), 2);
        assert_eq!(hr[0].count, 125);
        let coils: Vec<_> = p
            .iter()
            .filter(|r| r.register == RegisterType::Coil)
            .collect();
        assert_eq!(coils.len(), 2);
        assert_eq!(coils[0].count, 2000);
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn overlapping_points_share_a_request() {
        // A u32 at 10 and a bit of register 10.
        let p = plan(&[span(HR, 10, 2), span(HR, 10, 1)], LIM);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].address, p[0].count), (10, 2));
    }

    #[test]
    fn a_device_limit_is_respected() {
        let spans: Vec<Span> = (0..10).map(|a| span(HR, a * 2, 2)).collect();
        let lim = Limits {
            max_registers: 4,
            ..LIM
        };
        let p = plan(&spans, lim);
        assert_eq!(p.len(), 5);
        assert!(p.iter().all(|r| r.count <= 4));
    }

    fn arb_span() -> impl Strategy<Value = Span> {
        (0usize..4, 0u16..3000, 1u16..5).prop_map(|(t, a, w)| {
            let register = [
                RegisterType::Coil,
                RegisterType::DiscreteInput,
                RegisterType::InputRegister,
                RegisterType::HoldingRegister,
            ][t];
            span(register, a, if register.is_bit() { 1 } else { w })
        })
    }

    proptest! {
        #[test]
        fn every_point_is_covered_once_and_no_request_exceeds_limits(
            spans in proptest::collection::vec(arb_span(), 0..300),
            max_gap in 0u16..40,
            max_registers in 4u16..=125,
            max_bits in 1u16..=2000,
        ) {
            let limits = Limits { max_registers, max_bits, max_gap };
            let p = plan(&spans, limits);
            let mut seen = vec![0usize; spans.len()];
            for r in &p {
                let limit = if r.register.is_bit() { max_bits } else { max_registers };
                prop_assert!(r.count >= 1 && r.count <= limit, "{r:?}");
                prop_assert!(u32::from(r.address) + u32::from(r.count) <= 65_536);
                for &i in &r.points {
                    let s = spans[i];
                    seen[i] += 1;
                    prop_assert_eq!(s.register, r.register);
                    prop_assert!(s.address >= r.address);
                    prop_assert!(s.end() <= u32::from(r.address) + u32::from(r.count));
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
            // No request could have absorbed the next one of the same table.
            for w in p.windows(2) {
                if w[0].register == w[1].register {
                    let end0 = u32::from(w[0].address) + u32::from(w[0].count);
                    let end1 = u32::from(w[1].address) + u32::from(w[1].count);
                    let limit = u32::from(if w[0].register.is_bit() { max_bits } else { max_registers });
                    let could_merge = u32::from(w[1].address) <= end0 + u32::from(max_gap)
                        && end1.max(end0) - u32::from(w[0].address) <= limit;
                    prop_assert!(!could_merge, "{:?} {:?}", w[0], w[1]);
                }
            }
        }
    }
}
