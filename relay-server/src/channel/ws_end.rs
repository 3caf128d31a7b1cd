//! A WebSocket channel end at the relay: frames read and written with [`relay_proto::ws_frame`]
//! on the metered stream under the end, holding no buffer while the channel is idle.
//!
//! - A read lands in a per-thread scratch buffer; what it brought is kept in a buffer of its own
//!   size, and a message that arrived whole is a slice of it. The rest of a binary frame is read
//!   straight into the buffer its message is gathered in.
//! - Frames to send are whole frames in one queue. Small ones, and a large one's header with its
//!   first bytes, are gathered into one buffer per flush (one write); the rest of a large payload
//!   is written from its own bytes, and the buffers go back to the allocator once written.
//!
//! tungstenite, which this replaces on channel ends, kept both its buffers at the largest size a
//! connection had ever needed (a large message's length on the read side, the write buffer and a
//! frame on the other) until the connection closed, outside the relay's buffer budget.
//!
//! Both halves of an end share one lock. The reader answers pings and a peer's close itself,
//! whatever the writer is doing: answers are queued behind whole frames, and go out as the socket
//! takes them, from whichever half runs next. Both halves of an end are polled by one task (the
//! channel's), so whichever of them waits on the socket wakes that task.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use relay_proto::ws_frame::{FrameHeader, MAX_HEADER_LEN, MessageReader, Opcode, WsEvent, WsFrameError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Io;
use super::close::CLOSE_GRACE;
use crate::budget::{Meter, Metered};

/// The stream under a WebSocket end: what it reads draws on the buffer budget.
pub(crate) type WsIo = Metered<Box<dyn Io>>;

/// The scratch buffer a read lands in.
const READ_CHUNK: usize = 16 * 1024;
/// A binary frame whose payload still has this much to come is read into its message directly.
const DIRECT_READ: u64 = 2 * 1024;
/// The most one direct read takes: what the metered stream reads at most at once (more would
/// have it zero the rest of the buffer first).
const MAX_DIRECT_READ: usize = 64 * 1024;
/// Payloads up to this size are copied into the buffer small frames are gathered in; of larger
/// ones, the first bytes (a TLS record's worth with the header) go with the frames before, and
/// the rest is written from its own bytes.
const GATHER_MAX: usize = 16 * 1024;
const FIRST_PIECE: usize = GATHER_MAX - MAX_HEADER_LEN;
/// Bytes queued past which queuing a frame first writes what is queued.
const HIGH_WATER: usize = 256 * 1024;
/// The longest reason a close frame carries (its payload is at most 125 bytes, 2 of them the code).
const MAX_CLOSE_REASON: usize = 123;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a WebSocket end's peer sent: one unit of the budget's accounting (a message or a control
/// frame).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    Binary(Bytes),
    /// A text message, UTF-8.
    Text(Bytes),
    /// A ping (answered) or a pong.
    Control,
    /// A close frame (answered), with its code and reason if it has a code.
    Close(Option<(u16, String)>),
}

/// Why a WebSocket end could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsReadError {
    #[error("the WebSocket's connection failed")]
    Io(#[from] io::Error),
    #[error("the peer broke the WebSocket protocol")]
    Protocol(#[from] WsFrameError),
    #[error("the connection ended without a close frame")]
    Ended,
    #[error("the peer already sent its close frame")]
    Closed,
}

impl WsReadError {
    /// Whether the peer sent a message longer than the end takes.
    pub(crate) fn too_large(&self) -> bool {
        matches!(self, Self::Protocol(WsFrameError::BinaryTooLong { .. } | WsFrameError::TextTooLong { .. }))
    }
}

/// Why a frame could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsWriteError {
    #[error("the WebSocket's connection failed")]
    Io(#[from] io::Error),
    #[error("the relay already sent its close frame")]
    Closed,
}

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
    io: WsIo,
    reader: MessageReader,
    /// Bytes read and not parsed yet.
    pending: BytesMut,
    /// The binary message being gathered.
    message: BytesMut,
    /// Whole frames to send, in order; the first may be partly written.
    queue: VecDeque<Bytes>,
    /// Small frames gathered behind `queue`.
    gather: BytesMut,
    /// Bytes in `queue` and `gather`.
    queued: usize,
    /// A pong or the reply to a close is queued: a read sends it if the socket takes it.
    answer_queued: bool,
    close_sent: bool,
    close_received: bool,
    /// How long a closing handshake waits on a peer that makes no progress.
    patience: Duration,
}

