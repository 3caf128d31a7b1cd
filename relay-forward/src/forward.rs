//! `relay forward`: the host side. Each stream a caller opens becomes a TCP connection to the
//! forwarded service.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::http::{HttpTarget, proxy_one};
use super::pipe::pipe;
use super::{CliError, ForwardArgs, HttpArgs};
use relay_rpc::ErrorCode;
use relay_rpc::ListenError;
use relay_rpc::stream;
use relay_rpc::{Backoff, ConnectOptions, RelayUrls};
use relay_rpc::{Host, IncomingChannel, Listener};

/// The waits before registering again after the relay was lost: at most 1 s before the first
/// attempt, doubling up to 30 s while attempts fail (full jitter, so that forwarders that lost
/// the same relay do not come back at the same moment).
pub const RELISTEN_BACKOFF: Backoff =
    Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(30), stable: Duration::ZERO };

/// How long delivering a refusal may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The host side of `relay forward`: registered on an address, forwarding each stream to a new
/// TCP connection to the target. Given several relays, it registers on one (the first that takes
/// it, in a random order) and, when that one is lost, on another (the one just lost last), as
/// hosts that keep themselves online do ([`RelayUrls::try_order`]).
///
/// ```no_run
/// use clap::Parser;
/// use relay_forward::{Cli, Command, Forwarder};
///
/// # async fn run() -> Result<(), relay_forward::CliError> {
/// let cli = Cli::parse_from(["relay", "forward", "--address", "ssh", "--to", "127.0.0.1:22"]);
/// let Command::Forward(args) = cli.command else { unreachable!() };
/// let forwarder = Forwarder::start(&args).await?;
/// forwarder.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Forwarder {
    relays: RelayUrls,
    /// The relay registered on now.
    url: String,
    options: ConnectOptions,
    address: String,
    target: Target,
    connect_timeout: Duration,
    max_connections: usize,
    listener: Listener,
}

/// Where a forwarder sends what arrives.
#[derive(Debug, Clone)]
enum Target {
    /// Each stream to a new TCP connection to `host:port`.
    Tcp(Arc<str>),
    /// Each HTTP request to a local web server.
    Http(Arc<HttpTarget>),
}

impl Target {
    fn takes_http(&self) -> bool {
        matches!(self, Self::Http(_))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(to) => f.write_str(to),
            Self::Http(to) => write!(f, "{to}"),
        }
    }
}

impl Forwarder {
    /// Checks that the target resolves, connects to the relay (the first of the list that
    /// answers and takes the registration) and registers on the address. The target need not be
    /// up yet: each stream connects to it anew.
    pub async fn start(args: &ForwardArgs) -> Result<Self, CliError> {
        let relays = args.relay.relay.clone();
        relays.check()?;
        let options = args.relay.options()?;
        let to = args.to.as_str();
        let target_error = |source| CliError::Target { to: to.to_owned(), source };
        let resolved = tokio::time::timeout(args.connect_timeout, tokio::net::lookup_host(to))
            .await
            .map_err(|_| target_error(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))?;
        if resolved.map_err(target_error)?.next().is_none() {
            return Err(target_error(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")));
        }
        let target = Target::Tcp(Arc::from(to));
        let (address, limits) = (args.relay.address.clone(), (args.connect_timeout, args.max_connections));
        Self::register(relays, options, address, target, limits).await
    }

    /// As [`start`](Self::start), for `relay http`: registers on the address taking HTTP
    /// requests, each answered by the local web server (which need not be up yet).
    pub async fn start_http(args: &HttpArgs) -> Result<Self, CliError> {
        let relays = args.relay.relay.clone();
        relays.check()?;
        let options = args.relay.options()?;
        let target = Target::Http(Arc::new(args.to.clone()));
        let (address, limits) = (args.relay.address.clone(), (args.timeout, args.max_connections));
        Self::register(relays, options, address, target, limits).await
    }

    async fn register(
        relays: RelayUrls,
        options: ConnectOptions,
        address: String,
        target: Target,
        (connect_timeout, max_connections): (Duration, u32),
    ) -> Result<Self, CliError> {
        let (listener, url) = listen_any(&relays, None, &options, &address, target.takes_http()).await?;
        Ok(Self {
            relays,
            url,
            options,
            address,
            target,
            connect_timeout,
            max_connections: max_connections as usize,
            listener,
        })
    }

    /// Where it forwards to: `host:port`, or the local web server's URL.
    pub fn target(&self) -> String {
        self.target.to_string()
    }

    /// The address registered on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The URL of the relay registered on.
    pub fn relay(&self) -> &str {
        &self.url
    }

    /// Forwards streams until `shutdown` completes; then every forwarded connection is cut.
    /// When the relay is lost it registers again, on another relay of the list if there is one,
    /// waiting longer between failed rounds (the connections it carried end with it, or finish
    /// if the relay is draining); it fails only when a relay refuses it for good (a bad token, a
    /// forbidden address).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), CliError> {
        let Self { relays, mut url, options, address, target, connect_timeout, max_connections, mut listener } = self;
        let mut shutdown = std::pin::pin!(shutdown);
        let slots = Arc::new(Semaphore::new(max_connections));
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            match accepted {
                Ok(incoming) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(
                            channel = incoming.id(),
                            max_connections,
                            "too many forwarded connections; refusing a stream"
                        );
                        incoming.reject_in_background(ErrorCode::Busy, "too many forwarded connections");
                        continue;
                    };
                    let span = tracing::info_span!("stream", address = %address, channel = incoming.id());
                    match &target {
                        Target::Tcp(to) => {
                            connections
                                .spawn(forward_one(incoming, to.clone(), connect_timeout, permit).instrument(span));
                        }
                        Target::Http(to) if relay_proto::http_channel::is_http(incoming.contract()) => {
                            connections
                                .spawn(proxy_one(incoming, to.clone(), connect_timeout, permit).instrument(span));
                        }
                        Target::Http(_) => {
                            incoming.reject_in_background(ErrorCode::Rejected, "this address serves HTTP requests only")
                        }
                    }
                }
                Err(e) if is_final(&e) => return Err(CliError::Listen { url, address, source: e }),
                Err(e) => {
                    tracing::warn!(relay = %url, error = %e, "lost the relay; registering again");
                    (listener, url) = tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        listener = relisten(&relays, &url, &options, &address, target.takes_http()) => listener?,
                    };
                }
            }
        }
    }
}

