//! The generated code names only absolute paths, and its local names cannot clash with the
//! user's: the macro is used inside a `#![no_implicit_prelude]` module that also shadows common
//! names, with arguments named like the generated code's locals. `deny(missing_docs)` proves
//! every generated public item is documented.

#![deny(missing_docs)]

/// A module without the prelude.
pub mod hygiene {
    #![no_implicit_prelude]

    // Shadow names a sloppy expansion might rely on.
    #[allow(dead_code)]
    mod core {}
    #[allow(dead_code)]
    mod std {}
    #[allow(dead_code)]
    mod relay_rpc {}
    #[allow(dead_code)]
    struct Arc;
    #[allow(dead_code)]
    struct Ok;
    #[allow(dead_code)]
    trait Send {}
    #[allow(dead_code)]
    trait Clone {}
    #[allow(dead_code)]
    struct Some;
    #[allow(dead_code)]
    struct Err;
    #[allow(dead_code)]
    struct __RelayVisitor;
    #[allow(dead_code, non_camel_case_types)]
    struct __S;
    #[allow(dead_code)]
    struct __RelayArguments;

    /// A service whose argument names match the generated code's locals.
    #[::relay_rpc::relay_service]
    pub trait Clash {
        /// Combines every argument so that a mix-up shows.
        async fn combine(service: u64, ctx: u64, request: u64, value: u64, inner: u64, __relay_value: u64) -> u64;
        /// A method named like a local.
        async fn service(self_: u64) -> ::core::result::Result<u64, u64>;
        /// Raw identifiers as method and argument names.
        async fn r#type(r#in: u64) -> u64;
        /// A one-way method whose arguments are named like the encoding's locals.
        #[oneway]
        #[idempotent]
        async fn record(id: u64, f: u64, __relay_id: u64, __relay_seq: u64, __relay_tuple: u64, __relay_element: u64);
        /// Arguments named like the JSON code's locals.
        async fn json(__relay_method: u64, __relay_body: u64, __relay_arguments: u64, __relay_response: u64) -> u64;
        /// A deprecated method, still served without a warning.
        #[deprecated = "use `combine`"]
        async fn old() -> u64;
    }

    /// A trait named like the server's type parameter.
    #[::relay_rpc::relay_service(name = "hygiene.S")]
    pub trait S {
        /// Pings.
        async fn ping();
    }
}

use hygiene::{Clash, ClashRequest, ClashResponse, S, SClient, ServeClash, ServeS};
use relay_rpc::__private::Dispatch;

struct Impl;

impl Clash for Impl {
    async fn combine(&self, service: u64, ctx: u64, request: u64, value: u64, inner: u64, __relay_value: u64) -> u64 {
        service + 2 * ctx + 4 * request + 8 * value + 16 * inner + 32 * __relay_value
    }

    async fn service(&self, self_: u64) -> Result<u64, u64> {
        Err(self_)
    }

    async fn r#type(&self, r#in: u64) -> u64 {
        r#in + 1
    }

    async fn record(
        &self,
        id: u64,
        f: u64,
        __relay_id: u64,
        __relay_seq: u64,
        __relay_tuple: u64,
        __relay_element: u64,
    ) {
        assert_eq!([id, f, __relay_id, __relay_seq, __relay_tuple, __relay_element], [1, 2, 3, 4, 5, 6]);
    }

    async fn json(&self, __relay_method: u64, __relay_body: u64, __relay_arguments: u64, __relay_response: u64) -> u64 {
        __relay_method + 2 * __relay_body + 4 * __relay_arguments + 8 * __relay_response
    }

    async fn old(&self) -> u64 {
        0
    }
}

