//! The QUIC endpoint: accepts hosts and callers, registers listeners, routes and splices channels.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};
use std::time::{Duration, Instant};

use std::sync::{Mutex, PoisonError};

use relay_proto::auth::{Right, unix_now};
use relay_proto::error::chain;
use relay_proto::grant::{OpenStream, StreamGrant};
use relay_proto::io::{read_frame_within, read_next_frame, write_frame};
use relay_proto::session::{ListenerSession, Next};
use relay_proto::{self, ContractInfo, Control, ErrorCode, FrameAssembler, Hello, MAX_HELLO_FRAME, Reply, StreamCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::certs::Identity;
use crate::channel::{End, Pipe, cut, splice};
use crate::config::Config;
use crate::deadline::sleep_until;
use crate::limits::{Slot, TokenBucket};
use crate::listeners::{ListenerHandle, QuicListener};
use crate::metrics::{HandshakeResult, OpenResult, Transport};
use crate::multicast;
use crate::phase::Phase;
use crate::rendezvous::Outcome;
use crate::router::{ChannelRequest, channel_span, route};
use crate::state::{ChannelGuard, Shared};

/// Why the QUIC endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The TLS configuration was refused.
    #[error("tls configuration refused")]
    Tls(#[from] rustls::Error),
    /// QUIC refused the TLS configuration.
    #[error("quic tls: {0}")]
    QuicTls(String),
    /// The socket could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Binds the QUIC endpoint.
pub(crate) fn bind(config: &Config, identity: &Identity) -> Result<Endpoint, EndpointError> {
    let tls = crate::tls::quic_server_config(identity, relay_proto::ALPN)?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::QuicTls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(config)));
    relay_proto::io::bind_endpoint(config.quic_listen, Some(server))
        .map_err(|source| EndpointError::Bind { addr: config.quic_listen, source })
}

fn transport_config(config: &Config) -> TransportConfig {
    let mut transport = relay_proto::io::transport_config();
    transport.keep_alive_interval(Some(config.keep_alive()));
    transport.max_idle_timeout(IdleTimeout::try_from(config.idle_timeout()).ok());
    transport.max_concurrent_bidi_streams(VarInt::from_u32(StreamGrant::initial(config.max_channels_per_connection)));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    transport.stream_receive_window(VarInt::from_u32(config.stream_window_bytes));
    // What a connection may make the relay buffer before it has shown a token; raised to
    // `connection_window_bytes` by its first authorized hello.
    transport.receive_window(VarInt::from_u32(UNAUTHORIZED_WINDOW.min(config.connection_window_bytes)));
    transport
}

/// The connection-level receive window of a connection without an authorized hello yet: room
/// for [`PENDING_HELLOS`] hellos and some channel bytes behind them, nothing like the megabytes
/// an authorized connection gets.
const UNAUTHORIZED_WINDOW: u32 = 256 * 1024;

/// Streams of one connection that may be reading their hello at once. Streams beyond wait in
/// quinn (within the connection's receive window) until one is done: a peer that opens a
/// thousand streams and sends each four bytes of a length costs the relay these few.
const PENDING_HELLOS: usize = 8;

/// Accepts connections until the relay drains; then waits for open ones until it closes.
pub(crate) async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => admit(&shared, incoming, &mut connections),
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = shared.reached(Phase::Draining) => break,
        }
    }
    endpoint.set_server_config(None);
    shared.reached(Phase::Closing).await;
    let _ = tokio::time::timeout(shared.config.handshake_timeout(), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Takes a new connection's slots, or turns it away: with a Retry while the handshake pool is
/// half full and the client's address is not yet validated (stateless, so a spoofed source holds
/// nothing and never comes back), refused when its source is over a limit.
fn admit(shared: &Arc<Shared>, incoming: quinn::Incoming, connections: &mut JoinSet<()>) {
    let ip = incoming.remote_address().ip();
    if !incoming.remote_address_validated() && incoming.may_retry() && shared.quic_handshakes.under_pressure() {
        tracing::debug!(%ip, "many handshakes in progress; asking for a retry");
        match incoming.retry() {
            Ok(()) => {
                shared.quic_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.metrics.handshake(Transport::quic, HandshakeResult::retry);
            }
            Err(e) => {
                shared.metrics.handshake(Transport::quic, HandshakeResult::refused);
                e.into_incoming().refuse()
            }
        }
        return;
    }
    let slots = shared.quic_handshakes.try_take_ip(ip).and_then(|h| Some((h, shared.connections.try_take_ip(ip)?)));
    let Some((handshake, open)) = slots else {
        shared.metrics.handshake(Transport::quic, HandshakeResult::refused);
        return incoming.refuse();
    };
    connections.spawn(serve_connection(shared.clone(), incoming, Gate::new(handshake), open));
}

/// A connection's handshake slot, held until one of its streams presents an authorized hello:
/// until then the connection counts as a handshake in progress, within its window of
/// [`UNAUTHORIZED_WINDOW`] and a deadline.
#[derive(Debug)]
struct Gate(Mutex<Option<Slot>>);

impl Gate {
    fn new(handshake: Slot) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Some(handshake))))
    }

    /// Lets the connection through, once: gives back its handshake slot and opens its window.
    fn pass(&self, connection: &Connection, window: u32) {
        if self.0.lock().unwrap_or_else(PoisonError::into_inner).take().is_some() {
            connection.set_receive_window(VarInt::from_u32(window));
        }
    }

    fn passed(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).is_none()
    }
}

