//! The WebSocket endpoint: Azure Relay's Hybrid Connections protocol over `wss://` (and `ws://`
//! when configured). Listeners hold a control WebSocket; senders connect; listeners accept each
//! sender on a single-use rendezvous WebSocket that the relay splices to the sender's.

mod accept;
mod connect;
mod control;
mod handshake;
mod raw;
mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use relay_proto::ErrorCode;
use relay_proto::hc::{Action, TOKEN_HEADER, Target, TargetError, http_status, status_description};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::budget::{Framing, Metered, WsFraming};
use crate::channel::{Io, WsEnd, WsStream};
use crate::config::Config;
use crate::limits::Slot;
use crate::metrics::{HandshakeResult, OpenResult, Transport};
use crate::phase::Phase;
use crate::state::Shared;
use handshake::{Head, ReadHeadError, read_head, refuse};
use relay_proto::http::HeadError;

/// A bound WebSocket listener: TLS (`wss`) or plain (`ws`).
pub(crate) struct WsListener {
    pub(crate) tcp: TcpListener,
    /// TLS, for `wss`.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for WsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsListener").field("tcp", &self.tcp).field("tls", &self.tls.is_some()).finish()
    }
}

impl WsListener {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "wss" } else { "ws" }
    }
}

/// Why the WebSocket endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {addr}")]
pub struct WsBindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds a TCP listener with `SO_REUSEADDR`, so that a restarted relay gets its port back while
/// connections of the previous one linger in `TIME_WAIT`.
pub(crate) fn bind(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Result<WsListener, WsBindError> {
    let error = |source| WsBindError { addr, source };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    let tcp = socket.listen(1024).map_err(error)?;
    Ok(WsListener { tcp, tls })
}

/// Accepts connections on every listener until the relay closes (while it drains they are
/// refused with 503); then gives open ones a moment to close.
pub(crate) async fn accept_loop(listeners: Vec<WsListener>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let listeners: Vec<Arc<WsListener>> = listeners.into_iter().map(Arc::new).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for listener in &listeners {
        let (listener, tx, shared) = (listener.clone(), tx.clone(), shared.clone());
        acceptors.spawn(async move {
            loop {
                match listener.tcp.accept().await {
                    Ok((tcp, remote)) => {
                        let _ = tcp.set_nodelay(true);
                        if let Err(e) = set_keepalive(&tcp, &shared.config) {
                            tracing::debug!(%remote, error = %e, "cannot set TCP keepalive");
                        }
                        if tx.send((listener.clone(), tcp, remote)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            accepted = rx.recv() => match accepted {
                Some((listener, tcp, remote)) => {
                    // Over the limits the connection is dropped at once.
                    let handshake = shared.ws_handshakes.try_take_ip(remote.ip());
                    let open = handshake.as_ref().and_then(|_| shared.connections.try_take_ip(remote.ip()));
                    if let (Some(handshake), Some(open)) = (handshake, open) {
                        let slots = Slots { handshake, _open: open };
                        connections.spawn(serve_connection(shared.clone(), listener, tcp, remote, slots));
                    } else {
                        shared.metrics.handshake(Transport::websocket, HandshakeResult::refused);
                    }
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            // While draining, new senders and listeners still get an answer: 503, shutting down.
            () = shared.reached(Phase::Closing) => break,
        }
    }
    acceptors.abort_all();
    let _ = tokio::time::timeout(shared.config.handshake_timeout(), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// A connection's places in the relay's limits: a handshake in progress until its request head
/// is read, an open connection of its source while it lives.
struct Slots {
    handshake: Slot,
    _open: Slot,
}

/// Moves a value out of its box and frees the box at once: an async fn that moves out of a box
/// frees the box only when it ends, which for a channel's task is when the channel closes.
#[expect(clippy::boxed_local, reason = "taking the box is the point: it is freed here")]
pub(crate) fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Turns on TCP keepalive, probing after `idle_timeout_ms` of silence every `keep_alive_ms`: a
/// peer whose host vanished (no FIN, no RST) is then found dead by the kernel even where no
/// WebSocket ping reaches it (a connection still in its handshake, or blocked writing).
fn set_keepalive(tcp: &tokio::net::TcpStream, config: &Config) -> std::io::Result<()> {
    // The kernel counts in whole seconds.
    let at_least_a_second = |time: std::time::Duration| time.max(std::time::Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new().with_time(at_least_a_second(config.idle_timeout()));
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos", target_os = "freebsd", windows))]
    let keepalive = keepalive.with_interval(at_least_a_second(config.keep_alive()));
    socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}

/// Serves one connection: its handshake, then what it asked for. A caller's channel is served
/// here for its whole life, and the task is sized for its largest state: the handshake runs in
/// a future of its own, boxed and gone once it is done.
async fn serve_connection(
    shared: Arc<Shared>,
    listener: Arc<WsListener>,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    slots: Slots,
) {
    let Slots { handshake, _open } = slots;
    if let Some(request) = Box::pin(read_request(&shared, &listener, tcp, remote, handshake)).await {
        dispatch(shared, Box::new(request)).await;
    }
}

/// A connection's TLS handshake and request head: the WebSocket request, or `None` once the
/// connection was refused or served in HTTP mode.
async fn read_request(
    shared: &Arc<Shared>,
    listener: &WsListener,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    handshake_slot: Slot,
) -> Option<Request> {
    // One deadline for the TLS handshake and the request head together: a peer that dribbles
    // both gets no more time than one that stalls in either.
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout();
    let handshake = |result| shared.metrics.handshake(Transport::websocket, result);
    let mut io: Box<dyn Io> = match &listener.tls {
        // The handshake's state is boxed, here and below, so that the connection's future (which
        // lives as long as the connection, a channel's end) is not sized for it.
        Some(tls) => match tokio::time::timeout_at(deadline, Box::pin(crate::tls::accept(tls.clone(), tcp))).await {
            Ok(Ok(stream)) => Box::new(stream),
            Ok(Err((e, tcp))) => {
                // Counted before the connection closes, so whoever sees it closed sees it counted.
                handshake(HandshakeResult::failed);
                drop(tcp);
                tracing::debug!(%remote, error = %e, "tls handshake failed");
                return None;
            }
            Err(_) => {
                handshake(HandshakeResult::timed_out);
                tracing::debug!(%remote, "tls handshake timed out");
                return None;
            }
        },
        None => Box::new(tcp),
    };
    let (head, mut read, used) = match tokio::time::timeout_at(deadline, Box::pin(read_head(&mut io))).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            handshake(HandshakeResult::failed);
            tracing::debug!(%remote, error = %e, "bad request head");
            match e {
                ReadHeadError::Malformed(HeadError::TooLarge | HeadError::TooManyHeaders) => {
                    refuse(io, 431, "Request Header Fields Too Large").await
                }
                _ => refuse(io, 400, "Bad Request").await,
            }
            return None;
        }
        Err(_) => {
            handshake(HandshakeResult::timed_out);
            tracing::debug!(%remote, "request head timed out");
            return None;
        }
    };
    handshake(HandshakeResult::ok);
    // No longer a handshake in progress; still an open connection of its source.
    drop(handshake_slot);
    let local = listener.tcp.local_addr().ok();
    let target = match Target::parse(&head.target) {
        Ok(target) => target,
        // Not a WebSocket handshake: HTTP mode, from this request on, served by hyper.
        Err(TargetError::NotHc) if head.header("Upgrade").is_none() => {
            let span = tracing::debug_span!("http", %remote);
            let peer = crate::http::Peer { remote, local };
            Box::pin(crate::http::serve(shared.clone(), io, read, peer)).instrument(span).await;
            return None;
        }
        Err(e) => {
            let (status, why) = match e {
                TargetError::NotHc => (400, "WebSocket upgrades go to /$hc/ADDRESS".to_owned()),
                e @ TargetError::BadPath => (404, e.to_string()),
                e => (400, e.to_string()),
            };
            refuse(io, status, why).await;
            return None;
        }
    };
    let key = match head.websocket_key() {
        Ok(key) => key.to_owned(),
        Err(why) => {
            refuse(io, 400, why).await;
            return None;
        }
    };
    let leftover = read.split_off(used);
    drop(read);
    Some(Request { io, leftover, head, target, key, scheme: listener.scheme(), local, remote })
}

/// Serves a WebSocket request by what it asks for. A caller's channel is served here for its
/// whole life; the other actions are boxed so that this future, and so every channel's task, is
/// not sized for them.
async fn dispatch(shared: Arc<Shared>, request: Box<Request>) {
    let remote = request.remote;
    let span = tracing::debug_span!("ws", %remote, action = ?request.target.action);
    match request.target.action {
        Action::Listen => Box::pin(control::serve(&shared, unbox(request))).instrument(span).await,
        Action::Connect if !shared.open_rates.try_take(remote.ip(), &shared.live().config, Instant::now()) => {
            let code = ErrorCode::RateLimited;
            shared.metrics.channel_refused(Transport::websocket, OpenResult::rate_limited);
            tracing::debug!(%remote, "channel opens over the rate; refusing");
            refuse(request.io, http_status(code).0, &status_description(code, "too many channel opens")).await
        }
        Action::Connect => connect::serve(&shared, request).instrument(span).await,
        Action::Accept => Box::pin(accept::serve(&shared, unbox(request))).instrument(span).await,
        Action::Request => Box::pin(request::serve(&shared, unbox(request))).instrument(span).await,
        _ => refuse(request.io, 400, "unsupported action").await,
    }
}

/// A parsed Hybrid Connections handshake, not yet answered.
pub(crate) struct Request {
    pub(crate) io: Box<dyn Io>,
    pub(crate) leftover: Vec<u8>,
    pub(crate) head: Head,
    pub(crate) target: Target,
    pub(crate) key: String,
    pub(crate) scheme: &'static str,
    pub(crate) local: Option<SocketAddr>,
    /// The peer's address.
    pub(crate) remote: SocketAddr,
}

impl Request {
    /// The token from `sb-hc-token`, else from the `ServiceBusAuthorization` header.
    pub(crate) fn token(&self) -> Option<&str> {
        self.target.token.as_deref().or_else(|| self.head.header(TOKEN_HEADER))
    }

    /// Answers 101 and returns the WebSocket, for a channel end: what it reads draws on the
    /// relay's buffer budget.
    pub(crate) async fn upgrade(
        self,
        shared: &Shared,
        protocol: Option<&str>,
        channel_id: Option<u64>,
    ) -> std::io::Result<WsEnd> {
        let max = shared.config.max_frame_bytes;
        let framing = Framing::Ws(WsFraming::new(max));
        let io = Metered::new(self.io, framing, Some(&shared.budget));
        // Boxed: a channel's task holds its future for the channel's life, the answer only now.
        let patience = shared.config.idle_timeout();
        let limits = (max, patience);
        Box::pin(handshake::upgrade_end(io, self.leftover, &self.key, (protocol, channel_id), limits)).await
    }

    /// Answers 101 and returns the WebSocket, for a listener's control channel: small messages
    /// read one at a time, so outside the buffer budget.
    pub(crate) async fn upgrade_control(self, shared: &Shared) -> std::io::Result<WsStream> {
        let max = shared.config.max_frame_bytes;
        let io = Metered::new(self.io, Framing::Ws(WsFraming::new(max)), None);
        handshake::upgrade(io, self.leftover, &self.key, (None, None), max).await
    }

    /// Answers 101 and returns the connection as it is, and the bytes read past the handshake,
    /// for a WebSocket read and written frame by frame ([`raw`]).
    pub(crate) async fn upgrade_raw(mut self) -> std::io::Result<(Box<dyn Io>, Vec<u8>)> {
        handshake::switch_protocols(&mut self.io, &self.key, (None, None)).await?;
        Ok((self.io, self.leftover))
    }

    /// Answers with an error status.
    pub(crate) async fn refuse(self, status: u16, description: &str) {
        refuse(self.io, status, description).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller's channel is served by its connection's task for the channel's whole life, and a
    /// task is sized for the largest state of its future: the handshake, routing and refusals are
    /// boxed so that they do not size it. (It was 5.7 KiB in release builds with them inline.)
    #[tokio::test]
    async fn a_connections_task_is_not_sized_for_its_handshake_or_routing() {
        let shared = Arc::new(Shared::new(Config::default(), None));
        let listener = Arc::new(bind("127.0.0.1:0".parse().unwrap(), None).unwrap());
        let tcp = tokio::net::TcpStream::connect(listener.tcp.local_addr().unwrap()).await.unwrap();
        let remote = tcp.local_addr().unwrap();
        let slots = Slots {
            handshake: shared.ws_handshakes.try_take_ip(remote.ip()).unwrap(),
            _open: shared.connections.try_take_ip(remote.ip()).unwrap(),
        };
        let future = serve_connection(shared.clone(), listener, tcp, remote, slots);
        assert!(std::mem::size_of_val(&future) < 4096, "{} bytes", std::mem::size_of_val(&future));
    }

    #[test]
    fn the_bind_error_leaves_its_cause_to_the_chain() {
        let source = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = WsBindError { addr: "127.0.0.1:443".parse().unwrap(), source };
        assert_eq!(e.to_string(), "cannot bind 127.0.0.1:443");
        assert_eq!(relay_proto::error::chain(&e).to_string(), "cannot bind 127.0.0.1:443: address in use");
    }
}
