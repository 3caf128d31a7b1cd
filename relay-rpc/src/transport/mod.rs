//! Transports: dialing a relay and turning its connection into channels.
//!
//! One module per transport: `quic` (native: one connection, one stream per channel) and `ws`
//! (Azure Relay's Hybrid Connections protocol: one WebSocket per listener registration and per
//! channel). Each hands the layers above the same [`Channel`] and [`IncomingChannel`]; the enums
//! here are the only place that chooses between them, from the relay URL's scheme.

mod incoming;
pub(crate) mod memory;
pub(crate) mod quic;
mod renewal;
mod routes;
pub(crate) mod ws;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::Token;
use crate::channel::{Channel, ChannelError};
use crate::contract::ContractDescriptor;
use crate::error::{ConnectError, ListenError, OpenError};
use crate::options::ConnectOptions;
use crate::url::{RelayUrl, Scheme};
use relay_proto::ErrorCode;

pub use incoming::IncomingChannel;
pub(crate) use renewal::Renewal;
pub(crate) use routes::Routes;

/// Which end of a relay connection this is: a host listens and accepts, a caller opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Host,
    Caller,
}

/// A host's or caller's link to a relay, over the transport its URL names.
#[derive(Debug)]
pub(crate) enum Link {
    /// One QUIC connection carrying every registration and channel.
    Quic(quic::QuicLink),
    /// What it takes to open WebSockets to the relay; each registration and channel is its own.
    Ws(ws::WsLink),
}

impl Link {
    /// Connects to the relay at `url`: a QUIC handshake, or for WebSocket a TCP and TLS handshake
    /// that proves the relay reachable and trusted (registrations and channels dial their own).
    pub(crate) async fn dial(url: &RelayUrl, options: &ConnectOptions, role: Role) -> Result<Self, ConnectError> {
        match url.scheme() {
            Scheme::Quic => quic::dial(url, options, role).await.map(Self::Quic),
            Scheme::Wss | Scheme::Ws => ws::WsLink::dial(url, options, role).await.map(Self::Ws),
        }
    }

    /// Starts handing the channels the relay opens to the listeners in `routes`, if this
    /// transport multiplexes them on one connection (QUIC). WebSocket registrations deliver
    /// their own channels.
    pub(crate) fn route_incoming(&self, routes: Routes, options: &ConnectOptions) -> Option<JoinHandle<()>> {
        match self {
            Self::Quic(link) => {
                let (connection, grant) = (link.connection.clone(), link.incoming.clone());
                Some(tokio::spawn(quic::host::route_incoming(connection, grant, routes, options.clone())))
            }
            Self::Ws(_) => None,
        }
    }

    /// Opens a channel to `address`, presenting `token` and announcing `contract`, within the
    /// handshake timeout.
    pub(crate) async fn open_channel(
        &self,
        options: &ConnectOptions,
        address: &str,
        token: Option<Token>,
        contract: Option<&ContractDescriptor>,
    ) -> Result<Channel, OpenError> {
        match self {
            Self::Quic(link) => quic::open_channel(link, options, address, token, contract).await,
            Self::Ws(link) => link.open_channel(address, token, contract).await,
        }
    }

    /// Registers as a listener on `address`, taking HTTP requests too when `takes_http`;
    /// accepted callers' channels go to `queue`.
    pub(crate) async fn listen(
        &self,
        options: &ConnectOptions,
        address: &str,
        (token, takes_http): (Option<Token>, bool),
        renewal: Renewal,
        queue: mpsc::Sender<IncomingChannel>,
    ) -> Result<Registration, ListenError> {
        match self {
            Self::Quic(link) => quic::host::register(link, options, address, (token, takes_http), renewal, queue)
                .await
                .map(Registration::Quic),
            Self::Ws(link) => link.listen(address, token, takes_http, renewal, queue).await.map(Registration::Ws),
        }
    }

    /// Whether the relay connection under this link has ended for good: a QUIC connection that
    /// closed. A WebSocket link dials each registration and channel, so it never ends.
    pub(crate) fn ended(&self) -> bool {
        match self {
            Self::Quic(link) => link.connection.close_reason().is_some(),
            Self::Ws(_) => false,
        }
    }

    /// Closes the link: every registration and channel on it ends.
    pub(crate) fn close(&self) {
        match self {
            Self::Quic(link) => link.close(),
            Self::Ws(link) => link.close(),
        }
    }
}

/// A listener's registration on an address. Dropping it ends the registration.
#[derive(Debug)]
pub(crate) enum Registration {
    Quic(quic::host::QuicRegistration),
    Ws(ws::WsRegistration),
}

impl Registration {
    /// Waits until the relay or the connection ends the registration, and says why. Cancel-safe.
    pub(crate) async fn ended(&mut self) -> ListenError {
        match self {
            Self::Quic(registration) => registration.ended().await,
            Self::Ws(registration) => registration.ended().await,
        }
    }

    /// The error of a listener whose connection is gone.
    pub(crate) fn connection_lost(&self) -> ListenError {
        match self {
            Self::Quic(registration) => registration.connection_lost(),
            Self::Ws(_) => ListenError::ConnectionLost("host connection closed".into()),
        }
    }
}

/// A caller's channel waiting at a host for an answer.
#[derive(Debug)]
pub(crate) enum PendingChannel {
    Quic(quic::host::QuicPending),
    Ws(ws::WsPending),
}

impl PendingChannel {
    /// The transport it arrived over, as its [`Channel::transport`] will say.
    pub(crate) fn transport(&self) -> &'static str {
        match self {
            Self::Quic(_) => "quic",
            Self::Ws(pending) => pending.transport(),
        }
    }

    /// Accepts: the caller's open succeeds and the channel carries frames.
    pub(crate) async fn accept(self, address: Arc<str>, id: u64) -> Result<Channel, ChannelError> {
        match self {
            Self::Quic(pending) => pending.accept(address, id).await,
            Self::Ws(pending) => pending.accept(address, id).await,
        }
    }

    /// Refuses: the caller's open fails with `code` and `detail`.
    pub(crate) async fn reject(self, code: ErrorCode, detail: &str) -> Result<(), ChannelError> {
        match self {
            Self::Quic(pending) => pending.reject(code, detail).await,
            Self::Ws(pending) => pending.reject(code, detail).await,
        }
    }
}
