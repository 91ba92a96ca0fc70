//! TLS: clients reach Sluice over HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with a
//! generated certificate, and Sluice reaches an HTTPS upstream that trusts
//! only that certificate.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::gateway::{GatewayConfig, TlsConfig};
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::{Client, MockUpstream, TestGateway};

struct Cert {
    _dir: tempfile::TempDir,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn generate() -> Cert {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    Cert { der: certified.cert.der().clone(), _dir: dir, cert_path, key_path }
}

async fn tls_gateway(mock: &MockUpstream, cert: &Cert) -> TestGateway {
    let mut config = Config::default().with_upstream(&mock.base_url(), UpstreamKind::OpenAi, None);
    config.gateway.server.tls = Some(TlsConfig { cert: cert.cert_path.clone(), key: cert.key_path.clone() });
    TestGateway::start(config).await
}

#[tokio::test]
async fn https_round_trip_over_h2_and_http1() {
    let mock = MockUpstream::start().await;
    let cert = generate();
    let gateway = tls_gateway(&mock, &cert).await;
    assert!(gateway.url("/").starts_with("https://"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("trust the test certificate");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    for (h2, version) in [(true, http::Version::HTTP_2), (false, http::Version::HTTP_11)] {
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls.clone()).https_only();
        let connector = if h2 { builder.enable_http2().build() } else { builder.enable_http1().build() };
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(h2)
            .build::<_, Full<Bytes>>(connector);
        let url = format!("https://localhost:{}/v1/chat/completions", gateway.addr.port());
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "secure"}]}).to_string();
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let response = client.request(req).await.expect("TLS request");
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], "echo: secure");
    }
}

#[tokio::test]
async fn https_upstream_with_an_extra_ca() {
    let mock = MockUpstream::start().await;
    let cert = generate();
    let secure = tls_gateway(&mock, &cert).await;

    let mut upstream =
        UpstreamConfig::new("secure", UpstreamKind::OpenAi, &format!("https://localhost:{}/v1", secure.addr.port()));
    upstream.passthrough = true;
    upstream.ca_cert = Some(cert.cert_path.clone());
    let config = Config {
        gateway: GatewayConfig { upstreams: vec![upstream], ..GatewayConfig::default() },
        ..Config::default()
    };
    let front = TestGateway::start(config).await;
    let reply = Client::new()
        .post_json(
            &front.url("/v1/chat/completions"),
            &json!({"model": "m", "messages": [{"role": "user", "content": "chained"}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "echo: chained");
    assert_eq!(reply.header("x-sluice-upstream"), Some("secure"));

    // Without the CA the same upstream is refused: its certificate is untrusted.
    let mut upstream =
        UpstreamConfig::new("untrusted", UpstreamKind::OpenAi, &format!("https://localhost:{}/v1", secure.addr.port()));
    upstream.passthrough = true;
    let config = Config {
        gateway: GatewayConfig { upstreams: vec![upstream], ..GatewayConfig::default() },
        ..Config::default()
    };
    let front = TestGateway::start(config).await;
    let reply = Client::new()
        .post_json(
            &front.url("/v1/chat/completions"),
            &json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(reply.status, 502);
}
