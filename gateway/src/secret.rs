//! Secrets (uplink password, private-key material) and the rules they must meet: a [`Secret`]
//! never prints its value (`Debug` and `Display` show `***`), and [`check_not_placeholder`]
//! refuses the values that ship in templates and default installs (`changeme`, `password`,
//! `admin`, `<...>`, an unsubstituted `${...}`, empty...), so that no default credential can
//! reach a running gateway.

use std::fmt;

/// A value that must never appear in logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (the MQTT CONNECT packet).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Values (compared without case, after trimming) that are placeholders or well-known
/// defaults, never real credentials.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "change me",
    "changeit",
    "password",
    "passwd",
    "pass",
    "secret",
    "admin",
    "administrator",
    "root",
    "default",
    "guest",
    "test",
    "user",
    "username",
    "example",
    "todo",
    "fixme",
    "replaceme",
    "replace_me",
    "replace-me",
    "your_password",
    "yourpassword",
    "mosquitto",
    "citygate",
    "public",
    "private",
    "none",
    "null",
    "123456",
    "12345678",
    "qwerty",
    "letmein",
];

/// Why a credential value is refused. The message never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error("is empty")]
    Empty,
    #[error("is a placeholder or a well-known default (`{0}`), not a real credential")]
    Known(&'static str),
    #[error("looks like a template placeholder (`<...>`, `${{...}}`, `{{...}}` or `xxx`)")]
    Template,
    #[error("is shorter than {MIN_PASSWORD_LEN} characters")]
    TooShort,
}

/// Checks a credential value. `is_password` also enforces [`MIN_PASSWORD_LEN`].
pub fn check_not_placeholder(value: &str, is_password: bool) -> Result<(), PlaceholderError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(PlaceholderError::Empty);
    }
    let lower = v.to_ascii_lowercase();
    if let Some(p) = PLACEHOLDERS.iter().find(|p| **p == lower) {
        return Err(PlaceholderError::Known(p));
    }
    let bracketed = |open: &str, close: char| lower.starts_with(open) && lower.ends_with(close);
    if bracketed("<", '>')
        || bracketed("${", '}')
        || bracketed("{{", '}')
        || bracketed("[", ']')
        || lower.contains("${")
        || (lower.len() >= 3 && lower.chars().all(|c| c == 'x' || c == '*'))
    {
        return Err(PlaceholderError::Template);
    }
    if is_password && v.chars().count() < MIN_PASSWORD_LEN {
        return Err(PlaceholderError::TooShort);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-long-password");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2-long-password");
    }

    #[test]
    fn placeholders_are_refused() {
        for bad in [
            "",
            "  ",
            "changeme",
            "CHANGEME",
            "Password",
            "secret",
            "admin",
            "<password>",
            "<your password here>",
            "${UPLINK_PASSWORD}",
            "xxx",
            "XXXXXXXX",
            "****",
            "{{pw}}",
        ] {
            assert!(
                check_not_placeholder(bad, true).is_err(),
                "`{bad}` accepted"
            );
        }
        assert_eq!(
            check_not_placeholder("short", true),
            Err(PlaceholderError::TooShort)
        );
        assert_eq!(check_not_placeholder("gw-0417", false), Ok(()));
        assert_eq!(check_not_placeholder("k9#Lr2!vQp", true), Ok(()));
        assert_eq!(
            check_not_placeholder("admin", false),
            Err(PlaceholderError::Known("admin"))
        );
    }

    #[test]
    fn messages_do_not_repeat_the_value() {
        let e = check_not_placeholder("<my-real-pw>", true).unwrap_err();
        assert!(!e.to_string().contains("my-real-pw"));
    }
}
