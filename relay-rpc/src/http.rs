//! HTTP requests that reach a host through the relay's HTTP mode.
//!
//! A listener registered with [`Host::listen_http`](crate::Host::listen_http) is sent each
//! request to `https://{relay}/{address}/...` as a channel whose contract is
//! [`relay_proto::http_channel::CONTRACT`]: the request's head, its body in pieces, and the
//! response the same way back ([`relay_proto::http_channel`] has the frames). Bodies stream both
//! ways, so neither end nor the relay holds one whole. [`Listener::serve`](crate::Listener::serve)
//! answers such requests as JSON calls of the contract it serves; for anything else, accept
//! them here.
//!
//! ```no_run
//! use relay_rpc::http::{HttpRequest, ResponseHead};
//!
//! # async fn run(mut listener: relay_rpc::Listener) -> Result<(), Box<dyn std::error::Error>> {
//! let incoming = listener.accept().await?;
//! if relay_proto::http_channel::is_http(incoming.contract()) {
//!     let (mut request, response) = HttpRequest::accept(incoming).await?;
//!     let body = request.read_to_end(1 << 20).await?;
//!     let head = ResponseHead { status: 200, headers: vec![("content-type".into(), "text/plain".into())] };
//!     response.send_whole(head, format!("{} bytes to {}", body.len(), request.head.target).into()).await?;
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use relay_proto::ProtoError;
pub use relay_proto::http_channel::{RequestHead, ResponseHead};

use crate::channel::{Channel, ChannelError};
use crate::transport::IncomingChannel;

/// How long the relay may take to send a request's head once its channel is accepted (it sends
/// it at once).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest piece of a body sent as one frame.
const MAX_PIECE: usize = 64 * 1024;

/// Why an HTTP request could not be read or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The channel carries no HTTP request (its contract is another).
    #[error("the channel carries no http request")]
    NotHttp,
    /// The channel broke.
    #[error("the channel broke")]
    Channel(#[from] ChannelError),
    /// The relay sent something that is no request head, or no head in time.
    #[error("no valid request head")]
    BadHead(#[source] Option<ProtoError>),
    /// The request's body is longer than the reader takes.
    #[error("the request body is longer than {max} bytes")]
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// The channel ended before the body did: the sender or the relay went away.
    #[error("the request ended before its body did")]
    EndedEarly,
}

/// An HTTP request as it arrives: its head, and its body to read.
#[derive(Debug)]
pub struct HttpRequest {
    /// The method, target (with the address: `/calc/Calculator/add?x=1`), the sender's address
    /// and the headers.
    pub head: RequestHead,
    frames: SplitStream<Channel>,
    /// The body's end has been read.
    ended: bool,
    /// The channel has ended (seen by [`closed`](Self::closed)): nothing more comes.
    gone: bool,
}

/// Where an HTTP request's answer goes: a head, then the body.
#[derive(Debug)]
pub struct HttpResponse {
    frames: SplitSink<Channel, Bytes>,
}

impl HttpRequest {
    /// Accepts the channel of an HTTP request and reads the request's head.
    pub async fn accept(incoming: IncomingChannel) -> Result<(HttpRequest, HttpResponse), HttpError> {
        if !relay_proto::http_channel::is_http(incoming.contract()) {
            return Err(HttpError::NotHttp);
        }
        let (frames, mut received) = incoming.accept().await?.split();
        let head = match tokio::time::timeout(HEAD_TIMEOUT, received.next()).await {
            Ok(Some(Ok(head))) => RequestHead::decode(&head).map_err(|e| HttpError::BadHead(Some(e)))?,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => return Err(HttpError::BadHead(None)),
        };
        Ok((HttpRequest { head, frames: received, ended: false, gone: false }, HttpResponse { frames }))
    }

    /// The value of header `name` (case-insensitive), if it came.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The next piece of the body; `None` once it has all been read.
    pub async fn piece(&mut self) -> Result<Option<Bytes>, HttpError> {
        if self.ended {
            return Ok(None);
        }
        if self.gone {
            return Err(HttpError::EndedEarly);
        }
        match self.frames.next().await {
            Some(Ok(piece)) if piece.is_empty() => {
                self.ended = true;
                Ok(None)
            }
            Some(Ok(piece)) => Ok(Some(piece.freeze())),
            Some(Err(e)) => Err(e.into()),
            None => Err(HttpError::EndedEarly),
        }
    }

    /// Reads the rest of the body, at most `max` bytes.
    pub async fn read_to_end(&mut self, max: usize) -> Result<Bytes, HttpError> {
        let mut body = BytesMut::new();
        while let Some(piece) = self.piece().await? {
            if body.len() + piece.len() > max {
                return Err(HttpError::BodyTooLarge { max });
            }
            body.extend_from_slice(&piece);
        }
        Ok(body.freeze())
    }

    /// Waits until the request's channel ends: the sender went away (the relay cuts the channel
    /// when the sender's connection closes, or when it stops waiting for the answer), or the
    /// relay or the host's connection to it did. For a host still working on its answer after
    /// reading the body, to stop once nobody can receive it. Whatever of the body was not read
    /// yet is read and dropped; nothing else comes on a request's channel.
    ///
    /// ```no_run
    /// # use relay_rpc::http::{HttpRequest, ResponseHead};
    /// # async fn slow_work() -> bytes::Bytes { bytes::Bytes::new() }
    /// # async fn run(incoming: relay_rpc::IncomingChannel) -> Result<(), relay_rpc::http::HttpError> {
    /// let (mut request, response) = HttpRequest::accept(incoming).await?;
    /// let _body = request.read_to_end(1 << 20).await?;
    /// tokio::select! {
    ///     answer = slow_work() => response.send_whole(ResponseHead { status: 200, headers: vec![] }, answer).await?,
    ///     () = request.closed() => {} // the sender went away: the work is dropped
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn closed(&mut self) {
        while !self.gone {
            if let Some(Ok(_)) = self.frames.next().await {
                continue;
            }
            self.gone = true;
        }
    }
}

impl HttpResponse {
    /// Sends the response's head; the body follows with [`send`](Self::send), ended by
    /// [`finish`](Self::finish).
    pub async fn start(&mut self, head: ResponseHead) -> Result<(), HttpError> {
        Ok(self.frames.send(Bytes::from(head.encode())).await?)
    }

    /// Sends a piece of the body (in frames of at most 64 KiB).
    pub async fn send(&mut self, mut piece: Bytes) -> Result<(), HttpError> {
        while !piece.is_empty() {
            let frame = piece.split_to(piece.len().min(MAX_PIECE));
            self.frames.feed(frame).await?;
        }
        Ok(self.frames.flush().await?)
    }

    /// Ends the body, and with it the exchange.
    pub async fn finish(mut self) -> Result<(), HttpError> {
        self.frames.send(Bytes::new()).await?;
        Ok(self.frames.close().await?)
    }

    /// Sends a whole response: its head, its body, and the end.
    pub async fn send_whole(mut self, head: ResponseHead, body: Bytes) -> Result<(), HttpError> {
        self.start(head).await?;
        self.send(body).await?;
        self.finish().await
    }
}
