//! Interop with Azure Relay's official Node.js client, `hyco-ws` 1.0.5, through our relay over
//! `wss://` speaking the Hybrid Connections protocol: hyco-ws on both ends, and hyco-ws facing
//! Rust hosts and callers on wss and on QUIC (the relay bridges WebSocket messages and QUIC frames).

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use relay_rpc::auth::{sas_token, unix_now};
use relay_tests::TestRelay;
use relay_tests::node::NodeScript;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn token(relay: &TestRelay, address: &str) -> String {
    let root = relay.root_key();
    // Signed the way hyco-ws signs: http://host:port/path.
    sas_token(
        &format!("http://127.0.0.1:{}/{address}", relay.ws_addr.port()),
        root.name(),
        root.secret(),
        unix_now() + 3600,
    )
}

fn listen_url(relay: &TestRelay, address: &str) -> String {
    format!("{}/$hc/{address}?sb-hc-action=listen", relay.ws_url)
}

fn connect_url(relay: &TestRelay, path: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{}/$hc/{path}{separator}sb-hc-action=connect", relay.ws_url)
}

fn listener(relay: &TestRelay, address: &str) -> NodeScript {
    let mut listener =
        NodeScript::spawn("hc-listener.js", &[&listen_url(relay, address), &token(relay, address)], &relay.cert);
    listener.expect("listening", WAIT);
    listener
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyco_listener_and_hyco_sender_talk_through_the_relay() {
    let relay = TestRelay::start().await;
    let mut listener = listener(&relay, "lab");
    let url = connect_url(&relay, "lab/sub/path?color=blue&n=1");
    let mut sender = NodeScript::spawn("hc-sender.js", &[&url, &token(&relay, "lab"), "hi", "ünïcode"], &relay.cert);
    sender.expect("open", WAIT);

    let connection = listener.expect("connection", WAIT);
    let address = connection["address"].as_str().unwrap();
    assert!(address.contains("/$hc/lab/sub/path?"), "suffix passed through: {address}");
    assert!(address.contains("color=blue") && address.contains("n=1"), "query passed through: {address}");
    assert!(address.contains("sb-hc-action=accept") && !address.contains("sb-hc-token"), "{address}");

    let mut received: Vec<serde_json::Value> = (0..4).map(|_| sender.next(WAIT)).collect();
    received.sort_by_key(|v| v.to_string());
    let mut expected = vec![
        json!({"event": "text", "text": "hello from hyco-ws"}),
        json!({"event": "text", "text": "echo:hi"}),
        json!({"event": "text", "text": "echo:ünïcode"}),
        json!({"event": "binary", "bytes": [4, 3, 2, 1]}),
    ];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(received, expected, "text and binary messages both ways");

    // A sender offering a sub-protocol: the hyco-ws listener takes the first offered, and both
    // ends agree on it.
    let mut chatty = NodeScript::spawn_with_env(
        "hc-sender.js",
        &[&connect_url(&relay, "lab"), &token(&relay, "lab")],
        &relay.cert,
        &[("PROTOCOL", "chat.v1")],
    );
    assert_eq!(chatty.expect("open", WAIT)["protocol"], "chat.v1");
    assert_eq!(listener.expect("connection", WAIT)["protocol"], "chat.v1");
    assert_eq!(chatty.next(WAIT), json!({"event": "text", "text": "hello from hyco-ws"}));
    drop(chatty);

    // The listener dies mid-conversation: the sender is told with the documented close code.
    listener.kill();
    let close = sender.expect("close", Duration::from_secs(3));
    assert_eq!(close["code"], 1001, "{close}");
}

/// Issue #18: a close from either end reaches the other as a clean close with its code, and the
/// relay answers the close it was sent, so hyco-ws sees a normal closure on both ends (a missing
/// reply shows as 1006).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyco_closes_are_answered_and_passed_on_cleanly_both_ways() {
    let relay = TestRelay::start().await;
    let mut listener = listener(&relay, "lab");

    let mut sender =
        NodeScript::spawn("hc-sender.js", &[&connect_url(&relay, "lab"), &token(&relay, "lab")], &relay.cert);
    sender.expect("open", WAIT);
    listener.expect("connection", WAIT);
    sender.send_line("close");
    let close = sender.expect("close", WAIT);
    assert_eq!(
        (close["code"].as_u64(), close["reason"].as_str()),
        (Some(1000), Some("bye")),
        "the relay answers: {close}"
    );
    let closed = listener.expect("closed", WAIT);
    assert_eq!((closed["code"].as_u64(), closed["reason"].as_str()), (Some(1000), Some("bye")), "{closed}");

    let mut sender = NodeScript::spawn(
        "hc-sender.js",
        &[&connect_url(&relay, "lab"), &token(&relay, "lab"), "close please"],
        &relay.cert,
    );
    sender.expect("open", WAIT);
    let close = sender.expect("close", WAIT);
    assert_eq!((close["code"].as_u64(), close["reason"].as_str()), (Some(1000), Some("done")), "{close}");
    let closed = listener.expect("closed", WAIT);
    assert_eq!(closed["code"].as_u64(), Some(1000), "the relay answers the listener's close: {closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_get_http_statuses_for_no_listener_bad_tokens_and_rejections() {
    let relay = TestRelay::start().await;
    let mut nobody =
        NodeScript::spawn("hc-sender.js", &[&connect_url(&relay, "nobody"), &token(&relay, "nobody")], &relay.cert);
    let error = nobody.expect("error", WAIT);
    assert!(error["message"].as_str().unwrap().contains("404"), "{error}");

    let _listener = listener(&relay, "lab");
    let mut forged =
        NodeScript::spawn("hc-sender.js", &[&connect_url(&relay, "lab"), &token(&relay, "other")], &relay.cert);
    let error = forged.expect("error", WAIT);
    assert!(error["message"].as_str().unwrap().contains("403"), "a token for another path: {error}");
    let root = relay.root_key();
    let bad = sas_token("http://127.0.0.1/lab", root.name(), "not-the-key", unix_now() + 60);
    let mut unsigned = NodeScript::spawn("hc-sender.js", &[&connect_url(&relay, "lab"), &bad], &relay.cert);
    let error = unsigned.expect("error", WAIT);
    assert!(error["message"].as_str().unwrap().contains("401"), "a bad signature: {error}");

    let mut rejecting = NodeScript::spawn(
        "hc-reject.js",
        &[&listen_url(&relay, "picky"), &token(&relay, "picky"), "418", "not today"],
        &relay.cert,
    );
    rejecting.expect("listening", WAIT);
    let mut refused =
        NodeScript::spawn("hc-sender.js", &[&connect_url(&relay, "picky"), &token(&relay, "picky")], &relay.cert);
    let error = refused.expect("error", WAIT);
    assert!(error["message"].as_str().unwrap().contains("418"), "the listener's own status: {error}");
    rejecting.expect("rejected", WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_callers_on_quic_and_wss_reach_a_hyco_listener() {
    let relay = TestRelay::start().await;
    let _listener = listener(&relay, "lab");
    for url in [&relay.url, &relay.ws_url] {
        rust_caller_reaches_the_hyco_listener(&relay, url).await;
    }
}

async fn rust_caller_reaches_the_hyco_listener(relay: &TestRelay, url: &str) {
    let caller = relay_rpc::Connection::connect(url, relay.options()).await.unwrap();
    let mut channel = caller.open_channel("lab", None).await.unwrap();
    let hello = tokio::time::timeout(WAIT, channel.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&hello[..], b"hello from hyco-ws", "a text message arrives as a frame");
    channel.send(Bytes::from_static(&[9, 8, 7])).await.unwrap();
    let reply = tokio::time::timeout(WAIT, channel.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&reply[..], &[7, 8, 9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hyco_sender_reaches_rust_hosts_on_quic_and_wss() {
    let relay = TestRelay::start().await;
    for url in [relay.url.clone(), relay.ws_url.clone()] {
        hyco_sender_reaches_a_rust_host(&relay, &url).await;
    }
}

async fn hyco_sender_reaches_a_rust_host(relay: &TestRelay, url: &str) {
    let host = relay_rpc::Host::connect(url, relay.options()).await.unwrap();
    let mut listener = host.listen("echo").await.unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            let Ok(mut channel) = incoming.accept().await else { continue };
            tokio::spawn(async move {
                while let Some(Ok(frame)) = channel.next().await {
                    let mut reply = frame.to_vec();
                    reply.reverse();
                    if channel.send(Bytes::from(reply)).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut sender =
        NodeScript::spawn("hc-sender.js", &[&connect_url(relay, "echo"), &token(relay, "echo"), "abc"], &relay.cert);
    sender.expect("open", WAIT);
    // The host sees frames; its replies come back as binary messages.
    let mut replies: Vec<serde_json::Value> = (0..2).map(|_| sender.next(WAIT)).collect();
    replies.sort_by_key(|v| v.to_string());
    assert_eq!(
        replies,
        [json!({"event": "binary", "bytes": [4, 3, 2, 1]}), json!({"event": "binary", "bytes": [99, 98, 97]})]
    );
    host.close();
    let close = sender.expect("close", Duration::from_secs(3));
    assert_eq!(close["code"], 1001, "the host left: {close}");
}
