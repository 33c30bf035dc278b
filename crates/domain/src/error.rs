//! The one error type of the domain: a rule that a value breaks.

/// A domain rule was broken. The message names the rule and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("complexity must be between 1 and 10, got {0}")]
    ComplexityOutOfRange(i64),
    #[error("a decomposition needs between {min} and {max} subtasks, got {got}")]
    SubtaskCount { min: usize, max: usize, got: usize },
    #[error("subtask titles must be distinct: {0:?} appears more than once")]
    DuplicateSubtask(String),
    #[error("a multiple-choice test needs {min}..={max} distinct options, got {got}")]
    OptionCount { min: usize, max: usize, got: usize },
    #[error("the answer {answer:?} is not one of the options")]
    AnswerNotAnOption { answer: String },
    #[error("task {task} cannot move from {from} to {to}")]
    InvalidTransition {
        task: String,
        from: crate::TaskStatus,
        to: crate::TaskStatus,
    },
    #[error("{what} belongs to task {got}, expected task {expected}")]
    WrongTask {
        what: &'static str,
        expected: String,
        got: String,
    },
}
