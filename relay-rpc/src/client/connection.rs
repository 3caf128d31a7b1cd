//! A caller's connection to a relay, carrying any number of channels.

use std::sync::Arc;

use crate::channel::Channel;
use crate::contract::ContractDescriptor;
use crate::error::{ConnectError, OpenError};
use crate::options::ConnectOptions;
use crate::replaceable::{Current, NotReplaced, Replaceable, Seen};
use crate::transport::{Link, Role};
use crate::url::RelayUrl;
use relay_proto as proto;
use relay_proto::error::chain;

/// A caller's connection to a relay. Cheap to clone; every clone shares one link.
///
/// Over `quic://` that is one QUIC connection and each channel is a stream of its own; over
/// `wss://` (Azure Relay's Hybrid Connections protocol) each channel is a WebSocket of its own.
///
/// A QUIC connection the relay ended (a restart, an idle timeout, a lost network) is made again
/// by the next [`open_channel`](Self::open_channel) that finds it gone, to the same URL with the
/// same options, within the handshake timeout: one open connects again, the others wait for it
/// and share the new connection (or its error). Channels open on the old connection stay ended.
/// A connection ended by [`close`](Self::close) stays closed.
///
/// ```no_run
/// use relay_rpc::{ConnectOptions, Connection};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ConnectOptions::new().trust_pem_file("relay-data/cert.pem")?;
/// let relay = Connection::connect("quic://127.0.0.1:7443", options).await?; // or "wss://127.0.0.1:7443"
/// // Typed: `CalculatorClient::connect(&relay, "calc").await?`; untyped:
/// let channel = relay.open_channel("calc", None).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: RelayUrl,
    options: ConnectOptions,
    /// The current link, made again when found lost; retired by `close`.
    link: Replaceable<Arc<Link>, OpenError>,
}

impl Connection {
    /// Connects to the relay at `url` (`quic://host:port`, `wss://host:port`, or unencrypted
    /// `ws://host:port`).
    ///
    /// Over QUIC, with a TLS session to resume from an earlier connection made with the same
    /// options (or their clones), it returns without waiting for the handshake: the first
    /// channel's hello goes out as 0-RTT data with it, and a handshake that fails shows as that
    /// open's error ([`OpenError::ConnectionLost`] or [`OpenError::Timeout`]).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, ConnectError> {
        let url: RelayUrl = url.parse()?;
        let link = Link::dial(&url, &options, Role::Caller).await?;
        tracing::debug!(relay = %url, "connected to relay");
        Ok(Self { inner: Arc::new(Inner { url, options, link: Replaceable::new(Arc::new(link)) }) })
    }

    /// Opens a channel to `address`, announcing `contract` (if any) to the listener. Connects to
    /// the relay again first if the connection was lost.
    pub async fn open_channel(
        &self,
        address: &str,
        contract: Option<&ContractDescriptor>,
    ) -> Result<Channel, OpenError> {
        proto::validate_address(address)?;
        let Inner { url, options, .. } = &*self.inner;
        let token = options.token_for(url, address)?;
        let link = self.link().await?;
        let channel = match link.open_channel(options, address, token.clone(), contract).await {
            // The connection ended during the open: once more, on a new one.
            Err(e) if link.ended() && !self.inner.link.is_retired() => {
                tracing::debug!(address, error = %e, "connection lost while opening a channel");
                self.link().await?.open_channel(options, address, token, contract).await?
            }
            opened => opened?,
        };
        tracing::debug!(channel = channel.id(), address, transport = channel.transport(), "channel open");
        Ok(channel)
    }

    /// Closes the connection and every channel on it, for good.
    pub fn close(&self) {
        if let Some(link) = self.inner.link.retire() {
            link.close();
        }
    }

    /// The link to open channels on: the current one, or a new one if it was lost.
    async fn link(&self) -> Result<Arc<Link>, OpenError> {
        match self.inner.link.get(|link| !link.ended()) {
            Current::Usable(_, link) => Ok(link),
            Current::Broken(seen) => self.redial(seen).await,
            Current::Retired => Err(closed()),
        }
    }

    /// Replaces the lost link with a new one to the relay, within the handshake timeout; or
    /// returns the link or the error of the redial another open made meanwhile.
    async fn redial(&self, seen: Seen) -> Result<Arc<Link>, OpenError> {
        let Inner { url, options, .. } = &*self.inner;
        let dial = || async {
            tracing::debug!(relay = %url, "connection lost; connecting again");
            let link = Link::dial(url, options, Role::Caller).await.map_err(redial_error)?;
            tracing::debug!(relay = %url, "connected to relay again");
            Ok(Arc::new(link))
        };
        let redial = self.inner.link.replace(seen, |link| !link.ended(), |_| true, dial);
        match tokio::time::timeout(options.handshake_timeout, redial).await {
            Ok(Ok((_, link))) => Ok(link),
            Ok(Err(NotReplaced::Failed(e))) => Err(e),
            Ok(Err(NotReplaced::Retired(made))) => {
                if let Some(link) = made {
                    link.close();
                }
                Err(closed())
            }
            Err(_) => Err(OpenError::Timeout),
        }
    }
}

/// The error of an open on a connection closed by [`Connection::close`].
fn closed() -> OpenError {
    OpenError::ConnectionLost("the connection was closed".into())
}

/// The error of an open whose connection was lost and could not be made again.
fn redial_error(e: ConnectError) -> OpenError {
    match e {
        ConnectError::Timeout => OpenError::Timeout,
        e => OpenError::ConnectionLost(format!("cannot connect to the relay again: {}", chain(&e))),
    }
}
