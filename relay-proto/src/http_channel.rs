//! HTTP requests to native hosts, carried on a channel.
//!
//! A host that says in its registration that it takes HTTP (a [`Hello::Listen`] with `http`
//! set over QUIC, the [`TAKES_HTTP_HEADER`] on a Hybrid Connections `listen` over wss) is sent
//! each HTTP-mode request as a channel like any caller's, whose contract is named [`CONTRACT`].
//! So one path serves both transports, here and across a cluster's nodes, with the channel's
//! flow control: bodies stream both ways and are never held whole by the relay.
//!
//! On the channel, in frames:
//! - relay to host: a [`RequestHead`], then the request body in frames of any size but zero,
//!   then an empty frame;
//! - host to relay: a [`ResponseHead`], then the response body likewise, ended by an empty
//!   frame. The host may answer before the request body has ended.
//!
//! ```
//! use relay_proto::http_channel::{RequestHead, ResponseHead};
//!
//! let head = RequestHead {
//!     method: "POST".into(),
//!     target: "/calc/Calculator/add".into(),
//!     remote: "203.0.113.7:50123".into(),
//!     headers: vec![("content-type".into(), "application/json".into())],
//! };
//! assert_eq!(RequestHead::decode(&head.encode())?, head);
//! let answer = ResponseHead { status: 200, headers: vec![] };
//! assert_eq!(ResponseHead::decode(&answer.encode())?, answer);
//! # Ok::<(), relay_proto::ProtoError>(())
//! ```
//!
//! [`Hello::Listen`]: crate::Hello::Listen

use crate::frame::{PROTOCOL_VERSION, ProtoError};
use crate::message::ContractInfo;
use crate::wire::{Reader, Writer};

/// The contract name of a channel that carries one HTTP request. No `#[relay_service]` contract
/// can have it: `$` is in no Rust identifier.
pub const CONTRACT: &str = "$http";

/// The header with which a Hybrid Connections listener over wss says it takes HTTP requests as
/// channels (value `1`). Azure's relay ignores it.
pub const TAKES_HTTP_HEADER: &str = "Relay-Takes-Http";

/// The most headers a head carries.
pub const MAX_HEADERS: usize = 256;
/// The longest request target.
pub const MAX_TARGET_LEN: usize = 16 * 1024;
/// The longest header value.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

const MAX_METHOD_LEN: usize = 32;
const MAX_NAME_LEN: usize = 256;
const MAX_REMOTE_LEN: usize = 64;

const TAG_REQUEST: u8 = 10;
const TAG_RESPONSE: u8 = 11;

/// The contract a channel carrying an HTTP request announces.
pub fn contract() -> ContractInfo {
    ContractInfo { name: CONTRACT.to_owned(), ..ContractInfo::default() }
}

/// Whether a channel with `contract` carries an HTTP request.
pub fn is_http(contract: &ContractInfo) -> bool {
    contract.name == CONTRACT
}

/// An HTTP request's head, as the relay sends it to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target as the sender wrote it, with the address and without the relay's
    /// token parameters: `/calc/Calculator/add?x=1`.
    pub target: String,
    /// The sender's address and port, as the relay saw them.
    pub remote: String,
    /// The headers, names lower-case, the relay's token headers and hop-by-hop headers removed.
    pub headers: Vec<(String, String)>,
}

/// An HTTP response's head, as the host sends it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// Encodes the head as one frame's body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(PROTOCOL_VERSION, TAG_REQUEST);
        w.str(clip(&self.method, MAX_METHOD_LEN))
            .str(clip(&self.target, MAX_TARGET_LEN))
            .str(clip(&self.remote, MAX_REMOTE_LEN));
        write_headers(&mut w, &self.headers);
        w.finish()
    }

    /// Decodes a frame's body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = open(body, TAG_REQUEST)?;
        let head = Self {
            method: r.str("method", MAX_METHOD_LEN)?.to_owned(),
            target: r.str("request target", MAX_TARGET_LEN)?.to_owned(),
            remote: r.str("remote endpoint", MAX_REMOTE_LEN)?.to_owned(),
            headers: read_headers(&mut r)?,
        };
        r.end()?;
        Ok(head)
    }
}

