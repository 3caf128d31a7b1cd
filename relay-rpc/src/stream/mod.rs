//! Raw byte streams through the relay, for protocols that are not ours (SSH, HTTP, databases):
//! Hybrid Connections' raw sockets, and what rathole or frp forward.
//!
//! A caller [`connect`]s to an address and a host [`accept`]s; each end gets a [`RelayStream`],
//! a [`tokio::io::AsyncRead`] + [`tokio::io::AsyncWrite`] over one channel, so that
//! `tokio::io::copy_bidirectional` can join it to a TCP connection. The `relay` command-line
//! tool (feature `cli`) forwards TCP ports this way.
//!
//! ```no_run
//! use relay_rpc::{ConnectOptions, Connection, Host, stream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ConnectOptions::new().trust_pem_file("relay-data/cert.pem")?;
//!
//! // The host, behind the firewall: answer each stream with what it said, reversed.
//! let host = Host::connect("quic://127.0.0.1:7443", options.clone()).await?;
//! let mut listener = host.listen("reverse").await?;
//! tokio::spawn(async move {
//!     while let Ok(mut stream) = stream::accept(&mut listener).await {
//!         let mut request = Vec::new();
//!         stream.read_to_end(&mut request).await?; // until the caller's shutdown
//!         request.reverse();
//!         stream.write_all(&request).await?;
//!         stream.shutdown().await?;
//!     }
//!     Ok::<_, std::io::Error>(())
//! });
//!
//! // The caller: write, end the sending direction, read the answer to its end.
//! let relay = Connection::connect("quic://127.0.0.1:7443", options).await?;
//! let mut stream = stream::connect(&relay, "reverse").await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?;
//! let mut answer = String::new();
//! stream.read_to_string(&mut answer).await?;
//! assert_eq!(answer, "olleh");
//! # Ok(()) }
//! ```
//!
//! # On the wire
//! A stream is a channel announcing the contract [`CONTRACT`] (`relay.stream`, no methods), so
//! a typed host refuses it with a contract mismatch, and [`accept`] refuses typed callers the
//! same way. Each write is one frame of at most [`MAX_CHUNK`] bytes.
//!
//! **The end of a direction is an empty frame**, on every transport. QUIC streams could carry a
//! half-close themselves (a stream's `FIN`), but a WebSocket cannot: a close frame ends both
//! directions, and the relay gives the other direction only a short grace once one side of a
//! WebSocket channel closed. An in-band mark works the same over `quic://`, `wss://`, and
//! channels that cross from one to the other at the relay, for as long as either side keeps
//! writing. Once both directions have ended, the channel itself is closed (a QUIC `FIN`, a
//! WebSocket close handshake) when the streams are dropped.
//!
//! The mark also tells a complete stream from a cut one, as TLS's `close_notify` does: a
//! channel that ends without it (a peer dropped its stream without a shutdown, or crashed)
//! reads as [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof), not as the end of the data.
//! Peers of other kinds (Azure's own Hybrid Connections clients, which [`accept`] lets in
//! since they announce no contract) meet the same convention: an empty message ends their
//! direction.

mod relay_stream;

use crate::channel::ChannelError;
use crate::client::Connection;
use crate::contract::ContractDescriptor;
use crate::error::{ListenError, OpenError};
use crate::host::{IncomingChannel, Listener};
use relay_proto::error::chain;
use relay_proto::{ContractInfo, ErrorCode};

pub use relay_stream::{MAX_CHUNK, RelayStream};

/// The contract a stream channel announces: `relay.stream`, without methods.
pub static CONTRACT: ContractDescriptor = ContractDescriptor::new("relay.stream", &[]);

/// Why an incoming channel did not become a stream.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The caller speaks a typed contract; the channel was refused with
    /// [`ErrorCode::ContractMismatch`].
    #[error("the caller speaks contract `{contract}`, not raw streams")]
    NotAStream {
        /// The contract the caller announced.
        contract: String,
    },
    /// The channel was lost before it opened.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// Opens a stream to `address`: a channel announcing [`CONTRACT`].
///
/// Fails like [`Connection::open_channel`]: [`OpenError::NoListener`] at once when nobody
/// listens, [`OpenError::ContractMismatch`] when the host serves a typed contract.
pub async fn connect(relay: &Connection, address: &str) -> Result<RelayStream, OpenError> {
    relay.open_channel(address, Some(&CONTRACT)).await.map(RelayStream::new)
}

/// Waits for the next stream a caller opens on `listener`, refusing typed callers (they get
/// [`OpenError::ContractMismatch`]) and skipping channels lost before they opened. Fails when
/// the registration or the connection ends.
///
/// This accepts one channel at a time; a host that wants to accept many at once (over
/// `wss://` accepting opens a WebSocket) takes [`Listener::accept`]'s channels and hands each
/// to [`accept_channel`] in a task of its own.
pub async fn accept(listener: &mut Listener) -> Result<RelayStream, ListenError> {
    loop {
        let incoming = listener.accept().await?;
        match accept_channel(incoming).await {
            Ok(stream) => return Ok(stream),
            Err(e) => tracing::debug!(address = %listener.address(), error = %chain(&e), "no stream from this channel"),
        }
    }
}

/// Accepts `incoming` as a stream, or refuses it if its caller speaks a typed contract.
///
/// A channel announcing no contract at all is accepted too: that is how Azure Relay's own
/// Hybrid Connections clients open theirs.
///
/// ```no_run
/// # async fn run(mut listener: relay_rpc::Listener) -> Result<(), relay_rpc::ListenError> {
/// loop {
///     let incoming = listener.accept().await?;
///     tokio::spawn(async move {
///         let Ok(stream) = relay_rpc::stream::accept_channel(incoming).await else { return };
///         let (mut reader, mut writer) = tokio::io::split(stream);
///         if tokio::io::copy(&mut reader, &mut writer).await.is_ok() { // echo, to the caller's end
///             let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
///         }
///     });
/// }
/// # }
/// ```
pub async fn accept_channel(incoming: IncomingChannel) -> Result<RelayStream, AcceptError> {
    if !is_stream(incoming.contract()) {
        let contract = incoming.contract().name.clone();
        let detail = format!("the listener serves raw streams (`{}`), the caller speaks `{contract}`", CONTRACT.name);
        if let Err(e) = incoming.reject(ErrorCode::ContractMismatch, &detail).await {
            tracing::debug!(error = %chain(&e), "refusal not delivered");
        }
        return Err(AcceptError::NotAStream { contract });
    }
    Ok(RelayStream::new(incoming.accept().await?))
}

/// Whether a caller announcing `contract` speaks raw streams.
pub fn is_stream(contract: &ContractInfo) -> bool {
    contract.name.is_empty() || contract.name == CONTRACT.name
}
