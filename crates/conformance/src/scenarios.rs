//! The scenarios. Each returns `Err(Failure)` with a message that says what was expected and
//! what the adapter did instead.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rigger_ports::{
    ChatMessage, ErrorKind, FinishReason, Generation, GenerationRequest, InferenceError,
    LanguageModel, ResponseFormat, StreamEvent, collect_stream,
};

use crate::{ConformanceTarget, Failure};

/// The model id the unknown-model scenario asks for.
pub const MISSING_MODEL_ID: &str = "rigger-conformance/no-such-model";

pub(crate) use crate::Outcome;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($msg)+)));
        }
    };
}

/// The target's model, or the failure that it could not provide one.
async fn model_of(target: &dyn ConformanceTarget) -> Result<Arc<dyn LanguageModel>, Failure> {
    target
        .model()
        .await
        .map_err(|e| Failure(format!("the target could not provide its model: {e}")))
}

fn base_request() -> GenerationRequest {
    GenerationRequest::new(vec![
        ChatMessage::system("You are a concise assistant."),
        ChatMessage::user("Tell me a short story about a lighthouse keeper and a storm."),
    ])
}

/// Temperature 0, plus a seed where the model takes one: the output must be reproducible.
fn greedy(model: &dyn LanguageModel, request: GenerationRequest) -> GenerationRequest {
    let request = request.with_temperature(0.0);
    if model.descriptor().capabilities.seed {
        request.with_seed(7)
    } else {
        request
    }
}

