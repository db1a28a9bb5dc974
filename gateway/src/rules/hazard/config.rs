//! `[hazard]` configuration: who signs the alerts, the storm limit, and the sensor groups
//! (`[[hazard.groups]]`) with their rule, corroboration, fault checks, severity levels and
//! local actions. Every struct rejects unknown keys; defaults are `const fn`s; `validate()`
//! returns every problem with its key path (e.g. `hazard.groups[0].levels[1].raise`).
//!
//! ```toml
//! [hazard]
//! sender = "citygate.gw-12@city.example"   # CAP <sender>
//! identifier_prefix = "gw-12"              # identifiers gw-12.<group>.<incident>.<n>
//! sender_name = "City Traffic Management Centre"
//! min_update_interval_s = 300              # storm limit per incident
//! expires_s = 21600                        # <expires> = <sent> + 6 h; renewed at half-life
//!
//! [[hazard.groups]]
//! id = "underpass"
//! sensors = ["flood-1", "flood-2", "flood-3"]
//! quantity = "water_level"
//! rule = { kind = "threshold" }  # or { kind = "rate_of_change", window_s = 600 }
//!                                # or { kind = "accumulation", window_s = 3600, input = "counter" }
//! k = 2                          # 2 of the 3 sensors must agree
//! persistence_s = 60
//! event = "Flood"
//! category = ["Met", "Transport"]
//! area = { desc = "Main St underpass", polygon = [[52.1, 4.3], [52.1, 4.31], [52.11, 4.31]] }
//! faults = { valid_min = 0.0, valid_max = 10.0, stuck_after_s = 900, max_deviation = 0.2 }
//!
//! [[hazard.groups.levels]]
//! name = "warning"
//! raise = 0.5
//! clear = 0.4
//! urgency = "Immediate"
//! severity = "Severe"
//! certainty = "Observed"
//! response_type = ["Avoid"]
//! headline = "Main St underpass flooded ({value} m): road closed"
//! instruction = "Do not drive through flood water."
//! publish = [{ topic = "siren/main-st", payload = "on", clear_payload = "off" }]
//! emergency_plans = [{ intersection = "int-12", plan = "flood-detour" }]
//! ```

use serde::Deserialize;

use crate::config::report::Report;

use citygate_protocols::cap::{Category, Certainty, ResponseType, Severity, Status, Urgency};

/// `[hazard]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HazardConfig {
    /// CAP `<sender>`: globally unique, no spaces, commas, `<` or `&`
    /// (e.g. `citygate.gw-12@city.example`).
    pub sender: String,
    /// First part of every CAP identifier: `<prefix>.<group>.<incident>.<message>`.
    /// Letters, digits, `.`, `_`, `-` (e.g. the gateway id).
    pub identifier_prefix: String,
    /// CAP `<senderName>`: the agency, as the public should read it.
    #[serde(default)]
    pub sender_name: Option<String>,
    /// CAP `<language>` of the texts below.
    #[serde(default = "default_language")]
    pub language: String,
    /// CAP `<status>`: `Actual` in service, `Exercise` or `Test` otherwise.
    #[serde(default = "default_status")]
    pub status: Status,
    /// CAP `<web>` for more information.
    #[serde(default)]
    pub web: Option<String>,
    /// CAP `<contact>`.
    #[serde(default)]
    pub contact: Option<String>,
    /// Storm limit: at most one message per incident within this many seconds after the
    /// previous one (updates and the cancel are delayed, never lost), and no new incident of a
    /// group within this time after its cancel.
    #[serde(default = "default_min_update_interval_s")]
    pub min_update_interval_s: f64,
    /// CAP `<expires>` is `<sent>` plus this many seconds.
    #[serde(default = "default_expires_s")]
    pub expires_s: u32,
    /// `[[hazard.groups]]`
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

fn default_language() -> String {
    "en-US".to_string()
}
const fn default_status() -> Status {
    Status::Actual
}
const fn default_min_update_interval_s() -> f64 {
    300.0
}
const fn default_expires_s() -> u32 {
    6 * 3600
}

