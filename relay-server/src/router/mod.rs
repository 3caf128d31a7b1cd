//! Routing a channel: pick a listener on the address and open the channel to it, whatever
//! transport the listener is on. The result is the listener's end of the channel, or a refusal.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use relay_proto::hc::{Accept, CONTRACT_HEADER};
use relay_proto::io::{read_frame, write_frame};
use relay_proto::{ContractInfo, ErrorCode, Incoming, MAX_HANDSHAKE_FRAME, Reply};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::{End, Pipe};
use crate::cluster::view::Choice;
use crate::listeners::{HcListener, ListenerHandle, ToListener};
use crate::metrics::OpenResult;
use crate::peers::Peers;
use crate::registry::ListenerId;
use crate::rendezvous::{Outcome, Rendezvous, system_random, websocket_key};
use crate::state::Shared;
use remote::RemoteFailed;

pub(crate) mod remote;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub(crate) struct ChannelRequest {
    /// The registered address.
    pub(crate) address: String,
    /// The path the sender used (the address plus any suffix), for the listener.
    pub(crate) path: String,
    /// Query parameters for the listener.
    pub(crate) passthrough: Vec<String>,
    /// The sender's id for the connection, if it gave one.
    pub(crate) id: Option<String>,
    /// The caller's contract (empty for raw WebSocket senders).
    pub(crate) contract: ContractInfo,
    /// The sender's HTTP headers (WebSocket senders), token headers removed.
    pub(crate) headers: BTreeMap<String, String>,
    /// How the caller came (`quic`, `websocket`, `http`), for logs.
    pub(crate) transport: &'static str,
}

/// Why a channel was not opened.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) detail: String,
    /// The HTTP status a Hybrid Connections listener rejected with, passed on to WebSocket senders.
    pub(crate) http: Option<(u16, String)>,
    /// Listeners were tried and none answered in time (the caller hears `NoListener`; the
    /// metrics tell it apart).
    pub(crate) timed_out: bool,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), http: None, timed_out: false }
    }

    /// What the metrics count it as.
    pub(crate) fn open_result(&self) -> OpenResult {
        if self.timed_out { OpenResult::timeout } else { OpenResult::of(self.code) }
    }
}

/// The listener's end of an opened channel.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) end: End,
    /// The relay's id for the channel, which the listener was given too.
    pub(crate) channel_id: u64,
    /// Which listener took it.
    pub(crate) listener: ListenerId,
    /// The WebSocket sub-protocol the listener chose, for the sender's handshake answer.
    pub(crate) protocol: Option<String>,
    /// Cancelled when the listener is found dead, for channels that would not notice.
    pub(crate) listener_dead: Option<CancellationToken>,
}

/// A listener's end and the sub-protocol it chose.
type Accepted = (End, Option<String>);

/// Why one listener did not take the channel.
enum Failed {
    /// It cannot be reached: try the next listener.
    Unreachable,
    /// It did not answer within the handshake (QUIC) or rendezvous (Hybrid Connections) timeout.
    TimedOut,
    /// It answered no: tell the caller.
    Refused(Refusal),
}

/// Picks listeners round-robin until one takes the channel or refuses it. A listener that
/// refuses as busy (its host is at its own channel limit) passes the channel on to the next. In
/// a cluster, the round-robin spans every listener of the address on every node (see
/// [`route_in_cluster`]).
///
/// Everything logged meanwhile is in the span of the channel: its id, address and transport,
/// as the [`channel_span`] of its splice will be.
pub(crate) async fn route(shared: &Shared, request: &ChannelRequest) -> Result<Opened, Refusal> {
    if shared.draining() {
        return Err(Refusal::new(ErrorCode::ShuttingDown, "relay is shutting down"));
    }
    let channel_id = shared.next_channel_id.fetch_add(1, Ordering::Relaxed);
    let routed = async {
        let mut local = LocalTries::default();
        if let Some(peers) = shared.peers() {
            return route_in_cluster(shared, peers, request, channel_id, local).await;
        }
        loop {
            match try_local(shared, request, channel_id, &mut local).await {
                Some(outcome) => return outcome,
                None if local.exhausted => return Err(local.refusal(shared, &request.address)),
                None => {}
            }
        }
    };
    // Boxed: the channel's task lives as long as the channel, and routing's state (a cluster's
    // request to another node, the tries) is needed only until the channel is open.
    Box::pin(routed.instrument(channel_span(channel_id, &request.address, request.transport))).await
}

