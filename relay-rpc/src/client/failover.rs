//! What generated client stubs run on: the client of the current channel, and a new channel when
//! that one breaks.
//!
//! A stub made by `FooClient::connect` knows its connection, address and contract. When its
//! channel breaks because the listener went away, the calls in flight on it fail with
//! [`CallError::Disconnected`], and the next call opens a new channel to the address (the relay
//! picks the listener) before it is sent: up to [`REOPEN_ATTEMPTS`] tries, with exponential
//! backoff and jitter between them, all within the call's deadline. If no listener is there the
//! call fails with [`CallError::Open`] ([`OpenError::NoListener`]).
//!
//! A channel that broke because the relay shut down or the connection was lost is reopened too,
//! but only after a call has failed with that reason ([`ChannelError::RelayShutdown`],
//! [`ChannelError::ConnectionLost`]), so that the caller learns the relay went away. The next
//! call opens a new channel the same way, on a [`Connection`] that connects to the relay again
//! if it has to; while the relay is still down, that call fails with the typed error of its last
//! try.
//!
//! No call runs twice unless its method says it may: a call in flight when the channel breaks is
//! retried on a new channel only if its method is `#[idempotent]`. One-way calls are never
//! retried.
//!
//! Clones of a stub share one state: one current channel, and one reopen at a time.
//! Calls that find the channel broken queue on `reopening`; the first reopens, the rest use the
//! channel it opened, or fail with the error it failed with.
//!
//! A stub made by `FooClient::new(channel)` knows no address: it never reopens, and once its
//! channel has broken every call fails with [`CallError::Disconnected`].

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Serialize, de::DeserializeOwned};

use super::stub::ChannelStub;
use crate::call::CallContext;
use crate::channel::{Channel, ChannelError};
use crate::client::Connection;
use crate::contract::ContractDescriptor;
use crate::error::{CallError, OpenError};
use relay_proto::ErrorCode;

/// How many times a call tries to open a new channel before it gives up.
pub(crate) const REOPEN_ATTEMPTS: u32 = 3;
/// The backoff after the first failed try; it doubles after each one.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How many times an idempotent call is sent, at most, on successive channels.
const IDEMPOTENT_ATTEMPTS: u32 = 3;

/// The engine of a generated `FooClient`. Cheap to clone; clones share the current channel.
pub struct ClientStub<Req, Resp> {
    shared: Arc<Shared<Req, Resp>>,
}

struct Shared<Req, Resp> {
    contract: &'static ContractDescriptor,
    /// Where to open a new channel; `None` for a stub made from a channel, which never does.
    target: Option<Target>,
    state: Mutex<State<Req, Resp>>,
    /// Held while a new channel is being opened, so that only one call opens it.
    reopening: tokio::sync::Mutex<()>,
}

struct Target {
    connection: Connection,
    address: String,
}

