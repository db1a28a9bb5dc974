//! The Modbus source against the tokio-modbus TCP server: decoding of every data type and
//! order, quality flags, deadband, verified writes.

use std::time::Duration;

use citygate::sources::modbus::config::{ByteOrder, DataType, PointConfig, RegisterType};
use citygate::sources::modbus::{self, DeviceState, Write, WriteError};
use citygate_protocols::{Quality, Unit};
use citygate_tests::modbus::{bank, fast_device, Behavior, Collector, SimService, TcpSim};

const WAIT: Duration = Duration::from_secs(20);

fn hr(name: &str, address: u16) -> PointConfig {
    PointConfig::new(name, RegisterType::HoldingRegister, address)
}

#[tokio::test]
async fn decodes_every_type_and_flags_out_of_range() {
    let b = bank();
    {
        let mut b = b.lock().unwrap();
        b.holding[0] = 1234;
        // 21.5f32 = 0x41AC0000 in CDAB: words 0x0000, 0x41AC.
        b.holding[1] = 0x0000;
        b.holding[2] = 0x41AC;
        b.holding[3] = 0xFFFE; // i16 -2
        b.holding[4] = 0b1000; // bit 3 set
        b.holding[10] = 0x4369; // "Ci"
        b.holding[11] = 0x7479; // "ty"
        b.input[7] = 250; // scaled by 0.1 → 25.0
        b.coils[5] = true;
        b.discrete[9] = true;
        // u32 0x00012345 in DCBA: bytes on the wire 45 23 01 00.
        b.holding[20] = 0x4523;
        b.holding[21] = 0x0100;
    }
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("flood-1", sim.addr);
    let mut level = hr("level", 1)
        .with_type(DataType::F32)
        .with_order(ByteOrder::Cdab);
    level.unit = Some(Unit::Metre);
    let mut limited = hr("raw", 0);
    limited.max = Some(1000.0);
    let mut bit = hr("alarm", 4).with_type(DataType::Bit);
    bit.bit = Some(3);
    let mut text = hr("model", 10).with_type(DataType::String);
    text.len = Some(2);
    let mut temp = PointConfig::new("temp", RegisterType::InputRegister, 7);
    temp.scale = 0.1;
    d.points = vec![
        limited,
        level,
        hr("delta", 3).with_type(DataType::I16),
        bit,
        text,
        temp,
        PointConfig::new("pump", RegisterType::Coil, 5),
        PointConfig::new("door", RegisterType::DiscreteInput, 9),
        hr("counter", 20)
            .with_type(DataType::U32)
            .with_order(ByteOrder::Dcba),
    ];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    let mut want: Vec<(&str, f64, Quality)> = vec![
        ("raw", 1234.0, Quality::OutOfRange),
        ("level", 21.5, Quality::Good),
        ("delta", -2.0, Quality::Good),
        ("alarm", 1.0, Quality::Good),
        ("temp", 25.0, Quality::Good),
        ("pump", 1.0, Quality::Good),
        ("door", 1.0, Quality::Good),
        ("counter", 0x12345 as f64, Quality::Good),
    ];
    while !want.is_empty() {
        let r = c.reading_where(WAIT, |_| true).await;
        assert_eq!(r.sensor, "flood-1");
        if let Some(i) = want.iter().position(|(q, _, _)| *q == r.quantity) {
            let (q, v, quality) = want.remove(i);
            assert_eq!((r.value, r.quality), (v, quality), "{q}");
            if q == "level" {
                assert_eq!(r.unit, Some(Unit::Metre));
            }
        }
    }
    let e = c.event(WAIT, "point_text", "flood-1/model").await;
    assert_eq!(e.message, "City");
    let s = h.device_stats("flood-1").unwrap();
    assert_eq!(s.state, DeviceState::Online);
    assert_eq!(s.errors, 0);
    // Holding 0..4, 10..11, 20..21 merge (gap ≤ 8) into one request; input, coil, discrete:
    // one each. So four requests per cycle.
    let cycles = s.cycles;
    assert!(cycles >= 1);
    assert!(
        s.requests <= cycles * 4 && s.requests > (cycles - 1) * 4,
        "{s:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn deadband_and_on_change_suppress_repeats() {
    let b = bank();
    b.lock().unwrap().holding[0] = 100;
    b.lock().unwrap().holding[1] = 7;
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("det-1", sim.addr);
    let mut occ = hr("occupancy", 0);
    occ.deadband = 5.0;
    let mut state = hr("state", 1);
    state.on_change = true;
    let every = hr("every", 2);
    d.points = vec![occ, state, every];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    // The first cycle reports all three, "every" last.
    c.reading_where(WAIT, |r| r.quantity == "every").await;
    // Let several cycles pass with small changes only.
    b.lock().unwrap().holding[0] = 103;
    let start = h.device_stats("det-1").unwrap().cycles;
    while h.device_stats("det-1").unwrap().cycles < start + 6 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (rs, _) = c.drain();
    let count = |q: &str| rs.iter().filter(|r| r.quantity == q).count();
    assert_eq!(count("occupancy"), 0, "within the deadband");
    assert_eq!(count("state"), 0, "unchanged");
    assert!(
        count("every") >= 5,
        "reported every poll: {}",
        count("every")
    );
    b.lock().unwrap().holding[0] = 110;
    b.lock().unwrap().holding[1] = 8;
    let r = c.reading_where(WAIT, |r| r.quantity == "occupancy").await;
    assert_eq!(r.value, 110.0);
    let r = c.reading_where(WAIT, |r| r.quantity == "state").await;
    assert_eq!(r.value, 8.0);
    h.shutdown().await;
}

#[tokio::test]
async fn writes_are_verified_by_reading_back() {
    let b = bank();
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("sig-1", sim.addr);
    d.poll_interval_ms = 200;
    let mut setpoint = hr("setpoint", 40)
        .with_type(DataType::F32)
        .with_order(ByteOrder::Cdab);
    setpoint.scale = 1.0;
    let mut green = hr("green_s", 50);
    green.scale = 0.1;
    d.points = vec![
        setpoint,
        green,
        PointConfig::new("flash", RegisterType::Coil, 3),
        PointConfig::new("temp", RegisterType::InputRegister, 1),
    ];
    let (rt, et, _c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    h.write(
        "sig-1",
        Write::Register {
            address: 7,
            value: 0xBEEF,
        },
    )
    .await
    .unwrap();
    h.write(
        "sig-1",
        Write::Registers {
            address: 8,
            values: vec![1, 2, 3],
        },
    )
    .await
    .unwrap();
    h.write(
        "sig-1",
        Write::Coil {
            address: 1,
            value: true,
        },
    )
    .await
    .unwrap();
    h.write(
        "sig-1",
        Write::Coils {
            address: 10,
            values: vec![true, false, true],
        },
    )
    .await
    .unwrap();
    h.write(
        "sig-1",
        Write::Point {
            name: "setpoint".into(),
            value: 21.5,
        },
    )
    .await
    .unwrap();
    h.write(
        "sig-1",
        Write::Point {
            name: "green_s".into(),
            value: 32.5,
        },
    )
    .await
    .unwrap();
    h.write(
        "sig-1",
        Write::Point {
            name: "flash".into(),
            value: 1.0,
        },
    )
    .await
    .unwrap();
    {
        let b = b.lock().unwrap();
        assert_eq!(b.holding[7], 0xBEEF);
        assert_eq!(&b.holding[8..11], &[1, 2, 3]);
        assert!(b.coils[1]);
        assert_eq!(&b.coils[10..13], &[true, false, true]);
        assert_eq!(&b.holding[40..42], &[0x0000, 0x41AC], "CDAB on the wire");
        assert_eq!(b.holding[50], 325);
        assert!(b.coils[3]);
    }
    let e = h
        .write(
            "sig-1",
            Write::Point {
                name: "temp".into(),
                value: 1.0,
            },
        )
        .await;
    assert!(matches!(e, Err(WriteError::NotWritable(_))), "{e:?}");
    let e = h
        .write(
            "sig-1",
            Write::Registers {
                address: 0,
                values: vec![0; 124],
            },
        )
        .await;
    assert!(matches!(e, Err(WriteError::BadLength { .. })), "{e:?}");
    let e = h
        .write(
            "nope",
            Write::Coil {
                address: 0,
                value: true,
            },
        )
        .await;
    assert_eq!(e, Err(WriteError::UnknownDevice));
    // A device that acknowledges but ignores writes fails verification.
    b.lock().unwrap().behavior = Behavior::DropWrites;
    let e = h
        .write(
            "sig-1",
            Write::Register {
                address: 7,
                value: 1,
            },
        )
        .await;
    assert!(matches!(e, Err(WriteError::VerifyFailed(_))), "{e:?}");
    // An exception is reported with its code.
    b.lock().unwrap().behavior = Behavior::Exception(2);
    let e = h
        .write(
            "sig-1",
            Write::Register {
                address: 7,
                value: 1,
            },
        )
        .await;
    assert_eq!(e, Err(WriteError::Exception(2)));
    h.shutdown().await;
}

#[tokio::test]
async fn invalid_config_is_refused_with_key_paths() {
    let (rt, et, _c) = Collector::new(10);
    let mut d = fast_device("x", "127.0.0.1:1".parse().unwrap());
    let mut p = hr("p", 0).with_type(DataType::String);
    p.len = None;
    d.points = vec![p];
    let e = modbus::spawn(vec![d], rt, et).unwrap_err();
    assert_eq!(e.0[0].key_path, "sources.modbus[0].points[0].len");
}

#[tokio::test]
async fn dropping_the_handle_stops_polling() {
    let b = bank();
    let sim = TcpSim::start(SimService::single(b.clone())).await;
    let mut d = fast_device("drop-1", sim.addr);
    d.points = vec![hr("level", 0)];
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    c.reading_where(WAIT, |_| true).await;
    drop(h);
    // Give an aborted task a moment to unwind, then no request may arrive any more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let served = b.lock().unwrap().requests;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.lock().unwrap().requests, served, "polling went on");
    // The readings channel is closed once the link task is gone.
    let closed =
        tokio::time::timeout(WAIT, async { while c.readings.recv().await.is_some() {} }).await;
    assert!(closed.is_ok());
}

#[tokio::test]
async fn units_behind_one_tcp_address_share_a_connection() {
    let (b1, b2) = (bank(), bank());
    b1.lock().unwrap().holding[0] = 1;
    b2.lock().unwrap().holding[0] = 2;
    let sim = TcpSim::start(SimService::units([(1, b1), (2, b2)])).await;
    let mut d1 = fast_device("gw-u1", sim.addr);
    d1.points = vec![hr("level", 0)];
    let mut d2 = d1.clone();
    d2.name = "gw-u2".into();
    d2.unit_id = 2;
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(vec![d1, d2], rt, et).unwrap();
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 || h.stats().iter().any(|s| s.cycles < 5) {
        let r = c.reading_where(WAIT, |_| true).await;
        assert_eq!(r.quality, Quality::Good, "{r:?}");
        seen.insert(r.sensor.clone(), r.value);
    }
    assert_eq!(seen["gw-u1"], 1.0);
    assert_eq!(seen["gw-u2"], 2.0);
    let connects: u64 = h.stats().iter().map(|s| s.connects).sum();
    assert_eq!(connects, 1, "{:?}", h.stats());
    h.shutdown().await;
}

#[tokio::test]
async fn polls_of_a_sources_devices_are_spread_over_the_interval() {
    // Four devices on four links at 1 s: the k-th first polls k/4 s after the start, instead
    // of all four at the same instant.
    let mut sims = Vec::new();
    let mut devices = Vec::new();
    for k in 0..4 {
        let sim = TcpSim::start(SimService::single(bank())).await;
        let mut d = fast_device(&format!("spread-{k}"), sim.addr);
        d.poll_interval_ms = 1000;
        d.points = vec![hr("level", 0)];
        devices.push(d);
        sims.push(sim);
    }
    let (rt, et, mut c) = Collector::new(1000);
    let h = modbus::spawn(devices, rt, et).unwrap();
    let mut first = std::collections::BTreeMap::new();
    while first.len() < 4 {
        let r = c.reading_where(WAIT, |_| true).await;
        first.entry(r.sensor.clone()).or_insert(r.time);
    }
    let times: Vec<f64> = first.values().copied().collect();
    for w in times.windows(2) {
        // 250 ms apart by schedule; half of that leaves room for a slow machine.
        assert!(w[1] - w[0] > 0.125, "polls not spread: {times:?}");
    }
    // Every cycle's start is timed; consecutive on-schedule cycles give a period jitter.
    while h.stats().iter().any(|s| s.cycles < 3) {
        c.reading_where(WAIT, |_| true).await;
    }
    for s in h.stats() {
        let timed: u64 = s.lateness.iter().sum();
        let periods: u64 = s.period_jitter.iter().sum();
        assert_eq!(timed, s.cycles, "{s:?}");
        assert_eq!(periods, s.cycles - 1, "{s:?}");
    }
    h.shutdown().await;
}
