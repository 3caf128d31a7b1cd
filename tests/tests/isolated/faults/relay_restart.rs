//! A relay restarted with calls in flight: every call ends, and hosts and callers come back.

use std::time::Duration;

use relay_rpc::ErrorCode;
use relay_rpc::{Backoff, CallError, ChannelError, Host, HostStatus, OpenError};
use relay_tests::lab::{LabClient, LabEvent, LabHost, ServeLab};
use relay_tests::{SLACK, TestRelay, alive_tasks, open_fds, until_draining};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Calls, GRACE_MS, assert_failed_within, assert_no_leak, ctx, started};

/// The backoff of the hosts that keep themselves online here.
const BACKOFF: Backoff =
    Backoff { base: Duration::from_millis(100), cap: Duration::from_millis(500), stable: Duration::from_secs(5) };

/// Serves the lab named `name` on `address` over `url`, connecting again after every loss;
/// returns its status and the lab's events.
fn serve_online(
    relay: &TestRelay,
    url: &str,
    address: &str,
    name: &str,
) -> (watch::Receiver<HostStatus>, UnboundedReceiver<LabEvent>) {
    let (tx, rx) = watch::channel(HostStatus::Connecting);
    let (url, address, options) = (url.to_owned(), address.to_owned(), relay.options());
    let (lab, events) = LabHost::new(name);
    tokio::spawn(async move { Host::serve_online(&url, options, &address, ServeLab::new(lab), BACKOFF, tx).await });
    (rx, events)
}

async fn online(status: &mut watch::Receiver<HostStatus>, limit: Duration) {
    tokio::time::timeout(limit, status.wait_for(|s| *s == HostStatus::Online))
        .await
        .expect("online in time")
        .expect("host task alive");
}

