//! The relay's configuration: embedded defaults, a TOML file, command-line overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_proto::auth::Right;

use crate::registry::Balance;
use relay_proto::validate_address;
use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("invalid config {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Everything a relay needs to run. Every field has a default; a TOML file may set any of them.
/// A running relay takes a new one through [`Reloader::reload`](crate::Reloader::reload): the
/// fields in [`RELOADABLE`](crate::RELOADABLE) change at once, those in
/// [`RESTART_ONLY`](crate::RESTART_ONLY) at the next start.
///
/// ```
/// let config: relay_server::Config = toml::from_str(r#"
///     quic_listen = "0.0.0.0:7443"
///     data_dir = "/var/lib/relay"
///     handshake_timeout_ms = 5000
/// "#).unwrap();
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where QUIC listens (UDP). Default `127.0.0.1:7443`.
    pub quic_listen: SocketAddr,
    /// Where WebSocket over TLS (`wss://`, Azure's Hybrid Connections protocol) listens (TCP);
    /// unset for none. Default `127.0.0.1:7443`.
    pub ws_listen: Option<SocketAddr>,
    /// Where plain, unencrypted WebSocket (`ws://`) listens; only when set. Default unset.
    pub ws_plain_listen: Option<SocketAddr>,
    /// Where the admin endpoint (plain HTTP: `/healthz`, `/readyz`, `/metrics`) listens; `"off"` in the
    /// file for none. Bound beyond loopback, it answers only requests carrying a token with the
    /// `manage` right (the `Authorization` header, or `?token=`). Default `127.0.0.1:7080`.
    #[serde(deserialize_with = "address_or_off")]
    pub admin_listen: Option<SocketAddr>,
    /// Where the certificate and keys live; created on first start. Default `./relay-data`.
    pub data_dir: PathBuf,
    /// A PEM certificate chain to serve instead of the generated one.
    pub cert_file: Option<PathBuf>,
    /// The PEM private key for `cert_file`.
    pub key_file: Option<PathBuf>,
    /// How long a connection or stream may take to say what it wants. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// Handshakes in progress at once, per transport (QUIC and WebSocket each have a pool this
    /// large, so a flood on one does not keep the other's clients out); beyond, new ones are
    /// refused at once. A QUIC connection is in its handshake until its first authorized hello
    /// (a connection without one is closed after `handshake_timeout_ms`); a WebSocket until its
    /// request head is read. Past half of the QUIC pool, a client whose address QUIC has not
    /// validated yet is sent a Retry first, so spoofed sources cannot hold slots. Default 4096.
    pub max_pending_handshakes: usize,
    /// The same, per source (an IPv4 address or an IPv6 /64), so one source cannot use them all.
    /// Default 256.
    pub max_pending_handshakes_per_ip: usize,
    /// Connections one source (an IPv4 address or an IPv6 /64) may have open at once: QUIC
    /// connections and TCP connections (each WebSocket sender channel is one) together; beyond,
    /// new ones are refused at once. Default 4096.
    pub max_connections_per_ip: usize,
    /// Channels one caller may open per second, on average: a token bucket per QUIC connection,
    /// and per source IP for WebSocket senders (each of which is a connection of its own). An
    /// open beyond it is refused at once with
    /// [`ErrorCode::RateLimited`](relay_proto::ErrorCode::RateLimited) (HTTP 429), before
    /// any listener hears of it, so a caller flooding opens and cancellations costs the hosts
    /// nothing and the others little. Default 1000.
    pub channel_opens_per_sec: u32,
    /// How many opens a caller may make at once above that rate (the bucket's size). Default 1000.
    pub channel_open_burst: u32,
    /// How long a Hybrid Connections listener may take to open its rendezvous for a sender.
    /// Default 30 s, as in Azure.
    pub rendezvous_timeout_ms: u64,
    /// Keep-alive interval on every connection. Default 2 s.
    pub keep_alive_ms: u64,
    /// A connection silent this long is dead, its listeners unregistered and their callers told.
    /// This bounds how long a killed host (which sends no goodbye) goes unnoticed. Default 8 s.
    pub idle_timeout_ms: u64,
    /// How long open channels may finish after a shutdown signal. Default 10 s.
    pub shutdown_grace_ms: u64,
    /// Listeners one address may have. Default 64.
    pub max_listeners_per_address: usize,
    /// Channels one listener may have open at once; a listener at its limit gets no new ones, and
    /// when all are, callers are refused as busy. Default 10,000.
    pub max_channels_per_listener: usize,
    /// Channels (streams) one connection may have open at once. Default 10,000.
    pub max_channels_per_connection: u32,
    /// Channels senders from one source (an IPv4 address or an IPv6 /64) may have open at once,
    /// over every connection and transport; an open beyond is refused with
    /// [`ErrorCode::RateLimited`](relay_proto::ErrorCode::RateLimited) (HTTP 429). On
    /// `anonymous_senders` addresses this is what bounds a sender. Default 10,000.
    pub max_channels_per_ip: usize,
    /// Channels senders whose tokens one key signed may have open at once, from anywhere; an
    /// open beyond is refused the same way, so one leaked key cannot take every channel.
    /// Default 100,000.
    pub max_channels_per_key: usize,
    /// The largest channel frame (one RPC message, one WebSocket message) bridged between a
    /// QUIC end and a WebSocket end, and the largest WebSocket message. Default 16 MiB.
    pub max_frame_bytes: usize,
    /// Per-stream flow-control window, bounding what the relay buffers per channel. Default 1 MiB.
    pub stream_window_bytes: u32,
    /// Per-connection flow-control window of a QUIC connection, bounding what the relay buffers
    /// for all of its channels together. Until a connection's first authorized hello it is
    /// 256 KiB, whatever this says. Default 16 MiB.
    pub connection_window_bytes: u32,
    /// Bytes of channel messages the whole relay may hold at once: read from one end of a channel
    /// that has a WebSocket end, not yet written on to the other. Each frame is reserved as its
    /// header arrives, before its payload is read; when the budget is spent, channels stop
    /// reading (their peers see TCP or QUIC backpressure) until messages held elsewhere are
    /// written on. A single message larger than the whole budget is refused: its channel is cut
    /// (WebSocket close 1009, QUIC [`StreamCode::ProtocolError`](relay_proto::StreamCode)).
    /// Default 256 MiB.
    pub max_buffered_bytes: usize,
    /// The host names tokens may be signed for (scheme and port are ignored).
    /// Default `localhost`, `127.0.0.1`, `::1`.
    pub hostnames: Vec<String>,
    /// How long past its expiry a token is still accepted, for clock skew. Default 30 s.
    pub clock_skew_secs: u64,
    /// The longest a token may live: one whose expiry is further away than this (plus
    /// `clock_skew_secs`) is refused as malformed, however well signed, so that no token becomes
    /// a standing credential that only rotating its key revokes. Hosts renew theirs before they
    /// expire. Default one week (604,800 s).
    pub max_token_ttl_secs: u64,
    /// Shared access keys, in addition to the generated `RootManageSharedAccessKey`.
    pub keys: Vec<KeyConfig>,
    /// Frames one subscriber of a multicast address may have waiting at the relay; past it (or
    /// past `multicast_queue_bytes`) the subscriber's channel is cut with
    /// [`StreamCode::Overflowed`](relay_proto::StreamCode::Overflowed). Default 1024.
    pub multicast_queue_frames: usize,
    /// Bytes one subscriber of a multicast address may have waiting at the relay (a single frame
    /// larger than this still fits in an empty queue). Default 4 MiB.
    pub multicast_queue_bytes: usize,
    /// How long a listener may take to answer an HTTP-mode request, and may leave a response
    /// body idle, before the sender gets 504 (Azure's fixed 60 s, settable here and per
    /// address). Default 60 s.
    pub http_response_timeout_ms: u64,
    /// Per-address options.
    pub addresses: Vec<AddressConfig>,
    /// Cluster mode: several relay nodes acting as one, coordinated over NATS. Unset (the
    /// default): a single node, no NATS connection.
    pub cluster: Option<ClusterConfig>,
}

