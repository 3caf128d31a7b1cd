//! Azure Relay's Hybrid Connections protocol over WebSocket, sans-IO: request targets, control
//! messages (`accept`, `renewToken`, and HTTP mode's `request` and `response`, whose rules live in
//! [`hc_http`](crate::hc_http)), status and close codes.
//!
//! See Azure's protocol guide (`relay-hybrid-connections-protocol.md`). A listener opens a control
//! WebSocket to `/$hc/{path}?sb-hc-action=listen`; a sender opens `/$hc/{path}[/suffix][?query]
//! &sb-hc-action=connect`; the relay sends the listener `{"accept":{"address":…,"id":…,
//! "connectHeaders":{…}}}` and the listener opens a rendezvous WebSocket to that address, or
//! rejects by opening it with `sb-hc-statusCode` and `sb-hc-statusDescription` appended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::{MAX_ADDRESS_LEN, validate_address};
use crate::auth::AuthFailure;
use crate::codes::{ErrorCode, StreamCode};
use crate::hc_http::{RequestMessage, ResponseMessage};
use crate::message::{ContractInfo, MAX_TYPES, MethodInfo, TypeInfo};

/// The fixed path prefix of every Hybrid Connections WebSocket.
pub const HC_PREFIX: &str = "/$hc/";

/// The query parameter carrying a token.
pub const TOKEN_PARAM: &str = "sb-hc-token";

/// The header that may carry a token instead of the query.
pub const TOKEN_HEADER: &str = "ServiceBusAuthorization";

/// The header carrying a typed caller's contract; raw WebSocket senders send none.
pub const CONTRACT_HEADER: &str = "Relay-Contract";

/// The header of the relay's `101` to a sender that gives the relay's id for the channel (as its
/// listener gets it in `sb-hc-id` when the sender gave none), so that logs on every side name the
/// channel alike. Not Azure's: its clients ignore it.
pub const CHANNEL_ID_HEADER: &str = "Relay-Channel-Id";

/// The longest request target accepted, in bytes.
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// WebSocket close code: normal closure (the listener shut the socket).
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code: the peer went away, or the address was removed.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code: the security token expired (policy violation).
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code: a message was larger than the relay takes.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code: something went wrong in the relay.
pub const CLOSE_ERROR: u16 = 1011;
/// WebSocket close code: the relay is shutting down ("service restart").
pub const CLOSE_RESTART: u16 = 1012;

/// Which end of a channel did something: the listener (the host) or the sender (the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEnd {
    /// The listener's end.
    Listener,
    /// The sender's end.
    Sender,
}

/// What a channel WebSocket's close code, sent by `closed_by`, says as a stream code: `None` for
/// a normal close (or none given), [`StreamCode::ProtocolError`] for a code with no meaning here.
/// The one mapping hosts, callers and the relay's splices read.
///
/// ```
/// use relay_proto::StreamCode;
/// use relay_proto::hc::{CLOSE_GOING_AWAY, ChannelEnd, close_to_stream_code};
/// assert_eq!(close_to_stream_code(Some(CLOSE_GOING_AWAY), ChannelEnd::Listener), Some(StreamCode::ListenerGone));
/// assert_eq!(close_to_stream_code(None, ChannelEnd::Sender), None);
/// ```
pub fn close_to_stream_code(close: Option<u16>, closed_by: ChannelEnd) -> Option<StreamCode> {
    match close {
        None | Some(CLOSE_NORMAL) => None,
        Some(CLOSE_GOING_AWAY) => Some(match closed_by {
            ChannelEnd::Listener => StreamCode::ListenerGone,
            ChannelEnd::Sender => StreamCode::CallerGone,
        }),
        Some(CLOSE_RESTART) => Some(StreamCode::RelayShutdown),
        Some(_) => Some(StreamCode::ProtocolError),
    }
}

/// The WebSocket close code that says what `code` says, for a channel cut by the relay.
///
/// ```
/// use relay_proto::StreamCode;
/// use relay_proto::hc::{CLOSE_POLICY, stream_code_to_close};
/// assert_eq!(stream_code_to_close(StreamCode::Overflowed), CLOSE_POLICY);
/// ```
pub fn stream_code_to_close(code: StreamCode) -> u16 {
    match code {
        StreamCode::Done => CLOSE_NORMAL,
        StreamCode::ListenerGone | StreamCode::CallerGone => CLOSE_GOING_AWAY,
        StreamCode::RelayShutdown => CLOSE_RESTART,
        StreamCode::TokenExpired | StreamCode::Unauthorized | StreamCode::Overflowed => CLOSE_POLICY,
        StreamCode::ProtocolError | StreamCode::HandshakeTimeout | StreamCode::Other(_) => CLOSE_ERROR,
    }
}

