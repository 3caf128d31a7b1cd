//! A channel's ends at the relay (QUIC streams, WebSockets), and splicing a caller's end of a
//! channel to a listener's end. QUIC to QUIC moves bytes; any pair with a WebSocket moves messages
//! (one WebSocket message = one length-prefixed QUIC frame). The relay never parses payloads.
//!
//! The transports' drivers make the ends; routing and multicast pass them here. Nothing here
//! knows how an end was made or routed.

mod bytes;
pub(crate) mod close;
mod messages;
mod ws_end;

use std::sync::atomic::{AtomicU64, Ordering};

use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

pub(crate) use bytes::cut;
use bytes::splice_bytes;
use messages::splice_messages;
pub(crate) use messages::{Frame, Next, Sink, Source, finish, halves};
pub(crate) use ws_end::WsEnd;

use crate::budget::{Budget, Metered};
use crate::config::Config;
use crate::phase::RelayPhase;

/// Bytes moved between the ends of channels since the relay started, by the side they went to.
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    to_host: AtomicU64,
    to_caller: AtomicU64,
}

impl Relayed {
    /// Counts `bytes` moved to the `to` side.
    pub(crate) fn add(&self, to: Side, bytes: usize) {
        let counter = match to {
            Side::Host => &self.to_host,
            Side::Caller => &self.to_caller,
        };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes moved from callers to hosts.
    pub(crate) fn to_host(&self) -> u64 {
        self.to_host.load(Ordering::Relaxed)
    }

    /// Bytes moved from hosts to callers.
    pub(crate) fn to_caller(&self) -> u64 {
        self.to_caller.load(Ordering::Relaxed)
    }

    /// Both ways added up.
    pub(crate) fn total(&self) -> u64 {
        self.to_host() + self.to_caller()
    }
}

/// Any byte stream a WebSocket runs on: TLS or plain TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A listener's control WebSocket at the relay, on a stream that meters what it reads (see
/// [`crate::budget`]). Channel ends are [`WsEnd`]s.
pub(crate) type WsStream = WebSocketStream<Metered<Box<dyn Io>>>;

/// Which end of a splice failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Caller,
    Host,
}

/// Two halves of a QUIC stream.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
}

/// One end of a channel at the relay.
pub(crate) enum End {
    /// A QUIC stream of length-prefixed frames.
    Quic(Pipe),
    /// A WebSocket: one message per frame.
    Ws(WsEnd),
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Quic(pipe) => f.debug_tuple("Quic").field(pipe).finish(),
            Self::Ws(_) => f.write_str("Ws"),
        }
    }
}

/// What a splice needs of the relay it runs in: its configuration (frame size bound, keep-alive,
/// idle timeout), the buffer budget every end's reads draw on, and its phase (when the relay
/// closes, every channel is cut).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpliceContext<'a> {
    pub(crate) config: &'a Config,
    pub(crate) budget: &'a Budget,
    pub(crate) phase: &'a RelayPhase,
    /// Bytes of channel traffic moved from one end to the other, counted as they go.
    pub(crate) relayed: &'a Relayed,
}

/// Moves a channel's traffic both ways until both directions finish or one end fails (or
/// `host_dead` is cancelled: the listener was found dead); the other end is then told who went
/// away.
pub(crate) async fn splice(
    caller: End,
    host: End,
    host_dead: Option<CancellationToken>,
    context: SpliceContext<'_>,
) -> Option<Side> {
    // Each boxed, so that a channel's task is sized for neither.
    match (caller, host) {
        (End::Quic(caller), End::Quic(host)) => Box::pin(splice_bytes(caller, host, context.relayed)).await,
        (caller, host) => Box::pin(splice_messages(caller, host, host_dead, context)).await,
    }
}
