//! The CAP 1.2 §3 rules that the XML schema does not check, plus what our typed model cannot
//! express on its own (a non-empty `category`, a well-formed language tag, XML-legal text).
//!
//! Times need no check here: a [`super::CapTime`] always has a numeric offset, and the reader
//! and JSON form reject `Z` when they parse one.

use core::fmt;

use super::{Alert, Area, Info, Reference, Scope};

/// One broken rule, with the path of the element (e.g. `info[0].area[1].polygon[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// Every broken rule of one alert (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.path, v.message)?;
        }
        Ok(())
    }
}

struct Check {
    found: Vec<Violation>,
}

impl Check {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.found.push(Violation {
            path: path.into(),
            message: message.into(),
        });
    }

    /// CAP §3.2.1: `identifier` and `sender` must not include spaces, commas or restricted
    /// characters (`<` and `&`).
    fn token(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.fail(path, "must not be empty");
        } else if let Some(c) = value
            .chars()
            .find(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
        {
            self.fail(path, format!("must not contain {c:?}"));
        }
    }

    /// XML 1.0 allows no control characters other than tab, newline and carriage return.
    fn text(&mut self, path: &str, value: &str) {
        if let Some(c) = value.chars().find(|&c| {
            (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
        }) {
            self.fail(path, format!("contains {c:?}, which XML 1.0 cannot carry"));
        }
    }

    fn opt_text(&mut self, path: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.text(path, v);
        }
    }
}

impl Alert {
    /// Checks the CAP §3 rules; `Err` lists every violation with its path.
    pub fn validate(&self) -> Result<(), Violations> {
        let mut c = Check { found: Vec::new() };
        c.token("identifier", &self.identifier);
        c.token("sender", &self.sender);
        for (name, v) in [
            ("source", &self.source),
            ("restriction", &self.restriction),
            ("addresses", &self.addresses),
            ("note", &self.note),
            ("incidents", &self.incidents),
        ] {
            c.opt_text(name, v.as_deref());
        }
        for (i, code) in self.code.iter().enumerate() {
            c.text(&format!("code[{i}]"), code);
        }
        let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        match self.scope {
            Scope::Private if !has(&self.addresses) => {
                c.fail("addresses", "required when scope is Private")
            }
            Scope::Restricted if !has(&self.restriction) => {
                c.fail("restriction", "required when scope is Restricted")
            }
            _ => {}
        }
        if let Some(refs) = &self.references {
            match Reference::parse_list(refs) {
                Ok(list) if list.is_empty() => c.fail(
                    "references",
                    "present but lists no sender,identifier,sent triplet",
                ),
                Ok(list) => {
                    for (i, r) in list.iter().enumerate() {
                        c.token(&format!("references[{i}].sender"), &r.sender);
                        c.token(&format!("references[{i}].identifier"), &r.identifier);
                    }
                }
                Err(e) => c.fail("references", e),
            }
        }
        for (i, info) in self.info.iter().enumerate() {
            check_info(&mut c, &format!("info[{i}]"), info);
        }
        if c.found.is_empty() {
            Ok(())
        } else {
            Err(Violations(c.found))
        }
    }
}

fn check_info(c: &mut Check, path: &str, i: &Info) {
    if let Some(lang) = &i.language {
        if !is_language_tag(lang) {
            c.fail(
                format!("{path}.language"),
                format!("`{lang}` is not a language tag like en-US"),
            );
        }
    }
    if i.category.is_empty() {
        c.fail(
            format!("{path}.category"),
            "at least one category is required",
        );
    }
    c.text(&format!("{path}.event"), &i.event);
    for (name, v) in [
        ("audience", &i.audience),
        ("senderName", &i.sender_name),
        ("headline", &i.headline),
        ("description", &i.description),
        ("instruction", &i.instruction),
        ("web", &i.web),
        ("contact", &i.contact),
    ] {
        c.opt_text(&format!("{path}.{name}"), v.as_deref());
    }
    for (name, pairs) in [("eventCode", &i.event_code), ("parameter", &i.parameter)] {
        for (k, p) in pairs.iter().enumerate() {
            c.text(&format!("{path}.{name}[{k}].valueName"), &p.value_name);
            c.text(&format!("{path}.{name}[{k}].value"), &p.value);
        }
    }
    for (k, a) in i.area.iter().enumerate() {
        check_area(c, &format!("{path}.area[{k}]"), a);
    }
}

fn check_area(c: &mut Check, path: &str, a: &Area) {
    c.text(&format!("{path}.areaDesc"), &a.area_desc);
    for (k, p) in a.polygon.iter().enumerate() {
        if let Err(e) = check_polygon(p) {
            c.fail(format!("{path}.polygon[{k}]"), e);
        }
    }
    for (k, p) in a.circle.iter().enumerate() {
        if let Err(e) = check_circle(p) {
            c.fail(format!("{path}.circle[{k}]"), e);
        }
    }
    for (k, g) in a.geocode.iter().enumerate() {
        c.text(&format!("{path}.geocode[{k}].valueName"), &g.value_name);
        c.text(&format!("{path}.geocode[{k}].value"), &g.value);
    }
    for (name, v) in [("altitude", a.altitude), ("ceiling", a.ceiling)] {
        if v.is_some_and(|v| !v.is_finite()) {
            c.fail(format!("{path}.{name}"), "must be a finite number");
        }
    }
    if a.ceiling.is_some() && a.altitude.is_none() {
        c.fail(format!("{path}.ceiling"), "may only be used with altitude");
    }
}

/// `lat,lon` in WGS 84 degrees.
fn point(text: &str) -> Result<(f64, f64), String> {
    let (la, lo) = text
        .split_once(',')
        .ok_or_else(|| format!("`{text}` is not a lat,lon pair"))?;
    let parse = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    match (parse(la), parse(lo)) {
        (Some(la), Some(lo)) if (-90.0..=90.0).contains(&la) && (-180.0..=180.0).contains(&lo) => {
            Ok((la, lo))
        }
        (Some(_), Some(_)) => Err(format!("`{text}` is outside -90..90, -180..180")),
        _ => Err(format!("`{text}` is not a lat,lon pair of numbers")),
    }
}

/// CAP §3.2.4 polygon: at least four space-separated pairs, first and last identical.
fn check_polygon(text: &str) -> Result<(), String> {
    let pts: Vec<(f64, f64)> = text
        .split_whitespace()
        .map(point)
        .collect::<Result<_, _>>()?;
    if pts.len() < 4 {
        return Err(format!("{} points; a polygon needs at least 4", pts.len()));
    }
    if pts.first() != pts.last() {
        return Err("not closed: the first and last points differ".to_string());
    }
    Ok(())
}

/// CAP §3.2.4 circle: `lat,lon radius`, radius in kilometres.
fn check_circle(text: &str) -> Result<(), String> {
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(centre), Some(radius), None) => {
            point(centre)?;
            match radius.parse::<f64>() {
                Ok(r) if r.is_finite() && r >= 0.0 => Ok(()),
                _ => Err(format!(
                    "radius `{radius}` is not a number of kilometres ≥ 0"
                )),
            }
        }
        _ => Err(format!("`{text}` is not `lat,lon radius`")),
    }
}

/// xs:language: `[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*`.
fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}
