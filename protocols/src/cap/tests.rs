//! Tests of the CAP module: the shared real alerts, schema validity of generated alerts (through
//! `xmllint`), a byte-exact golden document, round trips, and property tests.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use proptest::prelude::*;

use super::*;

fn shared_cap() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/cap")
}

/// Runs `xmllint --noout --schema CAP-v1.2.xsd -` on `xml`; `Err` carries xmllint's output.
fn xmllint(xml: &str) -> Result<(), String> {
    let schema = shared_cap().join("CAP-v1.2.xsd");
    let mut child = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run xmllint (Debian package libxml2-utils): {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(xml.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn sample() -> Alert {
    let sent = CapTime::utc(1_764_342_000).unwrap();
    Alert {
        identifier: "gw-12.river-north.1764342000.1".into(),
        sender: "citygate.gw-12@city.example".into(),
        sent,
        status: Status::Actual,
        msg_type: MsgType::Update,
        source: Some("citygate gw-12".into()),
        scope: Scope::Public,
        restriction: None,
        addresses: None,
        code: vec!["citygate:hazard:1".into()],
        note: Some("Level rose: watch -> warning".into()),
        references: Reference::join(&[Reference {
            sender: "citygate.gw-12@city.example".into(),
            identifier: "gw-12.river-north.1764342000.0".into(),
            sent: CapTime::utc(1_764_341_400).unwrap(),
        }]),
        incidents: Some("gw-12.river-north.1764342000".into()),
        info: vec![Info {
            language: Some("en-US".into()),
            category: vec![Category::Met, Category::Transport],
            event: "Flood".into(),
            response_type: vec![ResponseType::Avoid],
            urgency: Urgency::Immediate,
            severity: Severity::Severe,
            certainty: Certainty::Observed,
            audience: None,
            event_code: vec![ValuePair::new("citygate:group", "river-north")],
            effective: Some(sent),
            onset: None,
            expires: Some(sent.plus_seconds(3600).unwrap()),
            sender_name: Some("City Traffic Management Centre".into()),
            headline: Some("Flood warning: Main St underpass".into()),
            description: Some("Water level 1.82 m > 1.50 m & rising <fast>".into()),
            instruction: Some("Avoid the underpass.\nUse Ring Road.".into()),
            web: None,
            contact: None,
            parameter: vec![ValuePair::new("citygate:level", "warning")],
            area: vec![Area {
                area_desc: "Main St underpass".into(),
                polygon: vec![polygon_text(&[
                    (52.1, 4.3),
                    (52.1, 4.31),
                    (52.11, 4.31),
                    (52.11, 4.3),
                ])],
                circle: vec![circle_text(52.105, 4.305, 0.5)],
                geocode: vec![],
                altitude: Some(3.0),
                ceiling: Some(12.5),
            }],
        }],
    }
}

const GOLDEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>gw-12.river-north.1764342000.1</identifier>
  <sender>citygate.gw-12@city.example</sender>
  <sent>2025-11-28T15:00:00-00:00</sent>
  <status>Actual</status>
  <msgType>Update</msgType>
  <source>citygate gw-12</source>
  <scope>Public</scope>
  <code>citygate:hazard:1</code>
  <note>Level rose: watch -&gt; warning</note>
  <references>citygate.gw-12@city.example,gw-12.river-north.1764342000.0,2025-11-28T14:50:00-00:00</references>
  <incidents>gw-12.river-north.1764342000</incidents>
  <info>
    <language>en-US</language>
    <category>Met</category>
    <category>Transport</category>
    <event>Flood</event>
    <responseType>Avoid</responseType>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <eventCode>
      <valueName>citygate:group</valueName>
      <value>river-north</value>
    </eventCode>
    <effective>2025-11-28T15:00:00-00:00</effective>
    <expires>2025-11-28T16:00:00-00:00</expires>
    <senderName>City Traffic Management Centre</senderName>
    <headline>Flood warning: Main St underpass</headline>
    <description>Water level 1.82 m &gt; 1.50 m &amp; rising &lt;fast&gt;</description>
    <instruction>Avoid the underpass.
Use Ring Road.</instruction>
    <parameter>
      <valueName>citygate:level</valueName>
      <value>warning</value>
    </parameter>
    <area>
      <areaDesc>Main St underpass</areaDesc>
      <polygon>52.1,4.3 52.1,4.31 52.11,4.31 52.11,4.3 52.1,4.3</polygon>
      <circle>52.105,4.305 0.5</circle>
      <altitude>3</altitude>
      <ceiling>12.5</ceiling>
    </area>
  </info>
</alert>
"#;

#[test]
fn golden_document_is_byte_exact() {
    assert_eq!(sample().to_xml(), GOLDEN);
}

#[test]
fn generated_alert_passes_schema_and_section_3() {
    let a = sample();
    a.validate().unwrap();
    xmllint(&a.to_xml()).unwrap();
}

#[test]
fn write_read_round_trip() {
    let a = sample();
    assert_eq!(Alert::from_xml(&a.to_xml()).unwrap(), a);
}

#[test]
fn json_form_uses_cap_names_and_round_trips() {
    let a = sample();
    let j = a.to_json();
    assert_eq!(j["msgType"], "Update");
    assert_eq!(j["sent"], "2025-11-28T15:00:00-00:00");
    assert_eq!(j["info"][0]["area"][0]["areaDesc"], "Main St underpass");
    assert_eq!(j["info"][0]["responseType"][0], "Avoid");
    assert!(j.get("restriction").is_none());
    assert_eq!(Alert::from_json(&j).unwrap(), a);
    // The JSON form rejects `Z` too.
    let mut bad = j.clone();
    bad["sent"] = "2025-11-28T15:00:00Z".into();
    assert!(Alert::from_json(&bad).is_err());
}

#[test]
fn body_carries_both_forms() {
    let a = sample();
    match a.to_body() {
        crate::Body::Alert { cap, json } => {
            assert_eq!(cap, a.to_xml());
            assert_eq!(json, a.to_json());
        }
        other => panic!("not an alert body: {other:?}"),
    }
}

#[test]
fn every_shared_example_parses_and_validates() {
    let dir = shared_cap().join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let xml = std::fs::read_to_string(&path).unwrap();
        let alert = Alert::from_xml(&xml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        alert
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Our own rendering of a real alert is schema-valid and reads back the same.
        let again = alert.to_xml();
        xmllint(&again).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            Alert::from_xml(&again).unwrap(),
            alert,
            "{}",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn example_details_are_read() {
    let xml =
        std::fs::read_to_string(shared_cap().join("examples/oasiscap_v1dot2_appendix_adot3.xml"))
            .unwrap();
    let a = Alert::from_xml(&xml).unwrap();
    assert_eq!(a.msg_type, MsgType::Update);
    assert_eq!(
        a.reference_list().unwrap(),
        vec![Reference {
            sender: "trinet@caltech.edu".into(),
            identifier: "TRI13970876.1".into(),
            sent: CapTime::parse("2003-06-11T20:30:00-07:00").unwrap(),
        }]
    );
    assert_eq!(a.info[0].area[0].circle, vec!["32.9525,-115.5527 0"]);
    assert_eq!(a.info[0].parameter.len(), 5);
    // Prefixed namespace, escaped text, empty <value/>.
    let xml =
        std::fs::read_to_string(shared_cap().join("examples/google_australia.cap.xml")).unwrap();
    let a = Alert::from_xml(&xml).unwrap();
    assert_eq!(a.info.len(), 2);
    assert!(a.info[0].description.as_deref().unwrap().contains("<br />"));
    assert!(a.info[0].parameter.iter().any(|p| p.value.is_empty()));
}

#[test]
fn shared_invalid_alerts_are_rejected() {
    let dir = shared_cap().join("invalid");
    let missing_scope = std::fs::read_to_string(dir.join("google_invalid.cap.xml")).unwrap();
    assert_eq!(
        Alert::from_xml(&missing_scope),
        Err(ReadError::Missing {
            path: "alert".into(),
            element: "scope"
        })
    );
    let z = std::fs::read_to_string(dir.join("sent_with_Z.xml")).unwrap();
    match Alert::from_xml(&z) {
        Err(ReadError::Time { path, .. }) => assert_eq!(path, "alert.sent"),
        other => panic!("expected a time error, got {other:?}"),
    }
}

#[test]
fn reader_rejects_order_and_bad_codes() {
    let good = sample().to_xml();
    let swapped = good.replace(
        "  <status>Actual</status>\n  <msgType>Update</msgType>\n",
        "  <msgType>Update</msgType>\n  <status>Actual</status>\n",
    );
    assert!(matches!(
        Alert::from_xml(&swapped),
        Err(ReadError::Order { .. })
    ));
    let lower = good.replace("<status>Actual</status>", "<status>actual</status>");
    assert!(matches!(
        Alert::from_xml(&lower),
        Err(ReadError::Value { what: "status", .. })
    ));
    let other_ns = good.replace(NAMESPACE, "urn:oasis:names:tc:emergency:cap:1.1");
    assert_eq!(Alert::from_xml(&other_ns), Err(ReadError::NotCap));
    let deep = "<a>".repeat(100_000);
    assert!(Alert::from_xml(&deep).is_err());
}

#[test]
fn section_3_rules_are_checked() {
    let mut a = sample();
    a.identifier = "has space".into();
    a.sender = "a,b".into();
    a.scope = Scope::Private;
    a.references = Some("x,y,2003-04-02T19:39:01Z lonely".into());
    a.info[0].area[0].polygon = vec!["1,1 2,2 3,3 1,1".into(), "1,1 2,2 3,3 4,4".into()];
    a.info[0].area[0].circle = vec!["1,1".into(), "91,0 5".into()];
    a.info[0].language = Some("english (US)".into());
    a.info[0].category.clear();
    a.info[0].headline = Some("bell\u{7}".into());
    let paths: Vec<String> = a
        .validate()
        .unwrap_err()
        .0
        .into_iter()
        .map(|v| v.path)
        .collect();
    assert_eq!(
        paths,
        [
            "identifier",
            "sender",
            "addresses",
            "references",
            "info[0].language",
            "info[0].category",
            "info[0].headline",
            "info[0].area[0].polygon[1]",
            "info[0].area[0].circle[0]",
            "info[0].area[0].circle[1]",
        ]
    );
    let mut ok = sample();
    ok.scope = Scope::Private;
    ok.addresses = Some("ops@city.example".into());
    ok.validate().unwrap();
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._@:/-]{1,24}"
}

fn text() -> impl Strategy<Value = String> {
    "(\\PC|[\t\n\r]){0,40}"
}

fn cap_time() -> impl Strategy<Value = CapTime> {
    (0i64..4_000_000_000, -56i16..=56)
        .prop_map(|(e, q)| CapTime::with_offset(e, q * 15).unwrap_or(CapTime::utc(e).unwrap()))
}

fn pick<T: Copy + core::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn pair() -> impl Strategy<Value = ValuePair> {
    (text(), text()).prop_map(|(n, v)| ValuePair::new(n, v))
}

fn area() -> impl Strategy<Value = Area> {
    let pt = (-90.0f64..=90.0, -180.0f64..=180.0);
    (
        text(),
        proptest::collection::vec(proptest::collection::vec(pt.clone(), 3..8), 0..3),
        proptest::collection::vec((pt, 0.0f64..500.0), 0..3),
        proptest::collection::vec(pair(), 0..3),
        proptest::option::of((-1e5f64..1e5, 0.0f64..1e5)),
    )
        .prop_map(|(desc, polys, circles, geocode, alt)| Area {
            area_desc: desc,
            polygon: polys.iter().map(|p| polygon_text(p)).collect(),
            circle: circles
                .iter()
                .map(|((la, lo), r)| circle_text(*la, *lo, *r))
                .collect(),
            geocode,
            altitude: alt.map(|(a, _)| a),
            ceiling: alt.map(|(a, h)| a + h),
        })
}

fn info() -> impl Strategy<Value = Info> {
    (
        (
            proptest::option::of("[a-z]{2}(-[A-Z]{2})?"),
            proptest::collection::vec(pick(Category::ALL), 1..3),
            text(),
            proptest::collection::vec(pick(ResponseType::ALL), 0..3),
            pick(Urgency::ALL),
            pick(Severity::ALL),
            pick(Certainty::ALL),
            proptest::option::of(text()),
            proptest::collection::vec(pair(), 0..2),
        ),
        (
            proptest::option::of(cap_time()),
            proptest::option::of(cap_time()),
            proptest::option::of(cap_time()),
            proptest::collection::vec(proptest::option::of(text()), 6),
            proptest::collection::vec(pair(), 0..3),
            proptest::collection::vec(area(), 0..3),
        ),
    )
        .prop_map(
            |(
                (
                    language,
                    category,
                    event,
                    response_type,
                    urgency,
                    severity,
                    certainty,
                    audience,
                    event_code,
                ),
                (effective, onset, expires, texts, parameter, area),
            )| {
                let t = |i: usize| texts.get(i).cloned().flatten();
                Info {
                    language,
                    category,
                    event,
                    response_type,
                    urgency,
                    severity,
                    certainty,
                    audience,
                    event_code,
                    effective,
                    onset,
                    expires,
                    sender_name: t(0),
                    headline: t(1),
                    description: t(2),
                    instruction: t(3),
                    // xs:anyURI: keep to URI characters.
                    web: t(4).map(|_| "https://city.example/alerts".to_string()),
                    contact: t(5),
                    parameter,
                    area,
                }
            },
        )
}

fn alert() -> impl Strategy<Value = Alert> {
    (
        (
            token(),
            token(),
            cap_time(),
            pick(Status::ALL),
            pick(MsgType::ALL),
            proptest::option::of(text()),
            pick(Scope::ALL),
            proptest::option::of(text()),
        ),
        (
            proptest::collection::vec(text(), 0..3),
            proptest::option::of(text()),
            proptest::collection::vec((token(), token(), cap_time()), 0..3),
            proptest::option::of(text()),
            proptest::collection::vec(info(), 0..3),
        ),
    )
        .prop_map(
            |(
                (identifier, sender, sent, status, msg_type, source, scope, restriction),
                (code, note, refs, incidents, info),
            )| {
                let references = Reference::join(
                    &refs
                        .into_iter()
                        .map(|(sender, identifier, sent)| Reference {
                            sender,
                            identifier,
                            sent,
                        })
                        .collect::<Vec<_>>(),
                );
                Alert {
                    identifier,
                    sender,
                    sent,
                    status,
                    msg_type,
                    source,
                    scope,
                    // §3: Restricted needs a restriction, Private needs addresses.
                    restriction: match scope {
                        Scope::Restricted => {
                            Some(format!("staff{}", restriction.unwrap_or_default()))
                        }
                        _ => restriction,
                    },
                    addresses: match scope {
                        Scope::Private => Some("ops@city.example".into()),
                        _ => None,
                    },
                    code,
                    note,
                    references,
                    incidents,
                    info,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn written_alerts_read_back_equal_and_valid(a in alert()) {
        prop_assert!(a.validate().is_ok(), "generator made an invalid alert: {:?}", a.validate());
        let xml = a.to_xml();
        let back = Alert::from_xml(&xml);
        prop_assert_eq!(back.as_ref().ok(), Some(&a), "{:?}", back.as_ref().err());
        if let Ok(b) = back {
            prop_assert!(b.validate().is_ok());
        }
        prop_assert_eq!(Alert::from_json(&a.to_json()).ok(), Some(a));
    }

    #[test]
    fn reader_never_panics(s in "\\PC{0,200}") {
        let _ = Alert::from_xml(&s);
    }

    #[test]
    fn reader_never_panics_on_mutated_alerts(cut in 0usize..2000, junk in "[<>&/a-z \"=]{0,8}") {
        let xml = sample().to_xml();
        let mut at = cut.min(xml.len());
        while !xml.is_char_boundary(at) {
            at -= 1;
        }
        let mutated = format!("{}{}{}", &xml[..at], junk, &xml[at..]);
        let _ = Alert::from_xml(&mutated);
    }
}

proptest! {
    // Each case runs xmllint: keep the count small.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn written_alerts_pass_the_schema(a in alert()) {
        prop_assert!(xmllint(&a.to_xml()).is_ok(), "{:?}", xmllint(&a.to_xml()));
    }
}
