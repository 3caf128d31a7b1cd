//! Serving a contract on a listener: one tarpc server per accepted channel.

use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel as _};
use tokio::task::JoinSet;
use tokio_serde::formats::Bincode;
use tracing::Instrument;

use super::listener::Listener;
use crate::channel::Channel;
use crate::contract::{Dispatch, check_compatible};
use crate::error::ListenError;
use crate::proto::ErrorCode;

type ServerTransport<Req, Resp> = tokio_serde::Framed<
    Channel,
    tarpc::ClientMessage<Req>,
    tarpc::Response<Resp>,
    Bincode<tarpc::ClientMessage<Req>, tarpc::Response<Resp>>,
>;

impl Listener {
    /// Serves `dispatcher` (a generated `ServeFoo`) on every channel callers open, until the
    /// registration or the connection ends. Channels whose contract does not match are refused
    /// with [`ErrorCode::ContractMismatch`]. Returning ends every channel still open.
    ///
    /// ```no_run
    /// # use relay_rpc::{Host, ListenError};
    /// # async fn run<D: relay_rpc::contract::Dispatch>(host: Host, dispatcher: D) -> Result<(), ListenError> {
    /// host.listen("calc").await?.serve(dispatcher).await
    /// # }
    /// ```
    pub async fn serve<D: Dispatch>(mut self, dispatcher: D) -> Result<(), ListenError> {
        let mut channels = JoinSet::new();
        loop {
            tokio::select! {
                incoming = self.accept() => {
                    let incoming = incoming?;
                    if let Err(detail) = check_compatible(D::CONTRACT, incoming.contract()) {
                        tracing::debug!(address = %incoming.address(), %detail, "refusing channel");
                        channels.spawn(async move { let _ = incoming.reject(ErrorCode::ContractMismatch, &detail).await; });
                        continue;
                    }
                    let dispatcher = dispatcher.clone();
                    channels.spawn(async move {
                        match incoming.accept().await {
                            Ok(channel) => serve_channel(channel, dispatcher).await,
                            Err(e) => tracing::debug!(error = %e, "channel lost before it opened"),
                        }
                    });
                }
                Some(_) = channels.join_next(), if !channels.is_empty() => {}
            }
        }
    }
}

/// Runs one channel: decodes requests, runs each in its own task, writes responses. When the
/// channel ends, handlers still running are aborted.
pub(crate) async fn serve_channel<D: Dispatch>(channel: Channel, dispatcher: D) {
    let span = tracing::debug_span!("channel", address = %channel.address(), id = channel.id());
    run_channel(channel, dispatcher).instrument(span).await;
}

async fn run_channel<D: Dispatch>(channel: Channel, dispatcher: D) {
    let transport: ServerTransport<D::Request, D::Response> = tokio_serde::Framed::new(channel, Bincode::default());
    let mut requests = std::pin::pin!(BaseChannel::with_defaults(transport).execute(Adapter(dispatcher)));
    let mut handlers = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.next() => match request {
                Some(handler) => { handlers.spawn(handler); }
                None => break,
            },
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
        }
    }
    tracing::trace!("channel ended");
}

/// Runs a [`Dispatch`] as a tarpc service.
#[derive(Clone)]
struct Adapter<D>(D);

impl<D: Dispatch> tarpc::server::Serve for Adapter<D> {
    type Req = D::Request;
    type Resp = D::Response;

    async fn serve(
        self,
        _ctx: tarpc::context::Context,
        request: D::Request,
    ) -> Result<D::Response, tarpc::ServerError> {
        Ok(self.0.dispatch(request).await)
    }
}
