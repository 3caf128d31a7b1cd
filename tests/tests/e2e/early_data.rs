//! QUIC 0-RTT: a caller that connects again to a relay it knows resumes its TLS session and
//! sends its first channel's hello with the handshake; a relay that no longer knows the session
//! (restarted) refuses the early data, and the hello goes again, unseen by the relay twice.
//!
//! The callers reach the relay through a UDP forwarder that delays each way by [`DELAY`]: the
//! relay counts a hello as early when it reads it before the handshake is done, which on bare
//! loopback would depend on the scheduler.

use std::time::Duration;

use calculator::{Calc, CalculatorClient, ServeCalculator};
use relay_rpc::{CallContext, Connection};
use relay_tests::TestRelay;
use relay_tests::http::{delta, scrape};
use relay_tests::udp_delay::UdpDelay;

/// The one-way delay between the callers and the relay.
const DELAY: Duration = Duration::from_millis(20);

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(10))
}

const EARLY: &str = "relay_early_data_opens_total";
const OPENED: &str = r#"relay_channels_opened_total{transport="quic",result="ok"}"#;
const HANDSHAKES: &str = r#"relay_handshakes_total{transport="quic",result="ok"}"#;

async fn serve_calculator(relay: &TestRelay) {
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
}

/// A forwarder that delays the callers' way to `relay` by [`DELAY`], and the URL through it.
async fn delayed(relay: &TestRelay) -> (UdpDelay, String) {
    let delayed = UdpDelay::start(relay.addr, DELAY).await;
    let url = format!("quic://{}", delayed.addr);
    (delayed, url)
}

/// Two calls on two channels of `caller`.
async fn add_twice(caller: &Connection) {
    for _ in 0..2 {
        let calc = CalculatorClient::connect(caller, "calc").await.unwrap();
        assert_eq!(calc.add(ctx(), 2, 3).await.unwrap(), 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_connecting_again_sends_its_first_hello_as_early_data() {
    let relay = TestRelay::start().await;
    serve_calculator(&relay).await;
    let (_delayed, url) = delayed(&relay).await;
    let options = relay.options();
    let before = scrape(relay.admin_addr).await;

    let first = Connection::connect(&url, options.clone()).await.unwrap();
    add_twice(&first).await;
    first.close();
    let between = scrape(relay.admin_addr).await;
    assert_eq!(delta(&before, &between, EARLY), 0.0, "a first connection has no session to resume");
    assert_eq!(delta(&before, &between, OPENED), 2.0);

    let again = Connection::connect(&url, options.clone()).await.unwrap();
    add_twice(&again).await;
    let after = scrape(relay.admin_addr).await;
    assert_eq!(delta(&between, &after, EARLY), 1.0, "the first hello only, before the handshake was done");
    assert_eq!(delta(&between, &after, OPENED), 2.0);
    assert_eq!(delta(&between, &after, HANDSHAKES), 1.0, "the resumed handshake completes");

    // Options that trust another set of certificates share no session with these.
    let other = relay.options();
    add_twice(&Connection::connect(&url, other).await.unwrap()).await;
    let last = scrape(relay.admin_addr).await;
    assert_eq!(delta(&after, &last, EARLY), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_a_restarted_relay_cannot_read_is_sent_again_after_the_handshake() {
    let relay = TestRelay::start().await;
    serve_calculator(&relay).await;
    let (_delayed, url) = delayed(&relay).await;
    let options = relay.options();
    let caller = Connection::connect(&url, options.clone()).await.unwrap();
    add_twice(&caller).await;

    let relay = relay.restart().await;
    serve_calculator(&relay).await;
    let before = scrape(relay.admin_addr).await;
    // The connection is made again with the old relay's ticket: its early hello is refused with
    // the session, and sent again once the full handshake is done.
    add_twice(&caller).await;
    let after = scrape(relay.admin_addr).await;
    assert_eq!(delta(&before, &after, EARLY), 0.0);
    assert_eq!(delta(&before, &after, OPENED), 2.0, "each channel opened once");

    // The new relay's ticket serves the next connection.
    add_twice(&Connection::connect(&url, options).await.unwrap()).await;
    let last = scrape(relay.admin_addr).await;
    assert_eq!(delta(&after, &last, EARLY), 1.0);
}
