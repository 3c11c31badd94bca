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

/// For `token` options (`#[serde(default, deserialize_with = "...")]`): an empty token is
/// an error, not "no check". `token = "${PITWALL_TOKEN:-}"` with the variable unset would
/// otherwise accept `?access_token=` from anyone.
pub fn non_empty_token<'de, D>(deserializer: D) -> Result<Option<Secret>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let secret = Secret::deserialize(deserializer)?;
    if secret.0.is_empty() {
        return Err(serde::de::Error::custom(
            "the token is empty, which would let anyone in: set the variable it comes from, or leave `token` out to serve without one",
        ));
    }
    Ok(Some(secret))
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

    #[derive(Deserialize, Debug)]
    struct Options {
        #[serde(default, deserialize_with = "non_empty_token")]
        token: Option<Secret>,
    }

    #[test]
    fn an_empty_token_is_an_error_not_an_open_door() {
        let error = toml::from_str::<Options>("token = \"\"").unwrap_err();
        assert!(error.message().contains("the token is empty"), "{error}");
        let set: Options = toml::from_str("token = \"t\"").unwrap();
        assert!(set.token.unwrap().matches("t"));
        let unset: Options = toml::from_str("").unwrap();
        assert!(unset.token.is_none());
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
