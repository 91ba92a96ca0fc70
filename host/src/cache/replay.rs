//! Cached answers are kept whole ([`ChatResponse`]); a streaming client gets
//! one replayed as chunks, and a streamed answer is assembled back into one
//! before it is stored.

use std::collections::BTreeMap;

use serde_json::Map;

use crate::api::chat::{
    ChatChunk, ChatResponse, Choice, ChunkChoice, Content, Delta, FunctionCall, FunctionCallDelta, Message, Role,
    ToolCall, ToolCallDelta, Usage,
};

/// The chunks a stream of `response` would have carried: per choice, the
/// role, the text, the tool calls, then the finish reason. Usage is left to
/// the caller (it goes in a chunk of its own, when the client asked).
pub fn chunks_of(response: &ChatResponse) -> Vec<ChatChunk> {
    let chunk = |choices: Vec<ChunkChoice>| ChatChunk {
        id: response.id.clone(),
        object: "chat.completion.chunk".to_owned(),
        created: response.created,
        model: response.model.clone(),
        choices,
        usage: None,
        extra: Map::new(),
    };
    let mut out = Vec::new();
    for choice in &response.choices {
        let delta = |d: Delta| ChunkChoice { index: choice.index, delta: d, finish_reason: None, extra: Map::new() };
        out.push(chunk(vec![delta(Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        })]));
        let text = choice.message.text_content();
        if !text.is_empty() {
            out.push(chunk(vec![delta(Delta { content: Some(text), ..Delta::default() })]));
        }
        if let Some(calls) = &choice.message.tool_calls {
            let calls = calls
                .iter()
                .enumerate()
                .map(|(i, call)| ToolCallDelta {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    id: Some(call.id.clone()),
                    kind: Some(call.kind.clone()),
                    function: Some(FunctionCallDelta {
                        name: Some(call.function.name.clone()),
                        arguments: Some(call.function.arguments.clone()),
                    }),
                })
                .collect();
            out.push(chunk(vec![delta(Delta { tool_calls: Some(calls), ..Delta::default() })]));
        }
        out.push(chunk(vec![ChunkChoice {
            index: choice.index,
            delta: Delta::default(),
            finish_reason: choice.finish_reason.clone(),
            extra: Map::new(),
        }]));
    }
    out
}

#[derive(Default)]
struct PartialChoice {
    text: String,
    calls: BTreeMap<u32, ToolCall>,
    finish_reason: Option<String>,
}

/// Puts a streamed answer back together from its chunks.
#[derive(Default)]
pub struct Assembler {
    first: Option<ChatChunk>,
    choices: BTreeMap<u32, PartialChoice>,
    usage: Option<Usage>,
    /// Something was streamed that a whole response cannot carry back.
    lossy: bool,
}

impl Assembler {
    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.first.is_none() {
            self.first = Some(ChatChunk { choices: Vec::new(), usage: None, ..chunk.clone() });
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for c in &chunk.choices {
            let choice = self.choices.entry(c.index).or_default();
            if let Some(text) = &c.delta.content {
                choice.text.push_str(text);
            }
            for call in c.delta.tool_calls.iter().flatten() {
                let entry = choice.calls.entry(call.index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    kind: "function".to_owned(),
                    function: FunctionCall { name: String::new(), arguments: String::new() },
                });
                if let Some(id) = &call.id {
                    entry.id.clone_from(id);
                }
                if let Some(kind) = &call.kind {
                    entry.kind.clone_from(kind);
                }
                if let Some(f) = &call.function {
                    if let Some(name) = &f.name {
                        entry.function.name.push_str(name);
                    }
                    if let Some(args) = &f.arguments {
                        entry.function.arguments.push_str(args);
                    }
                }
            }
            if c.finish_reason.is_some() {
                choice.finish_reason.clone_from(&c.finish_reason);
            }
            // Log probabilities, refusals and the like are not kept.
            self.lossy |= !c.extra.values().chain(c.delta.extra.values()).all(serde_json::Value::is_null);
        }
    }

    /// The whole answer, if the stream carried a complete one (every choice
    /// finished) that a whole response can represent.
    pub fn finish(self, fallback_usage: Usage) -> Option<ChatResponse> {
        let first = self.first?;
        if self.lossy || self.choices.is_empty() || self.choices.values().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        let choices = self
            .choices
            .into_iter()
            .map(|(index, c)| {
                let calls: Vec<ToolCall> = c.calls.into_values().collect();
                let content = if c.text.is_empty() && !calls.is_empty() { None } else { Some(Content::Text(c.text)) };
                let mut message = Message::text(Role::Assistant, String::new());
                message.content = content;
                message.tool_calls = (!calls.is_empty()).then_some(calls);
                Choice { index, message, finish_reason: c.finish_reason, extra: Map::new() }
            })
            .collect();
        Some(ChatResponse {
            id: first.id,
            object: "chat.completion".to_owned(),
            created: first.created,
            model: first.model,
            choices,
            usage: Some(self.usage.unwrap_or(fallback_usage)),
            extra: Map::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::replay::*;

    fn response(json: &str) -> ChatResponse {
        serde_json::from_str(json).expect("response")
    }

    #[test]
    fn replayed_chunks_assemble_into_the_same_answer() {
        let cases = [
            r#"{"id":"c1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            r#"{"id":"c2","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"get","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            r#"{"id":"c3","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"b"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        ];
        for json in cases {
            let original = response(json);
            let mut assembler = Assembler::default();
            for chunk in chunks_of(&original) {
                assembler.push(&chunk);
            }
            let usage = original.usage.expect("usage");
            assert_eq!(assembler.finish(usage), Some(original), "{json}");
        }
    }

    #[test]
    fn an_unfinished_stream_is_not_an_answer() {
        let original = response(
            r#"{"id":"c","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":"stop"}]}"#,
        );
        let mut chunks = chunks_of(&original);
        chunks.pop(); // the finish_reason chunk
        let mut assembler = Assembler::default();
        for chunk in &chunks {
            assembler.push(chunk);
        }
        assert_eq!(assembler.finish(Usage::new(1, 1)), None);
    }
}