/// One `[[hazard.groups]]`: sensors that watch the same hazard at the same place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group id, part of identifiers: letters, digits, `_`, `-` (e.g. `river-north`).
    pub id: String,
    /// Sensor ids (as in readings), at least one.
    pub sensors: Vec<String>,
    /// Quantity the rule reads (e.g. `water_level`, `rain`); other quantities are ignored.
    pub quantity: String,
    /// How each sensor's readings become the value compared with the levels.
    pub rule: RuleConfig,
    /// Whether a level is raised when the value goes above (default) or below its thresholds.
    #[serde(default)]
    pub direction: Direction,
    /// Corroboration: at least `k` healthy sensors must reach a level before it is raised.
    #[serde(default = "default_k")]
    pub k: usize,
    /// A level change (up or down) must hold this long, in seconds, before it is acted on.
    #[serde(default = "default_persistence_s")]
    pub persistence_s: f64,
    /// CAP `<category>` values.
    #[serde(default = "default_category")]
    pub category: Vec<Category>,
    /// CAP `<event>` (a level may override it), e.g. `Flood`.
    pub event: String,
    /// CAP `<area>` (a level may override it).
    pub area: AreaConfig,
    /// Sensor fault checks.
    #[serde(default)]
    pub faults: FaultConfig,
    /// Severity levels, lowest first (e.g. advisory, watch, warning).
    pub levels: Vec<LevelConfig>,
}

const fn default_k() -> usize {
    1
}
const fn default_persistence_s() -> f64 {
    60.0
}
fn default_category() -> Vec<Category> {
    vec![Category::Met]
}

/// `rule = { kind = "...", ... }`
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// The reading itself (e.g. water level in m).
    Threshold {},
    /// Rise over the last `window_s` seconds: latest value minus the value `window_s` ago
    /// (or the oldest value held, while less history is available).
    RateOfChange { window_s: f64 },
    /// Sum over the last `window_s` seconds (e.g. rain mm in the last hour).
    Accumulation {
        window_s: f64,
        /// What each reading carries.
        input: AccumulationInput,
    },
}

/// What an accumulation sensor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccumulationInput {
    /// Each reading is the amount since the previous reading (≥ 0; negative is out of range).
    Increment,
    /// Each reading is a running total (tipping-bucket counter). The increment is the
    /// difference to the previous reading; the first reading only sets the baseline; a drop
    /// means the counter was reset, and the new value is taken as the increment.
    Counter,
}

/// Direction of the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Raised when value ≥ `raise`, cleared when value < `clear` (`clear` ≤ `raise`).
    #[default]
    Above,
    /// Raised when value ≤ `raise`, cleared when value > `clear` (`clear` ≥ `raise`).
    Below,
}

/// `[hazard.groups.faults]`: when a sensor is left out of the vote and reported.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Readings below this are out of range.
    #[serde(default)]
    pub valid_min: Option<f64>,
    /// Readings above this are out of range.
    #[serde(default)]
    pub valid_max: Option<f64>,
    /// No usable reading for this many seconds: silent.
    #[serde(default = "default_silent_after_s")]
    pub silent_after_s: f64,
    /// No change (beyond `stuck_epsilon`) for this many seconds while another sensor of the
    /// group changed within that time: stuck. It stays stuck until its own value changes.
    #[serde(default = "default_stuck_after_s")]
    pub stuck_after_s: f64,
    /// Changes up to this size count as no change.
    #[serde(default)]
    pub stuck_epsilon: f64,
    /// Differs from the median of the group's healthy sensors by more than this (in the unit
    /// of the rule's value) for `deviation_hold_s`: disagrees. Needs 3 or more sensors
    /// reporting; absent: not checked.
    #[serde(default)]
    pub max_deviation: Option<f64>,
    #[serde(default = "default_deviation_hold_s")]
    pub deviation_hold_s: f64,
}

const fn default_silent_after_s() -> f64 {
    600.0
}
const fn default_stuck_after_s() -> f64 {
    1800.0
}
const fn default_deviation_hold_s() -> f64 {
    120.0
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            valid_min: None,
            valid_max: None,
            silent_after_s: default_silent_after_s(),
            stuck_after_s: default_stuck_after_s(),
            stuck_epsilon: 0.0,
            max_deviation: None,
            deviation_hold_s: default_deviation_hold_s(),
        }
    }
}

/// `[[hazard.groups.levels]]`: one severity level and what it means for the public.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// e.g. `advisory`, `watch`, `warning`.
    pub name: String,
    /// Threshold that raises this level.
    pub raise: f64,
    /// Threshold that clears it (hysteresis).
    pub clear: f64,
    pub urgency: Urgency,
    pub severity: Severity,
    pub certainty: Certainty,
    /// CAP `<responseType>` values, e.g. `["Avoid"]`.
    #[serde(default)]
    pub response_type: Vec<ResponseType>,
    /// CAP `<event>`; the group's when absent.
    #[serde(default)]
    pub event: Option<String>,
    /// CAP `<headline>`. `{group}`, `{level}` and `{value}` are replaced.
    pub headline: String,
    /// CAP `<description>`, same placeholders; a generated one when absent.
    #[serde(default)]
    pub description: Option<String>,
    /// CAP `<instruction>`.
    #[serde(default)]
    pub instruction: Option<String>,
    /// CAP `<area>`; the group's when absent.
    #[serde(default)]
    pub area: Option<AreaConfig>,
    /// Local publishes when this level is entered (sirens, variable message signs).
    #[serde(default)]
    pub publish: Vec<PublishConfig>,
    /// Emergency signal plans requested while this level is active.
    #[serde(default)]
    pub emergency_plans: Vec<EmergencyPlanConfig>,
}

