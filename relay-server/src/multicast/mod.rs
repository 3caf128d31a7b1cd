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
//! In a cluster, subscribers on other nodes are found through the view ([`remote`]): each is
//! told to dial a rendezvous on the publisher's node, and is from then on a subscriber like the
//! others, with its queue here, so the frames never pass through a second relay and a slow one is
//! cut where the publisher is, alone.
//!
//! When the publisher ends, each subscriber gets what is already queued, within [`DRAIN_LIMIT`],
//! and then the end of its channel. Each subscriber's writer is a task of its own (so one never
//! waits for another), owned by the publisher's task, which stops them when it ends.

mod fanout;
mod remote;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_proto::StreamCode;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::channel::{End, Next, Side, Sink, Source, finish, halves};
use crate::listeners::ListenerHandle;
use crate::phase::Phase;
use crate::registry::ListenerId;
use crate::router::remote::Dialling;
use crate::router::{ChannelRequest, open_listener};
use crate::state::{ChannelGuard, OpenGuard, Shared};
use fanout::{Fanout, Queued, SubscriberId};
use remote::Found;

/// How long subscribers may take to receive what is queued for them after the publisher ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long a subscriber may take to finish its end after the relay finished its own.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

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
    // Subscribers on other nodes are found by a task of their own (asking takes a round trip).
    let (found, mut remote_subscribers) = mpsc::channel(remote::FOUND_QUEUE);
    let mut discovery = JoinSet::new();
    if let Some(peers) = shared.peers() {
        discovery.spawn(remote::discover(shared.clone(), peers.clone(), request.clone(), found));
    }
    let mut frames = 0u64;
    let ending = loop {
        tokio::select! {
            // New listeners first, so a frame sent after a registration finished reaches it.
            biased;
            Ok(()) = registrations.changed() => add_subscribers(shared, &request, &mut fanout, &mut writers),
            Some(found) = remote_subscribers.recv() => add_remote(shared, &request, &mut fanout, &mut writers, found),
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
    tracing::debug!(frames, subscribers = fanout.len(), "publisher ended");
    // Closing the queues lets each writer send what is left, then end its channel.
    drop(discovery);
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
        if let Some((queue, overflow)) = fanout.add(SubscriberId::Local(id)) {
            let span = tracing::debug_span!("subscriber", listener = id);
            let (shared, request) = (shared.clone(), request.clone());
            let subscriber = Subscriber::Local(id, handle);
            writers.spawn(async move { write(&shared, &request, subscriber, queue, overflow).await }.instrument(span));
        }
    }
}

/// Adds a writer for a listener on another node that was told to dial here.
fn add_remote(
    shared: &Arc<Shared>,
    request: &Arc<ChannelRequest>,
    fanout: &mut Fanout,
    writers: &mut JoinSet<()>,
    found: Found,
) {
    let Found { node, dialling } = found;
    let id = SubscriberId::Remote { node, listener: dialling.listener };
    if let Some((queue, overflow)) = fanout.add(id) {
        let span = tracing::debug_span!("subscriber", %node, listener = dialling.listener);
        let (shared, request) = (shared.clone(), request.clone());
        let subscriber = Subscriber::Remote(Box::new(dialling));
        writers.spawn(async move { write(&shared, &request, subscriber, queue, overflow).await }.instrument(span));
    }
}

/// Where a subscriber's channel comes from.
enum Subscriber {
    /// A listener on this node.
    Local(ListenerId, ListenerHandle),
    /// A listener on another node, told to dial here.
    Remote(Box<Dialling>),
}

impl Subscriber {
    /// Opens the subscriber's channel: its end here, or why not.
    async fn open(self, shared: &Shared, request: &ChannelRequest) -> Result<End, String> {
        match self {
            Self::Local(id, handle) => match open_listener(shared, id, &handle, request).await {
                Ok(opened) => Ok(opened.end),
                Err(refusal) => Err(format!("{:?}: {}", refusal.code, refusal.detail)),
            },
            Self::Remote(dialling) => match dialling.connect(shared).await {
                Ok((end, _)) => Ok(end),
                Err(failed) => Err(format!("{failed:?}")),
            },
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
    subscriber: Subscriber,
    mut queue: mpsc::Receiver<Queued>,
    mut overflow: oneshot::Receiver<()>,
) {
    // A subscriber at its channel limit (`max_channels_per_listener`) gets no channel from this
    // publisher, as a unicast caller would be passed to another listener. (One on another node
    // is counted there only once channels dialled across nodes are.)
    let _guard = match &subscriber {
        Subscriber::Local(id, _) => match ChannelGuard::reserve(shared, &request.address, *id) {
            Some(guard) => Some(guard),
            None => return tracing::debug!("subscriber at its channel limit; skipped"),
        },
        Subscriber::Remote(..) => None,
    };
    // Frames queue up while the channel opens; an overflow meanwhile abandons it. The overflow
    // signal's sender is dropped without firing when the publisher ends; it is not polled again.
    let mut overflow_armed = true;
    let opened = {
        let mut open = std::pin::pin!(subscriber.open(shared, request));
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
    let end = match opened {
        Ok(end) => end,
        Err(why) => return tracing::debug!(%why, "subscriber refused"),
    };
    tracing::debug!("subscribed");
    let (mut source, mut sink) = halves(end, shared.config.max_frame_bytes, &shared.budget);
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
