//! The codec of typed channels: tarpc's messages in bincode, one per channel frame.
//!
//! A frame that does not decode never ends the channel. If it gets as far as naming its request
//! (the request id of a tarpc request or response), it is delivered as that request or response
//! carrying the contract's "undecodable" message, so the host answers the call with an error and
//! the caller's call fails with [`CallError::Undecodable`](crate::CallError::Undecodable);
//! otherwise it is dropped, and the channel goes on with the next frame.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bincode::Options as _;
use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::nesting::{Limited, MAX_NESTING};
use super::{Dispatch, Undecodable};
use crate::channel::ChannelError;

/// The bincode options typed channels use: bincode's defaults (varint integers), but bytes after
/// a decoded message are ignored. A request or response is the last field of its frame, and one
/// for a method id this side does not know decodes as "unknown" without reading its arguments,
/// which it has no types for.
type WireOptions = bincode::config::WithOtherTrailing<bincode::DefaultOptions, bincode::config::AllowTrailing>;

fn wire_options() -> WireOptions {
    bincode::DefaultOptions::new().allow_trailing_bytes()
}

/// Decodes one message from `frame`, nested at most [`MAX_NESTING`] levels deep.
fn decode<T: DeserializeOwned>(frame: &[u8]) -> bincode::Result<T> {
    let mut deserializer = bincode::Deserializer::from_slice(frame, wire_options());
    T::deserialize(Limited::new(&mut deserializer, MAX_NESTING))
}

/// `Item` in, `SinkItem` out, with [`WireOptions`]. Each frame is decoded from a slice of its own
/// bytes, so no length it claims is trusted further than the frame (bincode reads strings only
/// after checking that their bytes are there; serde reserves at most 1 MiB for a sequence before
/// reading its elements), and no message may nest deeper than [`MAX_NESTING`] levels. A received frame is [`checked`](Received::check) first, and one that
/// fails is [`salvaged`](Received::salvage) if it can be.
pub(crate) struct Codec<Item, SinkItem>(PhantomData<fn() -> (Item, SinkItem)>);

/// A [`Codec`].
fn codec<Item, SinkItem>() -> Codec<Item, SinkItem> {
    Codec(PhantomData)
}

/// A frame that neither decoded nor could be salvaged: dropped by [`Typed`].
#[derive(Debug, thiserror::Error)]
#[error("dropping a frame that names no request: {0}")]
struct UnnamedFrame(String);

impl<Item: Received, SinkItem> tokio_serde::Deserializer<Item> for Codec<Item, SinkItem> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> io::Result<Item> {
        let decoded = Item::check(src).and_then(|()| decode(src).map_err(|e| e.to_string()));
        decoded.or_else(|detail| {
            Item::salvage(src, detail)
                .map_err(|detail| io::Error::new(io::ErrorKind::InvalidData, UnnamedFrame(detail)))
        })
    }
}

impl<Item, SinkItem: Serialize> tokio_serde::Serializer<SinkItem> for Codec<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> io::Result<Bytes> {
        wire_options().serialize(item).map(Bytes::from).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A message typed channels receive: what its frame must pass before serde decodes it, and what
/// stands for it when it does not decode.
pub(crate) trait Received: DeserializeOwned {
    /// Refuses a frame that decoding, or running the message, would panic on: why.
    fn check(_frame: &[u8]) -> Result<(), String> {
        Ok(())
    }

    /// The message standing for `frame`, which failed to decode or [`check`](Self::check) for
    /// the reason `detail`, if the frame says what it answers; else `detail` back.
    fn salvage(frame: &[u8], detail: String) -> Result<Self, String>;
}

impl<Resp: DeserializeOwned + Undecodable> Received for tarpc::Response<Resp> {
    fn salvage(frame: &[u8], detail: String) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Start {
            request_id: u64,
        }
        match wire_options().deserialize::<Start>(frame) {
            Ok(Start { request_id }) => Ok(tarpc::Response { request_id, message: Ok(Resp::undecodable(detail)) }),
            Err(_) => Err(detail),
        }
    }
}

