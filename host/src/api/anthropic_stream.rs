//! Streaming translation between OpenAI chunks and Anthropic stream events.
//!
//! [`AnthropicEncoder`] turns internal [`ChatChunk`]s into the Messages API's
//! event sequence (`message_start`, `content_block_*`, `message_delta`,
//! `message_stop`) for Anthropic clients; [`AnthropicDecoder`] turns an
//! Anthropic upstream's events into internal chunks. Both are pure state
//! machines: no I/O here.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::anthropic::{anthropic_id, finish_reason, stop_reason};
use super::chat::{ChatChunk, ChunkChoice, Delta, FunctionCallDelta, Role, ToolCallDelta, Usage};

/// One SSE event with a name.
pub fn sse_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OpenBlock {
    None,
    Text(usize),
    Tool { block: usize, call: u32 },
}

/// Internal chunks → Anthropic events.
#[derive(Debug)]
pub struct AnthropicEncoder {
    started: bool,
    open: OpenBlock,
    next_block: usize,
    finish: Option<String>,
    model: String,
}

impl AnthropicEncoder {
    pub fn new(model: &str) -> Self {
        AnthropicEncoder { started: false, open: OpenBlock::None, next_block: 0, finish: None, model: model.to_owned() }
    }

    fn start(&mut self, id: &str, model: &str, input_tokens: u64, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        if !model.is_empty() {
            self.model = model.to_owned();
        }
        out.push(sse_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": anthropic_id(id), "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 0}
            }}),
        ));
        out.push(sse_event("ping", &json!({"type": "ping"})));
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        let index = match self.open {
            OpenBlock::None => return,
            OpenBlock::Text(i) | OpenBlock::Tool { block: i, .. } => i,
        };
        out.push(sse_event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
        self.open = OpenBlock::None;
    }

    fn open_block(&mut self, block: Value, out: &mut Vec<Bytes>) -> usize {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        out.push(sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    /// The events for one chunk.
    pub fn chunk(&mut self, chunk: &ChatChunk, prompt_tokens_hint: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(&chunk.id, &chunk.model, prompt_tokens_hint, &mut out);
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                let index = match self.open {
                    OpenBlock::Text(i) => i,
                    _ => {
                        let i = self.open_block(json!({"type": "text", "text": ""}), &mut out);
                        self.open = OpenBlock::Text(i);
                        i
                    }
                };
                out.push(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                let same = matches!(self.open, OpenBlock::Tool { call: c, .. } if c == call.index);
                if !same || call.id.is_some() {
                    let name = call.function.as_ref().and_then(|f| f.name.clone()).unwrap_or_default();
                    let id = call.id.clone().unwrap_or_else(|| format!("toolu_{}", call.index));
                    let block =
                        self.open_block(json!({"type": "tool_use", "id": id, "name": name, "input": {}}), &mut out);
                    self.open = OpenBlock::Tool { block, call: call.index };
                }
                if let (OpenBlock::Tool { block, .. }, Some(args)) =
                    (self.open, call.function.as_ref().and_then(|f| f.arguments.as_deref()).filter(|a| !a.is_empty()))
                {
                    out.push(sse_event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": args}}),
                    ));
                }
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish = Some(reason.clone());
            }
        }
        out
    }

    /// The closing events, once the stream has ended with `usage`.
    pub fn finish(&mut self, usage: Usage, id: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(id, "", usage.prompt_tokens, &mut out);
        self.close_block(&mut out);
        out.push(sse_event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                "usage": {"output_tokens": usage.completion_tokens}}),
        ));
        out.push(sse_event("message_stop", &json!({"type": "message_stop"})));
        out
    }

    /// An `error` event, for a stream that fails after it started.
    pub fn error(message: &str) -> Bytes {
        sse_event("error", &json!({"type": "error", "error": {"type": "api_error", "message": message}}))
    }
}

/// Anthropic upstream events → internal chunks.
#[derive(Debug, Default)]
pub struct AnthropicDecoder {
    id: String,
    model: String,
    created: u64,
    input_tokens: u64,
    output_tokens: u64,
    /// Anthropic block index → tool call index, for tool_use blocks.
    tool_blocks: Vec<(u64, u32)>,
}

/// What one upstream event means.
pub enum Decoded {
    Chunk(Box<ChatChunk>),
    /// The stream is over; usage is final.
    Done(Usage),
    /// The upstream reported an error mid-stream.
    Error(String),
    Nothing,
}

