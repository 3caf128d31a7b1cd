//! The relay: accepts hosts (listeners) and callers, and splices one channel per caller onto each
//! host's single outbound connection.
//!
//! ```no_run
//! use relay_server::{Config, Relay};
//!
//! # async fn run() -> Result<(), relay_server::RelayError> {
//! let mut config = Config::default();
//! config.quic_listen = "127.0.0.1:0".parse().unwrap();
//! let relay = Relay::bind(config)?;
//! println!("relay on quic://{}", relay.quic_addr());
//! relay.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

// The modules form layers, each importing only from the layers below it; `.ci/check-layers`
// fails on an import cycle between them.
//
// Foundations: the configuration and the relay's identity, the registry of listeners and the
// handles it holds, the callers of each address, limits per source, the buffer budget, the auth policy, the rendezvous table
// and the table of HTTP-mode requests waiting for their listeners' answers,
// the relay's phase, the cluster's state, what a reloaded configuration changes (sans-IO). None imports anything of the layers above.
pub mod auth;
mod budget;
mod callers;
pub mod certs;
mod cluster;
mod config;
mod deadline;
mod exchanges;
mod key_file;
mod limits;
mod listeners;
mod metrics;
mod phase;
mod rates;
pub mod registry;
mod reload;
mod rendezvous;
pub mod root_key;
mod tls;

// Channel ends (QUIC streams, WebSockets) and splicing them.
mod channel;

// The state shared by every connection, which composes the foundations; the link to the other
// nodes of a cluster; routing a channel to a listener (here or on another node), and multicast on
// top of routing; the counters read from the state.
mod multicast;
mod peers;
mod router;
mod state;
mod stats;

// The drivers: the transports', which accept connections and take each through the layers
// below (HTTP mode on the TCP port is handed from `ws` to `http` after the first request head),
// the NATS driver of cluster mode, the admin endpoint, and giving freed heap back to the system.
mod admin;
mod http;
mod memory;
mod nats;
mod quic;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use admin::AdminBindError;
pub use config::{
    AddressConfig, AddressMode, ClusterConfig, Config, ConfigError, KeyConfig, Secret, parse_address_or_off,
};
pub use quic::EndpointError;
pub use reload::{ConfigChanges, RELOADABLE, RESTART_ONLY};
pub use stats::Stats;

use std::sync::atomic::Ordering;

