//! An OpenAI-compatible server's row.

use super::*;

/// An OpenAI-compatible server: the model is what `OPENAI_MODEL` names, else the one it serves.
pub async fn openai(work: &Work<'_>, kind: &str, url: &str, row: &mut Row) -> Result<(), Outcome> {
    use rigger_openai_adapter::{OpenAiAdapter, OpenAiConfig, ServerKind};
    let mut config = OpenAiConfig::from_env().map_err(|e| Outcome::Failed(e.to_string()))?;
    config.base_url = url.to_owned();
    config.server = match kind {
        "openai" => None,
        other => Some(
            other
                .parse::<ServerKind>()
                .map_err(|e| Outcome::Failed(e.to_string()))?,
        ),
    };
    let probe_config = OpenAiConfig {
        model: None,
        ..config.clone()
    };
    let models = match rigger_openai_adapter::list_models(&OpenAiConfig {
        retry: rigger_http_support::RetryPolicy::none(),
        ..probe_config
    })
    .await
    {
        Ok(models) => models,
        Err(e) => {
            return Err(Outcome::Unavailable(format!(
                "not reachable at {url} ({}) — start the server, e.g. llama-server -m <model>.gguf --port 8080",
                e.message()
            )));
        }
    };
    if config.model.is_none() {
        match models.as_slice() {
            [only] => config.model = Some(only.clone()),
            _ => {
                return Err(Outcome::Failed(format!(
                    "the server lists {} models; set OPENAI_MODEL to one of: {}",
                    models.len(),
                    models.join(", ")
                )));
            }
        }
    }
    row.notes.push(format!(
        "{} server, model {}; weights are whatever the server loaded (serve it this model's files)",
        config.server_kind(),
        config.model.as_deref().unwrap_or_default()
    ));
    let adapter = OpenAiAdapter::connect(config)
        .await
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    measure_port(&adapter, work, row)
        .await
        .map_err(|e| Outcome::Failed(format!("{e:#}")))?;
    row.notes
        .push("peak RSS not measured: the model lives in the server's process".to_owned());
    Ok(())
}
