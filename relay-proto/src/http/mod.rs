//! The HTTP/1.1 heads of a WebSocket opening handshake (RFC 6455 §4), sans-IO: the request a
//! relay reads ([`parse_request`]) and the response a client reads ([`parse_response`]).
//!
//! Both parsers take whatever has arrived so far and answer `Ok(None)` until the head is
//! complete, then the head and the number of bytes it took: what follows is the WebSocket's.
//! Neither looks past [`MAX_HEAD`] bytes nor takes more than [`MAX_HEADERS`] headers, so a
//! driver reads at most [`MAX_HEAD`] bytes before it has an answer. Header values are text, with
//! any byte that is not UTF-8 replaced by U+FFFD.
//!
//! ```
//! use relay_proto::http::parse_request;
//!
//! let bytes = b"GET /$hc/calc?sb-hc-action=listen HTTP/1.1\r\nHost: relay.example\r\n\
//!     Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n\x82\x00";
//! assert_eq!(parse_request(&bytes[..40])?, None);
//! let (head, used) = parse_request(bytes)?.expect("a whole head");
//! assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/$hc/calc?sb-hc-action=listen"));
//! assert_eq!(head.websocket_key(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
//! assert_eq!(&bytes[used..], b"\x82\x00");
//! # Ok::<(), relay_proto::http::HeadError>(())
//! ```

mod request;
mod response;

pub use request::{RequestHead, UpgradeError, parse_request};
pub use response::{AcceptError, ResponseHead, parse_response};

/// The longest head (start line and headers, blank line included) accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most headers a head may have.
pub const MAX_HEADERS: usize = 64;

/// Why bytes are not an acceptable HTTP/1.x head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// No head ends within the first [`MAX_HEAD`] bytes.
    #[error("head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// The head has more than [`MAX_HEADERS`] headers.
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// The request or status line is not HTTP/1.0 or HTTP/1.1 syntax (or is missing).
    #[error("malformed start line")]
    StartLine,
    /// A header's name or value holds a byte a header cannot carry.
    #[error("malformed header")]
    Header,
    /// A CR not followed by LF, or a request head ended by a blank line of bare LFs.
    #[error("malformed line ending")]
    LineEnding,
}

impl From<httparse::Error> for HeadError {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::TooManyHeaders => Self::TooManyHeaders,
            httparse::Error::HeaderName | httparse::Error::HeaderValue => Self::Header,
            httparse::Error::NewLine => Self::LineEnding,
            httparse::Error::Token | httparse::Error::Version | httparse::Error::Status => Self::StartLine,
        }
    }
}

/// The headers httparse found, as owned text.
fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect()
}

/// The value of the first header named `name` (in any letter case).
fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Whether the first header named `name` lists `token` (comma-separated, in any letter case).
fn lists_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    first_header(headers, name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}