/// CAP area of an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaConfig {
    /// CAP `<areaDesc>`, e.g. `Main St underpass`.
    pub desc: String,
    /// `[[lat, lon], ...]` in WGS 84 degrees, at least 3 points (closed automatically).
    #[serde(default)]
    pub polygon: Vec<[f64; 2]>,
    /// A circle.
    #[serde(default)]
    pub circle: Option<CircleConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircleConfig {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

/// A local MQTT publish.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// Topic on the local broker (no wildcards).
    pub topic: String,
    /// Payload published when the level is entered.
    pub payload: String,
    /// Payload published when the level is left for a level that does not publish to this
    /// topic (e.g. `off`).
    #[serde(default)]
    pub clear_payload: Option<String>,
}

/// An emergency signal plan at an intersection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyPlanConfig {
    pub intersection: String,
    pub plan: String,
}

/// One configuration problem, with its key path (the gateway config's own error type).
pub use crate::config::ValidationError as ConfigError;

fn is_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

impl HazardConfig {
    /// Checks everything serde cannot; paths start with `hazard`.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut e = Report::new();
        if self.sender.is_empty()
            || self
                .sender
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
        {
            e.push(
                "hazard.sender",
                "must be non-empty without spaces, commas, `<` or `&`",
            );
        }
        if !is_name(&self.identifier_prefix, &['.']) {
            e.push(
                "hazard.identifier_prefix",
                "must be letters, digits, `.`, `_` or `-`",
            );
        }
        let lang_ok = self.language.split('-').enumerate().all(|(i, p)| {
            (1..=8).contains(&p.len())
                && p.bytes().all(|b| {
                    if i == 0 {
                        b.is_ascii_alphabetic()
                    } else {
                        b.is_ascii_alphanumeric()
                    }
                })
        });
        if !lang_ok {
            e.push("hazard.language", "must be a language tag like en-US");
        }
        for (name, v) in [
            ("sender_name", &self.sender_name),
            ("web", &self.web),
            ("contact", &self.contact),
        ] {
            if let Some(v) = v {
                e.text(format!("hazard.{name}"), v);
            }
        }
        e.positive(
            "hazard.min_update_interval_s".into(),
            self.min_update_interval_s,
        );
        if self.expires_s == 0 {
            e.push("hazard.expires_s", "must be > 0");
        }
        for (i, g) in self.groups.iter().enumerate() {
            let p = format!("hazard.groups[{i}]");
            if self.groups[..i].iter().any(|o| o.id == g.id) {
                e.push(format!("{p}.id"), format!("`{}` is used twice", g.id));
            }
            validate_group(&mut e, &p, g);
        }
        e.into_result()
    }
}

