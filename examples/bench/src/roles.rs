//! The child processes' side: the hidden subcommands the bench runs itself with.
//!
//! Each reports on standard output with one line (`ready key=value ...`) and, except
//! `connect-once`, runs until its standard input closes (the parent stopping, or dying).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use relay_rpc::{Host, Listener};
use relay_server::{ClusterConfig, Config, Relay};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::baseline;
use crate::caller::{Caller, RelayTarget, Target, relay_options};
use crate::contract::{Echo, QUIC_ADDRESS, ServeBench, WSS_ADDRESS, payload};
use crate::procfs;

/// The hidden subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Role {
    /// A relay on 127.0.0.1, ports chosen by the system, limits raised for the bench.
    #[command(hide = true)]
    Relay(RelayRole),
    /// The bench host: serves the contract over QUIC, WebSocket, plain TCP and/or TLS over TCP.
    #[command(hide = true)]
    Host(HostRole),
    /// Many idle hosts, one listener each.
    #[command(hide = true)]
    Hosts(HostsRole),
    /// Connects, calls once, and says how long that took.
    #[command(hide = true)]
    ConnectOnce(ConnectOnceRole),
    /// `relay forward`, for the forwarding figures.
    #[command(hide = true)]
    ForwardTool(crate::forward::tools::ForwardToolRole),
    /// `relay connect`, for the forwarding figures.
    #[command(hide = true)]
    ConnectTool(crate::forward::tools::ConnectToolRole),
    /// A plain one-hop TCP forwarder, for the forwarding figures.
    #[command(hide = true)]
    PlainForward(crate::forward::tools::PlainForwardRole),
}

/// `relay --data-dir DIR [--max-channels N] [--cluster-nats URL]`: prints `ready quic=ADDR
/// wss=ADDR cert=PATH key=PATH`, then answers each `stats` line on stdin with `stats
/// open_channels=N`.
#[derive(Debug, clap::Args)]
pub struct RelayRole {
    /// The relay's data directory (certificate and root key).
    #[arg(long)]
    data_dir: PathBuf,
    /// Channels one connection and one listener may have open (default: the relay's default).
    #[arg(long)]
    max_channels: Option<u32>,
    /// Join the bench's cluster through this NATS server, with the relay's default cluster
    /// timers.
    #[arg(long)]
    cluster_nats: Option<String>,
    /// The relay's worker threads, as `relay-server --threads` (default: one per core).
    #[arg(long)]
    pub threads: Option<u16>,
}

/// `host --cert C --key K [--quic URL] [--wss URL] [--tcp] [--tls-cert-out PATH]`: prints
/// `ready [tcp=ADDR] [tls=ADDR]`.
#[derive(Debug, clap::Args)]
pub struct HostRole {
    /// Listen on the bench's QUIC address through this relay URL.
    #[arg(long)]
    quic: Option<String>,
    /// Listen on the bench's WebSocket address through this relay URL.
    #[arg(long)]
    wss: Option<String>,
    /// Also serve the contract directly on a TCP port of 127.0.0.1 (the `tcp` baseline).
    #[arg(long)]
    tcp: bool,
    /// Also serve the contract over TLS 1.3 on another TCP port of 127.0.0.1 (the `tls`
    /// baseline), with a self-signed certificate made now and written to this file (PEM).
    #[arg(long)]
    tls_cert_out: Option<PathBuf>,
    /// The relay's certificate.
    #[arg(long)]
    cert: PathBuf,
    /// The relay's root key.
    #[arg(long)]
    key: PathBuf,
    /// Channels the relay may have open to the host at once (default: relay-rpc's default).
    #[arg(long)]
    max_channels: Option<u32>,
}

/// `hosts --url URL --cert C --key K --count N`: N host connections, each listening on an address
/// of its own; prints `ready listeners=N rss_before_kib=KIB` (its own memory before connecting).
#[derive(Debug, clap::Args)]
pub struct HostsRole {
    /// The relay URL.
    #[arg(long)]
    url: String,
    /// The relay's certificate.
    #[arg(long)]
    cert: PathBuf,
    /// The relay's root key.
    #[arg(long)]
    key: PathBuf,
    /// How many hosts.
    #[arg(long)]
    count: usize,
}

