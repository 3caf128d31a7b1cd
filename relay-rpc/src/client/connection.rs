//! A caller's connection to a relay, carrying any number of channels.

use std::sync::Arc;

use crate::channel::Channel;
use crate::contract::ContractDescriptor;
use crate::error::{ConnectError, OpenError};
use crate::options::ConnectOptions;
use crate::proto::{self, ContractInfo, Hello, MAX_HANDSHAKE_FRAME, Reply, StreamCode};
use crate::transport::quic::{self, QuicLink, Role};
use crate::url::RelayUrl;

/// A caller's connection to a relay. Cheap to clone; every clone shares one QUIC connection,
/// and each channel opened on it is a stream of its own.
///
/// ```no_run
/// use relay_rpc::{ConnectOptions, Connection};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ConnectOptions::new().trust_pem_file("relay-data/cert.pem")?;
/// let relay = Connection::connect("quic://127.0.0.1:7443", options).await?;
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
    link: QuicLink,
    options: ConnectOptions,
}

impl Connection {
    /// Connects to the relay at `url` (`quic://host:port`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, ConnectError> {
        let url: RelayUrl = url.parse()?;
        let link = quic::dial(&url, &options, Role::Caller).await?;
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
        let options = &self.inner.options;
        let hello = Hello::Connect {
            address: address.to_owned(),
            token: options.token_for(&self.inner.url, address)?.map(|t| t.value().to_owned()),
            contract: contract.map(ContractInfo::from).unwrap_or_default(),
        };
        let handshake = async {
            let (mut send, mut recv) =
                self.inner.link.connection.open_bi().await.map_err(|e| lost(quic::connection_error(&e)))?;
            quic::write_frame(&mut send, &hello.encode()).await.map_err(lost)?;
            let body = quic::read_frame(&mut recv, MAX_HANDSHAKE_FRAME).await.map_err(lost)?;
            match Reply::decode(&body)? {
                Reply::Accepted => Ok((send, recv)),
                Reply::Refused(refusal) => Err(OpenError::from_refusal(address, refusal)),
            }
        };
        let (send, recv) =
            tokio::time::timeout(options.handshake_timeout, handshake).await.map_err(|_| OpenError::Timeout)??;
        tracing::trace!(address, "channel open");
        Ok(quic::channel(send, recv, options.max_frame, Arc::from(address), 0))
    }

    /// Closes the connection and every channel on it.
    pub fn close(&self) {
        self.inner.link.connection.close(StreamCode::Done.to_u64().try_into().unwrap_or_default(), b"closed");
    }
}

fn lost(e: crate::channel::ChannelError) -> OpenError {
    OpenError::ConnectionLost(e.to_string())
}
