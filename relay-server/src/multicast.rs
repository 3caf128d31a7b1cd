//! Multicast addresses (WCF's `NetEventRelayBinding`): every frame a caller (the publisher) sends
//! reaches every listener (subscriber) on the address, not one of them.
//!
//! The publisher's channel is accepted at once, subscribers or not. The relay opens one channel
//! to each listener registered when the publisher arrives or later (a listener that registers
//! later gets the frames from then on), through the router's per-listener open, so subscribers
//! are ordinary hosts on either transport. Each frame (one length-prefixed QUIC frame, bounded by
//! `max_frame_bytes`, or one WebSocket message) is copied into each subscriber's own bounded queue
//! and written out by that subscriber's writer, so each subscriber sees one publisher's frames in
//! the order they were sent. The relay never parses payloads. What subscribers send back is read
//! and discarded (one-way calls get no answers).
//!
//! A slow subscriber never slows the publisher or the others: queueing never waits. A subscriber
//! whose queue is full (`multicast_queue_frames`, or `multicast_queue_bytes` with a frame already
//! waiting) is cut at once with [`StreamCode::Overflowed`] (WebSocket close 1008) and counted in
//! [`Stats::multicast_overflows`](crate::Stats::multicast_overflows); this publisher does not open
//! a channel to that listener again. A subscriber that refuses the channel (its contract does not
//! match) or goes away is likewise dropped for this publisher. So the relay holds at most the
//! queue bounds per subscriber per publisher.
//!
//! When the publisher ends, each subscriber gets what is already queued, within [`DRAIN_LIMIT`],
//! and then the end of its channel. Each subscriber's writer is a task of its own (so one never
//! waits for another), owned by the publisher's task, which stops them when it ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use relay_proto::StreamCode;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::channel::{End, Frame, Next, Side, Sink, Source, finish, halves};
use crate::listeners::ListenerHandle;
use crate::phase::Phase;
use crate::registry::ListenerId;
use crate::router::{ChannelRequest, open_listener};
use crate::state::{ChannelGuard, OpenGuard, Shared};

/// How long subscribers may take to receive what is queued for them after the publisher ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long a subscriber may take to finish its end after the relay finished its own.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A frame in a subscriber's queue, counted in the queue's and the relay's byte totals while it
/// waits (the counts drop with the frame, whether it was sent or the queue was dropped).
struct Queued {
    frame: Frame,
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
struct Fanout {
    subscribers: HashMap<ListenerId, Subscriber>,
    seen: HashSet<ListenerId>,
    max_frames: usize,
    max_bytes: usize,
    relay_bytes: Arc<AtomicUsize>,
}

impl Fanout {
    fn new(shared: &Shared) -> Self {
        Self {
            subscribers: HashMap::new(),
            seen: HashSet::new(),
            max_frames: shared.config.multicast_queue_frames,
            max_bytes: shared.config.multicast_queue_bytes,
            relay_bytes: shared.multicast.queued_bytes.clone(),
        }
    }

    /// Adds a subscriber for `id` unless this publisher has seen it; returns its queue's
    /// receiving end and overflow signal.
    fn add(&mut self, id: ListenerId) -> Option<(mpsc::Receiver<Queued>, oneshot::Receiver<()>)> {
        if !self.seen.insert(id) {
            return None;
        }
        let (queue, receiver) = mpsc::channel(self.max_frames);
        let (overflowed, overflow) = oneshot::channel();
        let subscriber = Subscriber { queue, queued_bytes: Arc::default(), overflowed: Some(overflowed) };
        self.subscribers.insert(id, subscriber);
        Some((receiver, overflow))
    }

    /// Forgets listeners no longer registered (ids are never reused).
    fn retain_seen(&mut self, registered: &HashSet<ListenerId>) {
        self.seen.retain(|id| registered.contains(id) || self.subscribers.contains_key(id));
    }

