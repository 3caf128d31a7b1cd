//! HTTP requests carried to hosts as channels (`Host::listen_http`, the raw `relay_rpc::http`
//! API), over QUIC and wss: which requests reach which hosts, bodies streaming both ways, and
//! every way an exchange can go wrong answered by the relay with a status or a cut connection,
//! never a hang.

use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_rpc::Host;
use relay_rpc::http::{HttpError, HttpRequest, ResponseHead};
use relay_server::AddressConfig;
use relay_tests::https::{self, Response, sha256_hex};
use relay_tests::lab::{LabHost, ServeLab};
use relay_tests::{SLACK, TestRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bounds every wait on one event.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn post_json(relay: &TestRelay, address: &str, target: &str) -> Response {
    let token = https::token(relay, address);
    let headers = [("ServiceBusAuthorization", token.as_str()), ("content-type", "application/json")];
    https::request(relay, "POST", target, &headers, b"{}".to_vec()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_only_hosts_that_take_http() {
    let relay = TestRelay::start().await;
    // A host that listens without taking HTTP: its address is not one HTTP requests may name.
    let (_plain, _events) = relay.serve_lab(&relay.url, "plain", "plain").await;
    let answer = post_json(&relay, "plain", "/plain/Lab/whoami").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert!(answer.header("via").is_none(), "the relay's own answer: {answer:?}");

    // Beside it on one address, a host that does: every request goes to that one.
    let host = relay.host_on(&relay.ws_url).await;
    let (lab, _events) = LabHost::new("takes-http");
    tokio::spawn(host.listen_http("plain").await.expect("listens").serve(ServeLab::new(lab)));
    for _ in 0..4 {
        let who = post_json(&relay, "plain", "/plain/Lab/whoami").await;
        assert_eq!((who.status, who.json()), (200, serde_json::json!("takes-http")), "{who:?}");
    }

    // No token: refused by the relay before any host hears of it.
    let headers = [("content-type", "application/json")];
    let anonymous = https::request(&relay, "POST", "/plain/Lab/whoami", &headers, b"{}".to_vec()).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");

    // The host gone: its address no longer takes HTTP requests.
    host.close();
    let deadline = Instant::now() + PROMPTLY;
    let gone = loop {
        let answer = post_json(&relay, "plain", "/plain/Lab/whoami").await;
        if answer.status != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(matches!(gone.status, 404 | 502), "{gone:?}");
}

/// A host on the raw API that answers with the body's length and SHA-256 in headers, then the
/// body itself in blocks: both directions stream.
async fn serve_echo(host: &Host, address: &str) {
    let mut listener = host.listen_http(address).await.expect("listens");
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let (mut request, mut response) = HttpRequest::accept(incoming).await.expect("an http request");
                let body = request.read_to_end(64 << 20).await.expect("the whole body");
                let headers = vec![
                    ("x-length".to_owned(), body.len().to_string()),
                    ("x-sha256".to_owned(), sha256_hex(&body)),
                    ("x-target".to_owned(), request.head.target.clone()),
                ];
                response.start(ResponseHead { status: 200, headers }).await.expect("head");
                for block in body.chunks(100_000) {
                    response.send(Bytes::copy_from_slice(block)).await.expect("a piece");
                }
                response.finish().await.expect("the end");
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_through_the_raw_api() {
    let relay = TestRelay::start().await;
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for url in [&relay.url, &relay.ws_url] {
        let host = relay.host_on(url).await;
        serve_echo(&host, "echo").await;
        let token = https::token(&relay, "echo");
        let answer =
            https::request(&relay, "PUT", "/echo/files/a?x=1", &[("ServiceBusAuthorization", &token)], body.clone())
                .await;
        assert_eq!(answer.status, 200, "{url}: {answer:?}");
        assert_eq!(answer.header("x-length"), Some("5000000"), "{url}");
        assert_eq!(answer.header("x-sha256"), Some(sha256_hex(&body).as_str()), "{url}");
        assert_eq!(answer.header("x-target"), Some("/echo/files/a?x=1"), "{url}");
        assert!(answer.body == body, "{url}: the body came back whole ({} bytes)", answer.body.len());
        host.close();
    }
}

/// What a raw host saw of one request.
#[derive(Debug)]
enum Saw {
    /// The body ended as it should, with this many bytes.
    Body(usize),
    /// The body ended short: the sender or the relay went away.
    Broken,
}

/// A host on `address` that reads each request's body and reports how that went, then waits
/// (answering nothing) until the exchange is cut.
async fn serve_silent(host: &Host, address: &str) -> mpsc::UnboundedReceiver<Saw> {
    let mut listener = host.listen_http(address).await.expect("listens");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok((mut request, response)) = HttpRequest::accept(incoming).await else { return };
                let saw = match request.read_to_end(64 << 20).await {
                    Ok(body) => Saw::Body(body.len()),
                    Err(HttpError::EndedEarly | HttpError::Channel(_)) => Saw::Broken,
                    Err(e) => panic!("an unexpected error reading the body: {e}"),
                };
                let _ = tx.send(saw);
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(response);
            });
        }
    });
    rx
}

