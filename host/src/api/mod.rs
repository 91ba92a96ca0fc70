//! The wire formats Sluice speaks: the internal (OpenAI-shaped) chat types and
//! the translations to and from the Anthropic Messages API.

pub mod anthropic;
pub mod anthropic_stream;
pub mod chat;
