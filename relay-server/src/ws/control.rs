//! A Hybrid Connections listener's control channel: registration, `accept` notifications,
//! HTTP-mode `request`s and their `response`s, `renewToken`, keep-alive pings, and closing with
//! 1008 when its token lapses.

use std::time::Instant;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use relay_proto::auth::{Right, unix_now};
use relay_proto::hc::{CLOSE_RESTART, ControlMessage, http_status, status_description};
use relay_proto::hc_http::ResponseMessage;
use relay_proto::session::{Ending, ListenerSession, Next};
use relay_proto::{ErrorCode, validate_address};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;

use super::Request;
use crate::channel::WsStream;
use crate::channel::close::{close, frame};
use crate::deadline::sleep_until;
use crate::exchanges::{AnswerBody, ListenerAnswer};
use crate::listeners::{HcListener, ListenerHandle, ToListener};
use crate::phase::Phase;
use crate::registry::ListenerId;
use crate::state::Shared;
use relay_proto::http_channel::TAKES_HTTP_HEADER;

/// How many `accept` notifications may wait for a slow control channel before senders are refused.
const ACCEPT_QUEUE: usize = 64;

pub(crate) async fn serve(shared: &Shared, request: Request) {
    let address = request.target.path.clone();
    if validate_address(&address).is_err() {
        return request.refuse(404, "a listener registers on an address, without suffix").await;
    }
    let expiry = match shared.live().policy.authorize(request.token(), Right::Listen, &address, unix_now()) {
        Ok(granted) => granted.expiry,
        Err(denied) => {
            shared.metrics.auth_failure(denied.reason);
            let code = ErrorCode::Auth(denied.reason);
            return request.refuse(http_status(code).0, &status_description(code, &denied.detail)).await;
        }
    };
    if shared.draining() {
        let code = ErrorCode::ShuttingDown;
        return request.refuse(http_status(code).0, &status_description(code, "")).await;
    }
    let base_url = format!("{}://{}", request.scheme, host_of(&request));
    let (notify, accepts) = mpsc::channel(ACCEPT_QUEUE);
    let dead = CancellationToken::new();
    let http_channels = request.head.header(TAKES_HTTP_HEADER) == Some("1");
    let listener =
        HcListener { notify, base_url, dead: dead.clone(), remote: request.remote, since: unix_now(), http_channels };
    let registered = shared.register_listener(&address, ListenerHandle::Hc(listener));
    let id = match registered {
        Ok(id) => id,
        Err(e) => return request.refuse(503, &e.to_string()).await,
    };
    let mut ended = None;
    match request.upgrade_control(shared).await {
        Ok(mut ws) => {
            tracing::info!(%address, listener = id, "hybrid connections listener registered");
            let (held, goodbye) = hold(shared, (&address, id), expiry, &mut ws, accepts).await;
            if held == Held::Dead {
                dead.cancel();
            }
            ended = Some((ws, goodbye));
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
    // Out of the rotation before the goodbye, so that no sender is routed to a listener leaving;
    // HTTP-mode requests it had not answered get their 502 now.
    shared.unregister_listener(&address, id);
    shared.exchanges.listener_gone(id);
    tracing::info!(%address, listener = id, "hybrid connections listener left");
    if let Some((mut ws, goodbye)) = ended {
        close(&mut ws, goodbye).await;
    }
}

/// Writes `message` to a listener's control channel: an `accept`, or a `request` and its body.
async fn send_to_listener(ws: &mut WsStream, message: ToListener) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let (control, body) = match message {
        ToListener::Accept(accept) => (ControlMessage::Accept(accept), None),
        ToListener::Request(request, body) => (ControlMessage::Request(request), body),
    };
    let Ok(json) = serde_json::to_string(&control) else { return Ok(()) };
    match body {
        // The body is the very next message: sent together, nothing can come between them.
        Some(body) => {
            ws.feed(Message::text(json)).await?;
            ws.send(Message::Binary(body)).await
        }
        None => ws.send(Message::text(json)).await,
    }
}

/// Hands a listener's answer on its control channel to the request waiting for it, if any.
fn answered(shared: &Shared, listener: ListenerId, head: ResponseMessage, body: Bytes) {
    let id = head.request_id.clone();
    if !shared.exchanges.complete(&id, Some(listener), ListenerAnswer { head, body: AnswerBody::Whole(body) }) {
        tracing::debug!(listener, request = %id, "a response for no request waiting (given up, or not this listener's)");
    }
}

/// The host the listener dialled (its `Host` header), for rendezvous addresses.
fn host_of(request: &Request) -> String {
    let valid = |h: &&str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    match (request.head.header("Host").filter(valid), request.local) {
        (Some(host), _) => host.to_owned(),
        (None, Some(local)) => local.to_string(),
        (None, None) => "localhost".to_owned(),
    }
}

/// How a listener's registration ended.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// It closed, or the relay closed it.
    Ended,
    /// It went silent past the idle timeout: its host is dead or cut off.
    Dead,
}