/// The span of everything logged about channel `id` to `address`, whose caller came over
/// `transport`: on the relay while it is routed and spliced, as on the host (and the caller,
/// which is told the id) for their part of it.
pub(crate) fn channel_span(id: u64, address: &str, transport: &'static str) -> tracing::Span {
    tracing::debug_span!("channel", id, address, transport)
}

/// What the local listeners said so far while routing one channel.
#[derive(Debug, Default)]
struct LocalTries {
    tried: Vec<ListenerId>,
    busy: Option<Refusal>,
    /// No untried local listener is left.
    exhausted: bool,
    /// A listener tried did not answer in time.
    timed_out: bool,
}

impl LocalTries {
    /// The refusal for a caller no local listener took.
    fn refusal(&mut self, shared: &Shared, address: &str) -> Refusal {
        if let Some(refusal) = self.busy.take() {
            return refusal;
        }
        if shared.registry().all_full(address) {
            return Refusal::new(ErrorCode::Busy, "every listener is at its channel limit");
        }
        if self.timed_out {
            return Refusal { timed_out: true, ..Refusal::new(ErrorCode::NoListener, "no listener answered in time") };
        }
        let detail = if self.tried.is_empty() { "no listener on this address" } else { "no listener reachable" };
        Refusal::new(ErrorCode::NoListener, detail)
    }
}

/// Tries the next local listener: `Some` with the outcome to give the caller, `None` to go on
/// (marking `local.exhausted` when no listener was left to try).
async fn try_local(
    shared: &Shared,
    request: &ChannelRequest,
    channel_id: u64,
    local: &mut LocalTries,
) -> Option<Result<Opened, Refusal>> {
    let picked = shared.registry().pick_where(&request.address, &local.tried, |l| l.can_take(&request.contract));
    let Some((id, listener)) = picked else {
        local.exhausted = true;
        return None;
    };
    local.tried.push(id);
    match open_within(shared, id, &listener, request, channel_id).await {
        Ok(opened) => Some(Ok(opened)),
        Err(Failed::Refused(refusal)) if refusal.code == ErrorCode::Busy => {
            tracing::debug!(listener = id, "listener busy, trying the next");
            local.busy = Some(refusal);
            None
        }
        Err(Failed::Refused(refusal)) => Some(Err(refusal)),
        Err(Failed::Unreachable) => {
            tracing::debug!(listener = id, "listener unreachable, trying the next");
            None
        }
        Err(Failed::TimedOut) => {
            tracing::debug!(listener = id, "listener did not answer in time, trying the next");
            local.timed_out = true;
            None
        }
    }
}

/// Routes in a cluster: the view chooses, round-robin over every listener of the address on
/// every node, a local listener or another node; a node that has none after all, is busy or
/// does not answer is skipped (one that does not answer, for a node timeout) and the next
/// choice taken. When no choice is left the caller hears why: busy, `NoListener`, or (when the
/// nodes that hold listeners do not answer) a busy refusal saying so, so it can retry; once such
/// a node is dropped from the view for its silence, `NoListener`.
async fn route_in_cluster(
    shared: &Shared,
    peers: &Peers,
    request: &ChannelRequest,
    channel_id: u64,
    mut local: LocalTries,
) -> Result<Opened, Refusal> {
    let mut excluded = Vec::new();
    let mut unanswered = None;
    loop {
        let listeners = if local.exhausted { 0 } else { shared.registry().listeners(&request.address) };
        match peers.choose(&request.address, listeners, &excluded) {
            Choice::Local => {
                if let Some(outcome) = try_local(shared, request, channel_id, &mut local).await {
                    return outcome;
                }
            }
            Choice::Remote { node } => {
                excluded.push(node);
                match remote::open(shared, peers, node, request, channel_id).await {
                    Ok((end, protocol)) => {
                        return Ok(Opened { end, channel_id, listener: REMOTE, protocol, listener_dead: None });
                    }
                    Err(RemoteFailed::Refused(refusal)) => return Err(refusal),
                    Err(RemoteFailed::Busy(refusal)) => local.busy = Some(refusal),
                    Err(RemoteFailed::Next) => {}
                    Err(RemoteFailed::Unanswered(detail)) => unanswered = Some(detail),
                }
            }
            choice @ (Choice::Unanswering | Choice::Nobody) => {
                let suspects = choice == Choice::Unanswering;
                let unanswered =
                    unanswered.or_else(|| suspects.then(|| "the listener's relay node is not answering".to_owned()));
                if local.busy.is_none()
                    && let Some(detail) = unanswered
                {
                    return Err(Refusal::new(ErrorCode::Unreachable, detail));
                }
                return Err(local.refusal(shared, &request.address));
            }
        }
    }
}

