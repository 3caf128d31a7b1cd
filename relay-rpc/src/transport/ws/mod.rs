//! The WebSocket transport: Azure Relay's Hybrid Connections protocol, as a client.
//!
//! A listener holds a control WebSocket (`/$hc/{address}?sb-hc-action=listen`) on which the relay
//! sends `accept` notifications; for each, the host opens a rendezvous WebSocket to the URL given
//! (or rejects by opening it with a status appended). A sender's channel is one WebSocket
//! (`sb-hc-action=connect`) that the relay answers once a listener accepted. Every WebSocket
//! binary message is one channel frame.
//!
//! - `target`, `codes`: sans-IO: URLs, and what statuses and close codes mean;
//! - `handshake`: the HTTP upgrade, keeping a refusal's description;
//! - `stream`: TCP or TLS underneath; `frames`: a channel over a WebSocket (a
//!   [`relay_proto::io::ws::WsConnection`], as the relay's channel ends are);
//! - `control`: a listener's control channel (over tungstenite: a few small JSON messages):
//!   accepts, token renewal, keep-alive.

mod codes;
mod control;
mod frames;
mod handshake;
mod stream;
mod target;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use self::frames::{FrameLimits, WsFrames};
use self::handshake::{HandshakeError, Upgrade};
use self::stream::{Heard, MaybeTls};
use self::target::Endpoint;
use super::{Renewal, Role};
use crate::auth::{ProvideError, Token};
use crate::channel::{Channel, ChannelError};
use crate::contract::ContractDescriptor;
use crate::error::{ConnectError, ListenError, OpenError};
use crate::options::ConnectOptions;
use crate::tls;
use crate::transport::IncomingChannel;
use crate::url::{RelayUrl, Scheme};
use relay_proto::error::chain;
use relay_proto::hc::{CONTRACT_HEADER, TOKEN_HEADER};
use relay_proto::io::ws::{Side, WsConnection};
use relay_proto::{ContractInfo, ErrorCode, MAX_HANDSHAKE_FRAME};

pub(crate) use control::WsRegistration;

/// Bytes the control WebSocket reads at a time: tungstenite zero-fills this much before every
/// read and keeps it for the socket's life, and control messages are small.
const CONTROL_READ_BUFFER: usize = 1024;

/// A listener's control WebSocket to the relay.
type ControlStream = WebSocketStream<Heard<MaybeTls>>;

/// The ALPN protocol offered on TLS connections for WebSockets.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How long a goodbye (a close frame, a TLS close) may take before the socket is dropped.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// A link to a relay over WebSocket: what it takes to open WebSockets to it, and a token that
/// closes everything opened through it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct WsLink {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    relay: RelayUrl,
    /// `None` for a `ws://` relay without trusted certificates.
    tls: Option<TlsConnector>,
    options: ConnectOptions,
    /// Cancelled by `close`: every registration and channel of this link ends.
    closed: CancellationToken,
    /// A host's slots for open incoming channels (`max_incoming_channels`).
    incoming: Arc<Semaphore>,
}

