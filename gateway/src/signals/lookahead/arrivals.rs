//! Arrival estimation for the look-ahead controller: from detector counts and occupancy, each
//! signal group's queue at the stop line now and the vehicles expected there in each coming
//! second (the input of [`super::schedule`]).
//!
//! - A vehicle counted on an advance detector `distance_m` upstream is expected at the stop
//!   line `distance_m / speed` later (free-flow speed). A detector whose lanes feed several
//!   groups splits its counts so that, over all upstream detectors, each group receives what
//!   its stop bar counts (iterative proportional fitting of recent counts): a turn lane fed
//!   by one of two upstream lanes gets that lane's share, not the approach's.
//! - A queue standing over an upstream detector (occupied for [`STANDING_S`] without a count)
//!   hides its arrivals: while it stands, the group's queue keeps growing at its measured
//!   flow (frozen while the detector cannot measure it), the known under-count of a queue
//!   longer than the detectors' reach.
//! - A vehicle counted on a stop-bar detector has reached the line: the oldest expected
//!   vehicle of its groups is taken off (first in, first out).
//! - The queue is what was expected by now and has not crossed the stop bar. When a group is
//!   green and its stop-bar detectors have been empty for a gap, what is left of the queue
//!   was a miscount and is dropped.
//! - Beyond the detectors' reach, a group expects its measured flow (a moving average of its
//!   counts) or, where a neighbour announced it, the neighbour's planned outflow.
//!
//! Everything is in seconds of the caller's clock, passed in.

use std::collections::VecDeque;

/// An upstream detector occupied this long without counting a vehicle has a queue standing
/// over it (s).
pub const STANDING_S: f64 = 3.0;
/// Rounds of proportional fitting of the shared detectors' splits per tick.
const FIT_ROUNDS: usize = 4;

/// What a detector measures for the estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// At the stop line: departures.
    StopBar,
    /// Upstream: arrivals, `distance_m` before the line.
    Upstream,
}

/// One detector as the estimator sees it.
#[derive(Debug, Clone)]
pub struct DetectorSpec {
    pub role: Role,
    pub distance_m: f64,
    /// Signal groups (by index) whose traffic crosses it.
    pub groups: Vec<usize>,
}

/// Estimator parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Free-flow approach speed (m/s).
    pub speed_mps: f64,
    /// Time constant of the measured flow and of the turning shares (s).
    pub flow_window_s: f64,
    /// A green group whose stop-bar detectors have been empty this long has no queue (s).
    pub empty_gap_s: f64,
}

/// An announced arrival of a neighbour's outflow at one group.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PeerArrival {
    source: usize,
    /// The tick it was received in: a newer batch from the source replaces it.
    received: f64,
    /// From when on the source's announcement is complete (its departures from the tick it
    /// planned, after the travel time): before, vehicles already on the way are unannounced.
    covers_from: f64,
    group: usize,
    from: f64,
    until: f64,
    vehicles: f64,
}

#[derive(Debug, Clone)]
pub struct Estimator {
    params: Params,
    detectors: Vec<DetectorSpec>,
    groups: usize,
    /// Per group: (expected time at the stop line, vehicles), oldest first.
    expected: Vec<VecDeque<(f64, f64)>>,
    /// Per group: measured arrivals per second (moving average).
    flow: Vec<f64>,
    /// Per group: decayed stop-bar counts (turning shares of shared detectors).
    share: Vec<f64>,
    /// Per detector: decayed counts (upstream detectors, for the split).
    up_count: Vec<f64>,
    /// Per detector: the fraction of its counts each of its groups gets (same order as
    /// `DetectorSpec::groups`).
    split: Vec<Vec<f64>>,
    /// Per detector: when it last counted a vehicle.
    last_count: Vec<f64>,
    /// Per group: vehicles queued behind a standing upstream detector, unseen by it.
    hidden: Vec<f64>,
    /// Per group: whether an upstream detector sees its arrivals.
    upstream: Vec<bool>,
    /// Per group: detection horizon (s): the longest upstream travel time.
    reach: Vec<f64>,
    /// Per detector: last time it was occupied.
    last_occupied: Vec<f64>,
    /// Per detector: since when it has been occupied without a break.
    occupied_since: Vec<f64>,
    /// Per detector: vehicles counted since the last tick (for the flow average).
    pending: Vec<f64>,
    peer: Vec<PeerArrival>,
    last_tick: Option<f64>,
}

