//! The listener's answer: the `response` control message, read as real listeners write it, and
//! what of it the sender gets (status, reason phrase, headers).

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{connection_listed, is_stripped};

/// The `response` control message (listener to relay), read leniently as real listeners write it:
/// `requestId` (string); `statusCode` a number OR a numeric string; `statusDescription` optional;
/// `responseHeaders` optional, an object whose values are strings or arrays of strings (each array
/// element becomes its own (name, value) pair; other value types are skipped, not errors); `body`
/// optional bool, default false. Unknown fields ignored. Serializes back with the same camelCase
/// names (headers as an object of strings, repeated names joined with ", "), so Rust listeners
/// and tests can write it.
///
/// Headers keep the order the listener wrote them in. A `null` `statusDescription`,
/// `responseHeaders` or `body` reads as missing; a `responseHeaders` that is not an object, or a
/// `statusCode` that is neither a `u16` number nor a string parsing to one, is an error.
///
/// ```
/// use relay_proto::hc::ControlMessage;
/// let json = r#"{"response":{"requestId":"1","statusCode":"204"}}"#;
/// let Ok(ControlMessage::Response(response)) = serde_json::from_str(json) else { panic!() };
/// assert_eq!((response.status_code, response.body), (204, false));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMessage {
    /// The id of the request answered.
    pub request_id: String,
    /// The listener's status code, not yet checked (see [`sender_status`]).
    pub status_code: u16,
    /// The listener's reason phrase, not yet cleaned (see [`reason_phrase`]).
    pub status_description: Option<String>,
    /// The listener's headers in its order, not yet filtered (see [`sender_headers`]).
    pub response_headers: Vec<(String, String)>,
    /// Whether a body follows as one binary message.
    pub body: bool,
}

impl Serialize for ResponseMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut message = serializer.serialize_struct("ResponseMessage", 5)?;
        message.serialize_field("requestId", &self.request_id)?;
        message.serialize_field("statusCode", &self.status_code)?;
        match &self.status_description {
            Some(description) => message.serialize_field("statusDescription", description)?,
            None => message.skip_field("statusDescription")?,
        }
        // .NET omits the headers when there are none; so does this.
        match self.response_headers.is_empty() {
            true => message.skip_field("responseHeaders")?,
            false => message.serialize_field("responseHeaders", &JoinedHeaders(&self.response_headers))?,
        }
        message.serialize_field("body", &self.body)?;
        message.end()
    }
}

/// Headers as a JSON object of strings: repeated names (ignoring case) joined with `, ` under the
/// first spelling, in first-seen order.
struct JoinedHeaders<'a>(&'a [(String, String)]);

impl Serialize for JoinedHeaders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut joined: Vec<(&str, String)> = Vec::new();
        for (name, value) in self.0 {
            match joined.iter_mut().find(|(seen, _)| seen.eq_ignore_ascii_case(name)) {
                Some((_, all)) => {
                    all.push_str(", ");
                    all.push_str(value);
                }
                None => joined.push((name, value.clone())),
            }
        }
        serializer.collect_map(joined)
    }
}

/// The message as listeners write it, before the lenient fields are interpreted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    request_id: String,
    status_code: Value,
    #[serde(default)]
    status_description: Option<String>,
    #[serde(default)]
    response_headers: Option<HeaderPairs>,
    #[serde(default)]
    body: Option<bool>,
}

impl<'de> Deserialize<'de> for ResponseMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawResponse::deserialize(deserializer)?;
        Ok(Self {
            request_id: raw.request_id,
            status_code: status_code(&raw.status_code).map_err(de::Error::custom)?,
            status_description: raw.status_description,
            response_headers: raw.response_headers.map(|h| h.0).unwrap_or_default(),
            body: raw.body.unwrap_or(false),
        })
    }
}

/// A `statusCode` as .NET and Node write it (a number) or as Azure's guide shows it (a string).
fn status_code(value: &Value) -> Result<u16, &'static str> {
    let code = match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    code.ok_or("statusCode is not a status number")
}