fn validate_group(e: &mut Report, p: &str, g: &GroupConfig) {
    if !is_name(&g.id, &[]) {
        e.push(format!("{p}.id"), "must be letters, digits, `_` or `-`");
    }
    if g.sensors.is_empty() {
        e.push(format!("{p}.sensors"), "needs at least one sensor");
    }
    for (j, s) in g.sensors.iter().enumerate() {
        if s.is_empty() {
            e.push(format!("{p}.sensors[{j}]"), "must not be empty");
        } else if g.sensors[..j].contains(s) {
            e.push(
                format!("{p}.sensors[{j}]"),
                format!("`{s}` is listed twice"),
            );
        }
    }
    if g.k == 0 || g.k > g.sensors.len() {
        e.push(
            format!("{p}.k"),
            format!("must be between 1 and the {} sensors", g.sensors.len()),
        );
    }
    if g.quantity.is_empty() {
        e.push(format!("{p}.quantity"), "must not be empty");
    }
    match g.rule {
        RuleConfig::Threshold {} => {}
        RuleConfig::RateOfChange { window_s } | RuleConfig::Accumulation { window_s, .. } => {
            e.positive(format!("{p}.rule.window_s"), window_s)
        }
    }
    e.non_negative(format!("{p}.persistence_s"), g.persistence_s);
    if g.category.is_empty() {
        e.push(format!("{p}.category"), "needs at least one category");
    }
    e.text(format!("{p}.event"), &g.event);
    validate_area(e, &format!("{p}.area"), &g.area);
    let f = &g.faults;
    for (name, v) in [("valid_min", f.valid_min), ("valid_max", f.valid_max)] {
        if v.is_some_and(|v| !v.is_finite()) {
            e.push(format!("{p}.faults.{name}"), "must be a finite number");
        }
    }
    if let (Some(lo), Some(hi)) = (f.valid_min, f.valid_max) {
        if lo >= hi {
            e.push(format!("{p}.faults.valid_max"), "must be above valid_min");
        }
    }
    e.positive(format!("{p}.faults.silent_after_s"), f.silent_after_s);
    e.positive(format!("{p}.faults.stuck_after_s"), f.stuck_after_s);
    e.non_negative(format!("{p}.faults.stuck_epsilon"), f.stuck_epsilon);
    if let Some(d) = f.max_deviation {
        e.positive(format!("{p}.faults.max_deviation"), d);
    }
    e.non_negative(format!("{p}.faults.deviation_hold_s"), f.deviation_hold_s);
    if g.levels.is_empty() {
        e.push(format!("{p}.levels"), "needs at least one level");
    }
    // `up` orders thresholds so that "more severe" is larger whatever the direction.
    let up = |v: f64| match g.direction {
        Direction::Above => v,
        Direction::Below => -v,
    };
    for (j, l) in g.levels.iter().enumerate() {
        let lp = format!("{p}.levels[{j}]");
        if !is_name(&l.name, &[]) {
            e.push(format!("{lp}.name"), "must be letters, digits, `_` or `-`");
        } else if g.levels[..j].iter().any(|o| o.name == l.name) {
            e.push(format!("{lp}.name"), format!("`{}` is used twice", l.name));
        }
        if !l.raise.is_finite() {
            e.push(format!("{lp}.raise"), "must be a finite number");
        }
        if !l.clear.is_finite() {
            e.push(format!("{lp}.clear"), "must be a finite number");
        } else if up(l.clear) > up(l.raise) {
            e.push(
                format!("{lp}.clear"),
                match g.direction {
                    Direction::Above => "must be ≤ raise (hysteresis)",
                    Direction::Below => "must be ≥ raise (hysteresis)",
                },
            );
        }
        if let Some(prev) = j.checked_sub(1).and_then(|k| g.levels.get(k)) {
            if up(l.raise) <= up(prev.raise) {
                e.push(
                    format!("{lp}.raise"),
                    "must be more severe than the previous level's raise",
                );
            }
            if up(l.clear) < up(prev.clear) {
                e.push(
                    format!("{lp}.clear"),
                    "must not be less severe than the previous level's clear",
                );
            }
        }
        e.text(format!("{lp}.headline"), &l.headline);
        for (name, v) in [
            ("event", &l.event),
            ("description", &l.description),
            ("instruction", &l.instruction),
        ] {
            if let Some(v) = v {
                e.text(format!("{lp}.{name}"), v);
            }
        }
        if let Some(a) = &l.area {
            validate_area(e, &format!("{lp}.area"), a);
        }
        for (k, pb) in l.publish.iter().enumerate() {
            if pb.topic.is_empty() || pb.topic.contains(['+', '#']) {
                e.push(
                    format!("{lp}.publish[{k}].topic"),
                    "must be a topic name without wildcards",
                );
            }
        }
        for (k, ep) in l.emergency_plans.iter().enumerate() {
            if ep.intersection.is_empty() {
                e.push(
                    format!("{lp}.emergency_plans[{k}].intersection"),
                    "must not be empty",
                );
            }
            if ep.plan.is_empty() {
                e.push(
                    format!("{lp}.emergency_plans[{k}].plan"),
                    "must not be empty",
                );
            }
        }
    }
}

fn validate_area(e: &mut Report, p: &str, a: &AreaConfig) {
    e.text(format!("{p}.desc"), &a.desc);
    let point_ok =
        |la: f64, lo: f64| (-90.0..=90.0).contains(&la) && (-180.0..=180.0).contains(&lo);
    if !a.polygon.is_empty() {
        let distinct = a.polygon.len() - usize::from(a.polygon.first() == a.polygon.last());
        if distinct < 3 {
            e.push(format!("{p}.polygon"), "needs at least 3 distinct points");
        }
    }
    for (k, [la, lo]) in a.polygon.iter().enumerate() {
        if !point_ok(*la, *lo) {
            e.push(
                format!("{p}.polygon[{k}]"),
                "must be [lat, lon] within -90..90, -180..180",
            );
        }
    }
    if let Some(c) = &a.circle {
        if !point_ok(c.lat, c.lon) {
            e.push(
                format!("{p}.circle"),
                "centre must be within -90..90, -180..180",
            );
        }
        e.non_negative(format!("{p}.circle.radius_km"), c.radius_km);
    }
}
