//! QUIC connections used up to their channel limit, with every channel closed, can be used up to
//! their limit again, over and over: closed channels give their streams back, on the caller's
//! connection to the relay and on the relay's connection to the host. A channel over either limit
//! is refused at once with a typed error, never left waiting.

use std::time::{Duration, Instant};

use calculator::{Calc, CalculatorClient, ServeCalculator};
use relay_rpc::ErrorCode;
use relay_rpc::{CallContext, Host, OpenError};
use relay_tests::TestRelay;

const LIMIT: u32 = 64;
const ROUNDS: usize = 8;

/// A relay allowing `relay_limit` channels per connection, and a host on it allowing
/// `host_limit`, serving the calculator.
async fn start(relay_limit: u32, host_limit: u32) -> (TestRelay, Host) {
    let relay = TestRelay::start_with(|c| {
        c.max_channels_per_connection = relay_limit;
        c.max_channels_per_listener = LIMIT as usize * 100;
        c.channel_opens_per_sec = 1_000_000;
    })
    .await;
    let host = Host::connect(&relay.url, relay.options().with_max_incoming_channels(host_limit)).await.unwrap();
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    (relay, host)
}

async fn open_all(caller: &relay_rpc::Connection, count: u32) -> Vec<CalculatorClient> {
    let opens = (0..count).map(|_| CalculatorClient::connect(caller, "calc"));
    tokio::time::timeout(Duration::from_secs(30), futures::future::try_join_all(opens))
        .await
        .unwrap_or_else(|_| panic!("opening {count} channels timed out"))
        .unwrap_or_else(|e| panic!("opening {count} channels: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_connections_used_to_their_limit_again_and_again() {
    let (relay, _host) = start(LIMIT, LIMIT).await;
    let caller = relay.caller().await;
    for round in 0..ROUNDS {
        let stubs = open_all(&caller, LIMIT).await;
        for (i, stub) in stubs.iter().enumerate() {
            let i = i as i64;
            let sum = stub.add(CallContext::with_timeout(Duration::from_secs(5)), i, 1).await;
            assert_eq!(sum.unwrap_or_else(|e| panic!("round {round}: {e}")), i + 1);
        }
        drop(stubs);
        let closed = relay_tests::eventually(Duration::from_secs(5), || relay.stats.open_channels() == 0).await;
        assert!(closed, "round {round}: {} channels still open at the relay", relay.stats.open_channels());
    }
}

/// With `LIMIT` channels open, one more is refused as `Busy` well within the handshake timeout,
/// and once one closes, another opens.
async fn one_over_the_limit_is_refused(relay: &TestRelay) {
    let caller = relay.caller().await;
    let mut stubs = open_all(&caller, LIMIT).await;
    let started = Instant::now();
    match CalculatorClient::connect(&caller, "calc").await {
        Err(OpenError::Refused { code: ErrorCode::Busy, .. }) => {}
        other => panic!("one channel over the limit: {:?}", other.map(drop)),
    }
    let handshake_timeout = relay_tests::ms(relay.config().handshake_timeout_ms);
    assert!(started.elapsed() < handshake_timeout, "refused after {:?}", started.elapsed());
    stubs.pop();
    let reopened =
        relay_tests::eventually(Duration::from_secs(5), || relay.stats.open_channels() < LIMIT as usize).await;
    assert!(reopened);
    let stub = CalculatorClient::connect(&caller, "calc").await.expect("opens once one has closed");
    assert_eq!(stub.add(CallContext::with_timeout(Duration::from_secs(5)), 2, 2).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_over_the_callers_connection_limit_is_refused() {
    let (relay, _host) = start(LIMIT, LIMIT * 100).await;
    one_over_the_limit_is_refused(&relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_over_the_hosts_limit_is_refused() {
    let (relay, _host) = start(LIMIT * 100, LIMIT).await;
    one_over_the_limit_is_refused(&relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_at_its_limit_passes_channels_to_another_host() {
    let (relay, _full) = start(LIMIT * 100, 2).await;
    let roomy = Host::connect(&relay.url, relay.options()).await.unwrap();
    tokio::spawn(roomy.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let caller = relay.caller().await;
    // Round-robin sends every other channel to the host that takes two: all but two of those
    // are passed on to the other host.
    let stubs = open_all(&caller, 20).await;
    for (i, stub) in stubs.iter().enumerate() {
        let i = i as i64;
        assert_eq!(stub.add(CallContext::with_timeout(Duration::from_secs(5)), i, 1).await.unwrap(), i + 1);
    }
}
