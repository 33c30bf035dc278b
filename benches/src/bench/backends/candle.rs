//! The Candle row: the adapter in-process, on the CPU engine or candle's own models.

use super::*;

pub async fn candle(
    work: &Work<'_>,
    format: WeightFormat,
    kernels: rigger_candle_adapter::Kernels,
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
    measure_port(&adapter, work, row).await?;
    row.peak_rss_bytes = machine::peak_rss_bytes(std::process::id());
    if !own_peak {
        row.notes
            .push("peak RSS may include earlier rows (no /proc/self/clear_refs)".to_owned());
    }
    row.notes.push(format!("{} threads", work.threads));
    Ok(())
}
