//! Where things are in the original file: an index from key paths to byte spans (built from a
//! span-keeping `toml_edit` parse), the reverse lookup from a byte offset to the innermost key
//! path, and byte offset to 1-based line and column.

use std::ops::Range;

use toml_edit::{ArrayOfTables, ImDocument, InlineTable, Item, Table, Value};

/// One key, table header or value of the document.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// A string value of the document: its key path, its span in the file and its decoded text.
#[derive(Debug, Clone)]
pub(crate) struct StringValue {
    pub path: String,
    pub span: Option<Range<usize>>,
    pub value: String,
}

/// Key paths and spans of a parsed document.
#[derive(Debug, Default)]
pub(crate) struct DocIndex {
    entries: Vec<Entry>,
    pub strings: Vec<StringValue>,
}

/// Formats one key for a key path: bare when it can be, quoted otherwise.
pub(crate) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        let mut s = String::from("\"");
        for c in key.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key_segment(key)
    } else {
        format!("{parent}.{}", key_segment(key))
    }
}

/// The key path one level up (`a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``); `None` at the root.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let mut in_quotes = false;
    let mut escaped = false;
    let mut cut = 0;
    for (i, c) in path.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '.' | '[' => cut = i,
            _ => {}
        }
    }
    Some(&path[..cut])
}

impl DocIndex {
    /// Indexes every key, table and value of `doc`.
    pub fn build(doc: &ImDocument<&str>) -> Self {
        let mut index = DocIndex::default();
        index.walk_table(doc.as_table(), "");
        index
    }

    fn walk_table(&mut self, table: &Table, path: &str) {
        for (key, item) in table.iter() {
            let key_span = table.key(key).and_then(|k| k.span());
            self.walk_item(item, join(path, key), key_span);
        }
    }

    fn walk_item(&mut self, item: &Item, path: String, key_span: Option<Range<usize>>) {
        match item {
            Item::None => {}
            Item::Value(v) => self.walk_value(v, path, key_span),
            Item::Table(t) => {
                self.entries.push(Entry {
                    path: path.clone(),
                    key: key_span,
                    value: t.span(),
                });
                self.walk_table(t, &path);
            }
            Item::ArrayOfTables(a) => self.walk_array_of_tables(a, path, key_span),
        }
    }

    fn walk_array_of_tables(
        &mut self,
        tables: &ArrayOfTables,
        path: String,
        key_span: Option<Range<usize>>,
    ) {
        self.entries.push(Entry {
            path: path.clone(),
            key: key_span,
            value: tables.span(),
        });
        for (i, t) in tables.iter().enumerate() {
            let element = format!("{path}[{i}]");
            self.entries.push(Entry {
                path: element.clone(),
                key: None,
                value: t.span(),
            });
            self.walk_table(t, &element);
        }
    }

    fn walk_inline_table(&mut self, table: &InlineTable, path: &str) {
        for (key, value) in table.iter() {
            let key_span = table.key(key).and_then(|k| k.span());
            self.walk_value(value, join(path, key), key_span);
        }
    }

