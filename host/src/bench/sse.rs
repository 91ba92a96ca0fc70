//! Reads one response as it arrives: a whole chat completion (JSON), or an
//! OpenAI SSE stream, timing each content chunk. Hand-rolled rather than
//! `eventsource-stream` because that crate drops SSE comments, and Sluice
//! reports a stream's cost in a final `: x-sluice-cost-usd=N` comment.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

/// What a response said, once read.
#[derive(Debug, Default)]
pub struct StreamFacts {
    pub prompt_tokens: u64,
    /// From `usage`, else counted in the text.
    pub output_tokens: u64,
    /// Streams: when the first content arrived.
    pub ttft: Option<Duration>,
    /// Streams: gaps between content chunks, µs.
    pub itl_us: Vec<u32>,
    pub cost_usd: Option<f64>,
    pub model: Option<String>,
    /// The answer's text.
    pub text: String,
    /// Why the response does not count as a success, despite a 2xx status.
    pub error: Option<String>,
    /// The start of a non-stream body, for error messages.
    head: String,
}

impl StreamFacts {
    /// The error message of an error body (`{"error":{"message":..}}`), else its start.
    pub fn error_text(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.head)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.head.chars().take(200).collect())
    }
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    delta: Option<Message<'a>>,
}

/// A chat completion or one stream chunk: only the fields the figures need.
#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Feeds on a response body's bytes; `finish` gives the facts.
pub struct ResponseReader {
    stream: bool,
    buf: Vec<u8>,
    facts: StreamFacts,
    last_content: Option<Duration>,
    content_chunks: u64,
    usage_seen: bool,
    done: bool,
}

impl ResponseReader {
    /// `stream`: the body is SSE. The answer's text is always kept: it is
    /// needed to count tokens when no usage is reported, and to grade answers.
    pub fn new(stream: bool) -> ResponseReader {
        ResponseReader {
            stream,
            buf: Vec::new(),
            facts: StreamFacts::default(),
            last_content: None,
            content_chunks: 0,
            usage_seen: false,
            done: false,
        }
    }

    /// Takes the next bytes, which arrived `at` after the request was sent.
    pub fn push(&mut self, data: &[u8], at: Duration) {
        self.buf.extend_from_slice(data);
        if !self.stream {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        while let Some(n) = memchr(b'\n', &buf[start..]) {
            let line = &buf[start..start + n];
            self.line(line.strip_suffix(b"\r").unwrap_or(line), at);
            start += n + 1;
        }
        buf.drain(..start);
        self.buf = buf;
    }

    fn line(&mut self, line: &[u8], at: Duration) {
        if let Some(comment) = line.strip_prefix(b":") {
            let comment = String::from_utf8_lossy(comment);
            if let Some(cost) = comment.trim().strip_prefix("x-sluice-cost-usd=") {
                self.facts.cost_usd = cost.trim().parse().ok();
            }
            return;
        }
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let chunk: Completion = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                self.facts.error.get_or_insert_with(|| format!("a stream chunk is not JSON: {e}"));
                return;
            }
        };
        if let Some(error) = chunk.error {
            let message = error.get("message").and_then(|m| m.as_str()).map_or(error.to_string(), str::to_owned);
            self.facts.error.get_or_insert(format!("stream error: {message}"));
            return;
        }
        if self.facts.model.is_none() {
            self.facts.model = chunk.model.map(Cow::into_owned);
        }
        if let Some(usage) = chunk.usage {
            self.usage_seen = true;
            self.facts.prompt_tokens = usage.prompt_tokens;
            self.facts.output_tokens = usage.completion_tokens;
        }
        let content = chunk.choices.into_iter().next().and_then(|c| c.delta).and_then(|d| d.content);
        if let Some(content) = content.filter(|c| !c.is_empty()) {
            self.facts.text.push_str(&content);
            self.content_chunks += 1;
            match self.last_content {
                None => self.facts.ttft = Some(at),
                Some(last) => self.facts.itl_us.push(at.saturating_sub(last).as_micros() as u32),
            }
            self.last_content = Some(at);
        }
    }

    pub fn finish(mut self) -> StreamFacts {
        if self.stream {
            if !self.done && self.facts.error.is_none() {
                self.facts.error = Some("the stream ended before `data: [DONE]`".into());
            }
        } else {
            self.facts.head = String::from_utf8_lossy(&self.buf[..self.buf.len().min(1024)]).into_owned();
            match serde_json::from_slice::<Completion>(&self.buf) {
                Ok(c) => {
                    self.facts.model = c.model.map(Cow::into_owned);
                    if let Some(text) = c.choices.into_iter().next().and_then(|c| c.message).and_then(|m| m.content) {
                        self.facts.text = text.into_owned();
                    }
                    if let Some(usage) = c.usage {
                        self.usage_seen = true;
                        self.facts.prompt_tokens = usage.prompt_tokens;
                        self.facts.output_tokens = usage.completion_tokens;
                    }
                }
                Err(e) => self.facts.error = Some(format!("the response is not a chat completion: {e}")),
            }
        }
        if !self.usage_seen {
            self.facts.output_tokens = crate::accounting::count_tokens(&self.facts.text);
        }
        self.facts
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}
