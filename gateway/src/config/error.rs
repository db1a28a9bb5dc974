//! Located configuration errors: every problem names the file, line, column and key path.

use std::fmt;

/// One problem in a configuration file.
///
/// `line` and `column` are 1-based; both are 0 when the problem concerns the whole file (for
/// example, it cannot be read). `column` counts characters, not bytes. `key_path` is dotted with
/// array indices, e.g. `sources.mqtt[1].value_path`; it is empty when no key applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All the problems found in one configuration file, in file order where known.
/// `Display` prints one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A semantic problem found by [`Config::validate`](super::Config::validate): the key path and
/// what is wrong. The loader turns it into a located [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub key_path: String,
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(key_path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            key_path: key_path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key_path, self.message)
    }
}
