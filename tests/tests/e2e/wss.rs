//! Typed calls through a real relay over `wss://` (Azure Relay's Hybrid Connections protocol):
//! Rust to Rust on WebSocket, and across transports (a QUIC host with `wss` callers, and the
//! reverse); the same typed errors as over QUIC for no listener, missing tokens, contract
//! mismatches, listeners that leave or die, expiring tokens and a draining relay.

use std::time::{Duration, Instant};

use bytes::Bytes;
use calculator::{Calc, CalculatorClient, MathError, ServeCalculator};
use futures::{SinkExt, StreamExt};
use relay_rpc::ErrorCode;
use relay_rpc::auth::{AuthFailure, SasKeyProvider, sas_token, unix_now};
use relay_rpc::{CallContext, CallError, ChannelError, ConnectError, ConnectOptions, Connection, Host};
use relay_rpc::{ListenError, OpenError, TlsError};
use relay_tests::lab::{LabClient, LabError, LabEvent, LabHost, Point, ServeLab, Shape};
use relay_tests::{SLACK, TestRelay, ms, next_event, until_draining};

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

fn mib() -> (Vec<u8>, Vec<u8>) {
    let bytes: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut reversed = bytes.clone();
    reversed.reverse();
    (bytes, reversed)
}

#[tokio::test]
async fn typed_calls_round_trip_over_wss() {
    let relay = TestRelay::start().await;
    let (_host, _events) = relay.serve_lab(&relay.ws_url, "lab", "a").await;
    let calc_host = relay.host_on(&relay.ws_url).await;
    tokio::spawn(calc_host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let caller = relay.caller_on(&relay.ws_url).await;

    let lab = LabClient::connect(&caller, "lab").await.unwrap();
    let p = |x, label: &str| Point { x, y: -x, label: label.into() };
    for shape in [
        Shape::Circle { center: p(1.5, "c"), radius: 2.0 },
        Shape::Polygon(vec![p(0.0, "a"), p(1.0, "b"), p(2.0, "ü")]),
        Shape::Empty,
    ] {
        assert_eq!(lab.echo_shape(ctx(), shape.clone()).await.unwrap(), shape);
    }
    let (bytes, reversed) = mib();
    assert_eq!(lab.reverse(ctx(), bytes).await.unwrap(), reversed, "a 1 MiB message each way");
    assert_eq!(lab.first_even(ctx(), vec![1, 3, 4, 6]).await.unwrap(), Some(4));
    assert_eq!(lab.check(ctx(), 7).await.unwrap(), Ok(7));
    assert_eq!(lab.check(ctx(), -1).await.unwrap(), Err(LabError::Refused(-1)));
    assert_eq!(lab.whoami(ctx()).await.unwrap(), "a");

    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    assert_eq!(calc.add(ctx(), 2, 3).await.unwrap(), 5);
    assert_eq!(calc.divide(ctx(), 7, 2).await.unwrap(), Ok(3));
    assert_eq!(calc.divide(ctx(), 1, 0).await.unwrap(), Err(MathError::DivisionByZero));
    assert_eq!(calc.multiply(ctx(), i64::MAX, 2).await.unwrap(), Err(MathError::Overflow));

    let calls = (0..200i64).map(|i| {
        let calc = calc.clone();
        async move { calc.add(ctx(), i, i).await.unwrap() }
    });
    let sums = futures::future::join_all(calls).await;
    assert_eq!(sums, (0..200).map(|i| 2 * i).collect::<Vec<_>>(), "many calls in flight on one channel");
}

#[tokio::test]
async fn the_relay_bridges_quic_and_wss_both_ways() {
    let relay = TestRelay::start().await;
    for (host_url, caller_url, name) in
        [(&relay.url, &relay.ws_url, "quic-host"), (&relay.ws_url, &relay.url, "wss-host")]
    {
        let (_host, _events) = relay.serve_lab(host_url, name, name).await;
        let calc_host = relay.host_on(host_url).await;
        let calc_address = format!("{name}/calc");
        tokio::spawn(calc_host.listen(&calc_address).await.unwrap().serve(ServeCalculator::new(Calc)));
        let caller = relay.caller_on(caller_url).await;

        let lab = LabClient::connect(&caller, name).await.unwrap();
        assert_eq!(lab.whoami(ctx()).await.unwrap(), name);
        let (bytes, reversed) = mib();
        assert_eq!(lab.reverse(ctx(), bytes).await.unwrap(), reversed, "{name}: 1 MiB across transports");
        let calc = CalculatorClient::connect(&caller, &calc_address).await.unwrap();
        assert_eq!(calc.add(ctx(), 40, 2).await.unwrap(), 42, "{name}");
        assert_eq!(calc.divide(ctx(), 1, 0).await.unwrap(), Err(MathError::DivisionByZero), "{name}");
    }
}

#[tokio::test]
async fn an_address_without_listener_fails_at_once() {
    let relay = TestRelay::start().await;
    let caller = relay.caller_on(&relay.ws_url).await;
    // `NoListener`, not `Timeout`: the relay answered at once rather than leaving the open to time out.
    let err = CalculatorClient::connect(&caller, "nobody").await.unwrap_err();
    assert!(matches!(&err, OpenError::NoListener { address } if address == "nobody"), "{err:?}");
    assert!(CallError::from(err).is_listener_gone());
    let err = CalculatorClient::connect(&caller, "a/../b").await.unwrap_err();
    assert!(matches!(err, OpenError::InvalidAddress(_)), "{err:?}");
}

#[tokio::test]
async fn missing_tokens_and_trust_are_refused_with_their_reasons() {
    let relay = TestRelay::start().await;
    let (_host, _events) = relay.serve_lab(&relay.ws_url, "lab", "a").await;
    let anonymous = Connection::connect(&relay.ws_url, relay.anonymous_options()).await.unwrap();
    match LabClient::connect(&anonymous, "lab").await {
        Err(OpenError::Unauthorized { reason: AuthFailure::MissingToken, .. }) => {}
        other => panic!("expected a missing-token refusal, got {other:?}"),
    }
    let host = Host::connect(&relay.ws_url, relay.anonymous_options()).await.unwrap();
    match host.listen("lab").await {
        Err(ListenError::Unauthorized { reason: AuthFailure::MissingToken, .. }) => {}
        other => panic!("expected a missing-token refusal, got {other:?}"),
    }
    let forged = sas_token(&format!("{}/lab", relay.ws_url), "RootManageSharedAccessKey", "guess", unix_now() + 60);
    let forged = Connection::connect(&relay.ws_url, relay.anonymous_options().with_token(forged)).await.unwrap();
    match LabClient::connect(&forged, "lab").await {
        Err(OpenError::Unauthorized { reason: AuthFailure::BadSignature, .. }) => {}
        other => panic!("expected a bad-signature refusal, got {other:?}"),
    }
    let untrusting = Connection::connect(&relay.ws_url, ConnectOptions::new()).await.unwrap_err();
    assert!(matches!(untrusting, ConnectError::Tls(TlsError::NoTrustAnchors)), "{untrusting:?}");
}

#[tokio::test]
async fn a_contract_mismatch_is_refused_when_the_channel_opens() {
    let relay = TestRelay::start().await;
    let host = relay.host_on(&relay.ws_url).await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    for caller_url in [&relay.ws_url, &relay.url] {
        let caller = relay.caller_on(caller_url).await;
        match LabClient::connect(&caller, "calc").await {
            Err(OpenError::ContractMismatch(detail)) => {
                assert!(detail.contains("Calculator") && detail.contains("Lab"), "{detail}")
            }
            other => panic!("expected a contract mismatch, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn hosts_accept_and_reject_raw_channels() {
    let relay = TestRelay::start().await;
    let host = relay.host_on(&relay.ws_url).await;
    let mut listener = host.listen("raw").await.unwrap();
    let caller = relay.caller_on(&relay.ws_url).await;

    let refused = tokio::spawn({
        let caller = caller.clone();
        async move { caller.open_channel("raw", None).await }
    });
    let incoming = listener.accept().await.unwrap();
    assert_eq!((incoming.address(), incoming.contract().name.as_str()), ("raw", ""));
    incoming.reject(ErrorCode::Rejected, "not today").await.unwrap();
    match refused.await.unwrap() {
        Err(OpenError::Refused { code: ErrorCode::Rejected, detail }) => assert_eq!(detail, "not today"),
        other => panic!("expected the listener's refusal, got {other:?}"),
    }

    let opened = tokio::spawn({
        let caller = caller.clone();
        async move { caller.open_channel("raw", None).await }
    });
    let mut served = listener.accept().await.unwrap().accept().await.unwrap();
    let mut channel = opened.await.unwrap().unwrap();
    for frame in [&b"one"[..], b"", &vec![7; 100_000]] {
        channel.send(Bytes::copy_from_slice(frame)).await.unwrap();
        let received = served.next().await.unwrap().unwrap();
        assert_eq!(&received[..], frame, "one message, one frame");
        served.send(received.freeze()).await.unwrap();
        assert_eq!(&channel.next().await.unwrap().unwrap()[..], frame);
    }
    channel.close().await.unwrap();
    assert!(served.next().await.is_none(), "a clean close ends the host's stream");
}

/// Serves the lab from a host on `host_url`, calls it from `caller_url`, closes the host in the
/// middle of a call: the caller gets `ListenerGone` at once, and the address is free.
async fn host_leaves(relay: &TestRelay, host_url: &str, caller_url: &str) {
    let (leaving, mut events) = relay.serve_lab(host_url, "lab", "leaving").await;
    let caller = relay.caller_on(caller_url).await;
    let client = LabClient::connect(&caller, "lab").await.unwrap();
    let call = tokio::spawn(async move { client.sleep(ctx(), 20_000, 1).await });
    assert_eq!(next_event(&mut events).await, LabEvent::Started(1));

    // Told by the relay, not found dead by the relay's idle timer.
    let within = ms(relay.config().idle_timeout_ms);
    let left = Instant::now();
    leaving.close();
    let err = call.await.unwrap().unwrap_err();
    assert!(left.elapsed() < within, "{host_url} → {caller_url}: after {:?}", left.elapsed());
    assert!(matches!(err, CallError::Disconnected(ChannelError::ListenerGone)), "{host_url} → {caller_url}: {err:?}");

    // Out of the rotation at once: the next channel finds no listener.
    let err = LabClient::connect(&caller, "lab").await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "{host_url} → {caller_url}: {err:?}");
}

#[tokio::test]
async fn a_host_that_leaves_fails_its_callers_at_once() {
    let relay = TestRelay::start().await;
    host_leaves(&relay, &relay.ws_url, &relay.ws_url).await;
    host_leaves(&relay, &relay.url, &relay.ws_url).await;
}

#[tokio::test]
async fn a_wss_host_that_leaves_fails_its_quic_callers_at_once() {
    let relay = TestRelay::start().await;
    host_leaves(&relay, &relay.ws_url, &relay.url).await;
}

#[tokio::test]
async fn deadlines_and_dropped_calls_cancel_handlers() {
    let relay = TestRelay::start().await;
    let (_host, mut events) = relay.serve_lab(&relay.ws_url, "lab", "a").await;
    let caller = relay.caller_on(&relay.ws_url).await;
    let client = LabClient::connect(&caller, "lab").await.unwrap();

    let err = client.sleep(CallContext::with_timeout(Duration::from_millis(300)), 10_000, 1).await.unwrap_err();
    assert!(matches!(err, CallError::DeadlineExceeded), "{err:?}");
    assert_eq!(next_event(&mut events).await, LabEvent::Started(1));
    assert_eq!(next_event(&mut events).await, LabEvent::Cancelled(1), "the host cancels at the deadline");

    let call = client.sleep(CallContext::with_timeout(Duration::from_secs(60)), 60_000, 2);
    tokio::select! {
        _ = call => panic!("the call cannot finish"),
        event = next_event(&mut events) => assert_eq!(event, LabEvent::Started(2)),
    }
    assert_eq!(next_event(&mut events).await, LabEvent::Cancelled(2), "dropping the call cancels it");
    assert_eq!(client.sleep(ctx(), 1, 3).await.unwrap(), 1, "the channel still works");
}

#[tokio::test]
async fn a_dropped_listener_unregisters() {
    let relay = TestRelay::start().await;
    let host = relay.host_on(&relay.ws_url).await;
    let listener = host.listen("lab").await.unwrap();
    assert!(matches!(host.listen("lab").await, Err(ListenError::AlreadyListening(_))));
    drop(listener);
    let caller = relay.caller_on(&relay.ws_url).await;
    let dropped = Instant::now();
    loop {
        match LabClient::connect(&caller, "lab").await {
            Err(OpenError::NoListener { .. }) => return,
            other => assert!(dropped.elapsed() < SLACK, "still routed after the listener was dropped: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_renew_tokens_and_unrenewed_listeners_end_as_expired() {
    let relay = TestRelay::start_with(|c| c.clock_skew_secs = 0).await;
    let root = relay.root_key();
    let lifetime = Duration::from_secs(2);
    let provider = SasKeyProvider::with_ttl(root.clone(), lifetime);
    let renewing = Host::connect(&relay.ws_url, relay.anonymous_options().with_token_provider(provider)).await.unwrap();
    let (lab, _events) = LabHost::new("renewing");
    tokio::spawn(renewing.listen("renewing").await.unwrap().serve(ServeLab::new(lab)));
    let registered = tokio::time::Instant::now();

    let expiry = unix_now() + lifetime.as_secs();
    let fixed = sas_token(&format!("{}/fixed", relay.ws_url), root.name(), root.secret(), expiry);
    let fixed_host = Host::connect(&relay.ws_url, relay.anonymous_options().with_token(fixed)).await.unwrap();
    let (lab, _events) = LabHost::new("fixed");
    // Ended by its token's expiry, not left registered until the connection goes.
    let ended =
        tokio::time::timeout(lifetime + SLACK, fixed_host.listen("fixed").await.unwrap().serve(ServeLab::new(lab)))
            .await
            .expect("the listener ends once its token expires");
    assert!(matches!(ended, Err(ListenError::TokenExpired)), "{ended:?}");

    // The renewing host outlives two lifetimes of its tokens.
    tokio::time::sleep_until(registered + 2 * lifetime + lifetime / 4).await;
    let client = LabClient::connect(&relay.caller_on(&relay.ws_url).await, "renewing").await.unwrap();
    assert_eq!(client.whoami(ctx()).await.unwrap(), "renewing", "still registered after 2 lifetimes");
}

/// The relay's shutdown grace in the drain tests: a call in flight runs for half of it.
const GRACE_MS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_closes_with_a_distinct_code() {
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = GRACE_MS).await;
    let (_host, mut events) = relay.serve_lab(&relay.ws_url, "lab", "a").await;
    let caller = relay.caller_on(&relay.ws_url).await;
    let busy = LabClient::connect(&caller, "lab").await.unwrap();
    let idle = LabClient::connect(&caller, "lab").await.unwrap();

    let in_flight = tokio::spawn(async move { busy.sleep(ctx(), GRACE_MS / 2, 1).await });
    assert_eq!(next_event(&mut events).await, LabEvent::Started(1));
    let stop = tokio::spawn(relay.stop());
    until_draining(&caller, "lab", LabClient::CONTRACT).await;
    assert!(!in_flight.is_finished(), "the drain began only after the call in flight had finished");
    assert_eq!(in_flight.await.unwrap().unwrap(), GRACE_MS / 2, "a call in flight finishes during the drain");

    stop.await.unwrap();
    let err = idle.whoami(ctx()).await.unwrap_err();
    assert!(matches!(err, CallError::Disconnected(ChannelError::RelayShutdown)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_channels_are_refused_while_the_relay_drains() {
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = GRACE_MS).await;
    let (_host, mut events) = relay.serve_lab(&relay.ws_url, "lab", "a").await;
    let caller = relay.caller_on(&relay.ws_url).await;
    let busy = LabClient::connect(&caller, "lab").await.unwrap();
    let in_flight = tokio::spawn(async move { busy.sleep(ctx(), GRACE_MS / 2, 1).await });
    assert_eq!(next_event(&mut events).await, LabEvent::Started(1));
    let stop = tokio::spawn(relay.stop());
    // Channels open until the drain begins; from then on each is refused.
    until_draining(&caller, "lab", LabClient::CONTRACT).await;
    assert!(!in_flight.is_finished(), "the drain began only after the call in flight had finished");
    let refused = LabClient::connect(&caller, "lab").await.unwrap_err();
    assert!(matches!(refused, OpenError::Refused { code: ErrorCode::ShuttingDown, .. }), "{refused:?}");
    assert_eq!(in_flight.await.unwrap().unwrap(), GRACE_MS / 2);
    stop.await.unwrap();
}

#[tokio::test]
async fn a_sender_learns_nothing_of_listeners_its_token_does_not_cover() {
    // Regression (issue 19): the relay resolved the longest path prefix with a listener before
    // checking the token, so a token for `lab/probe` was refused as out of scope exactly when
    // `lab` had a listener, and the refusal named `lab`.
    let relay = TestRelay::start().await;
    let root = relay.root_key();
    let narrow = sas_token(&format!("{}/lab/probe", relay.ws_url), root.name(), root.secret(), unix_now() + 60);
    let caller = Connection::connect(&relay.ws_url, relay.anonymous_options().with_token(narrow)).await.unwrap();
    let unheard = caller.open_channel("lab/probe", None).await.unwrap_err();
    assert!(matches!(&unheard, OpenError::NoListener { .. }), "{unheard:?}");
    let (_host, _events) = relay.serve_lab(&relay.ws_url, "lab", "a").await;
    let probed = caller.open_channel("lab/probe", None).await.unwrap_err();
    assert_eq!(format!("{probed:?}"), format!("{unheard:?}"), "the same answer with a listener on `lab`");
    // A token for `lab` itself reaches the listener through the suffix, as before.
    let wide = sas_token(&format!("{}/lab", relay.ws_url), root.name(), root.secret(), unix_now() + 60);
    let caller = Connection::connect(&relay.ws_url, relay.anonymous_options().with_token(wide)).await.unwrap();
    let lab = LabClient::connect(&caller, "lab/probe").await.unwrap();
    assert_eq!(lab.whoami(ctx()).await.unwrap(), "a");
}
