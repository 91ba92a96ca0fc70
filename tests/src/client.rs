//! A small HTTP client for tests and benchmarks: JSON requests, whole or
//! streamed responses, over one pooled hyper client.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        Client { inner: HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(http) }
    }

    fn request(method: Method, url: &str, body: Bytes, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().method(method).uri(url).header("content-type", "application/json");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(Full::new(body)).expect("valid request")
    }

    /// Sends a request and returns the response with its body still coming.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> http::Response<Incoming> {
        self.inner.request(Self::request(method, url, body, headers)).await.expect("request reaches the server")
    }

    /// Sends a request and reads the whole response.
    pub async fn call(&self, method: Method, url: &str, body: Bytes, headers: &[(&str, &str)]) -> Reply {
        let response = self.send(method, url, body, headers).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> Reply {
        self.call(Method::POST, url, Bytes::from(body.to_string()), &[]).await
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.call(Method::GET, url, Bytes::new(), &[]).await
    }
}
