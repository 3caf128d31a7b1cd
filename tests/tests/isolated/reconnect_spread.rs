//! Hosts coming back after a relay restart, spread out by their backoff's full jitter rather than
//! all at once. Alone: the moments are read by tasks on the test's runtime, and another test's
//! load (a gigabyte through the relay) can hold them all back and stamp them together.

use std::time::Duration;

use relay_rpc::{Backoff, CallContext, HostStatus};
use relay_tests::{SLACK, TestRelay, serve_calculator_online};
use tokio::sync::watch;
use tokio::time::Instant;

/// Waits (at most `limit`, a guard against a hang) until `wanted` holds for the host's status.
async fn wait_for(status: &mut watch::Receiver<HostStatus>, wanted: impl Fn(&HostStatus) -> bool, limit: Duration) {
    tokio::time::timeout(limit, status.wait_for(|s| wanted(s)))
        .await
        .expect("status in time")
        .expect("host task alive");
}

async fn add(relay: &TestRelay, address: &str) -> i64 {
    let caller = relay.caller().await;
    let calc = calculator::CalculatorClient::connect(&caller, address).await.unwrap();
    calc.add(CallContext::with_timeout(Duration::from_secs(10)), 2, 3).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_hosts_return_after_a_restart_spread_out() {
    let _alone = crate::ALONE.lock().await;
    let backoff = Backoff::default();
    let relay = TestRelay::start().await;
    let mut statuses: Vec<_> =
        (0..200).map(|i| serve_calculator_online(&relay, &relay.url, &format!("calc-{i}"), backoff)).collect();
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
    assert_eq!(add(&relay, "calc-0").await, 5);
    assert_eq!(add(&relay, "calc-199").await, 5);
}
