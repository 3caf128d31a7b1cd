//! Callers waiting for a listener's rendezvous, keyed by a one-time secret: a Hybrid Connections
//! listener's rendezvous WebSocket, or (in a cluster) the stream a listener on another node dials
//! here.
//!
//! Generic over the rendezvous socket `S` a listener hands over (the relay's channel end), so that
//! the table sits below the channel ends, as the registry does below listeners.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::oneshot;

/// How a listener answered an `accept` notification.
pub(crate) enum Outcome<S> {
    /// It opened the rendezvous WebSocket, choosing this sub-protocol.
    Accepted { ws: Box<S>, protocol: Option<String> },
    /// It rejected the sender with an HTTP status.
    Rejected { status: u16, description: String },
}

impl<S> fmt::Debug for Outcome<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted { protocol, .. } => f.debug_struct("Accepted").field("protocol", protocol).finish(),
            Self::Rejected { status, description } => {
                f.debug_struct("Rejected").field("status", status).field("description", description).finish()
            }
        }
    }
}

type Slots<S> = Mutex<HashMap<String, oneshot::Sender<Outcome<S>>>>;

/// Rendezvous secrets of callers waiting for a listener's rendezvous.
pub(crate) struct RendezvousTable<S>(Arc<Slots<S>>);

impl<S> RendezvousTable<S> {
    /// The pending rendezvous table; held only for an insert or a removal.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Outcome<S>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the waiting sender's slot for `secret`, once.
    pub(crate) fn take(&self, secret: &str) -> Option<oneshot::Sender<Outcome<S>>> {
        self.lock().remove(secret)
    }
}

impl<S> Default for RendezvousTable<S> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<S> fmt::Debug for RendezvousTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RendezvousTable").field(&self.0).finish()
    }
}

/// A caller's place in the rendezvous table; leaving it (drop) removes the entry. It holds the
/// table, so that it can move into a task of its own.
pub(crate) struct Rendezvous<S> {
    table: RendezvousTable<S>,
    secret: String,
    outcome: oneshot::Receiver<Outcome<S>>,
}

/// The system's randomness failed, so no rendezvous secret could be made. A guessable secret
/// would let anyone who guesses it take the sender's channel: the open is refused instead.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system's randomness failed: no rendezvous secret can be made")]
pub(crate) struct NoRandomness;

impl<S> Rendezvous<S> {
    /// Makes a fresh secret with `random` ([`system_random`] outside tests) and waits under it.
    pub(crate) fn register(
        table: &RendezvousTable<S>,
        random: fn(&mut [u8]) -> Result<(), NoRandomness>,
    ) -> Result<Self, NoRandomness> {
        let secret = one_time_secret(random)?;
        let (tx, outcome) = oneshot::channel();
        table.lock().insert(secret.clone(), tx);
        Ok(Self { table: RendezvousTable(table.0.clone()), secret, outcome })
    }

    /// The secret, for the rendezvous address.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// The listener's answer; `None` if it vanished. The caller bounds the wait.
    pub(crate) async fn wait(mut self) -> Option<Outcome<S>> {
        (&mut self.outcome).await.ok()
    }
}

impl<S> Drop for Rendezvous<S> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.secret);
    }
}

/// A fresh one-time secret from `random`: 144 bits, URL-safe (it goes in rendezvous addresses).
pub(crate) fn one_time_secret(random: fn(&mut [u8]) -> Result<(), NoRandomness>) -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 18];
    random(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Fills `bytes` from the system's randomness.
pub(crate) fn system_random(bytes: &mut [u8]) -> Result<(), NoRandomness> {
    SystemRandom::new().fill(bytes).map_err(|_| NoRandomness)
}

/// A fresh `Sec-WebSocket-Key` (base64 of 16 random bytes), for callers that are not WebSockets.
/// The key is no secret (it only shows the listener speaks WebSocket): without randomness it is
/// all zeros.
pub(crate) fn websocket_key() -> String {
    let mut bytes = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_taken_once() {
        let table = RendezvousTable::<()>::default();
        let a = Rendezvous::register(&table, system_random).unwrap();
        let b = Rendezvous::register(&table, system_random).unwrap();
        assert_ne!(a.secret(), b.secret());
        assert_eq!(a.secret().len(), 24, "18 bytes in base64");
        assert!(table.take(a.secret()).is_some());
        assert!(table.take(a.secret()).is_none(), "once");
        let secret = b.secret().to_owned();
        drop(b);
        assert!(table.take(&secret).is_none(), "leaving removes the entry");
    }

    #[test]
    fn without_randomness_there_is_no_rendezvous() {
        let table = RendezvousTable::<()>::default();
        let failed = Rendezvous::register(&table, |_| Err(NoRandomness));
        assert!(failed.is_err());
        assert!(table.lock().is_empty(), "nothing registered");
    }
}
