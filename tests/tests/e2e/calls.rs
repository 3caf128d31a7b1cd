//! Typed calls through a real relay over QUIC: types, service errors, concurrency, deadlines,
//! cancellation, unknown addresses and contract mismatches.

use std::time::Duration;

use calculator::{Calc, CalculatorClient, MathError, ServeCalculator};
use relay_rpc::{CallContext, CallError, OpenError};
use relay_tests::lab::{LabClient, LabError, LabEvent, LabHost, Point, ServeLab, Shape};
use relay_tests::{TestRelay, next_event};

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

#[tokio::test]
async fn calls_round_trip_assorted_types() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    let (lab, _events) = LabHost::new("a");
    tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let client = LabClient::connect(&caller, "lab").await.unwrap();

    let p = |x, label: &str| Point { x, y: -x, label: label.into() };
    for shape in [
        Shape::Circle { center: p(1.5, "c"), radius: 2.0 },
        Shape::Polygon(vec![p(0.0, "a"), p(1.0, "b"), p(2.0, "ü")]),
        Shape::Empty,
    ] {
        assert_eq!(client.echo_shape(ctx(), shape.clone()).await.unwrap(), shape);
    }
    let mib: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut reversed = mib.clone();
    reversed.reverse();
    assert_eq!(client.reverse(ctx(), mib).await.unwrap(), reversed);
    assert_eq!(client.first_even(ctx(), vec![1, 3, 4, 6]).await.unwrap(), Some(4));
    assert_eq!(client.first_even(ctx(), vec![1, 3]).await.unwrap(), None);
    assert_eq!(client.check(ctx(), 7).await.unwrap(), Ok(7));
    assert_eq!(client.check(ctx(), -1).await.unwrap(), Err(LabError::Refused(-1)));
    assert_eq!(client.whoami(ctx()).await.unwrap(), "a");
}

#[tokio::test]
async fn the_calculator_example_answers_and_keeps_its_own_errors() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let caller = relay.caller().await;
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    assert_eq!(calc.add(ctx(), 2, 3).await.unwrap(), 5);
    assert_eq!(calc.divide(ctx(), 7, 2).await.unwrap(), Ok(3));
    assert_eq!(calc.divide(ctx(), 1, 0).await.unwrap(), Err(MathError::DivisionByZero));
    assert_eq!(calc.multiply(ctx(), i64::MAX, 2).await.unwrap(), Err(MathError::Overflow));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_callers_make_a_hundred_calls_each() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let mut callers = tokio::task::JoinSet::new();
    for c in 0..100i64 {
        // A hundred simultaneous TLS handshakes on two cores: be patient with the handshake.
        let (url, options) = (relay.url.clone(), relay.options().with_handshake_timeout(Duration::from_secs(60)));
        callers.spawn(async move {
            let connection = relay_rpc::Connection::connect(&url, options).await.unwrap();
            let calc = CalculatorClient::connect(&connection, "calc").await.unwrap();
            for i in 0..100i64 {
                assert_eq!(calc.add(ctx(), c, i).await.unwrap(), c + i);
            }
            100
        });
    }
    let mut answered = 0;
    while let Some(n) = callers.join_next().await {
        answered += n.unwrap();
    }
    assert_eq!(answered, 10_000);
}

#[tokio::test]
async fn many_calls_in_flight_on_one_channel() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let caller = relay.caller().await;
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    let calls = (0..500i64).map(|i| {
        let calc = calc.clone();
        async move { calc.add(ctx(), i, i).await.unwrap() }
    });
    let sums = futures::future::join_all(calls).await;
    assert_eq!(sums, (0..500).map(|i| 2 * i).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_address_without_listener_fails_at_once() {
    let relay = TestRelay::start().await;
    let caller = relay.caller().await;
    // `NoListener`, not `Timeout`: the relay answered at once rather than leaving the open to time out.
    let err = CalculatorClient::connect(&caller, "nobody").await.unwrap_err();
    assert!(matches!(&err, OpenError::NoListener { address } if address == "nobody"), "{err:?}");
    assert!(CallError::from(err).is_listener_gone());
    let err = CalculatorClient::connect(&caller, "a/../b").await.unwrap_err();
    assert!(matches!(err, OpenError::InvalidAddress(_)), "{err:?}");
}

#[tokio::test]
async fn a_slow_handler_exceeds_the_deadline_and_is_cancelled() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    let (lab, mut events) = LabHost::new("a");
    tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let client = LabClient::connect(&caller, "lab").await.unwrap();

    let deadline = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = client.sleep(CallContext::with_timeout(deadline), 10_000, 1).await.unwrap_err();
    assert!(matches!(err, CallError::DeadlineExceeded), "{err:?}");
    // Ended by its deadline, not by the handler's ten seconds.
    assert!(started.elapsed() < deadline + relay_tests::SLACK, "ended after {:?}", started.elapsed());
    assert_eq!(next_event(&mut events).await, LabEvent::Started(1));
    assert_eq!(next_event(&mut events).await, LabEvent::Cancelled(1), "the host cancels at the deadline");
    // The channel still works afterwards.
    assert_eq!(client.sleep(ctx(), 1, 2).await.unwrap(), 1);
}

#[tokio::test]
async fn dropping_a_call_cancels_its_handler() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    let (lab, mut events) = LabHost::new("a");
    tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let client = LabClient::connect(&caller, "lab").await.unwrap();

    let call = client.sleep(CallContext::with_timeout(Duration::from_secs(60)), 60_000, 7);
    tokio::select! {
        _ = call => panic!("the call cannot finish"),
        event = next_event(&mut events) => assert_eq!(event, LabEvent::Started(7)),
    }
    // The call future is dropped here, long before its deadline.
    assert_eq!(next_event(&mut events).await, LabEvent::Cancelled(7));
}

#[tokio::test]
async fn a_contract_mismatch_is_refused_when_the_channel_opens() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let caller = relay.caller().await;
    let err = LabClient::connect(&caller, "calc").await.unwrap_err();
    match err {
        OpenError::ContractMismatch(detail) => {
            assert!(detail.contains("Calculator") && detail.contains("Lab"), "{detail}")
        }
        other => panic!("expected a contract mismatch, got {other:?}"),
    }
}
