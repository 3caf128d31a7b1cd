//! Opening a channel to a listener on another node of the cluster: that node is asked (over
//! NATS) to have its listener dial a one-time rendezvous here; the listener's stream arrives on
//! this node's QUIC endpoint, and the channel runs between it and the caller, never through the
//! listener's node.

use relay_proto::ErrorCode;
use relay_proto::cluster::{NodeId, OpenReply, OpenRequest};

use super::{ChannelRequest, Failed, Refusal, offer_quic};
use crate::channel::End;
use crate::peers::{OpenRequestError, Peers};
use crate::rendezvous::{Outcome, Rendezvous, system_random};
use crate::state::Shared;

/// Why another node's listener did not take the channel.
#[derive(Debug)]
pub(super) enum RemoteFailed {
    /// Its listener refused: tell the caller.
    Refused(Refusal),
    /// Its listeners are busy: try elsewhere, and say so if nothing else takes it.
    Busy(Refusal),
    /// It has no usable listener after all (the view was behind), or its listener did not dial
    /// in time: try elsewhere.
    Next,
    /// The node did not answer: try elsewhere; this says why, for the caller if nothing else
    /// takes the channel.
    Unanswered(String),
}

/// Asks `node` for one of its listeners on the request's address and waits for the listener's
/// rendezvous here (within the handshake timeout, as a listener's answer on this node).
pub(super) async fn open(
    shared: &Shared,
    peers: &Peers,
    node: NodeId,
    request: &ChannelRequest,
    channel_id: u64,
) -> Result<End, RemoteFailed> {
    let pending = Rendezvous::register(&shared.quic_rendezvous, system_random).map_err(|e| {
        tracing::error!(error = %e, "refusing a channel");
        RemoteFailed::Refused(Refusal::new(ErrorCode::Internal, e.to_string()))
    })?;
    let open = OpenRequest {
        address: request.address.clone(),
        path: request.path.clone(),
        channel_id,
        url: peers.quic_url.clone(),
        secret: pending.secret().to_owned(),
    };
    match peers.request_open(node, &open).await {
        Ok(OpenReply::Notified) => {}
        Ok(OpenReply::Refused(refusal)) => {
            tracing::debug!(%node, code = ?refusal.code, detail = %refusal.detail, "node refused the open");
            let refusal = Refusal::new(refusal.code, refusal.detail);
            return Err(match refusal.code {
                ErrorCode::NoListener | ErrorCode::ShuttingDown => RemoteFailed::Next,
                ErrorCode::Busy => RemoteFailed::Busy(refusal),
                _ => RemoteFailed::Refused(refusal),
            });
        }
        Err(e) => {
            tracing::info!(%node, error = %e, "node did not answer an open; skipping it");
            if !matches!(e, OpenRequestError::Disconnected) {
                peers.suspect(node);
            }
            return Err(RemoteFailed::Unanswered(format!("the listener's relay node did not answer: {e}")));
        }
    }
    let dialled = async {
        match pending.wait().await {
            Some(Outcome::Accepted { ws: pipe, .. }) => offer_quic(*pipe, request, channel_id).await,
            _ => Err(Failed::Unreachable),
        }
    };
    match tokio::time::timeout(shared.config.handshake_timeout(), dialled).await {
        Ok(Ok((end, _))) => Ok(end),
        Ok(Err(Failed::Refused(refusal))) if refusal.code == ErrorCode::Busy => Err(RemoteFailed::Busy(refusal)),
        Ok(Err(Failed::Refused(refusal))) => Err(RemoteFailed::Refused(refusal)),
        Ok(Err(Failed::Unreachable | Failed::TimedOut)) | Err(_) => {
            tracing::debug!(%node, "the listener on the node did not dial its rendezvous in time");
            Err(RemoteFailed::Next)
        }
    }
}
