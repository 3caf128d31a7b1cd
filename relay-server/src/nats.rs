//! The NATS driver of cluster mode: connects to NATS, publishes this node's heartbeats and
//! registration deltas, answers snapshot and open requests addressed to it, and feeds what the
//! other nodes say into the view. The decisions are the sans-IO `cluster` state's; this only
//! moves messages and reads the clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use relay_proto::cluster::{
    Delta, Heartbeat, ListenerKind, NodeId, OpenReply, OpenRequest, SnapshotChunk, SnapshotRequest, Subjects,
};
use relay_proto::error::chain;
use relay_proto::hc::Accept;
use relay_proto::hc_http::RequestMessage;
use relay_proto::{Control, ErrorCode, Incoming, Refusal};
use tokio::task::JoinSet;

use crate::cluster::view::{DialTarget, Heard, Taken};
use crate::config::ClusterConfig;
use crate::listeners::{ListenerHandle, ToListener};
use crate::peers::{Peers, PeersConfig};
use crate::phase::Phase;
use crate::state::Shared;

/// How long a publish may wait for room in the client's queue (while NATS is slow or away).
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(200);

/// Messages one subscription may have waiting for the driver (the client's default is 65,536,
/// each up to NATS's payload limit). Past it NATS drops them as for a slow consumer: a lost
/// delta is noticed by the next heartbeat's sequence number and mended by a snapshot.
const SUBSCRIPTION_CAPACITY: usize = 1024;

/// The most snapshot pages fetched from one node (each up to 512 KiB).
const MAX_SNAPSHOT_PAGES: usize = 256;

/// How this node joins its cluster, worked out when the relay binds.
#[derive(Debug)]
pub(crate) struct Join {
    pub(crate) config: ClusterConfig,
    pub(crate) node: NodeId,
    pub(crate) quic_url: String,
    pub(crate) wss_url: Option<String>,
    pub(crate) fingerprint: u64,
}

