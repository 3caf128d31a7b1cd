//! Channels opened per address over the last minute, for the status page. Sans-IO: the caller
//! gives the time, in whole seconds.

use std::collections::HashMap;

/// The seconds a rate covers.
const WINDOW: usize = 60;

/// Events per address in one-second buckets over the last [`WINDOW`] seconds.
#[derive(Debug, Default)]
pub(crate) struct MinuteRates {
    addresses: HashMap<String, Window>,
}

#[derive(Debug)]
struct Window {
    buckets: [u32; WINDOW],
    /// The second the newest bucket is for.
    newest: u64,
}

impl Window {
    /// Empties the buckets older than a minute at `now`, making `now`'s the newest.
    fn advance(&mut self, now: u64) {
        if now <= self.newest {
            return;
        }
        let passed = (now - self.newest).min(WINDOW as u64);
        for second in 1..=passed {
            self.buckets[((self.newest + second) % WINDOW as u64) as usize] = 0;
        }
        self.newest = now;
    }

    fn total(&self) -> u32 {
        self.buckets.iter().sum()
    }
}

impl MinuteRates {
    /// Counts one event on `address` at second `now`.
    pub(crate) fn note(&mut self, address: &str, now: u64) {
        if !self.addresses.contains_key(address) {
            // Addresses quiet for a minute go, so that the table holds only those in use.
            self.addresses.retain(|_, window| {
                window.advance(now);
                window.total() > 0
            });
        }
        let window =
            self.addresses.entry(address.to_owned()).or_insert_with(|| Window { buckets: [0; WINDOW], newest: now });
        window.advance(now);
        let bucket = &mut window.buckets[(now % WINDOW as u64) as usize];
        *bucket = bucket.saturating_add(1);
    }

    /// The events on `address` in the minute up to second `now`.
    pub(crate) fn last_minute(&mut self, address: &str, now: u64) -> u32 {
        self.addresses.get_mut(address).map_or(0, |window| {
            window.advance(now);
            window.total()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_minute_and_forgets_the_one_before() {
        let mut rates = MinuteRates::default();
        for second in [1000, 1000, 1010, 1059] {
            rates.note("calc", second);
        }
        assert_eq!(rates.last_minute("calc", 1059), 4);
        assert_eq!(rates.last_minute("calc", 1060), 2, "second 1000 is over a minute ago");
        assert_eq!(rates.last_minute("calc", 1070), 1);
        assert_eq!(rates.last_minute("calc", 5000), 0);
        assert_eq!(rates.last_minute("other", 1000), 0);
    }

    #[test]
    fn quiet_addresses_leave_the_table() {
        let mut rates = MinuteRates::default();
        rates.note("a", 10);
        rates.note("b", 100);
        assert!(!rates.addresses.contains_key("a"), "quiet for a minute");
        assert_eq!(rates.last_minute("b", 100), 1);
    }
}
