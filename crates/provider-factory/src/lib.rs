//! The provider factory: the only library that knows the list of adapters. It turns the
//! environment (`TASK_ORCHESTRATOR_PROVIDER`, `MLX_MODEL`, …) and `rigger.toml` into role adapters
//! handed out as trait objects, auto-detects the fastest usable backend, and runs per-role
//! fallback chains.
//!
//! Status: not built yet (issue "provider-factory, pipeline, facade and the rigger CLI"). Each
//! adapter is already behind its cargo feature (`mlx`, `ollama`, `candle`, `openai`,
//! `anthropic`, all on by default), and [`compiled_backends`] says which are in this build.

/// The backends compiled into this build, by their provider names.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "mlx") {
        names.push("mlx");
    }
    if cfg!(feature = "ollama") {
        names.push("ollama");
    }
    if cfg!(feature = "candle") {
        names.push("candle");
    }
    if cfg!(feature = "openai") {
        names.push("openai");
    }
    if cfg!(feature = "anthropic") {
        names.push("anthropic");
    }
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_build_compiles_every_backend_in() {
        assert_eq!(
            super::compiled_backends(),
            ["mlx", "ollama", "candle", "openai", "anthropic"]
        );
    }
}
