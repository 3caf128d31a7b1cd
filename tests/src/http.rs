//! A plain-HTTP/1.1 client for the tests (hyper's): one request per connection, every step
//! within a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// How long a request may take, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An answer: its status and its body as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as UTF-8 (lossily).
    pub body: String,
}

/// `GET path` from `addr` with `headers`; panics if the server does not answer within 10 s.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    tokio::time::timeout(TIMEOUT, request(addr, path, headers))
        .await
        .unwrap_or_else(|_| panic!("GET http://{addr}{path}: no answer within {TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

async fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Empty::<Bytes>::new())?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
}

/// The metrics the admin endpoint at `admin` serves now: `name{labels}` to value, for every
/// sample line.
pub async fn scrape(admin: SocketAddr) -> std::collections::HashMap<String, f64> {
    let answer = get(admin, "/metrics", &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
        .body
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// How much `sample` grew between two scrapes (a sample not there yet counts as 0).
pub fn delta(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    sample: &str,
) -> f64 {
    after.get(sample).copied().unwrap_or(0.0) - before.get(sample).copied().unwrap_or(0.0)
}