/// The `[cluster]` table: how this node joins its cluster.
///
/// Every node of a cluster must accept the same tokens (share one `data_dir`'s root key, or the
/// same `keys`): a node whose keys differ is refused by the others.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS servers, `nats://host:port`; the client moves to another when one fails.
    pub nats: Vec<String>,
    /// The cluster's name: several clusters may share one NATS. Default `default`.
    pub name: String,
    /// This node's public QUIC URL (`quic://host:port`), where hosts dial rendezvous for callers
    /// on this node. Default: `quic://` and the QUIC listen address, unless that is unspecified
    /// (`0.0.0.0`, `::`), which no one can dial.
    pub advertise_quic: Option<String>,
    /// This node's public `wss://` URL. Default: from `ws_listen`, as for `advertise_quic`.
    pub advertise_wss: Option<String>,
    /// How often this node tells the others it is alive. Default 1000 ms.
    pub heartbeat_ms: u64,
    /// A node silent this long leaves the others' views, with its listeners. Default 3000 ms.
    pub node_timeout_ms: u64,
    /// How long a node waits for another node to answer a channel open before it tries
    /// elsewhere or refuses the caller. Default 1000 ms.
    pub open_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: Vec::new(),
            name: "default".into(),
            advertise_quic: None,
            advertise_wss: None,
            heartbeat_ms: 1000,
            node_timeout_ms: 3000,
            open_timeout_ms: 1000,
        }
    }
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: String| Err(ConfigError::Invalid(format!("cluster: {what}")));
        if self.nats.is_empty() {
            return invalid("nats must name at least one server".into());
        }
        for url in &self.nats {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                return invalid(format!("{url:?} is not a NATS server URL"));
            }
        }
        if let Err(e) = relay_proto::cluster::Subjects::new(&self.name) {
            return invalid(e.to_string());
        }
        if self.heartbeat_ms == 0 || self.open_timeout_ms == 0 || self.node_timeout_ms <= self.heartbeat_ms {
            return invalid(
                "heartbeat_ms and open_timeout_ms must be positive, node_timeout_ms above heartbeat_ms".into(),
            );
        }
        for (name, url, scheme) in
            [("advertise_quic", &self.advertise_quic, "quic://"), ("advertise_wss", &self.advertise_wss, "wss://")]
        {
            if let Some(url) = url
                && (!url.starts_with(scheme) || url.len() > relay_proto::MAX_DIAL_URL_LEN)
            {
                return invalid(format!("{name} {url:?} must be a {scheme}host:port URL"));
            }
        }
        Ok(())
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub(crate) fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    pub(crate) fn open_timeout(&self) -> Duration {
        Duration::from_millis(self.open_timeout_ms)
    }
}

