//! Loading a configuration file: read, substitute `${ENV}` inside string values, parse against
//! the schema, validate, and turn every problem into a [`ConfigError`] located in the original
//! file.
//!
//! Positions stay right because substitution never edits the file as text: the file is parsed
//! once with spans (`toml_edit`), only the string values that hold a `${` are re-encoded, and an
//! offset map takes positions in the substituted text back to the original.

use std::ops::Range;
use std::path::Path;

use citygate_protocols::quote::quoted;
use toml_edit::ImDocument;

use super::env::{has_references, substitute};
use super::error::{ConfigError, ConfigErrors};
use super::locate::{guess_path, join, line_col, DocIndex};
use super::Config;

/// Reads, substitutes, parses and validates the file at `path`. A relative `gateway.data_dir`
/// is resolved against the folder of the file. Errors name the file as `path` is written.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// Like [`load`], with `env` standing in for the process environment.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            key_path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = load_text(&text, &file, env, base)?;
    if let Some(dir) = path.parent() {
        let u = &mut config.uplink;
        let mut paths = vec![
            Some(&mut config.gateway.data_dir),
            u.ca_file.as_mut(),
            u.client_cert_file.as_mut(),
            u.client_key_file.as_mut(),
        ];
        paths.extend(config.broker.files_mut().into_iter().map(Some));
        for p in paths.into_iter().flatten() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }
    Ok(config)
}

/// Like [`load`] on text already read, with the process environment; `gateway.data_dir` is
/// left as written. `file_name` is only used in error messages.
pub fn load_str(text: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(text, file_name, &|name| std::env::var(name).ok())
}

/// Like [`load_str`], with `env` standing in for the process environment. Relative Modbus
/// `map_file`s are read from the current folder.
pub fn load_str_with_env(
    text: &str,
    file_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    load_text(text, file_name, env, Path::new("."))
}

