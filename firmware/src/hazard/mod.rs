//! The hazard sensor node: water level ([`water`]), rain ([`rain`]) and gas ([`gas`])
//! channels with their drivers and [`filter`]s, gathered in a [`HazardNode`] and sampled by
//! the [`station`] driver.

pub mod filter;
pub mod gas;
pub mod rain;
pub mod station;
pub mod water;

pub use gas::{Ads1115, GasConfig, GasSensor, ADS1115_ADDRESS};
pub use rain::{RainConfig, RainGauge, RainGaugeInput};
pub use station::HazardStation;
pub use water::{MaxSonar, WaterConfig, WaterLevel, MAXSONAR_ADDRESS};

/// The three channels of a hazard node.
#[derive(Debug, Clone)]
pub struct HazardNode {
    /// Water level.
    pub water: WaterLevel,
    /// Rain gauge.
    pub rain: RainGauge,
    /// Gas sensor.
    pub gas: GasSensor,
}

impl HazardNode {
    /// A node with the given channel settings, at `now`.
    pub fn new(water: WaterConfig, rain: RainConfig, gas: GasConfig, now: u64) -> Self {
        HazardNode {
            water: WaterLevel::new(water),
            rain: RainGauge::new(rain, now),
            gas: GasSensor::new(gas),
        }
    }

    /// All status bits (`citygate_protocols::registers::hazard_node::STATUS_*`).
    pub fn status(&self) -> u16 {
        self.water.status() | self.rain.status() | self.gas.status()
    }
}