impl AnthropicDecoder {
    pub fn new(created: u64) -> Self {
        AnthropicDecoder { created, ..Default::default() }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> Decoded {
        Decoded::Chunk(Box::new(ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, finish_reason, extra: Map::new() }],
            usage: None,
            extra: Map::new(),
        }))
    }

    /// Decodes one event's JSON data.
    pub fn event(&mut self, data: &Value) -> Decoded {
        let u64_at = |v: &Value, path: &[&str]| path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_u64);
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let msg = &data["message"];
                self.id = msg.get("id").and_then(Value::as_str).unwrap_or("msg").to_owned();
                self.model = msg.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
                self.input_tokens = u64_at(msg, &["usage", "input_tokens"]).unwrap_or(0);
                self.output_tokens = u64_at(msg, &["usage", "output_tokens"]).unwrap_or(0);
                self.chunk(
                    Delta { role: Some(Role::Assistant), content: Some(String::new()), ..Default::default() },
                    None,
                )
            }
            Some("content_block_start") => {
                let block = &data["content_block"];
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return Decoded::Nothing;
                }
                let index = self.tool_blocks.len() as u32;
                self.tool_blocks.push((data.get("index").and_then(Value::as_u64).unwrap_or(0), index));
                let call = ToolCallDelta {
                    index,
                    id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                    kind: Some("function".to_owned()),
                    function: Some(FunctionCallDelta {
                        name: block.get("name").and_then(Value::as_str).map(str::to_owned),
                        arguments: Some(String::new()),
                    }),
                };
                self.chunk(Delta { tool_calls: Some(vec![call]), ..Default::default() }, None)
            }
            Some("content_block_delta") => {
                let delta = &data["delta"];
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
                        self.chunk(Delta { content: Some(text), ..Default::default() }, None)
                    }
                    Some("input_json_delta") => {
                        let block = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let Some(&(_, index)) = self.tool_blocks.iter().find(|(b, _)| *b == block) else {
                            return Decoded::Nothing;
                        };
                        let args = delta.get("partial_json").and_then(Value::as_str).unwrap_or("").to_owned();
                        let call = ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: Some(FunctionCallDelta { name: None, arguments: Some(args) }),
                        };
                        self.chunk(Delta { tool_calls: Some(vec![call]), ..Default::default() }, None)
                    }
                    _ => Decoded::Nothing,
                }
            }
            Some("message_delta") => {
                if let Some(n) = u64_at(data, &["usage", "output_tokens"]) {
                    self.output_tokens = n;
                }
                let reason = data["delta"].get("stop_reason").and_then(Value::as_str);
                self.chunk(Delta::default(), Some(finish_reason(reason).to_owned()))
            }
            Some("message_stop") => Decoded::Done(Usage::new(self.input_tokens, self.output_tokens)),
            Some("error") => {
                let message = data["error"].get("message").and_then(Value::as_str).unwrap_or("upstream stream error");
                Decoded::Error(message.to_owned())
            }
            _ => Decoded::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api::anthropic_stream::*;

    fn text_chunk(text: &str, finish: Option<&str>) -> ChatChunk {
        ChatChunk {
            id: "chatcmpl-1".into(),
            object: "chat.completion.chunk".into(),
            created: 1,
            model: "m".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta { content: Some(text.into()), ..Default::default() },
                finish_reason: finish.map(str::to_owned),
                extra: Map::new(),
            }],
            usage: None,
            extra: Map::new(),
        }
    }

    fn names(events: &[Bytes]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8_lossy(e).lines().next().unwrap_or("").trim_start_matches("event: ").to_owned())
            .collect()
    }

    #[test]
    fn encoder_emits_the_messages_event_sequence() {
        let mut enc = AnthropicEncoder::new("m");
        let mut events = enc.chunk(&text_chunk("Hel", None), 3);
        events.extend(enc.chunk(&text_chunk("lo", Some("length")), 3));
        events.extend(enc.finish(Usage::new(3, 2), "chatcmpl-1"));
        assert_eq!(
            names(&events),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(String::from_utf8_lossy(&events[6]).contains("max_tokens"));
    }

    #[test]
    fn decoder_maps_text_tools_and_usage() {
        let mut dec = AnthropicDecoder::new(1);
        let events = [
            json!({"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":7,"output_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}),
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}),
            json!({"type":"message_stop"}),
        ];
        let decoded: Vec<Decoded> = events.iter().map(|e| dec.event(e)).collect();
        let Decoded::Chunk(c) = &decoded[2] else { panic!("text chunk expected") };
        assert_eq!(c.choices[0].delta.content.as_deref(), Some("Hi"));
        let Decoded::Chunk(c) = &decoded[5] else { panic!("finish chunk expected") };
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let Decoded::Done(u) = decoded[6] else { panic!("done expected") };
        assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 9));
    }
}
