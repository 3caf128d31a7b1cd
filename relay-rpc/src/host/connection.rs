//! A host's single outbound connection to a relay, and the task that routes incoming channels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::incoming::IncomingChannel;
use super::listener::Listener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::{Token, TokenProvider};
use crate::error::{ConnectError, ListenError};
use crate::options::ConnectOptions;
use crate::proto::{self, Control, ErrorCode, Hello, Incoming, MAX_HANDSHAKE_FRAME, Reply, StreamCode};
use crate::transport::quic::{self, QuicLink, Role};
use crate::url::RelayUrl;

/// How many accepted-but-not-yet-taken channels a listener queues before refusing new ones.
const LISTENER_QUEUE: usize = 128;

pub(crate) type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<IncomingChannel>>>>;

/// A host's connection to a relay. Listen on any number of addresses over it; the relay opens
/// one stream per caller channel on this one outbound connection.
///
/// ```no_run
/// use relay_rpc::{ConnectOptions, Host};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ConnectOptions::new().trust_pem_file("relay-data/cert.pem")?;
/// let host = Host::connect("quic://127.0.0.1:7443", options).await?;
/// let listener = host.listen("calc").await?;
/// // listener.serve(ServeCalculator::new(MyCalculator)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

#[derive(Debug)]
pub(crate) struct HostInner {
    url: RelayUrl,
    pub(crate) link: QuicLink,
    pub(crate) options: ConnectOptions,
    pub(crate) routes: Routes,
    router: JoinHandle<()>,
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.router.abort();
        self.link.connection.close(code(StreamCode::Done), b"host closed");
    }
}

impl Host {
    /// Connects to the relay at `url` (`quic://host:port`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, ConnectError> {
        let url: RelayUrl = url.parse()?;
        let link = quic::dial(&url, &options, Role::Host).await?;
        tracing::debug!(relay = %url, "host connected to relay");
        let routes = Routes::default();
        let router = tokio::spawn(route_incoming(link.connection.clone(), routes.clone(), options.clone()));
        Ok(Self { inner: Arc::new(HostInner { url, link, options, routes, router }) })
    }

    /// Registers on `address`; callers' channels to it arrive on the returned [`Listener`].
    pub async fn listen(&self, address: &str) -> Result<Listener, ListenError> {
        proto::validate_address(address)?;
        let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
        {
            let mut routes = self.inner.routes.lock().unwrap_or_else(PoisonError::into_inner);
            if routes.contains_key(address) {
                return Err(ListenError::AlreadyListening(address.to_owned()));
            }
            routes.insert(address.to_owned(), tx);
        }
        match self.register(address).await {
            Ok((send, recv, token)) => {
                let renewal = tokio::spawn(renew_token(
                    send,
                    self.inner.options.tokens.clone(),
                    format!("{}/{address}", self.inner.url),
                    token.map(|t| t.expires_at()),
                ));
                Ok(Listener::new(self.clone(), address.to_owned(), rx, renewal, recv))
            }
            Err(e) => {
                self.inner.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(address);
                Err(e)
            }
        }
    }

    async fn register(
        &self,
        address: &str,
    ) -> Result<(quinn::SendStream, quinn::RecvStream, Option<Token>), ListenError> {
        let options = &self.inner.options;
        let token = options.token_for(&self.inner.url, address)?;
        let hello = Hello::Listen { address: address.to_owned(), token: token.as_ref().map(|t| t.value().to_owned()) };
        let handshake = async {
            let lost = |e: crate::ChannelError| ListenError::ConnectionLost(e.to_string());
            let (mut send, mut recv) =
                self.inner.link.connection.open_bi().await.map_err(|e| lost(quic::connection_error(&e)))?;
            quic::write_frame(&mut send, &hello.encode()).await.map_err(lost)?;
            let body = quic::read_frame(&mut recv, MAX_HANDSHAKE_FRAME).await.map_err(lost)?;
            match Reply::decode(&body)? {
                Reply::Accepted => Ok((send, recv, token.clone())),
                Reply::Refused(r) => match r.code {
                    ErrorCode::Auth(reason) => Err(ListenError::Unauthorized { reason, detail: r.detail }),
                    code => Err(ListenError::Refused { code, detail: r.detail }),
                },
            }
        };
        let registered =
            tokio::time::timeout(options.handshake_timeout, handshake).await.map_err(|_| ListenError::Timeout)??;
        tracing::debug!(address, "listening");
        Ok(registered)
    }

    /// Closes the connection: every listener and channel of this host ends.
    pub fn close(&self) {
        self.inner.link.connection.close(code(StreamCode::Done), b"host closed");
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        self.inner.link.connection.close_reason().map(|e| quic::connection_error(&e).to_string())
    }
}

pub(crate) fn code(code: StreamCode) -> quinn::VarInt {
    quinn::VarInt::from_u64(code.to_u64()).unwrap_or_default()
}

/// Owns a listener's control stream and renews its token over it before it expires. Holding the
/// stream keeps the registration; dropping it (when the listener drops and aborts this task)
/// ends the registration.
async fn renew_token(
    mut control: quinn::SendStream,
    provider: Option<Arc<dyn TokenProvider>>,
    resource: String,
    mut expires_at: Option<u64>,
) {
    while let (Some(provider), Some(expiry)) = (&provider, expires_at) {
        let remaining =
            (UNIX_EPOCH + Duration::from_secs(expiry)).duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(remaining * 2 / 3).await;
        match provider.token(&resource) {
            Ok(token) if token.expires_at() > expiry => {
                let renew = Control::RenewToken { token: token.value().to_owned() };
                if quic::write_frame(&mut control, &renew.encode()).await.is_err() {
                    break;
                }
                tracing::debug!(%resource, expires_at = token.expires_at(), "token renewed");
                expires_at = Some(token.expires_at());
            }
            // A fixed token cannot be renewed: the relay ends the registration when it expires.
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(%resource, error = %e, "cannot renew the token; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    std::future::pending::<()>().await;
}

/// Accepts the streams the relay opens, reads each one's [`Incoming`] header and hands it to the
/// listener registered on its address. Ends when the connection does, dropping every route so
/// that listeners learn of it.
async fn route_incoming(connection: quinn::Connection, routes: Routes, options: ConnectOptions) {
    loop {
        let (send, mut recv) = match connection.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(error = %e, "host connection ended");
                break;
            }
        };
        let header = match quic::read_frame_within(&mut recv, MAX_HANDSHAKE_FRAME, options.handshake_timeout).await {
            Ok(Some(body)) => Incoming::decode(&body).map_err(|e| e.to_string()),
            Ok(None) => Err("timed out reading the channel header".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        let incoming = match header {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::warn!(error = %e, "relay sent a bad channel header");
                let _ = recv.stop(code(StreamCode::ProtocolError));
                continue;
            }
        };
        let route = routes.lock().unwrap_or_else(PoisonError::into_inner).get(&incoming.address).cloned();
        let channel = IncomingChannel::new(incoming, send, recv, options.max_frame);
        match route {
            None => channel.reject_in_background(ErrorCode::NoListener, "not listening on this address"),
            Some(route) => match route.try_send(channel) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(channel)) => {
                    channel.reject_in_background(ErrorCode::Busy, "listener is busy")
                }
                Err(mpsc::error::TrySendError::Closed(channel)) => {
                    channel.reject_in_background(ErrorCode::NoListener, "listener closed")
                }
            },
        }
    }
    routes.lock().unwrap_or_else(PoisonError::into_inner).clear();
}
