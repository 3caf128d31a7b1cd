//! The QUIC endpoint: accepts hosts and callers, registers listeners, routes and splices channels.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};
use std::time::{Duration, Instant};

use relay_rpc::__wire::{OpenStream, StreamGrant, read_frame, read_frame_within, write_frame};
use relay_rpc::auth::{Right, unix_now};
use relay_rpc::proto::{self, ContractInfo, Control, ErrorCode, Hello, MAX_HANDSHAKE_FRAME, Reply, StreamCode};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::certs::Identity;
use crate::config::Config;
use crate::limits::{HandshakePermit, TokenBucket};
use crate::multicast;
use crate::router::{ChannelRequest, ListenerHandle, route};
use crate::splice::{End, Pipe, cut, splice};
use crate::state::{ChannelGuard, Phase, Shared};

/// Why the QUIC endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The TLS configuration was refused.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// QUIC refused the TLS configuration.
    #[error("quic tls: {0}")]
    QuicTls(String),
    /// The socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
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
    let tls = crate::tls::server_config(identity, proto::ALPN, true)?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::QuicTls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(config)));
    relay_rpc::__wire::bind_endpoint(config.quic_listen, Some(server))
        .map_err(|source| EndpointError::Bind { addr: config.quic_listen, source })
}

fn transport_config(config: &Config) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_millis(config.keep_alive_ms)));
    transport.max_idle_timeout(IdleTimeout::try_from(std::time::Duration::from_millis(config.idle_timeout_ms)).ok());
    transport.max_concurrent_bidi_streams(VarInt::from_u32(StreamGrant::initial(config.max_channels_per_connection)));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    transport.stream_receive_window(VarInt::from_u32(config.stream_window_bytes));
    transport
}

/// Accepts connections until the relay drains; then waits for open ones until it closes.
pub(crate) async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => match HandshakePermit::try_new(&shared, incoming.remote_address().ip()) {
                    Some(permit) => { connections.spawn(serve_connection(shared.clone(), incoming, permit)); }
                    None => incoming.refuse(),
                },
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

/// Closes every QUIC connection with [`StreamCode::RelayShutdown`].
pub(crate) fn close(endpoint: &Endpoint) {
    endpoint.close(VarInt::from_u64(StreamCode::RelayShutdown.to_u64()).unwrap_or_default(), b"relay shutting down");
}

async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming, permit: HandshakePermit) {
    let remote = incoming.remote_address();
    let connection = match tokio::time::timeout(shared.config.handshake_timeout(), incoming).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return tracing::debug!(%remote, error = %e, "handshake failed"),
        Err(_) => return tracing::debug!(%remote, "handshake timed out"),
    };
    drop(permit);
    let span = tracing::debug_span!("connection", %remote, id = connection.stable_id());
    async move {
        tracing::debug!("connected");
        let mut streams = JoinSet::new();
        let mut opens = TokenBucket::for_caller(&shared.config, Instant::now());
        let mut grant = StreamGrant::new(shared.config.max_channels_per_connection);
        loop {
            tokio::select! {
                accepted = connection.accept_bi() => match accepted {
                    Ok((send, recv)) if !opens.try_take(Instant::now()) => {
                        tracing::debug!("channel opens over the rate; refusing");
                        streams.spawn(refuse(send, recv, ErrorCode::RateLimited, "too many channel opens"));
                    }
                    Ok((send, recv)) => match grant.opened(&connection) {
                        Some(open) => {
                            streams.spawn(serve_stream(shared.clone(), connection.clone(), send, recv, open));
                        }
                        None => {
                            tracing::debug!("channels over the connection's limit; refusing");
                            let detail = "too many channels open on this connection";
                            streams.spawn(refuse(send, recv, ErrorCode::Busy, detail));
                        }
                    },
                    Err(e) => { tracing::debug!(reason = %e, "disconnected"); break; }
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
            }
        }
        // Every stream of a closed connection fails at once; let each task clean up its side.
        while streams.join_next().await.is_some() {}
    }
    .instrument(span)
    .await
}

/// Serves one stream a peer opened; `_open` counts it in the connection's stream grant.
async fn serve_stream(
    shared: Arc<Shared>,
    connection: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    _open: OpenStream,
) {
    let hello = match read_frame_within(&mut recv, MAX_HANDSHAKE_FRAME, shared.config.handshake_timeout()).await {
        Ok(Some(body)) => match Hello::decode(&body) {
            Ok(hello) => hello,
            Err(e) => return refuse(send, recv, ErrorCode::BadRequest, &e.to_string()).await,
        },
        Ok(None) => {
            tracing::debug!("stream handshake timed out");
            return cut(&mut send, &mut recv, StreamCode::HandshakeTimeout);
        }
        Err(e) => {
            tracing::debug!(error = %e, "bad stream handshake");
            return cut(&mut send, &mut recv, StreamCode::ProtocolError);
        }
    };
    match hello {
        Hello::Listen { address, token } => {
            match shared.policy.authorize(token.as_deref(), Right::Listen, &address, unix_now()) {
                Ok(expiry) => serve_listener(&shared, connection, address, expiry, send, recv).await,
                Err(denied) => refuse(send, recv, ErrorCode::Auth(denied.reason), &denied.detail).await,
            }
        }
        Hello::Connect { address, token, contract } => {
            match shared.policy.authorize(token.as_deref(), Right::Send, &address, unix_now()) {
                Ok(_) => serve_caller(&shared, address, contract, send, recv).await,
                Err(denied) => refuse(send, recv, ErrorCode::Auth(denied.reason), &denied.detail).await,
            }
        }
        _ => refuse(send, recv, ErrorCode::BadRequest, "unsupported hello").await,
    }
}