impl S for Impl {
    async fn ping(&self) {}
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

#[test]
fn arguments_named_like_locals_reach_the_implementation_in_order() {
    let request = ClashRequest::Combine { service: 1, ctx: 1, request: 1, value: 1, inner: 1, __relay_value: 1 };
    let response = run(ServeClash::new(Impl).dispatch(request));
    assert!(matches!(response, Ok(ClashResponse::Combine(63))), "{response:?}");
    let response = run(ServeClash::new(Impl).dispatch(ClashRequest::Service { self_: 7 }));
    assert!(matches!(response, Ok(ClashResponse::Service(Err(7)))), "{response:?}");
    let response = run(ServeClash::new(Impl).dispatch(ClashRequest::Type { r#in: 1 }));
    assert!(matches!(response, Ok(ClashResponse::Type(2))), "{response:?}");
    let request =
        ClashRequest::Record { id: 1, f: 2, __relay_id: 3, __relay_seq: 4, __relay_tuple: 5, __relay_element: 6 };
    let response = run(ServeClash::new(Impl).dispatch(request));
    assert!(matches!(response, Ok(ClashResponse::Record(()))), "{response:?}");
}

#[test]
fn arguments_named_like_locals_encode_in_order() {
    let request =
        ClashRequest::Record { id: 1, f: 2, __relay_id: 3, __relay_seq: 4, __relay_tuple: 5, __relay_element: 6 };
    let json = serde_json::to_string(&request).unwrap();
    assert_eq!(json, format!("[{},1,2,3,4,5,6]", relay_rpc::contract::method_id("record")));
    let back: ClashRequest = serde_json::from_str(&json).unwrap();
    assert!(matches!(
        back,
        ClashRequest::Record { id: 1, f: 2, __relay_id: 3, __relay_seq: 4, __relay_tuple: 5, __relay_element: 6 }
    ));
    let record = hygiene::ClashClient::CONTRACT.method("record").unwrap();
    assert!(record.oneway && record.idempotent);
}

#[test]
fn raw_identifiers_are_unraw_in_names() {
    use relay_rpc::__private::RequestName;
    let method = hygiene::ClashClient::CONTRACT.method("type").unwrap();
    assert_eq!(method.signature, "type(u64)->u64");
    assert_eq!(ClashRequest::Type { r#in: 1 }.name(), "Clash.type");
}

#[test]
fn trait_named_like_the_type_parameter() {
    assert_eq!(SClient::CONTRACT.name, "hygiene.S");
    let response = run(ServeS::new(Impl).dispatch(hygiene::SRequest::Ping {}));
    assert!(matches!(response, Ok(hygiene::SResponse::Ping(()))));
}

/// Type-checks client methods whose arguments are named `ctx` and `inner`: never called.
#[allow(dead_code)]
async fn client_api(client: hygiene::ClashClient, ctx: relay_rpc::CallContext) -> Result<u64, relay_rpc::CallError> {
    client.combine(ctx, 1, 2, 3, 4, 5, 6).await
}

/// Type-checks a one-way client method with many arguments: never called.
#[allow(dead_code)]
async fn oneway_client_api(
    client: hygiene::ClashClient,
    ctx: relay_rpc::CallContext,
) -> Result<(), relay_rpc::CallError> {
    client.record(ctx, 1, 2, 3, 4, 5, 6).await
}

/// Type-checks a client method with raw identifiers: never called.
#[allow(dead_code)]
async fn raw_client_api(
    client: hygiene::ClashClient,
    ctx: relay_rpc::CallContext,
) -> Result<u64, relay_rpc::CallError> {
    client.r#type(ctx, 1).await
}

#[test]
fn json_arguments_named_like_locals_reach_the_implementation() {
    let body = br#"{"__relay_method":1,"__relay_body":1,"__relay_arguments":1,"__relay_response":1}"#;
    let request = ServeClash::<Impl>::json_request("json", body).unwrap();
    let response = run(ServeClash::new(Impl).dispatch(request)).unwrap();
    assert_eq!(&ServeClash::<Impl>::json_response(response).body[..], b"15");
    // Raw identifiers are unraw in JSON names.
    let request = ServeClash::<Impl>::json_request("type", br#"{"in":1}"#).unwrap();
    assert!(matches!(request, ClashRequest::Type { r#in: 1 }), "{request:?}");
    // `::core::result::Result<u64, u64>` is spotted as a result; its `Err` is the service's error.
    let response = run(ServeClash::new(Impl).dispatch(ClashRequest::Service { self_: 7 })).unwrap();
    let reply = ServeClash::<Impl>::json_response(response);
    assert_eq!(reply.status, 400);
    assert_eq!(&reply.body[..], br#"{"code":"failed_precondition","message":"u64","serviceError":7}"#);
}