impl Estimator {
    pub fn new(groups: usize, detectors: Vec<DetectorSpec>, params: Params) -> Estimator {
        let speed = params.speed_mps.max(0.1);
        let mut upstream = vec![false; groups];
        let mut reach = vec![0.0f64; groups];
        for d in &detectors {
            if d.role == Role::Upstream {
                for &g in d.groups.iter().filter(|&&g| g < groups) {
                    upstream[g] = true;
                    reach[g] = reach[g].max(d.distance_m / speed);
                }
            }
        }
        let n = detectors.len();
        let split = detectors
            .iter()
            .map(|d| vec![1.0 / d.groups.len().max(1) as f64; d.groups.len()])
            .collect();
        Estimator {
            params: Params {
                speed_mps: speed,
                ..params
            },
            detectors,
            groups,
            expected: vec![VecDeque::new(); groups],
            flow: vec![0.0; groups],
            share: vec![0.0; groups],
            up_count: vec![0.0; n],
            split,
            last_count: vec![f64::NEG_INFINITY; n],
            hidden: vec![0.0; groups],
            upstream,
            reach,
            last_occupied: vec![f64::NEG_INFINITY; n],
            occupied_since: vec![f64::NEG_INFINITY; n],
            pending: vec![0.0; groups],
            peer: Vec::new(),
            last_tick: None,
        }
    }

    /// Seconds from an upstream detector to the stop line.
    pub fn travel_s(&self, detector: usize) -> f64 {
        self.detectors
            .get(detector)
            .map_or(0.0, |d| d.distance_m / self.params.speed_mps)
    }

    /// The detection horizon of group `g` (s).
    pub fn reach_s(&self, g: usize) -> f64 {
        self.reach.get(g).copied().unwrap_or(0.0)
    }

    /// Vehicles counted on `detector` (since its last sample), at time `at`.
    pub fn on_count(&mut self, detector: usize, vehicles: f64, at: f64) {
        if !(vehicles.is_finite() && vehicles > 0.0) {
            return;
        }
        let Some(d) = self.detectors.get(detector) else {
            return;
        };
        if let Some(t) = self.last_count.get_mut(detector) {
            *t = at;
        }
        let groups: Vec<usize> = d
            .groups
            .iter()
            .copied()
            .filter(|&g| g < self.groups)
            .collect();
        if groups.is_empty() {
            return;
        }
        match d.role {
            Role::Upstream => {
                let arrive = at + d.distance_m / self.params.speed_mps;
                self.up_count[detector] += vehicles;
                let split = &self.split[detector];
                for (i, &g) in d
                    .groups
                    .iter()
                    .enumerate()
                    .filter(|(_, &g)| g < self.groups)
                {
                    let v = vehicles * split.get(i).copied().unwrap_or(0.0);
                    if v <= 0.0 {
                        continue;
                    }
                    // a vehicle that stood behind the detector was already queued, unseen
                    let seen = v.min(self.hidden[g]);
                    self.hidden[g] -= seen;
                    self.expected[g].push_back((arrive, v));
                    self.pending[g] += v;
                }
            }
            Role::StopBar => {
                let per = vehicles / groups.len() as f64;
                for &g in &groups {
                    self.share[g] += per;
                    if self.upstream[g] {
                        let mut left = per;
                        while left > 1e-9 {
                            let Some(front) = self.expected[g].front_mut() else {
                                break;
                            };
                            let take = front.1.min(left);
                            front.1 -= take;
                            left -= take;
                            if front.1 <= 1e-9 {
                                self.expected[g].pop_front();
                            }
                        }
                    } else {
                        self.pending[g] += per;
                    }
                }
            }
        }
    }

