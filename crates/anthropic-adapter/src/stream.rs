//! From the Messages API's stream events to the port's text deltas and final record.
//!
//! The event flow is the one Anthropic's streaming guide documents: `message_start` (input
//! usage), content blocks (`content_block_start`, `content_block_delta`…,
//! `content_block_stop`), `message_delta` (stop reason, cumulative usage), `message_stop`;
//! `ping`s anywhere; an `error` event may replace the rest.

use rigger_ports::{FinishReason, InferenceError, Usage};

use crate::wire::{Block, Delta, Event, WireUsage};
use crate::{BACKEND, errors};

/// What the caller's text is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The text blocks of the reply.
    Text,
    /// The input of the forced call of this tool (structured output): its streamed partial JSON
    /// is the text. Text blocks are not part of it.
    ToolInput(String),
}

/// What one event means to the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Nothing to pass on (`ping`, block boundaries, thinking, unknown event types).
    Nothing,
    Text(String),
    /// `message_stop`: the reply is complete.
    Finished {
        finish_reason: FinishReason,
        usage: Usage,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Tool,
    Ignored,
}

/// Decodes one stream's events in order; a new decoder per request.
#[derive(Debug)]
pub struct EventDecoder {
    output: Output,
    model: String,
    started: bool,
    blocks: Vec<BlockKind>,
    tool_input_at_start: Option<serde_json::Value>,
    tool_json_seen: bool,
    input_tokens: u32,
    cache_tokens: u32,
    output_tokens: u32,
    stop_reason: Option<String>,
    text: String,
}

impl EventDecoder {
    /// `model` names the model in errors.
    pub fn new(output: Output, model: impl Into<String>) -> Self {
        Self {
            output,
            model: model.into(),
            started: false,
            blocks: Vec::new(),
            tool_input_at_start: None,
            tool_json_seen: false,
            input_tokens: 0,
            cache_tokens: 0,
            output_tokens: 0,
            stop_reason: None,
            text: String::new(),
        }
    }

    /// Whether `message_start` has arrived: before it, an `error` event is as retryable as the
    /// HTTP status it stands for.
    pub fn has_started(&self) -> bool {
        self.started
    }

