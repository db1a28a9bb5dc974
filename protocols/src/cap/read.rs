//! The CAP 1.2 XML reader: XML text → [`Alert`].
//!
//! Two steps: quick-xml builds a small element tree (iteratively, depth-limited, so hostile input
//! cannot exhaust the stack), then the tree is mapped to the typed alert. The mapping checks what
//! the schema checks for our subset: required elements, the sequence order, no repeats of
//! single elements, enumerated codes, the date-time pattern (numeric offset, never `Z`) and
//! decimals. Elements of other namespaces (the XML signature) and `<resource>` are skipped.
//! Run [`Alert::validate`] afterwards for the CAP §3 rules.

use quick_xml::events::Event as XmlEvent;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::{
    Alert, Area, CapTime, Category, Certainty, Info, MsgType, ResponseType, Scope, Severity,
    Status, TimeError, Urgency, ValuePair, NAMESPACE,
};

/// Deepest element nesting accepted (a CAP alert needs 5).
const MAX_DEPTH: usize = 32;

/// Why a document is not a readable CAP 1.2 alert. Paths look like `alert.info[0].area[1]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("XML syntax error near byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error("the root element is not <alert> in namespace {NAMESPACE}")]
    NotCap,
    #[error("elements nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("{path}: required element <{element}> is missing")]
    Missing { path: String, element: &'static str },
    #[error("{path}: unexpected element <{element}>")]
    Unexpected { path: String, element: String },
    #[error("{path}: <{element}> is out of the schema's order or repeated")]
    Order { path: String, element: String },
    #[error("{path}: unexpected text inside an element that holds elements")]
    MixedContent { path: String },
    #[error("{path}: `{value}` is not a valid {what}")]
    Value {
        path: String,
        value: String,
        what: &'static str,
    },
    #[error("{path}: {source}")]
    Time { path: String, source: TimeError },
}

#[derive(Default)]
struct Node {
    /// In the CAP namespace.
    cap: bool,
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Alert {
    /// Parses a CAP 1.2 XML document.
    pub fn from_xml(xml: &str) -> Result<Alert, ReadError> {
        let root = build_tree(xml)?;
        if !root.cap || root.name != "alert" {
            return Err(ReadError::NotCap);
        }
        map_alert(&root)
    }
}

fn xml_err(reader: &NsReader<&[u8]>, e: impl core::fmt::Display) -> ReadError {
    ReadError::Xml {
        position: reader.buffer_position(),
        message: e.to_string(),
    }
}

fn build_tree(xml: &str) -> Result<Node, ReadError> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let before = reader.buffer_position();
        let (ns, event) = reader.read_resolved_event().map_err(|e| ReadError::Xml {
            position: before,
            message: e.to_string(),
        })?;
        match event {
            XmlEvent::Start(start) => {
                if root.is_some() {
                    return Err(xml_err(&reader, "content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(ReadError::TooDeep);
                }
                let cap =
                    matches!(ns, ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes());
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                stack.push(Node {
                    cap,
                    name,
                    ..Node::default()
                });
            }
            XmlEvent::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| xml_err(&reader, "end tag without start"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            XmlEvent::Text(t) => {
                let text = t.unescape().map_err(|e| xml_err(&reader, e))?;
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(xml_err(&reader, "text outside the root element")),
                }
            }
            XmlEvent::CData(c) => {
                let raw = c.into_inner();
                let text = core::str::from_utf8(&raw).map_err(|e| xml_err(&reader, e))?;
                match stack.last_mut() {
                    Some(node) => node.text.push_str(text),
                    None => return Err(xml_err(&reader, "CDATA outside the root element")),
                }
            }
            XmlEvent::Eof => break,
            // Declaration, comments, processing instructions, DOCTYPE: nothing to keep.
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(xml_err(&reader, "document ends inside an element"));
    }
    root.ok_or(ReadError::NotCap)
}

/// Walks the CAP children of one element in the schema's sequence order.
struct Seq<'a> {
    path: &'a str,
    /// Element names in order; `true` when the element may repeat.
    order: &'static [(&'static str, bool)],
    last: Option<usize>,
}

impl Seq<'_> {
    fn step(&mut self, node: &Node) -> Result<&'static str, ReadError> {
        let idx = self
            .order
            .iter()
            .position(|(n, _)| *n == node.name)
            .ok_or_else(|| ReadError::Unexpected {
                path: self.path.to_string(),
                element: node.name.clone(),
            })?;
        let repeat_ok = self.order.get(idx).is_some_and(|(_, r)| *r);
        if let Some(last) = self.last {
            if idx < last || (idx == last && !repeat_ok) {
                return Err(ReadError::Order {
                    path: self.path.to_string(),
                    element: node.name.clone(),
                });
            }
        }
        self.last = Some(idx);
        Ok(self.order.get(idx).map_or("", |(n, _)| *n))
    }
}

