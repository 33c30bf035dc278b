//! The user guide's (`MLX_SETUP.md`) Rust snippets, verbatim, as doctests that compile and run.
//! Hidden lines (`# …`) only wrap them in a `main` returning a `Result`, point auto-detection at
//! something usable on a machine without Ollama (the project's tiny generated model through
//! Candle, since MLX is auto-selected only on Apple Silicon), and check that each did what its
//! comments say.
//!
//! Basic usage:
//!
//! ```
//! # #[allow(unsafe_code)]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tiny = rigger_model_gen::tiny_model()?;
//! # // A doctest is its own single-threaded process at this point: setting a variable is sound.
//! # if std::env::var_os("CANDLE_MODEL").is_none() {
//! #     unsafe { std::env::set_var("CANDLE_MODEL", tiny.join("model-q8_0.gguf")) };
//! # }
//! use task_orchestrator::adapters::provider_factory::ProviderFactory;
//!
//! // Auto-detect and use MLX if available
//! let factory = ProviderFactory::from_env()?;
//!
//! // Create enhancement adapter (uses MLX on macOS)
//! let enhancer = factory.create_enhancement_adapter()?;
//! # use task_orchestrator::adapters::provider_factory::Provider;
//! # use task_orchestrator::domain::model_role::ModelRole;
//! # let plan = factory.plan(ModelRole::Enhancer);
//! # if std::env::var_os("TASK_ORCHESTRATOR_PROVIDER").is_none() {
//! #     assert!(plan.provider_source.starts_with("auto-detected"), "{plan:?}");
//! #     let mlx_here = cfg!(all(target_os = "macos", target_arch = "aarch64"))
//! #         && task_orchestrator::adapters::mlx_subprocess_adapter::MlxSubprocessAdapter::is_available();
//! #     assert_eq!(plan.links[0].provider == Provider::Mlx, mlx_here, "{plan:?}");
//! # }
//! # drop(enhancer);
//! # Ok(()) }
//! ```
//!
//! Explicit MLX backend:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use task_orchestrator::adapters::provider_factory::ProviderFactory;
//!
//! // Force MLX backend
//! let factory = ProviderFactory::new("mlx", "mlx-community/Phi-3-mini-4k-instruct")?;
//! let enhancer = factory.create_enhancement_adapter()?;
//! # use task_orchestrator::adapters::provider_factory::Provider;
//! # use task_orchestrator::domain::model_role::ModelRole;
//! # for role in ModelRole::ALL {
//! #     let link = &factory.plan(role).links[0];
//! #     assert_eq!((link.provider, link.model.as_str()), (Provider::Mlx, "mlx-community/Phi-3-mini-4k-instruct"));
//! # }
//! # drop(enhancer);
//! # Ok(()) }
//! ```
//!
//! Heterogeneous pipeline:
//!
//! ```
//! # #[allow(unsafe_code)]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tiny = rigger_model_gen::tiny_model()?;
//! # if std::env::var_os("CANDLE_MODEL").is_none() {
//! #     unsafe { std::env::set_var("CANDLE_MODEL", tiny.join("model-q8_0.gguf")) };
//! # }
//! use task_orchestrator::adapters::provider_factory::ProviderFactory;
//! use task_orchestrator::domain::model_role::ModelRole;
//!
//! let factory = ProviderFactory::from_env()?;
//!
//! // Router uses fast Phi-3 model
//! let router = factory.create_enhancement_adapter_for_role(ModelRole::Router)?;
//!
//! // Decomposer uses reasoning-optimized Orca-2
//! let decomposer = factory.create_task_decomposition_adapter_for_role(ModelRole::Decomposer)?;
//! # use task_orchestrator::adapters::provider_factory::Provider;
//! # let (r, d) = (&factory.plan(ModelRole::Router).links[0], &factory.plan(ModelRole::Decomposer).links[0]);
//! # if r.provider == Provider::Mlx && std::env::var_os("MLX_MODEL").is_none() {
//! #     assert_eq!(r.model, "mlx-community/Phi-3-mini-4k-instruct");
//! #     assert_eq!(d.model, "mlx-community/orca-2-7b");
//! # }
//! # drop((router, decomposer));
//! # Ok(()) }
//! ```
//!
//! Availability check:
//!
//! ```
//! use task_orchestrator::adapters::mlx_subprocess_adapter::MlxSubprocessAdapter;
//!
//! if MlxSubprocessAdapter::is_available() {
//!     println!("MLX backend available - using optimized inference");
//! } else {
//!     println!("MLX not available - falling back to Ollama");
//! }
//! ```
