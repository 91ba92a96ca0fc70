//! Slow, idle and hostile connections: a client that sends half a request
//! head, never finishes its TLS handshake, never finishes its body, stops
//! reading its stream, or is one connection too many gets its connection
//! closed (or a 408) instead of holding the gateway's resources; slowloris
//! clients do not keep normal requests from being served.
//!
//! Every deadline here is a small configured timeout; the `GUARD` bounds
//! only keep a broken gateway from hanging the test.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::gateway::TlsConfig;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::{Client, MockUpstream, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::Setup;

/// The hang guard: far longer than any deadline configured below.
const GUARD: Duration = Duration::from_secs(30);

/// Reads until the gateway closes the connection; the bytes it sent before
/// closing. Panics if it is still open after [`GUARD`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(GUARD, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    assert!(read.await.is_ok(), "the gateway left the connection open; it sent {:?}", String::from_utf8_lossy(&out));
    out
}

/// The status and JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    // A chunked body: the JSON is the line that starts with `{`.
    let json = body.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON body: {text}"));
    (status, serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")))
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_timeout() {
    let s = Setup::with(|c| c.gateway.server.header_read_timeout = Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(s.gateway.addr).await.expect("connect");
    // Past the HTTP/2 preface's length, so that hyper's own header timeout
    // is what closes it.
    stream.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: slu").await.expect("write");
    let sent = read_until_closed(&mut stream).await;
    assert!(!sent.starts_with(b"HTTP/1.1 2"), "{}", String::from_utf8_lossy(&sent));

    // A head sent slowly but in time is still served.
    let mut stream = TcpStream::connect(s.gateway.addr).await.expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"Host: sluice\r\nConnection: close\r\n\r\n").await.expect("write");
    let (status, body) = parse_response(&read_until_closed(&mut stream).await);
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let s = Setup::with(|c| c.gateway.server.header_read_timeout = Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(s.gateway.addr).await.expect("connect");
    assert!(read_until_closed(&mut stream).await.is_empty());
}

#[tokio::test]
async fn a_tls_client_that_never_says_hello_is_closed() {
    let mock = MockUpstream::start().await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut config = Config::default().with_upstream(&mock.base_url(), UpstreamKind::OpenAi, None);
    config.gateway.server.tls = Some(TlsConfig { cert, key });
    config.gateway.server.tls_handshake_timeout = Duration::from_millis(300);
    let gateway = TestGateway::start(config).await;
    assert!(gateway.tls);

    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    assert!(read_until_closed(&mut stream).await.is_empty());
}

/// Sends a request head for a body of `length` bytes and `body` of it;
/// returns the connection.
async fn start_post(gateway: &TestGateway, path: &str, length: usize, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    stream
}

#[tokio::test]
async fn a_body_that_stops_coming_gets_408() {
    let s = Setup::with(|c| c.gateway.server.body_read_timeout = Duration::from_millis(300)).await;
    let mut stream = start_post(&s.gateway, "/v1/chat/completions", 200, br#"{"model": "m", "mess"#).await;
    let (status, body) = parse_response(&read_until_closed(&mut stream).await);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(s.mock.requests().len(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn a_trickled_body_gets_408_in_the_anthropic_shape() {
    let s = Setup::with(|c| c.gateway.server.body_read_timeout = Duration::from_millis(500)).await;
    let stream = start_post(&s.gateway, "/v1/messages", 100_000, b"{").await;
    let (mut reader, mut writer) = stream.into_split();
    // One byte every 20 ms: the body keeps coming, but never in time.
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(GUARD, reader.read_to_end(&mut raw)).await;
    trickle.abort();
    assert!(read.is_ok(), "no answer: {}", String::from_utf8_lossy(&raw));
    let (status, body) = parse_response(&raw);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}

/// The value of `sluice_upstream_in_flight` for `upstream` in `/metrics`.
async fn in_flight(gateway: &TestGateway, upstream: &str) -> Option<f64> {
    let text = Client::new().get(&gateway.url("/metrics")).await.body;
    let text = String::from_utf8_lossy(&text);
    let prefix = format!("sluice_upstream_in_flight{{upstream=\"{upstream}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_streaming_client_that_stops_reading_frees_its_upstream_slot() {
    let mock = MockUpstream::start().await;
    let mut config = Config::default();
    let mut upstream = UpstreamConfig::new("stops-reading", UpstreamKind::OpenAi, &mock.base_url());
    upstream.passthrough = true;
    upstream.max_in_flight = 1;
    config.gateway.upstreams = vec![upstream];
    config.gateway.server.sse_send_timeout = Duration::from_millis(300);
    // Longer than the hang guard: only the stalled write can close the
    // connection in time.
    config.gateway.server.header_read_timeout = Duration::from_secs(60);
    let gateway = TestGateway::start(config).await;

    // A stream of 80 000 chunks (some 14 MB, more than the sockets on the
    // way can hold) to a client with a small receive buffer that never reads.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let mut stuck = socket.connect(gateway.addr).await.expect("connect");
    let words = vec!["w"; 80_000].join(" ");
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": words}]});
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stuck.write_all(head.as_bytes()).await.expect("write head");
    stuck.write_all(body.as_bytes()).await.expect("write body");

    assert!(
        eventually_async(|| async { in_flight(&gateway, "stops-reading").await == Some(0.0) }).await,
        "the upstream request still holds its slot: {:?}",
        in_flight(&gateway, "stops-reading").await
    );
    // The only slot is free again: a second request is served.
    let reply = Client::new()
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &json!({"model": "m", "messages": [{"role": "user", "content": "next"}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let (started, completed, dropped) = mock.stream_counts();
    assert_eq!((started, completed + dropped), (1, 1), "the upstream stream has ended");
    // And the connection that stopped reading is closed.
    read_until_closed(&mut stuck).await;
}

#[tokio::test]
async fn an_http2_stream_left_unread_frees_its_upstream_slot() {
    let mock = MockUpstream::start().await;
    let mut config = Config::default();
    let mut upstream = UpstreamConfig::new("h2-unread", UpstreamKind::OpenAi, &mock.base_url());
    upstream.passthrough = true;
    upstream.max_in_flight = 1;
    config.gateway.upstreams = vec![upstream];
    config.gateway.server.sse_send_timeout = Duration::from_millis(300);
    let gateway = TestGateway::start(config).await;

    // Over HTTP/2 the connection stays busy (pings, other streams) while
    // this one stream's flow-control window closes: no socket ever stalls.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let words = vec!["w"; 80_000].join(" ");
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": words}]});
    let request = http::Request::post(gateway.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .expect("request");
    let unread = client.request(request).await.expect("response head");
    assert_eq!(unread.version(), http::Version::HTTP_2);
    assert_eq!(unread.status(), 200);

    assert!(
        eventually_async(|| async { in_flight(&gateway, "h2-unread").await == Some(0.0) }).await,
        "the upstream request still holds its slot: {:?}",
        in_flight(&gateway, "h2-unread").await
    );
    let (started, completed, dropped) = mock.stream_counts();
    assert_eq!((started, completed + dropped), (1, 1), "the upstream stream has ended");
    drop(unread);
}

/// An HTTP/2 frame header: length, type, flags, stream 0.
fn h2_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn an_http2_connection_that_only_pings_is_closed() {
    let s = Setup::with(|c| c.gateway.server.header_read_timeout = Duration::from_millis(300)).await;
    let stream = TcpStream::connect(s.gateway.addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    // The preface and settings, then a ping every 50 ms and never a request:
    // bytes keep coming, so only a deadline on requests can end it.
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(h2_frame(0x4, &[]));
    write.write_all(&opening).await.expect("preface");
    let pinger = tokio::spawn(async move {
        while write.write_all(&h2_frame(0x6, &[7; 8])).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = tokio::time::timeout(GUARD, async {
        let mut buf = [0u8; 1024];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    assert!(closed.await.is_ok(), "a pinging HTTP/2 connection with no request stayed open");
    pinger.abort();
}

#[tokio::test]
async fn an_http2_connection_stays_open_while_requests_come_and_closes_when_idle() {
    let s = Setup::with(|c| c.gateway.server.header_read_timeout = Duration::from_millis(300)).await;
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(s.gateway.addr).await.expect("connect"));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.expect("handshake");
    let mut connection = tokio::spawn(connection);
    let post = |model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        http::Request::post(s.gateway.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .expect("request")
    };
    // A request that takes longer than the idle deadline is in progress, not idle.
    let slow = sender.send_request(post("mock-slow800")).await.expect("a slow answer");
    assert_eq!(slow.status(), 200);
    // Requests 100 ms apart for longer than the deadline: never idle for long.
    for _ in 0..6 {
        let reply = sender.send_request(post("priced")).await.expect("an answer");
        assert_eq!(reply.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!connection.is_finished(), "a busy connection was closed");
    // Then idle: the gateway closes it.
    let ended = tokio::time::timeout(GUARD, &mut connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
}

/// Polls an async condition every 20 ms for up to [`GUARD`].
async fn eventually_async<F: std::future::Future<Output = bool>>(mut cond: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + GUARD;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// One `GET /health` on a fresh connection; its status, or `None` when the
/// connection was refused or closed without an answer.
async fn health_status(gateway: &TestGateway) -> Option<u16> {
    let mut stream = TcpStream::connect(gateway.addr).await.ok()?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut raw)).await.ok()?.ok()?;
    String::from_utf8_lossy(&raw).split(' ').nth(1)?.parse().ok()
}

#[tokio::test]
async fn connections_above_the_cap_are_closed() {
    let s = Setup::with(|c| {
        c.gateway.server.max_connections = 2;
        c.gateway.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(s.gateway.addr).await.expect("connect");
        stream.write_all(b"GET /hea").await.expect("write");
        held.push(stream);
    }
    let mut third = TcpStream::connect(s.gateway.addr).await.expect("connect");
    let _ = third.write_all(b"GET /health HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n").await;
    let sent = read_until_closed(&mut third).await;
    assert!(sent.is_empty(), "the third connection was served: {}", String::from_utf8_lossy(&sent));

    // Once one closes, a new connection is served again.
    drop(held.pop());
    assert!(eventually_async(|| async { health_status(&s.gateway).await == Some(200) }).await);
    drop(held);
}

/// Opens a connection and trickles a request head that never ends, one
/// byte every 100 ms; returns once the gateway has closed it.
async fn slowloris(addr: std::net::SocketAddr) {
    let Ok(stream) = TcpStream::connect(addr).await else { return };
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        if writer.write_all(b"GET /health HTTP/1.1\r\nHost: sluice\r\n").await.is_err() {
            return;
        }
        while writer.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 512];
    while let Ok(n) = reader.read(&mut buf).await
        && n > 0
    {}
    trickle.abort();
}

#[tokio::test]
async fn slowloris_clients_are_closed_while_normal_requests_are_served() {
    let s = Setup::with(|c| c.gateway.server.header_read_timeout = Duration::from_secs(2)).await;
    let addr = s.gateway.addr;
    let attackers: Vec<_> = (0..300).map(|_| tokio::spawn(slowloris(addr))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let client = Client::new();
    for i in 0..20 {
        let content = format!("normal {i}");
        let reply = client
            .post_json(
                &s.gateway.url("/v1/chat/completions"),
                &json!({"model": "m", "messages": [{"role": "user", "content": content}]}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["choices"][0]["message"]["content"], format!("echo: {content}"));
    }

    let closed = tokio::time::timeout(GUARD, futures_util::future::join_all(attackers)).await;
    assert!(closed.is_ok(), "slowloris connections were still open");
}
