//! A registration on one address: the channels callers open to it.

use std::sync::PoisonError;

use tokio::sync::mpsc;

use super::connection::Host;
use super::incoming::IncomingChannel;
use crate::error::ListenError;
use crate::transport::Registration;

/// A host's registration on an address. Dropping it unregisters.
#[derive(Debug)]
pub struct Listener {
    pub(super) host: Host,
    address: String,
    incoming: mpsc::Receiver<IncomingChannel>,
    /// The registration with the relay (and its token renewal): it lives as long as this does.
    registration: Registration,
}

impl Listener {
    pub(crate) fn new(
        host: Host,
        address: String,
        incoming: mpsc::Receiver<IncomingChannel>,
        registration: Registration,
    ) -> Self {
        Self { host, address, incoming, registration }
    }

    /// The address listened on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits for the next caller's channel. Fails when the registration or the connection ends.
    pub async fn accept(&mut self) -> Result<IncomingChannel, ListenError> {
        tokio::select! {
            incoming = self.incoming.recv() => incoming.ok_or_else(|| self.registration.connection_lost()),
            ended = self.registration.ended() => Err(ended),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.host.inner.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.address);
    }
}
