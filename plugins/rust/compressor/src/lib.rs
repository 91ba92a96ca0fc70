//! Example compressor plugin: normalises whitespace, drops paragraphs that
//! already appeared earlier in the conversation, and trims the oldest turns
//! until the prompt fits a token budget (counted by the host's tokenizer).
//!
//! It never rewrites messages that carry more than text (tool calls, images)
//! or tool results, never drops system messages or the last message, and
//! keeps each message's `index` so the host preserves what it cannot see.
//! Config (`compressor.toml`): `max_prompt_tokens` (0 = no budget),
//! `min_paragraph_chars` (shorter paragraphs are never deduplicated).

wit_bindgen::generate!({ world: "compressor", path: "../../../wit" });

use exports::sluice::plugin::compression::{CompressOutcome, Guest};
use sluice::plugin::host;
use sluice::plugin::types::{ChatRequest, Message, Role};

struct Compressor;

fn cfg_u32(key: &str, default: u32) -> u32 {
    host::config_get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Collapse runs of spaces and tabs, strip trailing spaces, and allow at most
/// one blank line between paragraphs.
fn squeeze_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.trim().lines() {
        let line: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line.join(" "));
    }
    out
}

fn tokens(messages: &[Message]) -> u32 {
    messages.iter().map(|m| host::count_tokens(&m.content) + 4).sum()
}

fn rewritable(m: &Message) -> bool {
    !m.has_non_text && m.role != Role::Tool
}

impl Guest for Compressor {
    fn compress(request: ChatRequest) -> Result<CompressOutcome, String> {
        let before = tokens(&request.messages);
        let min_chars = cfg_u32("min_paragraph_chars", 40) as usize;
        let last = request.messages.len().saturating_sub(1);
        let mut seen: Vec<String> = Vec::new();
        let mut dropped_paragraphs = 0;
        let mut messages = Vec::with_capacity(request.messages.len());
        for (i, mut m) in request.messages.into_iter().enumerate() {
            if rewritable(&m) {
                let squeezed = squeeze_whitespace(&m.content);
                let mut kept: Vec<&str> = Vec::new();
                for para in squeezed.split("\n\n") {
                    let key = para.trim().to_lowercase();
                    if key.chars().count() >= min_chars && seen.contains(&key) {
                        dropped_paragraphs += 1;
                        continue;
                    }
                    seen.push(key);
                    kept.push(para);
                }
                m.content = kept.join("\n\n");
                if m.content.is_empty() && i != last && m.role != Role::System {
                    continue;
                }
            }
            messages.push(m);
        }

        let budget = cfg_u32("max_prompt_tokens", 0);
        let mut dropped_turns = 0;
        while budget > 0 && tokens(&messages) > budget {
            // The oldest message that is neither a system message nor the last.
            let Some(pos) = messages
                .iter()
                .enumerate()
                .position(|(i, m)| m.role != Role::System && i + 1 < messages.len())
            else {
                break;
            };
            messages.remove(pos);
            dropped_turns += 1;
            // Tool results answer the removed turn: drop them with it.
            while pos + 1 < messages.len() && messages[pos].role == Role::Tool {
                messages.remove(pos);
            }
        }

        let after = tokens(&messages);
        let note =
            format!("{dropped_paragraphs} duplicate paragraphs, {dropped_turns} old turns dropped");
        Ok(CompressOutcome { messages, tokens_saved: before.saturating_sub(after), note })
    }
}

export!(Compressor);
