//! WebSocket frames (RFC 6455, section 5), sans-IO: headers parsed and written, and a peer's
//! masked frames read into messages whose binary payload is passed on piece by piece as it
//! arrives, never held whole.
//!
//! The relay reads a WebSocket this way where a message may be larger than it should hold: the
//! body of an HTTP-mode request or response on a Hybrid Connections rendezvous is one binary
//! message of any length, fragmented as the listener writes it.
//!
//! ```
//! use relay_proto::ws_frame::{FrameHeader, MessageReader, Opcode, WsEvent};
//!
//! // A client's masked binary frame, "hi", then a close.
//! let mut bytes = Vec::new();
//! let mask = [1, 2, 3, 4];
//! FrameHeader { fin: true, opcode: Opcode::Binary, mask: Some(mask), len: 2 }.encode(&mut bytes);
//! bytes.extend([b'h' ^ 1, b'i' ^ 2]);
//! FrameHeader { fin: true, opcode: Opcode::Close, mask: Some(mask), len: 0 }.encode(&mut bytes);
//!
//! let mut reader = MessageReader::new(1024);
//! let (used, event) = reader.read(&mut bytes).unwrap();
//! let Some(WsEvent::Binary { range, last: true }) = event else { panic!("{event:?}") };
//! assert_eq!(&bytes[range], b"hi");
//! let (_, event) = reader.read(&mut bytes[used..]).unwrap();
//! assert_eq!(event, Some(WsEvent::Close(None)));
//! ```
//!
//! A reader may bound binary messages too, and refuses one at the header that would take it past
//! the bound:
//!
//! ```
//! use relay_proto::ws_frame::{FrameHeader, MessageReader, Opcode, WsFrameError};
//!
//! let mut bytes = Vec::new();
//! FrameHeader { fin: true, opcode: Opcode::Binary, mask: Some([0; 4]), len: 2000 }.encode(&mut bytes);
//! let mut reader = MessageReader::new(1024).max_binary(1024);
//! assert_eq!(reader.read(&mut bytes), Err(WsFrameError::BinaryTooLong { max: 1024 }));
//! ```

use std::ops::Range;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// The next fragment of a message.
    Continuation,
    /// The first (or only) frame of a text message.
    Text,
    /// The first (or only) frame of a binary message.
    Binary,
    /// A close frame.
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Whether frames of this opcode are control frames (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this frame ends its message.
    pub fin: bool,
    /// What the frame is.
    pub opcode: Opcode,
    /// The masking key (every frame a client sends has one; a server's have none).
    pub mask: Option<[u8; 4]>,
    /// The payload's length.
    pub len: u64,
}

/// Why bytes are not a WebSocket frame stream this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsFrameError {
    /// A reserved bit is set (no extension is negotiated).
    #[error("a frame sets a reserved bit")]
    Reserved,
    /// The opcode is reserved.
    #[error("a frame has the reserved opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame is fragmented or longer than 125 bytes.
    #[error("a control frame is fragmented or longer than 125 bytes")]
    BadControl,
    /// A 64-bit length has its top bit set.
    #[error("a frame's length has its top bit set")]
    BadLength,
    /// A frame from a client is not masked.
    #[error("a client's frame is not masked")]
    Unmasked,
    /// A frame from a server is masked.
    #[error("a server's frame is masked")]
    Masked,
    /// A continuation frame arrived with no message to continue.
    #[error("a continuation frame continues no message")]
    StrayContinuation,
    /// A new message began before the one in progress ended.
    #[error("a message began inside another")]
    Interleaved,
    /// A text message is longer than the reader takes.
    #[error("a text message is longer than {max} bytes")]
    TextTooLong {
        /// The longest text message taken.
        max: usize,
    },
    /// A binary message is longer than the reader takes.
    #[error("a binary message is longer than {max} bytes")]
    BinaryTooLong {
        /// The longest binary message taken.
        max: u64,
    },
    /// A text message is not UTF-8.
    #[error("a text message is not UTF-8")]
    NotUtf8,
    /// A close frame's payload is one byte, its code may not be sent, or its reason is not UTF-8.
    #[error("a close frame is malformed")]
    BadClose,
}

