//! A client connection with the deadlines hyper does not keep itself, for
//! HTTP/1 and HTTP/2 alike:
//!
//! - idle: while no request is in progress on the connection, the client has
//!   `idle` to bring the next one (its whole head), however many bytes it
//!   trickles meanwhile; then reads fail and hyper closes the connection.
//!   This ends connections that send nothing, trickle a head (HTTP/1's own
//!   header timeout would too) or an HTTP/2 `HEADERS` frame, keep an HTTP/2
//!   connection open with pings and settings alone, or sit idle between
//!   keep-alive requests. A request is in progress from the moment hyper
//!   hands it over until its response body is done with ([`Tracked`]).
//! - a stalled write: bytes the client leaves unread for `send` fail the
//!   write, and hyper drops the connection with whatever it was sending (a
//!   client that stops reading a stream would otherwise hold it forever).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::body::Body;

/// The requests of one connection: how many began, how many are in progress.
#[derive(Default)]
pub struct Requests {
    begun: AtomicU64,
    open: AtomicUsize,
}

impl Requests {
    pub fn new() -> Arc<Requests> {
        Arc::new(Requests::default())
    }

    /// A request begins; it is in progress until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InProgress {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        InProgress(self.clone())
    }
}

/// One request in progress.
pub struct InProgress(Arc<Requests>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in progress until it is dropped
/// (sent, or abandoned by the client).
pub struct Tracked {
    body: Body,
    _request: InProgress,
}

impl Tracked {
    pub fn new(body: Body, request: InProgress) -> Tracked {
        Tracked { body, _request: request }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's side of one connection, with the idle and stalled-write
/// deadlines.
pub struct ClientIo<I> {
    io: I,
    requests: Arc<Requests>,
    idle_limit: Duration,
    /// Armed while no request is in progress; when it fires, reads fail.
    idle: Option<Pin<Box<Sleep>>>,
    /// `requests.begun` when `idle` was armed: a request that began and
    /// ended since starts a new idle period.
    begun: u64,
    send: Duration,
    /// Set while a write waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> ClientIo<I> {
    pub fn new(io: I, requests: Arc<Requests>, idle: Duration, send: Duration) -> Self {
        ClientIo { io, requests, idle_limit: idle, idle: None, begun: 0, send, stalled: None }
    }

    /// Whether the connection has been idle (no request in progress) for
    /// `idle_limit`; arms, re-arms or disarms the deadline as it goes.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.requests.open.load(Ordering::Relaxed) > 0 {
            self.idle = None;
            return false;
        }
        let begun = self.requests.begun.load(Ordering::Relaxed);
        if self.idle.is_none() || begun != self.begun {
            self.begun = begun;
            self.idle = Some(Box::pin(tokio::time::sleep(self.idle_limit)));
        }
        self.idle.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready())
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
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending if this.idle_expired(cx) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request came in time")))
            }
            outcome => outcome,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.io).poll_write(cx, buf);
        self.write_outcome(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
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
