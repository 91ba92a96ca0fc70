//! Whole Messages API responses to and from the internal shape, and the
//! stop/finish reason mapping shared with the stream translation.

use serde_json::{Map, json};

use super::types::{AnthropicUsage, Block, MessagesResponse, blocks_text};
use crate::api::chat::{ChatResponse, Choice, FunctionCall, Message, Role, ToolCall, Usage};

/// OpenAI finish reason → Anthropic stop reason.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic stop reason → OpenAI finish reason.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
}

/// A complete internal response as an Anthropic message.
pub fn response_from_chat(resp: &ChatResponse, usage: Usage) -> MessagesResponse {
    let mut content = Vec::new();
    let choice = resp.choices.first();
    if let Some(c) = choice {
        let text = c.message.text_content();
        if !text.is_empty() {
            content.push(Block::Text { text });
        }
        for call in c.message.tool_calls.iter().flatten() {
            let input = serde_json::from_str(&call.function.arguments).unwrap_or_else(|_| json!({}));
            content.push(Block::ToolUse { id: call.id.clone(), name: call.function.name.clone(), input });
        }
    }
    MessagesResponse {
        id: anthropic_id(&resp.id),
        kind: "message".to_owned(),
        role: "assistant".to_owned(),
        model: resp.model.clone(),
        content,
        stop_reason: Some(stop_reason(choice.and_then(|c| c.finish_reason.as_deref())).to_owned()),
        stop_sequence: None,
        usage: AnthropicUsage { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens },
    }
}

/// An id in Anthropic's style (`msg_...`) for an internal one.
pub fn anthropic_id(id: &str) -> String {
    if id.starts_with("msg_") { id.to_owned() } else { format!("msg_{}", id.trim_start_matches("chatcmpl-")) }
}

/// An Anthropic upstream's response as an internal one.
pub fn response_to_chat(resp: MessagesResponse, created: u64) -> ChatResponse {
    let text = blocks_text(&resp.content);
    let tool_calls: Vec<ToolCall> = resp
        .content
        .iter()
        .filter_map(|b| match b {
            Block::ToolUse { id, name, input } => Some(ToolCall {
                id: id.clone(),
                kind: "function".to_owned(),
                function: FunctionCall { name: name.clone(), arguments: input.to_string() },
            }),
            _ => None,
        })
        .collect();
    let mut message = Message::text(Role::Assistant, text);
    message.tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
    ChatResponse {
        id: resp.id,
        object: "chat.completion".to_owned(),
        created,
        model: resp.model,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(finish_reason(resp.stop_reason.as_deref()).to_owned()),
            extra: Map::new(),
        }],
        usage: Some(Usage::new(resp.usage.input_tokens, resp.usage.output_tokens)),
        extra: Map::new(),
    }
}
