//! One end of a WebSocket on an async byte stream, client or server: frames read and written
//! with [`crate::ws_frame`], holding no buffer while the connection is idle.
//!
//! - A read lands in a per-thread scratch buffer; what it brought is kept in a buffer of its own
//!   size, and a message that arrived whole is a slice of it. The rest of a large binary frame
//!   is read straight into the buffer its message is gathered in.
//! - Frames to send are whole frames in one queue. Small ones, and a large one's header with its
//!   first bytes, are gathered into one buffer per flush (one write); the rest of a large payload
//!   is written from its own bytes, and the buffers go back to the allocator once written. A
//!   client masks that rest as it writes it, a piece at a time through a per-thread buffer,
//!   rather than copying the whole payload masked into a buffer of its size: a fresh megabyte per
//!   message costs page faults to fill and to give back.
//! - Pings and a peer's close are answered here, queued behind whole frames; the answer goes out
//!   with the next read or flush that the socket takes it on.
//!
//! The relay's channel ends and the clients' channels both run on this. tungstenite, which it
//! replaces there, kept its read and write buffers at the largest size a connection had ever
//! needed until the connection closed, and copied every message it received once more.
//!
//! ```
//! use std::future::poll_fn;
//! use bytes::Bytes;
//! use relay_proto::io::ws::{Received, Side, WsConnection};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (a, b) = tokio::io::duplex(4096);
//! let mut client = WsConnection::new(a, Side::Client, &[], 1024);
//! let mut server = WsConnection::new(b, Side::Server, &[], 1024);
//! client.queue_message(false, Bytes::from_static(b"hello")).unwrap();
//! poll_fn(|cx| client.poll_flush(cx)).await.unwrap();
//! let received = poll_fn(|cx| server.poll_next(cx)).await.unwrap();
//! assert_eq!(received, Received::Binary(Bytes::from_static(b"hello")));
//! # });
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ws_frame::{FrameHeader, MAX_HEADER_LEN, MessageReader, Opcode, WsEvent, WsFrameError, apply_mask};

/// The scratch buffer a read lands in.
const READ_CHUNK: usize = 16 * 1024;
/// A binary frame whose payload still has this much to come is read into its message directly.
const DIRECT_READ: u64 = 2 * 1024;
/// The most one direct read takes (a metered stream reads no more at once: more would have it
/// zero the rest of the buffer first).
const MAX_DIRECT_READ: usize = 64 * 1024;
/// Payloads up to this size are copied into the buffer small frames are gathered in; of a
/// server's larger ones, the first bytes (a TLS record's worth with the header) go with the
/// frames before, and the rest is written from its own bytes.
const GATHER_MAX: usize = 16 * 1024;
const FIRST_PIECE: usize = GATHER_MAX - MAX_HEADER_LEN;
/// The most of a large payload a client masks for one write.
const MASK_CHUNK: usize = 64 * 1024;
/// The least it masks for one write once a write took less than was masked.
const MIN_MASK_CHUNK: usize = 4 * 1024;
/// Bytes queued past which [`WsConnection::poll_ready`] first writes what is queued.
const HIGH_WATER: usize = 256 * 1024;
/// The longest reason a close frame carries (its payload is at most 125 bytes, 2 of them the code).
const MAX_CLOSE_REASON: usize = 123;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where a client masks a piece of a large payload to write it.
    static MASKED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Which end of the WebSocket this is: a client masks what it sends and reads unmasked frames,
/// a server the other way round (RFC 6455, section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that opened the WebSocket.
    Client,
    /// The end that accepted it.
    Server,
}

/// What the peer sent: a message, or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A binary message.
    Binary(Bytes),
    /// A text message, UTF-8.
    Text(Bytes),
    /// A ping (answered) or a pong.
    Control,
    /// A close frame (answered), with its code and reason if it has a code.
    Close(Option<(u16, String)>),
}