/// Closes every QUIC connection with [`StreamCode::RelayShutdown`].
pub(crate) fn close(endpoint: &Endpoint) {
    endpoint.close(VarInt::from_u64(StreamCode::RelayShutdown.to_u64()).unwrap_or_default(), b"relay shutting down");
}

/// Serves one connection: its handshake, then its streams, each with its own hello. `_open`
/// counts it against its source's connections while it lives.
///
/// Streams are taken from the start of the handshake: a resumed caller's first hellos come as
/// 0-RTT data with it, and their answers go back as 0.5-RTT data, a round trip sooner. Only a
/// `Connect` acts before the handshake is done (see [`Handshake`]).
async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming, gate: Arc<Gate>, _open: Slot) {
    let remote = incoming.remote_address();
    // One deadline for the QUIC handshake and the first authorized hello.
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout();
    let metrics = shared.metrics.clone();
    let handshake = move |result| metrics.handshake(Transport::quic, result);
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            handshake(HandshakeResult::failed);
            return tracing::debug!(%remote, error = %e, "handshake failed");
        }
    };
    // quinn converts every incoming connection (0.5-RTT: it may send before the handshake ends).
    let Ok((connection, done)) = connecting.into_0rtt() else {
        handshake(HandshakeResult::failed);
        return tracing::warn!(%remote, "quinn would not serve the connection before its handshake; dropped");
    };
    let span = tracing::debug_span!("connection", %remote, id = connection.stable_id());
    async move {
        let (completed, progress) = Handshake::new();
        let mut done = std::pin::pin!(done);
        let mut streams = JoinSet::new();
        let hellos = Arc::new(Semaphore::new(PENDING_HELLOS));
        let mut opens = TokenBucket::for_caller(&shared.live().config, Instant::now());
        let grant = StreamGrant::new(shared.config.max_channels_per_connection);
        let unauthorized = tokio::time::sleep_until(deadline);
        tokio::pin!(unauthorized);
        loop {
            tokio::select! {
                // First: a stream that arrives with the handshake's last flight is not early.
                biased;
                _ = &mut done, if !progress.is_done() => {
                    if let Some(e) = connection.close_reason() {
                        handshake(HandshakeResult::failed);
                        tracing::debug!(error = %e, "handshake failed");
                        break;
                    }
                    handshake(HandshakeResult::ok);
                    tracing::debug!("connected");
                    completed.send_replace(true);
                }
                (slot, accepted) = next_stream(&connection, &hellos) => match accepted {
                    Ok((send, recv)) if !opens.try_take(Instant::now()) => {
                        tracing::debug!("channel opens over the rate; refusing");
                        shared.metrics.channel_refused(Transport::quic, OpenResult::rate_limited);
                        streams.spawn(refuse(send, recv, ErrorCode::RateLimited, "too many channel opens"));
                    }
                    Ok((send, recv)) => match grant.opened() {
                        Some(open) => {
                            let stream = Stream { send, recv, open, hello: slot, handshake: progress.clone() };
                            streams.spawn(serve_stream(shared.clone(), connection.clone(), gate.clone(), stream));
                        }
                        None => {
                            tracing::debug!("channels over the connection's limit; refusing");
                            let detail = "too many channels open on this connection";
                            streams.spawn(refuse(send, recv, ErrorCode::Busy, detail));
                        }
                    },
                    Err(e) => {
                        if !progress.is_done() {
                            handshake(HandshakeResult::failed);
                        }
                        tracing::debug!(reason = %e, "disconnected");
                        break;
                    }
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
                // The condition is checked when the select starts, the state again when it fires.
                () = &mut unauthorized, if !gate.passed() || !progress.is_done() => {
                    let code = VarInt::from_u64(StreamCode::HandshakeTimeout.to_u64()).unwrap_or_default();
                    if !progress.is_done() {
                        handshake(HandshakeResult::timed_out);
                        tracing::debug!("handshake timed out");
                        connection.close(code, b"");
                        break;
                    }
                    if gate.passed() {
                        continue;
                    }
                    tracing::debug!("no authorized hello in time; closing");
                    connection.close(code, b"");
                    break;
                }
            }
        }
        // Streams waiting for a handshake that will not complete give up now.
        drop(completed);
        // Every stream of a closed connection fails at once; let each task clean up its side.
        while streams.join_next().await.is_some() {}
    }
    .instrument(span)
    .await
}

