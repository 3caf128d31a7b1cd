//! Typed contracts called as JSON over plain HTTPS: `POST https://{relay}/{address}/{Contract}/{method}`
//! reaches a Rust host registered with `Host::listen_http`, over QUIC or wss, as a channel; the
//! host answers through the same dispatch as bincode calls, on this node or on another node of a
//! cluster. A call whose sender goes away is cancelled; a `#[oneway]` call is answered 202 and
//! runs on the host. (What carries them, the raw `relay_rpc::http` API: `http_channels.rs`.)

use std::time::{Duration, Instant};

use relay_rpc::Host;
use relay_tests::https::{self, Response};
use relay_tests::lab::{LabEvent, LabHost, ServeLab};
use relay_tests::{SLACK, TestRelay, next_event};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc::UnboundedReceiver;

/// Serves the lab named `name` on `address`, taking HTTP, from a new host on `url`.
async fn serve_lab_http(
    relay: &TestRelay,
    url: &str,
    address: &str,
    name: &str,
) -> (Host, UnboundedReceiver<LabEvent>) {
    let host = relay.host_on(url).await;
    let (lab, events) = LabHost::new(name);
    tokio::spawn(host.listen_http(address).await.expect("listens").serve(ServeLab::new(lab)));
    (host, events)
}

/// POSTs `json` to `target` with a send token for `address` and the JSON content type.
async fn post(relay: &TestRelay, address: &str, target: &str, json: &str, extra: &[(&str, &str)]) -> Response {
    let token = https::token(relay, address);
    let mut headers = vec![("ServiceBusAuthorization", token.as_str()), ("content-type", "application/json")];
    headers.extend_from_slice(extra);
    https::request(relay, "POST", target, &headers, json.as_bytes().to_vec()).await
}

