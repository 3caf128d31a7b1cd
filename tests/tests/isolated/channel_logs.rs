//! One channel, one id in every log line about it: on the host (a channel it refuses, an HTTP
//! request it answers as a JSON call) and on the caller (a frame its typed channel drops, an
//! idempotent call it retries), the id the relay logs the channel under.
//!
//! The test runs on one thread under a tracing subscriber of its own (the thread's default), which
//! captures the relay's, the host's and the caller's lines. It runs alone ([`crate::ALONE`]): with
//! other tests' threads logging beside it, tracing could cache a callsite's interest without this
//! thread's subscriber, and lines came without their spans.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use relay_rpc::CallContext;
use relay_tests::https;
use relay_tests::lab::{LabClient, LabEvent, LabHost, ServeLab};
use relay_tests::{CapturedLogs, TestRelay, next_event};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

/// A contract for the caller's side: one idempotent method.
#[relay_rpc::relay_service(name = "logs.Again")]
pub trait Again {
    /// The host's name.
    #[idempotent]
    async fn name() -> String;
}

#[derive(Clone)]
struct Named(&'static str);

impl Again for Named {
    async fn name(&self) -> String {
        self.0.to_owned()
    }
}

/// The innermost `channel{id, address, transport}` span a line is in.
fn channel_span(line: &Value) -> Option<&Value> {
    line["spans"].as_array()?.iter().rev().find(|span| span["name"] == "channel")
}

/// The channel a line is about: its own `channel` field, or the id of the `channel` span it is
/// in.
fn channel_of(line: &Value) -> Option<u64> {
    line["fields"]["channel"].as_u64().or_else(|| channel_span(line)?["id"].as_u64())
}

/// The lines of `lines` in a `channel` span of `address`.
fn on_address<'a>(lines: Vec<&'a Value>, address: &str) -> Vec<&'a Value> {
    lines.into_iter().filter(|line| channel_span(line).is_some_and(|span| span["address"] == address)).collect()
}

/// The lines from `target` (a crate, or a module path's start) whose message is `message`.
fn lines_of<'a>(lines: &'a [Value], target: &str, message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| line["target"].as_str().is_some_and(|t| t.starts_with(target)))
        .filter(|line| line["fields"]["message"] == message)
        .collect()
}

