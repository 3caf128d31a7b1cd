//! Giving the heap a wave of closed channels freed back to the system.
//!
//! glibc's allocator keeps what is freed in its arenas (one per thread that allocated, up to
//! eight per core) for reuse, and returns a page to the system only when the free space at the
//! top of an arena passes a threshold. Ten thousand channels opened on the runtime's threads and
//! closed leave their pages scattered in several arenas: the relay's resident memory stays near
//! its peak, though nothing holds it. `malloc_trim` gives back every free page of every arena.
//! It walks them under their locks, so it runs rarely: when the open channels have fallen to a
//! quarter of their peak since the last trim ([`TrimPolicy`]), on a blocking thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::phase::Phase;
use crate::state::Shared;

/// How often the open channels are looked at.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Below this peak, what closing frees is too little to be worth a walk of the heap.
const PEAK_WORTH_TRIMMING: u64 = 256;

/// When to trim, from the open channels seen at each check. Sans-IO.
#[derive(Debug, Default)]
pub(crate) struct TrimPolicy {
    /// The most channels open at once since the last trim.
    peak: u64,
}

impl TrimPolicy {
    /// Notes `open` channels now; true when a trim is due (the count has fallen to a quarter of
    /// a peak worth trimming), which starts a new peak from here.
    pub(crate) fn observe(&mut self, open: u64) -> bool {
        self.peak = self.peak.max(open);
        if self.peak >= PEAK_WORTH_TRIMMING && open <= self.peak / 4 {
            self.peak = open;
            return true;
        }
        false
    }
}

/// Trims the heap whenever the policy says, until the relay closes.
pub(crate) async fn give_back(shared: Arc<Shared>) {
    let mut policy = TrimPolicy::default();
    let watch = async {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if policy.observe(shared.open_channels.load(Ordering::Relaxed) as u64) {
                let trimmed = tokio::task::spawn_blocking(trim).await;
                tracing::debug!(released = ?trimmed.ok().flatten(), "heap trimmed after channels closed");
            }
        }
    };
    tokio::select! {
        () = watch => {}
        () = shared.reached(Phase::Closing) => {}
    }
}

/// Gives free heap pages back to the system; whether any were, where the allocator can say.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> Option<bool> {
    // SAFETY: `malloc_trim` takes no pointers and locks each arena it walks; any thread may call
    // it at any time.
    Some(unsafe { libc::malloc_trim(0) } == 1)
}

/// Other allocators return memory by themselves (or not at all): nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_the_channels_fall_to_a_quarter_of_a_large_peak() {
        let mut policy = TrimPolicy::default();
        let seen: Vec<bool> = [0, 100, 10_000, 9_000, 3_000, 2_500, 2_400, 2_400, 10, 0]
            .into_iter()
            .map(|open| policy.observe(open))
            .collect();
        // Due at 2,500 (a quarter of 10,000); the next peak (2,500) is worth it again at 600.
        assert_eq!(seen, [false, false, false, false, false, true, false, false, true, false]);
    }

    #[test]
    fn a_small_peak_is_never_trimmed() {
        let mut policy = TrimPolicy::default();
        for open in [0, 200, 0, 255, 0, 1, 0] {
            assert!(!policy.observe(open), "{open}");
        }
    }

    #[test]
    fn the_heap_can_be_trimmed_from_any_thread() {
        let freed: Vec<Vec<u8>> = (0..1000).map(|_| vec![1; 4096]).collect();
        drop(freed);
        let trimmed = std::thread::spawn(trim).join().expect("no panic");
        assert_eq!(trimmed.is_some(), cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
