use std::fmt;

/// An API key. `Debug` and `Display` print a redacted form, so a key never reaches a log line,
/// an error message or a panic message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// `None` for an empty or all-blank key: an unset key and an empty one mean the same.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into().trim().to_owned();
        (!key.is_empty()).then_some(Self(key))
    }

    /// Reads the key from an environment variable (unset or blank → `None`).
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().and_then(Self::new)
    }

    /// The key itself, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({self})")
    }
}

impl fmt::Display for ApiKey {
    /// Shows at most the last four characters of keys long enough for that to reveal nothing useful.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() >= 20 {
            let tail: String = chars[chars.len() - 4..].iter().collect();
            write!(f, "***{tail}")
        } else {
            f.write_str("***")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = ApiKey::new("sk-abcdefghijklmnopqrstuvwxyz0123").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***0123)");
        assert!(!format!("{key}").contains("abcdef"));
        let short = ApiKey::new("secret").unwrap();
        assert_eq!(format!("{short:?}"), "ApiKey(***)");
        assert_eq!(short.expose(), "secret");
    }

    #[test]
    fn blank_keys_are_no_keys() {
        assert!(ApiKey::new("  ").is_none());
        assert!(ApiKey::new("").is_none());
    }
}