impl WsEnd {
    /// A WebSocket on `io`, whose handshake is done; `leftover` came after the handshake.
    /// Messages may be `max_message` bytes long; a closing handshake waits `patience` on a peer
    /// that makes no progress (see [`close`](Self::close)).
    pub(crate) fn new(io: WsIo, leftover: Vec<u8>, max_message: usize, patience: Duration) -> Self {
        let meter = io.meter().clone();
        let inner = Inner {
            io,
            reader: MessageReader::new(max_message).max_binary(max_message as u64),
            pending: BytesMut::from(&leftover[..]),
            message: BytesMut::new(),
            queue: VecDeque::new(),
            gather: BytesMut::new(),
            queued: 0,
            answer_queued: false,
            close_sent: false,
            close_received: false,
            patience,
        };
        Self { inner: Arc::new(Mutex::new(inner)), meter }
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
        poll_fn(|cx| self.lock().poll_next(cx)).await
    }

    /// Ready to [`queue`](Self::queue) a message: what is queued is written out first when that
    /// is much. Readiness and queuing are apart so that a caller's future holds no future of
    /// this end's: a channel's splice holds its own for the channel's life.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), WsWriteError>> {
        let mut inner = self.lock();
        if inner.close_sent {
            return Poll::Ready(Err(WsWriteError::Closed));
        }
        if inner.queued >= HIGH_WATER {
            ready!(inner.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a data message (text must be UTF-8) to go out with the next flush.
    pub(crate) fn queue(&self, text: bool, payload: Bytes) -> Result<(), WsWriteError> {
        let mut inner = self.lock();
        if inner.close_sent {
            return Err(WsWriteError::Closed);
        }
        inner.queue_frame(if text { Opcode::Text } else { Opcode::Binary }, payload);
        Ok(())
    }

    /// Writes out everything queued.
    pub(crate) async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| self.lock().poll_drain(cx)).await
    }

    /// Sends a ping.
    pub(crate) async fn ping(&self) -> Result<(), WsWriteError> {
        {
            let mut inner = self.lock();
            if inner.close_sent {
                return Err(WsWriteError::Closed);
            }
            inner.queue_frame(Opcode::Ping, Bytes::new());
        }
        Ok(self.flush().await?)
    }

    /// Sends a close frame; refused if one was sent already (the reply to the peer's close, too).
    pub(crate) async fn send_close(&self, code: u16, reason: &str) -> Result<(), WsWriteError> {
        if !self.lock().queue_close(code, reason) {
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
            self.lock().queue_close(code, reason);
        }
        let patience = self.lock().patience;
        loop {
            let queued = self.lock().queued;
            match tokio::time::timeout(patience, self.flush()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) if self.lock().queued < queued => {}
                Err(_) => {
                    tracing::debug!("websocket peer took nothing in time; dropping it");
                    return;
                }
            }
        }
        // Only a close of ours gets a reply: an end given up as lost, with none sent, waits for none.
        let awaiting = |inner: &Inner| inner.close_sent && !inner.close_received;
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
            let _ = poll_fn(|cx| Pin::new(self.lock().io.get_mut()).poll_shutdown(cx)).await;
            let mut discard = vec![0u8; 1024];
            loop {
                let read = poll_fn(|cx| {
                    let mut inner = self.lock();
                    let mut buf = ReadBuf::new(&mut discard);
                    ready!(Pin::new(inner.io.get_mut()).poll_read(cx, &mut buf))?;
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

impl Inner {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Received, WsReadError>> {
        self.poll_answer(cx)?;
        let received = ready!(self.poll_receive(cx))?;
        self.poll_answer(cx)?;
        Poll::Ready(Ok(received))
    }

    /// Sends a queued answer (a pong, the reply to a close) if the socket takes it now; a read
    /// never waits for one.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.answer_queued {
            match self.poll_drain(cx) {
                Poll::Ready(Ok(())) => self.answer_queued = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Result<Received, WsReadError>> {
        loop {
            if self.close_received {
                return Poll::Ready(Err(WsReadError::Closed));
            }
            if !self.pending.is_empty() {
                let (used, event) = self.reader.read(&mut self.pending)?;
                let read = self.pending.split_to(used);
                if self.pending.is_empty() {
                    // Nothing kept while idle; messages still hold what they are slices of.
                    self.pending = BytesMut::new();
                }
                if let Some(received) = self.take(event, read) {
                    return Poll::Ready(Ok(received));
                }
                continue;
            }
            if let Some(left) = self.reader.binary_left().filter(|&left| left >= DIRECT_READ) {
                let start = self.message.len();
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                // The whole frame at once (its bytes are reserved from the budget already).
                self.message.reserve(left);
                let want = left.min(MAX_DIRECT_READ);
                let n = ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut self.io),
                    cx,
                    &mut (&mut self.message).limit(want)
                ))?;
                if n == 0 {
                    return Poll::Ready(Err(WsReadError::Ended));
                }
                // The frame's payload, unmasked where it lies.
                let (_, event) = self.reader.read(&mut self.message[start..])?;
                if let Some(WsEvent::Binary { last: true, .. }) = event {
                    return Poll::Ready(Ok(Received::Binary(std::mem::take(&mut self.message).freeze())));
                }
                continue;
            }
            let n = ready!(SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                if scratch.is_empty() {
                    scratch.resize(READ_CHUNK, 0);
                }
                let mut buf = ReadBuf::new(&mut scratch);
                ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
                self.pending.extend_from_slice(buf.filled());
                Poll::Ready(io::Result::Ok(buf.filled().len()))
            }))?;
            if n == 0 {
                return Poll::Ready(Err(WsReadError::Ended));
            }
        }
    }