impl FrameHeader {
    /// Parses the header at the start of `bytes`: the header and its length, or `None` when
    /// more bytes are needed.
    pub fn parse(bytes: &[u8]) -> Result<Option<(Self, usize)>, WsFrameError> {
        let [b0, b1, ..] = *bytes else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(WsFrameError::Reserved);
        }
        let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsFrameError::UnknownOpcode(b0 & 0x0F))?;
        // The length's rules are checked as soon as it is whole, before the mask has come.
        let Some(lengths) = bytes.get(..2 + length_bytes(b1)) else { return Ok(None) };
        let len = declared_len(lengths);
        if len >> 63 != 0 {
            return Err(WsFrameError::BadLength);
        }
        let fin = b0 & 0x80 != 0;
        if opcode.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD) {
            return Err(WsFrameError::BadControl);
        }
        let at = header_len(b1);
        let Some(header) = bytes.get(..at) else { return Ok(None) };
        let mask = (b1 & 0x80 != 0).then(|| header[at - 4..].try_into().expect("four bytes"));
        Ok(Some((FrameHeader { fin, opcode, mask, len }, at)))
    }

    /// Appends the header to `out` (a `Vec<u8>`, a `BytesMut`), its length in the fewest bytes.
    pub fn encode(&self, out: &mut impl Extend<u8>) {
        let masked = if self.mask.is_some() { 0x80 } else { 0 };
        out.extend([(u8::from(self.fin) << 7) | self.opcode.bits()]);
        match self.len {
            len @ 0..=125 => out.extend([masked | len as u8]),
            len @ 126..=0xFFFF => {
                out.extend([masked | 126]);
                out.extend((len as u16).to_be_bytes());
            }
            len => {
                out.extend([masked | 127]);
                out.extend(len.to_be_bytes());
            }
        }
        if let Some(mask) = self.mask {
            out.extend(mask);
        }
    }
}

/// Appends a whole frame to `out`: its header, and `payload` masked with `mask` if there is one
/// (as every frame a client sends must be).
///
/// ```
/// use relay_proto::ws_frame::{MessageReader, Opcode, WsEvent, encode_frame};
///
/// let mut bytes = Vec::new();
/// encode_frame(true, Opcode::Binary, Some([9, 8, 7, 6]), b"hello", &mut bytes);
/// let (_, event) = MessageReader::new(1024).read(&mut bytes).unwrap();
/// let Some(WsEvent::Binary { range, last: true }) = event else { panic!("{event:?}") };
/// assert_eq!(&bytes[range], b"hello");
/// ```
pub fn encode_frame(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload: &[u8], out: &mut Vec<u8>) {
    FrameHeader { fin, opcode, mask, len: payload.len() as u64 }.encode(out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask, 0);
    }
}

/// How many bytes follow a header's first two for its length, by its second byte.
fn length_bytes(b1: u8) -> usize {
    match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    }
}

/// A header's whole length, by its second byte (the mask bit and the length's form).
pub fn header_len(b1: u8) -> usize {
    2 + length_bytes(b1) + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// The payload length a header declares, from its first bytes (at least its length's); no other
/// part of it is checked. For readers that only follow the framing.
pub fn declared_len(header: &[u8]) -> u64 {
    match header[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().expect("eight bytes")),
        len => u64::from(len),
    }
}

/// XORs `payload`, which starts `offset` bytes into its frame's payload, with `mask`.
///
/// Eight bytes at a time (the compiler turns the loop into vector instructions): every byte of a
/// client's message goes through here, and byte by byte it cost as much as decrypting the TLS
/// record the byte came in.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4], offset: u64) {
    // The mask as it applies from this payload's first byte on.
    let mut turned = mask;
    turned.rotate_left((offset % 4) as usize);
    let [a, b, c, d] = turned;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = payload.chunks_exact_mut(8);
    for word in &mut words {
        let masked = u64::from_ne_bytes((&*word).try_into().expect("eight bytes")) ^ wide;
        word.copy_from_slice(&masked.to_ne_bytes());
    }
    // What is left starts a multiple of eight (so of four) bytes in.
    for (byte, key) in words.into_remainder().iter_mut().zip(turned.iter().cycle()) {
        *byte ^= key;
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455, section 7.4): the defined codes
/// but those that only say why no close frame came (1005, 1006, 1015), and the ranges left to
/// libraries and applications.
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame's payload: nothing, or a code that may be sent and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, WsFrameError> {
    match payload {
        [] => Ok(None),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let reason = std::str::from_utf8(reason).map_err(|_| WsFrameError::BadClose)?;
            if !is_sendable_close_code(code) {
                return Err(WsFrameError::BadClose);
            }
            Ok(Some((code, reason.to_owned())))
        }
        [_] => Err(WsFrameError::BadClose),
    }
}

