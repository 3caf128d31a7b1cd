//! What `#[relay_service]` generates: the contract descriptor, request names, the wire encoding
//! of requests and responses, and dispatch to a real implementation.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bincode::Options;
use relay_rpc::__private::{Dispatch, DispatchError, RequestName};
use relay_rpc::contract::method_id;
use serde::{Deserialize, Serialize};

/// An error the service returns inside its result.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct MathError {
    reason: String,
}

#[relay_rpc::relay_service]
pub trait Calculator {
    /// Adds.
    async fn add(a: i64, b: i64) -> i64;
    async fn divide(a: i64, b: i64) -> Result<i64, MathError>;
    async fn ping();
}

/// Version 2 of `Calculator`: methods added first and in the middle, one-way and idempotent ones.
mod v2 {
    // Signatures are compared as written: `MathError`, not `super::MathError`.
    use super::MathError;

    #[relay_rpc::relay_service(name = "Calculator")]
    pub trait Calculator {
        async fn negate(a: i64) -> i64;
        /// Adds.
        #[idempotent]
        async fn add(a: i64, b: i64) -> i64;
        /// Logs.
        #[oneway]
        async fn log(line: String);
        #[oneway]
        #[allow(clippy::unused_unit)]
        async fn reset() -> ();
        async fn divide(a: i64, b: i64) -> Result<i64, MathError>;
        async fn ping();
    }
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn divide(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_div(b).ok_or(MathError { reason: "division by zero".into() })
    }

    async fn ping(&self) {}
}

mod renamed {
    #[relay_rpc::relay_service(name = "example.Calculator")]
    pub trait Calculator {
        async fn add(a: i64, b: i64) -> i64;
    }
}

/// The same contract as `renamed`, with one argument type changed.
mod changed {
    #[relay_rpc::relay_service(name = "example.Calculator")]
    pub trait Calculator {
        async fn add(a: i64, b: i32) -> i64;
    }
}

mod empty {
    #[relay_rpc::relay_service]
    pub trait Nothing {}
}

/// Runs a future that never waits on anything (every service here completes at once).
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

#[test]
fn contract_lists_methods_with_signatures() {
    let contract = CalculatorClient::CONTRACT;
    assert_eq!(contract.name, "Calculator");
    let methods: Vec<(&str, &str)> = contract.methods.iter().map(|m| (m.name, m.signature)).collect();
    assert_eq!(
        methods,
        [("add", "add(i64,i64)->i64"), ("divide", "divide(i64,i64)->Result<i64,MathError>"), ("ping", "ping()->()"),]
    );
    assert_eq!(contract.method("divide").unwrap().name, "divide");
    assert_eq!(<ServeCalculator<Calc> as Dispatch>::CONTRACT, contract);
}

#[test]
fn name_override() {
    assert_eq!(renamed::CalculatorClient::CONTRACT.name, "example.Calculator");
    assert_eq!(renamed::CalculatorClient::CONTRACT.methods[0].signature, "add(i64,i64)->i64");
    assert_eq!(empty::NothingClient::CONTRACT.name, "Nothing");
    assert!(empty::NothingClient::CONTRACT.methods.is_empty());
}

#[test]
fn fingerprints_follow_signatures() {
    let before = renamed::CalculatorClient::CONTRACT;
    let after = changed::CalculatorClient::CONTRACT;
    assert_eq!(after.methods[0].signature, "add(i64,i32)->i64");
    assert_ne!(before.methods[0].fingerprint(), after.methods[0].fingerprint());
    assert_ne!(before.fingerprint(), after.fingerprint());
    // Same methods, different contract name.
    assert_ne!(before.fingerprint(), CalculatorClient::CONTRACT.fingerprint());
    // The fingerprints are traced from the types' shapes: `i32` is a shape, not a name.
    assert_eq!(after.methods[0].shapes.map(|s| s().args[1].to_string()).as_deref(), Some("i32"));
}

#[test]
fn request_names_and_debug() {
    let add = CalculatorRequest::Add { a: 1, b: 2 };
    assert_eq!(add.name(), "Calculator.add");
    assert_eq!(CalculatorRequest::Ping {}.name(), "Calculator.ping");
    let renamed = renamed::CalculatorRequest::Add { a: 1, b: 2 };
    assert_eq!(renamed.name(), "example.Calculator.add");
    assert_eq!(format!("{add:?}"), "Add");
    assert_eq!(format!("{:?}", CalculatorResponse::Ping(())), "Ping");
    assert_eq!(format!("{:?}", ServeCalculator::new(Calc)), "ServeCalculator { .. }");
}

