//! Hybrid Connections HTTP mode, streaming: bodies on a request's rendezvous pass through the
//! relay as they arrive, both ways, and are never held whole. A raw listener (tokio-tungstenite,
//! writing fragments by hand, as .NET's and Node's listeners do) and a hyper sender each wait for
//! the other to see the first part of a body before sending the rest: a relay that held a body
//! whole would leave both waiting. Also: a rendezvous closed mid-answer cuts the sender's body; a
//! sender that leaves mid-answer ends the rendezvous; a rendezvous closed before any answer is a
//! prompt 502, not a 504 at the timeout; a sender that stalls is 408 before any listener hears of
//! it, or, once its body streams, cut from the rendezvous; bodies far over `max_frame_bytes` and
//! the whole buffer budget go through.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper_util::rt::TokioIo;
use relay_proto::hc::ControlMessage;
use relay_proto::hc_http::{RequestMessage, ResponseMessage};
use relay_tests::https::{self, sha256_hex};
use relay_tests::raw_ws::{self, Scheme, Ws};
use relay_tests::{SLACK, TestRelay};

use crate::hc_http::{WEB, relay_with};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(20);

/// A relay whose `web` takes HTTP requests, and whose limits are far below the bodies sent: 64
/// KiB per message, 512 KiB buffered at once.
async fn relay() -> TestRelay {
    relay_with(|c| {
        c.max_frame_bytes = 64 * 1024;
        c.max_buffered_bytes = 512 * 1024;
    })
    .await
}

/// `n` bytes that repeat no short pattern, from `seed`.
fn bytes(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + seed).wrapping_mul(31) ^ (i / 253)) as u8).collect()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future).await.unwrap_or_else(|_| panic!("{what}: not within {STEP:?}"))
}

/// A listener's control channel on `web`.
async fn listener(relay: &TestRelay) -> Ws {
    let token = raw_ws::token(relay, WEB, Duration::from_secs(3600));
    raw_ws::control(relay, Scheme::Wss, WEB, &token).await
}

/// The next text message on `ws`, as a control message.
async fn next_control(ws: &mut Ws) -> ControlMessage {
    loop {
        match within("a message to the listener", ws.next()).await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("a control message"),
            Some(Ok(_)) => {}
            other => panic!("the listener's socket ended: {other:?}"),
        }
    }
}

async fn next_request(ws: &mut Ws) -> RequestMessage {
    match next_control(ws).await {
        ControlMessage::Request(request) => request,
        other => panic!("not a request: {other:?}"),
    }
}

/// Opens the rendezvous a `request` names.
async fn rendezvous(relay: &TestRelay, request: &RequestMessage) -> Ws {
    within("the rendezvous", raw_ws::connect(relay, &request.address, None)).await.expect("rendezvous opens")
}

/// Sends a `response` to `id` on `ws`, announcing a body.
async fn respond(ws: &mut Ws, id: &str) {
    let head = ResponseMessage {
        request_id: id.into(),
        status_code: 200,
        status_description: None,
        response_headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: true,
    };
    let json = serde_json::to_string(&ControlMessage::Response(head)).unwrap();
    ws.send(Message::text(json)).await.expect("response sent");
}

/// Sends one fragment of a binary message: the first (`Binary`) or a later one, `fin` ending it.
async fn fragment(ws: &mut Ws, bytes: &[u8], first: bool, fin: bool) -> Result<(), impl std::fmt::Debug> {
    let opcode = OpCode::Data(if first { Data::Binary } else { Data::Continue });
    ws.send(Message::Frame(Frame::message(Bytes::copy_from_slice(bytes), opcode, fin))).await
}

