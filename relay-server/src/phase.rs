//! Where a relay is in its life, watched by every task that must stop taking work when it
//! drains or end when it closes.

use tokio::sync::watch;

/// Where a relay is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Taking connections and channels.
    Running,
    /// Shutting down: no new connections or channels; open channels may finish.
    Draining,
    /// The grace period is over: everything closes with a "relay shutting down" code.
    Closing,
}

/// A relay's phase, which only moves forward; tasks wait on it.
#[derive(Debug)]
pub(crate) struct RelayPhase(watch::Sender<Phase>);

impl RelayPhase {
    pub(crate) fn new() -> Self {
        Self(watch::Sender::new(Phase::Running))
    }

    pub(crate) fn get(&self) -> Phase {
        *self.0.borrow()
    }

    pub(crate) fn set(&self, phase: Phase) {
        self.0.send_replace(phase);
    }

    /// Resolves once the relay has reached `phase`.
    pub(crate) async fn reached(&self, phase: Phase) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    pub(crate) fn draining(&self) -> bool {
        self.get() >= Phase::Draining
    }
}
