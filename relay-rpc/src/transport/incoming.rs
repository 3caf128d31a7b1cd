//! A caller's channel arriving at a host, before the host accepts or rejects it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::PendingChannel;
use crate::channel::{Channel, ChannelError};
use relay_proto::{ContractInfo, ErrorCode, Incoming};

/// How long a refusal may take to deliver before it is given up.
const REJECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel a caller wants to open; [`accept`](Self::accept) or [`reject`](Self::reject) it.
#[derive(Debug)]
pub struct IncomingChannel {
    incoming: Incoming,
    pending: PendingChannel,
}

impl IncomingChannel {
    pub(crate) fn new(incoming: Incoming, pending: PendingChannel) -> Self {
        Self { incoming, pending }
    }

    /// The address the caller dialled.
    pub fn address(&self) -> &str {
        &self.incoming.address
    }

    /// The relay's id for this channel.
    pub fn id(&self) -> u64 {
        self.incoming.channel_id
    }

    /// The transport that carries it to this host: `quic`, `wss` or `ws`.
    pub fn transport(&self) -> &'static str {
        self.pending.transport()
    }

    /// The span of what is logged about this channel, the one it keeps once accepted.
    pub(crate) fn span(&self) -> tracing::Span {
        crate::channel::channel_span(self.incoming.channel_id, &self.incoming.address, self.transport())
    }

    /// The contract the caller speaks (empty name for an untyped channel).
    pub fn contract(&self) -> &ContractInfo {
        &self.incoming.contract
    }

    /// Accepts the channel.
    pub async fn accept(self) -> Result<Channel, ChannelError> {
        let address: Arc<str> = Arc::from(self.incoming.address.as_str());
        self.pending.accept(address, self.incoming.channel_id).await
    }

    /// Refuses the channel; the caller's open fails with `code` and `detail`.
    pub async fn reject(self, code: ErrorCode, detail: &str) -> Result<(), ChannelError> {
        self.pending.reject(code, detail).await
    }

    /// Refuses the channel without waiting: the refusal is delivered by a task of its own (so
    /// this must run within a tokio runtime), given up after a few seconds.
    pub fn reject_in_background(self, code: ErrorCode, detail: &'static str) {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REJECT_TIMEOUT, self.reject(code, detail)).await;
        });
    }

    /// Hands the channel to the listener whose queue is `listener`, or refuses it (in the
    /// background) when the queue is full or the listener gone.
    pub(crate) fn hand_to(self, listener: &mpsc::Sender<IncomingChannel>) {
        match listener.try_send(self) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(channel)) => {
                channel.reject_in_background(ErrorCode::Busy, "listener is busy")
            }
            Err(mpsc::error::TrySendError::Closed(channel)) => {
                channel.reject_in_background(ErrorCode::NoListener, "listener closed")
            }
        }
    }
}