/// The reason a draining relay closes a listener's control channel with.
const GO_AWAY_REASON: &str = "relay draining: register again elsewhere";

/// Serves a registered listener's control channel until it ends; returns how, and the close the
/// relay ends it with (`None`: the listener closed, or its socket failed). What happens when is
/// the [`ListenerSession`]'s to decide, pings and silence included.
async fn hold(
    shared: &Shared,
    (address, listener): (&str, ListenerId),
    expiry: Option<u64>,
    ws: &mut WsStream,
    mut accepts: mpsc::Receiver<ToListener>,
) -> (Held, Option<CloseFrame>) {
    let keep_alive = shared.config.keep_alive();
    let idle_timeout = shared.config.idle_timeout();
    let mut session = ListenerSession::new(expiry).with_liveness(keep_alive, idle_timeout, Instant::now());
    // Why a renewed token was refused, for the close frame.
    let mut refusal = String::new();
    // A `response` announcing a body: the next binary message is that body.
    let mut awaiting_body: Option<ResponseMessage> = None;
    loop {
        let wake = match session.next(Instant::now(), unix_now()) {
            Next::End(ending) => {
                tracing::info!(%address, ?ending, "listener registration ended by the relay");
                let (held, reason) = match ending {
                    Ending::Silent => (Held::Dead, "idle timeout"),
                    Ending::RenewalRefused(_) => (Held::Ended, refusal.as_str()),
                    Ending::TokenExpired => (Held::Ended, "token expired"),
                    Ending::BadControl => (Held::Ended, "bad control message"),
                };
                return (held, Some(frame(ending.close_code(), reason)));
            }
            // Hybrid Connections has no "go away" message: closing the control channel with 1012
            // (service restart) says it, while the listener's rendezvous sockets, its open
            // channels, run on until they finish or the grace period ends.
            Next::GoAway => return (Held::Ended, Some(frame(CLOSE_RESTART, GO_AWAY_REASON))),
            Next::Ping => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                continue;
            }
            Next::WaitUntil(wake) => wake,
        };
        tokio::select! {
            message = accepts.recv() => {
                let Some(message) = message else { break };
                if send_to_listener(ws, message).await.is_err() {
                    break;
                }
            }
            message = ws.next() => {
                session.heard(Instant::now());
                match message {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ControlMessage>(&text) {
                        Ok(ControlMessage::RenewToken { token }) => {
                            match shared.live().policy.authorize(Some(&token), Right::Listen, address, unix_now()) {
                                Ok(renewed) => session.renewed(renewed.expiry),
                                Err(denied) => {
                                    tracing::info!(%address, reason = %denied.reason, "renewed token refused");
                                    refusal = status_description(ErrorCode::Auth(denied.reason), &denied.detail);
                                    session.renewal_refused(denied.reason);
                                }
                            }
                        }
                        Ok(ControlMessage::Response(head)) if head.body => awaiting_body = Some(head),
                        Ok(ControlMessage::Response(head)) => answered(shared, listener, head, Bytes::new()),
                        _ => tracing::debug!(%address, "ignoring an unknown control message"),
                    },
                    Some(Ok(Message::Binary(body))) => match awaiting_body.take() {
                        Some(head) => answered(shared, listener, head, body),
                        // hyco-https sends an empty binary message after a response without body.
                        None => tracing::debug!(%address, bytes = body.len(), "ignoring a binary message no response announced"),
                    },
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
            () = sleep_until(wake), if wake.is_some() => {}
            () = shared.reached(Phase::Draining), if !session.told_to_go() => session.draining(),
        }
    }
    // The listener closed (its close is answered by `close`), or its socket failed.
    (Held::Ended, None)
}
