//! Splicing a caller's end of a channel to a listener's end. QUIC to QUIC moves bytes; any pair
//! with a WebSocket moves messages (one WebSocket message = one length-prefixed QUIC frame). The
//! relay never parses payloads.

mod bytes;
mod messages;

use quinn::{RecvStream, SendStream};
use tokio_util::sync::CancellationToken;

pub(crate) use bytes::cut;
use bytes::splice_bytes;
use messages::splice_messages;
pub(crate) use messages::{Frame, Next, Sink, Source, finish, halves};

use crate::state::Shared;
use crate::ws::WsStream;

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
    Ws(Box<WsStream>),
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Quic(pipe) => f.debug_tuple("Quic").field(pipe).finish(),
            Self::Ws(_) => f.write_str("Ws"),
        }
    }
}

/// Moves a channel's traffic both ways until both directions finish or one end fails (or
/// `host_dead` is cancelled: the listener was found dead); the other end is then told who went
/// away.
pub(crate) async fn splice(
    caller: End,
    host: End,
    host_dead: Option<CancellationToken>,
    shared: &Shared,
) -> Option<Side> {
    match (caller, host) {
        (End::Quic(caller), End::Quic(host)) => splice_bytes(caller, host).await,
        // Boxed, so that a QUIC-to-QUIC channel's task is not sized for the message splice.
        (caller, host) => Box::pin(splice_messages(caller, host, host_dead, shared)).await,
    }
}
