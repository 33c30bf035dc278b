//! Tasks, their lifecycle, and what the LLM steps produce for them.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{ComplexityScore, DomainError};

/// A task's identity. The caller mints ids (the domain has no randomness).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    pub fn new(id: impl Into<String>) -> Result<Self, DomainError> {
        let id = id.into();
        if id.trim().is_empty() {
            return Err(DomainError::Empty { field: "task id" });
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Todo,
    InProgress,
    PendingEnhancement,
    PendingComprehensionTest,
    PendingDecomposition,
    Decomposed,
    Completed,
    Archived,
    Errored,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Todo => "todo",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::PendingEnhancement => "pending_enhancement",
            TaskStatus::PendingComprehensionTest => "pending_comprehension_test",
            TaskStatus::PendingDecomposition => "pending_decomposition",
            TaskStatus::Decomposed => "decomposed",
            TaskStatus::Completed => "completed",
            TaskStatus::Archived => "archived",
            TaskStatus::Errored => "errored",
        }
    }

    /// The lifecycle. Archived is terminal; Errored can be retried; the pending states are the
    /// pipeline's steps and may only move forward, back to Todo, or to Errored.
    pub fn can_transition_to(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        if next == Archived {
            return self != Archived;
        }
        match self {
            Todo => matches!(
                next,
                InProgress | PendingEnhancement | PendingDecomposition | Completed | Errored
            ),
            InProgress => matches!(
                next,
                Todo | PendingEnhancement | PendingDecomposition | Completed | Errored
            ),
            PendingEnhancement => matches!(next, PendingComprehensionTest | Todo | Errored),
            PendingComprehensionTest => matches!(next, Todo | InProgress | Errored),
            PendingDecomposition => matches!(next, Decomposed | Todo | Errored),
            Decomposed => matches!(next, InProgress | Completed),
            Completed => matches!(next, Todo),
            Errored => matches!(next, Todo | PendingEnhancement | PendingDecomposition),
            Archived => false,
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A unit of work in the orchestration app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub complexity: Option<ComplexityScore>,
    pub parent_id: Option<TaskId>,
    pub subtask_ids: Vec<TaskId>,
    pub assignee: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Task {
    /// A new task in `Todo`. The title must not be blank.
    pub fn new(
        id: TaskId,
        title: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        let title = non_empty(title.into(), "task title")?;
        Ok(Self {
            id,
            title,
            description: String::new(),
            status: TaskStatus::Todo,
            complexity: None,
            parent_id: None,
            subtask_ids: Vec::new(),
            assignee: None,
            due_date: None,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Moves the task along its lifecycle, or says why it cannot.
    pub fn transition(&mut self, next: TaskStatus, now: DateTime<Utc>) -> Result<(), DomainError> {
        if !self.status.can_transition_to(next) {
            return Err(DomainError::InvalidTransition {
                task: self.id.to_string(),
                from: self.status,
                to: next,
            });
        }
        self.status = next;
        self.updated_at = now;
        Ok(())
    }

    /// Title and description as one text, the way prompts and the heuristic see the task.
    pub fn text(&self) -> String {
        if self.description.trim().is_empty() {
            self.title.clone()
        } else {
            format!("{}\n\n{}", self.title, self.description)
        }
    }
}

/// The Enhancer's rewrite of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enhancement {
    pub task_id: TaskId,
    /// A clearer title, when the model proposed one.
    pub title: Option<String>,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

impl Enhancement {
    pub fn new(
        task_id: TaskId,
        title: Option<String>,
        description: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        let title = match title {
            Some(t) if t.trim().is_empty() => None,
            other => other,
        };
        Ok(Self {
            task_id,
            title,
            description: non_empty(description.into(), "enhanced description")?,
            created_at: now,
        })
    }
}

/// The Tester's question. Open-ended when `options` is empty; multiple choice otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComprehensionTest {
    pub task_id: TaskId,
    pub question: String,
    pub options: Vec<String>,
    pub answer: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl ComprehensionTest {
    pub const MIN_OPTIONS: usize = 2;
    pub const MAX_OPTIONS: usize = 6;

    pub fn new(
        task_id: TaskId,
        question: impl Into<String>,
        options: Vec<String>,
        answer: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        let question = non_empty(question.into(), "question")?;
        if !options.is_empty() {
            let distinct = distinct_normalized(&options).map_err(|_| DomainError::OptionCount {
                min: Self::MIN_OPTIONS,
                max: Self::MAX_OPTIONS,
                got: options.len(),
            })?;
            if !(Self::MIN_OPTIONS..=Self::MAX_OPTIONS).contains(&distinct) {
                return Err(DomainError::OptionCount {
                    min: Self::MIN_OPTIONS,
                    max: Self::MAX_OPTIONS,
                    got: distinct,
                });
            }
            if let Some(answer) = &answer
                && !options.iter().any(|o| normalize(o) == normalize(answer))
            {
                return Err(DomainError::AnswerNotAnOption {
                    answer: answer.clone(),
                });
            }
        }
        Ok(Self {
            task_id,
            question,
            options,
            answer,
            created_at: now,
        })
    }
}

/// One proposed subtask, before it becomes a [`Task`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskDraft {
    pub title: String,
    #[serde(default)]
    pub description: String,
}

/// The Decomposer's result: a validated list of subtasks for one parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decomposition {
    parent_id: TaskId,
    subtasks: Vec<SubtaskDraft>,
}

impl Decomposition {
    pub const MIN_SUBTASKS: usize = 1;
    pub const MAX_SUBTASKS: usize = 8;

    /// 1..=8 subtasks with non-blank titles that differ (ignoring case and surrounding space).
    pub fn new(parent_id: TaskId, subtasks: Vec<SubtaskDraft>) -> Result<Self, DomainError> {
        if !(Self::MIN_SUBTASKS..=Self::MAX_SUBTASKS).contains(&subtasks.len()) {
            return Err(DomainError::SubtaskCount {
                min: Self::MIN_SUBTASKS,
                max: Self::MAX_SUBTASKS,
                got: subtasks.len(),
            });
        }
        if subtasks.iter().any(|s| s.title.trim().is_empty()) {
            return Err(DomainError::Empty {
                field: "subtask title",
            });
        }
        let titles: Vec<String> = subtasks.iter().map(|s| s.title.clone()).collect();
        distinct_normalized(&titles).map_err(DomainError::DuplicateSubtask)?;
        Ok(Self {
            parent_id,
            subtasks,
        })
    }

    pub fn parent_id(&self) -> &TaskId {
        &self.parent_id
    }

    pub fn subtasks(&self) -> &[SubtaskDraft] {
        &self.subtasks
    }

    /// Turns the drafts into tasks linked to `parent` (which moves to `Decomposed`).
    /// `ids` supplies one fresh id per subtask.
    pub fn apply(
        &self,
        parent: &mut Task,
        ids: Vec<TaskId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, DomainError> {
        if parent.id != self.parent_id {
            return Err(DomainError::WrongTask {
                what: "decomposition",
                expected: parent.id.to_string(),
                got: self.parent_id.to_string(),
            });
        }
        if ids.len() != self.subtasks.len() {
            return Err(DomainError::SubtaskCount {
                min: self.subtasks.len(),
                max: self.subtasks.len(),
                got: ids.len(),
            });
        }
        parent.transition(TaskStatus::Decomposed, now)?;
        let mut children = Vec::with_capacity(ids.len());
        for (id, draft) in ids.into_iter().zip(&self.subtasks) {
            let mut child =
                Task::new(id, draft.title.trim(), now)?.with_description(draft.description.trim());
            child.parent_id = Some(parent.id.clone());
            parent.subtask_ids.push(child.id.clone());
            children.push(child);
        }
        Ok(children)
    }
}

fn non_empty(value: String, field: &'static str) -> Result<String, DomainError> {
    if value.trim().is_empty() {
        Err(DomainError::Empty { field })
    } else {
        Ok(value)
    }
}

fn normalize(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Counts distinct values, or returns the first one that repeats.
fn distinct_normalized(values: &[String]) -> Result<usize, String> {
    let mut seen = HashSet::new();
    for v in values {
        if !seen.insert(normalize(v)) {
            return Err(v.clone());
        }
    }
    Ok(seen.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn id(s: &str) -> TaskId {
        TaskId::new(s).unwrap()
    }

    fn draft(title: &str) -> SubtaskDraft {
        SubtaskDraft {
            title: title.into(),
            description: String::new(),
        }
    }

    #[test]
    fn blank_titles_and_ids_are_rejected() {
        assert!(TaskId::new("  ").is_err());
        assert_eq!(
            Task::new(id("t"), " ", now()).unwrap_err(),
            DomainError::Empty {
                field: "task title"
            }
        );
    }

    #[test]
    fn lifecycle_allows_pipeline_paths_and_rejects_the_rest() {
        let mut t = Task::new(id("t"), "Ship it", now()).unwrap();
        t.transition(TaskStatus::PendingEnhancement, now()).unwrap();
        t.transition(TaskStatus::PendingComprehensionTest, now())
            .unwrap();
        t.transition(TaskStatus::Todo, now()).unwrap();
        t.transition(TaskStatus::Archived, now()).unwrap();
        let err = t.transition(TaskStatus::Todo, now()).unwrap_err();
        assert!(matches!(err, DomainError::InvalidTransition { .. }));
        assert!(!TaskStatus::PendingDecomposition.can_transition_to(TaskStatus::Completed));
        assert!(TaskStatus::Errored.can_transition_to(TaskStatus::PendingDecomposition));
    }

    #[test]
    fn decomposition_bounds_and_distinct_titles() {
        assert!(matches!(
            Decomposition::new(id("p"), vec![]),
            Err(DomainError::SubtaskCount { got: 0, .. })
        ));
        let nine = (0..9).map(|i| draft(&format!("step {i}"))).collect();
        assert!(matches!(
            Decomposition::new(id("p"), nine),
            Err(DomainError::SubtaskCount { got: 9, .. })
        ));
        assert_eq!(
            Decomposition::new(id("p"), vec![draft("Design"), draft(" design ")]).unwrap_err(),
            DomainError::DuplicateSubtask(" design ".into())
        );
        assert!(matches!(
            Decomposition::new(id("p"), vec![draft("a"), draft("")]),
            Err(DomainError::Empty { .. })
        ));
    }

    #[test]
    fn applying_a_decomposition_links_parent_and_children() {
        let mut parent = Task::new(id("p"), "Build the app", now()).unwrap();
        parent
            .transition(TaskStatus::PendingDecomposition, now())
            .unwrap();
        let d = Decomposition::new(id("p"), vec![draft("Schema"), draft("API")]).unwrap();
        let kids = d
            .apply(&mut parent, vec![id("c1"), id("c2")], now())
            .unwrap();
        assert_eq!(parent.status, TaskStatus::Decomposed);
        assert_eq!(parent.subtask_ids, vec![id("c1"), id("c2")]);
        assert!(kids.iter().all(|k| k.parent_id == Some(id("p"))));
        assert_eq!(kids[1].title, "API");
    }

    #[test]
    fn applying_needs_one_id_per_subtask_and_the_right_parent() {
        let mut parent = Task::new(id("p"), "Build", now()).unwrap();
        parent
            .transition(TaskStatus::PendingDecomposition, now())
            .unwrap();
        let d = Decomposition::new(id("p"), vec![draft("a"), draft("b")]).unwrap();
        assert!(d.apply(&mut parent, vec![id("c1")], now()).is_err());
        let mut other = Task::new(id("q"), "Other", now()).unwrap();
        assert!(matches!(
            d.apply(&mut other, vec![id("1"), id("2")], now()),
            Err(DomainError::WrongTask { .. })
        ));
        assert_eq!(parent.status, TaskStatus::PendingDecomposition);
    }

    #[test]
    fn comprehension_test_rules() {
        let t = |opts: &[&str], ans: Option<&str>| {
            ComprehensionTest::new(
                id("t"),
                "What is the goal?",
                opts.iter().map(|s| s.to_string()).collect(),
                ans.map(String::from),
                now(),
            )
        };
        assert!(t(&[], None).is_ok());
        assert!(t(&["a", "b"], Some("B")).is_ok());
        assert!(matches!(
            t(&["a"], None),
            Err(DomainError::OptionCount { got: 1, .. })
        ));
        assert!(matches!(
            t(&["a", "A"], None),
            Err(DomainError::OptionCount { .. })
        ));
        assert!(matches!(
            t(&["a", "b"], Some("c")),
            Err(DomainError::AnswerNotAnOption { .. })
        ));
        assert!(ComprehensionTest::new(id("t"), "", vec![], None, now()).is_err());
    }

    #[test]
    fn enhancement_needs_a_description_and_drops_blank_titles() {
        let e = Enhancement::new(id("t"), Some(" ".into()), "Do X by Friday", now()).unwrap();
        assert_eq!(e.title, None);
        assert!(Enhancement::new(id("t"), None, "\n", now()).is_err());
    }
}
