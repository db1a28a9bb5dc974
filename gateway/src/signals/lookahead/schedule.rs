//! The look-ahead schedule: a forward dynamic program over the predicted arrivals of every
//! signal group, in the style of schedule-driven control (SURTRAC, Xie, Smith et al. 2012).
//!
//! Input ([`Problem`]): per signal group the queue now and the vehicles expected to reach the
//! stop line in each coming second (the clusters formed from detectors and neighbours'
//! planned outflows), its saturation discharge rate; per stage its groups, min / max green and
//! the intergreen to every other stage; which stage is green and for how long.
//!
//! Output ([`Plan`]): the stage sequence and green durations over the horizon that minimise
//! total delay (vehicle-seconds queued, plus a per-vehicle cost for what is left at the
//! horizon), and so the decision for now: hold the current stage or switch.
//!
//! The program: a state is (stage, second its green ends). From a state, the next stage `j`
//! starts after the intergreen and is served for min green, until its standing queue is gone,
//! for as long as it takes to discharge each further cluster of its arrivals (a cluster ends
//! where the stage's queue is gone and less than one vehicle is expected in the next
//! `cluster_gap_s`), or for max green. Like SURTRAC, each state keeps one partial schedule,
//! the one of least delay (counting what it leaves queued at the horizon cost, so that
//! schedules that served more are not pruned for it). Every green lies within min / max green
//! and every change costs its intergreen, so the plan is feasible for the safety supervisor by
//! construction; the supervisor checks it regardless.

/// One planning problem, in whole seconds from now.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    /// Signal groups (by index) green in each stage.
    pub stages: &'a [Vec<usize>],
    /// `[from][to]` seconds from the end of `from`'s green to the start of `to`'s.
    pub intergreen: &'a [Vec<f64>],
    pub min_green: &'a [f64],
    pub max_green: &'a [f64],
    /// Per group: its own maximum green (a group green in consecutive stages keeps counting).
    pub group_max_green: &'a [f64],
    /// Per group: seconds it has been green without a break now (0: not green).
    pub group_green_for: &'a [f64],
    /// Per group: vehicles per second it discharges at saturation.
    pub discharge: &'a [f64],
    /// `[stage][group]`: the discharge measured in that stage where known (e.g. a permissive
    /// turn gives way in one stage and not in another); empty or NaN: `discharge`.
    pub stage_discharge: &'a [Vec<f64>],
    /// Per group: vehicles waiting at the stop line now.
    pub queue: &'a [f64],
    /// Per group: vehicles reaching the stop line in second `t` (`t` = 0 is the coming second);
    /// the horizon is the longest of these.
    pub arrivals: &'a [Vec<f64>],
    /// The stage green now (or the one the running transition leads to).
    pub current: usize,
    /// Seconds it has been green.
    pub green_for: f64,
    /// Seconds at the start of a green in which a group that was red discharges nothing.
    pub startup_lost_s: f64,
    /// Cost per vehicle still queued at the horizon (s).
    pub leftover_wait_s: f64,
    /// Per group: seconds since it was last served (green with the right of way, or less
    /// than half a vehicle queued); 0: served now.
    pub unserved_for: &'a [f64],
    /// A queued vehicle's cost per second grows by 1 every this many seconds its group has
    /// gone unserved (0: delay only).
    pub wait_scale_s: f64,
    /// The starvation bound: beyond this many seconds unserved, a queued vehicle's cost per
    /// second grows by 1 more every second (0 or infinite: no bound).
    pub max_wait_s: f64,
    /// The saturated regime: the horizon cannot clear the queues, so a green ends only once
    /// its queue is gone or at max green, never at min green with a queue left (fewer
    /// changes, less time lost to intergreens).
    pub saturated: bool,
    /// A cluster of arrivals ends at a gap of at least this many seconds.
    pub cluster_gap_s: f64,
    /// `[stage][group]`: the groups of the stage that group gives way to there (a permissive
    /// turn and the opposing through traffic); empty or missing: it has the right of way. A
    /// group giving way discharges only while none of those has vehicles queued.
    pub opposed_by: &'a [Vec<Vec<usize>>],
    /// Per group: vehicles that move up into the junction to wait for a gap when a green in
    /// which it gives way begins (one per lane), and clear by its end.
    pub sneakers: &'a [f64],
}

/// One green of the plan, in seconds from now (`start` may be negative for the running green).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedGreen {
    pub stage: usize,
    pub start: f64,
    pub end: f64,
}

/// The least-delay schedule found.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Seconds the current stage stays green (0: change now).
    pub hold_s: f64,
    /// The stage after the current one (`None` when the current green outlasts the horizon).
    pub next: Option<usize>,
    /// The greens in order, the current one first.
    pub greens: Vec<PlannedGreen>,
    /// Vehicle-seconds of delay over the horizon plus the leftover cost.
    pub cost: f64,
    /// Vehicles the plan leaves queued at the horizon.
    pub left: f64,
    /// Per group, vehicles leaving the stop line in each second of the horizon.
    pub departures: Vec<Vec<f64>>,
}

