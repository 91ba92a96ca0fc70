//! The Anthropic Messages API (`POST /v1/messages`): its request and response
//! shapes and their translation to and from the internal chat types.
//!
//! Requests from Anthropic clients become [`ChatRequest`]s; requests bound for
//! Anthropic upstreams are built from [`ChatRequest`]s. The shapes are in
//! `types`, requests are translated in `request`, whole responses in
//! `response`; streaming events in `api::anthropic_stream`.
//!
//! [`ChatRequest`]: crate::api::chat::ChatRequest

mod request;
mod response;
mod types;

pub use response::{anthropic_id, finish_reason, response_from_chat, response_to_chat, stop_reason};
pub use types::{
    AnthropicContent, AnthropicMessage, AnthropicRole, AnthropicTool, AnthropicUsage, Block, MessagesRequest,
    MessagesResponse, SystemPrompt,
};
