//! The role pipeline: implementations of the application ports (`TaskRouterPort`,
//! `TaskEnhancementPort`, `TaskDecompositionPort`, `ComprehensionTestPort`) on top of any
//! `LanguageModel`, and the orchestrator that chains them (route → enhance → test, or
//! route → decompose).
//!
//! Status: not built yet (issue "provider-factory, pipeline, facade and the rigger CLI"); this crate
//! exposes nothing until then. Invariant: depends on `rigger-ports` and `rigger-domain` only, never
//! on an adapter — it sees models solely through the port, and never substitutes canned output
//! for a failed model call.