#[test]
fn dispatches_to_the_implementation() {
    let server = ServeCalculator::new(Calc);
    let response = run(server.dispatch(CalculatorRequest::Add { a: 2, b: 3 }));
    assert!(matches!(response, Ok(CalculatorResponse::Add(5))), "{response:?}");

    let shared = ServeCalculator::from_arc(std::sync::Arc::new(Calc));
    let response = run(shared.clone().dispatch(CalculatorRequest::Divide { a: 7, b: 2 }));
    assert!(matches!(response, Ok(CalculatorResponse::Divide(Ok(3)))), "{response:?}");
    match run(shared.dispatch(CalculatorRequest::Divide { a: 7, b: 0 })) {
        Ok(CalculatorResponse::Divide(Err(error))) => assert_eq!(error.reason, "division by zero"),
        other => panic!("unexpected {other:?}"),
    }
    let response = run(server.dispatch(CalculatorRequest::Ping {}));
    assert!(matches!(response, Ok(CalculatorResponse::Ping(()))), "{response:?}");
    let response = run(server.dispatch(CalculatorRequest::__Unknown(7)));
    assert!(matches!(response, Err(DispatchError::UnknownMethod { id: 7 })), "{response:?}");
    let response = run(server.dispatch(CalculatorRequest::__Undecodable("bad".into())));
    assert!(matches!(response, Err(DispatchError::Undecodable { ref detail }) if detail == "bad"), "{response:?}");
}

/// The options typed channels encode with: bincode's defaults, trailing bytes allowed.
fn wire() -> impl Options {
    bincode::DefaultOptions::new().allow_trailing_bytes()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    wire().serialize(value).unwrap()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    wire().deserialize(bytes).unwrap()
}

#[test]
fn messages_are_the_method_id_then_the_arguments_or_result() {
    let id = method_id("add");
    assert_eq!(encode(&CalculatorRequest::Add { a: 1, b: -2 }), encode(&(id, 1i64, -2i64)));
    assert_eq!(encode(&CalculatorResponse::Add(3)), encode(&(id, 3i64)));
    assert_eq!(encode(&CalculatorRequest::Ping {}), encode(&(method_id("ping"),)));
    // Strict bincode, without trailing bytes, reads them too.
    let strict = bincode::DefaultOptions::new();
    let request: CalculatorRequest = strict.deserialize(&encode(&CalculatorRequest::Add { a: 1, b: -2 })).unwrap();
    assert!(matches!(request, CalculatorRequest::Add { a: 1, b: -2 }), "{request:?}");
    let response: CalculatorResponse = strict.deserialize(&encode(&CalculatorResponse::Divide(Ok(4)))).unwrap();
    assert!(matches!(response, CalculatorResponse::Divide(Ok(4))), "{response:?}");
}

#[test]
fn messages_survive_reordering_and_additions() {
    // v1 -> v2: v2 has the method at another position.
    let request: v2::CalculatorRequest = decode(&encode(&CalculatorRequest::Divide { a: 7, b: 2 }));
    assert!(matches!(request, v2::CalculatorRequest::Divide { a: 7, b: 2 }), "{request:?}");
    let response: CalculatorResponse = decode(&encode(&v2::CalculatorResponse::Divide(Ok(3))));
    assert!(matches!(response, CalculatorResponse::Divide(Ok(3))), "{response:?}");
    let request: CalculatorRequest = decode(&encode(&v2::CalculatorRequest::Ping {}));
    assert!(matches!(request, CalculatorRequest::Ping {}), "{request:?}");
}

#[test]
fn unknown_methods_decode_to_a_distinct_value() {
    let request: CalculatorRequest = decode(&encode(&v2::CalculatorRequest::Negate { a: 5 }));
    assert!(matches!(request, CalculatorRequest::__Unknown(id) if id == method_id("negate")), "{request:?}");
    assert_eq!(request.name(), "Calculator.<unknown method>");
    assert_eq!(format!("{request:?}"), format!("Unknown({:#010x})", method_id("negate")));
    let request: CalculatorRequest = decode(&encode(&v2::CalculatorRequest::Log { line: "x".repeat(300) }));
    assert!(matches!(request, CalculatorRequest::__Unknown(id) if id == method_id("log")), "{request:?}");
    let response: CalculatorResponse = decode(&encode(&v2::CalculatorResponse::Negate(-5)));
    assert!(matches!(response, CalculatorResponse::__Unknown(id) if id == method_id("negate")), "{response:?}");
    // An unknown value re-encodes as its id alone.
    assert_eq!(encode(&request), encode(&(method_id("log"),)));
}

