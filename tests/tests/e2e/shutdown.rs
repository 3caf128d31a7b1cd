//! Graceful drain: open channels finish within the grace period, then everything closes with a
//! distinct "relay shutting down" code, and no new channel is taken meanwhile.

use std::time::{Duration, Instant};

use relay_rpc::{CallContext, CallError, ChannelError};
use relay_tests::TestRelay;
use relay_tests::lab::{LabClient, LabEvent, LabHost, ServeLab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_closes_with_a_distinct_code() {
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = 1_500).await;
    let host = relay.host().await;
    let (lab, mut events) = LabHost::new("a");
    tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let busy = LabClient::connect(&caller, "lab").await.unwrap();
    let idle = LabClient::connect(&caller, "lab").await.unwrap();
    let ctx = || CallContext::with_timeout(Duration::from_secs(10));

    let in_flight = tokio::spawn(async move { busy.sleep(ctx(), 500, 1).await });
    assert_eq!(events.recv().await, Some(LabEvent::Started(1)));
    let stopping = Instant::now();
    let stop = tokio::spawn(relay.stop());

    assert_eq!(in_flight.await.unwrap().unwrap(), 500, "a call in flight finishes during the drain");
    let refused = LabClient::connect(&caller, "lab").await.unwrap_err();
    assert!(
        matches!(refused, relay_rpc::OpenError::Refused { code: relay_rpc::ErrorCode::ShuttingDown, .. }),
        "{refused:?}"
    );

    stop.await.unwrap();
    let stopped = stopping.elapsed();
    assert!(stopped >= Duration::from_millis(1_400) && stopped < Duration::from_secs(4), "stopped after {stopped:?}");
    let err = idle.whoami(ctx()).await.unwrap_err();
    assert!(matches!(err, CallError::Disconnected(ChannelError::RelayShutdown)), "{err:?}");
}