impl<Req: DeserializeOwned + Undecodable> Received for tarpc::ClientMessage<Req> {
    fn check(frame: &[u8]) -> Result<(), String> {
        // Only as far as the deadline: a frame whose deadline is too far is refused even when
        // what follows the deadline is broken too.
        #[derive(Deserialize)]
        enum Deadline {
            Request(Duration),
            #[allow(dead_code)]
            Cancel,
        }
        match wire_options().deserialize(frame) {
            Ok(Deadline::Request(deadline)) if deadline > MAX_DEADLINE => {
                Err(format!("the request's deadline is {deadline:?} away, more than a host takes"))
            }
            _ => Ok(()),
        }
    }

    fn salvage(frame: &[u8], detail: String) -> Result<Self, String> {
        match wire_options().deserialize(frame) {
            Ok(RequestStart::Request { deadline, trace_context, id }) => {
                let mut context = tarpc::context::current();
                context.deadline = std::time::Instant::now() + deadline.min(SALVAGED_DEADLINE);
                context.trace_context = trace_context;
                let message = Req::undecodable(detail);
                Ok(tarpc::ClientMessage::Request(tarpc::Request { context, id, message }))
            }
            _ => Err(detail),
        }
    }
}

/// How a `ClientMessage` starts: its variant, then, for a request, its context (the deadline as
/// a duration, then the trace context) and id.
#[derive(Deserialize)]
enum RequestStart {
    Request {
        deadline: Duration,
        trace_context: tarpc::trace::Context,
        id: u64,
    },
    #[allow(dead_code)]
    Cancel,
}

/// The furthest deadline a host takes. A request carries its deadline as a duration, which tarpc
/// adds to the present (panicking on overflow) and its server keeps in a timer wheel that holds
/// about two years (panicking beyond): a caller must not be able to panic the host with it.
pub(crate) const MAX_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The deadline of the answer to a salvaged request, at most: it is answered at once.
const SALVAGED_DEADLINE: Duration = Duration::from_secs(60);

/// Decodes `frame` as a host decodes every frame a caller sends on a channel, whoever the caller
/// (the relay checks tokens, never what a channel carries): a tarpc message carrying a request
/// of `D`'s contract, through the host's own codec. For fuzzing (`relay-rpc/fuzz`) and tests;
/// not a stable API.
pub fn decode_request<D: Dispatch>(frame: &[u8]) -> io::Result<tarpc::ClientMessage<D::Request>> {
    use tokio_serde::Deserializer as _;
    let codec = std::pin::pin!(codec::<tarpc::ClientMessage<D::Request>, tarpc::Response<D::Response>>());
    codec.deserialize(&BytesMut::from(frame))
}

type Framed<In, Out> = tokio_serde::Framed<crate::Channel, In, Out, Codec<In, Out>>;

/// A channel carrying typed messages: `In` decoded from received frames, `Out` encoded into sent
/// ones, with [`Codec`]; a frame that names no request is dropped (and logged), not an error.
pub(crate) struct Typed<In, Out> {
    inner: Framed<In, Out>,
}

/// Runs `channel` with [`Codec`].
pub(crate) fn typed<In, Out>(channel: crate::Channel) -> Typed<In, Out> {
    Typed { inner: tokio_serde::Framed::new(channel, codec()) }
}

// Nothing in a `Typed` is pinned structurally: `Framed` is `Unpin` over an `Unpin` channel.
impl<In, Out> Unpin for Typed<In, Out> {}

impl<In: Received, Out> Stream for Typed<In, Out> {
    type Item = Result<In, ChannelError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<In, ChannelError>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Err(ChannelError::Io(e)))) if e.get_ref().is_some_and(|e| e.is::<UnnamedFrame>()) => {
                    tracing::debug!(error = %e, "typed channel");
                }
                other => return other,
            }
        }
    }
}