    fn walk_value(&mut self, value: &Value, path: String, key_span: Option<Range<usize>>) {
        self.entries.push(Entry {
            path: path.clone(),
            key: key_span,
            value: value.span(),
        });
        match value {
            Value::String(s) => self.strings.push(StringValue {
                path,
                span: s.span(),
                value: s.value().clone(),
            }),
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.walk_value(v, format!("{path}[{i}]"), None);
                }
            }
            Value::InlineTable(t) => self.walk_inline_table(t, &path),
            _ => {}
        }
    }

    /// The innermost key path whose key or value span holds byte `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        let contains = |r: &Option<Range<usize>>| {
            r.as_ref()
                .filter(|r| r.contains(&offset) || (r.is_empty() && r.start == offset))
                .map(|r| r.len())
        };
        self.entries
            .iter()
            .filter_map(|e| {
                let len = match (contains(&e.key), contains(&e.value)) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) | (None, Some(a)) => a,
                    (None, None) => return None,
                };
                Some((len, std::cmp::Reverse(e.path.len()), e.path.as_str()))
            })
            .min()
            .map(|(_, _, p)| p)
    }

    /// The key path of the error span `span` reported by the schema parser: the deepest entry
    /// whose key or value has exactly that span (a table's span covers its header and body),
    /// else the innermost entry holding its start. An empty span at the start is the root.
    pub fn path_of_span(&self, span: Range<usize>) -> &str {
        let exact = self
            .entries
            .iter()
            .filter(|e| e.value.as_ref() == Some(&span) || e.key.as_ref() == Some(&span))
            .max_by_key(|e| e.path.len());
        if let Some(e) = exact {
            return &e.path;
        }
        if span.is_empty() && span.start == 0 {
            return "";
        }
        self.path_at(span.start).unwrap_or("")
    }

    /// Byte offset of the value written at `path`, if any.
    pub fn value_position(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .filter(|e| e.path == path)
            .find_map(|e| e.value.as_ref().map(|r| r.start))
    }

    /// Whether `path` names a key, table or value of the document.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }

    /// Byte offset of `path`: its key when written, else its value or table header; when the
    /// path is absent, the nearest ancestor that is present. `None` when no ancestor has a span.
    pub fn position_of(&self, path: &str) -> Option<usize> {
        let mut current = Some(path);
        while let Some(p) = current {
            let found = self
                .entries
                .iter()
                .filter(|e| e.path == p)
                .find_map(|e| e.key.as_ref().or(e.value.as_ref()).map(|r| r.start));
            if found.is_some() {
                return found;
            }
            current = parent(p);
        }
        None
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Best-effort key path for a syntax error at `offset`, when the document could not be parsed:
/// the last table header above the error plus the key written on the error's line.
pub(crate) fn guess_path(text: &str, offset: usize) -> String {
    let mut header = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let trimmed = line.trim();
        let is_error_line = offset >= line_start && (offset < line_end || line_end == text.len());
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
        {
            let name = name.trim().to_string();
            let n = match counts.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((name.clone(), 0));
                    0
                }
            };
            header = format!("{name}[{n}]");
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            header = name.trim().to_string();
        } else if is_error_line {
            if let Some(key) = trimmed.split('=').next().filter(|_| trimmed.contains('=')) {
                let key = key.trim();
                if !key.is_empty() && !key.starts_with('#') {
                    return if header.is_empty() {
                        key.to_string()
                    } else {
                        format!("{header}.{key}")
                    };
                }
            }
        }
        if is_error_line {
            break;
        }
        line_start = line_end;
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent("sources.mqtt[1].unit"), Some("sources.mqtt[1]"));
        assert_eq!(parent("sources.mqtt[1]"), Some("sources.mqtt"));
        assert_eq!(parent("sources"), Some(""));
        assert_eq!(parent(""), None);
        assert_eq!(parent(r#"a."b.c".d"#), Some(r#"a."b.c""#));
    }

    #[test]
    fn segments_are_quoted_when_needed() {
        assert_eq!(join("a", "b-c_1"), "a.b-c_1");
        assert_eq!(join("", "x y"), "\"x y\"");
        assert_eq!(join("a", ""), "a.\"\"");
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // the `=` after `bé `: byte 10, character column 4
        assert_eq!(line_col(text, 10), (2, 4));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn index_finds_keys_and_values() {
        let text = "[gateway]\nid = \"x\"\n\n[[sources.mqtt]]\nname = \"a\"\n\n[[sources.mqtt]]\nname = \"b\"\nt = { k = [1, \"s\"] }\n";
        let doc = ImDocument::parse(text).expect("valid TOML");
        let index = DocIndex::build(&doc);
        let at = |p: &str| index.position_of(p).map(|o| line_col(text, o));
        assert_eq!(at("gateway.id"), Some((2, 1)));
        assert_eq!(at("sources.mqtt[1]"), Some((7, 1)));
        assert_eq!(at("sources.mqtt[1].name"), Some((8, 1)));
        assert_eq!(at("sources.mqtt[1].t.k"), Some((9, 7)));
        // absent: falls back to the enclosing table
        assert_eq!(at("sources.mqtt[1].unit"), Some((7, 1)));
        let value_b = text.find("\"b\"").expect("present");
        assert_eq!(index.path_at(value_b), Some("sources.mqtt[1].name"));
        let s = text.find("\"s\"").expect("present");
        assert_eq!(index.path_at(s), Some("sources.mqtt[1].t.k[1]"));
        assert_eq!(index.strings.len(), 4);
    }

    #[test]
    fn guesses_path_of_syntax_errors() {
        let text = "[gateway]\nid = \"x\"\n[[sources.mqtt]]\n[[sources.mqtt]]\nname = oops\n";
        let off = text.find("oops").expect("present");
        assert_eq!(guess_path(text, off), "sources.mqtt[1].name");
        assert_eq!(guess_path(text, 0), "gateway");
        assert_eq!(guess_path("x = \n", 4), "x");
    }
}