/// What a Hybrid Connections WebSocket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// A listener's control channel.
    Listen,
    /// A sender's connection.
    Connect,
    /// A listener's rendezvous socket, accepting (or rejecting) one sender.
    Accept,
    /// A listener's rendezvous socket for one HTTP-mode request
    /// (`sb-hc-action=request&sb-hc-id={id}`): the relay sends the request there, the listener
    /// answers there.
    Request,
}

/// Why a request target is not a Hybrid Connections target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The target is longer than [`MAX_TARGET_LEN`].
    #[error("request target too long")]
    TooLong,
    /// The path does not start with `/$hc/`.
    #[error("path does not start with /$hc/")]
    NotHc,
    /// `sb-hc-action` is missing or unknown.
    #[error("missing or unknown sb-hc-action")]
    BadAction,
    /// A query parameter is malformed or repeated.
    #[error("malformed query parameter {0:?}")]
    BadParam(String),
    /// The path names no valid address, or holds a `.` or `..` segment (plain or
    /// percent-encoded), which a listener's URL parser would resolve to a path outside the
    /// address.
    #[error("path names no valid address")]
    BadPath,
    /// The target holds a raw `#` or `\`. The path suffix and query reach the listener in its
    /// `accept` URL, where a `#` would cut off the relay's own parameters and a `\` reads as `/`.
    #[error("request target holds {0:?}")]
    ForbiddenCharacter(char),
}

/// A parsed Hybrid Connections request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The path after `/$hc/`, as sent (address plus any suffix), without the query.
    pub path: String,
    /// The action.
    pub action: Action,
    /// `sb-hc-token`, decoded.
    pub token: Option<String>,
    /// `sb-hc-id`, decoded.
    pub id: Option<String>,
    /// `sb-hc-statusCode` of a rejecting rendezvous.
    pub status_code: Option<u16>,
    /// `sb-hc-statusDescription` of a rejecting rendezvous, decoded.
    pub status_description: Option<String>,
    /// Query parameters not prefixed `sb-hc-`, as sent, for the listener.
    pub passthrough: Vec<String>,
}

impl Target {
    /// Parses a request target such as `/$hc/calc/eu?x=1&sb-hc-action=connect&sb-hc-token=…`.
    pub fn parse(target: &str) -> Result<Self, TargetError> {
        if target.len() > MAX_TARGET_LEN {
            return Err(TargetError::TooLong);
        }
        if let Some(c) = target.chars().find(|c| matches!(c, '#' | '\\')) {
            return Err(TargetError::ForbiddenCharacter(c));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = path.strip_prefix(HC_PREFIX).ok_or(TargetError::NotHc)?;
        let path = path.strip_suffix('/').unwrap_or(path);
        if address_prefixes(path).next().is_none() || path.split('/').any(is_dot_segment) {
            return Err(TargetError::BadPath);
        }
        let mut parsed = Self {
            path: path.to_owned(),
            action: Action::Listen,
            token: None,
            id: None,
            status_code: None,
            status_description: None,
            passthrough: Vec::new(),
        };
        let mut action = None;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if !name.starts_with("sb-hc-") {
                // The relay appends its own `sb-hc-` parameters after these, and listeners
                // decode names (some ignore their case too): a name that reads as `sb-hc-…`
                // would pass for one of the relay's, so it is dropped, never passed on.
                if !names_relay_param(name) {
                    parsed.passthrough.push(param.to_owned());
                }
                continue;
            }
            let bad = || TargetError::BadParam(name.to_owned());
            let value = crate::auth::percent::decode(value).ok_or_else(bad)?;
            let slot_taken = match name {
                "sb-hc-action" => action.replace(value).is_some(),
                "sb-hc-token" => parsed.token.replace(value).is_some(),
                "sb-hc-id" => parsed.id.replace(value).is_some(),
                "sb-hc-statusCode" => parsed.status_code.replace(value.parse().map_err(|_| bad())?).is_some(),
                "sb-hc-statusDescription" => parsed.status_description.replace(value).is_some(),
                _ => false, // Other sb-hc- parameters are the relay's own; they are not passed on.
            };
            if slot_taken {
                return Err(bad());
            }
        }
        parsed.action = match action.as_deref() {
            Some("listen") => Action::Listen,
            Some("connect") => Action::Connect,
            Some("accept") => Action::Accept,
            Some("request") => Action::Request,
            _ => return Err(TargetError::BadAction),
        };
        Ok(parsed)
    }

