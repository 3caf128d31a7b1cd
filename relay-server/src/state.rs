//! State shared by every connection of a running relay.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use relay_proto::auth::SharedAccessKey;

use tokio::sync::{Notify, watch};

use crate::auth::Policy;
use crate::budget::Budget;
use crate::callers::Callers;
use crate::channel::{End, Relayed, SpliceContext};
use crate::config::{AddressMode, Config, ConfigError};
use crate::exchanges::Exchanges;
use crate::limits::{ChannelQuotas, OpenRates, SlotPool};
use crate::listeners::{HcListener, ListenerHandle};
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::phase::{Phase, RelayPhase};
use crate::registry::{Balance, ListenerId, RegisterError, Registry};
use crate::reload::{self, ConfigChanges};
use crate::rendezvous::RendezvousTable;

/// Whether a relay should be given new work (what `/readyz` tells load balancers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Serving, and (in cluster mode) linked to the other nodes.
    Ready,
    /// Shutting down: its listeners are moving elsewhere.
    Draining,
    /// In cluster mode, not connected to NATS: it serves its own listeners only, so a caller
    /// sent here reaches fewer hosts than one sent to a linked node.
    CutOffFromCluster,
}

impl Readiness {
    /// Why not ready, for a person; `None` when ready.
    pub(crate) fn why_not(self) -> Option<&'static str> {
        match self {
            Self::Ready => None,
            Self::Draining => Some("draining: shutting down"),
            Self::CutOffFromCluster => Some("not connected to the cluster's NATS: serving this node's listeners only"),
        }
    }
}

/// What a reload may change, swapped whole: readers take an `Arc` of it (see [`Shared::live`]).
#[derive(Debug)]
pub(crate) struct Live {
    /// The configuration in force: the last good file's, but for the settings only a restart
    /// changes, which keep their values at start ([`reload::RESTART_ONLY`]).
    pub(crate) config: Config,
    /// Who may do what, from `config`'s keys and addresses and the root key.
    pub(crate) policy: Policy,
    /// Addresses in multicast mode.
    multicast_addresses: HashSet<String>,
    /// The fingerprint of the keys, which the nodes of a cluster compare.
    pub(crate) fingerprint: u64,
}

impl Live {
    fn new(config: Config, root_key: Option<SharedAccessKey>) -> Self {
        let fingerprint = crate::cluster::key_fingerprint(root_key.as_ref(), &config.keys);
        let policy = Policy::new(&config, root_key);
        let multicast_addresses =
            config.addresses.iter().filter(|a| a.mode == AddressMode::Multicast).map(|a| a.path.clone()).collect();
        Self { config, policy, multicast_addresses, fingerprint }
    }

    /// The balancing policy of each address that names one.
    fn balance(&self) -> std::collections::HashMap<String, Balance> {
        self.config.addresses.iter().map(|a| (a.path.clone(), a.load_balancing)).collect()
    }
}

/// What every connection task of one relay sees.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration the relay started with. Read here only the settings a reload cannot
    /// change ([`reload::RESTART_ONLY`]: listen addresses, windows, frame size, timeouts...);
    /// the others are in [`live`](Self::live).
    pub(crate) config: Config,
    /// What a reload may change; locked only to clone or replace the `Arc`.
    live: RwLock<Arc<Live>>,
    /// The root key, which every policy includes.
    root_key: Option<SharedAccessKey>,
    /// One reload at a time.
    reloading: Mutex<()>,
    registry: Mutex<Registry<ListenerHandle>>,
    /// Rendezvous secrets of callers waiting for a Hybrid Connections listener to accept, or for
    /// a listener on another node to dial here.
    pub(crate) rendezvous: RendezvousTable<End>,
    /// HTTP-mode requests waiting for a Hybrid Connections listener's answer.
    pub(crate) exchanges: Exchanges,
    /// Counters for Prometheus.
    pub(crate) metrics: Metrics,
    /// Bytes moved between channel ends so far.
    pub(crate) relayed_bytes: Relayed,
    /// The callers with channels open to each address.
    pub(crate) callers: Callers,
    /// This node's link to the rest of its cluster, once the NATS driver has made it; never set
    /// without a `[cluster]` configuration.
    pub(crate) peers: OnceLock<Arc<Peers>>,
    /// Addresses whose listeners changed since the cluster was last told (cluster mode only).
    cluster_changed: Mutex<BTreeSet<String>>,
    /// Wakes the NATS driver when an address is added to `cluster_changed`.
    pub(crate) cluster_change: Notify,
    phase: RelayPhase,
    pub(crate) open_channels: AtomicUsize,
    pub(crate) next_channel_id: AtomicU64,
    /// QUIC connections before their first authorized hello.
    pub(crate) quic_handshakes: Arc<SlotPool>,
    /// TCP connections before their WebSocket request head is read.
    pub(crate) ws_handshakes: Arc<SlotPool>,
    /// Connections open, QUIC and TCP, per source.
    pub(crate) connections: Arc<SlotPool>,
    /// Channels senders have open, per source and per key.
    pub(crate) channel_quotas: ChannelQuotas,
    /// QUIC Retry packets sent to clients while the handshake pool was under pressure.
    pub(crate) quic_retries: AtomicU64,
    /// Channel-open rates of WebSocket senders, per source.
    pub(crate) open_rates: OpenRates,
    /// Bumped after every listener registration, so multicast publishers pick up new subscribers.
    registrations: watch::Sender<u64>,
    pub(crate) multicast: MulticastCounters,
    /// The relay-wide budget for channel messages in memory (`max_buffered_bytes`).
    pub(crate) budget: Budget,
}

