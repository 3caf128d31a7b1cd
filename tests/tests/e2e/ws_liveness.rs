//! Issue #19 (liveness and memory of spliced WebSockets): TCP keepalive on accepted
//! connections; pings to quiet WebSocket channel ends and a cut for ends that send nothing at
//! all; a relay-wide budget for buffered message bytes that holds senders back instead of
//! allocating, and refuses a message larger than itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use relay_tests::raw_ws::{self, Ending, Scheme};
use relay_tests::{SLACK, TestRelay, eventually, ms};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for what must come before it calls it hung.
const WAIT: Duration = Duration::from_secs(10);

/// Keeps reading `ws` (so pings are answered) until it ends; reports pings and data.
fn read_on(
    mut ws: impl StreamExt<Item = Result<Message, impl std::fmt::Debug>> + Unpin + Send + 'static,
) -> mpsc::UnboundedReceiver<Message> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            if tx.send(message).is_err() {
                break;
            }
        }
    });
    rx
}

/// A relay that pings after 200 ms of silence and cuts after 1 s.
async fn lively_relay() -> TestRelay {
    TestRelay::start_with(|c| {
        c.keep_alive_ms = 200;
        c.idle_timeout_ms = 1_000;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_goes_silent_is_cut_within_the_idle_timeout() {
    let relay = lively_relay().await;
    let (control, mut sender, mut rendezvous) = raw_ws::channel(&relay, Scheme::Wss, "echo").await;
    let _control = read_on(control);
    let idle_timeout = ms(relay.config().idle_timeout_ms);
    // The relay hears this last frame after the sender starts sending it: from then on the sender
    // reads nothing, so it answers no ping, and sends nothing.
    let silent = Instant::now();
    sender.send(Message::text("hello")).await.unwrap();
    assert_eq!(rendezvous.next().await.unwrap().unwrap(), Message::text("hello"));
    let ending = raw_ws::ending(&mut rendezvous, idle_timeout + SLACK).await;
    assert_eq!(ending, Ending::Clean(1001, "the sender went away".into()), "the listener is told as for a lost sender");
    let after = silent.elapsed();
    assert!(after >= idle_timeout, "cut after {after:?}, before the idle timeout of {idle_timeout:?}");
    assert!(after < idle_timeout + SLACK, "cut after {after:?}, not by the idle timeout of {idle_timeout:?}");
    match raw_ws::ending(&mut sender, WAIT).await {
        Ending::Clean(code, reason) | Ending::ClosedThenFailed(code, reason) => {
            assert_eq!((code, reason.as_str()), (1001, "idle timeout: no frame or pong"))
        }
        other => panic!("the silent sender is sent a close: {other:?}"),
    }
    assert!(eventually(WAIT, || relay.stats.open_channels() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_channel_whose_ends_answer_pings_outlives_the_idle_timeout() {
    let relay = lively_relay().await;
    let (control, sender, rendezvous) = raw_ws::channel(&relay, Scheme::Wss, "echo").await;
    let _control = read_on(control);
    let (mut sender_tx, sender_rx) = sender.split();
    let mut to_sender = read_on(sender_rx);
    let mut to_listener = read_on(rendezvous);
    // Quiet both ways for 2.5 idle timeouts; the readers answer the relay's pings.
    tokio::time::sleep(ms(relay.config().idle_timeout_ms) * 5 / 2).await;
    sender_tx.send(Message::text("still here")).await.unwrap();
    let mut listener_pings = 0;
    loop {
        match tokio::time::timeout(WAIT, to_listener.recv()).await.unwrap() {
            Some(Message::Ping(_)) => listener_pings += 1,
            Some(message) => break assert_eq!(message, Message::text("still here")),
            None => panic!("the listener's socket ended"),
        }
    }
    let mut sender_pings = 0;
    while let Ok(message) = to_sender.try_recv() {
        assert!(matches!(message, Message::Ping(_)), "{message:?}");
        sender_pings += 1;
    }
    // About one ping per 200 ms of silence, each way.
    assert!(listener_pings >= 5 && sender_pings >= 5, "pings: listener {listener_pings}, sender {sender_pings}");
    assert_eq!(relay.stats.open_channels(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_held_back_by_a_listener_that_reads_nothing_is_still_pinged() {
    // Pings after 200 ms of silence; the listener is not cut for its silence within the test.
    let relay = TestRelay::start_with(|c| {
        c.keep_alive_ms = 200;
        c.idle_timeout_ms = 5_000;
    })
    .await;
    let (control, sender, _rendezvous) = raw_ws::channel(&relay, Scheme::Wss, "echo").await;
    let _control = read_on(control);
    let (mut sender_tx, sender_rx) = sender.split();
    let mut to_sender = read_on(sender_rx);
    // The listener reads nothing: the relay's writes to it fill the socket, and then the relay
    // stops reading the sender, whose own pings (and answers) wait behind its messages.
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn({
        let sent = sent.clone();
        async move {
            while sender_tx.send(Message::binary(vec![7u8; 64 * 1024])).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let held_back = async {
        loop {
            let before = sent.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            if sent.load(Ordering::Relaxed) == before {
                break before;
            }
        }
    };
    let held_at = tokio::time::timeout(WAIT, held_back).await.expect("the sender is held back");
    while to_sender.try_recv().is_ok() {}
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(sent.load(Ordering::Relaxed), held_at, "still held back");
    // The relay, which hears nothing from the sender while it is not reading it, still tells the
    // sender that it is alive: about one ping per 200 ms.
    let mut pings = 0;
    while let Ok(message) = to_sender.try_recv() {
        assert!(matches!(message, Message::Ping(_)), "{message:?}");
        pings += 1;
    }
    assert!(pings >= 4, "{pings} pings in 1.5 s to a sender held back");
    flood.abort();
}

/// The `tr` (active timer) column of the kernel's line for the TCP socket from `local` to
/// `remote`: 2 is the keepalive timer.
#[cfg(target_os = "linux")]
fn tcp_timer(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Option<u32> {
    let hex = |addr: std::net::SocketAddr| match addr.ip() {
        std::net::IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), addr.port()),
        std::net::IpAddr::V6(_) => String::new(),
    };
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&hex(local).as_str()) && fields.get(2) == Some(&hex(remote).as_str()))
            .then(|| fields.get(5)?.split(':').next().and_then(|t| u32::from_str_radix(t, 16).ok()))
            .flatten()
    })
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_tcp_connections_have_keepalive_on() {
    let relay = TestRelay::start().await;
    // A connection that has not even sent its request head: no WebSocket ping can reach it.
    let tcp = tokio::net::TcpStream::connect(relay.ws_addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let found = eventually(WAIT, || tcp_timer(relay.ws_addr, local) == Some(2)).await;
    assert!(found, "the relay's end has its keepalive timer running: timer {:?}", tcp_timer(relay.ws_addr, local));
}

/// Checks in a row (`eventually` checks every 10 ms) that a flooding channel holds the whole
/// budget: 300 ms.
const STALLED_CHECKS: u32 = 30;

/// A relay with a 1 MiB buffer budget (messages may be up to 16 MiB).
async fn budget_relay() -> TestRelay {
    TestRelay::start_with(|c| c.max_buffered_bytes = 1024 * 1024).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_whole_budget_is_refused_with_1009() {
    let relay = budget_relay().await;
    let (control, mut sender, mut rendezvous) = raw_ws::channel(&relay, Scheme::Wss, "echo").await;
    let _control = read_on(control);
    let send = sender.send(Message::binary(vec![7u8; 2 * 1024 * 1024]));
    let _ = tokio::time::timeout(WAIT, send).await.expect("the relay drains the refused message");
    match raw_ws::ending(&mut sender, WAIT).await {
        Ending::Clean(code, _) | Ending::ClosedThenFailed(code, _) => assert_eq!(code, 1009),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    assert_eq!(raw_ws::ending(&mut rendezvous, WAIT).await, Ending::Clean(1001, "the sender went away".into()));
    assert!(eventually(WAIT, || relay.stats.buffered_bytes() == 0).await, "{}", relay.stats.buffered_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_holds_other_channels_back_until_messages_are_written_on() {
    let relay = budget_relay().await;
    // Channel A: the listener reads nothing, so A's messages pile up at the relay.
    let (control_a, mut sender_a, rendezvous_a) = raw_ws::channel(&relay, Scheme::Wss, "a").await;
    let _control_a = read_on(control_a);
    let flood = tokio::spawn(async move {
        for _ in 0..40 {
            if sender_a.send(Message::binary(vec![1u8; 512 * 1024])).await.is_err() {
                break;
            }
        }
        sender_a
    });
    // Stalled: A holds a message it cannot write, its listener's socket full, and keeps holding
    // what it holds: that message, and the next one reserved whole too if its header had come in
    // before the relay stopped reading A (it reads on only once the message is written). Either
    // way, B's message below does not fit beside it. Until then A's messages move on, and a
    // message of B's waiting for budget may get it between two of A's.
    let (mut steady, mut last) = (0, 0);
    let stalled = eventually(WAIT, || {
        let held = relay.stats.buffered_bytes();
        steady = if held >= 512 * 1024 && held == last { steady + 1 } else { 0 };
        last = held;
        steady >= STALLED_CHECKS
    })
    .await;
    assert!(stalled, "A's listener's socket is full and A holds a message or two: {}", relay.stats.buffered_bytes());

    // Channel B: a message that does not fit in what is left waits, with B's sender held back.
    let (control_b, mut sender_b, rendezvous_b) = raw_ws::channel(&relay, Scheme::Wss, "b").await;
    let _control_b = read_on(control_b);
    let mut to_b = read_on(rendezvous_b);
    sender_b.send(Message::binary(vec![2u8; 900 * 1024])).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(1_000), to_b.recv()).await;
    assert!(early.is_err(), "B's message waits for budget");
    assert!(relay.stats.buffered_bytes() <= 1024 * 1024, "never above the budget: {}", relay.stats.buffered_bytes());

    // A's listener reads: A's messages are written on, and B's gets its turn.
    let _drain_a = read_on(rendezvous_a);
    let message = tokio::time::timeout(WAIT, to_b.recv()).await.expect("B's message arrives").unwrap();
    assert_eq!(message.len(), 900 * 1024);
    let _sender_a = tokio::time::timeout(Duration::from_secs(20), flood).await.expect("A's flood goes through");
}
