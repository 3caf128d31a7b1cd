//! Service contracts: what `#[relay_service]` describes, and the host-side dispatch trait.
//!
//! A contract is a name plus its methods. Both ends carry a [`ContractDescriptor`], whose
//! fingerprints cover the full shape of every argument and result type
//! ([`relay_proto::shape`]); the caller sends its fingerprints when it opens a channel and the
//! host refuses a mismatch with a clear error naming the method and the type, so a stale client
//! never gets garbage back.
//!
//! # Evolving a contract
//! On the wire a request names its method by a stable 32-bit id, [`method_id`] of the method's
//! name, followed by the arguments; a response likewise. Positions never matter, so:
//! - a host may add methods anywhere in the trait, and reorder them: old callers keep working;
//! - a caller may know methods the host lacks: the channel opens, and calling such a method fails
//!   with [`CallError::UnknownMethod`](crate::CallError::UnknownMethod);
//! - changing a method's signature (the shape of an argument or return type, anywhere within it,
//!   or whether it is one-way) is refused when a channel opens, with
//!   [`OpenError::ContractMismatch`](crate::OpenError::ContractMismatch) naming the contract,
//!   the method and, where it is a named type, the type. Renaming a method is removing it and
//!   adding another.
//!
//! A request the host cannot decode, or a response the caller cannot decode, fails that one
//! call with [`CallError::Undecodable`](crate::CallError::Undecodable); the channel stays usable.
//!
//! # One-way methods
//! A method marked `#[oneway]` returns nothing, and its client method returns `Ok(())` as soon as
//! the request is queued on the channel, without waiting for the host (it waits only while the
//! channel's small queue is full, at most until the call's deadline; it fails at once on a channel
//! known to be broken). The host runs a channel's one-way requests one after another, in the order
//! they were sent, each to completion (no deadline applies). A two-way request that arrives while
//! earlier one-way requests are outstanding starts once they have finished, so a caller that
//! awaits each call sees its calls take effect in the order it made them; otherwise two-way
//! requests run concurrently, as before. A one-way request the host cannot run (it lacks the
//! method, or the channel breaks first) is dropped without a word to the caller.
//!
//! A method marked `#[idempotent]` is recorded as such in its [`MethodDescriptor`], for callers
//! that retry.

mod codec;
mod nesting;

use std::future::Future;
use std::io;

use serde::{Serialize, de::DeserializeOwned};

use crate::json::{JsonCallError, JsonReply};

#[doc(hidden)]
pub use codec::decode_request;
pub(crate) use codec::{MAX_DEADLINE, Typed, typed};

pub use relay_proto::contract::{ContractDescriptor, MethodDescriptor, MethodShapes, check_compatible, method_id};

/// Why a dispatcher could not run a request.
///
/// What the generated dispatcher returns; the host answers the caller with an error that its
/// stub turns into [`CallError::UnknownMethod`](crate::CallError::UnknownMethod) or
/// [`CallError::Undecodable`](crate::CallError::Undecodable). The channel stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The request named a method id this side's contract does not have.
    #[error("no method with id {id:#010x}")]
    UnknownMethod {
        /// The method id the request carried.
        id: u32,
    },
    /// The request could not be decoded as this side's contract says.
    #[error("cannot decode the request: {detail}")]
    Undecodable {
        /// What the decoder said.
        detail: String,
    },
}

/// A contract's message that can stand for one that did not decode, so that a frame whose
/// request id could be read is still answered. Implemented by the generated `FooRequest` and
/// `FooResponse`.
pub trait Undecodable {
    /// The message for one whose method id was read but not the rest: what the decoder said.
    fn undecodable(detail: String) -> Self;
}

/// The host side of a contract: turns a decoded request into a response by calling the service.
///
/// Implemented by the `ServeFoo<S>` type that `#[relay_service]` generates for `trait Foo`;
/// hand one to [`Listener::serve`](crate::host::Listener::serve).
pub trait Dispatch: Clone + Send + Sync + 'static {
    /// The contract's request enum.
    type Request: DeserializeOwned + Undecodable + tarpc::RequestName + Send + 'static;
    /// The contract's response enum.
    type Response: Serialize + Send + 'static;
    /// The contract this dispatcher serves.
    const CONTRACT: &'static ContractDescriptor;

    /// Runs one request to completion; a request for a method this contract lacks, or whose
    /// arguments could not be decoded, gives a [`DispatchError`].
    fn dispatch(
        &self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, DispatchError>> + Send + 'static;

    /// Builds the request for the method called `method` from `body`, a JSON object of its named
    /// arguments (empty for `{}`), for a call over HTTP; see [`json`](crate::json).
    ///
    /// ```
    /// # use relay_rpc::contract::Dispatch;
    /// #[relay_rpc::relay_service]
    /// pub trait Calculator {
    ///     async fn add(a: i64, b: i64) -> i64;
    /// }
    /// # struct Calc;
    /// # impl Calculator for Calc { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
    ///
    /// let request = ServeCalculator::<Calc>::json_request("add", br#"{"a":2,"b":3}"#).unwrap();
    /// assert!(matches!(request, CalculatorRequest::Add { a: 2, b: 3 }));
    /// assert!(ServeCalculator::<Calc>::json_request("add", br#"{"a":2}"#).is_err());
    /// ```
    fn json_request(method: &str, body: &[u8]) -> Result<Self::Request, JsonCallError>;

    /// The reply to a call over HTTP that [`dispatch`](Self::dispatch) answered with `response`:
    /// `200` with the result as JSON, or, for a method returning `Result<T, E>` that returned
    /// `Err(e)`, the service's error ([`JsonReply::service_error`]).
    ///
    /// ```
    /// # use relay_rpc::contract::Dispatch;
    /// #[relay_rpc::relay_service]
    /// pub trait Calculator {
    ///     async fn add(a: i64, b: i64) -> i64;
    /// }
    /// # struct Calc;
    /// # impl Calculator for Calc { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
    ///
    /// let reply = ServeCalculator::<Calc>::json_response(CalculatorResponse::Add(5));
    /// assert_eq!((reply.status, &reply.body[..]), (200, &b"5"[..]));
    /// ```
    fn json_response(response: Self::Response) -> JsonReply;
}

