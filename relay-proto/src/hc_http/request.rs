//! The sender's request as the relay reads it (its token) and as the listener sees it (target,
//! headers, the `request` control message).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{connection_listed, is_stripped};
use crate::auth::SAS_PREFIX;
use crate::auth::percent::decode;
use crate::hc::{TOKEN_HEADER, TOKEN_PARAM, names_relay_param};

/// Where a sender's token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The `ServiceBusAuthorization` header.
    Header,
    /// The `sb-hc-token` query parameter.
    Query,
    /// An `Authorization: SharedAccessSignature …` header.
    Authorization,
}

/// The token a sender's request carries, and where: the `ServiceBusAuthorization` header first
/// (name case-insensitive), else the `sb-hc-token` query parameter of `target` (percent-decoded; a
/// value that does not decode counts as absent), else an `Authorization` header whose value starts
/// with `SharedAccessSignature ` (only when neither of the others is present). `None` when none.
///
/// The first of repeated headers or parameters counts; an empty value counts as absent. The
/// header wins over the query because clients send stale or junk query tokens beside a good
/// header; `Authorization` is read last because, when another token is present, it belongs to
/// the listener.
///
/// ```
/// use relay_proto::hc_http::{TokenSource, sender_token};
/// let headers = [("servicebusauthorization", "SharedAccessSignature a"), ("Authorization", "Bearer b")];
/// let found = sender_token("/web?sb-hc-token=junk", &headers);
/// assert_eq!(found, Some(("SharedAccessSignature a".to_owned(), TokenSource::Header)));
/// assert_eq!(sender_token("/web", &[("Authorization", "Bearer b")]), None);
/// ```
pub fn sender_token(target: &str, headers: &[(&str, &str)]) -> Option<(String, TokenSource)> {
    if let Some(token) = header_values(headers, TOKEN_HEADER).next().filter(|v| !v.is_empty()) {
        return Some((token.to_owned(), TokenSource::Header));
    }
    if let Some(token) = query_token(target) {
        return Some((token, TokenSource::Query));
    }
    let sas = header_values(headers, "Authorization").find(|v| v.starts_with(SAS_PREFIX))?;
    Some((sas.to_owned(), TokenSource::Authorization))
}

/// The values of the headers named `name` (ignoring case), without surrounding whitespace.
fn header_values<'a>(headers: &'a [(&str, &'a str)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim_matches([' ', '\t']))
}

/// The first `sb-hc-token` parameter of `target`'s query, decoded; `None` when missing, empty or
/// not decodable.
fn query_token(target: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    let raw = query.split('&').find_map(|p| p.strip_prefix(TOKEN_PARAM)?.strip_prefix('='))?;
    decode(raw).filter(|token| !token.is_empty())
}

/// The request target a listener sees: `target` (origin form, `/path?query`) with every query
/// parameter whose name starts with `sb-hc-` (case-insensitive) AND that has an `=` removed; a bare
/// `sb-hc-x` (no `=`) stays. The `?` goes when no parameter is left. Order of the remaining
/// parameters is kept. Example: `/web/a?sb-hc-token=x&q=1&sb-hc-undefined` -> `/web/a?q=1&sb-hc-undefined`.
///
/// Names are compared as a listener's URL parser decodes them, so `%73b-hc-token=…` goes too (the
/// rule `Target::parse` applies to WebSocket senders). Empty parameters (`&&`) are dropped.
///
/// ```
/// use relay_proto::hc_http::listener_target;
/// assert_eq!(listener_target("/web/a?sb-hc-token=x&q=1&sb-hc-undefined"), "/web/a?q=1&sb-hc-undefined");
/// assert_eq!(listener_target("/web/a?sb-hc-whatever="), "/web/a");
/// ```
pub fn listener_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !is_relay_param(p)).collect();
    match kept.is_empty() {
        true => path.to_owned(),
        false => format!("{path}?{}", kept.join("&")),
    }
}

/// Whether a query parameter is one of the relay's own, removed before the listener sees it: an
/// `sb-hc-` name with a value. Azure keeps a bare `sb-hc-x`, and so do listeners' tests.
fn is_relay_param(param: &str) -> bool {
    param.split_once('=').is_some_and(|(name, _)| names_relay_param(name))
}

/// Request headers a listener never sees: hop-by-hop and framing headers (the relay frames the
/// body itself), `Expect` (the relay answers `100-continue`) and the relay's token header.
const NOT_FOR_LISTENER: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "close",
    "keep-alive",
    "proxy-connection",
    "expect",
    "servicebusauthorization",
];

