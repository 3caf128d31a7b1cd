//! How the relay reaches a registered listener, whatever its transport: what the registry
//! holds for each, and what the router opens channels through.

use std::net::SocketAddr;

use bytes::Bytes;
use relay_proto::Control;
use relay_proto::hc::Accept;
use relay_proto::hc_http::RequestMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How the relay reaches a registered listener.
#[derive(Debug, Clone)]
pub(crate) enum ListenerHandle {
    /// A native host: one QUIC stream per channel on its connection.
    Quic(QuicListener),
    /// A Hybrid Connections listener: `accept` notifications on its control WebSocket.
    Hc(HcListener),
}

/// A native host's registration, as the router sees it.
#[derive(Debug, Clone)]
pub(crate) struct QuicListener {
    /// The host's connection, on which the relay opens a stream per channel.
    pub(crate) connection: quinn::Connection,
    /// Messages for the host's control stream (a cluster's `Dial`s); the registration's task
    /// writes them.
    pub(crate) control: mpsc::Sender<Control>,
    /// When it registered (unix seconds), for the status page.
    pub(crate) since: u64,
    /// Whether it takes HTTP requests (as channels).
    pub(crate) http: bool,
}

/// A Hybrid Connections listener's control channel, as the router sees it.
#[derive(Debug, Clone)]
pub(crate) struct HcListener {
    /// What the control task writes to the listener's control WebSocket.
    pub(crate) notify: mpsc::Sender<ToListener>,
    /// `wss://host:port` as the listener dialled it, for rendezvous addresses.
    pub(crate) base_url: String,
    /// Cancelled when the listener is found dead (silent past the idle timeout). Its channels
    /// are WebSockets of their own, which a blackholed host leaves open: they are cut then.
    pub(crate) dead: CancellationToken,
    /// Where its control channel comes from, and when it registered (unix seconds), for the
    /// status page.
    pub(crate) remote: SocketAddr,
    pub(crate) since: u64,
    /// Whether it said it takes HTTP requests as channels (a host of this project over wss); other
    /// listeners get them as `request` messages where the address has `http = true`.
    pub(crate) http_channels: bool,
}

/// A message for a Hybrid Connections listener's control channel.
#[derive(Debug)]
pub(crate) enum ToListener {
    /// A sender waits for a rendezvous.
    Accept(Accept),
    /// An HTTP-mode request (its body, if any, follows as one binary message), or only its id
    /// and rendezvous address when it travels over the rendezvous.
    Request(RequestMessage, Option<Bytes>),
}

impl ListenerHandle {
    /// Its transport, peer address and registration time (unix seconds), for the status page.
    pub(crate) fn about(&self) -> (&'static str, SocketAddr, u64) {
        match self {
            Self::Quic(quic) => ("quic", quic.connection.remote_address(), quic.since),
            Self::Hc(hc) => ("websocket", hc.remote, hc.since),
        }
    }

    /// Whether it takes HTTP requests as channels ([`relay_proto::http_channel`]).
    pub(crate) fn takes_http_channels(&self) -> bool {
        match self {
            Self::Quic(quic) => quic.http,
            Self::Hc(hc) => hc.http_channels,
        }
    }

    /// Whether it can take a channel announcing `contract`: a channel carrying an HTTP request
    /// goes only to listeners that said they take them.
    pub(crate) fn can_take(&self, contract: &relay_proto::ContractInfo) -> bool {
        !relay_proto::http_channel::is_http(contract) || self.takes_http_channels()
    }

    /// What is cancelled when the listener is found dead, where its channels need telling.
    pub(crate) fn dead_signal(&self) -> Option<CancellationToken> {
        match self {
            Self::Quic(_) => None,
            Self::Hc(hc) => Some(hc.dead.clone()),
        }
    }
}