/// Why the cluster driver stopped before the relay did.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// The NATS client refused its options (it retries unreachable servers by itself).
    #[error("cannot start the NATS client")]
    Connect(#[source] async_nats::ConnectError),
    /// A subscription could not be made.
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The cause.
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// Runs cluster mode until the relay closes; without a join (no `[cluster]`), returns at once.
pub(crate) async fn run(shared: Arc<Shared>, join: Option<Join>) {
    let Some(join) = join else { return };
    if let Err(e) = drive(&shared, join).await {
        tracing::error!(error = %chain(&e), "cluster mode stopped; this node serves its own listeners only");
    }
}

async fn drive(shared: &Arc<Shared>, join: Join) -> Result<(), ClusterError> {
    let Join { config, node, quic_url, wss_url, fingerprint } = join;
    let subjects = Subjects::new(&config.name).expect("validated with the config");
    // Each (re)connection is announced with a heartbeat at once: the other nodes' views catch up
    // with this one a heartbeat period sooner.
    let connected = Arc::new(tokio::sync::Notify::new());
    let servers: Vec<async_nats::ServerAddr> = config.nats.iter().filter_map(|url| url.parse().ok()).collect();
    let client = async_nats::ConnectOptions::new()
        .name(format!("relay-server {node}"))
        .ping_interval(Duration::from_secs(1))
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .connection_timeout(config.open_timeout().max(Duration::from_secs(1)))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2_000)))
        .event_callback({
            let connected = connected.clone();
            let link = Arc::new(std::sync::Mutex::new(LinkLog::default()));
            let nats = servers.iter().map(|s| format!("{}:{}", s.host(), s.port())).collect::<Vec<_>>().join(", ");
            move |event| {
                let (connected, link, nats) = (connected.clone(), link.clone(), nats.clone());
                async move {
                    let said = link.lock().unwrap_or_else(std::sync::PoisonError::into_inner).event(&event);
                    say(said, &event, &nats);
                    if event == async_nats::Event::Connected {
                        connected.notify_one();
                    }
                }
            }
        })
        .connect(servers)
        .await
        .map_err(ClusterError::Connect)?;
    let peers = Arc::new(Peers::new(
        PeersConfig {
            node,
            subjects: subjects.clone(),
            quic_url: quic_url.clone(),
            wss_url,
            fingerprint,
            node_timeout: config.node_timeout(),
            open_timeout: config.open_timeout(),
        },
        client.clone(),
    ));
    let subscribe = |subject: String| {
        let client = client.clone();
        async move { client.subscribe(subject.clone()).await.map_err(|source| ClusterError::Subscribe { subject, source }) }
    };
    let mut heartbeats = subscribe(subjects.heartbeat()).await?;
    let mut deltas = subscribe(subjects.delta()).await?;
    let mut snapshot_requests = subscribe(subjects.snapshot(node)).await?;
    let mut open_requests = subscribe(subjects.open(node)).await?;
    if shared.peers.set(peers.clone()).is_err() {
        unreachable!("one cluster driver per relay");
    }
    // Keys reloaded since the relay started: from here on, a reload tells the view itself.
    peers.view().set_fingerprint(shared.live().fingerprint);
    tracing::info!(cluster = %config.name, %node, quic = %quic_url, "joining the cluster");
    // Listeners that registered before the link was up.
    for address in shared.registry().addresses() {
        shared.listeners_changed(&address);
    }

    let mut beat = tokio::time::interval(config.heartbeat());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshots: JoinSet<(NodeId, Option<Snapshot>)> = JoinSet::new();
    let mut fetching = HashSet::new();
    let fetch = |node: NodeId, snapshots: &mut JoinSet<_>, fetching: &mut HashSet<NodeId>| {
        if fetching.insert(node) {
            let (client, subject, timeout) = (client.clone(), subjects.snapshot(node), config.open_timeout());
            snapshots.spawn(async move { (node, fetch_snapshot(&client, subject, timeout).await) });
        }
    };
    loop {
        tokio::select! {
            _ = beat.tick() => {
                publish(&peers, subjects.heartbeat(), heartbeat(shared, &peers).encode()).await;
                let gone = peers.view().tick(Instant::now());
                for node in &gone {
                    tracing::warn!(%node, "node silent past the node timeout; dropped with its listeners");
                }
                if !gone.is_empty() {
                    peers.directory_changed();
                }
            }
            Some(message) = heartbeats.next() => match Heartbeat::decode(&message.payload) {
                Ok(heartbeat) => match peers.view().heartbeat(&heartbeat, Instant::now()) {
                    Heard::NeedSnapshot => fetch(heartbeat.node, &mut snapshots, &mut fetching),
                    Heard::KeyMismatch { first: true } => tracing::error!(
                        node = %heartbeat.node, quic = %heartbeat.quic_url,
                        "a node with different keys is in this cluster: refusing it (give every node the same \
                         root key and keys)"
                    ),
                    Heard::KeyMismatch { first: false } | Heard::Own | Heard::Known => {}
                },
                Err(e) => tracing::debug!(error = %chain(&e), "bad heartbeat"),
            },
            Some(message) = deltas.next() => match Delta::decode(&message.payload) {
                Ok(delta) => {
                    let taken = peers.view().delta(&delta);
                    if taken == Taken::NeedSnapshot {
                        fetch(delta.node, &mut snapshots, &mut fetching);
                    }
                    if taken != Taken::Ignored {
                        peers.directory_changed();
                    }
                }
                Err(e) => tracing::debug!(error = %chain(&e), "bad delta"),
            },
            Some(message) = snapshot_requests.next() => {
                if let (Some(reply), Ok(request)) = (message.reply, SnapshotRequest::decode(&message.payload)) {
                    let page = peers.local().page(request.from);
                    publish(&peers, reply.to_string(), page.encode()).await;
                }
            }
            Some(message) = open_requests.next() => {
                let answer = match OpenRequest::decode(&message.payload) {
                    Ok(request) => match peers.view().dial_target(&request.url) {
                        Some(target) => serve_open(shared, &request, &target),
                        None => {
                            tracing::warn!(url = %request.url, "open request for a node not in this node's view; refused");
                            let detail = "the caller's node is not in this node's view";
                            OpenReply::Refused(Refusal { code: ErrorCode::NoListener, detail: detail.into() })
                        }
                    },
                    Err(e) => OpenReply::Refused(Refusal { code: ErrorCode::BadRequest, detail: e.to_string() }),
                };
                if let Some(reply) = message.reply {
                    publish(&peers, reply.to_string(), answer.encode()).await;
                }
            }
            Some(done) = snapshots.join_next(), if !snapshots.is_empty() => {
                if let Ok((node, snapshot)) = done {
                    fetching.remove(&node);
                    if let Some(Snapshot { seq, entries }) = snapshot {
                        peers.view().snapshot(node, seq, &entries);
                        peers.directory_changed();
                    }
                }
            }
            () = shared.cluster_change.notified() => {
                for address in shared.take_changed() {
                    // Every listener here is reachable from another node: a QUIC host dials a
                    // rendezvous there, a Hybrid Connections listener is sent an accept naming it.
                    let listeners = shared.registry().listeners(&address);
                    let delta = peers.local().set(&address, listeners);
                    if let Some(delta) = delta {
                        publish(&peers, subjects.delta(), delta.encode()).await;
                    }
                }
            }
            () = connected.notified() => {
                publish(&peers, subjects.heartbeat(), heartbeat(shared, &peers).encode()).await;
            }
            () = shared.reached(Phase::Closing) => break,
        }
    }
    // Closes the NATS connection (the client would otherwise reconnect for as long as anything
    // holds it): this node's subjects have no responders from now on, so no open waits for it.
    let _ = tokio::time::timeout(PUBLISH_TIMEOUT, client.drain()).await;
    Ok(())
}