async fn within<T>(
    patience: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, Failure> {
    tokio::time::timeout(patience, fut)
        .await
        .map_err(|_| Failure(format!("{what} did not finish within {patience:?}")))
}

async fn generate(
    model: &dyn LanguageModel,
    request: GenerationRequest,
    patience: Duration,
) -> Result<Generation, Failure> {
    within(patience, "generate()", model.generate(request))
        .await?
        .map_err(|e| Failure(format!("generate() failed: {e}")))
}

/// Streams a request, returning the generation and the number of text deltas seen.
async fn stream(
    model: &dyn LanguageModel,
    request: GenerationRequest,
    patience: Duration,
) -> Result<(Generation, usize), Failure> {
    within(patience, "stream()", async {
        let events = model
            .stream(request)
            .await
            .map_err(|e| Failure(format!("stream() failed to start: {e}")))?;
        let deltas = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = deltas.clone();
        let counted = events
            .inspect(move |e| {
                if matches!(e, Ok(StreamEvent::Delta(_))) {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .boxed();
        let generation = collect_stream(&model.descriptor().backend, counted)
            .await
            .map_err(|e| Failure(format!("the stream failed: {e}")))?;
        Ok((
            generation,
            deltas.load(std::sync::atomic::Ordering::Relaxed),
        ))
    })
    .await?
}

/// The outcome of a request expected to fail: the error from setup or from the stream.
async fn expect_error(
    model: &dyn LanguageModel,
    request: GenerationRequest,
    patience: Duration,
) -> Result<InferenceError, Failure> {
    let via_generate = within(patience, "generate()", model.generate(request.clone())).await?;
    let err = match via_generate {
        Ok(g) => {
            return Err(Failure(format!(
                "expected an error, but generate() returned {} tokens: {:?}",
                g.completion.usage.completion_tokens,
                preview(&g.text)
            )));
        }
        Err(e) => e,
    };
    // The streaming path must refuse the same request the same way.
    let via_stream = within(patience, "stream()", async {
        match model.stream(request).await {
            Err(e) => Some(e),
            Ok(s) => collect_stream(&model.descriptor().backend, s).await.err(),
        }
    })
    .await?;
    match via_stream {
        Some(e) if e.kind() == err.kind() => Ok(err),
        Some(e) => Err(Failure(format!(
            "generate() failed with {:?} but stream() with {:?}: {e}",
            err.kind(),
            e.kind()
        ))),
        None => Err(Failure(format!(
            "generate() failed ({err}) but stream() succeeded"
        ))),
    }
}

/// The byte offset where two texts first differ (a char boundary in both), if they do.
fn first_difference(a: &str, b: &str) -> Option<usize> {
    if a == b {
        return None;
    }
    let common = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i);
    Some(common)
}

fn preview(text: &str) -> String {
    text.chars().take(80).collect()
}

pub(crate) async fn stream_matches_generate(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    let request = greedy(m, base_request().with_max_tokens(16));
    let (streamed, deltas) = stream(m, request.clone(), patience).await?;
    let generated = generate(m, request, patience).await?;
    ensure!(!streamed.text.is_empty(), "the model generated no text");
    if let Some(at) = first_difference(&streamed.text, &generated.text) {
        return Err(Failure(format!(
            "streamed text and generate() text differ from byte {at}: {:?} vs {:?}",
            preview(&streamed.text[at..]),
            preview(&generated.text[at..])
        )));
    }
    ensure!(
        streamed.completion.finish_reason == generated.completion.finish_reason
            && streamed.completion.usage == generated.completion.usage,
        "stream and generate() disagree: {:?}/{:?} vs {:?}/{:?}",
        streamed.completion.finish_reason,
        streamed.completion.usage,
        generated.completion.finish_reason,
        generated.completion.usage
    );
    let tokens = streamed.completion.usage.completion_tokens;
    ensure!(
        tokens < 2 || deltas >= 2,
        "{tokens} tokens arrived in {deltas} delta(s): the adapter buffers instead of streaming"
    );
    Ok(())
}

pub(crate) async fn max_tokens_respected(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    const MAX: u32 = 5;
    let g = generate(m, greedy(m, base_request().with_max_tokens(MAX)), patience).await?;
    let c = &g.completion;
    let n = c.usage.completion_tokens;
    ensure!(n >= 1, "no tokens were generated");
    ensure!(n <= MAX, "{n} tokens generated with max_tokens = {MAX}");
    ensure!(
        c.timings.generated_tokens == n,
        "usage says {n} tokens, timings say {}",
        c.timings.generated_tokens
    );
    match &c.finish_reason {
        FinishReason::MaxTokens => ensure!(
            n == MAX,
            "finish reason MaxTokens after only {n} of {MAX} tokens"
        ),
        FinishReason::EndOfSequence => {}
        other => return Err(Failure(format!("unexpected finish reason {other:?}"))),
    }
    if n == MAX {
        ensure!(
            c.finish_reason == FinishReason::MaxTokens,
            "the budget ran out but the finish reason is {:?}",
            c.finish_reason
        );
    }
    Ok(())
}

pub(crate) async fn exact_token_budget(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    const N: u32 = 24;
    let g = generate(m, greedy(m, base_request().with_exact_tokens(N)), patience).await?;
    let c = &g.completion;
    ensure!(
        c.usage.completion_tokens == N && c.timings.generated_tokens == N,
        "asked for exactly {N} tokens, usage says {} and timings {}",
        c.usage.completion_tokens,
        c.timings.generated_tokens
    );
    ensure!(
        c.finish_reason == FinishReason::MaxTokens,
        "an exact budget should end with MaxTokens, got {:?}",
        c.finish_reason
    );
    Ok(())
}

pub(crate) async fn usage_and_timings(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    let started = Instant::now();
    let g = generate(m, greedy(m, base_request().with_max_tokens(8)), patience).await?;
    let wall = started.elapsed();
    let (u, t) = (&g.completion.usage, &g.completion.timings);
    ensure!(u.prompt_tokens > 0, "usage reports 0 prompt tokens");
    ensure!(u.completion_tokens > 0, "usage reports 0 completion tokens");
    ensure!(
        t.prompt_tokens == u.prompt_tokens && t.generated_tokens == u.completion_tokens,
        "timings count {}+{} tokens, usage {}+{}",
        t.prompt_tokens,
        t.generated_tokens,
        u.prompt_tokens,
        u.completion_tokens
    );
    for (what, rate) in [
        ("prompt", t.prompt_tokens_per_second()),
        ("decode", t.decode_tokens_per_second()),
    ] {
        match rate {
            Some(r) if r.is_finite() && r > 0.0 => {}
            other => return Err(Failure(format!("{what} tokens/s is {other:?}: {t:?}"))),
        }
    }
    let ttft = t
        .time_to_first_token
        .ok_or_else(|| Failure("no time to first token although tokens were generated".into()))?;
    // Figures from real clocks fit inside the wall time the caller saw (with slack for the
    // backend's and our clock granularity).
    let slack = Duration::from_millis(50);
    ensure!(
        ttft <= wall + slack,
        "time to first token {ttft:?} exceeds the request's wall time {wall:?}"
    );
    ensure!(
        t.prompt_duration + t.generation_duration <= wall + slack,
        "prompt {:?} + generation {:?} exceed the request's wall time {wall:?}",
        t.prompt_duration,
        t.generation_duration
    );
    Ok(())
}

/// A greedy request, a stop sequence of 3 characters from the middle of its output (not all
/// whitespace), and the text expected with that stop: the output up to its first occurrence.
async fn stop_case(
    m: &dyn LanguageModel,
    patience: Duration,
) -> Result<(GenerationRequest, String), Failure> {
    let request = greedy(m, base_request().with_max_tokens(32));
    let full = generate(m, request.clone(), patience).await?.text;
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    ensure!(
        chars.len() >= 8,
        "the scenario needs at least 8 characters of output to pick a stop sequence, got {:?}",
        full
    );
    let stop = (chars.len() / 2..chars.len() - 3)
        .map(|i| {
            let end = chars.get(i + 3).map_or(full.len(), |(b, _)| *b);
            &full[chars[i].0..end]
        })
        .find(|s| !s.trim().is_empty())
        .ok_or_else(|| Failure(format!("no usable stop sequence in {full:?}")))?
        .to_owned();
    let cut = full.find(&stop).unwrap_or(full.len());
    let expected = full[..cut].to_owned();
    Ok((request.with_stop(stop), expected))
}

pub(crate) async fn stop_sequences(target: &dyn ConformanceTarget, patience: Duration) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    let (request, expected) = stop_case(m, patience).await?;
    let stop = &request.stop[0];
    let stopped = generate(m, request.clone(), patience).await?;
    ensure!(
        stopped.text == expected,
        "with stop {stop:?} expected {:?}, got {:?}",
        preview(&expected),
        preview(&stopped.text)
    );
    // Which reason a backend gives for a matched stop is the next scenario's; never the budget
    // or end-of-sequence, which would be wrong.
    ensure!(
        !matches!(
            stopped.completion.finish_reason,
            FinishReason::MaxTokens | FinishReason::EndOfSequence
        ),
        "finish reason {:?} after a stop sequence matched",
        stopped.completion.finish_reason
    );
    let (streamed, _) = stream(m, request, patience).await?;
    ensure!(
        streamed.text == expected,
        "the streamed text {:?} does not end before the stop sequence",
        preview(&streamed.text)
    );
    Ok(())
}

pub(crate) async fn stop_sequence_reported(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    let (request, _) = stop_case(m, patience).await?;
    let stopped = generate(m, request.clone(), patience).await?;
    ensure!(
        stopped.completion.finish_reason == FinishReason::StopSequence,
        "finish reason {:?} from generate() after a stop sequence matched",
        stopped.completion.finish_reason
    );
    let (streamed, _) = stream(m, request, patience).await?;
    ensure!(
        streamed.completion.finish_reason == FinishReason::StopSequence,
        "finish reason {:?} from stream() after a stop sequence matched",
        streamed.completion.finish_reason
    );
    Ok(())
}

pub(crate) async fn drop_cancels_generation(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    // A long budget, but bounded: the abandoned generation's remaining work must dwarf a short
    // request, without a real model spending minutes on it.
    let long = m
        .descriptor()
        .context_length
        .map_or(256, |ctx| (ctx / 2).clamp(16, 256));
    let mut request = greedy(m, base_request());
    request.budget = if m.descriptor().capabilities.exact_token_budget {
        rigger_ports::TokenBudget::Exactly(long)
    } else {
        rigger_ports::TokenBudget::UpTo(long)
    };
    let short = || greedy(m, base_request().with_max_tokens(4));
    // What a short request and the whole long generation cost here, measured (not paced from a
    // few deltas, which a buffered stream delivers all at once); the least of two or three runs,
    // since a request queued behind another test's is slow for reasons of its own. One run was
    // not enough: on a fast engine the whole generation takes 10–30 ms, one slow run read twice
    // the others, and a backend that does not cancel then passed (1 run in 4).
    let mut short_time = Duration::MAX;
    let mut whole = Duration::MAX;
    for run in 0..3 {
        let started = Instant::now();
        generate(m, short(), patience).await?;
        short_time = short_time.min(started.elapsed());
        let started = Instant::now();
        generate(m, request.clone(), patience).await?;
        whole = whole.min(started.elapsed());
        if run >= 1 && whole >= short_time * 4 {
            break;
        }
    }
    ensure!(
        whole >= short_time * 4,
        "cannot tell a cancelled generation from a finished one here: the whole {long}-token \
         generation took {whole:?}, a 4-token request {short_time:?}"
    );
    // Other tests may share this backend's queue and delay one measurement; a backend that
    // does not cancel delays every one. So the scenario fails only when all attempts show it.
    const ATTEMPTS: usize = 3;
    let mut next = Duration::ZERO;
    for _ in 0..ATTEMPTS {
        next = drop_then_ask_again(m, request.clone(), short(), patience).await?;
        // A backend that finishes the dropped generation first makes the next request wait
        // about `whole`; one that stopped at the drop answers in about `short_time`.
        if next < whole / 2 {
            return Ok(());
        }
    }
    Err(Failure(format!(
        "after dropping a stream, the next 4-token request took {next:?} (in each of \
         {ATTEMPTS} attempts; alone it takes {short_time:?}), while the whole {long}-token \
         generation takes {whole:?}: the dropped generation went on"
    )))
}

/// Streams `long`, drops it at the first delta, and returns how long `short` then takes.
async fn drop_then_ask_again(
    m: &dyn LanguageModel,
    long: GenerationRequest,
    short: GenerationRequest,
    patience: Duration,
) -> Result<Duration, Failure> {
    let mut events = within(patience, "stream()", m.stream(long))
        .await?
        .map_err(|e| Failure(format!("stream() failed to start: {e}")))?;
    let first = within(patience, "the first event", events.next()).await?;
    ensure!(
        matches!(first, Some(Ok(StreamEvent::Delta(_)))),
        "expected a text delta first, got {first:?}"
    );
    drop(events);
    let started = Instant::now();
    let g = generate(m, short, patience).await.map_err(|f| {
        Failure(format!(
            "after dropping a stream, the next request failed: {f}"
        ))
    })?;
    let next = started.elapsed();
    ensure!(
        g.completion.usage.completion_tokens > 0,
        "the request after the drop generated nothing"
    );
    Ok(next)
}

pub(crate) async fn concurrent_requests(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let request = greedy(model.as_ref(), base_request().with_max_tokens(8));
    let runs = (0..8).map(|_| {
        let model = model.clone();
        let request = request.clone();
        tokio::spawn(async move { model.generate(request).await })
    });
    let results = within(
        patience,
        "8 concurrent requests",
        futures::future::join_all(runs),
    )
    .await?;
    let mut texts = Vec::new();
    for (i, joined) in results.into_iter().enumerate() {
        let g = joined
            .map_err(|e| Failure(format!("request {i} panicked: {e}")))?
            .map_err(|e| Failure(format!("concurrent request {i} failed: {e}")))?;
        ensure!(
            g.completion.usage.completion_tokens > 0,
            "concurrent request {i} generated nothing"
        );
        texts.push(g.text);
    }
    ensure!(
        texts.iter().all(|t| *t == texts[0]),
        "the same greedy request gave different texts when run concurrently: {:?}",
        texts.iter().map(|t| preview(t)).collect::<Vec<_>>()
    );
    Ok(())
}

pub(crate) async fn unknown_model(target: &dyn ConformanceTarget, patience: Duration) -> Outcome {
    let check = |e: InferenceError| -> Outcome {
        ensure!(
            e.kind() == ErrorKind::ModelNotFound,
            "expected ModelNotFound, got {:?}: {e}",
            e.kind()
        );
        ensure!(
            e.to_string().contains(MISSING_MODEL_ID),
            "the error does not name the model: {e}"
        );
        Ok(())
    };
    match within(
        patience,
        "missing_model()",
        target.missing_model(MISSING_MODEL_ID),
    )
    .await?
    {
        Err(e) => check(e),
        Ok(model) => {
            let e =
                expect_error(model.as_ref(), base_request().with_max_tokens(4), patience).await?;
            check(e)
        }
    }
}

pub(crate) async fn empty_messages(target: &dyn ConformanceTarget, patience: Duration) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    let e = expect_error(m, GenerationRequest::new(Vec::new()), patience).await?;
    ensure!(
        e.kind() == ErrorKind::InvalidRequest,
        "expected InvalidRequest, got {:?}: {e}",
        e.kind()
    );
    Ok(())
}

pub(crate) async fn context_length_exceeded(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    let Some(ctx) = m.descriptor().context_length else {
        return Err(Failure(
            "the model declares no context length; declare it, or skip this scenario with the reason"
                .into(),
        ));
    };
    // Every word is at least one token, so this is over twice the context.
    let words = "lighthouse ".repeat(2 * ctx as usize + 16);
    let request = GenerationRequest::prompt(words).with_max_tokens(4);
    let e = expect_error(m, request, patience).await?;
    ensure!(
        e.kind() == ErrorKind::ContextLengthExceeded,
        "expected ContextLengthExceeded, got {:?}: {e}",
        e.kind()
    );
    ensure!(
        !e.is_retryable(),
        "a prompt that is too long is not retryable"
    );
    Ok(())
}

pub(crate) async fn json_schema(target: &dyn ConformanceTarget, patience: Duration) -> Outcome {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 24}},
        "required": ["answer"],
        "additionalProperties": false
    });
    structured(
        target,
        patience,
        schema,
        "Reply with a JSON object with one string field, \"answer\": the capital of France.",
        48,
    )
    .await
}

