//! Reads what signal control needs from a SUMO network file (`.net.xml`): edges and their
//! lanes, connections with their traffic-light link index, traffic-light programs (`tlLogic`),
//! and each junction's request matrix (`response` / `foes`), and maps a traffic light's link
//! indices to the junction's link numbering so that foes and priorities can be looked up.

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: XML error at byte {pos}: {message}")]
    Xml {
        path: String,
        pos: u64,
        message: String,
    },
    #[error("{path}: <{element}> {what}")]
    Bad {
        path: String,
        element: String,
        what: String,
    },
    #[error("{path}: traffic light `{tls}` {what}")]
    Tls {
        path: String,
        tls: String,
        what: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub id: String,
    pub index: usize,
    pub length: f64,
    /// Speed limit (m/s); SUMO's default 13.89 when the lane has none.
    pub speed: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub id: String,
    pub from: String,
    pub to: String,
    /// `internal`, `walkingarea`, `crossing`, or empty for a normal edge.
    pub function: String,
    pub lanes: Vec<Lane>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub from: String,
    pub to: String,
    pub from_lane: usize,
    pub to_lane: usize,
    pub via: Option<String>,
    pub tl: Option<String>,
    pub link_index: Option<usize>,
    /// `s` straight, `l` left, `r` right, `t` turn-around, `L`/`R` partial.
    pub dir: String,
}

impl Connection {
    pub fn from_lane_id(&self) -> String {
        format!("{}_{}", self.from, self.from_lane)
    }
    pub fn to_lane_id(&self) -> String {
        format!("{}_{}", self.to, self.to_lane)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub duration: f64,
    pub state: String,
    /// Minimum and maximum duration of an actuated phase (`minDur`, `maxDur`).
    pub min_dur: Option<f64>,
    pub max_dur: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlLogic {
    pub id: String,
    pub kind: String,
    pub program_id: String,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub index: usize,
    /// `response[j]`: this link must yield to junction link j.
    pub response: Vec<bool>,
    /// `foes[j]`: this link conflicts with junction link j.
    pub foes: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Junction {
    pub id: String,
    pub kind: String,
    pub inc_lanes: Vec<String>,
    pub requests: Vec<Request>,
}

/// The parts of a SUMO network signal control uses.
#[derive(Debug, Clone, Default)]
pub struct Net {
    pub path: String,
    pub edges: BTreeMap<String, Edge>,
    pub connections: Vec<Connection>,
    pub tl_logics: Vec<TlLogic>,
    pub junctions: BTreeMap<String, Junction>,
}

/// One controlled link of a traffic light.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsLink {
    pub index: usize,
    pub from_edge: String,
    pub from_lane: String,
    pub to_lane: String,
    pub dir: String,
    /// The junction's own number for this link (row of its request matrix), when known.
    pub junction_index: Option<usize>,
}

/// A traffic light's links with their conflicts and priorities, by link index.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsTopology {
    pub tls: String,
    /// One entry per link index; several connections can share an index (first kept).
    pub links: Vec<TlsLink>,
    /// `foes[i][j]`: links i and j conflict.
    pub foes: Vec<Vec<bool>>,
    /// `yields[i][j]`: link i must give way to link j when both run.
    pub yields: Vec<Vec<bool>>,
}

fn attr(e: &BytesStart, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// One element's attributes, with errors that name the file and the element.
struct El<'a, 'e> {
    e: &'a BytesStart<'e>,
    name: &'static str,
    path: &'a str,
}

impl El<'_, '_> {
    fn bad(&self, what: String) -> NetError {
        NetError::Bad {
            path: self.path.to_string(),
            element: self.name.to_string(),
            what,
        }
    }
    fn get(&self, name: &str) -> Option<String> {
        attr(self.e, name.as_bytes())
    }
    fn req(&self, name: &str) -> Result<String, NetError> {
        self.get(name)
            .ok_or_else(|| self.bad(format!("has no `{name}`")))
    }
    fn num(&self, name: &str) -> Result<f64, NetError> {
        let v = self.req(name)?;
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| self.bad(format!("`{name}` = `{v}` is not a number")))
    }
    fn idx(&self, name: &str) -> Result<usize, NetError> {
        let v = self.req(name)?;
        v.trim()
            .parse::<usize>()
            .map_err(|_| self.bad(format!("`{name}` = `{v}` is not an index")))
    }
    fn opt_num(&self, name: &str) -> Result<Option<f64>, NetError> {
        self.get(name).map(|_| self.num(name)).transpose()
    }
    fn opt_idx(&self, name: &str) -> Result<Option<usize>, NetError> {
        self.get(name).map(|_| self.idx(name)).transpose()
    }
}

/// The state of [`Net::parse`]: the net so far and the open edge, program and junction.
struct Parser {
    net: Net,
    edge: Option<Edge>,
    logic: Option<TlLogic>,
    junction: Option<Junction>,
}

impl Parser {
    fn end(&mut self, name: &[u8]) {
        match name {
            b"edge" => {
                if let Some(ed) = self.edge.take() {
                    self.net.edges.insert(ed.id.clone(), ed);
                }
            }
            b"tlLogic" => self.net.tl_logics.extend(self.logic.take()),
            b"junction" => {
                if let Some(j) = self.junction.take() {
                    self.net.junctions.insert(j.id.clone(), j);
                }
            }
            _ => {}
        }
    }

