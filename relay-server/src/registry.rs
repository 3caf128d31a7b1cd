//! Which listeners serve which address, and which one gets the next channel. Sans-IO.

use std::collections::HashMap;

use serde::Deserialize;

/// Identifies one registration.
pub type ListenerId = u64;

/// How an address spreads new channels over its listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each listener in turn.
    #[default]
    RoundRobin,
    /// The listener with the fewest open channels; ties in turn.
    LeastOpenChannels,
}

/// Why a listener could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The address has as many listeners as it may.
    #[error("address already has {0} listeners")]
    Full(usize),
}

/// Address → listeners, with a cursor and open-channel counts per address.
#[derive(Debug)]
pub struct Registry<L> {
    addresses: HashMap<String, Rotation<L>>,
    balance: HashMap<String, Balance>,
    next_id: ListenerId,
    max_per_address: usize,
    max_channels_per_listener: usize,
}

#[derive(Debug)]
struct Rotation<L> {
    listeners: Vec<Entry<L>>,
    cursor: usize,
}

#[derive(Debug)]
struct Entry<L> {
    id: ListenerId,
    listener: L,
    open_channels: usize,
}

impl<L: Clone> Registry<L> {
    /// An empty registry allowing `max_per_address` listeners per address, balancing round-robin.
    pub fn new(max_per_address: usize) -> Self {
        Self::with_balance(max_per_address, HashMap::new())
    }

    /// An empty registry with a balancing policy per address (round-robin where none is given).
    pub fn with_balance(max_per_address: usize, balance: HashMap<String, Balance>) -> Self {
        Self { addresses: HashMap::new(), balance, next_id: 1, max_per_address, max_channels_per_listener: usize::MAX }
    }

    /// Skips listeners with `max` open channels when picking.
    pub fn with_max_channels_per_listener(mut self, max: usize) -> Self {
        self.max_channels_per_listener = max;
        self
    }

    /// Changes the limits and the balancing policies, for registrations and picks from now on:
    /// listeners already registered stay, even past a lowered `max_per_address`.
    pub fn set_limits(
        &mut self,
        max_per_address: usize,
        max_channels_per_listener: usize,
        balance: HashMap<String, Balance>,
    ) {
        self.max_per_address = max_per_address;
        self.max_channels_per_listener = max_channels_per_listener;
        self.balance = balance;
    }

    /// Adds a listener to `address`'s rotation.
    pub fn register(&mut self, address: &str, listener: L) -> Result<ListenerId, RegisterError> {
        let rotation =
            self.addresses.entry(address.to_owned()).or_insert_with(|| Rotation { listeners: Vec::new(), cursor: 0 });
        if rotation.listeners.len() >= self.max_per_address {
            return Err(RegisterError::Full(self.max_per_address));
        }
        let id = self.next_id;
        self.next_id += 1;
        rotation.listeners.push(Entry { id, listener, open_channels: 0 });
        Ok(id)
    }

    /// Removes a listener at once; returns whether it was registered.
    pub fn unregister(&mut self, address: &str, id: ListenerId) -> bool {
        let Some(rotation) = self.addresses.get_mut(address) else { return false };
        let Some(index) = rotation.listeners.iter().position(|e| e.id == id) else { return false };
        rotation.listeners.remove(index);
        if index < rotation.cursor {
            rotation.cursor -= 1;
        }
        if rotation.listeners.is_empty() {
            self.addresses.remove(address);
        }
        true
    }

    /// The listener for the next channel on `address`, skipping `exclude` and listeners at their
    /// channel limit, by the address's policy.
    pub fn pick(&mut self, address: &str, exclude: &[ListenerId]) -> Option<(ListenerId, L)> {
        self.pick_where(address, exclude, |_| true)
    }

    /// [`pick`](Self::pick) among the listeners for which `suits` holds.
    pub fn pick_where(
        &mut self,
        address: &str,
        exclude: &[ListenerId],
        suits: impl Fn(&L) -> bool,
    ) -> Option<(ListenerId, L)> {
        let balance = self.balance.get(address).copied().unwrap_or_default();
        let max = self.max_channels_per_listener;
        let rotation = self.addresses.get_mut(address)?;
        let len = rotation.listeners.len();
        // Candidates in turn, starting at the cursor; least-open picks the first with the fewest.
        let candidates = (0..len).map(|k| (rotation.cursor + k) % len).filter(|&i| {
            let entry = &rotation.listeners[i];
            !exclude.contains(&entry.id) && entry.open_channels < max && suits(&entry.listener)
        });
        let index = match balance {
            Balance::RoundRobin => candidates.into_iter().next(),
            Balance::LeastOpenChannels => candidates.min_by_key(|&i| rotation.listeners[i].open_channels),
        }?;
        rotation.cursor = (index + 1) % len;
        let entry = &rotation.listeners[index];
        Some((entry.id, entry.listener.clone()))
    }

    /// Counts a channel as open on a listener.
    pub fn channel_opened(&mut self, address: &str, id: ListenerId) {
        if let Some(entry) = self.entry(address, id) {
            entry.open_channels += 1;
        }
    }

    /// Counts a channel as open on a listener if it is registered and below its channel limit;
    /// whether it was.
    pub fn try_channel_opened(&mut self, address: &str, id: ListenerId) -> bool {
        let max = self.max_channels_per_listener;
        match self.entry(address, id) {
            Some(entry) if entry.open_channels < max => {
                entry.open_channels += 1;
                true
            }
            _ => false,
        }
    }

