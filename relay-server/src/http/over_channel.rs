//! An HTTP-mode request to a host that takes HTTP requests as channels
//! ([`relay_proto::http_channel`]): routed like a caller's channel (to a listener here, or on
//! another node through a rendezvous here), then the request head and its body go in frames as
//! the body arrives, and the response comes back the same way. Bodies stream both ways under
//! the channel's flow control: the relay holds at most a frame of either.
//!
//! One task per request moves the frames; the HTTP answer waits for the response head within
//! the address's response timeout and then reads the body from that task. A sender that goes
//! away, or a host that stalls, ends the task and the channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use relay_proto::hc_http::{sender_headers, sender_status};
use relay_proto::http_channel::{self, RequestHead, ResponseHead};
use relay_proto::{ErrorCode, StreamCode};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::forward::{Refused, refused, refused_as};
use super::{Answer, PiecesBody};
use crate::channel::{Frame, Next, Relayed, Side, Sink, Source, finish, halves};
use crate::limits::ChannelQuota;
use crate::router::{ChannelRequest, Opened, Refusal, channel_span, route};
use crate::state::{ChannelGuard, Shared};

/// Sends `head` and `body` from `caller` to a host of `address` that takes HTTP requests, and
/// answers with its response, whose body streams after this returns. `quota` is held until the
/// exchange ends.
pub(super) async fn exchange<B: RequestBody>(
    shared: &Arc<Shared>,
    (address, caller): (&str, SocketAddr),
    head: RequestHead,
    body: B,
    quota: Option<ChannelQuota>,
) -> Result<Answer, Refused> {
    let request = ChannelRequest {
        address: address.to_owned(),
        path: address.to_owned(),
        passthrough: Vec::new(),
        id: None,
        contract: http_channel::contract(),
        headers: Default::default(),
        transport: "http",
    };
    let opened = route(shared, &request).await.map_err(|refusal| not_routed(address, &refusal))?;
    let (answered, answer) = oneshot::channel();
    let (body_out, body_in) = mpsc::channel(1);
    let timeout = shared.live().config.http_response_timeout(address);
    let moved = Exchange { shared: shared.clone(), address: address.to_owned(), caller, timeout, answered, body_out };
    let span = channel_span(opened.channel_id, address, request.transport);
    tokio::spawn(moved.run(opened, head, body, quota).instrument(span));
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(Ok(head))) => Ok(response(head, PiecesBody::new(body_in))),
        Ok(Ok(Err(refused))) => Err(refused),
        Ok(Err(_)) => Err(refused(502, "the listener went before it answered")),
        Err(_) => Err(refused(
            504,
            format!("the listener did not answer within {} ms (http_response_timeout_ms)", timeout.as_millis()),
        )),
    }
}

/// A request body the relay sends on: a sender's, or none (the relay's own requests).
pub(super) trait RequestBody: hyper::body::Body<Data = Bytes> + Send + 'static {}

impl<B: hyper::body::Body<Data = Bytes> + Send + 'static> RequestBody for B {}

/// The relay's own `GET` of `target` from a host of `address` that takes HTTP requests: its
/// status and body (at most `max` bytes), within `timeout`; `None` when no host answered so.
pub(super) async fn fetch(
    shared: &Arc<Shared>,
    address: &str,
    target: String,
    (max, timeout): (usize, Duration),
) -> Option<(u16, Bytes)> {
    let head = RequestHead {
        method: "GET".into(),
        target,
        remote: String::new(),
        headers: vec![("accept".into(), "application/json".into())],
    };
    let ourselves = SocketAddr::from(([0, 0, 0, 0], 0));
    let body = http_body_util::Empty::<Bytes>::new();
    let fetched = async {
        let answer = exchange(shared, (address, ourselves), head, body, None).await.ok()?;
        let status = answer.status().as_u16();
        let body = http_body_util::Limited::new(answer.into_body(), max).collect().await.ok()?;
        Some((status, body.to_bytes()))
    };
    tokio::time::timeout(timeout, fetched).await.ok().flatten()
}

/// The relay's answer when no listener took the request.
fn not_routed(address: &str, refusal: &Refusal) -> Refused {
    match refusal.code {
        ErrorCode::NoListener | ErrorCode::Unreachable => {
            refused(502, format!("no listener on {address:?} takes HTTP requests"))
        }
        code => refused_as(code, &refusal.detail),
    }
}

/// The sender's answer: the host's status and headers (hop-by-hop ones dropped), and its body.
fn response(head: ResponseHead, body: PiecesBody) -> Answer {
    let mut response = Response::new(http_body_util::BodyExt::boxed(body));
    *response.status_mut() = StatusCode::from_u16(sender_status(head.status)).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in sender_headers(&head.headers) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            headers.append(name, value);
        }
    }
    response
}

/// What the task of one exchange tells the HTTP side.
struct Exchange {
    shared: Arc<Shared>,
    address: String,
    caller: SocketAddr,
    /// How long the host may take to send each piece of its body.
    timeout: Duration,
    /// The response head, or the relay's refusal when the exchange failed before it.
    answered: oneshot::Sender<Result<ResponseHead, Refused>>,
    body_out: mpsc::Sender<Bytes>,
}

