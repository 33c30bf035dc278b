//! The Candle rows: the adapter in-process, on the CPU engine or candle's own models, and the
//! same with constrained decoding.

use rigger_ports::ResponseFormat;

use super::*;

/// A constrained row's request: its response format and the room it gets.
pub struct ConstrainedRun {
    pub format: ResponseFormat,
    pub budget: u32,
}

impl ConstrainedRun {
    /// The Decomposer's schema (the pipeline's largest), with room for its longest answer.
    pub fn decomposer() -> Self {
        Self {
            format: ResponseFormat::JsonSchema {
                name: "decomposition".into(),
                schema: rigger_pipeline::LlmDecomposer::schema(),
            },
            // Every string in the schema is bounded; its longest answer is well below this.
            budget: 1536,
        }
    }
}

pub async fn candle(
    work: &Work<'_>,
    format: WeightFormat,
    kernels: rigger_candle_adapter::Kernels,
    constrained: Option<&ConstrainedRun>,
    row: &mut Row,
) -> anyhow::Result<()> {
    use rigger_candle_adapter::{CandleAdapter, CandleConfig};
    let Some(path) = work.model.gguf(format) else {
        bail!("the model has no {format} GGUF file");
    };
    let own_peak = machine::reset_own_peak_rss();
    work.step(&format!("{}: loading {format}", row.framework));
    let adapter = CandleAdapter::connect(CandleConfig {
        threads: Some(work.threads),
        tokenizer: Some(work.model.tokenizer.clone()),
        kernels,
        ..CandleConfig::new(path.display().to_string())
    })
    .await?;
    // connect() loaded the model, so these are known.
    row.notes
        .push(format!("engine: {}", adapter.engine().unwrap_or("unknown")));
    row.load_seconds = adapter.load_duration().map(|d| d.as_secs_f64());
    if adapter.uses_fallback_template() == Some(true) {
        row.comparable = false;
        row.notes
            .push("Candle found no chat template and used its plain fallback".to_owned());
    }
    if work.step_times {
        rigger_cpu_engine::steps::record(true);
        rigger_cpu_engine::steps::take(); // from this row's runs only
    }
    let measured = measure_port_with(&adapter, work, row, constrained).await;
    if work.step_times {
        rigger_cpu_engine::steps::record(false);
        let times = rigger_cpu_engine::steps::take();
        // candle's own path (candle-reference) runs no engine forward.
        if times.prompt.forwards + times.decode.forwards > 0 {
            row.step_times = Some(times.to_string());
        }
    }
    measured?;
    row.peak_rss_bytes = machine::peak_rss_bytes(std::process::id());
    if !own_peak {
        row.notes
            .push("peak RSS may include earlier rows (no /proc/self/clear_refs)".to_owned());
    }
    row.notes.push(format!("{} threads", work.threads));
    Ok(())
}
