//! Multicast addresses (WCF's `NetEventRelayBinding`) through a real relay: every one-way call a
//! publisher makes reaches every subscriber, in order; a stalled subscriber is cut with its queue
//! bounded while the others receive everything; subscribers that join later get events from then
//! on; a publisher needs no subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_rpc::auth::SharedAccessKey;
use relay_rpc::{CallContext, ConnectOptions, Connection, Host};
use relay_server::{AddressConfig, AddressMode, Config, Relay, Stats};
use relay_tests::{eventually, temp_dir};
use tokio::sync::oneshot;

/// The test contract: publishers call it, subscribers serve it.
#[relay_rpc::relay_service(name = "multicast.Feed")]
pub trait Feed {
    /// An event.
    #[oneway]
    async fn event(seq: u64);
    /// An event carrying `padding`, to fill buffers.
    #[oneway]
    async fn bulk(seq: u64, padding: Vec<u8>);
}

/// A subscriber: records each event; a stalled one then blocks forever.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) seen: Arc<Mutex<Vec<u64>>>,
    pub(crate) stall: bool,
}

impl Subscriber {
    async fn record(&self, seq: u64) {
        self.seen.lock().unwrap().push(seq);
        if self.stall {
            std::future::pending::<()>().await;
        }
    }
}

impl Feed for Subscriber {
    async fn event(&self, seq: u64) {
        self.record(seq).await
    }

    async fn bulk(&self, seq: u64, _padding: Vec<u8>) {
        self.record(seq).await
    }
}

pub(crate) const ADDRESS: &str = "events";

/// A relay with `events` in multicast mode, and a handle on its counters.
struct MulticastRelay {
    quic_url: String,
    ws_url: String,
    options: ConnectOptions,
    stats: Stats,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl MulticastRelay {
    async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = temp_dir("multicast");
        let mut config = Config {
            quic_listen: "127.0.0.1:0".parse().unwrap(),
            ws_listen: Some("127.0.0.1:0".parse().unwrap()),
            admin_listen: None,
            data_dir: dir.clone(),
            addresses: vec![AddressConfig { path: ADDRESS.into(), mode: AddressMode::Multicast, ..Default::default() }],
            ..Config::default()
        };
        configure(&mut config);
        let relay = Relay::bind(config).expect("relay binds");
        let key = SharedAccessKey::from_file(relay.root_key_path()).expect("root key");
        let options =
            ConnectOptions::new().trust_pem_file(relay.cert_path()).expect("cert").with_shared_access_key(key);
        let (quic_url, ws_url) =
            (format!("quic://{}", relay.quic_addr()), format!("wss://{}", relay.ws_addr().unwrap()));
        let stats = relay.stats();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(relay.run(async {
            let _ = rx.await;
        }));
        Self { quic_url, ws_url, options, stats, shutdown: Some(tx), task }
    }

    /// A subscriber on `url`: a host serving the feed; returns the host and what it has seen.
    async fn subscribe(&self, url: &str, stall: bool) -> (Host, Arc<Mutex<Vec<u64>>>) {
        let host = Host::connect(url, self.options.clone()).await.expect("host connects");
        let subscriber = Subscriber { seen: Arc::default(), stall };
        let seen = subscriber.seen.clone();
        let listener = host.listen(ADDRESS).await.expect("listens");
        tokio::spawn(listener.serve(ServeFeed::new(subscriber)));
        (host, seen)
    }

    /// A publisher on `url`.
    async fn publisher(&self, url: &str) -> (Connection, FeedClient) {
        let caller = Connection::connect(url, self.options.clone()).await.expect("caller connects");
        let client = FeedClient::connect(&caller, ADDRESS).await.expect("a multicast address accepts publishers");
        (caller, client)
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let stopped = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        relay_tests::propagate_panic(stopped.expect("the relay stops within 20 s"));
    }
}

pub(crate) fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

pub(crate) fn len(seen: &Mutex<Vec<u64>>) -> usize {
    seen.lock().unwrap().len()
}

#[tokio::test]
async fn every_subscriber_receives_every_event_in_order() {
    let relay = MulticastRelay::start(|_| {}).await;
    let mut subscribers = Vec::new();
    for _ in 0..4 {
        subscribers.push(relay.subscribe(&relay.quic_url, false).await);
    }
    subscribers.push(relay.subscribe(&relay.ws_url, false).await);
    let (_caller, client) = relay.publisher(&relay.quic_url).await;

    const EVENTS: u64 = 10_000;
    let started = std::time::Instant::now();
    for seq in 0..EVENTS {
        client.event(ctx(), seq).await.unwrap();
    }
    let sent = started.elapsed();
    for (i, (_, seen)) in subscribers.iter().enumerate() {
        let all = eventually(Duration::from_secs(30), || len(seen) as u64 == EVENTS).await;
        assert!(all, "subscriber {i}: {} of {EVENTS}; overflows {}", len(seen), relay.stats.multicast_overflows());
        assert_eq!(*seen.lock().unwrap(), (0..EVENTS).collect::<Vec<_>>(), "subscriber {i}: in order");
    }
    eprintln!("{EVENTS} events to 5 subscribers: sent in {sent:?}, all delivered after {:?}", started.elapsed());
    assert_eq!(relay.stats.multicast_overflows(), 0);
    assert_eq!(relay.stats.open_channels(), 6, "the publisher's channel and one per subscriber");

    // When the publisher leaves, every subscriber's channel ends too.
    drop((client, _caller));
    assert!(eventually(Duration::from_secs(10), || relay.stats.open_channels() == 0).await);
    relay.stop().await;
}