/// Loads `text`; `base` resolves relative paths inside the config (Modbus map files).
fn load_text(
    text: &str,
    file_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Result<Config, ConfigErrors> {
    let located = |offset: Option<usize>, key_path: String, message: String| {
        let (line, column) = offset.map_or((1, 1), |o| line_col(text, o));
        ConfigError {
            file: file_name.to_string(),
            line,
            column,
            key_path,
            message: one_line(&message),
        }
    };
    let fail = |errors: Vec<ConfigError>| Err(ConfigErrors { errors });

    // 1. Syntax, with spans.
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let offset = e.span().map(|s| s.start);
            let path = offset.map(|o| guess_path(text, o)).unwrap_or_default();
            return fail(vec![located(offset, path, e.message().to_string())]);
        }
    };
    let index = DocIndex::build(&doc);

    // 2. `${ENV}` inside string values.
    let mut errors = Vec::new();
    let mut edits = Vec::new();
    for s in index.strings.iter().filter(|s| has_references(&s.value)) {
        let Some(span) = s.span.clone() else {
            continue;
        };
        match substitute(&s.value, env) {
            Ok(value) => edits.push((span, quoted(&value))),
            Err(problems) => {
                let raw = text.get(span.clone()).unwrap_or("");
                let mut from = 0;
                for p in problems {
                    let needle = p.needle();
                    let offset = match raw.get(from..).and_then(|r| r.find(&needle)) {
                        Some(i) => {
                            from += i + needle.len();
                            span.start + from - needle.len()
                        }
                        None => span.start,
                    };
                    errors.push(located(Some(offset), s.path.clone(), p.message()));
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return fail(errors);
    }
    let substituted = Substituted::new(text, edits);
    if let Some((offset, path, message)) = check_broker_values(&index, env) {
        return fail(vec![located(Some(offset), path, message)]);
    }

    // 3. Schema: unknown keys, types, missing keys, enum variants.
    let mut config: Config = match toml::from_str(&substituted.text) {
        Ok(c) => c,
        Err(e) => {
            let span = e
                .span()
                .map(|s| substituted.original_offset(s.start)..substituted.original_offset(s.end));
            let message = e.message().to_string();
            let mut path = span
                .clone()
                .map(|s| index.path_of_span(s).to_string())
                .unwrap_or_default();
            let mut offset = span.map(|s| s.start);
            // serde names the field in the message; point at it when the span is its table.
            if let Some(field) = field_named_in(&message) {
                let candidate = join(&path, field);
                if index.contains(&candidate) {
                    offset = index.position_of(&candidate).or(offset);
                    path = candidate;
                } else if message.starts_with("missing field") {
                    path = candidate;
                }
            }
            return fail(vec![located(offset, path, message)]);
        }
    };

    // 4. Shared Modbus register maps, then semantics.
    let mut problems = config.resolve_modbus_maps(base);
    if problems.is_empty() {
        problems = config.validate();
    }
    let mut errors: Vec<ConfigError> = problems
        .into_iter()
        .map(|v| {
            let offset = index.position_of(&v.key_path);
            located(offset, v.key_path, v.message)
        })
        .collect();
    if errors.is_empty() {
        Ok(config)
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        fail(errors)
    }
}

/// Reads and checks the file at `path` without running anything, for `citygate check`.
/// Returns the text to print and whether the file is usable:
/// `OK: <file> (gateway <id>, N sources)`, or one error per line.
pub fn check(path: &Path) -> (String, bool) {
    match load(path) {
        Ok(c) => {
            let n = c.sources.mqtt.len() + c.sources.modbus.len();
            let mut text = format!(
                "OK: {} (gateway {}, {n} source{})",
                path.display(),
                c.gateway.id,
                if n == 1 { "" } else { "s" }
            );
            for w in super::broker_warnings(&c) {
                text.push_str("\nwarning: ");
                text.push_str(&w);
            }
            (text, true)
        }
        Err(e) => (e.to_string(), false),
    }
}

/// `[broker]` is an internally tagged enum, so serde reports a bad `listen` or `url` against the
/// whole table without a position. Check their types (and `listen`'s syntax) here, where the
/// values' spans are known.
fn check_broker_values(
    index: &DocIndex,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(usize, String, String)> {
    for (path, expected) in [
        (
            "broker.listen",
            "a string `ip:port`, e.g. \"127.0.0.1:1883\"",
        ),
        (
            "broker.tls_listen",
            "a string `ip:port`, e.g. \"0.0.0.0:8883\"",
        ),
        ("broker.url", "a string `mqtt://host:port`"),
    ] {
        if !index.contains(path) {
            continue;
        }
        let at = index.position_of(path).unwrap_or(0);
        let Some(s) = index.strings.iter().find(|s| s.path == path) else {
            return Some((
                index.value_position(path).unwrap_or(at),
                path.to_string(),
                format!("invalid type: expected {expected}"),
            ));
        };
        if path == "broker.url" {
            continue;
        }
        let value = substitute(&s.value, env).ok()?;
        if value.parse::<std::net::SocketAddr>().is_err() {
            return Some((
                s.span.as_ref().map_or(at, |r| r.start),
                path.to_string(),
                format!(
                    "`{value}` is not a socket address: expected `ip:port`, e.g. `127.0.0.1:1883`"
                ),
            ));
        }
    }
    None
}

/// The field named by serde's `missing field `x`` and `unknown field `x`, expected ...`.
fn field_named_in(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

/// Messages are printed one per line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The file with some string values re-encoded, and the way back to original offsets.
struct Substituted {
    text: String,
    /// (new range, original range) of each replaced value, in order.
    map: Vec<(Range<usize>, Range<usize>)>,
}

impl Substituted {
    fn new(original: &str, mut edits: Vec<(Range<usize>, String)>) -> Self {
        edits.sort_by_key(|(r, _)| r.start);
        let mut text = String::with_capacity(original.len());
        let mut map = Vec::with_capacity(edits.len());
        let mut copied_to = 0;
        for (range, replacement) in edits {
            if range.start < copied_to || range.end > original.len() {
                continue; // overlapping or out of bounds: cannot happen for parsed values
            }
            text.push_str(&original[copied_to..range.start]);
            let start = text.len();
            text.push_str(&replacement);
            map.push((start..text.len(), range.clone()));
            copied_to = range.end;
        }
        text.push_str(&original[copied_to..]);
        Substituted { text, map }
    }

    /// The original offset of `offset` in the substituted text; inside a replaced value, the
    /// start of that value.
    fn original_offset(&self, offset: usize) -> usize {
        match self.map.iter().rev().find(|(new, _)| new.start <= offset) {
            None => offset,
            Some((new, old)) if offset < new.end => old.start,
            Some((new, old)) => old.end + (offset - new.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_back_through_edits() {
        let original = "a = \"${X}\"\nb = 1\n";
        let s = Substituted::new(original, vec![(4..10, "\"long value\"".to_string())]);
        assert_eq!(s.text, "a = \"long value\"\nb = 1\n");
        assert_eq!(s.original_offset(2), 2);
        assert_eq!(s.original_offset(8), 4);
        let b_new = s.text.find('b').expect("present");
        assert_eq!(
            s.original_offset(b_new),
            original.find('b').expect("present")
        );
    }
}
