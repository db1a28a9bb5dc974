//! The live shell around the intersection runtimes, used by the gateway's rules task: feeds
//! readings, runs the 1 s tick, applies `[hazard]` emergency plans, and hands stage commands
//! to an actuation task (one function-16 write of the firmware's command block per tick and
//! intersection, or an MQTT publish on the local broker). Write results come back to the
//! runtimes, so that a failing actuation becomes an event.
//!
//! One clock: every entry point takes a [`Now`]; the runtimes, their controllers, the safety
//! supervisor, the fault monitor and the plan overrides run on its monotonic part, so that an
//! NTP step of the wall clock can neither cut a green or an intergreen short nor freeze one.
//! Wall time is used only where a timestamp leaves: events are stamped with it, and the
//! planned flows exchanged with other gateways carry it on the wire (converted here, at that
//! boundary, with the tick's offset between the two clocks).

use citygate_protocols::registers::signal_controller as map;
use citygate_protocols::{Event, Reading};
use tokio::sync::mpsc;

use super::config::{ControllerKind, IntersectionConfig};
use super::controller::PlannedFlow;
use super::model::{Actuation, Intersection};
use super::runtime::{controller_for, IntersectionRuntime, IntersectionStatus};
use crate::actions::LocalPublish;
use crate::clock::Now;
use crate::commands::Action;
use crate::sources::modbus::{ModbusWriter, Write};

/// Commands waiting for the actuation task; when full, a tick's command is skipped (the next
/// tick sends a newer one).
pub const ACTUATION_QUEUE: usize = 64;

struct Job {
    intersection: usize,
    device: String,
    registers: [u16; 4],
}

/// Every intersection of the gateway.
pub struct Signals {
    /// This gateway's id, for the peer topic its planned outflows go out on.
    gateway: String,
    runtimes: Vec<IntersectionRuntime>,
    in_flight: Vec<bool>,
    /// By intersection: the plan a `plan_override` command runs and when it ends (monotonic).
    overrides: Vec<Option<(String, f64)>>,
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<(usize, Result<(), String>)>,
    /// Other gateways' planned outflows received since the last tick, by sending
    /// intersection: a newer message replaces an older one (it is a newer plan), so that a
    /// tick takes at most one plan per neighbour even when two messages arrive between ticks.
    /// Their times are the senders' wall clocks until the tick converts them.
    peer_flows: Vec<(String, Vec<PlannedFlow>)>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("runtimes", &self.runtimes)
            .finish()
    }
}

