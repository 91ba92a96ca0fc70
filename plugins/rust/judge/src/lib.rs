//! Example judge plugin: flags empty, truncated, refused, repetitive and
//! (when JSON was asked for) invalid-JSON answers.
//!
//! It does not call a model: every check is a cheap text heuristic, so it runs
//! in microseconds. The Python judge in `plugins/python/judge` implements the
//! same rules and passes the same tests.

wit_bindgen::generate!({ world: "judge", path: "../../../wit" });

use exports::sluice::plugin::judging::{Guest, Verdict};
use sluice::plugin::host;
use sluice::plugin::types::{ChatRequest, ChatResponse};

/// Phrases that open a refusal (compared lowercased, with `’` as `'`).
const REFUSALS: &[&str] = &[
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to",
    "i am unable to",
    "as an ai language model",
    "i won't be able to help",
];

struct Judge;

fn verdict(score: f32, pass: bool, reason: &str) -> Verdict {
    Verdict { score, pass, reason: reason.to_owned() }
}

impl Guest for Judge {
    fn judge(request: ChatRequest, response: ChatResponse) -> Result<Verdict, String> {
        let text = response.content.trim();
        if text.is_empty() && !response.has_tool_calls {
            return Ok(verdict(0.0, false, "empty"));
        }
        match response.finish_reason.as_deref() {
            Some("length") => return Ok(verdict(0.3, false, "truncated")),
            Some("content_filter") => return Ok(verdict(0.0, false, "content filtered")),
            _ => {}
        }
        if is_refusal(text) {
            return Ok(verdict(0.1, false, "refusal"));
        }
        if request.wants_json && !text.is_empty() && !is_json(text) {
            return Ok(verdict(0.2, false, "invalid json"));
        }
        if is_repetitive(text) {
            return Ok(verdict(0.2, false, "repetition"));
        }
        Ok(verdict(1.0, true, "ok"))
    }
}

/// Whether the first 200 characters contain a refusal phrase (built-in or
/// from the `extra_refusals` config value, `|`-separated).
fn is_refusal(text: &str) -> bool {
    let head: String = text.chars().take(200).collect::<String>().to_lowercase().replace('’', "'");
    let extra = host::config_get("extra_refusals").unwrap_or_default();
    let extra = extra.split('|').map(str::trim).filter(|p| !p.is_empty()).map(str::to_lowercase);
    REFUSALS.iter().map(|p| (*p).to_owned()).chain(extra).any(|p| head.contains(&p))
}

/// Whether the text (without a Markdown code fence around it) is valid JSON.
fn is_json(text: &str) -> bool {
    let mut body = text;
    if let Some(rest) = body.strip_prefix("```") {
        body = rest.split_once('\n').map_or("", |(_, b)| b);
        body = body.trim_end().strip_suffix("```").unwrap_or(body);
    }
    serde_json::from_str::<serde_json::Value>(body.trim()).is_ok()
}

/// Whether a sentence of 3+ words occurs 3+ times, or 30+ words use fewer
/// than 25% distinct words.
fn is_repetitive(text: &str) -> bool {
    let lower = text.to_lowercase();
    let mut counts: Vec<(String, u32)> = Vec::new();
    for piece in lower.split(['.', '!', '?', '\n']) {
        let words: Vec<&str> = piece.split_whitespace().collect();
        if words.len() < 3 {
            continue;
        }
        let key = words.join(" ");
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                *n += 1;
                if *n >= 3 {
                    return true;
                }
            }
            None => counts.push((key, 1)),
        }
    }
    let words: Vec<&str> = lower.split_whitespace().collect();
    if words.len() >= 30 {
        let mut distinct = words.clone();
        distinct.sort_unstable();
        distinct.dedup();
        return (distinct.len() as f64) < 0.25 * words.len() as f64;
    }
    false
}

export!(Judge);
