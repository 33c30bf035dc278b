//! Task complexity and the Router's decision.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// How complex a task is, from 1 (trivial) to 10 (a project of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct ComplexityScore(u8);

impl ComplexityScore {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 10;

    pub fn new(value: i64) -> Result<Self, DomainError> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&value) {
            Ok(Self(value as u8))
        } else {
            Err(DomainError::ComplexityOutOfRange(value))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// A deterministic heuristic from the task's text: length, the number of parts it lists,
    /// and words that signal system-wide scope. Used as a hint for the Router model, and as a
    /// fallback only when the caller asks for one.
    pub fn estimate(text: &str) -> Self {
        const SCOPE_WORDS: [&str; 16] = [
            "architecture",
            "migrate",
            "migration",
            "integrate",
            "integration",
            "system",
            "design",
            "implement",
            "refactor",
            "database",
            "api",
            "deploy",
            "security",
            "pipeline",
            "multiple",
            "across",
        ];
        const PART_WORDS: [&str; 5] = ["and", "then", "also", "plus", "after"];

        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let length_points = (words.len() / 12).min(4);
        let list_items = text
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                l.starts_with("- ")
                    || l.starts_with("* ")
                    || l.split_once(". ")
                        .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
            })
            .count();
        let joins = words
            .iter()
            .filter(|w| PART_WORDS.contains(&w.as_str()))
            .count()
            + text.matches(';').count();
        let part_points = (list_items + joins).min(3);
        let scope_points = words
            .iter()
            .filter(|w| SCOPE_WORDS.contains(&w.as_str()))
            .count()
            .min(2);
        let total = 1 + length_points + part_points + scope_points;
        Self(total.min(usize::from(Self::MAX)) as u8)
    }
}

impl TryFrom<i64> for ComplexityScore {
    type Error = DomainError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ComplexityScore> for u8 {
    fn from(score: ComplexityScore) -> u8 {
        score.0
    }
}

/// What the pipeline does next with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Clarify it, then check it was understood.
    Enhance,
    /// Split it into subtasks.
    Decompose,
}

/// The Router's verdict on a task, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingDecision {
    pub route: Route,
    pub complexity: ComplexityScore,
    pub reason: String,
}

impl RoutingDecision {
    /// Scores at or above this are decomposed.
    pub const DECOMPOSE_AT: u8 = 6;

    /// The rule the heuristic fallback uses: decompose at [`Self::DECOMPOSE_AT`] and above.
    pub fn from_score(complexity: ComplexityScore, reason: impl Into<String>) -> Self {
        let route = if complexity.get() >= Self::DECOMPOSE_AT {
            Route::Decompose
        } else {
            Route::Enhance
        };
        Self {
            route,
            complexity,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bounds_are_enforced_including_serde() {
        assert!(ComplexityScore::new(0).is_err());
        assert!(ComplexityScore::new(11).is_err());
        assert_eq!(ComplexityScore::new(10).unwrap().get(), 10);
        assert!(serde_json::from_str::<ComplexityScore>("0").is_err());
        assert_eq!(
            serde_json::from_str::<ComplexityScore>("7").unwrap().get(),
            7
        );
    }

    #[test]
    fn heuristic_is_deterministic_and_orders_simple_below_complex() {
        let simple = "Fix typo in README";
        let complex = "Design and implement a migration of the billing database to a new \
            architecture, then integrate it with the payments API across multiple services; \
            also deploy it behind a feature flag and write a security review.\n\
            - schema\n- backfill\n- cutover";
        let s = ComplexityScore::estimate(simple);
        let c = ComplexityScore::estimate(complex);
        assert_eq!(s, ComplexityScore::estimate(simple));
        assert_eq!(s.get(), 1);
        assert!(c.get() >= RoutingDecision::DECOMPOSE_AT, "got {c:?}");
        assert!(c.get() <= ComplexityScore::MAX);
    }

    #[test]
    fn routing_threshold() {
        let at = |n| RoutingDecision::from_score(ComplexityScore::new(n).unwrap(), "r").route;
        assert_eq!(at(5), Route::Enhance);
        assert_eq!(at(6), Route::Decompose);
    }
}
