//! A caller's connection to a relay, carrying any number of channels.

use std::sync::Arc;

use crate::channel::Channel;
use crate::contract::ContractDescriptor;
use crate::error::{ConnectError, OpenError};
use crate::options::ConnectOptions;
use crate::proto;
use crate::transport::{Link, Role};
use crate::url::RelayUrl;

/// A caller's connection to a relay. Cheap to clone; every clone shares one link.
///
/// Over `quic://` that is one QUIC connection and each channel is a stream of its own; over
/// `wss://` (Azure Relay's Hybrid Connections protocol) each channel is a WebSocket of its own.
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
    link: Link,
    options: ConnectOptions,
}

impl Connection {
    /// Connects to the relay at `url` (`quic://host:port`, `wss://host:port`, or unencrypted
    /// `ws://host:port`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, ConnectError> {
        let url: RelayUrl = url.parse()?;
        let link = Link::dial(&url, &options, Role::Caller).await?;
        tracing::debug!(relay = %url, "connected to relay");
        Ok(Self { inner: Arc::new(Inner { url, link, options }) })
    }

    /// Opens a channel to `address`, announcing `contract` (if any) to the listener.
    pub async fn open_channel(
        &self,
        address: &str,
        contract: Option<&ContractDescriptor>,
    ) -> Result<Channel, OpenError> {
        proto::validate_address(address)?;
        let Inner { url, link, options } = &*self.inner;
        let token = options.token_for(url, address)?;
        let channel = link.open_channel(options, address, token, contract).await?;
        tracing::trace!(address, "channel open");
        Ok(channel)
    }

    /// Closes the connection and every channel on it.
    pub fn close(&self) {
        self.inner.link.close();
    }
}