pub(crate) async fn json_schema_nested(
    target: &dyn ConformanceTarget,
    patience: Duration,
) -> Outcome {
    // Strings and arrays are bounded so that any model, even one with random weights, reaches the
    // end of the grammar within the budget.
    let schema = serde_json::json!({
        "$defs": {
            "step": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 12},
                    "priority": {"type": "string", "enum": ["low", "high"]},
                    "note": {"type": "string", "maxLength": 8}
                },
                "required": ["name", "priority"],
                "additionalProperties": false
            }
        },
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["plan", "note"]},
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1, "maxItems": 3},
            "done": {"type": "boolean"}
        },
        "required": ["kind", "steps"],
        "additionalProperties": false
    });
    structured(
        target,
        patience,
        schema,
        "Reply with a JSON object: \"kind\" is \"plan\", \"steps\" lists one to three steps to \
         boil an egg, each with a short \"name\" and a \"priority\" of \"low\" or \"high\".",
        // The longest value of the schema is about 205 characters, so 256 tokens hold it even
        // at a character per token, and leave room for the prompt in a 512-token context.
        256,
    )
    .await
}

/// One schema request through generate() and stream(). Where the model declares native
/// structured output, the answer must be schema-valid JSON (the backend constrains decoding);
/// elsewhere a typed MalformedOutput (with the raw text) or Unsupported error is allowed too.
async fn structured(
    target: &dyn ConformanceTarget,
    patience: Duration,
    schema: serde_json::Value,
    prompt: &str,
    max_tokens: u32,
) -> Outcome {
    let model = model_of(target).await?;
    let m = model.as_ref();
    let native = m.descriptor().capabilities.native_structured_output;
    let format = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema,
    };
    let request = greedy(
        m,
        GenerationRequest::prompt(prompt)
            .with_max_tokens(max_tokens)
            .with_response_format(format.clone()),
    );
    for path in ["generate()", "stream()"] {
        let result = if path == "generate()" {
            within(patience, path, m.generate(request.clone())).await?
        } else {
            within(patience, path, async {
                match m.stream(request.clone()).await {
                    Ok(s) => collect_stream(&m.descriptor().backend, s).await,
                    Err(e) => Err(e),
                }
            })
            .await?
        };
        match result {
            Ok(g) => {
                if let Err(problem) = format.check(&g.text) {
                    return Err(Failure(format!(
                        "{path} returned output that does not match the schema ({problem}): {:?}",
                        preview(&g.text)
                    )));
                }
            }
            Err(e) if native => {
                return Err(Failure(format!(
                    "{path}: {} declares native structured output, so the answer must be \
                     schema-valid JSON, got {:?}: {e}",
                    m.descriptor().backend,
                    e.kind()
                )));
            }
            Err(e) if e.kind() == ErrorKind::MalformedOutput => ensure!(
                e.raw_output().is_some(),
                "{path}: a MalformedOutput error must keep the raw output"
            ),
            Err(e) if e.kind() == ErrorKind::Unsupported => {}
            Err(e) => {
                return Err(Failure(format!(
                    "{path}: expected schema-valid JSON or MalformedOutput/Unsupported, got {:?}: {e}",
                    e.kind()
                )));
            }
        }
    }
    Ok(())
}
