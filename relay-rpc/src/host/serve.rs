//! Serving a contract on a listener: one tarpc server per accepted channel.
//!
//! Two-way requests go through tarpc: each runs in a task of its own, concurrently, and is
//! cancelled at its deadline or when the caller drops it. One-way requests (request ids with
//! `contract::ONEWAY_ID_BIT` set) never reach tarpc, so nothing answers them: [`OnewaySplit`]
//! takes them off the channel into a bounded queue, and one task per channel runs them one after
//! another, in the order they arrived, each to completion.
//!
//! Order across kinds: a two-way request that arrives while earlier one-way requests are still
//! queued or running waits until they have finished, so a caller that awaits each call sees its
//! calls take effect in the order it made them. With no one-way request outstanding, two-way
//! requests start at once, as before.
//!
//! Bounds: while the queue is full (or a two-way request waits), the host reads no more from the
//! channel, so a caller that sends faster than the host runs its requests is slowed down by the
//! channel's flow control, not buffered without bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use futures::{Sink, Stream, StreamExt};
use tarpc::server::{BaseChannel, Channel as _};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::PollSender;
use tracing::Instrument;

use super::listener::Listener;
use crate::channel::Channel;
use crate::contract::{Dispatch, ONEWAY_ID_BIT, TarpcServe, Typed, check_compatible, typed};
use crate::error::ListenError;
use relay_proto::ErrorCode;
use relay_proto::error::chain;

/// How many one-way requests a channel may have waiting for their handler.
const ONEWAY_QUEUE: usize = 64;

type Framed<Req, Resp> = Typed<tarpc::ClientMessage<Req>, tarpc::Response<Resp>>;

impl Listener {
    /// Serves `dispatcher` (a generated `ServeFoo`) on every channel callers open, and answers
    /// HTTP requests (on a listener from [`Host::listen_http`](crate::Host::listen_http)) as JSON
    /// calls of the same contract, until the registration or the connection ends. Channels whose contract does not match are refused
    /// with [`ErrorCode::ContractMismatch`]. When the relay drains ([`ListenError::GoAway`]),
    /// the channels already open run until they finish before this returns; otherwise returning
    /// ends every channel still open.
    ///
    /// ```no_run
    /// # use relay_rpc::{Host, ListenError};
    /// # async fn run<D: relay_rpc::contract::Dispatch>(host: Host, dispatcher: D) -> Result<(), ListenError> {
    /// host.listen("calc").await?.serve(dispatcher).await
    /// # }
    /// ```
    pub async fn serve<D: Dispatch>(self, dispatcher: D) -> Result<(), ListenError> {
        let (ended, open) = self.serve_until(dispatcher, std::future::pending()).await;
        let ended = ended.unwrap_or(ListenError::Closed);
        if matches!(ended, ListenError::GoAway) {
            open.finish().await;
        }
        Err(ended)
    }

    /// Serves until the registration ends (its error) or `stop` resolves (`None`), and hands
    /// back the channels still open, to finish or to drop.
    pub(crate) async fn serve_until<D: Dispatch>(
        mut self,
        dispatcher: D,
        stop: impl Future<Output = ()>,
    ) -> (Option<ListenError>, OpenChannels) {
        let mut channels = JoinSet::new();
        let mut stop = std::pin::pin!(stop);
        let ended = loop {
            tokio::select! {
                incoming = self.accept() => {
                    let incoming = match incoming {
                        Ok(incoming) => incoming,
                        Err(e) => break Some(e),
                    };
                    if relay_proto::http_channel::is_http(incoming.contract()) {
                        channels.spawn(super::json_calls::answer_http(incoming, dispatcher.clone()));
                        continue;
                    }
                    // The span the channel's lines go in, from before it is accepted or refused.
                    let span = incoming.span();
                    if let Err(detail) = check_compatible(D::CONTRACT, incoming.contract()) {
                        span.in_scope(|| tracing::debug!(%detail, "refusing channel"));
                        channels.spawn(async move { let _ = incoming.reject(ErrorCode::ContractMismatch, &detail).await; }.instrument(span));
                        continue;
                    }
                    let dispatcher = dispatcher.clone();
                    channels.spawn(async move {
                        match incoming.accept().await {
                            Ok(channel) => run_channel(channel, dispatcher).await,
                            Err(e) => tracing::debug!(error = %chain(&e), "channel lost before it opened"),
                        }
                    }.instrument(span));
                }
                Some(_) = channels.join_next(), if !channels.is_empty() => {}
                () = &mut stop => break None,
            }
        };
        (ended, OpenChannels { channels, _host: self.host.clone() })
    }
}

