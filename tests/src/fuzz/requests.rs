//! Request and response translation targets: OpenAI ⇄ Anthropic, both ways,
//! parsed as ingress parses a body (`sluice::ingress::parse_json`).
//!
//! What must survive a translation is the conversation (`conversation`):
//! the system text, each side's texts and images in order, the assistant's
//! tool calls and the tool results; and the request's model, output limit,
//! stop sequences, sampling and user. Order between a message's text and its
//! tool calls or results is not kept (the Messages API and the chat API
//! place them differently), nor are empty texts, nor tool calls in user
//! turns (which neither API allows).

use serde_json::{Value, json};
use sluice::api::anthropic::{
    AnthropicContent, AnthropicRole, Block, MessagesRequest, MessagesResponse, SystemPrompt, anthropic_id,
    response_from_chat, response_to_chat,
};
use sluice::api::chat::{ChatRequest, ChatResponse, Content, Message, Role, Usage};
use sluice::error::GatewayError;
use sluice::ingress::parse_json;

use super::{assert_json_close, json_close};

/// The output limit an Anthropic upstream gets when the client set none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A piece of a message's content.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Image(String),
}

/// What a translation must carry across.
#[derive(Debug, Default)]
struct Conversation {
    system: Option<String>,
    user: Vec<Piece>,
    assistant: Vec<Piece>,
    /// The assistant's tool calls: id, name, arguments as JSON.
    calls: Vec<(String, String, Value)>,
    /// Tool results: the call's id, the text.
    results: Vec<(String, String)>,
}

impl Conversation {
    fn assert_same(&self, other: &Conversation, what: &str) {
        assert_eq!(self.system, other.system, "{what}: system");
        assert_eq!(self.user, other.user, "{what}: user pieces");
        assert_eq!(self.assistant, other.assistant, "{what}: assistant pieces");
        assert_eq!(self.results, other.results, "{what}: tool results");
        assert_eq!(self.calls.len(), other.calls.len(), "{what}: tool calls {:?} / {:?}", self.calls, other.calls);
        for (a, b) in self.calls.iter().zip(&other.calls) {
            assert!(a.0 == b.0 && a.1 == b.1 && json_close(&a.2, &b.2), "{what}: tool call {a:?} / {b:?}");
        }
    }

    fn side(&mut self, assistant: bool) -> &mut Vec<Piece> {
        if assistant { &mut self.assistant } else { &mut self.user }
    }
}

fn text_piece(text: &str) -> Option<Piece> {
    (!text.is_empty()).then(|| Piece::Text(text.to_owned()))
}

