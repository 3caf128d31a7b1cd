//! A caller's channel arriving at a host, before the host accepts or rejects it.

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};

use crate::channel::{Channel, ChannelError};
use crate::proto::{ContractInfo, ErrorCode, Incoming, Reply};
use crate::transport::quic;

/// How long a refusal may take to write before the stream is dropped.
const REJECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel a caller wants to open; [`accept`](Self::accept) or [`reject`](Self::reject) it.
#[derive(Debug)]
pub struct IncomingChannel {
    incoming: Incoming,
    send: SendStream,
    recv: RecvStream,
    max_frame: usize,
}

impl IncomingChannel {
    pub(crate) fn new(incoming: Incoming, send: SendStream, recv: RecvStream, max_frame: usize) -> Self {
        Self { incoming, send, recv, max_frame }
    }

    /// The address the caller dialled.
    pub fn address(&self) -> &str {
        &self.incoming.address
    }

    /// The relay's id for this channel.
    pub fn id(&self) -> u64 {
        self.incoming.channel_id
    }

    /// The contract the caller speaks (empty name for an untyped channel).
    pub fn contract(&self) -> &ContractInfo {
        &self.incoming.contract
    }

    /// Accepts the channel.
    pub async fn accept(mut self) -> Result<Channel, ChannelError> {
        quic::write_frame(&mut self.send, &Reply::Accepted.encode()).await?;
        let address: Arc<str> = Arc::from(self.incoming.address.as_str());
        Ok(quic::channel(self.send, self.recv, self.max_frame, address, self.incoming.channel_id))
    }

    /// Refuses the channel; the caller's open fails with `code` and `detail`.
    pub async fn reject(mut self, code: ErrorCode, detail: &str) -> Result<(), ChannelError> {
        quic::write_frame(&mut self.send, &Reply::refused(code, detail).encode()).await?;
        let _ = self.send.finish();
        Ok(())
    }

    /// Refuses the channel without waiting, bounded by a timeout.
    pub(crate) fn reject_in_background(self, code: ErrorCode, detail: &'static str) {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REJECT_TIMEOUT, self.reject(code, detail)).await;
        });
    }
}