/// The ids the relay logged channels to `address` under (its spans `channel{id, address, ..}`).
fn relay_ids(lines: &[Value], address: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = lines
        .iter()
        .filter(|line| line["target"].as_str().is_some_and(|t| t.starts_with("relay_server")))
        .filter_map(|line| line["spans"].as_array())
        .flatten()
        .filter(|span| span["name"] == "channel" && span["address"] == address)
        .filter_map(|span| span["id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The next channel to `listener`, accepted whatever its contract, and its id.
async fn accept(listener: &mut relay_rpc::Listener) -> (u64, relay_rpc::Channel) {
    let incoming = listener.accept().await.expect("a channel");
    (incoming.id(), incoming.accept().await.expect("accepted"))
}

#[tokio::test]
async fn every_log_line_about_a_channel_carries_its_id_on_the_host_and_the_caller() {
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    let _alone = crate::ALONE.lock().await;
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(true)
        .with_env_filter("relay_rpc=debug,relay_server=debug")
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let relay = TestRelay::start().await;
    for (transport, url) in [("quic", relay.url.clone()), ("wss", relay.ws_url.clone())] {
        let caller = relay.caller_on(&url).await;

        // The host refuses a channel of another contract.
        let refused = format!("refused-{transport}");
        let (_lab, _events) = relay.serve_lab(&url, &refused, "lab").await;
        assert!(AgainClient::connect(&caller, &refused).await.is_err(), "{transport}: another contract is refused");

        // The host answers an HTTP request as a JSON call, whose sender goes away mid-call.
        let json = format!("json-{transport}");
        let host = relay.host_on(&url).await;
        let (lab, mut events) = LabHost::new("json");
        tokio::spawn(host.listen_http(&json).await.expect("listens").serve(ServeLab::new(lab)));
        let token = https::token(&relay, &json);
        let body = r#"{"ms":60000,"tag":1}"#;
        let request = format!(
            "POST /{json}/Lab/sleep HTTP/1.1\r\nhost: 127.0.0.1\r\nServiceBusAuthorization: {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut sender = https::tls(&relay).await;
        sender.write_all(request.as_bytes()).await.expect("request written");
        assert_eq!(next_event(&mut events).await, LabEvent::Started(1));
        drop(sender);
        assert_eq!(next_event(&mut events).await, LabEvent::Cancelled(1));

        // The caller's typed channel drops a frame that names no request.
        let garbage = format!("garbage-{transport}");
        let raw = relay.host_on(&url).await;
        let mut listener = raw.listen(&garbage).await.expect("listens");
        let (client, (garbage_id, mut channel)) =
            tokio::join!(LabClient::connect(&caller, &garbage), accept(&mut listener));
        let client = client.expect("opens");
        channel.send(Bytes::from_static(&[0xff])).await.expect("sent");
        let _ = client.whoami(CallContext::with_timeout(Duration::from_millis(300))).await;

        // The caller retries an idempotent call when its channel's host leaves mid-call.
        let again = format!("again-{transport}");
        let leaving = relay.host_on(&url).await;
        let mut listener = leaving.listen(&again).await.expect("listens");
        let (client, (broken_id, mut channel)) =
            tokio::join!(AgainClient::connect(&caller, &again), accept(&mut listener));
        let client = client.expect("opens");
        let staying = relay.host_on(&url).await;
        tokio::spawn(staying.listen(&again).await.expect("listens").serve(ServeAgain::new(Named("staying"))));
        let call = tokio::spawn(async move { client.name(CallContext::default()).await });
        channel.next().await.expect("the request").expect("a frame");
        leaving.close();
        drop(channel);
        assert_eq!(call.await.unwrap().expect("retried on the staying host"), "staying", "{transport}");
        tokio::time::sleep(Duration::from_millis(200)).await;

        let lines = captured.json_lines();
        let dump = || lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        let refusing = on_address(lines_of(&lines, "relay_rpc::host", "refusing channel"), &refused);
        let [refusing] = refusing[..] else { panic!("{transport}: one refusal of {refused}:\n{}", dump()) };
        // (The relay logs its refusal outside the channel's span, and the caller is told no id.)
        assert!(channel_of(refusing).is_some_and(|id| id > 0), "{transport}: {refusing}");
        assert_eq!(channel_span(refusing).unwrap()["transport"], transport, "{refusing}");

        let cancelled = on_address(lines_of(&lines, "relay_rpc::host", "the sender went away: call cancelled"), &json);
        let [cancelled] = cancelled[..] else { panic!("{transport}: one cancellation on {json}:\n{}", dump()) };
        assert_eq!(relay_ids(&lines, &json), [channel_of(cancelled).unwrap()], "{transport}: {cancelled}");
        assert_eq!(channel_span(cancelled).unwrap()["transport"], transport, "{cancelled}");

        let dropped = lines_of(&lines, "relay_rpc::contract", "typed channel");
        assert!(
            dropped.iter().any(|line| channel_of(line) == Some(garbage_id)),
            "{transport}: the caller's dropped frame, on channel {garbage_id}:\n{}",
            dump()
        );

        let retried = lines_of(&lines, "relay_rpc::client", "retrying idempotent call");
        assert!(
            retried.iter().any(|line| channel_of(line) == Some(broken_id)),
            "{transport}: the retry names the broken channel {broken_id}:\n{}",
            dump()
        );
        assert!(relay_ids(&lines, &again).contains(&broken_id), "{transport}: the relay's id");
    }
}
