//! `relay http --to`: a local web server exposed through the relay's HTTP mode, over `quic://`
//! and `wss://`. The tool runs in process (`relay_forward::Forwarder`, parsed from real
//! arguments); the web server is a real hyper server on a real port; requests are plain HTTPS to
//! the relay's TLS port.
//!
//! https client ─▶ relay ─channel─▶ Forwarder (`relay http`) ─HTTP─▶ local web server

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use relay_forward::{Cli, Command, Forwarder};
use relay_tests::TestRelay;
use relay_tests::https::{self, Connection, sha256_hex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const MIB: usize = 1024 * 1024;

/// The byte at `i` of every download: a pattern with no short period.
fn byte_at(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 11) as u8
}

/// A streamed body from a channel of pieces.
struct Pieces(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|piece| piece.map(|piece| Ok(Frame::data(piece))))
    }
}

/// The local web server: `GET /base/download/N` streams N bytes; any other request with a body
/// answers with the body's length and SHA-256 (hashed as it streams in) and echoes what it saw.
async fn serve(request: Request<Incoming>) -> Result<Response<Pieces>, Infallible> {
    let (tx, rx) = mpsc::channel(4);
    let path = request.uri().path().to_owned();
    let described = format!(
        "{} {} host={} xff={}",
        request.method(),
        request.uri(),
        request.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("-"),
        request.headers().get("x-forwarded-for").and_then(|h| h.to_str().ok()).unwrap_or("-"),
    );
    if let Some(n) = path.strip_prefix("/base/download/").and_then(|n| n.parse::<usize>().ok()) {
        tokio::spawn(async move {
            let mut at = 0;
            while at < n {
                let piece: Vec<u8> = (at..n.min(at + 100_000)).map(byte_at).collect();
                at += piece.len();
                if tx.send(Bytes::from(piece)).await.is_err() {
                    return;
                }
            }
        });
        return Ok(Response::new(Pieces(rx)));
    }
    let mut body = request.into_body();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            digest.update(&data);
            len += data.len();
        }
    }
    let hex: String = digest.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from(format!("{len} {hex} {described}"))).await;
    });
    let mut response = Response::new(Pieces(rx));
    response.headers_mut().insert("x-server", "local".parse().unwrap());
    Ok(response)
}

/// Starts the local web server; its address.
async fn web_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(serve);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    (addr, task)
}

/// `relay http --to http://ADDR/base` on `address`, started beside the relay's data directory.
async fn relay_http(relay: &TestRelay, url: &str, address: &str, to: SocketAddr) -> JoinHandle<()> {
    let data_dir = relay.dir().to_str().expect("utf-8 path").to_owned();
    let to = format!("http://{to}/base");
    let args = ["relay", "http", "--relay", url, "--address", address, "--to", &to, "--data-dir", &data_dir];
    let Command::Http(args) = Cli::try_parse_from(args).expect("arguments parse").command else { unreachable!() };
    let forwarder = Forwarder::start_http(&args).await.expect("forwarder starts");
    tokio::spawn(async move { forwarder.run(std::future::pending()).await.expect("forwarder runs") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_web_server_serves_50_mib_each_way_and_concurrent_requests() {
    let relay = TestRelay::start().await;
    let (web, _server) = web_server().await;
    for (url, address) in [(&relay.url, "web-quic"), (&relay.ws_url, "web-wss")] {
        let tool = relay_http(&relay, url, address, web).await;
        let token = https::token(&relay, address);
        let auth = [("ServiceBusAuthorization", token.as_str())];

        let upload: Vec<u8> = (0..50 * MIB).map(|i| byte_at(i * 7 + 3)).collect();
        let answer = https::request(&relay, "PUT", &format!("/{address}/files/big?x=1"), &auth, upload.clone()).await;
        assert_eq!(answer.status, 200, "{url}: {answer:?}");
        assert_eq!(answer.header("x-server"), Some("local"), "{url}: the server's own headers pass");
        assert!(answer.header("via").is_some(), "{url}: relayed: {answer:?}");
        let text = answer.text();
        let mut seen = text.split(' ');
        assert_eq!(seen.next(), Some(upload.len().to_string().as_str()), "{url}: {text}");
        assert_eq!(seen.next(), Some(sha256_hex(&upload).as_str()), "{url}: {text}");
        assert_eq!(seen.next(), Some("PUT"), "{url}: {text}");
        assert_eq!(seen.next(), Some("/base/files/big?x=1"), "{url}: the address is replaced by the base path");
        assert_eq!(seen.next(), Some(format!("host={web}").as_str()), "{url}: {text}");
        assert_eq!(seen.next(), Some("xff=127.0.0.1"), "{url}: {text}");

        let download = https::get(&relay, &format!("/{address}/download/{}", 50 * MIB), &auth).await;
        assert_eq!(download.status, 200, "{url}: {download:?}");
        assert_eq!(download.body.len(), 50 * MIB, "{url}");
        let expected: Vec<u8> = (0..50 * MIB).map(byte_at).collect();
        assert!(download.body == expected, "{url}: the download arrived intact");

        // Eight requests at once, each on a connection of its own.
        let cert = relay.cert.clone();
        let (ws_addr, token) = (relay.ws_addr, token.clone());
        let requests: Vec<_> = (0..8)
            .map(|i| {
                let (cert, token, address) = (cert.clone(), token.clone(), address.to_owned());
                tokio::spawn(async move {
                    let body: Vec<u8> = (0..(i + 1) * 100_000).map(|j| byte_at(j + i)).collect();
                    let answer = Connection::open_to(ws_addr, &cert)
                        .await
                        .send("POST", &format!("/{address}/n{i}"), &[("ServiceBusAuthorization", &token)], body.clone())
                        .await;
                    assert_eq!(answer.status, 200, "{answer:?}");
                    assert!(answer.text().starts_with(&format!(
                        "{} {} POST /base/n{i} ",
                        body.len(),
                        sha256_hex(&body)
                    )));
                })
            })
            .collect();
        for request in requests {
            request.await.expect("a concurrent request");
        }
        tool.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_server_that_is_down_is_a_502_from_the_tool() {
    let relay = TestRelay::start().await;
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("binds").local_addr().expect("address");
    let _tool = relay_http(&relay, &relay.url, "down", closed).await;
    let token = https::token(&relay, "down");
    let answer = https::get(&relay, "/down/", &[("ServiceBusAuthorization", &token)]).await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(answer.json()["code"], "unavailable", "{answer:?}");
}
