//! What the status page shows (`GET /api/status`): every address with its listeners (transport,
//! peer, registered since, open channels), the channels open, and this node's state.

use serde::Serialize;

use crate::state::Shared;

/// The relay now, as `/api/status` gives it.
#[derive(Debug, Serialize)]
pub(super) struct Status {
    /// `ready`, or why not.
    state: &'static str,
    /// The cluster this node is in, if any.
    cluster: Option<String>,
    open_channels: usize,
    addresses: Vec<AddressStatus>,
}

#[derive(Debug, Serialize)]
struct AddressStatus {
    address: String,
    open_channels: usize,
    /// Callers with channels open to it here (their connections).
    callers: usize,
    /// Channels opened over the last minute.
    opened_last_minute: u32,
    listeners: Vec<ListenerStatus>,
}

#[derive(Debug, Serialize)]
struct ListenerStatus {
    id: u64,
    transport: &'static str,
    remote: String,
    /// Unix seconds.
    since: u64,
    open_channels: usize,
}

impl Status {
    pub(super) fn of(shared: &Shared) -> Self {
        let registry = shared.registry();
        let mut addresses: Vec<AddressStatus> = registry
            .addresses()
            .into_iter()
            .map(|address| {
                let listeners: Vec<ListenerStatus> = registry
                    .with_channels(&address)
                    .into_iter()
                    .map(|(id, listener, open_channels)| {
                        let (transport, remote, since) = listener.about();
                        ListenerStatus { id, transport, remote: remote.to_string(), since, open_channels }
                    })
                    .collect();
                let open_channels = listeners.iter().map(|l| l.open_channels).sum();
                let opened_last_minute = shared.metrics.opens_last_minute(&address);
                let callers = shared.callers.of(&address);
                AddressStatus { address, open_channels, callers, opened_last_minute, listeners }
            })
            .collect();
        drop(registry);
        addresses.sort_by(|a, b| a.address.cmp(&b.address));
        Self {
            state: shared.readiness().why_not().unwrap_or("ready"),
            cluster: shared.config.cluster.as_ref().map(|cluster| cluster.name.clone()),
            open_channels: shared.open_channels.load(std::sync::atomic::Ordering::Relaxed),
            addresses,
        }
    }
}
