//! The relay-wide budget for channel messages in memory, and the metered byte stream under each
//! channel end that draws on it and notes when the end was last heard from.
//!
//! A message counts from the moment its first byte is read until the splice has written it on
//! (flushed it to the other end's socket or QUIC stream). Reads reserve before they read: the
//! whole rest of a frame once its header has passed ([`framing`]), or one read's worth between
//! frames. When the budget is spent, a reader waits (its peer sees TCP or QUIC backpressure)
//! rather than allocating; a frame larger than the whole budget can never be reserved and is
//! refused at its header instead of waiting forever.

mod framing;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

pub(crate) use framing::{Framing, Prefixed, WsFraming};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

/// Bytes reserved for one read between frames: as much as the WebSocket reader asks for at once
/// (its read buffer, 4 KiB); the unused part goes back after the read.
const READ_CHUNK: usize = 4 * 1024;

/// The most one read takes from a length-prefixed stream: larger reads would only zero more of
/// the reader's buffer per call.
const MAX_READ: usize = 64 * 1024;

/// The bytes of channel messages the relay may hold at once. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    /// A budget of `bytes` (at most 4 GiB: a reservation is counted in a `u32`).
    pub(crate) fn new(bytes: usize) -> Self {
        let total = bytes.min(u32::MAX as usize).min(Semaphore::MAX_PERMITS);
        Self { semaphore: Arc::new(Semaphore::new(total)), total }
    }

    /// Bytes not held by any channel now.
    pub(crate) fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Bytes held by channels now.
    pub(crate) fn held(&self) -> usize {
        self.total.saturating_sub(self.available())
    }

    /// Holds `bytes` more for `held` (an HTTP-mode body being buffered), waiting while the budget
    /// is spent elsewhere; `false`, at once, when they would take the holder past the whole
    /// budget. The holder bounds the wait.
    pub(crate) async fn hold_more(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> bool {
        let holding = held.as_ref().map_or(0, |permit| permit.num_permits());
        if bytes == 0 {
            return true;
        }
        if holding.saturating_add(bytes) > self.total {
            return false;
        }
        let Ok(permit) = self.semaphore.clone().acquire_many_owned(bytes as u32).await else { return false };
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        true
    }
}

/// Why a metered read failed on its own account.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MeterError {
    /// A frame declared more bytes than the whole budget.
    #[error("a frame of {declared} bytes is larger than the relay's buffer budget of {budget} bytes")]
    TooLarge {
        /// What the frame declared.
        declared: u64,
        /// The whole budget.
        budget: usize,
    },
}

/// What a channel end's metered stream and the splice reading it share: the budget's accounts
/// behind a lock (taken once per read and once or twice per message), and when the peer was
/// last heard from in atomics, so that noting it costs no lock on every read and write.
#[derive(Debug)]
pub(crate) struct Meter {
    state: Mutex<MeterState>,
    liveness: Liveness,
}

/// When an end's peer was last heard from, and whether the relay is reading it at all.
#[derive(Debug)]
struct Liveness {
    /// What `heard` counts from.
    base: Instant,
    /// Nanoseconds from `base` to when the peer last proved alive.
    heard: AtomicU64,
    /// Waiting for budget: the peer is not silent, the relay is not reading it.
    waiting: AtomicBool,
    /// Not being read: the splice is writing what it read to the other end.
    paused: AtomicBool,
}

impl Liveness {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            heard: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        }
    }

    /// The peer proved alive just now.
    fn heard_now(&self) {
        let since = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.heard.store(since, Ordering::Relaxed);
    }

    fn last_heard(&self) -> Option<Instant> {
        if self.waiting.load(Ordering::Relaxed) || self.paused.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.base + std::time::Duration::from_nanos(self.heard.load(Ordering::Relaxed)))
    }
}

#[derive(Debug)]
struct MeterState {
    framing: Framing,
    /// Bytes read so far: the stream position.
    read_total: u64,
    /// Bytes before this position have been given back to the budget.
    released: u64,
    /// Reserved ahead of reading, not yet read.
    prepaid: usize,
    /// Exactly `prepaid + (read_total - released)` permits (none without a budget).
    held: Option<OwnedSemaphorePermit>,
    /// Where the units read but not yet yielded by the reader above end, in order.
    ends: VecDeque<u64>,
    /// Where the last unit the reader yielded ends: released once it has been written on.
    delivered: u64,
    refused: bool,
}

impl MeterState {
    fn hold(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
    }

    /// Gives `n` held permits back.
    fn give_back(&mut self, n: usize) {
        if n > 0
            && let Some(held) = &mut self.held
        {
            drop(held.split(n));
        }
    }

    /// Gives back what is prepaid beyond what the unit in progress has committed to.
    fn trim(&mut self) {
        let keep = usize::try_from(self.framing.committed()).unwrap_or(usize::MAX);
        if self.prepaid > keep {
            let excess = self.prepaid - keep;
            self.give_back(excess);
            self.prepaid = keep;
        }
    }

