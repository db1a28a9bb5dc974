//! The one collector of validation problems: every semantic check of the configuration (the
//! gateway's sections, `[[sources.modbus]]`, `[hazard]`, `[[intersection]]`) pushes its
//! problems, each with its key path, into a [`Report`], with the shared checks of numbers,
//! names and texts so that the same mistake reads the same everywhere.

use super::error::ValidationError;

/// Problems found so far, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Report(pub(crate) Vec<ValidationError>);

impl Report {
    /// No problem yet.
    pub(crate) fn new() -> Report {
        Report(Vec::new())
    }

    /// One problem at `path`.
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError::new(path, message));
    }

    /// The problems another check found.
    pub(crate) fn extend(&mut self, problems: impl IntoIterator<Item = ValidationError>) {
        self.0.extend(problems);
    }

    /// `v` must be a finite number above 0.
    pub(crate) fn positive(&mut self, path: String, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            self.push(path, format!("must be a number > 0, got {v}"));
        }
    }

    /// `v` must be a finite number of at least 0.
    pub(crate) fn non_negative(&mut self, path: String, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            self.push(path, format!("must be a number ≥ 0, got {v}"));
        }
    }

    /// `v` must be an identifier: 1 to 64 letters, digits, `_`, `-` or `.`.
    pub(crate) fn name(&mut self, path: String, v: &str) {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if v.is_empty() || v.len() > 64 || !v.chars().all(ok) {
            self.push(
                path,
                format!("`{v}` must be 1 to 64 letters, digits, `_`, `-` or `.`"),
            );
        }
    }

    /// `v` must be a text for people: not blank, no control characters but newline and tab.
    pub(crate) fn text(&mut self, path: String, v: &str) {
        if v.trim().is_empty() {
            self.push(path, "must not be empty");
        } else if v
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            self.push(path, "must not contain control characters");
        }
    }

    /// `Ok(())` without problems, else every problem.
    pub(crate) fn into_result(self) -> Result<(), Vec<ValidationError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(check: impl FnOnce(&mut Report)) -> Vec<String> {
        let mut r = Report::new();
        check(&mut r);
        r.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_shared_checks_name_the_key_and_the_value() {
        assert_eq!(
            found(|r| r.positive("a.b".into(), 0.0)),
            ["a.b: must be a number > 0, got 0"]
        );
        assert!(found(|r| r.positive("a".into(), 0.5)).is_empty());
        assert_eq!(
            found(|r| r.non_negative("a".into(), f64::NAN)),
            ["a: must be a number ≥ 0, got NaN"]
        );
        assert!(found(|r| r.non_negative("a".into(), 0.0)).is_empty());
        assert_eq!(
            found(|r| r.name("x.id".into(), "a b")),
            ["x.id: `a b` must be 1 to 64 letters, digits, `_`, `-` or `.`"]
        );
        assert!(found(|r| r.name("x".into(), "int-1.a_b")).is_empty());
        assert_eq!(found(|r| r.text("t".into(), " ")), ["t: must not be empty"]);
        assert_eq!(
            found(|r| r.text("t".into(), "a\u{7}")),
            ["t: must not contain control characters"]
        );
        assert!(found(|r| r.text("t".into(), "two\nlines")).is_empty());
    }
}
