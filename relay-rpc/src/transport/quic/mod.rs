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
use crate::tls;
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

/// Dials `url` and completes the QUIC and TLS handshake.
pub(crate) async fn dial(url: &RelayUrl, options: &ConnectOptions, role: Role) -> Result<QuicLink, ConnectError> {
    let remote = resolve(url).await?;
    let mut tls = tls::client_config(options.roots.clone(), &[relay_proto::ALPN])?;
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(options, role)));

    let bind: SocketAddr = if remote.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("literal address");
    let endpoint = io::bind_endpoint(bind, None).map_err(ConnectError::Socket)?;
    let connecting =
        endpoint.connect_with(config, remote, url.host()).map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let connection = tokio::time::timeout(options.handshake_timeout, connecting)
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    Ok(QuicLink { connection, incoming: StreamGrant::new(options.max_incoming_channels), _endpoint: endpoint })
}

async fn resolve(url: &RelayUrl) -> Result<SocketAddr, ConnectError> {
    let resolve_err = |source| ConnectError::Resolve { host: url.host().to_owned(), source };
    let mut addrs = tokio::net::lookup_host((url.host(), url.port())).await.map_err(resolve_err)?;
    addrs.next().ok_or_else(|| resolve_err(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))
}

fn transport_config(options: &ConnectOptions, role: Role) -> TransportConfig {
    let mut transport = TransportConfig::default();
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
    let handshake = async {
        let (mut send, mut recv) = link.connection.open_bi().await.map_err(|e| lost(connection_error(&e)))?;
        // The relay may answer before it has read the hello: a stream counts as opened at the
        // relay as soon as a later one is, so an open over the rate can be refused, and its
        // stream stopped, before this task has written a byte. The reply then says why.
        match write_frame(&mut send, &hello).await {
            Ok(()) | Err(ChannelError::Closed) => {}
            Err(e) => return Err(lost(e)),
        }
        let body = read_frame(&mut recv, MAX_HANDSHAKE_FRAME).await.map_err(lost)?;
        match Reply::decode(&body)? {
            Reply::Open { channel_id } => Ok((send, recv, channel_id)),
            // A relay that does not say the channel's id.
            Reply::Accepted => Ok((send, recv, 0)),
            Reply::Refused(refusal) => Err(OpenError::from_refusal(address, refusal)),
        }
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
