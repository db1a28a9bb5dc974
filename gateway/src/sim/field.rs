//! The demo's field: simulated intersections and a hazard node running the real firmware as
//! virtual Modbus TCP devices on loopback, with vehicles arriving on their detector loops from
//! a deterministic demand profile and water rising and falling under the hazard node's sensor.

use std::time::Duration;

use citygate_firmware::bank::{HazardBank, SignalBank};
use citygate_firmware::hazard::gas::GasConfig;
use citygate_firmware::hazard::rain::RainConfig;
use citygate_firmware::hazard::water::WaterConfig;
use citygate_firmware::hazard::HazardNode;
use citygate_firmware::modbus::RegisterBank;
use citygate_firmware::signal::demo::crossroads;
use citygate_firmware::signal::SignalController;
use tokio::net::TcpListener;

use super::sensors::{vehicles, water_level, DETECTORS, FLOOD_STATION, INTERSECTIONS};
use super::virtual_device::{Device, SimulatedHazardNode, VirtualDevice};
use crate::sources::modbus::builtin;
use crate::sources::modbus::config::DeviceConfig;

/// How long a passing vehicle occupies a detector loop.
const OCCUPY_MS: u64 = 600;

/// A signal controller whose detector loops see the demo's traffic.
pub struct SimulatedIntersection {
    pub bank: SignalBank,
    /// Index into [`INTERSECTIONS`], for the demand profile.
    pub index: usize,
    /// Per detector: until when the loop is occupied.
    busy_until: [u64; 4],
    /// Next whole second whose arrivals are still to place.
    next_second: u64,
}

impl SimulatedIntersection {
    pub fn new(index: usize) -> Option<Self> {
        let controller = SignalController::new(crossroads()?, 0).ok()?;
        Some(SimulatedIntersection {
            bank: SignalBank::new(controller),
            index,
            busy_until: [0; 4],
            next_second: 0,
        })
    }
}

impl Device for SimulatedIntersection {
    fn bank(&mut self) -> &mut dyn RegisterBank {
        &mut self.bank
    }

    fn tick(&mut self, now_ms: u64) {
        // Vehicles of each second arrive spread over it, one loop occupancy each.
        while self.next_second * 1000 <= now_ms {
            let t = self.next_second;
            for d in 0..DETECTORS.len() {
                let n = u64::from(vehicles(self.index, d, t)).min(1000 / (OCCUPY_MS + 100));
                if n > 0 {
                    self.busy_until[d] = t * 1000 + n * (OCCUPY_MS + 100);
                }
            }
            self.next_second += 1;
        }
        let second_start = now_ms - now_ms % 1000;
        for (d, until) in self.busy_until.iter().enumerate() {
            // Within the busy span, a loop is occupied for OCCUPY_MS out of every 700 ms.
            let occupied =
                now_ms < *until && (now_ms - second_start) % (OCCUPY_MS + 100) < OCCUPY_MS;
            self.bank
                .controller_mut()
                .detectors_mut()
                .sample(d, occupied, now_ms);
        }
        self.bank.tick(now_ms);
    }
}

/// The running demo field.
pub struct Field {
    pub intersections: Vec<VirtualDevice<SimulatedIntersection>>,
    pub hazard: VirtualDevice<SimulatedHazardNode>,
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Field").finish()
    }
}

const TICK: Duration = Duration::from_millis(20);

impl Field {
    /// Starts every virtual device on a free loopback port.
    pub async fn start() -> std::io::Result<Field> {
        let mut intersections = Vec::new();
        for i in 0..INTERSECTIONS.len() {
            let device = SimulatedIntersection::new(i)
                .ok_or_else(|| std::io::Error::other("the demo intersection config is invalid"))?;
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            intersections.push(VirtualDevice::start(listener, 1, device, TICK)?);
        }
        let node = HazardNode::new(
            WaterConfig::default(),
            RainConfig::default(),
            GasConfig::default(),
            0,
        );
        let hazard_device = SimulatedHazardNode {
            bank: HazardBank::new(node),
            mount_mm: WaterConfig::default().mount_height_mm,
            water_level_m: Box::new(|ms| water_level(ms / 1000) + 0.02),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let hazard = VirtualDevice::start(listener, 1, hazard_device, TICK)?;
        Ok(Field {
            intersections,
            hazard,
        })
    }

    /// The `[[sources.modbus]]` devices that reach this field.
    pub fn devices(&self) -> Vec<DeviceConfig> {
        let mut out: Vec<DeviceConfig> = self
            .intersections
            .iter()
            .zip(INTERSECTIONS)
            .map(|(v, name)| {
                let mut d = DeviceConfig::tcp(name, v.addr.to_string());
                d.map = Some(builtin::SIGNAL_CONTROLLER.into());
                d.poll_interval_ms = 500;
                d
            })
            .collect();
        let mut h = DeviceConfig::tcp(FLOOD_STATION, self.hazard.addr.to_string());
        h.map = Some(builtin::HAZARD_NODE.into());
        out.push(h);
        out
    }
}
