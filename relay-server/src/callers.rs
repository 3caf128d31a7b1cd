//! Who calls each address: the callers with channels open to it, by the remote address of their
//! connection (a QUIC connection carries all its channels; each WebSocket sender is a connection
//! of its own), for the status page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The callers of every address with channels open here.
#[derive(Debug, Default)]
pub(crate) struct Callers(Mutex<HashMap<String, HashMap<SocketAddr, u32>>>);

impl Callers {
    fn table(&self) -> MutexGuard<'_, HashMap<String, HashMap<SocketAddr, u32>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a channel `caller` opened to `address`.
    pub(crate) fn opened(&self, address: &str, caller: SocketAddr) {
        *self.table().entry(address.to_owned()).or_default().entry(caller).or_default() += 1;
    }

    /// Counts one of `caller`'s channels to `address` as closed.
    pub(crate) fn closed(&self, address: &str, caller: SocketAddr) {
        let mut table = self.table();
        let Some(callers) = table.get_mut(address) else { return };
        if let Some(open) = callers.get_mut(&caller) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                callers.remove(&caller);
            }
        }
        if callers.is_empty() {
            table.remove(address);
        }
    }

    /// How many callers have channels open to `address`.
    pub(crate) fn of(&self, address: &str) -> usize {
        self.table().get(address).map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_counts_once_while_any_of_its_channels_is_open() {
        let callers = Callers::default();
        let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.1:5000".parse().unwrap(), "10.0.0.2:6000".parse().unwrap());
        callers.opened("calc", a);
        callers.opened("calc", a);
        callers.opened("calc", b);
        callers.opened("other", a);
        assert_eq!((callers.of("calc"), callers.of("other"), callers.of("none")), (2, 1, 0));
        callers.closed("calc", a);
        assert_eq!(callers.of("calc"), 2, "a still has a channel open");
        callers.closed("calc", a);
        callers.closed("calc", b);
        callers.closed("calc", b);
        assert_eq!(callers.of("calc"), 0);
        assert!(!callers.table().contains_key("calc"), "nothing is kept for an address without callers");
    }
}
