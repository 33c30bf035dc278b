//! Typed structured output: the schema comes from a Rust type (`schemars`), the answer is
//! deserialised into it.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{
    ErrorKind, Generation, GenerationRequest, InferenceError, LanguageModel, ResponseFormat,
};

/// A value of `T` a model generated, with the generation it came from (text and figures).
#[derive(Debug, Clone)]
pub struct TypedGeneration<T> {
    pub value: T,
    pub generation: Generation,
}

/// The JSON-schema response format for `T` (named after the type), as
/// [`GenerateJson::generate_json`] sends it.
pub fn response_format_for<T: JsonSchema>() -> ResponseFormat {
    let schema = schemars::schema_for!(T);
    ResponseFormat::JsonSchema {
        name: T::schema_name().into_owned(),
        schema: schema.to_value(),
    }
}

/// `generate_json::<T>()` on every [`LanguageModel`].
///
/// ```no_run
/// # async fn demo(model: &dyn rigger_ports::LanguageModel) -> Result<(), rigger_ports::InferenceError> {
/// use rigger_ports::{GenerateJson, GenerationRequest, schemars::JsonSchema};
/// #[derive(serde::Deserialize, JsonSchema)]
/// struct Answer {
///     #[schemars(length(max = 40))]
///     city: String,
/// }
/// let request = GenerationRequest::prompt("The capital of France, as JSON.").with_max_tokens(64);
/// let answer = model.generate_json::<Answer>(request).await?;
/// println!("{}", answer.value.city);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait GenerateJson {
    /// Generates with `request` under the JSON schema of `T` (replacing any response format it
    /// had) and deserialises the answer. A model with native structured output is constrained
    /// to the schema; for any model an answer that does not match the schema, or does not
    /// deserialise into `T`, is a `MalformedOutput` error carrying the raw text.
    async fn generate_json<T>(
        &self,
        request: GenerationRequest,
    ) -> Result<TypedGeneration<T>, InferenceError>
    where
        T: JsonSchema + DeserializeOwned + Send;
}

#[async_trait]
impl<M: LanguageModel + ?Sized> GenerateJson for M {
    async fn generate_json<T>(
        &self,
        request: GenerationRequest,
    ) -> Result<TypedGeneration<T>, InferenceError>
    where
        T: JsonSchema + DeserializeOwned + Send,
    {
        let generation = self
            .generate(request.with_response_format(response_format_for::<T>()))
            .await?;
        match serde_json::from_str::<T>(generation.text.trim()) {
            Ok(value) => Ok(TypedGeneration { value, generation }),
            Err(e) => Err(InferenceError::new(
                ErrorKind::MalformedOutput,
                self.descriptor().backend.clone(),
                format!("the answer does not deserialise into {}: {e}", T::schema_name()),
            )
            .with_hint("the type's serde attributes and its JSON schema disagree, or the model's answer is wrong; see the raw output")
            .with_raw_output(generation.text)),
        }
    }
}
