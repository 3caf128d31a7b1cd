//! `relay-server`: runs a relay. With no arguments it listens on its embedded defaults.
//! `relay-server token ...` prints a SAS token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use relay_process::LogFormat;
use relay_proto::auth::{SharedAccessKey, sas_token, unix_now};
use relay_server::root_key::{ROOT_KEY_NAME, root_key_path};
use relay_server::{Config, Relay, Reloader};

/// A relay for typed RPC: hosts behind firewalls connect out to it, callers reach them through it.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    /// How the log (on stderr) is written: `text` for people, `json` for log collectors (one
    /// object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Worker threads [default: one per core]; 1 runs the relay on a single thread, leaving the
    /// other cores to whatever shares the machine.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a SAS token for a resource, signed with a key.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A TOML configuration file; flags override it.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Where QUIC listens (UDP) [default: 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR")]
    quic_listen: Option<SocketAddr>,
    /// Where wss:// (Azure Hybrid Connections over WebSocket) listens (TCP) [default: 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR")]
    ws_listen: Option<SocketAddr>,
    /// Also serve plain, unencrypted ws:// here (TCP); off unless given.
    #[arg(long, value_name = "ADDR")]
    ws_plain_listen: Option<SocketAddr>,
    /// Where the admin endpoint (/healthz, /readyz, /metrics) listens, plain HTTP, or "off"
    /// [default: 127.0.0.1:7080].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_admin_listen)]
    admin_listen: Option<AdminListen>,
    /// Where the certificate and keys live [default: ./relay-data].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Join a cluster of relay nodes through this NATS server (repeatable, for several); the
    /// config file's `[cluster]` table sets the rest. Nodes of one cluster share their keys (one
    /// data directory, or the same keys in their configs).
    #[arg(long = "cluster-nats", value_name = "URL")]
    cluster_nats: Vec<String>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The resource the token is for, e.g. quic://127.0.0.1:7443/calc (scheme and port do not matter).
    #[arg(long)]
    resource: String,
    /// The key's name.
    #[arg(long, default_value = ROOT_KEY_NAME)]
    key_name: String,
    /// The key; by default read from the data directory (root key) or the config file.
    #[arg(long, env = "RELAY_KEY", hide_env_values = true)]
    key: Option<String>,
    /// How long the token is valid: a number with s, m, h or d; at most the relay's
    /// `max_token_ttl_secs` (a week by default), or the relay refuses it.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
}

/// `--admin-listen`: an address, or `off` (`None`).
#[derive(Debug, Clone)]
struct AdminListen(Option<SocketAddr>);

fn parse_admin_listen(s: &str) -> Result<AdminListen, String> {
    relay_server::parse_address_or_off(s).map(AdminListen)
}