/// A host's answer: relayed (with `Via`) and JSON.
fn assert_json(response: &Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status, status, "{response:?}");
    assert!(response.header("via").is_some(), "a host's answer carries Via: {response:?}");
    assert!(response.header("content-type").is_some_and(|ct| ct.starts_with("application/json")), "{response:?}");
    response.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_calls_reach_hosts_over_quic_and_wss() {
    let relay = TestRelay::start().await;
    for (url, address, name) in [(&relay.url, "lab-quic", "over-quic"), (&relay.ws_url, "lab-wss", "over-wss")] {
        let (_host, _events) = serve_lab_http(&relay, url, address, name).await;
        let even = post(&relay, address, &format!("/{address}/Lab/first_even"), r#"{"values":[1,3,8,5]}"#, &[]).await;
        assert_eq!(assert_json(&even, 200), serde_json::json!(8), "{address}");
        let none = post(&relay, address, &format!("/{address}/first_even"), r#"{"values":[1]}"#, &[]).await;
        assert_eq!(assert_json(&none, 200), serde_json::Value::Null, "{address}: the short path");
        let who = post(&relay, address, &format!("/{address}/Lab/whoami"), "", &[]).await;
        assert_eq!(assert_json(&who, 200), serde_json::json!(name), "{address}: no arguments, empty body");
        let shape = r#"{"shape":{"Circle":{"center":{"x":1.5,"y":-2.0,"label":"c"},"radius":3.0}}}"#;
        let echoed = post(&relay, address, &format!("/{address}/Lab/echo_shape"), shape, &[]).await;
        assert_eq!(
            assert_json(&echoed, 200),
            serde_json::json!({"Circle":{"center":{"x":1.5,"y":-2.0,"label":"c"},"radius":3.0}}),
            "{address}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_call_errors_follow_connect_and_keep_service_errors_apart() {
    let relay = TestRelay::start().await;
    let (_host, mut events) = serve_lab_http(&relay, &relay.url, "lab", "errors").await;

    let failed = post(&relay, "lab", "/lab/Lab/check", r#"{"value":-5}"#, &[]).await;
    let body = assert_json(&failed, 400);
    assert_eq!(body["code"], "failed_precondition", "{body}");
    assert_eq!(body["serviceError"], serde_json::json!({"Refused": -5}), "{body}");
    let fine = post(&relay, "lab", "/lab/Lab/check", r#"{"value":5}"#, &[]).await;
    assert_eq!(assert_json(&fine, 200), serde_json::json!(5));

    for (target, json, status, code) in [
        ("/lab/Lab/no_such_method", "{}", 501, "unimplemented"),
        ("/lab/Other/whoami", "{}", 404, "not_found"),
        ("/lab/Lab/first_even", "{not json", 400, "invalid_argument"),
        ("/lab/Lab/first_even", r#"{"values":"x"}"#, 400, "invalid_argument"),
        ("/lab/Lab/first_even", "{}", 400, "invalid_argument"),
    ] {
        let answer = post(&relay, "lab", target, json, &[]).await;
        assert_eq!(assert_json(&answer, status)["code"], code, "{target} {json}: {answer:?}");
    }
    let token = https::token(&relay, "lab");
    let text = https::request(
        &relay,
        "POST",
        "/lab/Lab/whoami",
        &[("ServiceBusAuthorization", &token), ("content-type", "text/plain")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(text.status, 415, "{text:?}");

    // The call's deadline, from Connect-Timeout-Ms: the handler is cancelled at it.
    let slow = post(&relay, "lab", "/lab/Lab/sleep", r#"{"ms":30000,"tag":7}"#, &[("connect-timeout-ms", "300")]).await;
    assert_eq!(assert_json(&slow, 504)["code"], "deadline_exceeded", "{slow:?}");
    assert_eq!(next_event(&mut events).await, LabEvent::Started(7));
    assert_eq!(next_event(&mut events).await, LabEvent::Cancelled(7));

    // The description, for people finding out how to call the service.
    let described = https::get(&relay, "/lab/", &[("ServiceBusAuthorization", &token)]).await;
    let description = assert_json(&described, 200);
    assert_eq!(description["contract"], "Lab", "{description}");
    let methods = description["methods"].as_array().expect("a method list");
    let add = methods.iter().find(|m| m["name"] == "first_even").expect("first_even described");
    assert_eq!(add["path"], "/lab/Lab/first_even", "{description}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_call_is_cancelled_on_the_host_when_its_sender_goes_away() {
    let relay = TestRelay::start().await;
    for (url, address, tag) in [(&relay.url, "gone-quic", 1), (&relay.ws_url, "gone-wss", 2)] {
        let (_host, mut events) = serve_lab_http(&relay, url, address, "left").await;
        // A call that would run for a minute, with a deadline and a relay timeout as far away.
        let token = https::token(&relay, address);
        let body = format!(r#"{{"ms":60000,"tag":{tag}}}"#);
        let request = format!(
            "POST /{address}/Lab/sleep HTTP/1.1\r\nhost: 127.0.0.1\r\nServiceBusAuthorization: {token}\r\n\
             content-type: application/json\r\nconnect-timeout-ms: 60000\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut sender = https::tls(&relay).await;
        sender.write_all(request.as_bytes()).await.expect("request written");
        assert_eq!(next_event(&mut events).await, LabEvent::Started(tag), "{address}");

        // The sender drops its connection mid-call: the handler is dropped at once, not at the
        // deadline.
        drop(sender);
        let left = Instant::now();
        assert_eq!(next_event(&mut events).await, LabEvent::Cancelled(tag), "{address}");
        assert!(left.elapsed() < SLACK, "{address}: cancelled {:?} after the sender left", left.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_call_to_a_one_way_method_is_answered_202_through_the_relay_and_runs_on_the_host() {
    let relay = TestRelay::start().await;
    for (url, address, tag) in [(&relay.url, "note-quic", 1), (&relay.ws_url, "note-wss", 2)] {
        let (_host, mut events) = serve_lab_http(&relay, url, address, "noting").await;
        let taken = post(&relay, address, &format!("/{address}/Lab/note"), &format!(r#"{{"tag":{tag}}}"#), &[]).await;
        assert_eq!(taken.status, 202, "{address}: {taken:?}");
        assert!(taken.header("via").is_some(), "{address}: the host's answer: {taken:?}");
        assert!(taken.body.is_empty(), "{address}: {taken:?}");
        assert_eq!(next_event(&mut events).await, LabEvent::Noted(tag), "{address}: the host ran it");

        // Its arguments are checked before it is taken: a bad one is a 400, and never runs.
        let bad = post(&relay, address, &format!("/{address}/Lab/note"), r#"{"tag":"x"}"#, &[]).await;
        assert_eq!(assert_json(&bad, 400)["code"], "invalid_argument", "{address}");
        let again =
            post(&relay, address, &format!("/{address}/note"), &format!(r#"{{"tag":{}}}"#, tag + 10), &[]).await;
        assert_eq!(again.status, 202, "{address}: the short path: {again:?}");
        assert_eq!(next_event(&mut events).await, LabEvent::Noted(tag + 10), "{address}: the bad call did not run");

        let token = https::token(&relay, address);
        let described = https::get(&relay, &format!("/{address}/"), &[("ServiceBusAuthorization", &token)]).await;
        let description = assert_json(&described, 200);
        let note = description["methods"].as_array().and_then(|m| m.iter().find(|m| m["name"] == "note"));
        assert_eq!(note.map(|m| m["oneway"].clone()), Some(serde_json::json!(true)), "{description}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_call_to_one_node_reaches_a_host_on_another() {
    use relay_proto::auth::{sas_token, unix_now};
    use relay_tests::cluster::{ClusterNode, settle};
    use relay_tests::https::Connection as Https;
    use relay_tests::nats::TestNats;

    let nats = TestNats::start();
    let data = relay_tests::temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "json", &data);
    let b = ClusterNode::start(&nats.url(), "json", &data);
    let root = relay_rpc::auth::SharedAccessKey::from_file(data.join("root.key")).expect("root key");
    let b_addr: std::net::SocketAddr = b.ws_url.trim_start_matches("wss://").parse().expect("node b's address");
    let mut hosts = Vec::new();
    for (url, address) in [(&a.url, "lab-quic"), (&a.ws_url, "lab-wss")] {
        let host = Host::connect(url, a.options()).await.expect("host connects to node a");
        let (lab, _events) = LabHost::new(address);
        tokio::spawn(host.listen_http(address).await.expect("listens").serve(ServeLab::new(lab)));
        hosts.push(host);
    }
    for address in ["lab-quic", "lab-wss"] {
        let send = sas_token(&format!("https://127.0.0.1/{address}"), root.name(), root.secret(), unix_now() + 3600);
        let headers = [("ServiceBusAuthorization", send.as_str()), ("content-type", "application/json")];
        // Node b names the address once its view knows of the listener (404 until then), and
        // reaches it once node a's view knows node b too (502, no listener, until then), as
        // channels do while a cluster's views settle.
        let deadline = std::time::Instant::now() + settle();
        let who = loop {
            let answer = Https::open_to(b_addr, &data.join("cert.pem"))
                .await
                .send("POST", &format!("/{address}/Lab/whoami"), &headers, b"{}".to_vec())
                .await;
            if !matches!(answer.status, 404 | 502) || std::time::Instant::now() > deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(assert_json(&who, 200), serde_json::json!(address), "{who:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoverable_addresses_are_listed_with_their_contracts_to_callers_that_may_send_there() {
    use relay_server::AddressConfig;

    let relay = TestRelay::start_with(|c| {
        let discoverable = |path: &str| AddressConfig { path: path.into(), discoverable: true, ..Default::default() };
        c.addresses = vec![
            discoverable("lab"),
            discoverable("empty"),
            AddressConfig { path: "hidden".into(), ..Default::default() },
        ];
    })
    .await;
    let (_lab, _events) = serve_lab_http(&relay, &relay.ws_url, "lab", "described").await;
    let (_hidden, _events) = serve_lab_http(&relay, &relay.url, "hidden", "hidden").await;
    let (_second, _events) = relay.serve_lab(&relay.url, "lab", "a second listener").await;

    let everything = https::token(&relay, "");
    let listing = https::get(&relay, "/$discovery", &[("ServiceBusAuthorization", &everything)]).await;
    assert_eq!(listing.status, 200, "{listing:?}");
    let listing = listing.json();
    let addresses = listing["addresses"].as_array().expect("a list");
    let names: Vec<&str> = addresses.iter().filter_map(|a| a["address"].as_str()).collect();
    assert_eq!(names, ["lab", "empty"], "the discoverable ones only: {listing}");
    let lab = &addresses[0];
    assert_eq!(lab["listeners"], 2, "{lab}");
    assert_eq!(lab["contract"]["contract"], "Lab", "{lab}");
    let methods = lab["contract"]["methods"].as_array().expect("methods");
    assert!(methods.iter().any(|m| m["signature"] == "first_even(Vec<i64>)->Option<i64>"), "{lab}");
    assert_eq!((addresses[1]["listeners"].clone(), addresses[1].get("contract")), (serde_json::json!(0), None));

    // A token for one address shows that one; none, nothing.
    let one = https::token(&relay, "empty");
    let listing = https::get(&relay, "/$discovery", &[("ServiceBusAuthorization", &one)]).await.json();
    let names: Vec<&str> =
        listing["addresses"].as_array().unwrap().iter().filter_map(|a| a["address"].as_str()).collect();
    assert_eq!(names, ["empty"], "{listing}");
    let anonymous = https::get(&relay, "/$discovery", &[]).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");

    // `relay list`, the real binary, beside the relay's data directory (it signs its own token).
    let relay_tool = relay_tests::binary("relay-forward", "relay", &[]);
    let output = std::process::Command::new(relay_tool)
        .args(["list", "--relay", &relay.ws_url, "--data-dir", relay.dir().to_str().unwrap()])
        .output()
        .expect("relay list runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed} {}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines[0].starts_with("lab  listeners: 2  contract: Lab ("), "{printed}");
    assert!(lines.contains(&"    first_even(Vec<i64>)->Option<i64>  POST /lab/Lab/first_even"), "{printed}");
    assert_eq!(lines.last(), Some(&"empty  listeners: 0  contract: -"), "{printed}");
}