/// What multicast addresses count, for [`Stats`](crate::Stats).
#[derive(Debug, Default)]
pub(crate) struct MulticastCounters {
    /// Subscribers cut because their queue overflowed.
    pub(crate) overflows: AtomicU64,
    /// Bytes waiting in subscribers' queues.
    pub(crate) queued_bytes: Arc<AtomicUsize>,
}

impl Shared {
    pub(crate) fn new(config: Config, root_key: Option<SharedAccessKey>) -> Self {
        let live = Live::new(config.clone(), root_key.clone());
        let registry = Registry::with_balance(config.max_listeners_per_address, live.balance())
            .with_max_channels_per_listener(config.max_channels_per_listener);
        let registry = Mutex::new(registry);
        let (max, per_source) = (config.max_pending_handshakes, config.max_pending_handshakes_per_ip);
        let quic_handshakes = SlotPool::new("quic handshakes", max, per_source);
        let ws_handshakes = SlotPool::new("websocket handshakes", max, per_source);
        let connections = SlotPool::new("connections", usize::MAX, config.max_connections_per_ip);
        let channel_quotas = ChannelQuotas::new(config.max_channels_per_ip, config.max_channels_per_key);
        let budget = Budget::new(config.max_buffered_bytes);
        Self {
            config,
            live: RwLock::new(Arc::new(live)),
            root_key,
            reloading: Mutex::new(()),
            registry,
            rendezvous: RendezvousTable::default(),
            exchanges: Exchanges::default(),
            metrics: Metrics::default(),
            relayed_bytes: Relayed::default(),
            callers: Callers::default(),
            peers: OnceLock::new(),
            cluster_changed: Mutex::default(),
            cluster_change: Notify::new(),
            phase: RelayPhase::new(),
            open_channels: AtomicUsize::new(0),
            next_channel_id: AtomicU64::new(1),
            quic_handshakes,
            ws_handshakes,
            connections,
            channel_quotas,
            quic_retries: AtomicU64::new(0),
            open_rates: OpenRates::new(std::time::Instant::now()),
            registrations: watch::Sender::new(0),
            multicast: MulticastCounters::default(),
            budget,
        }
    }

    /// What a reload may change, as it is now. Cheap (a read lock, held only to clone an `Arc`);
    /// a caller keeps the snapshot it got for one decision, never across a long wait.
    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `file` in force, but for the settings only a restart changes (which keep their
    /// running values and are reported), and returns what changed. Nothing changes if `file` is
    /// invalid. Connections, registrations and channels stay: each sees the new settings at its
    /// next decision (a caller's open, a listener's renewal, a new connection).
    pub(crate) fn reload(&self, file: Config) -> Result<ConfigChanges, ConfigError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        file.validate()?;
        let running = self.live();
        let (next, changes) = reload::plan(&running.config, file);
        next.validate()?;
        let live = Live::new(next, self.root_key.clone());
        let c = &live.config;
        self.quic_handshakes.set_limits(c.max_pending_handshakes, c.max_pending_handshakes_per_ip);
        self.ws_handshakes.set_limits(c.max_pending_handshakes, c.max_pending_handshakes_per_ip);
        self.connections.set_limits(usize::MAX, c.max_connections_per_ip);
        self.channel_quotas.set_limits(c.max_channels_per_ip, c.max_channels_per_key);
        self.registry().set_limits(c.max_listeners_per_address, c.max_channels_per_listener, live.balance());
        let fingerprint = live.fingerprint;
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
        if let Some(peers) = self.peers() {
            // The other nodes refuse this one until they have the same keys: reload them all.
            peers.view().set_fingerprint(fingerprint);
        }
        Ok(changes)
    }

