//! How a role calls its model, and the environment variables that configure one role. Its own
//! module so that `roles` (the role implementations) and `structured` (the JSON call they share)
//! both depend on it without depending on each other.

use rigger_domain::ModelRole;

/// How a role calls its model.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleSettings {
    /// The most tokens one answer may take.
    pub max_tokens: u32,
    /// `None` leaves the backend's default.
    pub temperature: Option<f32>,
    /// How many times an invalid answer is sent back for repair before the call fails.
    pub repair_attempts: u32,
}

impl RoleSettings {
    /// Defaults per role: short answers for the Router, room for 3–5 subtasks for the Decomposer;
    /// each fits the longest answer its schema allows (`roles::bounds`).
    pub fn for_role(role: ModelRole) -> Self {
        let max_tokens = match role {
            ModelRole::Router => 256,
            ModelRole::Decomposer => 1536,
            ModelRole::Enhancer | ModelRole::Tester => 512,
        };
        Self {
            max_tokens,
            temperature: Some(0.2),
            repair_attempts: 1,
        }
    }
}

/// A per-role setting read from the environment (`TASK_ORCHESTRATOR_<ROLE>_<SETTING>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleVar {
    /// The role's provider.
    Provider,
    /// The role's model.
    Model,
    /// The role's fallback chain.
    Fallback,
}

impl RoleVar {
    fn suffix(self) -> &'static str {
        match self {
            RoleVar::Provider => "PROVIDER",
            RoleVar::Model => "MODEL",
            RoleVar::Fallback => "FALLBACK",
        }
    }
}

/// The name of one role's variable, e.g. `TASK_ORCHESTRATOR_ROUTER_MODEL`: the only place
/// these names are spelled.
pub fn role_var(role: ModelRole, setting: RoleVar) -> String {
    format!(
        "TASK_ORCHESTRATOR_{}_{}",
        role.as_str().to_ascii_uppercase(),
        setting.suffix()
    )
}
