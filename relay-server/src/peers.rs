//! This node's link to the other nodes of its cluster, as the router uses it: the view of who
//! listens where (and the choice it makes), and asking another node to have one of its
//! listeners dial a rendezvous here. The NATS driver (`crate::nats`) keeps the view current.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use relay_proto::cluster::{ClusterDecodeError, NodeId, OpenReply, OpenRequest, Subjects};

use crate::cluster::local::LocalDirectory;
use crate::cluster::view::{Choice, View};

/// Why another node gave no answer to an open request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenRequestError {
    /// Nothing serves that node's subject: its process is gone.
    #[error("the node is gone (no responders)")]
    NoResponders,
    /// It did not answer within `open_timeout_ms`.
    #[error("the node did not answer within {0:?}")]
    TimedOut(Duration),
    /// This node is not connected to NATS.
    #[error("not connected to the cluster")]
    Disconnected,
    /// The request could not be sent.
    #[error("cannot send the open request")]
    Request(#[source] async_nats::RequestError),
    /// The answer is not an open reply.
    #[error("the node answered garbage")]
    BadReply(#[source] ClusterDecodeError),
}

/// What the router and the NATS driver share of the cluster.
#[derive(Debug)]
pub(crate) struct Peers {
    /// This node.
    pub(crate) node: NodeId,
    pub(crate) subjects: Subjects,
    pub(crate) client: async_nats::Client,
    /// This node's public QUIC URL, where other nodes' listeners dial for its callers.
    pub(crate) quic_url: String,
    /// This node's public `wss://` URL, if it serves WebSockets.
    pub(crate) wss_url: Option<String>,
    open_timeout: Duration,
    view: Mutex<View>,
    local: Mutex<LocalDirectory>,
    /// Bumped whenever the view's directory may have changed.
    directory: tokio::sync::watch::Sender<u64>,
}

/// What a [`Peers`] is made of, besides its NATS client.
#[derive(Debug)]
pub(crate) struct PeersConfig {
    pub(crate) node: NodeId,
    pub(crate) subjects: Subjects,
    pub(crate) quic_url: String,
    pub(crate) wss_url: Option<String>,
    pub(crate) fingerprint: u64,
    pub(crate) node_timeout: Duration,
    pub(crate) open_timeout: Duration,
}

impl Peers {
    pub(crate) fn new(config: PeersConfig, client: async_nats::Client) -> Self {
        let PeersConfig { node, subjects, quic_url, wss_url, fingerprint, node_timeout, open_timeout } = config;
        Self {
            node,
            subjects,
            client,
            quic_url,
            wss_url,
            open_timeout,
            view: Mutex::new(View::new(node, fingerprint, node_timeout)),
            local: Mutex::new(LocalDirectory::new(node)),
            directory: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The view of the other nodes; held only for an update or a lookup, never across an await.
    pub(crate) fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What this node has told the cluster of its listeners; held the same way.
    pub(crate) fn local(&self) -> MutexGuard<'_, LocalDirectory> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells those watching the directory (multicast publishers) that it may have changed.
    pub(crate) fn directory_changed(&self) {
        self.directory.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever the view's directory may have changed.
    pub(crate) fn directory_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.directory.subscribe()
    }

    /// Where the next channel to `address` goes: a listener here (`local` of them), or on
    /// another node, skipping `exclude`.
    pub(crate) fn choose(&self, address: &str, local: usize, exclude: &[NodeId]) -> Choice {
        self.view().choose(address, local, exclude, Instant::now())
    }

    /// Skips `node` for a node timeout: it did not answer.
    pub(crate) fn suspect(&self, node: NodeId) {
        self.view().suspect(node, Instant::now());
    }

    /// Whether the NATS connection is up now.
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Asks `node` to have a listener dial the rendezvous in `request`, within `open_timeout_ms`.
    pub(crate) async fn request_open(
        &self,
        node: NodeId,
        request: &OpenRequest,
    ) -> Result<OpenReply, OpenRequestError> {
        if !self.connected() {
            return Err(OpenRequestError::Disconnected);
        }
        let timeout = self.open_timeout;
        let send = self.client.send_request(
            self.subjects.open(node),
            async_nats::Request::new().payload(request.encode().into()).timeout(Some(timeout)),
        );
        // The client's own timeout is the one that fires; this one bounds a client that hangs.
        let reply = match tokio::time::timeout(timeout + Duration::from_millis(100), send).await {
            Err(_) => return Err(OpenRequestError::TimedOut(timeout)),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => OpenRequestError::NoResponders,
                    async_nats::RequestErrorKind::TimedOut => OpenRequestError::TimedOut(timeout),
                    _ => OpenRequestError::Request(e),
                });
            }
            Ok(Ok(reply)) => reply,
        };
        OpenReply::decode(&reply.payload).map_err(OpenRequestError::BadReply)
    }
}
