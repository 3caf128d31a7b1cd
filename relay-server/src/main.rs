//! `relay-server`: runs a relay. With no arguments it listens on its embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use relay_server::{Config, Relay};

/// A relay for typed RPC: hosts behind firewalls connect out to it, callers reach them through it.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A TOML configuration file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where QUIC listens (UDP) [default: 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR")]
    quic_listen: Option<SocketAddr>,
    /// Where the certificate and keys live [default: ./relay-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(addr) = args.quic_listen {
        config.quic_listen = addr;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let relay = Relay::bind(config).context("cannot start the relay")?;
    println!("relay listening on quic://{}", relay.quic_addr());
    println!("certificate for clients to trust: {}", relay.cert_path().display());
    println!("hosts and callers: --relay quic://{} --ca {}", relay.quic_addr(), relay.cert_path().display());
    relay.run(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
