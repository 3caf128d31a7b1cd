//! One-way operations (WCF's `NetOnewayRelayBinding`) through a real relay, over QUIC and over
//! `wss://`: a `#[oneway]` call returns without waiting for the host; the host runs one-way
//! requests in order, and a two-way call after them sees their effects; a caller faster than the
//! host is held back rather than buffered without bound, and keeps its channel however long a
//! slow host holds it back; a broken channel fails one-way calls with a typed error rather than a
//! hang.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_rpc::{CallContext, CallError, ChannelError, OpenError};
use relay_tests::{SLACK, TestRelay, eventually, ms};
use tokio::sync::{Semaphore, mpsc};

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

/// The test contract.
#[relay_rpc::relay_service(name = "oneway.Journal")]
pub trait Journal {
    /// Appends `seq` to the journal.
    #[oneway]
    async fn record(seq: u64);
    /// Reports `Started(tag)`, waits until the test releases it, then reports `Done(tag)`.
    #[oneway]
    async fn held(tag: u64);
    /// Waits for a permit from the test, then appends `seq`; carries `padding` to fill buffers.
    #[oneway]
    async fn gated(seq: u64, padding: Vec<u8>);
    /// The journal so far.
    async fn entries() -> Vec<u64>;
}

/// What the host tells the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A `held` call started.
    Started(u64),
    /// A `held` call finished.
    Done(u64),
}

#[derive(Clone)]
struct Host {
    entries: Arc<Mutex<Vec<u64>>>,
    events: mpsc::UnboundedSender<Event>,
    /// Permits for `held` calls to finish.
    release: Arc<Semaphore>,
    /// Permits for `gated` calls to finish.
    gate: Arc<Semaphore>,
}

impl Journal for Host {
    async fn record(&self, seq: u64) {
        self.entries.lock().unwrap().push(seq);
    }

    async fn held(&self, tag: u64) {
        let _ = self.events.send(Event::Started(tag));
        self.release.acquire().await.expect("release open").forget();
        let _ = self.events.send(Event::Done(tag));
    }

    async fn gated(&self, seq: u64, _padding: Vec<u8>) {
        self.gate.acquire().await.expect("gate open").forget();
        self.entries.lock().unwrap().push(seq);
    }

    async fn entries(&self) -> Vec<u64> {
        self.entries.lock().unwrap().clone()
    }
}

struct Served {
    client: JournalClient,
    entries: Arc<Mutex<Vec<u64>>>,
    events: mpsc::UnboundedReceiver<Event>,
    release: Arc<Semaphore>,
    gate: Arc<Semaphore>,
    host: relay_rpc::Host,
}

/// Serves a journal on `address` from a host on `url` and connects a caller on `url` to it.
async fn serve(relay: &TestRelay, url: &str, address: &str) -> Served {
    let (events_tx, events) = mpsc::unbounded_channel();
    let service = Host {
        entries: Arc::default(),
        events: events_tx,
        release: Arc::new(Semaphore::new(0)),
        gate: Arc::new(Semaphore::new(0)),
    };
    let (entries, release, gate) = (service.entries.clone(), service.release.clone(), service.gate.clone());
    let host = relay.host_on(url).await;
    tokio::spawn(host.listen(address).await.unwrap().serve(ServeJournal::new(service)));
    let caller = relay.caller_on(url).await;
    let client = JournalClient::connect(&caller, address).await.unwrap();
    Served { client, entries, events, release, gate, host }
}

fn transports(relay: &TestRelay) -> [(&'static str, String); 2] {
    [("quic", relay.url.clone()), ("wss", relay.ws_url.clone())]
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("event in time").expect("host alive")
}

#[test]
fn the_contract_marks_one_way_methods() {
    let contract = JournalClient::CONTRACT;
    assert!(contract.method("record").unwrap().oneway);
    assert!(contract.method("gated").unwrap().oneway);
    assert!(!contract.method("entries").unwrap().oneway);
}

#[tokio::test]
async fn a_one_way_call_returns_before_a_slow_handler_finishes() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let Served { client, mut events, release, .. } = serve(&relay, &url, &format!("journal-{transport}")).await;
        // The handler cannot finish before the test releases it, which it does only once the call
        // has returned: a caller that waited for the handler would wait until its deadline.
        client.held(ctx(), 1).await.unwrap();
        assert_eq!(next_event(&mut events).await, Event::Started(1), "{transport}");
        release.add_permits(1);
        assert_eq!(next_event(&mut events).await, Event::Done(1), "{transport}: the handler finished after the call");
    }
}