/// A named shared access key with its rights.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key's name (`skn` in tokens).
    pub name: String,
    /// The primary key.
    pub primary_key: Secret,
    /// The secondary key, for rotation.
    pub secondary_key: Option<Secret>,
    /// What tokens signed with this key may do: `listen`, `send`, `manage` (all).
    pub rights: Vec<Right>,
    /// The address prefix the key is limited to; everything if unset.
    pub scope: Option<String>,
}

/// Options for one address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressConfig {
    /// The address.
    pub path: String,
    /// Callers need no token here (Azure's `RelayClientAuthenticationType.None`); listeners still do.
    #[serde(default)]
    pub anonymous_senders: bool,
    /// How new channels are spread over the address's listeners: `round_robin` (default) or
    /// `least_open_channels`. Ignored in multicast mode.
    #[serde(default)]
    pub load_balancing: Balance,
    /// `unicast` (default): each channel goes to one listener. `multicast` (WCF's
    /// `NetEventRelayBinding`): every frame a caller (publisher) sends reaches every listener
    /// (subscriber) registered on the address; see [`AddressMode::Multicast`].
    #[serde(default)]
    pub mode: AddressMode,
    /// Hybrid Connections listeners here take HTTP requests (Azure's HTTP mode): a sender's
    /// `https://{relay}/{address}/...` request reaches them as a `request` control message.
    /// Off by default: listeners that predate HTTP mode (`hyco-ws`) fail on such messages.
    /// Hosts that say when they register that they take HTTP requests (this project's, QUIC or
    /// wss) get them as channels whatever this says.
    #[serde(default)]
    pub http: bool,
    /// How long a listener here may take to answer an HTTP request (its `response` message),
    /// and may leave a response body idle, before the sender gets 504; unset for the relay's
    /// `http_response_timeout_ms`.
    #[serde(default)]
    pub http_response_timeout_ms: Option<u64>,
    /// Browser origins (`https://app.example`, scheme, host and port) whose pages may send to
    /// this address: the relay answers their CORS preflights itself, adds the CORS headers to
    /// answers here, and refuses an HTTP request or WebSocket sender whose `Origin` is not listed.
    /// Empty (the default): no CORS, and `Origin` is not checked.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Listed at `GET https://{relay}/$discovery`, with the contract its listeners serve, for
    /// callers whose send token covers it.
    #[serde(default)]
    pub discoverable: bool,
}