    /// The value of a parameter of the raw query, e.g. the relay's own `sb-hc-rendezvous`.
    pub fn raw_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
        let (_, query) = target.split_once('?')?;
        query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    }
}

/// Whether a query parameter name reads as one of the relay's own (`sb-hc-…`, any letter case)
/// once decoded as a listener's URL parser decodes it, leniently.
pub(crate) fn names_relay_param(name: &str) -> bool {
    const PREFIX: &[u8] = b"sb-hc-";
    crate::auth::percent::decode_lenient(name).get(..PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// The addresses a path could name, longest first: `calc/eu/x` gives `calc/eu/x`, `calc/eu`,
/// `calc`, keeping only valid addresses. The rest of the path is a suffix for the listener.
pub fn address_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let ends = path.match_indices('/').map(|(i, _)| i).chain(std::iter::once(path.len()));
    let mut ends: Vec<usize> = ends.filter(|&i| i <= MAX_ADDRESS_LEN).collect();
    ends.reverse();
    ends.into_iter().map(move |end| &path[..end]).filter(|prefix| validate_address(prefix).is_ok())
}

/// Whether a path segment reads as `.` or `..` to a URL parser (WHATWG's reads `%2e` as a dot).
fn is_dot_segment(segment: &str) -> bool {
    matches!(segment.to_ascii_lowercase().as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e.")
}

/// A JSON message on a listener's control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlMessage {
    /// Relay to listener: a sender is waiting; open a rendezvous to `address`.
    #[serde(rename = "accept")]
    Accept(Accept),
    /// Listener to relay: replace the registration's token.
    #[serde(rename = "renewToken")]
    RenewToken {
        /// The new token.
        token: String,
    },
    /// Relay to listener: an HTTP-mode request, or a request to open a rendezvous for one.
    #[serde(rename = "request")]
    Request(RequestMessage),
    /// Listener to relay: the answer to an HTTP-mode request.
    #[serde(rename = "response")]
    Response(ResponseMessage),
}

/// The `accept` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The single-use rendezvous URL.
    pub address: String,
    /// The connection's id (the sender's `sb-hc-id`, or the relay's).
    pub id: String,
    /// The sender's HTTP headers, token headers removed.
    #[serde(rename = "connectHeaders", default)]
    pub connect_headers: BTreeMap<String, String>,
}

/// The HTTP status and reason phrase a refusal is reported with on a WebSocket handshake.
pub fn http_status(code: ErrorCode) -> (u16, &'static str) {
    match code {
        ErrorCode::NoListener => (404, "Not Found"),
        ErrorCode::Auth(AuthFailure::WrongRight | AuthFailure::OutOfScope) => (403, "Forbidden"),
        ErrorCode::Auth(_) => (401, "Unauthorized"),
        ErrorCode::ContractMismatch => (409, "Conflict"),
        ErrorCode::BadRequest => (400, "Bad Request"),
        ErrorCode::Busy | ErrorCode::ShuttingDown => (503, "Service Unavailable"),
        ErrorCode::Rejected => (403, "Forbidden"),
        ErrorCode::RateLimited => (429, "Too Many Requests"),
        ErrorCode::Unreachable => (502, "Bad Gateway"),
        _ => (500, "Internal Server Error"),
    }
}

/// What a `503` says when the relay is shutting down (rather than busy).
const SHUTTING_DOWN: &str = "relay is shutting down";

/// The status description the relay sends: `"{reason}: {detail}"` for authorization failures and
/// a fixed text when shutting down, so that typed clients recover the code with [`error_code`].
pub fn status_description(code: ErrorCode, detail: &str) -> String {
    match code {
        ErrorCode::Auth(reason) => format!("{reason}: {detail}"),
        ErrorCode::ShuttingDown => SHUTTING_DOWN.to_owned(),
        _ => detail.to_owned(),
    }
}

