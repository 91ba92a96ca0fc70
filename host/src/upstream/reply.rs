//! What an upstream call gives back: a whole answer or a stream of chunks
//! ([`ChatReply`]), each chunk with the upstream's own bytes when they can be
//! forwarded as they are, and the in-flight [`Slot`] a call holds until its
//! answer (or stream) ends. Nothing here calls an upstream.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::OwnedSemaphorePermit;

use crate::api::chat::{ChatChunk, ChatResponse};
use crate::error::GatewayError;

/// One streamed chunk, with the upstream's own bytes when it spoke OpenAI so
/// they can be forwarded without re-encoding.
#[derive(Debug)]
pub struct ChunkEvent {
    pub chunk: ChatChunk,
    pub raw: Option<Bytes>,
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChunkEvent, GatewayError>> + Send>>;

/// What a chat call returns.
pub enum ChatReply {
    /// A whole response; `raw` holds the upstream's body when it can be
    /// forwarded verbatim to an OpenAI client.
    Complete { response: ChatResponse, raw: Option<Bytes> },
    /// Chunks as they arrive. The usage chunk (no choices, `usage` set) comes
    /// last when the upstream reports usage.
    Stream(ChunkStream),
}

/// One of an upstream's in-flight places, held until the request (or its
/// stream) ends.
pub struct Slot {
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) gauge: metrics::Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
