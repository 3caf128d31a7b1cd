//! How many streams a peer may have open at once on a QUIC connection, granted as it uses them.
//!
//! quinn allocates a little state, up front, for every stream a peer may open: granting 10,000
//! concurrent streams at the handshake costs each connection about 700 KiB (and slows the
//! handshake), whether it ever opens a second stream or not. A [`StreamGrant`] starts small and
//! doubles once half of the grant is in use, up to the configured maximum.
//!
//! quinn tells the peer about streams that have closed only once more than an eighth of the
//! limit has closed (to save frames), so on a quiet connection up to an eighth of the limit can
//! stay unannounced, and a peer using every stream it may have would wait for them for ever. The
//! grant therefore allows the peer an eighth more at the QUIC level than it grants, and keeps the
//! limit itself: [`StreamGrant::opened`] turns away a stream over it, for its caller to refuse
//! with a typed error rather than leave the peer waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use quinn::VarInt;

/// Streams granted to a peer at first.
const INITIAL: u32 = 32;

/// The streams granted to a connection's peer, and how many of them are open.
#[derive(Debug)]
pub struct StreamGrant {
    granted: u32,
    max: u32,
    open: Arc<AtomicUsize>,
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
        Self { granted: INITIAL.min(max), max, open: Arc::default() }
    }

    /// Counts a stream the peer opened, until the returned guard drops; doubles the grant on
    /// `connection` once half of it is in use. `None` when `max` streams are open already: the
    /// caller refuses this one.
    pub fn opened(&mut self, connection: &quinn::Connection) -> Option<OpenStream> {
        // Only this grant's owner adds; guards dropping elsewhere only lower the count.
        if self.open.load(Ordering::Relaxed) >= self.max as usize {
            return None;
        }
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        if open.saturating_mul(2) >= self.granted as usize && self.granted < self.max {
            self.granted = self.granted.saturating_mul(2).min(self.max);
            connection.set_max_concurrent_bi_streams(VarInt::from_u32(allowance(self.granted)));
        }
        Some(OpenStream(self.open.clone()))
    }
}

/// What to allow the peer at the QUIC level so that `granted` streams are always usable: with up
/// to an eighth of the allowance unannounced, `granted + granted / 7` leaves at least `granted`.
fn allowance(granted: u32) -> u32 {
    granted.saturating_add(granted.div_ceil(7))
}

/// A stream counted as open by its [`StreamGrant`] while this lives.
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
}