    /// Whether `address` is in multicast mode.
    pub(crate) fn is_multicast(&self, address: &str) -> bool {
        self.live().multicast_addresses.contains(address)
    }

    /// Registers a listener on `address`, and tells whoever follows registrations: multicast
    /// publishers (who open a channel to it) and, in cluster mode, the cluster.
    pub(crate) fn register_listener(
        &self,
        address: &str,
        listener: ListenerHandle,
    ) -> Result<ListenerId, RegisterError> {
        let id = self.registry().register(address, listener)?;
        self.registrations.send_modify(|n| *n = n.wrapping_add(1));
        self.listeners_changed(address);
        Ok(id)
    }

    /// Takes listener `id` off `address`'s rotation, and tells the cluster.
    pub(crate) fn unregister_listener(&self, address: &str, id: ListenerId) {
        self.registry().unregister(address, id);
        self.listeners_changed(address);
    }

    /// Notes that `address` gained or lost a listener, for the cluster to be told (in cluster
    /// mode; otherwise nothing).
    pub(crate) fn listeners_changed(&self, address: &str) {
        if self.config.cluster.is_some() {
            self.cluster_changed.lock().unwrap_or_else(PoisonError::into_inner).insert(address.to_owned());
            self.cluster_change.notify_one();
        }
    }

    /// The addresses noted by [`listeners_changed`](Self::listeners_changed) since the last call.
    pub(crate) fn take_changed(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.cluster_changed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The next Hybrid Connections listener of `address` not `tried` yet, noted in `tried` (QUIC
    /// hosts, and listeners that take HTTP requests as channels, get no `request` messages).
    pub(crate) fn pick_hc_listener(
        &self,
        address: &str,
        tried: &mut Vec<ListenerId>,
    ) -> Option<(ListenerId, HcListener)> {
        let takes_requests = |l: &ListenerHandle| matches!(l, ListenerHandle::Hc(hc) if !hc.http_channels);
        let (id, handle) = self.registry().pick_where(address, tried, takes_requests)?;
        tried.push(id);
        let ListenerHandle::Hc(hc) = handle else { return None };
        Some((id, hc))
    }

    /// Whether a listener of `address` on this node takes HTTP requests as channels.
    pub(crate) fn takes_http_channels(&self, address: &str) -> bool {
        self.registry().any(address, ListenerHandle::takes_http_channels)
    }

    /// Whether HTTP-mode requests may name `address`: HTTP mode is on there for Hybrid
    /// Connections listeners, a listener here takes them as channels, or (in a cluster) another
    /// node has listeners on it, which may.
    pub(crate) fn http_live(&self, address: &str) -> bool {
        self.live().config.http_enabled(address)
            || self.takes_http_channels(address)
            || self.peers().is_some_and(|peers| peers.view().remote_listeners(address) > 0)
    }

    /// This node's link to its cluster, if it is in one and the link is made.
    pub(crate) fn peers(&self) -> Option<&Arc<Peers>> {
        self.peers.get()
    }

    /// Changes each time a listener registers.
    pub(crate) fn registrations(&self) -> watch::Receiver<u64> {
        self.registrations.subscribe()
    }

    /// The registry; held only for a lookup or an update, never across an await.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry<ListenerHandle>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.set(phase);
    }

    /// Resolves once the relay has reached `phase`.
    pub(crate) async fn reached(&self, phase: Phase) {
        self.phase.reached(phase).await
    }

    pub(crate) fn draining(&self) -> bool {
        self.phase.draining()
    }

    /// Whether this relay should be given new work now.
    pub(crate) fn readiness(&self) -> Readiness {
        if self.draining() {
            Readiness::Draining
        } else if self.config.cluster.is_some() && !self.peers().is_some_and(|peers| peers.connected()) {
            Readiness::CutOffFromCluster
        } else {
            Readiness::Ready
        }
    }

    /// What this relay's splices need of it.
    pub(crate) fn splice_context(&self) -> SpliceContext<'_> {
        SpliceContext { config: &self.config, budget: &self.budget, phase: &self.phase, relayed: &self.relayed_bytes }
    }
}

