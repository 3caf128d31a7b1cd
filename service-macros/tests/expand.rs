//! What `#[relay_service]` generates: the contract descriptor, request names, and dispatch to a
//! real implementation.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use relay_rpc::__private::{Dispatch, RequestName};
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
    assert_ne!(before.methods[0].fingerprint, after.methods[0].fingerprint);
    assert_ne!(before.fingerprint, after.fingerprint);
    // Same methods, different contract name.
    assert_ne!(before.fingerprint, CalculatorClient::CONTRACT.fingerprint);
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
    assert!(matches!(response, CalculatorResponse::Add(5)), "{response:?}");

    let shared = ServeCalculator::from_arc(std::sync::Arc::new(Calc));
    let response = run(shared.clone().dispatch(CalculatorRequest::Divide { a: 7, b: 2 }));
    assert!(matches!(response, CalculatorResponse::Divide(Ok(3))), "{response:?}");
    match run(shared.dispatch(CalculatorRequest::Divide { a: 7, b: 0 })) {
        CalculatorResponse::Divide(Err(error)) => assert_eq!(error.reason, "division by zero"),
        other => panic!("unexpected {other:?}"),
    }
    let response = run(server.dispatch(CalculatorRequest::Ping {}));
    assert!(matches!(response, CalculatorResponse::Ping(())), "{response:?}");
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

/// `FooClient::new` wraps a channel: never called.
#[allow(dead_code)]
fn client_from_channel(channel: relay_rpc::Channel) -> CalculatorClient {
    CalculatorClient::new(channel)
}