/// Where this node's NATS link stands, for its log: one line when the link starts failing (not
/// one per retry: the client retries for ever, as often as every 2 s) and one when it is up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LinkLog {
    /// Not yet connected, and no attempt has failed yet.
    #[default]
    Starting,
    /// Never connected; the first attempt failed and was said so.
    Unreachable,
    /// Connected.
    Up,
    /// Was connected, lost it, and said so.
    Lost,
}

/// What the log says about one NATS client event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// NATS is not reachable at start (`warn`).
    NotReachableYet,
    /// The first connection is up (`info`).
    Joined,
    /// The connection was lost (`warn`).
    Lost,
    /// The connection is back (`info`).
    Rejoined,
    /// Another failed attempt, already said (`debug`).
    StillDown,
    /// Anything else, as the client puts it (`info`).
    Other,
}

impl LinkLog {
    /// Takes `event` and says what to log of it.
    fn event(&mut self, event: &async_nats::Event) -> Said {
        use async_nats::Event;
        let (next, said) = match (*self, event) {
            (Self::Starting | Self::Unreachable, Event::Connected) => (Self::Up, Said::Joined),
            (Self::Lost, Event::Connected) => (Self::Up, Said::Rejoined),
            (Self::Up, Event::Disconnected) => (Self::Lost, Said::Lost),
            (Self::Starting, Event::ClientError(_)) => (Self::Unreachable, Said::NotReachableYet),
            (Self::Unreachable | Self::Lost, Event::ClientError(_)) => (*self, Said::StillDown),
            (state, _) => (state, Said::Other),
        };
        *self = next;
        said
    }
}

