//! Anthropic Messages API upstreams: internal requests are translated to
//! `POST /messages` and the answers (whole or streamed) back to the internal
//! shape.

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value};

use super::caller::Caller;
use super::config::UpstreamConfig;
use super::http::{
    HttpClient, MAX_RESPONSE, credential, model_list, next_event, protocol, read_body, send, sse_events,
};
use super::reply::{ChatReply, ChunkEvent, Slot, unix_now};
use crate::api::anthropic::{MessagesRequest, MessagesResponse, response_to_chat};
use crate::api::anthropic_stream::{AnthropicDecoder, Decoded};
use crate::api::chat::{ChatChunk, ChatRequest};
use crate::error::{ApiFlavor, GatewayError};

fn request(
    cfg: &UpstreamConfig,
    method: http::Method,
    path: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{}{path}", cfg.base_url))
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("anthropic-version", cfg.anthropic_version.as_str());
    if let Some(key) = &cfg.api_key {
        builder = builder.header("x-api-key", credential(cfg, key)?);
    }
    builder.body(Full::new(body)).map_err(|e| GatewayError::Internal(format!("building the upstream request: {e}")))
}

pub async fn chat(
    client: &HttpClient,
    cfg: &UpstreamConfig,
    req: &ChatRequest,
    caller: &Caller,
    permit: Slot,
) -> Result<ChatReply, GatewayError> {
    let body = MessagesRequest::from_chat(req, &req.model, cfg.default_max_tokens)?;
    let body = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + cfg.total_timeout;
    let mut http_req = request(cfg, http::Method::POST, "/messages", body.into())?;
    caller.add_trace_header(http_req.headers_mut());
    let response = send(client, &cfg.name, ApiFlavor::Anthropic, http_req, cfg.first_byte_timeout).await?;
    if !req.stream {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        let raw = read_body(&cfg.name, response.into_body(), MAX_RESPONSE, within).await?;
        drop(permit);
        let parsed: MessagesResponse =
            serde_json::from_slice(&raw).map_err(|e| protocol(cfg, format!("not a Messages API response: {e}")))?;
        return Ok(ChatReply::Complete { response: response_to_chat(parsed, unix_now()), raw: None });
    }
    let upstream = cfg.clone();
    let stream = async_stream::stream! {
        let _permit = permit;
        let mut events = std::pin::pin!(sse_events(response.into_body().into_data_stream()));
        let mut decoder = AnthropicDecoder::new(unix_now());
        let mut last: Option<ChatChunk> = None;
        loop {
            let event = match next_event(&mut events, deadline, &upstream).await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    yield Err(protocol(&upstream, "the stream ended before message_stop"));
                    break;
                }
                Err(e) => {
                    yield Err(e);
                    break;
                }
            };
            let Ok(data) = serde_json::from_str::<Value>(&event.data) else { continue };
            match decoder.event(&data) {
                Decoded::Chunk(chunk) => {
                    last = Some((*chunk).clone());
                    yield Ok(ChunkEvent { chunk: *chunk, raw: None });
                }
                Decoded::Done(usage) => {
                    if let Some(mut chunk) = last.take() {
                        chunk.choices.clear();
                        chunk.usage = Some(usage);
                        chunk.extra = Map::new();
                        yield Ok(ChunkEvent { chunk, raw: None });
                    }
                    break;
                }
                Decoded::Error(message) => {
                    yield Err(protocol(&upstream, message));
                    break;
                }
                Decoded::Nothing => {}
            }
        }
    };
    Ok(ChatReply::Stream(Box::pin(stream)))
}

pub async fn models(client: &HttpClient, cfg: &UpstreamConfig) -> Result<Vec<Value>, GatewayError> {
    let req = request(cfg, http::Method::GET, "/models", Bytes::new())?;
    model_list(client, cfg, ApiFlavor::Anthropic, req).await
}

#[cfg(test)]
mod tests {
    use super::super::config::UpstreamKind;
    use super::*;

    #[test]
    fn the_api_key_header_is_sensitive() {
        let mut cfg = UpstreamConfig::new("an", UpstreamKind::Anthropic, "http://127.0.0.1:9/v1");
        cfg.api_key = Some("sk-ant-secret".into());
        let req = request(&cfg, http::Method::POST, "/messages", Bytes::new()).expect("request");
        assert!(req.headers().get("x-api-key").expect("x-api-key").is_sensitive());
    }
}
