//! The two baselines: tarpc straight over one TCP connection (`TCP_NODELAY`), in the clear
//! (`tcp`) and inside TLS 1.3 (`tls`), with the framing and the codec of a relay channel, so
//! that the relay's figures compare with the same serialization.
//!
//! relay-rpc keeps its codec crate-private (`contract::typed`), so it is rebuilt here from the
//! same parts: `u32` length-prefixed frames ([`LengthDelimitedCodec`] with
//! [`FRAME_HEADER_LEN`] and [`DEFAULT_MAX_FRAME`], as a QUIC channel frames its stream), and
//! `tokio_serde`'s bincode with bincode's default options allowing trailing bytes, as in
//! `relay_rpc::contract::codec`. The host side dispatches to the same generated `ServeBench`.
//!
//! The TLS baseline is set up as the relay sets up `wss://`: a self-signed certificate made in
//! the serving process with rcgen for the relay's development names
//! ([`relay_server::certs::DEV_CERT_NAMES`]), rustls with the ring provider, and a client that
//! trusts that certificate (read from a PEM file) and speaks TLS 1.3 only, as relay-rpc's does.
//! The relay's two hops are each such a TLS (or QUIC, which is TLS 1.3 inside) connection, so
//! this is the baseline that says what the relay itself costs; the plain one says what TLS does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bincode::Options as _;
use futures::StreamExt;
use relay_proto::{DEFAULT_MAX_FRAME, FRAME_HEADER_LEN};
use relay_rpc::contract::{Dispatch, TarpcServe};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tarpc::server::{BaseChannel, Channel as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::contract::{BenchRequest, BenchResponse};

/// bincode's defaults, ignoring trailing bytes: relay-rpc's `WireOptions`.
type WireOptions = bincode::config::WithOtherTrailing<bincode::DefaultOptions, bincode::config::AllowTrailing>;

/// Typed messages over length-prefixed frames over `Io` (a TCP stream, or TLS over one).
type Typed<Io, In, Out> =
    tokio_serde::Framed<Framed<Io, LengthDelimitedCodec>, In, Out, tokio_serde::formats::Bincode<In, Out, WireOptions>>;

/// How long a TCP connection, and a TLS handshake over it, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A direct client of the bench contract, over either baseline.
pub type DirectClient = tarpc::client::Channel<BenchRequest, BenchResponse>;

fn typed<Io, In, Out>(io: Io) -> Typed<Io, In, Out>
where
    Io: AsyncRead + AsyncWrite,
{
    let frames = LengthDelimitedCodec::builder()
        .length_field_length(FRAME_HEADER_LEN)
        .max_frame_length(DEFAULT_MAX_FRAME)
        .new_framed(io);
    tokio_serde::Framed::new(frames, bincode::DefaultOptions::new().allow_trailing_bytes().into())
}

/// Opens a TCP connection to `addr`, with `TCP_NODELAY`.
async fn dial(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let connect = TcpStream::connect(addr);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    Ok(tcp)
}

fn client<Io>(io: Io) -> DirectClient
where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    tarpc::client::new(tarpc::client::Config::default(), typed(io)).spawn()
}

/// Connects a tarpc client to a [`serve`]r at `addr`, in the clear.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<DirectClient> {
    Ok(client(dial(addr).await?))
}

/// A TLS 1.3 client (ring provider) trusting only the certificate in the PEM file `cert`.
pub fn tls_connector(cert: &Path) -> anyhow::Result<TlsConnector> {
    let cert = CertificateDer::from_pem_file(cert).with_context(|| format!("reading {}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).context("trusting the baseline's certificate")?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connects a tarpc client to a [`serve_tls`] server at `addr` over TLS, with `connector`.
pub async fn connect_tls(addr: SocketAddr, connector: &TlsConnector) -> anyhow::Result<DirectClient> {
    let tcp = dial(addr).await?;
    let handshake = connector.connect(ServerName::IpAddress(addr.ip().into()), tcp);
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .with_context(|| format!("the TLS handshake with {addr} timed out"))?
        .with_context(|| format!("the TLS handshake with {addr}"))?;
    Ok(client(tls))
}

/// The serving side of the TLS baseline: a certificate made now, and the acceptor for it.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate, PEM, for clients to trust.
    pub cert_pem: String,
    /// TLS 1.3 with that certificate.
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A self-signed certificate for the relay's development names, as the relay makes its own,
    /// whose key never leaves this process.
    pub fn generate() -> anyhow::Result<Self> {
        let names = relay_server::certs::DEV_CERT_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let certified = rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)?;
        Ok(Self { cert_pem: certified.cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

/// Serves `dispatcher` on every connection `listener` accepts, in the clear, each request in a
/// task of its own as a relay host does, until accepting fails.
pub async fn serve<D: Dispatch>(listener: TcpListener, dispatcher: D) -> anyhow::Result<()> {
    serve_with(listener, dispatcher, None).await
}

/// [`serve`], with TLS from `identity` on every connection.
pub async fn serve_tls<D: Dispatch>(listener: TcpListener, dispatcher: D, identity: TlsIdentity) -> anyhow::Result<()> {
    serve_with(listener, dispatcher, Some(identity.acceptor)).await
}

async fn serve_with<D: Dispatch>(listener: TcpListener, dispatcher: D, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _) = accepted.context("accepting a TCP connection")?;
                let dispatcher = dispatcher.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    if tcp.set_nodelay(true).is_err() {
                        return;
                    }
                    match tls {
                        None => serve_connection(typed(tcp), dispatcher).await,
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp));
                            if let Ok(Ok(tls)) = handshake.await {
                                serve_connection(typed(tls), dispatcher).await;
                            }
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection<Io, D>(
    transport: Typed<Io, tarpc::ClientMessage<D::Request>, tarpc::Response<D::Response>>,
    dispatcher: D,
) where
    Io: AsyncRead + AsyncWrite + Send + 'static,
    D: Dispatch,
{
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
