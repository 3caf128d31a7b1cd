//! A publisher's subscribers on other nodes of the cluster. Each is a listener on its own node,
//! told (over NATS) to dial a rendezvous on the publisher's node, so that its frames go from the
//! publisher's node to it directly and its queue is the publisher's node's, as for a subscriber
//! here: a slow one is cut alone. The view says which nodes have listeners on the address; each
//! such node is asked for one listener after another (excluding those it already gave) until it
//! has no more, and again whenever its count changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use relay_proto::cluster::{MAX_EXCLUDED, NodeId};
use tokio::sync::mpsc;

use crate::peers::Peers;
use crate::router::ChannelRequest;
use crate::router::remote::{self, Dialling};
use crate::state::Shared;

/// Subscribers found but not yet taken by the publisher.
pub(super) const FOUND_QUEUE: usize = 16;

/// A listener on another node told to dial here.
pub(super) struct Found {
    pub(super) node: NodeId,
    pub(super) dialling: Dialling,
}

/// What one node has given this publisher so far.
#[derive(Debug, Default)]
struct Asked {
    /// Its listener count when last asked.
    count: u32,
    /// The listeners it gave.
    given: Vec<u64>,
}

/// Finds subscribers on other nodes for the publisher on `request`'s address and hands each to
/// `found`, until the publisher stops taking them.
pub(super) async fn discover(
    shared: Arc<Shared>,
    peers: Arc<Peers>,
    request: Arc<ChannelRequest>,
    found: mpsc::Sender<Found>,
) {
    let mut changes = peers.directory_changes();
    let mut asked: HashMap<NodeId, Asked> = HashMap::new();
    loop {
        changes.mark_unchanged();
        let nodes = peers.view().listeners_by_node(&request.address);
        asked.retain(|node, _| nodes.iter().any(|(n, _)| n == node));
        for (node, count) in nodes {
            let asked = asked.entry(node).or_default();
            if asked.count == count {
                continue;
            }
            asked.count = count;
            if !ask_all(&shared, &peers, &request, node, &mut asked.given, &found).await {
                return;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Asks `node` for its listeners on the address but `given`, one at a time, until it has none
/// left; false once the publisher is gone.
async fn ask_all(
    shared: &Shared,
    peers: &Peers,
    request: &ChannelRequest,
    node: NodeId,
    given: &mut Vec<u64>,
    found: &mpsc::Sender<Found>,
) -> bool {
    while given.len() < MAX_EXCLUDED {
        let channel_id = shared.next_channel_id.fetch_add(1, Ordering::Relaxed);
        match remote::ask(shared, peers, node, request, channel_id, given.clone()).await {
            Ok(dialling) => {
                given.push(dialling.listener);
                if found.send(Found { node, dialling }).await.is_err() {
                    return false;
                }
            }
            Err(failed) => {
                tracing::debug!(%node, ?failed, "no more subscribers on the node for now");
                return true;
            }
        }
    }
    tracing::warn!(%node, "a multicast publisher has seen {MAX_EXCLUDED} subscribers on one node; asking no more");
    true
}