/// How an address delivers its callers' traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AddressMode {
    /// Each caller's channel goes to one listener, which answers.
    #[default]
    Unicast,
    /// Publish/subscribe for one-way calls. A caller's channel is accepted at once, even with no
    /// listener; the relay opens one channel to each listener registered then or later, and
    /// copies every frame the caller sends to each of them, in order. Listeners' answers are
    /// discarded, so two-way calls to a multicast address get no answer (they time out): use
    /// `#[oneway]` methods. Each subscriber has its own bounded queue at the relay
    /// (`multicast_queue_frames`, `multicast_queue_bytes`); a subscriber that falls behind it is
    /// cut with [`StreamCode::Overflowed`](relay_proto::StreamCode::Overflowed) (WebSocket
    /// close 1008) and is not sent that caller's traffic again, while the others carry on and
    /// the caller is never slowed. Frames arriving while no listener is registered are dropped.
    Multicast,
}

/// Reads a listen address, or `"off"` for none.
fn address_or_off<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_address_or_off(&text).map_err(serde::de::Error::custom)
}

/// Parses a listen address, or `off` for none: the form `admin_listen` takes in the file and on
/// the command line.
///
/// ```
/// use relay_server::parse_address_or_off;
/// assert_eq!(parse_address_or_off("off").unwrap(), None);
/// assert_eq!(parse_address_or_off("127.0.0.1:7080").unwrap(), Some("127.0.0.1:7080".parse().unwrap()));
/// assert!(parse_address_or_off("7080").is_err());
/// ```
pub fn parse_address_or_off(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| format!("{text:?} is neither an address like 127.0.0.1:7080 nor \"off\""))
}