use phase::Phase;
use state::Shared;

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificate could not be loaded or made.
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    /// The QUIC endpoint could not start.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A WebSocket listener could not be bound.
    #[error(transparent)]
    WsBind(#[from] ws::WsBindError),
    /// The admin endpoint could not be bound.
    #[error(transparent)]
    AdminBind(#[from] AdminBindError),
    /// The root key could not be loaded or made.
    #[error(transparent)]
    RootKey(#[from] root_key::RootKeyError),
}

/// A relay whose sockets are bound, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct Relay {
    endpoint: quinn::Endpoint,
    quic_addr: SocketAddr,
    ws: Vec<ws::WsListener>,
    ws_addr: Option<SocketAddr>,
    ws_plain_addr: Option<SocketAddr>,
    admin: Option<admin::AdminListener>,
    cert_path: PathBuf,
    root_key_path: PathBuf,
    shared: Arc<Shared>,
    /// How this node joins its cluster; `None` for a single node.
    join: Option<nats::Join>,
}

impl Relay {
    /// Validates `config`, loads or makes the certificate, and binds the sockets.
    pub fn bind(config: Config) -> Result<Self, RelayError> {
        config.validate()?;
        let identity =
            certs::load_or_generate(&config.data_dir, config.cert_file.as_deref(), config.key_file.as_deref())?;
        let cert_path = identity.cert_path.clone();
        let root_key = root_key::load_or_generate(&config.data_dir)?;
        let root_key_path = root_key::root_key_path(&config.data_dir);
        let fingerprint = cluster::key_fingerprint(Some(&root_key), &config.keys);
        let mut ws_listeners = Vec::new();
        let mut ws_addr = None;
        if let Some(addr) = config.ws_listen {
            let tls = tls::wss_config(&identity).map_err(EndpointError::Tls)?;
            let listener = ws::bind(addr, Some(tls))?;
            ws_addr = listener.tcp.local_addr().ok();
            ws_listeners.push(listener);
        }
        let mut ws_plain_addr = None;
        if let Some(addr) = config.ws_plain_listen {
            let listener = ws::bind(addr, None)?;
            ws_plain_addr = listener.tcp.local_addr().ok();
            ws_listeners.push(listener);
        }
        let admin = config.admin_listen.map(admin::bind).transpose()?;
        let endpoint = quic::bind(&config, &identity)?;
        let quic_addr =
            endpoint.local_addr().map_err(|source| EndpointError::Bind { addr: config.quic_listen, source })?;
        let join = config.cluster.clone().map(|cluster| {
            let advertised =
                |addr: SocketAddr, scheme: &str| (!addr.ip().is_unspecified()).then(|| format!("{scheme}://{addr}"));
            nats::Join {
                quic_url: cluster.advertise_quic.clone().or_else(|| advertised(quic_addr, "quic")).unwrap_or_default(),
                wss_url: cluster.advertise_wss.clone().or_else(|| ws_addr.and_then(|addr| advertised(addr, "wss"))),
                node: cluster::new_node_id(),
                fingerprint,
                config: cluster,
            }
        });
        Ok(Self {
            join,
            endpoint,
            quic_addr,
            ws: ws_listeners,
            ws_addr,
            ws_plain_addr,
            admin,
            cert_path,
            root_key_path,
            shared: Arc::new(Shared::new(config, Some(root_key))),
        })
    }

    /// The UDP address QUIC listens on (useful when the config asked for port 0).
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The TCP address `wss://` listens on, if enabled.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The TCP address plain `ws://` listens on, if enabled.
    pub fn ws_plain_addr(&self) -> Option<SocketAddr> {
        self.ws_plain_addr
    }

    /// The TCP address of the admin endpoint (`/healthz`, `/readyz`), if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(admin::AdminListener::local_addr)
    }

    /// The certificate file clients should trust.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.cert_path
    }

    /// Live counters of this relay, readable while it runs and after.
    pub fn stats(&self) -> Stats {
        Stats::new(self.shared.clone())
    }

    /// The file holding the `RootManageSharedAccessKey` (a connection string).
    pub fn root_key_path(&self) -> &std::path::Path {
        &self.root_key_path
    }

    /// A handle that changes this relay's configuration while it runs (what `SIGHUP` does to
    /// the `relay-server` binary); usable before and during [`run`](Self::run).
    pub fn reloader(&self) -> Reloader {
        Reloader(self.shared.clone())
    }

    /// In cluster mode, the cluster's name and the QUIC URL this node gives the others (where
    /// their listeners dial for its callers); `None` for a single node.
    pub fn cluster(&self) -> Option<(&str, &str)> {
        self.join.as_ref().map(|join| (join.config.name.as_str(), join.quic_url.as_str()))
    }

    /// Serves until `shutdown` resolves, then drains: no new channels, open ones get the
    /// configured grace period, then every connection closes with a "relay shutting down" code.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self { endpoint, ws, shared, join, admin, .. } = self;
        tracing::info!(quic = %self.quic_addr, wss = ?self.ws_addr, ws = ?self.ws_plain_addr, "relay running");
        let coordinator = async {
            shutdown.await;
            shared.set_phase(Phase::Draining);
            tracing::info!(open_channels = shared.open_channels.load(Ordering::SeqCst), "draining");
            let grace = tokio::time::sleep(shared.live().config.shutdown_grace());
            tokio::pin!(grace);
            while shared.open_channels.load(Ordering::SeqCst) > 0 {
                tokio::select! {
                    () = &mut grace => break,
                    () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                }
            }
            shared.set_phase(Phase::Closing);
            quic::close(&endpoint);
        };
        tokio::join!(
            quic::accept_loop(endpoint.clone(), shared.clone()),
            ws::accept_loop(ws, shared.clone()),
            nats::run(shared.clone(), join),
            admin::serve(admin, shared.clone()),
            memory::give_back(shared.clone()),
            coordinator
        );
        // Closed connections drain for three probe timeouts so peers hear the close; then the port is free.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), endpoint.wait_idle()).await;
        tracing::info!("relay stopped");
    }
}

/// Changes a running relay's configuration: see [`Relay::reloader`].
#[derive(Debug, Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    /// Puts `config` in force with no connection, registration or channel dropped: keys (added,
    /// rotated, removed), per-address options and limits ([`RELOADABLE`]). The settings only a
    /// restart changes ([`RESTART_ONLY`]: listen addresses, TLS files, `data_dir`, windows,
    /// `[cluster]`...) keep their running values and are listed in the answer's
    /// [`need_restart`](ConfigChanges::need_restart). An invalid `config` changes nothing.
    ///
    /// What a reload does not undo: a listener registered with a key since removed keeps its
    /// registration until its next token renewal, which is refused (and ends it); channels open
    /// stay open. Every new open, registration and renewal is decided by the new configuration.
    pub fn reload(&self, config: Config) -> Result<ConfigChanges, ConfigError> {
        self.0.reload(config)
    }
}

/// Binds a relay with `config` and serves until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
    Relay::bind(config)?.run(shutdown).await;
    Ok(())
}
