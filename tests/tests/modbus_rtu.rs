//! The Modbus source on an RTU bus: a socat pseudo-terminal pair, the tokio-modbus RTU
//! server as several slaves on the far end. A dead slave must not starve its neighbours.

use std::time::Duration;

use citygate::sources::modbus::config::{
    ByteOrder, DataType, DeviceConfig, Parity, PointConfig, RegisterType, RtuConfig,
};
use citygate::sources::modbus::{self, DeviceState, Write};
use citygate_protocols::Quality;
use citygate_tests::modbus::{bank, start_rtu_sim, Behavior, Collector, PtyPair, SimService};

const WAIT: Duration = Duration::from_secs(20);

fn rtu_device(name: &str, port: &std::path::Path, unit: u8) -> DeviceConfig {
    let mut d = DeviceConfig::rtu(
        name,
        RtuConfig {
            port: port.to_string_lossy().into_owned(),
            baud: 19200,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
            guard_ms: None,
        },
        unit,
    );
    d.poll_interval_ms = 100;
    d.timeout_ms = 150;
    d.backoff_min_ms = 100;
    d.backoff_max_ms = 400;
    d.offline_after = 2;
    d.probe_interval_ms = 1000;
    d.points = vec![
        PointConfig::new("level", RegisterType::HoldingRegister, 0),
        PointConfig::new("flow", RegisterType::InputRegister, 2)
            .with_type(DataType::F32)
            .with_order(ByteOrder::Badc),
    ];
    d
}

#[tokio::test]
async fn a_dead_slave_does_not_starve_two_healthy_ones_on_a_shared_bus() {
    let pty = PtyPair::new().await;
    let (b1, b2, b3) = (bank(), bank(), bank());
    b1.lock().unwrap().holding[0] = 11;
    b2.lock().unwrap().holding[0] = 22;
    // 1.5f32 = 0x3FC00000; BADC on the wire: C0 3F 00 00.
    b1.lock().unwrap().input[2] = 0xC03F;
    b3.lock().unwrap().behavior = Behavior::Silent;
    let _sim = start_rtu_sim(
        &pty.b,
        19200,
        SimService::units([(1, b1.clone()), (2, b2.clone()), (3, b3.clone())]),
    );
    let devices = vec![
        rtu_device("slave-1", &pty.a, 1),
        rtu_device("slave-2", &pty.a, 2),
        rtu_device("slave-3", &pty.a, 3),
    ];
    let (rt, et, mut c) = Collector::new(10_000);
    let h = modbus::spawn(devices, rt, et).unwrap();
    let r = c
        .reading_where(WAIT, |r| r.sensor == "slave-1" && r.quantity == "flow")
        .await;
    assert_eq!((r.value, r.quality), (1.5, Quality::Good));
    c.event(WAIT, "device_offline", "slave-3").await;

    // Measure over a window: the healthy slaves keep (most of) their poll rate. Ideal is one
    // cycle per 100 ms; the dead slave costs at most one 150 ms timeout per probe (1 s).
    let before: Vec<_> = h.stats();
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let after: Vec<_> = h.stats();
    for i in 0..2 {
        let cycles = after[i].cycles - before[i].cycles;
        assert!(
            cycles >= 15,
            "{} polled only {cycles} times in {window:?}: {:?}",
            after[i].device,
            after[i]
        );
        // A loaded test machine may cost a healthy slave an odd timeout; starvation would
        // fail most of its cycles.
        let failed = after[i].failed_cycles - before[i].failed_cycles;
        assert!(
            failed * 10 <= cycles,
            "{failed} of {cycles} cycles failed: {:?}",
            after[i]
        );
        assert_eq!(after[i].state, DeviceState::Online);
    }
    let dead = &after[2];
    assert_eq!(dead.state, DeviceState::Offline);
    let probes = dead.requests - before[2].requests;
    assert!(probes <= 5, "offline slave probed too often: {probes}");
    // No healthy reading ever took another slave's value.
    let (readings, _) = c.drain();
    for r in readings.iter().filter(|r| r.quantity == "level") {
        match (r.sensor.as_str(), r.quality) {
            ("slave-1", Quality::Good) => assert_eq!(r.value, 11.0),
            ("slave-2", Quality::Good) => assert_eq!(r.value, 22.0),
            ("slave-3", q) => assert_ne!(q, Quality::Good),
            _ => {}
        }
    }

    // The dead slave comes back.
    b3.lock().unwrap().holding[0] = 33;
    b3.lock().unwrap().behavior = Behavior::Normal;
    c.event(WAIT, "device_online", "slave-3").await;
    let r = c
        .reading_where(WAIT, |r| r.sensor == "slave-3" && r.quantity == "level")
        .await;
    assert_eq!((r.value, r.quality), (33.0, Quality::Good));

    // Writes go over the bus between polls, verified.
    h.write(
        "slave-2",
        Write::Registers {
            address: 5,
            values: vec![7, 8],
        },
    )
    .await
    .unwrap();
    assert_eq!(&b2.lock().unwrap().holding[5..7], &[7, 8]);
    h.shutdown().await;
}

