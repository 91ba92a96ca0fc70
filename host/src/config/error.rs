//! [`ConfigError`]: what is wrong, with which key, in which file and on
//! which line; and the two helpers that find a line and a key from a byte
//! offset in the file's text.

/// A configuration error: what is wrong, with which key, where.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{location}: `{key}`: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub location: String,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// An error of a command-line flag (no file, no line).
    pub fn flag(flag: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: "command line".to_owned(),
            location: String::new(),
            key: flag.to_owned(),
            message: message.into(),
        }
    }
}

/// ":N" for the line holding byte `offset`.
pub(super) fn line_of(text: &str, offset: usize) -> String {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    format!(":{line}")
}

/// The key written on the line holding `offset`, for parse errors; `-`
/// when there is none (no offset, or a line such as `= 1` or a blank one).
/// A byte-order mark opening the file is not part of the first line's key.
pub(super) fn key_at(text: &str, offset: Option<usize>) -> String {
    let Some(offset) = offset else {
        return "-".to_owned();
    };
    let start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = line.split_once('=').map_or(line, |(key, _)| key).trim_start_matches('\u{feff}').trim();
    if key.is_empty() { "-".to_owned() } else { key.to_owned() }
}