/// What a [`MessageReader`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A whole text message.
    Text(String),
    /// A piece of a binary message: the bytes at `range` of the input just read, unmasked in
    /// place. `last` ends the message (its piece may then be empty).
    Binary {
        /// Where the piece is in the input.
        range: Range<usize>,
        /// Whether the message ends with it.
        last: bool,
    },
    /// A ping, with its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame, with its status code and reason if it has a code.
    Close(Option<(u16, String)>),
}

/// The kind of the data message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// The frame being read, once its header is whole.
#[derive(Debug)]
struct Frame {
    header: FrameHeader,
    /// Payload bytes still to come.
    left: u64,
    /// Payload bytes read so far.
    read: u64,
}

/// Reads a client's frames (masked) into [`WsEvent`]s, from bytes fed in any chunking; or, made
/// with [`of_server`](Self::of_server), a server's (unmasked).
///
/// Text messages are gathered up to a limit; binary messages are passed on as the pieces of
/// payload in each input, so the reader holds no more than a frame header, a control frame's
/// payload and the text message in progress.
#[derive(Debug)]
pub struct MessageReader {
    header: [u8; MAX_HEADER_LEN],
    have: usize,
    frame: Option<Frame>,
    message: Option<Kind>,
    text: Vec<u8>,
    max_text: usize,
    /// The longest binary message taken, and how much of the one in progress has been read.
    max_binary: u64,
    binary_read: u64,
    control: Vec<u8>,
    /// Whether frames come masked: from a client.
    masked: bool,
}

impl MessageReader {
    /// A reader of a client's frames that takes text messages of up to `max_text` bytes.
    pub fn new(max_text: usize) -> Self {
        Self {
            header: [0; MAX_HEADER_LEN],
            have: 0,
            frame: None,
            message: None,
            text: Vec::new(),
            max_text,
            max_binary: u64::MAX,
            binary_read: 0,
            control: Vec::new(),
            masked: true,
        }
    }

    /// A reader of a server's frames, as a client reads them: unmasked, and a masked one is
    /// refused ([`WsFrameError::Masked`], RFC 6455, section 5.1).
    ///
    /// ```
    /// use relay_proto::ws_frame::{MessageReader, Opcode, WsEvent, WsFrameError, encode_frame};
    ///
    /// let mut bytes = Vec::new();
    /// encode_frame(true, Opcode::Binary, None, b"hi", &mut bytes);
    /// let (_, event) = MessageReader::of_server(1024).read(&mut bytes).unwrap();
    /// assert_eq!(event, Some(WsEvent::Binary { range: 2..4, last: true }));
    ///
    /// let mut masked = Vec::new();
    /// encode_frame(true, Opcode::Binary, Some([1, 2, 3, 4]), b"hi", &mut masked);
    /// assert_eq!(MessageReader::of_server(1024).read(&mut masked), Err(WsFrameError::Masked));
    /// ```
    pub fn of_server(max_text: usize) -> Self {
        Self { masked: false, ..Self::new(max_text) }
    }

    /// Refuses binary messages longer than `max` bytes, at the header of the frame that would
    /// take one past it (unbounded by default: pieces are passed on, not held).
    pub fn max_binary(mut self, max: u64) -> Self {
        self.max_binary = max;
        self
    }

    /// The payload bytes still to come of the binary frame in progress, once its header has been
    /// read; `None` between frames and in other frames. A reader may read that many bytes into
    /// the buffer where it gathers the message and pass them to [`read`](Self::read) there.
    pub fn binary_left(&self) -> Option<u64> {
        let frame = self.frame.as_ref()?;
        (self.message == Some(Kind::Binary) && !frame.header.opcode.is_control()).then_some(frame.left)
    }

