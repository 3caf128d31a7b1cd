//! A registration on one address: the channels callers open to it.

use std::sync::PoisonError;

use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use super::connection::Host;
use super::incoming::IncomingChannel;
use crate::error::ListenError;
use crate::transport::quic;

/// A host's registration on an address. Dropping it unregisters.
#[derive(Debug)]
pub struct Listener {
    host: Host,
    address: String,
    incoming: mpsc::Receiver<IncomingChannel>,
    /// The control stream: the registration lives as long as it is open.
    _control_send: SendStream,
    control_recv: RecvStream,
}

impl Listener {
    pub(crate) fn new(
        host: Host,
        address: String,
        incoming: mpsc::Receiver<IncomingChannel>,
        control_send: SendStream,
        control_recv: RecvStream,
    ) -> Self {
        Self { host, address, incoming, _control_send: control_send, control_recv }
    }

    /// The address listened on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits for the next caller's channel. Fails when the registration or the connection ends.
    pub async fn accept(&mut self) -> Result<IncomingChannel, ListenError> {
        let mut scratch = [0u8; 256];
        loop {
            tokio::select! {
                incoming = self.incoming.recv() => {
                    return incoming.ok_or_else(|| self.connection_lost());
                }
                control = self.control_recv.read(&mut scratch) => match control {
                    // No relay-to-host control messages are defined yet; later ones are skipped.
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(ListenError::Closed),
                    Err(quinn::ReadError::ConnectionLost(_)) => return Err(self.connection_lost()),
                    Err(e) => return Err(ListenError::ConnectionLost(quic::read_error(&e).to_string())),
                },
            }
        }
    }

    fn connection_lost(&self) -> ListenError {
        ListenError::ConnectionLost(self.host.close_reason().unwrap_or_else(|| "host connection closed".into()))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.host.inner.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.address);
    }
}
