//! Contracts that cannot silently disagree, through a real relay over QUIC and `wss://`: two
//! programs that share a contract's name and methods but not the shape of a type are refused
//! when the channel opens, naming the method and the type; a request the host cannot decode, or
//! a response the caller cannot decode, fails that one call with `CallError::Undecodable` (and
//! hand-crafted bad frames get typed answers), while the channel stays usable for the next.

use std::time::Duration;

use bincode::Options as _;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use relay_rpc::contract::method_id;
use relay_rpc::{CallContext, CallError, Channel, MessagePart, OpenError};
use relay_tests::TestRelay;

const NAME: &str = "shapes.Recs";

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

/// The first version: `Rec { x: u32, y: String }`.
mod v1 {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Rec {
        pub x: u32,
        pub y: String,
    }

    #[relay_rpc::relay_service(name = "shapes.Recs")]
    pub trait Recs {
        async fn rec(r: Rec) -> Rec;
        async fn ping() -> u32;
    }

    pub struct Echo;

    impl Recs for Echo {
        async fn rec(&self, r: Rec) -> Rec {
            r
        }

        async fn ping(&self) -> u32 {
            7
        }
    }
}

/// Declares a version of the contract whose `Rec` is `$rec`, with a host that answers `rec`
/// with `Rec::default()` and `ping` with 7.
macro_rules! version {
    ($name:ident, $($rec:tt)*) => {
        mod $name {
            #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
            pub struct Rec $($rec)*

            #[relay_rpc::relay_service(name = "shapes.Recs")]
            pub trait Recs {
                async fn rec(r: Rec) -> Rec;
                async fn ping() -> u32;
            }

            pub struct Fixed;

            impl Recs for Fixed {
                async fn rec(&self, _r: Rec) -> Rec {
                    Rec::default()
                }

                async fn ping(&self) -> u32 {
                    7
                }
            }
        }
    };
}

// A field added in the middle; a field's type changed (same size on the wire); two fields
// swapped (both strings: bincode would have decoded them, swapped).
version!(added, { pub x: u32, pub z: u64, pub y: String });
version!(signed, { pub x: i32, pub y: String });
version!(swapped, { pub y: String, pub x: u32, pub w: String });
version!(swapped_back, { pub w: String, pub x: u32, pub y: String });

/// Hosts of every version, so that none of their code is unused.
#[test]
fn every_version_has_a_host() {
    let _ = (added::ServeRecs::new(added::Fixed), signed::ServeRecs::new(signed::Fixed));
    let _ = (swapped::ServeRecs::new(swapped::Fixed), swapped_back::ServeRecs::new(swapped_back::Fixed));
}

fn transports(relay: &TestRelay) -> [(&'static str, String); 2] {
    [("quic", relay.url.clone()), ("wss", relay.ws_url.clone())]
}

#[tokio::test]
async fn a_type_of_another_shape_is_refused_at_open_naming_method_and_type() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let host = relay.host_on(&url).await;
        let at = |v: &str| format!("recs-{v}-{transport}");
        tokio::spawn(host.listen(&at("added")).await.unwrap().serve(added::ServeRecs::new(added::Fixed)));
        tokio::spawn(host.listen(&at("signed")).await.unwrap().serve(signed::ServeRecs::new(signed::Fixed)));
        tokio::spawn(host.listen(&at("swapped")).await.unwrap().serve(swapped::ServeRecs::new(swapped::Fixed)));
        tokio::spawn(host.listen(&at("v1")).await.unwrap().serve(v1::ServeRecs::new(v1::Echo)));
        let caller = relay.caller_on(&url).await;

        for (version, listener_rec) in [
            ("added", "Rec{x:u32,z:u64,y:String}"),
            ("signed", "Rec{x:i32,y:String}"),
            ("swapped", "Rec{y:String,x:u32,w:String}"),
        ] {
            let err = v1::RecsClient::connect(&caller, &at(version)).await.unwrap_err();
            let OpenError::ContractMismatch(detail) = &err else {
                panic!("{transport}/{version}: expected a contract mismatch, got {err:?}")
            };
            assert!(detail.contains(&format!("`{NAME}.rec`")), "{transport}/{version}: {detail}");
            assert!(detail.contains("type `Rec`") && detail.contains(listener_rec), "{transport}/{version}: {detail}");
            assert!(!detail.contains("ping"), "{transport}/{version}: only `rec` differs: {detail}");
        }
        // Two fields swapped back and forth: refused both ways.
        let err = swapped_back::RecsClient::connect(&caller, &at("swapped")).await.unwrap_err();
        assert!(matches!(&err, OpenError::ContractMismatch(d) if d.contains("type `Rec`")), "{transport}: {err:?}");

        // The same shapes, declared apart, fit.
        let same = v1::RecsClient::connect(&caller, &at("v1")).await.unwrap();
        let rec = v1::Rec { x: 3, y: "three".into() };
        assert_eq!(same.rec(ctx(), rec.clone()).await.unwrap(), rec, "{transport}");
    }
}

