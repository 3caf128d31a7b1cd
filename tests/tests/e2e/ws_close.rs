//! Issue #18: every WebSocket the relay terminates completes the closing handshake (RFC 6455,
//! section 5.5.1), seen from standard clients (tokio-tungstenite as a raw Hybrid Connections
//! sender and listener): a peer's close is answered, a channel's close reaches the other end as
//! a clean close with its code, and the relay's own closes (listener gone, token expired, drain)
//! carry their documented codes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use relay_tests::raw_ws::{self, Ending, Scheme, close_frame};
use relay_tests::{TestRelay, eventually};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

async fn relay() -> TestRelay {
    TestRelay::start_with(|c| c.ws_plain_listen = Some("127.0.0.1:0".parse().unwrap())).await
}

/// One message each way, so the channel is known to be spliced.
async fn exchange(sender: &mut raw_ws::Ws, rendezvous: &mut raw_ws::Ws) {
    sender.send(Message::text("ping?")).await.unwrap();
    let got = tokio::time::timeout(WAIT, rendezvous.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("ping?"));
    rendezvous.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let got = tokio::time::timeout(WAIT, sender.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::binary(vec![1, 2, 3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senders_close_is_answered_and_reaches_the_listener_as_a_clean_close() {
    let relay = relay().await;
    for scheme in [Scheme::Wss, Scheme::Ws] {
        let (_control, mut sender, mut rendezvous) = raw_ws::channel(&relay, scheme, "echo").await;
        exchange(&mut sender, &mut rendezvous).await;
        sender.close(close_frame(1000, "bye")).await.unwrap();
        assert_eq!(
            raw_ws::ending(&mut sender, WAIT).await,
            Ending::Clean(1000, "bye".into()),
            "{scheme:?}: the relay answers the sender's close, echoing its code"
        );
        assert_eq!(
            raw_ws::ending(&mut rendezvous, WAIT).await,
            Ending::Clean(1000, "bye".into()),
            "{scheme:?}: the listener sees the sender's close"
        );
    }
    assert!(eventually(WAIT, || relay.stats.open_channels() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_close_is_answered_too() {
    let relay = relay().await;
    let (_control, mut sender, mut rendezvous) = raw_ws::channel(&relay, Scheme::Wss, "echo").await;
    exchange(&mut sender, &mut rendezvous).await;
    sender.close(None).await.unwrap();
    // An empty close is echoed empty (1005: "no status" to the reader) and passed on as 1000.
    assert_eq!(raw_ws::ending(&mut sender, WAIT).await, Ending::Clean(1005, String::new()));
    assert_eq!(raw_ws::ending(&mut rendezvous, WAIT).await, Ending::Clean(1000, String::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_close_reaches_the_sender_with_its_code_and_is_answered() {
    let relay = relay().await;
    for scheme in [Scheme::Wss, Scheme::Ws] {
        let (_control, mut sender, mut rendezvous) = raw_ws::channel(&relay, scheme, "echo").await;
        exchange(&mut sender, &mut rendezvous).await;
        rendezvous.close(close_frame(1000, "done")).await.unwrap();
        assert_eq!(
            raw_ws::ending(&mut sender, WAIT).await,
            Ending::Clean(1000, "done".into()),
            "{scheme:?}: a listener's normal close reaches the sender as 1000, with its reason"
        );
        assert_eq!(
            raw_ws::ending(&mut rendezvous, WAIT).await,
            Ending::Clean(1000, "done".into()),
            "{scheme:?}: the relay answers the listener's close"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_drops_its_socket_reaches_the_sender_as_going_away() {
    let relay = relay().await;
    let (_control, mut sender, mut rendezvous) = raw_ws::channel(&relay, Scheme::Wss, "echo").await;
    exchange(&mut sender, &mut rendezvous).await;
    drop(rendezvous);
    assert_eq!(raw_ws::ending(&mut sender, WAIT).await, Ending::Clean(1001, "the listener went away".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_control_channel_close_is_answered() {
    let relay = relay().await;
    let token = raw_ws::token(&relay, "echo", Duration::from_secs(3600));
    let mut control = raw_ws::control(&relay, Scheme::Wss, "echo", &token).await;
    control.close(close_frame(1000, "leaving")).await.unwrap();
    assert_eq!(raw_ws::ending(&mut control, WAIT).await, Ending::Clean(1000, "leaving".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_listener_token_closes_the_control_channel_with_1008() {
    let relay = TestRelay::start_with(|c| c.clock_skew_secs = 0).await;
    let token = raw_ws::token(&relay, "echo", Duration::from_secs(2));
    let mut control = raw_ws::control(&relay, Scheme::Wss, "echo", &token).await;
    assert_eq!(raw_ws::ending(&mut control, Duration::from_secs(6)).await, Ending::Clean(1008, "token expired".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_relay_closes_listeners_with_1012_then_channels_after_the_grace() {
    let relay = TestRelay::start_with(|c| c.shutdown_grace_ms = 1_000).await;
    let (mut control, mut sender, mut rendezvous) = raw_ws::channel(&relay, Scheme::Wss, "echo").await;
    exchange(&mut sender, &mut rendezvous).await;
    let stop = tokio::spawn(relay.stop());
    let Ending::Clean(code, _) = raw_ws::ending(&mut control, WAIT).await else { panic!("control channel dropped") };
    assert_eq!(code, 1012, "go away: register elsewhere");
    let reason = "relay shutting down".to_owned();
    assert_eq!(raw_ws::ending(&mut sender, WAIT).await, Ending::Clean(1012, reason.clone()));
    assert_eq!(raw_ws::ending(&mut rendezvous, WAIT).await, Ending::Clean(1012, reason));
    stop.await.unwrap();
}
