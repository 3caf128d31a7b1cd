//! Senders waiting for a Hybrid Connections listener's rendezvous, keyed by a one-time secret.

use std::fmt;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::oneshot;

use crate::channel::WsStream;
use crate::state::Shared;

/// How a listener answered an `accept` notification.
pub(crate) enum Outcome {
    /// It opened the rendezvous WebSocket, choosing this sub-protocol.
    Accepted { ws: Box<WsStream>, protocol: Option<String> },
    /// It rejected the sender with an HTTP status.
    Rejected { status: u16, description: String },
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted { protocol, .. } => f.debug_struct("Accepted").field("protocol", protocol).finish(),
            Self::Rejected { status, description } => {
                f.debug_struct("Rejected").field("status", status).field("description", description).finish()
            }
        }
    }
}

/// A sender's place in the rendezvous table; leaving it (drop) removes the entry.
pub(crate) struct Rendezvous<'a> {
    shared: &'a Shared,
    secret: String,
    outcome: oneshot::Receiver<Outcome>,
}

impl<'a> Rendezvous<'a> {
    /// Makes a fresh secret and waits under it.
    pub(crate) fn register(shared: &'a Shared) -> Self {
        let mut bytes = [0u8; 18];
        if SystemRandom::new().fill(&mut bytes).is_err() {
            // Without randomness fall back to the channel counter: unique, if guessable.
            bytes[..8]
                .copy_from_slice(&shared.next_channel_id.load(std::sync::atomic::Ordering::Relaxed).to_be_bytes());
        }
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let (tx, outcome) = oneshot::channel();
        shared.rendezvous().insert(secret.clone(), tx);
        Self { shared, secret, outcome }
    }

    /// The secret, for the rendezvous address.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// The listener's answer; `None` if it vanished. The caller bounds the wait.
    pub(crate) async fn wait(mut self) -> Option<Outcome> {
        (&mut self.outcome).await.ok()
    }
}

impl Drop for Rendezvous<'_> {
    fn drop(&mut self) {
        self.shared.rendezvous().remove(&self.secret);
    }
}

/// A fresh `Sec-WebSocket-Key` (base64 of 16 random bytes), for callers that are not WebSockets.
pub(crate) fn websocket_key() -> String {
    let mut bytes = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Takes the waiting sender's slot for `secret`, once.
pub(crate) fn take(shared: &Shared, secret: &str) -> Option<oneshot::Sender<Outcome>> {
    shared.rendezvous().remove(secret)
}
