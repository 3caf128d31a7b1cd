//! A registration on one address: the channels callers open to it.

use std::sync::PoisonError;

use quinn::RecvStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connection::Host;
use super::incoming::IncomingChannel;
use crate::error::ListenError;
use crate::proto::StreamCode;
use crate::transport::quic;

/// A host's registration on an address. Dropping it unregisters.
#[derive(Debug)]
pub struct Listener {
    host: Host,
    address: String,
    incoming: mpsc::Receiver<IncomingChannel>,
    /// Owns the control stream's sending half and renews the token over it: the registration
    /// lives as long as this task does.
    renewal: JoinHandle<()>,
    control_recv: RecvStream,
}

impl Listener {
    pub(crate) fn new(
        host: Host,
        address: String,
        incoming: mpsc::Receiver<IncomingChannel>,
        renewal: JoinHandle<()>,
        control_recv: RecvStream,
    ) -> Self {
        Self { host, address, incoming, renewal, control_recv }
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
                    Err(quinn::ReadError::Reset(code)) => return Err(match StreamCode::from_u64(code.into_inner()) {
                        StreamCode::TokenExpired => ListenError::TokenExpired,
                        StreamCode::Unauthorized => ListenError::RenewalRefused,
                        StreamCode::RelayShutdown => ListenError::ConnectionLost("relay shutting down".into()),
                        _ => ListenError::Closed,
                    }),
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
        self.renewal.abort();
        self.host.inner.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.address);
    }
}