#[tokio::test]
async fn a_two_way_call_after_one_way_calls_sees_their_effects() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let Served { client, mut events, release, .. } = serve(&relay, &url, &format!("journal-{transport}")).await;
        for seq in 0..100 {
            client.record(ctx(), seq).await.unwrap();
        }
        assert_eq!(client.entries(ctx()).await.unwrap(), (0..100).collect::<Vec<_>>(), "{transport}");

        // A two-way call waits for the slow one-way call before it, not just for its start.
        client.held(ctx(), 2).await.unwrap();
        client.record(ctx(), 100).await.unwrap();
        let asking = client.clone();
        let entries = tokio::spawn(async move { asking.entries(ctx()).await });
        assert_eq!(next_event(&mut events).await, Event::Started(2), "{transport}");
        assert!(!entries.is_finished(), "{transport}: answered while the one-way handler before it was held");
        release.add_permits(1);
        let entries = entries.await.unwrap().unwrap();
        assert_eq!(entries, (0..=100).collect::<Vec<_>>(), "{transport}");
        // The handler's `Done` was reported before the two-way call was answered.
        assert_eq!(events.try_recv().ok(), Some(Event::Done(2)), "{transport}: answered before the handler finished");
    }
}

#[tokio::test]
async fn a_thousand_one_way_messages_arrive_in_order() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let Served { client, entries, .. } = serve(&relay, &url, &format!("journal-{transport}")).await;
        let started = Instant::now();
        for seq in 0..1_000 {
            client.record(ctx(), seq).await.unwrap();
        }
        let sent = started.elapsed();
        let all = eventually(Duration::from_secs(20), || entries.lock().unwrap().len() == 1_000).await;
        assert!(all, "{transport}: {} of 1000 arrived", entries.lock().unwrap().len());
        assert_eq!(*entries.lock().unwrap(), (0..1_000).collect::<Vec<_>>(), "{transport}: in order");
        eprintln!("{transport}: 1000 one-way calls sent in {sent:?}, all handled after {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn one_way_calls_from_clones_of_a_stub_keep_each_clones_order() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let Served { client, .. } = serve(&relay, &url, &format!("journal-{transport}")).await;
        let senders = (0..4u64).map(|clone| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    client.record(ctx(), clone * 1_000 + i).await.unwrap();
                }
            })
        });
        for sender in senders.collect::<Vec<_>>() {
            sender.await.unwrap();
        }
        let entries = client.entries(ctx()).await.unwrap();
        assert_eq!(entries.len(), 1_000, "{transport}");
        for clone in 0..4 {
            let mine: Vec<u64> = entries.iter().copied().filter(|e| e / 1_000 == clone).collect();
            assert_eq!(mine, (0..250).map(|i| clone * 1_000 + i).collect::<Vec<_>>(), "{transport}");
        }
    }
}

