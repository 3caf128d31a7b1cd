//! A registration on one address: the channels callers open to it.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::link::HostLink;
use crate::error::ListenError;
use crate::transport::{IncomingChannel, Registration};

/// A host's registration on an address. Dropping it unregisters.
#[derive(Debug)]
pub struct Listener {
    /// The host's link: it stays open while a listener on it lives.
    pub(super) host: Arc<HostLink>,
    address: String,
    incoming: mpsc::Receiver<IncomingChannel>,
    /// The registration with the relay (and its token renewal): it lives as long as this does.
    registration: Registration,
}

impl Listener {
    pub(crate) fn new(
        host: Arc<HostLink>,
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
        self.host.routes.remove(&self.address);
    }
}
