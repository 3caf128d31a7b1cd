//! The `relay` command-line tool: TCP ports forwarded through a relay, one
//! [stream](relay_rpc::stream) channel per TCP connection, as rathole or frp do.
//!
//! ```text
//! # Host side, beside the service (here SSH): expose it on the address `ssh`.
//! relay forward --relay quic://relay.example:7443 --address ssh --to 127.0.0.1:22
//! # Caller side, anywhere: a local port that reaches it.
//! relay connect --relay quic://relay.example:7443 --address ssh --listen 127.0.0.1:2222
//! ssh -p 2222 user@127.0.0.1
//! ```
//!
//! `relay http` does for a web server what `relay forward` does for a TCP port: requests to
//! `https://{relay}/{address}/...` (the relay's HTTP mode) go to a local HTTP server, bodies
//! streaming both ways:
//!
//! ```text
//! relay http --relay quic://relay.example:7443 --address web --to http://127.0.0.1:8080
//! curl -H "ServiceBusAuthorization: $TOKEN" https://relay.example:7443/web/index.html
//! ```
//!
//! All take `--ca FILE` (default `<data-dir>/cert.pem`), `--token TOKEN` (or `RELAY_TOKEN`)
//! and `--data-dir DIR` (default `relay-data`); without a token they sign their own with
//! `<data-dir>/root.key` when it exists, so tools started beside the relay's data directory
//! just work. `quic://` and `wss://` relay URLs both work.
//!
//! `--relay` takes one URL or several, comma-separated: the nodes of a cluster, say
//! (`--relay quic://node1:7443,quic://node2:7443`). Each time either half connects, it tries them
//! in a random order and stays with the first that answers; the relay it just lost comes last.
//! `relay forward` registers on another relay of the list when its own dies or drains;
//! `relay connect` opens new connections' streams through another when its relay is gone or
//! draining (connections already carried stay where they are). A refusal from a live relay (no
//! listener on the address, a bad token) is not a reason to move: the connection is reset.
//! A list that is empty or holds anything but relay URLs is refused at once.
//!
//! The binary is a thin `main` over [`run`]; [`Forwarder`] and [`Connector`] are its two halves
//! for programs (and tests) that embed them: `start` connects and reports errors at once, `run`
//! serves until its shutdown future completes.

mod connect;
mod failover;
mod forward;
mod http;
mod list;
mod pipe;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use relay_process::LogFormat;
use relay_rpc::TlsError;
use relay_rpc::auth::{KeyFileError, SharedAccessKey};
use relay_rpc::{ConnectError, ListenError};
use relay_rpc::{ConnectOptions, RelayUrls, UrlError};

pub use connect::Connector;
pub use failover::{FailoverConnection, relay_gone};
pub use forward::{Forwarder, RELISTEN_BACKOFF};
pub use http::{HttpTarget, TargetError};
pub use list::{
    ListArgs, ListError, ListedAddress, ListedContract, ListedMethod, Listing, fetch_listing, render_listing,
};

/// Forward TCP ports through a relay: `relay forward` exposes a local service on an address,
/// `relay connect` gives a local port that reaches it.
#[derive(Debug, clap::Parser)]
#[command(name = "relay", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Threads to run on. One (the default) runs every connection on one thread, where bytes
    /// handed from a TCP socket to the relay connection cross no thread: the hand-offs between
    /// threads cost a forwarder more than its work does. More spread many busy connections over
    /// cores (each WebSocket stream is a connection of its own; QUIC streams share one).
    #[arg(long, global = true, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// How the log (on stderr) is written: `text` for people, `json` for log collectors (one
    /// object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// The tool's subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Host side: listen on an address of the relay and forward each stream to a local TCP
    /// service (a new connection to --to per stream).
    Forward(ForwardArgs),
    /// Caller side: listen on a local TCP port and carry each connection to an address of the
    /// relay (a new stream per connection).
    Connect(ConnectArgs),
    /// Host side for a web server: listen on an address of the relay taking HTTP requests
    /// (`https://RELAY/ADDRESS/...`) and send each to a local HTTP server.
    Http(HttpArgs),
    /// List the relay's discoverable addresses (`https://RELAY/$discovery`): their listeners and
    /// the contracts their hosts serve.
    List(ListArgs),
}

/// How to reach the relay, and the address on it.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// The relay's URL, quic://HOST:PORT or wss://HOST:PORT; or several, comma-separated (the
    /// nodes of a cluster), tried in a random order, moving to another when one is lost.
    #[arg(
        long,
        env = "RELAY_URL",
        default_value = "quic://127.0.0.1:7443",
        value_name = "URL[,URL...]",
        value_parser = RelayUrls::from_str
    )]
    pub relay: RelayUrls,
    /// The address on the relay to listen on or connect to, e.g. `ssh` or `eu/db`.
    #[arg(long)]
    pub address: String,
    /// What to trust and present.
    #[command(flatten)]
    pub credentials: Credentials,
}

