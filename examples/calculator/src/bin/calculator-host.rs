//! Serves the calculator on an address of a relay, over one outbound connection.
//!
//! ```text
//! cargo run --release -p calculator --bin calculator-host -- --relay quic://127.0.0.1:7443 --address calc
//! ```

use std::process::ExitCode;

use calculator::{Calc, RelayArgs, ServeCalculator};
use clap::Parser;
use relay_rpc::Host;

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
    let host = Host::connect(&args.relay.relay, args.relay.options()?).await?;
    let listener = host.listen(&args.relay.address).await?;
    relay_process::tell(&format!("serving Calculator on {} at {}", args.relay.address, args.relay.relay));
    tokio::select! {
        served = listener.serve(ServeCalculator::new(Calc)) => served?,
        signal = relay_process::requested() => relay_process::tell(&format!("stopping on {signal}")),
    }
    Ok(())
}