/// The `requestHeaders` a listener sees. Removes (names case-insensitive): Connection and every
/// header it names, Content-Length, Host, TE, Trailer, Transfer-Encoding, Upgrade, Close,
/// Keep-Alive, Proxy-Connection, Expect, ServiceBusAuthorization, and Authorization when
/// `strip_authorization`. Repeated headers (same name case-insensitively) are joined with ", "
/// (Cookie with "; "), under the first spelling seen. Then appends `1.1 {via_host}` to Via
/// (", "-separated after an existing value), or sets it.
///
/// ```
/// use relay_proto::hc_http::listener_headers;
/// let headers = [("Accept", "a"), ("accept", "b"), ("Connection", "X-Hop"), ("X-Hop", "1")];
/// let seen = listener_headers(&headers, true, "relay");
/// assert_eq!(seen.into_iter().collect::<Vec<_>>(), [
///     ("Accept".to_owned(), "a, b".to_owned()),
///     ("Via".to_owned(), "1.1 relay".to_owned()),
/// ]);
/// ```
pub fn listener_headers(
    headers: &[(&str, &str)],
    strip_authorization: bool,
    via_host: &str,
) -> BTreeMap<String, String> {
    let listed = connection_listed(headers.iter().copied());
    let authorization: &[&str] = if strip_authorization { &["authorization"] } else { &[] };
    let mut joined: Vec<(&str, String)> = Vec::new();
    for &(name, value) in headers {
        if is_stripped(name, NOT_FOR_LISTENER, &listed) || is_stripped(name, authorization, &[]) {
            continue;
        }
        match joined.iter_mut().find(|(seen, _)| seen.eq_ignore_ascii_case(name)) {
            Some((seen, all)) => {
                all.push_str(if seen.eq_ignore_ascii_case("cookie") { "; " } else { ", " });
                all.push_str(value);
            }
            None => joined.push((name, value.to_owned())),
        }
    }
    let via = format!("1.1 {via_host}");
    match joined.iter_mut().find(|(name, _)| name.eq_ignore_ascii_case("via")) {
        Some((_, value)) if !value.trim().is_empty() => *value = format!("{value}, {via}"),
        Some((_, value)) => *value = via,
        None => joined.push(("Via", via)),
    }
    joined.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// The `request` control message (relay to listener). Serialized with camelCase names exactly as
/// Azure's: `address`, `id`, `requestTarget`, `method`, `remoteEndpoint`
/// (`{"address": "...", "port": n}`), `requestHeaders`, `body`; every Option that is None is
/// OMITTED (a rendezvous-only request is just `{"address","id"}`: listeners branch on whether
/// `method` is present).
///
/// ```
/// use relay_proto::hc::ControlMessage;
/// use relay_proto::hc_http::RequestMessage;
/// let request = RequestMessage {
///     address: "wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1".into(),
///     id: "1".into(),
///     request_target: None,
///     method: None,
///     remote_endpoint: None,
///     request_headers: None,
///     body: None,
/// };
/// let json = serde_json::to_string(&ControlMessage::Request(request))?;
/// assert_eq!(json, r#"{"request":{"address":"wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1","id":"1"}}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMessage {
    /// The single-use rendezvous URL (`wss://host/$hc/{address}?sb-hc-action=request&sb-hc-id={id}`);
    /// listeners open it with no token, so its id must be unguessable.
    pub address: String,
    /// The request's id, as in `address`.
    pub id: String,
    /// The origin-form target, starting with `/{address}`, as [`listener_target`] gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_target: Option<String>,
    /// The HTTP method; `None` in a rendezvous-only request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The sender's address and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<RemoteEndpoint>,
    /// The sender's headers, as [`listener_headers`] gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<BTreeMap<String, String>>,
    /// Whether a body follows as one binary message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<bool>,
}

impl RequestMessage {
    /// The notice of a request that travels over its rendezvous: only the rendezvous `address`
    /// and the `id` (listeners tell it from a whole request by the missing `method`).
    ///
    /// ```
    /// use relay_proto::hc_http::RequestMessage;
    /// let notice = RequestMessage::rendezvous_only("wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1", "1");
    /// assert_eq!((notice.method, notice.body), (None, None));
    /// ```
    pub fn rendezvous_only(address: &str, id: &str) -> Self {
        Self {
            address: address.to_owned(),
            id: id.to_owned(),
            request_target: None,
            method: None,
            remote_endpoint: None,
            request_headers: None,
            body: None,
        }
    }
}

