//! One node's view of the other nodes of its cluster: who is alive, where each is reached, which
//! addresses each has listeners on; and, from that, where the next channel to an address goes.
//! Sans-IO: heartbeats, deltas, snapshots and ticks in (with the time), decisions out.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use relay_proto::cluster::{Delta, Heartbeat, NodeId};

/// What a heartbeat told the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    /// This node's own heartbeat, come back from NATS.
    Own,
    /// A node already known and in step.
    Known,
    /// A node new to the view, or one whose deltas the view missed: ask it for a snapshot.
    NeedSnapshot,
    /// A node whose keys differ from this node's: refused, and `first` the first time it is
    /// heard (to say so loudly once, not every heartbeat).
    KeyMismatch {
        /// Whether it is the first heartbeat refused from that node.
        first: bool,
    },
}

/// What a delta did to the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Applied, in sequence.
    InStep,
    /// Applied, but deltas before it were missed: ask the node for a snapshot.
    NeedSnapshot,
    /// Not applied: from this node, a refused or unknown node (its heartbeat brings a
    /// snapshot), or older than what the view has.
    Ignored,
}

/// Where the next channel to an address goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    /// To a listener on this node.
    Local,
    /// To a listener on another node.
    Remote {
        /// The node.
        node: NodeId,
    },
    /// Nowhere for now: the only listeners are on nodes that did not answer lately (suspects,
    /// skipped until the node timeout passes or they are dropped).
    Unanswering,
    /// Nowhere: no listener on any node the view may use.
    Nobody,
}

/// A node of the view that asks for a listener to dial it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DialTarget {
    /// Its public `wss://` URL, if it serves WebSockets.
    pub(crate) wss_url: Option<String>,
}

impl DialTarget {
    /// Whether a Hybrid Connections listener may be sent to `address`: a rendezvous address on
    /// this node's WebSocket endpoint.
    pub(crate) fn allows_rendezvous(&self, address: &str) -> bool {
        self.wss_url.as_deref().is_some_and(|base| {
            address.strip_prefix(base).is_some_and(|rest| rest.starts_with("/$hc/") && !rest.contains('#'))
        })
    }
}

/// A node other than this one, as its heartbeats describe it.
#[derive(Debug, Clone)]
struct Node {
    quic_url: String,
    wss_url: Option<String>,
    last_seen: Instant,
    /// The sequence number of the last delta applied (or of the snapshot).
    seq: u64,
    /// Whether a snapshot has been applied since the view last lost step with the node.
    synced: bool,
    draining: bool,
    /// Not chosen until then: it did not answer an open.
    suspect_until: Option<Instant>,
}

/// The other nodes of the cluster and their listeners.
#[derive(Debug)]
pub(crate) struct View {
    me: NodeId,
    fingerprint: u64,
    node_timeout: Duration,
    nodes: BTreeMap<NodeId, Node>,
    /// Nodes refused for their keys, with when they were last heard: forgotten like the others
    /// once silent, so that the set stays as small as the cluster.
    refused: HashMap<NodeId, Instant>,
    /// Address → node → listeners there (never 0).
    directory: HashMap<String, BTreeMap<NodeId, u32>>,
    /// Per address, how many channels were routed so far: the round-robin cursor.
    cursors: HashMap<String, usize>,
}

impl View {
    /// The view of node `me`, whose keys have `fingerprint`; a node silent for `node_timeout`
    /// leaves it.
    pub(crate) fn new(me: NodeId, fingerprint: u64, node_timeout: Duration) -> Self {
        Self {
            me,
            fingerprint,
            node_timeout,
            nodes: BTreeMap::new(),
            refused: HashMap::new(),
            directory: HashMap::new(),
            cursors: HashMap::new(),
        }
    }

    /// This node's keys changed (a reload): nodes are compared with `fingerprint` from now on.
    pub(crate) fn set_fingerprint(&mut self, fingerprint: u64) {
        self.fingerprint = fingerprint;
    }