/// The channels of a listener that stopped taking new ones, with its host connection, which
/// they need: dropping this ends them.
#[derive(Debug)]
pub(crate) struct OpenChannels {
    channels: JoinSet<()>,
    _host: std::sync::Arc<super::link::HostLink>,
}

impl OpenChannels {
    /// Waits until every channel has ended.
    pub(crate) async fn finish(mut self) {
        while self.channels.join_next().await.is_some() {}
    }
}

/// [`run_channel`] in the channel's span, for tests that serve a channel without a listener.
#[cfg(test)]
pub(crate) async fn serve_channel<D: Dispatch>(channel: Channel, dispatcher: D) {
    let span = channel.span();
    run_channel(channel, dispatcher).instrument(span).await;
}

/// Runs one channel (in its span, which the serve loop enters from before the channel is
/// accepted): decodes requests, runs each two-way request in its own task and the one-way
/// requests in order, writes responses. When the channel ends, two-way handlers still running
/// are aborted (nobody can receive their answer) and the one-way requests already received run.
async fn run_channel<D: Dispatch>(channel: Channel, dispatcher: D) {
    let (queue_tx, queue_rx) = mpsc::channel(ONEWAY_QUEUE);
    let finished = Arc::new(AtomicU64::new(0));
    let framed: Framed<D::Request, D::Response> = typed(channel.caller_exit_is_end());
    let transport = OnewaySplit::new(Box::pin(framed), queue_tx, finished.clone());
    let mut requests = Box::pin(BaseChannel::with_defaults(transport).execute(TarpcServe(dispatcher.clone())));
    let mut oneway = std::pin::pin!(run_oneway(queue_rx, dispatcher, finished));
    let mut oneway_done = false;
    let mut handlers = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.next() => match request {
                Some(handler) => { handlers.spawn(handler); }
                None => break,
            },
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
            // Runs the one-way handlers; ends only once the queue's sender, inside `requests`, is gone.
            () = &mut oneway, if !oneway_done => oneway_done = true,
        }
    }
    // Closes the one-way queue; the requests already in it still run.
    drop(requests);
    if !oneway_done {
        oneway.await;
    }
    tracing::trace!("channel ended");
}

/// What the one-way runner of a channel is given to do, in order.
enum Work<Req> {
    /// Run a one-way request.
    Run(Req),
    /// Signal once every earlier one-way request has finished.
    Barrier(oneshot::Sender<()>),
}

/// Runs a channel's one-way requests one after another until the channel ends and the queue is
/// empty, counting those finished in `finished`. Each runs in a task of its own, so a panicking
/// handler loses only its own request.
async fn run_oneway<D: Dispatch>(mut queue: mpsc::Receiver<Work<D::Request>>, dispatcher: D, finished: Arc<AtomicU64>) {
    let mut running = JoinSet::new();
    while let Some(work) = queue.recv().await {
        let request = match work {
            Work::Run(request) => request,
            Work::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        };
        running.spawn(dispatcher.dispatch(request));
        match running.join_next().await {
            Some(Ok(Ok(_response))) => {}
            Some(Ok(Err(e))) => {
                tracing::debug!(contract = D::CONTRACT.name, error = %e, "dropping a one-way request this host cannot run")
            }
            Some(Err(e)) => tracing::warn!(error = %e, "a one-way handler failed"),
            None => {}
        }
        finished.fetch_add(1, Ordering::Release);
    }
}

/// The transport under a channel's tarpc server: `inner`, except that one-way requests are taken
/// off the stream into the runner's `queue`, and a two-way request is held back while one-way
/// requests that came before it have not finished.
struct OnewaySplit<T, Req> {
    inner: Pin<Box<T>>,
    queue: PollSender<Work<Req>>,
    /// Work waiting for room in `queue`.
    held: Option<Work<Req>>,
    /// A two-way request waiting for the one-way requests before it, and the barrier's signal.
    waiting: Option<(tarpc::ClientMessage<Req>, oneshot::Receiver<()>)>,
    /// How many one-way requests have been queued, and how many of them the runner has finished.
    queued: u64,
    finished: Arc<AtomicU64>,
}

