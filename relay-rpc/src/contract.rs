//! Service contracts: what `#[relay_service]` describes, and the host-side dispatch trait.
//!
//! A contract is a name plus the signatures of its methods. Both ends carry a
//! [`ContractDescriptor`]; the caller sends its descriptor when it opens a channel and the host
//! refuses a mismatch with a clear error, so a stale client never gets garbage back.
//!
//! # Evolving a contract
//! On the wire a request names its method by a stable 32-bit id, [`method_id`] of the method's
//! name, followed by the arguments; a response likewise. Positions never matter, so:
//! - a host may add methods anywhere in the trait, and reorder them: old callers keep working;
//! - a caller may know methods the host lacks: the channel opens, and calling such a method fails
//!   with [`CallError::UnknownMethod`](crate::CallError::UnknownMethod);
//! - changing a method's signature (argument or return types, or whether it is one-way) is
//!   refused when a channel opens, with [`OpenError::ContractMismatch`](crate::OpenError::ContractMismatch)
//!   naming the contract and the method. Renaming a method is removing it and adding another.
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

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use bincode::Options as _;
use bytes::{Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

pub use relay_proto::contract::{ContractDescriptor, MethodDescriptor, check_compatible, method_id};

/// A request named a method id this side's contract does not have.
///
/// What the generated dispatcher returns for such a request; the host answers the caller with an
/// error that its stub turns into [`CallError::UnknownMethod`](crate::CallError::UnknownMethod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownMethod {
    /// The method id the request carried.
    pub id: u32,
}

/// The host side of a contract: turns a decoded request into a response by calling the service.
///
/// Implemented by the `ServeFoo<S>` type that `#[relay_service]` generates for `trait Foo`;
/// hand one to [`Listener::serve`](crate::host::Listener::serve).
pub trait Dispatch: Clone + Send + Sync + 'static {
    /// The contract's request enum.
    type Request: DeserializeOwned + tarpc::RequestName + Send + 'static;
    /// The contract's response enum.
    type Response: Serialize + Send + 'static;
    /// The contract this dispatcher serves.
    const CONTRACT: &'static ContractDescriptor;

    /// Runs one request to completion; a request for a method this contract lacks gives
    /// [`UnknownMethod`].
    fn dispatch(
        &self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, UnknownMethod>> + Send + 'static;
}

/// The bincode options typed channels use: bincode's defaults (varint integers), but bytes after
/// a decoded message are ignored. A request or response is the last field of its frame, and one
/// for a method id this side does not know decodes as "unknown" without reading its arguments,
/// which it has no types for.
pub(crate) type WireOptions =
    bincode::config::WithOtherTrailing<bincode::DefaultOptions, bincode::config::AllowTrailing>;

fn wire_options() -> WireOptions {
    bincode::DefaultOptions::new().allow_trailing_bytes()
}

/// The codec of typed channels: `Item` in, `SinkItem` out, with [`WireOptions`]. Each frame is
/// decoded from a slice of its own bytes, so no length it claims is trusted further than the
/// frame (bincode reads strings only after checking that their bytes are there; serde reserves
/// at most 1 MiB for a sequence before reading its elements). A received frame is
/// [`checked`](Received::check) first.
pub(crate) struct Codec<Item, SinkItem>(PhantomData<fn() -> (Item, SinkItem)>);

/// A [`Codec`].
pub(crate) fn codec<Item, SinkItem>() -> Codec<Item, SinkItem> {
    Codec(PhantomData)
}