/// A secret string: `Debug` prints `MASKED`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MASKED")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            quic_listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            ws_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7443))),
            ws_plain_listen: None,
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7080))),
            data_dir: PathBuf::from("relay-data"),
            cert_file: None,
            key_file: None,
            handshake_timeout_ms: 10_000,
            max_pending_handshakes: 4096,
            max_pending_handshakes_per_ip: 256,
            max_connections_per_ip: 4096,
            channel_opens_per_sec: 1000,
            channel_open_burst: 1000,
            rendezvous_timeout_ms: 30_000,
            keep_alive_ms: 2_000,
            idle_timeout_ms: 8_000,
            shutdown_grace_ms: 10_000,
            max_listeners_per_address: 64,
            max_channels_per_listener: 10_000,
            max_channels_per_connection: 10_000,
            max_channels_per_ip: 10_000,
            max_channels_per_key: 100_000,
            stream_window_bytes: 1024 * 1024,
            connection_window_bytes: 16 * 1024 * 1024,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_frame_bytes: relay_proto::DEFAULT_MAX_FRAME,
            hostnames: crate::certs::DEV_CERT_NAMES.iter().map(|s| s.to_string()).collect(),
            clock_skew_secs: 30,
            max_token_ttl_secs: 7 * 24 * 3600,
            keys: Vec::new(),
            multicast_queue_frames: 1024,
            multicast_queue_bytes: 4 * 1024 * 1024,
            http_response_timeout_ms: 60_000,
            addresses: Vec::new(),
            cluster: None,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: Self = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.cert_file.is_some() != self.key_file.is_some() {
            return invalid("cert_file and key_file must be set together");
        }
        if self.handshake_timeout_ms == 0 || self.rendezvous_timeout_ms == 0 {
            return invalid("handshake_timeout_ms and rendezvous_timeout_ms must be positive");
        }
        for address in &self.addresses {
            if let Some(origin) = address.allowed_origins.iter().find(|o| !relay_proto::cors::is_origin(o)) {
                return Err(ConfigError::Invalid(format!(
                    "allowed_origins of {:?}: {origin:?} is not an origin like https://app.example (no path, no *)",
                    address.path
                )));
            }
        }
        if self.http_response_timeout_ms == 0 || self.addresses.iter().any(|a| a.http_response_timeout_ms == Some(0)) {
            return invalid("http_response_timeout_ms must be positive");
        }
        if self.keep_alive_ms == 0 || self.keep_alive_ms >= self.idle_timeout_ms {
            return invalid("keep_alive_ms must be positive and below idle_timeout_ms");
        }
        if self.max_listeners_per_address == 0
            || self.max_channels_per_connection == 0
            || self.max_channels_per_listener == 0
            || self.max_pending_handshakes == 0
            || self.max_pending_handshakes_per_ip == 0
            || self.max_connections_per_ip == 0
            || self.max_channels_per_ip == 0
            || self.max_channels_per_key == 0
            || self.channel_opens_per_sec == 0
            || self.channel_open_burst == 0
            || self.multicast_queue_frames == 0
            || self.multicast_queue_bytes == 0
            || self.max_buffered_bytes == 0
        {
            return invalid("limits must be positive");
        }
        if self.stream_window_bytes < 16 * 1024 {
            return invalid("stream_window_bytes must be at least 16 KiB");
        }
        if self.connection_window_bytes < self.stream_window_bytes {
            return invalid("connection_window_bytes must be at least stream_window_bytes");
        }
        if self.max_token_ttl_secs == 0 {
            return invalid("max_token_ttl_secs must be positive");
        }
        if self.hostnames.is_empty() {
            return invalid("hostnames must name at least one host");
        }
        let mut names = std::collections::HashSet::new();
        for key in &self.keys {
            if key.name.is_empty() || !names.insert(key.name.as_str()) {
                return Err(ConfigError::Invalid(format!("key name {:?} is empty or repeated", key.name)));
            }
            if key.primary_key.expose().is_empty() || key.rights.is_empty() {
                return Err(ConfigError::Invalid(format!("key {:?} needs a primary_key and rights", key.name)));
            }
            if let Some(scope) = &key.scope {
                validate_address(scope).map_err(|e| ConfigError::Invalid(format!("key {:?} scope: {e}", key.name)))?;
            }
        }
        for address in &self.addresses {
            validate_address(&address.path)
                .map_err(|e| ConfigError::Invalid(format!("address {:?}: {e}", address.path)))?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
            if cluster.advertise_quic.is_none() && self.quic_listen.ip().is_unspecified() {
                return invalid("cluster: quic_listen is unspecified (0.0.0.0 or ::): set advertise_quic");
            }
        }
        Ok(())
    }

    /// How often an idle connection or channel end is pinged.
    pub(crate) fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }

    /// How long a peer may go unheard before it is given up.
    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub(crate) fn rendezvous_timeout(&self) -> Duration {
        Duration::from_millis(self.rendezvous_timeout_ms)
    }

    /// How long a listener on `address` may take to answer an HTTP-mode request.
    pub(crate) fn http_response_timeout(&self, address: &str) -> Duration {
        let per_address = self.addresses.iter().find(|a| a.path == address).and_then(|a| a.http_response_timeout_ms);
        Duration::from_millis(per_address.unwrap_or(self.http_response_timeout_ms))
    }

    /// The browser origins allowed on a path whose addresses are `candidates` (longest first):
    /// those of the longest with `allowed_origins`; `None` where CORS is off. Decided before the
    /// sender's token is, so that its refusal can carry the CORS headers a page needs to read it.
    pub(crate) fn allowed_origins(&self, candidates: &[&str]) -> Option<&[String]> {
        candidates.iter().find_map(|candidate| {
            let address = self.addresses.iter().find(|a| a.path == *candidate && !a.allowed_origins.is_empty())?;
            Some(address.allowed_origins.as_slice())
        })
    }

    /// Whether HTTP-mode requests reach the Hybrid Connections listeners of `address`.
    /// The addresses listed at `$discovery`.
    pub(crate) fn discoverable(&self) -> impl Iterator<Item = &str> {
        self.addresses.iter().filter(|a| a.discoverable).map(|a| a.path.as_str())
    }

    pub(crate) fn http_enabled(&self, address: &str) -> bool {
        self.addresses.iter().any(|a| a.path == address && a.http)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests;
