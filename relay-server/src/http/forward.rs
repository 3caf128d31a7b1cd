//! One HTTP-mode request: authorized as a sender, sent to a Hybrid Connections listener of its
//! address (on the control channel, or over a rendezvous when large), and answered with the
//! listener's response, or with the relay's own error (a Connect-style JSON body, no `Via`).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, HOST,
    HeaderName, HeaderValue, ORIGIN, UPGRADE, VIA,
};
use hyper::{Method, Request, Response, StatusCode};
use relay_proto::ErrorCode;
use relay_proto::auth::unix_now;
use relay_proto::cors;
use relay_proto::hc::{address_prefixes, http_status, status_description};
use relay_proto::hc_http::{
    MAX_CONTROL_BODY, RemoteEndpoint, RequestMessage, TokenSource, error_body, listener_headers, listener_target,
    reason_phrase, sender_headers, sender_status, sender_token,
};
use relay_proto::http_channel::RequestHead;
use std::sync::Arc;

use super::{Answer, Peer, PiecesBody, ask, discovery, full, over_channel};
use crate::auth::Authorized;
use crate::exchanges::{AnswerBody, ListenerAnswer, RequestBody};
use crate::state::Shared;

/// Serves one request.
pub(super) async fn forward(shared: &Arc<Shared>, request: Request<Incoming>, peer: Peer) -> Answer {
    let origin = match cors_origin(shared, &request) {
        Ok(origin) => origin,
        Err(refusal) => {
            let answer = refusal.answer(peer);
            shared.metrics.http_answered(answer.status().as_u16());
            return answer;
        }
    };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    let mut answer = match &origin {
        Some(origin) if preflight => preflight_answer(origin, request.headers()),
        _ => match try_forward(shared, request, peer).await {
            Ok(answer) => answer,
            Err(refusal) => refusal.answer(peer),
        },
    };
    shared.metrics.http_answered(answer.status().as_u16());
    if let Some(origin) = origin
        && !answer.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        for (name, value) in cors::response_headers(&origin) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                answer.headers_mut().append(name, value);
            }
        }
    }
    answer
}

/// The `Origin` of a browser's request to an address with `allowed_origins`, once checked;
/// `None` for a request without one, or where CORS is off. A disallowed origin is refused.
fn cors_origin(shared: &Shared, request: &Request<Incoming>) -> Result<Option<String>, Refused> {
    let Some(origin) = request.headers().get(ORIGIN) else { return Ok(None) };
    let path = request.uri().path().trim_start_matches('/');
    let candidates: Vec<&str> = address_prefixes(path).collect();
    let settings = shared.live();
    let Some(allowed) = settings.config.allowed_origins(&candidates) else { return Ok(None) };
    match origin.to_str() {
        Ok(origin) if cors::allows(allowed, origin) => Ok(Some(origin.to_owned())),
        _ => Err(refused(403, "this origin may not send to this address")),
    }
}

/// The relay's `204` to an allowed origin's CORS preflight.
fn preflight_answer(origin: &str, headers: &hyper::HeaderMap) -> Answer {
    let requested = headers.get(ACCESS_CONTROL_REQUEST_HEADERS).and_then(|v| v.to_str().ok());
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    for (name, value) in cors::preflight_headers(origin, requested) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The relay's own refusal of a request.
#[derive(Debug)]
pub(super) struct Refused {
    status: u16,
    message: String,
}

impl Refused {
    /// The relay's answer for it.
    fn answer(self, peer: Peer) -> Answer {
        tracing::debug!(remote = %peer.remote, status = self.status, message = %self.message, "http request refused");
        relay_error(self.status, &self.message)
    }
}

pub(super) fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused { status, message: message.into() }
}

/// The refusal for an error code, with its status and description as on a WebSocket handshake.
pub(super) fn refused_as(code: ErrorCode, detail: &str) -> Refused {
    refused(http_status(code).0, status_description(code, detail))
}

