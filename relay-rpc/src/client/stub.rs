//! The client of one channel: a tarpc client over it, plus one-way requests. Generated stubs run
//! on [`ClientStub`](super::ClientStub), which holds one of these at a time and opens a new one
//! when its channel breaks.
//!
//! tarpc has no fire-and-forget call, so one-way requests bypass its client: the stub builds the
//! same `ClientMessage::Request` frame tarpc would, with a request id from the range tarpc never
//! uses (top bit set, see `contract::ONEWAY_ID_BIT`), and queues it on a small bounded queue.
//! The channel's transport under tarpc ([`Injecting`]) writes queued one-way requests before each
//! request tarpc writes, so the frames leave in the order the calls were made. The host runs
//! requests from that range without answering them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use futures::{Sink, Stream};
use serde::{Serialize, de::DeserializeOwned};
use tarpc::client::RpcError;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::call::CallContext;
use crate::channel::{Channel, ChannelEnd, ChannelError};
use crate::contract::{ContractDescriptor, HostRefusal, ONEWAY_ID_BIT, Typed, Undecodable, typed};
use crate::error::{CallError, MessagePart};
use relay_proto::error::chain;

/// How many one-way requests may wait for the channel, per channel: more wait for room.
const ONEWAY_QUEUE: usize = 64;

type Framed<Req, Resp> = Typed<tarpc::Response<Resp>, tarpc::ClientMessage<Req>>;

/// Sends requests over one channel and awaits responses.
pub(crate) struct ChannelStub<Req, Resp> {
    // Declared (so dropped) before `inner`: once tarpc sees its last handle go, no one-way request
    // can be queued any more, and the transport writes those queued before it closes.
    oneway: mpsc::Sender<tarpc::ClientMessage<Req>>,
    next_oneway: Arc<AtomicU64>,
    inner: tarpc::client::Channel<Req, Resp>,
    end: ChannelEnd,
    contract: &'static ContractDescriptor,
    /// The relay's id of the channel, for logs.
    id: u64,
}

impl<Req, Resp> ChannelStub<Req, Resp>
where
    Req: Serialize + tarpc::RequestName + Send + 'static,
    Resp: DeserializeOwned + Undecodable + Send + 'static,
{
    /// Runs a client of `contract` over `channel`. Must be called within a tokio runtime.
    pub(crate) fn new(channel: Channel, contract: &'static ContractDescriptor) -> Self {
        let end = channel.end();
        let (id, span) = (channel.id(), channel.span());
        let (oneway, injected) = mpsc::channel(ONEWAY_QUEUE);
        let framed: Framed<Req, Resp> = typed(channel);
        let transport = Injecting { inner: Box::pin(framed), injected, pending: None };
        let tarpc::client::NewClient { client: inner, dispatch } =
            tarpc::client::new(tarpc::client::Config::default(), transport);
        // Spawned here rather than by tarpc's `spawn`, so that what the channel's task logs (the
        // codec's, tarpc's, its end) is in the channel's span.
        let dispatch = async move {
            if let Err(e) = dispatch.await {
                // Named here too: the channel's span is at `debug`, off under the usual filter.
                tracing::warn!(channel = id, error = %chain(&e), "channel broken");
            }
        };
        tokio::spawn(dispatch.instrument(span));
        Self { oneway, next_oneway: Arc::new(AtomicU64::new(0)), inner, end, contract, id }
    }

    /// The relay's id of the channel.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Why the channel ended, if it has: then every call on it fails.
    pub(crate) fn ended(&self) -> Option<&ChannelError> {
        self.end.get()
    }

    /// Sends one request for `method` and waits for its response or the context's deadline.
    pub(crate) async fn call(&self, ctx: CallContext, method: &'static str, request: Req) -> Result<Resp, CallError> {
        self.inner.call(ctx.to_tarpc(), request).await.map_err(|e| self.call_error(method, e))
    }

    /// Queues one one-way request and returns without waiting for the host. Waits only while the
    /// queue is full (the channel is slower than the caller), at most until the context's
    /// deadline. Fails at once if the channel has already ended.
    pub(crate) async fn oneway(&self, ctx: CallContext, request: Req) -> Result<(), CallError> {
        if let Some(e) = self.end.get() {
            return Err(CallError::Disconnected(e.clone()));
        }
        let id = ONEWAY_ID_BIT | (self.next_oneway.fetch_add(1, Ordering::Relaxed) & !ONEWAY_ID_BIT);
        let message = tarpc::ClientMessage::Request(tarpc::Request { context: ctx.to_tarpc(), id, message: request });
        let deadline = tokio::time::Instant::from_std(ctx.deadline());
        match tokio::time::timeout_at(deadline, self.oneway.send(message)).await {
            Ok(Ok(())) => Ok(()),
            // The transport is gone: the channel ended.
            Ok(Err(_)) => Err(self.disconnected()),
            Err(_) => Err(CallError::DeadlineExceeded),
        }
    }

    fn disconnected(&self) -> CallError {
        CallError::Disconnected(self.end.get().cloned().unwrap_or(ChannelError::Closed))
    }

    fn call_error(&self, method: &'static str, e: RpcError) -> CallError {
        match e {
            // The channel ended earlier; say why it did.
            RpcError::Shutdown => self.disconnected(),
            RpcError::Server(e) => match HostRefusal::of(&e) {
                Some(HostRefusal::UnknownMethod) => {
                    CallError::UnknownMethod { contract: self.contract.name.to_owned(), method: method.to_owned() }
                }
                Some(HostRefusal::Undecodable(detail)) => CallError::Undecodable {
                    contract: self.contract.name.to_owned(),
                    method: method.to_owned(),
                    part: MessagePart::Request,
                    detail: detail.to_owned(),
                },
                None => call_error(RpcError::Server(e)),
            },
            e => call_error(e),
        }
    }
}

