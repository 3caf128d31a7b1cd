//! How many streams a peer may have open at once on a QUIC connection, granted as it uses them.
//!
//! quinn allocates a little state, up front, for every stream a peer may open: granting 10,000
//! concurrent streams at the handshake costs each connection about 700 KiB (and slows the
//! handshake), whether it ever opens a second stream or not. A [`StreamGrant`] starts small and
//! doubles once half of the grant is in use by streams that were
//! [authorized](OpenStream::authorize), up to the configured maximum: a peer without a token
//! never gets more than the first grant, however many streams it opens.
//!
//! quinn tells the peer about streams that have closed only once more than an eighth of the
//! limit has closed (to save frames), so on a quiet connection up to an eighth of the limit can
//! stay unannounced, and a peer using every stream it may have would wait for them for ever. The
//! grant therefore allows the peer an eighth more at the QUIC level than it grants, and keeps the
//! limit itself: [`StreamGrant::opened`] turns away a stream over it, for its caller to refuse
//! with a typed error rather than leave the peer waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Streams granted to a peer at first.
const INITIAL: u32 = 32;

/// The streams granted to a connection's peer, and how many of them are open. Clones share one
/// count: a host in a relay cluster counts the rendezvous it dials for other nodes' callers
/// beside the streams its own relay opens, under one maximum.
#[derive(Debug, Clone)]
pub struct StreamGrant {
    state: Arc<GrantState>,
}

#[derive(Debug)]
struct GrantState {
    max: u32,
    /// Streams granted now; changed (and announced to the peer) under its lock only, so that two
    /// growths never announce out of order.
    granted: Mutex<u32>,
    open: AtomicUsize,
    authorized: AtomicUsize,
}

impl StreamGrant {
    /// What a connection whose peer may have at most `max` streams open allows at the QUIC level
    /// at its handshake (the transport configuration's `max_concurrent_bidi_streams`): the first
    /// grant, with its allowance.
    pub fn initial(max: u32) -> u32 {
        allowance(INITIAL.min(max))
    }

    /// A grant of 32 streams (or `max`, if fewer), growing up to `max`.
    pub fn new(max: u32) -> Self {
        let state = GrantState {
            max,
            granted: Mutex::new(INITIAL.min(max)),
            open: AtomicUsize::new(0),
            authorized: AtomicUsize::new(0),
        };
        Self { state: Arc::new(state) }
    }

    /// Counts a stream the peer opened, until the returned guard drops. `None` when `max` streams
    /// are open already: the caller refuses this one. The grant grows only as opened streams
    /// are [authorized](OpenStream::authorize).
    pub fn opened(&self) -> Option<OpenStream> {
        let max = self.state.max as usize;
        let counted =
            self.state.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| (open < max).then_some(open + 1));
        counted.ok().map(|_| OpenStream { state: self.state.clone(), authorized: false })
    }
}

/// A stream counted as open by its [`StreamGrant`] while this lives.
#[derive(Debug)]
pub struct OpenStream {
    state: Arc<GrantState>,
    authorized: bool,
}

impl OpenStream {
    /// Counts this stream as one its peer was entitled to open (its hello was authorized, or the
    /// peer is trusted); doubles the grant once half of it is in such use, calling `announce`
    /// with the concurrent streams to allow the peer at the QUIC level from now on (with quinn:
    /// `Connection::set_max_concurrent_bi_streams`). Growths are announced in order.
    pub fn authorize(&mut self, announce: impl FnOnce(u32)) {
        if std::mem::replace(&mut self.authorized, true) {
            return;
        }
        let authorized = self.state.authorized.fetch_add(1, Ordering::Relaxed) + 1;
        let mut granted = self.state.granted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(grown) = grown(*granted, authorized, self.state.max) {
            *granted = grown;
            announce(allowance(grown));
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.state.open.fetch_sub(1, Ordering::Relaxed);
        if self.authorized {
            self.state.authorized.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The grant after `authorized` streams are in use, if it grows: it doubles once half is used.
fn grown(granted: u32, authorized: usize, max: u32) -> Option<u32> {
    (authorized.saturating_mul(2) >= granted as usize && granted < max).then(|| granted.saturating_mul(2).min(max))
}

/// What to allow the peer at the QUIC level so that `granted` streams are always usable: with up
/// to an eighth of the allowance unannounced, `granted + granted / 7` leaves at least `granted`.
fn allowance(granted: u32) -> u32 {
    granted.saturating_add(granted.div_ceil(7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_leaves_the_grant_usable_with_an_eighth_unannounced() {
        for granted in [1, 2, 7, 8, 32, 64, 1_000, 10_000, 11_000, u32::MAX / 2] {
            let allowed = allowance(granted);
            assert!(allowed - allowed / 8 >= granted, "{granted}: {allowed}");
            assert!(allowed <= granted + granted / 7 + 1, "{granted}: {allowed}");
        }
        assert_eq!(allowance(u32::MAX), u32::MAX);
    }

    #[test]
    fn grows_by_doubling_once_half_is_authorized_up_to_the_max() {
        assert_eq!(grown(32, 15, 10_000), None);
        assert_eq!(grown(32, 16, 10_000), Some(64));
        assert_eq!(grown(8_192, 4_096, 10_000), Some(10_000));
        assert_eq!(grown(10_000, 10_000, 10_000), None);
    }

    #[test]
    fn streams_count_while_open_and_only_up_to_the_max() {
        let grant = StreamGrant::new(2);
        let (a, b) = (grant.opened().unwrap(), grant.opened().unwrap());
        assert!(grant.opened().is_none(), "over the max");
        drop(a);
        let _c = grant.opened().expect("room again");
        drop(b);
        assert_eq!(grant.state.open.load(Ordering::Relaxed), 1);
        assert_eq!(grant.state.authorized.load(Ordering::Relaxed), 0, "none authorized: the grant stays");
    }

    #[test]
    fn clones_share_one_count() {
        let grant = StreamGrant::new(2);
        let shared = grant.clone();
        let _a = grant.opened().unwrap();
        let b = shared.opened().unwrap();
        assert!(grant.opened().is_none() && shared.opened().is_none(), "two open of two, whoever opened them");
        drop(b);
        assert!(grant.opened().is_some());
    }

    #[test]
    fn only_authorized_streams_grow_the_grant_and_each_counts_once() {
        let grant = StreamGrant::new(1_000);
        let mut announced = Vec::new();
        let mut streams: Vec<_> = (0..100).map(|_| grant.opened().expect("under the max")).collect();
        for stream in &mut streams[..15] {
            stream.authorize(|n| announced.push(n));
        }
        streams[0].authorize(|n| announced.push(n));
        assert!(announced.is_empty(), "15 of 32 authorized (one twice): no growth");
        streams[15].authorize(|n| announced.push(n));
        assert_eq!(announced, [allowance(64)]);
        drop(streams);
        assert_eq!(grant.state.authorized.load(Ordering::Relaxed), 0);
    }
}
