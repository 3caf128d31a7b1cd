//! The channel: one ordered, message-framed, two-way conversation between a caller and a listener.
//!
//! Whatever transport carries it, a [`Channel`] is a [`Stream`] of received frames and a [`Sink`]
//! of frames to send. Nothing above `transport/` knows which transport that is.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};

use relay_proto::StreamCode;

/// Why a channel stopped carrying frames.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The listener on the other end went away (it disconnected or was killed).
    #[error("the listener went away")]
    ListenerGone,
    /// The caller on the other end went away.
    #[error("the caller went away")]
    CallerGone,
    /// The relay is shutting down.
    #[error("the relay is shutting down")]
    RelayShutdown,
    /// The peer closed the channel.
    #[error("the channel was closed by the peer")]
    Closed,
    /// A peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A frame was larger than the channel's limit.
    #[error("frame exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The limit.
        max: usize,
    },
    /// The connection to the relay was lost.
    #[error("connection to the relay lost: {0}")]
    ConnectionLost(String),
    /// Another I/O error, including failures to encode or decode a message.
    #[error("i/o error")]
    Io(#[source] Arc<io::Error>),
}

impl ChannelError {
    /// The error a peer's stream code stands for.
    pub fn from_code(code: StreamCode) -> Self {
        match code {
            StreamCode::Done => Self::Closed,
            StreamCode::ListenerGone => Self::ListenerGone,
            StreamCode::CallerGone => Self::CallerGone,
            StreamCode::RelayShutdown => Self::RelayShutdown,
            other => Self::Protocol(format!("stream cut with code {other:?}")),
        }
    }
}

impl From<io::Error> for ChannelError {
    fn from(e: io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

/// What carries a channel's frames: implemented once per transport.
pub(crate) trait FrameIo:
    Stream<Item = Result<BytesMut, ChannelError>> + Sink<Bytes, Error = ChannelError> + Send
{
}

impl<T> FrameIo for T where T: Stream<Item = Result<BytesMut, ChannelError>> + Sink<Bytes, Error = ChannelError> + Send {}

/// An open channel: a stream of frames in, a sink of frames out.
///
/// Client stubs (`FooClient::new`) and [`Listener::serve`](crate::host::Listener::serve) run
/// typed RPC over a channel; a channel can also carry raw frames of your own.
pub struct Channel {
    frames: Pin<Box<dyn FrameIo>>,
    address: Arc<str>,
    id: u64,
    /// The transport that carries it, for logs: `quic`, `wss`, `ws`, `memory`.
    transport: &'static str,
    end: ChannelEnd,
    /// On a host: the caller going away ends the stream of frames, rather than failing it.
    caller_exit_is_end: bool,
}

/// How a channel ended, readable after the channel itself has been handed away (to tarpc).
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelEnd(Arc<OnceLock<ChannelError>>);

impl ChannelEnd {
    /// Why the channel ended, if it has.
    pub(crate) fn get(&self) -> Option<&ChannelError> {
        self.0.get()
    }

    fn record<T>(&self, result: Poll<Result<T, ChannelError>>) -> Poll<Result<T, ChannelError>> {
        if let Poll::Ready(Err(e)) = &result {
            let _ = self.0.set(e.clone());
        }
        result
    }
}

impl Channel {
    pub(crate) fn new(frames: impl FrameIo + 'static, address: Arc<str>, id: u64, transport: &'static str) -> Self {
        Self { frames: Box::pin(frames), address, id, transport, end: ChannelEnd::default(), caller_exit_is_end: false }
    }

    /// For a host serving this channel: the caller leaving is its normal end, not an error.
    pub(crate) fn caller_exit_is_end(mut self) -> Self {
        self.caller_exit_is_end = true;
        self
    }

    pub(crate) fn end(&self) -> ChannelEnd {
        self.end.clone()
    }

    /// The address this channel was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The relay's id for this channel, the same on the caller, the relay and the host (0 where
    /// the relay did not say it, as Azure's does not, and for in-memory channels).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The transport that carries it: `quic`, `wss`, `ws` or `memory`.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// The span of what is logged about this channel: [`channel_span`].
    pub(crate) fn span(&self) -> tracing::Span {
        channel_span(self.id, &self.address, self.transport)
    }
}

/// The span of everything logged about channel `id` to `address` over `transport`, on the host
/// and the caller as on the relay (whose span of the same name carries the same id, so that one
/// channel's lines can be found on all three): `channel{id, address, transport}`.
pub(crate) fn channel_span(id: u64, address: &str, transport: &str) -> tracing::Span {
    tracing::debug_span!("channel", id, address, transport)
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("address", &self.address)
            .field("id", &self.id)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Stream for Channel {
    type Item = Result<BytesMut, ChannelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.frames.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e @ ChannelError::CallerGone))) if self.caller_exit_is_end => {
                let _ = self.end.0.set(e);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => self.end.record(Poll::Ready(Err(e))).map(Some),
            Poll::Ready(None) => {
                let _ = self.end.0.set(ChannelError::Closed);
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl Sink<Bytes> for Channel {
    type Error = ChannelError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        let result = self.frames.as_mut().poll_ready(cx);
        self.end.record(result)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), ChannelError> {
        let result = self.frames.as_mut().start_send(item);
        if let Err(e) = &result {
            let _ = self.end.0.set(e.clone());
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        let result = self.frames.as_mut().poll_flush(cx);
        self.end.record(result)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        let result = self.frames.as_mut().poll_close(cx);
        self.end.record(result)
    }
}
