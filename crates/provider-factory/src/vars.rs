use std::collections::HashMap;
use std::sync::Arc;

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where settings come from: the environment (or an explicit map in tests) first, then the
/// config file's provider sections. Blank values count as unset.
#[derive(Clone)]
pub struct Vars {
    primary: Lookup,
    config: HashMap<&'static str, String>,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vars")
            .field("config", &self.config.keys())
            .finish_non_exhaustive()
    }
}

impl Vars {
    pub fn process_env() -> Self {
        Self::from_fn(|k| std::env::var(k).ok())
    }

    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            primary: Arc::new(lookup),
            config: HashMap::new(),
        }
    }

    pub fn from_map<K: Into<String>, V: Into<String>>(
        map: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> =
            map.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self::from_fn(move |k| map.get(k).cloned())
    }

    pub(crate) fn with_config(mut self, vars: Vec<(&'static str, String)>) -> Self {
        self.config.extend(vars);
        self
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.primary)(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.config.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    }

    /// A plain closure over these settings, for the adapters' `from_vars`.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let me = self.clone();
        move |k| me.get(k)
    }

    /// [`Self::lookup`] with `var` answering `value`: how a link's model reaches an adapter's
    /// `from_vars` whatever the environment's model variable says.
    pub(crate) fn lookup_with(
        &self,
        var: &'static str,
        value: &str,
    ) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let (me, value) = (self.clone(), value.to_owned());
        move |k| {
            if k == var {
                Some(value.clone())
            } else {
                me.get(k)
            }
        }
    }
}