    /// Whether `detector` is occupied at `at`.
    pub fn on_presence(&mut self, detector: usize, occupied: bool, at: f64) {
        if occupied {
            if let (Some(t), Some(since)) = (
                self.last_occupied.get_mut(detector),
                self.occupied_since.get_mut(detector),
            ) {
                if *t < at - 1.5 {
                    *since = at;
                }
                *t = at;
            }
        }
    }

    /// Once per tick: the flow averages, shares decay, and the queue of green groups whose
    /// stop bar has been empty for a gap is cleared. `green[g]`: group `g` green for longer
    /// than the gap.
    pub fn tick(&mut self, green: &[bool], now: f64) {
        let dt = match self.last_tick {
            Some(t) if now > t => now - t,
            Some(_) => return,
            None => 1.0,
        };
        self.last_tick = Some(now);
        let a = (dt / self.params.flow_window_s.max(dt)).min(1.0);
        let standing = self.standing(now);
        for (g, &stood) in standing.iter().enumerate() {
            if stood > 0.0 {
                // the detector cannot see the arrivals: keep the flow, queue it unseen
                self.hidden[g] += stood * self.flow[g] * dt;
            } else {
                self.flow[g] += a * (self.pending[g] / dt - self.flow[g]);
            }
            self.pending[g] = 0.0;
            self.share[g] *= 1.0 - a;
        }
        for c in &mut self.up_count {
            *c *= 1.0 - a;
        }
        self.fit_split();
        for (g, &is_green) in green.iter().enumerate().take(self.groups) {
            if !is_green || !self.upstream[g] {
                continue;
            }
            let stop_bars: Vec<usize> = self
                .detectors
                .iter()
                .enumerate()
                .filter(|(_, d)| d.role == Role::StopBar && d.groups.contains(&g))
                .map(|(i, _)| i)
                .collect();
            if stop_bars.is_empty() {
                continue;
            }
            let empty_since = stop_bars
                .iter()
                .map(|&i| self.last_occupied[i])
                .fold(f64::NEG_INFINITY, f64::max);
            if now - empty_since >= self.params.empty_gap_s {
                self.hidden[g] = 0.0;
                let cut = now - self.params.empty_gap_s;
                while self.expected[g].front().is_some_and(|e| e.0 <= cut) {
                    self.expected[g].pop_front();
                }
            }
        }
        self.peer.retain(|p| p.until > now);
    }

    /// Per group: the fraction of its upstream detectors with a queue standing over them.
    fn standing(&self, now: f64) -> Vec<f64> {
        let mut n = vec![0usize; self.groups];
        let mut stood = vec![0usize; self.groups];
        for (i, d) in self.detectors.iter().enumerate() {
            if d.role != Role::Upstream {
                continue;
            }
            let is = self.occupied(i, now)
                && now - self.occupied_since[i] >= STANDING_S
                && now - self.last_count[i] >= STANDING_S;
            for &g in d.groups.iter().filter(|&&g| g < self.groups) {
                n[g] += 1;
                stood[g] += usize::from(is);
            }
        }
        (0..self.groups)
            .map(|g| {
                if n[g] == 0 {
                    0.0
                } else {
                    stood[g] as f64 / n[g] as f64
                }
            })
            .collect()
    }

