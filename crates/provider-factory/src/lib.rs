//! The provider factory: the only library that knows the list of adapters. It turns the
//! environment (`TASK_ORCHESTRATOR_PROVIDER`, `MLX_MODEL`, …) and `rigger.toml` into role adapters
//! handed out as trait objects, auto-detects the fastest usable backend, and runs per-role
//! fallback chains.
//!
//! Status: not built yet (issue "provider-factory, pipeline, facade and the rigger CLI"). Each
//! adapter is already behind its cargo feature (`mlx`, `ollama`, `candle`, `openai`,
//! `anthropic`, all on by default), and [`compiled_backends`] says which are in this build.

/// What a quick look says about one backend (full detection arrives with the factory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendReport {
    pub name: &'static str,
    pub usable: bool,
    pub detail: String,
}

/// A quick, offline look at each compiled-in backend: MLX's cached availability check, whether
/// Candle has a model configured, and which adapters are not built yet.
pub fn backend_reports() -> Vec<BackendReport> {
    let mut reports = Vec::new();
    #[cfg(feature = "mlx")]
    {
        let a = rigger_mlx_adapter::availability();
        reports.push(BackendReport {
            name: "mlx",
            usable: a.available,
            detail: if a.available {
                a.reason.clone()
            } else {
                format!(
                    "{} (fix: cargo xtask setup-mlx, or set PYTHON_PATH)",
                    a.reason
                )
            },
        });
    }
    #[cfg(feature = "candle")]
    reports.push(match std::env::var("CANDLE_MODEL").ok().filter(|m| !m.trim().is_empty()) {
        Some(model) => BackendReport {
            name: "candle",
            usable: true,
            detail: format!("CANDLE_MODEL={model} (loaded on first use)"),
        },
        None => BackendReport {
            name: "candle",
            usable: false,
            detail: "CANDLE_MODEL is not set (fix: point it at a .gguf, a safetensors folder or a hub id)".into(),
        },
    });
    for name in ["ollama", "openai", "anthropic"] {
        if compiled_backends().contains(&name) {
            reports.push(BackendReport {
                name,
                usable: false,
                detail: "adapter not implemented yet".into(),
            });
        }
    }
    reports
}

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
    fn every_compiled_backend_gets_a_report_with_a_reason() {
        let reports = super::backend_reports();
        let names: Vec<_> = reports.iter().map(|r| r.name).collect();
        assert_eq!(names, ["mlx", "candle", "ollama", "openai", "anthropic"]);
        assert!(reports.iter().all(|r| !r.detail.is_empty()));
        assert!(
            reports
                .iter()
                .filter(|r| ["ollama", "openai", "anthropic"].contains(&r.name))
                .all(|r| !r.usable)
        );
    }

    #[test]
    fn default_build_compiles_every_backend_in() {
        assert_eq!(
            super::compiled_backends(),
            ["mlx", "ollama", "candle", "openai", "anthropic"]
        );
    }
}