/// The options typed channels encode with: bincode's defaults, trailing bytes allowed.
fn wire() -> impl bincode::Options {
    bincode::DefaultOptions::new().allow_trailing_bytes()
}

/// A request frame as a caller's stub builds it, carrying `message` (any serializable value
/// standing for the contract's request: the method id, then the arguments).
fn request_frame(id: u64, message: impl serde::Serialize) -> Bytes {
    let request = tarpc::ClientMessage::Request(tarpc::Request { context: tarpc::context::current(), id, message });
    wire().serialize(&request).unwrap().into()
}

/// The next response on `channel`.
async fn response(channel: &mut Channel) -> tarpc::Response<v1::RecsResponse> {
    let frame = tokio::time::timeout(Duration::from_secs(20), channel.next())
        .await
        .expect("an answer in time")
        .expect("the channel open")
        .expect("a frame");
    wire().deserialize(&frame).unwrap()
}

#[tokio::test]
async fn hand_crafted_bad_requests_get_typed_answers_and_the_channel_stays_usable() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let address = format!("recs-raw-{transport}");
        let host = relay.host_on(&url).await;
        tokio::spawn(host.listen(&address).await.unwrap().serve(v1::ServeRecs::new(v1::Echo)));
        let caller = relay.caller_on(&url).await;
        let mut channel = caller.open_channel(&address, Some(v1::RecsClient::CONTRACT)).await.unwrap();
        let rec = method_id("rec");

        // `rec` with its `y` missing, and with `y` not UTF-8.
        channel.send(request_frame(1, (rec, 5u32))).await.unwrap();
        channel.send(request_frame(2, (rec, 5u32, serde_bytes(&[0xff, 0xfe])))).await.unwrap();
        // Bytes that name no request: dropped.
        channel.send(Bytes::from_static(&[0xff, 0x00])).await.unwrap();
        channel.send(Bytes::new()).await.unwrap();
        // A good request after all of them.
        channel.send(request_frame(3, (method_id("ping"),))).await.unwrap();

        for id in [1, 2] {
            let answer = response(&mut channel).await;
            assert_eq!(answer.request_id, id, "{transport}");
            let Err(error) = &answer.message else { panic!("{transport}: request {id} answered {answer:?}") };
            assert!(error.detail.starts_with("relay-rpc: undecodable request: "), "{transport}: {error:?}");
        }
        let answer = response(&mut channel).await;
        assert_eq!(answer.request_id, 3, "{transport}");
        assert!(matches!(answer.message, Ok(v1::RecsResponse::Ping(7))), "{transport}: {answer:?}");
    }
}