// `inner` is boxed and nothing else is pinned structurally, so moving an `OnewaySplit` is fine.
impl<T, Req> Unpin for OnewaySplit<T, Req> {}

impl<T, Req: Send + 'static> OnewaySplit<T, Req> {
    fn new(inner: Pin<Box<T>>, queue: mpsc::Sender<Work<Req>>, finished: Arc<AtomicU64>) -> Self {
        Self { inner, queue: PollSender::new(queue), held: None, waiting: None, queued: 0, finished }
    }
}

impl<T, Req, E> Stream for OnewaySplit<T, Req>
where
    T: Stream<Item = Result<tarpc::ClientMessage<Req>, E>>,
    Req: Send + 'static,
{
    type Item = Result<tarpc::ClientMessage<Req>, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(work) = this.held.take() {
                match this.queue.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {
                        let _ = this.queue.send_item(work);
                    }
                    // The runner is gone, so is the channel: drop the work (a barrier's
                    // receiver then sees its sender dropped, which releases the waiting request).
                    Poll::Ready(Err(_)) => {}
                    Poll::Pending => {
                        this.held = Some(work);
                        return Poll::Pending;
                    }
                }
            }
            if let Some((_, barrier)) = &mut this.waiting {
                // Passed or abandoned: either way nothing is left to wait for.
                let _ = ready!(Pin::new(barrier).poll(cx));
                let (request, _) = this.waiting.take().expect("waiting");
                return Poll::Ready(Some(Ok(request)));
            }
            match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(tarpc::ClientMessage::Request(request))) if request.id & ONEWAY_ID_BIT != 0 => {
                    this.held = Some(Work::Run(request.message));
                    this.queued += 1;
                }
                // Nothing to cancel: one-way requests are never tracked.
                Some(Ok(tarpc::ClientMessage::Cancel { request_id, .. })) if request_id & ONEWAY_ID_BIT != 0 => {}
                Some(Ok(request @ tarpc::ClientMessage::Request(_)))
                    if this.finished.load(Ordering::Acquire) < this.queued =>
                {
                    let (done, barrier) = oneshot::channel();
                    this.held = Some(Work::Barrier(done));
                    this.waiting = Some((request, barrier));
                }
                other => return Poll::Ready(other),
            }
        }
    }
}

