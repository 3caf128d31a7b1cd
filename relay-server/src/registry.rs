//! Which listeners serve which address, and which one gets the next channel. Sans-IO.

use std::collections::HashMap;

/// Identifies one registration.
pub type ListenerId = u64;

/// Why a listener could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The address has as many listeners as it may.
    #[error("address already has {0} listeners")]
    Full(usize),
}

/// Address → listeners, with a round-robin cursor per address.
#[derive(Debug)]
pub struct Registry<L> {
    addresses: HashMap<String, Rotation<L>>,
    next_id: ListenerId,
    max_per_address: usize,
}

#[derive(Debug)]
struct Rotation<L> {
    listeners: Vec<(ListenerId, L)>,
    cursor: usize,
}

impl<L: Clone> Registry<L> {
    /// An empty registry allowing `max_per_address` listeners per address.
    pub fn new(max_per_address: usize) -> Self {
        Self { addresses: HashMap::new(), next_id: 1, max_per_address }
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
        rotation.listeners.push((id, listener));
        Ok(id)
    }

    /// Removes a listener at once; returns whether it was registered.
    pub fn unregister(&mut self, address: &str, id: ListenerId) -> bool {
        let Some(rotation) = self.addresses.get_mut(address) else { return false };
        let Some(index) = rotation.listeners.iter().position(|(l, _)| *l == id) else { return false };
        rotation.listeners.remove(index);
        if index < rotation.cursor {
            rotation.cursor -= 1;
        }
        if rotation.listeners.is_empty() {
            self.addresses.remove(address);
        }
        true
    }

    /// The next listener on `address`, round-robin, skipping `exclude`.
    pub fn pick(&mut self, address: &str, exclude: &[ListenerId]) -> Option<(ListenerId, L)> {
        let rotation = self.addresses.get_mut(address)?;
        let len = rotation.listeners.len();
        for _ in 0..len {
            let index = rotation.cursor % len;
            rotation.cursor = (index + 1) % len;
            let (id, listener) = &rotation.listeners[index];
            if !exclude.contains(id) {
                return Some((*id, listener.clone()));
            }
        }
        None
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
        registry.unregister("calc", a);
        registry.unregister("calc", c);
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
}
