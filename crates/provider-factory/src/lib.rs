//! The provider factory: the only library that knows the list of adapters. It turns the
//! environment (`TASK_ORCHESTRATOR_PROVIDER`, `MLX_MODEL`, `OLLAMA_HOST`, …) and `rigger.toml`
//! into role adapters handed out as trait objects, auto-detects the fastest usable backend, and
//! builds per-role fallback chains.
//!
//! ```no_run
//! use rigger_provider_factory::ProviderFactory;
//! use rigger_domain::ModelRole;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let factory = ProviderFactory::from_env()?;
//! let enhancer = factory.create_enhancement_adapter()?;
//! let decomposer = factory.create_task_decomposition_adapter_for_role(ModelRole::Decomposer)?;
//! # Ok(()) }
//! ```
//!
//! Precedence, per role, first match wins: code (`ProviderFactory::new`);
//! `TASK_ORCHESTRATOR_<ROLE>_PROVIDER` / `_MODEL`; `rigger.toml` `[roles.<role>]`;
//! `TASK_ORCHESTRATOR_PROVIDER` and the backend's own model variable (`MLX_MODEL`, …); the
//! `rigger.toml` top level and provider sections; auto-detection and per-backend role defaults
//! (docs/configuration.md has the full table). Each adapter is behind its cargo feature (all on
//! by default); `src/backends/` has one file per backend and the registry of those compiled in.

mod backends;
pub mod config;
mod detect;
mod models;
mod plan;
mod provider;
mod vars;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rigger_domain::ModelRole;
use rigger_pipeline::{
    Cooldowns, DEFAULT_COOLDOWN, FALLS_THROUGH, LlmComprehensionTester, LlmDecomposer, LlmEnhancer,
    LlmRouter, ModelChain, Orchestrator, RoleSettings, RouterFallback, UnbuiltModel,
};
use rigger_ports::{
    ComprehensionTestPort, ErrorKind, InferenceError, LanguageModel, TaskDecompositionPort,
    TaskEnhancementPort, TaskRouterPort,
};

pub use backends::{model_var, role_default};
pub use config::{ConfigFile, LoadedConfig};
pub use detect::{BackendStatus, DetectionReport, PROBE_TIMEOUT, detect};
pub use models::list_models;
pub use plan::{Link, RolePlan};
pub use provider::Provider;
pub use vars::Vars;

/// The name errors raised here carry as their backend.
pub const BACKEND: &str = "provider-factory";
/// Seconds a chain link that fell through is skipped (0: never skipped); see
/// [`rigger_pipeline::FALLS_THROUGH`] for which failures fall through.
pub const FALLBACK_COOLDOWN_VAR: &str = "TASK_ORCHESTRATOR_FALLBACK_COOLDOWN_SECS";
/// The error kinds that move a call to a chain's next link, comma-separated
/// (`not_available,timeout,…`; empty: none), instead of [`rigger_pipeline::FALLS_THROUGH`].
pub const FALLS_THROUGH_VAR: &str = "TASK_ORCHESTRATOR_FALLS_THROUGH";

/// Hands out role adapters (`Arc<dyn …Port>`) built on the providers and models the environment
/// and `rigger.toml` choose. Adapters for the same (provider, model) are shared between roles.
pub struct ProviderFactory {
    vars: Vars,
    config: Option<LoadedConfig>,
    plans: Vec<RolePlan>,
    router_fallback: RouterFallback,
    detection: Option<DetectionReport>,
    models: Mutex<HashMap<Link, Arc<dyn LanguageModel>>>,
    /// Recent fall-throughs, shared by every role's chain.
    cooldowns: Arc<Cooldowns>,
    /// The error kinds that fall through to a chain's next link.
    falls_through: Arc<[ErrorKind]>,
}

impl std::fmt::Debug for ProviderFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderFactory")
            .field("config", &self.config.as_ref().map(|c| &c.path))
            .field("plans", &self.plans)
            .finish_non_exhaustive()
    }
}