    /// Fits the splits of shared upstream detectors to the groups' stop-bar counts: each
    /// group's share of what the upstream detectors counted is scaled towards what its stop
    /// bars counted, then each detector's split is normalised (iterative proportional
    /// fitting). Groups without a stop bar, and detectors feeding one of them, keep their
    /// even split.
    fn fit_split(&mut self) {
        let has_stop: Vec<bool> = (0..self.groups)
            .map(|g| {
                self.detectors
                    .iter()
                    .any(|d| d.role == Role::StopBar && d.groups.contains(&g))
            })
            .collect();
        let fitted: Vec<bool> = self
            .detectors
            .iter()
            .map(|d| {
                d.role == Role::Upstream
                    && d.groups.len() > 1
                    && d.groups.iter().all(|&g| g < self.groups && has_stop[g])
            })
            .collect();
        if !fitted.iter().any(|&f| f) {
            return;
        }
        for _ in 0..FIT_ROUNDS {
            let mut got = vec![0.0; self.groups];
            for (i, d) in self.detectors.iter().enumerate() {
                if d.role != Role::Upstream {
                    continue;
                }
                for (k, &g) in d
                    .groups
                    .iter()
                    .enumerate()
                    .filter(|(_, &g)| g < self.groups)
                {
                    got[g] += self.up_count[i] * self.split[i][k];
                }
            }
            for (i, d) in self.detectors.iter().enumerate() {
                if !fitted[i] {
                    continue;
                }
                let row = &mut self.split[i];
                for (k, &g) in d.groups.iter().enumerate() {
                    if got[g] > 1e-6 && self.share[g] > 1e-6 {
                        row[k] *= (self.share[g] / got[g]).clamp(0.5, 2.0);
                    }
                    row[k] = row[k].max(0.01);
                }
                let total: f64 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= total);
            }
        }
    }

    /// A neighbour's planned outflow (`source`: which neighbour and group it leaves) reaching
    /// group `g` between `from` and `until`. The flows a source announces after a tick
    /// replace all it announced before (its whole plan is sent again whenever it replans).
    /// Between `covers_from` and the source's last announced arrival, the source's flows are
    /// the group's arrivals beyond the detectors (a second without any brings no one).
    #[allow(clippy::too_many_arguments)]
    pub fn on_peer(
        &mut self,
        source: usize,
        g: usize,
        from: f64,
        until: f64,
        vehicles: f64,
        covers_from: f64,
    ) {
        let received = self.last_tick.unwrap_or(f64::NEG_INFINITY);
        self.peer
            .retain(|p| !(p.source == source && p.received < received));
        if g >= self.groups || !(vehicles.is_finite() && vehicles > 0.0) || until < from {
            return;
        }
        self.peer.push(PeerArrival {
            source,
            received,
            covers_from,
            group: g,
            from,
            until: until.max(from + 1.0),
            vehicles,
        });
    }

    /// Vehicles of group `g` at the stop line now (expected by now, not yet gone).
    pub fn queue(&self, g: usize, now: f64) -> f64 {
        if g >= self.groups {
            return 0.0;
        }
        if !self.upstream[g] {
            // without an upstream detector: while its stop bar stays occupied, the group's
            // measured flow has been queueing since it was last free (at least one vehicle)
            return self
                .stop_bar_occupied_since(g, now)
                .map_or(0.0, |since| (self.flow[g] * (now - since)).max(1.0));
        }
        self.hidden[g]
            + self.expected[g]
                .iter()
                .take_while(|e| e.0 <= now)
                .map(|e| e.1)
                .sum::<f64>()
    }

    /// Whether detector `i` is occupied at `now` (seen occupied within the last second).
    fn occupied(&self, i: usize, now: f64) -> bool {
        self.last_occupied[i] >= now - 1.0
    }

    /// Since when the longest-occupied of group `g`'s stop bars occupied now has been
    /// occupied without a break (`None`: none is occupied).
    fn stop_bar_occupied_since(&self, g: usize, now: f64) -> Option<f64> {
        self.detectors
            .iter()
            .enumerate()
            .filter(|(i, d)| {
                d.role == Role::StopBar && d.groups.contains(&g) && self.occupied(*i, now)
            })
            .map(|(i, _)| self.occupied_since[i])
            .reduce(f64::min)
    }

    /// How long the first vehicle queued for group `g` has been at the stop line (s; 0 with
    /// less than half a vehicle queued): the expected arrival of the oldest vehicle not yet
    /// counted out, or, without an upstream detector, how long the stop bar has been occupied.
    pub fn oldest_wait(&self, g: usize, now: f64) -> f64 {
        if g >= self.groups || self.queue(g, now) < 0.5 {
            return 0.0;
        }
        if !self.upstream[g] {
            return self
                .stop_bar_occupied_since(g, now)
                .map_or(0.0, |since| now - since);
        }
        self.expected[g]
            .front()
            .filter(|e| e.0 <= now)
            .map_or(0.0, |e| now - e.0)
    }

    /// Recent stop-bar counts of group `g` (decayed): its share of shared approaches.
    pub fn share(&self, g: usize) -> f64 {
        self.share.get(g).copied().unwrap_or(0.0)
    }

    /// Measured flow of group `g` (vehicles per second).
    pub fn flow(&self, g: usize) -> f64 {
        self.flow.get(g).copied().unwrap_or(0.0)
    }

    /// Vehicles of group `g` reaching the stop line in each of the next `horizon` seconds:
    /// detected ones within the detectors' reach, then announced or measured flow.
    pub fn arrivals(&self, g: usize, now: f64, horizon: usize) -> Vec<f64> {
        let mut out = vec![0.0; horizon];
        if g >= self.groups {
            return out;
        }
        for &(t, v) in &self.expected[g] {
            if t > now {
                let k = (t - now).floor() as usize;
                if let Some(slot) = out.get_mut(k) {
                    *slot += v;
                }
            }
        }
        let reach = if self.upstream[g] { self.reach[g] } else { 0.0 };
        let first = (reach.ceil() as usize).min(horizon);
        let peers: Vec<&PeerArrival> = self.peer.iter().filter(|p| p.group == g).collect();
        // per source: the span its announcement covers
        let mut spans: Vec<(usize, f64, f64)> = Vec::new();
        for p in &peers {
            match spans.iter_mut().find(|s| s.0 == p.source) {
                Some(s) => {
                    s.1 = s.1.min(p.covers_from);
                    s.2 = s.2.max(p.until);
                }
                None => spans.push((p.source, p.covers_from, p.until)),
            }
        }
        for (k, slot) in out.iter_mut().enumerate().skip(first) {
            let t = now + k as f64;
            if spans.iter().any(|s| s.1 <= t && t < s.2) {
                *slot += peers
                    .iter()
                    .filter(|p| p.from <= t && t < p.until)
                    .map(|p| p.vehicles / (p.until - p.from))
                    .sum::<f64>();
            } else {
                *slot += self.flow[g];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            speed_mps: 10.0,
            flow_window_s: 100.0,
            empty_gap_s: 3.0,
        }
    }

    /// group 0: stop bar 0 and advance 1 (100 m); group 1: stop bar 2; advance 3 feeds both.
    fn est() -> Estimator {
        Estimator::new(
            2,
            vec![
                DetectorSpec {
                    role: Role::StopBar,
                    distance_m: 5.0,
                    groups: vec![0],
                },
                DetectorSpec {
                    role: Role::Upstream,
                    distance_m: 100.0,
                    groups: vec![0],
                },
                DetectorSpec {
                    role: Role::StopBar,
                    distance_m: 5.0,
                    groups: vec![1],
                },
                DetectorSpec {
                    role: Role::Upstream,
                    distance_m: 150.0,
                    groups: vec![0, 1],
                },
            ],
            params(),
        )
    }

    #[test]
    fn advance_counts_arrive_after_their_travel_time_and_queue_until_they_cross() {
        let mut e = est();
        e.on_count(1, 2.0, 0.0);
        assert_eq!(e.queue(0, 5.0), 0.0);
        let a = e.arrivals(0, 5.0, 20);
        assert_eq!(a[5], 2.0, "{a:?}");
        assert_eq!(e.queue(0, 10.0), 2.0);
        e.on_count(0, 1.0, 11.0);
        assert_eq!(e.queue(0, 11.0), 1.0);
        e.on_count(0, 5.0, 12.0);
        assert_eq!(e.queue(0, 12.0), 0.0, "more counted out than in: empty");
    }

    #[test]
    fn a_shared_detector_splits_as_its_own_lanes_turned() {
        // advance 1 sees only group 0's lane; advance 3 sees a lane shared by groups 0 and 1.
        // Each second both advances count one vehicle and each stop bar counts one: so every
        // vehicle of group 1 came over advance 3, and none of group 0's did. The approach-wide
        // share (1 : 1) would give group 1 half of advance 3; the fit gives it all.
        let mut e = est();
        for t in 0..600 {
            let t = t as f64;
            e.on_count(1, 1.0, t);
            e.on_count(3, 1.0, t);
            e.on_count(0, 1.0, t + 0.5);
            e.on_count(2, 1.0, t + 0.5);
            e.tick(&[false, false], t + 0.9);
        }
        let before = (e.queue(0, 1000.0), e.queue(1, 1000.0));
        e.on_count(3, 10.0, 700.0);
        let got = (e.queue(0, 1000.0) - before.0, e.queue(1, 1000.0) - before.1);
        assert!(got.1 > 9.0 && got.0 < 1.0, "{got:?}");
    }

    #[test]
    fn a_queue_standing_over_the_advance_detector_keeps_growing_unseen() {
        let mut e = est();
        // group 0 flows at 0.5 veh/s for a while
        for t in 0..200 {
            let t = t as f64;
            if (t as u64).is_multiple_of(2) {
                e.on_count(1, 1.0, t);
                e.on_count(0, 1.0, t + 10.0);
            }
            e.tick(&[false, false], t + 0.9);
        }
        let flow = e.flow(0);
        assert!((flow - 0.5).abs() < 0.15, "{flow}");
        let q0 = e.queue(0, 200.0);
        // then the queue reaches the advance detector: occupied, nothing counted, for 60 s
        for t in 200..260 {
            let t = t as f64;
            e.on_presence(1, true, t);
            e.tick(&[false, false], t + 0.9);
        }
        let q1 = e.queue(0, 261.0);
        assert!(
            q1 - q0 > 0.5 * flow * 50.0,
            "grew {q0} -> {q1} at flow {flow}"
        );
        assert!(
            (e.flow(0) - flow).abs() < 0.05,
            "flow kept while it cannot be measured"
        );
        // a detector that is occupied but keeps counting (slow traffic) hides nothing
        let mut f = est();
        for t in 0..60 {
            let t = t as f64;
            f.on_presence(1, true, t);
            f.on_count(1, 1.0, t);
            f.on_count(0, 1.0, t);
            f.tick(&[false, false], t + 0.9);
        }
        assert!(f.queue(0, 61.0) < 12.0, "{}", f.queue(0, 61.0));
    }

    #[test]
    fn a_green_group_with_an_empty_stop_bar_has_no_queue() {
        let mut e = est();
        e.on_count(1, 3.0, 0.0);
        e.on_presence(0, true, 10.0);
        e.tick(&[true, false], 11.0);
        assert_eq!(e.queue(0, 11.0), 3.0, "occupied a second ago");
        e.tick(&[true, false], 14.0);
        assert_eq!(e.queue(0, 14.0), 0.0);
        // red: the queue stands even with an empty stop bar
        e.on_count(1, 2.0, 20.0);
        e.tick(&[false, false], 40.0);
        assert_eq!(e.queue(0, 40.0), 2.0);
    }

    #[test]
    fn beyond_the_detectors_measured_or_announced_flow() {
        let mut e = est();
        for t in 0..1000 {
            e.on_count(1, 0.5, f64::from(t));
            e.on_count(0, 0.5, f64::from(t));
            e.tick(&[false, false], f64::from(t));
        }
        assert!((e.flow(0) - 0.5).abs() < 0.01, "{}", e.flow(0));
        let a = e.arrivals(0, 1000.0, 40);
        // reach of group 0: 150 m / 10 m/s = 15 s
        assert!((a[20] - e.flow(0)).abs() < 1e-9);
        e.on_peer(7, 0, 1020.0, 1030.0, 5.0, 1010.0);
        let a = e.arrivals(0, 1000.0, 40);
        assert!((a[25] - 0.5).abs() < 1e-9);
        assert_eq!(a[32], e.flow(0), "past the announcement: measured flow");
        e.on_peer(7, 0, 1020.0, 1030.0, 10.0, 1010.0);
        let a = e.arrivals(0, 1000.0, 40);
        assert!((a[25] - 1.5).abs() < 1e-9, "same batch: added");
        e.tick(&[false, false], 1001.0);
        e.on_peer(7, 0, 1025.0, 1035.0, 10.0, 1020.0);
        let a = e.arrivals(0, 1001.0, 40);
        assert!((a[25] - 1.0).abs() < 1e-9, "a new batch replaces the old");
        assert_eq!(a[20], 0.0, "announced, without outflow: no one");
        assert_eq!(
            a[16],
            e.flow(0),
            "before the announcement covers: measured flow"
        );
    }
}
