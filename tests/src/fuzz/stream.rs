//! Stream targets: SSE parsing and the Anthropic stream translator.
//!
//! `sse` reads arbitrary bytes as an upstream's event stream, the way the
//! gateway does (`sluice::upstream::http::sse_events`) and the way `sluice bench` does
//! (`sluice::bench::sse`), in several chunkings that must all read the same;
//! then feeds the events to the Anthropic decoder and the OpenAI chunk
//! parser, and what they give to the Anthropic encoder. `anthropic_stream`
//! reads lines of chat chunks, encodes them as Anthropic events, and decodes
//! those back: text, tool arguments, stop reason and usage come out as they
//! went in. Every encoder output is checked against the Messages API's event
//! grammar (`check_events`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Event;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use sluice::api::anthropic_stream::{AnthropicDecoder, AnthropicEncoder, Decoded};
use sluice::api::chat::{ChatChunk, Usage};
use sluice::bench::sse::ResponseReader;
use sluice::upstream::http::sse_events;

use super::{Rng, assert_json_close};

/// The model an encoder names when the chunks name none.
const MODEL: &str = "fuzz-model";

/// The events of a body that arrives in `chunks`, as the upstreams read them;
/// a parse error ends the list, as it ends the upstream's stream.
fn upstream_events(chunks: &[&[u8]]) -> Vec<Result<Event, String>> {
    let body = futures_util::stream::iter(chunks.iter().map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c))));
    let mut events = Vec::new();
    let mut stream = std::pin::pin!(sse_events(body));
    while let Some(next) = stream.next().now_or_never().expect("an in-memory stream is always ready") {
        match next {
            Ok(event) => events.push(Ok(event)),
            Err(e) => {
                events.push(Err(e.to_string()));
                break;
            }
        }
    }
    events
}

/// What `sluice bench` reads from a body that arrives in `chunks`.
fn bench_facts(chunks: &[&[u8]]) -> String {
    let mut reader = ResponseReader::new(true);
    for chunk in chunks {
        reader.push(chunk, Duration::ZERO);
    }
    format!("{:?}", reader.finish())
}

