//! OpenAI-compatible upstreams (OpenAI, vLLM, SGLang, TGI, llama.cpp, ...):
//! requests go out in the internal shape, which is already theirs.

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::caller::Caller;
use super::config::UpstreamConfig;
use super::http::{
    HttpClient, MAX_RESPONSE, credential, model_list, next_event, protocol, read_body, send, sse_events,
};
use super::reply::{ChatReply, ChunkEvent, Slot};
use crate::api::chat::{ChatChunk, ChatRequest, ChatResponse};
use crate::error::{ApiFlavor, GatewayError};

fn post(cfg: &UpstreamConfig, path: &str, body: Bytes) -> Result<Request<Full<Bytes>>, GatewayError> {
    let mut builder = Request::post(format!("{}{path}", cfg.base_url))
        .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &cfg.api_key {
        builder = builder.header(header::AUTHORIZATION, credential(cfg, &format!("Bearer {key}"))?);
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
    let body = serde_json::to_vec(req).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + cfg.total_timeout;
    let mut http_req = post(cfg, "/chat/completions", body.into())?;
    caller.add_trace_header(http_req.headers_mut());
    let response = send(client, &cfg.name, ApiFlavor::OpenAi, http_req, cfg.first_byte_timeout).await?;
    if !req.stream {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        let raw = read_body(&cfg.name, response.into_body(), MAX_RESPONSE, within).await?;
        drop(permit);
        let parsed: ChatResponse =
            serde_json::from_slice(&raw).map_err(|e| protocol(cfg, format!("not a chat completion: {e}")))?;
        return Ok(ChatReply::Complete { response: parsed, raw: Some(raw) });
    }
    let upstream = cfg.clone();
    let stream = async_stream::stream! {
        let _permit = permit;
        let mut events = std::pin::pin!(sse_events(response.into_body().into_data_stream()));
        let mut finished = false;
        loop {
            let next = match next_event(&mut events, deadline, &upstream).await {
                Ok(next) => next,
                Err(e) => {
                    yield Err(e);
                    break;
                }
            };
            match next {
                None if finished => break,
                None => {
                    yield Err(protocol(&upstream, "the stream ended before it finished"));
                    break;
                }
                Some(event) if event.data == "[DONE]" => break,
                Some(event) if event.data.is_empty() => continue,
                Some(event) => match serde_json::from_str::<ChatChunk>(&event.data) {
                    Ok(chunk) => {
                        finished |= chunk.choices.iter().any(|c| c.finish_reason.is_some()) || chunk.usage.is_some();
                        yield Ok(ChunkEvent { chunk, raw: Some(Bytes::from(event.data)) });
                    }
                    Err(e) => {
                        let message = serde_json::from_str::<Value>(&event.data)
                            .ok()
                            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
                            .unwrap_or_else(|| format!("not a chat completion chunk: {e}"));
                        yield Err(protocol(&upstream, message));
                        break;
                    }
                },
            }
        }
    };
    Ok(ChatReply::Stream(Box::pin(stream)))
}

pub async fn embeddings(client: &HttpClient, cfg: &UpstreamConfig, body: Bytes) -> Result<Bytes, GatewayError> {
    let response =
        send(client, &cfg.name, ApiFlavor::OpenAi, post(cfg, "/embeddings", body)?, cfg.first_byte_timeout).await?;
    read_body(&cfg.name, response.into_body(), MAX_RESPONSE, cfg.total_timeout).await
}

pub async fn models(client: &HttpClient, cfg: &UpstreamConfig) -> Result<Vec<Value>, GatewayError> {
    let mut builder = Request::get(format!("{}/models", cfg.base_url));
    if let Some(key) = &cfg.api_key {
        builder = builder.header(header::AUTHORIZATION, credential(cfg, &format!("Bearer {key}"))?);
    }
    let req = builder.body(Full::new(Bytes::new())).map_err(|e| GatewayError::Internal(e.to_string()))?;
    model_list(client, cfg, ApiFlavor::OpenAi, req).await
}

#[cfg(test)]
mod tests {
    use super::super::config::UpstreamKind;
    use super::*;

    #[test]
    fn the_api_key_header_is_sensitive() {
        let mut cfg = UpstreamConfig::new("oa", UpstreamKind::OpenAi, "http://127.0.0.1:9/v1");
        cfg.api_key = Some("sk-secret".into());
        let req = post(&cfg, "/chat/completions", Bytes::new()).expect("request");
        let auth = req.headers().get(header::AUTHORIZATION).expect("authorization");
        assert!(auth.is_sensitive());
        assert!(!format!("{:?}", req.headers()).contains("sk-secret"));
        cfg.api_key = Some("bad\nkey".into());
        let e = post(&cfg, "/chat/completions", Bytes::new()).expect_err("not a header value");
        assert!(!e.to_string().contains("bad"), "{e}");
    }
}
