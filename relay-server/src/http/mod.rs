//! HTTP mode on the relay's TLS (and plain) TCP port: Azure Hybrid Connections' "HTTP request
//! protocol". A sender's `https://{relay}/{address}[/suffix][?query]` request (no `$hc`) reaches
//! a Hybrid Connections listener of the address as a `request` control message, and the
//! listener's `response` goes back as the HTTP answer ([`forward`]).
//!
//! The WebSocket driver reads each connection's first request head; a head that is neither for
//! `/$hc/` nor an upgrade comes here with the bytes read so far, and hyper serves the connection
//! from then on (keep-alive, chunked bodies, `Expect: 100-continue`).

mod ask;
mod discovery;
mod forward;
mod over_channel;
mod replay;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Frame as BodyFrame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use relay_proto::error::chain;
use relay_proto::http::MAX_HEAD;
use tokio::sync::mpsc;

use crate::channel::Io;
use crate::phase::Phase;
use crate::state::Shared;
use replay::Replay;

/// An answer to a sender: the relay's own (a whole body), or a listener's (perhaps streamed).
pub(crate) type Answer = hyper::Response<BoxBody<Bytes, BodyCut>>;

/// Why an answer's body ended before it was whole: the host's end of the channel that carried
/// it broke. hyper then ends the sender's connection rather than the body.
#[derive(Debug, thiserror::Error)]
#[error("the listener's response was cut short")]
pub(crate) struct BodyCut;

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> BoxBody<Bytes, BodyCut> {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A body passed on as it arrives: pieces, then an empty one for the end. Pieces that stop
/// without it (whoever sent them ended for any reason) are a cut body, never a whole one.
pub(crate) struct PiecesBody {
    pieces: mpsc::Receiver<Bytes>,
    ended: bool,
}

impl PiecesBody {
    pub(crate) fn new(pieces: mpsc::Receiver<Bytes>) -> Self {
        Self { pieces, ended: false }
    }
}

impl hyper::body::Body for PiecesBody {
    type Data = Bytes;
    type Error = BodyCut;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<BodyFrame<Bytes>, BodyCut>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.pieces.poll_recv(cx).map(|next| match next {
            Some(piece) if piece.is_empty() => {
                self.ended = true;
                None
            }
            Some(piece) => Some(Ok(BodyFrame::data(piece))),
            None => Some(Err(BodyCut)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Where a connection came from and arrived, for the listener's `remoteEndpoint` and the
/// relay's `Via` name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) remote: SocketAddr,
    pub(crate) local: Option<SocketAddr>,
}

/// Serves HTTP-mode requests on `io`, whose first `read` bytes (a whole request head, perhaps
/// more) were read already, until the sender closes, stays idle past the handshake timeout, or
/// the relay closes.
pub(crate) async fn serve(shared: Arc<Shared>, io: Box<dyn Io>, read: Vec<u8>, peer: Peer) {
    let service = hyper::service::service_fn(|request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(forward::forward(&shared, request, peer).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Bounds the head of every request, and the wait for the next one on a kept-alive
        // connection.
        .header_read_timeout(shared.config.handshake_timeout())
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(Replay::new(read, io)), service);
    tokio::select! {
        served = connection => if let Err(e) = served {
            tracing::debug!(remote = %peer.remote, error = %chain(&e), "http connection ended");
        },
        () = shared.reached(Phase::Closing) => {}
    }
}
