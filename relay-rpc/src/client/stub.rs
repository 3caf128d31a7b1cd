//! What generated client stubs run on: a tarpc client over a channel.

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};
use tarpc::client::RpcError;
use tokio_serde::formats::Bincode;

use crate::call::CallContext;
use crate::channel::{Channel, ChannelEnd, ChannelError};
use crate::client::Connection;
use crate::contract::ContractDescriptor;
use crate::error::{CallError, OpenError};

type ClientTransport<Req, Resp> = tokio_serde::Framed<
    Channel,
    tarpc::Response<Resp>,
    tarpc::ClientMessage<Req>,
    Bincode<tarpc::Response<Resp>, tarpc::ClientMessage<Req>>,
>;

/// The engine of a generated `FooClient`: sends requests over a channel and awaits responses.
pub struct ClientStub<Req, Resp> {
    inner: tarpc::client::Channel<Req, Resp>,
    end: ChannelEnd,
}

impl<Req, Resp> Clone for ClientStub<Req, Resp> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), end: self.end.clone() }
    }
}

impl<Req, Resp> fmt::Debug for ClientStub<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStub").finish_non_exhaustive()
    }
}

impl<Req, Resp> ClientStub<Req, Resp>
where
    Req: Serialize + tarpc::RequestName + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
{
    /// Runs a client over `channel`. Must be called within a tokio runtime.
    pub fn new(channel: Channel) -> Self {
        let end = channel.end();
        let transport: ClientTransport<Req, Resp> = tokio_serde::Framed::new(channel, Bincode::default());
        let inner = tarpc::client::new(tarpc::client::Config::default(), transport).spawn();
        Self { inner, end }
    }

    /// Opens a channel to `address` and runs a client over it.
    pub async fn connect(
        connection: &Connection,
        address: &str,
        contract: &'static ContractDescriptor,
    ) -> Result<Self, OpenError> {
        let channel = connection.open_channel(address, Some(contract)).await?;
        Ok(Self::new(channel))
    }

    /// Sends one request and waits for its response or the context's deadline.
    pub async fn call(&self, ctx: CallContext, request: Req) -> Result<Resp, CallError> {
        self.inner.call(ctx.to_tarpc(), request).await.map_err(|e| self.call_error(e))
    }

    fn call_error(&self, e: RpcError) -> CallError {
        match e {
            // The channel ended earlier; say why it did.
            RpcError::Shutdown => CallError::Disconnected(self.end.get().cloned().unwrap_or(ChannelError::Closed)),
            e => call_error(e),
        }
    }
}

fn call_error(e: RpcError) -> CallError {
    match e {
        RpcError::DeadlineExceeded => CallError::DeadlineExceeded,
        RpcError::Shutdown => CallError::Disconnected(ChannelError::Closed),
        RpcError::Server(e) => CallError::Aborted(e.detail),
        RpcError::Channel(e) => {
            use tarpc::ChannelError::{Close, Flush, Read, Ready, Write};
            let (Read(cause) | Ready(cause) | Write(cause) | Flush(cause) | Close(cause)) = &e;
            let cause = cause.downcast_ref::<ChannelError>().cloned();
            CallError::Disconnected(cause.unwrap_or_else(|| ChannelError::Protocol(e.to_string())))
        }
        RpcError::Send(e) => match e.downcast::<ChannelError>() {
            Ok(e) => CallError::Disconnected(*e),
            Err(e) => CallError::Disconnected(ChannelError::Protocol(e.to_string())),
        },
    }
}

/// The error a stub returns when a response does not match its request.
pub fn unexpected_response(contract: &'static str, method: &'static str) -> CallError {
    CallError::Protocol(format!("response to {contract}.{method} is of another method"))
}