    /// An element opens (`empty`: it closes at once, `<x/>`, and holds nothing).
    fn start(&mut self, e: &BytesStart, empty: bool) -> Result<(), NetError> {
        let path = self.net.path.clone();
        let el = |name: &'static str| El {
            e,
            name,
            path: &path,
        };
        match e.name().as_ref() {
            b"edge" => {
                let el = el("edge");
                let ed = Edge {
                    id: el.req("id")?,
                    from: el.get("from").unwrap_or_default(),
                    to: el.get("to").unwrap_or_default(),
                    function: el.get("function").unwrap_or_default(),
                    lanes: Vec::new(),
                };
                if empty {
                    self.net.edges.insert(ed.id.clone(), ed);
                } else {
                    self.edge = Some(ed);
                }
            }
            b"lane" => {
                if let Some(ed) = self.edge.as_mut() {
                    let el = el("lane");
                    ed.lanes.push(Lane {
                        id: el.req("id")?,
                        index: el.idx("index")?,
                        length: el.num("length")?,
                        speed: el.opt_num("speed")?.unwrap_or(13.89),
                    });
                }
            }
            b"connection" => {
                let el = el("connection");
                self.net.connections.push(Connection {
                    from: el.req("from")?,
                    to: el.req("to")?,
                    from_lane: el.idx("fromLane")?,
                    to_lane: el.idx("toLane")?,
                    via: el.get("via"),
                    tl: el.get("tl"),
                    link_index: el.opt_idx("linkIndex")?,
                    dir: el.get("dir").unwrap_or_default(),
                });
            }
            b"tlLogic" => {
                let el = el("tlLogic");
                let l = TlLogic {
                    id: el.req("id")?,
                    kind: el.get("type").unwrap_or_default(),
                    program_id: el.get("programID").unwrap_or_default(),
                    phases: Vec::new(),
                };
                if empty {
                    self.net.tl_logics.push(l);
                } else {
                    self.logic = Some(l);
                }
            }
            b"phase" => {
                if let Some(l) = self.logic.as_mut() {
                    let el = el("phase");
                    l.phases.push(Phase {
                        duration: el.num("duration")?,
                        state: el.req("state")?,
                        min_dur: el.opt_num("minDur")?,
                        max_dur: el.opt_num("maxDur")?,
                    });
                }
            }
            b"junction" => {
                let el = el("junction");
                let j = Junction {
                    id: el.req("id")?,
                    kind: el.get("type").unwrap_or_default(),
                    inc_lanes: el
                        .get("incLanes")
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                    requests: Vec::new(),
                };
                if empty {
                    self.net.junctions.insert(j.id.clone(), j);
                } else {
                    self.junction = Some(j);
                }
            }
            b"request" => {
                if let Some(j) = self.junction.as_mut() {
                    let el = el("request");
                    j.requests.push(Request {
                        index: el.idx("index")?,
                        response: bits(&el.req("response")?),
                        foes: bits(&el.req("foes")?),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Bits of a request string: SUMO writes link 0 as the last character.
fn bits(s: &str) -> Vec<bool> {
    s.chars().rev().map(|c| c == '1').collect()
}

impl Net {
    pub fn load(path: &Path) -> Result<Net, NetError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| NetError::Read {
            path: shown.clone(),
            err,
        })?;
        Net::parse(&text, &shown)
    }

    /// Parses the text of a `.net.xml`; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Net, NetError> {
        let mut p = Parser {
            net: Net {
                path: path.to_string(),
                ..Net::default()
            },
            edge: None,
            logic: None,
            junction: None,
        };
        let mut reader = Reader::from_str(text);
        loop {
            let ev = reader.read_event().map_err(|e| NetError::Xml {
                path: path.to_string(),
                pos: reader.buffer_position(),
                message: e.to_string(),
            })?;
            match &ev {
                Event::Start(e) => p.start(e, false)?,
                Event::Empty(e) => p.start(e, true)?,
                Event::End(e) => p.end(e.name().as_ref()),
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(p.net)
    }

    /// Ids of the traffic lights that have a program, in file order, without repeats.
    pub fn tls_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for l in &self.tl_logics {
            if !ids.contains(&l.id) {
                ids.push(l.id.clone());
            }
        }
        ids
    }

    /// The first program of a traffic light (the one SUMO runs by default).
    pub fn program(&self, tls: &str) -> Option<&TlLogic> {
        self.tl_logics.iter().find(|l| l.id == tls)
    }

    fn function(&self, edge: &str) -> &str {
        self.edges
            .get(edge)
            .map(|e| e.function.as_str())
            .unwrap_or("")
    }

    /// The junction's own index of a connection, counted as SUMO (and sumolib) count it: over
    /// the junction's incoming lanes in order, each lane's outgoing connections in file order,
    /// skipping those into walking areas.
    fn junction_index(&self, junction: &Junction, conn: &Connection) -> Option<usize> {
        let mut n = 0;
        for lane in &junction.inc_lanes {
            let (edge, index) = lane.rsplit_once('_')?;
            let index: usize = index.parse().ok()?;
            for c in self
                .connections
                .iter()
                .filter(|c| c.from == edge && c.from_lane == index)
            {
                let (ff, tf) = (self.function(&c.from), self.function(&c.to));
                if tf == "walkingarea" || (ff == "walkingarea" && tf != "crossing") {
                    continue;
                }
                if c == conn {
                    return Some(n);
                }
                n += 1;
            }
        }
        None
    }

    /// The links of traffic light `tls` with foes and priorities in link-index space.
    pub fn tls_topology(&self, tls: &str) -> Result<TlsTopology, NetError> {
        let err = |what: String| NetError::Tls {
            path: self.path.clone(),
            tls: tls.to_string(),
            what,
        };
        let program = self
            .program(tls)
            .ok_or_else(|| err("has no <tlLogic> in the net".into()))?;
        let n = program.phases.first().map(|p| p.state.len()).unwrap_or(0);
        let mut by_index: Vec<Option<(&Connection, TlsLink)>> = vec![None; n];
        for c in self
            .connections
            .iter()
            .filter(|c| c.tl.as_deref() == Some(tls))
        {
            let Some(i) = c.link_index else { continue };
            let slot = by_index.get_mut(i).ok_or_else(|| {
                err(format!(
                    "has link index {i} but its program's states have {n} signals"
                ))
            })?;
            if slot.is_some() {
                continue;
            }
            let junction_index = self
                .edges
                .get(&c.from)
                .and_then(|e| self.junctions.get(&e.to))
                .and_then(|j| self.junction_index(j, c));
            *slot = Some((
                c,
                TlsLink {
                    index: i,
                    from_edge: c.from.clone(),
                    from_lane: c.from_lane_id(),
                    to_lane: c.to_lane_id(),
                    dir: c.dir.clone(),
                    junction_index,
                },
            ));
        }
        let mut links = Vec::with_capacity(n);
        let mut junction_of = Vec::with_capacity(n);
        for (i, s) in by_index.into_iter().enumerate() {
            let (c, l) =
                s.ok_or_else(|| err(format!("controls no connection at link index {i}")))?;
            let j = self
                .edges
                .get(&c.from)
                .and_then(|e| self.junctions.get(&e.to));
            junction_of.push(j.map(|j| j.id.clone()));
            links.push(l);
        }
        let mut foes = vec![vec![false; n]; n];
        let mut yields = vec![vec![false; n]; n];
        for a in 0..n {
            for b in 0..n {
                if a == b || junction_of[a] != junction_of[b] {
                    continue;
                }
                let (Some(ja), Some(jb), Some(jid)) = (
                    links[a].junction_index,
                    links[b].junction_index,
                    junction_of[a].as_ref(),
                ) else {
                    continue;
                };
                let Some(junction) = self.junctions.get(jid) else {
                    continue;
                };
                let row = |k: usize| junction.requests.iter().find(|r| r.index == k);
                let (Some(ra), Some(rb)) = (row(ja), row(jb)) else {
                    continue;
                };
                let get = |v: &Vec<bool>, k: usize| v.get(k).copied().unwrap_or(false);
                foes[a][b] = get(&ra.foes, jb) || get(&rb.foes, ja);
                yields[a][b] = get(&ra.response, jb);
            }
        }
        Ok(TlsTopology {
            tls: tls.to_string(),
            links,
            foes,
            yields,
        })
    }

    /// Lanes that lead into `lane` through a junction without traffic light (connections ending
    /// on it), as lane ids.
    pub fn upstream_lanes(&self, lane: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.connections {
            if c.to_lane_id() == lane && !c.from.starts_with(':') && c.tl.is_none() {
                let id = c.from_lane_id();
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    pub fn lane(&self, lane: &str) -> Option<&Lane> {
        let (edge, _) = lane.rsplit_once('_')?;
        self.edges.get(edge)?.lanes.iter().find(|l| l.id == lane)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The kit's D1 net (one intersection, 20 links), as `make_scenarios.sh` builds it.
    pub(crate) const D1: &str = include_str!("../../../../tests/data/sumo/d1.net.xml");

    #[test]
    fn reads_the_d1_net() {
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        assert_eq!(net.tls_ids(), ["A0"]);
        let p = net.program("A0").unwrap();
        assert_eq!(p.phases.len(), 10);
        assert_eq!(p.phases[0].state, "GGGggrrrrrGGGggrrrrr");
        assert_eq!(p.phases[0].duration, 31.0);
        assert_eq!(net.lane("top0A0.240.00_0").unwrap().length, 44.0);
    }

    #[test]
    fn topology_maps_foes_and_priorities() {
        let net = Net::parse(D1, "d1.net.xml").unwrap();
        let t = net.tls_topology("A0").unwrap();
        assert_eq!(t.links.len(), 20);
        // link 3: left turn from the north; it gives way to the opposing through (11, 12)
        assert_eq!(t.links[3].dir, "l");
        assert!(t.foes[3][11] && t.yields[3][11] && !t.yields[11][3]);
        // link 0 (right from the north) merges with 6 and 7 (through from the east)
        assert!(t.foes[0][6] && t.foes[0][7] && !t.foes[0][1]);
        for a in 0..20 {
            for b in 0..20 {
                assert_eq!(t.foes[a][b], t.foes[b][a], "foes symmetric {a} {b}");
            }
        }
    }

    #[test]
    fn malformed_nets_are_errors_naming_the_element() {
        let e = Net::parse("<net><phase/></net>", "x.xml");
        assert!(e.is_ok(), "phase outside tlLogic is ignored");
        let e = Net::parse(
            r#"<net><tlLogic id="A"><phase duration="x" state="G"/></tlLogic></net>"#,
            "x.xml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("<phase> `duration`"), "{e}");
        let e = Net::parse("<net><edge", "x.xml").unwrap_err();
        assert!(e.to_string().starts_with("x.xml"), "{e}");
        let net = Net::parse(
            r#"<net><tlLogic id="A"><phase duration="5" state="GG"/></tlLogic></net>"#,
            "x.xml",
        )
        .unwrap();
        let e = net.tls_topology("A").unwrap_err();
        assert!(e.to_string().contains("link index 0"), "{e}");
        assert!(net.tls_topology("B").is_err());
    }
}
