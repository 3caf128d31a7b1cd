//! Channels in memory: two ends joined by queues, with no relay and no socket. For testing a
//! service or a client stub, in this crate and in users' own tests.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::channel::{Channel, ChannelError};

/// Frames each direction holds before the sender waits: flow control, as a relay's would.
const QUEUE: usize = 64;

impl Channel {
    /// Two ends of one channel in memory: what one sends, the other receives, in order. Dropping
    /// an end ends the other's stream of frames ([`ChannelError::Closed`] on the caller's side).
    /// For testing a service (serve the second end, call through the first) without a relay.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use futures::{SinkExt, StreamExt};
    /// use relay_rpc::Channel;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (mut caller, mut host) = Channel::pair("calc");
    /// caller.send(Bytes::from_static(b"ping")).await.unwrap();
    /// assert_eq!(&host.next().await.unwrap().unwrap()[..], b"ping");
    /// drop(host);
    /// assert!(caller.next().await.is_none());
    /// # }
    /// ```
    pub fn pair(address: &str) -> (Channel, Channel) {
        let (caller, host, _cut) = pair(address);
        (caller, host)
    }
}

/// Cuts an in-memory channel as a relay would: both ends then fail with the errors given.
#[derive(Debug, Clone)]
pub(crate) struct Cut {
    caller: Arc<OnceLock<ChannelError>>,
    host: Arc<OnceLock<ChannelError>>,
    wake: [Arc<tokio::sync::Notify>; 2],
}

#[cfg(test)]
impl Cut {
    /// The caller's end fails with `caller`, the host's with `host` (e.g. `ListenerGone` and
    /// `CallerGone`, or `RelayShutdown` for both).
    pub(crate) fn cut(&self, caller: ChannelError, host: ChannelError) {
        let _ = self.caller.set(caller);
        let _ = self.host.set(host);
        self.wake.iter().for_each(|w| w.notify_one());
    }
}

/// An in-memory channel's two ends (caller's, host's) and what cuts it.
pub(crate) fn pair(address: &str) -> (Channel, Channel, Cut) {
    let (to_host, from_caller) = mpsc::channel(QUEUE);
    let (to_caller, from_host) = mpsc::channel(QUEUE);
    let cut = Cut {
        caller: Arc::default(),
        host: Arc::default(),
        wake: [Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new())],
    };
    let address: Arc<str> = Arc::from(address);
    let caller = MemoryEnd::new(from_host, to_host, cut.caller.clone(), cut.wake[0].clone(), ChannelError::Closed);
    let host = MemoryEnd::new(from_caller, to_caller, cut.host.clone(), cut.wake[1].clone(), ChannelError::CallerGone);
    let host = Channel::new(host, address.clone(), 1, "memory").caller_exit_is_end();
    (Channel::new(caller, address, 1, "memory"), host, cut)
}

/// One end: frames in from the other end's queue, frames out to it.
struct MemoryEnd {
    incoming: mpsc::Receiver<Bytes>,
    outgoing: PollSender<Bytes>,
    cut: Arc<OnceLock<ChannelError>>,
    /// Wakes a read waiting when the channel is cut.
    cut_wake: Pin<Box<tokio::sync::futures::OwnedNotified>>,
    /// What a send fails with once the other end is gone.
    other_gone: ChannelError,
}

impl MemoryEnd {
    fn new(
        incoming: mpsc::Receiver<Bytes>,
        outgoing: mpsc::Sender<Bytes>,
        cut: Arc<OnceLock<ChannelError>>,
        wake: Arc<tokio::sync::Notify>,
        other_gone: ChannelError,
    ) -> Self {
        Self {
            incoming,
            outgoing: PollSender::new(outgoing),
            cut,
            cut_wake: Box::pin(wake.notified_owned()),
            other_gone,
        }
    }

    fn cut(&self) -> Result<(), ChannelError> {
        self.cut.get().map_or(Ok(()), |e| Err(e.clone()))
    }
}

impl Stream for MemoryEnd {
    type Item = Result<BytesMut, ChannelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Err(e) = self.cut() {
            return Poll::Ready(Some(Err(e)));
        }
        if let Poll::Ready(frame) = self.incoming.poll_recv(cx) {
            return Poll::Ready(frame.map(|frame| Ok(BytesMut::from(&frame[..]))));
        }
        ready!(self.cut_wake.as_mut().poll(cx));
        // Only a cut wakes it, and the cut is set first.
        Poll::Ready(Some(Err(self.cut().err().unwrap_or(ChannelError::Closed))))
    }
}

impl Sink<Bytes> for MemoryEnd {
    type Error = ChannelError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        self.cut()?;
        let other_gone = self.other_gone.clone();
        Poll::Ready(ready!(self.outgoing.poll_reserve(cx)).map_err(|_| other_gone))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Bytes) -> Result<(), ChannelError> {
        self.cut()?;
        let other_gone = self.other_gone.clone();
        self.outgoing.send_item(frame).map_err(|_| other_gone)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        Poll::Ready(self.cut())
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        self.outgoing.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use futures::{SinkExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn frames_cross_in_order_and_a_cut_fails_both_ends_with_its_errors() {
        let (mut caller, mut host, cut) = pair("calc");
        for n in 0..10u8 {
            caller.send(Bytes::from(vec![n])).await.unwrap();
        }
        for n in 0..10u8 {
            assert_eq!(&host.next().await.unwrap().unwrap()[..], [n]);
        }
        let waiting = tokio::spawn(async move { caller.next().await });
        tokio::task::yield_now().await;
        cut.cut(ChannelError::ListenerGone, ChannelError::CallerGone);
        assert!(matches!(waiting.await.unwrap(), Some(Err(ChannelError::ListenerGone))));
        assert!(host.next().await.is_none(), "a host's channel ends quietly when its caller goes");
    }

    #[tokio::test]
    async fn a_dropped_end_closes_the_other() {
        let (mut caller, host, _cut) = pair("calc");
        drop(host);
        assert!(caller.next().await.is_none());
        assert!(matches!(caller.send(Bytes::new()).await, Err(ChannelError::Closed)));
    }
}