    fn release_to(&mut self, upto: u64) {
        let upto = upto.min(self.read_total);
        if upto > self.released {
            let n = usize::try_from(upto - self.released).unwrap_or(usize::MAX);
            self.give_back(n);
            self.released = upto;
        }
    }
}

impl Meter {
    fn new(framing: Framing) -> Self {
        Self {
            state: Mutex::new(MeterState {
                framing,
                read_total: 0,
                released: 0,
                prepaid: 0,
                held: None,
                ends: VecDeque::new(),
                delivered: 0,
                refused: false,
            }),
            liveness: Liveness::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader above yielded its next unit: it is held until [`release_delivered`](Self::release_delivered).
    pub(crate) fn unit_yielded(&self) {
        let mut state = self.lock();
        if let Some(end) = state.ends.pop_front() {
            state.delivered = end;
        }
    }

    /// Everything yielded so far has been written on: its bytes go back to the budget.
    pub(crate) fn release_delivered(&self) {
        let mut state = self.lock();
        let delivered = state.delivered;
        state.release_to(delivered);
    }

    /// Whether a read failed because a frame was larger than the whole budget.
    pub(crate) fn refused(&self) -> bool {
        self.lock().refused
    }

    /// When the peer last proved alive (bytes from it, or progress writing to it after a blocked
    /// write); `None` while the relay is not reading it (for want of budget, or while it writes
    /// what it read to the other end, which may be slow): silence then says nothing of the peer.
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        self.liveness.last_heard()
    }

    /// The relay stops reading this end for a while (see [`last_heard`](Self::last_heard)).
    pub(crate) fn pause(&self) {
        self.liveness.paused.store(true, Ordering::Relaxed);
    }

    /// The relay reads this end again: its silence counts from now.
    pub(crate) fn resume(&self) {
        if self.liveness.paused.swap(false, Ordering::Relaxed) {
            self.liveness.heard_now();
        }
    }

    /// Bytes this end holds from the budget now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// A byte stream that reserves budget before reading (when given one) and notes when its peer
/// was last heard from.
pub(crate) struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
    budget: Option<(PollSemaphore, usize)>,
    /// The last write did not complete at once: progress since proves the peer reads.
    write_blocked: bool,
}

impl<S> std::fmt::Debug for Metered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered").field("meter", &self.meter).finish_non_exhaustive()
    }
}

impl<S> Metered<S> {
    /// Meters `inner`, framed as `framing`, against `budget`; without a budget it only notes
    /// when the peer was last heard from.
    pub(crate) fn new(inner: S, framing: Framing, budget: Option<&Budget>) -> Self {
        let budget = budget.map(|b| (PollSemaphore::new(b.semaphore.clone()), b.total));
        Self { inner, meter: Arc::new(Meter::new(framing)), budget, write_blocked: false }
    }

    /// The meter, shared with whoever reads the messages.
    pub(crate) fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some((semaphore, total)) = &mut this.budget else {
            let before = buf.filled().len();
            let result = Pin::new(&mut this.inner).poll_read(cx, buf);
            if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                this.meter.liveness.heard_now();
            }
            return result;
        };
        let mut state = this.meter.lock();
        let committed = state.framing.committed();
        if committed > *total as u64 {
            state.refused = true;
            return Poll::Ready(Err(io::Error::other(MeterError::TooLarge { declared: committed, budget: *total })));
        }
        // Reserve first: the rest of the frame in progress (reserved whole: an end never waits
        // in the middle of a frame it holds part of), or a read's worth between frames.
        let want = if committed > 0 { committed as usize } else { READ_CHUNK.min(*total) };
        if state.prepaid < want {
            let more = (want - state.prepaid) as u32;
            match semaphore.poll_acquire_many(cx, more) {
                Poll::Pending => {
                    if !this.meter.liveness.waiting.swap(true, Ordering::Relaxed) {
                        tracing::trace!(want, "channel buffer budget spent; waiting");
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(Err(io::Error::other("the buffer budget is closed"))),
                Poll::Ready(Some(permit)) => {
                    state.hold(permit);
                    state.prepaid += more as usize;
                    if this.meter.liveness.waiting.swap(false, Ordering::Relaxed) {
                        // Silence while the relay was not reading says nothing about the peer.
                        this.meter.liveness.heard_now();
                    }
                }
            }
        }
        let limit = state.prepaid.min(buf.remaining()).min(MAX_READ);
        let (result, read) = if limit == buf.remaining() {
            let before = buf.filled().len();
            let result = Pin::new(&mut this.inner).poll_read(cx, buf);
            (result, &buf.filled()[before..])
        } else {
            // Never read more than is reserved.
            let before = buf.filled().len();
            let n = {
                let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
                let result = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
                if let Poll::Ready(Ok(())) = result { Ok(limited.filled().len()) } else { Err(result) }
            };
            match n {
                Ok(n) => {
                    buf.advance(n);
                    (Poll::Ready(Ok(())), &buf.filled()[before..])
                }
                Err(result) => (result, &[][..]),
            }
        };
        if !read.is_empty() {
            let pos = state.read_total;
            let MeterState { framing, ends, .. } = &mut *state;
            framing.observe(read, pos, ends);
            state.read_total += read.len() as u64;
            state.prepaid -= read.len();
            this.meter.liveness.heard_now();
        }
        state.trim();
        result
    }
}