/// A sender's HTTP/1.1 connection to the relay's TLS port, for requests whose bodies stream.
async fn sender(relay: &TestRelay) -> hyper::client::conn::http1::SendRequest<Streamed> {
    let tls = https::tls(relay).await;
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("http handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

type Streamed = StreamBody<futures::stream::BoxStream<'static, Result<BodyFrame<Bytes>, Infallible>>>;

/// A request body fed from the returned sender, chunked; it ends when the sender drops.
fn streamed_body() -> (mpsc::Sender<Bytes>, Streamed) {
    let (feed, pieces) = mpsc::channel::<Bytes>(4);
    let stream = futures::stream::unfold(pieces, |mut pieces| async move {
        pieces.recv().await.map(|piece| (Ok(BodyFrame::data(piece)), pieces))
    });
    (feed, StreamBody::new(stream.boxed()))
}

/// A request to `web` with a send token, its body `body`.
fn request(relay: &TestRelay, method: &str, target: &str, body: Streamed) -> hyper::Request<Streamed> {
    hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("host", format!("127.0.0.1:{}", relay.ws_addr.port()))
        .header("ServiceBusAuthorization", https::token(relay, WEB))
        .body(body)
        .unwrap()
}

/// The next piece of a response body; `None` at its end.
async fn next_piece(body: &mut Incoming) -> Option<Result<Bytes, hyper::Error>> {
    loop {
        match within("a piece of the response", body.frame()).await? {
            Ok(frame) => match frame.into_data() {
                Ok(data) => return Some(Ok(data)),
                Err(_) => continue,
            },
            Err(e) => return Some(Err(e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_answer_on_its_rendezvous_streams_to_the_sender() {
    let relay = relay().await;
    let mut control = listener(&relay).await;
    let mut send = sender(&relay).await;
    let (_, empty) = streamed_body();
    let answer = send.send_request(request(&relay, "GET", "/web/big", empty));

    let (first_seen, seen) = oneshot::channel::<()>();
    let first = bytes(200 * 1024, 1);
    let rest: Vec<Vec<u8>> = (0..8).map(|i| bytes(256 * 1024, i + 2)).collect();
    let expected: Vec<u8> = first.iter().chain(rest.iter().flatten()).copied().collect();
    let listening = {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            let request = next_request(&mut control).await;
            assert_eq!(request.method.as_deref(), Some("GET"));
            let mut ws = rendezvous(&relay, &request).await;
            respond(&mut ws, &request.id).await;
            fragment(&mut ws, &first, true, false).await.unwrap();
            // The rest only once the sender has the first part: held whole, it never would.
            within("the sender's first part", seen).await.expect("the sender saw the first part");
            for (i, piece) in rest.iter().enumerate() {
                fragment(&mut ws, piece, false, i + 1 == rest.len()).await.unwrap();
            }
            (relay, control, ws)
        }
    };
    let receiving = async move {
        let response = within("the response head", answer).await.expect("a response");
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("via"), "a listener's answer: {response:?}");
        let mut body = response.into_body();
        let (mut got, mut first_seen) = (Vec::new(), Some(first_seen));
        while let Some(piece) = next_piece(&mut body).await {
            got.extend_from_slice(&piece.expect("a whole body"));
            if got.len() >= first.len()
                && let Some(first_seen) = first_seen.take()
            {
                assert_eq!(got[..first.len()], first[..]);
                let _ = first_seen.send(());
            }
        }
        got
    };
    let (_kept, got) = tokio::join!(listening, receiving);
    assert_eq!(got.len(), expected.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&expected), "the body came through whole and in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_streams_to_the_listener_over_its_rendezvous() {
    let relay = relay().await;
    let mut control = listener(&relay).await;
    let mut send = sender(&relay).await;
    let (feed, body) = streamed_body();
    let answer = send.send_request(request(&relay, "POST", "/web/upload?n=1", body));
    let first = bytes(100 * 1024, 7);
    let rest: Vec<Vec<u8>> = (0..8).map(|i| bytes(256 * 1024, i + 8)).collect();
    let expected: Vec<u8> = first.iter().chain(rest.iter().flatten()).copied().collect();

    let (request_seen, seen) = oneshot::channel::<()>();
    let uploading = {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            feed.send(Bytes::from(first)).await.unwrap();
            // The rest only once the listener has the request: a relay that read the body whole
            // first would never tell it.
            within("the listener's request", seen).await.expect("the listener saw the request");
            for piece in rest {
                feed.send(Bytes::from(piece)).await.unwrap();
            }
        }
    };
    let listening = async move {
        // Too large for the control channel: only the id comes there, the request over the
        // rendezvous.
        let notice = next_request(&mut control).await;
        assert_eq!((notice.method.as_deref(), notice.body), (None, None), "{notice:?}");
        let mut ws = rendezvous(&relay, &notice).await;
        let ControlMessage::Request(request) = next_control(&mut ws).await else { panic!("no request") };
        assert_eq!(request.request_target.as_deref(), Some("/web/upload?n=1"));
        assert_eq!(request.body, Some(true));
        let _ = request_seen.send(());
        let body = loop {
            match within("the request body", ws.next()).await {
                Some(Ok(Message::Binary(body))) => break body,
                Some(Ok(_)) => {}
                other => panic!("the rendezvous ended: {other:?}"),
            }
        };
        let digest = sha256_hex(&body);
        respond(&mut ws, &notice.id).await;
        ws.send(Message::binary(digest.into_bytes())).await.unwrap();
        (relay, control, ws)
    };
    let receiving = async move {
        let response = within("the response", answer).await.expect("a response");
        assert_eq!(response.status(), 200);
        within("the body", response.into_body().collect()).await.expect("a whole body").to_bytes()
    };
    let ((), _kept, got) = tokio::join!(uploading, listening, receiving);
    assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&expected), "the listener got the body whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendezvous_closed_mid_answer_cuts_the_senders_body() {
    let relay = relay().await;
    let mut control = listener(&relay).await;
    let mut send = sender(&relay).await;
    let (_, empty) = streamed_body();
    let answer = send.send_request(request(&relay, "GET", "/web/cut", empty));
    let listening = async {
        let request = next_request(&mut control).await;
        let mut ws = rendezvous(&relay, &request).await;
        respond(&mut ws, &request.id).await;
        fragment(&mut ws, &bytes(100 * 1024, 3), true, false).await.unwrap();
        ws.close(None).await.unwrap();
    };
    let receiving = async {
        let response = within("the response head", answer).await.expect("a response");
        assert_eq!(response.status(), 200);
        within("the body's end", response.into_body().collect()).await
    };
    let ((), body) = tokio::join!(listening, receiving);
    assert!(body.is_err(), "a body the listener did not end is cut, never passed off as whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_leaves_mid_answer_ends_the_rendezvous() {
    let relay = relay().await;
    let mut control = listener(&relay).await;
    let mut send = sender(&relay).await;
    let (_, empty) = streamed_body();
    let answer = send.send_request(request(&relay, "GET", "/web/leave", empty));
    let request = next_request(&mut control).await;
    let mut ws = rendezvous(&relay, &request).await;
    respond(&mut ws, &request.id).await;
    fragment(&mut ws, &bytes(10 * 1024, 4), true, false).await.unwrap();
    let response = within("the response head", answer).await.expect("a response");
    let mut body = response.into_body();
    assert!(next_piece(&mut body).await.is_some_and(|piece| piece.is_ok()), "the first piece");
    // The sender goes: its connection closes.
    drop((body, send));

    // The listener, still sending, finds its rendezvous ended by the relay.
    let ended = within("the rendezvous to end", async {
        loop {
            if fragment(&mut ws, &bytes(16 * 1024, 5), false, false).await.is_err() {
                return;
            }
            let read = tokio::time::timeout(Duration::from_millis(20), ws.next()).await;
            if let Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) = read {
                return;
            }
        }
    });
    ended.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendezvous_closed_before_any_answer_is_a_prompt_502() {
    let relay = relay_with(|c| c.http_response_timeout_ms = 60_000).await;
    let mut control = listener(&relay).await;
    let started = tokio::time::Instant::now();
    let token = https::token(&relay, WEB);
    let headers = [("ServiceBusAuthorization", token.as_str())];
    let asked = https::get(&relay, "/web/nothing", &headers);
    let listening = async {
        let request = next_request(&mut control).await;
        let mut ws = rendezvous(&relay, &request).await;
        ws.close(None).await.unwrap();
    };
    let (response, ()) = tokio::join!(asked, listening);
    assert_eq!(response.status, 502, "{response:?}");
    assert!(response.header("via").is_none(), "the relay's own answer: {response:?}");
    assert!(started.elapsed() < SLACK * 2, "at once, not at the 60 s timeout: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_stalls_is_408_before_any_listener_hears_of_it_or_cut_from_its_rendezvous() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let relay = relay_with(|c| c.handshake_timeout_ms = 800).await;
    let mut control = listener(&relay).await;
    let token = https::token(&relay, WEB);
    let head = format!(
        "PUT /web/file HTTP/1.1\r\nhost: 127.0.0.1\r\nServiceBusAuthorization: {token}\r\ncontent-length: 1000000\r\n\r\n"
    );
    let answer_to = |mut sender: tokio_rustls::client::TlsStream<tokio::net::TcpStream>| async move {
        let mut answer = vec![0; 4096];
        let read = within("the relay's answer", sender.read(&mut answer)).await.expect("read");
        String::from_utf8_lossy(&answer[..read]).into_owned()
    };

    // Stalls within the first 64 KiB, which the relay reads before it asks a listener: 408, and
    // no listener is asked.
    let mut stalled = https::tls(&relay).await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[7; 10_000]).await.unwrap();
    let answer = answer_to(stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("\r\nvia:"), "the relay's own answer: {answer}");
    let asked = tokio::time::timeout(Duration::from_millis(300), control.next()).await;
    assert!(asked.is_err(), "no listener hears of a request the relay refused: {asked:?}");

    // Stalls after 100 KB, its body already streaming to the listener: the relay cuts the
    // rendezvous (the listener never gets a whole body) and answers the sender.
    let mut stalled = https::tls(&relay).await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[7; 100_000]).await.unwrap();
    let notice = next_request(&mut control).await;
    let mut ws = rendezvous(&relay, &notice).await;
    let ControlMessage::Request(_) = next_control(&mut ws).await else { panic!("no request") };
    let ended = within("the rendezvous cut", ws.next()).await;
    assert!(!matches!(ended, Some(Ok(Message::Binary(_)))), "no whole body: {ended:?}");
    let answer = answer_to(stalled).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}
