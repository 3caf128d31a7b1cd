//! Keeping a host online: serve an address, and after any loss (relay restart, network drop,
//! token refresh failure) connect and register again, with capped exponential backoff and full
//! jitter, reset after a stable period. Status changes are observable.

use std::convert::Infallible;
use std::time::Instant;

use tokio::sync::watch;

use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connection::Host;
use super::listener::Listener;
use super::serve::OpenChannels;
use crate::backoff::Backoff;
use crate::contract::Dispatch;
use crate::error::{ConnectError, ListenError};
use crate::options::ConnectOptions;
use crate::url::RelayUrls;
use relay_proto::ErrorCode;
use relay_proto::error::chain;

/// Where a host that keeps itself online stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostStatus {
    /// Connecting to the relay and registering.
    Connecting,
    /// Registered: callers reach it.
    Online,
    /// Lost, for the reason given; it will try again after a backoff.
    Offline(String),
}

/// Why a host that keeps itself online gave up: only errors that retrying cannot mend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnlineError {
    /// The relay URL or TLS configuration is unusable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The relay refused the registration for good (bad token, invalid address, bad request).
    #[error(transparent)]
    Listen(#[from] ListenError),
}

/// The services a host keeps online: each address it registers on, with the dispatcher (a
/// generated `ServeFoo`) that serves it. All of them share the host's one connection.
///
/// ```
/// # use relay_rpc::Services;
/// # fn build<A: relay_rpc::contract::Dispatch, B: relay_rpc::contract::Dispatch>(calc: A, billing: B) -> Services {
/// Services::new().add("calc", calc).add("eu/billing", billing)
/// # }
/// ```
#[derive(Default)]
pub struct Services {
    entries: Vec<(String, Box<dyn Service>)>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|(address, _)| address)).finish()
    }
}

impl Services {
    /// No services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `dispatcher` on `address` too.
    pub fn add<D: Dispatch>(mut self, address: &str, dispatcher: D) -> Self {
        self.entries.push((address.to_owned(), Box::new(dispatcher)));
        self
    }

    /// The addresses, in the order they were added.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(address, _)| address.as_str())
    }
}

/// A dispatcher of any contract, serving one listener.
trait Service: Send + Sync {
    fn serve(&self, listener: Listener, stop: CancellationToken) -> BoxFuture<'static, Served>;
}

/// How one listener's serving ended: its error (`None` if stopped) and its open channels.
type Served = (Option<ListenError>, OpenChannels);

impl<D: Dispatch> Service for D {
    fn serve(&self, listener: Listener, stop: CancellationToken) -> BoxFuture<'static, Served> {
        let dispatcher = self.clone();
        Box::pin(async move { listener.serve_until(dispatcher, stop.cancelled_owned()).await })
    }
}

impl Host {
    /// Serves `dispatcher` on `address` of the relay at `relays` (one URL, or several nodes of a
    /// cluster) for as long as the returned future is polled;
    /// [`serve_all_online`](Self::serve_all_online) with one service.
    ///
    /// ```no_run
    /// # use relay_rpc::{Backoff, ConnectOptions, Host, HostStatus};
    /// # async fn run<D: relay_rpc::contract::Dispatch>(dispatcher: D, options: ConnectOptions) {
    /// let (status, mut changes) = tokio::sync::watch::channel(HostStatus::Connecting);
    /// tokio::spawn(Host::serve_online("quic://relay.example:7443", options, "calc", dispatcher, Backoff::default(), status));
    /// while changes.changed().await.is_ok() {
    ///     println!("host is {:?}", *changes.borrow());
    /// }
    /// # }
    /// ```
    pub async fn serve_online<D: Dispatch>(
        relays: impl Into<RelayUrls>,
        options: ConnectOptions,
        address: &str,
        dispatcher: D,
        backoff: Backoff,
        status: watch::Sender<HostStatus>,
    ) -> OnlineError {
        Self::serve_all_online(relays, options, Services::new().add(address, dispatcher), backoff, status).await
    }

