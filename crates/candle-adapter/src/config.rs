//! Configuration: public fields with defaults, and the one place that reads the Candle
//! backend's environment variables ([`CandleConfig::from_vars`]).

use std::path::PathBuf;

use rigger_ports::{ErrorKind, InferenceError};

use crate::BACKEND;
use crate::hub::HubSettings;

/// The model: a `.gguf` file, a safetensors folder, or a hub id (see
/// [`ModelSource`](crate::ModelSource)).
pub const MODEL_VAR: &str = "CANDLE_MODEL";
/// A `tokenizer.json` to use instead of the one beside the model (for a GGUF: instead of the
/// vocabulary in its metadata).
pub const TOKENIZER_VAR: &str = "CANDLE_TOKENIZER";
/// `cpu`, `cuda`, `cuda:N` or `metal`.
pub const DEVICE_VAR: &str = "CANDLE_DEVICE";
/// Compute threads (a positive number).
pub const THREADS_VAR: &str = "CANDLE_THREADS";
/// `auto`, `reference`, `avx512`, `avx2` or `portable` ([`Kernels`]).
pub const KERNELS_VAR: &str = "CANDLE_KERNELS";
/// A positive penalty on recently seen tokens (1.0 = off).
pub const REPEAT_PENALTY_VAR: &str = "CANDLE_REPEAT_PENALTY";

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Cpu,
    Cuda(usize),
    Metal,
}

impl std::str::FromStr for DeviceKind {
    type Err = InferenceError;
    fn from_str(s: &str) -> Result<Self, InferenceError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "metal" => Ok(DeviceKind::Metal),
            "cuda" => Ok(DeviceKind::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceKind::Cuda)
                .ok_or_else(|| {
                    InferenceError::invalid_request(
                        BACKEND,
                        format!("unknown device {s:?}; use cpu, cuda, cuda:N or metal"),
                    )
                }),
        }
    }
}

/// Which code runs models on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kernels {
    /// The CPU engine's kernels (`rigger-cpu-engine`) where they cover the model (GGUF llama,
    /// qwen2, qwen3, phi3 or gemma3 whose matrices are Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
    /// Q6_K, F16 or BF16; safetensors llama, mistral, qwen2 or qwen3 in F16 or BF16) and the
    /// processor has their SIMD instructions (x86-64 with AVX2 or AVX-512 VNNI), candle's models
    /// otherwise (said in the log).
    #[default]
    Auto,
    /// The engine's kernels limited to AVX-512 VNNI: no AMX tiles for prompts (what an AVX-512
    /// processor without AMX runs). Refused where the processor lacks AVX-512 VNNI.
    Avx512,
    /// Always candle's models (`quantized_llama`, `quantized_qwen2`, … per GGUF architecture,
    /// `llama` for safetensors: the reference path).
    Reference,
    /// The engine's kernels limited to AVX2 (no AVX-512), as on an AVX2-only processor: for
    /// comparisons and for isolating a kernel problem. Refused where the processor lacks AVX2.
    Avx2,
    /// The engine's kernels without SIMD (the portable reference kernel; slow).
    Portable,
}

impl Kernels {
    /// [`CANDLE_KERNELS`](KERNELS_VAR) through `get`, [`Auto`](Kernels::Auto) when unset: the
    /// one place that variable is read (the bench asks here too).
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        rigger_ports::setting(get, KERNELS_VAR).map_or(Ok(Kernels::Auto), |name| name.parse())
    }
}

impl std::str::FromStr for Kernels {
    type Err = InferenceError;
    fn from_str(s: &str) -> Result<Self, InferenceError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Kernels::Auto),
            "reference" | "candle" => Ok(Kernels::Reference),
            "avx512" | "avx512-vnni" => Ok(Kernels::Avx512),
            "avx2" => Ok(Kernels::Avx2),
            "portable" => Ok(Kernels::Portable),
            _ => Err(InferenceError::invalid_request(
                BACKEND,
                format!("unknown kernels {s:?}; use auto, reference, avx512, avx2 or portable"),
            )),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleConfig {
    /// A `.gguf` file, a folder (config.json + safetensors, or one `.gguf`), or a hub id:
    /// `owner/repo` (safetensors) or `owner/repo:file.gguf`.
    pub model: String,
    /// A `tokenizer.json` to use instead of the one beside the model (for a GGUF: instead of the
    /// vocabulary in its metadata).
    pub tokenizer: Option<PathBuf>,
    pub device: DeviceKind,
    /// Compute threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Penalty on tokens seen in the last `repeat_last_n` (1.0 = off).
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Which code runs quantized models on the CPU (`CANDLE_KERNELS`).
    pub kernels: Kernels,
    /// Where hub ids are downloaded from and cached (`HF_ENDPOINT`, `HF_HOME`, …).
    pub hub: HubSettings,
}

