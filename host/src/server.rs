//! The listener: accepts TCP connections (TCP_NODELAY), optionally wraps
//! them in TLS (rustls, ALPN h2 and http/1.1), and serves HTTP/1.1 and
//! HTTP/2 on each with `ingress::handle`. Shuts down gracefully: stops
//! accepting, lets open connections finish for a bounded time.
//!
//! Slow and idle clients are bounded here: at most `max_connections` are
//! served at once (more are closed as soon as accepted), the TLS handshake
//! has a deadline, and so do a connection's first bytes and each HTTP/1
//! request head (`header_read_timeout`), and bytes a client leaves unread
//! (`sse_send_timeout`). Request bodies and each stream's chunks have their
//! own deadlines, in `ingress` and `proxy::relay`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

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
            let service = service_fn(move |req| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(ingress::handle(gateway, req).await) }
            });
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let result = match tls {
                    None => {
                        let io = TokioIo::new(ClientIo::new(stream, header_read_timeout, send_timeout));
                        watcher.watch(builder.serve_connection(io, service).into_owned()).await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(tls_handshake_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                let io = TokioIo::new(ClientIo::new(tls_stream, header_read_timeout, send_timeout));
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

/// A client connection with two deadlines hyper does not keep itself:
///
/// - its opening: until the client has sent [`OPENING_BYTES`] or the gateway
///   has answered, a read that waits past `opening` fails. This closes
///   connections that send nothing, or trickle the bytes hyper reads to
///   choose HTTP/1 or HTTP/2 (hyper's header-read timeout starts after).
/// - a stalled write: bytes the client leaves unread for `send` fail the
///   write, and hyper drops the connection with whatever it was sending (a
///   client that stops reading a stream would otherwise hold it forever).
struct ClientIo<I> {
    io: I,
    opening: Option<Pin<Box<Sleep>>>,
    received: usize,
    send: Duration,
    /// Set while a write waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

/// The length of the HTTP/2 connection preface: every request's opening,
/// HTTP/1 or HTTP/2, is at least this long.
const OPENING_BYTES: usize = 24;

impl<I> ClientIo<I> {
    fn new(io: I, opening: Duration, send: Duration) -> Self {
        ClientIo { io, opening: Some(Box::pin(tokio::time::sleep(opening))), received: 0, send, stalled: None }
    }

    /// Passes on a write's outcome; a write pending for longer than `send`
    /// becomes an error.
    fn write_outcome<T>(&mut self, cx: &mut Context<'_>, outcome: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let send = self.send;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(send)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ClientIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.received += buf.filled().len() - before;
                if this.received >= OPENING_BYTES {
                    this.opening = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.opening.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent no request in time")))
                }
                _ => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.opening = None;
        let outcome = Pin::new(&mut self.io).poll_write(cx, buf);
        self.write_outcome(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.opening = None;
        let outcome = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.write_outcome(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.io).poll_flush(cx);
        self.write_outcome(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.io).poll_shutdown(cx);
        self.write_outcome(cx, outcome)
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
