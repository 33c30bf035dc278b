//! MLX backend: `MlxSubprocessAdapter` drives one long-lived Python worker running `mlx-lm`,
//! speaking a versioned JSON-lines protocol, and implements the model port over it.
//!
//! Status: not built yet (issue "mlx-adapter + cargo xtask setup-mlx"). This crate compiles so the
//! workspace and its invariants are in place; it exposes nothing until the adapter lands.
//! Invariant: depends on `rigger-ports` only; Python errors never cross the port.