    /// Queues `frame` for every subscriber without waiting; returns how many overflowed (and
    /// were cut).
    fn publish(&mut self, frame: &Frame) -> u64 {
        let mut overflows = 0;
        self.subscribers.retain(|id, subscriber| {
            let offer = offer(subscriber, frame, self.max_bytes, &self.relay_bytes);
            match offer {
                Offer::Queued => true,
                Offer::Gone => false,
                Offer::Overflowed => {
                    tracing::debug!(listener = id, "multicast subscriber overflowed; cutting it");
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

/// How the publisher's channel ended.
enum Ending {
    Clean,
    Failed,
    Shutdown,
}

/// Serves a publisher's channel (already accepted) on a multicast address until it ends.
pub(crate) async fn publish(shared: &Arc<Shared>, request: &ChannelRequest, publisher: End) {
    let span = tracing::debug_span!("multicast", address = %request.address);
    // Boxed: a publisher's future is large, and every channel task that might become one
    // would otherwise carry its size.
    Box::pin(run(shared, Arc::new(request.clone()), publisher).instrument(span)).await
}

async fn run(shared: &Arc<Shared>, request: Arc<ChannelRequest>, publisher: End) {
    let _open = OpenGuard::new(shared);
    let (mut source, mut sink) = halves(publisher, shared.config.max_frame_bytes, &shared.budget);
    let mut fanout = Fanout::new(shared);
    let mut writers = JoinSet::new();
    let mut registrations = shared.registrations();
    add_subscribers(shared, &request, &mut fanout, &mut writers);
    let mut frames = 0u64;
    let ending = loop {
        tokio::select! {
            // New listeners first, so a frame sent after a registration finished reaches it.
            biased;
            Ok(()) = registrations.changed() => add_subscribers(shared, &request, &mut fanout, &mut writers),
            next = source.next() => match next {
                Next::Frame(frame) => {
                    frames += 1;
                    let overflows = fanout.publish(&frame);
                    // Queued frames count against the multicast queue bounds from here.
                    source.written_on();
                    shared.multicast.overflows.fetch_add(overflows, Ordering::Relaxed);
                }
                Next::Close(_) => break Ending::Clean,
                Next::Failed(_) => break Ending::Failed,
            },
            Some(_) = writers.join_next(), if !writers.is_empty() => {}
            () = shared.reached(Phase::Closing) => break Ending::Shutdown,
        }
    };
    tracing::debug!(frames, subscribers = fanout.subscribers.len(), "publisher ended");
    // Closing the queues lets each writer send what is left, then end its channel.
    drop(fanout);
    let code = match ending {
        Ending::Clean => {
            sink.close(None, Side::Host).await;
            StreamCode::Done
        }
        Ending::Failed => StreamCode::CallerGone,
        Ending::Shutdown => {
            sink.cut(StreamCode::RelayShutdown, "relay shutting down").await;
            StreamCode::RelayShutdown
        }
    };
    finish(source, sink, code).await;
    let drained = async { while writers.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_LIMIT, drained).await.is_err() {
        tracing::debug!(left = writers.len(), "subscribers did not drain in time; dropping them");
    }
}

/// Adds a writer for each listener of the address this publisher has not seen yet.
fn add_subscribers(
    shared: &Arc<Shared>,
    request: &Arc<ChannelRequest>,
    fanout: &mut Fanout,
    writers: &mut JoinSet<()>,
) {
    if shared.draining() {
        return;
    }
    let listeners = shared.registry().all(&request.address);
    fanout.retain_seen(&listeners.iter().map(|(id, _)| *id).collect());
    for (id, handle) in listeners {
        if let Some((queue, overflow)) = fanout.add(id) {
            let span = tracing::debug_span!("subscriber", listener = id);
            let (shared, request) = (shared.clone(), request.clone());
            writers.spawn(async move { write(&shared, &request, id, handle, queue, overflow).await }.instrument(span));
        }
    }
}

/// How a subscriber's channel ended.
enum Outcome {
    /// The publisher ended and everything queued was sent.
    Drained,
    /// The subscriber went away.
    Gone,
    Overflowed,
    Shutdown,
}

/// Opens a channel to one subscriber and writes its queue to it until the publisher ends, the
/// subscriber goes away or overflows, or the relay closes.
async fn write(
    shared: &Shared,
    request: &ChannelRequest,
    id: ListenerId,
    handle: ListenerHandle,
    mut queue: mpsc::Receiver<Queued>,
    mut overflow: oneshot::Receiver<()>,
) {
    // A subscriber at its channel limit (`max_channels_per_listener`) gets no channel from this
    // publisher, as a unicast caller would be passed to another listener.
    let Some(_guard) = ChannelGuard::reserve(shared, &request.address, id) else {
        return tracing::debug!("subscriber at its channel limit; skipped");
    };
    // Frames queue up while the channel opens; an overflow meanwhile abandons it. The overflow
    // signal's sender is dropped without firing when the publisher ends; it is not polled again.
    let mut overflow_armed = true;
    let opened = {
        let mut open = std::pin::pin!(open_listener(shared, id, &handle, request));
        loop {
            tokio::select! {
                opened = &mut open => break opened,
                signal = &mut overflow, if overflow_armed => match signal {
                    Ok(()) => return tracing::debug!("overflowed before its channel opened"),
                    Err(_) => overflow_armed = false,
                },
            }
        }
    };
    let opened = match opened {
        Ok(opened) => opened,
        Err(refusal) => return tracing::debug!(code = ?refusal.code, detail = %refusal.detail, "subscriber refused"),
    };
    tracing::debug!("subscribed");
    let (mut source, mut sink) = halves(opened.end, shared.config.max_frame_bytes, &shared.budget);
    let outcome = {
        let mut forward = std::pin::pin!(forward(&mut queue, &mut sink));
        let mut discard = std::pin::pin!(discard(&mut source));
        loop {
            tokio::select! {
                sent = &mut forward => break if sent { Outcome::Drained } else { Outcome::Gone },
                () = &mut discard => break Outcome::Gone,
                signal = &mut overflow, if overflow_armed => match signal {
                    Ok(()) => break Outcome::Overflowed,
                    // The publisher ended: drain.
                    Err(_) => overflow_armed = false,
                },
                () = shared.reached(Phase::Closing) => break Outcome::Shutdown,
            }
        }
    };
    // Frames still queued are dropped with the queue.
    drop(queue);
    let code = match outcome {
        Outcome::Drained => {
            sink.close(None, Side::Caller).await;
            // A QUIC subscriber may still finish its side; a WebSocket one answers the close.
            if matches!(source, Source::Quic(..)) {
                let _ = tokio::time::timeout(CLOSE_GRACE, discard(&mut source)).await;
            }
            StreamCode::Done
        }
        Outcome::Gone => {
            sink.cut(StreamCode::CallerGone, "the publisher went away").await;
            StreamCode::CallerGone
        }
        Outcome::Overflowed => {
            tracing::info!(address = %request.address, "multicast subscriber too slow; cut");
            sink.cut(StreamCode::Overflowed, "subscriber too slow: multicast queue overflowed").await;
            StreamCode::Overflowed
        }
        Outcome::Shutdown => {
            sink.cut(StreamCode::RelayShutdown, "relay shutting down").await;
            StreamCode::RelayShutdown
        }
    };
    finish(source, sink, code).await;
}

/// Sends queued frames until the queue closes and is empty (true) or a send fails (false).
async fn forward(queue: &mut mpsc::Receiver<Queued>, sink: &mut Sink) -> bool {
    while let Some(queued) = queue.recv().await {
        if sink.send(queued.frame).await.is_err() {
            return false;
        }
    }
    true
}

/// Reads and drops what a subscriber sends, until it ends its side or fails.
async fn discard(source: &mut Source) {
    while let Next::Frame(_) = source.next().await {
        source.written_on();
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
        let (mut fast, _) = fanout.add(1).unwrap();
        let (_slow, mut slow_cut) = fanout.add(2).unwrap();
        assert!(fanout.add(1).is_none(), "a listener is subscribed once");
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
        let (_queue, mut cut) = fanout.add(1).unwrap();
        assert_eq!(fanout.publish(&frame(50)), 0, "an empty queue takes any frame");
        assert_eq!(fanout.publish(&frame(1)), 1);
        assert_eq!(cut.try_recv(), Ok(()));
    }

    #[test]
    fn a_gone_subscriber_is_dropped_and_forgotten_once_unregistered() {
        let mut fanout = fanout(4, 1024);
        let (queue, _) = fanout.add(7).unwrap();
        drop(queue);
        assert_eq!(fanout.publish(&frame(1)), 0);
        assert!(fanout.subscribers.is_empty());
        assert!(fanout.add(7).is_none(), "not re-opened while registered");
        fanout.retain_seen(&HashSet::new());
        assert!(fanout.seen.is_empty());
    }
}
