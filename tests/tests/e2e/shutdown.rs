//! Graceful drain: open channels finish within the grace period, then everything closes with a
//! distinct "relay shutting down" code, and no new channel is taken meanwhile; the admin
//! endpoint's `/readyz` says 503 through the drain.

use std::time::{Duration, Instant};

use relay_rpc::{CallContext, CallError, ChannelError};
use relay_tests::http::{self, Answer};
use relay_tests::lab::{LabClient, LabEvent, LabHost, ServeLab};
use relay_tests::{SLACK, TestRelay, ms, until_draining};

/// The relay's shutdown grace here.
const GRACE_MS: u64 = 3_000;

/// How long a stopping relay waits, past the grace, for its closes to reach the peers
/// (`Relay::run`).
const CLOSE_WAIT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_closes_with_a_distinct_code() {
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = GRACE_MS).await;
    let grace = ms(relay.config().shutdown_grace_ms);
    let host = relay.host().await;
    let (lab, mut events) = LabHost::new("a");
    tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let busy = LabClient::connect(&caller, "lab").await.unwrap();
    let idle = LabClient::connect(&caller, "lab").await.unwrap();
    let ctx = || CallContext::with_timeout(Duration::from_secs(30));

    // A call that runs for half the grace period: it starts before the drain and ends within it.
    let in_flight = tokio::spawn(async move { busy.sleep(ctx(), GRACE_MS / 2, 1).await });
    assert_eq!(relay_tests::next_event(&mut events).await, LabEvent::Started(1));
    let admin = relay.admin_addr;
    assert_eq!(http::get(admin, "/readyz", &[]).await, Answer { status: 200, body: "ready\n".into() });
    let stopping = Instant::now();
    let stop = tokio::spawn(relay.stop());

    // New channels are refused once the drain has begun, and the call is still in flight then.
    until_draining(&caller, "lab", LabClient::CONTRACT).await;
    // Load balancers hear it too: not ready while it drains, but alive.
    let readyz = http::get(admin, "/readyz", &[]).await;
    assert_eq!(readyz.status, 503, "{readyz:?}");
    assert!(readyz.body.contains("draining"), "{readyz:?}");
    assert_eq!(http::get(admin, "/healthz", &[]).await.status, 200);
    assert!(!in_flight.is_finished(), "the drain began only after the call in flight had finished");
    assert_eq!(in_flight.await.unwrap().unwrap(), GRACE_MS / 2, "a call in flight finishes during the drain");
    let refused = LabClient::connect(&caller, "lab").await.unwrap_err();
    assert!(
        matches!(refused, relay_rpc::OpenError::Refused { code: relay_rpc::ErrorCode::ShuttingDown, .. }),
        "{refused:?}"
    );

    // The idle channel keeps the relay draining for the whole grace period; then it stops.
    stop.await.unwrap();
    let stopped = stopping.elapsed();
    assert!(stopped >= grace, "stopped after {stopped:?}, before the grace period of {grace:?} was over");
    assert!(stopped < grace + CLOSE_WAIT + SLACK, "stopped after {stopped:?}: not bounded by the grace of {grace:?}");
    let err = idle.whoami(ctx()).await.unwrap_err();
    assert!(matches!(err, CallError::Disconnected(ChannelError::RelayShutdown)), "{err:?}");
}
