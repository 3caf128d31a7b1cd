//! What this node tells the cluster about its own listeners: a count per address, a delta per
//! change, numbered so that other nodes notice one they missed, and pages of the whole list for
//! snapshots. Sans-IO.

use std::collections::BTreeMap;

use relay_proto::cluster::{Delta, NodeId, SnapshotChunk};

/// This node's listeners per address, as last told to the cluster.
#[derive(Debug)]
pub(crate) struct LocalDirectory {
    node: NodeId,
    seq: u64,
    counts: BTreeMap<String, u32>,
}

impl LocalDirectory {
    /// Nothing registered yet on node `node`.
    pub(crate) fn new(node: NodeId) -> Self {
        Self { node, seq: 0, counts: BTreeMap::new() }
    }

    /// Records that `address` has `listeners` here now; the delta to publish, if that changed.
    pub(crate) fn set(&mut self, address: &str, listeners: usize) -> Option<Delta> {
        let listeners = u32::try_from(listeners).unwrap_or(u32::MAX);
        let before = self.counts.get(address).copied().unwrap_or(0);
        if before == listeners {
            return None;
        }
        if listeners == 0 {
            self.counts.remove(address);
        } else {
            self.counts.insert(address.to_owned(), listeners);
        }
        self.seq += 1;
        Some(Delta { node: self.node, seq: self.seq, address: address.to_owned(), listeners })
    }

    /// The sequence number of the latest delta, for heartbeats.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The page of the list starting at entry `from`, for a snapshot request.
    pub(crate) fn page(&self, from: u32) -> SnapshotChunk {
        // Entries are copied for the page; a list large enough for this to matter is paged anyway.
        let entries: Vec<(String, u32)> = self.counts.iter().map(|(a, n)| (a.clone(), *n)).collect();
        SnapshotChunk::page(self.node, self.seq, &entries, from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_per_change_numbered_in_sequence() {
        let node = NodeId([7; 16]);
        let mut local = LocalDirectory::new(node);
        assert_eq!(local.set("calc", 0), None, "nothing changed");
        assert_eq!(local.set("calc", 1), Some(Delta { node, seq: 1, address: "calc".into(), listeners: 1 }));
        assert_eq!(local.set("calc", 1), None);
        assert_eq!(local.set("eu/calc", 2).map(|d| d.seq), Some(2));
        assert_eq!(local.page(0).entries, [("calc".to_owned(), 1), ("eu/calc".to_owned(), 2)]);
        assert_eq!(local.set("calc", 0), Some(Delta { node, seq: 3, address: "calc".into(), listeners: 0 }));
        let page = local.page(0);
        assert_eq!((page.seq, page.entries, page.next), (3, vec![("eu/calc".to_owned(), 2)], None));
        assert_eq!(local.seq(), 3);
    }
}
