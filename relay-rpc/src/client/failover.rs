//! What generated client stubs run on: the client of the current channel, and a new channel when
//! that one breaks, as the [`client`](super) module's docs describe.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::stub::ChannelStub;
use crate::backoff::{Backoff, random};
use crate::call::CallContext;
use crate::channel::{Channel, ChannelError};
use crate::client::Connection;
use crate::contract::{ContractDescriptor, Undecodable};
use crate::error::{CallError, OpenError};
use crate::replaceable::{Current, NotReplaced, Replaceable};
use relay_proto::ErrorCode;
use relay_proto::error::chain;

/// How many times a call tries to open a new channel before it gives up.
pub const REOPEN_ATTEMPTS: u32 = 3;
/// The wait between tries: at most 100 ms after the first, doubling up to 1 s.
pub const REOPEN_BACKOFF: Backoff =
    Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), stable: Duration::ZERO };
/// How many times an idempotent call is sent, at most, on successive channels.
pub const IDEMPOTENT_ATTEMPTS: u32 = 3;

/// The engine of a generated `FooClient`. Cheap to clone; clones share the current channel.
pub struct ClientStub<Req, Resp> {
    shared: Arc<Shared<Req, Resp>>,
}

struct Shared<Req, Resp> {
    contract: &'static ContractDescriptor,
    /// Where to open a new channel; `None` for a stub made from a channel, which never does.
    target: Option<Target>,
    /// The client of the current channel; its generation tells a failure on an old channel from
    /// one on the current.
    current: Replaceable<Arc<ChannelStub<Req, Resp>>, CallError>,
}

struct Target {
    opener: Opener,
    address: String,
}

/// Where a stub's new channels come from.
enum Opener {
    /// A connection to a relay.
    Relay(Connection),
    /// In this crate's tests: in-memory channels, without a relay.
    #[cfg(test)]
    Memory(Box<dyn Fn() -> Result<Channel, OpenError> + Send + Sync>),
}

impl Opener {
    async fn open(&self, address: &str, contract: &'static ContractDescriptor) -> Result<Channel, OpenError> {
        match self {
            Self::Relay(connection) => connection.open_channel(address, Some(contract)).await,
            #[cfg(test)]
            Self::Memory(open) => open(),
        }
    }
}

impl<Req, Resp> Clone for ClientStub<Req, Resp> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<Req, Resp> fmt::Debug for ClientStub<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = self.shared.target.as_ref().map(|t| t.address.as_str());
        f.debug_struct("ClientStub")
            .field("contract", &self.shared.contract.name)
            .field("address", &address)
            .finish_non_exhaustive()
    }
}