/// The listener id of a channel whose listener is on another node: no local listener's count.
const REMOTE: ListenerId = 0;

/// Opens a channel to one given listener (a multicast subscriber), within the handshake or
/// rendezvous timeout.
pub(crate) async fn open_listener(
    shared: &Shared,
    id: ListenerId,
    listener: &ListenerHandle,
    request: &ChannelRequest,
) -> Result<Opened, Refusal> {
    let channel_id = shared.next_channel_id.fetch_add(1, Ordering::Relaxed);
    open_within(shared, id, listener, request, channel_id).await.map_err(|failed| match failed {
        Failed::Refused(refusal) => refusal,
        Failed::Unreachable => Refusal::new(ErrorCode::NoListener, "listener unreachable"),
        Failed::TimedOut => Refusal::new(ErrorCode::NoListener, "listener did not answer in time"),
    })
}

/// Opens a channel to the listener `id` within its transport's timeout.
async fn open_within(
    shared: &Shared,
    id: ListenerId,
    listener: &ListenerHandle,
    request: &ChannelRequest,
    channel_id: u64,
) -> Result<Opened, Failed> {
    let limit = match listener {
        ListenerHandle::Quic(_) => shared.config.handshake_timeout(),
        ListenerHandle::Hc(_) => shared.config.rendezvous_timeout(),
    };
    let (end, protocol) = tokio::time::timeout(limit, open(shared, listener, request, channel_id))
        .await
        .map_err(|_| Failed::TimedOut)??;
    Ok(Opened { end, channel_id, listener: id, protocol, listener_dead: listener.dead_signal() })
}

async fn open(
    shared: &Shared,
    listener: &ListenerHandle,
    request: &ChannelRequest,
    channel_id: u64,
) -> Result<Accepted, Failed> {
    match listener {
        ListenerHandle::Quic(quic) => open_quic(&quic.connection, request, channel_id).await,
        ListenerHandle::Hc(hc) => open_hc(shared, hc, request, channel_id).await,
    }
}

/// Opens a stream to a native host, sends the `Incoming` header and reads the host's answer.
async fn open_quic(
    connection: &quinn::Connection,
    request: &ChannelRequest,
    channel_id: u64,
) -> Result<Accepted, Failed> {
    let (send, recv) = connection.open_bi().await.map_err(|_| Failed::Unreachable)?;
    offer_quic(Pipe { send, recv }, request, channel_id).await
}

/// Offers a channel on a stream the relay opened to a native host: sends the `Incoming` header
/// and reads the host's answer.
async fn offer_quic(mut pipe: Pipe, request: &ChannelRequest, channel_id: u64) -> Result<Accepted, Failed> {
    let incoming = Incoming { address: request.address.clone(), channel_id, contract: request.contract.clone() };
    write_frame(&mut pipe.send, &incoming.encode()).await.map_err(|_| Failed::Unreachable)?;
    answer_of(pipe).await
}

