//! The admin endpoint: plain HTTP/1.1 for operators and orchestrators on a listener of its own
//! (`admin_listen`), served with hyper.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when the relay should be given work; 503, saying why, while it drains
//!   or (in cluster mode) while it is cut off from NATS.
//! - `GET /metrics`: the Prometheus text format (`relay_*` and `relay_process_*`).
//! - `GET /`: a status page (no external scripts, styles or fonts; it refreshes itself from
//!   `GET /api/status`, the JSON of every address and its listeners).
//!
//! Bound to a loopback address it answers anyone who can reach it; bound beyond, only requests
//! with a token granting `manage` (the `Authorization` header, or `?token=`).

mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use relay_proto::auth::{Right, percent, unix_now};
use relay_proto::error::chain;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::listeners::ListenerHandle;
use crate::metrics::{Snapshot, Transport};
use crate::phase::Phase;
use crate::state::Shared;

/// Admin connections served at once; beyond, new ones are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// The largest request head read (the buffer hyper may fill before it gives up).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the admin endpoint to {addr} (set admin_listen, or \"off\")")]
pub struct AdminBindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// The admin endpoint's bound socket.
#[derive(Debug)]
pub(crate) struct AdminListener {
    tcp: TcpListener,
    /// Whether requests need a `manage` token (bound beyond loopback).
    guarded: bool,
}

impl AdminListener {
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }
}

/// Binds the admin endpoint's socket.
pub(crate) fn bind(addr: SocketAddr) -> Result<AdminListener, AdminBindError> {
    let error = |source| AdminBindError { addr, source };
    let std = std::net::TcpListener::bind(addr).map_err(error)?;
    std.set_nonblocking(true).map_err(error)?;
    let tcp = TcpListener::from_std(std).map_err(error)?;
    Ok(AdminListener { tcp, guarded: !addr.ip().is_loopback() })
}

/// Serves the admin endpoint until the relay closes (it answers through a drain: `/readyz` says
/// 503 then). Without a listener (`admin_listen = "off"`), returns at once.
pub(crate) async fn serve(listener: Option<AdminListener>, shared: Arc<Shared>) {
    let Some(AdminListener { tcp, guarded }) = listener else { return };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok((stream, remote)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::debug!(%remote, "admin connections at their limit; closed");
                        continue;
                    };
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(|request| {
                            let response = respond(&shared, guarded, &request);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(shared.config.handshake_timeout())
                            .max_buf_size(MAX_HEAD_BYTES)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(e) = served {
                            tracing::debug!(%remote, error = %chain(&e), "admin connection failed");
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = shared.reached(Phase::Closing) => break,
        }
    }
}

/// What the admin endpoint answers `request`.
fn respond(shared: &Shared, guarded: bool, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if guarded {
        let target = request.uri().path_and_query().map_or("", |p| p.as_str());
        let header = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header.map(str::to_owned).or_else(|| query_token(target));
        if let Err(denied) = shared.live().policy.authorize(token.as_deref(), Right::Manage, "", unix_now()) {
            return text(
                StatusCode::UNAUTHORIZED,
                format!("a token with the manage right is needed: {}", denied.detail),
            );
        }
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here".into());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok".into()),
        "/readyz" => match shared.readiness().why_not() {
            None => text(StatusCode::OK, "ready".into()),
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        },
        "/metrics" => metrics(shared),
        "/api/status" => match serde_json::to_vec(&status::Status::of(shared)) {
            Ok(json) => answer(StatusCode::OK, "application/json", Bytes::from(json)),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the status".into()),
        },
        "/" => answer(StatusCode::OK, "text/html; charset=utf-8", Bytes::from_static(STATUS_PAGE.as_bytes())),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; this endpoint serves /, /api/status, /healthz, /readyz and /metrics".into(),
        ),
    }
}

/// The relay's metrics, in the Prometheus text format.
fn metrics(shared: &Shared) -> Response<Full<Bytes>> {
    let mut registry = Registry::with_prefix("relay");
    shared.metrics.register(&mut registry);
    registry.register_collector(Box::new(snapshot(shared)));
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics".into());
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What the relay holds now, for a scrape.
fn snapshot(shared: &Shared) -> Snapshot {
    let (mut quic, mut websocket) = (0, 0);
    {
        let registry = shared.registry();
        for address in registry.addresses() {
            for (_, listener) in registry.all(&address) {
                match listener {
                    ListenerHandle::Quic(_) => quic += 1,
                    ListenerHandle::Hc(_) => websocket += 1,
                }
            }
        }
    }
    let peers = shared.peers();
    Snapshot {
        listeners: vec![(Transport::quic, quic), (Transport::websocket, websocket)],
        open_channels: shared.open_channels.load(Ordering::Relaxed) as u64,
        relayed_bytes: [shared.relayed_bytes.to_host(), shared.relayed_bytes.to_caller()],
        buffered_bytes: shared.budget.held() as u64,
        multicast_subscribers_cut: shared.multicast.overflows.load(Ordering::Relaxed),
        cluster_nodes: peers.map(|peers| peers.view().nodes() as u64),
        cluster_linked: shared.config.cluster.as_ref().map(|_| peers.is_some_and(|peers| peers.connected())),
        ..Snapshot::default()
    }
    .with_process()
}

/// The `token` parameter of a request target's query, decoded.
fn query_token(target: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|p| p.strip_prefix("token=")).and_then(percent::decode)
}

/// The status page: one self-contained file.
const STATUS_PAGE: &str = include_str!("status.html");

/// A plain-text answer.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    answer(status, "text/plain; charset=utf-8", Bytes::from(body + "\n"))
}

/// An answer, never cached (a probe must see the state of now).
fn answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_parameter_is_found_and_decoded() {
        assert_eq!(
            query_token("/readyz?token=SharedAccessSignature%20sr%3Dx").as_deref(),
            Some("SharedAccessSignature sr=x")
        );
        assert_eq!(query_token("/readyz?a=1&token=t").as_deref(), Some("t"));
        assert_eq!(query_token("/readyz?tokens=t"), None);
        assert_eq!(query_token("/readyz"), None);
    }
}