    /// Takes in a heartbeat heard at `now`.
    pub(crate) fn heartbeat(&mut self, heartbeat: &Heartbeat, now: Instant) -> Heard {
        if heartbeat.node == self.me {
            return Heard::Own;
        }
        if heartbeat.fingerprint != self.fingerprint {
            self.forget(heartbeat.node);
            let first = self.refused.insert(heartbeat.node, now).is_none();
            return Heard::KeyMismatch { first };
        }
        match self.nodes.get_mut(&heartbeat.node) {
            None => {
                let node = Node {
                    quic_url: heartbeat.quic_url.clone(),
                    wss_url: heartbeat.wss_url.clone(),
                    last_seen: now,
                    seq: heartbeat.seq,
                    synced: false,
                    draining: heartbeat.draining,
                    suspect_until: None,
                };
                self.nodes.insert(heartbeat.node, node);
                Heard::NeedSnapshot
            }
            Some(node) => {
                node.last_seen = now;
                node.quic_url.clone_from(&heartbeat.quic_url);
                node.wss_url.clone_from(&heartbeat.wss_url);
                node.draining = heartbeat.draining;
                if node.seq != heartbeat.seq {
                    node.synced = false;
                }
                if node.synced { Heard::Known } else { Heard::NeedSnapshot }
            }
        }
    }

    /// Takes in a registration delta.
    pub(crate) fn delta(&mut self, delta: &Delta) -> Taken {
        let Some(node) = self.nodes.get_mut(&delta.node) else { return Taken::Ignored };
        if delta.seq <= node.seq {
            return Taken::Ignored;
        }
        let in_step = delta.seq == node.seq + 1;
        node.seq = delta.seq;
        if !in_step {
            node.synced = false;
        }
        self.set(delta.node, &delta.address, delta.listeners);
        if in_step && self.nodes.get(&delta.node).is_some_and(|n| n.synced) {
            Taken::InStep
        } else {
            Taken::NeedSnapshot
        }
    }

    /// Replaces what the view holds of `node` with its snapshot, made at its delta `seq`.
    pub(crate) fn snapshot(&mut self, node: NodeId, seq: u64, entries: &[(String, u32)]) {
        let Some(known) = self.nodes.get_mut(&node) else { return };
        // Deltas newer than the snapshot arrived while it was fetched: they are in the list no
        // more, so the next heartbeat asks again.
        let newer_deltas = known.seq > seq;
        known.seq = known.seq.max(seq);
        known.synced = !newer_deltas;
        self.directory.retain(|_, nodes| {
            nodes.remove(&node);
            !nodes.is_empty()
        });
        for (address, listeners) in entries {
            self.set(node, address, *listeners);
        }
    }

