//! Hybrid Connections HTTP mode: plain HTTPS requests to `https://{relay}/{address}/...` on the
//! relay's `wss://` port, relayed to the official Node.js HTTP-mode listener, `hyco-https` 1.4.5
//! (`tests/node/https-listener.js`), and its answers relayed back.
//!
//! Covered: a GET with query, suffix and custom headers (token in `ServiceBusAuthorization` or in
//! `?sb-hc-token=`, stripped either way); request bodies on the control channel (10 KB) and over a
//! rendezvous (100 KB, above the 64 KiB control-channel limit); a 200 KB response, which hyco-https
//! sends over a rendezvous it opens; a 204 (hyco-https follows it with a stray empty frame); the
//! headers the listener sees (no token, no `Host`, `Via` added, `Authorization` passed through);
//! `Via` on every listener answer and on none of the relay's own (401, 403, 404, 400, 502, 503,
//! 504); the address's response timeout (504); a listener dying mid-request (502 at once); two
//! requests on one keep-alive connection. CORS on an address with `allowed_origins`: the relay
//! answers preflights itself, marks answers to allowed origins, and refuses other origins; an
//! address without them passes `OPTIONS` and `Origin` to the listener untouched. (The same seen
//! from a real browser's pages: `browser.rs`; the open rate, chunked bodies, `Expect:
//! 100-continue` and anonymous senders: `hc_http_edges.rs`.)

use std::time::{Duration, Instant};

use futures::StreamExt;
use relay_server::AddressConfig;
use relay_server::Config;
use relay_tests::https::{self, Connection, Response, sha256_hex};
use relay_tests::lab::{LabClient, LabHost, ServeLab};
use relay_tests::node::https_listener;
use relay_tests::raw_ws::{self, Scheme};
use relay_tests::{SLACK, TestRelay, ms};
use tokio_tungstenite::tungstenite::Message;

/// How long the Node listener may take to report a request.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The HTTP-enabled address the tests use.
pub(crate) const WEB: &str = "web";

/// A relay whose address `web` takes HTTP requests, after `configure`.
pub(crate) async fn relay_with(configure: impl FnOnce(&mut Config)) -> TestRelay {
    TestRelay::start_with(|c| {
        c.addresses = vec![AddressConfig { path: WEB.into(), http: true, ..Default::default() }];
        configure(c);
    })
    .await
}

pub(crate) async fn relay() -> TestRelay {
    relay_with(|_| {}).await
}

/// A `(ServiceBusAuthorization, send token)` header for `address`.
pub(crate) fn auth(relay: &TestRelay, address: &str) -> (&'static str, String) {
    ("ServiceBusAuthorization", https::token(relay, address))
}

/// A body of `n` bytes that is not a repeating pattern of any short period.
pub(crate) fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(7) ^ (i / 251)) as u8).collect()
}

/// A listener's answer, relayed: it carries the relay's `Via`.
pub(crate) fn assert_relayed(response: &Response) {
    let via = response.header("via").unwrap_or_else(|| panic!("a listener's answer carries Via: {response:?}"));
    assert!(via.contains("1.1 "), "Via names the protocol version: {via:?}");
}