impl<Item: Received, SinkItem> tokio_serde::Deserializer<Item> for Codec<Item, SinkItem> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> io::Result<Item> {
        Item::check(src)?;
        wire_options().deserialize(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<Item, SinkItem: Serialize> tokio_serde::Serializer<SinkItem> for Codec<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> io::Result<Bytes> {
        wire_options().serialize(item).map(Bytes::from).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A message typed channels receive, and what its frame must pass before serde decodes it.
pub(crate) trait Received: DeserializeOwned {
    /// Refuses a frame that decoding, or running the message, would panic on.
    fn check(_frame: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

impl<Resp: DeserializeOwned> Received for tarpc::Response<Resp> {}

impl<Req: DeserializeOwned> Received for tarpc::ClientMessage<Req> {
    fn check(frame: &[u8]) -> io::Result<()> {
        check_deadline(frame)
    }
}

/// The furthest deadline a host takes. A request carries its deadline as a duration, which tarpc
/// adds to the present (panicking on overflow) and its server keeps in a timer wheel that holds
/// about two years (panicking beyond): a caller must not be able to panic the host with it.
pub(crate) const MAX_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// A request's deadline is further away than [`MAX_DEADLINE`].
#[derive(Debug, thiserror::Error)]
#[error("the request's deadline is {0:?} away, more than a host takes")]
struct DeadlineTooFar(Duration);

/// Refuses a request whose deadline is further away than [`MAX_DEADLINE`]. A `ClientMessage`
/// starts with its variant, then, for a request, the deadline; whatever else is wrong with the
/// frame is left to the decoder.
fn check_deadline(frame: &[u8]) -> io::Result<()> {
    #[derive(serde::Deserialize)]
    enum Start {
        Request(Duration),
        #[allow(dead_code)]
        Cancel,
    }
    match wire_options().deserialize(frame) {
        Ok(Start::Request(deadline)) if deadline > MAX_DEADLINE => {
            Err(io::Error::new(io::ErrorKind::InvalidData, DeadlineTooFar(deadline)))
        }
        _ => Ok(()),
    }
}

/// Decodes `frame` as a host decodes every frame a caller sends on a channel, whoever the caller
/// (the relay checks tokens, never what a channel carries): a tarpc message carrying a request
/// of `D`'s contract, through the host's own codec. For fuzzing (`relay-rpc/fuzz`) and tests;
/// not a stable API.
#[doc(hidden)]
pub fn decode_request<D: Dispatch>(frame: &[u8]) -> io::Result<tarpc::ClientMessage<D::Request>> {
    use tokio_serde::Deserializer as _;
    let codec = std::pin::pin!(codec::<tarpc::ClientMessage<D::Request>, tarpc::Response<D::Response>>());
    codec.deserialize(&BytesMut::from(frame))
}

/// A channel carrying typed messages: `In` decoded from received frames, `Out` encoded into sent
/// ones, with [`codec`].
pub(crate) type Typed<In, Out> = tokio_serde::Framed<crate::Channel, In, Out, Codec<In, Out>>;

/// Runs `channel` with [`codec`].
pub(crate) fn typed<In, Out>(channel: crate::Channel) -> Typed<In, Out> {
    tokio_serde::Framed::new(channel, codec())
}

/// Request ids with this bit set are one-way: the host runs them and sends no response. tarpc
/// numbers its own requests from 0 up, so they never reach this range.
pub(crate) const ONEWAY_ID_BIT: u64 = 1 << 63;

/// How the host tells a caller that its contract lacks the method called: a tarpc `ServerError`
/// of this kind whose detail starts with [`UNKNOWN_METHOD_DETAIL`]. (`NotFound` survives tarpc's
/// encoding of error kinds; nothing else in a relay host answers with it.)
const UNKNOWN_METHOD_KIND: io::ErrorKind = io::ErrorKind::NotFound;
const UNKNOWN_METHOD_DETAIL: &str = "relay-rpc: unknown method";

/// The error a host answers a request for a method it lacks with.
pub(crate) fn unknown_method_error(contract: &ContractDescriptor, unknown: UnknownMethod) -> tarpc::ServerError {
    let detail = format!("{UNKNOWN_METHOD_DETAIL} {:#010x} in contract `{}`", unknown.id, contract.name);
    tarpc::ServerError::new(UNKNOWN_METHOD_KIND, detail)
}

/// Whether a host's error says that it lacks the method called.
pub(crate) fn is_unknown_method(error: &tarpc::ServerError) -> bool {
    error.kind == UNKNOWN_METHOD_KIND && error.detail.starts_with(UNKNOWN_METHOD_DETAIL)
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
        self.0.dispatch(request).await.map_err(|unknown| unknown_method_error(D::CONTRACT, unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_method_errors_are_recognised() {
        const C: ContractDescriptor =
            ContractDescriptor::new("Calc", &[MethodDescriptor::new("add", "add(i64,i64)->i64")]);
        let error = unknown_method_error(&C, UnknownMethod { id: 0xdead_beef });
        assert!(is_unknown_method(&error), "{error:?}");
        assert!(error.detail.contains("0xdeadbeef") && error.detail.contains("`Calc`"), "{}", error.detail);
        let other = tarpc::ServerError::new(io::ErrorKind::NotFound, "not found".into());
        assert!(!is_unknown_method(&other));
        let other = tarpc::ServerError::new(io::ErrorKind::Other, error.detail.clone());
        assert!(!is_unknown_method(&other));
    }

    /// What a caller sends for `message`, with a deadline `deadline` away.
    fn request_frame<T: Serialize>(deadline: Duration, message: T) -> Vec<u8> {
        let request =
            tarpc::ClientMessage::Request(tarpc::Request { context: tarpc::context::current(), id: 1, message });
        let frame = wire_options().serialize(&request).unwrap();
        // The variant (one byte), the deadline, the rest: the deadline replaced.
        let mut rest = &frame[1..];
        let _: Duration = wire_options().deserialize_from(&mut rest).unwrap();
        [&frame[..1], &wire_options().serialize(&deadline).unwrap(), rest].concat()
    }

    /// Decodes `frame` as a host does.
    fn decode<T: DeserializeOwned>(frame: &[u8]) -> io::Result<tarpc::ClientMessage<T>> {
        use tokio_serde::Deserializer as _;
        std::pin::pin!(codec::<tarpc::ClientMessage<T>, ()>()).deserialize(&BytesMut::from(frame))
    }

    #[test]
    fn deadlines_too_far_away_are_refused_not_a_panic() {
        // Regression: tarpc adds the deadline to `Instant::now()`, and its server puts it in a
        // timer wheel that holds about two years; both panicked on what any caller could send.
        let year = 365 * 24 * 3600;
        for secs in [u64::MAX, i64::MAX as u64, 3 * year, year + 1] {
            let err = decode::<String>(&request_frame(Duration::from_secs(secs), "hi")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("deadline"), "{err}");
        }
        for secs in [0, 10, year] {
            let Ok(tarpc::ClientMessage::Request(request)) =
                decode::<String>(&request_frame(Duration::from_secs(secs), "hi"))
            else {
                panic!("a deadline {secs} s away refused")
            };
            assert_eq!(request.message, "hi");
        }
        let cancel = tarpc::ClientMessage::<String>::Cancel { trace_context: Default::default(), request_id: 7 };
        let decoded = decode::<String>(&wire_options().serialize(&cancel).unwrap()).unwrap();
        assert!(matches!(decoded, tarpc::ClientMessage::Cancel { request_id: 7, .. }));
    }

    #[test]
    fn lengths_a_frame_claims_are_not_reserved_before_the_bytes_are_there() {
        // A message ending in an empty sequence or string, whose length (its last byte, 0) is
        // replaced by a huge one: decoding fails for want of bytes, without reserving the length
        // (which would abort the process, a capacity overflow or an allocation failure).
        fn claiming_huge<T: DeserializeOwned + std::fmt::Debug>(message: impl Serialize) {
            let frame = request_frame(Duration::from_secs(10), message);
            assert_eq!(frame.last(), Some(&0));
            for len in [1u64 << 60, u64::MAX, 1 << 31, 1 << 20] {
                let mut huge = frame[..frame.len() - 1].to_vec();
                huge.push(0xfd); // bincode's varint: a u64 follows.
                huge.extend_from_slice(&len.to_le_bytes());
                assert!(decode::<T>(&huge).is_err(), "{len} elements claimed");
            }
        }
        claiming_huge::<(u32, Vec<u64>)>((7u32, Vec::<u64>::new()));
        claiming_huge::<(u32, String)>((7u32, String::new()));
        claiming_huge::<(u32, Vec<Vec<u8>>)>((7u32, vec![Vec::<u8>::new()]));
        claiming_huge::<(u32, Vec<Option<String>>)>((7u32, vec![Some(String::new())]));
        claiming_huge::<(u32, crate::byte_payload::ByteBuf)>((7u32, crate::byte_payload::AsBytes(&[])));
    }
}
