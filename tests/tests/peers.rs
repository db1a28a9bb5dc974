//! Live coordination between gateways: a gateway whose look-ahead intersection has a neighbour
//! in another gateway publishes its planned outflows on `citygate/v1/<gw>/peer/outflow` on the
//! local broker, as the platoon its detectors see is scheduled to leave towards the neighbour.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use citygate::signals::lookahead::peer;
use citygate_tests::*;

const INTERSECTION: &str = r#"
[[intersection]]
id = "int-a"
controller = "look_ahead"
conflicts = [["N", "E"]]
neighbours = [{ intersection = "int-b", via_group = "E", travel_s = 20.0 }]

[[intersection.signal_group]]
id = "N"
approach = "north"
movements = ["through"]
lanes = ["n_in_0"]
min_green_s = 5.0
max_green_s = 30.0
yellow_s = 3.0

[[intersection.signal_group]]
id = "E"
approach = "east"
movements = ["through"]
lanes = ["e_in_0"]
min_green_s = 5.0
max_green_s = 30.0
yellow_s = 3.0

[[intersection.stage]]
id = "N"
green = ["N"]

[[intersection.stage]]
id = "E"
green = ["E"]

[[intersection.intergreen]]
from = "N"
to = "E"
seconds = 5.0

[[intersection.intergreen]]
from = "E"
to = "N"
seconds = 5.0

[[intersection.detector]]
id = "det-e-adv"
kind = "advance"
lanes = ["e_in_0"]
distance_m = 100.0
groups = ["E"]
source = { sensor = "det-e-adv", quantity = "level", interval_s = 1.0 }

[[intersection.detector]]
id = "det-e"
kind = "stop_bar"
lanes = ["e_in_0"]
distance_m = 2.0
groups = ["E"]
source = { sensor = "det-e", quantity = "level", interval_s = 1.0 }

[[intersection.detector]]
id = "det-n"
kind = "stop_bar"
lanes = ["n_in_0"]
distance_m = 2.0
groups = ["N"]
source = { sensor = "det-n", quantity = "level", interval_s = 1.0 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_outflows_towards_a_neighbour_go_out_on_the_peer_topic() {
    let data = tempfile::tempdir().unwrap();
    let local = free_port();
    let text = gateway_config("gw-a", local, "mqtt://127.0.0.1:1", data.path(), 60) + INTERSECTION;
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    let flows = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&flows);
    subscribe_on_thread(
        local,
        "peer-watch",
        "citygate/v1/+/peer/#",
        move |topic, payload| {
            sink.lock().unwrap().push((
                topic.to_string(),
                peer::decode(payload).map_err(|e| e.to_string()),
            ));
        },
    )
    .await;
    let field = Publisher::connect(local, "field").await;
    // Traffic on the east approach: a vehicle a second over both loops, none from the north.
    for _ in 0..15 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        field.reading("det-e-adv", 1.0, now).await;
        field.reading("det-e", 1.0, now).await;
        field.reading("det-n", 0.0, now).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !flows.lock().unwrap().is_empty() {
            break;
        }
    }
    let got = flows.lock().unwrap().clone();
    assert!(!got.is_empty(), "no planned outflow was published");
    for (topic, decoded) in &got {
        assert_eq!(topic, "citygate/v1/gw-a/peer/outflow");
        let flows = decoded.as_ref().expect("a valid peer payload");
        assert!(!flows.is_empty());
        for f in flows {
            assert_eq!(
                (f.from.as_str(), f.to.as_str(), f.group.as_str()),
                ("int-a", "int-b", "E")
            );
            assert!(f.vehicles > 0.0 && f.leaves_at <= f.until, "{f:?}");
        }
    }
    gw.shutdown().await;
}
