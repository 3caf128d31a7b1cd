//! How many streams a peer may have open at once on a QUIC connection, granted as it uses them.
//!
//! quinn allocates a little state, up front, for every stream a peer may open: granting 10,000
//! concurrent streams at the handshake costs each connection about 700 KiB (and slows the
//! handshake), whether it ever opens a second stream or not. A [`StreamGrant`] starts small and
//! doubles once half of the grant is in use, up to the configured maximum.

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
    /// What a connection whose peer may have at most `max` streams open grants at its handshake
    /// (the transport configuration's `max_concurrent_bidi_streams`).
    pub fn initial(max: u32) -> u32 {
        INITIAL.min(max)
    }

    /// A grant of [`initial`](Self::initial)`(max)`, growing up to `max`.
    pub fn new(max: u32) -> Self {
        Self { granted: Self::initial(max), max, open: Arc::default() }
    }

    /// Counts a stream the peer opened, until the returned guard drops; doubles the grant on
    /// `connection` once half of it is in use.
    pub fn opened(&mut self, connection: &quinn::Connection) -> OpenStream {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        if open.saturating_mul(2) >= self.granted as usize && self.granted < self.max {
            self.granted = self.granted.saturating_mul(2).min(self.max);
            connection.set_max_concurrent_bi_streams(VarInt::from_u32(self.granted));
        }
        OpenStream(self.open.clone())
    }
}

/// A stream counted as open by its [`StreamGrant`] while this lives.
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
