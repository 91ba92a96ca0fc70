//! The wire formats Sluice speaks: the internal (OpenAI-shaped) chat types and
//! the translations to and from the Anthropic Messages API.
//!
//! Formats only: what a request may ask and how errors are answered are the
//! gateway's. A request that cannot be translated is an [`ApiError`].

pub mod anthropic;
pub mod anthropic_stream;
pub mod chat;
pub mod error;

pub use error::ApiError;
