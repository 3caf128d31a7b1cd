//! The relay's wire protocol, sans-IO: frames and limits, handshake and control messages,
//! refusal and stream codes, addresses, contracts as carried on the wire, the Hybrid Connections
//! mapping (WebSocket and HTTP mode), the HTTP heads of WebSocket upgrades, Shared Access
//! Signature tokens, the QUIC stream grant and the listener session.
//!
//! Shared by hosts, callers and the relay. Nothing here touches a socket or waits: functions take
//! bytes (and the time, where it matters) and return messages, decisions or a typed
//! [`ProtoError`], so every decoder can be tested and fuzzed without a network. The only IO
//! outside the optional `io` feature's [`io`] module (frames on quinn streams, WebSocket ends on
//! async byte streams) is two conveniences for keys: [`auth::unix_now`] reads the clock and
//! [`auth::SharedAccessKey::from_file`] a file.
//!
//! # Streams
//! Over QUIC every channel is one bidirectional stream. The opener's first frame is a
//! [`Hello`]; the answer is a [`Reply`]. For each caller channel the relay opens a stream to a
//! listener and writes an [`Incoming`] frame; the listener's [`Reply`] travels back to the caller
//! verbatim, after which the relay splices the two streams byte for byte. Channel frames after the
//! handshake are `u32` big-endian length-prefixed, like handshake frames.
//!
//! ```
//! use relay_proto::{Hello, Reply, encode_frame, split_frame};
//!
//! let hello = Hello::Listen { address: "calc".into(), token: None, http: false };
//! let frame = encode_frame(&hello.encode());
//! let (body, used) = split_frame(&frame, relay_proto::MAX_HELLO_FRAME)?.expect("a whole frame");
//! assert_eq!((Hello::decode(body)?, used), (hello, frame.len()));
//! assert_eq!(Reply::decode(&Reply::Accepted.encode())?, Reply::Accepted);
//! # Ok::<(), relay_proto::ProtoError>(())
//! ```
#![deny(missing_docs)]

mod address;
mod assembler;
pub mod auth;
pub mod cluster;
mod codes;
pub mod contract;
pub mod cors;
pub mod error;
mod fnv;
mod frame;
pub mod grant;
pub mod hc;
pub mod hc_http;
pub mod http;
pub mod http_channel;
#[cfg(feature = "io")]
pub mod io;
mod message;
pub mod session;
pub mod shape;
mod wire;
pub mod ws_frame;

pub use address::{AddressError, MAX_ADDRESS_LEN, validate_address};
pub use assembler::FrameAssembler;
pub use codes::{ErrorCode, StreamCode};
pub use frame::{
    ALPN, DEFAULT_MAX_FRAME, FRAME_HEADER_LEN, MAX_HANDSHAKE_FRAME, MAX_HELLO_FRAME, MAX_TOKEN_LEN, PROTOCOL_VERSION,
    ProtoError, decode_frame_len, encode_frame, split_frame,
};
pub use message::{
    ContractInfo, Control, Hello, Incoming, MAX_DIAL_URL_LEN, MAX_SECRET_LEN, MAX_TYPES, MethodInfo, Refusal, Reply,
    TypeInfo,
};
