//! The rows a run will measure: one per backend and weight format, each with what it needs (the
//! venv's Python, the Ollama server) or the reason it cannot run.

use std::path::PathBuf;

use super::backends::{self, Backend};
use super::model::{BenchModel, WeightFormat};
use super::report::Row;

/// A row to run, or the reason it cannot.
pub struct Planned {
    pub backend: Backend,
    pub format: Option<WeightFormat>,
    pub row: Row,
    pub reason: Option<String>,
    pub python: Option<PathBuf>,
    pub ollama: Option<rigger_ollama_adapter::OllamaConfig>,
}

pub async fn rows(
    backends: &[Backend],
    formats: &[WeightFormat],
    model: &BenchModel,
) -> Vec<Planned> {
    let mut out = Vec::new();
    let planned = |backend: Backend, format: Option<WeightFormat>, row: Row| Planned {
        backend,
        format,
        row,
        reason: None,
        python: None,
        ollama: None,
    };
    for backend in backends {
        match backend {
            Backend::Candle
            | Backend::CandleJson
            | Backend::CandleReference
            | Backend::LlamaBench { .. } => {
                let (framework, name) = match backend {
                    Backend::Candle => ("Candle (in-process)", "candle"),
                    Backend::CandleJson => {
                        ("Candle (in-process), Decomposer JSON schema", "candle-json")
                    }
                    Backend::CandleReference => {
                        ("Candle (candle's quantized_llama)", "candle-reference")
                    }
                    _ => ("llama.cpp (llama-bench)", "llama-bench"),
                };
                for &format in formats {
                    let mut p = planned(
                        backend.clone(),
                        Some(format),
                        Row::new(framework, name, Some(format.to_string())),
                    );
                    if model.gguf(format).is_none() {
                        p.reason = Some(format!("the model has no {format} GGUF file"));
                    }
                    if let Backend::LlamaBench { binary } = backend
                        && !binary.is_file()
                    {
                        p.reason = Some(format!(
                            "{} does not exist; build it with ../shared/tools/build-llama-server.sh \
                             or name it: llama-bench=PATH",
                            binary.display()
                        ));
                    }
                    out.push(p);
                }
            }
            Backend::Mlx | Backend::MlxRaw | Backend::MlxPerCall => {
                let (framework, name) = match backend {
                    Backend::Mlx => ("MLX (Rigger adapter, persistent worker)", "mlx"),
                    Backend::MlxRaw => ("mlx_lm (raw, in-process)", "mlx-raw"),
                    _ => ("mlx_lm per-call subprocess (spec method)", "mlx-per-call"),
                };
                let mut p = planned(
                    backend.clone(),
                    None,
                    Row::new(framework, name, Some("safetensors".to_owned())),
                );
                match (backends::mlx_python(), &model.hf_folder) {
                    (Err(reason), _) => p.reason = Some(reason),
                    (Ok(_), None) => {
                        p.reason = Some(
                            "the model has no HF folder (config.json + safetensors) for mlx-lm"
                                .into(),
                        )
                    }
                    (Ok(python), Some(_)) => p.python = Some(python),
                }
                out.push(p);
            }
            Backend::Ollama => match backends::ollama_reachable().await {
                Err(reason) => {
                    let mut p = planned(backend.clone(), None, Row::new("Ollama", "ollama", None));
                    p.reason = Some(reason);
                    out.push(p);
                }
                Ok(config) => {
                    for &format in formats {
                        let mut p = planned(
                            backend.clone(),
                            Some(format),
                            Row::new("Ollama", "ollama", Some(format.to_string())),
                        );
                        if model.gguf(format).is_none() {
                            p.reason = Some(format!("the model has no {format} GGUF file"));
                        }
                        p.ollama = Some(config.clone());
                        out.push(p);
                    }
                }
            },
            Backend::OpenAi { kind, url } => out.push(planned(
                backend.clone(),
                None,
                Row::new(
                    format!("OpenAI-compatible ({kind}) at {url}"),
                    kind.clone(),
                    None,
                ),
            )),
        }
    }
    out
}