/// `connect-once (--tcp ADDR | --tls ADDR --tls-cert C | --url URL --address A --cert C --key K)
/// [--again]`: prints `connected ms=X`, the time from the start of the connection (TCP, TLS
/// handshake included) to the first answer.
#[derive(Debug, clap::Args)]
pub struct ConnectOnceRole {
    /// The host's plain TCP address, for the `tcp` baseline.
    #[arg(long, conflicts_with_all = ["url", "tls"])]
    tcp: Option<SocketAddr>,
    /// The host's TLS address, for the `tls` baseline.
    #[arg(long, conflicts_with = "url", requires = "tls_cert")]
    tls: Option<SocketAddr>,
    /// The certificate of the host's TLS listener.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The relay URL.
    #[arg(long, requires_all = ["address", "cert", "key"])]
    url: Option<String>,
    /// The address on the relay.
    #[arg(long)]
    address: Option<String>,
    /// The relay's certificate.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The relay's root key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Connect and answer once untimed, close, and time the second connection: a caller that
    /// connects again, with what its first connection left (a TLS session to resume).
    #[arg(long)]
    again: bool,
}

/// How long a child waits for any one step of its setup.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `role` to its end.
pub async fn run(role: Role) -> anyhow::Result<()> {
    match role {
        Role::Relay(args) => relay(args).await,
        Role::Host(args) => host(args).await,
        Role::Hosts(args) => hosts(args).await,
        Role::ConnectOnce(args) => connect_once(args).await,
        Role::ForwardTool(args) => crate::forward::tools::forward_tool(args).await,
        Role::ConnectTool(args) => crate::forward::tools::connect_tool(args).await,
        Role::PlainForward(args) => crate::forward::tools::plain_forward(args).await,
    }
}

/// The relay's configuration for the bench: the defaults, on loopback ports the system chooses,
/// with a short shutdown grace and, if asked, other channel limits.
///
/// The channel limit is raised only where the scale figures need it: quinn sets up the state of
/// every stream a peer may open when a connection starts, so each connection's memory and
/// handshake time grow with `max_channels_per_connection`.
///
/// A cluster node keeps the default cluster timers (a heartbeat a second, an open given up after
/// a second): the cluster figures are those of a node as deployed. Its limit of channel opens
/// per second is raised: the open figures open channels back to back from one caller, as fast
/// as they go, and must time the opens, not the limiter.
fn relay_config(data_dir: PathBuf, max_channels: Option<u32>, cluster_nats: Option<String>) -> Config {
    let mut config = Config {
        quic_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ws_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        admin_listen: None,
        data_dir,
        shutdown_grace_ms: 500,
        // Every process of the bench is on one loopback address: the limits per source would
        // count the scale figures' tens of thousands of connections and channels as one sender's.
        max_connections_per_ip: usize::MAX,
        max_channels_per_ip: usize::MAX,
        ..Config::default()
    };
    if let Some(max) = max_channels {
        config.max_channels_per_connection = max;
        config.max_channels_per_listener = max as usize;
        // The scale figures open their channels as fast as they go, from one caller.
        config.channel_opens_per_sec = max;
        config.channel_open_burst = max;
    }
    if let Some(nats) = cluster_nats {
        config.cluster =
            Some(ClusterConfig { nats: vec![nats], name: CLUSTER_NAME.into(), ..ClusterConfig::default() });
        config.channel_opens_per_sec = config.channel_opens_per_sec.max(CLUSTER_OPENS_PER_SEC);
        config.channel_open_burst = config.channel_open_burst.max(CLUSTER_OPENS_PER_SEC);
    }
    config
}

/// The bench's cluster's name on its NATS server.
const CLUSTER_NAME: &str = "relay-bench";
/// A cluster node's limit of channel opens per second (and burst): far above what one caller
/// opening channels back to back reaches.
const CLUSTER_OPENS_PER_SEC: u32 = 100_000;

async fn relay(args: RelayRole) -> anyhow::Result<()> {
    let relay =
        Relay::bind(relay_config(args.data_dir, args.max_channels, args.cluster_nats)).context("starting the relay")?;
    let stats = relay.stats();
    let wss = relay.ws_addr().context("the relay serves no wss://")?;
    println!(
        "ready quic={} wss={} cert={} key={}",
        relay.quic_addr(),
        wss,
        relay.cert_path().display(),
        relay.root_key_path().display()
    );
    let control = async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "stats" {
                println!("stats open_channels={}", stats.open_channels());
            }
        }
    };
    relay.run(control).await;
    Ok(())
}

