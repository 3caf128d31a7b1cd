//! A WebSocket channel end at the relay: a [`WsConnection`] (frames read and written with
//! [`relay_proto::ws_frame`], no buffer held while the channel is idle) on the metered stream
//! under the end, and the relay's closing handshake.
//!
//! tungstenite, which this replaces on channel ends, kept both its buffers at the largest size a
//! connection had ever needed (a large message's length on the read side, the write buffer and a
//! frame on the other) until the connection closed, outside the relay's buffer budget.
//!
//! Both halves of an end share one lock. The reader answers pings and a peer's close itself,
//! whatever the writer is doing: answers are queued behind whole frames, and go out as the socket
//! takes them, from whichever half runs next. Both halves of an end are polled by one task (the
//! channel's), so whichever of them waits on the socket wakes that task.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use relay_proto::io::ws::{Side, WsConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) use relay_proto::io::ws::{Received, WsReadError, WsWriteError};

use super::Io;
use super::close::CLOSE_GRACE;
use crate::budget::{Meter, Metered};

/// The stream under a WebSocket end: what it reads draws on the buffer budget.
pub(crate) type WsIo = Metered<Box<dyn Io>>;

/// A WebSocket end (server side) of a channel. Cheap to clone: clones are the same end.
#[derive(Clone)]
pub(crate) struct WsEnd {
    inner: Arc<Mutex<Inner>>,
    meter: Arc<Meter>,
}

impl std::fmt::Debug for WsEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsEnd").finish_non_exhaustive()
    }
}

struct Inner {
    ws: WsConnection<WsIo>,
    /// How long a closing handshake waits on a peer that makes no progress.
    patience: Duration,
}

impl WsEnd {
    /// A WebSocket on `io`, whose handshake is done; `leftover` came after the handshake.
    /// Messages may be `max_message` bytes long; a closing handshake waits `patience` on a peer
    /// that makes no progress (see [`close`](Self::close)).
    pub(crate) fn new(io: WsIo, leftover: Vec<u8>, max_message: usize, patience: Duration) -> Self {
        let meter = io.meter().clone();
        let ws = WsConnection::new(io, Side::Server, &leftover, max_message);
        Self { inner: Arc::new(Mutex::new(Inner { ws, patience })), meter }
    }

    /// The meter of the stream under the end.
    pub(crate) fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the peer sent next. Cancel-safe: nothing read is lost when the future is dropped.
    pub(crate) async fn next(&self) -> Result<Received, WsReadError> {
        poll_fn(|cx| self.lock().ws.poll_next(cx)).await
    }

    /// Ready to [`queue`](Self::queue) a message: what is queued is written out first when that
    /// is much. Readiness and queuing are apart so that a caller's future holds no future of
    /// this end's: a channel's splice holds its own for the channel's life.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), WsWriteError>> {
        self.lock().ws.poll_ready(cx)
    }

    /// Queues a data message (text must be UTF-8) to go out with the next flush.
    pub(crate) fn queue(&self, text: bool, payload: Bytes) -> Result<(), WsWriteError> {
        self.lock().ws.queue_message(text, payload)
    }

    /// Writes out everything queued.
    pub(crate) async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| self.lock().ws.poll_flush(cx)).await
    }

    /// Sends a ping.
    pub(crate) async fn ping(&self) -> Result<(), WsWriteError> {
        self.lock().ws.queue_ping()?;
        Ok(self.flush().await?)
    }

    /// Sends a close frame; refused if one was sent already (the reply to the peer's close, too).
    pub(crate) async fn send_close(&self, code: u16, reason: &str) -> Result<(), WsWriteError> {
        if !self.lock().ws.queue_close(Some((code, reason))) {
            return Err(WsWriteError::Closed);
        }
        Ok(self.flush().await?)
    }

    /// Completes the closing handshake (RFC 6455, sections 5.5.1 and 7.1.1), whoever started it:
    /// - sends `ours` if no close was sent yet;
    /// - writes out what is queued (the reply to the peer's close among it) for as long as the
    ///   peer takes bytes, giving up after a whole `patience` in which it took none;
    /// - reads, dropping what arrives, until the peer's close (its reply to ours), for at most
    ///   `patience` from the last byte written (without a close of ours, as for an end given up
    ///   as lost, there is no reply to wait for);
    /// - shuts the stream down (TLS `close_notify`, TCP FIN: the server closes TCP first) and reads
    ///   until the peer's end, within [`CLOSE_GRACE`], because closing a socket with unread bytes
    ///   resets the connection, and a reset can discard the close frame before the peer has read
    ///   it.
    ///
    /// The peer answers a close only once it has read everything sent before it, and most of that
    /// can be in the socket buffers (megabytes), where the relay cannot see it being read. So a
    /// peer that reads slowly is not cut for it: it gets `patience` (the idle timeout: as long as
    /// a splice gives it to answer a ping, which waits behind the same bytes) after the last byte
    /// went out, not a fixed time for the whole tail. A peer given up on is dropped, and what it
    /// had not read yet may be lost.
    pub(crate) async fn close(&self, ours: Option<(u16, &str)>) {
        if let Some((code, reason)) = ours {
            self.lock().ws.queue_close(Some((code, reason)));
        }
        let patience = self.lock().patience;
        loop {
            let queued = self.lock().ws.queued();
            match tokio::time::timeout(patience, self.flush()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) if self.lock().ws.queued() < queued => {}
                Err(_) => {
                    tracing::debug!("websocket peer took nothing in time; dropping it");
                    return;
                }
            }
        }
        // Only a close of ours gets a reply: an end given up as lost, with none sent, waits for none.
        let awaiting = |inner: &Inner| inner.ws.close_sent() && !inner.ws.close_received();
        let answered = async {
            while awaiting(&self.lock()) {
                if self.next().await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(patience, answered).await.is_err() {
            tracing::debug!("websocket peer did not answer the close in time; dropping it");
            return;
        }
        let end = async {
            // Around the meter: bytes after a refused frame are drained, not parsed.
            let _ = poll_fn(|cx| Pin::new(self.lock().ws.get_mut().get_mut()).poll_shutdown(cx)).await;
            let mut discard = vec![0u8; 1024];
            loop {
                let read = poll_fn(|cx| {
                    let mut inner = self.lock();
                    let mut buf = ReadBuf::new(&mut discard);
                    ready!(Pin::new(inner.ws.get_mut().get_mut()).poll_read(cx, &mut buf))?;
                    Poll::Ready(io::Result::Ok(buf.filled().len()))
                });
                if !matches!(read.await, Ok(n) if n > 0) {
                    break;
                }
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, end).await.is_err() {
            tracing::debug!("websocket peer did not end the connection in time; dropping it");
        }
    }
}

#[cfg(test)]
mod tests;
