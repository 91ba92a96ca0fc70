//! The listener: accepts TCP connections (TCP_NODELAY), optionally wraps
//! them in TLS (rustls, ALPN h2 and http/1.1), and serves HTTP/1.1 and
//! HTTP/2 on each with `ingress::handle`. Shuts down gracefully: stops
//! accepting, lets open connections finish for a bounded time.
//!
//! Slow and idle clients are bounded here: at most `max_connections` are
//! served at once (more are closed as soon as accepted), the TLS handshake
//! has a deadline, and `client_io` keeps two more: a connection with no
//! request in progress must bring the next request's head within
//! `header_read_timeout` (HTTP/1 and HTTP/2 alike: idle keep-alive
//! connections, trickled heads and frames that start no request all end
//! there), and bytes a client leaves unread fail after `sse_send_timeout`.
//! Request bodies and each stream's chunks have their own deadlines, in
//! `ingress` and `proxy::relay`.

mod client_io;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use client_io::{ClientIo, Requests, Tracked};

use crate::gateway::{Gateway, TlsConfig};
use crate::ingress;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
}

pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
}

impl Server {
    /// Binds the configured address (port 0 picks a free one).
    pub async fn bind(gateway: Arc<Gateway>) -> Result<Server, ServeError> {
        let addr = gateway.config.server.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let tls = gateway.config.server.tls.as_ref().map(tls_acceptor).transpose()?;
        Ok(Server { listener, tls, gateway })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.gateway.config.server.listen)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then drains open connections for
    /// up to 10 s.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let config = &self.gateway.config.server;
        let header_read_timeout = config.header_read_timeout;
        let tls_handshake_timeout = config.tls_handshake_timeout;
        let send_timeout = config.sse_send_timeout;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Without a timer hyper ignores its header-read timeout.
        builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let connections = Arc::new(Semaphore::new(config.max_connections));
        crate::dashboard::spawn_sampler(&self.gateway);
        let mut refusing = false;
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                // At the cap: close at once rather than queue the client.
                if !refusing {
                    tracing::warn!(limit = config.max_connections, %peer, "at the connection limit; closing new connections");
                }
                refusing = true;
                drop(stream);
                continue;
            };
            refusing = false;
            let _ = stream.set_nodelay(true);
            let gateway = self.gateway.clone();
            let requests = Requests::new();
            let in_progress = requests.clone();
            let service = service_fn(move |req| {
                let gateway = gateway.clone();
                // In progress until its response body is done with.
                let request = in_progress.begin();
                async move { Ok::<_, Infallible>(ingress::handle(gateway, req).await.map(|b| Tracked::new(b, request))) }
            });
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let result = match tls {
                    None => {
                        let io = TokioIo::new(ClientIo::new(stream, requests, header_read_timeout, send_timeout));
                        watcher.watch(builder.serve_connection(io, service).into_owned()).await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(tls_handshake_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                let io = TokioIo::new(ClientIo::new(
                                    tls_stream,
                                    requests,
                                    header_read_timeout,
                                    send_timeout,
                                ));
                                watcher.watch(builder.serve_connection(io, service).into_owned()).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open after 10 s; closing them");
        }
    }
}

fn tls_acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, ServeError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", path.display())))
    };
    let cert_pem = read(&cfg.cert)?;
    let key_pem = read(&cfg.key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("bad certificate in {}: {e}", cfg.cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("no certificate in {}", cfg.cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServeError::Tls(format!("bad key in {}: {e}", cfg.key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("no private key in {}", cfg.key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