impl ProviderFactory {
    /// Reads the process environment and `rigger.toml` (`RIGGER_CONFIG` or the working
    /// directory); roles without a provider get the auto-detected one.
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::from_vars(Vars::process_env())
    }

    /// [`Self::from_env`] with settings read through `vars` instead of the process environment.
    pub fn from_vars(vars: Vars) -> Result<Self, InferenceError> {
        Self::build(vars, plan::Explicit::default())
    }

    /// Every role on `provider` with `model` (an empty model means the provider's defaults).
    /// Other settings (`OLLAMA_HOST`, `PYTHON_PATH`, …) still come from the environment.
    pub fn new(provider: &str, model: &str) -> Result<Self, InferenceError> {
        Self::new_with_vars(provider, model, Vars::process_env())
    }

    /// [`Self::new`] with settings read through `vars`.
    pub fn new_with_vars(provider: &str, model: &str, vars: Vars) -> Result<Self, InferenceError> {
        let explicit = plan::Explicit {
            provider: Some(provider.parse()?),
            model: Some(model.trim().to_owned()).filter(|m| !m.is_empty()),
        };
        Self::build(vars, explicit)
    }

    fn build(vars: Vars, explicit: plan::Explicit) -> Result<Self, InferenceError> {
        let config = config::load(vars.get("RIGGER_CONFIG").as_deref())?;
        let vars = match &config {
            Some(c) => vars.with_config(c.file.as_vars()),
            None => vars,
        };
        let mut detection = None;
        let mut detect = || {
            let report = detect::detect_blocking(&vars)?;
            let chosen = report.chosen().map(|b| {
                let source = if b.auto_selectable {
                    "auto-detected"
                } else {
                    "built-in default (no backend detected)"
                };
                (b.provider, source.to_owned())
            });
            detection = Some(report.clone());
            chosen.ok_or_else(|| report.nothing_usable())
        };
        let plans = plan::plan(plan::PlanInput {
            vars: &vars,
            config: config.as_ref(),
            explicit: &explicit,
            detect: &mut detect,
        })?;
        let router_fallback = plan::router_fallback(&vars, config.as_ref())?;
        let cooldown = match seconds_var(&vars, FALLBACK_COOLDOWN_VAR)? {
            Some(period) => Some(period),
            None => config
                .as_ref()
                .and_then(|c| c.file.fallback_cooldown_secs)
                .map(Duration::from_secs),
        };
        let falls_through = falls_through(&vars, config.as_ref())?;
        Ok(Self {
            vars,
            config,
            plans,
            router_fallback,
            detection,
            models: Mutex::new(HashMap::new()),
            cooldowns: Arc::new(Cooldowns::new(cooldown.unwrap_or(DEFAULT_COOLDOWN))),
            falls_through,
        })
    }

    /// Probes every compiled-in backend (concurrently, short timeouts) using the process
    /// environment, and says for each why it is or is not usable.
    pub async fn detect() -> DetectionReport {
        detect::detect(&Vars::process_env()).await
    }

    /// Each role's chain and settings.
    pub fn plans(&self) -> &[RolePlan] {
        &self.plans
    }

    pub fn plan(&self, role: ModelRole) -> &RolePlan {
        // `plan::plan` makes one plan per role, in `ModelRole::ALL` order.
        let index = ModelRole::ALL.iter().position(|r| *r == role).unwrap_or(0);
        &self.plans[index]
    }

    /// The config file in use, if any.
    pub fn config(&self) -> Option<&LoadedConfig> {
        self.config.as_ref()
    }

    /// The detection report, when auto-detection ran while building this factory.
    pub fn detection(&self) -> Option<&DetectionReport> {
        self.detection.as_ref()
    }

    /// The settings this factory reads (environment over config file).
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// The model (chain) a role runs on. Building is lazy: no backend is contacted here.
    ///
    /// A link whose adapter cannot be built (e.g. MLX without Python) does not fail the role:
    /// it stays in the chain as an [`UnbuiltModel`] that fails as `NotAvailable` with the
    /// reason, so calls fall through to the next link and the aggregated error names it. Only
    /// when no link can be built is the role's construction an error (naming every link, with
    /// the last link's kind and hint).
    pub fn model_chain_for_role(&self, role: ModelRole) -> Result<ModelChain, InferenceError> {
        let mut links = Vec::new();
        let mut failures = Vec::new();
        for link in &self.plan(role).links {
            match self.model(link) {
                Ok(model) => links.push(model),
                Err(err) => {
                    tracing::warn!(provider = %link.provider, model = %link.model, error = %err, "a chain link cannot be built; the chain falls through it");
                    let unbuilt = UnbuiltModel::new(link.provider.as_str(), &link.model, &err);
                    failures.push((link, err));
                    links.push(Arc::new(unbuilt));
                }
            }
        }
        if failures.len() == 1 && links.len() == 1 {
            // A chain of one: its own error, code and all.
            if let Some((_, only)) = failures.pop() {
                return Err(only);
            }
        }
        if failures.len() == links.len()
            && let Some((_, last)) = failures.last()
        {
            let each: Vec<String> = failures
                .iter()
                .map(|(link, e)| format!("{}:{}: {e}", link.provider, link.model))
                .collect();
            let message = format!("no link of the chain can be built: {}", each.join("; "));
            let mut error = InferenceError::new(last.kind(), BACKEND, message);
            if let Some(hint) = last.hint() {
                error = error.with_hint(hint.to_owned());
            }
            return Err(error);
        }
        Ok(ModelChain::new(links)?
            .with_cooldowns(Arc::clone(&self.cooldowns))
            .with_falls_through(Arc::clone(&self.falls_through)))
    }

    fn model(&self, link: &Link) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(model) = models.get(link) {
            return Ok(Arc::clone(model));
        }
        let model = backends::build(link.provider, &link.model, &self.vars)?;
        models.insert(link.clone(), Arc::clone(&model));
        Ok(model)
    }

    /// A step's call settings are its own role's (a Router-model Enhancer still writes
    /// Enhancer-sized answers).
    fn settings(&self, task_role: ModelRole) -> RoleSettings {
        self.plan(task_role).settings.clone()
    }

    pub fn create_router_adapter(&self) -> Result<Arc<dyn TaskRouterPort>, InferenceError> {
        self.create_router_adapter_for_role(ModelRole::Router)
    }

    pub fn create_router_adapter_for_role(
        &self,
        role: ModelRole,
    ) -> Result<Arc<dyn TaskRouterPort>, InferenceError> {
        let router = LlmRouter::new(self.model_chain_for_role(role)?)
            .with_settings(self.settings(ModelRole::Router))
            .with_fallback(self.router_fallback);
        Ok(Arc::new(router))
    }

    pub fn create_enhancement_adapter(
        &self,
    ) -> Result<Arc<dyn TaskEnhancementPort>, InferenceError> {
        self.create_enhancement_adapter_for_role(ModelRole::Enhancer)
    }

    /// An Enhancer running on `role`'s model (e.g. the Router's fast model).
    pub fn create_enhancement_adapter_for_role(
        &self,
        role: ModelRole,
    ) -> Result<Arc<dyn TaskEnhancementPort>, InferenceError> {
        let enhancer = LlmEnhancer::new(self.model_chain_for_role(role)?)
            .with_settings(self.settings(ModelRole::Enhancer));
        Ok(Arc::new(enhancer))
    }

    pub fn create_task_decomposition_adapter(
        &self,
    ) -> Result<Arc<dyn TaskDecompositionPort>, InferenceError> {
        self.create_task_decomposition_adapter_for_role(ModelRole::Decomposer)
    }

    pub fn create_task_decomposition_adapter_for_role(
        &self,
        role: ModelRole,
    ) -> Result<Arc<dyn TaskDecompositionPort>, InferenceError> {
        let decomposer = LlmDecomposer::new(self.model_chain_for_role(role)?)
            .with_settings(self.settings(ModelRole::Decomposer));
        Ok(Arc::new(decomposer))
    }

    pub fn create_comprehension_test_adapter(
        &self,
    ) -> Result<Arc<dyn ComprehensionTestPort>, InferenceError> {
        self.create_comprehension_test_adapter_for_role(ModelRole::Tester)
    }

    pub fn create_comprehension_test_adapter_for_role(
        &self,
        role: ModelRole,
    ) -> Result<Arc<dyn ComprehensionTestPort>, InferenceError> {
        let tester = LlmComprehensionTester::new(self.model_chain_for_role(role)?)
            .with_settings(self.settings(ModelRole::Tester));
        Ok(Arc::new(tester))
    }

    /// The whole pipeline, each role on its own chain.
    pub fn orchestrator(&self) -> Result<Orchestrator, InferenceError> {
        Ok(Orchestrator::new(
            self.create_router_adapter()?,
            self.create_enhancement_adapter()?,
            self.create_task_decomposition_adapter()?,
            self.create_comprehension_test_adapter()?,
        ))
    }
}