impl<Req, Resp> ClientStub<Req, Resp>
where
    Req: Serialize + tarpc::RequestName + Send + 'static,
    Resp: DeserializeOwned + Undecodable + Send + 'static,
{
    /// Runs a client of `contract` over `channel`; it never opens another. Must be called within
    /// a tokio runtime.
    pub fn new(channel: Channel, contract: &'static ContractDescriptor) -> Self {
        Self::with_target(ChannelStub::new(channel, contract), contract, None)
    }

    /// Opens a channel to `address` and runs a client of `contract` over it; when the channel
    /// breaks, the next call opens another.
    pub async fn connect(
        connection: &Connection,
        address: &str,
        contract: &'static ContractDescriptor,
    ) -> Result<Self, OpenError> {
        let channel = connection.open_channel(address, Some(contract)).await?;
        let target = Target { opener: Opener::Relay(connection.clone()), address: address.to_owned() };
        Ok(Self::with_target(ChannelStub::new(channel, contract), contract, Some(target)))
    }

    fn with_target(
        stub: ChannelStub<Req, Resp>,
        contract: &'static ContractDescriptor,
        target: Option<Target>,
    ) -> Self {
        Self { shared: Arc::new(Shared { contract, target, current: Replaceable::new(Arc::new(stub)) }) }
    }

    /// Sends one request for `method` and waits for its response or the context's deadline. A
    /// request in flight when the channel breaks is not sent again.
    pub async fn call(&self, ctx: CallContext, method: &'static str, request: Req) -> Result<Resp, CallError> {
        let (generation, stub) = self.channel(ctx).await?;
        let result = stub.call(ctx, method, request).await;
        if let Err(CallError::Disconnected(e)) = &result {
            self.broken(generation, e);
        }
        result
    }

    /// Like [`call`](Self::call), for an `#[idempotent]` method: a request in flight when the
    /// channel breaks is sent again (`request` makes each copy) on a new channel, within the
    /// context's deadline.
    pub async fn call_idempotent(
        &self,
        ctx: CallContext,
        method: &'static str,
        request: impl Fn() -> Req,
    ) -> Result<Resp, CallError> {
        let mut sent = 0;
        loop {
            let (generation, stub) = self.channel(ctx).await?;
            sent += 1;
            match stub.call(ctx, method, request()).await {
                Err(CallError::Disconnected(e)) => {
                    if !self.broken(generation, &e) || sent >= IDEMPOTENT_ATTEMPTS || ctx.remaining().is_zero() {
                        return Err(CallError::Disconnected(e));
                    }
                    let contract = self.shared.contract.name;
                    let channel = stub.id();
                    tracing::debug!(channel, contract, method, error = %chain(&e), "retrying idempotent call");
                }
                result => return result,
            }
        }
    }

    /// Queues one one-way request and returns without waiting for the host. Waits only while the
    /// queue is full (the channel is slower than the caller), at most until the context's
    /// deadline. Fails at once if the channel has already ended (and no new one can be opened).
    /// Never sent twice.
    pub async fn oneway(&self, ctx: CallContext, request: Req) -> Result<(), CallError> {
        let (generation, stub) = self.channel(ctx).await?;
        let result = stub.oneway(ctx, request).await;
        if let Err(CallError::Disconnected(e)) = &result {
            self.broken(generation, e);
        }
        result
    }

    /// The channel of `generation` broke with `error`: the next call opens a new one, if this
    /// stub can and the error says a new one may work (what this returns).
    fn broken(&self, generation: u64, error: &ChannelError) -> bool {
        if self.shared.target.is_none() || !reopens_after(error) {
            return false;
        }
        self.shared.current.discard(generation);
        true
    }

    /// The client of a channel to call on, and its generation: the current one, unless it broke
    /// and a new one can be opened.
    async fn channel(&self, ctx: CallContext) -> Result<(u64, Arc<ChannelStub<Req, Resp>>), CallError> {
        // A stub without a target keeps its one channel, broken or not.
        let usable = |stub: &Arc<ChannelStub<Req, Resp>>| {
            self.shared.target.is_none() || !stub.ended().is_some_and(reopens_unseen)
        };
        let seen = match self.shared.current.get(usable) {
            Current::Usable(generation, stub) => return Ok((generation, stub)),
            Current::Broken(seen) => seen,
            Current::Retired => return Err(CallError::Disconnected(ChannelError::Closed)),
        };
        let Some(target) = &self.shared.target else {
            // Not reached: a stub without a target keeps its one channel.
            return Err(CallError::Disconnected(ChannelError::Closed));
        };
        let deadline = tokio::time::Instant::from_std(ctx.deadline());
        // A call's own deadline is not the next call's failure: only failures to open are shared.
        let shared = |e: &CallError| matches!(e, CallError::Open(_));
        let reopen = || async { self.reopen(target, ctx).await.map(Arc::new) };
        match tokio::time::timeout_at(deadline, self.shared.current.replace(seen, usable, shared, reopen)).await {
            Ok(Ok(current)) => Ok(current),
            Ok(Err(NotReplaced::Failed(e))) => Err(e),
            Ok(Err(NotReplaced::Retired(_))) => Err(CallError::Disconnected(ChannelError::Closed)),
            Err(_) => Err(CallError::DeadlineExceeded),
        }
    }

    /// Opens a new channel to `target`, retrying as [`retry_after`] says.
    async fn reopen(&self, target: &Target, ctx: CallContext) -> Result<ChannelStub<Req, Resp>, CallError> {
        let contract = self.shared.contract;
        let deadline = tokio::time::Instant::from_std(ctx.deadline());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let opened = tokio::time::timeout_at(deadline, target.opener.open(&target.address, contract));
            let e = match opened.await {
                Ok(Ok(channel)) => {
                    tracing::debug!(
                        channel = channel.id(),
                        address = %target.address,
                        transport = channel.transport(),
                        attempt,
                        "channel reopened"
                    );
                    return Ok(ChannelStub::new(channel, contract));
                }
                Ok(Err(e)) => e,
                Err(_) => return Err(CallError::DeadlineExceeded),
            };
            let Some(delay) = retry_after(attempt, &e, ctx.remaining(), random()) else {
                tracing::debug!(address = %target.address, attempt, error = %e, "cannot reopen channel");
                return Err(CallError::Open(e));
            };
            tracing::trace!(address = %target.address, attempt, error = %e, ?delay, "reopening channel failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Whether a channel that a call saw end with `error` is worth replacing: its listener went
/// away, or ended the channel, and another may take it; or the relay shut down or the connection
/// was lost, and the relay (restarted, or reached again) may have one. Not on a protocol error.
pub(crate) fn reopens_after(error: &ChannelError) -> bool {
    matches!(
        error,
        ChannelError::ListenerGone
            | ChannelError::Closed
            | ChannelError::RelayShutdown
            | ChannelError::ConnectionLost(_)
    )
}

/// Whether a channel that ended with `error` before any call saw it is replaced before the
/// next call, which then does not fail: only when its listener went away or ended it. A relay
/// that shut down or a lost connection fails one call with that reason first.
fn reopens_unseen(error: &ChannelError) -> bool {
    matches!(error, ChannelError::ListenerGone | ChannelError::Closed)
}

/// How long to wait before try `attempt + 1` at opening a channel, after try `attempt` (from 1)
/// failed with `error` and `remaining` is left until the call's deadline; `None` to give up.
///
/// Gives up after [`REOPEN_ATTEMPTS`] tries, on errors that trying again will not mend, and when
/// the wait would reach the deadline. The wait is [`REOPEN_BACKOFF`]'s, `random` picking it
/// within the doubling ceiling, so that callers that lost their listener together do not come
/// back together.
pub(crate) fn retry_after(attempt: u32, error: &OpenError, remaining: Duration, random: u64) -> Option<Duration> {
    let transient = matches!(
        error,
        OpenError::NoListener { .. }
            | OpenError::Timeout
            | OpenError::Refused { code: ErrorCode::Busy | ErrorCode::RateLimited | ErrorCode::Unreachable, .. }
    );
    if !transient || attempt >= REOPEN_ATTEMPTS {
        return None;
    }
    let delay = REOPEN_BACKOFF.delay(attempt - 1, random);
    (delay < remaining).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_listener() -> OpenError {
        OpenError::NoListener { address: "calc".into() }
    }

    const PLENTY: Duration = Duration::from_secs(30);

    #[test]
    fn backoff_doubles_within_its_ceiling_with_full_jitter() {
        let base = REOPEN_BACKOFF.base;
        for random in [0, 1, 12_345_678, u64::MAX] {
            let first = retry_after(1, &no_listener(), PLENTY, random).unwrap();
            assert!(first <= base, "{first:?}");
            let second = retry_after(2, &no_listener(), PLENTY, random).unwrap();
            assert!(second <= base * 2, "{second:?}");
        }
        assert_eq!(retry_after(2, &no_listener(), PLENTY, 150_000_000), Some(Duration::from_millis(150)));
        assert_ne!(retry_after(1, &no_listener(), PLENTY, 7), retry_after(1, &no_listener(), PLENTY, 8));
    }

    #[test]
    fn backoff_gives_up_after_the_last_attempt() {
        assert!(retry_after(REOPEN_ATTEMPTS - 1, &no_listener(), PLENTY, 0).is_some());
        assert_eq!(retry_after(REOPEN_ATTEMPTS, &no_listener(), PLENTY, 0), None);
        assert_eq!(retry_after(u32::MAX, &no_listener(), PLENTY, 0), None);
    }

    #[test]
    fn backoff_never_waits_past_the_deadline() {
        assert_eq!(retry_after(1, &no_listener(), Duration::from_millis(10), 50_000_000), None);
        assert_eq!(retry_after(1, &no_listener(), Duration::ZERO, 0), None);
    }

    #[test]
    fn channels_are_reopened_unless_the_protocol_broke() {
        assert!(reopens_after(&ChannelError::ListenerGone));
        assert!(reopens_after(&ChannelError::Closed));
        assert!(reopens_after(&ChannelError::RelayShutdown));
        assert!(reopens_after(&ChannelError::ConnectionLost("gone".into())));
        assert!(!reopens_after(&ChannelError::Protocol("bad".into())));
    }

    #[test]
    fn only_channels_whose_listener_left_are_reopened_before_a_call_fails() {
        assert!(reopens_unseen(&ChannelError::ListenerGone));
        assert!(reopens_unseen(&ChannelError::Closed));
        assert!(!reopens_unseen(&ChannelError::RelayShutdown));
        assert!(!reopens_unseen(&ChannelError::ConnectionLost("gone".into())));
        assert!(!reopens_unseen(&ChannelError::Protocol("bad".into())));
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(retry_after(1, &OpenError::Timeout, PLENTY, 0).is_some());
        let busy = OpenError::Refused { code: ErrorCode::Busy, detail: String::new() };
        assert!(retry_after(1, &busy, PLENTY, 0).is_some());
        for permanent in [
            OpenError::ContractMismatch("other".into()),
            OpenError::ConnectionLost("gone".into()),
            OpenError::Refused { code: ErrorCode::Rejected, detail: String::new() },
        ] {
            assert_eq!(retry_after(1, &permanent, PLENTY, 0), None, "{permanent:?}");
        }
    }

    /// Failover without a relay: every channel is an in-memory pair served by a real dispatcher.
    mod in_memory {
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use super::super::{ChannelStub, ClientStub, Opener, REOPEN_ATTEMPTS, Target};
        use crate::Channel;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use tokio::sync::Notify;

        use crate::host::serve_channel;
        use crate::transport::memory::{self, Cut};
        use crate::{CallContext, CallError, ChannelError, OpenError};

        #[crate::relay_service]
        trait Counter {
            async fn next() -> u64;
            #[idempotent]
            async fn next_slowly() -> u64;
            async fn hang() -> u64;
        }

        #[derive(Clone, Default)]
        struct Count {
            n: Arc<AtomicUsize>,
            /// Holds `next_slowly` and `hang` until notified.
            gate: Arc<Notify>,
            entered: Arc<Notify>,
        }

        impl Counter for Count {
            async fn next(&self) -> u64 {
                self.n.fetch_add(1, Ordering::SeqCst) as u64 + 1
            }
            async fn next_slowly(&self) -> u64 {
                self.entered.notify_one();
                self.gate.notified().await;
                self.next().await
            }
            async fn hang(&self) -> u64 {
                self.entered.notify_one();
                std::future::pending().await
            }
        }

        /// Opens in-memory channels served by `service`, or fails while `refuse` is set; keeps
        /// the cuts of the channels it opened.
        #[derive(Clone, Default)]
        struct Lab {
            service: Count,
            opened: Arc<Mutex<Vec<Cut>>>,
            refused: Arc<AtomicUsize>,
            refuse: Arc<std::sync::atomic::AtomicBool>,
        }

        impl Lab {
            fn open(&self) -> Result<Channel, OpenError> {
                if self.refuse.load(Ordering::SeqCst) {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    return Err(OpenError::NoListener { address: "counter".into() });
                }
                let (caller, host, cut) = memory::pair("counter");
                self.opened.lock().unwrap().push(cut);
                tokio::spawn(serve_channel(host, ServeCounter::new(self.service.clone())));
                Ok(caller)
            }

            fn client(&self) -> CounterClient {
                let lab = self.clone();
                let stub = ClientStub::with_target(
                    ChannelStub::new(self.open().unwrap(), CounterClient::CONTRACT),
                    CounterClient::CONTRACT,
                    Some(Target { opener: Opener::Memory(Box::new(move || lab.open())), address: "counter".into() }),
                );
                CounterClient { inner: stub }
            }

            fn opens(&self) -> usize {
                self.opened.lock().unwrap().len()
            }

            /// Cuts the latest channel as a relay does when its listener goes.
            fn listener_leaves(&self) {
                let cut = self.opened.lock().unwrap().last().cloned().unwrap();
                cut.cut(ChannelError::ListenerGone, ChannelError::CallerGone);
            }
        }

        fn ctx() -> CallContext {
            CallContext::with_timeout(Duration::from_secs(10))
        }

        /// Waits until the client's current channel has seen its end, as a stub whose channel
        /// broke while no call was on it has before the next call (a call made at the same
        /// moment is a call in flight).
        async fn noticed(client: &CounterClient) {
            let ended = || match client.inner.shared.current.get(|_| true) {
                crate::replaceable::Current::Usable(_, stub) => stub.ended().is_some(),
                _ => true,
            };
            let wait = async {
                while !ended() {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the stub sees its channel end");
        }

        #[tokio::test]
        async fn calls_after_the_listener_left_share_one_new_channel() {
            let lab = Lab::default();
            let client = lab.client();
            assert_eq!(client.next(ctx()).await.unwrap(), 1);
            lab.listener_leaves();
            noticed(&client).await;
            let calls: Vec<_> = (0..20).map(|_| client.next(ctx())).collect();
            let mut answers: Vec<u64> =
                futures::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
            answers.sort_unstable();
            assert_eq!(answers, (2..22).collect::<Vec<_>>(), "no call failed, none ran twice");
            assert_eq!(lab.opens(), 2, "one reopen for all twenty calls");
        }

        #[tokio::test]
        async fn with_no_listener_a_call_fails_typed_after_the_last_attempt() {
            let lab = Lab::default();
            let client = lab.client();
            lab.refuse.store(true, Ordering::SeqCst);
            lab.listener_leaves();
            noticed(&client).await;
            let failed = client.next(ctx()).await.unwrap_err();
            assert!(matches!(failed, CallError::Open(OpenError::NoListener { .. })), "{failed:?}");
            assert_eq!(lab.refused.load(Ordering::SeqCst), REOPEN_ATTEMPTS as usize);
            lab.refuse.store(false, Ordering::SeqCst);
            assert_eq!(client.next(ctx()).await.unwrap(), 1, "the next call tries again, and succeeds");
        }

        #[tokio::test]
        async fn a_call_in_flight_is_sent_again_only_if_idempotent() {
            let lab = Lab::default();
            let client = lab.client();
            let in_flight = tokio::spawn({
                let client = client.clone();
                async move { client.hang(ctx()).await }
            });
            lab.service.entered.notified().await;
            lab.listener_leaves();
            let lost = in_flight.await.unwrap().unwrap_err();
            assert!(matches!(lost, CallError::Disconnected(ChannelError::ListenerGone)), "{lost:?}");

            let retried = tokio::spawn({
                let client = client.clone();
                async move { client.next_slowly(ctx()).await }
            });
            lab.service.entered.notified().await;
            lab.listener_leaves();
            // The copy sent on the new channel waits at the gate too: let it through.
            lab.service.entered.notified().await;
            lab.service.gate.notify_one();
            assert_eq!(retried.await.unwrap().unwrap(), 1, "sent again on a new channel, run once");
            assert_eq!(lab.opens(), 3);
        }

        #[tokio::test]
        async fn a_relay_shutdown_fails_one_call_before_the_channel_is_reopened() {
            let lab = Lab::default();
            let client = lab.client();
            assert_eq!(client.next(ctx()).await.unwrap(), 1);
            let cut = lab.opened.lock().unwrap().last().cloned().unwrap();
            cut.cut(ChannelError::RelayShutdown, ChannelError::RelayShutdown);
            let failed = client.next(ctx()).await.unwrap_err();
            assert!(matches!(failed, CallError::Disconnected(ChannelError::RelayShutdown)), "{failed:?}");
            assert_eq!(client.next(ctx()).await.unwrap(), 2);
            assert_eq!(lab.opens(), 2);
        }

        #[tokio::test]
        async fn a_stub_made_from_a_channel_never_reopens() {
            let lab = Lab::default();
            let client = CounterClient::new(lab.open().unwrap());
            lab.listener_leaves();
            for _ in 0..2 {
                let failed = client.next(ctx()).await.unwrap_err();
                assert!(matches!(failed, CallError::Disconnected(_)), "{failed:?}");
            }
            assert_eq!(lab.opens(), 1);
        }
    }
}