    /// Reads from the start of `input`: how many bytes it used, and the event they complete, if
    /// any. Without an event, it used all of `input`; with one, the caller passes the rest next.
    /// A binary piece is unmasked in place, at the event's range of `input`.
    pub fn read(&mut self, input: &mut [u8]) -> Result<(usize, Option<WsEvent>), WsFrameError> {
        let mut used = 0;
        loop {
            if self.frame.is_none() {
                let take = (MAX_HEADER_LEN - self.have).min(input.len() - used);
                self.header[self.have..self.have + take].copy_from_slice(&input[used..used + take]);
                match FrameHeader::parse(&self.header[..self.have + take])? {
                    None => {
                        self.have += take;
                        return Ok((used + take, None));
                    }
                    Some((header, len)) => {
                        used += len - self.have;
                        self.have = 0;
                        self.begin(header)?;
                    }
                }
            }
            let frame = self.frame.as_mut().expect("a frame is in progress");
            let n = usize::try_from(frame.left).unwrap_or(usize::MAX).min(input.len() - used);
            let range = used..used + n;
            if let Some(mask) = frame.header.mask {
                apply_mask(&mut input[range.clone()], mask, frame.read);
            }
            used += n;
            frame.left -= n as u64;
            frame.read += n as u64;
            let (header, done) = (frame.header, frame.left == 0);
            if done {
                self.frame = None;
            }
            let event = self.payload(header, &input[range.clone()], done)?;
            let event = match event {
                Some(Kind::Binary) => Some(WsEvent::Binary { range, last: done && header.fin }),
                Some(Kind::Text) => self.end_text()?,
                None if done && header.opcode.is_control() => Some(self.end_control(header.opcode)?),
                None => None,
            };
            if event.is_some() {
                return Ok((used, event));
            }
            if !done {
                return Ok((used, None));
            }
        }
    }

    /// Starts reading a frame whose header is whole.
    fn begin(&mut self, header: FrameHeader) -> Result<(), WsFrameError> {
        match (header.mask, self.masked) {
            (None, true) => return Err(WsFrameError::Unmasked),
            (Some(_), false) => return Err(WsFrameError::Masked),
            _ => {}
        }
        match (header.opcode, self.message) {
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(WsFrameError::Interleaved),
            (Opcode::Text, None) => {
                self.text.clear();
                self.message = Some(Kind::Text);
            }
            (Opcode::Binary, None) => {
                self.binary_read = 0;
                self.message = Some(Kind::Binary);
            }
            (Opcode::Continuation, None) => return Err(WsFrameError::StrayContinuation),
            _ => {}
        }
        if header.opcode.is_control() {
            self.control.clear();
        } else if self.message == Some(Kind::Binary) {
            if self.binary_read.saturating_add(header.len) > self.max_binary {
                return Err(WsFrameError::BinaryTooLong { max: self.max_binary });
            }
            self.binary_read += header.len;
        }
        self.frame = Some(Frame { header, left: header.len, read: 0 });
        Ok(())
    }

    /// Takes a piece of a frame's payload; the kind of data message it completes an event of:
    /// binary, a piece (or its end) to pass on; text, once the message is whole.
    fn payload(&mut self, header: FrameHeader, piece: &[u8], done: bool) -> Result<Option<Kind>, WsFrameError> {
        if header.opcode.is_control() {
            self.control.extend_from_slice(piece);
            return Ok(None);
        }
        let ends_message = done && header.fin;
        match self.message {
            Some(Kind::Text) => {
                if self.text.len() + piece.len() > self.max_text {
                    return Err(WsFrameError::TextTooLong { max: self.max_text });
                }
                self.text.extend_from_slice(piece);
                Ok(ends_message.then_some(Kind::Text))
            }
            Some(Kind::Binary) => {
                if ends_message {
                    self.message = None;
                }
                Ok((!piece.is_empty() || ends_message).then_some(Kind::Binary))
            }
            None => Ok(None),
        }
    }

    /// The whole text message just ended.
    fn end_text(&mut self) -> Result<Option<WsEvent>, WsFrameError> {
        self.message = None;
        let text = String::from_utf8(std::mem::take(&mut self.text)).map_err(|_| WsFrameError::NotUtf8)?;
        Ok(Some(WsEvent::Text(text)))
    }

    /// The control frame just read whole.
    fn end_control(&mut self, opcode: Opcode) -> Result<WsEvent, WsFrameError> {
        Ok(match opcode {
            Opcode::Ping => WsEvent::Ping(std::mem::take(&mut self.control)),
            Opcode::Pong => WsEvent::Pong,
            _ => WsEvent::Close(parse_close(&self.control)?),
        })
    }
}

#[cfg(test)]
mod tests;