impl fmt::Debug for WsLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsLink")
            .field("relay", &self.inner.relay)
            .field("closed", &self.inner.closed.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Why a WebSocket to the relay could not be opened.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot resolve {host}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot reach {0}")]
    Connect(String, #[source] io::Error),
    #[error("tls handshake with {0} failed")]
    Tls(String, #[source] io::Error),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("timed out")]
    Timeout,
    #[error("closed locally")]
    Closed,
}

impl WsLink {
    /// Makes the link and proves the relay reachable and trusted with a TCP (and TLS) handshake,
    /// as a QUIC handshake would; registrations and channels then open their own WebSockets.
    pub(crate) async fn dial(url: &RelayUrl, options: &ConnectOptions, role: Role) -> Result<Self, ConnectError> {
        let tls = match url.scheme() {
            Scheme::Ws => tls::client_config(options.roots.clone(), &[ALPN_HTTP1]).ok(),
            _ => Some(tls::client_config(options.roots.clone(), &[ALPN_HTTP1])?),
        };
        let slots = match role {
            Role::Host => (options.max_incoming_channels as usize).min(Semaphore::MAX_PERMITS),
            Role::Caller => 0,
        };
        let link = Self {
            inner: Arc::new(LinkInner {
                relay: url.clone(),
                tls: tls.map(|config| TlsConnector::from(Arc::new(config))),
                options: options.clone(),
                closed: CancellationToken::new(),
                incoming: Arc::new(Semaphore::new(slots)),
            }),
        };
        let relay = Endpoint::on_relay(url, "/".into());
        match tokio::time::timeout(options.handshake_timeout, link.stream(&relay)).await {
            Err(_) => Err(ConnectError::Timeout),
            Ok(Err(DialError::Resolve { host, source })) => Err(ConnectError::Resolve { host, source }),
            Ok(Err(e)) => Err(ConnectError::Handshake(chain(&e).to_string())),
            Ok(Ok(mut stream)) => {
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, stream.shutdown()).await;
                Ok(link)
            }
        }
    }

    /// Closes every registration and channel opened through this link.
    pub(crate) fn close(&self) {
        self.inner.closed.cancel();
    }

    fn options(&self) -> &ConnectOptions {
        &self.inner.options
    }

    /// Whether the relay is reached over TLS; then rendezvous must be too.
    fn is_tls(&self) -> bool {
        self.inner.relay.scheme() == Scheme::Wss
    }

    /// A TCP connection to `endpoint`, with TLS if it asks for it.
    async fn stream(&self, endpoint: &Endpoint) -> Result<MaybeTls, DialError> {
        let host = endpoint.host.as_str();
        let resolve = |source| DialError::Resolve { host: host.to_owned(), source };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for addr in tokio::net::lookup_host((host, endpoint.port)).await.map_err(resolve)? {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| DialError::Connect(endpoint.authority(), last))?;
        let _ = tcp.set_nodelay(true);
        if !endpoint.tls {
            return Ok(MaybeTls::Plain(tcp));
        }
        let tls_err = |e: io::Error| DialError::Tls(endpoint.authority(), e);
        let connector = self.inner.tls.as_ref().ok_or_else(|| {
            tls_err(io::Error::new(io::ErrorKind::InvalidInput, crate::TlsError::NoTrustAnchors.to_string()))
        })?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| tls_err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))?;
        let tls = connector.connect(name, tcp).await.map_err(tls_err)?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }

    /// Opens a WebSocket to `endpoint` within the handshake timeout.
    async fn upgrade(
        &self,
        endpoint: &Endpoint,
        headers: &[(&str, &str)],
    ) -> Result<Upgrade<Heard<MaybeTls>>, DialError> {
        let attempt = async {
            let stream = self.stream(endpoint).await?;
            Ok(handshake::upgrade(Heard::new(stream), endpoint, headers).await?)
        };
        tokio::select! {
            upgraded = tokio::time::timeout(self.options().handshake_timeout, attempt) => {
                upgraded.map_err(|_| DialError::Timeout)?
            }
            _ = self.inner.closed.cancelled() => Err(DialError::Closed),
        }
    }

    /// A channel's frames on an accepted WebSocket.
    fn frames(
        &self,
        stream: Heard<MaybeTls>,
        leftover: &[u8],
        role: Role,
        permit: Option<OwnedSemaphorePermit>,
    ) -> WsFrames<MaybeTls> {
        let options = self.options();
        let limits = FrameLimits {
            max_frame: options.max_frame,
            keep_alive: options.keep_alive,
            idle_timeout: options.idle_timeout,
        };
        let ws = WsConnection::new(stream, Side::Client, leftover, options.max_frame);
        WsFrames::new(ws, role, limits, self.inner.closed.clone(), permit)
    }

    /// Opens a sender's WebSocket to `address`; the relay answers once a listener accepted.
    pub(crate) async fn open_channel(
        &self,
        address: &str,
        token: Option<Token>,
        contract: Option<&ContractDescriptor>,
    ) -> Result<Channel, OpenError> {
        let endpoint = Endpoint::on_relay(&self.inner.relay, target::connect_target(address));
        let contract = contract.map(|c| ContractInfo::from(c).to_header());
        let mut headers = Vec::new();
        headers.extend(token.as_ref().map(|t| (TOKEN_HEADER, t.value())));
        headers.extend(contract.as_deref().map(|c| (CONTRACT_HEADER, c)));
        match self.upgrade(&endpoint, &headers).await {
            Ok(Upgrade::Accepted { stream, leftover, channel_id }) => {
                let scheme = self.inner.relay.scheme().as_str();
                let frames = self.frames(stream, &leftover, Role::Caller, None);
                Ok(Channel::new(frames, Arc::from(address), channel_id.unwrap_or(0), scheme))
            }
            Ok(Upgrade::Refused { status, description }) => {
                Err(OpenError::from_refusal(address, codes::refusal(status, &description)))
            }
            Err(DialError::Timeout) => Err(OpenError::Timeout),
            Err(e @ DialError::Handshake(HandshakeError::BadHeader(_))) => Err(ProvideError(e.to_string()).into()),
            Err(e) => Err(OpenError::ConnectionLost(chain(&e).to_string())),
        }
    }

    /// Opens a listener's control WebSocket on `address` and starts serving it.
    pub(crate) async fn listen(
        &self,
        address: &str,
        token: Option<Token>,
        takes_http: bool,
        renewal: Renewal,
        queue: mpsc::Sender<IncomingChannel>,
    ) -> Result<WsRegistration, ListenError> {
        let endpoint = Endpoint::on_relay(&self.inner.relay, target::listen_target(address));
        let mut headers: Vec<_> = token.as_ref().map(|t| (TOKEN_HEADER, t.value())).into_iter().collect();
        if takes_http {
            headers.push((relay_proto::http_channel::TAKES_HTTP_HEADER, "1"));
        }
        match self.upgrade(&endpoint, &headers).await {
            Ok(Upgrade::Accepted { stream, leftover, .. }) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(CONTROL_READ_BUFFER)
                    .max_message_size(Some(MAX_HANDSHAKE_FRAME))
                    .max_frame_size(Some(MAX_HANDSHAKE_FRAME));
                let ws = WebSocketStream::from_partially_read(stream, leftover, WsRole::Client, Some(config)).await;
                Ok(control::spawn(self.clone(), address, ws, renewal, queue))
            }
            Ok(Upgrade::Refused { status, description }) => {
                let refusal = codes::refusal(status, &description);
                Err(match refusal.code {
                    ErrorCode::Auth(reason) => ListenError::Unauthorized { reason, detail: refusal.detail },
                    code => ListenError::Refused { code, detail: refusal.detail },
                })
            }
            Err(DialError::Timeout) => Err(ListenError::Timeout),
            Err(e @ DialError::Handshake(HandshakeError::BadHeader(_))) => Err(ProvideError(e.to_string()).into()),
            Err(e) => Err(ListenError::ConnectionLost(chain(&e).to_string())),
        }
    }
}

