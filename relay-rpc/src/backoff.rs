//! Exponential backoff with full jitter: the one schedule that hosts reconnecting to a relay and
//! stubs reopening a channel both wait by, with the one source of randomness they jitter with.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// Exponential backoff with full jitter: the `n`-th retry waits a random time in
/// `[0, min(cap, base × 2ⁿ)]`; after `stable` online, the count starts over. Sans-IO.
///
/// ```
/// use std::time::Duration;
/// use relay_rpc::Backoff;
///
/// let backoff = Backoff::default();
/// assert!(backoff.delay(0, u64::MAX) <= Duration::from_secs(1));
/// assert!(backoff.delay(30, u64::MAX) <= Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's longest wait.
    pub base: Duration,
    /// The longest wait of any retry.
    pub cap: Duration,
    /// How long a host must stay online for the retry count to start over.
    pub stable: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to at most 30 s; reset after 60 s online. Full jitter spreads hosts that
    /// lost the same relay at the same moment.
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(30), stable: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (from 0), given a uniformly random `random`.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(random % nanos.saturating_add(1))
    }

    /// The wait before retry number `attempt` (from 0), jittered with the system's randomness.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        self.delay(attempt, random())
    }
}

/// A uniformly random number for jitter, from the system's random source (a fixed value in the
/// unlikely case that source fails: the wait is then not spread, but still bounded).
pub(crate) fn random() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_full_jitter() {
        let b =
            Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), stable: Duration::from_secs(5) };
        assert_eq!(b.delay(0, u64::MAX), Duration::from_nanos(u64::MAX % 100_000_001));
        assert_eq!(b.delay(0, 50_000_000), Duration::from_millis(50));
        assert_eq!(b.delay(3, 800_000_000), Duration::from_millis(800), "100 ms × 2³ = 800 ms ceiling");
        assert_eq!(b.delay(3, 800_000_001), Duration::ZERO, "wraps within the ceiling");
        for attempt in [4, 10, 31, 32, u32::MAX] {
            assert!(b.delay(attempt, u64::MAX) <= Duration::from_secs(1));
        }
        assert_eq!(b.delay(0, 0), Duration::ZERO, "full jitter reaches zero");
    }
}