#[tokio::test]
async fn a_late_rtu_reply_is_never_taken_as_the_next_answer() {
    let pty = PtyPair::new().await;
    let b = bank();
    b.lock().unwrap().holding[0] = 1;
    b.lock().unwrap().holding[1] = 2;
    // Answers arrive 50 ms after the 150 ms timeout: each is late, and the next request has
    // the same slave, function code and length.
    b.lock().unwrap().behavior = Behavior::Delay(Duration::from_millis(200));
    let _sim = start_rtu_sim(&pty.b, 19200, SimService::units([(1, b.clone())]));
    let mut d = rtu_device("late-1", &pty.a, 1);
    d.points = vec![
        PointConfig::new("a", RegisterType::HoldingRegister, 0),
        PointConfig::new("b", RegisterType::HoldingRegister, 1),
    ];
    d.max_gap = 0;
    d.max_registers_per_request = 1; // two requests per cycle, same function code
    d.offline_after = 1000;
    // A guard long enough to hold on a loaded test machine: replies up to 300 ms after the
    // timeout are discarded.
    if let Some(r) = d.rtu.as_mut() {
        r.guard_ms = Some(300);
    }
    let (rt, et, mut c) = Collector::new(10_000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    // Let several timeouts happen.
    while h.device_stats("late-1").unwrap().timeouts < 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.lock().unwrap().behavior = Behavior::Normal;
    let mut seen = 0;
    while seen < 6 {
        let r = c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
        let want = if r.quantity == "a" { 1.0 } else { 2.0 };
        assert_eq!(
            r.value, want,
            "a reply was given to the wrong request: {r:?}"
        );
        seen += 1;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn exceptions_over_rtu_are_classified_like_over_tcp() {
    let pty = PtyPair::new().await;
    let (b1, b2) = (bank(), bank());
    b1.lock().unwrap().holding[0] = 3;
    b1.lock().unwrap().behavior = Behavior::BusyFor(3);
    b2.lock().unwrap().behavior = Behavior::Exception(2);
    let _sim = start_rtu_sim(
        &pty.b,
        19200,
        SimService::units([(1, b1.clone()), (2, b2.clone())]),
    );
    let mut d1 = rtu_device("busy-1", &pty.a, 1);
    d1.points.truncate(1);
    let mut d2 = rtu_device("bad-2", &pty.a, 2);
    d2.points.truncate(1);
    let (rt, et, mut c) = Collector::new(10_000);
    let h = modbus::spawn(vec![d1, d2], rt, et).unwrap();
    let e = c.event(WAIT, "point_error", "bad-2/level").await;
    assert!(e.message.contains("exception 02"), "{}", e.message);
    let r = c
        .reading_where(WAIT, |r| r.sensor == "busy-1" && r.quality == Quality::Good)
        .await;
    assert_eq!(r.value, 3.0);
    let s = h.stats();
    assert_eq!(s[0].exceptions, 3, "{:?}", s[0]);
    assert_eq!(s[0].failed_cycles, 0, "{:?}", s[0]);
    assert_eq!(
        s[1].failed_cycles, 0,
        "an exception is an answer: {:?}",
        s[1]
    );
    assert_eq!(s[1].state, DeviceState::Online);
    h.shutdown().await;
}

#[tokio::test]
async fn garbage_truncated_and_foreign_rtu_frames_are_recovered_from() {
    use citygate_tests::modbus::{start_raw_rtu_sim, RawReply};
    use std::sync::atomic::Ordering;

    let pty = PtyPair::new().await;
    let b = bank();
    b.lock().unwrap().holding[0] = 500;
    b.lock().unwrap().holding[1] = 501;
    let script = vec![
        RawReply::Garbage,
        RawReply::Truncated,
        RawReply::WrongTransactionId,
        RawReply::WrongLength,
        RawReply::Garbage,
    ];
    let sim = start_raw_rtu_sim(&pty.b, 4, b.clone(), script);
    let mut d = rtu_device("raw-4", &pty.a, 4);
    d.points = vec![
        PointConfig::new("a", RegisterType::HoldingRegister, 0),
        PointConfig::new("b", RegisterType::HoldingRegister, 1),
    ];
    d.offline_after = 100;
    let (rt, et, mut c) = Collector::new(10_000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    let mut good = 0;
    while good < 10 {
        let r = c.reading_where(WAIT, |r| r.quality == Quality::Good).await;
        let want = if r.quantity == "a" { 500.0 } else { 501.0 };
        assert_eq!(r.value, want, "{r:?}");
        good += 1;
    }
    assert!(sim.served.load(Ordering::SeqCst) >= 6);
    let s = h.device_stats("raw-4").unwrap();
    assert!(s.errors >= 5, "every broken answer counted: {s:?}");
    assert_eq!(s.state, DeviceState::Online);
    h.shutdown().await;
}

#[tokio::test]
async fn the_inter_frame_silence_is_kept() {
    use citygate_tests::modbus::start_raw_rtu_sim;

    let pty = PtyPair::new().await;
    let b = bank();
    // At 1200 baud, 8N1 (10 bits a character), 3.5 characters last 29.2 ms. A pty has no
    // baud rate of its own, so any silence seen on the far end is the gateway's.
    let sim = start_raw_rtu_sim(&pty.b, 5, b.clone(), Vec::new());
    let mut d = rtu_device("slow-5", &pty.a, 5);
    if let Some(r) = d.rtu.as_mut() {
        r.baud = 1200;
    }
    d.timeout_ms = 1000;
    d.max_gap = 0;
    d.max_registers_per_request = 1;
    d.points = (0..4)
        .map(|a| PointConfig::new(format!("p{a}"), RegisterType::HoldingRegister, a))
        .collect();
    let (rt, et, _c) = Collector::new(10_000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    while sim.gaps.lock().unwrap().len() < 12 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gaps = sim.gaps.lock().unwrap().clone();
    let min = gaps.iter().min().copied().unwrap();
    assert!(
        min >= Duration::from_micros(29_000),
        "a frame followed the previous one after only {min:?}: {gaps:?}"
    );
    h.shutdown().await;
}
