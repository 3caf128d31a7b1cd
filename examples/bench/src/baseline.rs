//! The baseline: tarpc straight over one TCP connection (`TCP_NODELAY`), with the framing and the
//! codec of a relay channel, so that the relay's figures compare with the same serialization.
//!
//! relay-rpc keeps its codec crate-private (`contract::typed`), so it is rebuilt here from the
//! same parts: `u32` length-prefixed frames ([`LengthDelimitedCodec`] with
//! [`FRAME_HEADER_LEN`] and [`DEFAULT_MAX_FRAME`], as a QUIC channel frames its stream), and
//! `tokio_serde`'s bincode with bincode's default options allowing trailing bytes, as in
//! `relay_rpc::contract::codec`. The host side dispatches to the same generated `ServeBench`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bincode::Options as _;
use futures::StreamExt;
use relay_proto::{DEFAULT_MAX_FRAME, FRAME_HEADER_LEN};
use relay_rpc::contract::{Dispatch, TarpcServe};
use tarpc::server::{BaseChannel, Channel as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::contract::{BenchRequest, BenchResponse};

/// bincode's defaults, ignoring trailing bytes: relay-rpc's `WireOptions`.
type WireOptions = bincode::config::WithOtherTrailing<bincode::DefaultOptions, bincode::config::AllowTrailing>;

/// Typed messages over length-prefixed frames over TCP.
type Typed<In, Out> = tokio_serde::Framed<
    Framed<TcpStream, LengthDelimitedCodec>,
    In,
    Out,
    tokio_serde::formats::Bincode<In, Out, WireOptions>,
>;

/// How long a TCP connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A direct client of the bench contract.
pub type DirectClient = tarpc::client::Channel<BenchRequest, BenchResponse>;

fn typed<In, Out>(tcp: TcpStream) -> std::io::Result<Typed<In, Out>> {
    tcp.set_nodelay(true)?;
    let frames = LengthDelimitedCodec::builder()
        .length_field_length(FRAME_HEADER_LEN)
        .max_frame_length(DEFAULT_MAX_FRAME)
        .new_framed(tcp);
    Ok(tokio_serde::Framed::new(frames, bincode::DefaultOptions::new().allow_trailing_bytes().into()))
}

/// Connects a tarpc client to a [`serve`]r at `addr`.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<DirectClient> {
    let connect = TcpStream::connect(addr);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    let transport = typed(tcp).context("setting TCP_NODELAY")?;
    Ok(tarpc::client::new(tarpc::client::Config::default(), transport).spawn())
}

/// Serves `dispatcher` on every connection `listener` accepts, each request in a task of its
/// own as a relay host does, until accepting fails.
pub async fn serve<D: Dispatch>(listener: TcpListener, dispatcher: D) -> anyhow::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _) = accepted.context("accepting a TCP connection")?;
                let dispatcher = dispatcher.clone();
                connections.spawn(async move {
                    if let Ok(transport) = typed(tcp) {
                        serve_connection(transport, dispatcher).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection<D: Dispatch>(
    transport: Typed<tarpc::ClientMessage<D::Request>, tarpc::Response<D::Response>>,
    dispatcher: D,
) {
    let mut requests = Box::pin(BaseChannel::with_defaults(transport).execute(TarpcServe(dispatcher)));
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
}