/// Writes a refusal and ends the stream.
async fn refuse(mut send: SendStream, _recv: RecvStream, code: ErrorCode, detail: &str) {
    tracing::debug!(?code, detail, "refused");
    if write_frame(&mut send, &Reply::refused(code, detail).encode()).await.is_ok() {
        let _ = send.finish();
        // Wait for the refusal to be delivered before the stream is dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send.stopped()).await;
    }
}

/// Registers a listener for as long as its control stream stays open and its token is valid.
async fn serve_listener(
    shared: &Shared,
    connection: Connection,
    address: String,
    expiry: Option<u64>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    if shared.draining() {
        return refuse(send, recv, ErrorCode::ShuttingDown, "relay is shutting down").await;
    }
    let registered = shared.registry().register(&address, ListenerHandle::Quic(connection));
    let id = match registered {
        Ok(id) => id,
        Err(e) => return refuse(send, recv, ErrorCode::Busy, &e.to_string()).await,
    };
    shared.listener_registered();
    if write_frame(&mut send, &Reply::Accepted.encode()).await.is_ok() {
        tracing::info!(%address, listener = id, "listener registered");
        let ended = hold_registration(shared, &address, expiry, &mut send, &mut recv).await;
        if let Some(code) = ended {
            cut(&mut send, &mut recv, code);
        }
    }
    shared.registry().unregister(&address, id);
    tracing::info!(%address, listener = id, "listener left");
}

/// Serves a listener's control stream until the host ends it or its token lapses; renewals
/// move the expiry. When the relay starts draining, tells the host to go elsewhere (its open
/// channels run on). Returns the code to cut the stream with, if the relay ends it.
async fn hold_registration(
    shared: &Shared,
    address: &str,
    mut expiry: Option<u64>,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Option<StreamCode> {
    let mut told_to_go = false;
    loop {
        let lapse = crate::auth::until_lapse(expiry);
        let frame = tokio::select! {
            frame = read_frame(recv, MAX_HANDSHAKE_FRAME) => frame,
            () = shared.reached(Phase::Draining), if !told_to_go => {
                told_to_go = true;
                tracing::debug!(%address, "telling the listener to go elsewhere");
                let _ = write_frame(send, &Control::GoAway.encode()).await;
                continue;
            }
            () = tokio::time::sleep(lapse.unwrap_or(Duration::MAX)), if lapse.is_some() => {
                tracing::info!(%address, "listener token expired");
                return Some(StreamCode::TokenExpired);
            }
        };
        let Ok(frame) = frame else { return None };
        match Control::decode(&frame) {
            Ok(Control::RenewToken { token }) => {
                match shared.policy.authorize(Some(&token), Right::Listen, address, unix_now()) {
                    Ok(renewed) => expiry = renewed,
                    Err(denied) => {
                        tracing::info!(%address, reason = %denied.reason, "renewed token refused");
                        return Some(StreamCode::Unauthorized);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%address, error = %e, "bad control message");
                return Some(StreamCode::ProtocolError);
            }
        }
    }
}

/// Routes a caller's channel to a listener on any transport, answers, and splices.
async fn serve_caller(
    shared: &Arc<Shared>,
    address: String,
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
    };
    if shared.is_multicast(&request.address) {
        if shared.draining() {
            return refuse(send, recv, ErrorCode::ShuttingDown, "relay is shutting down").await;
        }
        if write_frame(&mut send, &Reply::Accepted.encode()).await.is_ok() {
            multicast::publish(shared, &request, End::Quic(Pipe { send, recv })).await;
        }
        return;
    }
    match route(shared, &request).await {
        Ok(opened) => {
            if write_frame(&mut send, &Reply::Accepted.encode()).await.is_err() {
                return;
            }
            let _guard = ChannelGuard::new(shared, &request.address, opened.listener);
            let failed = splice(End::Quic(Pipe { send, recv }), opened.end, opened.listener_dead, shared).await;
            tracing::debug!(?failed, "channel closed");
        }
        Err(refusal) => refuse(send, recv, refusal.code, &refusal.detail).await,
    }
}