/// `data` cut into pieces of pseudo-random sizes up to `max`, drawn from the
/// data itself so that a run is reproducible.
fn chunked(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut rng = Rng::of(data);
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at((1 + rng.below(max)).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Arbitrary bytes as an upstream's SSE body.
pub fn sse(data: &[u8]) {
    let whole = [data];
    let events = upstream_events(&whole);
    let facts = bench_facts(&whole);
    // Small pieces split lines, CRLFs and UTF-8 sequences; both readers are
    // quadratic in a line's length when it comes a byte at a time, so long
    // inputs get larger pieces.
    let small = data.len() <= 1024;
    let mut chunkings = vec![chunked(data, if small { 3 } else { 64 }), chunked(data, 300)];
    if small {
        chunkings.push(data.chunks(1).collect());
    }
    for chunks in chunkings {
        assert_eq!(upstream_events(&chunks), events, "the gateway's reading depends on the chunking");
        assert_eq!(bench_facts(&chunks), facts, "the bench's reading depends on the chunking");
    }
    let events: Vec<Event> = events.into_iter().map_while(Result::ok).collect();
    anthropic_upstream(&events);
    openai_upstream(&events);
}

/// An Anthropic upstream's events: decoded to chat chunks (each a valid
/// chunk), re-encoded for an Anthropic client.
fn anthropic_upstream(events: &[Event]) {
    let mut decoder = AnthropicDecoder::new(0);
    let mut encoder = AnthropicEncoder::new(MODEL);
    let mut out = Vec::new();
    let mut tool_blocks = 0u64;
    for event in events {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else { continue };
        if data["type"] == "content_block_start" && data["content_block"]["type"] == "tool_use" {
            tool_blocks += 1;
        }
        match decoder.event(&data) {
            Decoded::Chunk(chunk) => {
                assert_chunk_reads_back(&chunk);
                for call in chunk.choices.iter().flat_map(|c| c.delta.tool_calls.iter().flatten()) {
                    assert!(u64::from(call.index) < tool_blocks, "tool call {} of {tool_blocks}", call.index);
                }
                out.extend(encoder.chunk(&chunk, 0));
            }
            Decoded::Done(usage) => {
                assert_eq!(usage.total_tokens, usage.prompt_tokens.saturating_add(usage.completion_tokens));
                out.extend(encoder.finish(usage, "msg_fuzz"));
                check_events(&out);
                return;
            }
            Decoded::Error(message) => {
                assert!(!message.is_empty(), "an empty stream error");
                return;
            }
            Decoded::Nothing => {}
        }
    }
}

/// An OpenAI upstream's events: chunks that parse are re-encoded for an
/// Anthropic client.
fn openai_upstream(events: &[Event]) {
    let mut encoder = AnthropicEncoder::new(MODEL);
    let mut out = Vec::new();
    let mut usage = None;
    for event in events {
        if event.data == "[DONE]" {
            break;
        }
        let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) else { continue };
        assert_chunk_reads_back(&chunk);
        usage = chunk.usage.or(usage);
        out.extend(encoder.chunk(&chunk, 7));
    }
    out.extend(encoder.finish(usage.unwrap_or_default(), "chatcmpl-fuzz"));
    check_events(&out);
}

fn assert_chunk_reads_back(chunk: &ChatChunk) {
    let read: ChatChunk = serde_json::from_slice(&serde_json::to_vec(chunk).expect("serialisable"))
        .unwrap_or_else(|e| panic!("a chunk does not parse once written: {e}"));
    assert_json_close(&read, chunk, "a chunk read back");
}

/// Checks an encoder's output against the Messages API's event grammar:
/// each event `event: NAME\ndata: JSON\n\n` with the JSON's `type` NAME;
/// `message_start`, `ping`, then blocks numbered from 0, each opened,
/// given deltas of its kind and closed, then `message_delta` and
/// `message_stop`. Returns the events' JSON.
fn check_events(events: &[Bytes]) -> Vec<Value> {
    #[derive(Debug, PartialEq)]
    enum State {
        Start,
        Started,
        Blocks,
        Delta,
        Stopped,
    }
    let mut state = State::Start;
    let mut open: Option<(u64, String)> = None;
    let mut next_block = 0u64;
    let mut values = Vec::new();
    for event in events {
        let text = std::str::from_utf8(event).expect("an event is UTF-8");
        let (name, json) = text
            .strip_prefix("event: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .and_then(|t| t.split_once("\ndata: "))
            .unwrap_or_else(|| panic!("not an SSE event: {text:?}"));
        assert!(!json.contains(['\n', '\r']) && !name.contains(['\n', '\r', ':']), "a broken event: {text:?}");
        let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {json}"));
        assert_eq!(v["type"], name, "{text:?}");
        match (name, &state) {
            ("message_start", State::Start) => state = State::Started,
            ("ping", State::Started) => state = State::Blocks,
            ("content_block_start", State::Blocks) if open.is_none() => {
                assert_eq!(v["index"], next_block, "blocks are numbered in order");
                let kind = v["content_block"]["type"].as_str().unwrap_or_default().to_owned();
                assert!(kind == "text" || kind == "tool_use", "block kind {kind}");
                open = Some((next_block, kind));
                next_block += 1;
            }
            ("content_block_delta", State::Blocks) => {
                let (index, kind) = open.as_ref().expect("a delta outside a block");
                assert_eq!(v["index"], *index, "a delta for another block");
                let expected = if kind == "text" { "text_delta" } else { "input_json_delta" };
                assert_eq!(v["delta"]["type"], expected, "a {kind} block's delta");
            }
            ("content_block_stop", State::Blocks) => {
                let (index, _) = open.take().expect("a stop outside a block");
                assert_eq!(v["index"], index, "a stop for another block");
            }
            ("message_delta", State::Blocks) if open.is_none() => {
                let reason = v["delta"]["stop_reason"].as_str().unwrap_or_default();
                assert!(["end_turn", "max_tokens", "tool_use"].contains(&reason), "stop reason {reason}");
                state = State::Delta;
            }
            ("message_stop", State::Delta) => state = State::Stopped,
            _ => panic!("`{name}` in state {state:?} (open block {open:?})"),
        }
        values.push(v);
    }
    assert_eq!(state, State::Stopped, "the stream does not end with message_stop");
    values
}

/// Lines of chat chunks through the Anthropic encoder and back through the
/// decoder: the text, the tool calls' arguments, the stop reason and the
/// usage come out as they went in.
pub fn anthropic_stream(data: &[u8]) {
    let chunks: Vec<ChatChunk> =
        data.split(|&b| b == b'\n').filter_map(|line| serde_json::from_slice::<ChatChunk>(line).ok()).collect();
    let hint = data.len() as u64;
    let mut encoder = AnthropicEncoder::new(MODEL);
    let mut out = Vec::new();
    let (mut text, mut args, mut finish, mut usage) = (String::new(), String::new(), None, None);
    for chunk in &chunks {
        out.extend(encoder.chunk(chunk, hint));
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
            for call in choice.delta.tool_calls.iter().flatten() {
                args.push_str(call.function.as_ref().and_then(|f| f.arguments.as_deref()).unwrap_or_default());
            }
            finish = choice.finish_reason.clone().or(finish);
        }
        usage = chunk.usage.or(usage);
    }
    let usage = usage.unwrap_or(Usage::new(hint, 0));
    out.extend(encoder.finish(usage, "chatcmpl-fuzz"));
    let values = check_events(&out);

    // The same events, as an Anthropic upstream's stream.
    let body: Vec<u8> = out.concat();
    let events = upstream_events(&[&body]);
    let mut decoder = AnthropicDecoder::new(0);
    let (mut text_out, mut args_out, mut finish_out, mut done, mut calls) =
        (String::new(), String::new(), None, None, Vec::new());
    for event in &events {
        let event = event.as_ref().expect("the encoder's events parse");
        let data: Value = serde_json::from_str(&event.data).expect("event data is JSON");
        match decoder.event(&data) {
            Decoded::Chunk(chunk) => {
                for choice in &chunk.choices {
                    text_out.push_str(choice.delta.content.as_deref().unwrap_or_default());
                    for call in choice.delta.tool_calls.iter().flatten() {
                        let function = call.function.clone().unwrap_or_default();
                        args_out.push_str(function.arguments.as_deref().unwrap_or_default());
                        if let Some(id) = &call.id {
                            calls.push((id.clone(), function.name.unwrap_or_default()));
                        }
                    }
                    finish_out = choice.finish_reason.clone().or(finish_out);
                }
            }
            Decoded::Done(usage) => done = Some(usage),
            Decoded::Error(message) => panic!("the encoder emitted an error: {message}"),
            Decoded::Nothing => {}
        }
    }
    assert_eq!(text_out, text, "text through the encoder and decoder");
    assert_eq!(args_out, args, "tool arguments through the encoder and decoder");
    let started: Vec<(String, String)> = values
        .iter()
        .filter(|v| v["type"] == "content_block_start" && v["content_block"]["type"] == "tool_use")
        .map(|v| {
            let field = |k: &str| v["content_block"][k].as_str().unwrap_or_default().to_owned();
            (field("id"), field("name"))
        })
        .collect();
    assert_eq!(calls, started, "tool calls through the decoder");
    let expected_finish = match finish.as_deref() {
        Some("length") => "length",
        Some("tool_calls" | "function_call") => "tool_calls",
        _ => "stop",
    };
    assert_eq!(finish_out.as_deref(), Some(expected_finish), "finish reason through the encoder and decoder");
    let prompt = if chunks.is_empty() { usage.prompt_tokens } else { hint };
    assert_eq!(done, Some(Usage::new(prompt, usage.completion_tokens)), "usage through the encoder and decoder");
}
