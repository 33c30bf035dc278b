use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use rigger_ports::{
    EventStream, GenerationRequest, InferenceError, LanguageModel, ModelDescriptor,
};
use tokio::sync::OnceCell;

type Loader = Box<
    dyn Fn() -> BoxFuture<'static, Result<Arc<dyn LanguageModel>, InferenceError>> + Send + Sync,
>;

/// A model whose adapter is built on first use (the factory's constructors are synchronous,
/// loading Candle weights is not). A failed load is not remembered: the next request tries again.
/// Until loaded, the descriptor is the provisional one (context length unknown).
pub(crate) struct LazyModel {
    provisional: ModelDescriptor,
    cell: OnceCell<Arc<dyn LanguageModel>>,
    loader: Loader,
}

impl LazyModel {
    pub(crate) fn new(provisional: ModelDescriptor, loader: Loader) -> Self {
        Self {
            provisional,
            cell: OnceCell::new(),
            loader,
        }
    }
}

#[async_trait]
impl LanguageModel for LazyModel {
    fn descriptor(&self) -> &ModelDescriptor {
        self.cell
            .get()
            .map_or(&self.provisional, |m| m.descriptor())
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        let model = self.cell.get_or_try_init(|| (self.loader)()).await?;
        model.stream(request).await
    }
}
