//! The Modbus source against an independent peer: pymodbus (tests/py/modbus_peer.py), over
//! TCP and over RTU on a socat pseudo-terminal pair. The interpreter comes from
//! `CITYGATE_PYTHON` or `<repo>/.venv/bin/python`; see `citygate_tests::modbus::python`.

use std::time::Duration;

use citygate::sources::modbus::config::{
    DataType, DeviceConfig, Parity, PointConfig, RegisterType, RtuConfig,
};
use citygate::sources::modbus::{self, DeviceState, Write};
use citygate_protocols::Quality;
use citygate_tests::modbus::{
    fast_device, free_port, python, start_peer, wait_listening, Collector, PtyPair,
};

const WAIT: Duration = Duration::from_secs(30);

/// The peer's register image (see the script): holding w = 1000 + w, input w = 2000 + w,
/// coil/discrete b = (b % 3 == 0), holding 100..101 = 21.5f32 ABCD, holding 195..199 (the
/// last registers it serves) = "CITYGATE-7".
fn peer_points() -> Vec<PointConfig> {
    vec![
        PointConfig::new("h0", RegisterType::HoldingRegister, 0),
        PointConfig::new("h7", RegisterType::HoldingRegister, 7),
        PointConfig::new("i3", RegisterType::InputRegister, 3),
        PointConfig::new("c3", RegisterType::Coil, 3),
        PointConfig::new("c4", RegisterType::Coil, 4),
        PointConfig::new("d6", RegisterType::DiscreteInput, 6),
        PointConfig::new("f", RegisterType::HoldingRegister, 100).with_type(DataType::F32),
    ]
}

async fn check_peer_values(c: &mut Collector, sensor: &str) {
    let mut want = vec![
        ("h0", 1000.0),
        ("h7", 1007.0),
        ("i3", 2003.0),
        ("c3", 1.0),
        ("c4", 0.0),
        ("d6", 1.0),
        ("f", 21.5),
    ];
    while !want.is_empty() {
        let r = c.reading_where(WAIT, |r| r.sensor == sensor).await;
        assert_eq!(r.quality, Quality::Good, "{r:?}");
        if let Some(i) = want.iter().position(|(q, _)| *q == r.quantity) {
            let (q, v) = want.remove(i);
            assert_eq!(r.value, v, "{q}");
        }
    }
}

#[tokio::test]
async fn reads_and_writes_a_pymodbus_tcp_server() {
    let Some(py) = python() else { return };
    let port = free_port();
    let _peer = start_peer(&py, &["tcp", &port.to_string()]).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    let mut d = fast_device("py-tcp", addr);
    d.timeout_ms = 2000;
    d.points = peer_points();
    let (rt, et, mut c) = Collector::new(10_000);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    check_peer_values(&mut c, "py-tcp").await;
    h.write(
        "py-tcp",
        Write::Registers {
            address: 7,
            values: vec![4242, 4343],
        },
    )
    .await
    .unwrap();
    h.write(
        "py-tcp",
        Write::Coil {
            address: 4,
            value: true,
        },
    )
    .await
    .unwrap();
    let r = c
        .reading_where(WAIT, |r| r.quantity == "h7" && r.value == 4242.0)
        .await;
    assert_eq!(r.quality, Quality::Good);
    c.reading_where(WAIT, |r| r.quantity == "c4" && r.value == 1.0)
        .await;
    assert_eq!(h.device_stats("py-tcp").unwrap().state, DeviceState::Online);
    h.shutdown().await;
}

#[tokio::test]
async fn reads_two_pymodbus_rtu_slaves_and_reports_a_missing_one() {
    let Some(py) = python() else { return };
    let pty = PtyPair::new().await;
    let _peer = start_peer(&py, &["rtu", &pty.b.to_string_lossy(), "1,2"]).await;
    let rtu = RtuConfig {
        port: pty.a.to_string_lossy().into_owned(),
        baud: 19200,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        guard_ms: None,
    };
    let dev = |name: &str, unit: u8| {
        let mut d = DeviceConfig::rtu(name, rtu.clone(), unit);
        d.poll_interval_ms = 100;
        d.timeout_ms = 500;
        d.backoff_min_ms = 100;
        d.backoff_max_ms = 400;
        d.offline_after = 2;
        d.probe_interval_ms = 2000;
        d.points = peer_points();
        d
    };
    let devices = vec![dev("py-1", 1), dev("py-2", 2), dev("py-9", 9)];
    let (rt, et, mut c) = Collector::new(10_000);
    let h = modbus::spawn(devices, rt, et).unwrap();
    check_peer_values(&mut c, "py-1").await;
    check_peer_values(&mut c, "py-2").await;
    // Unit 9 is not on the bus. A real bus is silent (device_offline); pymodbus 3.16.1 answers
    // for missing units with exception 04 (a point_error). Either way the gateway must say so
    // while the two real slaves keep answering.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let e = tokio::time::timeout_at(deadline, c.events.recv())
            .await
            .expect("no event about the missing unit 9")
            .expect("event channel open");
        if e.kind == "device_offline" && e.source == "py-9"
            || e.kind == "point_error" && e.source.starts_with("py-9/")
        {
            break;
        }
    }
    h.write(
        "py-2",
        Write::Register {
            address: 0,
            value: 7,
        },
    )
    .await
    .unwrap();
    let r = c
        .reading_where(WAIT, |r| {
            r.sensor == "py-2" && r.quantity == "h0" && r.value == 7.0
        })
        .await;
    assert_eq!(r.quality, Quality::Good);
    let s = h.stats();
    assert_eq!(s[0].failed_cycles, 0, "{:?}", s[0]);
    assert_eq!(s[1].failed_cycles, 0, "{:?}", s[1]);
    h.shutdown().await;
}

/// A string point's `len` counts registers: `len = 5` over the five registers holding
/// `CITYGATE-7` reads all ten characters (counting bytes read `CITYG`), and the point reads no
/// register past them (the peer refuses addresses past 199, which would be a point error).
#[tokio::test]
async fn string_points_read_len_registers_from_a_pymodbus_server() {
    let Some(py) = python() else { return };
    let port = free_port();
    let _peer = start_peer(&py, &["tcp", &port.to_string()]).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    let mut d = fast_device("py-text", addr);
    d.timeout_ms = 2000;
    let mut text =
        PointConfig::new("model", RegisterType::HoldingRegister, 195).with_type(DataType::String);
    text.len = Some(5);
    d.points = vec![text];
    let (rt, et, mut c) = Collector::new(100);
    let h = modbus::spawn(vec![d], rt, et).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let e = loop {
        let e = tokio::time::timeout_at(deadline, c.events.recv())
            .await
            .expect("no point_text event from the string point")
            .expect("event channel open");
        assert_ne!(e.kind, "point_error", "{e:?}");
        if e.kind == "point_text" {
            break e;
        }
    };
    assert_eq!(
        (e.source.as_str(), e.message.as_str()),
        ("py-text/model", "CITYGATE-7")
    );
    let s = h.device_stats("py-text").unwrap();
    assert_eq!((s.state, s.errors), (DeviceState::Online, 0), "{s:?}");
    h.shutdown().await;
}
