//! The Ollama row: the format's GGUF imported into a running Ollama, measured through the adapter.

use super::*;

/// The Ollama server, or why it is not usable.
pub async fn ollama_reachable() -> Result<rigger_ollama_adapter::OllamaConfig, String> {
    let config = rigger_ollama_adapter::OllamaConfig::from_env().map_err(|e| e.to_string())?;
    match rigger_ollama_adapter::probe(&config, Duration::from_secs(2)).await {
        Ok(_) => Ok(config),
        // Nothing listening is the usual case: say only what to do.
        Err(e) if e.kind() == rigger_ports::ErrorKind::NotAvailable => Err(format!(
            "not reachable at {} — start it with ollama serve",
            config.base_url
        )),
        Err(e) => Err(format!(
            "not usable at {} — {}",
            config.base_url,
            e.message()
        )),
    }
}

/// Imports the format's GGUF into Ollama (`/api/create`), then measures it.
pub async fn ollama(
    work: &Work<'_>,
    base: &rigger_ollama_adapter::OllamaConfig,
    format: WeightFormat,
    row: &mut Row,
) -> anyhow::Result<()> {
    use rigger_ollama_adapter::{KeepAlive, OllamaAdapter, OllamaClient, OllamaConfig};
    let Some(path) = work.model.gguf(format) else {
        bail!("the model has no {format} GGUF file");
    };
    let slug: String = work
        .model
        .label
        .split_whitespace()
        .next()
        .unwrap_or("model")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = format!("rigger-bench-{slug}-{format}");
    let config = OllamaConfig {
        model: name.clone(),
        keep_alive: Some(KeepAlive::Duration("10m".into())),
        ..base.clone()
    };
    work.step(&format!(
        "{}: importing {format} into Ollama",
        row.framework
    ));
    let client = OllamaClient::new(&config)?;
    let mut progress = client.create_from_gguf(&name, path);
    while let Some(step) = progress.next().await {
        let step = step?;
        work.step(&format!("{}: {}", row.framework, step.status));
    }
    let adapter = OllamaAdapter::connect(config).await?;
    measure_port(&adapter, work, row).await?;
    row.notes.push(format!(
        "imported as {name}; peak RSS not measured: the model lives in Ollama's runner process"
    ));
    Ok(())
}
