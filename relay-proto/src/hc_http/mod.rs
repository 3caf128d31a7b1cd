//! Azure Relay's Hybrid Connections HTTP mode, sans-IO: the sender's token, what the listener
//! sees of a request (target and headers), the `request` and `response` control messages, and
//! what the sender gets back (status, reason phrase, headers, the relay's own error bodies).
//!
//! A sender sends a plain HTTP request to `https://{host}/{address}[/suffix][?query]`. The relay
//! writes the listener a [`RequestMessage`] on its control channel, followed by the body as one
//! binary WebSocket message when it is small ([`MAX_CONTROL_BODY`], [`MAX_CONTROL_JSON`]), or asks
//! the listener to open a rendezvous (`sb-hc-action=request`) for a larger one. The listener
//! answers with a [`ResponseMessage`], on either socket, and its body as one binary message.
//!
//! ```
//! use relay_proto::hc_http::{TokenSource, listener_headers, listener_target, sender_token};
//!
//! let target = "/web/a?sb-hc-token=SharedAccessSignature%20sr%3Dx&q=1";
//! let headers = [("Host", "relay.example"), ("Accept", "text/html")];
//! let (token, source) = sender_token(target, &headers).expect("a token");
//! assert_eq!((token.as_str(), source), ("SharedAccessSignature sr=x", TokenSource::Query));
//! assert_eq!(listener_target(target), "/web/a?q=1");
//! let seen = listener_headers(&headers, false, "relay.example");
//! assert_eq!(seen.get("Via").map(String::as_str), Some("1.1 relay.example"));
//! assert!(!seen.contains_key("Host"));
//! ```

mod request;
mod response;

pub use request::{RemoteEndpoint, RequestMessage, TokenSource, listener_headers, listener_target, sender_token};
pub use response::{ResponseMessage, reason_phrase, sender_headers, sender_status};

/// Request bodies up to this many bytes (inclusive) travel on the control channel; larger ones over a rendezvous.
pub const MAX_CONTROL_BODY: usize = 64 * 1024;

/// A `request` message's JSON longer than this goes over a rendezvous instead (listeners' control buffers are 64 KiB).
pub const MAX_CONTROL_JSON: usize = 32 * 1024;

/// The Connect protocol's error code name for an HTTP status the relay answers with: 400
/// invalid_argument, 401 unauthenticated, 403 permission_denied, 404 not_found, 408
/// deadline_exceeded, 409 aborted, 413 resource_exhausted, 415 invalid_argument, 429
/// resource_exhausted, 431 resource_exhausted, 499 canceled, 500 internal, 501 unimplemented, 502
/// unavailable, 503 unavailable, 504 deadline_exceeded, anything else "unknown".
///
/// ```
/// assert_eq!(relay_proto::hc_http::connect_code(504), "deadline_exceeded");
/// assert_eq!(relay_proto::hc_http::connect_code(418), "unknown");
/// ```
pub fn connect_code(status: u16) -> &'static str {
    match status {
        400 | 415 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        408 | 504 => "deadline_exceeded",
        409 => "aborted",
        413 | 429 | 431 => "resource_exhausted",
        499 => "canceled",
        500 => "internal",
        501 => "unimplemented",
        502 | 503 => "unavailable",
        _ => "unknown",
    }
}

/// The JSON body of an error the relay answers itself:
/// `{"code":"<connect_code(status)>","message":"<message>"}` (serde_json, so escaping is right).
///
/// ```
/// assert_eq!(
///     relay_proto::hc_http::error_body(502, "no listener"),
///     r#"{"code":"unavailable","message":"no listener"}"#,
/// );
/// ```
pub fn error_body(status: u16, message: &str) -> String {
    // A `Value`'s `Display` cannot fail, unlike `to_string` on a struct; both keys sort (or are
    // inserted) in this order, with or without serde_json's `preserve_order`.
    serde_json::json!({ "code": connect_code(status), "message": message }).to_string()
}

/// The lower-cased names a message's `Connection` headers list, to be removed along with them
/// (RFC 7230 §6.1). Shared by both directions.
fn connection_listed(headers: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>) -> Vec<String> {
    headers
        .into_iter()
        .filter(|(name, _)| name.as_ref().eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| {
            value.as_ref().split(',').map(|token| token.trim().to_ascii_lowercase()).collect::<Vec<_>>()
        })
        .filter(|token| !token.is_empty())
        .collect()
}

/// Whether `name` is one of `names` (lower-case) or one `Connection` lists, ignoring case.
fn is_stripped(name: &str, names: &[&str], listed: &[String]) -> bool {
    names.iter().any(|n| name.eq_ignore_ascii_case(n)) || listed.iter().any(|n| name.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_codes_follow_the_table() {
        let table = [
            (400, "invalid_argument"),
            (401, "unauthenticated"),
            (403, "permission_denied"),
            (404, "not_found"),
            (408, "deadline_exceeded"),
            (409, "aborted"),
            (413, "resource_exhausted"),
            (415, "invalid_argument"),
            (429, "resource_exhausted"),
            (431, "resource_exhausted"),
            (499, "canceled"),
            (500, "internal"),
            (501, "unimplemented"),
            (502, "unavailable"),
            (503, "unavailable"),
            (504, "deadline_exceeded"),
        ];
        for (status, code) in table {
            assert_eq!(connect_code(status), code, "{status}");
        }
        for status in [0, 200, 202, 302, 402, 418, 505, 599, u16::MAX] {
            assert_eq!(connect_code(status), "unknown", "{status}");
        }
    }

    #[test]
    fn error_bodies_escape_the_message() {
        assert_eq!(error_body(404, "no such address"), r#"{"code":"not_found","message":"no such address"}"#);
        let tricky = "say \"hi\"\\ \n\t\u{1}</script> é";
        let body = error_body(401, tricky);
        assert_eq!(body, r#"{"code":"unauthenticated","message":"say \"hi\"\\ \n\t\u0001</script> é"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["message"], tricky);
        assert_eq!(error_body(200, ""), r#"{"code":"unknown","message":""}"#);
    }

    #[test]
    fn connection_lists_are_split_trimmed_and_lower_cased() {
        let headers = [("CONNECTION", " Keep-Alive , X-Custom,,"), ("X", "close"), ("connection", "Upgrade")];
        assert_eq!(connection_listed(headers), ["keep-alive", "x-custom", "upgrade"]);
        let listed = connection_listed(headers);
        assert!(is_stripped("x-CUSTOM", &[], &listed));
        assert!(is_stripped("Host", &["host"], &listed));
        assert!(!is_stripped("X", &["host"], &listed));
    }
}
