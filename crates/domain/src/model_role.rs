//! The four LLM steps of the pipeline.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One step of the task pipeline; each can run on its own model and backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// Judges how complex a task is and whether to enhance or decompose it.
    Router,
    /// Splits a complex task into subtasks.
    Decomposer,
    /// Rewrites a task so that it is clear and actionable.
    Enhancer,
    /// Writes a question that checks the task was understood.
    Tester,
}

impl ModelRole {
    /// Every role, in pipeline order.
    pub const ALL: [ModelRole; 4] = [
        ModelRole::Router,
        ModelRole::Decomposer,
        ModelRole::Enhancer,
        ModelRole::Tester,
    ];

    /// The lowercase name used in config files, env vars and serde.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelRole::Router => "router",
            ModelRole::Decomposer => "decomposer",
            ModelRole::Enhancer => "enhancer",
            ModelRole::Tester => "tester",
        }
    }

    /// What the role does, for humans (CLI help, doctor output).
    pub fn description(self) -> &'static str {
        match self {
            ModelRole::Router => "classifies task complexity and picks enhance or decompose",
            ModelRole::Decomposer => "splits a complex task into 3-5 concrete subtasks",
            ModelRole::Enhancer => "rewrites a task so it is clear and actionable",
            ModelRole::Tester => "writes a question that checks the task was understood",
        }
    }

    /// Whether the role sits on the latency-critical path and wants a small, fast model.
    /// The Router runs on every task before anything else; the others can afford a larger model.
    pub fn needs_fast_inference(self) -> bool {
        matches!(self, ModelRole::Router)
    }
}

impl fmt::Display for ModelRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The text did not name a role; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model role {input:?}; valid roles are: router, decomposer, enhancer, tester")]
pub struct ParseModelRoleError {
    pub input: String,
}

impl FromStr for ModelRole {
    type Err = ParseModelRoleError;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        ModelRole::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ParseModelRoleError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_round_trips() {
        for role in ModelRole::ALL {
            assert_eq!(role.as_str().parse::<ModelRole>(), Ok(role));
            assert_eq!(role.as_str().to_uppercase().parse::<ModelRole>(), Ok(role));
            assert_eq!(format!(" {role} ").parse::<ModelRole>(), Ok(role));
        }
    }

    #[test]
    fn unknown_role_error_lists_every_valid_role() {
        let err = "planner".parse::<ModelRole>().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("planner"));
        for role in ModelRole::ALL {
            assert!(message.contains(role.as_str()), "{message} lacks {role}");
        }
    }

    #[test]
    fn serde_uses_lowercase_names() {
        let json = serde_json::to_string(&ModelRole::Decomposer).unwrap();
        assert_eq!(json, "\"decomposer\"");
        let back: ModelRole = serde_json::from_str("\"tester\"").unwrap();
        assert_eq!(back, ModelRole::Tester);
        assert!(serde_json::from_str::<ModelRole>("\"Tester\"").is_err());
    }

    #[test]
    fn only_the_router_needs_fast_inference() {
        let fast: Vec<_> = ModelRole::ALL
            .into_iter()
            .filter(|r| r.needs_fast_inference())
            .collect();
        assert_eq!(fast, vec![ModelRole::Router]);
        assert!(ModelRole::ALL.iter().all(|r| !r.description().is_empty()));
    }
}
