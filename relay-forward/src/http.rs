//! `relay http`: the host side for a local web server. Each HTTP request the relay sends (a
//! request to `https://{relay}/{address}/...`) becomes a request to the local server, on a
//! connection of its own; bodies stream both ways.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use relay_rpc::IncomingChannel;
use relay_rpc::http::{HttpError, HttpRequest, HttpResponse, ResponseHead};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// A local web server: where `relay http --to` sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `host:port`, to connect to and to name in `Host`.
    authority: String,
    /// The path requests go under, without a trailing `/` (empty for the root).
    base_path: String,
}

/// Why `--to` is not a usable target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Not a URL.
    #[error("{0:?} is not a URL like http://127.0.0.1:8080")]
    NotAUrl(String),
    /// Not `http://` (the local server is reached without TLS: it runs beside the tool).
    #[error("{0:?} is not an http:// URL (the local server is reached without TLS)")]
    NotHttp(String),
}

impl std::str::FromStr for HttpTarget {
    type Err = TargetError;

    /// Parses `http://host:port[/base]`; the port defaults to 80.
    fn from_str(s: &str) -> Result<Self, TargetError> {
        let url = url::Url::parse(s).map_err(|_| TargetError::NotAUrl(s.to_owned()))?;
        if url.scheme() != "http" || url.query().is_some() {
            return Err(TargetError::NotHttp(s.to_owned()));
        }
        let host = url.host_str().ok_or_else(|| TargetError::NotAUrl(s.to_owned()))?;
        let authority = format!("{host}:{}", url.port().unwrap_or(80));
        Ok(Self { authority, base_path: url.path().trim_end_matches('/').to_owned() })
    }
}

impl std::fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.base_path)
    }
}

impl HttpTarget {
    /// The `host:port` to connect to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The local request target for a relayed one: `/web/a/b?x=1` on address `web` is `/a/b?x=1`
    /// under the base path.
    fn local_target(&self, relayed: &str, address: &str) -> String {
        let rest = relayed.strip_prefix('/').and_then(|t| t.strip_prefix(address)).unwrap_or(relayed);
        let rest = if rest.is_empty() || rest.starts_with('?') { format!("/{rest}") } else { rest.to_owned() };
        format!("{}{rest}", self.base_path)
    }
}

/// Request headers the local server does not get: hop-by-hop ones (hyper frames the body
/// itself) and `Host`, which names the server.
const NOT_FORWARDED: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"];

/// Answers one relayed request from the local server. A server that cannot be reached is a 502,
/// one that does not answer within `timeout` a 504; the relay's own limits bound the rest.
pub(crate) async fn proxy_one(
    incoming: IncomingChannel,
    target: Arc<HttpTarget>,
    timeout: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let address = incoming.address().to_owned();
    let (request, mut response) = match HttpRequest::accept(incoming).await {
        Ok(accepted) => accepted,
        Err(e) => return tracing::info!(error = %super::report(&e), "request lost before it was read"),
    };
    let method = request.head.method.clone();
    let path = target.local_target(&request.head.target, &address);
    tracing::info!(%method, %path, "forwarding");
    let answered = match tokio::time::timeout(timeout, ask_local(&target, &address, request)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::warn!(to = %target, error = %super::report(&e), "cannot reach the local server");
            return fail(response, 502, "the forwarded web server is unreachable").await;
        }
        Err(_) => return fail(response, 504, "the forwarded web server did not answer in time").await,
    };
    let (parts, mut body) = answered.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    if let Err(e) = response.start(ResponseHead { status: parts.status.as_u16(), headers }).await {
        return tracing::info!(error = %super::report(&e), "the caller went away");
    }
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            // The caller's answer ends short; the relay tells it so.
            Err(e) => return tracing::info!(error = %e, "the local server's answer broke off"),
        };
        sent += data.len() as u64;
        if let Err(e) = response.send(data).await {
            return tracing::info!(error = %super::report(&e), "the caller went away");
        }
    }
    match response.finish().await {
        Ok(()) => tracing::info!(status = parts.status.as_u16(), bytes = sent, "answered"),
        Err(e) => tracing::info!(error = %super::report(&e), "the caller went away"),
    }
}

/// Why the local server gave no answer.
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error("cannot connect")]
    Connect(#[source] std::io::Error),
    #[error("the http exchange failed")]
    Http(#[source] hyper::Error),
    #[error("the relayed request cannot be made into a local one")]
    Request(#[source] hyper::http::Error),
}

/// Sends `request` to the local server on a new connection, its body streamed as it arrives
/// from the relay, and returns the server's answer as soon as its head is there.
async fn ask_local(
    target: &HttpTarget,
    address: &str,
    mut request: HttpRequest,
) -> Result<hyper::Response<hyper::body::Incoming>, LocalError> {
    let tcp = TcpStream::connect(target.authority()).await.map_err(LocalError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(LocalError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "local connection ended");
        }
    });
    let mut local = hyper::Request::builder()
        .method(request.head.method.as_str())
        .uri(target.local_target(&request.head.target, address))
        .header(HOST, target.authority());
    for (name, value) in &request.head.headers {
        if NOT_FORWARDED.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            local = local.header(name, value);
        }
    }
    if let Some(ip) = request.head.remote.rsplit_once(':').map(|(ip, _)| ip.trim_matches(['[', ']'])) {
        local = local.header("x-forwarded-for", ip).header("x-forwarded-proto", "https");
    }
    let (pieces, body) = mpsc::channel(2);
    let local = local.body(RelayedBody(body)).map_err(LocalError::Request)?;
    // The body goes on while the server reads it; it may answer before the end.
    tokio::spawn(async move {
        loop {
            let piece = match request.piece().await {
                Ok(Some(piece)) => Ok(piece),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            let failed = piece.is_err();
            if pieces.send(piece).await.is_err() || failed {
                break;
            }
        }
    });
    sender.send_request(local).await.map_err(LocalError::Http)
}

/// A request body as it arrives from the relay.
struct RelayedBody(mpsc::Receiver<Result<Bytes, HttpError>>);

impl hyper::body::Body for RelayedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        self.0.poll_recv(cx).map(|next| next.map(|piece| piece.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Answers with the tool's own error.
async fn fail(response: HttpResponse, status: u16, message: &str) {
    let body = relay_proto::hc_http::error_body(status, message);
    let head = ResponseHead { status, headers: vec![("content-type".into(), "application/json".into())] };
    let _ = response.send_whole(head, Bytes::from(body)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_map_paths() {
        let root: HttpTarget = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(root.local_target("/web/a/b?x=1", "web"), "/a/b?x=1");
        assert_eq!(root.local_target("/web", "web"), "/");
        assert_eq!(root.local_target("/web?x=1", "web"), "/?x=1");
        let based: HttpTarget = "http://localhost/app/".parse().unwrap();
        assert_eq!(based.authority(), "localhost:80");
        assert_eq!(based.local_target("/eu/web/index.html", "eu/web"), "/app/index.html");
        assert_eq!(based.to_string(), "http://localhost:80/app");
        assert!(matches!("https://x:1".parse::<HttpTarget>(), Err(TargetError::NotHttp(_))));
        assert!(matches!(
            "127.0.0.1:8080".parse::<HttpTarget>(),
            Err(TargetError::NotHttp(_) | TargetError::NotAUrl(_))
        ));
    }
}
