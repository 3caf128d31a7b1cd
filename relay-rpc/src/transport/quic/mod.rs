//! The QUIC transport: one connection to the relay, one bidirectional stream per channel.

mod frames;
pub(crate) mod host;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{
    ConnectionError, Endpoint, IdleTimeout, ReadError, RecvStream, SendStream, TransportConfig, VarInt, WriteError,
};

use frames::QuicFrames;
use relay_proto::grant::{OpenStream, StreamGrant};
use relay_proto::io::{self, FrameIoError};

use super::Role;
use crate::auth::Token;
use crate::channel::{Channel, ChannelError};
use crate::contract::ContractDescriptor;
use crate::error::{ConnectError, OpenError};
use crate::options::ConnectOptions;
use crate::url::RelayUrl;
use relay_proto::error::chain;
use relay_proto::{self, ContractInfo, Hello, MAX_HANDSHAKE_FRAME, Reply, StreamCode};

/// A QUIC connection to a relay, with the endpoint that drives it.
#[derive(Debug, Clone)]
pub(crate) struct QuicLink {
    pub(crate) connection: quinn::Connection,
    /// A host's count of its open incoming channels, at most `max_incoming_channels`: the
    /// streams its relay opens and the rendezvous it dials for other nodes' callers together.
    pub(crate) incoming: StreamGrant,
    /// Keeps the endpoint's driver alive as long as the connection is used.
    _endpoint: Endpoint,
}

impl QuicLink {
    /// Closes the connection and every stream on it.
    pub(crate) fn close(&self) {
        self.connection.close(code(StreamCode::Done), b"closed");
    }
}

pub(crate) use relay_proto::io::code;

/// Dials `url` and completes the QUIC and TLS handshake, or for a caller with a session to
/// resume, starts it and returns at once: the first channel's hello then goes out as 0-RTT data
/// with the handshake, and a handshake that fails shows as that open's error.
///
/// Why 0-RTT is safe here. Early data can be replayed by whoever records it, so only what may
/// happen twice goes in it:
/// - A caller sends nothing in it but its channels' `Connect` hellos; a call goes out after the
///   relay's answer, which comes under the full handshake's keys. A replayed hello can at most
///   open a channel that carries nothing.
/// - Hosts send no early data: a `Listen` replayed could take callers until its fake connection
///   failed, and a `Rendezvous` spends a one-time secret. The relay holds both until the
///   handshake is done anyway.
/// - The relay keeps its session tickets itself and takes each on use (rustls' stateful
///   resumption, which it requires for early data), so a recorded hello is refused when played
///   again to the same relay, and no other relay can read it.
pub(crate) async fn dial(url: &RelayUrl, options: &ConnectOptions, role: Role) -> Result<QuicLink, ConnectError> {
    dial_with(url, options, role, role == Role::Caller).await
}

/// Dials `url` as [`dial`] does, sending early data on a resumed session only if `early_data`.
pub(crate) async fn dial_with(
    url: &RelayUrl,
    options: &ConnectOptions,
    role: Role,
    early_data: bool,
) -> Result<QuicLink, ConnectError> {
    let remote = resolve(url).await?;
    let mut tls = options.quic_tls.for_relay(&url.authority(), &options.roots)?;
    if !early_data {
        // The same verifier and session store, so these sessions resume too.
        let mut without_early_data = (*tls).clone();
        without_early_data.enable_early_data = false;
        tls = Arc::new(without_early_data);
    }
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(options, role)));

    let bind: SocketAddr = if remote.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("literal address");
    let endpoint = io::bind_endpoint(bind, None).map_err(ConnectError::Socket)?;
    let connecting =
        endpoint.connect_with(config, remote, url.host()).map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let connection = match connecting.into_0rtt() {
        Ok((connection, accepted)) => {
            tokio::spawn(async move {
                let accepted = accepted.await;
                tracing::debug!(accepted, "resumed with early data");
            });
            connection
        }
        Err(connecting) => tokio::time::timeout(options.handshake_timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(|e| ConnectError::Handshake(e.to_string()))?,
    };
    Ok(QuicLink { connection, incoming: StreamGrant::new(options.max_incoming_channels), _endpoint: endpoint })
}

async fn resolve(url: &RelayUrl) -> Result<SocketAddr, ConnectError> {
    let resolve_err = |source| ConnectError::Resolve { host: url.host().to_owned(), source };
    let mut addrs = tokio::net::lookup_host((url.host(), url.port())).await.map_err(resolve_err)?;
    addrs.next().ok_or_else(|| resolve_err(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))
}

fn transport_config(options: &ConnectOptions, role: Role) -> TransportConfig {
    let mut transport = io::transport_config();
    transport.keep_alive_interval(Some(options.keep_alive));
    transport.max_idle_timeout(IdleTimeout::try_from(options.idle_timeout).ok());
    let incoming = match role {
        Role::Host => StreamGrant::initial(options.max_incoming_channels),
        Role::Caller => 0,
    };
    transport.max_concurrent_bidi_streams(VarInt::from_u32(incoming));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    transport
}