impl<T, Req, Item> Sink<Item> for OnewaySplit<T, Req>
where
    T: Sink<Item>,
{
    type Error = T::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().inner.as_mut().poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Item) -> Result<(), Self::Error> {
        self.get_mut().inner.as_mut().start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().inner.as_mut().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().inner.as_mut().poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

    fn request(id: u64, message: u32) -> Result<tarpc::ClientMessage<u32>, ()> {
        Ok(tarpc::ClientMessage::Request(tarpc::Request { context: tarpc::context::current(), id, message }))
    }

    fn message(m: Option<Result<tarpc::ClientMessage<u32>, ()>>) -> u32 {
        match m {
            Some(Ok(tarpc::ClientMessage::Request(r))) => r.message,
            other => panic!("{other:?}"),
        }
    }

    /// Runs `work` as the runner would: each one-way request is "finished" once received.
    async fn receive(queue: &mut mpsc::Receiver<Work<u32>>, finished: &AtomicU64) -> u32 {
        loop {
            match queue.recv().await.expect("queue open") {
                Work::Run(request) => {
                    finished.fetch_add(1, Ordering::Release);
                    return request;
                }
                Work::Barrier(done) => done.send(()).unwrap(),
            }
        }
    }

    #[tokio::test]
    async fn one_way_requests_leave_the_stream_in_order_and_wait_for_room() {
        let messages = vec![
            request(0, 10),
            request(ONEWAY_ID_BIT, 1),
            request(ONEWAY_ID_BIT | 1, 2),
            request(ONEWAY_ID_BIT | 2, 3),
            request(1, 11),
        ];
        let (tx, mut rx) = mpsc::channel(1);
        let finished = Arc::new(AtomicU64::new(0));
        let mut split = OnewaySplit::new(Box::pin(stream::iter(messages)), tx, finished.clone());
        assert_eq!(message(split.next().await), 10, "no one-way request before it: passes at once");
        // One-way 1 fills the queue; one-way 2 waits for room, holding up the stream.
        assert!(futures::poll!(split.next()).is_pending());
        assert_eq!(receive(&mut rx, &finished).await, 1);
        assert!(futures::poll!(split.next()).is_pending());
        assert_eq!(receive(&mut rx, &finished).await, 2);
        // The two-way request waits until one-way 3 has finished too.
        assert!(futures::poll!(split.next()).is_pending());
        assert_eq!(receive(&mut rx, &finished).await, 3);
        let next = tokio::spawn(async move { (message(split.next().await), split) });
        match rx.recv().await {
            Some(Work::Barrier(done)) => done.send(()).unwrap(),
            _ => panic!("expected a barrier"),
        }
        let (two_way, mut split) = next.await.unwrap();
        assert_eq!(two_way, 11);
        assert!(split.next().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_two_way_request_is_released_when_the_runner_is_gone() {
        let messages = vec![request(ONEWAY_ID_BIT, 1), request(0, 10)];
        let (tx, rx) = mpsc::channel(4);
        let mut split = OnewaySplit::new(Box::pin(stream::iter(messages)), tx, Arc::new(AtomicU64::new(0)));
        assert!(futures::poll!(split.next()).is_pending());
        drop(rx);
        assert_eq!(message(split.next().await), 10);
    }

    /// The serve loop of one channel, end to end in memory: typed calls, one-way order, the
    /// caller going away.
    mod in_memory {
        use std::sync::Mutex;

        use crate::transport::memory;
        use crate::{CallContext, CallError};

        #[crate::relay_service]
        trait Journal {
            #[oneway]
            async fn write(entry: u32);
            async fn read() -> Vec<u32>;
            async fn hang() -> u32;
        }

        #[derive(Clone, Default)]
        struct Book(std::sync::Arc<Mutex<Vec<u32>>>);

        impl Journal for Book {
            async fn write(&self, entry: u32) {
                // Later entries arrive while this one sleeps: they must wait their turn.
                tokio::time::sleep(std::time::Duration::from_micros(u64::from(entry % 3) * 200)).await;
                self.0.lock().unwrap().push(entry);
            }
            async fn read(&self) -> Vec<u32> {
                self.0.lock().unwrap().clone()
            }
            async fn hang(&self) -> u32 {
                std::future::pending().await
            }
        }

        fn ctx() -> CallContext {
            CallContext::with_timeout(std::time::Duration::from_secs(10))
        }

        #[tokio::test]
        async fn one_way_requests_run_in_order_before_a_later_two_way_call() {
            let (caller, host, _cut) = memory::pair("journal");
            let book = Book::default();
            let served = tokio::spawn(super::serve_channel(host, ServeJournal::new(book.clone())));
            let client = JournalClient::new(caller);
            for entry in 0..50 {
                client.write(ctx(), entry).await.unwrap();
            }
            assert_eq!(client.read(ctx()).await.unwrap(), (0..50).collect::<Vec<_>>());
            drop(client);
            tokio::time::timeout(std::time::Duration::from_secs(10), served).await.unwrap().unwrap();
        }

        #[tokio::test]
        async fn a_call_without_a_useful_deadline_neither_panics_nor_is_refused() {
            // Regression: `Duration::MAX` overflowed the caller's clock; past two years, tarpc's
            // timers panic, and hosts refuse deadlines over a year away.
            let (caller, host, _cut) = memory::pair("journal");
            tokio::spawn(super::serve_channel(host, ServeJournal::new(Book::default())));
            let client = JournalClient::new(caller);
            let forever = CallContext::with_timeout(std::time::Duration::MAX);
            assert_eq!(client.read(forever).await.unwrap(), Vec::<u32>::new());
        }

        #[tokio::test]
        async fn a_call_past_its_deadline_fails_typed_and_the_channel_serves_on() {
            let (caller, host, _cut) = memory::pair("journal");
            tokio::spawn(super::serve_channel(host, ServeJournal::new(Book::default())));
            let client = JournalClient::new(caller);
            let short = CallContext::with_timeout(std::time::Duration::from_millis(50));
            assert!(matches!(client.hang(short).await, Err(CallError::DeadlineExceeded)));
            assert_eq!(client.read(ctx()).await.unwrap(), Vec::<u32>::new());
        }
    }
}
