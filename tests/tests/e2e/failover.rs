//! Several hosts on one address: round-robin, prompt removal, typed errors for the callers of a
//! host that leaves or dies.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use relay_rpc::{CallContext, CallError, ChannelError};
use relay_tests::lab::{LabClient, LabEvent, LabHost, ServeLab};
use relay_tests::{SLACK, TestRelay, ms, next_event};

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(30))
}

async fn who_answers(relay: &TestRelay, url: &str, channels: usize) -> Vec<String> {
    let caller = relay.caller_on(url).await;
    let mut names = Vec::new();
    for _ in 0..channels {
        let client = LabClient::connect(&caller, "lab").await.unwrap();
        names.push(client.whoami(ctx()).await.unwrap());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_fails_its_callers_promptly_and_leaves_the_rotation() {
    for transport in ["quic", "wss"] {
        killed_host_case(transport).await;
    }
}

async fn killed_host_case(transport: &str) {
    // Keep-alives every 200 ms, dead after 1 s of silence: a killed process sends no goodbye.
    let relay = TestRelay::start_with(|c| {
        c.keep_alive_ms = 200;
        c.idle_timeout_ms = 1_000;
    })
    .await;
    let url = if transport == "quic" { relay.url.clone() } else { relay.ws_url.clone() };
    let (_survivor, _events) = relay.serve_lab(&url, "lab", "survivor").await;
    let mut doomed = relay.spawn_host_process(env!("CARGO_BIN_EXE_test-host"), &url, "lab", "doomed");

    let names = who_answers(&relay, &url, 6).await;
    let distinct: HashSet<_> = names.iter().map(String::as_str).collect();
    assert_eq!(distinct, HashSet::from(["survivor", "doomed"]), "channels land on both: {names:?}");
    assert_eq!(names.iter().filter(|n| *n == "doomed").count(), 3, "round-robin: {names:?}");

    // A call in flight on a channel to the doomed host.
    let caller = relay.caller_on(&url).await;
    let client = loop {
        let client = LabClient::connect(&caller, "lab").await.unwrap();
        if client.whoami(ctx()).await.unwrap() == "doomed" {
            break client;
        }
    };
    let call = tokio::spawn(async move { client.sleep(ctx(), 20_000, 1).await });
    assert_eq!(next_event(&mut doomed.events).await, LabEvent::Started(1), "{transport}: the call is in flight");
    let killed = Instant::now();
    doomed.kill();

    // Within the relay's idle timeout (a killed process sends no goodbye), well before the
    // call's deadline.
    let within = ms(relay.config().idle_timeout_ms) + SLACK;
    let err = call.await.unwrap().unwrap_err();
    assert!(killed.elapsed() < within, "{transport}: typed error after {:?}", killed.elapsed());
    assert!(matches!(err, CallError::Disconnected(ChannelError::ListenerGone)), "{transport}: {err:?}");
    assert!(err.is_listener_gone());

    let names = who_answers(&relay, &url, 4).await;
    assert!(names.iter().all(|n| n == "survivor"), "{transport}: new channels go to the survivor: {names:?}");
}

#[tokio::test]
async fn a_host_that_leaves_fails_its_callers_at_once() {
    let relay = TestRelay::start().await;
    let (lab, mut events) = LabHost::new("leaving");
    let leaving = relay.host().await;
    tokio::spawn(leaving.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let client = LabClient::connect(&caller, "lab").await.unwrap();
    let call = tokio::spawn(async move { client.sleep(ctx(), 20_000, 1).await });
    assert_eq!(next_event(&mut events).await, LabEvent::Started(1));

    // Told by the relay, not found dead by the relay's idle timer.
    let within = ms(relay.config().idle_timeout_ms);
    let left = Instant::now();
    leaving.close();
    let err = call.await.unwrap().unwrap_err();
    assert!(left.elapsed() < within, "typed error after {:?}", left.elapsed());
    assert!(matches!(err, CallError::Disconnected(ChannelError::ListenerGone)), "{err:?}");

    // Dropped from the rotation at once: the next channel finds no listener.
    let err = LabClient::connect(&caller, "lab").await.unwrap_err();
    assert!(matches!(err, relay_rpc::OpenError::NoListener { .. }), "{err:?}");
}

#[tokio::test]
async fn a_dropped_listener_unregisters() {
    let relay = TestRelay::start().await;
    let host = relay.host().await;
    let listener = host.listen("lab").await.unwrap();
    assert!(matches!(host.listen("lab").await, Err(relay_rpc::ListenError::AlreadyListening(_))));
    drop(listener);
    let caller = relay.caller().await;
    let dropped = Instant::now();
    loop {
        match LabClient::connect(&caller, "lab").await {
            Err(relay_rpc::OpenError::NoListener { .. }) => return,
            other => assert!(dropped.elapsed() < SLACK, "still routed after the listener was dropped: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_open_channels_sends_new_channels_to_the_idlest_listener() {
    for transport in ["quic", "wss"] {
        least_open_channels_case(transport).await;
    }
}

async fn least_open_channels_case(transport: &str) {
    use relay_server::AddressConfig;
    use relay_server::registry::Balance;
    let relay = TestRelay::start_with(|c| {
        c.addresses = vec![AddressConfig {
            path: "lab".into(),
            load_balancing: Balance::LeastOpenChannels,
            ..Default::default()
        }];
    })
    .await;
    let url = if transport == "quic" { relay.url.clone() } else { relay.ws_url.clone() };
    let (_a, _a_events) = relay.serve_lab(&url, "lab", "a").await;
    let (_b, _b_events) = relay.serve_lab(&url, "lab", "b").await;
    let caller = relay.caller_on(&url).await;
    let open = || async { LabClient::connect(&caller, "lab").await.unwrap() };
    let first = open().await;
    let busy = first.whoami(ctx()).await.unwrap();
    let second = open().await;
    let idle = second.whoami(ctx()).await.unwrap();
    assert_ne!(busy, idle, "{transport}: the second channel goes to the listener without one");
    drop(second);
    let closed = relay_tests::eventually(SLACK, || relay.stats.open_channels() == 1).await;
    assert!(closed, "{transport}: the relay saw the second channel close");
    // Round-robin would now pick `busy` again; least-open-channels picks the idle one.
    let third = open().await;
    assert_eq!(third.whoami(ctx()).await.unwrap(), idle, "{transport}");
    let fourth = open().await;
    assert_eq!(fourth.whoami(ctx()).await.unwrap(), busy, "{transport}: a tie is broken in turn");
    drop(first);
}