/// The relay's own answer: `status`, and no `Via` (that is how a sender tells it from a listener's).
pub(crate) fn assert_relay_answer(response: &Response, status: u16) {
    assert_eq!(response.status, status, "{response:?} (body {:?})", response.text());
    assert_eq!(response.header("via"), None, "the relay's own answers carry no Via: {response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_query_and_custom_header_reaches_the_listener_and_its_answer_carries_via() {
    let relay = relay().await;
    let mut listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    let response = https::get(&relay, "/web/hello?x=1", &[(name, &token), ("X-Custom", "custom value")]).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.reason, "OK");
    assert_eq!(response.text(), "hello GET");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.header("x-echo-url"), Some("/web/hello?x=1"), "requestTarget is req.url");
    assert_eq!(response.header("x-echo-custom"), Some("custom value"));
    assert_relayed(&response);

    let request = listener.expect("request", WAIT);
    assert_eq!(request["method"], "GET");
    assert_eq!(request["url"], "/web/hello?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_is_accepted_and_stripped_before_the_listener() {
    let relay = relay().await;
    let mut listener = https_listener(&relay, WEB);
    let token = https::query_escape(&https::token(&relay, WEB));

    let target = format!("/web/hello?sb-hc-token={token}&x=1");
    let response = https::get(&relay, &target, &[("X-Custom", "q")]).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "hello GET");
    assert_eq!(response.header("x-echo-url"), Some("/web/hello?x=1"), "sb-hc-token stripped from the target");
    assert_eq!(response.header("x-echo-custom"), Some("q"));
    assert_relayed(&response);
    let request = listener.expect("request", WAIT);
    assert_eq!(request["url"], "/web/hello?x=1");
    assert!(!request.to_string().contains("sb-hc-token"), "{request}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_bodies_arrive_whole_on_the_control_channel_and_over_a_rendezvous() {
    let relay = relay().await;
    let _listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    // 10 KB fits the control channel; 100 KB is over its 64 KiB, so the relay opens a rendezvous.
    for n in [10_000, 100_000] {
        let sent = body(n);
        let expected = sha256_hex(&sent);
        let response = https::request(
            &relay,
            "POST",
            "/web/echo",
            &[(name, &token), ("Content-Type", "application/octet-stream")],
            sent,
        )
        .await;
        assert_eq!(response.status, 200, "POST of {n} bytes: {response:?}");
        assert_relayed(&response);
        let echoed = response.json();
        assert_eq!(echoed["length"], n, "POST of {n} bytes: {echoed}");
        assert_eq!(echoed["sha256"], expected.as_str(), "POST of {n} bytes: the body arrived altered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_comes_back_whole_over_the_listeners_rendezvous() {
    let relay = relay().await;
    let _listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    // 200 KB: hyco-https buffers it, finds it over 64 KiB and opens the rendezvous to send it.
    let n = 204_800;
    let response = https::get(&relay, &format!("/web/big?bytes={n}"), &[(name, &token)]).await;
    assert_eq!(response.status, 200, "{:?} {:?}", response.status, response.headers);
    assert_relayed(&response);
    assert_eq!(response.header("content-type"), Some("application/octet-stream"));
    assert_eq!(response.body.len(), n, "the whole body");
    let expected: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    assert!(response.body == expected, "the body arrived altered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_comes_back_without_a_body_and_the_listener_keeps_serving() {
    let relay = relay().await;
    let _listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    let response = https::get(&relay, "/web/empty", &[(name, &token)]).await;
    assert_eq!(response.status, 204, "{response:?}");
    assert!(response.body.is_empty(), "{response:?}");
    assert_relayed(&response);

    // hyco-https follows a body-less response with an empty binary frame: the relay must not
    // take it for the next request's response body.
    let next = https::get(&relay, "/web/hello", &[(name, &token)]).await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.text(), "hello GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_sees_the_senders_headers_without_the_token_and_with_via() {
    let relay = relay().await;
    let _listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    let response = https::get(
        &relay,
        "/web/headers",
        &[(name, &token), ("X-Custom", "seen"), ("Authorization", "Basic dXNlcjpwYXNz")],
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_relayed(&response);
    let seen = response.json();
    let seen = seen.as_object().unwrap_or_else(|| panic!("an object of headers: {seen}"));
    assert!(!seen.contains_key("servicebusauthorization"), "the token header is stripped: {seen:?}");
    assert!(!seen.contains_key("host"), "Host is stripped: {seen:?}");
    let via = seen.get("via").and_then(|v| v.as_str()).unwrap_or_else(|| panic!("Via added: {seen:?}"));
    assert!(via.contains("1.1 "), "{via:?}");
    assert_eq!(seen.get("x-custom").and_then(|v| v.as_str()), Some("seen"), "{seen:?}");
    // With the token in ServiceBusAuthorization, Authorization is the listener's business.
    assert_eq!(seen.get("authorization").and_then(|v| v.as_str()), Some("Basic dXNlcjpwYXNz"), "{seen:?}");
    assert!(!response.text().contains(&token), "the token never reaches the listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_by_the_relay() {
    let relay = relay().await;
    // A listener is there (a plain wss one), so only the token can be what is refused.
    let listen_token = raw_ws::token(&relay, WEB, Duration::from_secs(3600));
    let _control = raw_ws::control(&relay, Scheme::Wss, WEB, &listen_token).await;

    let missing = https::get(&relay, "/web/hello", &[]).await;
    assert_relay_answer(&missing, 401);
    let garbage =
        https::get(&relay, "/web/hello", &[("ServiceBusAuthorization", "SharedAccessSignature garbage")]).await;
    assert_relay_answer(&garbage, 401);
    let other = https::token(&relay, "other");
    let elsewhere = https::get(&relay, "/web/hello", &[("ServiceBusAuthorization", &other)]).await;
    assert_relay_answer(&elsewhere, 403);
    let in_query = format!("/web/hello?sb-hc-token={}", https::query_escape(&other));
    assert_relay_answer(&https::get(&relay, &in_query, &[]).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_address_without_a_listener_is_502_unavailable() {
    let relay = relay().await;
    let (name, token) = auth(&relay, WEB);

    let response = https::get(&relay, "/web/hello", &[(name, &token)]).await;
    assert_relay_answer(&response, 502);
    assert_eq!(response.json()["code"], "unavailable", "{:?}", response.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_not_http_enabled_are_404_even_with_a_listener() {
    let relay = relay().await;
    let plain_token = raw_ws::token(&relay, "plain", Duration::from_secs(3600));
    let mut control = raw_ws::control(&relay, Scheme::Wss, "plain", &plain_token).await;

    let response =
        https::get(&relay, "/plain/hello", &[("ServiceBusAuthorization", &https::token(&relay, "plain"))]).await;
    assert_relay_answer(&response, 404);
    let nowhere =
        https::get(&relay, "/nowhere/hello", &[("ServiceBusAuthorization", &https::token(&relay, "nowhere"))]).await;
    assert_relay_answer(&nowhere, 404);

    // The listener (which predates HTTP mode, as hyco-ws does) was never sent the request.
    let heard = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match control.next().await {
                Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await;
    assert!(!matches!(heard, Ok(Some(_))), "a listener not HTTP-enabled got a message: {heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_upgrade_requests_are_400() {
    let relay = relay().await;
    let _listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    let authority = format!("127.0.0.1:{}", relay.ws_addr.port());
    let connect = https::request(&relay, "CONNECT", &authority, &[(name, &token)], Vec::new()).await;
    assert_relay_answer(&connect, 400);
    // An upgrade off `$hc` is not HTTP mode either.
    let upgrade = https::get(
        &relay,
        "/web/hello",
        &[
            (name, &token),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_relay_answer(&upgrade, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_relay_answers_503() {
    const GRACE_MS: u64 = 5_000;
    let relay = relay_with(|c| c.shutdown_grace_ms = GRACE_MS).await;
    // An idle channel keeps the relay draining for its whole grace period.
    let host = relay.host().await;
    let (lab, _events) = LabHost::new("a");
    tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let _idle = LabClient::connect(&caller, "lab").await.unwrap();
    let (addr, cert, admin) = (relay.ws_addr, relay.cert.clone(), relay.admin_addr);
    let token = https::token(&relay, WEB);

    let stop = tokio::spawn(relay.stop());
    // Draining once its readiness says so.
    let deadline = Instant::now() + SLACK;
    while relay_tests::http::get(admin, "/readyz", &[]).await.status != 503 {
        assert!(Instant::now() < deadline, "the relay did not start draining within {SLACK:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = Connection::open_to(addr, &cert)
        .await
        .send("GET", "/web/hello", &[("ServiceBusAuthorization", &token)], Vec::new())
        .await;
    assert_relay_answer(&response, 503);
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_too_slow_gets_the_sender_a_504_at_the_address_timeout() {
    let relay = relay_with(|c| c.addresses[0].http_response_timeout_ms = Some(1_000)).await;
    let timeout = ms(1_000);
    let mut listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    let started = Instant::now();
    let response = https::get(&relay, "/web/slow?ms=5000", &[(name, &token)]).await;
    let took = started.elapsed();
    assert_relay_answer(&response, 504);
    assert!(took >= timeout, "504 after {took:?}, before the address's timeout of {timeout:?}");
    assert!(took < timeout + SLACK, "504 after {took:?}: not bounded by the address's timeout of {timeout:?}");

    // The listener's late answer is dropped, and the listener is still served afterwards.
    listener.expect("answered", Duration::from_secs(5) + SLACK);
    let next = https::get(&relay, "/web/hello", &[(name, &token)]).await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.text(), "hello GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_dying_mid_request_gets_the_sender_a_502_at_once() {
    let relay = relay().await;
    let timeout = ms(relay.config().http_response_timeout_ms);
    let mut listener = https_listener(&relay, WEB);
    let token = https::token(&relay, WEB);
    let (addr, cert) = (relay.ws_addr, relay.cert.clone());

    let pending = tokio::spawn(async move {
        let mut connection = Connection::open_to(addr, &cert).await;
        connection.send("GET", "/web/slow?ms=30000", &[("ServiceBusAuthorization", &token)], Vec::new()).await
    });
    let request = listener.expect("request", WAIT);
    assert_eq!(request["url"], "/web/slow?ms=30000");
    let killed = Instant::now();
    listener.kill();

    let response = tokio::time::timeout(timeout, pending)
        .await
        .unwrap_or_else(|_| panic!("no answer within the response timeout of {timeout:?} after the listener died"))
        .expect("the request task");
    let took = killed.elapsed();
    assert_relay_answer(&response, 502);
    assert!(took < SLACK, "502 after {took:?}: the relay waited for its timer, not for the listener's end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_on_one_keep_alive_connection_are_both_answered() {
    let relay = relay().await;
    let _listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    let mut connection = Connection::open(&relay).await;
    let first = connection.send("GET", "/web/hello?n=1", &[(name, &token)], Vec::new()).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.text(), "hello GET");
    assert_eq!(first.header("x-echo-url"), Some("/web/hello?n=1"));
    let sent = body(1_000);
    let second = connection.send("POST", "/web/echo", &[(name, &token)], sent.clone()).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_relayed(&second);
    assert_eq!(second.json()["sha256"], sha256_hex(&sent).as_str());
}

#[tokio::test]
async fn a_body_held_whole_over_the_whole_buffer_budget_is_413() {
    // Bodies within the control channel's 64 KiB are held whole until answered (larger ones
    // stream over a rendezvous: `hc_streaming.rs`); one larger than all the relay may buffer at
    // once is refused.
    let relay = relay_with(|c| c.max_buffered_bytes = 50_000).await;
    let (name, token) = auth(&relay, WEB);
    let response = https::request(&relay, "POST", "/web/echo", &[(name, &token)], vec![7; 60_000]).await;
    assert_relay_answer(&response, 413);
    assert!(response.text().contains("\"code\":\"resource_exhausted\""), "{}", response.text());
    // Nothing stays held: a body within the budget goes on to the (absent) listener's 502.
    let response = https::request(&relay, "POST", "/web/echo", &[(name, &token)], vec![7; 40_000]).await;
    assert_relay_answer(&response, 502);
}

#[tokio::test]
async fn a_raw_listener_gets_the_request_and_answers_on_its_control_channel_ignoring_strays() {
    use relay_proto::hc::ControlMessage;
    use relay_proto::hc_http::ResponseMessage;

    let relay = relay().await;
    let token = raw_ws::token(&relay, WEB, Duration::from_secs(3600));
    let mut control = raw_ws::control(&relay, Scheme::Wss, WEB, &token).await;
    let (name, send_token) = auth(&relay, WEB);
    let sent = {
        let relay_url = relay.ws_addr;
        let cert = relay.cert.clone();
        let send_token = send_token.clone();
        tokio::spawn(async move {
            Connection::open_to(relay_url, &cert)
                .await
                .send("PUT", "/web/things/1?x=2", &[(name, &send_token), ("x-one", "1")], b"payload".to_vec())
                .await
        })
    };
    let Some(Ok(Message::Text(text))) = control.next().await else { panic!("no request message") };
    let Ok(ControlMessage::Request(request)) = serde_json::from_str::<ControlMessage>(&text) else {
        panic!("not a request: {text}")
    };
    assert_eq!(request.method.as_deref(), Some("PUT"));
    assert_eq!(request.request_target.as_deref(), Some("/web/things/1?x=2"));
    assert_eq!(request.body, Some(true));
    let headers = request.request_headers.clone().unwrap_or_default();
    assert_eq!(headers.get("x-one").map(String::as_str), Some("1"));
    assert!(!headers.keys().any(|k| k.eq_ignore_ascii_case("servicebusauthorization")), "{headers:?}");
    assert!(request.address.contains("sb-hc-action=request") && request.address.contains(&request.id));
    let Some(Ok(Message::Binary(body))) = control.next().await else { panic!("no body message") };
    assert_eq!(&body[..], b"payload");

    // A stray binary message and an answer to no request change nothing.
    futures::SinkExt::send(&mut control, Message::binary(b"stray".to_vec())).await.unwrap();
    let answer = |id: &str, status: u16| ResponseMessage {
        request_id: id.into(),
        status_code: status,
        status_description: Some("Made Up".into()),
        response_headers: vec![("x-a".into(), "1".into())],
        body: true,
    };
    let json = |response| serde_json::to_string(&ControlMessage::Response(response)).unwrap();
    futures::SinkExt::send(&mut control, Message::text(json(answer("no-such-request", 500)))).await.unwrap();
    futures::SinkExt::send(&mut control, Message::binary(b"wrong".to_vec())).await.unwrap();
    futures::SinkExt::send(&mut control, Message::text(json(answer(&request.id, 201)))).await.unwrap();
    futures::SinkExt::send(&mut control, Message::binary(b"made".to_vec())).await.unwrap();

    let response = sent.await.unwrap();
    assert_eq!((response.status, response.reason.as_str(), response.text()), (201, "Made Up", "made".to_owned()));
    assert_eq!(response.header("x-a"), Some("1"));
    assert_relayed(&response);
}

/// The origin the CORS tests allow on `web`, and one they do not.
const ALLOWED_ORIGIN: &str = "http://127.0.0.1:1";
const OTHER_ORIGIN: &str = "http://127.0.0.1:2";

/// A CORS preflight for a token-carrying JSON `POST /web/echo` from `origin`.
async fn preflight(relay: &TestRelay, origin: &str) -> Response {
    let headers = [
        ("Origin", origin),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type, servicebusauthorization"),
    ];
    https::request(relay, "OPTIONS", "/web/echo", &headers, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_with_allowed_origins_answers_their_preflights_and_refuses_other_origins() {
    let relay = relay_with(|c| c.addresses[0].allowed_origins = vec![ALLOWED_ORIGIN.into()]).await;
    let mut listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    // Preflights are the relay's to answer: the listener never sees them.
    let allowed = preflight(&relay, ALLOWED_ORIGIN).await;
    assert_relay_answer(&allowed, 204);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(ALLOWED_ORIGIN), "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("content-type, servicebusauthorization"),
        "the headers asked for are allowed as asked: {allowed:?}"
    );
    let methods = allowed.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{allowed:?}");
    assert!(allowed.header("access-control-max-age").is_some(), "{allowed:?}");
    assert!(allowed.body.is_empty(), "{allowed:?}");
    let refused = preflight(&relay, OTHER_ORIGIN).await;
    assert_relay_answer(&refused, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None, "{refused:?}");

    // A request from the allowed origin reaches the listener; its answer is marked for the page.
    let from_allowed = https::get(&relay, "/web/hello", &[("Origin", ALLOWED_ORIGIN), (name, &token)]).await;
    assert_eq!((from_allowed.status, from_allowed.text()), (200, "hello GET".to_owned()), "{from_allowed:?}");
    assert_relayed(&from_allowed);
    assert_eq!(from_allowed.header("access-control-allow-origin"), Some(ALLOWED_ORIGIN), "{from_allowed:?}");
    assert!(from_allowed.header("vary").is_some_and(|v| v.contains("Origin")), "{from_allowed:?}");
    assert_eq!(listener.expect("request", WAIT)["url"], "/web/hello");

    // The relay's own errors to the allowed origin are marked too, so the page can read them.
    let no_token = https::get(&relay, "/web/hello", &[("Origin", ALLOWED_ORIGIN)]).await;
    assert_relay_answer(&no_token, 401);
    assert_eq!(no_token.header("access-control-allow-origin"), Some(ALLOWED_ORIGIN), "{no_token:?}");

    // Another origin is refused by the relay, token or not.
    let from_other = https::get(&relay, "/web/hello", &[("Origin", OTHER_ORIGIN), (name, &token)]).await;
    assert_relay_answer(&from_other, 403);
    assert_eq!(from_other.header("access-control-allow-origin"), None, "{from_other:?}");

    // Callers that are not browsers send no Origin: unaffected.
    let no_origin = https::get(&relay, "/web/hello?from=curl", &[(name, &token)]).await;
    assert_eq!((no_origin.status, no_origin.text()), (200, "hello GET".to_owned()), "{no_origin:?}");
    assert_relayed(&no_origin);
    assert_eq!(no_origin.header("access-control-allow-origin"), None, "{no_origin:?}");
    // The next request the listener saw is that one: the refused ones never reached it.
    assert_eq!(listener.expect("request", WAIT)["url"], "/web/hello?from=curl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_without_allowed_origins_passes_preflights_and_origins_to_the_listener() {
    let relay = relay().await;
    let mut listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    // No CORS here: the relay does not answer the preflight, the listener does (it has no
    // OPTIONS route). Without a token the relay would refuse it, so the token is in the query.
    let target = format!("/web/echo?sb-hc-token={}", https::query_escape(&token));
    let headers = [("Origin", OTHER_ORIGIN), ("Access-Control-Request-Method", "POST")];
    let options = https::request(&relay, "OPTIONS", &target, &headers, Vec::new()).await;
    assert_eq!((options.status, options.text()), (404, "no route".to_owned()), "{options:?}");
    assert_relayed(&options);
    assert_eq!(options.header("access-control-allow-origin"), None, "{options:?}");
    let request = listener.expect("request", WAIT);
    assert_eq!(request["method"], "OPTIONS", "{request}");
    assert_eq!(request["url"], "/web/echo", "{request}");

    // Any Origin is let through, and the answer is the listener's as it gave it.
    let get = https::get(&relay, "/web/hello", &[("Origin", OTHER_ORIGIN), (name, &token)]).await;
    assert_eq!((get.status, get.text()), (200, "hello GET".to_owned()), "{get:?}");
    assert_relayed(&get);
    assert_eq!(get.header("access-control-allow-origin"), None, "{get:?}");
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_431() {
    let relay = relay().await;
    let (name, token) = auth(&relay, WEB);
    let big = "x".repeat(20 * 1024);
    let response = https::request(&relay, "GET", "/web/hello", &[(name, &token), ("x-big", &big)], Vec::new()).await;
    assert_relay_answer(&response, 431);
}