fn container<'n>(node: &'n Node, path: &str) -> Result<impl Iterator<Item = &'n Node>, ReadError> {
    if !node.text.trim().is_empty() {
        return Err(ReadError::MixedContent {
            path: path.to_string(),
        });
    }
    Ok(node.children.iter().filter(|c| c.cap))
}

fn leaf(node: &Node, path: &str) -> Result<String, ReadError> {
    match node.children.iter().find(|c| c.cap) {
        Some(c) => Err(ReadError::Unexpected {
            path: format!("{path}.{}", node.name),
            element: c.name.clone(),
        }),
        None => Ok(node.text.clone()),
    }
}

fn code<T>(
    node: &Node,
    path: &str,
    what: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ReadError> {
    let text = leaf(node, path)?;
    parse(&text).ok_or_else(|| ReadError::Value {
        path: format!("{path}.{}", node.name),
        value: text.chars().take(64).collect(),
        what,
    })
}

fn time(node: &Node, path: &str) -> Result<CapTime, ReadError> {
    // xs:dateTime collapses surrounding whitespace.
    let text = leaf(node, path)?;
    CapTime::parse(text.trim()).map_err(|source| ReadError::Time {
        path: format!("{path}.{}", node.name),
        source,
    })
}

fn decimal(node: &Node, path: &str) -> Result<f64, ReadError> {
    code(node, path, "decimal", |s| {
        let s = s.trim();
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        let shape_ok = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.chars().filter(|&c| c == '.').count() <= 1
            && digits != ".";
        if shape_ok {
            s.parse::<f64>().ok()
        } else {
            None
        }
    })
}

fn required<T>(v: Option<T>, path: &str, element: &'static str) -> Result<T, ReadError> {
    v.ok_or_else(|| ReadError::Missing {
        path: path.to_string(),
        element,
    })
}

const ALERT_ORDER: &[(&str, bool)] = &[
    ("identifier", false),
    ("sender", false),
    ("sent", false),
    ("status", false),
    ("msgType", false),
    ("source", false),
    ("scope", false),
    ("restriction", false),
    ("addresses", false),
    ("code", true),
    ("note", false),
    ("references", false),
    ("incidents", false),
    ("info", true),
];

fn map_alert(node: &Node) -> Result<Alert, ReadError> {
    let path = "alert";
    let mut seq = Seq {
        path,
        order: ALERT_ORDER,
        last: None,
    };
    let (mut identifier, mut sender, mut sent, mut status, mut msg_type, mut scope) =
        (None, None, None, None, None, None);
    let (mut source, mut restriction, mut addresses, mut note, mut references, mut incidents) =
        (None, None, None, None, None, None);
    let mut codes = Vec::new();
    let mut infos = Vec::new();
    for child in container(node, path)? {
        match seq.step(child)? {
            "identifier" => identifier = Some(leaf(child, path)?),
            "sender" => sender = Some(leaf(child, path)?),
            "sent" => sent = Some(time(child, path)?),
            "status" => status = Some(code(child, path, "status", Status::parse)?),
            "msgType" => msg_type = Some(code(child, path, "msgType", MsgType::parse)?),
            "source" => source = Some(leaf(child, path)?),
            "scope" => scope = Some(code(child, path, "scope", Scope::parse)?),
            "restriction" => restriction = Some(leaf(child, path)?),
            "addresses" => addresses = Some(leaf(child, path)?),
            "code" => codes.push(leaf(child, path)?),
            "note" => note = Some(leaf(child, path)?),
            "references" => references = Some(leaf(child, path)?),
            "incidents" => incidents = Some(leaf(child, path)?),
            _ => {
                let p = format!("{path}.info[{}]", infos.len());
                infos.push(map_info(child, &p)?);
            }
        }
    }
    Ok(Alert {
        identifier: required(identifier, path, "identifier")?,
        sender: required(sender, path, "sender")?,
        sent: required(sent, path, "sent")?,
        status: required(status, path, "status")?,
        msg_type: required(msg_type, path, "msgType")?,
        source,
        scope: required(scope, path, "scope")?,
        restriction,
        addresses,
        code: codes,
        note,
        references,
        incidents,
        info: infos,
    })
}

const INFO_ORDER: &[(&str, bool)] = &[
    ("language", false),
    ("category", true),
    ("event", false),
    ("responseType", true),
    ("urgency", false),
    ("severity", false),
    ("certainty", false),
    ("audience", false),
    ("eventCode", true),
    ("effective", false),
    ("onset", false),
    ("expires", false),
    ("senderName", false),
    ("headline", false),
    ("description", false),
    ("instruction", false),
    ("web", false),
    ("contact", false),
    ("parameter", true),
    ("resource", true),
    ("area", true),
];

fn map_info(node: &Node, path: &str) -> Result<Info, ReadError> {
    let mut seq = Seq {
        path,
        order: INFO_ORDER,
        last: None,
    };
    let mut info = Info {
        language: None,
        category: Vec::new(),
        event: String::new(),
        response_type: Vec::new(),
        urgency: Urgency::Unknown,
        severity: Severity::Unknown,
        certainty: Certainty::Unknown,
        audience: None,
        event_code: Vec::new(),
        effective: None,
        onset: None,
        expires: None,
        sender_name: None,
        headline: None,
        description: None,
        instruction: None,
        web: None,
        contact: None,
        parameter: Vec::new(),
        area: Vec::new(),
    };
    let (mut event, mut urgency, mut severity, mut certainty) = (None, None, None, None);
    for child in container(node, path)? {
        match seq.step(child)? {
            "language" => info.language = Some(leaf(child, path)?),
            "category" => info
                .category
                .push(code(child, path, "category", Category::parse)?),
            "event" => event = Some(leaf(child, path)?),
            "responseType" => {
                info.response_type
                    .push(code(child, path, "responseType", ResponseType::parse)?)
            }
            "urgency" => urgency = Some(code(child, path, "urgency", Urgency::parse)?),
            "severity" => severity = Some(code(child, path, "severity", Severity::parse)?),
            "certainty" => certainty = Some(code(child, path, "certainty", Certainty::parse)?),
            "audience" => info.audience = Some(leaf(child, path)?),
            "eventCode" => {
                let p = format!("{path}.eventCode[{}]", info.event_code.len());
                info.event_code.push(map_pair(child, &p)?);
            }
            "effective" => info.effective = Some(time(child, path)?),
            "onset" => info.onset = Some(time(child, path)?),
            "expires" => info.expires = Some(time(child, path)?),
            "senderName" => info.sender_name = Some(leaf(child, path)?),
            "headline" => info.headline = Some(leaf(child, path)?),
            "description" => info.description = Some(leaf(child, path)?),
            "instruction" => info.instruction = Some(leaf(child, path)?),
            "web" => info.web = Some(leaf(child, path)?),
            "contact" => info.contact = Some(leaf(child, path)?),
            "parameter" => {
                let p = format!("{path}.parameter[{}]", info.parameter.len());
                info.parameter.push(map_pair(child, &p)?);
            }
            // Outside citygate's subset: skipped.
            "resource" => {}
            _ => {
                let p = format!("{path}.area[{}]", info.area.len());
                info.area.push(map_area(child, &p)?);
            }
        }
    }
    if info.category.is_empty() {
        return Err(ReadError::Missing {
            path: path.to_string(),
            element: "category",
        });
    }
    info.event = required(event, path, "event")?;
    info.urgency = required(urgency, path, "urgency")?;
    info.severity = required(severity, path, "severity")?;
    info.certainty = required(certainty, path, "certainty")?;
    Ok(info)
}

const AREA_ORDER: &[(&str, bool)] = &[
    ("areaDesc", false),
    ("polygon", true),
    ("circle", true),
    ("geocode", true),
    ("altitude", false),
    ("ceiling", false),
];

fn map_area(node: &Node, path: &str) -> Result<Area, ReadError> {
    let mut seq = Seq {
        path,
        order: AREA_ORDER,
        last: None,
    };
    let mut desc = None;
    let mut area = Area {
        area_desc: String::new(),
        polygon: Vec::new(),
        circle: Vec::new(),
        geocode: Vec::new(),
        altitude: None,
        ceiling: None,
    };
    for child in container(node, path)? {
        match seq.step(child)? {
            "areaDesc" => desc = Some(leaf(child, path)?),
            "polygon" => area.polygon.push(leaf(child, path)?),
            "circle" => area.circle.push(leaf(child, path)?),
            "geocode" => {
                let p = format!("{path}.geocode[{}]", area.geocode.len());
                area.geocode.push(map_pair(child, &p)?);
            }
            "altitude" => area.altitude = Some(decimal(child, path)?),
            _ => area.ceiling = Some(decimal(child, path)?),
        }
    }
    area.area_desc = required(desc, path, "areaDesc")?;
    Ok(area)
}

const PAIR_ORDER: &[(&str, bool)] = &[("valueName", false), ("value", false)];

fn map_pair(node: &Node, path: &str) -> Result<ValuePair, ReadError> {
    let mut seq = Seq {
        path,
        order: PAIR_ORDER,
        last: None,
    };
    let (mut name, mut value) = (None, None);
    for child in container(node, path)? {
        match seq.step(child)? {
            "valueName" => name = Some(leaf(child, path)?),
            _ => value = Some(leaf(child, path)?),
        }
    }
    Ok(ValuePair {
        value_name: required(name, path, "valueName")?,
        value: required(value, path, "value")?,
    })
}