impl RunArgs {
    /// `config` with the flags given applied over it.
    fn overriding(&self, mut config: Config) -> Config {
        if let Some(addr) = self.quic_listen {
            config.quic_listen = addr;
        }
        if let Some(addr) = self.ws_listen {
            config.ws_listen = Some(addr);
        }
        if let Some(addr) = self.ws_plain_listen {
            config.ws_plain_listen = Some(addr);
        }
        if let Some(admin) = &self.admin_listen {
            config.admin_listen = admin.0;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        if !self.cluster_nats.is_empty() {
            config.cluster.get_or_insert_default().nats.clone_from(&self.cluster_nats);
        }
        config
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit in {s:?}; use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = relay_process::runtime(cli.threads).context("cannot start the runtime")?;
    runtime.block_on(start(cli))
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    // The NATS client logs each reconnection attempt at `info`; the relay says once, itself, that
    // NATS is away and when it is back.
    relay_process::init_logs(cli.log_format, "info,async_nats=warn");
    let config = match &cli.run.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let config = cli.run.overriding(config);
    match cli.command {
        Some(Command::Token(args)) => print_token(&config, args),
        None => run(config, cli.run).await,
    }
}

async fn run(config: Config, args: RunArgs) -> anyhow::Result<()> {
    let relay = Relay::bind(config).context("cannot start the relay")?;
    // Listening from before the relay says it is up: a SIGHUP from then on reloads, never kills.
    reload_on_sighup(relay.reloader(), args)?;
    let url = format!("quic://{}", relay.quic_addr());
    let mut lines = vec![format!("relay listening on {url}")];
    if let Some(addr) = relay.ws_addr() {
        lines.push(format!("relay listening on wss://{addr} (Azure Relay Hybrid Connections: /$hc/ADDRESS)"));
    }
    if let Some(addr) = relay.ws_plain_addr() {
        lines.push(format!("relay listening on ws://{addr} (unencrypted)"));
    }
    if let Some(addr) = relay.admin_addr() {
        lines.push(format!("admin endpoint on http://{addr} (status page; /healthz, /readyz, /metrics)"));
    }
    if let Some((name, advertised)) = relay.cluster() {
        lines.push(format!("relay node of cluster {name:?}, reached by other nodes' listeners at {advertised}"));
    }
    lines.push(format!("certificate for clients to trust: {}", relay.cert_path().display()));
    lines.push(format!("root key ({ROOT_KEY_NAME}): {}", relay.root_key_path().display()));
    lines.push("tools started beside ./relay-data sign their own tokens with it; to make one:".into());
    lines.push(format!("  relay-server token --resource {url}/ADDRESS --ttl 1h"));
    let shutdown = relay_process::Shutdown::listen();
    relay_process::tell(&lines.join("\n"));
    relay
        .run(async move {
            let signal = shutdown.requested().await;
            tracing::info!("stopping on {signal}");
        })
        .await;
    Ok(())
}

/// On every SIGHUP, reads the config file again (with the same flags over it) and puts it in
/// force; a bad file is logged, in one line with its reason, and the running config stays.
#[cfg(unix)]
fn reload_on_sighup(reloader: Reloader, args: RunArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(path) = &args.config else {
                tracing::info!("SIGHUP: nothing to reload, the relay runs on its defaults (no --config file)");
                continue;
            };
            let reloaded = Config::from_file(path).map(|file| args.overriding(file)).and_then(|c| reloader.reload(c));
            match reloaded {
                Err(e) => tracing::error!(
                    "config reload failed, the previous config stays in force: {}",
                    one_line(&relay_proto::error::chain(&e).to_string())
                ),
                Ok(changes) => {
                    for setting in &changes.need_restart {
                        tracing::warn!("config reload: changed {setting}: takes effect after a restart");
                    }
                    if changes.applied.is_empty() {
                        tracing::info!(file = %path.display(), "config reloaded: nothing to change now");
                    } else {
                        let applied = changes.applied.join(", ");
                        tracing::info!(file = %path.display(), "config reloaded, in force now: {applied}");
                    }
                }
            }
        }
    });
    Ok(())
}

/// `text` on one line: TOML's errors draw the bad line and a caret under it over several.
#[cfg(unix)]
fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty() && *line != "|").collect();
    parts.join(" ")
}

/// No SIGHUP off Unix: the config is read once.
#[cfg(not(unix))]
fn reload_on_sighup(_: Reloader, _: RunArgs) -> anyhow::Result<()> {
    Ok(())
}

fn print_token(config: &Config, args: TokenArgs) -> anyhow::Result<()> {
    let key = match args.key {
        Some(key) => key,
        None => find_key(config, &args.key_name)?,
    };
    if args.ttl.as_secs() > config.max_token_ttl_secs {
        anyhow::bail!(
            "--ttl {} s is longer than the relay's max_token_ttl_secs ({} s): the relay would refuse the token",
            args.ttl.as_secs(),
            config.max_token_ttl_secs
        );
    }
    println!("{}", sas_token(&args.resource, &args.key_name, &key, unix_now() + args.ttl.as_secs()));
    Ok(())
}

fn find_key(config: &Config, name: &str) -> anyhow::Result<String> {
    if let Some(key) = config.keys.iter().find(|k| k.name == name) {
        return Ok(key.primary_key.expose().to_owned());
    }
    let path = root_key_path(&config.data_dir);
    if name == ROOT_KEY_NAME && path.exists() {
        let key = SharedAccessKey::from_file(&path)?;
        return Ok(key.secret().to_owned());
    }
    bail!("no key named {name:?} in the config or in {}; pass --key", path.display())
}