/// How the request's side of the exchange ended.
enum Upload {
    /// The whole body went.
    Sent,
    /// The sender's body broke or stalled: the relay's answer, if none was given yet.
    Broken(Refused),
    /// The channel to the host broke.
    Lost,
}

impl Exchange {
    async fn run<B: RequestBody>(self, opened: Opened, head: RequestHead, body: B, _quota: Option<ChannelQuota>) {
        let Exchange { shared, address, caller, timeout, answered, body_out } = self;
        let _open = ChannelGuard::new(&shared, &address, opened.listener, caller);
        let (mut source, mut sink) = halves(opened.end, shared.config.max_frame_bytes, &shared.budget);
        let mut answered = Some(answered);
        let ended = {
            let upload = upload(&shared, &mut sink, head, body);
            let download = download(&mut source, &mut answered, (&body_out, &shared.relayed_bytes), timeout);
            tokio::pin!(upload, download);
            tokio::select! {
                // A host may answer before it has read the whole body; the upload then stops.
                ended = &mut download => ended,
                uploaded = &mut upload => match uploaded {
                    Upload::Sent => download.await,
                    Upload::Broken(refused) => Err((StreamCode::CallerGone, Some(refused))),
                    Upload::Lost => Err((StreamCode::ListenerGone, None)),
                },
            }
        };
        match ended {
            Ok(()) => sink.close(None, Side::Caller).await,
            Err((code, refused)) => {
                tracing::debug!(%address, ?code, "an http exchange was cut");
                // A sender without the head yet gets the relay's answer; one with it, a body that
                // stops without its end, which hyper tells it by cutting the connection.
                if let (Some(answered), Some(refused)) = (answered.take(), refused) {
                    let _ = answered.send(Err(refused));
                }
                sink.cut(code, "the http exchange was cut").await;
            }
        }
        finish(source, sink, StreamCode::CallerGone).await;
    }
}

/// Why an exchange was cut: the code to cut the channel with, and the relay's answer when the
/// sender has none yet.
type Cut = (StreamCode, Option<Refused>);

/// Reads the host's response head and body and passes them on, each piece of the body within
/// `timeout` (the head's wait is bounded by the side that awaits it, which gives up by dropping
/// `answered`'s receiver).
async fn download(
    source: &mut Source,
    answered: &mut Option<oneshot::Sender<Result<ResponseHead, Refused>>>,
    (body_out, relayed): (&mpsc::Sender<Bytes>, &Relayed),
    timeout: Duration,
) -> Result<(), Cut> {
    let waiting = answered.as_mut().ok_or((StreamCode::CallerGone, None))?;
    let head = tokio::select! {
        head = next_frame(source) => head.ok_or((StreamCode::CallerGone, Some(refused(502, "the listener went before it answered"))))?,
        () = waiting.closed() => return Err((StreamCode::CallerGone, None)),
    };
    let head = ResponseHead::decode(&head).map_err(|e| {
        tracing::debug!(error = %e, "a host answered an http request with garbage");
        (StreamCode::ProtocolError, Some(refused(502, "the listener's answer was not an http response")))
    })?;
    if let Some(answered) = answered.take()
        && answered.send(Ok(head)).is_err()
    {
        return Err((StreamCode::CallerGone, None));
    }
    loop {
        let piece = match tokio::time::timeout(timeout, next_frame(source)).await {
            Ok(Some(piece)) => piece,
            Ok(None) | Err(_) => return Err((StreamCode::CallerGone, None)),
        };
        if piece.is_empty() {
            // The end, passed on: a body that stops without it is cut.
            let _ = body_out.send(piece).await;
            return Ok(());
        }
        relayed.add(Side::Caller, piece.len());
        if body_out.send(piece).await.is_err() {
            // The sender went away.
            return Err((StreamCode::CallerGone, None));
        }
    }
}

/// Sends the request head, then the body as it arrives (each piece within the handshake
/// timeout), then the empty frame that ends it.
async fn upload<B: RequestBody>(shared: &Shared, sink: &mut Sink, head: RequestHead, body: B) -> Upload {
    if sink.send(Frame::Binary(head.encode().into())).await.is_err() {
        return Upload::Lost;
    }
    let stall = shared.config.handshake_timeout();
    let max_frame = shared.config.max_frame_bytes;
    let mut body = std::pin::pin!(body);
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(_))) => return Upload::Broken(refused(400, "the request body could not be read")),
            Err(_) => return Upload::Broken(refused(408, "the request body did not arrive in time")),
        };
        let Ok(mut data) = frame.into_data() else { continue };
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(max_frame));
            shared.relayed_bytes.add(Side::Host, piece.len());
            if sink.send(Frame::Binary(piece)).await.is_err() {
                return Upload::Lost;
            }
        }
    }
    match sink.send(Frame::Binary(Bytes::new())).await {
        Ok(()) => Upload::Sent,
        Err(()) => Upload::Lost,
    }
}

/// The next frame a source yields, once the previous one was passed on.
async fn next_frame(source: &mut Source) -> Option<Bytes> {
    source.written_on();
    match source.next().await {
        Next::Frame(Frame::Binary(data) | Frame::Text(data)) => Some(data),
        Next::Close(_) | Next::Failed(_) => None,
    }
}