/// Whether a connection's handshake is done, as its streams see it: a resumed client's streams
/// can arrive before, in 0-RTT data, which whoever recorded it can play again. rustls refuses a
/// replay to this relay (each ticket is taken on use), but what a hello does before the
/// handshake is done must be harmless twice anyway: a `Connect` opens a channel that carries no
/// call until the caller has the relay's answer, under the full handshake's keys; a `Listen`
/// could take callers from the real host, and a `Rendezvous` spends its one-time secret, so
/// those wait.
#[derive(Debug, Clone)]
struct Handshake(watch::Receiver<bool>);

impl Handshake {
    /// The progress streams read, and the sender that marks it done (or, dropped, failed).
    fn new() -> (watch::Sender<bool>, Self) {
        let (done, progress) = watch::channel(false);
        (done, Self(progress))
    }

    fn is_done(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the handshake is done; `false` if the connection ended first.
    async fn completed(&mut self) -> bool {
        self.0.wait_for(|done| *done).await.is_ok()
    }
}

/// The next stream the peer opens, once fewer than [`PENDING_HELLOS`] are reading their hello.
/// Cancel-safe: dropped before it resolves, it gives the slot back and takes no stream.
async fn next_stream(
    connection: &Connection,
    hellos: &Arc<Semaphore>,
) -> (Option<OwnedSemaphorePermit>, Result<(SendStream, RecvStream), quinn::ConnectionError>) {
    // The semaphore is never closed; were it, streams would be read without a slot.
    let slot = hellos.clone().acquire_owned().await.ok();
    (slot, connection.accept_bi().await)
}

/// A stream a peer opened, before its hello is read.
struct Stream {
    send: SendStream,
    recv: RecvStream,
    /// Counts the stream in the connection's stream grant while it lives.
    open: OpenStream,
    /// One of the connection's [`PENDING_HELLOS`], given back once the hello is read.
    hello: Option<OwnedSemaphorePermit>,
    /// The connection's handshake, which may still be under way (the stream came as 0-RTT data).
    handshake: Handshake,
}

/// Serves one stream a peer opened: reads its hello, authorizes it, and serves the listener or
/// the caller it says it is.
async fn serve_stream(shared: Arc<Shared>, connection: Connection, gate: Arc<Gate>, stream: Stream) {
    let Stream { mut send, mut recv, mut open, hello, mut handshake } = stream;
    let early = !handshake.is_done();
    let read = read_frame_within(&mut recv, MAX_HELLO_FRAME, shared.config.handshake_timeout()).await;
    drop(hello);
    let hello = match read {
        Ok(Some(body)) => match Hello::decode(&body) {
            Ok(hello) => hello,
            Err(e) => return refuse(send, recv, ErrorCode::BadRequest, &e.to_string()).await,
        },
        Ok(None) => {
            tracing::debug!("stream handshake timed out");
            return cut(&mut send, &mut recv, StreamCode::HandshakeTimeout);
        }
        Err(e) => {
            tracing::debug!(error = %chain(&e), "bad stream handshake");
            return cut(&mut send, &mut recv, StreamCode::ProtocolError);
        }
    };
    if early && !matches!(hello, Hello::Connect { .. }) && !handshake.completed().await {
        return tracing::debug!("the handshake failed under an early hello");
    }
    let (right, token) = match &hello {
        Hello::Listen { token, .. } => (Right::Listen, token),
        Hello::Connect { token, .. } => (Right::Send, token),
        Hello::Rendezvous { secret } => {
            // Authorized by its one-time secret, which only the node that made it and the
            // listener it was sent to know; no token.
            let Some(waiting) = shared.rendezvous.take(secret) else {
                return refuse(send, recv, ErrorCode::NoListener, "no caller waits for this rendezvous").await;
            };
            gate.pass(&connection, shared.config.connection_window_bytes);
            open.authorize(relay_proto::io::announce_streams(&connection));
            // The stream leaves the connection's grant here, while the caller's node splices it:
            // such streams are bounded by the callers' own channels instead, one secret each.
            tracing::debug!("rendezvous from a listener on another node");
            let _ = waiting.send(Outcome::Accepted { ws: Box::new(End::Quic(Pipe { send, recv })), protocol: None });
            return;
        }
    };
    let granted = match shared.live().policy.authorize(token.as_deref(), right, hello.address(), unix_now()) {
        Ok(granted) => granted,
        Err(denied) => {
            shared.metrics.auth_failure(denied.reason);
            if right == Right::Send {
                shared.metrics.channel_refused(Transport::quic, OpenResult::unauthorized);
            }
            return refuse(send, recv, ErrorCode::Auth(denied.reason), &denied.detail).await;
        }
    };
    gate.pass(&connection, shared.config.connection_window_bytes);
    open.authorize(relay_proto::io::announce_streams(&connection));
    match hello {
        Hello::Listen { address, http, .. } => {
            let listener = Registering { address, expiry: granted.expiry, http };
            serve_listener(&shared, connection, listener, send, recv).await;
        }
        Hello::Connect { address, contract, .. } => {
            if early {
                shared.metrics.early_open();
            }
            let ip = connection.remote_address().ip();
            match shared.channel_quotas.try_take(ip, granted.key.as_deref()) {
                Ok(_quota) => {
                    let caller = connection.remote_address();
                    serve_caller(&shared, (address, caller), contract, send, recv).await
                }
                Err(over) => {
                    shared.metrics.channel_refused(Transport::quic, OpenResult::rate_limited);
                    refuse(send, recv, ErrorCode::RateLimited, over).await
                }
            }
        }
        Hello::Rendezvous { .. } => {}
    }
}

/// Writes a refusal and ends the stream. quinn goes on delivering what was written to a stream
/// after it is dropped, so nothing here waits for the delivery: a peer that opens streams only
/// to have them refused holds no task of the relay's for longer than the write.
async fn refuse(mut send: SendStream, _recv: RecvStream, code: ErrorCode, detail: &str) {
    tracing::debug!(?code, detail, "refused");
    let reply = Reply::refused(code, detail).encode();
    if let Ok(Ok(())) = tokio::time::timeout(REFUSAL_WRITE, write_frame(&mut send, &reply)).await {
        let _ = send.finish();
    }
}

/// How long a refusal may wait for the peer's flow control; a refusal is a few dozen bytes.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);

/// Control messages (a cluster's `Dial`s) waiting for one listener's control stream; past it,
/// the listener is passed over as unreachable.
const CONTROL_QUEUE: usize = 64;

/// How long a control message may wait for the host's flow control.
const CONTROL_WRITE: Duration = Duration::from_secs(2);

/// A listener's `Listen`, authorized.
struct Registering {
    address: String,
    /// When its token expires.
    expiry: Option<u64>,
    /// Whether it takes HTTP requests.
    http: bool,
}

/// Registers a listener for as long as its control stream stays open and its token is valid.
async fn serve_listener(
    shared: &Shared,
    connection: Connection,
    listener: Registering,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    if shared.draining() {
        return refuse(send, recv, ErrorCode::ShuttingDown, "relay is shutting down").await;
    }
    let Registering { address, expiry, http } = listener;
    let (control, mut to_host) = mpsc::channel(CONTROL_QUEUE);
    let quic = QuicListener { connection, control, since: unix_now(), http };
    let registered = shared.register_listener(&address, ListenerHandle::Quic(quic));
    let id = match registered {
        Ok(id) => id,
        Err(e) => return refuse(send, recv, ErrorCode::Busy, &e.to_string()).await,
    };
    if write_frame(&mut send, &Reply::Accepted.encode()).await.is_ok() {
        tracing::info!(%address, listener = id, "listener registered");
        let ended = hold_registration(shared, &address, expiry, &mut send, &mut recv, &mut to_host).await;
        if let Some(code) = ended {
            cut(&mut send, &mut recv, code);
        }
    }
    shared.unregister_listener(&address, id);
    tracing::info!(%address, listener = id, "listener left");
}

/// Serves a listener's control stream until the host ends it or its token lapses; renewals
/// move the expiry. When the relay starts draining, tells the host to go elsewhere (its open
/// channels run on). Returns the code to cut the stream with, if the relay ends it. What happens
/// when is the [`ListenerSession`]'s to decide; QUIC's own keep-alive watches the connection.
async fn hold_registration(
    shared: &Shared,
    address: &str,
    expiry: Option<u64>,
    send: &mut SendStream,
    recv: &mut RecvStream,
    to_host: &mut mpsc::Receiver<Control>,
) -> Option<StreamCode> {
    let mut session = ListenerSession::new(expiry);
    // Kept across iterations: a frame half read when a timer fires is finished by the next read.
    let mut control = FrameAssembler::new(MAX_HELLO_FRAME);
    loop {
        let wake = match session.next(Instant::now(), unix_now()) {
            Next::End(ending) => {
                tracing::info!(%address, ?ending, "listener registration ended by the relay");
                return Some(ending.stream_code());
            }
            Next::GoAway => {
                tracing::debug!(%address, "telling the listener to go elsewhere");
                let _ = write_frame(send, &Control::GoAway.encode()).await;
                continue;
            }
            // No liveness was asked of this session: the connection has its own.
            Next::Ping => continue,
            Next::WaitUntil(wake) => wake,
        };
        let frame = tokio::select! {
            frame = read_next_frame(recv, &mut control) => frame,
            () = shared.reached(Phase::Draining), if !session.told_to_go() => {
                session.draining();
                continue;
            }
            () = sleep_until(wake), if wake.is_some() => continue,
            Some(message) = to_host.recv() => {
                // A host that does not read its control stream holds up only its own messages.
                let body = message.encode();
                let write = write_frame(send, &body);
                if !matches!(tokio::time::timeout(CONTROL_WRITE, write).await, Ok(Ok(()))) {
                    tracing::debug!(%address, "cannot write to the listener's control stream");
                    return None;
                }
                continue;
            }
        };
        let Ok(frame) = frame else { return None };
        match Control::decode(&frame) {
            Ok(Control::RenewToken { token }) => {
                match shared.live().policy.authorize(Some(&token), Right::Listen, address, unix_now()) {
                    Ok(renewed) => session.renewed(renewed.expiry),
                    Err(denied) => {
                        tracing::info!(%address, reason = %denied.reason, "renewed token refused");
                        session.renewal_refused(denied.reason);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%address, error = %e, "bad control message");
                session.bad_control();
            }
        }
    }
}

/// Routes a caller's channel (from the connection at `caller`) to a listener on any transport,
/// answers, and splices.
async fn serve_caller(
    shared: &Arc<Shared>,
    (address, caller): (String, SocketAddr),
    contract: ContractInfo,
    mut send: SendStream,
    recv: RecvStream,
) {
    let request = ChannelRequest {
        path: address.clone(),
        address,
        passthrough: Vec::new(),
        id: None,
        contract,
        headers: Default::default(),
        transport: "quic",
    };
    let started = Instant::now();
    if shared.is_multicast(&request.address) {
        if shared.draining() {
            shared.metrics.channel_refused(Transport::quic, OpenResult::shutting_down);
            return refuse(send, recv, ErrorCode::ShuttingDown, "relay is shutting down").await;
        }
        shared.metrics.channel_opened(Transport::quic, &request.address, started.elapsed());
        if write_frame(&mut send, &Reply::Accepted.encode()).await.is_ok() {
            multicast::publish(shared, &request, End::Quic(Pipe { send, recv })).await;
        }
        return;
    }
    // Boxed: routing's state is large, and the stream's task lives as long as the channel.
    let routed = Box::pin(route(shared, &request)).await;
    match &routed {
        Ok(_) => shared.metrics.channel_opened(Transport::quic, &request.address, started.elapsed()),
        Err(refusal) => shared.metrics.channel_refused(Transport::quic, refusal.open_result()),
    }
    match routed {
        Ok(opened) => {
            let span = channel_span(opened.channel_id, &request.address, request.transport);
            let served = async {
                // Counted before the caller hears of it: whoever it tells sees it on the status page.
                let _guard = ChannelGuard::new(shared, &request.address, opened.listener, caller);
                let open = Reply::Open { channel_id: opened.channel_id };
                if write_frame(&mut send, &open.encode()).await.is_err() {
                    return;
                }
                let caller = End::Quic(Pipe { send, recv });
                let failed = splice(caller, opened.end, opened.listener_dead, shared.splice_context()).await;
                tracing::debug!(?failed, "channel closed");
            };
            served.instrument(span).await
        }
        Err(refusal) => refuse(send, recv, refusal.code, &refusal.detail).await,
    }
}

#[cfg(test)]
mod tests;
