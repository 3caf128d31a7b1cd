//! The few IO helpers hosts, callers and the relay share (feature `io`): frames on quinn
//! streams, UDP sockets for QUIC endpoints, and [`ws`]: one end of a WebSocket.

mod udp;
pub mod ws;

use std::time::Duration;

use quinn::{ConnectionError, ReadError, RecvStream, SendStream, WriteError};

pub use udp::{MAX_UDP_PAYLOAD, UDP_BUFFER_BYTES, bind_endpoint, bind_udp, endpoint, transport_config};

use crate::{FrameAssembler, ProtoError, StreamCode, encode_frame};

/// Why a frame could not be read from or written to a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameIoError {
    /// The stream ended before a whole frame arrived, or was already finished.
    #[error("the stream closed")]
    Closed,
    /// The peer reset the stream (reading) or stopped reading it (writing), with this code.
    #[error("the stream was cut ({0:?})")]
    Cut(StreamCode),
    /// The connection under the stream was lost.
    #[error("the connection was lost")]
    ConnectionLost(#[source] ConnectionError),
    /// The bytes are not a frame this side accepts.
    #[error("bad frame")]
    Protocol(#[source] ProtoError),
    /// The stream was opened in 0-RTT data the relay did not take (it no longer knew the
    /// session): nothing of it arrived, and it can be opened again on the same connection.
    #[error("early data was rejected")]
    ZeroRttRejected,
    /// Something else went wrong in the QUIC stack.
    #[error("stream error: {0}")]
    Stream(String),
}

impl From<ReadError> for FrameIoError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Reset(code) => Self::Cut(StreamCode::from_u64(code.into_inner())),
            ReadError::ConnectionLost(e) => Self::ConnectionLost(e),
            ReadError::ZeroRttRejected => Self::ZeroRttRejected,
            other => Self::Stream(other.to_string()),
        }
    }
}

impl From<WriteError> for FrameIoError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Stopped(code) => Self::Cut(StreamCode::from_u64(code.into_inner())),
            WriteError::ConnectionLost(e) => Self::ConnectionLost(e),
            WriteError::ZeroRttRejected => Self::ZeroRttRejected,
            other => Self::Stream(other.to_string()),
        }
    }
}

/// Reads one length-prefixed frame of at most `max` bytes. Its buffer grows with the bytes that
/// arrive, never with the length announced, and nothing past the frame is read.
pub async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, FrameIoError> {
    read_next_frame(recv, &mut FrameAssembler::new(max)).await
}

/// Reads the next frame of a stream of frames into `assembler`, which starts over once it
/// returns its frame. Cancel-safe: what was read before a cancellation stays in `assembler`, for
/// the next call to go on from (a `select!` loop keeps one assembler across its iterations).
pub async fn read_next_frame(recv: &mut RecvStream, assembler: &mut FrameAssembler) -> Result<Vec<u8>, FrameIoError> {
    loop {
        // `read_chunk` is cancel-safe, and a chunk is pushed as soon as it is returned.
        let chunk = recv.read_chunk(assembler.wanted(), true).await?.ok_or(FrameIoError::Closed)?;
        if let Some(body) = assembler.push(&chunk.bytes).map_err(FrameIoError::Protocol)? {
            assembler.reset();
            return Ok(body);
        }
    }
}

/// Reads a frame as [`read_frame`] does, or `None` when `timeout` passes first.
pub async fn read_frame_within(
    recv: &mut RecvStream,
    max: usize,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, FrameIoError> {
    match tokio::time::timeout(timeout, read_frame(recv, max)).await {
        Ok(frame) => frame.map(Some),
        Err(_) => Ok(None),
    }
}

/// Writes one length-prefixed frame.
pub async fn write_frame(send: &mut SendStream, body: &[u8]) -> Result<(), FrameIoError> {
    send.write_all(&encode_frame(body)).await.map_err(FrameIoError::from)
}

/// A stream code as a QUIC application error code.
pub fn code(code: StreamCode) -> quinn::VarInt {
    quinn::VarInt::from_u64(code.to_u64()).unwrap_or_default()
}

/// What [`OpenStream::authorize`](crate::grant::OpenStream::authorize) announces a grown grant
/// with on quinn: the connection's limit of concurrent bidirectional streams.
pub fn announce_streams(connection: &quinn::Connection) -> impl FnOnce(u32) + '_ {
    |streams| connection.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(streams))
}