async fn try_forward(shared: &Arc<Shared>, request: Request<Incoming>, peer: Peer) -> Result<Answer, Refused> {
    let (parts, body) = request.into_parts();
    if parts.method == Method::CONNECT || parts.headers.contains_key(UPGRADE) {
        return Err(refused(400, "no CONNECT or upgrade here; WebSockets go to /$hc/ADDRESS"));
    }
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let headers: Vec<(&str, &str)> =
        parts.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
    let token = sender_token(&target, &headers);
    if parts.uri.path() == discovery::PATH && parts.method == Method::GET {
        return discovery::answer(shared, token.as_ref().map(|(token, _)| token.as_str())).await;
    }
    let path = target.split('?').next().unwrap_or_default().trim_start_matches('/');
    let candidates: Vec<&str> = address_prefixes(path).collect();
    if candidates.is_empty() {
        return Err(refused(404, "the path names no address"));
    }
    // The longest address taking HTTP requests that the sender may use; whether it has a
    // listener is asked only after, so a refusal never tells where listeners are.
    let live = |address: &str| shared.http_live(address);
    let (address, granted) = shared
        .live()
        .policy
        .sender_address(token.as_ref().map(|(token, _)| token.as_str()), &candidates, live, unix_now())
        .map_err(|denied| {
            shared.metrics.auth_failure(denied.reason);
            refused_as(ErrorCode::Auth(denied.reason), &denied.detail)
        })?;
    let address = address.to_owned();
    if !shared.http_live(&address) {
        return Err(refused(404, format!("HTTP mode is not enabled on {address:?}")));
    }
    if shared.draining() {
        return Err(refused_as(ErrorCode::ShuttingDown, ""));
    }
    if !shared.open_rates.try_take(peer.remote.ip(), &shared.live().config, Instant::now()) {
        return Err(refused_as(ErrorCode::RateLimited, "too many requests"));
    }
    let quota = shared
        .channel_quotas
        .try_take(peer.remote.ip(), granted.key.as_deref())
        .map_err(|why| refused_as(ErrorCode::RateLimited, why))?;

    // A token in `Authorization` is the relay's (and goes); on an anonymous address, or beside
    // another token, `Authorization` is the listener's.
    let strip_authorization =
        matches!(token, Some((_, TokenSource::Authorization))) && granted != Authorized::ANONYMOUS;
    let via = via_name(&parts.headers, peer);
    // Hosts of this project take requests as channels; Hybrid Connections listeners where the
    // address has HTTP mode on, as `request` messages.
    if shared.takes_http_channels(&address) || !shared.live().config.http_enabled(&address) {
        let head = RequestHead {
            method: parts.method.as_str().to_owned(),
            target: listener_target(&target),
            remote: peer.remote.to_string(),
            headers: listener_headers(&headers, strip_authorization, &via).into_iter().collect(),
        };
        let answer = over_channel::exchange(shared, (&address, peer.remote), head, body, Some(quota)).await?;
        return Ok(with_via(answer, &via));
    }
    let body = read_start(shared, body).await?;
    let message = RequestMessage {
        address: String::new(),
        id: String::new(),
        request_target: Some(listener_target(&target)),
        method: Some(parts.method.as_str().to_owned()),
        remote_endpoint: Some(RemoteEndpoint { address: peer.remote.ip().to_string(), port: peer.remote.port() }),
        request_headers: Some(listener_headers(&headers, strip_authorization, &via)),
        body: Some(!body.is_empty()),
    };
    let answer = ask::ask_listener(shared, &address, message, body).await?;
    Ok(listener_answer(answer, &via, parts.method == Method::HEAD))
}

/// Reads the start of the request body within the handshake timeout (a body that stalls gets
/// 408): all of it when it ends within what the control channel takes, else that much, and the
/// rest streams over the rendezvous. What is read is held in the relay's buffer budget as it
/// arrives (while the budget is spent, the body waits, its sender slowed by TCP; 413 when the
/// whole budget could not hold it).
async fn read_start(shared: &Shared, mut body: Incoming) -> Result<RequestBody, Refused> {
    let read = async {
        let (mut bytes, mut held) = (BytesMut::new(), None);
        while bytes.len() <= MAX_CONTROL_BODY {
            let Some(frame) = body.frame().await else {
                return Ok(RequestBody { start: bytes.freeze(), rest: None, _held: held });
            };
            let frame = frame.map_err(|_| refused(400, "the request body could not be read"))?;
            if let Ok(data) = frame.into_data() {
                if !shared.budget.hold_more(&mut held, data.len()).await {
                    return Err(refused(413, "the request body is larger than the relay's buffer budget"));
                }
                bytes.extend_from_slice(&data);
            }
        }
        let rest = (!hyper::body::Body::is_end_stream(&body)).then_some(body);
        Ok(RequestBody { start: bytes.freeze(), rest, _held: held })
    };
    tokio::time::timeout(shared.config.handshake_timeout(), read)
        .await
        .unwrap_or_else(|_| Err(refused(408, "the request body did not arrive in time")))
}

/// The name the relay gives itself in `Via`: the host the sender addressed, else its own address.
fn via_name(headers: &hyper::HeaderMap, peer: Peer) -> String {
    let valid = |h: &&str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    match (headers.get(HOST).and_then(|h| h.to_str().ok()).filter(valid), peer.local) {
        (Some(host), _) => host.to_owned(),
        (None, Some(local)) => local.to_string(),
        (None, None) => "relay".to_owned(),
    }
}

/// The HTTP answer for a listener's `response`: its status (502 for one out of range), reason
/// phrase, headers (hop-by-hop ones dropped) with the relay in `Via`, and body.
fn listener_answer(answer: ListenerAnswer, via: &str, head_request: bool) -> Answer {
    let ListenerAnswer { head, body } = answer;
    let status = StatusCode::from_u16(sender_status(head.status_code)).unwrap_or(StatusCode::BAD_GATEWAY);
    let no_body = head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let body = match body {
        _ if no_body => full(Bytes::new()),
        AnswerBody::Whole(bytes) => full(bytes),
        AnswerBody::Streamed(pieces) => PiecesBody::new(pieces).boxed(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(reason) = reason_phrase(head.status_description.as_deref())
        && Some(reason.as_str()) != status.canonical_reason()
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes())
    {
        response.extensions_mut().insert(reason);
    }
    let headers = response.headers_mut();
    for (name, value) in sender_headers(&head.response_headers) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            headers.append(name, value);
        }
    }
    with_via(response, via)
}

/// A listener's answer with the relay added to its `Via`.
fn with_via(mut response: Answer, via: &str) -> Answer {
    let headers = response.headers_mut();
    let via = match headers.get(VIA).and_then(|v| v.to_str().ok()) {
        Some(theirs) => format!("{theirs}, 1.1 {via}"),
        None => format!("1.1 {via}"),
    };
    if let Ok(via) = HeaderValue::from_str(&via) {
        headers.insert(VIA, via);
    }
    response
}

/// The relay's own answer: `status` with a Connect-style JSON error body, and no `Via`.
fn relay_error(status: u16, message: &str) -> Answer {
    let mut response = Response::new(full(error_body(status, message)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
