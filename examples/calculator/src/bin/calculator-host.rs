//! Serves the calculator on an address of a relay, over one outbound connection, and stays
//! online: after a relay restart or a lost network it connects and registers again. Given
//! several relays (the nodes of a cluster, `--relay URL1,URL2`), it picks one at random each time
//! it connects, and moves to another when its relay dies or drains.
//!
//! ```text
//! cargo run --release -p calculator --bin calculator-host -- --relay quic://127.0.0.1:7443 --address calc
//! ```

use std::process::ExitCode;

use calculator::{Calc, RelayArgs, ServeCalculator};
use clap::Parser;
use relay_rpc::{Backoff, Host, HostStatus};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(about = "Serve the calculator through a relay")]
struct Args {
    #[command(flatten)]
    relay: RelayArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let RelayArgs { relay, address, .. } = &args.relay;
    let (status, mut changes) = watch::channel(HostStatus::Connecting);
    let online = Host::serve_online(
        relay.clone(),
        args.relay.options()?,
        address,
        ServeCalculator::new(Calc),
        Backoff::default(),
        status,
    );
    let report = async {
        while changes.changed().await.is_ok() {
            let line = match &*changes.borrow() {
                HostStatus::Online => format!("serving Calculator on {address} at {relay}"),
                HostStatus::Offline(reason) => format!("offline ({reason}); trying again"),
                _ => continue,
            };
            relay_process::tell(&line);
        }
    };
    tokio::select! {
        fatal = online => return Err(fatal.into()),
        () = report => {}
        signal = relay_process::requested() => relay_process::tell(&format!("stopping on {signal}")),
    }
    Ok(())
}