async fn next_saw(saw: &mut mpsc::UnboundedReceiver<Saw>) -> Saw {
    tokio::time::timeout(PROMPTLY, saw.recv()).await.expect("the host saw the request").expect("host running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_does_not_answer_gets_the_sender_a_504_at_the_address_timeout() {
    let relay = TestRelay::start_with(|c| {
        c.addresses =
            vec![AddressConfig { path: "slow".into(), http_response_timeout_ms: Some(700), ..Default::default() }];
    })
    .await;
    for url in [&relay.url, &relay.ws_url] {
        let host = relay.host_on(url).await;
        let mut saw = serve_silent(&host, "slow").await;
        let started = Instant::now();
        let answer = post_json(&relay, "slow", "/slow/x").await;
        let took = started.elapsed();
        assert_eq!(answer.status, 504, "{url}: {answer:?}");
        assert!(answer.header("via").is_none(), "{url}: the relay's own answer");
        assert!(took >= Duration::from_millis(700) && took < Duration::from_millis(700) + SLACK, "{url}: {took:?}");
        assert!(matches!(next_saw(&mut saw).await, Saw::Body(2)), "{url}");
        host.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_stalls_or_vanishes_mid_body_is_408_or_cut_and_the_host_is_told() {
    let relay = TestRelay::start_with(|c| c.handshake_timeout_ms = 800).await;
    for url in [&relay.url, &relay.ws_url] {
        let host = relay.host_on(url).await;
        let mut saw = serve_silent(&host, "up").await;
        let token = https::token(&relay, "up");
        let head = format!(
            "PUT /up/file HTTP/1.1\r\nhost: 127.0.0.1\r\nServiceBusAuthorization: {token}\r\ncontent-length: 1000000\r\n\r\n"
        );

        // Stalls after 100 KB: the relay answers 408 once a piece is overdue, and cuts the host's
        // request short.
        let mut stalled = https::tls(&relay).await;
        stalled.write_all(head.as_bytes()).await.expect("head written");
        stalled.write_all(&[7; 100_000]).await.expect("part of the body written");
        let mut answer = vec![0; 4096];
        let read = tokio::time::timeout(PROMPTLY, stalled.read(&mut answer)).await.expect("an answer").expect("read");
        let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{url}: {answer}");
        assert!(matches!(next_saw(&mut saw).await, Saw::Broken), "{url}");

        // Goes away after 100 KB: the host's request ends short at once.
        let mut vanished = https::tls(&relay).await;
        vanished.write_all(head.as_bytes()).await.expect("head written");
        vanished.write_all(&[7; 100_000]).await.expect("part of the body written");
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(vanished);
        let started = Instant::now();
        assert!(matches!(next_saw(&mut saw).await, Saw::Broken), "{url}");
        assert!(started.elapsed() < Duration::from_millis(800), "{url}: told before any timeout");
        host.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_dies_mid_answer_cuts_the_senders_response_short() {
    let relay = TestRelay::start().await;
    for url in [&relay.url, &relay.ws_url] {
        let host = relay.host_on(url).await;
        let mut listener = host.listen_http("dies").await.expect("listens");
        let killer = host.clone();
        tokio::spawn(async move {
            let incoming = listener.accept().await.expect("a request");
            let (_request, mut response) = HttpRequest::accept(incoming).await.expect("an http request");
            let headers = vec![("content-type".to_owned(), "application/octet-stream".to_owned())];
            response.start(ResponseHead { status: 200, headers }).await.expect("head");
            response.send(Bytes::from(vec![1; 200_000])).await.expect("a piece");
            tokio::time::sleep(Duration::from_millis(200)).await;
            killer.close();
        });
        let token = https::token(&relay, "dies");
        let mut sender = https::tls(&relay).await;
        let request = format!("GET /dies/ HTTP/1.1\r\nhost: 127.0.0.1\r\nServiceBusAuthorization: {token}\r\n\r\n");
        sender.write_all(request.as_bytes()).await.expect("request written");
        // The answer's head and part of its body, then the connection ends without the chunked
        // body's last chunk: the sender can tell the answer is incomplete.
        let mut received = Vec::new();
        let read = tokio::time::timeout(PROMPTLY, sender.read_to_end(&mut received)).await.expect("the end");
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200"), "{url}: {}", &text[..text.len().min(200)]);
        assert!(received.len() > 200_000, "{url}: the first piece arrived ({} bytes)", received.len());
        assert!(!text.ends_with("0\r\n\r\n"), "{url}: no last chunk: the body was cut, not ended");
        let _ = read;
    }
}