/// Most green durations tried per stage visit (min green, cluster ends, max green).
const MAX_CANDIDATES: usize = 8;

#[derive(Debug, Clone)]
struct Label {
    cost: f64,
    /// Per group the vehicles queued, then per group the second its red began (see
    /// [`Problem::start_state`]).
    queue: Vec<f64>,
    greens: Vec<PlannedGreen>,
}

impl Label {
    fn key(&self, leftover: f64) -> f64 {
        let n = self.queue.len() / 2;
        self.cost + leftover * self.queue[..n].iter().sum::<f64>()
    }
}

/// Where a green may end, second by second: the first second its stage's standing queue is gone
/// (SURTRAC's queue cluster, even while vehicles keep coming), and every later cluster end (the
/// queue gone and less than one vehicle expected in the cluster gap).
#[derive(Debug, Default)]
struct ClusterEnds {
    /// The stage has had vehicles since the last cluster end.
    active: bool,
    /// The standing queue has been gone once.
    queue_gone: bool,
}

impl ClusterEnds {
    /// Whether this second ends a cluster, given that the stage's queue is `cleared` and
    /// whether the coming gap is `quiet`.
    fn end(&mut self, cleared: bool, quiet: impl FnOnce() -> bool) -> bool {
        let end = self.active && cleared && (!self.queue_gone || quiet());
        self.queue_gone |= self.active && cleared;
        if end {
            self.active = false;
        }
        end
    }
}

/// HCM critical headway of a permitted left turn across one opposing stream (s).
pub const CRITICAL_HEADWAY_S: f64 = 4.5;
/// HCM follow-up headway of turning vehicles taking one gap after another (s).
pub const FOLLOW_UP_HEADWAY_S: f64 = 2.5;

/// Vehicles per second a movement giving way can take from an opposing stream of `v`
/// vehicles per second (random arrivals; HCM's permitted capacity
/// `v e^(-v tc) / (1 - e^(-v tf))`, `1 / tf` with nobody opposing).
pub fn gap_capacity(v: f64) -> f64 {
    if !(v.is_finite() && v > 1e-6) {
        return 1.0 / FOLLOW_UP_HEADWAY_S;
    }
    v * (-v * CRITICAL_HEADWAY_S).exp() / (1.0 - (-v * FOLLOW_UP_HEADWAY_S).exp())
}

/// Seconds as whole steps (never below `lo`).
fn steps(s: f64, lo: usize) -> usize {
    if s.is_finite() && s > 0.0 {
        (s.ceil() as usize).max(lo)
    } else {
        lo
    }
}

