//! Fault injection for the Modbus source: a server killed and restarted, exceptions
//! (busy, illegal address in a merged request, device failure), garbage bytes, truncated
//! frames, a wrong transaction id and a wrong length.

use std::time::Duration;

use citygate::sources::modbus::config::{PointConfig, RegisterType};
use citygate::sources::modbus::{self, DeviceState};
use citygate_protocols::Quality;
use citygate_tests::modbus::{
    bank, fast_device, Behavior, Collector, RawReply, RawTcpSim, SimService, TcpSim,
};

const WAIT: Duration = Duration::from_secs(20);

fn hr(name: &str, address: u16) -> PointConfig {
    PointConfig::new(name, RegisterType::HoldingRegister, address)
}

#[tokio::test]
async fn a_killed_server_goes_offline_and_is_picked_up_again_after_restart() {
    let b = bank();
    b.lock().unwrap().holding[0] = 42;
    let mut sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("pump-1", sim.addr);
    d.points = vec![hr("level", 0)];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    let r = c.reading_where(WAIT, |_| true).await;
    assert_eq!((r.value, r.quality), (42.0, Quality::Good));

    sim.kill().await;
    // The last good value is repeated as stale, then the device is declared offline.
    let r = c.reading_where(WAIT, |r| r.quality == Quality::Stale).await;
    assert_eq!(r.value, 42.0);
    c.event(WAIT, "device_offline", "pump-1").await;
    c.reading_where(WAIT, |r| r.quality == Quality::CommError)
        .await;
    assert_eq!(
        h.device_stats("pump-1").unwrap().state,
        DeviceState::Offline
    );

    b.lock().unwrap().holding[0] = 43;
    sim.restart().await;
    c.event(WAIT, "device_online", "pump-1").await;
    let r = c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
    assert_eq!(r.value, 43.0);
    let s = h.device_stats("pump-1").unwrap();
    assert_eq!(s.state, DeviceState::Online);
    assert!(s.failed_cycles >= 2 && s.connects >= 2, "{s:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn busy_exceptions_are_retried_later_without_going_offline() {
    let b = bank();
    b.lock().unwrap().holding[0] = 5;
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("busy-1", sim.addr);
    d.points = vec![hr("level", 0)];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
    b.lock().unwrap().behavior = Behavior::BusyFor(4);
    let r = c.reading_where(WAIT, |r| r.quality == Quality::Stale).await;
    assert_eq!(r.value, 5.0);
    c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
    let s = h.device_stats("busy-1").unwrap();
    assert_eq!(s.exceptions, 4, "{s:?}");
    assert_eq!(s.failed_cycles, 0, "busy is not a link failure: {s:?}");
    let (_, events) = c.drain();
    assert!(
        events.iter().all(|e| e.kind != "device_offline"),
        "{events:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn an_illegal_address_in_a_merged_request_errors_only_that_point() {
    let b = bank();
    {
        let mut b = b.lock().unwrap();
        b.holding[4] = 4;
        b.holding[5] = 5;
        b.holding[6] = 6;
        b.behavior = Behavior::IllegalAt(5);
    }
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("int-3", sim.addr);
    d.points = vec![hr("a", 4), hr("b", 5), hr("c", 6)];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    let e = c.event(WAIT, "point_error", "int-3/b").await;
    assert!(e.message.contains("exception 02"), "{}", e.message);
    let mut good = std::collections::HashSet::new();
    while good.len() < 2 {
        let r = c.reading_where(WAIT, |_| true).await;
        match r.quantity.as_str() {
            "b" => assert_eq!(r.quality, Quality::CommError),
            q => {
                assert_eq!(r.quality, Quality::Good);
                good.insert(q.to_string());
            }
        }
    }
    // The device is fine, only one point is not.
    let s = h.device_stats("int-3").unwrap();
    assert_eq!(s.state, DeviceState::Online);
    assert_eq!(s.failed_cycles, 0);
    // One point_error event, not one per cycle.
    let start = s.cycles;
    while h.device_stats("int-3").unwrap().cycles < start + 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, events) = c.drain();
    assert!(events.iter().all(|e| e.kind != "point_error"), "{events:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_device_failure_exception_is_a_point_error() {
    let b = bank();
    b.lock().unwrap().behavior = Behavior::Exception(4);
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("x-1", sim.addr);
    d.points = vec![hr("level", 0)];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    let e = c.event(WAIT, "point_error", "x-1/level").await;
    assert!(e.message.contains("exception 04"), "{}", e.message);
    let r = c.reading_where(WAIT, |_| true).await;
    assert_eq!(r.quality, Quality::CommError);
    b.lock().unwrap().behavior = Behavior::Normal;
    b.lock().unwrap().holding[0] = 9;
    let r = c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
    assert_eq!(r.value, 9.0);
    h.shutdown().await;
}

#[tokio::test]
async fn garbage_truncated_and_mismatched_answers_are_recovered_from() {
    let b = bank();
    b.lock().unwrap().holding[0] = 77;
    b.lock().unwrap().holding[1] = 78;
    let script = vec![
        RawReply::Garbage,
        RawReply::Truncated,
        RawReply::WrongTransactionId,
        RawReply::WrongLength,
        RawReply::Garbage,
        RawReply::WrongTransactionId,
    ];
    let sim = RawTcpSim::start(b.clone(), script).await;
    let mut d = fast_device("raw-1", sim.addr);
    d.points = vec![hr("a", 0), hr("b", 1)];
    d.offline_after = 100;
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    // Every answer that is read as good carries the right values.
    let mut good = 0;
    while good < 10 {
        let r = c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
        let want = if r.quantity == "a" { 77.0 } else { 78.0 };
        assert_eq!(r.value, want, "{r:?}");
        good += 1;
    }
    let s = h.device_stats("raw-1").unwrap();
    assert!(s.served_ok(), "{s:?}");
    assert!(s.errors >= 6, "every broken answer counted: {s:?}");
    assert!(s.mismatches >= 2, "{s:?}");
    assert!(s.timeouts >= 1, "the truncated frame times out: {s:?}");
    assert!(s.connects >= 4, "each failure drops the connection: {s:?}");
    assert_eq!(s.state, DeviceState::Online);
    h.shutdown().await;
}

trait Served {
    fn served_ok(&self) -> bool;
}

impl Served for citygate::sources::modbus::DeviceStats {
    fn served_ok(&self) -> bool {
        self.requests > self.errors
    }
}

#[tokio::test]
async fn a_gateway_that_cannot_reach_its_device_takes_the_device_offline() {
    let b = bank();
    b.lock().unwrap().holding[0] = 8;
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("behind-gw", sim.addr);
    d.points = vec![hr("level", 0)];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
    b.lock().unwrap().behavior = Behavior::Exception(0x0B);
    let e = c.event(WAIT, "device_offline", "behind-gw").await;
    assert!(e.message.contains("exception 0B"), "{}", e.message);
    let s = h.device_stats("behind-gw").unwrap();
    assert_eq!(s.connects, 1, "the connection itself is fine: {s:?}");
    b.lock().unwrap().behavior = Behavior::Normal;
    c.event(WAIT, "device_online", "behind-gw").await;
    h.shutdown().await;
}
