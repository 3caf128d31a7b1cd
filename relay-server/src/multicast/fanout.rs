//! One publisher's subscribers: a bounded queue per subscriber, a frame copied into every queue
//! without waiting, and a subscriber whose queue is full cut alone. Sans-IO: the writers that
//! empty the queues are the publisher's tasks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use relay_proto::cluster::NodeId;
use tokio::sync::{mpsc, oneshot};

use crate::channel::Frame;
use crate::registry::ListenerId;
use crate::state::Shared;

/// A subscriber: a listener on this node, or one on another node of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum SubscriberId {
    Local(ListenerId),
    Remote { node: NodeId, listener: u64 },
}

/// A frame in a subscriber's queue, counted in the queue's and the relay's byte totals while it
/// waits (the counts drop with the frame, whether it was sent or the queue was dropped).
pub(super) struct Queued {
    pub(super) frame: Frame,
    _charge: Charge,
}

struct Charge {
    len: usize,
    queue: Arc<AtomicUsize>,
    relay: Arc<AtomicUsize>,
}

impl Charge {
    fn new(len: usize, queue: &Arc<AtomicUsize>, relay: &Arc<AtomicUsize>) -> Self {
        queue.fetch_add(len, Ordering::Relaxed);
        relay.fetch_add(len, Ordering::Relaxed);
        Self { len, queue: queue.clone(), relay: relay.clone() }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.queue.fetch_sub(self.len, Ordering::Relaxed);
        self.relay.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// The publisher's side of one subscriber.
struct Subscriber {
    queue: mpsc::Sender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
    /// Fired when the queue overflows: the writer cuts the channel.
    overflowed: Option<oneshot::Sender<()>>,
}

/// What happened to a subscriber's queue on one frame.
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    Queued,
    Overflowed,
    /// The subscriber's writer has ended.
    Gone,
}

/// The subscribers of one publisher, and the listeners it has already seen.
pub(super) struct Fanout {
    subscribers: HashMap<SubscriberId, Subscriber>,
    seen: HashSet<SubscriberId>,
    max_frames: usize,
    max_bytes: usize,
    relay_bytes: Arc<AtomicUsize>,
}

impl Fanout {
    pub(super) fn new(shared: &Shared) -> Self {
        Self {
            subscribers: HashMap::new(),
            seen: HashSet::new(),
            max_frames: shared.live().config.multicast_queue_frames,
            max_bytes: shared.live().config.multicast_queue_bytes,
            relay_bytes: shared.multicast.queued_bytes.clone(),
        }
    }

    /// Adds a subscriber for `id` unless this publisher has seen it; returns its queue's
    /// receiving end and overflow signal.
    pub(super) fn add(&mut self, id: SubscriberId) -> Option<(mpsc::Receiver<Queued>, oneshot::Receiver<()>)> {
        if !self.seen.insert(id) {
            return None;
        }
        let (queue, receiver) = mpsc::channel(self.max_frames);
        let (overflowed, overflow) = oneshot::channel();
        let subscriber = Subscriber { queue, queued_bytes: Arc::default(), overflowed: Some(overflowed) };
        self.subscribers.insert(id, subscriber);
        Some((receiver, overflow))
    }

    /// Forgets local listeners no longer registered here (ids are never reused). Subscribers on
    /// other nodes are remembered for as long as the publisher lasts (their discovery excludes
    /// them from then on, within a bound).
    pub(super) fn retain_seen(&mut self, registered: &HashSet<ListenerId>) {
        self.seen.retain(|id| match id {
            SubscriberId::Local(listener) => registered.contains(listener) || self.subscribers.contains_key(id),
            SubscriberId::Remote { .. } => true,
        });
    }

