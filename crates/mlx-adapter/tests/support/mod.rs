//! What the MLX tests share: the configuration that points at the project's MLX venv, and the
//! tiny generated model (`cargo xtask setup-mlx` makes the venv, or `RIGGER_MLX_PYTHON` names
//! one; without it the tests fail with that instruction, never skip silently).

#![allow(dead_code)] // each test file uses a part

use rigger_mlx_adapter::MlxConfig;

pub fn config(model: &str) -> MlxConfig {
    MlxConfig {
        python: Some(rigger_model_gen::mlx_python()),
        ..MlxConfig::new(model)
    }
}

pub fn tiny() -> String {
    rigger_model_gen::tiny_model()
        .expect("generate the tiny model")
        .display()
        .to_string()
}