/// Resolves once standard input closes.
pub async fn stdin_closed() {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

async fn host(args: HostRole) -> anyhow::Result<()> {
    let mut options = relay_options(&args.cert, &args.key)?;
    if let Some(max) = args.max_channels {
        options = options.with_max_incoming_channels(max);
    }
    let mut serving: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut report = String::from("ready");
    if args.tcp {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("binding the tcp baseline's port")?;
        report.push_str(&format!(" tcp={}", listener.local_addr()?));
        serving.spawn(baseline::serve(listener, ServeBench::new(Echo)));
    }
    if let Some(path) = &args.tls_cert_out {
        let identity = baseline::TlsIdentity::generate()?;
        std::fs::write(path, &identity.cert_pem).with_context(|| format!("writing {}", path.display()))?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("binding the tls baseline's port")?;
        report.push_str(&format!(" tls={}", listener.local_addr()?));
        serving.spawn(baseline::serve_tls(listener, ServeBench::new(Echo), identity));
    }
    for (url, address) in [(&args.quic, QUIC_ADDRESS), (&args.wss, WSS_ADDRESS)] {
        let Some(url) = url else { continue };
        let host = Host::connect(url, options.clone()).await.with_context(|| format!("host connecting to {url}"))?;
        let listener = host.listen(address).await.with_context(|| format!("listening on {address} at {url}"))?;
        serving.spawn(async move { listener.serve(ServeBench::new(Echo)).await.context("serving") });
    }
    println!("{report}");
    tokio::select! {
        () = stdin_closed() => Ok(()),
        Some(ended) = serving.join_next() => match ended {
            Ok(Ok(())) => bail!("a listener stopped"),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e).context("a listener failed"),
        },
    }
}

async fn hosts(args: HostsRole) -> anyhow::Result<()> {
    let options = relay_options(&args.cert, &args.key)?;
    let rss_before_kib = procfs::rss_kib(std::process::id())?;
    let url = args.url.as_str();
    let listen = |i: usize| {
        let options = options.clone();
        async move {
            let host = Host::connect(url, options).await.with_context(|| format!("host {i} connecting"))?;
            host.listen(&format!("idle-{i}")).await.with_context(|| format!("host {i} listening"))
        }
    };
    let register = futures::stream::iter(0..args.count).map(listen).buffer_unordered(32).try_collect::<Vec<Listener>>();
    let listeners =
        tokio::time::timeout(SETUP_TIMEOUT * 4, register).await.context("registering hosts timed out")??;
    println!("ready listeners={} rss_before_kib={rss_before_kib}", listeners.len());
    stdin_closed().await;
    drop(listeners);
    Ok(())
}

async fn connect_once(args: ConnectOnceRole) -> anyhow::Result<()> {
    let target = match (args.tcp, args.tls, args.url) {
        (Some(addr), None, None) => Target::Tcp(addr),
        (None, Some(addr), None) => {
            Target::Tls { addr, cert: args.tls_cert.context("--tls-cert is required with --tls")? }
        }
        (None, None, Some(url)) => Target::Relay(RelayTarget {
            url,
            address: args.address.context("--address is required with --url")?,
            cert: args.cert.context("--cert is required with --url")?,
            key: args.key.context("--key is required with --url")?,
        }),
        _ => bail!("give one of --tcp, --tls and --url"),
    };
    // What a caller needs before it dials (certificates, key) is read outside the timing.
    let prepared = match &target {
        Target::Tcp(addr) => Prepared::Tcp(*addr),
        Target::Tls { addr, cert } => Prepared::Tls(*addr, baseline::tls_connector(cert)?),
        Target::Relay(relay) => Prepared::Relay(relay, relay.options()?),
    };
    let probe = payload(64);
    let once = async {
        if args.again {
            connect_and_call(&prepared, &probe).await?;
        }
        connect_and_call(&prepared, &probe).await
    };
    let elapsed = tokio::time::timeout(SETUP_TIMEOUT, once).await.context("connect and first call timed out")??;
    println!("connected ms={:.3}", elapsed.as_secs_f64() * 1000.0);
    Ok(())
}

/// Connects to `prepared`, makes one call and closes: the time to its answer.
async fn connect_and_call(prepared: &Prepared<'_>, probe: &Bytes) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let (caller, connection) = match prepared {
        Prepared::Tcp(addr) => (Caller::Direct(baseline::connect(*addr).await?), None),
        Prepared::Tls(addr, connector) => (Caller::Direct(baseline::connect_tls(*addr, connector).await?), None),
        Prepared::Relay(relay, options) => {
            let connection = relay_rpc::Connection::connect(&relay.url, options.clone())
                .await
                .with_context(|| format!("connecting to {}", relay.url))?;
            (Caller::open(&connection, &relay.address).await?, Some(connection))
        }
    };
    let back = caller.echo(probe.clone()).await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(back == *probe, "the echo came back different");
    drop(caller);
    if let Some(connection) = connection {
        connection.close();
    }
    Ok(elapsed)
}

/// A `connect-once` target with what dialing it takes already read.
enum Prepared<'a> {
    Tcp(SocketAddr),
    Tls(SocketAddr, tokio_rustls::TlsConnector),
    Relay(&'a RelayTarget, relay_rpc::ConnectOptions),
}
