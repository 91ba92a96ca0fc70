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

/// Tokens of one message: its text by the host's tokenizer, plus framing.
fn tokens(m: &Message) -> u32 {
    host::count_tokens(&m.content) + 4
}

fn rewritable(m: &Message) -> bool {
    !m.has_non_text && m.role != Role::Tool
}

impl Guest for Compressor {
    fn compress(request: ChatRequest) -> Result<CompressOutcome, String> {
        let min_chars = cfg_u32("min_paragraph_chars", 40) as usize;
        let last = request.messages.len().saturating_sub(1);
        let mut seen: Vec<String> = Vec::new();
        let mut dropped_paragraphs = 0;
        let mut before = 0;
        // Each kept message with its token count: every text is counted
        // once, and again only if it changed.
        let mut messages: Vec<(Message, u32)> = Vec::with_capacity(request.messages.len());
        for (i, mut m) in request.messages.into_iter().enumerate() {
            let mut count = tokens(&m);
            before += count;
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
                let content = kept.join("\n\n");
                if content.is_empty() && i != last && m.role != Role::System {
                    continue;
                }
                if content != m.content {
                    m.content = content;
                    count = tokens(&m);
                }
            }
            messages.push((m, count));
        }

        let budget = cfg_u32("max_prompt_tokens", 0);
        let mut total: u32 = messages.iter().map(|(_, t)| t).sum();
        let mut dropped_turns = 0;
        while budget > 0 && total > budget {
            // The oldest message that is neither a system message nor the last.
            let Some(pos) = messages
                .iter()
                .enumerate()
                .position(|(i, (m, _))| m.role != Role::System && i + 1 < messages.len())
            else {
                break;
            };
            total -= messages.remove(pos).1;
            dropped_turns += 1;
            // Tool results answer the removed turn: drop them with it.
            while pos + 1 < messages.len() && messages[pos].0.role == Role::Tool {
                total -= messages.remove(pos).1;
            }
        }

        let note =
            format!("{dropped_paragraphs} duplicate paragraphs, {dropped_turns} old turns dropped");
        let messages = messages.into_iter().map(|(m, _)| m).collect();
        Ok(CompressOutcome { messages, tokens_saved: before.saturating_sub(total), note })
    }
}

export!(Compressor);
