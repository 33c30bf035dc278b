//! The figures of the model calls a step made, carried by its error when it fails: a leaf that
//! the chain and the structured steps both attach to errors, so neither depends on the other.

use rigger_ports::{CallMetrics, InferenceError};

/// The figures of the calls a failed step made, attached as the source of its error so that a
/// failure still reports what it cost (see [`step_calls`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FailedStepCalls {
    pub calls: Vec<CallMetrics>,
}

impl std::fmt::Display for FailedStepCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} model call(s) made before the step failed",
            self.calls.len()
        )
    }
}

impl std::error::Error for FailedStepCalls {}

/// The calls a failed step made, when its error carries them.
pub fn step_calls(error: &InferenceError) -> &[CallMetrics] {
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<FailedStepCalls>())
        .map_or(&[], |f| f.calls.as_slice())
}