#[test]
fn messages_whose_method_id_reads_but_not_the_rest_are_undecodable_not_errors() {
    let bytes = encode(&CalculatorRequest::Add { a: 1, b: 2 });
    let request = wire().deserialize::<CalculatorRequest>(&bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(&request, CalculatorRequest::__Undecodable(detail) if !detail.is_empty()), "{request:?}");
    assert_eq!(request.name(), "Calculator.<undecodable request>");
    assert_eq!(format!("{request:?}"), "Undecodable");
    let response = wire().deserialize::<CalculatorResponse>(&encode(&(method_id("divide"), 9u8))).unwrap();
    assert!(matches!(response, CalculatorResponse::__Undecodable(_)), "{response:?}");
    // Without a method id there is nothing to answer.
    assert!(wire().deserialize::<CalculatorRequest>(&[]).is_err());
}

#[test]
fn self_describing_formats_work_too() {
    let json = serde_json::to_string(&CalculatorRequest::Add { a: 1, b: 2 }).unwrap();
    assert_eq!(json, format!("[{},1,2]", method_id("add")));
    let request: CalculatorRequest = serde_json::from_str(&json).unwrap();
    assert!(matches!(request, CalculatorRequest::Add { a: 1, b: 2 }), "{request:?}");
    let response: CalculatorResponse = serde_json::from_str(&format!("[{},null]", method_id("ping"))).unwrap();
    assert!(matches!(response, CalculatorResponse::Ping(())), "{response:?}");
    let request = serde_json::from_str::<CalculatorRequest>(&format!("[{},1]", method_id("add"))).unwrap();
    assert!(matches!(&request, CalculatorRequest::__Undecodable(e) if e.contains("invalid length 2")), "{request:?}");
}

#[test]
fn descriptors_carry_ids_and_flags() {
    let contract = v2::CalculatorClient::CONTRACT;
    for method in contract.methods {
        assert_eq!(method.id, method_id(method.name), "{}", method.name);
    }
    let log = contract.method("log").unwrap();
    assert!(log.oneway && !log.idempotent);
    assert_eq!(log.signature, "log(String)->()");
    assert_eq!(contract.method("reset").unwrap().signature, "reset()->()");
    let add = contract.method("add").unwrap();
    assert!(add.idempotent && !add.oneway);
    // Idempotence is not part of the fingerprint; the shared methods are compatible.
    assert_eq!(contract.method_fingerprint("add"), CalculatorClient::CONTRACT.method_fingerprint("add"));
    let info = CalculatorClient::CONTRACT.into();
    assert_eq!(relay_rpc::contract::check_compatible(contract, &info), Ok(()));
    let info = contract.into();
    assert_eq!(relay_rpc::contract::check_compatible(CalculatorClient::CONTRACT, &info), Ok(()));
}

struct Calc2(std::sync::Mutex<Vec<String>>);

