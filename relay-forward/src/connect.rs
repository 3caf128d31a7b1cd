//! `relay connect`: the caller side. Each TCP connection accepted on the local port becomes a
//! stream to the address, through one relay of the list (see [`FailoverConnection`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::failover::FailoverConnection;
use super::pipe::{pipe, reset};
use super::{CliError, ConnectArgs};
use relay_rpc::stream;

/// How long to wait after the local listener failed to accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The caller side of `relay connect`: a local TCP port whose every connection is carried to an
/// address of the relay over a stream of its own. Given several relays, each stream is opened
/// through the one it is connected to, and through another when that one is gone or draining
/// ([`FailoverConnection`]); connections already carried stay on their relay.
///
/// ```no_run
/// use clap::Parser;
/// use relay_forward::{Cli, Command, Connector};
///
/// # async fn run() -> Result<(), relay_forward::CliError> {
/// let cli = Cli::parse_from(["relay", "connect", "--address", "ssh", "--listen", "127.0.0.1:2222"]);
/// let Command::Connect(args) = cli.command else { unreachable!() };
/// let connector = Connector::start(&args).await?;
/// println!("ssh -p {} user@127.0.0.1", connector.local_addr().port());
/// connector.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Connector {
    tcp: TcpListener,
    local_addr: SocketAddr,
    /// Connects to the relay again by itself when the relay restarts or the network drops, and
    /// to another of the list when it is gone.
    relays: FailoverConnection,
    address: Arc<str>,
    max_connections: usize,
}

impl Connector {
    /// Connects to the relay (the first of the list that answers, in a random order) and opens
    /// the local port (`--listen`; port 0 picks one, see [`local_addr`](Self::local_addr)).
    pub async fn start(args: &ConnectArgs) -> Result<Self, CliError> {
        args.relay.relay.check()?;
        let options = args.relay.options()?;
        let relays = FailoverConnection::connect(args.relay.relay.clone(), options).await?;
        let tcp =
            TcpListener::bind(args.listen).await.map_err(|source| CliError::Bind { addr: args.listen, source })?;
        let local_addr = tcp.local_addr().map_err(|source| CliError::Bind { addr: args.listen, source })?;
        Ok(Self {
            tcp,
            local_addr,
            relays,
            address: Arc::from(args.relay.address.as_str()),
            max_connections: args.max_connections as usize,
        })
    }

    /// The local address connections are accepted on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL of the relay it is connected to now.
    pub fn relay(&self) -> String {
        self.relays.relay()
    }

    /// Accepts connections until `shutdown` completes; then every carried connection is cut.
    /// A connection whose stream cannot be opened (no listener on the address, say) is reset.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = JoinSet::new();
        loop {
            let (tcp, peer, slot) = tokio::select! {
                () = &mut shutdown => return,
                accepted = accept(&self.tcp, &slots) => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            // The channel's id is known once its stream opens.
            let span =
                tracing::info_span!("connection", %peer, address = %self.address, channel = tracing::field::Empty);
            connections.spawn(carry(tcp, self.relays.clone(), self.address.clone(), slot).instrument(span));
        }
    }
}

/// Accepts the next connection once there is room for it. Cancel-safe.
async fn accept(tcp: &TcpListener, slots: &Arc<Semaphore>) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => return (stream, peer, slot),
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Opens a stream for one accepted connection and copies both ways.
async fn carry(tcp: TcpStream, relays: FailoverConnection, address: Arc<str>, _slot: OwnedSemaphorePermit) {
    let open = |connection| {
        let address = address.clone();
        // The connection lives as long as its stream, whichever relay the connector moves to.
        async move { stream::connect(&connection, &address).await.map(|stream| (stream, connection)) }
    };
    let (stream, _connection) = match relays.open_with(open).await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a stream; resetting the connection");
            reset(&tcp);
            return;
        }
    };
    tracing::Span::current().record("channel", stream.id());
    tracing::info!("connected");
    match pipe(tcp, stream).await {
        Ok((to_relay, from_relay)) => tracing::info!(bytes_sent = to_relay, bytes_received = from_relay, "closed"),
        Err(e) => tracing::info!(error = %e, "cut"),
    }
}