#[tokio::test]
async fn a_caller_faster_than_the_host_is_held_back_not_buffered_without_bound() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let Served { client, entries, gate, .. } = serve(&relay, &url, &format!("journal-{transport}")).await;
        // The handler waits at the gate, so nothing drains: queues and flow-control windows fill
        // with 64 KiB messages until a call cannot be queued before its deadline. (A deadline long
        // enough that only a full queue, not a slow machine, makes a call miss it.)
        let padding = vec![7u8; 64 * 1024];
        let mut accepted = 0u64;
        let refused = loop {
            let short = CallContext::with_timeout(SLACK);
            match client.gated(short, accepted, padding.clone()).await {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 2_000, "{transport}: 125 MiB queued and no backpressure");
        };
        assert!(matches!(refused, CallError::DeadlineExceeded), "{transport}: {refused:?}");
        assert!(accepted > 0, "{transport}: held back from the first message");
        eprintln!("{transport}: {accepted} one-way messages of 64 KiB in flight before the caller was held back");

        // Open the gate: everything accepted arrives, in order, and the channel carries on.
        gate.add_permits(usize::MAX >> 4);
        let all = eventually(Duration::from_secs(20), || entries.lock().unwrap().len() as u64 == accepted).await;
        assert!(all, "{transport}: {} of {accepted} arrived", entries.lock().unwrap().len());
        assert_eq!(*entries.lock().unwrap(), (0..accepted).collect::<Vec<_>>(), "{transport}");
        client.gated(ctx(), accepted, Vec::new()).await.unwrap();
        assert_eq!(client.entries(ctx()).await.unwrap().len() as u64, accepted + 1, "{transport}");
    }
}

#[tokio::test]
async fn a_wss_caller_held_back_by_a_slow_host_keeps_its_channel_past_its_idle_timeout() {
    // The relay pings rarely, and the caller gives the relay up after 1 s without news: held back
    // behind megabytes that drain slowly, its own pings are answered only seconds later, so it
    // must take its writes going on as the news.
    let relay = TestRelay::start_with(|c| {
        c.keep_alive_ms = 10_000;
        c.idle_timeout_ms = 30_000;
    })
    .await;
    let Served { entries, gate, .. } = serve(&relay, &relay.ws_url, "journal-slow").await;
    let options = relay.options().with_keep_alive(Duration::from_millis(200), Duration::from_secs(1));
    let caller = relay_rpc::Connection::connect(&relay.ws_url, options).await.unwrap();
    let client = JournalClient::connect(&caller, "journal-slow").await.unwrap();
    // The host takes a 64 KiB message every 20 ms: slower than the caller sends.
    let draining = tokio::spawn({
        let gate = gate.clone();
        async move {
            loop {
                gate.add_permits(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let padding = vec![7u8; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        client.gated(ctx(), sent, padding.clone()).await.unwrap_or_else(|e| panic!("after {sent} messages: {e:?}"));
        sent += 1;
    }
    draining.abort();
    gate.add_permits(usize::MAX >> 4);
    let all = eventually(Duration::from_secs(20), || entries.lock().unwrap().len() as u64 == sent).await;
    assert!(all, "{} of {sent} arrived", entries.lock().unwrap().len());
    assert_eq!(client.entries(ctx()).await.unwrap().len() as u64, sent);
}

#[tokio::test]
async fn a_one_way_call_on_a_channel_whose_listener_is_gone_fails_with_a_typed_error() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let Served { client, host, .. } = serve(&relay, &url, &format!("journal-{transport}")).await;
        client.record(ctx(), 1).await.unwrap();
        host.close();

        // Until the caller learns of it a one-way call may still be queued (and lost, as one-way
        // messages on a broken channel are); then each fails at once, with the reason: the
        // listener went away, or (once the stub has tried to open a new channel) none is there.
        // The caller learns of it from the relay, before the relay's idle timer could tell anyone.
        let learns_by = ms(relay.config().idle_timeout_ms);
        let left = Instant::now();
        let err = loop {
            let call = tokio::time::timeout(SLACK, client.record(ctx(), 2));
            match call.await.expect("a one-way call never hangs") {
                Ok(()) => assert!(left.elapsed() < learns_by, "{transport}: still accepted after {:?}", left.elapsed()),
                Err(e) => break e,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let gone = |e: &CallError| {
            matches!(
                e,
                CallError::Disconnected(ChannelError::ListenerGone) | CallError::Open(OpenError::NoListener { .. })
            )
        };
        assert!(gone(&err), "{transport}: {err:?}");
        let err = client.record(ctx(), 3).await.unwrap_err();
        assert!(gone(&err), "{transport}: {err:?}");
        let err = client.entries(ctx()).await.unwrap_err();
        assert!(err.is_listener_gone(), "{transport}: {err:?}");
    }
}