    /// How many subscribers are being written to.
    pub(super) fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Queues `frame` for every subscriber without waiting; returns how many overflowed (and
    /// were cut).
    pub(super) fn publish(&mut self, frame: &Frame) -> u64 {
        let mut overflows = 0;
        self.subscribers.retain(|id, subscriber| {
            let offer = offer(subscriber, frame, self.max_bytes, &self.relay_bytes);
            match offer {
                Offer::Queued => true,
                Offer::Gone => false,
                Offer::Overflowed => {
                    tracing::debug!(subscriber = ?id, "multicast subscriber overflowed; cutting it");
                    if let Some(signal) = subscriber.overflowed.take() {
                        let _ = signal.send(());
                    }
                    overflows += 1;
                    false
                }
            }
        });
        overflows
    }
}

fn offer(subscriber: &Subscriber, frame: &Frame, max_bytes: usize, relay: &Arc<AtomicUsize>) -> Offer {
    let len = frame.len();
    let waiting = subscriber.queued_bytes.load(Ordering::Relaxed);
    if waiting > 0 && waiting.saturating_add(len) > max_bytes {
        return Offer::Overflowed;
    }
    let queued = Queued { frame: frame.clone(), _charge: Charge::new(len, &subscriber.queued_bytes, relay) };
    match subscriber.queue.try_send(queued) {
        Ok(()) => Offer::Queued,
        Err(mpsc::error::TrySendError::Full(_)) => Offer::Overflowed,
        Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn fanout(max_frames: usize, max_bytes: usize) -> Fanout {
        let relay_bytes = Arc::default();
        Fanout { subscribers: HashMap::new(), seen: HashSet::new(), max_frames, max_bytes, relay_bytes }
    }

    fn frame(len: usize) -> Frame {
        Frame::Binary(Bytes::from(vec![0; len]))
    }

    #[test]
    fn every_subscriber_gets_every_frame_in_order_and_a_full_queue_is_cut_alone() {
        let mut fanout = fanout(2, 1024);
        let (mut fast, _) = fanout.add(SubscriberId::Local(1)).unwrap();
        let remote = SubscriberId::Remote { node: NodeId([1; 16]), listener: 1 };
        let (_slow, mut slow_cut) = fanout.add(remote).unwrap();
        assert!(fanout.add(SubscriberId::Local(1)).is_none(), "a listener is subscribed once");
        for len in [1, 2] {
            assert_eq!(fanout.publish(&frame(len)), 0);
        }
        assert_eq!(fanout.relay_bytes.load(Ordering::Relaxed), 6);
        let lens: Vec<usize> = (0..2).map(|_| fast.try_recv().unwrap().frame.len()).collect();
        assert_eq!(lens, [1, 2]);
        // The slow one has two frames waiting: the third overflows it; the fast one carries on.
        assert_eq!(fanout.publish(&frame(3)), 1);
        assert_eq!(slow_cut.try_recv(), Ok(()));
        assert_eq!(fast.try_recv().unwrap().frame.len(), 3);
        assert_eq!(fanout.publish(&frame(4)), 0, "counted once");
        assert_eq!(fanout.subscribers.len(), 1);
        drop(_slow);
        assert_eq!(fanout.relay_bytes.load(Ordering::Relaxed), 4, "a dropped queue gives its bytes back");
    }

    #[test]
    fn the_byte_budget_bounds_a_queue_but_admits_one_large_frame() {
        let mut fanout = fanout(100, 10);
        let (_queue, mut cut) = fanout.add(SubscriberId::Local(1)).unwrap();
        assert_eq!(fanout.publish(&frame(50)), 0, "an empty queue takes any frame");
        assert_eq!(fanout.publish(&frame(1)), 1);
        assert_eq!(cut.try_recv(), Ok(()));
    }

    #[test]
    fn a_gone_subscriber_is_dropped_and_forgotten_once_unregistered() {
        let mut fanout = fanout(4, 1024);
        let (queue, _) = fanout.add(SubscriberId::Local(7)).unwrap();
        drop(queue);
        let remote = SubscriberId::Remote { node: NodeId([1; 16]), listener: 7 };
        drop(fanout.add(remote).unwrap());
        assert_eq!(fanout.publish(&frame(1)), 0);
        assert!(fanout.subscribers.is_empty());
        assert!(fanout.add(SubscriberId::Local(7)).is_none(), "not re-opened while registered");
        fanout.retain_seen(&HashSet::new());
        assert_eq!(fanout.seen, HashSet::from([remote]), "a remote one is remembered");
        assert!(fanout.add(remote).is_none());
    }
}
