//! One string quoter for the text formats citygate writes: the result is a JSON string
//! (RFC 8259) and, with the same bytes, a TOML basic string. `"` and `\` are escaped, the
//! control characters with a short escape (`\n \r \t \b \f`) get it, and every other control
//! character (C0, DEL, C1) is written `\u00XX`; everything else is written as is.

use core::fmt::{self, Write};

/// Writes `s` quoted to `out`.
pub fn write_quoted<W: Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\u{8}' => out.write_str("\\b")?,
            '\u{c}' => out.write_str("\\f")?,
            c if c.is_control() => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// `s` quoted.
#[cfg(feature = "std")]
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    // Writing to a String cannot fail.
    let _ = write_quoted(&mut out, s);
    out
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes() {
        assert_eq!(
            quoted("a\"b\\c\nd\r\t\u{8}\u{c}\u{1}\u{7f}\u{85}é漢"),
            r#""a\"b\\c\nd\r\t\b\f\u0001\u007f\u0085é漢""#
        );
    }

    proptest! {
        /// Every string comes back from JSON and from TOML unchanged.
        #[test]
        fn json_and_toml_read_it_back(s in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}\"\\\\]{0,20}") {
            let q = quoted(&s);
            prop_assert_eq!(serde_json::from_str::<String>(&q).unwrap(), s.clone());
            let doc: toml::Table = toml::from_str(&format!("k = {q}")).unwrap();
            prop_assert_eq!(doc["k"].as_str(), Some(s.as_str()));
        }
    }
}
