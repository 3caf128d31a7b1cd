//! Frames and limits: the length-prefixed framing every stream uses, and the sizes anyone accepts.

use crate::address::AddressError;

/// The version of this protocol, carried in every handshake frame. Version 2: a caller's
/// contract lists the named types of its methods ([`TypeInfo`](crate::TypeInfo)). Version 3: a
/// [`Control::Dial`](crate::Control::Dial) carries the channel's header, and the host answers it
/// on the rendezvous stream without waiting for the header there.
pub const PROTOCOL_VERSION: u8 = 3;

/// The ALPN protocol name negotiated on QUIC connections to a relay.
pub const ALPN: &[u8] = b"relay-rpc/1";

/// The largest handshake frame anyone accepts, in bytes.
pub const MAX_HANDSHAKE_FRAME: usize = 64 * 1024;

/// The largest frame a relay reads from a peer it has not authorized yet (a [`Hello`](crate::Hello)), or on a
/// listener's control stream (a [`Control`](crate::Control)): an address, a token of at most [`MAX_TOKEN_LEN`]
/// and a contract of a few hundred methods fit; 64 KiB per stream would let a peer without a
/// token pin memory by the megabyte.
pub const MAX_HELLO_FRAME: usize = 16 * 1024;

/// The largest token carried in a handshake, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The default largest channel frame (one RPC message), in bytes.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// The size of a frame's length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Why bytes could not be decoded as a protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame announces more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame ended before the message did.
    #[error("truncated message")]
    Truncated,
    /// Bytes were left over after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The message type is not one expected here.
    #[error("unexpected message type {0}")]
    UnexpectedMessage(u8),
    /// A string field is not UTF-8.
    #[error("invalid utf-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A field is longer than its limit.
    #[error("{field} of {len} bytes exceeds the limit of {max}")]
    FieldTooLong {
        /// The field's name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds a value it has no meaning for.
    #[error("{field} has no value {value}")]
    InvalidValue {
        /// The field's name.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// The address is not a valid address.
    #[error(transparent)]
    InvalidAddress(#[from] AddressError),
}

/// Reads the length from a frame header, refusing lengths above `max`.
///
/// ```
/// use relay_proto::{decode_frame_len, ProtoError};
/// assert_eq!(decode_frame_len([0, 0, 1, 0], 1024), Ok(256));
/// assert!(matches!(decode_frame_len([0, 1, 0, 0], 1024), Err(ProtoError::FrameTooLarge { .. })));
/// ```
pub fn decode_frame_len(header: [u8; FRAME_HEADER_LEN], max: usize) -> Result<usize, ProtoError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(ProtoError::FrameTooLarge { len, max });
    }
    Ok(len)
}

/// The first whole frame in `bytes`, as its body and the number of bytes it takes (header
/// included); `None` while it is still incomplete. Refuses lengths above `max`.
///
/// ```
/// use relay_proto::{encode_frame, split_frame};
/// let frame = encode_frame(b"hi");
/// assert_eq!(split_frame(&frame, 64), Ok(Some((&b"hi"[..], 6))));
/// assert_eq!(split_frame(&frame[..5], 64), Ok(None));
/// ```
pub fn split_frame(bytes: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER_LEN>() else { return Ok(None) };
    let len = decode_frame_len(*header, max)?;
    Ok(rest.get(..len).map(|body| (body, FRAME_HEADER_LEN + len)))
}

/// Prefixes `body` with its length, making one frame.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    frame
}