/// A `responseHeaders` object as (name, value) pairs in the listener's order (a `serde_json::Map`
/// would sort them).
struct HeaderPairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for HeaderPairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderPairsVisitor)
    }
}

/// Reads a `responseHeaders` object entry by entry.
struct HeaderPairsVisitor;

impl<'de> Visitor<'de> for HeaderPairsVisitor {
    type Value = HeaderPairs;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of header names to strings or arrays of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderPairs, A::Error> {
        let mut pairs = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Value>()? {
            match value {
                Value::String(value) => pairs.push((name, value)),
                // Defensive: no known listener sends arrays, but Node's header API allows them.
                Value::Array(values) => pairs.extend(values.into_iter().filter_map(|v| match v {
                    Value::String(v) => Some((name.clone(), v)),
                    _ => None,
                })),
                _ => {}
            }
        }
        Ok(HeaderPairs(pairs))
    }
}

/// The status a sender gets for a listener's `statusCode`: itself when 200..=599, else 502.
///
/// ```
/// assert_eq!(relay_proto::hc_http::sender_status(418), 418);
/// assert_eq!(relay_proto::hc_http::sender_status(101), 502);
/// ```
pub fn sender_status(status_code: u16) -> u16 {
    match status_code {
        200..=599 => status_code,
        _ => 502,
    }
}

/// The longest reason phrase passed on, in bytes.
const MAX_REASON: usize = 512;

/// The reason phrase for a listener's `statusDescription`: only bytes 0x20..=0x7E and tab kept,
/// trimmed, at most 512 bytes (cut at a char boundary); `None` when nothing is left (use the
/// canonical phrase).
///
/// ```
/// use relay_proto::hc_http::reason_phrase;
/// assert_eq!(reason_phrase(Some(" Not\r\nFound ")).as_deref(), Some("NotFound"));
/// assert_eq!(reason_phrase(Some("é")), None);
/// ```
pub fn reason_phrase(description: Option<&str>) -> Option<String> {
    // Every kept char is one ASCII byte, so 512 chars are 512 bytes and any cut is on a boundary.
    let kept: String = description?
        .chars()
        .filter(|&c| c == '\t' || (' '..='~').contains(&c))
        .skip_while(|&c| c == ' ' || c == '\t')
        .take(MAX_REASON)
        .collect();
    let kept = kept.trim_end_matches([' ', '\t']);
    (!kept.is_empty()).then(|| kept.to_owned())
}

/// Response headers the sender never gets from the listener: hop-by-hop headers and the framing
/// ones (the relay frames the body itself).
const NOT_FOR_SENDER: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "close",
];

/// The response headers passed on to the sender: removes Connection and the headers it names,
/// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Content-Length, Close;
/// drops pairs whose name is not an RFC 7230 token or whose value holds CR, LF or NUL (or other
/// control bytes except tab). Order kept.
///
/// ```
/// use relay_proto::hc_http::sender_headers;
/// let headers = [("X-A".to_owned(), "1\r\nSet-Cookie: evil".to_owned()), ("X-B".to_owned(), "2".to_owned())];
/// assert_eq!(sender_headers(&headers), [("X-B".to_owned(), "2".to_owned())]);
/// ```
pub fn sender_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let listed = connection_listed(headers.iter().map(|(n, v)| (n, v)));
    headers
        .iter()
        .filter(|(name, value)| is_token(name) && is_field_value(value) && !is_stripped(name, NOT_FOR_SENDER, &listed))
        .cloned()
        .collect()
}

