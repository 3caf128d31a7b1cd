//! Bounds on handshakes in progress, in total and per source IP, so that a flood of stalled
//! handshakes from one place cannot keep anyone else out; and on the rate at which one caller
//! opens channels, so that a flood of opens and cancellations costs others little.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

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

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Sans-IO: the caller says
/// what time it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { tokens: burst, last: now, rate: f64::from(rate.max(1)), burst }
    }

    /// A bucket for one caller, sized by the relay's configuration.
    pub(crate) fn for_caller(config: &crate::Config, now: Instant) -> Self {
        Self::new(config.channel_opens_per_sec, config.channel_open_burst, now)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Whether the bucket has refilled, so forgetting it changes nothing.
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// One token bucket per source IP, for callers whose every channel is a connection of its own
/// (WebSocket senders). Buckets that have refilled are forgotten once there are many, so the
/// table stays as large as the set of sources that opened channels recently.
#[derive(Debug, Default)]
pub(crate) struct OpenRates(Mutex<HashMap<IpAddr, TokenBucket>>);

/// How many buckets are kept before full ones are swept out.
const SWEEP_ABOVE: usize = 1024;

impl OpenRates {
    /// Takes a token from `ip`'s bucket.
    pub(crate) fn try_take(&self, ip: IpAddr, config: &crate::Config, now: Instant) -> bool {
        let mut buckets = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= SWEEP_ABOVE && !buckets.contains_key(&ip) {
            buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        buckets.entry(ip).or_insert_with(|| TokenBucket::for_caller(config, now)).try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, start);
        assert_eq!((0..20).filter(|_| bucket.try_take(start)).count(), 5, "the burst");
        let later = start + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| bucket.try_take(later)).count(), 5, "10/s for 0.5 s");
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.try_take(much_later)).count(), 5, "never more than the burst");
        assert!(!bucket.try_take(start), "time going backwards adds nothing");
    }

    #[test]
    fn per_ip_buckets_are_apart_and_swept() {
        let config = crate::Config { channel_opens_per_sec: 1, channel_open_burst: 2, ..Default::default() };
        let rates = OpenRates::default();
        let now = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(rates.try_take(a, &config, now) && rates.try_take(a, &config, now));
        assert!(!rates.try_take(a, &config, now), "a's burst is spent");
        assert!(rates.try_take(b, &config, now), "b has its own");
        for n in 0..SWEEP_ABOVE as u32 {
            rates.try_take(IpAddr::from(n.to_be_bytes()), &config, now);
        }
        let later = now + Duration::from_secs(10);
        rates.try_take("10.0.0.3".parse().unwrap(), &config, later);
        assert_eq!(rates.0.lock().unwrap().len(), 1, "refilled buckets are forgotten");
    }

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
