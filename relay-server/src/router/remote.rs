//! Opening a channel to a listener on another node of the cluster: that node is asked (over
//! NATS) to have its listener dial a one-time rendezvous here (a QUIC host dials this node's QUIC
//! endpoint; a Hybrid Connections listener opens its rendezvous WebSocket on this node's wss
//! endpoint); the channel runs between that and the caller, never through the listener's node.

use relay_proto::ErrorCode;
use relay_proto::cluster::{ListenerKind, NodeId, OpenReply, OpenRequest};
use relay_proto::error::chain;

use super::{Accepted, ChannelRequest, Failed, Refusal, answer_of, hc_accept, hc_outcome};
use crate::channel::End;
use crate::peers::{OpenRequestError, Peers};
use crate::rendezvous::{Outcome, Rendezvous, system_random};
use crate::state::Shared;

/// Why another node's listener did not take the channel.
#[derive(Debug)]
pub(crate) enum RemoteFailed {
    /// Its listener refused: tell the caller.
    Refused(Refusal),
    /// Its listeners are busy: try elsewhere, and say so if nothing else takes it.
    Busy(Refusal),
    /// It has no usable listener after all (the view was behind, or every one is excluded), or
    /// its listener did not dial in time: try elsewhere.
    Next,
    /// The node did not answer: try elsewhere; this says why, for the caller if nothing else
    /// takes the channel.
    Unanswered(String),
}

/// A listener on another node, told to dial a rendezvous here.
pub(crate) struct Dialling {
    /// The listener's id on its node.
    pub(crate) listener: u64,
    kind: ListenerKind,
    pending: Rendezvous<End>,
}

/// Asks `node` for one of its listeners on the request's address (not one of `exclude`) and
/// waits for the listener's rendezvous here, within the handshake timeout for a QUIC host or the
/// rendezvous timeout for a Hybrid Connections listener, as for a listener on this node.
pub(super) async fn open(
    shared: &Shared,
    peers: &Peers,
    node: NodeId,
    request: &ChannelRequest,
    channel_id: u64,
) -> Result<Accepted, RemoteFailed> {
    ask(shared, peers, node, request, channel_id, Vec::new()).await?.connect(shared).await
}

/// Has `node` tell one of its listeners on the request's address, not one of `exclude`, to dial
/// a rendezvous here; the dial is waited for with [`Dialling::connect`].
pub(crate) async fn ask(
    shared: &Shared,
    peers: &Peers,
    node: NodeId,
    request: &ChannelRequest,
    channel_id: u64,
    exclude: Vec<u64>,
) -> Result<Dialling, RemoteFailed> {
    let pending = Rendezvous::register(&shared.rendezvous, system_random).map_err(|e| {
        tracing::error!(channel = channel_id, address = %request.address, error = %e, "refusing a channel");
        RemoteFailed::Refused(Refusal::new(ErrorCode::Internal, e.to_string()))
    })?;
    let open = OpenRequest {
        address: request.address.clone(),
        path: request.path.clone(),
        channel_id,
        url: peers.quic_url.clone(),
        secret: pending.secret().to_owned(),
        contract: request.contract.clone(),
        accept: peers.wss_url.as_deref().map(|base| hc_accept(request, channel_id, base, pending.secret())),
        exclude,
        http: false,
    };
    match peers.request_open(node, &open).await {
        Ok(OpenReply::Notified { listener, kind }) => Ok(Dialling { listener, kind, pending }),
        Ok(OpenReply::Refused(refusal)) => {
            tracing::debug!(%node, code = ?refusal.code, detail = %refusal.detail, "node refused the open");
            let refusal = Refusal::new(refusal.code, refusal.detail);
            Err(match refusal.code {
                ErrorCode::NoListener | ErrorCode::ShuttingDown => RemoteFailed::Next,
                ErrorCode::Busy => RemoteFailed::Busy(refusal),
                _ => RemoteFailed::Refused(refusal),
            })
        }
        Err(e) => {
            let address = &request.address;
            tracing::info!(%node, channel = channel_id, %address, error = %chain(&e), "node did not answer an open; skipping it");
            if !matches!(e, OpenRequestError::Disconnected) {
                peers.suspect(node);
            }
            Err(RemoteFailed::Unanswered(format!("the listener's relay node did not answer: {}", chain(&e))))
        }
    }
}

impl Dialling {
    /// Waits for the listener's rendezvous and, for a QUIC host, its answer to the offer it was
    /// sent with the dial.
    pub(crate) async fn connect(self, shared: &Shared) -> Result<Accepted, RemoteFailed> {
        let Self { listener, kind, pending } = self;
        let limit = match kind {
            ListenerKind::Quic => shared.config.handshake_timeout(),
            ListenerKind::HybridConnection => shared.config.rendezvous_timeout(),
        };
        let dialled = async {
            match pending.wait().await {
                Some(Outcome::Accepted { ws, protocol }) => match *ws {
                    // The host was sent the channel's header with the dial: its answer follows.
                    End::Quic(pipe) => answer_of(pipe).await,
                    ws @ End::Ws(_) => Ok((ws, protocol)),
                },
                outcome => hc_outcome(outcome),
            }
        };
        match tokio::time::timeout(limit, dialled).await {
            Ok(Ok(accepted)) => Ok(accepted),
            Ok(Err(Failed::Refused(refusal))) if refusal.code == ErrorCode::Busy => Err(RemoteFailed::Busy(refusal)),
            Ok(Err(Failed::Refused(refusal))) => Err(RemoteFailed::Refused(refusal)),
            Ok(Err(Failed::Unreachable | Failed::TimedOut)) | Err(_) => {
                tracing::debug!(listener, ?kind, "the listener on the other node did not dial its rendezvous in time");
                Err(RemoteFailed::Next)
            }
        }
    }
}
