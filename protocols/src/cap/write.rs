//! The CAP 1.2 XML writer: elements in the schema's sequence order, two-space indentation,
//! text escaped, default namespace on `<alert>`. The output is deterministic byte for byte.

use core::fmt::Write as _;

use super::{Alert, Area, Info, ValuePair, NAMESPACE};

struct Out {
    s: String,
}

impl Out {
    fn open(&mut self, depth: usize, name: &str) {
        self.indent(depth);
        let _ = writeln!(self.s, "<{name}>");
    }

    fn close(&mut self, depth: usize, name: &str) {
        self.indent(depth);
        let _ = writeln!(self.s, "</{name}>");
    }

    fn leaf(&mut self, depth: usize, name: &str, text: &str) {
        self.indent(depth);
        let _ = write!(self.s, "<{name}>");
        escape_into(&mut self.s, text);
        let _ = writeln!(self.s, "</{name}>");
    }

    fn opt(&mut self, depth: usize, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(depth, name, t);
        }
    }

    fn pairs(&mut self, depth: usize, name: &str, pairs: &[ValuePair]) {
        for p in pairs {
            self.open(depth, name);
            self.leaf(depth + 1, "valueName", &p.value_name);
            self.leaf(depth + 1, "value", &p.value);
            self.close(depth, name);
        }
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.s.push_str("  ");
        }
    }
}

/// Escapes character data: `&`, `<`, `>` and `\r` (kept as a reference so that a reader's
/// end-of-line normalisation does not lose it).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

impl Alert {
    /// The XML document (UTF-8, with declaration). Validity against the schema needs
    /// [`Alert::validate`] to pass first (e.g. at least one category per info).
    pub fn to_xml(&self) -> String {
        let mut o = Out {
            s: String::with_capacity(2048),
        };
        o.s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(o.s, "<alert xmlns=\"{NAMESPACE}\">");
        o.leaf(1, "identifier", &self.identifier);
        o.leaf(1, "sender", &self.sender);
        o.leaf(1, "sent", &self.sent.to_string());
        o.leaf(1, "status", self.status.as_str());
        o.leaf(1, "msgType", self.msg_type.as_str());
        o.opt(1, "source", self.source.as_deref());
        o.leaf(1, "scope", self.scope.as_str());
        o.opt(1, "restriction", self.restriction.as_deref());
        o.opt(1, "addresses", self.addresses.as_deref());
        for c in &self.code {
            o.leaf(1, "code", c);
        }
        o.opt(1, "note", self.note.as_deref());
        o.opt(1, "references", self.references.as_deref());
        o.opt(1, "incidents", self.incidents.as_deref());
        for info in &self.info {
            write_info(&mut o, info);
        }
        o.s.push_str("</alert>\n");
        o.s
    }
}

fn write_info(o: &mut Out, i: &Info) {
    o.open(1, "info");
    o.opt(2, "language", i.language.as_deref());
    for c in &i.category {
        o.leaf(2, "category", c.as_str());
    }
    o.leaf(2, "event", &i.event);
    for r in &i.response_type {
        o.leaf(2, "responseType", r.as_str());
    }
    o.leaf(2, "urgency", i.urgency.as_str());
    o.leaf(2, "severity", i.severity.as_str());
    o.leaf(2, "certainty", i.certainty.as_str());
    o.opt(2, "audience", i.audience.as_deref());
    o.pairs(2, "eventCode", &i.event_code);
    for (name, t) in [
        ("effective", i.effective),
        ("onset", i.onset),
        ("expires", i.expires),
    ] {
        if let Some(t) = t {
            o.leaf(2, name, &t.to_string());
        }
    }
    o.opt(2, "senderName", i.sender_name.as_deref());
    o.opt(2, "headline", i.headline.as_deref());
    o.opt(2, "description", i.description.as_deref());
    o.opt(2, "instruction", i.instruction.as_deref());
    o.opt(2, "web", i.web.as_deref());
    o.opt(2, "contact", i.contact.as_deref());
    o.pairs(2, "parameter", &i.parameter);
    for a in &i.area {
        write_area(o, a);
    }
    o.close(1, "info");
}

fn write_area(o: &mut Out, a: &Area) {
    o.open(2, "area");
    o.leaf(3, "areaDesc", &a.area_desc);
    for p in &a.polygon {
        o.leaf(3, "polygon", p);
    }
    for c in &a.circle {
        o.leaf(3, "circle", c);
    }
    o.pairs(3, "geocode", &a.geocode);
    // f64 Display never uses an exponent, so this is a valid xs:decimal when finite.
    if let Some(alt) = a.altitude {
        o.leaf(3, "altitude", &alt.to_string());
    }
    if let Some(c) = a.ceiling {
        o.leaf(3, "ceiling", &c.to_string());
    }
    o.close(2, "area");
}
