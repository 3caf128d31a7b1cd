//! Hosts that keep themselves online: after a relay restart they connect and register again,
//! with backoff and jitter, over QUIC and wss.

use std::time::Duration;

use calculator::{Calc, CalculatorClient, ServeCalculator};
use relay_rpc::{Backoff, CallContext, Host, HostStatus, OpenError};
use relay_tests::{SLACK, TestRelay};
use tokio::sync::watch;
use tokio::time::Instant;

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(10))
}

/// Waits (at most `limit`, a guard against a hang) until `wanted` holds for the host's status.
async fn wait_for(status: &mut watch::Receiver<HostStatus>, wanted: impl Fn(&HostStatus) -> bool, limit: Duration) {
    tokio::time::timeout(limit, status.wait_for(|s| wanted(s)))
        .await
        .expect("status in time")
        .expect("host task alive");
}

/// Starts a self-healing calculator host on `address` over `url`; returns its status.
fn serve_online(relay: &TestRelay, url: &str, address: &str, backoff: Backoff) -> watch::Receiver<HostStatus> {
    let (tx, rx) = watch::channel(HostStatus::Connecting);
    let (url, address, options) = (url.to_owned(), address.to_owned(), relay.options());
    tokio::spawn(
        async move { Host::serve_online(&url, options, &address, ServeCalculator::new(Calc), backoff, tx).await },
    );
    rx
}

async fn add(relay: &TestRelay, url: &str, address: &str) -> i64 {
    let caller = relay.caller_on(url).await;
    let calc = CalculatorClient::connect(&caller, address).await.unwrap();
    calc.add(ctx(), 2, 3).await.unwrap()
}

/// Calls `address` on `relay` once a host has registered there, waiting at most `limit`: a
/// restarted relay knows no listener until a host registers again.
async fn add_once_registered(relay: &TestRelay, url: &str, address: &str, limit: Duration) -> i64 {
    let caller = relay.caller_on(url).await;
    let since = Instant::now();
    let calc = loop {
        match CalculatorClient::connect(&caller, address).await {
            Ok(calc) => break calc,
            Err(OpenError::NoListener { .. }) if since.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{address}: not registered again after {:?}: {e:?}", since.elapsed()),
        }
    };
    calc.add(ctx(), 2, 3).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_comes_back_online_after_a_relay_restart() {
    let backoff =
        Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), stable: Duration::from_secs(5) };
    for transport in ["quic", "wss"] {
        let relay = TestRelay::start().await;
        let url = if transport == "quic" { relay.url.clone() } else { relay.ws_url.clone() };
        let mut status = serve_online(&relay, &url, "calc", backoff);
        wait_for(&mut status, |s| *s == HostStatus::Online, SLACK).await;
        assert_eq!(add(&relay, &url, "calc").await, 5, "{transport}");

        // Watching from before the restart, so that no change is missed.
        let mut watching = status.clone();
        let went_offline = tokio::spawn(async move {
            wait_for(&mut watching, |s| *s != HostStatus::Online, Duration::from_secs(60)).await;
        });
        let relay = relay.restart().await;
        went_offline.await.expect("the host noticed the restart");
        // Back within a backoff step of the relay's return.
        let within = backoff.cap + SLACK;
        assert_eq!(
            add_once_registered(&relay, &url, "calc", within).await,
            5,
            "{transport}: served again after the restart"
        );
        assert_eq!(*status.borrow(), HostStatus::Online, "{transport}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_hosts_return_after_a_restart_spread_out() {
    let backoff = Backoff::default();
    let relay = TestRelay::start().await;
    let mut statuses: Vec<_> =
        (0..200).map(|i| serve_online(&relay, &relay.url, &format!("calc-{i}"), backoff)).collect();
    for status in &mut statuses {
        wait_for(status, |s| *s == HostStatus::Online, Duration::from_secs(60)).await;
    }
    // Each host's moment back online, as it happens: watched from before the restart, so that no
    // change is missed.
    let mut returns = tokio::task::JoinSet::new();
    for mut status in statuses {
        returns.spawn(async move {
            wait_for(&mut status, |s| *s != HostStatus::Online, Duration::from_secs(60)).await;
            wait_for(&mut status, |s| *s == HostStatus::Online, Duration::from_secs(120)).await;
            Instant::now()
        });
    }
    let relay = relay.restart().await;
    let restarted = Instant::now();
    let mut back_at = Vec::new();
    while let Some(at) = returns.join_next().await {
        back_at.push(at.unwrap());
    }
    back_at.sort();
    // Within the longest backoff step of the relay's return.
    let last = back_at[back_at.len() - 1].saturating_duration_since(restarted);
    assert!(last < backoff.cap + SLACK, "all 200 back online, the last {last:?} after the relay");
    // Full jitter spreads the reconnects: over more than half a second, and no 100 ms holds half.
    let spread = back_at[back_at.len() - 1] - back_at[0];
    assert!(spread >= Duration::from_millis(500), "reconnects within {spread:?}");
    let busiest = back_at
        .iter()
        .map(|&start| back_at.iter().filter(|&&t| t >= start && t < start + Duration::from_millis(100)).count())
        .max()
        .unwrap();
    assert!(busiest < 100, "{busiest} of 200 reconnected within the same 100 ms");
    assert_eq!(add(&relay, &relay.url, "calc-0").await, 5);
    assert_eq!(add(&relay, &relay.url, "calc-199").await, 5);
}