/// The error code a handshake's HTTP status (and description) stands for.
pub fn error_code(status: u16, description: &str) -> ErrorCode {
    match status {
        404 => ErrorCode::NoListener,
        401 | 403 => AuthFailure::from_description(description).map_or(ErrorCode::Rejected, ErrorCode::Auth),
        409 => ErrorCode::ContractMismatch,
        400 => ErrorCode::BadRequest,
        429 => ErrorCode::RateLimited,
        502 => ErrorCode::Unreachable,
        503 if description.starts_with(SHUTTING_DOWN) => ErrorCode::ShuttingDown,
        503 => ErrorCode::Busy,
        _ => ErrorCode::Rejected,
    }
}

impl ContractInfo {
    /// The contract as a header value: `name;fingerprint;method=fingerprint,…;type=fingerprint,…`
    /// (hex fingerprints).
    pub fn to_header(&self) -> String {
        let list = |pairs: &mut dyn Iterator<Item = (&str, u64)>| -> String {
            pairs.map(|(name, fp)| format!("{name}={fp:x}")).collect::<Vec<_>>().join(",")
        };
        let methods = list(&mut self.methods.iter().map(|m| (m.name.as_str(), m.fingerprint)));
        let types = list(&mut self.types.iter().take(MAX_TYPES).map(|t| (t.name.as_str(), t.fingerprint)));
        format!("{};{:x};{methods};{types}", self.name, self.fingerprint)
    }

    /// Parses [`to_header`](Self::to_header)'s output (the type list may be missing).
    pub fn from_header(value: &str) -> Option<Self> {
        if value.len() > 32 * 1024 {
            return None;
        }
        let mut parts = value.splitn(4, ';');
        let name = parts.next()?.to_owned();
        let fingerprint = u64::from_str_radix(parts.next()?, 16).ok()?;
        let methods = named_fingerprints(parts.next()?)?;
        let types = named_fingerprints(parts.next().unwrap_or(""))?;
        if types.len() > MAX_TYPES {
            return None;
        }
        Some(Self {
            name,
            fingerprint,
            methods: methods.into_iter().map(|(name, fingerprint)| MethodInfo { name, fingerprint }).collect(),
            types: types.into_iter().map(|(name, fingerprint)| TypeInfo { name, fingerprint }).collect(),
        })
    }
}

