//! A WebSocket read and written frame by frame ([`relay_proto::ws_frame`]), for messages the
//! relay passes on as they arrive instead of holding them whole: the bodies on an HTTP-mode
//! request's rendezvous. The read buffer is the only buffer: a binary piece is a slice of it.

use bytes::{Bytes, BytesMut};
use relay_proto::ws_frame::{FrameHeader, MAX_HEADER_LEN, MessageReader, Opcode, WsEvent, WsFrameError};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// How much each read of the socket may take.
const READ_CHUNK: usize = 16 * 1024;

/// What the peer sent.
#[derive(Debug)]
pub(crate) enum Read {
    /// A whole text message.
    Text(String),
    /// A piece of a binary message, as it arrived; `last` ends the message.
    Piece { bytes: Bytes, last: bool },
    /// A ping, with its payload, to answer.
    Ping(Vec<u8>),
    /// A close frame.
    Close,
}

/// Why a WebSocket could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RawError {
    #[error("the WebSocket could not be read")]
    Io(#[from] std::io::Error),
    #[error("the peer broke the WebSocket's framing")]
    Framing(#[from] WsFrameError),
}

/// The reading half of a client's WebSocket.
#[derive(Debug)]
pub(crate) struct RawReader<R> {
    io: R,
    buf: BytesMut,
    frames: MessageReader,
}

impl<R: AsyncRead + Unpin> RawReader<R> {
    /// Reads `io`, after the bytes `leftover` read past the handshake; text messages may be
    /// `max_text` bytes long.
    pub(crate) fn new(io: R, leftover: Vec<u8>, max_text: usize) -> Self {
        Self { io, buf: BytesMut::from(&leftover[..]), frames: MessageReader::new(max_text) }
    }

    /// What the peer sent next (pongs skipped); `None` once it closed the connection.
    /// Cancel-safe: nothing read is lost when the future is dropped.
    pub(crate) async fn next(&mut self) -> Result<Option<Read>, RawError> {
        loop {
            if !self.buf.is_empty() {
                let (used, event) = self.frames.read(&mut self.buf)?;
                let read = self.buf.split_to(used);
                match event {
                    Some(WsEvent::Binary { range, last }) => {
                        return Ok(Some(Read::Piece { bytes: read.freeze().slice(range), last }));
                    }
                    Some(WsEvent::Text(text)) => return Ok(Some(Read::Text(text))),
                    Some(WsEvent::Ping(payload)) => return Ok(Some(Read::Ping(payload))),
                    Some(WsEvent::Close(_)) => return Ok(Some(Read::Close)),
                    Some(WsEvent::Pong) | None => continue,
                }
            }
            self.buf.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// Writes one server frame (unmasked) and flushes it.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    (opcode, fin): (Opcode, bool),
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
    FrameHeader { fin, opcode, mask: None, len: payload.len() as u64 }.encode(&mut frame);
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}
