//! Simulated MQTT field sensors for `citygate demo`: traffic detectors publishing SenML
//! counts and occupancy, and a flood station publishing plain JSON water levels. The values
//! follow a deterministic demand profile so that a demo run is reproducible.

use std::time::Duration;

use citygate_protocols::{senml, Quality, Reading, Unit};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::watch;

use crate::mqtt::BrokerUrl;

/// The simulated intersections and their detectors.
pub const INTERSECTIONS: [&str; 3] = ["int-1", "int-2", "int-3"];
pub const DETECTORS: [&str; citygate_firmware::signal::demo::DETECTORS] =
    ["det-n", "det-e", "det-s", "det-w"];
/// The flood station on Modbus (the firmware's hazard node) and the one that publishes over MQTT.
pub const FLOOD_STATION: &str = "flood-1";
pub const MQTT_FLOOD_STATION: &str = "flood-2";

/// Vehicles counted by one detector in one second at simulated second `t`: a demand wave
/// over two minutes, heavier on the north and south approaches.
pub fn vehicles(intersection: usize, detector: usize, t: u64) -> u32 {
    let phase = (t + 17 * intersection as u64) % 120;
    let wave = if phase < 60 { phase } else { 120 - phase };
    let weight = if detector.is_multiple_of(2) { 3 } else { 1 };
    ((wave * weight + (t * 7 + detector as u64 * 13) % 11) / 30) as u32
}

/// Water level at simulated second `t`: rises from 0.4 m to 2.2 m over two minutes and
/// recedes over the next two, then repeats.
pub fn water_level(t: u64) -> f64 {
    let phase = (t % 240) as f64;
    let rise = if phase < 120.0 { phase } else { 240.0 - phase };
    0.4 + 1.8 * rise / 120.0
}

/// The SenML payload of one detector at second `t`.
pub fn detector_payload(intersection: usize, detector: usize, t: u64, now: f64) -> Vec<u8> {
    let n = vehicles(intersection, detector, t);
    let readings = [
        Reading {
            sensor: DETECTORS[detector].to_string(),
            quantity: "count".into(),
            value: f64::from(n),
            unit: Some(Unit::Count),
            time: now,
            quality: Quality::Good,
        },
        Reading {
            sensor: DETECTORS[detector].to_string(),
            quantity: "occupancy".into(),
            value: f64::from((n * 9).min(100)),
            unit: Some(Unit::Percent),
            time: now,
            quality: Quality::Good,
        },
    ];
    senml::encode(&senml::from_readings(&readings))
}

/// Publishes every simulated sensor once a second until `stop` turns true.
pub async fn run(local: BrokerUrl, mut stop: watch::Receiver<bool>) {
    let (client, mut eventloop) = AsyncClient::new(local.options("citygate-demo-sensors", 30), 256);
    let poller = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut t = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now = crate::clock::wall_s();
        for (i, int) in INTERSECTIONS.iter().enumerate() {
            for (d, det) in DETECTORS.iter().enumerate() {
                let topic = format!("field/{int}/{det}/senml");
                let _ = client
                    .publish(
                        topic,
                        QoS::AtLeastOnce,
                        false,
                        detector_payload(i, d, t, now),
                    )
                    .await;
            }
        }
        let level = serde_json::json!({"level": water_level(t), "ts": now}).to_string();
        let _ = client
            .publish(
                format!("field/{MQTT_FLOOD_STATION}/water"),
                QoS::AtLeastOnce,
                false,
                level,
            )
            .await;
        t += 1;
    }
    poller.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_and_flood_profiles_vary() {
        let counts: Vec<u32> = (0..120).map(|t| vehicles(0, 0, t)).collect();
        assert!(counts.iter().max() > counts.iter().min());
        assert!((water_level(0) - 0.4).abs() < 1e-9);
        assert!((water_level(120) - 2.2).abs() < 1e-9);
        assert!(water_level(200) < water_level(120));
    }

    #[test]
    fn detector_payloads_are_senml() {
        let p = detector_payload(0, 1, 5, 1_700_000_000.0);
        let rs = senml::readings(&senml::decode(&p).unwrap(), 0.0, Default::default()).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].time, 1_700_000_000.0);
    }
}
