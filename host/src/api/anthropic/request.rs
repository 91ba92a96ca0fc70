//! Messages API requests to and from the internal [`ChatRequest`]: clients'
//! requests are translated in, requests bound for Anthropic upstreams out.
//!
//! System prompts, tool use and tool results, images and `tool_choice` are
//! translated; a request's unknown fields travel in `extra`. It does not
//! check what the internal request asks for (models, limits): only what
//! cannot be translated is an error here.

use serde_json::{Map, Value, json};

use super::types::{
    AnthropicContent, AnthropicMessage, AnthropicRole, AnthropicTool, Block, MessagesRequest, SystemPrompt, blocks_text,
};
use crate::api::chat::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, Message, Role, Stop, Tool, ToolCall,
};
use crate::api::error::ApiError;

impl MessagesRequest {
    /// The internal request for this Anthropic request.
    pub fn into_chat(self) -> Result<ChatRequest, ApiError> {
        let mut messages = Vec::new();
        match self.system {
            Some(SystemPrompt::Text(text)) => messages.push(Message::text(Role::System, text)),
            Some(SystemPrompt::Blocks(blocks)) => messages.push(Message::text(Role::System, blocks_text(&blocks))),
            None => {}
        }
        for (i, m) in self.messages.into_iter().enumerate() {
            push_message(&mut messages, m, i)?;
        }
        // Unknown fields travel on, except those the internal request types:
        // the Messages API has none of them, and kept in `extra` they would be
        // written twice (a second `user` after the one from `metadata`).
        let mut extra = self.extra;
        extra.retain(|key, _| !ChatRequest::TYPED_FIELDS.contains(&key.as_str()));
        if let Some(k) = self.top_k {
            extra.insert("top_k".to_owned(), json!(k));
        }
        let user = self.metadata.as_ref().and_then(|m| m.get("user_id")).and_then(Value::as_str).map(str::to_owned);
        Ok(ChatRequest {
            model: self.model,
            messages,
            stream: self.stream,
            stream_options: None,
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: Some(self.max_tokens),
            max_completion_tokens: None,
            stop: self.stop_sequences.map(Stop::Many),
            seed: None,
            n: None,
            tools: self.tools.map(|tools| tools.into_iter().map(tool_to_openai).collect()),
            tool_choice: self.tool_choice.map(|c| tool_choice_to_openai(&c)),
            response_format: None,
            logprobs: None,
            top_logprobs: None,
            user,
            extra,
        })
    }

    /// The Anthropic request for an internal one (for Anthropic upstreams).
    pub fn from_chat(req: &ChatRequest, model: &str, default_max_tokens: u32) -> Result<Self, ApiError> {
        let mut system = Vec::new();
        let mut messages: Vec<AnthropicMessage> = Vec::new();
        for m in &req.messages {
            let (role, blocks) = match m.role {
                Role::System | Role::Developer => {
                    system.push(m.text_content());
                    continue;
                }
                Role::User => (AnthropicRole::User, content_blocks(m.content.as_ref())),
                Role::Assistant => {
                    let mut blocks = content_blocks(m.content.as_ref());
                    for call in m.tool_calls.iter().flatten() {
                        let input = serde_json::from_str(&call.function.arguments).unwrap_or_else(|_| json!({}));
                        blocks.push(Block::ToolUse { id: call.id.clone(), name: call.function.name.clone(), input });
                    }
                    (AnthropicRole::Assistant, blocks)
                }
                Role::Tool | Role::Function => {
                    let id = m.tool_call_id.clone().or_else(|| m.name.clone()).unwrap_or_default();
                    let result = Block::ToolResult {
                        tool_use_id: id,
                        content: Some(AnthropicContent::Text(m.text_content())),
                        is_error: None,
                    };
                    (AnthropicRole::User, vec![result])
                }
            };
            if blocks.is_empty() {
                continue;
            }
            // Consecutive turns of one role merge into one message.
            match messages.last_mut() {
                Some(last) if last.role == role => {
                    let prev = std::mem::replace(&mut last.content, AnthropicContent::Blocks(Vec::new()));
                    let mut merged = prev.blocks();
                    merged.extend(blocks);
                    last.content = AnthropicContent::Blocks(merged);
                }
                _ => messages.push(AnthropicMessage { role, content: AnthropicContent::Blocks(blocks) }),
            }
        }
        let mut extra = Map::new();
        if let Some(k) = req.extra.get("top_k") {
            extra.insert("top_k".to_owned(), k.clone());
        }
        Ok(MessagesRequest {
            model: model.to_owned(),
            messages,
            max_tokens: req.max_output_tokens().unwrap_or(default_max_tokens),
            system: (!system.is_empty()).then(|| SystemPrompt::Text(system.join("\n\n"))),
            stop_sequences: req.stop.as_ref().map(|_| req.stop_sequences()),
            stream: req.stream,
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: None,
            tools: req.tools.as_ref().map(|tools| {
                tools
                    .iter()
                    .map(|t| AnthropicTool {
                        name: t.function.name.clone(),
                        description: t.function.description.clone(),
                        input_schema: t.function.parameters.clone().unwrap_or_else(|| json!({"type": "object"})),
                    })
                    .collect()
            }),
            tool_choice: req.tool_choice.as_ref().and_then(tool_choice_to_anthropic),
            metadata: req.user.as_ref().map(|u| json!({"user_id": u})),
            extra,
        })
    }
}

