//! State shared by every connection of a running relay.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use quinn::Connection;

use crate::auth::Policy;
use crate::config::Config;
use crate::registry::Registry;

/// What every connection task of one relay sees.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) policy: Policy,
    registry: Mutex<Registry<Connection>>,
    /// Set on shutdown: no new listeners or channels.
    pub(crate) draining: AtomicBool,
    pub(crate) open_channels: AtomicUsize,
    pub(crate) next_channel_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: Config, policy: Policy) -> Self {
        let registry = Mutex::new(Registry::new(config.max_listeners_per_address));
        Self {
            config,
            policy,
            registry,
            draining: AtomicBool::new(false),
            open_channels: AtomicUsize::new(0),
            next_channel_id: AtomicU64::new(1),
        }
    }

    /// The registry; held only for a lookup or an update, never across an await.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry<Connection>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a channel as open while it lives.
pub(crate) struct ChannelGuard<'a>(&'a Shared);

impl<'a> ChannelGuard<'a> {
    pub(crate) fn new(shared: &'a Shared) -> Self {
        shared.open_channels.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for ChannelGuard<'_> {
    fn drop(&mut self) {
        self.0.open_channels.fetch_sub(1, Ordering::SeqCst);
    }
}
