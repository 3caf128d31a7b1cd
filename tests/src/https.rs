//! An HTTPS/1.1 client for the relay's HTTP mode (hyper's, over rustls trusting the relay's
//! certificate): `https://127.0.0.1:PORT/{address}/...` on the `wss://` port. Every step is
//! under a timeout, so a relay that never answers fails the test with a message instead of
//! hanging it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::convert::Infallible;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use relay_rpc::auth::{sas_token, unix_now};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::TestRelay;

/// How long any one step (connect, TLS, send, read the body) may take.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// The relay's (or a listener's, relayed) answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase as sent, or the status's canonical one if it was the canonical one.
    pub reason: String,
    /// The headers in the order received, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Shows the body's length and at most its first 200 bytes: a failing assertion on a 200 KB
/// response stays readable.
impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(200)];
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body_start", &String::from_utf8_lossy(shown))
            .finish()
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossily).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the response if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// A send token for `address` signed with the relay's root key, valid for an hour, with the
/// audience .NET's client signs (`https://host:port/address`).
pub fn token(relay: &TestRelay, address: &str) -> String {
    let root = relay.root_key();
    let audience = format!("https://127.0.0.1:{}/{address}", relay.ws_addr.port());
    sas_token(&audience, root.name(), root.secret(), unix_now() + 3600)
}

/// `value` percent-encoded for a query string (everything but RFC 3986's unreserved characters).
pub fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn step<T, E: std::fmt::Display>(what: &str, future: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: nothing within {TIMEOUT:?}"),
    }
}

/// A TLS connection to the relay's `wss://` port, for writing HTTP by hand (requests that stall,
/// senders that vanish).
pub async fn tls(relay: &TestRelay) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = step("TCP connect to the relay", TcpStream::connect(relay.ws_addr)).await;
    let connector = tokio_rustls::TlsConnector::from(crate::tls_trusting(&relay.cert));
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    step("TLS handshake with the relay", connector.connect(name, tcp)).await
}

/// A request body: whole, or a stream of pieces.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One HTTP/1.1 connection to the relay's TLS port; requests on it are sent one after the
/// other (keep-alive).
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Body>,
    driver: JoinHandle<()>,
    authority: String,
}

impl Connection {
    /// Connects to the relay's `wss://` port over TLS, verifying its certificate for `127.0.0.1`
    /// (which the relay's development certificate names), `127.0.0.1:PORT` in `Host`.
    pub async fn open(relay: &TestRelay) -> Self {
        Self::open_to(relay.ws_addr, &relay.cert).await
    }

    /// As [`Connection::open`], to the relay whose `wss://` port is `addr` and whose
    /// certificate (PEM) is at `cert`: for tasks that cannot borrow the [`TestRelay`].
    pub async fn open_to(addr: SocketAddr, cert: &Path) -> Self {
        let authority = format!("127.0.0.1:{}", addr.port());
        let tcp = step("TCP connect to the relay", TcpStream::connect(addr)).await;
        let connector = tokio_rustls::TlsConnector::from(crate::tls_trusting(cert));
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let tls = step("TLS handshake with the relay", connector.connect(name, tcp)).await;
        let (sender, connection) =
            step("HTTP/1.1 handshake", hyper::client::conn::http1::handshake(TokioIo::new(tls))).await;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Self { sender, driver, authority }
    }

    /// Sends `method target` with `headers` and `body` (a `Content-Length` body when not empty),
    /// and reads the whole response. `target` is the request-target as sent: `/web/hello?x=1`,
    /// or an authority for `CONNECT`.
    pub async fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
        self.send_body(method, target, headers, Full::new(Bytes::from(body)).boxed_unsync()).await
    }

    /// Sends `method target` with `headers` and a body of `chunks`, each its own chunk of a
    /// `Transfer-Encoding: chunked` body (no `Content-Length`), and reads the whole response.
    pub async fn send_chunked(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        chunks: Vec<Vec<u8>>,
    ) -> Response {
        let frames = chunks.into_iter().map(|chunk| Ok(Frame::data(Bytes::from(chunk))));
        let body = StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
        let headers: Vec<(&str, &str)> = headers.iter().copied().chain([("Transfer-Encoding", "chunked")]).collect();
        self.send_body(method, target, &headers, body).await
    }

    async fn send_body(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: Body) -> Response {
        let what = format!("{method} https://{}{target}", self.authority);
        step(&format!("{what}: connection ready"), self.sender.ready()).await;
        let mut request =
            hyper::Request::builder().method(method).uri(target).header(hyper::header::HOST, self.authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body).unwrap_or_else(|e| panic!("{what}: {e}"));
        let response = step(&what, self.sender.send_request(request)).await;
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = step(&format!("{what}: body"), response.into_body().collect()).await.to_bytes().to_vec();
        Response { status: status.as_u16(), reason, headers, body }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One request on a connection of its own.
pub async fn request(
    relay: &TestRelay,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Response {
    Connection::open(relay).await.send(method, target, headers, body).await
}

/// `GET target` with `headers`, on a connection of its own.
pub async fn get(relay: &TestRelay, target: &str, headers: &[(&str, &str)]) -> Response {
    request(relay, "GET", target, headers, Vec::new()).await
}

/// The SHA-256 of `bytes`, in lower-case hex (as Node's `digest('hex')` writes it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