impl<In, Out: Serialize> Sink<Out> for Typed<In, Out> {
    type Error = ChannelError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Out) -> Result<(), ChannelError> {
        Pin::new(&mut self.get_mut().inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of a test contract: `T`, or what stands for an undecodable one.
    #[derive(Debug, PartialEq)]
    enum Msg<T> {
        Decoded(T),
        Undecodable(String),
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Msg<T> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            T::deserialize(d).map(Msg::Decoded)
        }
    }

    impl<T> Undecodable for Msg<T> {
        fn undecodable(detail: String) -> Self {
            Msg::Undecodable(detail)
        }
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
    fn decode<T: DeserializeOwned>(frame: &[u8]) -> io::Result<tarpc::ClientMessage<Msg<T>>> {
        use tokio_serde::Deserializer as _;
        std::pin::pin!(codec::<tarpc::ClientMessage<Msg<T>>, ()>()).deserialize(&BytesMut::from(frame))
    }

    /// The request `frame` decodes to, with its id, deadline and message.
    fn request<T: DeserializeOwned + std::fmt::Debug>(frame: &[u8]) -> tarpc::Request<Msg<T>> {
        match decode::<T>(frame) {
            Ok(tarpc::ClientMessage::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn deadlines_too_far_away_are_answered_not_a_panic() {
        // Regression: tarpc adds the deadline to `Instant::now()`, and its server puts it in a
        // timer wheel that holds about two years; both panicked on what any caller could send.
        let year = 365 * 24 * 3600;
        for secs in [u64::MAX, i64::MAX as u64, 3 * year, year + 1] {
            let request = request::<String>(&request_frame(Duration::from_secs(secs), "hi"));
            assert_eq!(request.id, 1);
            let Msg::Undecodable(detail) = request.message else { panic!("{secs} s taken") };
            assert!(detail.contains("deadline"), "{detail}");
            assert!(request.context.deadline <= std::time::Instant::now() + SALVAGED_DEADLINE);
        }
        // Regression (found by the fuzzer): a deadline too far, and the frame cut short after it.
        let frame = request_frame(Duration::from_secs(u64::MAX), "hi");
        for cut in [12, 14, 20] {
            let err = decode::<String>(&frame[..cut]);
            assert!(err.is_err(), "cut at {cut}: {err:?}");
        }
        for secs in [0, 10, year] {
            let request = request::<String>(&request_frame(Duration::from_secs(secs), "hi"));
            assert_eq!(request.message, Msg::Decoded("hi".to_owned()), "a deadline {secs} s away refused");
        }
        let cancel = tarpc::ClientMessage::<String>::Cancel { trace_context: Default::default(), request_id: 7 };
        let decoded = decode::<String>(&wire_options().serialize(&cancel).unwrap()).unwrap();
        assert!(matches!(decoded, tarpc::ClientMessage::Cancel { request_id: 7, .. }));
    }

    #[test]
    fn frames_that_name_their_request_are_salvaged_and_others_dropped() {
        let frame = request_frame(Duration::from_secs(10), (7u32, 8u64));
        let request = request::<(u32, u64, String)>(&frame);
        assert!(matches!(&request.message, Msg::Undecodable(d) if d.contains("end")), "{:?}", request.message);
        for cut in [0, 1, 3] {
            let err = decode::<(u32, u64)>(&frame[..cut]).unwrap_err();
            assert!(err.get_ref().is_some_and(|e| e.is::<UnnamedFrame>()), "{err}");
        }
        let response = tarpc::Response { request_id: 9, message: Ok::<_, tarpc::ServerError>(5u8) };
        let frame = wire_options().serialize(&response).unwrap();
        use tokio_serde::Deserializer as _;
        let decoded = std::pin::pin!(codec::<tarpc::Response<Msg<(u8, u8)>>, ()>())
            .deserialize(&BytesMut::from(&frame[..]))
            .unwrap();
        assert_eq!(decoded.request_id, 9);
        assert!(matches!(decoded.message, Ok(Msg::Undecodable(_))), "{:?}", decoded.message);
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
                let message = request::<T>(&huge).message;
                assert!(matches!(message, Msg::Undecodable(_)), "{len} elements claimed: {message:?}");
            }
        }
        claiming_huge::<(u32, Vec<u64>)>((7u32, Vec::<u64>::new()));
        claiming_huge::<(u32, String)>((7u32, String::new()));
        claiming_huge::<(u32, Vec<Vec<u8>>)>((7u32, vec![Vec::<u8>::new()]));
        claiming_huge::<(u32, Vec<Option<String>>)>((7u32, vec![Some(String::new())]));
        claiming_huge::<(u32, crate::byte_payload::ByteBuf)>((7u32, crate::byte_payload::AsBytes(&[])));
    }
}