/// The transports, each with its URL.
fn transports(relay: &TestRelay) -> [(&'static str, String); 2] {
    [("quic", relay.url.clone()), ("wss", relay.ws_url.clone())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_ends_every_call_in_flight_then_hosts_and_callers_come_back() {
    let _alone = crate::ALONE.lock().await;
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = GRACE_MS).await;
    let urls = transports(&relay);
    // A self-healing host per transport, each on its own address (`lab-quic`, `lab-wss`).
    let mut statuses = Vec::new();
    let mut events = Vec::new();
    for (transport, url) in &urls {
        let (mut status, lab_events) = serve_online(&relay, url, &format!("lab-{transport}"), transport);
        online(&mut status, SLACK).await;
        statuses.push(status);
        events.push(lab_events);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = (open_fds(), alive_tasks());

    // A caller per transport, with four stubs to each host.
    let mut callers = Vec::new();
    let mut stubs = Vec::new();
    for (from, url) in &urls {
        let caller = relay.caller_on(url).await;
        for (to, _) in &urls {
            for n in 0..4 {
                let stub = LabClient::connect(&caller, &format!("lab-{to}")).await.unwrap();
                assert_eq!(stub.whoami(ctx()).await.unwrap(), *to);
                stubs.push((format!("{from}→{to} stub {n}"), stub));
            }
        }
        callers.push(caller);
    }

    // 80 slow calls in flight: five on each stub.
    let mut in_flight = Calls::new();
    for (label, stub) in &stubs {
        for i in 0..5 {
            let stub = stub.clone();
            in_flight.spawn(format!("{label}: in flight #{i}"), async move { stub.sleep(ctx(), 20_000, 0).await });
        }
    }
    // Every one of them running on its host: 40 on each.
    for lab_events in &mut events {
        started(lab_events, stubs.len() * 5 / 2, 0).await;
    }

    let restarting = Instant::now();
    let restart = tokio::spawn(relay.restart());
    // Fresh calls during the drain: quick ones on open channels are answered (or, once the grace
    // is over, fail); new channels are refused.
    until_draining(&callers[0], "lab-quic", LabClient::CONTRACT).await;
    let mut fresh = Calls::new();
    for (label, stub) in &stubs {
        let stub = stub.clone();
        fresh.spawn(format!("{label}: fresh call"), async move { stub.whoami(ctx()).await });
    }
    let mut refused = Calls::new();
    for (caller, (from, _)) in callers.iter().zip(&urls) {
        for (to, _) in &urls {
            let (caller, address) = (caller.clone(), format!("lab-{to}"));
            refused.spawn(format!("{from}→{to}: fresh channel"), async move {
                LabClient::connect(&caller, &address).await?.whoami(ctx()).await
            });
        }
    }

    let bound = Duration::from_millis(GRACE_MS) + SLACK;
    let in_flight = in_flight.ended().await;
    let failed_within = assert_failed_within(&in_flight, restarting, bound, |e| {
        matches!(e, CallError::Disconnected(ChannelError::RelayShutdown))
    });
    eprintln!("{} calls in flight failed within {failed_within:?} of the restart", in_flight.len());
    for ending in fresh.ended().await {
        match &ending.result {
            Some(Ok(_)) | Some(Err(CallError::Disconnected(ChannelError::RelayShutdown))) => {}
            other => panic!("{}: {other:?}", ending.label),
        }
        let after = ending.after(restarting);
        assert!(after <= bound, "{}: ended {after:?} after the restart began", ending.label);
    }
    assert_failed_within(&refused.ended().await, restarting, bound, |e| {
        matches!(
            e,
            CallError::Open(OpenError::Refused { code: ErrorCode::ShuttingDown, .. } | OpenError::ConnectionLost(_))
        )
    });

    let relay = restart.await.unwrap();
    eprintln!("relay back on its ports {:?} after the restart began", restarting.elapsed());
    for status in &mut statuses {
        online(status, BACKOFF.cap + SLACK).await;
    }
    // The old stubs, whose calls failed with the relay's shutdown, open a new channel on the
    // next call: the old QUIC connection connects again, the old wss "connection" opens each
    // channel as a new WebSocket (see `a_failover_stub_calls_again_after_a_relay_restart`).
    for (label, stub) in &stubs {
        let to = label.split_once('→').and_then(|(_, to)| to.split(' ').next()).unwrap();
        assert_eq!(stub.whoami(ctx()).await.unwrap(), to, "{label}");
    }
    // New connections work, and so do the old ones.
    for ((from, url), old) in urls.iter().zip(&callers) {
        let caller = relay.caller_on(url).await;
        for (to, _) in &urls {
            let address = format!("lab-{to}");
            let stub = LabClient::connect(&caller, &address).await.unwrap();
            assert_eq!(stub.whoami(ctx()).await.unwrap(), *to, "{from}→{to}");
            assert_eq!(stub.sleep(ctx(), 10, 0).await.unwrap(), 10, "{from}→{to}");
            let stub = LabClient::connect(old, &address).await.unwrap();
            assert_eq!(stub.whoami(ctx()).await.unwrap(), *to, "{from}→{to}: old");
        }
    }

    drop((stubs, callers));
    assert_no_leak("restart", baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_stub_calls_again_after_a_relay_restart() {
    let _alone = crate::ALONE.lock().await;
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = GRACE_MS).await;
    let mut stubs = Vec::new();
    let mut statuses = Vec::new();
    for (transport, url) in transports(&relay) {
        let (mut status, _events) = serve_online(&relay, &url, "lab", transport);
        online(&mut status, SLACK).await;
        statuses.push(status);
        let stub = LabClient::connect(&relay.caller_on(&url).await, "lab").await.unwrap();
        stub.whoami(ctx()).await.unwrap();
        stubs.push((transport, stub));
    }
    let relay = relay.restart().await;
    for status in &mut statuses {
        online(status, BACKOFF.cap + SLACK).await;
    }
    let mut still_failing = Vec::new();
    for (transport, stub) in &stubs {
        let back = Instant::now();
        let mut last = None;
        while back.elapsed() < SLACK {
            match stub.whoami(ctx()).await {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(e) = last {
            still_failing.push(format!("{transport}: {e:?}"));
        }
    }
    assert!(still_failing.is_empty(), "stubs still failing {SLACK:?} after their hosts came back: {still_failing:?}");
    drop(relay);
}
