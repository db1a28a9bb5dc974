//! Live coordination between gateways: a gateway whose look-ahead intersection has a neighbour
//! in another gateway publishes its planned outflows on `citygate/v1/<gw>/peer/outflow` on the
//! local broker, as the platoon its detectors see is scheduled to leave towards the neighbour;
//! a gateway on the same broker whose intersection has the matching `[[intersection.inflow]]`
//! takes them into its look-ahead (and one without it does not).

use std::path::Path;
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

/// Gateway A's intersection under another id, with `extra` instead of its `neighbours` and
/// every detector's sensor id prefixed by `sensors`.
fn intersection(id: &str, extra: &str, sensors: &str) -> String {
    INTERSECTION
        .replace("id = \"int-a\"", &format!("id = \"{id}\""))
        .replace(
            "neighbours = [{ intersection = \"int-b\", via_group = \"E\", travel_s = 20.0 }]",
            extra,
        )
        .replace("sensor = \"det-", &format!("sensor = \"{sensors}det-"))
}

/// A gateway as its own `citygate run` process on the shared broker at `url`.
fn gateway(
    dir: &Path,
    id: &str,
    url: &str,
    port: u16,
    intersection: &str,
    inflow: &str,
) -> GatewayProcess {
    let data = dir.join(id);
    std::fs::create_dir_all(&data).unwrap();
    let text = gateway_config(id, port, "mqtt://127.0.0.1:1", &data, 60).replace(
        &format!("mode = \"embedded\"\nlisten = \"127.0.0.1:{port}\""),
        &format!("mode = \"external\"\nurl = \"{url}\""),
    ) + intersection
        + inflow;
    assert!(text.contains("mode = \"external\""), "{text}");
    load_config(&text);
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, text).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));
    GatewayProcess::start(bin, &path, &dir.join(format!("{id}.log")))
}

/// `expected_from_peers` of `intersection` in the gateway's `status.json`, with the time the
/// file was written.
fn expected_from_peers(data: &Path, intersection: &str) -> Option<(f64, f64)> {
    let f = citygate::status::StatusFile::read(data).ok()?;
    let signals = f.status.get("signals")?.as_array()?;
    let i = signals
        .iter()
        .find(|s| s.get("id").and_then(|v| v.as_str()) == Some(intersection))?;
    Some((f.time, i.get("expected_from_peers")?.as_f64()?))
}

fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Two gateways on one broker: gateway A's look-ahead intersection `int-a` sends its east
/// group's planned outflow towards `int-b` on gateway B, whose `[[intersection.inflow]]` says
/// it arrives on its group E 20 s later. B's own detectors see nothing; the vehicles its
/// status expects from peers can only come from A's plan. Gateway C runs the same `int-b`
/// with an inflow from A's *north* group only: it listens to the same messages and expects
/// nothing from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbours_planned_outflow_reaches_the_look_ahead_of_another_gateway() {
    let mosq = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let url = mosq.url();
    let inflow_from = |group: &str| {
        format!("\n[[intersection.inflow]]\nfrom = \"int-a\"\nfrom_group = \"{group}\"\ngroups = [\"E\"]\ntravel_s = 20.0\n")
    };
    let flows = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&flows);
    subscribe_on_thread(
        mosq.port,
        "peer-watch",
        "citygate/v1/+/peer/#",
        move |topic, payload| {
            if let Ok(f) = peer::decode(payload) {
                sink.lock().unwrap().push((topic.to_string(), epoch(), f));
            }
        },
    )
    .await;
    let a = gateway(dir.path(), "gw-a", &url, free_port(), INTERSECTION, "");
    let b = gateway(
        dir.path(),
        "gw-b",
        &url,
        free_port(),
        &intersection("int-b", "", "b-"),
        &inflow_from("E"),
    );
    let c = gateway(
        dir.path(),
        "gw-c",
        &url,
        free_port(),
        &intersection("int-b", "", "c-"),
        &inflow_from("N"),
    );
    let field = Publisher::connect(mosq.port, "field").await;
    // Traffic on A's east approach only, a vehicle a second over both loops; B's and C's
    // loops count nothing.
    let mut at_b = None;
    let mut after = 0;
    for _ in 0..45 {
        let now = epoch();
        field.reading("det-e-adv", 1.0, now).await;
        field.reading("det-e", 1.0, now).await;
        field.reading("det-n", 0.0, now).await;
        for g in ["b-", "c-"] {
            for d in ["det-e-adv", "det-e", "det-n"] {
                field.reading(&format!("{g}{d}"), 0.0, now).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if at_b.is_some() {
            // C's status a few seconds after B took A's flows
            after += 1;
            if after == 3 {
                break;
            }
            continue;
        }
        if let Some((_, v)) = expected_from_peers(&dir.path().join("gw-b"), "int-b") {
            if v > 0.0 {
                at_b = Some(v);
            }
        }
    }
    let sent = flows.lock().unwrap().clone();
    let b_log = b.log_text();
    let c_status = expected_from_peers(&dir.path().join("gw-c"), "int-b");
    let c_log = c.log_text();
    let a_log = a.log_text();
    a.kill();
    b.kill();
    c.kill();
    assert!(
        !sent.is_empty(),
        "gateway A published no planned outflow\n{a_log}"
    );
    assert!(
        sent.iter()
            .all(|(t, _, fs)| t == "citygate/v1/gw-a/peer/outflow"
                && fs
                    .iter()
                    .all(|f| (f.from.as_str(), f.to.as_str(), f.group.as_str())
                        == ("int-a", "int-b", "E"))),
        "{sent:?}"
    );
    let Some(expected) = at_b else {
        panic!(
            "gateway B never expected vehicles from A's plan; A sent {} messages, the first {:?}\n{b_log}",
            sent.len(),
            sent.first()
        )
    };
    // what B expects is what A announced (vehicles still to arrive), not more
    let announced: f64 = sent
        .iter()
        .map(|(_, _, fs)| fs.iter().map(|f| f.vehicles).sum::<f64>())
        .fold(0.0, f64::max);
    assert!(
        expected <= announced + 0.1,
        "B expects {expected}, A announced at most {announced} in one message"
    );
    // C got the same messages for a while (its status written after A's first message) and
    // has no inflow for A's east group
    let first_sent = sent
        .iter()
        .map(|(_, t, _)| *t)
        .fold(f64::INFINITY, f64::min);
    match c_status {
        Some((written, v)) => {
            assert!(
                written > first_sent + 1.0,
                "C's status is older than A's flows\n{c_log}"
            );
            assert_eq!(v, 0.0, "C has no inflow for A's group E\n{c_log}");
        }
        None => panic!("gateway C wrote no status with int-b\n{c_log}"),
    }
}