/// Request ids with this bit set are one-way: the host runs them and sends no response. tarpc
/// numbers its own requests from 0 up, so they never reach this range.
pub(crate) const ONEWAY_ID_BIT: u64 = 1 << 63;

/// How the host tells a caller that it could not run a request: a tarpc `ServerError` of kind
/// `NotFound` whose detail starts with one of these prefixes. (tarpc encodes an error's kind as
/// an `i32` and decodes it as a `u32`, which bincode's varints make disagree for every kind but
/// `NotFound`, the one encoded as 0; nothing else in a relay host answers with it.)
const REFUSAL_KIND: io::ErrorKind = io::ErrorKind::NotFound;
const UNKNOWN_METHOD_DETAIL: &str = "relay-rpc: unknown method";
const UNDECODABLE_DETAIL: &str = "relay-rpc: undecodable request: ";

/// The error a host answers a request it could not run with.
pub(crate) fn dispatch_error(contract: &ContractDescriptor, error: DispatchError) -> tarpc::ServerError {
    match error {
        DispatchError::UnknownMethod { id } => tarpc::ServerError::new(
            REFUSAL_KIND,
            format!("{UNKNOWN_METHOD_DETAIL} {id:#010x} in contract `{}`", contract.name),
        ),
        DispatchError::Undecodable { detail, .. } => {
            tarpc::ServerError::new(REFUSAL_KIND, format!("{UNDECODABLE_DETAIL}{detail}"))
        }
    }
}

/// What a host's error says about a request it could not run, if it is one of
/// [`dispatch_error`]'s.
pub(crate) enum HostRefusal<'a> {
    /// It lacks the method called.
    UnknownMethod,
    /// It could not decode the arguments; what its decoder said.
    Undecodable(&'a str),
}

impl<'a> HostRefusal<'a> {
    pub(crate) fn of(error: &'a tarpc::ServerError) -> Option<Self> {
        if error.kind != REFUSAL_KIND {
            return None;
        }
        if error.detail.starts_with(UNKNOWN_METHOD_DETAIL) {
            return Some(Self::UnknownMethod);
        }
        error.detail.strip_prefix(UNDECODABLE_DETAIL).map(Self::Undecodable)
    }
}

/// The detail of a message that decoded only as far as its method id: what the decoder said.
/// Called by the generated `Deserialize` impls.
pub fn undecodable(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// A dispatcher (a generated `ServeFoo`) as a [`tarpc::server::Serve`], for serving a contract
/// over a tarpc transport of your own, without a relay (the benchmark's direct baseline does).
/// A request for a method the contract lacks is answered with the same error a host gives.
///
/// ```
/// # fn check<D: relay_rpc::contract::Dispatch>(dispatcher: D) {
/// use relay_rpc::contract::TarpcServe;
/// fn is_serve<S: tarpc::server::Serve>(_: &S) {}
/// is_serve(&TarpcServe(dispatcher));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TarpcServe<D>(pub D);

impl<D: Dispatch> tarpc::server::Serve for TarpcServe<D> {
    type Req = D::Request;
    type Resp = D::Response;

    async fn serve(
        self,
        _ctx: tarpc::context::Context,
        request: D::Request,
    ) -> Result<D::Response, tarpc::ServerError> {
        self.0.dispatch(request).await.map_err(|e| dispatch_error(D::CONTRACT, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_errors_are_recognised() {
        static C: ContractDescriptor =
            ContractDescriptor::new("Calc", &[MethodDescriptor::new("add", "add(i64,i64)->i64")]);
        let error = dispatch_error(&C, DispatchError::UnknownMethod { id: 0xdead_beef });
        assert!(matches!(HostRefusal::of(&error), Some(HostRefusal::UnknownMethod)), "{error:?}");
        assert!(error.detail.contains("0xdeadbeef") && error.detail.contains("`Calc`"), "{}", error.detail);
        let error = dispatch_error(&C, DispatchError::Undecodable { detail: "too short".into() });
        assert!(matches!(HostRefusal::of(&error), Some(HostRefusal::Undecodable("too short"))), "{error:?}");
        let other = tarpc::ServerError::new(io::ErrorKind::NotFound, "not found".into());
        assert!(HostRefusal::of(&other).is_none());
        let other = tarpc::ServerError::new(io::ErrorKind::Other, error.detail.clone());
        assert!(HostRefusal::of(&other).is_none());
        let other = tarpc::ServerError::new(io::ErrorKind::NotFound, "bad".into());
        assert!(HostRefusal::of(&other).is_none());
    }
}