/// Logs what `said` about `event`; `nats` names the servers (host and port only: a NATS URL
/// may carry a password).
fn say(said: Said, event: &async_nats::Event, nats: &str) {
    match said {
        Said::NotReachableYet => tracing::warn!(
            %nats, error = %event,
            "NATS is not reachable yet: this node serves its own listeners meanwhile, and joins the cluster \
             when NATS is reachable (retrying)"
        ),
        Said::Joined => tracing::info!(%nats, "connected to NATS: joined the cluster"),
        Said::Lost => tracing::warn!(
            %nats,
            "lost NATS: this node serves its own listeners meanwhile, and rejoins the cluster when NATS is \
             back (retrying)"
        ),
        Said::Rejoined => tracing::info!(%nats, "reconnected to NATS: rejoined the cluster"),
        Said::StillDown => tracing::debug!(%nats, error = %event, "NATS still not reachable"),
        Said::Other => tracing::info!(%event, "nats"),
    }
}

/// This node's heartbeat now.
fn heartbeat(shared: &Shared, peers: &Peers) -> Heartbeat {
    use std::sync::atomic::Ordering;
    Heartbeat {
        node: peers.node,
        seq: peers.local().seq(),
        quic_url: peers.quic_url.clone(),
        wss_url: peers.wss_url.clone(),
        fingerprint: shared.live().fingerprint,
        draining: shared.draining(),
        listeners: shared.registry().total() as u64,
        open_channels: shared.open_channels.load(Ordering::SeqCst) as u64,
        relayed_bytes: shared.relayed_bytes.total(),
    }
}

/// Answers another node's open request: tells a local listener on the address (round-robin, not
/// one the request excludes) to dial the rendezvous on that node.
fn serve_open(shared: &Shared, request: &OpenRequest, target: &DialTarget) -> OpenReply {
    if shared.draining() {
        return OpenReply::Refused(Refusal { code: ErrorCode::ShuttingDown, detail: "relay node is draining".into() });
    }
    // A Hybrid Connections listener may only be sent to the caller's node's own endpoint.
    let accept = request.accept.as_ref().filter(|accept| target.allows_rendezvous(&accept.address));
    if request.http {
        return serve_http_open(shared, request, accept);
    }
    let mut tried = request.exclude.clone();
    loop {
        let picked = shared.registry().pick_where(&request.address, &tried, |l| l.can_take(&request.contract));
        let Some((id, listener)) = picked else { break };
        tried.push(id);
        let told = match &listener {
            ListenerHandle::Quic(quic) => {
                let channel = Incoming {
                    address: request.address.clone(),
                    channel_id: request.channel_id,
                    contract: request.contract.clone(),
                };
                let dial = Control::Dial { url: request.url.clone(), secret: request.secret.clone(), channel };
                quic.control.try_send(dial).is_ok().then_some(ListenerKind::Quic)
            }
            ListenerHandle::Hc(hc) => accept
                .is_some_and(|accept| hc.notify.try_send(ToListener::Accept(accept.clone())).is_ok())
                .then_some(ListenerKind::HybridConnection),
        };
        if let Some(kind) = told {
            tracing::debug!(address = %request.address, listener = id, channel = request.channel_id, ?kind, "told a listener to dial another node");
            return OpenReply::Notified { listener: id, kind };
        }
    }
    let (code, detail) = if shared.registry().all_full(&request.address) {
        (ErrorCode::Busy, "every listener on the node is at its channel limit")
    } else {
        (ErrorCode::NoListener, "no listener on the node can take it")
    };
    OpenReply::Refused(Refusal { code, detail: detail.into() })
}