/// A whole number of seconds from `name`, or `None` when it is unset or blank.
/// The error kinds that fall through: [`FALLS_THROUGH_VAR`], else `falls_through` in
/// `rigger.toml`, else [`FALLS_THROUGH`]. An unknown name is an error listing the known ones.
fn falls_through(
    vars: &Vars,
    config: Option<&LoadedConfig>,
) -> Result<Arc<[ErrorKind]>, InferenceError> {
    let (names, source): (Vec<String>, String) = match vars.get(FALLS_THROUGH_VAR) {
        Some(list) => (
            list.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            FALLS_THROUGH_VAR.to_owned(),
        ),
        None => match config.and_then(|c| c.file.falls_through.clone().map(|l| (c, l))) {
            Some((c, list)) => (list, format!("{}: falls_through", c.path.display())),
            None => return Ok(Arc::from(FALLS_THROUGH)),
        },
    };
    names
        .iter()
        .map(|name| {
            ErrorKind::from_setting_name(name).ok_or_else(|| {
                let known: Vec<String> = ErrorKind::ALL.iter().map(|k| k.setting_name()).collect();
                InferenceError::invalid_request(
                    BACKEND,
                    format!("{source}: {name:?} is not an error kind"),
                )
                .with_hint(format!("use any of: {}", known.join(", ")))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Arc::from)
}

fn seconds_var(vars: &Vars, name: &str) -> Result<Option<Duration>, InferenceError> {
    let Some(value) = vars
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    value
        .parse::<u64>()
        .map(|s| Some(Duration::from_secs(s)))
        .map_err(|_| {
            InferenceError::invalid_request(
                BACKEND,
                format!("{name}={value:?} is not a number of seconds"),
            )
            .with_hint(format!(
                "set {name} to a whole number of seconds (0 turns cooldowns off), or unset it"
            ))
        })
}

/// The backends compiled into this build, by their provider names.
pub fn compiled_backends() -> Vec<&'static str> {
    Provider::compiled()
        .into_iter()
        .map(Provider::as_str)
        .collect()
}
