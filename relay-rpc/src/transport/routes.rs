//! Where the channels a relay opens to a host go: one queue per address the host listens on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::incoming::IncomingChannel;

/// The queues of a host's listeners, by address; shared by the host and the task that routes a
/// QUIC connection's incoming streams.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes(Arc<Mutex<HashMap<String, mpsc::Sender<IncomingChannel>>>>);

impl Routes {
    fn table(&self) -> MutexGuard<'_, HashMap<String, mpsc::Sender<IncomingChannel>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Routes `address` to `queue`; `false` (and nothing changes) if it is routed already.
    pub(crate) fn add(&self, address: &str, queue: mpsc::Sender<IncomingChannel>) -> bool {
        let mut table = self.table();
        if table.contains_key(address) {
            return false;
        }
        table.insert(address.to_owned(), queue);
        true
    }

    /// Stops routing `address`.
    pub(crate) fn remove(&self, address: &str) {
        self.table().remove(address);
    }

    /// The queue for `address`, if a listener is there.
    pub(crate) fn get(&self, address: &str) -> Option<mpsc::Sender<IncomingChannel>> {
        self.table().get(address).cloned()
    }

    /// Stops routing everything: the connection is gone.
    pub(crate) fn clear(&self) {
        self.table().clear();
    }
}