/// Arguments as the Messages API gets them: the JSON they hold, else `{}`.
fn arguments_json(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

/// The conversation of a chat request, as a translation to the Messages API
/// must keep it.
fn chat_conversation(req: &ChatRequest) -> Conversation {
    let mut conv = Conversation::default();
    let mut system = Vec::new();
    for m in &req.messages {
        let assistant = match m.role {
            Role::System | Role::Developer => {
                system.push(m.text_content());
                continue;
            }
            Role::Tool | Role::Function => {
                let id = m.tool_call_id.clone().or_else(|| m.name.clone()).unwrap_or_default();
                conv.results.push((id, m.text_content()));
                continue;
            }
            Role::User => false,
            Role::Assistant => true,
        };
        let pieces: Vec<Piece> = match &m.content {
            None => Vec::new(),
            Some(Content::Text(t)) => text_piece(t).into_iter().collect(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter_map(|p| match p.kind.as_str() {
                    "text" => text_piece(p.text.as_deref()?),
                    "image_url" => Some(Piece::Image(p.extra.get("image_url")?.get("url")?.as_str()?.to_owned())),
                    _ => None,
                })
                .collect(),
        };
        conv.side(assistant).extend(pieces);
        if assistant {
            for call in m.tool_calls.iter().flatten() {
                conv.calls.push((
                    call.id.clone(),
                    call.function.name.clone(),
                    arguments_json(&call.function.arguments),
                ));
            }
        }
    }
    conv.system = (!system.is_empty()).then(|| system.join("\n\n"));
    conv
}

/// An image source as the chat API's URL; `None` when it has none.
fn image_url(source: &Value) -> Option<String> {
    let text = |key: &str| source.get(key).and_then(Value::as_str);
    match text("type")? {
        "base64" => {
            Some(format!("data:{};base64,{}", text("media_type").unwrap_or("image/png"), text("data").unwrap_or("")))
        }
        "url" => Some(text("url").unwrap_or("").to_owned()),
        _ => None,
    }
}

fn blocks_text(blocks: &[Block]) -> String {
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    texts.join("\n")
}

fn content_blocks(content: &AnthropicContent) -> Vec<Block> {
    match content {
        AnthropicContent::Text(text) => vec![Block::Text { text: text.clone() }],
        AnthropicContent::Blocks(blocks) => blocks.clone(),
    }
}

/// The conversation of a Messages API request.
fn anthropic_conversation(req: &MessagesRequest) -> Conversation {
    let mut conv = Conversation {
        system: req.system.as_ref().map(|s| match s {
            SystemPrompt::Text(text) => text.clone(),
            SystemPrompt::Blocks(blocks) => blocks_text(blocks),
        }),
        ..Conversation::default()
    };
    for m in &req.messages {
        let assistant = m.role == AnthropicRole::Assistant;
        for block in content_blocks(&m.content) {
            match block {
                Block::Text { text } => conv.side(assistant).extend(text_piece(&text)),
                Block::Image { source } => {
                    let url = image_url(&source).unwrap_or_else(|| "<untranslatable>".to_owned());
                    conv.side(assistant).push(Piece::Image(url));
                }
                Block::ToolUse { id, name, input } if assistant => conv.calls.push((id, name, input)),
                Block::ToolUse { .. } => {}
                Block::ToolResult { tool_use_id, content, .. } => {
                    let text = content.as_ref().map(|c| blocks_text(&content_blocks(c))).unwrap_or_default();
                    conv.results.push((tool_use_id, text));
                }
            }
        }
    }
    conv
}

/// The Messages API's shape: no empty message, roles alternating.
fn assert_anthropic_shape(req: &MessagesRequest) {
    for pair in req.messages.windows(2) {
        assert_ne!(pair[0].role, pair[1].role, "consecutive messages of one role");
    }
    for m in &req.messages {
        assert!(!content_blocks(&m.content).is_empty(), "an empty message");
    }
}

/// A body that ingress parses, or nothing; a refused body is a 400 with a message.
fn parsed<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    match parse_json::<T>(data) {
        Ok(value) => Some(value),
        Err(GatewayError::InvalidRequest { message, param, .. }) => {
            assert!(!message.is_empty(), "an empty error message");
            assert!(param.is_none_or(|p| !p.is_empty()), "an empty param");
            None
        }
        Err(e) => panic!("a body error other than a 400: {e}"),
    }
}

/// An OpenAI chat request: parsed, serialised and parsed again unchanged,
/// translated to the Messages API and back with its conversation and
/// parameters intact.
pub fn openai_request(data: &[u8]) {
    let Some(req) = parsed::<ChatRequest>(data) else { return };
    let again = parse_json::<ChatRequest>(&serde_json::to_vec(&req).expect("serialisable"))
        .unwrap_or_else(|e| panic!("a parsed request does not parse once written: {e}"));
    assert_json_close(&req, &again, "written and read again");

    let anthropic = MessagesRequest::from_chat(&req, &req.model, DEFAULT_MAX_TOKENS).expect("from_chat never fails");
    assert_anthropic_shape(&anthropic);
    assert_eq!(anthropic.model, req.model);
    assert_eq!(anthropic.max_tokens, req.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS));
    assert_eq!(anthropic.stop_sequences, req.stop.as_ref().map(|_| req.stop_sequences()));
    assert_eq!((anthropic.stream, anthropic.temperature, anthropic.top_p), (req.stream, req.temperature, req.top_p));
    let tool_names = |tools: Option<Vec<String>>| tools.unwrap_or_default();
    assert_eq!(
        tool_names(anthropic.tools.as_ref().map(|t| t.iter().map(|t| t.name.clone()).collect())),
        tool_names(req.tools.as_ref().map(|t| t.iter().map(|t| t.function.name.clone()).collect())),
    );
    let conv = chat_conversation(&req);
    conv.assert_same(&anthropic_conversation(&anthropic), "OpenAI → Anthropic");

    // What an Anthropic upstream reads: the same request, unless the client's
    // own `top_k` (forwarded as it came) is not a count.
    let wire = serde_json::to_vec(&anthropic).expect("serialisable");
    let top_k_ok = req.extra.get("top_k").is_none_or(|k| k.as_u64().is_some_and(|k| k <= u64::from(u32::MAX)));
    match parse_json::<MessagesRequest>(&wire) {
        Ok(read) => assert_json_close(&read, &anthropic, "the Anthropic request read back"),
        Err(e) => assert!(!top_k_ok, "the Anthropic request does not parse: {e}"),
    }

    let back = anthropic.into_chat().expect("a translated request translates back");
    assert_eq!(
        (back.model.as_str(), back.max_tokens),
        (req.model.as_str(), Some(req.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS)))
    );
    assert_eq!(back.stop_sequences(), req.stop_sequences());
    assert_eq!(
        (back.stream, back.temperature, back.top_p, &back.user),
        (req.stream, req.temperature, req.top_p, &req.user)
    );
    conv.assert_same(&chat_conversation(&back), "OpenAI → Anthropic → OpenAI");
}