/// Reads a native host's answer to the channel offered on `pipe` (with the `Incoming` header
/// written on it, or sent with the dial of a rendezvous stream).
async fn answer_of(pipe: Pipe) -> Result<Accepted, Failed> {
    let Pipe { send, mut recv } = pipe;
    let reply = read_frame(&mut recv, MAX_HANDSHAKE_FRAME).await.map_err(|_| Failed::Unreachable)?;
    match Reply::decode(&reply) {
        Ok(Reply::Accepted | Reply::Open { .. }) => Ok((End::Quic(Pipe { send, recv }), None)),
        Ok(Reply::Refused(r)) => Err(Failed::Refused(Refusal::new(r.code, r.detail))),
        Err(_) => Err(Failed::Refused(Refusal::new(ErrorCode::Internal, "the listener answered garbage"))),
    }
}

/// How long a rendezvous may still arrive after its listener's control channel closed.
const LATE_RENDEZVOUS: std::time::Duration = std::time::Duration::from_secs(1);

/// Notifies a Hybrid Connections listener and waits for its rendezvous, or until it goes.
async fn open_hc(
    shared: &Shared,
    hc: &HcListener,
    request: &ChannelRequest,
    channel_id: u64,
) -> Result<Accepted, Failed> {
    let pending = Rendezvous::register(&shared.rendezvous, system_random).map_err(|e| {
        tracing::error!(channel = channel_id, address = %request.address, error = %e, "refusing a channel");
        Failed::Refused(Refusal::new(ErrorCode::Internal, e.to_string()))
    })?;
    let accept = hc_accept(request, channel_id, &hc.base_url, pending.secret());
    hc.notify.try_send(ToListener::Accept(accept)).map_err(|_| Failed::Unreachable)?;
    // A listener that goes (closes its control channel, or is dropped as dead after the idle
    // timeout) will not open the rendezvous: stop waiting for it, after a moment for a rendezvous
    // it may have started before it went.
    let outcome = {
        let mut wait = std::pin::pin!(pending.wait());
        tokio::select! {
            outcome = &mut wait => outcome,
            () = hc.notify.closed() => tokio::time::timeout(LATE_RENDEZVOUS, wait).await.ok().flatten(),
        }
    };
    hc_outcome(outcome)
}

/// The `accept` notification that has a Hybrid Connections listener open a rendezvous for
/// `request` at `base_url` (`wss://host:port` of this node, or in a cluster of the caller's node)
/// under `secret`.
fn hc_accept(request: &ChannelRequest, channel_id: u64, base_url: &str, secret: &str) -> Accept {
    let id = request.id.clone().unwrap_or_else(|| channel_id.to_string());
    let mut query: Vec<String> = request.passthrough.clone();
    query.push("sb-hc-action=accept".into());
    query.push(format!("sb-hc-id={}", relay_proto::auth::percent::encode_component(&id)));
    query.push(format!("sb-hc-rendezvous={secret}"));
    let address = format!("{base_url}/$hc/{}?{}", request.path, query.join("&"));
    let mut connect_headers = request.headers.clone();
    if !connect_headers.keys().any(|k| k.eq_ignore_ascii_case("Sec-WebSocket-Key")) {
        // A caller on another transport: listeners expect a WebSocket sender's headers.
        connect_headers.insert("Sec-WebSocket-Key".into(), websocket_key());
        connect_headers.insert("Sec-WebSocket-Version".into(), "13".into());
    }
    if !request.contract.name.is_empty() {
        connect_headers.insert(CONTRACT_HEADER.into(), request.contract.to_header());
    }
    Accept { address, id, connect_headers }
}

/// What a Hybrid Connections listener's answer on its rendezvous means for the caller.
fn hc_outcome(outcome: Option<Outcome<End>>) -> Result<Accepted, Failed> {
    match outcome {
        Some(Outcome::Accepted { ws, protocol }) => match *ws {
            end @ End::Ws(_) => Ok((end, protocol)),
            // Only the listener it was sent to knows the secret; it is no QUIC host.
            End::Quic(_) => Err(Failed::Unreachable),
        },
        Some(Outcome::Rejected { status, description }) => {
            let code = relay_proto::hc::error_code(status, &description);
            Err(Failed::Refused(Refusal {
                code,
                detail: description.clone(),
                http: Some((status, description)),
                timed_out: false,
            }))
        }
        None => Err(Failed::Unreachable),
    }
}