fn call_error(e: RpcError) -> CallError {
    match e {
        RpcError::DeadlineExceeded => CallError::DeadlineExceeded,
        RpcError::Shutdown => CallError::Disconnected(ChannelError::Closed),
        RpcError::Server(e) => CallError::Aborted(e.detail),
        RpcError::Channel(e) => {
            use tarpc::ChannelError::{Close, Flush, Read, Ready, Write};
            let (Read(cause) | Ready(cause) | Write(cause) | Flush(cause) | Close(cause)) = &e;
            let cause = cause.downcast_ref::<ChannelError>().cloned();
            CallError::Disconnected(cause.unwrap_or_else(|| ChannelError::Protocol(chain(&e).to_string())))
        }
        RpcError::Send(e) => match e.downcast::<ChannelError>() {
            Ok(e) => CallError::Disconnected(*e),
            Err(e) => CallError::Disconnected(ChannelError::Protocol(e.to_string())),
        },
    }
}

/// The error a stub returns when a response does not match its request.
pub fn unexpected_response(contract: &'static str, method: &'static str) -> CallError {
    CallError::Protocol(format!("response to {contract}.{method} is of another method"))
}

/// The error a stub returns when the response to its request could not be decoded.
pub fn undecodable_response(contract: &'static str, method: &'static str, detail: String) -> CallError {
    CallError::Undecodable {
        contract: contract.to_owned(),
        method: method.to_owned(),
        part: MessagePart::Response,
        detail,
    }
}

/// The transport under a stub's tarpc client: `inner`, plus the messages of `injected`, each
/// written before whatever tarpc writes next.
///
/// tarpc's client readies its transport before each request or cancellation it writes, and
/// flushes it whenever it has nothing left to write; both drain `injected` first. Polling
/// `injected` registers the dispatch task's waker, so a queued message wakes the task that
/// writes it.
struct Injecting<T, Item> {
    inner: Pin<Box<T>>,
    injected: mpsc::Receiver<Item>,
    /// A message taken from `injected`, waiting for `inner` to be ready.
    pending: Option<Item>,
}

// `inner` is boxed and nothing else is pinned structurally, so moving an `Injecting` is fine.
impl<T, Item> Unpin for Injecting<T, Item> {}

impl<T: Sink<Item>, Item> Injecting<T, Item> {
    /// Writes every injected message that is ready; `Ready` once none is waiting.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        loop {
            if self.pending.is_none() {
                match self.injected.poll_recv(cx) {
                    Poll::Ready(Some(item)) => self.pending = Some(item),
                    Poll::Ready(None) | Poll::Pending => return Poll::Ready(Ok(())),
                }
            }
            ready!(self.inner.as_mut().poll_ready(cx))?;
            if let Some(item) = self.pending.take() {
                self.inner.as_mut().start_send(item)?;
            }
        }
    }
}

impl<T: Sink<Item>, Item> Sink<Item> for Injecting<T, Item> {
    type Error = T::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.inner.as_mut().poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Item) -> Result<(), Self::Error> {
        self.get_mut().inner.as_mut().start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.inner.as_mut().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.inner.as_mut().poll_close(cx)
    }
}

impl<T: Stream, Item> Stream for Injecting<T, Item> {
    type Item = T::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        self.get_mut().inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{SinkExt, StreamExt};

    use super::*;

    /// A sink that records what is written and when it is flushed.
    #[derive(Default)]
    struct Record(Vec<String>);

    impl Sink<String> for Record {
        type Error = std::convert::Infallible;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(self: Pin<&mut Self>, item: String) -> Result<(), Self::Error> {
            self.get_mut().0.push(item);
            Ok(())
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.get_mut().0.push("flush".into());
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.get_mut().0.push("close".into());
            Poll::Ready(Ok(()))
        }
    }

    impl Stream for Record {
        type Item = ();

        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<()>> {
            Poll::Ready(None)
        }
    }

    #[tokio::test]
    async fn injected_messages_go_before_the_next_write_and_on_flush_and_close() {
        let (tx, injected) = mpsc::channel(4);
        let mut transport = Injecting { inner: Box::pin(Record::default()), injected, pending: None };
        tx.send("one-way 1".to_owned()).await.unwrap();
        tx.send("one-way 2".to_owned()).await.unwrap();
        transport.feed("call".to_owned()).await.unwrap();
        tx.send("one-way 3".to_owned()).await.unwrap();
        transport.flush().await.unwrap();
        tx.send("one-way 4".to_owned()).await.unwrap();
        drop(tx);
        transport.close().await.unwrap();
        assert_eq!(
            transport.inner.0,
            ["one-way 1", "one-way 2", "call", "one-way 3", "flush", "one-way 4", "close"].map(String::from)
        );
        assert_eq!(transport.next().await, None);
    }
}
