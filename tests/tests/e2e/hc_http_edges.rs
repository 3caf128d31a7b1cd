//! Hybrid Connections HTTP mode at its edges, through a real relay and the official `hyco-https`
//! listener (`tests/node/https-listener.js`), as in `hc_http.rs`, whose helpers these share.
//!
//! Covered: requests over the per-source open rate are the relay's own 429 (Connect JSON body, no
//! `Via`), never reach the listener, and pass again at the rate; chunked request bodies without a
//! `Content-Length` arrive whole, on the control channel (10 KB) and over a rendezvous (300 KB);
//! `Expect: 100-continue` gets `100 Continue` before the body is sent, then the listener's answer,
//! while a request the relay refuses gets its refusal at once, with no `100` to send a body for;
//! an `anonymous_senders` address passes the sender's `Authorization` through to the listener,
//! whatever it holds; malformed request heads are the relay's 400, and the connection closes.

use std::time::{Duration, Instant};

use relay_tests::https::{self, Connection, Response, sha256_hex};
use relay_tests::node::https_listener;
use relay_tests::{SLACK, TestRelay};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::hc_http::{WAIT, WEB, assert_relay_answer, assert_relayed, auth, body, relay, relay_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_open_rate_are_429_from_the_relay_and_never_reach_the_listener() {
    let relay = relay_with(|c| {
        c.channel_opens_per_sec = 1;
        c.channel_open_burst = 1;
    })
    .await;
    let mut listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    // The burst's one request passes, and one more for each second gone by: requests sent one
    // after the other are soon refused.
    let mut passed = 0;
    let refused = loop {
        let response = https::get(&relay, &format!("/web/hello?n={passed}"), &[(name, &token)]).await;
        if response.status != 200 {
            break response;
        }
        passed += 1;
        assert!(passed < 10, "{passed} requests in a row passed a rate of 1 a second");
    };
    assert_relay_answer(&refused, 429);
    assert_eq!(refused.header("content-type"), Some("application/json"), "{refused:?}");
    let error = refused.json();
    assert_eq!(error["code"], "resource_exhausted", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");

    // The bucket refills at the rate. Refused requests are answered by the relay alone: the
    // next request the listener sees after those that passed is the one that passes next.
    for n in 0..passed {
        assert_eq!(listener.expect("request", WAIT)["url"], format!("/web/hello?n={n}"));
    }
    let refused_at = Instant::now();
    loop {
        let response = https::get(&relay, "/web/hello?later", &[(name, &token)]).await;
        if response.status == 200 {
            assert_relayed(&response);
            break;
        }
        assert_relay_answer(&response, 429);
        let waited = refused_at.elapsed();
        assert!(waited < Duration::from_secs(1) + SLACK, "still 429 {waited:?} later, at a rate of 1 a second");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listener.expect("request", WAIT)["url"], "/web/hello?later", "a refused request reached the listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_without_a_content_length_arrive_whole_on_the_control_channel_and_over_a_rendezvous() {
    let relay = relay().await;
    let _listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);

    // 10 KB fits the control channel; 300 KB is over its 64 KiB, so it goes over a rendezvous.
    // The relay learns either size only from the chunks' end.
    for (n, chunk) in [(10_000, 1_000), (300_000, 16 * 1024)] {
        let sent = body(n);
        let expected = sha256_hex(&sent);
        let chunks = sent.chunks(chunk).map(<[u8]>::to_vec).collect();
        let headers = [(name, token.as_str()), ("Content-Type", "application/octet-stream")];
        let response = Connection::open(&relay).await.send_chunked("POST", "/web/echo", &headers, chunks).await;
        assert_eq!(response.status, 200, "chunked POST of {n} bytes: {response:?}");
        assert_relayed(&response);
        let echoed = response.json();
        assert_eq!(echoed["length"], n, "chunked POST of {n} bytes: {echoed}");
        assert_eq!(echoed["sha256"], expected.as_str(), "chunked POST of {n} bytes: the body arrived altered");
    }
}

/// The TLS stream the hand-written requests go over.
type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Reads from `tls` until `buffered` holds a whole response head, and takes the head (through
/// its blank line) out of it; what follows stays in `buffered`.
async fn read_head(tls: &mut Tls, buffered: &mut Vec<u8>) -> String {
    let read = async {
        loop {
            if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = buffered.drain(..end + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(buffered.len() < 64 * 1024, "no end to the response head: {buffered:?}");
            let mut chunk = [0; 4096];
            let n = tls.read(&mut chunk).await.expect("the relay's answer");
            assert!(n > 0, "the relay closed before a whole response head: {:?}", String::from_utf8_lossy(buffered));
            buffered.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(https::TIMEOUT, read).await.expect("a response head in time")
}

/// Reads the body of the response whose `head` came last, by its `Content-Length`, after what is
/// `buffered` already.
async fn read_body(tls: &mut Tls, head: &str, mut buffered: Vec<u8>) -> Vec<u8> {
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    let read = async {
        while buffered.len() < length {
            let mut chunk = [0; 4096];
            let n = tls.read(&mut chunk).await.expect("the response body");
            assert!(n > 0, "the relay closed after {} of {length} body bytes", buffered.len());
            buffered.extend_from_slice(&chunk[..n]);
        }
        buffered
    };
    tokio::time::timeout(https::TIMEOUT, read).await.expect("the response body in time")
}

/// A `POST /web/echo` head for a `length`-byte body, expecting `100 Continue`, with `headers`.
fn expecting_head(relay: &TestRelay, length: usize, headers: &[(&str, &str)]) -> String {
    let mut head = format!(
        "POST /web/echo HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n",
        relay.ws_addr.port()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head + "\r\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent_and_a_refusal_needs_no_body() {
    let relay = relay().await;
    let mut listener = https_listener(&relay, WEB);
    let (name, token) = auth(&relay, WEB);
    let sent = body(20_000);

    // The head alone: the relay must say 100 Continue, or this sender never sends its body.
    let mut tls = https::tls(&relay).await;
    tls.write_all(expecting_head(&relay, sent.len(), &[(name, &token)]).as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut buffered = Vec::new();
    let interim = read_head(&mut tls, &mut buffered).await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue\r\n"), "{interim:?}");
    assert!(
        buffered.is_empty(),
        "more than the 100 before the body was sent: {:?}",
        String::from_utf8_lossy(&buffered)
    );

    tls.write_all(&sent).await.unwrap();
    tls.flush().await.unwrap();
    let head = read_head(&mut tls, &mut buffered).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head:?}");
    assert!(head.to_ascii_lowercase().contains("\r\nvia: 1.1 "), "the listener's answer, relayed: {head:?}");
    let echoed: serde_json::Value = serde_json::from_slice(&read_body(&mut tls, &head, buffered).await).unwrap();
    assert_eq!(echoed["length"], sent.len(), "{echoed}");
    assert_eq!(echoed["sha256"], sha256_hex(&sent).as_str(), "the body arrived altered: {echoed}");
    assert_eq!(listener.expect("request", WAIT)["url"], "/web/echo");

    // Without a token the relay refuses at once: no 100, so the body is never sent.
    let mut tls = https::tls(&relay).await;
    tls.write_all(expecting_head(&relay, sent.len(), &[]).as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut buffered = Vec::new();
    let head = read_head(&mut tls, &mut buffered).await;
    assert!(head.starts_with("HTTP/1.1 401 "), "the refusal, with no 100 before it: {head:?}");
    assert!(!head.to_ascii_lowercase().contains("\r\nvia:"), "the relay's own answer: {head:?}");
    let refusal: serde_json::Value = serde_json::from_slice(&read_body(&mut tls, &head, buffered).await).unwrap();
    assert_eq!(refusal["code"], "unauthenticated", "{refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_senders_address_passes_the_senders_authorization_through_to_the_listener() {
    let relay = relay_with(|c| c.addresses[0].anonymous_senders = true).await;
    let _listener = https_listener(&relay, WEB);

    // A scheme of the listener's own, and a SAS token, which on an address that needs one the
    // relay would take as the sender's and strip: here the relay needs none, so it is the
    // listener's too.
    let sas = https::token(&relay, WEB);
    for authorization in ["Bearer the-listeners-own", sas.as_str()] {
        let response: Response = https::get(&relay, "/web/headers", &[("Authorization", authorization)]).await;
        assert_eq!(response.status, 200, "no token needed: {response:?}");
        assert_relayed(&response);
        let seen = response.json();
        assert_eq!(seen["authorization"].as_str(), Some(authorization), "the headers the listener saw: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_heads_are_400_from_the_relay_and_close_the_connection() {
    let relay = relay().await;
    for head in [
        "GET /web/hello HTTP/1.1\r\nhost: 127.0.0.1\r\nthis is no header\r\n\r\n",
        "GET /web/hello HTTP/9.9\r\nhost: 127.0.0.1\r\n\r\n",
        "GET\u{1}/web HTTP/1.1\r\n\r\n",
    ] {
        let mut tls = https::tls(&relay).await;
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(SLACK, tls.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "{head:?}: the connection is closed after the answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        assert!(!answer.to_ascii_lowercase().contains("\r\nvia:"), "{head:?}: the relay's own answer: {answer}");
    }
}