impl Signals {
    /// Builds every intersection (already validated with the config) and, if any actuates
    /// over Modbus, starts the actuation task on the current tokio runtime.
    pub fn start(
        gateway: &str,
        configs: &[IntersectionConfig],
        modbus: Option<ModbusWriter>,
    ) -> Result<Signals, String> {
        let mut runtimes = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let model =
                Intersection::from_config_at(c, &format!("intersection[{i}]")).map_err(|e| {
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })?;
            let controller = controller_for(&model);
            tracing::info!(
                "intersection {}: {} control of {} stages, actuation {:?}",
                model.id,
                controller.name(),
                model.stages.len(),
                model.actuation
            );
            runtimes.push(IntersectionRuntime::new(model, controller));
        }
        let (results_tx, results) = mpsc::channel(ACTUATION_QUEUE);
        let needs_modbus = runtimes
            .iter()
            .any(|r| matches!(r.model().actuation, Actuation::Modbus { .. }));
        let jobs = match (needs_modbus, modbus) {
            (true, Some(writer)) => {
                let (tx, rx) = mpsc::channel(ACTUATION_QUEUE);
                tokio::spawn(actuate(writer, rx, results_tx));
                Some(tx)
            }
            (true, None) => return Err("Modbus actuation needs [[sources.modbus]] devices".into()),
            (false, _) => None,
        };
        Ok(Signals {
            gateway: gateway.to_string(),
            in_flight: vec![false; runtimes.len()],
            overrides: vec![None; runtimes.len()],
            runtimes,
            jobs,
            results,
            peer_flows: Vec::new(),
        })
    }

    /// Whether any intersection coordinates with neighbours (look-ahead with `neighbours`
    /// or `inflow`), so that peer messages are worth listening to.
    pub fn coordinates(&self) -> bool {
        self.runtimes.iter().any(|r| {
            let m = r.model();
            m.controller == ControllerKind::LookAhead
                && !(m.neighbours.is_empty() && m.inflows.is_empty())
        })
    }

    /// Planned outflows from neighbouring gateways' intersections (one peer message), for
    /// the next tick.
    pub fn on_peer_flows(&mut self, flows: &[PlannedFlow]) {
        let mut from: Vec<&str> = flows.iter().map(|f| f.from.as_str()).collect();
        from.sort_unstable();
        from.dedup();
        for id in from {
            let these: Vec<PlannedFlow> = flows.iter().filter(|f| f.from == id).cloned().collect();
            match self.peer_flows.iter_mut().find(|(f, _)| f == id) {
                Some((_, slot)) => *slot = these,
                None => self.peer_flows.push((id.to_string(), these)),
            }
        }
    }

    /// Hands planned flows to the intersections they are for.
    fn deliver(&mut self, flows: &[PlannedFlow]) {
        for f in flows {
            for rt in self.runtimes.iter_mut().filter(|r| r.model().id == f.to) {
                rt.on_peer_flow(f);
            }
        }
    }

    /// Whether there is any intersection.
    pub fn is_empty(&self) -> bool {
        self.runtimes.is_empty()
    }

    /// A reading from any source.
    pub fn on_reading(&mut self, r: &Reading, now: Now) {
        for rt in &mut self.runtimes {
            rt.on_reading(r, now.mono);
        }
    }

    /// `[hazard]` asks for (or releases) an emergency plan.
    pub fn emergency_plan(&mut self, intersection: &str, plan: &str, active: bool, now: Now) {
        match self
            .runtimes
            .iter_mut()
            .find(|r| r.model().id == intersection)
        {
            Some(rt) => {
                if let Err(e) = rt.set_plan(plan, active, now.mono) {
                    tracing::error!("emergency plan: {e}");
                }
            }
            None => tracing::error!("emergency plan `{plan}`: no intersection `{intersection}`"),
        }
    }

    /// A platform command (`plan_override`, `plan_release`), carried out through the same
    /// safety supervisor as everything else. Returns what was done, or why not.
    pub fn apply(&mut self, action: &Action, now: Now) -> Result<String, String> {
        let now = now.mono;
        let id = action.intersection();
        let i = self
            .runtimes
            .iter()
            .position(|r| r.model().id == id)
            .ok_or_else(|| format!("no intersection `{id}`"))?;
        let (rt, slot) = (&mut self.runtimes[i], &mut self.overrides[i]);
        match action {
            Action::PlanOverride {
                plan, duration_s, ..
            } => {
                if let Some((old, _)) = slot.take() {
                    if &old != plan {
                        rt.set_plan(&old, false, now)?;
                    }
                }
                rt.set_plan(plan, true, now)?;
                *slot = Some((plan.clone(), now + *duration_s as f64));
                Ok(format!("plan `{plan}` runs for {duration_s} s"))
            }
            Action::PlanRelease { .. } => match slot.take() {
                Some((plan, _)) => {
                    rt.set_plan(&plan, false, now)?;
                    Ok(format!("plan `{plan}` released"))
                }
                None => Err("no plan override is running".into()),
            },
        }
    }

    /// The 1 s tick: every runtime ticks; Modbus commands go to the actuation task; returns
    /// the events and the MQTT stage commands to publish.
    pub fn tick(&mut self, clock: Now) -> (Vec<Event>, Vec<LocalPublish>) {
        let now = clock.mono;
        let mut events = Vec::new();
        let mut publish = Vec::new();
        for (rt, slot) in self.runtimes.iter_mut().zip(&mut self.overrides) {
            if let Some((plan, _)) = slot.take_if(|(_, until)| now >= *until) {
                if let Err(e) = rt.set_plan(&plan, false, now) {
                    tracing::error!("plan override: {e}");
                }
            }
        }
        for (_, mut flows) in std::mem::take(&mut self.peer_flows) {
            for f in &mut flows {
                shift(f, -wall_offset(clock));
            }
            self.deliver(&flows);
        }
        for (i, rt) in self.runtimes.iter_mut().enumerate() {
            let out = rt.tick(now);
            if out.stage_changed {
                tracing::debug!(
                    "intersection {}: stage {} ({})",
                    rt.model().id,
                    rt.model()
                        .stages
                        .get(out.stage)
                        .map_or("?", |s| s.id.as_str()),
                    rt.status(now).reason
                );
            }
            events.extend(out.events.into_iter().map(|e| stamp(e, clock)));
            match rt.model().actuation.clone() {
                Actuation::None => {}
                Actuation::Modbus { device } => {
                    if self.in_flight[i] {
                        continue;
                    }
                    let (Some(jobs), Some(cmd)) = (self.jobs.as_ref(), rt.command(now)) else {
                        continue;
                    };
                    let job = Job {
                        intersection: i,
                        device,
                        registers: cmd.registers(),
                    };
                    if jobs.try_send(job).is_ok() {
                        self.in_flight[i] = true;
                    }
                }
                Actuation::Mqtt { topic } => {
                    let Some(cmd) = rt.command(now) else { continue };
                    let m = rt.model();
                    let payload = serde_json::json!({
                        "intersection": m.id,
                        "stage": cmd.stage,
                        "stage_id": m.stages.get(usize::from(cmd.stage).saturating_sub(1)).map(|s| s.id.clone()),
                        "sequence": cmd.sequence,
                        "groups": out.states.iter().map(|(g, s)| (g.clone(), s.as_str())).collect::<std::collections::BTreeMap<_, _>>(),
                    });
                    publish.push(LocalPublish {
                        topic,
                        payload: payload.to_string(),
                    });
                }
            }
        }
        self.exchange_outflows(clock, &mut publish);
        (events, publish)
    }

    /// Planned outflows: to this gateway's own intersections in process, to the others on
    /// the peer topic (one message per tick, only when there is something to say).
    fn exchange_outflows(&mut self, clock: Now, publish: &mut Vec<LocalPublish>) {
        let flows: Vec<PlannedFlow> = self
            .runtimes
            .iter()
            .flat_map(|r| r.outflow(clock.mono))
            .collect();
        if flows.is_empty() {
            return;
        }
        let (local, remote): (Vec<PlannedFlow>, Vec<PlannedFlow>) = flows
            .into_iter()
            .partition(|f| self.runtimes.iter().any(|r| r.model().id == f.to));
        self.deliver(&local);
        if !remote.is_empty() {
            let mut remote = remote;
            for f in &mut remote {
                shift(f, wall_offset(clock));
            }
            publish.push(LocalPublish {
                topic: super::peers::topic_of(&self.gateway),
                payload: super::lookahead::peer::encode(&remote),
            });
        }
    }

    /// The next write result from the actuation task (pending forever without one).
    pub async fn next_result(&mut self) -> (usize, Result<(), String>) {
        match self.results.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    /// A write finished.
    pub fn on_result(&mut self, intersection: usize, result: Result<(), String>, now: Now) {
        if let Some(f) = self.in_flight.get_mut(intersection) {
            *f = false;
        }
        if let Some(rt) = self.runtimes.get_mut(intersection) {
            if let Err(e) = &result {
                tracing::warn!("intersection {}: stage command failed: {e}", rt.model().id);
            }
            rt.on_actuation(result, now.mono);
        }
    }

    /// Status of every intersection.
    pub fn status(&self, now: Now) -> Vec<IntersectionStatus> {
        self.runtimes.iter().map(|r| r.status(now.mono)).collect()
    }
}