/// Why a WebSocket could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsReadError {
    /// The stream under it failed.
    #[error("the WebSocket's connection failed")]
    Io(#[from] io::Error),
    /// The peer sent what is not a WebSocket frame this end takes.
    #[error("the peer broke the WebSocket protocol")]
    Protocol(#[from] WsFrameError),
    /// The stream ended without a close frame.
    #[error("the connection ended without a close frame")]
    Ended,
    /// The peer's close frame was read already.
    #[error("the peer already sent its close frame")]
    Closed,
}

impl WsReadError {
    /// Whether the peer sent a message longer than the end takes.
    pub fn too_large(&self) -> bool {
        matches!(self, Self::Protocol(WsFrameError::BinaryTooLong { .. } | WsFrameError::TextTooLong { .. }))
    }
}

/// Why a frame could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsWriteError {
    /// The stream under it failed.
    #[error("the WebSocket's connection failed")]
    Io(#[from] io::Error),
    /// This end sent its close frame already.
    #[error("this end already sent its close frame")]
    Closed,
}

/// One end of a WebSocket on `IO`, whose opening handshake is done.
#[derive(Debug)]
pub struct WsConnection<IO> {
    io: IO,
    side: Side,
    reader: MessageReader,
    /// Bytes read and not parsed yet.
    pending: BytesMut,
    /// The binary message being gathered.
    message: BytesMut,
    /// Whole frames to send, in order; the first may be partly written.
    queue: VecDeque<Outgoing>,
    /// Small frames gathered behind `queue`.
    gather: BytesMut,
    /// Bytes in `queue` and `gather`.
    queued: usize,
    /// A pong or the reply to a close is queued: a read sends it if the socket takes it.
    answer_queued: bool,
    close_sent: bool,
    close_received: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WsConnection<IO> {
    /// The `side` end of a WebSocket on `io`; `leftover` came after the handshake. Messages may
    /// be `max_message` bytes long.
    pub fn new(io: IO, side: Side, leftover: &[u8], max_message: usize) -> Self {
        let reader = match side {
            Side::Client => MessageReader::of_server(max_message),
            Side::Server => MessageReader::new(max_message),
        };
        Self {
            io,
            side,
            reader: reader.max_binary(max_message as u64),
            pending: BytesMut::from(leftover),
            message: BytesMut::new(),
            queue: VecDeque::new(),
            gather: BytesMut::new(),
            queued: 0,
            answer_queued: false,
            close_sent: false,
            close_received: false,
        }
    }

    /// The stream under the WebSocket.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The stream under the WebSocket, to read or write around it (after the closing handshake).
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// Whether this end sent its close frame (its own, or the reply to the peer's).
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Whether the peer's close frame was read.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Bytes queued and not written yet.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// The bytes this end has allocated for its own use (read, gathered and queued): none while
    /// it is idle.
    pub fn buffered_capacity(&self) -> usize {
        self.pending.capacity() + self.message.capacity() + self.gather.capacity() + self.queue.capacity()
    }

    /// What the peer sent next, sending a queued answer first and after, where the socket takes
    /// it (a read never waits for one). Nothing read is lost when it returns `Pending`.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Received, WsReadError>> {
        self.poll_answer(cx)?;
        let received = ready!(self.poll_receive(cx))?;
        self.poll_answer(cx)?;
        Poll::Ready(Ok(received))
    }

    /// Ready to queue a message: what is queued is written out first when that is much.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsWriteError>> {
        if self.close_sent {
            return Poll::Ready(Err(WsWriteError::Closed));
        }
        if self.queued >= HIGH_WATER {
            ready!(self.poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a data message (text must be UTF-8) to go out with the next flush.
    pub fn queue_message(&mut self, text: bool, payload: Bytes) -> Result<(), WsWriteError> {
        if self.close_sent {
            return Err(WsWriteError::Closed);
        }
        self.queue_frame(if text { Opcode::Text } else { Opcode::Binary }, payload);
        Ok(())
    }

    /// Queues a ping.
    pub fn queue_ping(&mut self) -> Result<(), WsWriteError> {
        if self.close_sent {
            return Err(WsWriteError::Closed);
        }
        self.queue_frame(Opcode::Ping, Bytes::new());
        Ok(())
    }

    /// Queues a close frame, unless one was sent; whether it was queued. With a code, the frame
    /// carries it and as much of the reason as a frame holds (cut at a character); without, it
    /// is empty.
    pub fn queue_close(&mut self, close: Option<(u16, &str)>) -> bool {
        if self.close_sent {
            return false;
        }
        self.close_sent = true;
        let (code, reason) = close.map_or((None, ""), |(code, reason)| (Some(code), reason));
        self.queue_frame(Opcode::Close, close_payload(code, reason));
        true
    }

    /// Writes everything queued, then flushes the stream.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.gather.is_empty() {
            self.queue.push_back(Outgoing::plain(self.gather.split().freeze()));
        }
        while let Some(front) = self.queue.front_mut() {
            let n = ready!(front.poll_write(Pin::new(&mut self.io), cx))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            front.advance(n);
            self.queued -= n;
            if front.bytes.is_empty() {
                self.queue.pop_front();
            }
        }
        // Written: nothing is kept for the next frames.
        self.gather = BytesMut::new();
        self.queue = VecDeque::new();
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Sends a queued answer (a pong, the reply to a close) if the socket takes it now.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.answer_queued {
            match self.poll_flush(cx) {
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
                // The whole frame at once (it is within the bound on messages).
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
                    // Room for the rest of the frame at once (it is within the bound on
                    // messages), rather than grown and copied as it comes.
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

    /// Queues a whole frame, masked by a client.
    fn queue_frame(&mut self, opcode: Opcode, payload: Bytes) {
        let mask = match self.side {
            // Unpredictable, as RFC 6455 (section 10.3) asks, from the thread's CSPRNG.
            Side::Client => Some(rand::random::<[u8; 4]>()),
            Side::Server => None,
        };
        let header = FrameHeader { fin: true, opcode, mask, len: payload.len() as u64 };
        let before = self.gather.len();
        header.encode(&mut self.gather);
        self.queued += self.gather.len() - before + payload.len();
        let first = if payload.len() <= GATHER_MAX { payload.len() } else { FIRST_PIECE };
        let start = self.gather.len();
        self.gather.extend_from_slice(&payload[..first]);
        if let Some(mask) = mask {
            apply_mask(&mut self.gather[start..], mask, 0);
        }
        if first < payload.len() {
            self.queue.push_back(Outgoing::plain(self.gather.split().freeze()));
            self.queue.push_back(Outgoing::rest(payload.slice(first..), mask, first as u64));
        }
    }
}

/// Bytes queued to write: as they are, or (the rest of a client's large payload) masked as they
/// are written.
#[derive(Debug)]
struct Outgoing {
    bytes: Bytes,
    masking: Option<Masking>,
}

/// How the rest of a client's large payload is masked as it is written.
#[derive(Debug)]
struct Masking {
    key: [u8; 4],
    /// How far into the frame's payload the bytes left start.
    offset: u64,
    /// How much to mask for the next write: what the stream took last time, so that a stream
    /// taking little at a time does not have much masked again for every write.
    piece: usize,
}

impl Outgoing {
    fn plain(bytes: Bytes) -> Self {
        Self { bytes, masking: None }
    }

    /// The rest of a payload, `offset` bytes into it, masked with `key` if there is one.
    fn rest(bytes: Bytes, key: Option<[u8; 4]>, offset: u64) -> Self {
        Self { bytes, masking: key.map(|key| Masking { key, offset, piece: MASK_CHUNK }) }
    }

    /// Writes the next bytes: how many the stream took.
    fn poll_write<IO: AsyncWrite + Unpin>(
        &mut self,
        io: Pin<&mut IO>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let Some(masking) = &mut self.masking else { return io.poll_write(cx, &self.bytes) };
        let offered = self.bytes.len().min(masking.piece);
        let written = MASKED.with(|masked| {
            let mut masked = masked.borrow_mut();
            masked.clear();
            masked.extend_from_slice(&self.bytes[..offered]);
            apply_mask(&mut masked, masking.key, masking.offset);
            // What the stream does not take now is masked again next time.
            io.poll_write(cx, &masked)
        });
        if let Poll::Ready(Ok(n)) = written {
            masking.piece = if n < offered { n.max(MIN_MASK_CHUNK) } else { (masking.piece * 2).min(MASK_CHUNK) };
        }
        written
    }

    fn advance(&mut self, n: usize) {
        self.bytes.advance(n);
        if let Some(masking) = &mut self.masking {
            masking.offset += n as u64;
        }
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
