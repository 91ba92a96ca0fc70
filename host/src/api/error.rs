//! What a wire format reports when a request cannot be read or translated.
//!
//! The API layer knows nothing of HTTP statuses or error bodies: the gateway
//! turns an [`ApiError`] into its own error (`crate::error`), which answers
//! it as a 400 `invalid_request_error` naming the field.

/// A request that is well-formed JSON but cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `param`: the field at fault, as a path (`messages.0.content`).
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError::InvalidRequest { message: message.into(), param: param.map(str::to_owned) }
    }
}
