//! The poll schedule against slow tokio-modbus TCP servers (`Behavior::Delay`): a late device
//! skips the slots it missed instead of being polled again at once, and `connections = N`
//! opens N connections to one address and spreads its devices over them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use citygate::sources::modbus::config::{PointConfig, RegisterType};
use citygate::sources::modbus::{self, DeviceConfig, DeviceStats};
use citygate_tests::modbus::{
    bank, fast_device, Behavior, Collector, SharedBank, SimService, TcpSim,
};

fn slow_bank(delay_ms: u64) -> SharedBank {
    let b = bank();
    b.lock().unwrap().behavior = Behavior::Delay(Duration::from_millis(delay_ms));
    b
}

fn device(name: &str, sim: &TcpSim, unit: u8, interval_ms: u64) -> DeviceConfig {
    let mut d = fast_device(name, sim.addr);
    d.unit_id = unit;
    d.poll_interval_ms = interval_ms;
    d.timeout_ms = 1000;
    d.retries = 0;
    d.points = vec![PointConfig::new("h0", RegisterType::HoldingRegister, 0)];
    d
}

/// Gaps between the requests a bank received after `from`.
fn gaps(b: &SharedBank, from: Instant) -> Vec<Duration> {
    let arrivals: Vec<Instant> = b
        .lock()
        .unwrap()
        .arrivals
        .iter()
        .copied()
        .filter(|t| *t >= from)
        .collect();
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Runs `devices` for `warm` then `measure`, consuming readings; returns the start of the
/// measured window and the device counters at its end.
async fn run(
    devices: Vec<DeviceConfig>,
    warm: Duration,
    measure: Duration,
) -> (Instant, Vec<DeviceStats>) {
    let (rt, et, mut c) = Collector::new(100_000);
    let h = modbus::spawn(devices, rt, et).unwrap();
    let drain = tokio::spawn(async move { while c.readings.recv().await.is_some() {} });
    tokio::time::sleep(warm).await;
    let from = Instant::now();
    tokio::time::sleep(measure).await;
    let stats = h.stats();
    h.shutdown().await;
    drain.abort();
    (from, stats)
}

/// A device whose answer (70 ms) takes longer than its poll interval (50 ms) misses the slot
/// after each cycle: it is polled on every second slot, 100 ms apart, never back to back.
/// (Before, the missed slot was made up at once: a request every 70 ms, as fast as it answers.)
#[tokio::test]
async fn a_device_slower_than_its_interval_skips_the_slots_it_missed() {
    let b = slow_bank(70);
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let d = device("slow", &sim, 1, 50);
    let (from, stats) = run(vec![d], Duration::from_millis(500), Duration::from_secs(2)).await;
    let g = gaps(&b, from);
    assert!(g.len() >= 15, "too few polls: {g:?}");
    for gap in &g {
        assert!(
            *gap >= Duration::from_millis(90),
            "two polls {gap:?} apart; a missed 50 ms slot must be skipped (all gaps: {g:?})"
        );
        assert!(
            *gap <= Duration::from_millis(130),
            "a slot was lost beyond the missed one: {g:?}"
        );
    }
    let s = &stats[0];
    assert!(s.skipped >= 15 && s.overruns >= 15, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
}

/// Four devices behind one address, 30 ms per answer, every 100 ms: one connection cannot
/// serve them (120 ms of answers per 100 ms). With one connection the late devices skip slots
/// and no device is ever polled twice within half an interval; with `connections = 2` the
/// server sees two connections, two devices each, and every slot is kept.
#[tokio::test]
async fn connections_per_address_spread_the_devices_and_a_busy_link_skips_slots() {
    for connections in [1u16, 2] {
        let banks: Vec<SharedBank> = (0..4).map(|_| slow_bank(30)).collect();
        let units = banks
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u8 + 1, b.clone()));
        let sim = TcpSim::start(SimService::units(units)).await;
        let devices: Vec<DeviceConfig> = (0..4u8)
            .map(|i| {
                let mut d = device(&format!("unit-{}", i + 1), &sim, i + 1, 100);
                d.connections = (connections > 1).then_some(connections);
                d
            })
            .collect();
        let (from, stats) = run(devices, Duration::from_millis(500), Duration::from_secs(3)).await;
        assert_eq!(
            sim.connections.load(Ordering::SeqCst),
            u64::from(connections),
            "connections opened"
        );
        let skipped: u64 = stats.iter().map(|s| s.skipped).sum();
        for (b, s) in banks.iter().zip(&stats) {
            let g = gaps(b, from);
            assert!(g.len() >= 10, "{} starved: {g:?} {s:?}", s.device);
            let min = g.iter().min().copied().unwrap_or_default();
            assert!(
                min >= Duration::from_millis(50),
                "{}: polls {min:?} apart: {g:?}",
                s.device
            );
            assert_eq!(s.errors, 0, "{s:?}");
        }
        if connections == 1 {
            assert!(skipped > 0, "an overloaded link must skip slots: {stats:?}");
        } else {
            for (b, s) in banks.iter().zip(&stats) {
                let g = gaps(b, from);
                assert!(
                    g.len() >= 27,
                    "{}: slots lost with two connections: {g:?}",
                    s.device
                );
            }
            assert_eq!(skipped, 0, "{stats:?}");
        }
    }
}

#[test]
fn connections_is_checked_with_its_key() {
    let mut a = DeviceConfig::tcp("a", "127.0.0.1:502");
    a.connections = Some(2);
    let mut b = DeviceConfig::tcp("b", "127.0.0.1:502");
    b.unit_id = 2;
    b.connections = Some(3);
    let mut c = DeviceConfig::tcp("c", "127.0.0.1:503");
    c.connections = Some(0);
    let e = modbus::config::validate(&[a, b, c], "sources.modbus")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sources.modbus[1].connections")
            && e.contains("sources.modbus[0] at the same address 127.0.0.1:502 says 2"),
        "{e}"
    );
    assert!(
        e.contains("sources.modbus[2].connections: must be 1 to 64"),
        "{e}"
    );
}
