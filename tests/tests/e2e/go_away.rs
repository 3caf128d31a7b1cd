//! A draining relay tells its listeners to go elsewhere at once, not at the end of the grace
//! period: a host kept online registers again right away (here it must wait for the relay to
//! come back, as it would behind a load balancer with one node) while its calls in flight finish
//! on the old connection. One host serves two addresses through one connection, and both come
//! back.

use std::time::Duration;

use calculator::{Calc, CalculatorClient, ServeCalculator};
use relay_rpc::{Backoff, CallContext, Host, HostStatus, Services};
use relay_tests::TestRelay;
use relay_tests::lab::{LabClient, LabEvent, LabHost, ServeLab};
use tokio::sync::watch;

/// The relay's shutdown grace: an idle channel keeps the drain on for all of it.
const GRACE: Duration = Duration::from_secs(5);

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(10))
}

async fn wait_for(status: &mut watch::Receiver<HostStatus>, within: Duration, what: impl Fn(&HostStatus) -> bool) {
    let seen = tokio::time::timeout(within, status.wait_for(|s| what(s))).await.map(|r| r.is_ok());
    assert!(matches!(seen, Ok(true)), "status is {:?} after {within:?}", *status.borrow());
}

async fn go_away_then_come_back(transport: &str) {
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = GRACE.as_millis() as u64).await;
    let url = if transport == "quic" { relay.url.clone() } else { relay.ws_url.clone() };
    let (lab, mut events) = LabHost::new("a");
    let services = Services::new().add("lab", ServeLab::new(lab)).add("calc", ServeCalculator::new(Calc));
    let backoff =
        Backoff { base: Duration::from_millis(200), cap: Duration::from_millis(500), stable: Duration::from_secs(60) };
    let (status_tx, mut status) = watch::channel(HostStatus::Connecting);
    let (online_url, options) = (url.clone(), relay.options());
    let online =
        tokio::spawn(async move { Host::serve_all_online(&online_url, options, services, backoff, status_tx).await });
    wait_for(&mut status, relay_tests::SLACK, |s| *s == HostStatus::Online).await;

    let caller = relay.caller_on(&url).await;
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    assert_eq!(calc.add(ctx(), 1, 2).await.unwrap(), 3);
    let busy = LabClient::connect(&caller, "lab").await.unwrap();
    let in_flight = tokio::spawn(async move { busy.sleep(ctx(), 1_000, 7).await });
    assert_eq!(relay_tests::next_event(&mut events).await, LabEvent::Started(7));

    // Drain: the host hears of it at once, not when the grace period ends (the idle `calc` channel
    // keeps the drain on for all of it): from the go-away, not from the close that ends the drain.
    let restarted = tokio::spawn(relay.restart());
    wait_for(&mut status, GRACE, |s| matches!(s, HostStatus::Offline(why) if why.contains("draining"))).await;
    assert!(!restarted.is_finished(), "{transport}: heard of the drain only after it ended");

    // Its call in flight finishes on the old connection.
    assert_eq!(in_flight.await.unwrap().unwrap(), 1_000, "{transport}: the call in flight finishes");

    // Once a relay is back, both addresses are served again through one new connection.
    let relay = restarted.await.unwrap();
    wait_for(&mut status, backoff.cap + relay_tests::SLACK, |s| *s == HostStatus::Online).await;
    let caller = relay.caller_on(&url).await;
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    assert_eq!(calc.add(ctx(), 20, 22).await.unwrap(), 42);
    let lab = LabClient::connect(&caller, "lab").await.unwrap();
    assert_eq!(lab.whoami(ctx()).await.unwrap(), "a");
    online.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_hosts_are_told_to_go_elsewhere_and_come_back_with_every_address() {
    go_away_then_come_back("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_hosts_are_told_to_go_elsewhere_and_come_back_with_every_address() {
    go_away_then_come_back("wss").await;
}