#[tokio::test]
async fn a_stalled_subscriber_is_cut_with_its_queue_bounded_while_the_others_get_everything() {
    const QUEUE_BYTES: usize = 256 * 1024;
    let relay = MulticastRelay::start(|config| config.multicast_queue_bytes = QUEUE_BYTES).await;
    let (_stalled_host, stalled) = relay.subscribe(&relay.quic_url, true).await;
    let mut healthy = Vec::new();
    for _ in 0..4 {
        healthy.push(relay.subscribe(&relay.quic_url, false).await);
    }
    let (_caller, client) = relay.publisher(&relay.quic_url).await;

    // Watch the relay's queues while publishing.
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let (stats, peak) = (relay.stats.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(stats.multicast_queued_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    // 10,000 events of 1 KiB: ~10 MB, far more than the stalled subscriber's flow-control window
    // and its queue at the relay. The publisher goes at the healthy subscribers' pace (in
    // batches), never waiting for the stalled one.
    const EVENTS: u64 = 10_000;
    const BATCH: u64 = 250;
    let padding = vec![7u8; 1024];
    for batch in 0..EVENTS / BATCH {
        for seq in batch * BATCH..(batch + 1) * BATCH {
            client.bulk(ctx(), seq, padding.clone()).await.unwrap();
        }
        let sent = ((batch + 1) * BATCH) as usize;
        let caught_up = eventually(Duration::from_secs(20), || healthy.iter().all(|(_, seen)| len(seen) == sent)).await;
        assert!(
            caught_up,
            "healthy subscribers at {:?} of {sent}",
            healthy.iter().map(|(_, s)| len(s)).collect::<Vec<_>>()
        );
    }
    sampler.abort();
    for (i, (_, seen)) in healthy.iter().enumerate() {
        assert_eq!(*seen.lock().unwrap(), (0..EVENTS).collect::<Vec<_>>(), "healthy subscriber {i}: all, in order");
    }
    assert_eq!(*stalled.lock().unwrap(), [0], "the stalled subscriber got its first event and blocked");
    assert_eq!(relay.stats.multicast_overflows(), 1, "the stalled subscriber was cut, once");

    // Every queue was bounded: five subscribers, each at most its byte budget plus one frame.
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(peak <= 5 * (QUEUE_BYTES + 2048), "peak queued {peak} bytes");
    let drained = eventually(Duration::from_secs(5), || relay.stats.multicast_queued_bytes() == 0).await;
    assert!(drained, "{} bytes still queued", relay.stats.multicast_queued_bytes());
    eprintln!("peak queued at the relay: {peak} bytes for {} bytes published", EVENTS * 1024);

    // The publisher carries on with the healthy subscribers.
    client.event(ctx(), EVENTS).await.unwrap();
    let all = eventually(Duration::from_secs(10), || healthy.iter().all(|(_, s)| len(s) as u64 == EVENTS + 1)).await;
    assert!(all);
    assert_eq!(relay.stats.open_channels(), 5, "the publisher and the four healthy subscribers");
    drop((client, _caller));
    relay.stop().await;
}

#[tokio::test]
async fn a_publisher_needs_no_subscriber_and_later_subscribers_get_events_from_then_on() {
    let relay = MulticastRelay::start(|_| {}).await;
    // Over wss: accepted with nobody listening; its events are dropped.
    let (_caller, client) = relay.publisher(&relay.ws_url).await;
    for seq in 0..100 {
        client.event(ctx(), seq).await.unwrap();
    }
    let (_first_host, first) = relay.subscribe(&relay.quic_url, false).await;
    for seq in 100..200 {
        client.event(ctx(), seq).await.unwrap();
    }
    let (_second_host, second) = relay.subscribe(&relay.ws_url, false).await;
    for seq in 200..300 {
        client.event(ctx(), seq).await.unwrap();
    }
    assert!(eventually(Duration::from_secs(10), || len(&first) == 200 && len(&second) == 100).await);
    assert_eq!(*first.lock().unwrap(), (100..300).collect::<Vec<_>>());
    assert_eq!(*second.lock().unwrap(), (200..300).collect::<Vec<_>>());

    // A second publisher reaches the same subscribers.
    let (_caller2, client2) = relay.publisher(&relay.quic_url).await;
    client2.event(ctx(), 1_000).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || len(&first) == 201 && len(&second) == 101).await);
    assert_eq!(second.lock().unwrap().last(), Some(&1_000));
    drop((client, client2, _caller, _caller2));
    relay.stop().await;
}

#[tokio::test]
async fn a_subscriber_at_its_channel_limit_gets_no_more_publishers() {
    let relay = MulticastRelay::start(|c| c.max_channels_per_listener = 1).await;
    let (_host, seen) = relay.subscribe(&relay.quic_url, false).await;
    let (_first_caller, first) = relay.publisher(&relay.quic_url).await;
    first.event(ctx(), 1).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || len(&seen) == 1).await, "the first publisher reaches it");
    let (_second_caller, second) = relay.publisher(&relay.quic_url).await;
    second.event(ctx(), 2).await.unwrap();
    first.event(ctx(), 3).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || len(&seen) == 2).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*seen.lock().unwrap(), [1, 3], "the second publisher's event never reaches a full subscriber");
    assert_eq!(relay.stats.open_channels(), 3, "two publishers and one subscriber channel");
    relay.stop().await;
}
