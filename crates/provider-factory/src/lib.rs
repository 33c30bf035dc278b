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

use rigger_domain::ModelRole;
use rigger_pipeline::{
    LlmComprehensionTester, LlmDecomposer, LlmEnhancer, LlmRouter, ModelChain, Orchestrator,
    RoleSettings, RouterFallback,
};
use rigger_ports::{
    ComprehensionTestPort, InferenceError, LanguageModel, TaskDecompositionPort,
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

/// Hands out role adapters (`Arc<dyn …Port>`) built on the providers and models the environment
/// and `rigger.toml` choose. Adapters for the same (provider, model) are shared between roles.
pub struct ProviderFactory {
    vars: Vars,
    config: Option<LoadedConfig>,
    plans: Vec<RolePlan>,
    router_fallback: RouterFallback,
    detection: Option<DetectionReport>,
    models: Mutex<HashMap<Link, Arc<dyn LanguageModel>>>,
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
        Ok(Self {
            vars,
            config,
            plans,
            router_fallback,
            detection,
            models: Mutex::new(HashMap::new()),
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
    pub fn model_chain_for_role(&self, role: ModelRole) -> Result<ModelChain, InferenceError> {
        let links = self
            .plan(role)
            .links
            .iter()
            .map(|link| self.model(link))
            .collect::<Result<Vec<_>, _>>()?;
        ModelChain::new(links)
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

/// The backends compiled into this build, by their provider names.
pub fn compiled_backends() -> Vec<&'static str> {
    Provider::compiled()
        .into_iter()
        .map(Provider::as_str)
        .collect()
}