/// `a=1f,b=2e` as pairs; `None` if malformed.
fn named_fingerprints(list: &str) -> Option<Vec<(String, u64)>> {
    list.split(',')
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (name, fp) = m.split_once('=')?;
            Some((name.to_owned(), u64::from_str_radix(fp, 16).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("/$hc/calc/eu?x=1&sb-hc-action=connect&sb-hc-token=Shared%20x&sb-hc-id=42&y").unwrap();
        assert_eq!(t.path, "calc/eu");
        assert_eq!(t.action, Action::Connect);
        assert_eq!(t.token.as_deref(), Some("Shared x"));
        assert_eq!(t.id.as_deref(), Some("42"));
        assert_eq!(t.passthrough, ["x=1", "y"]);
        let r = Target::parse(
            "/$hc/calc?sb-hc-action=accept&sb-hc-id=1&sb-hc-statusCode=418&sb-hc-statusDescription=I%27m%20a%20teapot",
        )
        .unwrap();
        assert_eq!((r.status_code, r.status_description.as_deref()), (Some(418), Some("I'm a teapot")));
        assert_eq!(Target::raw_param("/$hc/a?sb-hc-rendezvous=abc&x", "sb-hc-rendezvous"), Some("abc"));
        assert_eq!(Target::parse("/calc?sb-hc-action=listen"), Err(TargetError::NotHc));
        let request = Target::parse("/$hc/web/api?sb-hc-action=request&sb-hc-id=abc").unwrap();
        assert_eq!(
            (request.path.as_str(), request.action, request.id.as_deref()),
            ("web/api", Action::Request, Some("abc"))
        );
        assert_eq!(Target::parse("/$hc/calc?sb-hc-action=Request"), Err(TargetError::BadAction), "actions are exact");
        assert_eq!(Target::parse("/$hc/calc?sb-hc-action=dance"), Err(TargetError::BadAction));
        assert_eq!(Target::parse("/$hc/calc"), Err(TargetError::BadAction));
        assert!(matches!(
            Target::parse("/$hc/calc?sb-hc-action=listen&sb-hc-action=connect"),
            Err(TargetError::BadParam(_))
        ));
        assert_eq!(Target::parse("/$hc/../x?sb-hc-action=listen"), Err(TargetError::BadPath));
        assert_eq!(Target::parse("/$hc/?sb-hc-action=listen"), Err(TargetError::BadPath));
    }

    #[test]
    fn fragment_and_backslash_characters_are_refused() {
        // Regression (issue 19): the path suffix and query reach the listener's accept URL, where
        // a `#` would hide the relay's own parameters and a `\` reads as `/` to URL parsers.
        for target in [
            "/$hc/lab/x#y?sb-hc-action=connect",
            "/$hc/lab/x\\..\\y?sb-hc-action=connect",
            "/$hc/lab?sb-hc-action=connect&x=1#sb-hc-id=forged",
            "/$hc/lab?x=a\\b&sb-hc-action=connect",
            "/$hc/lab?sb-hc-action=connect&x#=1",
        ] {
            assert!(Target::parse(target).is_err(), "{target:?} accepted");
        }
    }

    #[test]
    fn sender_parameters_named_like_the_relays_own_never_pass_through() {
        // Regression (issue 19): a listener decodes parameter names (and may ignore their case),
        // so `%73b-hc-id` or `SB-HC-TOKEN` would read as the relay's own `sb-hc-` parameters.
        let t = Target::parse(
            "/$hc/lab/x?a=1&%73b-hc-id=forged&SB-HC-TOKEN=forged&Sb-Hc-Id=forged&sb%2Dhc%2Dx=1\
             &%53%42-hc-rendezvous=forged&%73b-hc-id%zz=1&sb-hcx=kept&b=2&sb-hc-action=connect",
        )
        .unwrap();
        assert_eq!(t.passthrough, ["a=1", "sb-hcx=kept", "b=2"]);
        assert_eq!((t.id, t.token), (None, None), "forged names are dropped, not read as the relay's");
    }

    #[test]
    fn address_prefixes_longest_first_and_never_past_a_bad_segment() {
        assert_eq!(address_prefixes("calc/eu/x").collect::<Vec<_>>(), ["calc/eu/x", "calc/eu", "calc"]);
        assert_eq!(address_prefixes("calc/a%20b").collect::<Vec<_>>(), ["calc"]);
        assert_eq!(address_prefixes("calc/../admin").collect::<Vec<_>>(), ["calc"]);
        assert!(address_prefixes("../admin").next().is_none());
    }

    #[test]
    fn dot_segments_in_a_senders_path_are_refused() {
        for target in
            ["/$hc/calc/../admin", "/$hc/calc/./x", "/$hc/calc/%2E%2e/admin", "/$hc/calc/.%2e", "/$hc/calc/x/.."]
        {
            let target = format!("{target}?sb-hc-action=connect");
            assert_eq!(Target::parse(&target).unwrap_err(), TargetError::BadPath, "{target}");
        }
        assert!(Target::parse("/$hc/calc/...x/.hidden?sb-hc-action=connect").is_ok(), "dots inside names are fine");
    }

    #[test]
    fn control_messages_are_azure_json() {
        let accept = ControlMessage::Accept(Accept {
            address: "wss://h/$hc/calc?sb-hc-action=accept".into(),
            id: "1".into(),
            connect_headers: BTreeMap::from([("Sec-WebSocket-Key".into(), "k".into())]),
        });
        let json = serde_json::to_string(&accept).unwrap();
        assert!(json.starts_with(r#"{"accept":{"address":"#) && json.contains(r#""connectHeaders":{"#), "{json}");
        assert_eq!(serde_json::from_str::<ControlMessage>(&json).unwrap(), accept);
        let renew: ControlMessage =
            serde_json::from_str(r#"{"renewToken":{"token":"SharedAccessSignature x"}}"#).unwrap();
        assert_eq!(renew, ControlMessage::RenewToken { token: "SharedAccessSignature x".into() });
    }

    /// Valid messages of every kind, as the relay and listeners write them.
    const VALID_MESSAGES: &[&str] = &[
        r#"{"accept":{"address":"wss://h/$hc/calc?sb-hc-action=accept&sb-hc-id=1","id":"1","connectHeaders":{"A":"b"}}}"#,
        r#"{"renewToken":{"token":"SharedAccessSignature sr=x&sig=y&se=1&skn=k"}}"#,
        r#"{"request":{"address":"wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1","id":"1"}}"#,
        r#"{"request":{"address":"wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1","id":"1","requestTarget":"/web/a?q=1","method":"POST","remoteEndpoint":{"address":"203.0.113.5","port":50123},"requestHeaders":{"Via":"1.1 h"},"body":true}}"#,
        r#"{"response":{"requestId":"1","statusCode":200,"statusDescription":"OK","responseHeaders":{"content-type":"text/plain","set-cookie":["a=1","b=2"]},"body":true}}"#,
        r#"{"response":{"requestId":"1","statusCode":"204"}}"#,
    ];

    #[test]
    fn malformed_control_messages_are_errors_not_panics() {
        let swaps =
            ["", "null", "0", "-1", "1e400", "\"", "[]", "{}", "\"\\u0000\"", "\"\\ud800\"", "99999999999999999999"];
        let mut tried = 0;
        for valid in VALID_MESSAGES {
            assert!(serde_json::from_str::<ControlMessage>(valid).is_ok(), "{valid}");
            let bytes = valid.as_bytes();
            for cut in 0..bytes.len() {
                let truncated = String::from_utf8_lossy(&bytes[..cut]);
                let _ = serde_json::from_str::<ControlMessage>(&truncated);
                let mut dropped = bytes.to_vec();
                dropped.remove(cut);
                let _ = serde_json::from_str::<ControlMessage>(&String::from_utf8_lossy(&dropped));
                for junk in [b'"', b'{', b'}', b',', b':', b'0', b'\\', 0xff] {
                    let mut changed = bytes.to_vec();
                    changed[cut] = junk;
                    let _ = serde_json::from_slice::<ControlMessage>(&changed);
                }
                tried += 10;
            }
            // Every value, in turn, replaced by something of the wrong type.
            for (start, _) in valid.match_indices(':') {
                let rest = &valid[start + 1..];
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                for swap in swaps {
                    let _ =
                        serde_json::from_str::<ControlMessage>(&format!("{}{swap}{}", &valid[..=start], &rest[end..]));
                    tried += 1;
                }
            }
        }
        for odd in
            ["", "{}", "[]", "null", r#"{"request":null}"#, r#"{"response":[]}"#, r#"{"accept":{},"request":{}}"#]
        {
            assert!(serde_json::from_str::<ControlMessage>(odd).is_err(), "{odd}");
        }
        assert!(tried > 500, "{tried} variants");
    }

    #[test]
    fn statuses_round_trip_to_codes() {
        for code in [
            ErrorCode::NoListener,
            ErrorCode::ContractMismatch,
            ErrorCode::BadRequest,
            ErrorCode::ShuttingDown,
            ErrorCode::RateLimited,
            ErrorCode::Unreachable,
        ]
        .into_iter()
        .chain(AuthFailure::ALL.map(ErrorCode::Auth))
        {
            let (status, _) = http_status(code);
            assert_eq!(error_code(status, &status_description(code, "detail")), code);
        }
        let contract = ContractInfo {
            name: "Calc".into(),
            fingerprint: 0xabc,
            methods: vec![MethodInfo { name: "add".into(), fingerprint: 7 }],
            types: vec![TypeInfo { name: "Rec".into(), fingerprint: 0xfeed }],
        };
        assert_eq!(ContractInfo::from_header(&contract.to_header()), Some(contract.clone()));
        let without_types = ContractInfo { types: Vec::new(), ..contract };
        assert_eq!(ContractInfo::from_header("Calc;abc;add=7"), Some(without_types));
        assert_eq!(ContractInfo::from_header(&ContractInfo::default().to_header()), Some(ContractInfo::default()));
        assert_eq!(ContractInfo::from_header("x;zz;"), None);
    }

    #[test]
    fn close_codes_and_stream_codes_say_the_same_both_ways() {
        for code in [StreamCode::ListenerGone, StreamCode::CallerGone, StreamCode::RelayShutdown] {
            let closed_by = if code == StreamCode::CallerGone { ChannelEnd::Sender } else { ChannelEnd::Listener };
            assert_eq!(close_to_stream_code(Some(stream_code_to_close(code)), closed_by), Some(code));
        }
        assert_eq!(close_to_stream_code(Some(stream_code_to_close(StreamCode::Done)), ChannelEnd::Sender), None);
        for unknown in [CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_ERROR, 4000] {
            assert_eq!(close_to_stream_code(Some(unknown), ChannelEnd::Listener), Some(StreamCode::ProtocolError));
        }
    }
}