/// A sender waiting at a host: the rendezvous URL the relay gave to accept or reject it on.
/// `Debug` leaves the URL out: its one-time secret admits whoever holds it.
pub(crate) struct WsPending {
    link: WsLink,
    rendezvous: String,
    endpoint: Endpoint,
    permit: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for WsPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsPending").field("rendezvous", &self.endpoint.authority()).finish_non_exhaustive()
    }
}

impl WsPending {
    /// `wss` or `ws`, as the channel will say.
    pub(crate) fn transport(&self) -> &'static str {
        self.link.inner.relay.scheme().as_str()
    }

    /// Opens the rendezvous WebSocket: the relay joins it to the sender's.
    pub(crate) async fn accept(self, address: Arc<str>, id: u64) -> Result<Channel, ChannelError> {
        match self.link.upgrade(&self.endpoint, &[]).await {
            Ok(Upgrade::Accepted { stream, leftover, .. }) => {
                let scheme = self.transport();
                Ok(Channel::new(self.link.frames(stream, &leftover, Role::Host, self.permit), address, id, scheme))
            }
            Ok(Upgrade::Refused { status, description }) => Err(codes::rendezvous_refused(status, &description)),
            Err(e) => Err(ChannelError::ConnectionLost(format!("cannot open the rendezvous: {}", chain(&e)))),
        }
    }

    /// Opens the rendezvous with a status: the relay refuses the sender with it and answers
    /// `410 Gone`.
    pub(crate) async fn reject(self, code: ErrorCode, detail: &str) -> Result<(), ChannelError> {
        let url = target::reject_url(&self.rendezvous, code, detail);
        let endpoint = Endpoint::parse(&url).map_err(ChannelError::Protocol)?;
        match self.link.upgrade(&endpoint, &[]).await {
            Ok(Upgrade::Refused { .. }) => Ok(()),
            // A relay that opened it anyway: the sender is refused all the same when it closes.
            Ok(Upgrade::Accepted { stream, leftover, .. }) => {
                let mut ws = WsConnection::new(stream, Side::Client, &leftover, MAX_HANDSHAKE_FRAME);
                ws.queue_close(None);
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, std::future::poll_fn(|cx| ws.poll_flush(cx))).await;
                Ok(())
            }
            Err(e) => Err(ChannelError::ConnectionLost(format!("cannot deliver the refusal: {}", chain(&e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_leave_their_causes_to_the_chain() {
        let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let reach = DialError::Connect("relay.example:443".into(), refused());
        assert_eq!(reach.to_string(), "cannot reach relay.example:443");
        assert_eq!(chain(&reach).to_string(), "cannot reach relay.example:443: connection refused");
        let tls = DialError::Tls("relay.example:443".into(), io::Error::other("unknown issuer"));
        assert_eq!(chain(&tls).to_string(), "tls handshake with relay.example:443 failed: unknown issuer");
        let resolve = DialError::Resolve { host: "relay.invalid".into(), source: io::Error::other("no such host") };
        assert_eq!(chain(&resolve).to_string(), "cannot resolve relay.invalid: no such host");
        let io = DialError::Handshake(HandshakeError::Io(refused()));
        assert_eq!(chain(&io).to_string(), "connection refused", "transparent: said once");
    }
}