/// Whether `name` is an RFC 7230 token: one or more of `!#$%&'*+-.^_`|~`, digits and letters.
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can go on a header line as it is: no control bytes but tab (CR, LF and NUL
/// would split or end the line; DEL is a control byte too). Bytes above 0x7F are `obs-text`.
fn is_field_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hc::ControlMessage;

    fn response(json: &str) -> Result<ResponseMessage, serde_json::Error> {
        match serde_json::from_str::<ControlMessage>(json)? {
            ControlMessage::Response(response) => Ok(response),
            other => panic!("not a response: {other:?}"),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn responses_read_as_listeners_write_them() {
        let r = response(
            r#"{"response":{"requestId":"1","statusCode":200,"statusDescription":"OK","responseHeaders":{"content-type":"text/plain","set-cookie":["a=1","b=2"]},"body":true}}"#,
        )
        .unwrap();
        let expected = ResponseMessage {
            request_id: "1".into(),
            status_code: 200,
            status_description: Some("OK".into()),
            response_headers: pairs(&[("content-type", "text/plain"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]),
            body: true,
        };
        assert_eq!(r, expected);
    }

    #[test]
    fn status_codes_may_be_strings_and_the_rest_may_be_missing() {
        let r = response(r#"{"response":{"requestId":"2","statusCode":"204"}}"#).unwrap();
        let bare = ResponseMessage {
            request_id: "2".into(),
            status_code: 204,
            status_description: None,
            response_headers: Vec::new(),
            body: false,
        };
        assert_eq!(r, bare);
        let nulls = r#"{"response":{"requestId":"2","statusCode":204,"statusDescription":null,"responseHeaders":null,"body":null}}"#;
        assert_eq!(response(nulls).unwrap(), bare);
        let extra = r#"{"response":{"extra":{"x":[1]},"requestId":"2","statusCode":204,"future":true}}"#;
        assert_eq!(response(extra).unwrap(), bare, "unknown fields ignored");
    }

    #[test]
    fn bad_status_codes_are_errors() {
        for code in ["70000", "-1", "200.5", "2e2", r#""abc""#, r#""""#, r#""70000""#, "null", "true", "[200]", "{}"] {
            let json = format!(r#"{{"response":{{"requestId":"1","statusCode":{code}}}}}"#);
            assert!(response(&json).is_err(), "{code} accepted");
        }
        assert!(response(r#"{"response":{"requestId":"1"}}"#).is_err(), "statusCode required");
        assert!(response(r#"{"response":{"statusCode":200}}"#).is_err(), "requestId required");
        assert!(response(r#"{"response":{"requestId":1,"statusCode":200}}"#).is_err(), "requestId is a string");
        assert_eq!(response(r#"{"response":{"requestId":"1","statusCode":0}}"#).unwrap().status_code, 0);
    }

    #[test]
    fn odd_header_values_are_skipped_and_order_kept() {
        let json = r#"{"response":{"requestId":"1","statusCode":200,"responseHeaders":
            {"z":"1","n":5,"a":["x",7,null,"y"],"o":{"k":"v"},"b":null,"e":[],"z":"2"}}}"#;
        let r = response(json).unwrap();
        assert_eq!(r.response_headers, pairs(&[("z", "1"), ("a", "x"), ("a", "y"), ("z", "2")]));
        for headers in [r#""text""#, "[]", "5"] {
            let json = format!(r#"{{"response":{{"requestId":"1","statusCode":200,"responseHeaders":{headers}}}}}"#);
            assert!(response(&json).is_err(), "{headers} accepted");
        }
    }

    #[test]
    fn responses_write_back_as_camel_case_json() {
        let message = ResponseMessage {
            request_id: "9".into(),
            status_code: 201,
            status_description: Some("Created".into()),
            response_headers: pairs(&[("Set-Cookie", "a=1"), ("X", "1"), ("set-cookie", "b=2")]),
            body: true,
        };
        let json = serde_json::to_string(&ControlMessage::Response(message.clone())).unwrap();
        assert_eq!(
            json,
            r#"{"response":{"requestId":"9","statusCode":201,"statusDescription":"Created","responseHeaders":{"Set-Cookie":"a=1, b=2","X":"1"},"body":true}}"#
        );
        let bare = ResponseMessage { status_description: None, response_headers: Vec::new(), body: false, ..message };
        let json = serde_json::to_string(&ControlMessage::Response(bare.clone())).unwrap();
        assert_eq!(json, r#"{"response":{"requestId":"9","statusCode":201,"body":false}}"#);
        assert_eq!(response(&json).unwrap(), bare);
    }

    #[test]
    fn sender_statuses_outside_200_to_599_become_502() {
        for (listener, sender) in [(200, 200), (204, 204), (404, 404), (502, 502), (504, 504), (599, 599)] {
            assert_eq!(sender_status(listener), sender);
        }
        for listener in [0, 100, 101, 199, 600, 999, u16::MAX] {
            assert_eq!(sender_status(listener), 502, "{listener}");
        }
    }

    #[test]
    fn reason_phrases_keep_printable_ascii_only() {
        assert_eq!(reason_phrase(None), None);
        assert_eq!(reason_phrase(Some("")), None);
        assert_eq!(reason_phrase(Some(" \t ")), None);
        assert_eq!(reason_phrase(Some("\r\n\0\u{7f}")), None);
        assert_eq!(reason_phrase(Some("TestStatusDescription")).as_deref(), Some("TestStatusDescription"));
        assert_eq!(reason_phrase(Some("OK\r\nSet-Cookie: x=1")).as_deref(), Some("OKSet-Cookie: x=1"));
        assert_eq!(reason_phrase(Some("\tCafé crème\t")).as_deref(), Some("Caf crme"));
        assert_eq!(reason_phrase(Some("a\tb\u{0}c\u{7f}d")).as_deref(), Some("a\tbcd"));
        assert_eq!(reason_phrase(Some("日本語")), None);
        let long = format!("  {}", "x".repeat(600));
        assert_eq!(reason_phrase(Some(&long)).map(|r| r.len()), Some(MAX_REASON), "cut after trimming the start");
        let space_at_cut = format!("{}   y", "x".repeat(MAX_REASON - 1));
        assert_eq!(reason_phrase(Some(&space_at_cut)), Some("x".repeat(MAX_REASON - 1)), "trimmed after the cut");
        let multibyte = "é".repeat(600) + "ok";
        assert_eq!(reason_phrase(Some(&multibyte)).as_deref(), Some("ok"));
    }

    #[test]
    fn sender_headers_drop_hop_by_hop_headers() {
        let headers = pairs(&[
            ("Content-Type", "text/plain"),
            ("connection", "close, X-Hop"),
            ("x-hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "x"),
            ("TE", "x"),
            ("Trailer", "x"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Content-Length", "5"),
            ("Close", "x"),
            ("Set-Cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        let passed = pairs(&[("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")]);
        assert_eq!(sender_headers(&headers), passed);
    }

    #[test]
    fn sender_headers_drop_crlf_injection_and_bad_names() {
        let headers = pairs(&[
            ("X-Inject", "1\r\nSet-Cookie: session=stolen"),
            ("X-Lf", "a\nb"),
            ("X-Cr", "a\rb"),
            ("X-Nul", "a\0b"),
            ("X-Bell", "a\u{7}b"),
            ("X-Del", "a\u{7f}b"),
            ("X-Evil\r\nSet-Cookie", "x"),
            ("Bad Name", "x"),
            ("Bad:Name", "x"),
            ("", "x"),
            ("Ümlaut", "x"),
            ("X-Tab", "a\tb"),
            ("X-Utf8", "café"),
            ("X-Empty", ""),
            ("!#$%&'*+-.^_`|~09Az", "token chars"),
        ]);
        let passed =
            pairs(&[("X-Tab", "a\tb"), ("X-Utf8", "café"), ("X-Empty", ""), ("!#$%&'*+-.^_`|~09Az", "token chars")]);
        assert_eq!(sender_headers(&headers), passed);
        assert_eq!(sender_headers(&[]), []);
    }
}