/// Answers another node's HTTP-mode request: tells a local Hybrid Connections listener of the
/// address, if HTTP mode is on there, to open the request's rendezvous on that node.
fn serve_http_open(shared: &Shared, request: &OpenRequest, accept: Option<&Accept>) -> OpenReply {
    let refused = |code, detail: &str| OpenReply::Refused(Refusal { code, detail: detail.into() });
    let Some(accept) = accept else {
        return refused(ErrorCode::BadRequest, "an http request's rendezvous must be on the asking node");
    };
    if !shared.live().config.http_enabled(&request.address) {
        return refused(ErrorCode::NoListener, "HTTP mode is not enabled on this address on the node");
    }
    let mut tried = request.exclude.clone();
    while let Some((id, hc)) = shared.pick_hc_listener(&request.address, &mut tried) {
        let notice = RequestMessage::rendezvous_only(&accept.address, &accept.id);
        if hc.notify.try_send(ToListener::Request(notice, None)).is_ok() {
            return OpenReply::Notified { listener: id, kind: ListenerKind::HybridConnection };
        }
    }
    refused(ErrorCode::NoListener, "no listener on the node takes HTTP requests")
}

/// Publishes unless NATS is away (what would be said then is stale when it is back: deltas are
/// recovered by snapshots, heartbeats repeat).
async fn publish(peers: &Peers, subject: String, body: Vec<u8>) {
    if !peers.connected() {
        return;
    }
    match tokio::time::timeout(PUBLISH_TIMEOUT, peers.client.publish(subject, body.into())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "cannot publish to nats"),
        Err(_) => tracing::debug!("publishing to nats timed out"),
    }
}

/// A node's whole list, as of its delta `seq`.
#[derive(Debug)]
struct Snapshot {
    seq: u64,
    entries: Vec<(String, u32)>,
}

/// Fetches a node's whole list, page by page; `None` if it does not answer, or its list changed
/// between pages (the next heartbeat asks again).
async fn fetch_snapshot(client: &async_nats::Client, subject: String, timeout: Duration) -> Option<Snapshot> {
    let mut entries = Vec::new();
    let mut from = 0;
    let mut seq = None;
    for _ in 0..MAX_SNAPSHOT_PAGES {
        let request =
            async_nats::Request::new().payload(SnapshotRequest { from }.encode().into()).timeout(Some(timeout));
        let reply = tokio::time::timeout(timeout, client.send_request(subject.clone(), request)).await.ok()?.ok()?;
        let chunk = SnapshotChunk::decode(&reply.payload).ok()?;
        if *seq.get_or_insert(chunk.seq) != chunk.seq {
            return None;
        }
        entries.extend(chunk.entries);
        match chunk.next {
            Some(next) if next > from => from = next,
            Some(_) => return None,
            None => return Some(Snapshot { seq: chunk.seq, entries }),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::{ClientError, Event};

    fn io_error() -> Event {
        Event::ClientError(ClientError::Other("nats: IO error".into()))
    }

    #[test]
    fn an_unreachable_nats_is_said_once_then_the_join() {
        let mut link = LinkLog::default();
        assert_eq!(link.event(&io_error()), Said::NotReachableYet);
        for _ in 0..10 {
            assert_eq!(link.event(&io_error()), Said::StillDown);
        }
        assert_eq!(link.event(&Event::Connected), Said::Joined);
    }

    #[test]
    fn a_lost_nats_is_said_once_then_the_rejoin() {
        let mut link = LinkLog::default();
        assert_eq!(link.event(&Event::Connected), Said::Joined);
        assert_eq!(link.event(&Event::Disconnected), Said::Lost);
        for _ in 0..10 {
            assert_eq!(link.event(&io_error()), Said::StillDown);
        }
        assert_eq!(link.event(&Event::Connected), Said::Rejoined);
        assert_eq!(link.event(&Event::Disconnected), Said::Lost, "and again on the next loss");
    }

    #[test]
    fn other_events_pass_through() {
        let mut link = LinkLog::default();
        assert_eq!(link.event(&Event::Connected), Said::Joined);
        assert_eq!(link.event(&Event::SlowConsumer(1)), Said::Other);
        assert_eq!(link.event(&io_error()), Said::Other, "a client error while up is not a lost link");
        assert_eq!(link.event(&Event::Closed), Said::Other);
    }
}