    /// Serves every one of `services` through one connection to a relay of `relays`, for as long
    /// as the returned future is polled: connects (to the relays in a random order, the first
    /// that answers; see [`RelayUrls`]), registers every address and serves them;
    /// after any loss (relay restart, network drop, token refresh failure, one registration
    /// ending) connects and registers all of them again, with `backoff`. A draining relay's
    /// [`GoAway`](ListenError::GoAway) brings a new registration at once (within the first
    /// backoff step's jitter) while the channels already open finish on the old connection. After
    /// any loss the channels already open run on for as long as their own connection does (in a
    /// cluster, a channel runs over a connection to the caller's node, which may outlive the
    /// node the host was registered on).
    /// Every status change is sent on `status`. Returns only for errors that retrying cannot
    /// mend (a bad URL or certificate, a refused token, an invalid address).
    ///
    /// ```no_run
    /// # use relay_rpc::{Backoff, ConnectOptions, Host, HostStatus, Services};
    /// # async fn run<A: relay_rpc::contract::Dispatch, B: relay_rpc::contract::Dispatch>(calc: A, billing: B, options: ConnectOptions) {
    /// let services = Services::new().add("calc", calc).add("eu/billing", billing);
    /// let (status, _changes) = tokio::sync::watch::channel(HostStatus::Connecting);
    /// let relays = "quic://node1.example:7443,quic://node2.example:7443";
    /// let fatal = Host::serve_all_online(relays, options, services, Backoff::default(), status).await;
    /// eprintln!("host gave up: {fatal}");
    /// # }
    /// ```
    pub async fn serve_all_online(
        relays: impl Into<RelayUrls>,
        options: ConnectOptions,
        services: Services,
        backoff: Backoff,
        status: watch::Sender<HostStatus>,
    ) -> OnlineError {
        let relays = relays.into();
        if let Err(e) = relays.check() {
            let fatal = OnlineError::Connect(e.into());
            status.send_replace(HostStatus::Offline(fatal.to_string()));
            return fatal;
        }
        let mut attempt = 0u32;
        // The relay of the connection lost last: tried last next time.
        let mut lost_relay: Option<String> = None;
        // Channels of earlier connections finishing after a go-away; dropped with this future.
        let mut finishing = JoinSet::new();
        loop {
            while finishing.try_join_next().is_some() {}
            status.send_replace(HostStatus::Connecting);
            let mut online_since = None;
            let lost: Result<Infallible, OnlineError> = async {
                let (host, url) = connect_any(&relays, lost_relay.as_deref(), &options).await?;
                lost_relay = Some(url);
                let mut listeners = Vec::with_capacity(services.entries.len());
                for (address, _) in &services.entries {
                    listeners.push(host.listen_http(address).await?);
                }
                status.send_replace(HostStatus::Online);
                online_since = Some(Instant::now());
                let stop = CancellationToken::new();
                let mut serving = JoinSet::new();
                for (listener, (_, service)) in listeners.into_iter().zip(&services.entries) {
                    serving.spawn(service.serve(listener, stop.clone()));
                }
                // The first registration to end ends them all. Their open channels run on until
                // they end by themselves: a channel on a connection that is gone ends with it,
                // and one whose data runs on another relay of a cluster (or on a draining one)
                // finishes its calls while the host registers again.
                let mut ended = None;
                while let Some(served) = serving.join_next().await {
                    stop.cancel();
                    let Ok((error, open)) = served else { continue };
                    if ended.get_or_insert(error).is_some() {
                        finishing.spawn(open.finish());
                    }
                }
                Err(OnlineError::Listen(ended.flatten().unwrap_or(ListenError::Closed)))
            }
            .await;
            let Err(lost) = lost;
            if is_permanent(&lost) {
                status.send_replace(HostStatus::Offline(lost.to_string()));
                return lost;
            }
            let (reason, went_away) = (lost.to_string(), matches!(lost, OnlineError::Listen(ListenError::GoAway)));
            tracing::info!(addresses = ?services, %reason, "host offline; reconnecting");
            status.send_replace(HostStatus::Offline(reason));
            if went_away || online_since.is_some_and(|since| since.elapsed() >= backoff.stable) {
                attempt = 0;
            }
            tokio::time::sleep(backoff.delay_for(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

/// Connects to the first of `relays` that answers, in a random order but with `lost` (the relay
/// just lost, if any: dead, or draining) last; the URL it connected to, or the last error if none
/// answers.
async fn connect_any(
    relays: &RelayUrls,
    lost: Option<&str>,
    options: &ConnectOptions,
) -> Result<(Host, String), ConnectError> {
    let mut last = None;
    for url in relays.try_order(lost) {
        match Host::connect(url, options.clone()).await {
            Ok(host) => {
                tracing::debug!(url, "host connected");
                return Ok((host, url.to_owned()));
            }
            Err(e) => {
                tracing::debug!(url, error = %chain(&e), "cannot connect; trying the next relay");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ConnectError::Url(crate::url::UrlError::Empty)))
}

fn is_permanent(e: &OnlineError) -> bool {
    match e {
        OnlineError::Connect(e) => matches!(e, ConnectError::Url(_) | ConnectError::Tls(_)),
        OnlineError::Listen(e) => match e {
            ListenError::Unauthorized { .. } | ListenError::InvalidAddress(_) | ListenError::AlreadyListening(_) => {
                true
            }
            ListenError::Refused { code, .. } => *code == ErrorCode::BadRequest,
            _ => false,
        },
    }
}
