//! Bounds on handshakes in progress, in total and per source IP, so that a flood of stalled
//! handshakes from one place cannot keep anyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::state::Shared;

/// Counts of handshakes in progress.
#[derive(Debug, Default)]
pub(crate) struct HandshakeCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl HandshakeCounts {
    /// Takes a slot for `ip` unless a limit is reached.
    pub(crate) fn try_take(&mut self, ip: IpAddr, max_total: usize, max_per_ip: usize) -> bool {
        let of_ip = self.per_ip.entry(ip).or_default();
        if self.total >= max_total || *of_ip >= max_per_ip {
            if *of_ip == 0 {
                self.per_ip.remove(&ip);
            }
            return false;
        }
        *of_ip += 1;
        self.total += 1;
        true
    }

    /// Gives back a slot of `ip`.
    pub(crate) fn give_back(&mut self, ip: IpAddr) {
        if let Some(of_ip) = self.per_ip.get_mut(&ip) {
            *of_ip -= 1;
            self.total -= 1;
            if *of_ip == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// A handshake slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct HandshakePermit {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl HandshakePermit {
    /// A slot for a handshake from `ip`, if the limits allow one.
    pub(crate) fn try_new(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let config = &shared.config;
        let taken =
            shared.handshakes().try_take(ip, config.max_pending_handshakes, config.max_pending_handshakes_per_ip);
        if !taken {
            tracing::debug!(%ip, "too many handshakes in progress; refusing");
            return None;
        }
        Some(Self { shared: shared.clone(), ip })
    }
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        self.shared.handshakes().give_back(self.ip);
    }
}

/// The counts behind a lock held for an update only.
#[derive(Debug, Default)]
pub(crate) struct Handshakes(Mutex<HandshakeCounts>);

impl Handshakes {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HandshakeCounts> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_ip_and_in_total() {
        let mut counts = HandshakeCounts::default();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        assert!(counts.try_take(a, 3, 2));
        assert!(counts.try_take(a, 3, 2));
        assert!(!counts.try_take(a, 3, 2), "per-ip limit");
        assert!(counts.try_take(b, 3, 2));
        assert!(!counts.try_take(c, 3, 2), "total limit");
        counts.give_back(a);
        assert!(counts.try_take(c, 3, 2));
        counts.give_back(a);
        counts.give_back(b);
        counts.give_back(c);
        counts.give_back(c); // more than taken: ignored
        assert_eq!(counts.total, 0);
        assert!(counts.per_ip.is_empty());
    }
}