/// What the tool trusts the relay by, and presents to it.
#[derive(Debug, Clone, clap::Args)]
pub struct Credentials {
    /// The certificate (or CA) to trust for the relay [default: cert.pem in --data-dir].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A SAS token to present to the relay. Without one, the tool signs its own with the root
    /// key in the relay's data directory, if it runs beside it.
    #[arg(long, env = "RELAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The relay's data directory, for the default certificate and root key.
    #[arg(long, value_name = "DIR", default_value = "relay-data")]
    pub data_dir: PathBuf,
}

impl Credentials {
    /// The certificate file to trust: `--ca`, else `cert.pem` in `--data-dir`.
    pub fn ca_file(&self) -> PathBuf {
        self.ca.clone().unwrap_or_else(|| self.data_dir.join("cert.pem"))
    }

    /// The root key in `--data-dir`, if it is there (read only without `--token`).
    pub fn root_key(&self) -> Result<Option<SharedAccessKey>, KeyFileError> {
        let path = self.data_dir.join("root.key");
        if self.token.is_some() || !path.exists() {
            return Ok(None);
        }
        SharedAccessKey::from_file(&path).map(Some)
    }
}

/// `relay forward`: the host side.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwardArgs {
    /// The relay and the address to listen on.
    #[command(flatten)]
    pub relay: RelayArgs,
    /// The local TCP service each stream is forwarded to, e.g. 127.0.0.1:22.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: String,
    /// How long connecting to --to may take before the stream is refused (e.g. 500ms, 5s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// How many streams may be forwarded at once; more are refused as busy.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// `relay http`: the host side for a local web server.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// The relay and the address to listen on.
    #[command(flatten)]
    pub relay: RelayArgs,
    /// The local web server, http://HOST:PORT[/BASE]: `https://RELAY/ADDRESS/x` is sent to
    /// `http://HOST:PORT/BASE/x`.
    #[arg(long, value_name = "URL")]
    pub to: HttpTarget,
    /// How long the local server may take to answer (its head; the body then streams).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How many requests may be forwarded at once; more are refused as busy.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// `relay connect`: the caller side.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The relay and the address to connect to.
    #[command(flatten)]
    pub relay: RelayArgs,
    /// The local TCP address to accept connections on, e.g. 127.0.0.1:2222.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// How many connections may be carried at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// Why the tool stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The relay's certificate could not be read.
    #[error("cannot trust {} (is the relay's data directory here? else pass --ca)", path.display())]
    Trust {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        #[source]
        source: TlsError,
    },
    /// The root key could not be read.
    #[error(transparent)]
    RootKey(#[from] KeyFileError),
    /// `--relay` is empty or holds something that is not a relay URL.
    #[error(transparent)]
    Relays(#[from] UrlError),
    /// The relay could not be reached: none of them, given several (the last one tried).
    #[error("cannot connect to the relay at {url}")]
    Connect {
        /// The relay's URL (the last one tried, given several).
        url: String,
        /// Why.
        #[source]
        source: ConnectError,
    },
    /// The relay's listing could not be read.
    #[error(transparent)]
    List(#[from] ListError),
    /// The relay refused or ended the registration, for good.
    #[error("cannot listen on {address:?} at {url}")]
    Listen {
        /// The relay's URL.
        url: String,
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: ListenError,
    },
    /// The forwarding target does not resolve.
    #[error("cannot resolve {to}")]
    Target {
        /// The `--to` argument.
        to: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The local port could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The `--listen` argument.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl RelayArgs {
    /// The connect options these arguments describe: trust `--ca` (or `<data-dir>/cert.pem`);
    /// present `--token`, or else sign tokens with `<data-dir>/root.key` if it exists.
    pub fn options(&self) -> Result<ConnectOptions, CliError> {
        let credentials = &self.credentials;
        let ca = credentials.ca_file();
        let options =
            ConnectOptions::new().trust_pem_file(&ca).map_err(|source| CliError::Trust { path: ca, source })?;
        Ok(match (&credentials.token, credentials.root_key()?) {
            (Some(token), _) => options.with_token(token),
            (None, Some(key)) => options.with_shared_access_key(key),
            (None, None) => options,
        })
    }
}

/// Runs the tool: starts what `cli` asks for, says so on stdout, and serves until `shutdown`
/// completes (the binary passes Ctrl-C or SIGTERM). Per-connection events are `tracing` events
/// at `info`.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> Result<(), CliError> {
    match cli.command {
        Command::Forward(args) => {
            let forwarder = Forwarder::start(&args).await?;
            relay_process::tell(&format!(
                "forwarding streams on {:?} at {} to {} (Ctrl-C stops)",
                args.relay.address,
                forwarder.relay(),
                args.to
            ));
            forwarder.run(shutdown).await?;
        }
        Command::Http(args) => {
            let forwarder = Forwarder::start_http(&args).await?;
            relay_process::tell(&format!(
                "forwarding http requests to {:?} at {} to {} (Ctrl-C stops)",
                args.relay.address,
                forwarder.relay(),
                forwarder.target()
            ));
            forwarder.run(shutdown).await?;
        }
        Command::List(args) => {
            let listing = fetch_listing(&args).await?;
            relay_process::tell(render_listing(&listing).trim_end());
            return Ok(());
        }
        Command::Connect(args) => {
            let connector = Connector::start(&args).await?;
            relay_process::tell(&format!(
                "listening on {}: each connection reaches {:?} at {} (Ctrl-C stops)",
                connector.local_addr(),
                args.relay.address,
                connector.relay()
            ));
            connector.run(shutdown).await;
        }
    }
    relay_process::tell("stopped");
    Ok(())
}

/// `error` and its causes, one after the other (`cannot connect to the relay at URL: ...: ...`):
/// what the binary prints when it stops on an error. Each error's message says only what failed
/// at its own level, so this is where the whole story is told.
///
/// ```
/// use relay_forward::{CliError, report};
///
/// let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
/// let err = CliError::Bind { addr: "127.0.0.1:2222".parse().unwrap(), source: io };
/// assert_eq!(report(&err), "cannot listen on 127.0.0.1:2222: address in use");
/// ```
pub fn report(error: &dyn std::error::Error) -> String {
    relay_proto::error::chain(error).to_string()
}

/// Parses a duration such as `250ms`, `5s`, `2m` or `5` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 250ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("unknown unit in {s:?}; use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn arguments_parse_with_defaults() {
        let cli = Cli::try_parse_from(["relay", "forward", "--address", "ssh", "--to", "127.0.0.1:22"]).unwrap();
        let Command::Forward(args) = cli.command else { panic!("forward expected") };
        assert_eq!(args.relay.address, "ssh");
        assert_eq!(args.relay.credentials.data_dir, PathBuf::from("relay-data"));
        assert_eq!(args.connect_timeout, Duration::from_secs(5));
        assert_eq!(args.max_connections, 1024);

        let cli = Cli::try_parse_from([
            "relay",
            "connect",
            "--relay",
            "wss://relay.example:443",
            "--address",
            "ssh",
            "--listen",
            "127.0.0.1:2222",
            "--ca",
            "ca.pem",
        ])
        .unwrap();
        let Command::Connect(args) = cli.command else { panic!("connect expected") };
        assert_eq!(args.listen, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(args.relay.credentials.ca, Some(PathBuf::from("ca.pem")));

        assert!(Cli::try_parse_from(["relay", "forward", "--address", "ssh"]).is_err(), "--to is required");
        assert!(Cli::try_parse_from(["relay", "connect", "--address", "a", "--listen", "nowhere"]).is_err());
        let zero = ["relay", "connect", "--address", "a", "--listen", "127.0.0.1:1", "--max-connections", "0"];
        assert!(Cli::try_parse_from(zero).is_err());
    }

    #[test]
    fn a_missing_certificate_says_where_it_looked() {
        let cli =
            Cli::try_parse_from(["relay", "forward", "--address", "a", "--to", "x:1", "--data-dir", "/nonexistent"])
                .unwrap();
        let Command::Forward(args) = cli.command else { panic!("forward expected") };
        let err = args.relay.options().unwrap_err();
        assert!(matches!(err, CliError::Trust { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
        assert!(report(&err).starts_with(&format!("{err}: ")), "the cause follows: {}", report(&err));
    }

    #[test]
    fn relay_lists_parse_and_bad_ones_are_refused() {
        let args = ["relay", "connect", "--address", "a", "--listen", "127.0.0.1:1", "--relay"];
        let cli = Cli::try_parse_from([&args[..], &["quic://a:1, wss://b:2"]].concat()).unwrap();
        let Command::Connect(connect) = cli.command else { panic!("connect expected") };
        assert_eq!(connect.relay.relay, RelayUrls::new(["quic://a:1", "wss://b:2"]));
        let cli = Cli::try_parse_from(&args[..6]).unwrap();
        let Command::Connect(connect) = cli.command else { panic!("connect expected") };
        assert_eq!(connect.relay.relay.to_string(), "quic://127.0.0.1:7443", "one URL by default");
        for bad in ["", " , ", "quic://a:1,nope", "http://a:1"] {
            let err = Cli::try_parse_from([&args[..], &[bad]].concat()).unwrap_err();
            assert!(err.to_string().contains("--relay"), "{bad:?}: {err}");
        }
    }
}