/// `bytes` as bincode encodes a byte string: its length, then the bytes.
fn serde_bytes(bytes: &'static [u8]) -> impl serde::Serialize {
    struct Raw(&'static [u8]);
    impl serde::Serialize for Raw {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    Raw(bytes)
}

#[tokio::test]
async fn a_response_the_caller_cannot_decode_fails_that_call_only() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let address = format!("recs-rogue-{transport}");
        let host = relay.host_on(&url).await;
        let mut listener = host.listen(&address).await.unwrap();
        // A host that answers `rec` with a truncated `Rec`, and `ping` properly.
        let rogue = tokio::spawn(async move {
            let mut channel = listener.accept().await.unwrap().accept().await.unwrap();
            while let Some(Ok(frame)) = channel.next().await {
                let tarpc::ClientMessage::Request(request) =
                    wire().deserialize::<tarpc::ClientMessage<v1::RecsRequest>>(&frame).unwrap()
                else {
                    continue;
                };
                let answer = match request.message {
                    v1::RecsRequest::Rec { .. } => wire()
                        .serialize(&tarpc::Response {
                            request_id: request.id,
                            message: Ok::<_, tarpc::ServerError>((method_id("rec"), 5u32)),
                        })
                        .unwrap(),
                    other => wire()
                        .serialize(&tarpc::Response {
                            request_id: request.id,
                            message: Ok::<_, tarpc::ServerError>(match other {
                                v1::RecsRequest::Ping {} => v1::RecsResponse::Ping(7),
                                _ => unreachable!("only `rec` and `ping` are called"),
                            }),
                        })
                        .unwrap(),
                };
                channel.send(answer.into()).await.unwrap();
            }
        });
        let caller = relay.caller_on(&url).await;
        let client = v1::RecsClient::connect(&caller, &address).await.unwrap();

        let err = client.rec(ctx(), v1::Rec { x: 1, y: "one".into() }).await.unwrap_err();
        match &err {
            CallError::Undecodable { contract, method, part: MessagePart::Response, detail } => {
                assert_eq!((contract.as_str(), method.as_str()), (NAME, "rec"), "{transport}");
                assert!(!detail.is_empty(), "{transport}");
            }
            other => panic!("{transport}: expected an undecodable response, got {other:?}"),
        }
        assert!(err.to_string().starts_with(&format!("cannot decode the response of `{NAME}.rec`")), "{err}");
        assert_eq!(client.ping(ctx()).await.unwrap(), 7, "{transport}: the channel is still good");
        drop(client);
        rogue.abort();
    }
}

mod deep {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct List {
        pub head: u32,
        pub tail: Option<Box<List>>,
    }

    #[relay_rpc::relay_service(name = "shapes.Deep")]
    pub trait Deep {
        async fn length(list: List) -> u32;
    }

    pub struct Counter;

    impl Deep for Counter {
        async fn length(&self, list: List) -> u32 {
            let mut len = 1;
            let mut next = list.tail;
            while let Some(node) = next {
                len += 1;
                next = node.tail;
            }
            len
        }
    }
}

#[tokio::test]
async fn a_value_nested_deeper_than_a_host_follows_is_answered_and_the_host_lives_on() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let address = format!("deep-{transport}");
        let host = relay.host_on(&url).await;
        tokio::spawn(host.listen(&address).await.unwrap().serve(deep::ServeDeep::new(deep::Counter)));
        let caller = relay.caller_on(&url).await;
        let mut channel = caller.open_channel(&address, Some(deep::DeepClient::CONTRACT)).await.unwrap();

        // A list a million long: `head` 7, then `Some`, ..., then `None`: two bytes a node. Decoded
        // as it comes, it would overflow the host's stack.
        let mut list = [7u8, 1].repeat(1_000_000);
        *list.last_mut().unwrap() = 0;
        let mut message = wire().serialize(&method_id("length")).unwrap();
        message.extend_from_slice(&list);
        let request = wire().serialize(&tarpc::ClientMessage::Request(tarpc::Request {
            context: tarpc::context::current(),
            id: 1,
            message: (),
        }));
        let mut frame = request.unwrap();
        frame.extend_from_slice(&message);
        channel.send(frame.into()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(20), channel.next()).await.unwrap().unwrap().unwrap();
        let answer: tarpc::Response<deep::DeepResponse> = wire().deserialize(&reply).unwrap();
        let Err(error) = answer.message else { panic!("{transport}: answered {answer:?}") };
        assert!(error.detail.contains("nests more than"), "{transport}: {error:?}");

        // The host is alive, and serves lists of a reasonable length.
        let client = deep::DeepClient::connect(&caller, &address).await.unwrap();
        let mut list = deep::List { head: 0, tail: None };
        for head in 1..100 {
            list = deep::List { head, tail: Some(Box::new(list)) };
        }
        assert_eq!(client.length(ctx(), list).await.unwrap(), 100, "{transport}");
    }
}