impl Problem<'_> {
    fn horizon(&self) -> usize {
        self.arrivals.iter().map(Vec::len).max().unwrap_or(0).max(1)
    }

    fn arrival(&self, g: usize, t: usize) -> f64 {
        self.arrivals
            .get(g)
            .and_then(|a| a.get(t))
            .copied()
            .unwrap_or(0.0)
    }

    fn ig(&self, from: usize, to: usize) -> usize {
        let s = self
            .intergreen
            .get(from)
            .and_then(|r| r.get(to))
            .copied()
            .unwrap_or(0.0);
        steps(s, 0)
    }

    fn in_stage(&self, s: usize, g: usize) -> bool {
        self.stages.get(s).is_some_and(|gs| gs.contains(&g))
    }

    /// The state at the start: per group the queue, then per group when its red began
    /// (seconds from now; 0 for a group green now).
    fn start_state(&self) -> Vec<f64> {
        let n = self.queue.len();
        let mut s = self.queue.to_vec();
        s.extend((0..n).map(|g| {
            let red = self.unserved_for.get(g).copied().unwrap_or(0.0).max(0.0);
            -red
        }));
        s
    }

    /// One second `t`: arrivals join, green groups past their start-up discharge. Returns the
    /// cost of that second: each queued vehicle costs 1, plus its group's red so far over
    /// `wait_scale_s` (so that delay is spread rather than heaped on a few). `out` gets the
    /// departures when given.
    fn second(
        &self,
        state: &mut [f64],
        t: usize,
        green: &dyn Fn(usize) -> Option<usize>,
        stage: usize,
        mut out: Option<&mut Vec<Vec<f64>>>,
    ) -> f64 {
        let lost = steps(self.startup_lost_s, 0);
        let mut cost = 0.0;
        let n = state.len() / 2;
        let (q, red) = state.split_at_mut(n);
        // groups giving way in this stage are held while an opposing queue discharges
        let opposed = self.opposed_by.get(stage);
        for g in 0..n {
            let against = opposed
                .and_then(|o| o.get(g))
                .map_or(&[][..], Vec::as_slice);
            let blocked = against.iter().any(|&h| q.get(h).is_some_and(|&x| x >= 0.5));
            // with the opposing queue gone, a group giving way takes the gaps in the opposing
            // arrivals (HCM permitted-turn capacity)
            let gap_cap = (!against.is_empty())
                .then(|| gap_capacity(against.iter().map(|&h| self.arrival(h, t)).sum()));
            let qg = &mut q[g];
            *qg += self.arrival(g, t);
            // served: green with the right of way (a group giving way only once its queue is
            // gone: the sneakers of each green do not serve a queue that keeps growing)
            let served = green(g).is_some() && against.is_empty();
            if let Some(age) = green(g) {
                if age >= lost {
                    let rate = self
                        .stage_discharge
                        .get(stage)
                        .and_then(|r| r.get(g))
                        .copied()
                        .filter(|r| r.is_finite())
                        .or_else(|| self.discharge.get(g).copied())
                        .unwrap_or(0.0)
                        .max(0.0);
                    let rate = match gap_cap {
                        _ if blocked => 0.0,
                        Some(cap) => rate.min(cap),
                        None => rate,
                    };
                    let d = qg.min(rate);
                    *qg -= d;
                    if let Some(o) = out.as_deref_mut() {
                        if let Some(slot) = o.get_mut(g).and_then(|r| r.get_mut(t)) {
                            *slot += d;
                        }
                    }
                }
            }
            if served || *qg < 0.5 {
                red[g] = t as f64 + 1.0;
            }
            let waited = t as f64 - red[g];
            let scale = self.wait_scale_s;
            let mut weight = if scale > 0.0 && waited > 0.0 {
                1.0 + waited / scale
            } else {
                1.0
            };
            if self.max_wait_s > 0.0 && waited > self.max_wait_s {
                weight += waited - self.max_wait_s;
            }
            cost += *qg * weight;
        }
        cost
    }

    /// Seconds group `g` may stay green from `start` on, when its green began at `since`.
    fn group_room(&self, g: usize, since: f64, start: f64) -> f64 {
        let max = self
            .group_max_green
            .get(g)
            .copied()
            .unwrap_or(f64::INFINITY);
        max - (start - since)
    }

    /// When group `g`'s green that runs at the end of `greens` began (`None`: not green then).
    fn green_since(&self, greens: &[PlannedGreen], g: usize) -> Option<f64> {
        let mut since = None;
        for p in greens.iter().rev() {
            if !self.in_stage(p.stage, g) {
                break;
            }
            since = Some(p.start);
            if p.start < 0.0 {
                // the running green: the group may have been green before the stage
                let had = self.group_green_for.get(g).copied().unwrap_or(0.0);
                since = Some(p.start.min(-had));
            }
        }
        since
    }

    /// The latest ends (seconds from `start`, the start of stage `s`'s green) that still let a
    /// following stage run, for the groups `s` hands on to it within their own max green
    /// (`since(g)`: when group `g`'s green began), its min green, and long enough to
    /// discharge their queue `q` with the right of way. Without these candidates, a green
    /// held to its max green (the saturated regime) would leave no room for a protected
    /// turn after the permitted one.
    fn handover_ends(
        &self,
        s: usize,
        start: f64,
        since: &dyn Fn(usize) -> f64,
        q: &[f64],
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for j in (0..self.stages.len()).filter(|&j| j != s) {
            let lo = steps(self.min_green.get(j).copied().unwrap_or(0.0), 1) as f64;
            let ig = self.ig(s, j) as f64;
            let handed: Vec<usize> = self.stages[s]
                .iter()
                .copied()
                .filter(|&g| self.in_stage(j, g))
                .collect();
            let room = handed
                .iter()
                .map(|&g| self.group_room(g, since(g), start) - ig)
                .fold(f64::INFINITY, f64::min);
            if !room.is_finite() {
                continue;
            }
            let clear = handed
                .iter()
                .map(|&g| {
                    let rate = self.discharge.get(g).copied().unwrap_or(0.0);
                    let queued = q.get(g).copied().unwrap_or(0.0);
                    if rate > 0.0 {
                        self.startup_lost_s + queued / rate
                    } else {
                        0.0
                    }
                })
                .fold(lo, f64::max)
                .min(room);
            for need in [lo, clear] {
                if room - need >= 0.0 {
                    out.push((room - need).floor() as usize);
                }
            }
        }
        out
    }

    /// Vehicles queued for stage `s`'s groups plus those arriving in second `t`.
    fn stage_load(&self, s: usize, q: &[f64], t: usize) -> f64 {
        self.stages[s]
            .iter()
            .map(|&g| q[g] + self.arrival(g, t))
            .sum()
    }

    /// Whether stage `s`'s groups have (less than half a vehicle) left queued.
    fn cleared(&self, s: usize, q: &[f64]) -> bool {
        self.stages[s].iter().map(|&g| q[g]).sum::<f64>() < 0.5
    }

    /// Whether stage `s` expects less than one vehicle in `[t, t + gap)`. Arrivals are
    /// expected values: beyond the detectors' reach a group expects its measured flow, a
    /// fraction of a vehicle every second, so "nothing at all" would never hold there.
    fn quiet(&self, s: usize, t: usize, gap: usize) -> bool {
        let groups = &self.stages[s];
        let expected: f64 = (t..t + gap)
            .flat_map(|u| groups.iter().map(move |&g| self.arrival(g, u)))
            .sum();
        expected < 1.0
    }

    /// Whether group `g` gives way to another group in stage `s`.
    fn gives_way(&self, s: usize, g: usize) -> bool {
        self.opposed_by
            .get(s)
            .and_then(|r| r.get(g))
            .is_some_and(|o| !o.is_empty())
    }

    /// Whether stage `j` may follow stage `s`: stages run in their configured (cyclic) order,
    /// and one may be skipped only when none of its groups that neither `s` nor `j` serves has
    /// vehicles queued (`q`). So a stage with waiting traffic is not passed over by going back
    /// and forth between two others.
    fn may_follow(&self, s: usize, j: usize, q: &[f64]) -> bool {
        let k = self.stages.len();
        let n = q.len() / 2;
        if s >= k || j >= k || s == j {
            return false;
        }
        let mut m = (s + 1) % k;
        while m != j {
            let waiting = self.stages[m]
                .iter()
                .any(|&g| g < n && !self.in_stage(s, g) && !self.in_stage(j, g) && q[g] >= 0.5);
            if waiting {
                return false;
            }
            m = (m + 1) % k;
        }
        true
    }

    /// Whole seconds the running stage `c`, green for `done` s, may still hold: to its max
    /// green and to every one of its groups' room (`usize::MAX`: no bound).
    fn max_remaining(&self, c: usize, done: f64) -> usize {
        let mut hi = self.max_green.get(c).copied().unwrap_or(f64::INFINITY) - done;
        for &g in &self.stages[c] {
            let had = self
                .group_green_for
                .get(g)
                .copied()
                .unwrap_or(0.0)
                .max(done);
            hi = hi.min(self.group_room(g, -had, 0.0));
        }
        if hi.is_finite() {
            hi.floor().max(0.0) as usize
        } else {
            usize::MAX
        }
    }

    /// Finds the least-delay plan.
    pub fn solve(&self) -> Plan {
        let h = self.horizon();
        let k = self.stages.len();
        let n = self.queue.len();
        let gap = steps(self.cluster_gap_s, 1);
        let lo_green = |s: usize| steps(self.min_green.get(s).copied().unwrap_or(0.0), 1);
        let hi_green = |s: usize| {
            let hi = self.max_green.get(s).copied().unwrap_or(f64::INFINITY);
            if hi.is_finite() {
                (hi.floor().max(0.0) as usize).max(lo_green(s))
            } else {
                usize::MAX
            }
        };
        let mut best: Vec<Vec<Option<Label>>> = vec![vec![None; h + 1]; k];
        let mut finals: Vec<Label> = Vec::new();
        let leftover = self.leftover_wait_s;

        let offer = |best: &mut Vec<Vec<Option<Label>>>, s: usize, t: usize, l: Label| {
            let slot = &mut best[s][t];
            if slot
                .as_ref()
                .is_none_or(|o| l.key(leftover) < o.key(leftover))
            {
                *slot = Some(l);
            }
        };

        // The running green: change now (when min green is done), or hold to a cluster end,
        // min green or max green.
        let c = self.current.min(k.saturating_sub(1));
        let done = self.green_for.max(0.0);
        let min_rem = steps(self.min_green.get(c).copied().unwrap_or(0.0) - done, 0);
        let max_rem = self.max_remaining(c, done);
        let root_green = |start: f64, end: f64| PlannedGreen {
            stage: c,
            start,
            end,
        };
        let mut q: Vec<f64> = self.start_state();
        let mut cost = 0.0;
        let mut ends = ClusterEnds::default();
        let mut found = 0;
        let handover = if self.saturated {
            let had = |g: usize| {
                -self
                    .group_green_for
                    .get(g)
                    .copied()
                    .unwrap_or(0.0)
                    .max(done)
            };
            self.handover_ends(c, 0.0, &had, &q)
        } else {
            Vec::new()
        };
        let now_ok =
            !self.saturated || self.cleared(c, &q) || max_rem == 0 || handover.contains(&0);
        if min_rem == 0 && now_ok {
            offer(
                &mut best,
                c,
                0,
                Label {
                    cost: 0.0,
                    queue: q.clone(),
                    greens: vec![root_green(-done, 0.0)],
                },
            );
        }
        let green_c = |g: usize| self.in_stage(c, g).then_some(usize::MAX);
        for d in 1..=max_rem.min(h) {
            ends.active |= self.stage_load(c, &q, d - 1) > 1e-9;
            cost += self.second(&mut q, d - 1, &green_c, c, None);
            let cluster_end = ends.end(self.cleared(c, &q), || self.quiet(c, d, gap));
            let label = || Label {
                cost,
                queue: q.clone(),
                greens: vec![root_green(-done, d as f64)],
            };
            if d == h {
                finals.push(label());
            } else if (d == min_rem && (!self.saturated || self.cleared(c, &q)))
                || d == max_rem
                || handover.contains(&d)
                || (d > min_rem && cluster_end && found < MAX_CANDIDATES)
            {
                if d > min_rem && cluster_end {
                    found += 1;
                }
                offer(&mut best, c, d, label());
            }
        }

        // Forward over end times.
        for t in 0..h {
            for s in 0..k {
                let Some(l) = best[s][t].take() else { continue };
                for j in (0..k).filter(|&j| j != s && self.may_follow(s, j, &l.queue)) {
                    self.expand(
                        &l,
                        s,
                        t,
                        j,
                        h,
                        gap,
                        lo_green(j),
                        hi_green(j),
                        &mut |t2, lab| {
                            if t2 >= h {
                                finals.push(lab);
                            } else {
                                offer(&mut best, j, t2, lab);
                            }
                        },
                    );
                }
            }
        }

        let chosen = finals
            .into_iter()
            .min_by(|a, b| a.key(leftover).total_cmp(&b.key(leftover)))
            .unwrap_or_else(|| Label {
                cost: 0.0,
                queue: self.start_state(),
                greens: vec![root_green(-done, h as f64)],
            });
        let departures = self.replay(&chosen.greens, h, n);
        let hold_s = chosen.greens.first().map_or(0.0, |g| g.end.max(0.0));
        Plan {
            hold_s,
            next: chosen.greens.get(1).map(|g| g.stage),
            cost: chosen.key(leftover),
            left: chosen.queue[..n].iter().sum(),
            greens: chosen.greens,
            departures,
        }
    }

    /// From label `l` (stage `s` green until `t`), change to `j`: the intergreen, then green
    /// durations from min green, at every cluster end, to max green (or the horizon).
    #[allow(clippy::too_many_arguments)]
    fn expand(
        &self,
        l: &Label,
        s: usize,
        t: usize,
        j: usize,
        h: usize,
        gap: usize,
        lo: usize,
        hi: usize,
        emit: &mut dyn FnMut(usize, Label),
    ) {
        let mut q = l.queue.clone();
        let mut cost = l.cost;
        let start = t + self.ig(s, j);
        // during the intergreen, groups green in both stages keep running
        let both = |g: usize| (self.in_stage(s, g) && self.in_stage(j, g)).then_some(usize::MAX);
        for u in t..start.min(h) {
            cost += self.second(&mut q, u, &both, j, None);
        }
        let with = |greens: &[PlannedGreen], end: usize| {
            let mut v = greens.to_vec();
            v.push(PlannedGreen {
                stage: j,
                start: start as f64,
                end: end as f64,
            });
            v
        };
        if start >= h {
            emit(
                h,
                Label {
                    cost,
                    queue: q,
                    greens: with(&l.greens, start),
                },
            );
            return;
        }
        // at the start of a green in which a turn gives way, its first vehicle per lane moves
        // up to wait inside the junction, and clears at the latest as the green ends
        for g in 0..self.queue.len().min(q.len()) {
            if self.gives_way(j, g) && !self.in_stage(s, g) {
                let n = self.sneakers.get(g).copied().unwrap_or(0.0).max(0.0);
                q[g] -= q[g].min(n);
            }
        }
        let green_j = |g: usize, u: usize| {
            if !self.in_stage(j, g) {
                None
            } else if self.in_stage(s, g) {
                Some(usize::MAX)
            } else {
                Some(u - start)
            }
        };
        // groups that stay green from `s` keep counting towards their max green
        let mut hi = hi;
        for &g in self.stages[j].iter().filter(|&&g| self.in_stage(s, g)) {
            if let Some(since) = self.green_since(&l.greens, g) {
                let room = self.group_room(g, since, start as f64).floor().max(0.0) as usize;
                hi = hi.min(room);
            }
        }
        if hi < lo {
            return;
        }
        let handover = if self.saturated {
            let since = |g: usize| {
                self.in_stage(s, g)
                    .then(|| self.green_since(&l.greens, g))
                    .flatten()
                    .unwrap_or(start as f64)
            };
            self.handover_ends(j, start as f64, &since, &q)
        } else {
            Vec::new()
        };
        let mut ends = ClusterEnds::default();
        let mut found = 0;
        let last = hi.min(h - start);
        for d in 1..=last {
            let u = start + d - 1;
            ends.active |= self.stage_load(j, &q, u) > 1e-9;
            cost += self.second(&mut q, u, &|g| green_j(g, u), j, None);
            let cluster_end = ends.end(self.cleared(j, &q), || self.quiet(j, u + 1, gap));
            let end = start + d;
            let at_min = d == lo && (!self.saturated || self.cleared(j, &q));
            let take = end == h
                || at_min
                || d == hi
                || (d > lo && handover.contains(&d))
                || (d > lo && cluster_end && found < MAX_CANDIDATES);
            if !take {
                continue;
            }
            if d > lo && cluster_end {
                found += 1;
            }
            emit(
                end,
                Label {
                    cost,
                    queue: q.clone(),
                    greens: with(&l.greens, end),
                },
            );
            if end == h {
                return;
            }
        }
    }

    /// Departures per group and second under a schedule.
    fn replay(&self, greens: &[PlannedGreen], h: usize, n: usize) -> Vec<Vec<f64>> {
        let mut out = vec![vec![0.0; h]; n];
        let mut q = self.start_state();
        for t in 0..h {
            let tf = t as f64;
            let green = |g: usize| {
                // the green running at t, and for how long the group has been green in a row
                let idx = greens
                    .iter()
                    .position(|p| p.start <= tf && tf < p.end && self.in_stage(p.stage, g))?;
                let mut since = greens[idx].start;
                let mut i = idx;
                while i > 0 && self.in_stage(greens[i - 1].stage, g) {
                    since = greens[i - 1].start;
                    i -= 1;
                }
                if since < 0.0 {
                    Some(usize::MAX)
                } else {
                    Some(t - since as usize)
                }
            };
            let stage = greens
                .iter()
                .find(|p| p.start <= tf && tf < p.end)
                .or_else(|| greens.iter().find(|p| tf < p.start))
                .map_or(0, |p| p.stage);
            self.second(&mut q, t, &green, stage, Some(&mut out));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two stages (group 0 | group 1), 1 veh/s each, 5 s intergreen, min 5 / max 60.
    struct Case {
        stages: Vec<Vec<usize>>,
        ig: Vec<Vec<f64>>,
        min: Vec<f64>,
        max: Vec<f64>,
        rate: Vec<f64>,
        queue: Vec<f64>,
        arrivals: Vec<Vec<f64>>,
        gmax: Vec<f64>,
        gfor: Vec<f64>,
        red: Vec<f64>,
        opposed: Vec<Vec<Vec<usize>>>,
        sneakers: Vec<f64>,
    }

    impl Case {
        fn two(h: usize) -> Case {
            Case {
                stages: vec![vec![0], vec![1]],
                ig: vec![vec![0.0, 5.0], vec![5.0, 0.0]],
                min: vec![5.0, 5.0],
                max: vec![60.0, 60.0],
                rate: vec![1.0, 1.0],
                queue: vec![0.0, 0.0],
                arrivals: vec![vec![0.0; h], vec![0.0; h]],
                gmax: vec![f64::INFINITY; 3],
                gfor: vec![0.0; 3],
                red: vec![0.0; 3],
                opposed: Vec::new(),
                sneakers: Vec::new(),
            }
        }
        /// Stage 0 = {0, 1}, stage 1 = {1} (a protected turn after the through), stage 2 =
        /// {2}; 5 s between the barrier of stages 0 and 1 and stage 2.
        fn protected_turn(h: usize) -> Case {
            Case {
                stages: vec![vec![0, 1], vec![1], vec![2]],
                ig: vec![
                    vec![0.0, 0.0, 5.0],
                    vec![0.0, 0.0, 5.0],
                    vec![5.0, 5.0, 0.0],
                ],
                min: vec![5.0; 3],
                ..Case::two(h)
            }
        }
        /// Steady arrivals over the whole horizon, per group (vehicles per second).
        fn steady(&mut self, rates: &[f64]) {
            for (a, &r) in self.arrivals.iter_mut().zip(rates) {
                a.iter_mut().for_each(|x| *x = r);
            }
        }
        fn solve(&self, current: usize, green_for: f64) -> Plan {
            Problem {
                stages: &self.stages,
                intergreen: &self.ig,
                min_green: &self.min,
                max_green: &self.max,
                group_max_green: &self.gmax,
                group_green_for: &self.gfor,
                discharge: &self.rate,
                stage_discharge: &[],
                queue: &self.queue,
                arrivals: &self.arrivals,
                current,
                green_for,
                startup_lost_s: 2.0,
                leftover_wait_s: 20.0,
                unserved_for: &self.red,
                wait_scale_s: 0.0,
                max_wait_s: 0.0,
                saturated: false,
                cluster_gap_s: 3.0,
                opposed_by: &self.opposed,
                sneakers: &self.sneakers,
            }
            .solve()
        }
    }

    #[test]
    fn serves_a_platoon_arriving_in_ten_seconds_rather_than_switching_away() {
        // stage 0 green for 20 s, its queue gone; a platoon of 8 arrives for it in 10 s; the
        // other stage has 2 vehicles waiting.
        let mut c = Case::two(90);
        c.queue = vec![0.0, 2.0];
        for t in 10..18 {
            c.arrivals[0][t] = 1.0;
        }
        let p = c.solve(0, 20.0);
        assert!(p.hold_s >= 18.0, "{p:?}");
        assert_eq!(p.next, Some(1));
        // and with no platoon coming it serves the waiting vehicles now
        let mut c2 = Case::two(90);
        c2.queue = vec![0.0, 2.0];
        let p2 = c2.solve(0, 20.0);
        assert_eq!(p2.hold_s, 0.0, "{p2:?}");
        assert_eq!(p2.next, Some(1));
    }

    #[test]
    fn a_platoon_in_measured_flow_is_a_cluster_of_its_own() {
        // as above, with 0.2 veh/s of measured flow on both stages besides (a fraction of a
        // vehicle every second, never "nothing"): hold for the platoon, then switch
        let mut c = Case::two(90);
        c.queue = vec![0.0, 2.0];
        c.steady(&[0.2, 0.2]);
        for t in 10..18 {
            c.arrivals[0][t] = 1.0;
        }
        let p = c.solve(0, 20.0);
        assert!((18.0..=24.0).contains(&p.hold_s), "{p:?}");
        assert_eq!(p.next, Some(1));
    }

    #[test]
    fn a_green_may_end_once_its_standing_queue_is_gone_while_vehicles_keep_coming() {
        // stage 1 has 12 waiting and 0.3 veh/s more without a gap; stage 0 (green, its queue
        // gone) gets 0.5 veh/s. Serving stage 1 just until its queue is gone (about 20 s at 1
        // veh/s less the arrivals) beats both its min green and its max green.
        let mut c = Case::two(120);
        c.queue = vec![0.0, 12.0];
        c.steady(&[0.5, 0.3]);
        let p = c.solve(0, 10.0);
        assert_eq!(p.next, Some(1), "{p:?}");
        let served = p.greens[1];
        let len = served.end - served.start;
        assert!((15.0..=30.0).contains(&len), "{len} s: {p:?}");
    }

    #[test]
    fn never_plans_below_min_green_or_beyond_max_green() {
        let mut c = Case::two(120);
        c.min = vec![7.0, 9.0];
        c.max = vec![20.0, 25.0];
        c.queue = vec![0.0, 30.0];
        c.steady(&[0.3, 0.4]);
        // just started: it must hold the rest of min green even with nothing to serve
        let p = c.solve(0, 2.0);
        assert!(p.hold_s >= 5.0, "{p:?}");
        for green_for in [0.0, 3.0, 7.0, 15.0, 20.0] {
            let p = c.solve(0, green_for);
            assert!(green_for + p.hold_s <= 20.0 + 1e-9, "{p:?}");
            assert!(green_for + p.hold_s >= 7.0 - 1e-9, "{p:?}");
            for (i, g) in p.greens.iter().enumerate().skip(1) {
                let len = g.end - g.start;
                let end_of_horizon = g.end >= 120.0;
                assert!(
                    len >= c.min[g.stage] - 1e-9 || end_of_horizon,
                    "green {i} {g:?} below min"
                );
                assert!(len <= c.max[g.stage] + 1e-9, "green {i} {g:?} beyond max");
                let prev = p.greens[i - 1];
                assert_ne!(prev.stage, g.stage);
                assert!(
                    g.start - prev.end >= c.ig[prev.stage][g.stage] - 1e-9,
                    "{prev:?} -> {g:?}: intergreen cut"
                );
            }
        }
    }

    #[test]
    fn departures_account_for_every_vehicle_served() {
        let mut c = Case::two(60);
        c.queue = vec![6.0, 4.0];
        let p = c.solve(0, 10.0);
        let served: f64 = p.departures.iter().flatten().sum();
        assert!((served - 10.0).abs() < 1e-9, "{p:?}");
        // group 0 is green now and discharges at once, 1 veh/s
        assert_eq!(&p.departures[0][..3], &[1.0, 1.0, 1.0]);
    }

    #[test]
    fn overlapping_stages_keep_the_shared_group_running() {
        // stage 0 = {0, 1}, stage 1 = {1} (a protected turn after the through), stage 2 = {2}
        let mut c = Case::protected_turn(90);
        c.max = vec![60.0; 3];
        c.rate = vec![1.0, 0.5, 1.0];
        c.queue = vec![0.0, 10.0, 0.0];
        c.arrivals = vec![vec![0.0; 90]; 3];
        c.arrivals[2][30] = 1.0;
        let p = c.solve(0, 10.0);
        // the turn's queue needs 20 s at 0.5 veh/s; it keeps its green across stages 0 -> 1
        let turn: f64 = p.departures[1][..20].iter().sum();
        assert!((turn - 10.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_group_green_across_stages_keeps_its_own_max_green() {
        // stage 0 = {0, 1}, stage 1 = {1}: group 1 (max 30 s) has been green 25 s; stage 0
        // for 10 s. Even with a long queue for group 1 it cannot be planned past 5 s more.
        let mut c = Case::protected_turn(90);
        c.max = vec![30.0, 30.0, 60.0];
        c.rate = vec![1.0, 0.5, 1.0];
        c.queue = vec![0.0, 30.0, 1.0];
        c.arrivals = vec![vec![0.0; 90]; 3];
        c.gmax = vec![60.0, 30.0, 60.0];
        c.gfor = vec![10.0, 25.0, 0.0];
        let p = c.solve(0, 10.0);
        let mut since = -25.0;
        for (i, g) in p.greens.iter().enumerate() {
            if c.stages[g.stage].contains(&1) {
                if i > 0 && !c.stages[p.greens[i - 1].stage].contains(&1) {
                    since = g.start;
                }
                assert!(g.end - since <= 30.0 + 1e-9, "{:?}", p.greens);
            }
        }
    }

    #[test]
    fn a_long_queue_elsewhere_ends_a_green_with_nothing_to_serve() {
        let mut c = Case::two(90);
        c.queue = vec![0.0, 15.0];
        let p = c.solve(0, 5.0);
        assert_eq!((p.hold_s, p.next), (0.0, Some(1)), "{p:?}");
        assert_eq!(p.greens[1].start, 5.0);
    }

    #[test]
    fn a_stage_with_waiting_traffic_is_not_passed_over() {
        // three stages in ring order (0, 1, 2); stage 1 runs with nothing left; stage 0 has
        // 10 waiting, stage 2 one. The least delay would go back to 0 now and leave 2
        // waiting; the order makes 2 come first.
        let mut c = Case::two(90);
        c.stages = vec![vec![0], vec![1], vec![2]];
        c.ig = vec![vec![5.0; 3]; 3];
        c.min = vec![5.0; 3];
        c.max = vec![60.0; 3];
        c.rate = vec![1.0; 3];
        c.queue = vec![10.0, 0.0, 1.0];
        c.arrivals = vec![vec![0.0; 90]; 3];
        let p = c.solve(1, 20.0);
        assert_eq!(p.next, Some(2), "{p:?}");
        // with nobody waiting for stage 2 it is skipped
        c.queue = vec![10.0, 0.0, 0.0];
        let p = c.solve(1, 20.0);
        assert_eq!(p.next, Some(0), "{p:?}");
    }

    #[test]
    fn a_turn_giving_way_waits_for_the_opposing_queue() {
        // stage 0 = {0, 1}: group 1 turns across group 0 (6 queued at 1 veh/s), stage 1 = {2}
        let mut c = Case::two(60);
        c.stages = vec![vec![0, 1], vec![2]];
        c.rate = vec![1.0, 1.0, 1.0];
        c.queue = vec![6.0, 3.0, 0.0];
        c.arrivals = vec![vec![0.0; 60]; 3];
        c.opposed = vec![vec![vec![], vec![0], vec![]], vec![vec![]; 3]];
        let p = c.solve(0, 10.0);
        assert_eq!(p.departures[1][..5].iter().sum::<f64>(), 0.0, "{p:?}");
        assert!(
            (p.departures[1].iter().sum::<f64>() - 3.0).abs() < 1e-9,
            "{p:?}"
        );
        // and with the right of way it goes at once
        c.opposed = Vec::new();
        let p = c.solve(0, 10.0);
        assert_eq!(p.departures[1][0], 1.0, "{p:?}");
    }

    #[test]
    fn a_turn_giving_way_moves_one_vehicle_per_lane_into_the_junction_as_its_green_starts() {
        // stage 1 = {1, 2}: group 2 turns across group 1, whose traffic never stops; group 2
        // has 2 waiting. Stage 0 runs with nothing to do, so the plan changes now.
        let mut c = Case::two(60);
        c.stages = vec![vec![0], vec![1, 2]];
        c.rate = vec![1.0, 0.5, 1.0];
        c.queue = vec![0.0, 0.0, 2.0];
        c.arrivals = vec![vec![0.0; 60], vec![1.0; 60], vec![0.0; 60]];
        c.opposed = vec![vec![vec![]; 3], vec![vec![], vec![], vec![1]]];
        c.sneakers = vec![1.0; 3];
        let with = c.solve(0, 20.0);
        c.sneakers = vec![0.0; 3];
        let without = c.solve(0, 20.0);
        assert_eq!(with.next, Some(1));
        // the one in the junction costs nothing from the green's start: 1 vehicle-second a
        // second less over the rest of the horizon
        assert!(without.cost - with.cost > 40.0, "{with:?} {without:?}");
    }
}