impl<S: AsyncWrite + Unpin> Metered<S> {
    /// Notes a write's outcome: progress after a blocked write proves the peer is reading.
    fn wrote<T>(&mut self, result: &Poll<io::Result<T>>, progressed: bool) {
        match result {
            Poll::Pending => self.write_blocked = true,
            Poll::Ready(Ok(_)) if progressed && self.write_blocked => {
                self.write_blocked = false;
                self.meter.liveness.heard_now();
            }
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        let progressed = matches!(result, Poll::Ready(Ok(n)) if n > 0);
        this.wrote(&result, progressed);
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(&result, true);
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn prefixed(len: usize) -> Vec<u8> {
        let mut frame = (len as u32).to_be_bytes().to_vec();
        frame.extend(std::iter::repeat_n(1, len));
        frame
    }

    #[tokio::test]
    async fn a_frame_is_held_from_its_header_until_written_on() {
        let budget = Budget::new(1 << 20);
        let (mut peer, relay) = tokio::io::duplex(1 << 20);
        let mut metered = Metered::new(relay, Framing::Prefixed(Prefixed::default()), Some(&budget));
        let meter = metered.meter().clone();
        peer.write_all(&[prefixed(10_000), prefixed(5)].concat()).await.unwrap();
        let mut buf = vec![0; 10_004];
        metered.read_exact(&mut buf).await.unwrap();
        assert_eq!(meter.held(), 10_004, "exactly the frame: nothing read on credit");
        meter.unit_yielded();
        let mut rest = vec![0; 9];
        metered.read_exact(&mut rest).await.unwrap();
        meter.unit_yielded();
        assert!(meter.held() >= 10_013);
        meter.release_delivered();
        assert_eq!(meter.held(), 0, "all written on: all given back");
        assert_eq!(budget.available(), 1 << 20);
        drop(metered);
    }

    #[tokio::test]
    async fn a_spent_budget_stops_reading_and_a_frame_above_it_is_refused() {
        let budget = Budget::new(64 * 1024);
        let (mut peer, relay) = tokio::io::duplex(1 << 20);
        let mut first = Metered::new(relay, Framing::Prefixed(Prefixed::default()), Some(&budget));
        peer.write_all(&prefixed(60_000)).await.unwrap();
        let mut buf = vec![0; 60_004];
        first.read_exact(&mut buf).await.unwrap();

        let (mut peer2, relay2) = tokio::io::duplex(1 << 20);
        let mut second = Metered::new(relay2, Framing::Prefixed(Prefixed::default()), Some(&budget));
        let meter2 = second.meter().clone();
        peer2.write_all(&prefixed(10_000)).await.unwrap();
        let mut small = vec![0; 10_004];
        let mut read = Box::pin(second.read_exact(&mut small));
        let waited = tokio::time::timeout(Duration::from_millis(100), &mut read).await;
        assert!(waited.is_err(), "waits while the first frame is held");
        assert_eq!(meter2.last_heard(), None, "waiting for budget is not silence");
        first.meter().unit_yielded();
        first.meter().release_delivered();
        read.await.unwrap();

        let (mut peer3, relay3) = tokio::io::duplex(1 << 20);
        let mut third = Metered::new(relay3, Framing::Prefixed(Prefixed::default()), Some(&budget));
        peer3.write_all(&prefixed(100_000)).await.unwrap();
        let err = third.read_exact(&mut vec![0; 8192]).await.unwrap_err();
        assert!(err.to_string().contains("larger than the relay's buffer budget"), "{err}");
        assert!(third.meter().refused());
    }

    #[tokio::test]
    async fn dropping_an_end_gives_its_bytes_back() {
        let budget = Budget::new(1 << 20);
        let (mut peer, relay) = tokio::io::duplex(1 << 20);
        let mut metered = Metered::new(relay, Framing::Prefixed(Prefixed::default()), Some(&budget));
        peer.write_all(&prefixed(50_000)[..30_000]).await.unwrap();
        let mut buf = vec![0; 30_000];
        metered.read_exact(&mut buf).await.unwrap();
        assert!(budget.available() <= (1 << 20) - 50_004, "the whole frame is reserved");
        drop(metered);
        assert_eq!(budget.available(), 1 << 20);
    }
}
