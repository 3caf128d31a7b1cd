//! Bounds per source of traffic: slots in a pool (handshakes in progress, connections open),
//! in total and per source, so that a flood from one place cannot keep anyone else out; and the
//! rate at which one caller opens channels, so that a flood of opens and cancellations costs
//! others little. Sans-IO but for the locks: callers say what time it is.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::Config;

/// Where traffic comes from, for limits per source: an IPv4 address, or an IPv6 /64. One machine
/// commonly holds a whole /64, so limits per IPv6 address would limit nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    /// The source `ip` belongs to (an IPv4-mapped IPv6 address is its IPv4 address).
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX)))),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Counts of slots held, in total and per holder.
#[derive(Debug)]
struct SlotCounts<K> {
    total: usize,
    per_holder: HashMap<K, usize>,
}

impl<K: Hash + Eq> SlotCounts<K> {
    /// Takes a slot for `holder` unless a limit is reached.
    fn try_take(&mut self, holder: K, max_total: usize, max_per_holder: usize) -> bool {
        let of_holder = self.per_holder.get(&holder).copied().unwrap_or(0);
        if self.total >= max_total || of_holder >= max_per_holder {
            return false;
        }
        self.per_holder.insert(holder, of_holder + 1);
        self.total += 1;
        true
    }

    /// Gives back a slot of `holder`.
    fn give_back(&mut self, holder: &K) {
        if let Some(of_holder) = self.per_holder.get_mut(holder) {
            *of_holder -= 1;
            self.total -= 1;
            if *of_holder == 0 {
                self.per_holder.remove(holder);
            }
        }
    }
}

/// A bounded pool of slots shared by every connection or channel of one kind (QUIC handshakes,
/// WebSocket handshakes, connections open, channels per key): at most `max_total` taken, at most
/// `max_per_holder` by one holder (a [`Source`], a key's name).
#[derive(Debug)]
pub(crate) struct SlotPool<K = Source> {
    what: &'static str,
    /// Limits a reload may change: slots already taken stay taken, new ones see the new limits.
    max_total: AtomicUsize,
    max_per_holder: AtomicUsize,
    counts: Mutex<SlotCounts<K>>,
}

impl<K: Hash + Eq + Clone + std::fmt::Debug> SlotPool<K> {
    pub(crate) fn new(what: &'static str, max_total: usize, max_per_holder: usize) -> Arc<Self> {
        let counts = Mutex::new(SlotCounts { total: 0, per_holder: HashMap::new() });
        let (max_total, max_per_holder) = (AtomicUsize::new(max_total), AtomicUsize::new(max_per_holder));
        Arc::new(Self { what, max_total, max_per_holder, counts })
    }

    /// Changes the limits; slots already taken stay taken (a lowered limit refuses new ones until
    /// enough are given back).
    pub(crate) fn set_limits(&self, max_total: usize, max_per_holder: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_holder.store(max_per_holder, Ordering::Relaxed);
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, SlotCounts<K>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for `holder`, if the limits allow one; given back when dropped.
    pub(crate) fn try_take(self: &Arc<Self>, holder: K) -> Option<Slot<K>> {
        let (max_total, max_per_holder) =
            (self.max_total.load(Ordering::Relaxed), self.max_per_holder.load(Ordering::Relaxed));
        if !self.counts().try_take(holder.clone(), max_total, max_per_holder) {
            tracing::debug!(?holder, what = self.what, "over the limit; refusing");
            return None;
        }
        Some(Slot { pool: self.clone(), holder })
    }

    /// Whether at least half of the pool is taken.
    pub(crate) fn under_pressure(&self) -> bool {
        self.counts().total.saturating_mul(2) >= self.max_total.load(Ordering::Relaxed)
    }

    /// Slots taken now.
    pub(crate) fn taken(&self) -> usize {
        self.counts().total
    }
}

impl SlotPool<Source> {
    /// A slot for the source of `ip`, if the limits allow one.
    pub(crate) fn try_take_ip(self: &Arc<Self>, ip: IpAddr) -> Option<Slot<Source>> {
        self.try_take(Source::of(ip))
    }
}

/// A slot of a [`SlotPool`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot<K: Hash + Eq + Clone + std::fmt::Debug = Source> {
    pool: Arc<SlotPool<K>>,
    holder: K,
}

impl<K: Hash + Eq + Clone + std::fmt::Debug> Drop for Slot<K> {
    fn drop(&mut self) {
        self.pool.counts().give_back(&self.holder);
    }
}

/// The channels senders have open, counted per source and per signing key, so that one place or
/// one leaked key cannot hold the relay's every channel (on `anonymous_senders` addresses the
/// source is the only bound).
#[derive(Debug)]
pub(crate) struct ChannelQuotas {
    per_source: Arc<SlotPool<Source>>,
    per_key: Arc<SlotPool<String>>,
}

/// A sender's channel, counted against its source and its key while this lives.
#[derive(Debug)]
pub(crate) struct ChannelQuota {
    _source: Slot<Source>,
    _key: Option<Slot<String>>,
}

impl ChannelQuotas {
    pub(crate) fn new(max_per_source: usize, max_per_key: usize) -> Self {
        Self {
            per_source: SlotPool::new("channels per source", usize::MAX, max_per_source),
            per_key: SlotPool::new("channels per key", usize::MAX, max_per_key),
        }
    }

    /// Changes the limits for channels opened from now on.
    pub(crate) fn set_limits(&self, max_per_source: usize, max_per_key: usize) {
        self.per_source.set_limits(usize::MAX, max_per_source);
        self.per_key.set_limits(usize::MAX, max_per_key);
    }

