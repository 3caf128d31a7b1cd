//! Failover in the generated client stub, over QUIC and `wss://`: when the host behind a stub's
//! channel leaves or dies, the calls in flight fail with a typed error (or, for an
//! `#[idempotent]` method, run again on another host), the next call opens a new channel on its
//! own, a stub with no host left fails fast, and works again once a host is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use relay_rpc::{CallContext, CallError, ChannelError, Host, OpenError};
use relay_tests::lab::{LabClient, LabEvent};
use relay_tests::{SLACK, TestRelay, ms, next_event};
use tokio::sync::mpsc;

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

/// How soon a call with no host left must fail: well within [`ctx`]'s deadline, which a stub
/// retrying in vain would run into.
const FAST: Duration = SLACK;

/// The test contract.
#[relay_rpc::relay_service(name = "failover.Counter")]
pub trait Counter {
    /// The host's name.
    async fn whoami() -> String;
    /// Sleeps `ms`, then returns the host's name.
    async fn hold(ms: u64) -> String;
    /// Sleeps `ms` if this host is named `slow_on`, then returns the host's name.
    #[idempotent]
    async fn hold_idempotent(slow_on: String, ms: u64) -> String;
}

/// A counter host: its name, how often each holding method started on it, and a report of each
/// start.
#[derive(Clone)]
struct Service {
    name: String,
    holds: Arc<AtomicU64>,
    idempotent_holds: Arc<AtomicU64>,
    started: mpsc::UnboundedSender<()>,
}

impl Counter for Service {
    async fn whoami(&self) -> String {
        self.name.clone()
    }

    async fn hold(&self, ms: u64) -> String {
        self.holds.fetch_add(1, Ordering::SeqCst);
        let _ = self.started.send(());
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.name.clone()
    }

    async fn hold_idempotent(&self, slow_on: String, ms: u64) -> String {
        self.idempotent_holds.fetch_add(1, Ordering::SeqCst);
        let _ = self.started.send(());
        if slow_on == self.name {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.name.clone()
    }
}

/// A counter host serving on the relay.
struct Served {
    host: Host,
    holds: Arc<AtomicU64>,
    idempotent_holds: Arc<AtomicU64>,
    started: mpsc::UnboundedReceiver<()>,
}

impl Served {
    async fn started(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.started.recv()).await.expect("started in time");
    }
}

async fn serve(relay: &TestRelay, url: &str, address: &str, name: &str) -> Served {
    let (tx, started) = mpsc::unbounded_channel();
    let service =
        Service { name: name.to_owned(), holds: Arc::default(), idempotent_holds: Arc::default(), started: tx };
    let (holds, idempotent_holds) = (service.holds.clone(), service.idempotent_holds.clone());
    let host = relay.host_on(url).await;
    tokio::spawn(host.listen(address).await.expect("listens").serve(ServeCounter::new(service)));
    Served { host, holds, idempotent_holds, started }
}