    /// Counts a channel as closed on a listener (if it is still registered).
    pub fn channel_closed(&mut self, address: &str, id: ListenerId) {
        if let Some(entry) = self.entry(address, id) {
            entry.open_channels = entry.open_channels.saturating_sub(1);
        }
    }

    fn entry(&mut self, address: &str, id: ListenerId) -> Option<&mut Entry<L>> {
        self.addresses.get_mut(address)?.listeners.iter_mut().find(|e| e.id == id)
    }

    /// Whether every listener of `address` is at its channel limit.
    pub fn all_full(&self, address: &str) -> bool {
        self.addresses
            .get(address)
            .is_some_and(|r| r.listeners.iter().all(|e| e.open_channels >= self.max_channels_per_listener))
    }

    /// Whether some listener of `address` suits.
    pub fn any(&self, address: &str, suits: impl Fn(&L) -> bool) -> bool {
        self.addresses.get(address).is_some_and(|r| r.listeners.iter().any(|e| suits(&e.listener)))
    }

    /// Every listener of `address`, in registration order (for multicast).
    pub fn all(&self, address: &str) -> Vec<(ListenerId, L)> {
        self.addresses
            .get(address)
            .map_or_else(Vec::new, |r| r.listeners.iter().map(|e| (e.id, e.listener.clone())).collect())
    }

    /// Every listener of `address` with its open channels, in registration order.
    pub fn with_channels(&self, address: &str) -> Vec<(ListenerId, L, usize)> {
        self.addresses.get(address).map_or_else(Vec::new, |r| {
            r.listeners.iter().map(|e| (e.id, e.listener.clone(), e.open_channels)).collect()
        })
    }

    /// Every address with a listener.
    pub fn addresses(&self) -> Vec<String> {
        self.addresses.keys().cloned().collect()
    }

    /// How many listeners all addresses have together.
    pub fn total(&self) -> usize {
        self.addresses.values().map(|r| r.listeners.len()).sum()
    }

    /// How many listeners `address` has.
    pub fn listeners(&self, address: &str) -> usize {
        self.addresses.get(address).map_or(0, |r| r.listeners.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_and_prompt_removal() {
        let mut registry = Registry::new(3);
        let a = registry.register("calc", 'a').unwrap();
        let b = registry.register("calc", 'b').unwrap();
        let c = registry.register("calc", 'c').unwrap();
        assert_eq!(registry.register("calc", 'd'), Err(RegisterError::Full(3)));
        let picks: String = (0..6).map(|_| registry.pick("calc", &[]).unwrap().1).collect();
        assert_eq!(picks, "abcabc");
        assert!(registry.unregister("calc", b));
        assert!(!registry.unregister("calc", b));
        let picks: String = (0..4).map(|_| registry.pick("calc", &[]).unwrap().1).collect();
        assert_eq!(picks, "acac");
        assert_eq!(registry.pick("calc", &[a]).unwrap().1, 'c');
        assert_eq!(registry.pick("calc", &[a, c]), None);
        assert_eq!(registry.all("calc"), [(a, 'a'), (c, 'c')]);
        registry.unregister("calc", a);
        registry.unregister("calc", c);
        assert!(registry.all("calc").is_empty());
        assert_eq!(registry.pick("calc", &[]), None);
        assert_eq!(registry.listeners("calc"), 0);
        assert_eq!(registry.pick("other", &[]), None);
    }

    #[test]
    fn removing_before_the_cursor_keeps_the_order_fair() {
        let mut registry = Registry::new(8);
        let ids: Vec<_> = "abcd".chars().map(|c| registry.register("x", c).unwrap()).collect();
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'a');
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'b');
        registry.unregister("x", ids[0]);
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'c');
    }

    #[test]
    fn least_open_channels_prefers_the_idlest_and_breaks_ties_in_turn() {
        let mut registry = Registry::with_balance(8, HashMap::from([("x".to_owned(), Balance::LeastOpenChannels)]));
        let a = registry.register("x", 'a').unwrap();
        let b = registry.register("x", 'b').unwrap();
        let c = registry.register("x", 'c').unwrap();
        // All idle: in turn.
        let picks: String = (0..3).map(|_| registry.pick("x", &[]).unwrap().1).collect();
        assert_eq!(picks, "abc");
        for _ in 0..3 {
            registry.channel_opened("x", a);
        }
        registry.channel_opened("x", c);
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'b');
        registry.channel_opened("x", b);
        registry.channel_opened("x", b);
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'c');
        assert_eq!(registry.pick("x", &[c]).unwrap().1, 'b');
        registry.channel_closed("x", a);
        registry.channel_closed("x", a);
        registry.channel_closed("x", a);
        registry.channel_closed("x", a);
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'a', "closing more than opened stays at zero");
        // The default policy elsewhere is round-robin, whatever the counts.
        let d = registry.register("y", 'd').unwrap();
        registry.register("y", 'e').unwrap();
        registry.channel_opened("y", d);
        assert_eq!(registry.pick("y", &[]).unwrap().1, 'd');
    }

    #[test]
    fn listeners_at_their_channel_limit_are_skipped() {
        let mut registry = Registry::new(8).with_max_channels_per_listener(1);
        let a = registry.register("x", 'a').unwrap();
        let b = registry.register("x", 'b').unwrap();
        registry.channel_opened("x", a);
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'b');
        registry.channel_opened("x", b);
        assert_eq!(registry.pick("x", &[]), None);
        assert!(registry.all_full("x"));
        registry.channel_closed("x", a);
        assert!(!registry.all_full("x"));
        assert_eq!(registry.pick("x", &[]).unwrap().1, 'a');
    }
}