/// Opens a stream to `address`: sends the `Connect` hello, waits for the relay's (or the
/// listener's) reply, all within the handshake timeout.
pub(crate) async fn open_channel(
    link: &QuicLink,
    options: &ConnectOptions,
    address: &str,
    token: Option<Token>,
    contract: Option<&ContractDescriptor>,
) -> Result<Channel, OpenError> {
    // A `ListenerGone` reset during the handshake is about this channel alone: a listener that
    // accepted and left at once can have its relay's reset overtake the `Accepted`.
    let lost = |e: ChannelError| match e {
        ChannelError::ListenerGone => OpenError::NoListener { address: address.to_owned() },
        e => OpenError::ConnectionLost(chain(&e).to_string()),
    };
    let hello = Hello::Connect {
        address: address.to_owned(),
        token: token.map(|t| t.value().to_owned()),
        contract: contract.map(ContractInfo::from).unwrap_or_default(),
    };
    let hello = hello.encode();
    if hello.len() > relay_proto::MAX_HELLO_FRAME {
        return Err(OpenError::HelloTooLarge { len: hello.len(), max: relay_proto::MAX_HELLO_FRAME });
    }
    let attempt = || async {
        let (mut send, mut recv) = link.connection.open_bi().await.map_err(|e| lost(connection_error(&e)))?;
        // The relay may answer before it has read the hello: a stream counts as opened at the
        // relay as soon as a later one is, so an open over the rate can be refused, and its
        // stream stopped, before this task has written a byte. The reply then says why.
        match io::write_frame(&mut send, &hello).await {
            Ok(()) => {}
            Err(FrameIoError::ZeroRttRejected) => return Ok(None),
            // Stopped by the relay (a refusal that came first) reads as closed: the reply says why.
            Err(e) => match frame_error(e) {
                ChannelError::Closed => {}
                e => return Err(lost(e)),
            },
        }
        let body = match io::read_frame(&mut recv, MAX_HANDSHAKE_FRAME).await {
            Ok(body) => body,
            Err(FrameIoError::ZeroRttRejected) => return Ok(None),
            Err(e) => return Err(lost(frame_error(e))),
        };
        match Reply::decode(&body)? {
            Reply::Open { channel_id } => Ok(Some((send, recv, channel_id))),
            // A relay that does not say the channel's id.
            Reply::Accepted => Ok(Some((send, recv, 0))),
            Reply::Refused(refusal) => Err(OpenError::from_refusal(address, refusal)),
        }
    };
    let handshake = async {
        if let Some(opened) = attempt().await? {
            return Ok(opened);
        }
        // The hello went out as early data the relay did not take (it no longer knew the
        // session); the handshake is done now, so the second hello cannot be.
        tracing::debug!(address, "early data rejected; opening again");
        attempt().await?.ok_or_else(|| OpenError::ConnectionLost("early data rejected after the handshake".into()))
    };
    let (send, recv, id) =
        tokio::time::timeout(options.handshake_timeout, handshake).await.map_err(|_| OpenError::Timeout)??;
    Ok(channel(send, recv, options.max_frame, None, Arc::from(address), id))
}

/// Reads one length-prefixed handshake frame of at most `max` bytes.
pub(crate) async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, ChannelError> {
    io::read_frame(recv, max).await.map_err(frame_error)
}

/// Writes one length-prefixed handshake frame.
pub(crate) async fn write_frame(send: &mut SendStream, body: &[u8]) -> Result<(), ChannelError> {
    io::write_frame(send, body).await.map_err(frame_error)
}

/// Reads a handshake frame under a timeout; `None` when it passes first.
pub(crate) async fn read_frame_within(
    recv: &mut RecvStream,
    max: usize,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, ChannelError> {
    io::read_frame_within(recv, max, timeout).await.map_err(frame_error)
}

fn frame_error(e: FrameIoError) -> ChannelError {
    match e {
        FrameIoError::Closed => ChannelError::Closed,
        FrameIoError::Cut(code) => ChannelError::from_code(code),
        FrameIoError::ConnectionLost(e) => connection_error(&e),
        other => ChannelError::Protocol(other.to_string()),
    }
}

pub(crate) fn read_error(e: &ReadError) -> ChannelError {
    frame_error(FrameIoError::from(e.clone()))
}

pub(crate) fn write_error(e: &WriteError) -> ChannelError {
    frame_error(FrameIoError::from(e.clone()))
}

pub fn connection_error(e: &ConnectionError) -> ChannelError {
    match e {
        ConnectionError::ApplicationClosed(close)
            if StreamCode::from_u64(close.error_code.into_inner()) == StreamCode::RelayShutdown =>
        {
            ChannelError::RelayShutdown
        }
        other => ChannelError::ConnectionLost(other.to_string()),
    }
}

/// Turns a stream whose handshake is done into a channel.
pub(crate) fn channel(
    send: SendStream,
    recv: RecvStream,
    max_frame: usize,
    open: Option<OpenStream>,
    address: Arc<str>,
    id: u64,
) -> Channel {
    Channel::new(QuicFrames::new(send, recv, max_frame, open), address, id, "quic")
}
