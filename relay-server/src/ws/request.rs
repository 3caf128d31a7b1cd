//! The rendezvous of an HTTP-mode request (`sb-hc-action=request&sb-hc-id=ID`). A Hybrid
//! Connections listener opens it to answer there (a response too large for its control
//! channel), or because the relay sent it only the request's id (a request too large for the
//! control channel): that request then travels here first. One rendezvous carries one request
//! and its answer, then closes (listeners close theirs after each response anyway).
//!
//! No token: the id is the request's one-time secret, as in Azure's protocol.

use futures::{SinkExt as _, StreamExt as _};
use relay_proto::hc::{CLOSE_NORMAL, ControlMessage};
use relay_proto::hc_http::ResponseMessage;
use tokio_tungstenite::tungstenite::Message;

use super::Request;
use crate::channel::WsStream;
use crate::channel::close::{close, frame};
use crate::exchanges::{ListenerAnswer, Rendezvous, RendezvousRequest};
use crate::state::Shared;

pub(crate) async fn serve(shared: &Shared, request: Request) {
    let Some(id) = request.target.id.clone() else {
        return request.refuse(400, "a request rendezvous needs sb-hc-id").await;
    };
    let carried = match shared.exchanges.rendezvous(&id) {
        Rendezvous::Unknown => {
            return request.refuse(403, "no request waits under this id (answered, given up, or never made)").await;
        }
        Rendezvous::Answer => None,
        Rendezvous::Request(carried) => Some(carried),
    };
    let timeout = shared.live().config.http_response_timeout(&request.target.path);
    let mut ws = match request.upgrade_control(shared).await {
        Ok(ws) => ws,
        Err(e) => return tracing::debug!(error = %e, "request rendezvous upgrade failed"),
    };
    if let Some(carried) = carried
        && send_request(&mut ws, carried).await.is_err()
    {
        return;
    }
    match tokio::time::timeout(timeout, read_answer(&mut ws)).await {
        Ok(Some(answer)) => {
            if !shared.exchanges.complete(&id, None, answer) {
                tracing::debug!(request = %id, "an answer for a request given up meanwhile");
            }
        }
        Ok(None) => tracing::debug!(request = %id, "the request rendezvous ended without an answer"),
        // The sender's own deadline (the same timeout, started earlier) has answered it 504.
        Err(_) => tracing::debug!(request = %id, "no answer on the request rendezvous in time"),
    }
    close(&mut ws, Some(frame(CLOSE_NORMAL, ""))).await;
}

/// Sends the request this rendezvous carries: its `request` message, then its body.
async fn send_request(ws: &mut WsStream, (message, body): RendezvousRequest) -> Result<(), ()> {
    let with_body = message.body == Some(true);
    let json = serde_json::to_string(&ControlMessage::Request(message)).map_err(|_| ())?;
    ws.feed(Message::text(json)).await.map_err(|_| ())?;
    if with_body {
        ws.feed(Message::Binary(body)).await.map_err(|_| ())?;
    }
    ws.flush().await.map_err(|_| ())
}

/// Reads the listener's `response` and, when it announces one, the body message after it;
/// `None` if the rendezvous ends first or carries something else.
async fn read_answer(ws: &mut WsStream) -> Option<ListenerAnswer> {
    let mut head: Option<ResponseMessage> = None;
    while let Some(message) = ws.next().await {
        match message.ok()? {
            Message::Text(text) => match serde_json::from_str::<ControlMessage>(&text) {
                Ok(ControlMessage::Response(response)) if response.body => head = Some(response),
                Ok(ControlMessage::Response(response)) => {
                    return Some(ListenerAnswer { head: response, body: Default::default() });
                }
                _ => return None,
            },
            Message::Binary(body) => {
                if let Some(head) = head.take() {
                    return Some(ListenerAnswer { head, body });
                }
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}
