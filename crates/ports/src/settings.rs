//! How adapters read their settings: through a caller's lookup (the process environment, a
//! test's map, the factory's environment-plus-`rigger.toml`), never `std::env` directly.

/// The lookup every adapter's `XConfig::from_vars` takes.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The setting `name` through `lookup`, trimmed; a blank value counts as unset (the rule every
/// adapter follows, so `FOO=` in a shell means the default rather than an error).
pub fn setting(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_unset_and_values_are_trimmed() {
        let lookup = |name: &str| match name {
            "SET" => Some(" value ".to_owned()),
            "BLANK" => Some("  ".to_owned()),
            _ => None,
        };
        assert_eq!(setting(&lookup, "SET").as_deref(), Some("value"));
        assert_eq!(setting(&lookup, "BLANK"), None);
        assert_eq!(setting(&lookup, "MISSING"), None);
    }
}