/// Appends the internal messages for Anthropic message `index`: its tool
/// results, each a tool message, then its text, images and tool calls as
/// one message (none when it holds nothing else).
fn push_message(messages: &mut Vec<Message>, m: AnthropicMessage, index: usize) -> Result<(), ApiError> {
    let role = match m.role {
        AnthropicRole::User => Role::User,
        AnthropicRole::Assistant => Role::Assistant,
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in m.content.blocks() {
        match block {
            Block::Text { text } => parts.push(text_part(text)),
            Block::Image { source } => parts.push(image_part(&source, index)?),
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function".to_owned(),
                function: FunctionCall { name, arguments: input.to_string() },
            }),
            Block::ToolResult { tool_use_id, content, .. } => {
                let text = content.map(|c| blocks_text(&c.blocks())).unwrap_or_default();
                let mut msg = Message::text(Role::Tool, text);
                msg.tool_call_id = Some(tool_use_id);
                messages.push(msg);
            }
        }
    }
    if parts.is_empty() && tool_calls.is_empty() {
        return Ok(());
    }
    let content = match parts.as_slice() {
        [] => None,
        [only] if only.kind == "text" => only.text.clone().map(Content::Text),
        _ => Some(Content::Parts(parts)),
    };
    let mut msg = Message::text(role, "");
    msg.content = content;
    msg.tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
    messages.push(msg);
    Ok(())
}

fn tool_to_openai(t: AnthropicTool) -> Tool {
    Tool {
        kind: "function".to_owned(),
        function: FunctionDef {
            name: t.name,
            description: t.description,
            parameters: Some(t.input_schema),
            extra: Map::new(),
        },
    }
}

fn text_part(text: String) -> ContentPart {
    ContentPart { kind: "text".to_owned(), text: Some(text), extra: Map::new() }
}

fn image_part(source: &Value, index: usize) -> Result<ContentPart, ApiError> {
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str).unwrap_or("image/png");
            let data = source.get("data").and_then(Value::as_str).unwrap_or("");
            format!("data:{media};base64,{data}")
        }
        Some("url") => source.get("url").and_then(Value::as_str).unwrap_or("").to_owned(),
        _ => {
            return Err(ApiError::invalid(
                "image source must be of type `base64` or `url`",
                Some(&format!("messages.{index}.content")),
            ));
        }
    };
    let mut extra = Map::new();
    extra.insert("image_url".to_owned(), json!({ "url": url }));
    Ok(ContentPart { kind: "image_url".to_owned(), text: None, extra })
}

fn content_blocks(content: Option<&Content>) -> Vec<Block> {
    match content {
        None => Vec::new(),
        Some(Content::Text(t)) if t.is_empty() => Vec::new(),
        Some(Content::Text(t)) => vec![Block::Text { text: t.clone() }],
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p.kind.as_str() {
                "text" => p.text.clone().map(|text| Block::Text { text }),
                "image_url" => {
                    let url = p.extra.get("image_url")?.get("url")?.as_str()?;
                    Some(Block::Image { source: image_source(url) })
                }
                _ => None,
            })
            .collect(),
    }
}

fn image_source(url: &str) -> Value {
    match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
        Some((media, data)) => json!({"type": "base64", "media_type": media, "data": data}),
        None => json!({"type": "url", "url": url}),
    }
}

fn tool_choice_to_openai(choice: &Value) -> Value {
    match choice.get("type").and_then(Value::as_str) {
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
        }
        _ => json!("auto"),
    }
}

fn tool_choice_to_anthropic(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) if s == "required" => Some(json!({"type": "any"})),
        Value::String(s) if s == "none" => Some(json!({"type": "none"})),
        Value::String(_) => Some(json!({"type": "auto"})),
        Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name"))?;
            Some(json!({"type": "tool", "name": name}))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::anthropic::types::{MessagesRequest, SystemPrompt};
    use crate::api::chat::Role;
    use crate::api::error::ApiError;

    #[test]
    fn request_round_trips_through_the_internal_shape() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "claude", "max_tokens": 100, "system": "be brief",
            "stop_sequences": ["END"], "top_k": 5,
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "wx", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "rain"}]}
            ],
            "tools": [{"name": "wx", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}
        }))
        .expect("valid request");
        let chat = req.into_chat().expect("translates");
        assert_eq!(chat.messages[0].role, Role::System);
        assert_eq!(chat.messages[2].tool_calls.as_ref().map(Vec::len), Some(1));
        assert_eq!(chat.messages[3].role, Role::Tool);
        assert_eq!(chat.tool_choice, Some(json!("required")));
        assert_eq!(chat.extra["top_k"], 5);

        let back = MessagesRequest::from_chat(&chat, "claude-x", 4096).expect("translates back");
        assert_eq!(back.max_tokens, 100);
        assert_eq!(back.messages.len(), 3);
        assert!(matches!(back.system, Some(SystemPrompt::Text(ref s)) if s == "be brief"));
        assert_eq!(back.tool_choice, Some(json!({"type": "any"})));
        assert_eq!(back.extra["top_k"], 5);
    }

    #[test]
    fn unknown_fields_never_shadow_the_internal_requests_own() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "real"}, "user": "spoofed", "n": 3, "seed": 1, "thinking": {"type": "enabled"}
        }))
        .expect("valid request");
        let chat = req.into_chat().expect("translates");
        assert_eq!(chat.user.as_deref(), Some("real"));
        assert_eq!(chat.extra.keys().collect::<Vec<_>>(), ["thinking"]);
        let written = serde_json::to_string(&chat).expect("serialisable");
        assert_eq!(written.matches("\"user\":").count(), 1, "{written}");
    }

    #[test]
    fn an_image_of_unknown_source_names_its_message() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "claude", "max_tokens": 10,
            "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]
        }))
        .expect("valid request");
        let e = req.into_chat().expect_err("untranslatable");
        assert_eq!(
            e,
            ApiError::InvalidRequest {
                message: "image source must be of type `base64` or `url`".into(),
                param: Some("messages.0.content".into()),
            }
        );
    }
}
