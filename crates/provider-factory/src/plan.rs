//! Which provider and model each role gets, and why: the environment, then `rigger.toml`, then
//! auto-detection, then per-backend role defaults.

use rigger_domain::ModelRole;
use rigger_pipeline::{RoleSettings, RoleVar, RouterFallback, role_var};
use rigger_ports::{ErrorKind, InferenceError};
use serde::Serialize;

use crate::backends::{model_var, role_default};
use crate::config::{ConfigFile, LoadedConfig, RoleConfig, config_error};
use crate::vars::Vars;
use crate::{BACKEND, Provider};

/// The provider for roles that name none.
const PROVIDER_VAR: &str = "TASK_ORCHESTRATOR_PROVIDER";
/// A fallback chain for roles that have none of their own.
const FALLBACK_VAR: &str = "TASK_ORCHESTRATOR_FALLBACK";
/// `heuristic` or `none`: what the Router does when its model fails.
const ROUTER_ON_FAILURE_VAR: &str = "TASK_ORCHESTRATOR_ROUTER_ON_FAILURE";

/// One link of a role's chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Link {
    pub provider: Provider,
    pub model: String,
}

/// A role's chain, its call settings, and where the first link's provider came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolePlan {
    pub role: ModelRole,
    pub links: Vec<Link>,
    #[serde(skip)]
    pub settings: RoleSettings,
    pub provider_source: String,
}

/// What the caller fixed in code (`ProviderFactory::new`), which outranks everything else.
#[derive(Debug, Clone, Default)]
pub(crate) struct Explicit {
    pub provider: Option<Provider>,
    pub model: Option<String>,
}

fn parse_provider(name: &str, source: &str) -> Result<Provider, InferenceError> {
    name.parse::<Provider>().map_err(|e| {
        let mut err = InferenceError::new(e.kind(), BACKEND, format!("{source}: {}", e.message()));
        if let Some(h) = e.hint() {
            err = err.with_hint(h.to_owned());
        }
        err
    })
}

/// `"provider"` or `"provider:model"` (the model may contain colons, e.g. `ollama:llama3.1:8b`).
fn parse_link_spec(spec: &str, source: &str) -> Result<(Provider, Option<String>), InferenceError> {
    let (name, model) = match spec.split_once(':') {
        Some((p, m)) => (p, Some(m.trim().to_owned()).filter(|m| !m.is_empty())),
        None => (spec, None),
    };
    Ok((parse_provider(name, source)?, model))
}

/// The model for `provider` when no role-specific model is set: the provider's variable (which
/// `rigger.toml`'s provider section also sets), then the role default.
fn provider_model(
    vars: &Vars,
    provider: Provider,
    role: ModelRole,
) -> Result<String, InferenceError> {
    // Only compiled-in providers get this far (`parse_provider` refuses the others), so the
    // variable is always known.
    let var = model_var(provider).unwrap_or("its model variable");
    if let Some(model) = model_var(provider).and_then(|v| vars.get(v)) {
        return Ok(model);
    }
    role_default(provider, role)
        .map(str::to_owned)
        .ok_or_else(|| {
            InferenceError::new(
                ErrorKind::InvalidRequest,
                BACKEND,
                format!("no model is configured for {provider} (role {role})"),
            )
            .with_hint(format!(
                "set {var} (or {}, or [providers.{provider}] model in rigger.toml)",
                role_var(role, RoleVar::Model)
            ))
        })
}

pub(crate) struct PlanInput<'a> {
    pub vars: &'a Vars,
    pub config: Option<&'a LoadedConfig>,
    pub explicit: &'a Explicit,
    /// Called only when some role has no provider from anywhere else.
    /// The provider and where it came from (auto-detected, or the built-in default).
    pub detect: &'a mut dyn FnMut() -> Result<(Provider, String), InferenceError>,
}

