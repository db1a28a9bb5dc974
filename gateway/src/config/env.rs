//! `${NAME}` environment substitution inside one string value; `$${` stands for a literal `${`.
//!
//! Works on the decoded string (after TOML escapes), so a variable's value can never change the
//! structure of the document: the loader re-encodes the result as a TOML string.

/// What went wrong with one `${...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvProblem {
    /// `${NAME}` where `NAME` is not set.
    Missing(String),
    /// `${` without a closing `}`.
    Unterminated,
    /// `${...}` whose content is not a variable name (`[A-Za-z_][A-Za-z0-9_]*`).
    BadName(String),
}

impl EnvProblem {
    /// The message shown to the user.
    pub fn message(&self) -> String {
        match self {
            EnvProblem::Missing(name) => format!("environment variable `{name}` is not set"),
            EnvProblem::Unterminated => {
                "`${` without a closing `}` (write `$${` for a literal `${`)".to_string()
            }
            EnvProblem::BadName(name) => format!(
                "`${{{name}}}` is not a valid environment variable reference \
                 (names are letters, digits and `_`, not starting with a digit)"
            ),
        }
    }

    /// The text to look for in the raw file to locate the problem.
    pub(crate) fn needle(&self) -> String {
        match self {
            EnvProblem::Missing(name) | EnvProblem::BadName(name) => format!("${{{name}}}"),
            EnvProblem::Unterminated => "${".to_string(),
        }
    }
}

/// True when `s` needs substitution (it holds a `${` reference or a `$${` escape).
pub fn has_references(s: &str) -> bool {
    s.contains("${")
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` in `s` with `lookup(NAME)` and every `$${` with `${`.
/// Returns all problems found, in order, when any reference cannot be resolved.
pub fn substitute(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvProblem>> {
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            match after.find('}') {
                None => {
                    problems.push(EnvProblem::Unterminated);
                    rest = "";
                }
                Some(end) => {
                    let name = &after[..end];
                    if !is_valid_name(name) {
                        problems.push(EnvProblem::BadName(name.to_string()));
                    } else {
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => problems.push(EnvProblem::Missing(name.to_string())),
                        }
                    }
                    rest = &after[end + 1..];
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("broker.example".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${NOT_EXPANDED}".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_references() {
        assert_eq!(
            substitute("mqtts://${HOST}:8883", &env).as_deref(),
            Ok("mqtts://broker.example:8883")
        );
        assert_eq!(substitute("a${EMPTY}b", &env).as_deref(), Ok("ab"));
    }

    #[test]
    fn values_are_not_expanded_again() {
        assert_eq!(
            substitute("${DOLLAR}", &env).as_deref(),
            Ok("${NOT_EXPANDED}")
        );
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(substitute("$${HOST}", &env).as_deref(), Ok("${HOST}"));
        // scanned left to right: `$` then the escape `$${`
        assert_eq!(substitute("$$${HOST}", &env).as_deref(), Ok("$${HOST}"));
        assert_eq!(substitute("cost $5 $$", &env).as_deref(), Ok("cost $5 $$"));
    }

    #[test]
    fn reports_every_problem() {
        assert_eq!(
            substitute("${A} ${HOST} ${1X} ${B", &env),
            Err(vec![
                EnvProblem::Missing("A".into()),
                EnvProblem::BadName("1X".into()),
                EnvProblem::Unterminated,
            ])
        );
        assert_eq!(
            substitute("${}", &env),
            Err(vec![EnvProblem::BadName(String::new())])
        );
    }
}
