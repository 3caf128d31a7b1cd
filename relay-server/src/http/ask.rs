//! Sending an HTTP-mode request to a listener and waiting for its answer: a Hybrid Connections
//! listener of the address on this node (the request on its control channel, or over a
//! rendezvous when large), or, in a cluster, on another node. That node is asked over NATS to
//! send its listener only the request's id and rendezvous address, which names this node: the
//! listener opens the rendezvous here, the request and its answer go over it, and neither
//! crosses two relays.

use relay_proto::ErrorCode;
use relay_proto::cluster::{NodeId, OpenReply, OpenRequest};
use relay_proto::error::chain;
use relay_proto::hc::Accept;
use relay_proto::hc_http::{MAX_CONTROL_BODY, MAX_CONTROL_JSON, RequestMessage};
use tokio::sync::mpsc::error::TrySendError;

use super::forward::{Refused, refused, refused_as};
use crate::cluster::view::Choice;
use crate::exchanges::{Exchange, ListenerAnswer, RequestBody};
use crate::listeners::ToListener;
use crate::peers::Peers;
use crate::registry::ListenerId;
use crate::rendezvous::system_random;
use crate::state::Shared;

/// Sends `message` (its body after it) to a Hybrid Connections listener of `address`, here or on
/// another node, and waits for its answer within the address's response timeout.
pub(super) async fn ask_listener(
    shared: &Shared,
    address: &str,
    message: RequestMessage,
    body: RequestBody,
) -> Result<ListenerAnswer, Refused> {
    let mut tried = Vec::new();
    // Lent to a rendezvous while one is to carry it; back when none took it.
    let mut body = Some(body);
    let Some(peers) = shared.peers() else {
        return match ask_local(shared, address, &message, &mut body, &mut tried).await {
            Some(asked) => asked,
            None => Err(no_listener(address)),
        };
    };
    let (mut nodes_tried, mut local_left) = (Vec::new(), true);
    loop {
        let local = if local_left { shared.registry().listeners(address) } else { 0 };
        match peers.choose(address, local, &nodes_tried) {
            Choice::Local => match ask_local(shared, address, &message, &mut body, &mut tried).await {
                Some(asked) => return asked,
                None => local_left = false,
            },
            Choice::Remote { node } => {
                nodes_tried.push(node);
                if let Some(asked) = ask_remote(shared, peers, node, address, &message, &mut body).await {
                    return asked;
                }
            }
            Choice::Unanswering | Choice::Nobody => return Err(no_listener(address)),
        }
    }
}

fn no_listener(address: &str) -> Refused {
    refused(502, format!("no listener on {address:?} takes HTTP requests"))
}

/// Asks a listener of `address` on this node, not one `tried` yet; `None` when none is left.
async fn ask_local(
    shared: &Shared,
    address: &str,
    message: &RequestMessage,
    body: &mut Option<RequestBody>,
    tried: &mut Vec<ListenerId>,
) -> Option<Result<ListenerAnswer, Refused>> {
    loop {
        let Some(whole) = body.as_ref() else { return Some(Err(body_gone())) };
        let (id, hc) = shared.pick_hc_listener(address, tried)?;
        let mut exchange = match Exchange::register(&shared.exchanges, Some(id), system_random) {
            Ok(exchange) => exchange,
            Err(e) => return Some(Err(no_randomness(&e))),
        };
        let mut message = message.clone();
        message.id = exchange.id().to_owned();
        message.address = rendezvous_url(&hc.base_url, address, exchange.id());
        let over_control = whole.rest.is_none()
            && whole.start.len() <= MAX_CONTROL_BODY
            && serde_json::to_string(&message).is_ok_and(|json| json.len() <= MAX_CONTROL_JSON);
        let notice = if over_control {
            ToListener::Request(message, (!whole.start.is_empty()).then(|| whole.start.clone()))
        } else {
            let notice = RequestMessage::rendezvous_only(&message.address, &message.id);
            exchange.over_rendezvous((message, body.take()?));
            ToListener::Request(notice, None)
        };
        match hc.notify.try_send(notice) {
            Ok(()) => return Some(wait(shared, address, &mut exchange).await),
            Err(TrySendError::Full(_)) => {
                return Some(Err(refused_as(ErrorCode::Busy, "the listener has too many requests waiting")));
            }
            // It is leaving: the next one.
            Err(TrySendError::Closed(_)) => {
                if let Some((_, lent)) = exchange.take_back() {
                    *body = Some(lent);
                }
            }
        }
    }
}