/// Connects to the relay at `url` and registers on `address`, taking HTTP requests if `http`.
async fn listen(url: &str, options: &ConnectOptions, address: &str, http: bool) -> Result<Listener, CliError> {
    let host = Host::connect(url, options.clone())
        .await
        .map_err(|source| CliError::Connect { url: url.to_owned(), source })?;
    let listener = if http { host.listen_http(address).await } else { host.listen(address).await };
    listener.map_err(|source| CliError::Listen { url: url.to_owned(), address: address.to_owned(), source })
}

/// Registers on the first of `relays` that takes the registration, in their try order with
/// `lost` last; the listener and its relay's URL. Fails at once when a relay refuses for good,
/// else with the last relay's error if none takes it.
async fn listen_any(
    relays: &RelayUrls,
    lost: Option<&str>,
    options: &ConnectOptions,
    address: &str,
    http: bool,
) -> Result<(Listener, String), CliError> {
    let mut last = None;
    for url in relays.try_order(lost) {
        match listen(url, options, address, http).await {
            Ok(listener) => return Ok((listener, url.to_owned())),
            Err(e) if refused_for_good(&e) => return Err(e),
            Err(e) => {
                if relays.len() > 1 {
                    tracing::warn!(error = %super::report(&e), "cannot register; trying the next relay");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(CliError::Relays(relay_rpc::UrlError::Empty)))
}

/// Registers again after `lost` was lost, on any of `relays` (`lost` last), waiting ever longer
/// between rounds, until it succeeds or a relay refuses for good.
async fn relisten(
    relays: &RelayUrls,
    lost: &str,
    options: &ConnectOptions,
    address: &str,
    http: bool,
) -> Result<(Listener, String), CliError> {
    let mut attempt = 0;
    loop {
        tokio::time::sleep(RELISTEN_BACKOFF.delay_for(attempt)).await;
        attempt = attempt.saturating_add(1);
        match listen_any(relays, Some(lost), options, address, http).await {
            Ok((listener, url)) => {
                tracing::info!(relay = %url, address, "registered again");
                return Ok((listener, url));
            }
            Err(e) if refused_for_good(&e) => return Err(e),
            Err(e) => tracing::warn!(error = %super::report(&e), attempt, "cannot register again"),
        }
    }
}

/// Whether registering on any relay would fail the same way.
fn refused_for_good(e: &CliError) -> bool {
    matches!(e, CliError::Listen { source, .. } if is_final(source))
}

/// Whether registering again would fail the same way.
fn is_final(e: &ListenError) -> bool {
    match e {
        ListenError::Refused { code, .. } => !matches!(code, ErrorCode::Busy | ErrorCode::ShuttingDown),
        ListenError::Unauthorized { .. }
        | ListenError::Token(_)
        | ListenError::InvalidAddress(_)
        | ListenError::AlreadyListening(_) => true,
        _ => false,
    }
}

/// Connects to the target first, so that a caller whose target is down is refused at once
/// rather than accepted and cut; then accepts the stream and copies both ways.
async fn forward_one(incoming: IncomingChannel, to: Arc<str>, connect_timeout: Duration, _slot: OwnedSemaphorePermit) {
    if !stream::is_stream(incoming.contract()) {
        if let Err(e) = stream::accept_channel(incoming).await {
            tracing::info!(error = %super::report(&e), "refused");
        }
        return;
    }
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(&*to)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return refuse_unreachable(incoming, &to, &e.to_string()).await,
        Err(_) => return refuse_unreachable(incoming, &to, "timed out").await,
    };
    let stream = match stream::accept_channel(incoming).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::info!(error = %super::report(&e), "stream lost before it opened");
            return;
        }
    };
    tracing::info!(to = %to, "forwarding");
    match pipe(tcp, stream).await {
        Ok((to_caller, to_target)) => {
            tracing::info!(bytes_to_target = to_target, bytes_to_caller = to_caller, "closed")
        }
        Err(e) => tracing::info!(error = %e, "cut"),
    }
}

/// Refuses a stream whose target cannot be reached. The caller learns that the service is
/// down, not where it runs.
async fn refuse_unreachable(incoming: IncomingChannel, to: &str, reason: &str) {
    tracing::warn!(to, reason, "cannot reach the target; refusing the stream");
    let refusal = incoming.reject(ErrorCode::Rejected, "the forwarded service is unreachable");
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refusal).await;
}
