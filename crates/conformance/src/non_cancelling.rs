//! A deliberately broken wrapper for proving that the drop scenario can fail against a real
//! backend: its streams keep pulling the wrapped model's stream to the end after the caller has
//! dropped them, as an adapter that forgot to cancel would.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rigger_ports::{
    EventStream, GenerationRequest, InferenceError, LanguageModel, ModelDescriptor, StreamEvent,
};
use tokio::sync::mpsc;

use crate::ConformanceTarget;

/// `model`, except that dropping a stream does not stop its generation.
pub struct NonCancelling(pub Arc<dyn LanguageModel>);

#[async_trait]
impl LanguageModel for NonCancelling {
    fn descriptor(&self) -> &ModelDescriptor {
        self.0.descriptor()
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        let mut inner = self.0.stream(request).await?;
        let (tx, rx) = mpsc::unbounded_channel::<Result<StreamEvent, InferenceError>>();
        tokio::spawn(async move {
            // Send failures (the caller dropped the stream) are ignored: that is the defect.
            while let Some(event) = inner.next().await {
                let _ = tx.send(event);
            }
        });
        Ok(tokio_stream_from(rx))
    }
}

fn tokio_stream_from(
    mut rx: mpsc::UnboundedReceiver<Result<StreamEvent, InferenceError>>,
) -> EventStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// A target whose models are [`NonCancelling`]: the drop scenario must fail against it.
pub struct NonCancellingTarget<T>(pub T);

#[async_trait]
impl<T: ConformanceTarget> ConformanceTarget for NonCancellingTarget<T> {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(NonCancelling(self.0.model().await?)))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        self.0.missing_model(model_id).await
    }

    fn patience(&self) -> Duration {
        self.0.patience()
    }
}
