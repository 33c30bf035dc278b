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

/// Hugging Face's home folder (the hub cache is its `hub` folder).
pub const HF_HOME_VAR: &str = "HF_HOME";
/// The Hugging Face hub cache itself.
pub const HF_HUB_CACHE_VAR: &str = "HF_HUB_CACHE";

/// The Hugging Face hub cache folder by hf-hub's (and huggingface_hub's) precedence:
/// `HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
/// `$HOME/.cache/huggingface/hub`. One rule for every adapter that reads the cache (Candle
/// downloads there, MLX lists what mlx-lm downloaded); `None` with no home at all.
pub fn hf_hub_cache(lookup: Lookup<'_>) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let get = |name: &str| setting(lookup, name);
    if let Some(cache) = get(HF_HUB_CACHE_VAR) {
        return Some(PathBuf::from(cache));
    }
    let home = get(HF_HOME_VAR).map(PathBuf::from).or_else(|| {
        get("XDG_CACHE_HOME")
            .map(|xdg| PathBuf::from(xdg).join("huggingface"))
            .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))
    })?;
    Some(home.join("hub"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_cache_follows_hf_hubs_precedence() {
        let cache = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            hf_hub_cache(&move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
            .map(|p| p.display().to_string())
        };
        let all = [
            (HF_HUB_CACHE_VAR, "/c"),
            (HF_HOME_VAR, "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(cache(&all).as_deref(), Some("/c"));
        assert_eq!(cache(&all[1..]).as_deref(), Some("/h/hub"));
        assert_eq!(cache(&all[2..]).as_deref(), Some("/x/huggingface/hub"));
        assert_eq!(
            cache(&all[3..]).as_deref(),
            Some("/home/u/.cache/huggingface/hub")
        );
        assert_eq!(
            cache(&[(HF_HUB_CACHE_VAR, " "), ("HOME", "/u")]).as_deref(),
            Some("/u/.cache/huggingface/hub")
        );
        assert_eq!(cache(&[]), None);
    }

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
