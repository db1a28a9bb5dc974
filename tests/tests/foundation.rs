//! End-to-end tests of the first durable path: MQTT in → summaries → sled outbox → MQTT
//! uplink, against real brokers (the embedded rumqttd and mosquitto).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use citygate::outbox::Outbox;
use citygate_protocols::{Body, Summary};
use citygate_tests::*;

const T0: f64 = 1_700_000_000.0;

/// Expected (count, min, max, mean, last) per (sensor, window start).
type Expected = BTreeMap<(String, i64), (u64, f64, f64, f64, f64)>;

/// The summaries a correct gateway must produce for readings `(sensor, value, time)`, keyed by
/// (sensor, window start).
fn expected(readings: &[(String, f64, f64)], window: f64) -> Expected {
    let mut m: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for (s, v, t) in readings {
        let start = ((t / window).floor() * window) as i64;
        m.entry((s.clone(), start)).or_default().push(*v);
    }
    m.into_iter()
        .map(|(k, vs)| {
            let min = vs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = vs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mean = vs.iter().sum::<f64>() / vs.len() as f64;
            (k, (vs.len() as u64, min, max, mean, *vs.last().unwrap()))
        })
        .collect()
}

fn summaries(r: &Received) -> Vec<Summary> {
    let mut seen = std::collections::HashSet::new();
    r.envelopes
        .iter()
        .filter(|e| seen.insert(e.seq))
        .filter_map(|e| match &e.body {
            Body::Summary(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn assert_summaries_match(got: &[Summary], want: &Expected) {
    let mut by_key = BTreeMap::new();
    for s in got {
        let prev = by_key.insert((s.sensor.clone(), s.start as i64), s.clone());
        assert!(
            prev.is_none(),
            "two summaries for {} at {}",
            s.sensor,
            s.start
        );
    }
    assert_eq!(by_key.len(), want.len(), "number of summaries");
    for (k, (count, min, max, mean, last)) in want {
        let s = by_key
            .get(k)
            .unwrap_or_else(|| panic!("no summary for {k:?}"));
        assert_eq!(s.count, *count, "{k:?} count");
        assert_eq!((s.min, s.max, s.last), (*min, *max, *last), "{k:?}");
        assert!(
            (s.mean - mean).abs() < 1e-9,
            "{k:?} mean {} vs {mean}",
            s.mean
        );
    }
}

/// 10 sensors × 1000 readings, 100 per one-second window, in time order per sensor.
fn trace() -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    for i in 0..1000 {
        for s in 0..10 {
            let v = ((i * 7 + s * 13) % 97) as f64 / 10.0;
            out.push((format!("s{s}"), v, T0 + i as f64 * 0.01));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_readings_through_the_embedded_broker_give_exactly_the_expected_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let uplink = format!("mqtt://127.0.0.1:{port}");
    let gw = citygate::run::start(load_config(&gateway_config(
        "gw-a",
        port,
        &uplink,
        dir.path(),
        1,
    )))
    .await
    .unwrap();
    wait_subscribed(&gw).await;
    let collector = Collector::start(port, "gw-a").await;
    let publisher = Publisher::connect(port, "field-a").await;
    let readings = trace();
    let bad: [&[u8]; 4] = [
        b"{not json",
        br#"{"v":"high","t":1}"#,
        br#"{"t":1}"#,
        b"\xff\xfe",
    ];
    for (i, (s, v, t)) in readings.iter().enumerate() {
        publisher.reading(s, *v, *t).await;
        if i % 2500 == 0 {
            let payload = bad[i / 2500].to_vec();
            publisher
                .client
                .publish("field/s0/value", rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    }
    let want = expected(&readings, 1.0);
    assert!(
        eventually(Duration::from_secs(60), || collector.count() >= want.len()).await,
        "only {} of {} summaries arrived; {}",
        collector.count(),
        want.len(),
        gw.stats.snapshot()
    );
    // Nothing more may come.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = collector.snapshot();
    assert_eq!(gw.stats.readings_in.load(Ordering::Relaxed), 10_000);
    assert_eq!(
        gw.stats.malformed.load(Ordering::Relaxed),
        4,
        "malformed payloads are counted"
    );
    assert_summaries_match(&summaries(&got), &want);
    assert_eq!(got.garbage, 0);
    assert!(
        got.status.as_deref().unwrap_or("").contains("\"online\""),
        "{:?}",
        got.status
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_made_while_the_uplink_broker_is_down_all_arrive_in_order() {
    let mut mosq = Mosquitto::start();
    let collector = Collector::start(mosq.port, "gw-b").await;
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let gw = start_gateway(&gateway_config("gw-b", local, &mosq.url(), dir.path(), 1)).await;
    let publisher = Publisher::connect(local, "field-b").await;
    let readings = trace();
    let (before, after) = readings.split_at(3000);

    for (s, v, t) in before {
        publisher.reading(s, *v, *t).await;
    }
    mosq.stop();
    for (s, v, t) in after {
        publisher.reading(s, *v, *t).await;
    }
    // Every window closes while the uplink is down.
    assert!(
        eventually(Duration::from_secs(30), || gw
            .stats
            .readings_in
            .load(Ordering::Relaxed)
            == 10_000
            && gw.stats.summaries_out.load(Ordering::Relaxed) == 100)
        .await,
        "{}",
        gw.stats.snapshot()
    );
    assert!(!gw.stats.uplink_connected.load(Ordering::Relaxed));
    assert!(!gw.outbox.is_empty(), "records must wait in the outbox");
    mosq.restart();

    let want = expected(&readings, 1.0);
    assert!(
        eventually(Duration::from_secs(60), || collector.count() >= want.len()).await,
        "only {} of {} summaries arrived after the broker came back; {}",
        collector.count(),
        want.len(),
        gw.stats.snapshot()
    );
    let got = collector.snapshot();
    assert_summaries_match(&summaries(&got), &want);
    let first = got.first_arrivals();
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "out of order: {first:?}"
    );
    assert_eq!(first, (1..=want.len() as u64).collect::<Vec<_>>());
    assert!(got.conflicting_duplicates().is_empty());
    assert!(eventually(Duration::from_secs(10), || gw.outbox.is_empty()).await);
    gw.shutdown().await;
}

/// Starts a gateway process, streams readings into it, stops it mid-stream (`kill`: SIGKILL,
/// else SIGTERM), restarts it on the same data directory and streams the rest. Returns what
/// arrived and what the outbox held at the stop.
async fn restart_mid_stream(id: &str, kill: bool) -> (Received, Vec<u64>, u64, Mosquitto) {
    let mosq = Mosquitto::start();
    let collector = Collector::start(mosq.port, id).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let local = free_port();
    let cfg_path = dir.path().join("gw.toml");
    std::fs::write(&cfg_path, gateway_config(id, local, &mosq.url(), &data, 1)).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw1.log"), local);
    let publisher = Publisher::connect(local, &format!("field-{id}")).await;
    // Windows of 1 s; 20 readings a window per sensor; the stop comes after 60 windows.
    let mut i = 0u64;
    while collector.count() < 60 {
        for s in 0..5 {
            publisher
                .reading(&format!("s{s}"), (i % 50) as f64, T0 + i as f64 * 0.05)
                .await;
        }
        i += 1;
        if i.is_multiple_of(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(i < 200_000, "summaries never arrived: {}", gw.log_text());
    }
    let log1 = gw.log_text();
    if kill {
        gw.kill();
        assert!(
            eventually(Duration::from_secs(20), || collector
                .snapshot()
                .status
                .is_some_and(|s| s.contains("\"offline\"")))
            .await,
            "no last will after SIGKILL"
        );
    } else {
        let status = gw.stop();
        assert!(status.success(), "{status}: {log1}");
    }
    drop(publisher);

    // What the outbox holds now was acknowledged to the sources and must arrive.
    let (pending, next_seq) = {
        let ob = Outbox::open(&data.join("outbox"), id, &Default::default()).unwrap();
        let p: Vec<u64> = ob.all().unwrap().iter().map(|s| s.key.seq).collect();
        (p, ob.next_seq())
    };

    let gw = GatewayProcess::start_listening(bin, &cfg_path, &dir.path().join("gw2.log"), local);
    let publisher = Publisher::connect(local, &format!("field-{id}-2")).await;
    // The new process subscribes a moment after its broker listens; publish until records
    // made after the restart arrive.
    let target = next_seq - 1 + 50;
    let mut j = i + 40; // a later window, so no window straddles the restart
    while (collector.count() as u64) < target {
        for s in 0..5 {
            publisher
                .reading(&format!("s{s}"), (j % 50) as f64, T0 + j as f64 * 0.05)
                .await;
        }
        j += 1;
        if j.is_multiple_of(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            j < i + 200_000,
            "{} of {target} records arrived: {}",
            collector.count(),
            gw.log_text()
        );
    }
    assert!(collector
        .snapshot()
        .status
        .is_some_and(|s| s.contains("\"online\"")));
    let status = gw.stop();
    assert!(status.success());
    assert!(
        eventually(Duration::from_secs(10), || collector
            .snapshot()
            .status
            .is_some_and(|s| s.contains("\"offline\"")))
        .await,
        "no offline status after a clean stop"
    );
    (collector.snapshot(), pending, next_seq, mosq)
}

fn assert_nothing_stored_was_lost(got: &Received, pending: &[u64], next_seq: u64, killed: bool) {
    eprintln!(
        "stored at the stop: {} (next seq {next_seq}); arrived: {} records, {} duplicates",
        pending.len(),
        got.copies.len(),
        got.duplicates()
    );
    for seq in pending {
        assert!(
            got.copies.contains_key(seq),
            "stored record {seq} never arrived"
        );
    }
    let max = *got.copies.keys().max().unwrap();
    assert!(max >= next_seq, "nothing after the restart arrived");
    // A SIGKILL may take the last records before it that were numbered but not yet on disk
    // (sled keeps the sequence counter ahead of the record it numbers, and flushes summaries
    // every `flush_every_ms`). Such numbers can only be above everything that was stored or
    // delivered before the restart; any other gap is a loss.
    let last_kept = pending
        .iter()
        .chain(got.copies.keys().filter(|s| **s < next_seq))
        .copied()
        .max()
        .unwrap_or(0);
    let never_stored = |s: u64| killed && s > last_kept && s < next_seq;
    let missing: Vec<u64> = (1..=max)
        .filter(|s| !got.copies.contains_key(s) && !never_stored(*s))
        .collect();
    assert!(missing.is_empty(), "sequence numbers missing: {missing:?}");
    assert!(
        got.conflicting_duplicates().is_empty(),
        "a sequence number was reused"
    );
    assert_eq!(got.garbage, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_mid_stream_loses_nothing_it_stored() {
    let (got, pending, next_seq, _m) = restart_mid_stream("gw-term", false).await;
    assert_nothing_stored_was_lost(&got, &pending, next_seq, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_stream_loses_nothing_it_stored() {
    let (got, pending, next_seq, _m) = restart_mid_stream("gw-kill", true).await;
    assert_nothing_stored_was_lost(&got, &pending, next_seq, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_local_broker_feeds_the_gateway() {
    let local = Mosquitto::start();
    let uplink = Mosquitto::start();
    let collector = Collector::start(uplink.port, "gw-ext").await;
    let dir = tempfile::tempdir().unwrap();
    let text = gateway_config("gw-ext", 0, &uplink.url(), dir.path(), 1).replace(
        "mode = \"embedded\"\nlisten = \"127.0.0.1:0\"",
        &format!("mode = \"external\"\nurl = \"{}\"", local.url()),
    );
    assert!(text.contains("external"), "{text}");
    let gw = citygate::run::start(load_config(&text)).await.unwrap();
    wait_subscribed(&gw).await;
    let publisher = Publisher::connect(local.port, "field-ext").await;
    for i in 0..300 {
        publisher
            .reading("s0", i as f64, T0 + i as f64 * 0.01)
            .await;
    }
    assert!(eventually(Duration::from_secs(30), || collector.count() == 3).await);
    let got = summaries(&collector.snapshot());
    assert_eq!(got.iter().map(|s| s.count).sum::<u64>(), 300);
    gw.shutdown().await;
}

#[test]
fn check_prints_ok_or_every_error_and_sets_the_exit_code() {
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        gateway_config("gw-c", 1883, "mqtt://127.0.0.1:1883", dir.path(), 5),
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .arg("check")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK: "));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[gateway]\nid = \"gw c\"\ndata_dir = \"d\"\nflavour = 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bad.toml:4:1: gateway.flavour"), "{text}");
}

#[test]
fn the_demo_shows_data_flowing_and_stops_cleanly() {
    let bin = Path::new(env!("CARGO_BIN_EXE_citygate-under-test"));
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args(["demo", "--seconds", "12", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("readings in"))
        .collect();
    assert!(lines.len() >= 10, "one status line a second: {text}");
    let last = lines.last().unwrap();
    // 12 detectors and one flood station publish every second; 10 s windows close.
    let n = |key: &str| -> u64 {
        last.split(key)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap()
    };
    assert!(n("readings in ") >= 200, "{last}");
    assert!(n("summaries out ") >= 25, "{last}");
    assert!(last.contains("uplink "), "{last}");
    assert!(
        text.contains("shutting down, flushing the outbox"),
        "{text}"
    );
}