/// Counts a channel with no listener of its own (a multicast publisher) as open while it lives.
pub(crate) struct OpenGuard<'a>(&'a Shared);

impl<'a> OpenGuard<'a> {
    pub(crate) fn new(shared: &'a Shared) -> Self {
        shared.open_channels.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open_channels.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a channel as open, in the relay, on its listener and for its caller, while it lives.
pub(crate) struct ChannelGuard<'a> {
    shared: &'a Shared,
    address: String,
    listener: ListenerId,
    /// The caller's connection, where there is one (a multicast subscriber's channel has none).
    caller: Option<SocketAddr>,
}

impl<'a> ChannelGuard<'a> {
    pub(crate) fn new(shared: &'a Shared, address: &str, listener: ListenerId, caller: SocketAddr) -> Self {
        shared.open_channels.fetch_add(1, Ordering::SeqCst);
        shared.registry().channel_opened(address, listener);
        shared.callers.opened(address, caller);
        Self { shared, address: address.to_owned(), listener, caller: Some(caller) }
    }

    /// Counts a channel as open on `listener` only if it is below its channel limit.
    pub(crate) fn reserve(shared: &'a Shared, address: &str, listener: ListenerId) -> Option<Self> {
        if !shared.registry().try_channel_opened(address, listener) {
            return None;
        }
        shared.open_channels.fetch_add(1, Ordering::SeqCst);
        Some(Self { shared, address: address.to_owned(), listener, caller: None })
    }
}

impl Drop for ChannelGuard<'_> {
    fn drop(&mut self) {
        self.shared.open_channels.fetch_sub(1, Ordering::SeqCst);
        self.shared.registry().channel_closed(&self.address, self.listener);
        if let Some(caller) = self.caller {
            self.shared.callers.closed(&self.address, caller);
        }
    }
}

#[cfg(test)]
mod tests {
    use relay_proto::auth::{Right, sas_token, unix_now};

    use super::*;
    use crate::config::{AddressConfig, KeyConfig, Secret};

    fn key(name: &str) -> KeyConfig {
        KeyConfig {
            name: name.into(),
            primary_key: Secret::new(format!("{name}-secret")),
            secondary_key: None,
            rights: vec![Right::Send],
            scope: None,
        }
    }

    fn sends(shared: &Shared, name: &str, secret: &str) -> bool {
        let token = sas_token("quic://localhost/calc", name, secret, unix_now() + 60);
        shared.live().policy.authorize(Some(&token), Right::Send, "calc", unix_now()).is_ok()
    }

    #[test]
    fn a_reload_swaps_keys_addresses_and_limits_and_keeps_the_root_key() {
        let config = Config { keys: vec![key("b")], ..Config::default() };
        let shared = Shared::new(config.clone(), Some(SharedAccessKey::new("root", "root-secret")));
        assert!(sends(&shared, "b", "b-secret") && !sends(&shared, "c", "c-secret"));
        let file = Config {
            keys: vec![key("c")],
            addresses: vec![AddressConfig {
                path: "events".into(),
                mode: AddressMode::Multicast,
                ..Default::default()
            }],
            max_connections_per_ip: 1,
            max_frame_bytes: 1024,
            ..config
        };
        let changes = shared.reload(file).unwrap();
        assert_eq!(changes.need_restart, ["max_frame_bytes"]);
        assert!(!sends(&shared, "b", "b-secret") && sends(&shared, "c", "c-secret"));
        assert!(sends(&shared, "root", "root-secret"), "the root key stays");
        assert!(shared.is_multicast("events"));
        assert_eq!(shared.live().config.max_frame_bytes, Config::default().max_frame_bytes, "kept until a restart");
        let ip = std::net::IpAddr::from([10, 0, 0, 1]);
        let _first = shared.connections.try_take_ip(ip).expect("one connection");
        assert!(shared.connections.try_take_ip(ip).is_none(), "the new limit is in force");
    }

    #[test]
    fn an_invalid_config_changes_nothing() {
        let shared = Shared::new(Config { keys: vec![key("b")], ..Config::default() }, None);
        let file = Config { keys: vec![key("c")], max_channels_per_ip: 0, ..Config::default() };
        assert!(matches!(shared.reload(file), Err(ConfigError::Invalid(_))));
        assert!(sends(&shared, "b", "b-secret") && !sends(&shared, "c", "c-secret"));
        assert_eq!(shared.live().config.max_channels_per_ip, Config::default().max_channels_per_ip);
    }
}