    /// Counts a channel from `ip` signed with `key`, or says which limit it is over.
    pub(crate) fn try_take(&self, ip: IpAddr, key: Option<&str>) -> Result<ChannelQuota, &'static str> {
        let source = self.per_source.try_take_ip(ip).ok_or("too many channels open from this source")?;
        let key = match key {
            Some(key) => Some(self.per_key.try_take(key.to_owned()).ok_or("too many channels open with this key")?),
            None => None,
        };
        Ok(ChannelQuota { _source: source, _key: key })
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
    pub(crate) fn for_caller(config: &Config, now: Instant) -> Self {
        Self::new(config.channel_opens_per_sec, config.channel_open_burst, now)
    }

    /// How long an untouched bucket takes to fill up from empty; past it, forgetting the bucket
    /// changes nothing.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.rate)
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
}

/// One token bucket per source, for callers whose every channel is a connection of its own
/// (WebSocket senders). Buckets expire by time, in two generations: every refill time the older
/// generation is forgotten whole and the newer one becomes older. A bucket untouched for a
/// whole generation has refilled, so forgetting it changes nothing, and no request ever pays
/// for a sweep of the others.
#[derive(Debug)]
pub(crate) struct OpenRates(Mutex<Generations>);

#[derive(Debug)]
struct Generations {
    current: HashMap<Source, TokenBucket>,
    previous: HashMap<Source, TokenBucket>,
    started: Instant,
}

impl OpenRates {
    pub(crate) fn new(now: Instant) -> Self {
        Self(Mutex::new(Generations { current: HashMap::new(), previous: HashMap::new(), started: now }))
    }

    /// Takes a token from the bucket of `ip`'s source.
    pub(crate) fn try_take(&self, ip: IpAddr, config: &Config, now: Instant) -> bool {
        let source = Source::of(ip);
        let mut generations = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = TokenBucket::for_caller(config, now);
        if now.saturating_duration_since(generations.started) >= fresh.refill_time() {
            let current = std::mem::take(&mut generations.current);
            generations.previous = current;
            generations.started = now;
        }
        let bucket = match generations.previous.remove(&source) {
            Some(bucket) => generations.current.entry(source).or_insert(bucket),
            None => generations.current.entry(source).or_insert(fresh),
        };
        bucket.try_take(now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.0.lock().unwrap();
        generations.current.len() + generations.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn per_source_buckets_are_apart_and_expire_by_time() {
        let config = Config { channel_opens_per_sec: 1, channel_open_burst: 2, ..Default::default() };
        let now = Instant::now();
        let rates = OpenRates::new(now);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(rates.try_take(a, &config, now) && rates.try_take(a, &config, now));
        assert!(!rates.try_take(a, &config, now), "a's burst is spent");
        assert!(rates.try_take(b, &config, now), "b has its own");
        for n in 0..5000u32 {
            rates.try_take(IpAddr::from(n.to_be_bytes()), &config, now);
        }
        assert_eq!(rates.len(), 5002, "no sweep while the generation lasts");
        // A bucket spent just before a generation ends is remembered in the next one...
        let end_of_first = now + Duration::from_millis(1900);
        while rates.try_take(b, &config, end_of_first) {}
        let next = now + Duration::from_millis(2100);
        assert!(!rates.try_take(b, &config, next), "b is still spent after the rotation (0.2 tokens)");
        // ...and the untouched ones are forgotten one generation later.
        let much_later = next + Duration::from_millis(2100);
        rates.try_take("10.0.0.3".parse().unwrap(), &config, much_later);
        assert_eq!(rates.len(), 2, "b and 10.0.0.3 only");
    }

    #[test]
    fn ipv6_sources_are_slash_64s_and_mapped_ipv4_is_ipv4() {
        let a = Source::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, Source::of("2001:db8:1:2:ffff:1:2:3".parse().unwrap()));
        assert_ne!(a, Source::of("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(Source::of("::ffff:10.0.0.1".parse().unwrap()), Source::of("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn pools_limit_per_source_and_in_total() {
        let pool = SlotPool::<Source>::new("test", 3, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let a1 = pool.try_take_ip(a).unwrap();
        let _a2 = pool.try_take_ip(a).unwrap();
        assert!(pool.try_take_ip(a).is_none(), "per-source limit");
        assert!(pool.under_pressure());
        let _b1 = pool.try_take_ip(b).unwrap();
        assert!(pool.try_take_ip(c).is_none(), "total limit");
        drop(a1);
        let c1 = pool.try_take_ip(c).unwrap();
        drop(c1);
        assert_eq!(pool.taken(), 2);
        let v6 = SlotPool::<Source>::new("test", 10, 1);
        let _x = v6.try_take_ip("2001:db8::1".parse().unwrap()).unwrap();
        assert!(v6.try_take_ip("2001:db8::2".parse().unwrap()).is_none(), "the same /64");
    }

    #[test]
    fn channel_quotas_count_per_source_and_per_key() {
        let quotas = ChannelQuotas::new(2, 3);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let held = [quotas.try_take(a, Some("k")).unwrap(), quotas.try_take(a, None).unwrap()];
        assert!(quotas.try_take(a, Some("other")).is_err(), "a's two are used");
        let _b = quotas.try_take(b, Some("k")).unwrap();
        let _c = quotas.try_take(c, Some("k")).unwrap();
        assert_eq!(quotas.try_take(c, Some("k")).unwrap_err(), "too many channels open with this key");
        assert!(quotas.try_take(c, None).is_ok(), "anonymous: the source's bound only");
        drop(held);
        assert!(quotas.try_take(a, Some("other")).is_ok());
    }
}