struct State<Req, Resp> {
    /// Counts the channels opened; tells a failure on an old channel from one on the current.
    generation: u64,
    /// The client of the current channel; `None` once it broke (reopening stubs only).
    current: Option<Arc<ChannelStub<Req, Resp>>>,
    /// Counts failed reopens, so that calls that waited for one get its error.
    failures: u64,
    /// The error the last failed reopen gave.
    last_failure: Option<OpenError>,
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
    Resp: DeserializeOwned + Send + 'static,
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
        let target = Target { connection: connection.clone(), address: address.to_owned() };
        Ok(Self::with_target(ChannelStub::new(channel, contract), contract, Some(target)))
    }

    fn with_target(
        stub: ChannelStub<Req, Resp>,
        contract: &'static ContractDescriptor,
        target: Option<Target>,
    ) -> Self {
        let state = State { generation: 0, current: Some(Arc::new(stub)), failures: 0, last_failure: None };
        Self { shared: Arc::new(Shared { contract, target, state: Mutex::new(state), reopening: Default::default() }) }
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
                    tracing::debug!(contract = self.shared.contract.name, method, error = %e, "retrying idempotent call");
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

    fn state(&self) -> MutexGuard<'_, State<Req, Resp>> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel of `generation` broke with `error`: the next call opens a new one, if this
    /// stub can and the error says a new one may work (what this returns).
    fn broken(&self, generation: u64, error: &ChannelError) -> bool {
        if self.shared.target.is_none() || !reopens_after(error) {
            return false;
        }
        let mut state = self.state();
        if state.generation == generation {
            state.current = None;
        }
        true
    }

    /// The client of a channel to call on, and its generation: the current one, unless it broke
    /// and a new one can be opened.
    async fn channel(&self, ctx: CallContext) -> Result<(u64, Arc<ChannelStub<Req, Resp>>), CallError> {
        let failures = {
            let state = self.state();
            match &state.current {
                Some(stub) if self.shared.target.is_none() || !stub.ended().is_some_and(reopens_unseen) => {
                    return Ok((state.generation, stub.clone()));
                }
                _ => state.failures,
            }
        };
        let Some(target) = &self.shared.target else {
            // Not reached: a stub without a target keeps its one channel.
            return Err(CallError::Disconnected(ChannelError::Closed));
        };
        let deadline = tokio::time::Instant::from_std(ctx.deadline());
        let Ok(_reopening) = tokio::time::timeout_at(deadline, self.shared.reopening.lock()).await else {
            return Err(CallError::DeadlineExceeded);
        };
        {
            let state = self.state();
            match &state.current {
                // Another call opened one while this one waited.
                Some(stub) if !stub.ended().is_some_and(reopens_unseen) => {
                    return Ok((state.generation, stub.clone()));
                }
                // Another call failed to open one while this one waited.
                _ if state.failures != failures => {
                    if let Some(e) = &state.last_failure {
                        return Err(CallError::Open(e.clone()));
                    }
                }
                _ => {}
            }
        }
        match self.reopen(target, ctx).await {
            Ok(stub) => {
                let stub = Arc::new(stub);
                let mut state = self.state();
                state.generation += 1;
                state.current = Some(stub.clone());
                Ok((state.generation, stub))
            }
            Err(e) => {
                if let CallError::Open(e) = &e {
                    let mut state = self.state();
                    state.failures += 1;
                    state.last_failure = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Opens a new channel to `target`, retrying as [`retry_after`] says.
    async fn reopen(&self, target: &Target, ctx: CallContext) -> Result<ChannelStub<Req, Resp>, CallError> {
        let contract = self.shared.contract;
        let deadline = tokio::time::Instant::from_std(ctx.deadline());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let opened =
                tokio::time::timeout_at(deadline, target.connection.open_channel(&target.address, Some(contract)));
            let e = match opened.await {
                Ok(Ok(channel)) => {
                    tracing::debug!(address = %target.address, attempt, "channel reopened");
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
/// the wait would reach the deadline. The wait doubles from [`BACKOFF_MIN`] up to
/// [`BACKOFF_MAX`]; `random` picks it in the upper half of that ("equal jitter"), so that callers
/// that lost their listener together do not come back together.
pub(crate) fn retry_after(attempt: u32, error: &OpenError, remaining: Duration, random: u64) -> Option<Duration> {
    let transient = matches!(
        error,
        OpenError::NoListener { .. }
            | OpenError::Timeout
            | OpenError::Refused { code: ErrorCode::Busy | ErrorCode::RateLimited, .. }
    );
    if !transient || attempt >= REOPEN_ATTEMPTS {
        return None;
    }
    let full = BACKOFF_MIN.saturating_mul(1 << (attempt - 1).min(16)).min(BACKOFF_MAX);
    let half = full / 2;
    let jitter = Duration::from_nanos(random % (half.as_nanos() as u64 + 1));
    let delay = half + jitter;
    (delay < remaining).then_some(delay)
}

/// A random number, for jitter: from the standard library's per-process random hash keys.
fn random() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_listener() -> OpenError {
        OpenError::NoListener { address: "calc".into() }
    }

    const PLENTY: Duration = Duration::from_secs(30);

    #[test]
    fn backoff_doubles_within_its_bounds_with_jitter_in_the_upper_half() {
        for random in [0, 1, 12_345_678, u64::MAX] {
            let first = retry_after(1, &no_listener(), PLENTY, random).unwrap();
            assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN, "{first:?}");
            let second = retry_after(2, &no_listener(), PLENTY, random).unwrap();
            assert!(second >= BACKOFF_MIN && second <= BACKOFF_MIN * 2, "{second:?}");
        }
        assert_eq!(retry_after(1, &no_listener(), PLENTY, 0), Some(BACKOFF_MIN / 2));
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
        assert_eq!(retry_after(1, &no_listener(), Duration::from_millis(10), 0), None);
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
}
