//! The gateway reaches the real firmware logic over a real bus: virtual signal controllers and
//! hazard nodes (the firmware's register banks and RTU slave on the host) polled and commanded
//! by the gateway's Modbus source, over TCP and over RTU on a pseudo-terminal pair.

use std::time::Duration;

use citygate::config::Config;
use citygate::sim::field::SimulatedIntersection;
use citygate::sim::virtual_device::{SimulatedHazardNode, VirtualDevice};
use citygate::sources::modbus::{self, builtin, config::RtuConfig, DeviceConfig, Write};
use citygate_firmware::bank::HazardBank;
use citygate_firmware::hazard::{gas::GasConfig, rain::RainConfig, water::WaterConfig, HazardNode};
use citygate_protocols::registers::signal_controller as reg;
use citygate_tests::modbus::{Collector, PtyPair};

const TICK: Duration = Duration::from_millis(10);

/// The device with its built-in map resolved, as the gateway's config loader would.
fn with_map(mut d: DeviceConfig, map: &str) -> DeviceConfig {
    d.map = Some(map.into());
    let mut cfg: Config =
        Config::from_toml_str("[gateway]\nid = \"t\"\ndata_dir = \"d\"\n").unwrap();
    cfg.sources.modbus = vec![d];
    assert!(cfg
        .resolve_modbus_maps(std::path::Path::new("."))
        .is_empty());
    cfg.sources.modbus.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_commands_a_virtual_signal_controller_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vd =
        VirtualDevice::start(listener, 1, SimulatedIntersection::new(0).unwrap(), TICK).unwrap();
    let mut d = DeviceConfig::tcp("int-1", vd.addr.to_string());
    d.poll_interval_ms = 100;
    let d = with_map(d, builtin::SIGNAL_CONTROLLER);
    let (rtx, etx, mut got) = Collector::new(4096);
    let handle = modbus::spawn(vec![d], rtx, etx).unwrap();

    let groups = got
        .reading_where(Duration::from_secs(10), |r| r.quantity == "group_count")
        .await;
    assert_eq!(groups.value, 2.0);
    // After start-up the controller runs; the gateway asks for stage 2 (1-based on the wire).
    got.reading_where(Duration::from_secs(20), |r| {
        r.quantity == "current_stage" && r.value == 1.0
    })
    .await;
    let mut seq = 0u16;
    let mut seen_stage_2 = false;
    for _ in 0..40 {
        seq += 1;
        handle
            .write(
                "int-1",
                Write::Registers {
                    address: reg::HR_REQUESTED_STAGE,
                    values: vec![2, 0, 0, seq],
                },
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if vd.with(|c| c.bank.controller().status().current_stage) == Some(1) {
            seen_stage_2 = true;
            break;
        }
    }
    assert!(seen_stage_2, "the controller never reached stage 2");
    got.reading_where(Duration::from_secs(10), |r| {
        r.quantity == "current_stage" && r.value == 2.0
    })
    .await;
    // The firmware obeys only through its safe transition: stage 1's group was never green
    // together with stage 2's.
    assert_eq!(vd.with(|c| c.bank.controller().status().fault), None);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reads_a_virtual_hazard_node_over_rtu() {
    let pty = PtyPair::new().await;
    let node = HazardNode::new(
        WaterConfig::default(),
        RainConfig::default(),
        GasConfig::default(),
        0,
    );
    let device = SimulatedHazardNode {
        bank: HazardBank::new(node),
        mount_mm: 5_000,
        water_level_m: Box::new(|_| 1.234),
    };
    let _vd = VirtualDevice::start_rtu(&pty.b, 19_200, 3, device, TICK).unwrap();
    let rtu = RtuConfig {
        port: pty.a.to_string_lossy().into_owned(),
        baud: 19_200,
        parity: Default::default(),
        data_bits: 8,
        stop_bits: 1,
        guard_ms: None,
    };
    let mut d = DeviceConfig::rtu("flood-9", rtu, 3);
    d.poll_interval_ms = 100;
    d.timeout_ms = 500;
    let d = with_map(d, builtin::HAZARD_NODE);
    let (rtx, etx, mut got) = Collector::new(4096);
    let handle = modbus::spawn(vec![d], rtx, etx).unwrap();
    let level = got
        .reading_where(Duration::from_secs(20), |r| {
            r.quantity == "water_level" && r.value > 1.0
        })
        .await;
    assert_eq!(level.sensor, "flood-9");
    assert!((level.value - 1.234).abs() < 0.01, "{}", level.value);
    assert_eq!(level.unit, Some(citygate_protocols::Unit::Metre));
    handle.shutdown().await;
}