    /// The text passed on so far (kept for errors, so that nothing is lost).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Decodes one event's `data` (the JSON after `data:`).
    pub fn decode(&mut self, data: &str) -> Result<Decoded, InferenceError> {
        let event: Event = serde_json::from_str(data).map_err(|e| {
            let snippet: String = data.chars().take(200).collect();
            InferenceError::protocol(
                BACKEND,
                format!("undecodable stream event ({e}): {snippet}"),
            )
            .with_raw_output(self.text.clone())
        })?;
        let decoded = match event {
            Event::MessageStart { message } => {
                self.started = true;
                if let Some(usage) = message.usage {
                    self.take_usage(&usage);
                }
                Decoded::Nothing
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => self.start_block(index, content_block),
            Event::ContentBlockDelta { index, delta } => match (self.kind(index), delta) {
                (BlockKind::Text, Delta::Text { text }) => self.emit(text),
                (BlockKind::Tool, Delta::InputJson { partial_json }) => {
                    self.tool_json_seen = true;
                    self.emit(partial_json)
                }
                _ => Decoded::Nothing,
            },
            Event::ContentBlockStop { index } => {
                // A tool block whose input came whole in `content_block_start`.
                match (self.kind(index), self.tool_json_seen) {
                    (BlockKind::Tool, false) => match self.tool_input_at_start.take() {
                        Some(input) if !input.is_null() => self.emit(input.to_string()),
                        _ => Decoded::Nothing,
                    },
                    _ => Decoded::Nothing,
                }
            }
            Event::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    self.take_usage(&usage);
                }
                Decoded::Nothing
            }
            Event::MessageStop => self.finish()?,
            Event::Ping | Event::Unknown => Decoded::Nothing,
            Event::Error { error } => {
                let err = errors::from_api_error(&error, None, &self.model);
                return Err(if self.text.is_empty() {
                    err
                } else {
                    err.with_raw_output(self.text.clone())
                });
            }
        };
        Ok(decoded)
    }

    fn start_block(&mut self, index: u32, block: Block) -> Decoded {
        let (kind, initial) = match (&self.output, block) {
            (Output::Text, Block::Text { text }) => (BlockKind::Text, text),
            (Output::ToolInput(wanted), Block::ToolUse { name, input }) if *wanted == name => {
                self.tool_input_at_start = input;
                self.tool_json_seen = false;
                (BlockKind::Tool, String::new())
            }
            _ => (BlockKind::Ignored, String::new()),
        };
        let slot = index as usize;
        if self.blocks.len() <= slot {
            self.blocks.resize(slot + 1, BlockKind::Ignored);
        }
        self.blocks[slot] = kind;
        self.emit(initial)
    }

    fn kind(&self, index: u32) -> BlockKind {
        self.blocks
            .get(index as usize)
            .copied()
            .unwrap_or(BlockKind::Ignored)
    }

    fn emit(&mut self, text: String) -> Decoded {
        if text.is_empty() {
            return Decoded::Nothing;
        }
        self.text.push_str(&text);
        Decoded::Text(text)
    }

    /// Usage figures are cumulative: a later value replaces an earlier one.
    fn take_usage(&mut self, usage: &WireUsage) {
        if let Some(n) = usage.input_tokens {
            self.input_tokens = n;
        }
        if usage.cache_creation_input_tokens.is_some() || usage.cache_read_input_tokens.is_some() {
            self.cache_tokens = usage.cache_creation_input_tokens.unwrap_or(0)
                + usage.cache_read_input_tokens.unwrap_or(0);
        }
        if let Some(n) = usage.output_tokens {
            self.output_tokens = n;
        }
    }

    fn finish(&mut self) -> Result<Decoded, InferenceError> {
        let Some(reason) = self.stop_reason.take() else {
            return Err(InferenceError::protocol(
                BACKEND,
                "the message stopped without a stop_reason",
            )
            .with_raw_output(self.text.clone()));
        };
        let finish_reason = match reason.as_str() {
            "end_turn" => FinishReason::EndOfSequence,
            "max_tokens" => FinishReason::MaxTokens,
            "stop_sequence" => FinishReason::StopSequence,
            "refusal" => FinishReason::ContentFilter,
            // The forced tool call is the whole answer: it ending is the reply ending.
            "tool_use" if matches!(self.output, Output::ToolInput(_)) => {
                FinishReason::EndOfSequence
            }
            _ => FinishReason::Other(reason),
        };
        Ok(Decoded::Finished {
            finish_reason,
            usage: Usage {
                prompt_tokens: self.input_tokens + self.cache_tokens,
                completion_tokens: self.output_tokens,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;
    use rigger_ports::ErrorKind;

    fn run(output: Output, events: &[&str]) -> (String, Result<Decoded, InferenceError>) {
        let mut d = EventDecoder::new(output, "claude-test");
        let mut text = String::new();
        let mut last = Ok(Decoded::Nothing);
        for e in events {
            last = d.decode(e);
            match &last {
                Ok(Decoded::Text(t)) => text.push_str(t),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (text, last)
    }

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#;

    #[test]
    fn text_blocks_become_text_and_the_stop_reason_maps() {
        for (reason, expected) in [
            ("end_turn", FinishReason::EndOfSequence),
            ("max_tokens", FinishReason::MaxTokens),
            ("stop_sequence", FinishReason::StopSequence),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Other("pause_turn".into())),
            ("tool_use", FinishReason::Other("tool_use".into())),
        ] {
            let delta = format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"{reason}","stop_sequence":null}},"usage":{{"output_tokens":15}}}}"#
            );
            let (text, last) = run(
                Output::Text,
                &[
                    START,
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                    r#"{"type": "ping"}"#,
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
                    r#"{"type":"content_block_stop","index":0}"#,
                    &delta,
                    r#"{"type":"message_stop"}"#,
                ],
            );
            assert_eq!(text, "Hello!");
            assert_eq!(
                last.unwrap(),
                Decoded::Finished {
                    finish_reason: expected,
                    usage: Usage {
                        prompt_tokens: 25,
                        completion_tokens: 15
                    }
                }
            );
        }
    }

    #[test]
    fn thinking_and_unknown_events_are_skipped_and_cache_tokens_count_as_prompt() {
        let (text, last) = run(
            Output::Text,
            &[
                r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}"#,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"brand_new_event","whatever":1}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"12,231"}}"#,
                r#"{"type":"content_block_stop","index":1}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"output_tokens":7}}"#,
                r#"{"type":"message_stop"}"#,
            ],
        );
        assert_eq!(text, "12,231");
        let Decoded::Finished { usage, .. } = last.unwrap() else {
            panic!("not finished")
        };
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 12 + 105,
                completion_tokens: 7
            }
        );
    }

    #[test]
    fn forced_tool_input_is_the_text_and_other_blocks_are_not() {
        let (text, last) = run(
            Output::ToolInput("answer".into()),
            &[
                START,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Sure:"}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"answer","input":{}}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"answer\":"}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"Paris\"}"}}"#,
                r#"{"type":"content_block_stop","index":1}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
                r#"{"type":"message_stop"}"#,
            ],
        );
        assert_eq!(text, r#"{"answer": "Paris"}"#);
        assert!(matches!(
            last.unwrap(),
            Decoded::Finished {
                finish_reason: FinishReason::EndOfSequence,
                ..
            }
        ));
        // A tool input delivered whole at the block's start.
        let (text, _) = run(
            Output::ToolInput("answer".into()),
            &[
                START,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"answer","input":{"answer":"x"}}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
            ],
        );
        assert_eq!(text, r#"{"answer":"x"}"#);
    }

    #[test]
    fn error_events_map_to_kinds_and_keep_the_text() {
        let (_, last) = run(
            Output::Text,
            &[
                START,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"partial"}}"#,
                r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
            ],
        );
        let err = last.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert!(err.is_retryable());
        assert_eq!(err.raw_output(), Some("partial"));
        assert!(err.message().contains("Overloaded"), "{err}");
    }

    #[test]
    fn broken_events_are_protocol_errors() {
        let (_, last) = run(Output::Text, &[START, "{not json"]);
        assert_eq!(last.unwrap_err().kind(), ErrorKind::Protocol);
        let (_, last) = run(Output::Text, &[START, r#"{"type":"message_stop"}"#]);
        let err = last.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert!(err.message().contains("stop_reason"));
    }
}