/// The sender's end of its connection, in a [`RequestMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    /// The IP address, as text.
    pub address: String,
    /// The TCP port.
    pub port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hc::ControlMessage;

    const SAS: &str = "SharedAccessSignature sr=x&sig=y&se=1&skn=k";

    #[test]
    fn the_token_header_wins_over_a_junk_query_token() {
        let headers = [("ServiceBusAuthorization", SAS)];
        let found = sender_token("/web?sb-hc-token=junk", &headers);
        assert_eq!(found, Some((SAS.to_owned(), TokenSource::Header)));
        let found = sender_token("/web?sb-hc-token=junk", &[("SERVICEBUSAUTHORIZATION", SAS)]);
        assert_eq!(found.map(|(_, s)| s), Some(TokenSource::Header), "header names ignore case");
    }

    #[test]
    fn the_query_token_is_percent_decoded() {
        let target = "/web/a?x=1&sb-hc-token=SharedAccessSignature%20sr%3Dhttps%253A%252F%252Fh&y";
        let found = sender_token(target, &[]);
        assert_eq!(found, Some(("SharedAccessSignature sr=https%3A%2F%2Fh".to_owned(), TokenSource::Query)));
        assert_eq!(sender_token("/w?sb-hc-token=a+b%2B", &[]).unwrap().0, "a b+", "decoded as Target::parse does");
        assert_eq!(sender_token("/w?sb-hc-token=first&sb-hc-token=second", &[]).unwrap().0, "first");
    }

    #[test]
    fn a_query_token_that_does_not_decode_counts_as_absent() {
        assert_eq!(sender_token("/w?sb-hc-token=%zz", &[]), None);
        assert_eq!(sender_token("/w?sb-hc-token=%FF", &[]), None, "not UTF-8");
        let found = sender_token("/w?sb-hc-token=%4", &[("Authorization", SAS)]);
        assert_eq!(found, Some((SAS.to_owned(), TokenSource::Authorization)));
    }

    #[test]
    fn authorization_is_read_only_when_no_other_token_is_present() {
        let query = sender_token("/w?sb-hc-token=q", &[("Authorization", SAS)]);
        assert_eq!(query, Some(("q".to_owned(), TokenSource::Query)));
        let header = sender_token("/w", &[("Authorization", SAS), ("ServiceBusAuthorization", "h")]);
        assert_eq!(header, Some(("h".to_owned(), TokenSource::Header)));
        let alone = sender_token("/w", &[("authorization", SAS)]);
        assert_eq!(alone, Some((SAS.to_owned(), TokenSource::Authorization)));
    }

    #[test]
    fn a_non_sas_authorization_is_no_token() {
        for value in ["Bearer abc", "Basic dXNlcjpwdw==", "SharedAccessSignature", "sharedaccesssignature sr=x", ""] {
            assert_eq!(sender_token("/w", &[("Authorization", value)]), None, "{value:?}");
        }
        let found = sender_token("/w", &[("Authorization", "Bearer a"), ("Authorization", SAS)]);
        assert_eq!(found.map(|(_, s)| s), Some(TokenSource::Authorization), "a later SAS value counts");
    }

    #[test]
    fn empty_or_missing_tokens_are_none() {
        assert_eq!(sender_token("", &[]), None);
        assert_eq!(sender_token("/w?", &[]), None);
        assert_eq!(sender_token("/w?sb-hc-token=", &[("ServiceBusAuthorization", " ")]), None);
        assert_eq!(sender_token("/w?sb-hc-tokens=x&SB-HC-TOKEN=y&sb-hc-token", &[]), None, "exact name with a value");
        assert_eq!(sender_token("/w?sb-hc-token=q", &[("ServiceBusAuthorization", "")]).unwrap().0, "q");
        assert_eq!(sender_token("/w", &[("ServiceBusAuthorization", " t\t")]).unwrap().0, "t", "OWS trimmed");
    }

    #[test]
    fn listener_targets_lose_the_relays_parameters() {
        let cases = [
            ("/web/a?sb-hc-token=x&q=1&sb-hc-undefined", "/web/a?q=1&sb-hc-undefined"),
            ("/web?sb-hc-id=1&custom=value", "/web?custom=value"),
            ("/web?sb-hc-whatever=", "/web"),
            ("/web?sb-hc-undefined", "/web?sb-hc-undefined"),
            ("/web?SB-HC-Token=x", "/web"),
            ("/web?%73b-hc-token=x&Sb%2DHc%2Did=2&b=2", "/web?b=2"),
            ("/web?a=1&&b=2&", "/web?a=1&b=2"),
            ("/web?", "/web"),
            ("/web", "/web"),
            ("/web?sb-hcx=1&sb-hc=2&x=sb-hc-id=3", "/web?sb-hcx=1&sb-hc=2&x=sb-hc-id=3"),
            ("/web?c=3&a=1&b=2", "/web?c=3&a=1&b=2"),
            ("/web?q=a?b", "/web?q=a?b"),
            ("", ""),
            ("?sb-hc-id=1", ""),
        ];
        for (target, seen) in cases {
            assert_eq!(listener_target(target), seen, "{target}");
        }
    }

    #[test]
    fn listener_headers_strip_hop_by_hop_and_token_headers() {
        let headers = [
            ("Host", "relay"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "secret"),
            ("x-private", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Content-Length", "3"),
            ("TE", "trailers"),
            ("Trailer", "X"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Close", "1"),
            ("Proxy-Connection", "keep-alive"),
            ("Expect", "100-continue"),
            ("servicebusauthorization", SAS),
            ("Authorization", "Bearer x"),
            ("X-Kept", "1"),
        ];
        let seen = listener_headers(&headers, false, "relay");
        let names: Vec<&str> = seen.keys().map(String::as_str).collect();
        assert_eq!(names, ["Authorization", "Via", "X-Kept"]);
        assert!(!listener_headers(&headers, true, "relay").contains_key("Authorization"));
    }

    #[test]
    fn repeated_headers_join_under_the_first_spelling() {
        let headers =
            [("X-Multi", "one"), ("Cookie", "a=1"), ("x-multi", "two"), ("COOKIE", "b=2"), ("X-MULTI", "three")];
        let seen = listener_headers(&headers, false, "relay");
        assert_eq!(seen.get("X-Multi").map(String::as_str), Some("one, two, three"));
        assert_eq!(seen.get("Cookie").map(String::as_str), Some("a=1; b=2"));
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn via_is_appended_or_set() {
        let seen = listener_headers(&[("via", "1.0 proxy"), ("Via", "1.1 edge")], false, "relay.example");
        assert_eq!(seen.get("via").map(String::as_str), Some("1.0 proxy, 1.1 edge, 1.1 relay.example"));
        let seen = listener_headers(&[("Via", " ")], false, "relay");
        assert_eq!(seen.get("Via").map(String::as_str), Some("1.1 relay"), "an empty Via is replaced");
        assert_eq!(listener_headers(&[], false, "relay"), BTreeMap::from([("Via".into(), "1.1 relay".into())]));
    }

    fn rendezvous_only() -> RequestMessage {
        RequestMessage {
            address: "wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1".into(),
            id: "1".into(),
            request_target: None,
            method: None,
            remote_endpoint: None,
            request_headers: None,
            body: None,
        }
    }

    #[test]
    fn a_rendezvous_only_request_is_just_address_and_id() {
        let message = ControlMessage::Request(rendezvous_only());
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(json, r#"{"request":{"address":"wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1","id":"1"}}"#);
        assert_eq!(serde_json::from_str::<ControlMessage>(&json).unwrap(), message);
    }

    #[test]
    fn a_full_request_is_azure_json() {
        let message = ControlMessage::Request(RequestMessage {
            request_target: Some("/web/a?q=1".into()),
            method: Some("POST".into()),
            remote_endpoint: Some(RemoteEndpoint { address: "203.0.113.5".into(), port: 50123 }),
            request_headers: Some(BTreeMap::from([
                ("Content-Type".into(), "text/plain".into()),
                ("Via".into(), "1.1 h".into()),
            ])),
            body: Some(true),
            ..rendezvous_only()
        });
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"request":{"address":"wss://h/$hc/web?sb-hc-action=request&sb-hc-id=1","id":"1","#,
                r#""requestTarget":"/web/a?q=1","method":"POST","#,
                r#""remoteEndpoint":{"address":"203.0.113.5","port":50123},"#,
                r#""requestHeaders":{"Content-Type":"text/plain","Via":"1.1 h"},"body":true}}"#,
            )
        );
        assert_eq!(serde_json::from_str::<ControlMessage>(&json).unwrap(), message);
        let no_body = RequestMessage { method: Some("GET".into()), body: Some(false), ..rendezvous_only() };
        assert!(serde_json::to_string(&no_body).unwrap().ends_with(r#""method":"GET","body":false}"#));
    }

    #[test]
    fn requests_read_leniently() {
        let json = r#"{"request":{"id":"7","address":"wss://x","unknown":[1],"body":null,"method":null}}"#;
        let Ok(ControlMessage::Request(request)) = serde_json::from_str(json) else { panic!("not a request") };
        assert_eq!((request.id.as_str(), request.method, request.body), ("7", None, None));
        assert!(serde_json::from_str::<ControlMessage>(r#"{"request":{"id":"7"}}"#).is_err(), "address required");
        let port = r#"{"request":{"id":"7","address":"a","remoteEndpoint":{"address":"b","port":70000}}}"#;
        assert!(serde_json::from_str::<ControlMessage>(port).is_err(), "port out of range");
    }
}