fn transports(relay: &TestRelay) -> [(&'static str, String); 2] {
    [("quic", relay.url.clone()), ("wss", relay.ws_url.clone())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_fails_over_to_another_host_when_its_host_leaves() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        leaving_host_case(&relay, transport, &url).await;
    }
}

async fn leaving_host_case(relay: &TestRelay, transport: &str, url: &str) {
    let address = format!("counter-{transport}");
    let mut hosts = std::collections::HashMap::new();
    for name in ["a", "b"] {
        hosts.insert(name.to_owned(), serve(relay, url, &address, name).await);
    }
    let caller = relay.caller_on(url).await;
    let client = CounterClient::connect(&caller, &address).await.unwrap();

    // A call in flight when its host leaves fails with a typed error, and is not sent again.
    let first = client.whoami(ctx()).await.unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.hold(ctx(), 20_000).await }
    });
    let mut leaving = hosts.remove(&first).unwrap();
    leaving.started().await;
    // Told by the relay, not found dead by the relay's idle timer.
    let within = ms(relay.config().idle_timeout_ms);
    let left = Instant::now();
    leaving.host.close();
    let err = call.await.unwrap().unwrap_err();
    assert!(left.elapsed() < within, "{transport}: typed error after {:?}", left.elapsed());
    assert!(matches!(err, CallError::Disconnected(ChannelError::ListenerGone)), "{transport}: {err:?}");
    assert_eq!(leaving.holds.load(Ordering::SeqCst), 1, "{transport}");

    // A host joins, so two listen. The next calls, from eight clones at once, open one new
    // channel between them: they all land on one host, where round-robin over separate
    // channels would spread them.
    hosts.insert("c".to_owned(), serve(relay, url, &address, "c").await);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.whoami(ctx()).await })
        })
        .collect();
    let mut names = HashSet::new();
    for call in calls {
        names.insert(call.await.unwrap().expect("the next call succeeds on another host"));
    }
    assert_eq!(names.len(), 1, "{transport}: one new channel for all clones: {names:?}");
    let current = names.into_iter().next().unwrap();
    assert_ne!(current, first, "{transport}");
    for _ in 0..4 {
        assert_eq!(client.whoami(ctx()).await.unwrap(), current, "{transport}: the stub keeps its new channel");
    }
    assert!(hosts.values().all(|h| h.holds.load(Ordering::SeqCst) == 0), "{transport}: the call was not sent again");

    // An idempotent call in flight when its host leaves runs again on the other host.
    let mut leaving = hosts.remove(&current).unwrap();
    let (other, mut remaining) = hosts.into_iter().next().unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        let slow_on = current.clone();
        async move { client.hold_idempotent(ctx(), slow_on, 20_000).await }
    });
    leaving.started().await;
    leaving.host.close();
    assert_eq!(call.await.unwrap().unwrap(), other, "{transport}: retried on the other host");
    remaining.started().await;
    assert_eq!(leaving.idempotent_holds.load(Ordering::SeqCst), 1, "{transport}");
    assert_eq!(remaining.idempotent_holds.load(Ordering::SeqCst), 1, "{transport}: ran once on each host");

    // With no host left, calls fail fast with a typed error. (The first may still find the
    // channel open and fail on it, if the caller has not yet learnt that it broke.)
    remaining.host.close();
    let err = loop {
        let called = Instant::now();
        let result = client.whoami(ctx()).await;
        assert!(called.elapsed() < FAST, "{transport}: failed after {:?}", called.elapsed());
        match result {
            Err(CallError::Open(e)) => break e,
            Err(CallError::Disconnected(ChannelError::ListenerGone)) => {}
            other => panic!("{transport}: {other:?}"),
        }
    };
    assert!(matches!(err, OpenError::NoListener { .. }), "{transport}: {err:?}");
    let called = Instant::now();
    let err = client.whoami(ctx()).await.unwrap_err();
    assert!(matches!(err, CallError::Open(OpenError::NoListener { .. })), "{transport}: {err:?}");
    assert!(err.is_listener_gone());
    assert!(called.elapsed() < FAST, "{transport}: failed after {:?}", called.elapsed());
    let err = client.hold_idempotent(ctx(), String::new(), 0).await.unwrap_err();
    assert!(matches!(err, CallError::Open(OpenError::NoListener { .. })), "{transport}: {err:?}");

    // Never past the deadline, however short: the call ends by it (give or take a loaded
    // machine), not by a longer timer.
    let deadline = Duration::from_millis(30);
    let called = Instant::now();
    let err = client.whoami(CallContext::with_timeout(deadline)).await.unwrap_err();
    assert!(err.is_listener_gone() || matches!(err, CallError::DeadlineExceeded), "{transport}: {err:?}");
    assert!(called.elapsed() < deadline + SLACK, "{transport}: failed after {:?}", called.elapsed());

    // A host comes back: calls work again.
    let _back = serve(relay, url, &address, "d").await;
    assert_eq!(client.whoami(ctx()).await.unwrap(), "d", "{transport}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_fails_over_to_another_host_when_its_host_is_killed() {
    for transport in ["quic", "wss"] {
        // Keep-alives every 200 ms, dead after 1 s of silence: a killed process sends no goodbye.
        let relay = TestRelay::start_with(|c| {
            c.keep_alive_ms = 200;
            c.idle_timeout_ms = 1_000;
        })
        .await;
        let url = if transport == "quic" { relay.url.clone() } else { relay.ws_url.clone() };
        let (_survivor, _events) = relay.serve_lab(&url, "lab", "survivor").await;
        let mut doomed = relay.spawn_host_process(env!("CARGO_BIN_EXE_test-host"), &url, "lab", "doomed");

        let caller = relay.caller_on(&url).await;
        let client = loop {
            let client = LabClient::connect(&caller, "lab").await.unwrap();
            if client.whoami(ctx()).await.unwrap() == "doomed" {
                break client;
            }
        };
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.sleep(ctx(), 20_000, 1).await }
        });
        assert_eq!(next_event(&mut doomed.events).await, LabEvent::Started(1), "{transport}: the call is in flight");
        doomed.kill();

        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, CallError::Disconnected(ChannelError::ListenerGone)), "{transport}: {err:?}");
        for _ in 0..3 {
            assert_eq!(client.whoami(ctx()).await.unwrap(), "survivor", "{transport}: the same stub, reopened");
        }
    }
}

#[tokio::test]
async fn a_stub_made_from_a_channel_does_not_reopen() {
    let relay = TestRelay::start().await;
    let mut leaving = serve(&relay, &relay.url, "counter", "a").await;
    let _staying = serve(&relay, &relay.url, "counter", "b").await;
    let caller = relay.caller().await;
    let client = loop {
        let client = CounterClient::new(caller.open_channel("counter", Some(CounterClient::CONTRACT)).await.unwrap());
        if client.whoami(ctx()).await.unwrap() == "a" {
            break client;
        }
    };
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.hold_idempotent(ctx(), "a".into(), 20_000).await }
    });
    leaving.started().await;
    leaving.host.close();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, CallError::Disconnected(ChannelError::ListenerGone)), "{err:?}");
    let err = client.whoami(ctx()).await.unwrap_err();
    assert!(matches!(err, CallError::Disconnected(ChannelError::ListenerGone)), "{err:?}");
}

#[test]
fn the_contract_marks_idempotent_methods() {
    assert!(CounterClient::CONTRACT.method("hold_idempotent").unwrap().idempotent);
    assert!(!CounterClient::CONTRACT.method("hold").unwrap().idempotent);
}
