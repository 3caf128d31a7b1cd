//! Live counters of a running relay, for monitoring and tests.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::state::Shared;

/// A handle on a relay's counters; cheap to clone, valid after the relay stops.
#[derive(Debug, Clone)]
pub struct Stats {
    shared: Arc<Shared>,
}

impl Stats {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Channels open now (each multicast publisher and each of its subscribers count as one).
    pub fn open_channels(&self) -> usize {
        self.shared.open_channels.load(Ordering::SeqCst)
    }

    /// QUIC connections without an authorized hello yet, and WebSocket connections whose request
    /// head is not read yet.
    pub fn pending_handshakes(&self) -> usize {
        self.shared.quic_handshakes.taken() + self.shared.ws_handshakes.taken()
    }

    /// Connections open now: QUIC connections and TCP connections (WebSocket or not yet).
    pub fn open_connections(&self) -> usize {
        self.shared.connections.taken()
    }

    /// QUIC Retry packets sent so far, asking new clients to prove their address while many
    /// handshakes were in progress.
    pub fn quic_retries(&self) -> u64 {
        self.shared.quic_retries.load(Ordering::Relaxed)
    }

    /// Multicast subscribers cut so far because their queue at the relay overflowed.
    pub fn multicast_overflows(&self) -> u64 {
        self.shared.multicast.overflows.load(Ordering::Relaxed)
    }

    /// Bytes of multicast frames waiting now in subscribers' queues, over all addresses.
    pub fn multicast_queued_bytes(&self) -> usize {
        self.shared.multicast.queued_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of channel traffic this relay has moved from one end of a channel to the other since
    /// it started, both directions added up.
    pub fn relayed_bytes(&self) -> u64 {
        self.shared.relayed_bytes.total()
    }

    /// Bytes of channel messages the relay holds now against `max_buffered_bytes`: read from one
    /// end, not yet written on to the other (including reservations for frames being read).
    pub fn buffered_bytes(&self) -> usize {
        self.shared.budget.held()
    }
}
