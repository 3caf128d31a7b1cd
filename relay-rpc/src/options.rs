//! How a host or caller connects to a relay: trust, credential, timeouts, limits.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;

use crate::auth::{ProvideError, SasKeyProvider, SharedAccessKey, StaticToken, Token, TokenProvider};
use crate::tls::{QuicTls, TlsError, load_roots};
use crate::url::RelayUrl;
use relay_proto::DEFAULT_MAX_FRAME;

/// Options for connecting to a relay, shared by hosts and callers.
///
/// ```no_run
/// use std::time::Duration;
/// use relay_rpc::ConnectOptions;
///
/// let options = ConnectOptions::new()
///     .trust_pem_file("relay-data/cert.pem")?
///     .with_token("SharedAccessSignature ...")
///     .with_handshake_timeout(Duration::from_secs(5));
/// # Ok::<(), relay_rpc::TlsError>(())
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) tokens: Option<Arc<dyn TokenProvider>>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) keep_alive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_frame: usize,
    pub(crate) max_incoming_channels: u32,
    /// The TLS configurations (and sessions to resume) of QUIC connections; new with new roots.
    pub(crate) quic_tls: QuicTls,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("trusted_certificates", &self.roots.len())
            .field("tokens", &self.tokens)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_frame", &self.max_frame)
            .field("max_incoming_channels", &self.max_incoming_channels)
            .finish()
    }
}

/// How often a connection sends keep-alives by default.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(2);
/// How long a connection waits for a silent relay by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(6);

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            roots: Arc::new(RootCertStore::empty()),
            tokens: None,
            handshake_timeout: Duration::from_secs(10),
            keep_alive: DEFAULT_KEEP_ALIVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
            max_incoming_channels: 10_000,
            quic_tls: QuicTls::default(),
        }
    }
}

impl ConnectOptions {
    /// Default options, trusting no certificate yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts every certificate in the PEM file `path`, e.g. the relay's `relay-data/cert.pem`.
    pub fn trust_pem_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let mut roots = (*self.roots).clone();
        roots.roots.extend(load_roots(path.as_ref())?.roots);
        Ok(self.with_roots(roots))
    }

    /// Trusts the certificates in `roots`.
    pub fn with_roots(mut self, roots: RootCertStore) -> Self {
        self.roots = Arc::new(roots);
        // A session resumed skips the certificate check: none made under other trust carries over.
        self.quic_tls = QuicTls::default();
        self
    }

    /// Presents `token` (a SAS token, e.g. from `--token` or `RELAY_TOKEN`) to the relay when
    /// listening or opening channels. A host cannot renew a fixed token: its listeners end when
    /// it expires. Use [`with_shared_access_key`](Self::with_shared_access_key) or
    /// [`with_token_provider`](Self::with_token_provider) for long-lived hosts.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.with_token_provider(StaticToken::new(token))
    }

    /// Signs a token for each address with `key`, valid for an hour; hosts renew them in time.
    pub fn with_shared_access_key(self, key: SharedAccessKey) -> Self {
        self.with_token_provider(SasKeyProvider::new(key))
    }

    /// Asks `provider` for a token for each address (`{relay url}/{address}`); hosts ask again
    /// before a token expires and renew their registration over the open connection.
    pub fn with_token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.tokens = Some(Arc::new(provider));
        self
    }

    /// The token for `address` on the relay at `url`, if a provider is set.
    pub(crate) fn token_for(&self, url: &RelayUrl, address: &str) -> Result<Option<Token>, ProvideError> {
        self.tokens.as_ref().map(|p| p.token(&format!("{url}/{address}"))).transpose()
    }

    /// Bounds the connection handshake and every channel handshake (default 10 s); over
    /// WebSocket, every TCP, TLS and HTTP upgrade handshake, a sender's wait for a listener
    /// included.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sends keep-alives this often (default 2 s) and gives up on a silent relay after
    /// `idle_timeout` (default 6 s: three keep-alives lost in a row). Over QUIC they are the
    /// connection's; over WebSocket every listener's control channel and every channel pings the
    /// relay. A relay that dies without a word (killed, its machine gone) is noticed after
    /// `idle_timeout`: a host serving with [`Host::serve_online`](crate::Host::serve_online)
    /// moves to another relay of its list then, so the defaults let a killed cluster node's hosts
    /// be callable again within 10 s. Raise them for links that go quiet for longer.
    pub fn with_keep_alive(mut self, keep_alive: Duration, idle_timeout: Duration) -> Self {
        self.keep_alive = keep_alive;
        self.idle_timeout = idle_timeout;
        self
    }

    /// Refuses channel frames (single RPC messages; over WebSocket, single messages) larger than
    /// `max` bytes (default 16 MiB).
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.max_frame = max;
        self
    }

    /// How many channels a host lets the relay have open to it at once (default 10,000); the
    /// host refuses one more as busy, and the relay tells its caller.
    pub fn with_max_incoming_channels(mut self, max: u32) -> Self {
        self.max_incoming_channels = max;
        self
    }
}