impl ResponseHead {
    /// Encodes the head as one frame's body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(PROTOCOL_VERSION, TAG_RESPONSE);
        w.u16(self.status);
        write_headers(&mut w, &self.headers);
        w.finish()
    }

    /// Decodes a frame's body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = open(body, TAG_RESPONSE)?;
        let head = Self { status: r.u16()?, headers: read_headers(&mut r)? };
        r.end()?;
        Ok(head)
    }
}

fn open(body: &[u8], expected: u8) -> Result<Reader<'_>, ProtoError> {
    let mut r = Reader::new(body);
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(ProtoError::UnsupportedVersion(version));
    }
    match r.u8()? {
        tag if tag == expected => Ok(r),
        other => Err(ProtoError::UnexpectedMessage(other)),
    }
}

/// At most `max` bytes of `s`, cut at a character boundary (what a decoder would refuse is
/// never written).
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn write_headers(w: &mut Writer, headers: &[(String, String)]) {
    let fits = |(name, value): &&(String, String)| name.len() <= MAX_NAME_LEN && value.len() <= MAX_VALUE_LEN;
    let headers: Vec<_> = headers.iter().filter(fits).take(MAX_HEADERS).collect();
    w.u16(headers.len() as u16);
    for (name, value) in headers {
        w.str(name).str(value);
    }
}

fn read_headers(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, ProtoError> {
    let count = r.u16()? as usize;
    if count > MAX_HEADERS {
        return Err(ProtoError::FieldTooLong { field: "header list", len: count, max: MAX_HEADERS });
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.str("header name", MAX_NAME_LEN)?.to_owned();
        headers.push((name, r.str("header value", MAX_VALUE_LEN)?.to_owned()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestHead {
        RequestHead {
            method: "POST".into(),
            target: "/calc/Calculator/add?x=é".into(),
            remote: "[::1]:4000".into(),
            headers: vec![("content-type".into(), "application/json".into()), ("x-empty".into(), String::new())],
        }
    }

    #[test]
    fn heads_round_trip() {
        assert_eq!(RequestHead::decode(&request().encode()), Ok(request()));
        let response = ResponseHead { status: 404, headers: vec![("via".into(), "1.1 relay".into())] };
        assert_eq!(ResponseHead::decode(&response.encode()), Ok(response));
    }

    #[test]
    fn truncations_and_other_messages_are_errors() {
        let body = request().encode();
        for len in 0..body.len() {
            assert!(RequestHead::decode(&body[..len]).is_err(), "prefix of {len} bytes accepted");
        }
        assert_eq!(ResponseHead::decode(&body), Err(ProtoError::UnexpectedMessage(TAG_REQUEST)));
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(RequestHead::decode(&longer), Err(ProtoError::TrailingBytes(1)));
    }

    #[test]
    fn what_a_decoder_refuses_is_never_written() {
        let huge = RequestHead {
            method: "M".repeat(100),
            target: format!("/{}", "é".repeat(MAX_TARGET_LEN)),
            remote: String::new(),
            headers: (0..MAX_HEADERS + 10)
                .map(|i| (format!("h{i}"), "v".into()))
                .chain([("big".into(), "v".repeat(MAX_VALUE_LEN + 1))])
                .collect(),
        };
        let decoded = RequestHead::decode(&huge.encode()).expect("decodes");
        assert_eq!(decoded.headers.len(), MAX_HEADERS);
        assert!(decoded.target.len() <= MAX_TARGET_LEN && decoded.method.len() == MAX_METHOD_LEN);
    }

    #[test]
    fn the_contract_marks_http_channels() {
        assert!(is_http(&contract()));
        assert!(!is_http(&ContractInfo { name: "Calculator".into(), ..ContractInfo::default() }));
        assert_eq!(ContractInfo::from_header(&contract().to_header()), Some(contract()));
    }
}