/// Seconds to add to a monotonic time to get the wall time of the same instant, as of `now`.
fn wall_offset(now: Now) -> f64 {
    now.wall - now.mono
}

/// Moves a planned flow's times by `by` seconds (between the two clocks).
fn shift(f: &mut PlannedFlow, by: f64) {
    f.leaves_at += by;
    f.until += by;
}

/// An event of a runtime, timed on the monotonic clock, stamped with wall time to leave.
fn stamp(mut e: Event, now: Now) -> Event {
    e.time += wall_offset(now);
    e
}

/// Writes each command block as one function-16 request (requested stage, hold, plan,
/// sequence) and reports the result.
async fn actuate(
    writer: ModbusWriter,
    mut jobs: mpsc::Receiver<Job>,
    results: mpsc::Sender<(usize, Result<(), String>)>,
) {
    while let Some(job) = jobs.recv().await {
        let r = writer
            .write(
                &job.device,
                Write::Registers {
                    address: map::HR_REQUESTED_STAGE,
                    values: job.registers.to_vec(),
                },
            )
            .await
            .map_err(|e| format!("{}: {e}", job.device));
        if results.send((job.intersection, r)).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::fixtures::{parse, CROSSROADS};

    /// Both clocks at `t` (no offset between them).
    fn at(t: f64) -> Now {
        Now { mono: t, wall: t }
    }

    fn signals() -> Signals {
        match Signals::start("gw-1", &[parse(CROSSROADS)], None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn plan_of(s: &Signals) -> Option<String> {
        s.runtimes[0].plan().map(str::to_string)
    }

    /// `int-b` (look-ahead) takes the east group's flow of `int-a` on another gateway on its
    /// west group, 20 s after it leaves.
    fn receiver() -> Signals {
        let text = CROSSROADS
            .replace("controller = \"actuated\"", "controller = \"look_ahead\"")
            .replace("id = \"int-1\"", "id = \"int-b\"")
            + "\n[[inflow]]\nfrom = \"int-a\"\nfrom_group = \"E\"\ngroups = [\"W\"]\ntravel_s = 20.0\n";
        match Signals::start("gw-b", &[parse(&text)], None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn flow(group: &str, vehicles: f64, leaves_at: f64) -> PlannedFlow {
        PlannedFlow {
            from: "int-a".into(),
            to: "int-b".into(),
            group: group.into(),
            vehicles,
            leaves_at,
            until: leaves_at + 10.0,
        }
    }

    /// A peer message's flows reach the configured inflow at the next tick; of two messages
    /// between two ticks only the newer counts (it is the newer plan, not more vehicles); a
    /// flow through a group with no inflow here is ignored.
    #[test]
    fn peer_flows_reach_the_configured_inflow_once_per_tick() {
        let mut s = receiver();
        assert!(s.coordinates(), "a receiver listens to peer messages");
        let expected = |s: &Signals, now: f64| s.status(at(now))[0].expected_from_peers;
        s.tick(at(100.0));
        s.on_peer_flows(&[flow("E", 6.0, 105.0), flow("N", 9.0, 105.0)]);
        assert_eq!(expected(&s, 100.5), 0.0, "taken at the next tick");
        s.tick(at(101.0));
        assert_eq!(expected(&s, 101.0), 6.0);
        // halfway through the arrivals (125..135 s), half is still to come
        assert_eq!(expected(&s, 130.0), 3.0);
        s.on_peer_flows(&[flow("E", 5.0, 106.0)]);
        s.on_peer_flows(&[flow("E", 7.0, 106.0), flow("E", 1.0, 120.0)]);
        s.tick(at(102.0));
        assert_eq!(
            expected(&s, 102.0),
            8.0,
            "the newer message replaces the older"
        );
        s.tick(at(103.0));
        assert_eq!(expected(&s, 103.0), 8.0, "kept until a newer plan arrives");
    }

    #[test]
    fn a_plan_override_runs_its_plan_until_it_expires() {
        let mut s = signals();
        let over = Action::PlanOverride {
            intersection: "int-1".into(),
            plan: "flood-detour".into(),
            duration_s: 30,
        };
        assert_eq!(
            s.apply(&over, at(100.0)),
            Ok("plan `flood-detour` runs for 30 s".into())
        );
        s.tick(at(101.0));
        assert_eq!(plan_of(&s).as_deref(), Some("flood-detour"));
        s.tick(at(129.0));
        assert_eq!(plan_of(&s).as_deref(), Some("flood-detour"));
        s.tick(at(130.0));
        assert_eq!(plan_of(&s), None, "the override ends at its expiry");
    }

    #[test]
    fn release_ends_an_override_and_bad_targets_are_named() {
        let mut s = signals();
        let release = Action::PlanRelease {
            intersection: "int-1".into(),
        };
        assert_eq!(
            s.apply(&release, at(1.0)),
            Err("no plan override is running".into())
        );
        let unknown_plan = Action::PlanOverride {
            intersection: "int-1".into(),
            plan: "parade".into(),
            duration_s: 30,
        };
        assert!(s
            .apply(&unknown_plan, at(1.0))
            .unwrap_err()
            .contains("no plan `parade`"));
        let unknown_int = Action::PlanRelease {
            intersection: "int-9".into(),
        };
        assert_eq!(
            s.apply(&unknown_int, at(1.0)),
            Err("no intersection `int-9`".into())
        );
        let over = Action::PlanOverride {
            intersection: "int-1".into(),
            plan: "flood-detour".into(),
            duration_s: 600,
        };
        assert!(s.apply(&over, at(2.0)).is_ok());
        assert_eq!(
            s.apply(&release, at(3.0)),
            Ok("plan `flood-detour` released".into())
        );
        assert_eq!(plan_of(&s), None);
    }

    /// What one tick shows of the intersection: in transition, whole seconds of green, stage.
    fn observe(s: &mut Signals, now: Now) -> (bool, u64, String) {
        let _ = s.tick(now);
        let st = s.status(now).remove(0);
        (st.in_transition, st.green_for_s, st.stage)
    }

    /// Issue 14: the wall clock steps forward and back by an hour during a green and during
    /// an intergreen while the monotonic clock runs on; every tick shows exactly what it shows
    /// without the steps (stage, green time, transition): no green or intergreen is cut short
    /// and none is frozen.
    #[test]
    fn wall_clock_steps_neither_cut_nor_freeze_greens_and_intergreens() {
        let fixed = CROSSROADS.replace("controller = \"actuated\"", "controller = \"fixed_time\"");
        let start = || match Signals::start("gw-1", &[parse(&fixed)], None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        const WALL: f64 = 1_764_000_000.0;
        let ticks = 240;
        let mut reference = start();
        let smooth: Vec<_> = (0..ticks)
            .map(|t| {
                let mono = 10.0 + f64::from(t);
                observe(
                    &mut reference,
                    Now {
                        mono,
                        wall: WALL + mono,
                    },
                )
            })
            .collect();
        // where to step: the middle of greens and of intergreens after the start-up
        let green: Vec<usize> = (1..ticks as usize)
            .filter(|&t| !smooth[t].0 && smooth[t].1 >= 3 && smooth[t].1 == smooth[t - 1].1 + 1)
            .collect();
        let transition: Vec<usize> = (1..ticks as usize)
            .filter(|&t| smooth[t].0 && smooth[t - 1].0)
            .collect();
        let changes = (1..ticks as usize)
            .filter(|&t| smooth[t].2 != smooth[t - 1].2)
            .count();
        assert!(changes >= 4, "the reference must change stage: {changes}");
        let g1 = green[0];
        let i1 = *transition.iter().find(|&&t| t > g1).expect("an intergreen");
        let g2 = *green.iter().find(|&&t| t > i1 + 2).expect("a later green");
        let i2 = *transition
            .iter()
            .find(|&&t| t > g2)
            .expect("a later intergreen");
        // +1 h in a green, -1 h in the intergreen, -1 h in a green, +1 h in the intergreen
        let offset = |t: usize| match t {
            t if t >= i2 => 0.0,
            t if t >= g2 => -3600.0,
            t if t >= i1 => 0.0,
            t if t >= g1 => 3600.0,
            _ => 0.0,
        };
        let mut stepped = start();
        for (t, expected) in smooth.iter().enumerate() {
            let mono = 10.0 + t as f64;
            let now = Now {
                mono,
                wall: WALL + mono + offset(t),
            };
            assert_eq!(
                &observe(&mut stepped, now),
                expected,
                "tick {t} (wall offset {} s)",
                offset(t)
            );
        }
    }

    /// What leaves carries wall time: an event is stamped with the wall time of the instant
    /// it happened (as of the tick that sends it), and peer flows arrive and leave in wall
    /// time while the look-ahead plans on the monotonic clock.
    #[test]
    fn events_and_peer_flows_leave_and_arrive_in_wall_time() {
        const WALL: f64 = 1_764_000_000.0;
        let now = |mono: f64| Now {
            mono,
            wall: WALL + mono,
        };
        let mut s = signals();
        let over = Action::PlanOverride {
            intersection: "int-1".into(),
            plan: "flood-detour".into(),
            duration_s: 30,
        };
        assert!(s.apply(&over, now(5.0)).is_ok());
        let (events, _) = s.tick(now(6.0));
        let started = events
            .iter()
            .find(|e| e.kind == "plan_change")
            .expect("a plan_change event");
        assert_eq!(started.time, WALL + 5.0, "{started:?}");

        let mut r = receiver();
        r.tick(now(100.0));
        r.on_peer_flows(&[flow("E", 6.0, WALL + 105.0)]);
        r.tick(now(101.0));
        let expected = |r: &Signals, t: f64| r.status(now(t))[0].expected_from_peers;
        assert_eq!(expected(&r, 101.0), 6.0);
        assert_eq!(
            expected(&r, 130.0),
            3.0,
            "arrivals 125..135 s on the monotonic clock"
        );
    }
}