/// An Anthropic Messages request: parsed, written and read again unchanged,
/// translated to the internal request (a valid OpenAI request) and back with
/// its conversation and parameters intact.
pub fn anthropic_request(data: &[u8]) {
    let Some(req) = parsed::<MessagesRequest>(data) else { return };
    let again = parse_json::<MessagesRequest>(&serde_json::to_vec(&req).expect("serialisable"))
        .unwrap_or_else(|e| panic!("a parsed request does not parse once written: {e}"));
    assert_json_close(&req, &again, "written and read again");

    let conv = anthropic_conversation(&req);
    let untranslatable = req.messages.iter().position(|m| {
        content_blocks(&m.content).iter().any(|b| matches!(b, Block::Image { source } if image_url(source).is_none()))
    });
    let chat = match (req.clone().into_chat(), untranslatable) {
        (Ok(chat), None) => chat,
        (Err(sluice::api::ApiError::InvalidRequest { param, .. }), Some(i)) => {
            assert_eq!(param, Some(format!("messages.{i}.content")), "the error names the first bad message");
            return;
        }
        (Ok(_), Some(i)) => panic!("message {i}'s image has no usable source, yet it translated"),
        (Err(e), None) => panic!("a translatable request failed: {e}"),
    };
    assert_eq!(
        (chat.model.as_str(), chat.max_tokens, chat.max_output_tokens()),
        (req.model.as_str(), Some(req.max_tokens), Some(req.max_tokens))
    );
    assert_eq!(chat.stop_sequences(), req.stop_sequences.clone().unwrap_or_default());
    assert_eq!((chat.stream, chat.temperature, chat.top_p), (req.stream, req.temperature, req.top_p));
    assert_eq!(chat.extra.get("top_k").and_then(Value::as_u64), req.top_k.map(u64::from));
    let user_id = req.metadata.as_ref().and_then(|m| m.get("user_id")).and_then(Value::as_str);
    assert_eq!(chat.user.as_deref(), user_id);
    conv.assert_same(&chat_conversation(&chat), "Anthropic → OpenAI");

    // What an OpenAI upstream reads: the same request.
    let wire = serde_json::to_vec(&chat).expect("serialisable");
    let read = parse_json::<ChatRequest>(&wire)
        .unwrap_or_else(|e| panic!("the internal request does not parse as an OpenAI request: {e}"));
    assert_json_close(&read, &chat, "the internal request read back");

    let back = MessagesRequest::from_chat(&chat, &chat.model, DEFAULT_MAX_TOKENS).expect("from_chat never fails");
    assert_anthropic_shape(&back);
    assert_eq!((back.max_tokens, &back.stop_sequences, back.stream), (req.max_tokens, &req.stop_sequences, req.stream));
    let top_k = serde_json::to_value(&back).expect("serialisable").get("top_k").and_then(Value::as_u64);
    assert_eq!(top_k, req.top_k.map(u64::from));
    conv.assert_same(&anthropic_conversation(&back), "Anthropic → OpenAI → Anthropic");
}

fn chat_text(message: &Message) -> String {
    message.text_content()
}