impl v2::Calculator for Calc2 {
    async fn negate(&self, a: i64) -> i64 {
        -a
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn log(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    async fn reset(&self) {
        self.0.lock().unwrap().clear();
    }

    async fn divide(&self, a: i64, b: i64) -> Result<i64, MathError> {
        Calc.divide(a, b).await
    }

    async fn ping(&self) {}
}

#[test]
fn one_way_methods_dispatch_like_others() {
    let service = std::sync::Arc::new(Calc2(Default::default()));
    let server = v2::ServeCalculator::from_arc(service.clone());
    let response = run(server.dispatch(v2::CalculatorRequest::Log { line: "hello".into() }));
    assert!(matches!(response, Ok(v2::CalculatorResponse::Log(()))), "{response:?}");
    assert_eq!(*service.0.lock().unwrap(), ["hello"]);
}

#[test]
fn generated_types_have_the_bounds_the_runtime_needs() {
    fn wire<T: Serialize + serde::de::DeserializeOwned + Send + 'static>() {}
    fn handle<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    wire::<CalculatorRequest>();
    wire::<CalculatorResponse>();
    wire::<empty::NothingRequest>();
    handle::<CalculatorClient>();
    handle::<ServeCalculator<Calc>>();
}

/// Type-checks the client API without a relay: never called.
#[allow(dead_code)]
async fn client_api(
    connection: &relay_rpc::Connection,
    contexts: [relay_rpc::CallContext; 3],
) -> Result<Result<i64, MathError>, relay_rpc::CallError> {
    let client = match CalculatorClient::connect(connection, "calc").await {
        Ok(client) => client,
        Err(_) => return Ok(Ok(0)),
    };
    let [add, ping, divide] = contexts;
    let sum: i64 = client.add(add, 1, 2).await?;
    let (): () = client.ping(ping).await?;
    client.divide(divide, sum, 1).await
}

/// One-way client methods return `Result<(), CallError>`: never called.
#[allow(dead_code)]
async fn oneway_client_api(
    client: v2::CalculatorClient,
    ctx: relay_rpc::CallContext,
) -> Result<(), relay_rpc::CallError> {
    client.log(ctx, "line".to_owned()).await?;
    client.reset(ctx).await
}

/// `FooClient::new` wraps a channel: never called.
#[allow(dead_code)]
fn client_from_channel(channel: relay_rpc::Channel) -> CalculatorClient {
    CalculatorClient::new(channel)
}

type Serve = ServeCalculator<Calc>;

#[test]
fn json_requests_are_built_from_named_arguments() {
    let request = Serve::json_request("add", br#"{"b":3,"a":2,"extra":true}"#).unwrap();
    assert!(matches!(request, CalculatorRequest::Add { a: 2, b: 3 }), "{request:?}");
    let request = Serve::json_request("ping", b"").unwrap();
    assert!(matches!(request, CalculatorRequest::Ping {}), "{request:?}");
    let request = v2::ServeCalculator::<Calc2>::json_request("log", br#"{"line":"hi"}"#).unwrap();
    assert!(matches!(&request, v2::CalculatorRequest::Log { line } if line == "hi"), "{request:?}");
}

#[test]
fn json_requests_name_what_is_wrong() {
    use relay_rpc::json::JsonCallError;
    let error = Serve::json_request("sub", b"{}").unwrap_err();
    assert_eq!(error, JsonCallError::UnknownMethod { method: "sub".into() });
    // Names are the methods' own, case-sensitive, and never variant names.
    assert!(matches!(Serve::json_request("Add", b"{}"), Err(JsonCallError::UnknownMethod { .. })));
    match Serve::json_request("add", br#"{"a":2}"#) {
        Err(JsonCallError::InvalidArguments { detail }) => assert!(detail.contains("missing field `b`"), "{detail}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(Serve::json_request("add", b"[2,3]"), Err(JsonCallError::InvalidArguments { .. })));
}

#[test]
fn json_responses_are_the_bare_result() {
    let reply = Serve::json_response(CalculatorResponse::Add(5));
    assert_eq!((reply.status, reply.content_type, &reply.body[..]), (200, Some("application/json"), &b"5"[..]));
    let reply = Serve::json_response(CalculatorResponse::Ping(()));
    assert_eq!((reply.status, &reply.body[..]), (200, &b"{}"[..]));
    let reply = Serve::json_response(CalculatorResponse::Divide(Ok(3)));
    assert_eq!((reply.status, &reply.body[..]), (200, &b"3"[..]));
}

#[test]
fn json_service_errors_are_failed_preconditions_named_by_type() {
    let reply = Serve::json_response(CalculatorResponse::Divide(Err(MathError { reason: "no".into() })));
    assert_eq!(reply.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"code": "failed_precondition", "message": "MathError", "serviceError": {"reason": "no"}})
    );
}

#[test]
fn json_responses_a_host_never_produces_are_internal_errors() {
    let reply = Serve::json_response(CalculatorResponse::__Unknown(7));
    assert_eq!(reply.status, 500);
    let reply = Serve::json_response(CalculatorResponse::__Undecodable("bad".into()));
    assert_eq!(reply.status, 500);
}

mod bytes {
    #[relay_rpc::relay_service]
    pub trait Blobs {
        async fn reverse(data: Vec<u8>) -> Vec<u8>;
    }

    pub struct Impl;

    impl Blobs for Impl {
        async fn reverse(&self, mut data: Vec<u8>) -> Vec<u8> {
            data.reverse();
            data
        }
    }
}

/// A known limit: byte vectors are JSON arrays of numbers, not base64 strings.
#[test]
fn json_byte_vectors_are_arrays_for_now() {
    type Serve = bytes::ServeBlobs<bytes::Impl>;
    let request = Serve::json_request("reverse", br#"{"data":[1,2,3]}"#).unwrap();
    let response = run(Serve::new(bytes::Impl).dispatch(request)).unwrap();
    assert_eq!(&Serve::json_response(response).body[..], b"[3,2,1]");
}
