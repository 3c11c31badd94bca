//! Secret options (passwords, tokens): never printed.
//!
//! A [`Secret`] reads like a string from a pipeline file (usually `${VAR}` from the
//! environment) and debug-prints as `***`, so a secret cannot reach a log line, an error
//! message or `/health` through a config struct's `Debug`.

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

/// A password, account or token: `***` in every debug output and log.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time that does not depend on where they differ, so a
    /// client cannot guess a token byte by byte from response times.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut difference = a.len() ^ b.len();
        for (i, byte) in a.iter().enumerate() {
            difference |= usize::from(byte ^ b.get(i).copied().unwrap_or(!*byte));
        }
        difference == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "\"***\"");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(\"***\")");
    }

    #[test]
    fn matches_only_the_exact_value() {
        let secret = Secret::new("tok3n");
        assert!(secret.matches("tok3n"));
        assert!(!secret.matches("tok3"));
        assert!(!secret.matches("tok3nn"));
        assert!(!secret.matches("TOK3N"));
        assert!(!secret.matches(""));
        assert!(Secret::new("").matches(""));
    }
}