/// Whole responses both ways: a chat completion as a Messages response and
/// back, and a Messages response as a chat completion and back; text, tool
/// calls, stop reasons and usage survive, and each output parses as its API.
pub fn responses(data: &[u8]) {
    if let Ok(resp) = serde_json::from_slice::<ChatResponse>(data) {
        chat_response(&resp);
    }
    if let Ok(resp) = serde_json::from_slice::<MessagesResponse>(data) {
        messages_response(resp);
    }
}

fn chat_response(resp: &ChatResponse) {
    let usage = resp.usage.unwrap_or_default();
    let anthropic = response_from_chat(resp, usage);
    let read: MessagesResponse = serde_json::from_slice(&serde_json::to_vec(&anthropic).expect("serialisable"))
        .unwrap_or_else(|e| panic!("a translated response does not parse as a Messages response: {e}"));
    assert_json_close(&read, &anthropic, "the Messages response read back");
    assert!(anthropic.id.starts_with("msg_") && anthropic.id == anthropic_id(&resp.id));
    assert_eq!(
        (anthropic.usage.input_tokens, anthropic.usage.output_tokens),
        (usage.prompt_tokens, usage.completion_tokens)
    );
    let first = resp.choices.first();
    let text = first.map(|c| chat_text(&c.message)).unwrap_or_default();
    assert_eq!(blocks_text(&anthropic.content), text);
    let calls: Vec<(String, String, Value)> = first
        .iter()
        .flat_map(|c| c.message.tool_calls.iter().flatten())
        .map(|c| (c.id.clone(), c.function.name.clone(), arguments_json(&c.function.arguments)))
        .collect();
    let expected_stop = match first.and_then(|c| c.finish_reason.as_deref()) {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        _ => "end_turn",
    };
    assert_eq!(anthropic.stop_reason.as_deref(), Some(expected_stop));

    let back = response_to_chat(anthropic, resp.created);
    let again: ChatResponse = serde_json::from_slice(&serde_json::to_vec(&back).expect("serialisable"))
        .unwrap_or_else(|e| panic!("a translated response does not parse as a chat completion: {e}"));
    assert_json_close(&again, &back, "the chat completion read back");
    assert_eq!(back.choices.len(), 1);
    assert_eq!(chat_text(&back.choices[0].message), text);
    let back_calls: Vec<(String, String, Value)> = back.choices[0]
        .message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| (c.id.clone(), c.function.name.clone(), arguments_json(&c.function.arguments)))
        .collect();
    assert_json_close(&back_calls, &calls, "tool calls through a Messages response");
    let expected_finish = match expected_stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        _ => "stop",
    };
    assert_eq!(back.choices[0].finish_reason.as_deref(), Some(expected_finish));
    assert_eq!(back.usage, Some(Usage::new(usage.prompt_tokens, usage.completion_tokens)));
}

/// The tool-use blocks: id, name, input.
fn tool_uses(blocks: &[Block]) -> Vec<(String, String, Value)> {
    blocks
        .iter()
        .filter_map(|b| match b {
            Block::ToolUse { id, name, input } => Some((id.clone(), name.clone(), input.clone())),
            _ => None,
        })
        .collect()
}

fn messages_response(resp: MessagesResponse) {
    let text = blocks_text(&resp.content);
    let uses = tool_uses(&resp.content);
    let expected_stop = match resp.stop_reason.as_deref() {
        Some("max_tokens") => "max_tokens",
        Some("tool_use") => "tool_use",
        _ => "end_turn",
    };
    let (id, usage) = (resp.id.clone(), resp.usage);
    let chat = response_to_chat(resp, 0);
    let read: ChatResponse = serde_json::from_slice(&serde_json::to_vec(&chat).expect("serialisable"))
        .unwrap_or_else(|e| panic!("a translated response does not parse as a chat completion: {e}"));
    assert_json_close(&read, &chat, "the chat completion read back");
    assert_eq!(
        chat.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((usage.input_tokens, usage.output_tokens))
    );

    let back = response_from_chat(&chat, chat.usage.unwrap_or_default());
    assert_eq!(back.id, anthropic_id(&id));
    assert_eq!(blocks_text(&back.content), text);
    let back_uses = tool_uses(&back.content);
    assert_json_close(&back_uses, &uses, "tool uses through a chat completion");
    assert_eq!(back.stop_reason.as_deref(), Some(expected_stop));
    assert_eq!((back.usage.input_tokens, back.usage.output_tokens), (usage.input_tokens, usage.output_tokens));
}