pub(crate) fn router_fallback(
    vars: &Vars,
    config: Option<&LoadedConfig>,
) -> Result<RouterFallback, InferenceError> {
    let (value, source) = match vars.get(ROUTER_ON_FAILURE_VAR) {
        Some(v) => (Some(v), ROUTER_ON_FAILURE_VAR.to_owned()),
        None => (
            config.and_then(|c| c.file.router_on_failure.clone()),
            config
                .map(|c| format!("{}: router_on_failure", c.path.display()))
                .unwrap_or_default(),
        ),
    };
    match value.as_deref().map(str::trim) {
        None | Some("none") => Ok(RouterFallback::None),
        Some("heuristic") => Ok(RouterFallback::Heuristic),
        Some(other) => Err(InferenceError::invalid_request(
            BACKEND,
            format!("{source}: unknown router fallback {other:?}; use \"heuristic\" or \"none\""),
        )),
    }
}

pub(crate) fn plan(input: PlanInput<'_>) -> Result<Vec<RolePlan>, InferenceError> {
    let PlanInput {
        vars,
        config,
        explicit,
        detect,
    } = input;
    let empty = ConfigFile::default();
    let file = config.map(|c| &c.file).unwrap_or(&empty);
    let config_name = config
        .map(|c| c.path.display().to_string())
        .unwrap_or_default();
    let mut detected: Option<(Provider, String)> = None;
    let mut plans = Vec::new();
    for role in ModelRole::ALL {
        let no_role = RoleConfig::default();
        let role_config = file.roles.get(role.as_str()).unwrap_or(&no_role);

        // The first link's provider.
        let (provider, provider_source) = if let Some(p) = explicit.provider {
            (p, "set in code".to_owned())
        } else if let Some(name) = vars.get(&role_var(role, RoleVar::Provider)) {
            let var = role_var(role, RoleVar::Provider);
            (parse_provider(&name, &var)?, var)
        } else if let Some(name) = &role_config.provider {
            let source = format!("{config_name} [roles.{role}]");
            (parse_provider(name, &source)?, source)
        } else if let Some(name) = vars.get(PROVIDER_VAR) {
            (
                parse_provider(&name, PROVIDER_VAR)?,
                PROVIDER_VAR.to_owned(),
            )
        } else if let Some(name) = &file.provider {
            let source = format!("{config_name} provider");
            (parse_provider(name, &source)?, source)
        } else {
            if detected.is_none() {
                detected = Some(detect()?);
            }
            detected
                .clone()
                .ok_or_else(|| InferenceError::internal(BACKEND, "detection returned nothing"))?
        };

        // The first link's model.
        let model = if let Some(m) = &explicit.model {
            m.clone()
        } else if let Some(m) = vars.get(&role_var(role, RoleVar::Model)) {
            m
        } else if let Some(m) = role_config.model.clone().filter(|_| {
            role_config
                .provider
                .as_deref()
                .is_none_or(|p| p.parse::<Provider>().ok() == Some(provider))
        }) {
            m
        } else {
            provider_model(vars, provider, role)?
        };
        let mut links = vec![Link { provider, model }];

        // The rest of the chain.
        let (specs, source) = if let Some(list) = vars.get(&role_var(role, RoleVar::Fallback)) {
            (split_list(&list), role_var(role, RoleVar::Fallback))
        } else if let Some(list) = &role_config.fallback {
            (
                list.clone(),
                format!("{config_name} [roles.{role}] fallback"),
            )
        } else if let Some(list) = vars.get(FALLBACK_VAR) {
            (split_list(&list), FALLBACK_VAR.to_owned())
        } else {
            (file.fallback.clone(), format!("{config_name} fallback"))
        };
        for spec in specs {
            let (p, model) = parse_link_spec(&spec, &source)?;
            let model = match model {
                Some(m) => m,
                None => provider_model(vars, p, role)?,
            };
            let link = Link { provider: p, model };
            if !links.contains(&link) {
                links.push(link);
            }
        }

        let mut settings = RoleSettings::for_role(role);
        if let Some(t) = role_config.temperature {
            if !(t.is_finite() && t >= 0.0) {
                return Err(config_error(
                    config
                        .map(|c| c.path.as_path())
                        .unwrap_or(std::path::Path::new("rigger.toml")),
                    &format!("[roles.{role}] temperature must be >= 0, got {t}"),
                ));
            }
            settings.temperature = Some(t);
        }
        if let Some(n) = role_config.max_tokens {
            settings.max_tokens = n.max(1);
        }
        if let Some(n) = role_config.repair_attempts {
            settings.repair_attempts = n;
        }
        plans.push(RolePlan {
            role,
            links,
            settings,
            provider_source,
        });
    }
    Ok(plans)
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
