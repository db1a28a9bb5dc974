//! Coordination between the intersections `citygate sumo import` writes: where each signal
//! group's traffic goes next (the next traffic light, through junctions without one:
//! [`downstream`]) and the [`Link`]s between imported intersections ([`coordination`]), written
//! as the sender's `neighbours` entry and the receiver's `[[intersection.inflow]]`.

use std::collections::{BTreeMap, BTreeSet};

use super::import::IntersectionPlan;
use super::net::Net;

/// Where a signal group's traffic goes: the next traffic light, through junctions without one.
#[derive(Debug, Clone, PartialEq)]
pub struct Downstream {
    pub tls: String,
    /// The incoming edge it arrives on.
    pub edge: String,
    /// From the stop line it leaves to the next one (m), and the travel time at the lanes'
    /// speed limits (s).
    pub distance_m: f64,
    pub travel_s: f64,
}

/// The traffic lights the lanes `from` lead to (their outgoing lanes' edges followed
/// downstream), each once.
pub fn downstream(net: &Net, to_lanes: &[String]) -> Vec<Downstream> {
    // incoming edges of every traffic light
    let mut tls_of_edge: BTreeMap<String, String> = BTreeMap::new();
    for c in &net.connections {
        if let Some(t) = &c.tl {
            tls_of_edge.insert(c.from.clone(), t.clone());
        }
    }
    let edge_of = |lane: &str| lane.rsplit_once('_').map(|(e, _)| e.to_string());
    let mut out: Vec<Downstream> = Vec::new();
    let mut todo: Vec<(String, f64, f64, usize)> = to_lanes
        .iter()
        .filter_map(|l| edge_of(l))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|e| (e, 0.0, 0.0, 0))
        .collect();
    while let Some((edge, dist, time, depth)) = todo.pop() {
        let Some(e) = net.edges.get(&edge) else {
            continue;
        };
        let (len, speed) = e
            .lanes
            .first()
            .map_or((0.0, 13.89), |l| (l.length, l.speed.max(0.1)));
        let (dist, time) = (dist + len, time + len / speed);
        if let Some(t) = tls_of_edge.get(&edge) {
            if !out.iter().any(|d| d.tls == *t && d.edge == edge) {
                out.push(Downstream {
                    tls: t.clone(),
                    edge: edge.clone(),
                    distance_m: (dist * 10.0).round() / 10.0,
                    travel_s: (time * 10.0).round() / 10.0,
                });
            }
            continue;
        }
        if depth >= 8 {
            continue;
        }
        let next: BTreeSet<String> = net
            .connections
            .iter()
            .filter(|c| c.from == edge && !c.to.starts_with(':'))
            .map(|c| c.to.clone())
            .collect();
        for n in next {
            todo.push((n, dist, time, depth + 1));
        }
    }
    out
}

/// Coordination between two imported intersections: `from`'s signal group `from_group`
/// sends its traffic to `to`, where it arrives on `groups` (those with lanes on the edge it
/// comes in on) `travel_s` later. Written as `from`'s `neighbours` entry and `to`'s
/// `[[intersection.inflow]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub from: String,
    pub from_group: String,
    pub to: String,
    pub groups: Vec<String>,
    pub travel_s: f64,
}

/// Every [`Link`] between `plans`: for each signal group, the traffic lights its outgoing
/// lanes lead to (through junctions without lights, [`downstream`]), with the travel time at
/// the lanes' speed limits. One link per (group, neighbour): a group reaching a neighbour on
/// two edges arrives on both edges' groups, after the shorter travel time. Links that no
/// look-ahead could use (no vehicle group on the arrival edge, a travel time beyond the
/// longest horizon) are left out.
pub fn coordination(net: &Net, plans: &[IntersectionPlan]) -> Vec<Link> {
    use crate::signals::model::MAX_INFLOW_TRAVEL_S;
    let mut out: Vec<Link> = Vec::new();
    for p in plans {
        let Ok(topo) = net.tls_topology(&p.id) else {
            continue;
        };
        for g in &p.signal_group {
            let to_lanes: Vec<String> = topo
                .links
                .iter()
                .filter(|l| g.links.contains(&l.index))
                .map(|l| l.to_lane.clone())
                .collect();
            for d in downstream(net, &to_lanes) {
                let Some(b) = plans.iter().find(|o| o.id == d.tls && o.id != p.id) else {
                    continue;
                };
                if !(d.travel_s > 0.0 && d.travel_s <= MAX_INFLOW_TRAVEL_S) {
                    continue;
                }
                let groups: Vec<String> = b
                    .signal_group
                    .iter()
                    .filter(|h| {
                        h.lanes
                            .iter()
                            .any(|l| l.rsplit_once('_').is_some_and(|(e, _)| e == d.edge))
                    })
                    .map(|h| h.id.clone())
                    .collect();
                if groups.is_empty() {
                    continue;
                }
                match out
                    .iter_mut()
                    .find(|l| l.from == p.id && l.from_group == g.id && l.to == b.id)
                {
                    Some(l) => {
                        for h in groups {
                            if !l.groups.contains(&h) {
                                l.groups.push(h);
                            }
                        }
                        l.travel_s = l.travel_s.min(d.travel_s);
                    }
                    None => out.push(Link {
                        from: p.id.clone(),
                        from_group: g.id.clone(),
                        to: b.id.clone(),
                        groups,
                        travel_s: d.travel_s,
                    }),
                }
            }
        }
    }
    out
}
