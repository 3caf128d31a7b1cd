//! A host's outbound link to a relay, on which it listens on any number of addresses.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::link::HostLink;
use super::listener::Listener;
use crate::error::{ConnectError, ListenError};
use crate::options::ConnectOptions;
use crate::transport::{IncomingChannel, Link, Renewal, Role, Routes};
use crate::url::RelayUrl;
use relay_proto as proto;

/// How many accepted-but-not-yet-taken channels a listener queues before refusing new ones.
const LISTENER_QUEUE: usize = 128;

/// A host's connection to a relay. Listen on any number of addresses over it.
///
/// Over `quic://` it is one outbound QUIC connection and the relay opens one stream on it per
/// caller channel; over `wss://` (Azure Relay's Hybrid Connections protocol) each listener holds
/// a control WebSocket and each caller channel is a WebSocket the host opens to the relay.
/// Either way every connection is outbound.
///
/// ```no_run
/// use relay_rpc::{ConnectOptions, Host};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ConnectOptions::new().trust_pem_file("relay-data/cert.pem")?;
/// let host = Host::connect("quic://127.0.0.1:7443", options).await?; // or "wss://127.0.0.1:7443"
/// let listener = host.listen("calc").await?;
/// // listener.serve(ServeCalculator::new(MyCalculator)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostLink>,
}

impl Host {
    /// Connects to the relay at `url` (`quic://host:port`, `wss://host:port`, or unencrypted
    /// `ws://host:port`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, ConnectError> {
        let url: RelayUrl = url.parse()?;
        let link = Link::dial(&url, &options, Role::Host).await?;
        tracing::debug!(relay = %url, "host connected to relay");
        let routes = Routes::default();
        let router = link.route_incoming(routes.clone(), &options);
        Ok(Self { inner: Arc::new(HostLink { url, link, options, routes, router }) })
    }

    /// Registers on `address`; callers' channels to it arrive on the returned [`Listener`].
    pub async fn listen(&self, address: &str) -> Result<Listener, ListenError> {
        self.register_listener(address, false).await
    }

    /// Registers on `address` and takes HTTP requests to it too: the relay's HTTP mode
    /// (`https://{relay}/{address}/...`) sends each one as a channel to this listener. Serving a
    /// contract ([`Listener::serve`]) answers them as JSON calls; the channels' contract is
    /// [`relay_proto::http_channel::CONTRACT`].
    ///
    /// ```no_run
    /// # use relay_rpc::{Host, ListenError};
    /// # async fn run<D: relay_rpc::contract::Dispatch>(host: Host, calc: D) -> Result<(), ListenError> {
    /// // curl -X POST https://relay.example/calc/Calculator/add -H 'content-type: application/json' -d '{"a":2,"b":3}'
    /// host.listen_http("calc").await?.serve(calc).await
    /// # }
    /// ```
    pub async fn listen_http(&self, address: &str) -> Result<Listener, ListenError> {
        self.register_listener(address, true).await
    }

    async fn register_listener(&self, address: &str, takes_http: bool) -> Result<Listener, ListenError> {
        proto::validate_address(address)?;
        let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
        if !self.inner.routes.add(address, tx.clone()) {
            return Err(ListenError::AlreadyListening(address.to_owned()));
        }
        match self.register(address, takes_http, tx).await {
            Ok(registration) => {
                tracing::debug!(address, "listening");
                Ok(Listener::new(self.inner.clone(), address.to_owned(), rx, registration))
            }
            Err(e) => {
                self.inner.routes.remove(address);
                Err(e)
            }
        }
    }

    async fn register(
        &self,
        address: &str,
        takes_http: bool,
        queue: mpsc::Sender<IncomingChannel>,
    ) -> Result<crate::transport::Registration, ListenError> {
        let inner = &self.inner;
        let token = inner.options.token_for(&inner.url, address)?;
        let renewal = Renewal::new(
            inner.options.tokens.clone(),
            format!("{}/{address}", inner.url),
            token.as_ref().map(|t| t.expires_at()),
        );
        inner.link.listen(&inner.options, address, (token, takes_http), renewal, queue).await
    }

    /// Closes the connection: every listener and channel of this host ends.
    pub fn close(&self) {
        self.inner.link.close();
    }
}