    /// What an event of the frame reader completes, `read` being the bytes it was read from.
    fn take(&mut self, event: Option<WsEvent>, read: BytesMut) -> Option<Received> {
        Some(match event? {
            WsEvent::Binary { range, last } => {
                if last && self.message.is_empty() {
                    Received::Binary(read.freeze().slice(range))
                } else {
                    // Room for the rest of the frame at once (its bytes are reserved from the
                    // budget already), rather than grown and copied as it comes.
                    let rest = self.reader.binary_left().map_or(0, |left| usize::try_from(left).unwrap_or(0));
                    self.message.reserve(range.len() + rest);
                    self.message.extend_from_slice(&read[range]);
                    if !last {
                        return None;
                    }
                    Received::Binary(std::mem::take(&mut self.message).freeze())
                }
            }
            WsEvent::Text(text) => Received::Text(Bytes::from(text)),
            WsEvent::Ping(payload) => {
                if !self.close_sent {
                    self.queue_frame(Opcode::Pong, Bytes::from(payload));
                    self.answer_queued = true;
                }
                Received::Control
            }
            WsEvent::Pong => Received::Control,
            WsEvent::Close(close) => {
                self.close_received = true;
                // The reply echoes the code (RFC 6455, section 5.5.1).
                let (code, reason) = close.as_ref().map_or((None, ""), |(code, reason)| (Some(*code), reason.as_str()));
                if !self.close_sent {
                    self.close_sent = true;
                    self.queue_frame(Opcode::Close, close_payload(code, reason));
                    self.answer_queued = true;
                }
                Received::Close(close)
            }
        })
    }

    /// Queues a close frame unless one was sent; whether it was queued.
    fn queue_close(&mut self, code: u16, reason: &str) -> bool {
        if self.close_sent {
            return false;
        }
        self.close_sent = true;
        self.queue_frame(Opcode::Close, close_payload(Some(code), reason));
        true
    }

    /// Queues a whole, unmasked frame.
    fn queue_frame(&mut self, opcode: Opcode, payload: Bytes) {
        let header = FrameHeader { fin: true, opcode, mask: None, len: payload.len() as u64 };
        let before = self.gather.len();
        header.encode(&mut self.gather);
        self.queued += self.gather.len() - before + payload.len();
        if payload.len() <= GATHER_MAX {
            self.gather.extend_from_slice(&payload);
        } else {
            self.gather.extend_from_slice(&payload[..FIRST_PIECE]);
            self.queue.push_back(self.gather.split().freeze());
            self.queue.push_back(payload.slice(FIRST_PIECE..));
        }
    }

    /// Writes everything queued, then flushes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.gather.is_empty() {
            self.queue.push_back(self.gather.split().freeze());
        }
        while let Some(front) = self.queue.front_mut() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, front))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            front.advance(n);
            self.queued -= n;
            if front.is_empty() {
                self.queue.pop_front();
            }
        }
        // Written: nothing is kept for the next frames.
        self.gather = BytesMut::new();
        self.queue = VecDeque::new();
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

/// A close frame's payload: the code and as much of `reason` as fits (cut at a character).
fn close_payload(code: Option<u16>, reason: &str) -> Bytes {
    let Some(code) = code else { return Bytes::new() };
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + end);
    payload.put_u16(code);
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload.freeze()
}

#[cfg(test)]
mod tests;