impl CandleConfig {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            tokenizer: None,
            device: DeviceKind::Cpu,
            threads: None,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            kernels: Kernels::Auto,
            hub: HubSettings::from_env(),
        }
    }

    /// [`from_vars`](Self::from_vars) over the process environment.
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::from_vars(&|k| std::env::var(k).ok())
    }

    /// [`CANDLE_MODEL`](MODEL_VAR) (required), [`CANDLE_TOKENIZER`](TOKENIZER_VAR),
    /// [`CANDLE_DEVICE`](DEVICE_VAR) (`cpu`, `cuda`, `cuda:N`, `metal`),
    /// [`CANDLE_THREADS`](THREADS_VAR), [`CANDLE_KERNELS`](KERNELS_VAR) (auto | reference |
    /// avx512 | avx2 | portable), [`CANDLE_REPEAT_PENALTY`](REPEAT_PENALTY_VAR), and the hub's variables
    /// ([`HubSettings::from_vars`]), read through `get`
    /// (tests pass a map). Blank values count as unset; a malformed one is an
    /// `InvalidRequest` naming the variable. The model is not looked up here: the adapter
    /// and [`probe`](crate::probe) apply [`ModelSource::parse`](crate::ModelSource::parse).
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        let get = |name: &str| rigger_ports::setting(get, name);
        let model = get(MODEL_VAR).ok_or_else(|| {
            InferenceError::new(ErrorKind::NotAvailable, BACKEND, "CANDLE_MODEL is not set")
                .with_hint("set CANDLE_MODEL to a .gguf file, a safetensors folder or a hub id")
        })?;
        let mut config = Self::new(model);
        config.hub = HubSettings::from_vars(&get);
        config.tokenizer = get(TOKENIZER_VAR).map(PathBuf::from);
        if let Some(device) = get(DEVICE_VAR) {
            config.device = device.parse()?;
        }
        config.kernels = Kernels::from_vars(&get)?;
        if let Some(threads) = get(THREADS_VAR) {
            config.threads = Some(threads.trim().parse().ok().filter(|n| *n > 0).ok_or_else(
                || {
                    InferenceError::invalid_request(
                        BACKEND,
                        format!("CANDLE_THREADS must be a positive number, got {threads:?}"),
                    )
                },
            )?);
        }
        if let Some(p) = get(REPEAT_PENALTY_VAR) {
            config.repeat_penalty = p
                .trim()
                .parse()
                .ok()
                .filter(|p: &f32| *p > 0.0)
                .ok_or_else(|| {
                    InferenceError::invalid_request(
                        BACKEND,
                        format!("CANDLE_REPEAT_PENALTY must be a positive number, got {p:?}"),
                    )
                })?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_vars_validates_and_explains() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| -> Option<String> {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let err = CandleConfig::from_vars(&vars(&[])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotAvailable);
        assert!(err.hint().is_some_and(|h| h.contains("CANDLE_MODEL")));
        let c = CandleConfig::from_vars(&vars(&[
            ("CANDLE_MODEL", "m.gguf"),
            ("CANDLE_DEVICE", "cuda:1"),
            ("CANDLE_THREADS", "2"),
        ]))
        .unwrap();
        assert_eq!((c.device, c.threads), (DeviceKind::Cuda(1), Some(2)));
        assert_eq!(c.kernels, Kernels::Auto);
        let c = CandleConfig::from_vars(&vars(&[
            ("CANDLE_MODEL", "m.gguf"),
            ("CANDLE_KERNELS", " Reference "),
        ]))
        .unwrap();
        assert_eq!(c.kernels, Kernels::Reference);
        assert_eq!("AVX2".parse::<Kernels>().unwrap(), Kernels::Avx2);
        assert_eq!("avx512".parse::<Kernels>().unwrap(), Kernels::Avx512);
        assert_eq!("portable".parse::<Kernels>().unwrap(), Kernels::Portable);
        for bad in [
            [("CANDLE_MODEL", "m"), ("CANDLE_DEVICE", "tpu")],
            [("CANDLE_MODEL", "m"), ("CANDLE_THREADS", "0")],
            [("CANDLE_MODEL", "m"), ("CANDLE_KERNELS", "fast")],
        ] {
            let leaked: &'static [(&str, &str)] = Box::leak(Box::new(bad));
            assert_eq!(
                CandleConfig::from_vars(&vars(leaked)).unwrap_err().kind(),
                ErrorKind::InvalidRequest
            );
        }
    }
}
