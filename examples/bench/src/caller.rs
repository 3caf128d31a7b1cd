//! The calling side: what a caller dials ([`Target`]) and a client of the bench contract over
//! a direct connection (plain TCP or TLS over TCP) or a relay ([`Caller`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use relay_rpc::auth::SharedAccessKey;
use relay_rpc::{CallContext, ConnectOptions, Connection};

use crate::baseline::{self, DirectClient};
use crate::contract::{BenchClient, BenchRequest, BenchResponse};

/// How long one call may take before the bench gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a caller connects.
#[derive(Debug, Clone)]
pub enum Target {
    /// The host's plain TCP listener, for the `tcp` baseline.
    Tcp(SocketAddr),
    /// The host's TLS listener, for the `tls` baseline.
    Tls {
        /// Its address.
        addr: SocketAddr,
        /// Its self-signed certificate, PEM.
        cert: PathBuf,
    },
    /// An address on a relay.
    Relay(RelayTarget),
}

/// An address on a relay, and what it takes to be let in.
#[derive(Debug, Clone)]
pub struct RelayTarget {
    /// `quic://…` or `wss://…`.
    pub url: String,
    /// The address the host listens on.
    pub address: String,
    /// The relay's certificate.
    pub cert: PathBuf,
    /// The relay's root key, to sign tokens with.
    pub key: PathBuf,
}

impl RelayTarget {
    /// Options trusting the relay's certificate and signing tokens with its root key.
    pub fn options(&self) -> anyhow::Result<ConnectOptions> {
        relay_options(&self.cert, &self.key)
    }

    /// A caller connection to the relay.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        Connection::connect(&self.url, self.options()?).await.with_context(|| format!("connecting to {}", self.url))
    }
}

/// Options trusting the certificate `cert` and signing tokens with the key in `key`.
pub fn relay_options(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<ConnectOptions> {
    let key = SharedAccessKey::from_file(key).with_context(|| format!("reading the root key {}", key.display()))?;
    let options = ConnectOptions::new()
        .trust_pem_file(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?
        .with_shared_access_key(key);
    Ok(options)
}

impl Target {
    /// The options of the `connect-once` subcommand that dial this target.
    pub fn to_args(&self) -> Vec<String> {
        match self {
            Self::Tcp(addr) => vec!["--tcp".into(), addr.to_string()],
            Self::Tls { addr, cert } => {
                vec!["--tls".into(), addr.to_string(), "--tls-cert".into(), cert.display().to_string()]
            }
            Self::Relay(relay) => vec![
                "--url".into(),
                relay.url.clone(),
                "--address".into(),
                relay.address.clone(),
                "--cert".into(),
                relay.cert.display().to_string(),
                "--key".into(),
                relay.key.display().to_string(),
            ],
        }
    }
}

/// A client of the bench contract. Clones share one connection (direct) or one channel (relay).
#[derive(Debug, Clone)]
pub enum Caller {
    /// tarpc over TCP, plain or inside TLS.
    Direct(DirectClient),
    /// The generated stub over a relay channel.
    Relayed(BenchClient),
}

impl Caller {
    /// Connects to `target`: over a relay, a new connection and one channel on it.
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        match target {
            Target::Tcp(addr) => Ok(Self::Direct(baseline::connect(*addr).await?)),
            Target::Tls { addr, cert } => {
                Ok(Self::Direct(baseline::connect_tls(*addr, &baseline::tls_connector(cert)?).await?))
            }
            Target::Relay(relay) => {
                let connection = relay.connect().await?;
                Self::open(&connection, &relay.address).await
            }
        }
    }

    /// Opens a channel to `address` over `connection`.
    pub async fn open(connection: &Connection, address: &str) -> anyhow::Result<Self> {
        let client = BenchClient::connect(connection, address)
            .await
            .with_context(|| format!("opening a channel to {address}"))?;
        Ok(Self::Relayed(client))
    }

    /// Echoes `payload` as [`Bytes`].
    pub async fn echo(&self, payload: Bytes) -> anyhow::Result<Bytes> {
        match self {
            Self::Direct(client) => match client.call(direct_context(), BenchRequest::Echo { payload }).await {
                Ok(BenchResponse::Echo(back)) => Ok(back),
                Ok(other) => bail!("unexpected response {other:?}"),
                Err(e) => Err(e).context("direct echo"),
            },
            Self::Relayed(client) => {
                client.echo(CallContext::with_timeout(CALL_TIMEOUT), payload).await.context("relayed echo")
            }
        }
    }

    /// Echoes `payload` as a `Vec<u8>`.
    pub async fn echo_vec(&self, payload: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::Direct(client) => match client.call(direct_context(), BenchRequest::EchoVec { payload }).await {
                Ok(BenchResponse::EchoVec(back)) => Ok(back),
                Ok(other) => bail!("unexpected response {other:?}"),
                Err(e) => Err(e).context("direct echo_vec"),
            },
            Self::Relayed(client) => {
                client.echo_vec(CallContext::with_timeout(CALL_TIMEOUT), payload).await.context("relayed echo_vec")
            }
        }
    }
}

fn direct_context() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + CALL_TIMEOUT;
    ctx
}