    /// Drops every node silent for `node_timeout` at `now`; returns them.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<NodeId> {
        let timeout = self.node_timeout;
        let silent: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| now.saturating_duration_since(node.last_seen) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in &silent {
            self.forget(*id);
        }
        self.refused.retain(|_, heard| now.saturating_duration_since(*heard) < timeout);
        silent
    }

    /// Chooses nothing on `node` for `node_timeout` from `now`: it did not answer an open.
    pub(crate) fn suspect(&mut self, node: NodeId, now: Instant) {
        if let Some(node) = self.nodes.get_mut(&node) {
            node.suspect_until = Some(now + self.node_timeout);
        }
    }

    /// Where the next channel to `address` goes, round-robin over every listener in the cluster:
    /// `local` on this node, then those of each usable node, skipping `exclude`. Draining nodes
    /// are used only when no other node or local listener is left.
    pub(crate) fn choose(&mut self, address: &str, local: usize, exclude: &[NodeId], now: Instant) -> Choice {
        let usable = |id: &NodeId, node: &Node, draining_ok: bool| {
            !exclude.contains(id)
                && node.suspect_until.is_none_or(|until| now >= until)
                && (draining_ok || !node.draining)
        };
        let remote = |draining_ok: bool| -> Vec<(NodeId, usize)> {
            self.directory.get(address).map_or_else(Vec::new, |nodes| {
                nodes
                    .iter()
                    .filter(|(id, _)| self.nodes.get(id).is_some_and(|node| usable(id, node, draining_ok)))
                    .map(|(id, n)| (*id, *n as usize))
                    .collect()
            })
        };
        let mut slots = remote(false);
        if slots.is_empty() && local == 0 {
            slots = remote(true);
        }
        let total = local + slots.iter().map(|(_, n)| n).sum::<usize>();
        if total == 0 {
            let suspects = self.directory.get(address).is_some_and(|nodes| {
                nodes.keys().any(|id| {
                    !exclude.contains(id)
                        && self.nodes.get(id).is_some_and(|n| n.suspect_until.is_some_and(|until| now < until))
                })
            });
            return if suspects { Choice::Unanswering } else { Choice::Nobody };
        }
        let cursor = self.cursors.entry(address.to_owned()).or_default();
        let mut index = *cursor % total;
        *cursor = cursor.wrapping_add(1);
        if index < local {
            return Choice::Local;
        }
        index -= local;
        for (node, listeners) in slots {
            if index < listeners {
                return Choice::Remote { node };
            }
            index -= listeners;
        }
        Choice::Nobody
    }

    /// The node in the view whose QUIC URL is `url`: only those may be sent a listener (a
    /// refused node, or anyone else who can publish on NATS, may not).
    pub(crate) fn dial_target(&self, url: &str) -> Option<DialTarget> {
        let node = self.nodes.values().find(|node| node.quic_url == url)?;
        Some(DialTarget { wss_url: node.wss_url.clone() })
    }

    /// The QUIC URL of `node`, if the view knows it.
    #[cfg(test)]
    pub(crate) fn quic_url(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.quic_url.as_str())
    }

    /// The other nodes with listeners on `address`, and how many each has, as far as the view
    /// knows.
    pub(crate) fn listeners_by_node(&self, address: &str) -> Vec<(NodeId, u32)> {
        self.directory.get(address).map_or_else(Vec::new, |nodes| nodes.iter().map(|(n, c)| (*n, *c)).collect())
    }

    /// Listeners on `address` on other nodes, as far as the view knows.
    pub(crate) fn remote_listeners(&self, address: &str) -> u32 {
        self.directory.get(address).map_or(0, |nodes| nodes.values().sum())
    }

    /// The nodes the view knows (not refused ones).
    pub(crate) fn nodes(&self) -> usize {
        self.nodes.len()
    }

    fn set(&mut self, node: NodeId, address: &str, listeners: u32) {
        if listeners == 0 {
            if let Some(nodes) = self.directory.get_mut(address) {
                nodes.remove(&node);
                if nodes.is_empty() {
                    self.directory.remove(address);
                    self.cursors.remove(address);
                }
            }
        } else {
            self.directory.entry(address.to_owned()).or_default().insert(node, listeners);
        }
    }

    fn forget(&mut self, node: NodeId) {
        self.nodes.remove(&node);
        self.directory.retain(|address, nodes| {
            nodes.remove(&node);
            let keep = !nodes.is_empty();
            if !keep {
                self.cursors.remove(address);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = NodeId([0; 16]);
    const A: NodeId = NodeId([1; 16]);
    const B: NodeId = NodeId([2; 16]);
    const FP: u64 = 42;
    const TIMEOUT: Duration = Duration::from_secs(3);

    fn heartbeat(node: NodeId, seq: u64) -> Heartbeat {
        Heartbeat {
            node,
            seq,
            quic_url: format!("quic://10.0.0.{}:7443", node.0[0]),
            wss_url: Some(format!("wss://10.0.0.{}:7443", node.0[0])),
            fingerprint: FP,
            draining: false,
            listeners: 0,
            open_channels: 0,
            relayed_bytes: 0,
        }
    }

    fn delta(node: NodeId, seq: u64, address: &str, listeners: u32) -> Delta {
        Delta { node, seq, address: address.into(), listeners }
    }

    /// A view that knows `A` (synced, at seq 0) at `now`.
    fn view_with_a(now: Instant) -> View {
        let mut view = View::new(ME, FP, TIMEOUT);
        assert_eq!(view.heartbeat(&heartbeat(A, 0), now), Heard::NeedSnapshot);
        view.snapshot(A, 0, &[]);
        assert_eq!(view.heartbeat(&heartbeat(A, 0), now), Heard::Known);
        view
    }

    #[test]
    fn a_new_node_is_asked_for_a_snapshot_and_its_own_heartbeat_is_ignored() {
        let now = Instant::now();
        let mut view = View::new(ME, FP, TIMEOUT);
        assert_eq!(view.heartbeat(&heartbeat(ME, 0), now), Heard::Own);
        assert_eq!(view.nodes(), 0);
        assert_eq!(view.heartbeat(&heartbeat(A, 5), now), Heard::NeedSnapshot);
        assert_eq!(view.heartbeat(&heartbeat(A, 5), now), Heard::NeedSnapshot, "until the snapshot comes");
        view.snapshot(A, 5, &[("calc".into(), 2)]);
        assert_eq!(view.heartbeat(&heartbeat(A, 5), now), Heard::Known);
        assert_eq!(view.remote_listeners("calc"), 2);
        assert_eq!(view.listeners_by_node("calc"), [(A, 2)]);
        assert_eq!(view.listeners_by_node("other"), []);
        assert_eq!(view.quic_url(A), Some("quic://10.0.0.1:7443"));
        let target = view.dial_target("quic://10.0.0.1:7443").expect("a node of the view");
        assert_eq!(view.dial_target("quic://10.0.0.9:7443"), None);
        assert!(target.allows_rendezvous("wss://10.0.0.1:7443/$hc/calc?sb-hc-action=accept"));
        for elsewhere in ["wss://10.0.0.1:74430/$hc/calc", "wss://evil/$hc/calc", "wss://10.0.0.1:7443/calc"] {
            assert!(!target.allows_rendezvous(elsewhere), "{elsewhere}");
        }
        assert!(!DialTarget { wss_url: None }.allows_rendezvous("wss://10.0.0.1:7443/$hc/calc"));
    }

    #[test]
    fn deltas_apply_in_sequence_and_a_gap_asks_for_a_snapshot() {
        let now = Instant::now();
        let mut view = view_with_a(now);
        assert_eq!(view.delta(&delta(A, 1, "calc", 1)), Taken::InStep);
        assert_eq!(view.delta(&delta(A, 1, "calc", 9)), Taken::Ignored, "a duplicate");
        assert_eq!(view.remote_listeners("calc"), 1);
        assert_eq!(view.delta(&delta(A, 3, "other", 1)), Taken::NeedSnapshot, "delta 2 was missed");
        assert_eq!(view.heartbeat(&heartbeat(A, 3), now), Heard::NeedSnapshot);
        view.snapshot(A, 3, &[("calc".into(), 1), ("lost".into(), 4), ("other".into(), 1)]);
        assert_eq!(view.heartbeat(&heartbeat(A, 3), now), Heard::Known);
        assert_eq!(view.remote_listeners("lost"), 4);
        assert_eq!(view.delta(&delta(A, 4, "lost", 0)), Taken::InStep);
        assert_eq!(view.remote_listeners("lost"), 0);
        // A delta from a node the view has not heard a heartbeat from waits for it.
        assert_eq!(view.delta(&delta(B, 1, "calc", 1)), Taken::Ignored);
        // A heartbeat whose seq is ahead of the view: a delta was lost on the way.
        assert_eq!(view.heartbeat(&heartbeat(A, 6), now), Heard::NeedSnapshot);
    }

    #[test]
    fn a_snapshot_older_than_the_deltas_since_is_not_trusted() {
        let now = Instant::now();
        let mut view = view_with_a(now);
        assert_eq!(view.delta(&delta(A, 1, "calc", 1)), Taken::InStep);
        assert_eq!(view.delta(&delta(A, 2, "calc", 2)), Taken::InStep);
        view.snapshot(A, 1, &[("calc".into(), 1)]);
        assert_eq!(view.heartbeat(&heartbeat(A, 2), now), Heard::NeedSnapshot);
        view.snapshot(A, 2, &[("calc".into(), 2)]);
        assert_eq!(view.heartbeat(&heartbeat(A, 2), now), Heard::Known);
    }

    #[test]
    fn a_silent_node_is_dropped_with_its_listeners() {
        let start = Instant::now();
        let mut view = view_with_a(start);
        view.heartbeat(&heartbeat(B, 0), start);
        view.snapshot(B, 0, &[("calc".into(), 1)]);
        view.delta(&delta(A, 1, "calc", 1));
        assert_eq!(view.remote_listeners("calc"), 2);
        assert!(view.tick(start + TIMEOUT / 2).is_empty());
        view.heartbeat(&heartbeat(B, 0), start + TIMEOUT / 2);
        assert_eq!(view.tick(start + TIMEOUT), vec![A]);
        assert_eq!(view.remote_listeners("calc"), 1);
        assert_eq!(view.quic_url(A), None);
        assert_eq!(view.choose("calc", 0, &[], start + TIMEOUT), Choice::Remote { node: B });
        assert_eq!(view.tick(start + TIMEOUT * 2), vec![B]);
        assert_eq!(view.choose("calc", 0, &[], start + TIMEOUT * 2), Choice::Nobody);
    }

    #[test]
    fn a_node_with_other_keys_is_refused_and_said_so_once() {
        let now = Instant::now();
        let mut view = View::new(ME, FP, TIMEOUT);
        let mut stranger = heartbeat(A, 0);
        stranger.fingerprint = FP + 1;
        assert_eq!(view.heartbeat(&stranger, now), Heard::KeyMismatch { first: true });
        assert_eq!(view.heartbeat(&stranger, now), Heard::KeyMismatch { first: false });
        assert_eq!(view.dial_target(&stranger.quic_url), None, "no listener is sent to a refused node");
        // Forgotten once silent (said again should it come back), so that strangers cannot grow
        // the view without bound.
        view.tick(now + TIMEOUT);
        assert!(view.refused.is_empty());
        assert_eq!(view.heartbeat(&stranger, now + TIMEOUT), Heard::KeyMismatch { first: true });
        assert_eq!(view.delta(&delta(A, 1, "calc", 1)), Taken::Ignored);
        view.snapshot(A, 1, &[("calc".into(), 1)]);
        assert_eq!(view.nodes(), 0);
        assert_eq!(view.choose("calc", 0, &[], now), Choice::Nobody);
        // A node that was in the view and changes keys (restarted with others) leaves it.
        let mut view = view_with_a(now);
        view.delta(&delta(A, 1, "calc", 1));
        assert_eq!(view.heartbeat(&stranger, now), Heard::KeyMismatch { first: true });
        assert_eq!(view.remote_listeners("calc"), 0);
    }

    #[test]
    fn round_robin_spans_local_and_remote_listeners() {
        let now = Instant::now();
        let mut view = view_with_a(now);
        view.heartbeat(&heartbeat(B, 0), now);
        view.snapshot(B, 0, &[("calc".into(), 2)]);
        view.delta(&delta(A, 1, "calc", 1));
        // One local, one on A, two on B: four slots, each taken in turn.
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..400 {
            let key = match view.choose("calc", 1, &[], now) {
                Choice::Local => "local".to_owned(),
                Choice::Remote { node } => node.to_string(),
                other => panic!("{other:?}"),
            };
            *counts.entry(key).or_default() += 1;
        }
        assert_eq!(counts["local"], 100);
        assert_eq!(counts[&A.to_string()], 100);
        assert_eq!(counts[&B.to_string()], 200);
        assert_eq!(view.choose("calc", 0, &[A, B], now), Choice::Nobody);
        assert_eq!(view.choose("calc", 0, &[B], now), Choice::Remote { node: A });
        assert_eq!(view.choose("other", 1, &[], now), Choice::Local);
        assert_eq!(view.choose("other", 0, &[], now), Choice::Nobody);
    }

    #[test]
    fn a_suspect_node_is_skipped_until_the_node_timeout_passes() {
        let now = Instant::now();
        let mut view = view_with_a(now);
        view.delta(&delta(A, 1, "calc", 1));
        view.suspect(A, now);
        assert_eq!(view.choose("calc", 0, &[], now + TIMEOUT / 2), Choice::Unanswering);
        assert_eq!(view.choose("calc", 1, &[], now + TIMEOUT / 2), Choice::Local);
        assert_eq!(view.choose("calc", 0, &[A], now + TIMEOUT / 2), Choice::Nobody, "excluded, not suspected");
        view.heartbeat(&heartbeat(A, 1), now + TIMEOUT / 2);
        assert_eq!(view.choose("calc", 0, &[], now + TIMEOUT), Choice::Remote { node: A });
    }

    #[test]
    fn a_draining_node_is_the_last_resort() {
        let now = Instant::now();
        let mut view = view_with_a(now);
        view.heartbeat(&heartbeat(B, 0), now);
        view.snapshot(B, 0, &[("calc".into(), 1)]);
        view.delta(&delta(A, 1, "calc", 1));
        let mut draining = heartbeat(A, 1);
        draining.draining = true;
        view.heartbeat(&draining, now);
        for _ in 0..4 {
            assert_eq!(view.choose("calc", 0, &[], now), Choice::Remote { node: B });
        }
        assert_eq!(view.choose("calc", 1, &[B], now), Choice::Local);
        assert_eq!(view.choose("calc", 0, &[B], now), Choice::Remote { node: A });
    }
}
