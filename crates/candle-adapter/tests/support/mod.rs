//! Writing small GGUF files in a test (seeded random tensors with the tiny model's tokenizer
//! beside them): the helpers live in `rigger-model-gen`, shared with the CPU engine's tests.

#![allow(unused_imports)] // each test binary uses part of them

pub use rigger_model_gen::scratch::{Weights, read_gguf, remove, tiny, write_gguf};

/// A Candle adapter for `model_id` connected through a hub that answers (a local one on
/// 127.0.0.1, with an empty cache): an id it does not have is `ModelNotFound`, where an
/// unreachable hub would be `NotAvailable`.
#[allow(dead_code)] // the conformance targets use it
pub async fn connect_through_a_local_hub(
    model_id: &str,
) -> Result<std::sync::Arc<dyn rigger_ports::LanguageModel>, rigger_ports::InferenceError> {
    let hub = rigger_http_support::fixture::hub::HubFixture::start()
        .await
        .expect("start the hub fixture");
    let cache = tempfile::tempdir().expect("a scratch hub cache");
    let mut config = rigger_candle_adapter::CandleConfig::new(model_id);
    config.hub.endpoint = Some(hub.url());
    config.hub.cache_dir = cache.path().to_path_buf();
    config.hub.offline = false;
    Ok(std::sync::Arc::new(
        rigger_candle_adapter::CandleAdapter::connect(config).await?,
    ))
}