/// Asks `node` to have one of its listeners of `address` open the request's rendezvous here;
/// `None` when it has none that can (the next node is tried).
async fn ask_remote(
    shared: &Shared,
    peers: &Peers,
    node: NodeId,
    address: &str,
    message: &RequestMessage,
    body: &mut Option<RequestBody>,
) -> Option<Result<ListenerAnswer, Refused>> {
    // Listeners on other nodes reach this one over its wss endpoint only.
    let base = peers.wss_url.as_deref()?;
    let Some(lent) = body.take() else { return Some(Err(body_gone())) };
    let mut exchange = match Exchange::register(&shared.exchanges, None, system_random) {
        Ok(exchange) => exchange,
        Err(e) => return Some(Err(no_randomness(&e))),
    };
    let mut message = message.clone();
    message.id = exchange.id().to_owned();
    message.address = rendezvous_url(base, address, exchange.id());
    let accept =
        Accept { address: message.address.clone(), id: message.id.clone(), connect_headers: Default::default() };
    exchange.over_rendezvous((message, lent));
    let open = OpenRequest {
        address: address.to_owned(),
        path: address.to_owned(),
        channel_id: 0,
        url: peers.quic_url.clone(),
        secret: exchange.id().to_owned(),
        contract: Default::default(),
        accept: Some(accept),
        exclude: Vec::new(),
        http: true,
    };
    let asked = peers.request_open(node, &open).await;
    if !matches!(asked, Ok(OpenReply::Notified { .. }))
        && let Some((_, lent)) = exchange.take_back()
    {
        *body = Some(lent);
    }
    match asked {
        Ok(OpenReply::Notified { listener, .. }) => {
            tracing::debug!(%node, listener, %address, "an http request sent to a listener on another node");
            Some(wait(shared, address, &mut exchange).await)
        }
        Ok(OpenReply::Refused(refusal)) => {
            tracing::debug!(%node, code = ?refusal.code, detail = %refusal.detail, "node refused an http request");
            None
        }
        Err(e) => {
            tracing::info!(%node, error = %chain(&e), "node did not answer an http request; skipping it");
            peers.suspect(node);
            None
        }
    }
}

/// Waits for the listener's answer, within the address's response timeout.
async fn wait(shared: &Shared, address: &str, exchange: &mut Exchange) -> Result<ListenerAnswer, Refused> {
    let timeout = shared.live().config.http_response_timeout(address);
    match tokio::time::timeout(timeout, exchange.answer()).await {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err(refused(502, "the listener went before it answered")),
        Err(_) => Err(refused(
            504,
            format!("the listener did not answer within {} ms (http_response_timeout_ms)", timeout.as_millis()),
        )),
    }
}

/// The rendezvous address of request `id`, on the node whose wss endpoint is `base`.
fn rendezvous_url(base: &str, address: &str, id: &str) -> String {
    format!("{base}/$hc/{address}?sb-hc-action=request&sb-hc-id={id}")
}

/// The answer when the body went to a rendezvous that never came back with it.
fn body_gone() -> Refused {
    refused(502, "the listener that took the request's body went before it answered")
}

fn no_randomness(e: &crate::rendezvous::NoRandomness) -> Refused {
    tracing::error!(error = %e, "refusing an http request");
    refused(500, e.to_string())
}
