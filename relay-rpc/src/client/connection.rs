//! A caller's connection to a relay, carrying any number of channels.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::channel::Channel;
use crate::contract::ContractDescriptor;
use crate::error::{ConnectError, OpenError};
use crate::options::ConnectOptions;
use crate::transport::{Link, Role};
use crate::url::RelayUrl;
use relay_proto as proto;

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
    /// Never held across an await.
    state: Mutex<State>,
    /// Held while connecting again, so that only one open does.
    redialing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// The current link; replaced when it is found lost.
    link: Arc<Link>,
    /// Set by `close`: the link is never replaced again.
    closed: bool,
    /// Counts failed redials, so that opens that waited for one get its error.
    failures: u64,
    /// The error the last failed redial gave.
    last_failure: Option<OpenError>,
}

impl Connection {
    /// Connects to the relay at `url` (`quic://host:port`, `wss://host:port`, or unencrypted
    /// `ws://host:port`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, ConnectError> {
        let url: RelayUrl = url.parse()?;
        let link = Link::dial(&url, &options, Role::Caller).await?;
        tracing::debug!(relay = %url, "connected to relay");
        let state = State { link: Arc::new(link), closed: false, failures: 0, last_failure: None };
        Ok(Self { inner: Arc::new(Inner { url, options, state: Mutex::new(state), redialing: Default::default() }) })
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
            Err(e) if link.ended() && !self.state().closed => {
                tracing::debug!(address, error = %e, "connection lost while opening a channel");
                self.redial(&link).await?.open_channel(options, address, token, contract).await?
            }
            opened => opened?,
        };
        tracing::trace!(address, "channel open");
        Ok(channel)
    }

    /// Closes the connection and every channel on it, for good.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.link.close();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The link to open channels on: the current one, or a new one if it was lost.
    async fn link(&self) -> Result<Arc<Link>, OpenError> {
        let lost = {
            let state = self.state();
            if state.closed || !state.link.ended() {
                return Ok(state.link.clone());
            }
            state.link.clone()
        };
        self.redial(&lost).await
    }

    /// Replaces `lost` with a new link to the relay, within the handshake timeout; or returns the
    /// link or the error of the redial another open made meanwhile.
    async fn redial(&self, lost: &Arc<Link>) -> Result<Arc<Link>, OpenError> {
        let Inner { url, options, .. } = &*self.inner;
        let failures = self.state().failures;
        let redial = async {
            let _redialing = self.inner.redialing.lock().await;
            {
                let state = self.state();
                if state.closed {
                    return Err(closed());
                }
                if !Arc::ptr_eq(&state.link, lost) {
                    return Ok(state.link.clone());
                }
                if state.failures != failures
                    && let Some(e) = &state.last_failure
                {
                    return Err(e.clone());
                }
            }
            tracing::debug!(relay = %url, "connection lost; connecting again");
            let dialed = Link::dial(url, options, Role::Caller).await;
            let mut state = self.state();
            match dialed {
                Ok(link) if state.closed => {
                    link.close();
                    Err(closed())
                }
                Ok(link) => {
                    tracing::debug!(relay = %url, "connected to relay again");
                    state.link = Arc::new(link);
                    Ok(state.link.clone())
                }
                Err(e) => {
                    let e = redial_error(e);
                    state.failures += 1;
                    state.last_failure = Some(e.clone());
                    Err(e)
                }
            }
        };
        tokio::time::timeout(options.handshake_timeout, redial).await.unwrap_or(Err(OpenError::Timeout))
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
        e => OpenError::ConnectionLost(format!("cannot connect to the relay again: {e}")),
    }
}
