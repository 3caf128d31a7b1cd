//! The forwarding tools in processes of their own: `relay forward` and `relay connect` (run from
//! the `relay-forward` library, the same code as the `relay` binary) and a plain one-hop
//! forwarder, the ideal a forwarding path is compared with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use relay_forward::{Cli, Command, Connector, Forwarder};
use tokio::net::{TcpListener, TcpStream};

use crate::child::ChildProc;
use crate::procs::RelayProc;
use crate::roles::stdin_closed;

/// How long a tool may take to start and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a tool may take to stop once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections each tool may carry at once: above any figure's count.
const MAX_CONNECTIONS: &str = "100000";

/// What both relay tools are told: the relay, the address, the credentials, the threads.
#[derive(Debug, clap::Args)]
pub struct ToolArgs {
    /// The relay URL.
    #[arg(long)]
    relay: String,
    /// The address to register on, or to carry connections to.
    #[arg(long)]
    address: String,
    /// The relay's certificate.
    #[arg(long)]
    cert: PathBuf,
    /// The relay's root key (the tool signs its tokens with it, as beside a relay).
    #[arg(long)]
    key: PathBuf,
    /// The tool's `--threads`.
    #[arg(long, default_value_t = 1)]
    pub threads: u16,
}

/// `forward-tool --to ADDR --relay URL --address A --cert C --key K [--threads N]`: `relay
/// forward`, registered on the address and forwarding each stream to `--to`; prints `ready`.
#[derive(Debug, clap::Args)]
pub struct ForwardToolRole {
    /// The service each stream is forwarded to.
    #[arg(long)]
    to: SocketAddr,
    /// The relay, the address and the rest.
    #[command(flatten)]
    pub tool: ToolArgs,
}

/// `connect-tool --relay URL --address A --cert C --key K [--threads N]`: `relay connect` on a
/// local port; prints `ready listen=ADDR`.
#[derive(Debug, clap::Args)]
pub struct ConnectToolRole {
    /// The relay, the address and the rest.
    #[command(flatten)]
    pub tool: ToolArgs,
}

/// `plain-forward --to ADDR`: each connection accepted on a local port is joined to a new
/// connection to `--to` with `copy_bidirectional`, `TCP_NODELAY` on both; prints `ready
/// listen=ADDR`.
#[derive(Debug, clap::Args)]
pub struct PlainForwardRole {
    /// Where each connection goes.
    #[arg(long)]
    to: SocketAddr,
}

/// The `relay` tool's arguments naming the relay, the address and the credentials.
fn relay_args(tool: &ToolArgs) -> anyhow::Result<Vec<String>> {
    let data_dir = tool.key.parent().context("the root key's directory")?;
    Ok(vec![
        "--relay".into(),
        tool.relay.clone(),
        "--address".into(),
        tool.address.clone(),
        "--ca".into(),
        tool.cert.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--max-connections".into(),
        MAX_CONNECTIONS.into(),
    ])
}

/// Runs `relay forward` until standard input closes.
pub async fn forward_tool(args: ForwardToolRole) -> anyhow::Result<()> {
    let mut argv = vec!["relay".to_owned(), "forward".to_owned(), "--to".to_owned(), args.to.to_string()];
    argv.extend(relay_args(&args.tool)?);
    let Command::Forward(forward) = Cli::try_parse_from(argv)?.command else { unreachable!("parsed as forward") };
    let forwarder = Forwarder::start(&forward).await.context("relay forward")?;
    println!("ready");
    forwarder.run(stdin_closed()).await.context("relay forward")
}

/// Runs `relay connect` until standard input closes.
pub async fn connect_tool(args: ConnectToolRole) -> anyhow::Result<()> {
    let mut argv = vec!["relay".to_owned(), "connect".to_owned(), "--listen".to_owned(), "127.0.0.1:0".to_owned()];
    argv.extend(relay_args(&args.tool)?);
    let Command::Connect(connect) = Cli::try_parse_from(argv)?.command else { unreachable!("parsed as connect") };
    let connector = Connector::start(&connect).await.context("relay connect")?;
    println!("ready listen={}", connector.local_addr());
    connector.run(stdin_closed()).await;
    Ok(())
}

/// Runs the plain forwarder until standard input closes.
pub async fn plain_forward(args: PlainForwardRole) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("binding the plain forwarder's port")?;
    println!("ready listen={}", listener.local_addr()?);
    let accept = async {
        loop {
            let (mut inbound, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => return e,
            };
            let to = args.to;
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(to).await?;
                inbound.set_nodelay(true)?;
                outbound.set_nodelay(true)?;
                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
                std::io::Result::Ok(())
            });
        }
    };
    tokio::select! {
        () = stdin_closed() => Ok(()),
        failed = accept => Err(anyhow::Error::from(failed)).context("accepting"),
    }
}

/// A tool in a process of its own.
#[derive(Debug)]
pub struct ToolProc {
    child: ChildProc,
    /// Where callers connect, for a tool that listens.
    pub listen: Option<SocketAddr>,
}

impl ToolProc {
    async fn spawn(name: &str, args: Vec<String>) -> anyhow::Result<Self> {
        let mut child = ChildProc::spawn(name, &args)?;
        let ready = child.expect("ready", READY_TIMEOUT).await.with_context(|| format!("starting {name}"))?;
        let listen = ready.get("listen").ok().map(str::parse).transpose().context("its listen address")?;
        Ok(Self { child, listen })
    }

    /// Starts `relay forward` on `address` of `relay` over `url`, forwarding to `to`, on
    /// `threads` threads.
    pub async fn forward(
        relay: &RelayProc,
        url: &str,
        address: &str,
        to: SocketAddr,
        threads: u16,
    ) -> anyhow::Result<Self> {
        let mut args = vec!["forward-tool".to_owned(), "--to".to_owned(), to.to_string()];
        args.extend(tool_args(relay, url, address, threads));
        Self::spawn("relay forward", args).await
    }

    /// Starts `relay connect` to `address` of `relay` over `url`, on `threads` threads.
    pub async fn connect(relay: &RelayProc, url: &str, address: &str, threads: u16) -> anyhow::Result<Self> {
        let mut args = vec!["connect-tool".to_owned()];
        args.extend(tool_args(relay, url, address, threads));
        Self::spawn("relay connect", args).await
    }

    /// Starts the plain one-hop forwarder to `to`.
    pub async fn plain(to: SocketAddr) -> anyhow::Result<Self> {
        Self::spawn("plain forwarder", vec!["plain-forward".to_owned(), "--to".to_owned(), to.to_string()]).await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its local address, for a tool that listens.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.context("the tool listens on no local port")
    }

    /// Stops the tool.
    pub async fn stop(self) {
        self.child.stop(STOP_TIMEOUT).await;
    }
}

/// The child role's arguments naming the relay, the address, the credentials and the threads.
fn tool_args(relay: &RelayProc, url: &str, address: &str, threads: u16) -> Vec<String> {
    vec![
        "--threads".into(),
        threads.to_string(),
        "--relay".into(),
        url.into(),
        "--address".into(),
        address.into(),
        "--cert".into(),
        relay.cert.display().to_string(),
        "--key".into(),
        relay.key.display().to_string(),
    ]
}
